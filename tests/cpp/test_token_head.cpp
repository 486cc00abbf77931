// era::TokenHead: forward and backward against a reference computed here from
// docs/math.md#token-head, for float/double/bf16/f16 logits, int32/int64 labels and
// response ids, optional outputs, reused output buffers, views, rank-3 batches and the
// vocabulary top-K.
#include "check.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

namespace {

const int N = 12, V = 32;

struct Batch {
    std::vector<double> logits;  // [N, V]
    std::vector<std::int64_t> labels, ids;
    std::vector<double> adv;
};

// Three interleaved responses and a masked token: response 0 confident (sharpened),
// response 1 nearly uniform (flattened), response 2 with a negative advantage (unchanged).
Batch make_batch() {
    Batch b;
    b.ids = {0, 1, 2, 0, 1, 2, 0, 1, -1, 2, 0, 1};
    std::uint64_t state = 12345;
    auto noise = [&]() {  // in [-1, 1), multiples of 1/64
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        return static_cast<double>(static_cast<int>((state >> 40) % 128) - 64) / 64.0;
    };
    for (int t = 0; t < N; t++) {
        b.labels.push_back((t * 7 + 3) % V);
        b.adv.push_back(b.ids[t] == 0 ? 1.0 : b.ids[t] == 1 ? 0.5 : -1.0);
        for (int v = 0; v < V; v++) {
            double x = noise();
            double scale = b.ids[t] == 0 ? 0.5 : b.ids[t] == 1 ? 0.0625 : 2.0;
            b.logits.push_back(scale * x + (b.ids[t] == 0 && v == b.labels[t] ? 12.0 : 0.0));
        }
    }
    return b;
}

struct Ref {
    std::vector<double> logp, H, scale, adv, hresp, grad;
};

// docs/math.md#token-forward and #token-backward in long double
Ref reference(const Batch& b, const std::vector<double>& g, double k = 2, double wl = 0.45, double wh = 3.0,
              double rho = 0.2, double T = 1.0) {
    Ref r;
    r.logp.assign(N, 0);
    r.H.assign(N, 0);
    r.scale.assign(N, 1);
    r.adv = b.adv;
    r.hresp.assign(N, 0);
    r.grad.assign(N * V, 0);
    auto lse = [&](int t, double c) {
        long double m = -INFINITY, s = 0;
        for (int v = 0; v < V; v++) m = std::max<long double>(m, c * b.logits[t * V + v] / T);
        for (int v = 0; v < V; v++) s += std::exp(c * b.logits[t * V + v] / T - m);
        return m + std::log(s);
    };
    for (int t = 0; t < N; t++) {
        long double l = lse(t, 1.0), h = 0;
        for (int v = 0; v < V; v++) {
            long double lp = b.logits[t * V + v] / T - l;
            h -= std::exp(lp) * lp;
        }
        r.H[t] = static_cast<double>(h);
    }
    for (int resp = 0; resp < 3; resp++) {
        std::vector<double> hs;
        for (int t = 0; t < N; t++)
            if (b.ids[t] == resp) hs.push_back(r.H[t]);
        std::sort(hs.rbegin(), hs.rend());
        std::size_t kr = std::max<std::size_t>(1, static_cast<std::size_t>(std::floor(rho * hs.size())));
        double mean = 0;
        for (std::size_t i = 0; i < kr; i++) mean += hs[i] / kr;
        for (int t = 0; t < N; t++) {
            if (b.ids[t] != resp) continue;
            r.hresp[t] = mean;
            double c = b.adv[t] > 0 && mean < wl ? k : b.adv[t] > 0 && mean > wh ? 1 / k : 1.0;
            r.scale[t] = c;
            r.adv[t] = b.adv[t] / c;
            long double l = lse(t, c);
            r.logp[t] = static_cast<double>(c * b.logits[t * V + b.labels[t]] / T - l);
            for (int v = 0; v < V; v++) {
                long double p = std::exp(c * b.logits[t * V + v] / T - l);
                r.grad[t * V + v] = static_cast<double>((c / T) * ((v == b.labels[t]) - p) * g[t]);
            }
        }
    }
    return r;
}

template <typename To, typename From> std::vector<To> cast(const std::vector<From>& x) {
    std::vector<To> y;
    for (const From& v : x) y.push_back(static_cast<To>(v));
    return y;
}

void check_outputs(const era::TokenForward<float>& got, const Ref& want, double tol) {
    CHECK_ALL_CLOSE(got.logprobs, want.logp, tol);
    CHECK_ALL_CLOSE(got.entropy, want.H, tol);
    CHECK_ALL_CLOSE(got.scale, want.scale, 0.0);
    CHECK_ALL_CLOSE(got.advantages, want.adv, 0.0);
    CHECK_ALL_CLOSE(got.response_entropy, want.hresp, tol);
}

void forward_all_types() {
    const Batch b = make_batch();
    const std::vector<double> g(N, 0.0);
    const Ref want = reference(b, g);
    era::TokenHead head;

    SECTION("the batch exercises all three scales");
    CHECK(want.scale[0] == 2.0 && want.scale[1] == 0.5 && want.scale[2] == 1.0 && want.scale[8] == 1.0);

    SECTION("float logits, int64 indices");
    const std::vector<float> logits = cast<float>(b.logits), adv = cast<float>(b.adv);
    era::TokenForward<float> out = head.forward(logits, {N, V}, b.labels, b.ids, adv);
    check_outputs(out, want, 2e-5);

    SECTION("double logits, int32 labels, int64 ids, double outputs");
    const std::vector<std::int32_t> labels32 = cast<std::int32_t>(b.labels), ids32 = cast<std::int32_t>(b.ids);
    era::TokenForward<double> outd = head.forward(b.logits, {N, V}, labels32, b.ids, b.adv);
    CHECK_ALL_CLOSE(outd.logprobs, want.logp, 1e-9);
    CHECK_ALL_CLOSE(outd.response_entropy, want.hresp, 1e-9);
    CHECK_ALL_CLOSE(outd.scale, want.scale, 0.0);

    SECTION("bf16 logits, int32 indices");
    std::vector<era::bf16> lb;
    Batch rounded = b;  // the reference sees the logits as bf16 holds them
    for (std::size_t i = 0; i < b.logits.size(); i++) {
        lb.push_back(era::bf16(static_cast<float>(b.logits[i])));
        rounded.logits[i] = static_cast<float>(lb[i]);
    }
    check_outputs(head.forward(lb, {N, V}, labels32, ids32, adv), reference(rounded, g), 2e-5);

    SECTION("f16 logits");
    std::vector<era::f16> lh;
    for (std::size_t i = 0; i < b.logits.size(); i++) {
        lh.push_back(era::f16(static_cast<float>(b.logits[i])));
        rounded.logits[i] = static_cast<float>(lh[i]);
    }
    check_outputs(head.forward(lh, {N, V}, labels32, ids32, adv), reference(rounded, g), 2e-5);

    SECTION("rank-3 batch [2, 6, V]");
    era::TokenForward<float> out3 = head.forward(logits, {2, N / 2, V}, b.labels, b.ids, adv);
    check_outputs(out3, want, 2e-5);
}

void optional_and_reused_outputs() {
    const Batch b = make_batch();
    const Ref want = reference(b, std::vector<double>(N, 0.0));
    const std::vector<float> logits = cast<float>(b.logits), adv = cast<float>(b.adv);
    const std::vector<std::int32_t> labels = cast<std::int32_t>(b.labels), ids = cast<std::int32_t>(b.ids);
    era::TokenHead head;

    SECTION("only the outputs asked for");
    era::TokenForward<float> out;
    head.forward(logits, {N, V}, labels, ids, adv, out, era::TokenOutput::logprobs | era::TokenOutput::scale);
    CHECK(out.logprobs.size() == N && out.scale.size() == N);
    CHECK(out.entropy.empty() && out.advantages.empty() && out.response_entropy.empty());
    CHECK_ALL_CLOSE(out.logprobs, want.logp, 2e-5);
    CHECK_ALL_CLOSE(out.scale, want.scale, 0.0);

    SECTION("the same TokenForward again: no reallocation");
    const float* before = out.logprobs.data();
    head.forward(logits, {N, V}, labels, ids, adv, out, era::TokenOutput::logprobs | era::TokenOutput::scale);
    CHECK(out.logprobs.data() == before);
    head.forward(logits, {N, V}, labels, ids, adv, out);  // now everything
    check_outputs(out, want, 2e-5);

    SECTION("views: unbound outputs are skipped");
    std::vector<float> lp(N, 99.0f), re(N, 99.0f);
    era::TokenOutputViews<float> views;
    views.logprobs = era::view(lp);
    head.forward(era::view(logits, {N, V}), era::view(labels), era::view(ids), era::view(adv), views);
    CHECK_ALL_CLOSE(lp, want.logp, 2e-5);
    views.logprobs = era::View<float>();
    views.response_entropy = era::view(re);
    head.forward(era::view(logits, {N, V}), era::view(labels), era::view(ids), era::view(adv), views);
    CHECK_ALL_CLOSE(re, want.hresp, 2e-5);

    SECTION("token entropy");
    std::vector<double> h(N);
    head.entropy(logits, h, {N, V});
    CHECK_ALL_CLOSE(h, want.H, 2e-5);
}

void backward() {
    const Batch b = make_batch();
    std::vector<double> g(N);
    for (int t = 0; t < N; t++) g[t] = b.ids[t] < 0 ? 0.0 : -b.adv[t] / (N - 1);
    const Ref want = reference(b, g);
    era::TokenHead head;

    SECTION("backward, double logits, int32 indices");
    const std::vector<std::int32_t> labels = cast<std::int32_t>(b.labels), ids = cast<std::int32_t>(b.ids);
    std::vector<double> grad(N * V);
    head.backward(b.logits, {N, V}, labels, ids, want.scale, g, grad);
    CHECK_ALL_CLOSE(grad, want.grad, 1e-12);
    bool masked_zero = true;
    for (int v = 0; v < V; v++) masked_zero = masked_zero && grad[8 * V + v] == 0.0;
    CHECK(masked_zero);

    SECTION("backward, float logits and the forward's scale, views");
    const std::vector<float> logits = cast<float>(b.logits), gf = cast<float>(g);
    era::TokenForward<float> fwd = head.forward(logits, {N, V}, b.labels, b.ids, cast<float>(b.adv),
                                                era::TokenOutput::scale);
    std::vector<float> gradf(N * V);
    head.backward(era::view(logits, {N, V}), era::view(b.labels), era::view(b.ids), era::view(fwd.scale),
                  era::view(gf), era::view(gradf, {N, V}));
    CHECK_ALL_CLOSE(gradf, want.grad, 1e-6);
}

void temperature_and_topk() {
    const Batch b = make_batch();
    SECTION("temperature 2");
    era::TokenHead hot(era::TokenConfig().temperature(2.0));
    const Ref want = reference(b, std::vector<double>(N, 0.0), 2, 0.45, 3.0, 0.2, 2.0);
    era::TokenForward<double> out = hot.forward(b.logits, {N, V}, b.labels, b.ids, b.adv);
    CHECK_ALL_CLOSE(out.logprobs, want.logp, 1e-9);
    CHECK_ALL_CLOSE(out.entropy, want.H, 1e-9);
    CHECK_ALL_CLOSE(out.scale, want.scale, 0.0);

    SECTION("vocabulary top-K: a label outside gets ERA_OUTSIDE_TOPK_LOGPROB");
    era::TokenHead top(era::TokenConfig().vocab_topk(2));
    std::vector<double> logits(2 * 4, 0.0);
    logits[0] = 3, logits[1] = 2, logits[2] = 1;  // token 0: label 2 is third
    logits[4] = 3, logits[5] = 2;                 // token 1: label 1 is second
    std::vector<std::int64_t> labels = {2, 1}, ids = {0, 0};
    std::vector<double> adv = {0.0, 0.0};
    era::TokenForward<double> tk = top.forward(logits, {2, 4}, labels, ids, adv, era::TokenOutput::logprobs);
    CHECK(tk.logprobs[0] == ERA_OUTSIDE_TOPK_LOGPROB);
    CHECK_CLOSE(tk.logprobs[1], 2.0 - std::log(std::exp(3.0) + std::exp(2.0)), 1e-12);
}

void split_forward() {
    const Batch b = make_batch();
    era::TokenHead head;
    SECTION("split forward: the one-call forward's bits, and the selected column's gradient");
    const std::vector<float> logits = cast<float>(b.logits), adv = cast<float>(b.adv);
    era::TokenForward<float> one = head.forward(logits, {N, V}, b.labels, b.ids, adv);
    std::vector<std::int64_t> labels = b.labels;
    for (int t = 0; t < N; t++)
        if (b.ids[t] < 0) labels[t] = -100;  // the split forward ignores a token by its label
    std::vector<float> cols(N * 3), H(N), lp(N), scale(N), ao(N);
    head.logprob_columns(era::view(logits, {N, V}), era::view(labels), era::view(cols, {N, 3}), era::view(H));
    head.decide(era::view(H), era::view(b.ids), era::view(adv), era::view(cols, {N, 3}), era::view(lp),
                era::view(scale), era::view(ao));
    CHECK(H == one.entropy);
    CHECK(lp == one.logprobs);
    CHECK(scale == one.scale);
    CHECK(ao == one.advantages);
    // the gradient of the selected column is the one-call backward's
    std::vector<float> g(N), gc(N * 3, 0.0f), want(N * V), got(N * V);
    for (int t = 0; t < N; t++) {
        g[t] = b.ids[t] < 0 ? 0.0f : 0.25f * static_cast<float>(t % 5) - 0.5f;
        const int j = one.scale[t] == 1.0f ? 0 : one.scale[t] == 2.0f ? 1 : 2;
        gc[t * 3 + j] = g[t];
    }
    head.backward(era::view(logits, {N, V}), era::view(b.labels), era::view(b.ids), era::view(one.scale),
                  era::view(g), era::view(want, {N, V}));
    const DLTensor tl = era::view(logits, {N, V}).dlpack(), ty = era::view(labels).dlpack(),
                   tg = era::view(gc, {N, 3}).dlpack();
    DLTensor to = era::view(got, {N, V}).dlpack();
    head.columns_backward(tl, ty, nullptr, &tg, nullptr, to);
    CHECK(got == want);

    SECTION("a temperature per token of 2 everywhere is the head at temperature 2");
    era::TokenHead hot(era::TokenConfig().temperature(2.0));
    era::TokenForward<float> want_hot = hot.forward(logits, {N, V}, b.labels, b.ids, adv);
    const std::vector<float> temps(N, 2.0f);
    std::vector<float> lp2(N);
    const DLTensor tr = era::view(b.ids).dlpack(), ta = era::view(adv).dlpack(), tt = era::view(temps).dlpack(),
                   tyl = era::view(b.labels).dlpack();
    DLTensor tlp = era::view(lp2).dlpack();
    head.forward(tl, tyl, tr, ta, &tt, &tlp, nullptr, nullptr, nullptr, nullptr);
    CHECK(lp2 == want_hot.logprobs);

    SECTION("split forward errors are era::Error");
    std::vector<float> bad_temps(N, 0.0f);
    const DLTensor tb = era::view(bad_temps).dlpack();
    CHECK_THROWS(head.logprob_columns(tl, ty, &tb, nullptr, nullptr, nullptr), ERA_STATUS_INVALID_VALUE);
}

}  // namespace

int main() {
    return check::run_tests([] {
        forward_all_types();
        optional_and_reused_outputs();
        backward();
        temperature_and_topk();
        split_forward();
    });
}
