// era::Shape, era::Strides, era::View / era::ConstView, era::view(), DLPack descriptors,
// era::bf16 / era::f16 and a user-defined 2-byte element type.
#include "check.hpp"

#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>
#if __cplusplus >= 202002L
#include <span>
#endif

// A user's own 2-byte float, described to era by a dtype_of specialisation.
struct MyHalf {
    std::uint16_t bits;
};
template <> struct era::dtype_of<MyHalf> {
    static constexpr DLDataType value = {kDLFloat, 16, 1};
};

namespace {

// const-correctness, checked at compile time
static_assert(std::is_same<decltype(era::view(std::declval<std::vector<float>&>())), era::View<float>>::value, "");
static_assert(std::is_same<decltype(era::view(std::declval<const std::vector<float>&>())), era::ConstView<float>>::value,
              "");
static_assert(std::is_convertible<era::View<float>, era::ConstView<float>>::value, "a View is an input");
static_assert(!std::is_convertible<era::ConstView<float>, era::View<float>>::value, "a ConstView is no output");
static_assert(!std::is_constructible<era::View<float>, const float*, era::Shape>::value, "no View of const data");
static_assert(std::is_constructible<era::ConstView<float>, float*, era::Shape>::value, "");

void shapes() {
    SECTION("Shape from braced lists of mixed integer types");
    std::vector<double> z(24);
    era::Shape s = {z.size() / 6, 6};
    CHECK(s.rank() == 2 && s[0] == 4 && s[1] == 6 && s.numel() == 24);
    const long rows = 2;
    const unsigned char cols = 3;
    era::Shape s2 = {rows, cols, std::int64_t{4}};
    CHECK(s2.numel() == 24 && s2.str() == "[2, 3, 4]");
    CHECK(s2.rows() == era::Shape(2, 3));
    CHECK(era::Shape().numel() == 1 && era::Shape().rank() == 0);
    CHECK(era::Shape(5, 0).numel() == 0);
    std::vector<std::int64_t> dims = {3, 1, 2};
    CHECK(era::Shape(dims) == era::Shape(3, 1, 2));
    CHECK(era::Shape(dims) != era::Shape(3, 1));
    era::Strides st = {-1, 2};
    CHECK(st.rank() == 2 && st[0] == -1);
}

void descriptors() {
    SECTION("row-major view as DLTensor");
    std::vector<float> x(6);
    era::View<float> v = era::view(x, {2, 3});
    DLTensor t = v.dlpack();
    CHECK(t.data == x.data() && t.ndim == 2 && t.shape[0] == 2 && t.shape[1] == 3 && t.strides == nullptr);
    CHECK(t.dtype.code == kDLFloat && t.dtype.bits == 32 && t.dtype.lanes == 1 && t.byte_offset == 0);
    CHECK(t.device.device_type == kDLCPU && v.numel() == 6 && v.bound());
    CHECK(!era::View<float>().bound());

    SECTION("strided view with an offset");
    std::vector<double> buf(10);
    era::View<double> sv = era::view(buf, {2, 3}, {4, 1}, 2);
    DLTensor ts = sv.dlpack();
    CHECK(ts.strides != nullptr && ts.strides[0] == 4 && ts.strides[1] == 1 && ts.byte_offset == 16);

    SECTION("dtypes");
    CHECK(era::dtype_of<double>::value.bits == 64);
    CHECK(era::dtype_of<era::bf16>::value.code == kDLBfloat && era::dtype_of<era::bf16>::value.bits == 16);
    CHECK(era::dtype_of<era::f16>::value.code == kDLFloat && era::dtype_of<era::f16>::value.bits == 16);
    CHECK(era::dtype_of<std::int32_t>::value.code == kDLInt && era::dtype_of<std::int32_t>::value.bits == 32);
    CHECK(era::dtype_of<long long>::value.code == kDLInt && era::dtype_of<long long>::value.bits == 64);

    SECTION("from_dlpack");
    era::ConstView<double> back = era::ConstView<double>::from_dlpack(ts);
    CHECK(back.data() == buf.data() && back.shape() == era::Shape(2, 3) && back.strides() == era::Strides(4, 1) &&
          back.byte_offset() == 16);
    era::View<double> wback = era::View<double>::from_dlpack(ts);
    CHECK(wback.data() == buf.data());
}

void strided_compute() {
    SECTION("a strided block of a buffer, computed by the library");
    // rows [a b c] at offsets 2 and 6 of a 10-element buffer; the rest must stay untouched
    std::vector<double> log_std = {9, 9, 0.5, -1, 2, 9, 1, 1, 1, 9}, h(2);
    era::gaussian_entropy(era::view(std::as_const(log_std), {2, 3}, {4, 1}, 2), era::view(h));
    const double L2PE = 2.8378770664093453;
    CHECK_CLOSE(h[0], 1.5 + 1.5 * L2PE, 1e-12);
    CHECK_CLOSE(h[1], 3.0 + 1.5 * L2PE, 1e-12);
    SECTION("an output written through strides");
    era::SoftmaxHead head(era::SoftmaxConfig{3, 0.5});
    std::vector<double> z = {1, 2, 3}, out(6, -1.0);
    head.forward(era::view(z, {1, 3}), era::view(out, {1, 3}, {3, 2}, 0));  // every other element
    CHECK(out[1] == -1.0 && out[3] == -1.0 && out[5] == -1.0);
    CHECK_ALL_CLOSE((std::array<double, 3>{out[0], out[2], out[4]}), head.forward(z, {3}), 0.0);
}

void containers() {
    SECTION("std::array, C arrays and (C++20) std::span");
    era::GaussianHead head(era::GaussianConfig{2, 0.0}.log_std_bounds(-5, 2));
    std::array<float, 4> z = {0.1f, 0.2f, 0.3f, 0.4f};
    float out[4] = {};
    head.forward(z, out, {2, 2});
    std::vector<float> want = head.forward(std::vector<float>(z.begin(), z.end()), {2, 2});
    CHECK_ALL_CLOSE(out, want, 0.0);
#if __cplusplus >= 202002L
    std::span<const float> zs(z);
    std::vector<float> buf(4);
    std::span<float> os(buf);
    head.forward(zs, os, {2, 2});
    CHECK_ALL_CLOSE(buf, want, 0.0);
#endif
}

void half_types() {
    SECTION("bf16 conversions");
    CHECK(era::bf16(1.0f).bits == 0x3f80);
    CHECK(era::bf16(1.00390625f).bits == 0x3f80);  // a tie: to even
    CHECK(era::bf16(1.01171875f).bits == 0x3f82);  // 1 + 3*2^-8: a tie, to even (up)
    CHECK(era::bf16(-2.0f).bits == 0xc000);
    CHECK(std::isnan(static_cast<float>(era::bf16(std::numeric_limits<float>::quiet_NaN()))));
    CHECK(static_cast<float>(era::bf16::from_bits(0x4049)) == 3.140625f);

    SECTION("f16 conversions");
    CHECK(era::f16(1.0f).bits == 0x3c00 && era::f16(-2.0f).bits == 0xc000);
    CHECK(era::f16(65504.0f).bits == 0x7bff && era::f16(65520.0f).bits == 0x7c00 && era::f16(1e9f).bits == 0x7c00);
    CHECK(static_cast<float>(era::f16::from_bits(1)) == std::ldexp(1.0f, -24));
    CHECK(era::f16(1e-7f).bits == 0x0002);
    CHECK(era::f16(std::ldexp(1.0f, -25)).bits == 0x0000);  // a tie: to even (zero)
    CHECK(std::isnan(static_cast<float>(era::f16(std::numeric_limits<float>::quiet_NaN()))));

    SECTION("every bit pattern survives a round trip through float");
    int bad_bf16 = 0, bad_f16 = 0;
    for (std::uint32_t b = 0; b < 0x10000; b++) {
        const std::uint16_t bits = static_cast<std::uint16_t>(b);
        float fb = static_cast<float>(era::bf16::from_bits(bits)), fh = static_cast<float>(era::f16::from_bits(bits));
        if (!std::isnan(fb) && era::bf16(fb).bits != bits) bad_bf16++;
        if (!std::isnan(fh) && era::f16(fh).bits != bits) bad_f16++;
    }
    CHECK(bad_bf16 == 0);
    CHECK(bad_f16 == 0);

    SECTION("a user-defined 2-byte type (dtype_of specialisation)");
    std::vector<MyHalf> logits;
    for (float x : {1.0f, 0.0f, -0.5f, 2.0f}) logits.push_back(MyHalf{era::f16(x).bits});
    std::vector<double> h(1), want(1);
    era::softmax_entropy(logits, 1.0, h, {4});
    era::softmax_entropy(std::vector<double>{1.0, 0.0, -0.5, 2.0}, 1.0, want, {4});
    CHECK_CLOSE(h[0], want[0], 1e-6);
}

}  // namespace

int main() {
    return check::run_tests([] {
        shapes();
        descriptors();
        strided_compute();
        containers();
        half_types();
    });
}
