// era::Error: every error path the wrapper adds (sizes against shapes, bad extents and
// strides, wrong head kinds, dtypes of DLTensors, negative counts) and the library's
// statuses reaching C++ as era::Error with the library's message.
#include "check.hpp"

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace {

void error_class() {
    SECTION("Error carries the status and the message");
    try {
        era::GaussianHead head(era::GaussianConfig{2, 100.0});
        CHECK(false);
    } catch (const era::Error& e) {
        CHECK(e.status() == ERA_STATUS_INFEASIBLE_TARGET);
        CHECK(std::string(e.status_name()) == "ERA_STATUS_INFEASIBLE_TARGET");
        CHECK(!e.message().empty() && e.message() == era::last_error());
        CHECK(std::string(e.what()) == "ERA_STATUS_INFEASIBLE_TARGET: " + e.message());
    }
}

void configs() {
    SECTION("invalid configurations");
    CHECK_THROWS(era::GaussianHead(era::GaussianConfig{0, 1.0}), ERA_STATUS_INVALID_CONFIG);
    CHECK_THROWS(era::GaussianHead(era::GaussianConfig{3, -1.0}.log_std_bounds(0, -1)), ERA_STATUS_INVALID_CONFIG);
    CHECK_THROWS(era::SoftmaxHead(era::SoftmaxConfig{1, 0.5}), ERA_STATUS_INVALID_CONFIG);
    CHECK_THROWS(era::SoftmaxHead(era::SoftmaxConfig{4, 5.0}), ERA_STATUS_INFEASIBLE_TARGET);
    CHECK_THROWS(era::TokenHead(era::TokenConfig().k(1.0)), ERA_STATUS_INVALID_CONFIG);
    CHECK_THROWS(era::TokenHead(era::TokenConfig().top_fraction(0.0)), ERA_STATUS_INVALID_CONFIG);
    CHECK_THROWS_TEXT(era::GaussianConfig(-3, 1.0), ERA_STATUS_INVALID_CONFIG, "dim = -3 is negative");
    CHECK_THROWS_TEXT(era::SoftmaxConfig(-1, 1.0), ERA_STATUS_INVALID_CONFIG, "num_classes");
    CHECK_THROWS_TEXT(era::TokenConfig().vocab_topk(-5), ERA_STATUS_INVALID_CONFIG, "vocab_topk");
}

void sizes() {
    era::GaussianHead head(era::GaussianConfig{3, -1.5}.log_std_bounds(-5, 0));
    std::vector<double> z(6), out(6), short_z(5), short_out(4), h(2), g(6);
    SECTION("a buffer of the wrong size is never read");
    CHECK_THROWS_TEXT(head.forward(short_z, out, {2, 3}), ERA_STATUS_INVALID_SHAPE,
                      "z holds 5 elements, but shape [2, 3] needs 6");
    CHECK_THROWS_TEXT(head.forward(z, short_out, {2, 3}), ERA_STATUS_INVALID_SHAPE, "out holds 4 elements");
    CHECK_THROWS_TEXT(head.forward(z, out, {3, 3}), ERA_STATUS_INVALID_SHAPE, "needs 9");
    CHECK_THROWS_TEXT(head.forward(short_z, {2, 3}), ERA_STATUS_INVALID_SHAPE, "z holds 5");
    CHECK_THROWS_TEXT(head.backward(z, short_out, out, {2, 3}), ERA_STATUS_INVALID_SHAPE, "grad_out holds 4");
    CHECK_THROWS_TEXT(head.backward(z, g, short_out, {2, 3}), ERA_STATUS_INVALID_SHAPE, "grad_z holds 4");
    CHECK_THROWS_TEXT(head.entropy(z, short_out, {2, 3}), ERA_STATUS_INVALID_SHAPE, "entropy holds 4 elements, but shape [2] needs 2");
    CHECK_THROWS_TEXT(head.entropy(z, h, {}), ERA_STATUS_INVALID_SHAPE, "rank >= 1");
    CHECK_THROWS_TEXT((void)head.backward_delta(z, 0.0, g, short_out, {2, 3}), ERA_STATUS_INVALID_SHAPE, "grad_z");
    CHECK_THROWS_TEXT(era::gaussian_entropy(z, short_out, {2, 3}), ERA_STATUS_INVALID_SHAPE, "entropy");
    CHECK_THROWS_TEXT(era::softmax_entropy(short_z, 1.0, h, {2, 3}), ERA_STATUS_INVALID_SHAPE, "logits holds 5");
    CHECK_THROWS_TEXT(era::view(z, {7}), ERA_STATUS_INVALID_SHAPE, "the buffer holds 6 elements");

    SECTION("token sizes");
    era::TokenHead token;
    std::vector<float> logits(4 * 8), adv(4), grad(4 * 8);
    std::vector<std::int32_t> labels(4), ids(4), three(3);
    CHECK_THROWS_TEXT(token.forward(logits, {4, 7}, labels, ids, adv), ERA_STATUS_INVALID_SHAPE, "logits holds 32");
    CHECK_THROWS_TEXT(token.forward(logits, {4, 8}, three, ids, adv), ERA_STATUS_INVALID_SHAPE, "labels holds 3");
    CHECK_THROWS_TEXT(token.forward(logits, {4, 8}, labels, three, adv), ERA_STATUS_INVALID_SHAPE, "response_ids");
    CHECK_THROWS_TEXT(token.backward(logits, {4, 8}, labels, ids, adv, std::vector<float>(5), grad),
                      ERA_STATUS_INVALID_SHAPE, "grad_logprobs holds 5");
    CHECK_THROWS_TEXT(token.forward(logits, {}, labels, ids, adv), ERA_STATUS_INVALID_SHAPE, "rank >= 1");
}

void extents_and_strides() {
    SECTION("extents and strides");
    CHECK_THROWS_TEXT(era::Shape(2, -1), ERA_STATUS_INVALID_SHAPE, "negative extent -1");
    CHECK_THROWS_TEXT(era::Shape(std::numeric_limits<std::uint64_t>::max()), ERA_STATUS_INVALID_SHAPE, "does not fit");
    CHECK_THROWS_TEXT(era::Shape(std::vector<int>(9, 1)), ERA_STATUS_INVALID_SHAPE, "max_rank");
    std::int64_t big = std::int64_t{1} << 40;
    CHECK_THROWS_TEXT((void)era::Shape(big, big).numel(), ERA_STATUS_INVALID_SHAPE, "2^63");
    std::vector<double> buf(6);
    CHECK_THROWS(era::view(buf, {2, 3}, {3}), ERA_STATUS_INVALID_LAYOUT);
    CHECK_THROWS(era::View<double>(buf.data(), {2, 3}, {3}), ERA_STATUS_INVALID_LAYOUT);
    CHECK_THROWS_TEXT(era::view(buf, {2, 3}, {1, 2}, 1), ERA_STATUS_INVALID_SHAPE, "reaches outside");
    CHECK_THROWS_TEXT(era::view(buf, {3}, {-1}, 1), ERA_STATUS_INVALID_SHAPE, "reaches outside");
    CHECK_THROWS_TEXT(era::view(buf, {2, 2}, {}, 3), ERA_STATUS_INVALID_SHAPE, "past its end");
    CHECK(era::view(buf, {3}, {-1}, 2).numel() == 3);  // reversed: within the buffer
    CHECK(era::view(buf, {2, 3}, {1, 2}).numel() == 6);
}

void kinds_and_dtypes() {
    SECTION("wrong head kinds");
    era::SoftmaxHead softmax(era::SoftmaxConfig{4, 0.6});
    const std::string json = softmax.to_json();
    CHECK_THROWS_TEXT(era::GaussianHead::from_json(json), ERA_STATUS_WRONG_HEAD_KIND, "a softmax head");
    CHECK_THROWS(era::TokenHead::from_json(json), ERA_STATUS_WRONG_HEAD_KIND);
    CHECK_THROWS(era::SoftmaxHead::from_json("{not json"), ERA_STATUS_JSON);
    EraHead* raw = softmax.release();
    CHECK_THROWS(era::GaussianHead::adopt(raw), ERA_STATUS_WRONG_HEAD_KIND);
    era::SoftmaxHead back = era::SoftmaxHead::adopt(raw);  // still the caller's after a failed adopt
    CHECK(back.get() == raw);
    CHECK_THROWS(era::SoftmaxHead::adopt(nullptr), ERA_STATUS_NULL_POINTER);

    SECTION("a DLTensor of another dtype");
    float x[2] = {0, 0};
    std::int64_t shape[1] = {2};
    DLTensor t{x, {kDLCPU, 0}, 1, {kDLFloat, 32, 1}, shape, nullptr, 0};
    CHECK_THROWS(era::ConstView<double>::from_dlpack(t), ERA_STATUS_UNSUPPORTED_DTYPE);
    CHECK(era::ConstView<float>::from_dlpack(t).numel() == 2);
}

void library_statuses() {
    SECTION("statuses of the library reach C++");
    era::GaussianHead head(era::GaussianConfig{3, -1.5}.log_std_bounds(-5, 0));
    std::vector<double> z4(4), out4(4);
    CHECK_THROWS_TEXT(head.forward(z4, out4, {2, 2}), ERA_STATUS_INVALID_SHAPE, "3");  // last axis is not D
    CHECK_THROWS(head.set_delta(NAN), ERA_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(head.update_delta(INFINITY), ERA_STATUS_INVALID_ARGUMENT);
    std::vector<double> l(3), h(1);
    CHECK_THROWS(era::softmax_entropy(l, 0.0, h, {3}), ERA_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(era::truncated_normal_entropy(l, l, 1.0, 1.0, h, {3}), ERA_STATUS_INVALID_ARGUMENT);

    SECTION("token values");
    era::TokenHead token;
    std::vector<float> logits(2 * 4), adv(2, 1.0f), scale = {1.0f, 0.0f}, g(2), grad(8);
    std::vector<std::int64_t> labels = {0, 4}, ids = {0, 0};
    CHECK_THROWS(token.forward(logits, {2, 4}, labels, ids, adv), ERA_STATUS_INVALID_VALUE);
    labels[1] = 1;
    ids[0] = -2;
    CHECK_THROWS(token.forward(logits, {2, 4}, labels, ids, adv), ERA_STATUS_INVALID_VALUE);
    ids[0] = 0;
    CHECK_THROWS(token.backward(logits, {2, 4}, labels, ids, scale, g, grad), ERA_STATUS_INVALID_VALUE);

    SECTION("a moved-from head");
    era::GaussianHead moved = std::move(head);
    CHECK_THROWS(head.delta(), ERA_STATUS_NULL_POINTER);  // NOLINT: use after move on purpose
    CHECK(moved.delta() == 0.0);
}

}  // namespace

int main() {
    return check::run_tests([] {
        error_class();
        configs();
        sizes();
        extents_and_strides();
        kinds_and_dtypes();
        library_statuses();
    });
}
