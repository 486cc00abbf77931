// era::GaussianHead: the worked example of docs/math.md (D = 3, H0 = -1.5, bounds
// [-5, 0]) through every overload, the entropy, delta as an input tensor, the delta
// learner, JSON and ownership.
#include "check.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

namespace {

const double L2PE = 2.8378770664093453;  // ln(2*pi*e)
const std::array<double, 3> Z = {0.5, -1.0, 2.0};
const std::array<double, 3> OUT = {-1.009114, -0.225164, -4.522537};
const std::array<double, 3> G = {1.0, 2.0, -1.0};
const std::array<double, 3> DZ = {-1.546046, -0.570133, 2.116179};
const double DDELTA = -0.532081;

era::GaussianConfig worked() { return era::GaussianConfig{3, -1.5}.log_std_bounds(-5, 0).delta_fixed(); }

void forward_backward() {
    era::GaussianHead head(worked());

    SECTION("forward: std::array, std::vector, C array, allocating");
    std::array<double, 3> out{};
    head.forward(Z, out, {3});
    CHECK_ALL_CLOSE(out, OUT, 1e-6);
    std::vector<double> z(Z.begin(), Z.end()), vout(3);
    head.forward(z, vout, {z.size() / 3, 3});
    CHECK_ALL_CLOSE(vout, OUT, 1e-6);
    double cz[3] = {0.5, -1.0, 2.0}, cout[3] = {0, 0, 0};
    head.forward(cz, cout, {1, 3});
    CHECK_ALL_CLOSE(cout, OUT, 1e-6);
    std::vector<double> fresh = head.forward(z, {1, 3});
    CHECK_ALL_CLOSE(fresh, OUT, 1e-6);

    SECTION("forward: float");
    std::vector<float> zf = {0.5f, -1.0f, 2.0f}, outf(3);
    head.forward(zf, outf, {3});
    CHECK_ALL_CLOSE(outf, OUT, 1e-5);

    SECTION("forward: several rows, in place");
    std::vector<double> rows;
    for (int r = 0; r < 4; r++) rows.insert(rows.end(), Z.begin(), Z.end());
    head.forward(era::view(rows, {4, 3}), era::view(rows, {4, 3}));  // out may alias z
    for (int r = 0; r < 4; r++) CHECK_ALL_CLOSE(std::vector<double>(rows.begin() + 3 * r, rows.begin() + 3 * r + 3), OUT, 1e-6);

    SECTION("backward");
    std::array<double, 3> dz{};
    head.backward(Z, G, dz, {3});
    CHECK_ALL_CLOSE(dz, DZ, 1e-6);
    CHECK_ALL_CLOSE(head.backward(z, std::vector<double>(G.begin(), G.end()), {1, 3}), DZ, 1e-6);
    std::vector<float> gf = {1.f, 2.f, -1.f}, dzf(3);
    head.backward(zf, gf, dzf, {3});
    CHECK_ALL_CLOSE(dzf, DZ, 1e-5);

    SECTION("backward: DLTensor overload");
    std::int64_t shape[1] = {3};
    double dz2[3] = {0, 0, 0};
    DLTensor tz{const_cast<double*>(Z.data()), {kDLCPU, 0}, 1, {kDLFloat, 64, 1}, shape, nullptr, 0};
    DLTensor tg = tz, tdz = tz;
    tg.data = const_cast<double*>(G.data());
    tdz.data = dz2;
    head.backward(tz, tg, tdz);
    CHECK_ALL_CLOSE(dz2, DZ, 1e-6);
}

void entropy() {
    era::GaussianHead head(worked());
    SECTION("entropy: sum(out) + 1.5 ln(2 pi e) = H0");
    std::vector<double> out = head.forward(Z, {1, 3}), h(1);
    head.entropy(out, h, {1, 3});
    CHECK_CLOSE(h[0], out[0] + out[1] + out[2] + 1.5 * L2PE, 1e-12);
    CHECK_CLOSE(h[0], -1.5, 1e-5);
    CHECK_CLOSE(head.entropy(out, {3})[0], -1.5, 1e-5);
    CHECK_CLOSE(era::gaussian_entropy(out, {1, 3})[0], -1.5, 1e-5);

    SECTION("truncated normal with infinite bounds is the Gaussian");
    std::vector<double> mean(3, 0.0), th(1);
    era::truncated_normal_entropy(mean, out, -INFINITY, INFINITY, th, {1, 3});
    CHECK_CLOSE(th[0], -1.5, 1e-5);
    SECTION("truncated normal: a wide uniform-like interval");
    std::vector<double> ls = {0.0}, tu(1);  // TN(0, 1, [-1e-3, 1e-3]) is nearly uniform: ln(2e-3)
    era::truncated_normal_entropy(std::vector<double>{0.0}, ls, -1e-3, 1e-3, tu, {1});
    CHECK_CLOSE(tu[0], std::log(2e-3), 1e-6);
}

void delta_input() {
    era::GaussianHead head(worked());
    SECTION("forward_delta / backward_delta with one delta");
    std::vector<double> out(3), dz(3);
    head.forward_delta(Z, 0.0, out, {3});
    CHECK_ALL_CLOSE(out, OUT, 1e-6);
    double dd = head.backward_delta(Z, 0.0, G, dz, {3});
    CHECK_ALL_CLOSE(dz, DZ, 1e-6);
    CHECK_CLOSE(dd, DDELTA, 1e-6);

    SECTION("forward_delta raises the entropy by delta");
    head.forward_delta(Z, 0.75, out, {3});
    CHECK_CLOSE(head.entropy(out, {3})[0], -1.5 + 0.75, 1e-9);

    SECTION("one delta per row (views)");
    std::vector<double> z2 = {0.5, -1.0, 2.0, 0.5, -1.0, 2.0}, d2 = {0.0, 0.0}, g2 = {1, 2, -1, 1, 2, -1}, out2(6),
                        dz2(6), gd2(2);
    head.forward_delta(era::view(z2, {2, 3}), era::view(d2), era::view(out2, {2, 3}));
    CHECK_ALL_CLOSE(std::vector<double>(out2.begin() + 3, out2.end()), OUT, 1e-6);
    head.backward_delta(era::view(z2, {2, 3}), era::view(d2), era::view(g2, {2, 3}), era::view(dz2, {2, 3}),
                        era::view(gd2));
    CHECK_ALL_CLOSE(gd2, (std::array<double, 2>{DDELTA, DDELTA}), 1e-6);
    SECTION("grad_delta left out");
    std::fill(dz2.begin(), dz2.end(), 0.0);
    head.backward_delta(era::view(z2, {2, 3}), era::view(d2), era::view(g2, {2, 3}), era::view(dz2, {2, 3}));
    CHECK_ALL_CLOSE(std::vector<double>(dz2.begin(), dz2.begin() + 3), DZ, 1e-6);
}

void masked() {
    era::GaussianHead head(worked());
    SECTION("forward_masked: a row of ones is forward_delta, a row with one active coordinate is constant");
    // row 0 all active (the worked example); row 1: only the middle one (a = 1 of D = 3)
    std::vector<double> z = {0.5, -1.0, 2.0, 0.5, -1.0, 2.0}, m = {1, 1, 1, 0, 1, 0}, d = {0.0, 0.0},
                        g = {1, 2, -1, 1, 2, -1}, out(6), dz(6), gd(2);
    const double fill = 7.0;
    head.forward_masked(era::view(z, {2, 3}), era::view(m, {2, 3}), era::view(d), era::view(out, {2, 3}), &fill);
    CHECK_ALL_CLOSE(std::vector<double>(out.begin(), out.begin() + 3), OUT, 1e-6);
    const double one = std::max(-1.5 / 3 - 0.5 * L2PE, -5.0);  // (H0 + delta)/D - L2PE/2
    CHECK_ALL_CLOSE(std::vector<double>(out.begin() + 3, out.end()), (std::array<double, 3>{fill, one, fill}), 1e-12);
    head.backward_masked(era::view(z, {2, 3}), era::view(m, {2, 3}), era::view(d), era::view(g, {2, 3}),
                         era::view(dz, {2, 3}), era::view(gd), &fill);
    CHECK_ALL_CLOSE(std::vector<double>(dz.begin(), dz.begin() + 3), DZ, 1e-6);
    CHECK_ALL_CLOSE(std::vector<double>(dz.begin() + 3, dz.end()), (std::array<double, 3>{0, 0, 0}), 0.0);
    CHECK_ALL_CLOSE(gd, (std::array<double, 2>{DDELTA, 2.0 / 3.0}), 1e-6);
    SECTION("forward_masked: pass-through and the stored delta");
    head.forward_masked(era::view(z, {2, 3}), era::view(m, {2, 3}), era::ConstView<double>(), era::view(out, {2, 3}));
    CHECK(out[3] == z[3] && out[5] == z[5]);
    SECTION("forward_masked: a mask entry other than 0 or 1 throws");
    m[0] = 0.5;
    bool threw = false;
    try {
        head.forward_masked(era::view(z, {2, 3}), era::view(m, {2, 3}), era::view(d), era::view(out, {2, 3}));
    } catch (const era::Error& e) {
        threw = e.status() == ERA_STATUS_INVALID_ARGUMENT;
    }
    CHECK(threw);
}

void delta_learning() {
    SECTION("delta: set, get, fixed optimizer");
    era::GaussianHead fixed(worked());
    CHECK(fixed.delta() == 0.0);
    fixed.set_delta(0.25);
    CHECK(fixed.delta() == 0.25);
    CHECK(fixed.config().delta() == 0.25);
    CHECK(fixed.update_delta(-9.0) == 0.25);

    SECTION("delta: SGD step and the feasibility clamp");
    era::GaussianHead sgd(worked().delta_sgd(0.5));
    CHECK(sgd.config().delta_optimizer() == era::DeltaOptimizer::sgd);
    CHECK_CLOSE(sgd.update_delta(-2.5), 0.5, 1e-12);  // 0 - 0.5*(-2.5 - (-1.5))
    const double max_delta = 3 * (0.0 + 0.5 * L2PE) + 1.5;
    CHECK_CLOSE(sgd.update_delta(-20.0), max_delta, 1e-9);
    CHECK(sgd.delta() <= max_delta);

    SECTION("delta: Adam's first step moves by lr");
    era::GaussianHead adam(worked().delta_adam(0.05));
    CHECK_CLOSE(adam.update_delta(-3.0), 0.05, 1e-6);
}

void json_and_ownership() {
    SECTION("JSON round trip keeps delta");
    era::GaussianHead head(worked().delta_sgd(0.5));
    head.set_delta(0.3);
    std::string json = head.to_json();
    era::GaussianHead loaded = era::GaussianHead::from_json(json);
    CHECK(loaded.delta() == 0.3);
    CHECK(loaded.to_json() == json);
    CHECK(loaded.config().dim() == 3 && loaded.config().log_std_min() == -5.0);
    CHECK_ALL_CLOSE(loaded.forward(Z, {3}), head.forward(Z, {3}), 0.0);

    SECTION("move, release, adopt");
    era::GaussianHead moved = std::move(loaded);
    CHECK(static_cast<bool>(moved));
    CHECK(!static_cast<bool>(loaded));  // NOLINT: moved-from is empty by contract
    EraHead* raw = moved.release();
    CHECK(!moved && raw != nullptr);
    era::GaussianHead again = era::GaussianHead::adopt(raw);
    CHECK(again.get() == raw && again.delta() == 0.3);
    again = era::GaussianHead(worked());
    CHECK(again.delta() == 0.0);
}

}  // namespace

int main() {
    return check::run_tests([] {
        forward_backward();
        entropy();
        delta_input();
        masked();
        delta_learning();
        json_and_ownership();
    });
}
