// era::GaussianHead::forward_saved / backward_saved and era::SoftmaxHead::forward_saved /
// backward_saved and forward_saved_dw / backward_saved_dw (docs/math.md#saved-softmax),
// float and double: the same bits as forward_delta / backward_delta and forward / backward through every overload (views,
// DLTensors, contiguous ranges, the stored delta, one delta, one delta per row), saved
// against a softmax computed here, a strided view, and the errors as era::Error.
#include "check.hpp"

#include <cmath>
#include <cstring>
#include <vector>

namespace {

const double H0_GAUSSIAN = -3.0;
const int B = 19, D = 6, N = 7;

template <typename T> bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

template <typename T> std::vector<T> values(int count, double scale, unsigned seed) {
    std::vector<T> v(static_cast<std::size_t>(count));
    for (int i = 0; i < count; i++) v[i] = static_cast<T>(scale * std::sin(0.7 * i + seed) + 0.1 * seed);
    return v;
}

// row-wise softmax, computed here in long double
template <typename T> std::vector<double> softmax_rows(const std::vector<T>& z, int n) {
    std::vector<double> p(z.size());
    for (std::size_t r = 0; r < z.size() / n; r++) {
        long double m = z[r * n], s = 0;
        for (int j = 1; j < n; j++) m = std::max<long double>(m, z[r * n + j]);
        for (int j = 0; j < n; j++) s += std::exp(static_cast<long double>(z[r * n + j]) - m);
        for (int j = 0; j < n; j++)
            p[r * n + j] = static_cast<double>(std::exp(static_cast<long double>(z[r * n + j]) - m) / s);
    }
    return p;
}

template <typename T> double tol() { return sizeof(T) == 8 ? 1e-14 : 2e-6; }

template <typename T> void gaussian() {
    SECTION(sizeof(T) == 8 ? "gaussian double" : "gaussian float");
    era::GaussianHead head(era::GaussianConfig{D, H0_GAUSSIAN}.log_std_bounds(-5, 0).delta_fixed());
    const era::Shape shape{B, D};
    const std::size_t n = static_cast<std::size_t>(B * D);
    const std::vector<T> z = values<T>(B * D, 2.0, 1), g = values<T>(B * D, 1.0, 2);
    std::vector<T> delta_rows(B);
    for (int b = 0; b < B; b++) delta_rows[b] = static_cast<T>(0.1 * (b % 5) - 0.2);

    // the stored delta: forward / backward
    head.set_delta(0.4);
    std::vector<T> out(n), saved(n), out_ref(n), dz(n), dz_ref(n);
    head.forward(z, out_ref, shape);
    head.forward_saved(z, out, saved, shape);
    CHECK(same_bits(out, out_ref));
    CHECK_ALL_CLOSE(saved, softmax_rows(z, D), tol<T>());
    head.backward(z, g, dz_ref, shape);
    head.backward_saved(saved, g, dz, shape);
    CHECK(same_bits(dz, dz_ref));

    // one delta for every row: forward_delta / backward_delta
    head.forward_delta(z, 0.3, out_ref, shape);
    head.forward_saved(z, 0.3, out, saved, shape);
    CHECK(same_bits(out, out_ref));
    const T gd_ref = head.backward_delta(z, 0.3, g, dz_ref, shape);
    const T gd = head.backward_saved(saved, 0.3, g, dz, shape);
    CHECK(same_bits(dz, dz_ref));
    CHECK(std::memcmp(&gd, &gd_ref, sizeof(T)) == 0);

    // one delta per row, views
    std::vector<T> gdr(B), gdr_ref(B);
    head.forward_delta(era::view(z, shape), era::view(delta_rows), era::view(out_ref, shape));
    head.forward_saved(era::view(z, shape), era::view(delta_rows), era::view(out, shape), era::view(saved, shape));
    CHECK(same_bits(out, out_ref));
    CHECK_ALL_CLOSE(saved, softmax_rows(z, D), tol<T>());
    head.backward_delta(era::view(z, shape), era::view(delta_rows), era::view(g, shape), era::view(dz_ref, shape),
                        era::view(gdr_ref));
    head.backward_saved(era::view(saved, shape), era::view(delta_rows), era::view(g, shape), era::view(dz, shape),
                        era::view(gdr));
    CHECK(same_bits(dz, dz_ref));
    CHECK(same_bits(gdr, gdr_ref));
    // grad_delta left out; the stored delta through an unbound view
    std::fill(dz.begin(), dz.end(), T(7));
    head.backward_saved(era::view(saved, shape), era::view(delta_rows), era::view(g, shape), era::view(dz, shape));
    CHECK(same_bits(dz, dz_ref));
    head.forward_saved(era::view(z, shape), era::ConstView<T>(), era::view(out, shape), era::view(saved, shape));
    head.forward(z, out_ref, shape);
    CHECK(same_bits(out, out_ref));

    // DLTensors (delta NULL: the stored one)
    head.backward(z, g, dz_ref, shape);
    {
        auto vs = era::view(saved, shape);
        auto vg = era::view(g, shape);
        auto vdz = era::view(dz, shape);
        const DLTensor ts = vs.dlpack(), tg = vg.dlpack();
        DLTensor tdz = vdz.dlpack();
        std::fill(dz.begin(), dz.end(), T(7));
        head.backward_saved(ts, nullptr, tg, tdz);
        CHECK(same_bits(dz, dz_ref));
        auto vz = era::view(z, shape);
        auto vo = era::view(out, shape);
        const DLTensor tz = vz.dlpack();
        DLTensor to = vo.dlpack(), ts2 = vs.dlpack();
        head.forward_saved(tz, nullptr, to, ts2);
        CHECK(same_bits(out, out_ref));
    }

    // a strided (transposed) z and saved
    {
        std::vector<T> zt(n), st(n), ot(n), gt(n), dzt(n), ot_ref(n), dzt_ref(n);
        for (int b = 0; b < B; b++)
            for (int j = 0; j < D; j++) {
                zt[j * B + b] = z[b * D + j];
                gt[j * B + b] = g[b * D + j];
            }
        const era::Strides tr{1, B};
        head.forward_delta(era::view(zt, shape, tr), era::view(delta_rows), era::view(ot_ref, shape, tr));
        head.forward_saved(era::view(zt, shape, tr), era::view(delta_rows), era::view(ot, shape, tr),
                           era::view(st, shape, tr));
        CHECK(same_bits(ot, ot_ref));
        head.backward_delta(era::view(zt, shape, tr), era::view(delta_rows), era::view(gt, shape, tr),
                            era::view(dzt_ref, shape, tr));
        head.backward_saved(era::view(st, shape, tr), era::view(delta_rows), era::view(gt, shape, tr),
                            era::view(dzt, shape, tr));
        CHECK(same_bits(dzt, dzt_ref));
    }

    SECTION(sizeof(T) == 8 ? "gaussian double: errors" : "gaussian float: errors");
    std::vector<T> small(static_cast<std::size_t>(B * (D - 1)));
    CHECK_THROWS(head.forward_saved(small, out, saved, shape), ERA_STATUS_INVALID_SHAPE);  // size vs shape
    CHECK_THROWS(head.forward_saved(z, out, saved, era::Shape{B * D / 2, 2}), ERA_STATUS_INVALID_SHAPE);
    CHECK_THROWS_TEXT(head.forward_saved(era::view(z, shape), era::ConstView<T>(), era::view(out, shape),
                                         era::view(out, shape)),
                      ERA_STATUS_INVALID_LAYOUT, "overlap");
    const T nan = static_cast<T>(NAN);
    CHECK_THROWS(head.forward_saved(z, static_cast<double>(nan), out, saved, shape), ERA_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(head.forward_saved(z, 100.0, out, saved, shape), ERA_STATUS_INFEASIBLE_TARGET);
    CHECK_THROWS(head.backward_saved(saved, 100.0, g, dz, shape), ERA_STATUS_INFEASIBLE_TARGET);
    T gd1{};
    CHECK_THROWS_TEXT(head.backward_saved(era::view(saved, shape), era::ConstView<T>(), era::view(g, shape),
                                          era::view(dz, shape), era::View<T>(&gd1, era::Shape())),
                      ERA_STATUS_NULL_POINTER, "grad_delta");
    {
        auto vz = era::view(z, shape);
        auto vo = era::view(out, shape);
        auto vs = era::view(saved, shape);
        DLTensor tz = vz.dlpack(), to = vo.dlpack(), ts = vs.dlpack();
        tz.device.device_type = kDLCUDA;
        to.device.device_type = kDLCUDA;
        ts.device.device_type = kDLCUDA;
        CHECK_THROWS(head.forward_saved(tz, nullptr, to, ts), ERA_STATUS_UNSUPPORTED_DEVICE);
        CHECK_THROWS(head.backward_saved(ts, nullptr, tz, to), ERA_STATUS_UNSUPPORTED_DEVICE);
    }
}

template <typename T> void softmax() {
    SECTION(sizeof(T) == 8 ? "softmax double" : "softmax float");
    era::SoftmaxHead head(era::SoftmaxConfig{N, 1.1}.tau(5.0));
    const era::Shape shape{B, N};
    const std::size_t n = static_cast<std::size_t>(B * N);
    const std::vector<T> z = values<T>(B * N, 2.0, 3), g = values<T>(B * N, 1.0, 4);
    std::vector<T> out(n), saved(n), out_ref(n), dz_ref(n), dz(n);
    head.forward(z, out_ref, shape);
    head.forward_saved(z, out, saved, shape);
    CHECK(same_bits(out, out_ref));
    CHECK_ALL_CLOSE(saved, softmax_rows(z, N), tol<T>());
    head.backward(z, g, dz_ref, shape);
    head.backward_saved(saved, g, dz, shape);
    if (sizeof(T) == 4) {
        CHECK(same_bits(dz, dz_ref));  // contiguous float, tau far from e: the vectorised kernels
    } else {
        CHECK_ALL_CLOSE(dz, dz_ref, 1e-13);  // double: equal to rounding
    }
    CHECK(same_bits(head.backward_saved(saved, g, shape), dz));
    // views, in place (saved over z, then grad_z over saved)
    std::vector<T> work(z);
    head.forward_saved(era::view(work, shape), era::view(out, shape), era::view(work, shape));
    CHECK(same_bits(out, out_ref) && same_bits(work, saved));
    head.backward_saved(era::view(work, shape), era::view(g, shape), era::view(work, shape));
    CHECK(same_bits(work, dz));
    // DLTensors
    {
        auto vz = era::view(z, shape);
        auto vo = era::view(out, shape);
        auto vs = era::view(saved, shape);
        auto vg = era::view(g, shape);
        auto vdz = era::view(dz, shape);
        const DLTensor tz = vz.dlpack(), tg = vg.dlpack();
        DLTensor to = vo.dlpack(), ts = vs.dlpack(), tdz = vdz.dlpack();
        std::fill(out.begin(), out.end(), T(7));
        head.forward_saved(tz, to, ts);
        CHECK(same_bits(out, out_ref));
        std::vector<T> before(dz);
        head.backward_saved(ts, tg, tdz);
        CHECK(same_bits(dz, before));

        SECTION(sizeof(T) == 8 ? "softmax double: errors" : "softmax float: errors");
        DLTensor cz = tz, co = to, cs = ts;
        cz.device.device_type = kDLCUDA;
        co.device.device_type = kDLCUDA;
        cs.device.device_type = kDLCUDA;
        CHECK_THROWS(head.forward_saved(cz, co, cs), ERA_STATUS_UNSUPPORTED_DEVICE);
        CHECK_THROWS(head.backward_saved(cs, cz, co), ERA_STATUS_UNSUPPORTED_DEVICE);
    }
    CHECK_THROWS_TEXT(head.forward_saved(era::view(z, shape), era::view(out, shape), era::view(out, shape)),
                      ERA_STATUS_INVALID_LAYOUT, "overlap");
    std::vector<T> wide(static_cast<std::size_t>(B * (N + 1)));
    CHECK_THROWS(head.forward_saved(wide, wide, saved, era::Shape{B, N + 1}), ERA_STATUS_INVALID_SHAPE);
    CHECK_THROWS(head.backward_saved(saved, g, dz, era::Shape{B, N + 1}), ERA_STATUS_INVALID_SHAPE);

    SECTION(sizeof(T) == 8 ? "softmax double: with dw/dh" : "softmax float: with dw/dh");
    std::vector<T> saved2(n), dwdh(n), dz2(n);
    head.forward_saved_dw(z, out, saved2, dwdh, shape);
    CHECK(same_bits(out, out_ref) && same_bits(saved2, saved));
    head.backward_saved_dw(saved2, dwdh, g, dz2, shape);
    CHECK(same_bits(dz2, dz));  // backward_saved's bits (and, in float, backward's)
    // views, grad_z over dwdh
    head.backward_saved_dw(era::view(saved2, shape), era::view(dwdh, shape), era::view(g, shape),
                           era::view(dwdh, shape));
    CHECK(same_bits(dwdh, dz));
    {
        auto vz = era::view(z, shape);
        auto vo = era::view(out, shape);
        auto vs = era::view(saved2, shape);
        auto vq = era::view(dwdh, shape);
        auto vg = era::view(g, shape);
        auto vdz = era::view(dz2, shape);
        const DLTensor tz = vz.dlpack(), tg = vg.dlpack();
        DLTensor to = vo.dlpack(), ts = vs.dlpack(), tq = vq.dlpack(), tdz = vdz.dlpack();
        head.forward_saved_dw(tz, to, ts, tq);
        std::fill(dz2.begin(), dz2.end(), T(7));
        head.backward_saved_dw(ts, tq, tg, tdz);
        CHECK(same_bits(dz2, dz));
        CHECK_THROWS_TEXT(head.forward_saved_dw(tz, to, ts, ts), ERA_STATUS_INVALID_LAYOUT, "overlap");
        DLTensor cq = tq;
        cq.device.device_type = kDLCUDA;
        CHECK_THROWS(head.backward_saved_dw(ts, cq, tg, tdz), ERA_STATUS_UNSUPPORTED_DEVICE);
    }
    CHECK_THROWS(head.forward_saved_dw(wide, wide, saved, dwdh, era::Shape{B, N + 1}), ERA_STATUS_INVALID_SHAPE);
}

void wrong_kind() {
    SECTION("the handle of another kind");
    era::GaussianHead gaussian(era::GaussianConfig{N, H0_GAUSSIAN}.log_std_bounds(-5, 0));
    era::SoftmaxHead sm(era::SoftmaxConfig{N, 1.1}.tau(5.0));
    std::vector<double> z(N, 0.5), out(N), saved(N), g(N, 1.0), dz(N);
    // call the other head's C function through the raw handle
    auto vz = era::view(z, {1, N});
    auto vo = era::view(out, {1, N});
    auto vs = era::view(saved, {1, N});
    auto vg = era::view(g, {1, N});
    auto vdz = era::view(dz, {1, N});
    const DLTensor tz = vz.dlpack(), tg = vg.dlpack();
    DLTensor to = vo.dlpack(), ts = vs.dlpack(), tdz = vdz.dlpack();
    CHECK(era_softmax_forward_saved(gaussian.get(), &tz, &to, &ts, nullptr) == ERA_STATUS_WRONG_HEAD_KIND);
    CHECK(era_softmax_backward_saved(gaussian.get(), &ts, &tg, &tdz, nullptr) == ERA_STATUS_WRONG_HEAD_KIND);
    CHECK(era_gaussian_forward_saved(sm.get(), &tz, nullptr, &to, &ts, nullptr) == ERA_STATUS_WRONG_HEAD_KIND);
    CHECK(era_gaussian_backward_saved(sm.get(), &ts, nullptr, &tg, &tdz, nullptr, nullptr) ==
          ERA_STATUS_WRONG_HEAD_KIND);
}

}  // namespace

int main() {
    return check::run_tests([] {
        gaussian<double>();
        gaussian<float>();
        softmax<double>();
        softmax<float>();
        wrong_kind();
    });
}
