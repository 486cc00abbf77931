// era::SoftmaxHead: the worked example of docs/math.md (H0 = 0.6, tau = 4, n = 4), the
// entropy bound on sharp rows, float and double, strided rows, JSON, and the head-free
// softmax_entropy, each against values computed here.
#include "check.hpp"

#include <array>
#include <cmath>
#include <vector>

namespace {

const std::array<double, 4> Z = {2.0, 0.0, -1.0, 0.5};
const std::array<double, 4> OUT = {1.41745, 0.167547, 0.0, 0.325278};
const std::array<double, 4> G = {1.0, -0.5, 0.25, 0.0};
const std::array<double, 4> DZ = {0.440352, -0.239131, -0.015823, -0.185398};

// H(softmax(x / t)), computed here in long double
double categorical_entropy(const double* x, int n, double t = 1.0) {
    long double m = x[0] / t, s = 0, sx = 0;
    for (int i = 1; i < n; i++) m = std::max<long double>(m, x[i] / t);
    for (int i = 0; i < n; i++) {
        long double e = std::exp(x[i] / t - m);
        s += e;
        sx += e * (x[i] / t - m);
    }
    return static_cast<double>(std::log(s) - sx / s);
}

era::SoftmaxConfig worked() { return era::SoftmaxConfig{4, 0.6}.tau(4.0); }

void worked_example() {
    era::SoftmaxHead head(worked());
    SECTION("forward");
    std::array<double, 4> out{};
    head.forward(Z, out, {1, 4});
    CHECK_ALL_CLOSE(out, OUT, 1e-5);
    SECTION("entropy of the output");
    CHECK_CLOSE(categorical_entropy(out.data(), 4), 1.195788, 1e-5);
    CHECK_CLOSE(head.entropy(out, {1, 4})[0], categorical_entropy(out.data(), 4), 1e-9);
    SECTION("backward");
    CHECK_ALL_CLOSE(head.backward(Z, G, {4}), DZ, 1e-6);
    SECTION("float");
    std::vector<float> zf(Z.begin(), Z.end()), gf(G.begin(), G.end()), of(4), dzf(4);
    head.forward(zf, of, {4});
    CHECK_ALL_CLOSE(of, OUT, 1e-5);
    head.backward(zf, gf, dzf, {4});
    CHECK_ALL_CLOSE(dzf, DZ, 1e-5);
}

void bound_on_sharp_rows() {
    SECTION("entropy >= H0 on rows of growing scale");
    const int rows = 5, n = 10;
    era::SoftmaxHead head(era::SoftmaxConfig{n, 1.0});
    std::vector<double> z(rows * n);
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < n; i++) z[r * n + i] = std::pow(10.0, r) * std::sin(1.0 + i * (r + 1));
    std::vector<double> out = head.forward(z, {rows, n}), h = head.entropy(out, {rows, n});
    for (int r = 0; r < rows; r++) {
        CHECK(h[r] >= 1.0 - 1e-9);
        CHECK_CLOSE(h[r], categorical_entropy(&out[r * n], n), 1e-9);
    }
}

void strided() {
    SECTION("column-major rows through strides");
    era::SoftmaxHead head(worked());
    // two rows stored column by column: element [r, i] at 2*i + r
    std::vector<double> zt(8), outt(8, -7.0);
    for (int i = 0; i < 4; i++) zt[2 * i] = zt[2 * i + 1] = Z[i];
    head.forward(era::view(zt, {2, 4}, {1, 2}), era::view(outt, {2, 4}, {1, 2}));
    for (int i = 0; i < 4; i++) {
        CHECK_CLOSE(outt[2 * i], OUT[i], 1e-5);
        CHECK_CLOSE(outt[2 * i + 1], OUT[i], 1e-5);
    }
}

void head_free_entropy() {
    SECTION("softmax_entropy with a temperature");
    std::vector<double> h(1);
    era::softmax_entropy(Z, 2.0, h, {4});
    CHECK_CLOSE(h[0], categorical_entropy(Z.data(), 4, 2.0), 1e-9);
    std::vector<float> hf(1);
    era::softmax_entropy(era::view(Z), 1.0, era::view(hf, {}));  // f64 logits, f32 entropy
    CHECK_CLOSE(hf[0], categorical_entropy(Z.data(), 4), 1e-6);
    SECTION("softmax_entropy of bf16 logits");
    std::vector<era::bf16> zb;
    for (double v : Z) zb.push_back(era::bf16(static_cast<float>(v)));  // exact in bf16
    era::softmax_entropy(zb, 1.0, h, {4});
    CHECK_CLOSE(h[0], categorical_entropy(Z.data(), 4), 1e-6);
}

void json() {
    SECTION("JSON round trip");
    era::SoftmaxHead head(worked().num_threads(1));
    era::SoftmaxHead loaded = era::SoftmaxHead::from_json(head.to_json());
    CHECK(loaded.config().num_classes() == 4 && loaded.config().tau() == 4.0 &&
          loaded.config().target_entropy() == 0.6);
    CHECK_ALL_CLOSE(loaded.forward(Z, {4}), OUT, 1e-5);
    SECTION("a bare config document");
    era::SoftmaxHead bare =
        era::SoftmaxHead::from_json(R"({"kind": "softmax", "num_classes": 4, "target_entropy": 0.6, "tau": 4})");
    CHECK_ALL_CLOSE(bare.forward(Z, {4}), OUT, 1e-5);
}

}  // namespace

int main() {
    return check::run_tests([] {
        worked_example();
        bound_on_sharp_rows();
        strided();
        head_free_entropy();
        json();
    });
}
