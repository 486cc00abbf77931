// test_planners: the std controls' guarantees, the noise generator, the planners' independence
// of the thread count, that they plan better than doing nothing, and their error paths.
#include "check.hpp"
#include "planner.hpp"
#include "tasks.hpp"

#include <cmath>
#include <random>
#include <vector>

namespace {

double row_sum(const std::vector<double>& l, int row, int dim) {
    double s = 0.0;
    for (int i = 0; i < dim; i++) s += l[static_cast<std::size_t>(row) * dim + i];
    return s;
}

// EraControl, pin mode: every row's Gaussian entropy is at least the target, and exactly it
// where nothing is clipped; a refit whose entropy is the target comes back unchanged.
void test_era_pin() {
    const int rows = 7, dim = 6;
    const double target_std = 0.1, log_std_max = std::log(2.0);
    mpc::EraControl era(dim, target_std, -8.0, log_std_max, 0.0, -1.0, 1.0);
    const double h0 = dim * (std::log(target_std) + mpc::kHalfLn2PiE);
    MPC_CHECK(std::fabs(era.target_entropy() - h0) < 1e-12, "target %g", era.target_entropy());
    std::mt19937_64 rng(3);
    std::uniform_real_distribution<double> u(-7.0, 0.6);
    for (int trial = 0; trial < 50; trial++) {
        std::vector<double> l(static_cast<std::size_t>(rows) * dim);
        for (auto& x : l) x = u(rng);
        era.apply(l, rows, dim);
        for (int r = 0; r < rows; r++) {
            const double h = row_sum(l, r, dim) + dim * mpc::kHalfLn2PiE;
            MPC_CHECK(h >= h0 - 1e-9, "row entropy %.12g below the target %.12g", h, h0);
            bool clipped = false;
            for (int i = 0; i < dim; i++) {
                const double x = l[static_cast<std::size_t>(r) * dim + i];
                MPC_CHECK(x <= log_std_max + 1e-12 && x >= -8.0, "bounds");
                clipped = clipped || x == -8.0;
            }
            if (!clipped) MPC_CHECK(std::fabs(h - h0) < 1e-9, "row entropy %.12g is not the target %.12g", h, h0);
            else MPC_CHECK(h > h0, "a clipped row has more than the target");
        }
    }
    // A refit already at the target: unchanged.
    std::vector<double> l = {std::log(0.05), std::log(0.2), std::log(0.1), std::log(0.1), std::log(0.1), std::log(0.1)};
    const std::vector<double> before = l;
    era.apply(l, 1, dim);
    for (int i = 0; i < dim; i++) MPC_CHECK(std::fabs(l[static_cast<std::size_t>(i)] - before[static_cast<std::size_t>(i)]) < 1e-12, "coordinate %d moved", i);
    // The widening keeps the order across dimensions and scales every distance below the ceiling
    // by one factor.
    l = {-6.0, -5.0, -4.0, -3.0, -2.0, -1.0};
    era.apply(l, 1, dim);
    const double ratio = (log_std_max - l[0]) / (log_std_max + 6.0);
    for (int i = 1; i < dim; i++) {
        MPC_CHECK(l[static_cast<std::size_t>(i)] > l[static_cast<std::size_t>(i - 1)], "order kept");
        const double r = (log_std_max - l[static_cast<std::size_t>(i)]) / (log_std_max - (-6.0 + i));
        MPC_CHECK(std::fabs(r - ratio) < 1e-9, "one factor: %g vs %g", r, ratio);
    }
    MPC_CHECK(ratio < 1.0, "a collapsed refit is widened");
}

// EraControl, min mode: rows above the target untouched; rows below lifted to it.
void test_era_min() {
    const int dim = 4;
    mpc::EraControl era(dim, 0.1, -8.0, 0.0, 0.0, -1.0, 1.0, mpc::EraControl::Mode::min);
    const double h0 = era.target_entropy();
    std::vector<double> l = {-1.0, -1.5, -0.5, -2.0,    // wide row: entropy above the target
                             -6.0, -7.0, -5.0, -6.5};  // collapsed row
    const std::vector<double> before = l;
    era.apply(l, 2, dim);
    for (int i = 0; i < dim; i++) MPC_CHECK(l[static_cast<std::size_t>(i)] == before[static_cast<std::size_t>(i)], "wide row changed");
    const double h = row_sum(l, 1, dim) + dim * mpc::kHalfLn2PiE;
    MPC_CHECK(std::fabs(h - h0) < 1e-9, "collapsed row lifted to the target: %g vs %g", h, h0);
}

// The delta learner: entropy of the truncated distribution below the target raises delta.
void test_era_delta() {
    const int rows = 3, dim = 2;
    mpc::EraControl era(dim, 0.5, -8.0, std::log(2.0), 0.5, -1.0, 1.0);
    std::vector<double> mean(static_cast<std::size_t>(rows) * dim, 0.95), l(mean.size(), std::log(0.5));
    // A mean near the bound truncates half the mass away: the truncated entropy is below H0.
    era.observe(mean, l, rows, dim);
    MPC_CHECK(era.delta() > 0.0, "delta rises when the truncated entropy is below the target (%g)", era.delta());
    mpc::EraControl fixed(dim, 0.5, -8.0, std::log(2.0), 0.0, -1.0, 1.0);
    fixed.observe(mean, l, rows, dim);
    MPC_CHECK(fixed.delta() == 0.0, "delta_lr 0 keeps delta");
}

void test_floor() {
    mpc::FloorControl floor(0.05, std::log(2.0));
    std::vector<double> l = {-10.0, std::log(0.05), -1.0, 3.0};
    floor.apply(l, 2, 2);
    MPC_CHECK(std::fabs(l[0] - std::log(0.05)) < 1e-15 && l[2] == -1.0 && std::fabs(l[3] - std::log(2.0)) < 1e-15, "clamp");
    bool threw = false;
    try {
        mpc::FloorControl bad(3.0, std::log(2.0));
    } catch (const std::invalid_argument&) {
        threw = true;
    }
    MPC_CHECK(threw, "a floor above the ceiling must throw");
    threw = false;
    try {
        mpc::EraControl infeasible(3, 5.0, -8.0, std::log(2.0), 0.0, -1.0, 1.0);  // 5 > exp(ln 2)
    } catch (const era::Error& e) {
        threw = e.status() == ERA_STATUS_INFEASIBLE_TARGET;
    }
    MPC_CHECK(threw, "an ERA target above the ceiling's entropy is ERA_STATUS_INFEASIBLE_TARGET");
}

void test_normal() {
    mpc::Normal a(5, 9), b(5, 9), c(5, 10);
    double sum = 0.0, sq = 0.0, differ = 0.0;
    const int n = 200000;
    for (int i = 0; i < n; i++) {
        const double x = a(), y = b(), z = c();
        MPC_CHECK(x == y, "same seed and stream, same draws");
        differ += std::fabs(x - z);
        sum += x;
        sq += x * x;
    }
    const double mean = sum / n, var = sq / n - mean * mean;
    // 5 standard errors: sd(mean) = 1/sqrt(n), sd(var) ~ sqrt(2/n).
    MPC_CHECK(std::fabs(mean) < 5.0 / std::sqrt(n), "mean %g", mean);
    MPC_CHECK(std::fabs(var - 1.0) < 5.0 * std::sqrt(2.0 / n), "variance %g", var);
    MPC_CHECK(differ > 0.5 * n, "another stream gives other draws");
}

std::unique_ptr<mpc::Planner> make(const std::string& kind, const mpc::Task& task, mpc::ThreadPool& pool, bool era) {
    mpc::PlannerSettings s;
    s.samples = 48;
    s.elites = 6;
    s.iterations = 2;
    s.horizon = kind == "cem" ? 8 : 3;
    s.knots = kind == "cem" ? 4 : 3;
    s.std_init = kind == "cem" ? 0.3 : 2.0;
    s.seed = 11;
    const double ceiling = kind == "cem" ? 0.0 : std::log(2.0);
    std::unique_ptr<mpc::StdControl> control;
    if (era) control = std::make_unique<mpc::EraControl>(task.action_dim(), 0.1, -8.0, ceiling, 0.5, -1.0, 1.0);
    else control = std::make_unique<mpc::FloorControl>(0.05, ceiling);
    return kind == "cem" ? mpc::make_cem(task, s, std::move(control), pool) : mpc::make_mppi(task, s, std::move(control), pool);
}

// Runs `steps` planned control steps from seed 5's initial state; returns the return and, in
// actions, every action taken.
double episode(const mpc::Task& task, mpc::Planner* planner, int steps, std::vector<double>& actions, double* min_entropy) {
    mpc::Rng rng(5);
    auto d = task.make_data();
    task.reset(d.get(), rng);
    std::vector<double> a(static_cast<std::size_t>(task.action_dim()), 0.0);
    double ret = 0.0;
    if (min_entropy) *min_entropy = 1e300;
    if (planner) planner->reset();
    double delta = 0.0;  // the delta the step's distribution was made with: the previous step's
    for (int t = 0; t < steps; t++) {
        if (planner) {
            mpc::PlanLog log;
            planner->plan(d.get(), a.data(), log);
            MPC_CHECK(log.plan_ms > 0.0 && std::isfinite(log.entropy) && std::isfinite(log.trunc_entropy), "plan log");
            if (min_entropy) *min_entropy = std::fmin(*min_entropy, log.entropy - delta);
            delta = log.delta;
        }
        actions.insert(actions.end(), a.begin(), a.end());
        task.step(d.get(), a.data());
        ret += task.reward(d.get());
    }
    return ret;
}

void test_planners(const std::string& suite) {
    auto task = mpc::Task::make("cheetah-run", suite);
    mpc::ThreadPool one(1), two(2);
    std::vector<double> idle_actions;
    const double idle = episode(*task, nullptr, 40, idle_actions, nullptr);
    for (const char* kind : {"cem", "mppi"}) {
        for (bool era : {false, true}) {
            std::vector<double> a1, a2;
            double h_min = 0.0;
            auto p1 = make(kind, *task, one, era);
            auto p2 = make(kind, *task, two, era);
            const double r1 = episode(*task, p1.get(), 40, a1, &h_min);
            const double r2 = episode(*task, p2.get(), 40, a2, nullptr);
            MPC_CHECK(a1 == a2 && r1 == r2, "%s %s: 1 and 2 threads must plan the same actions", kind, era ? "era" : "floor");
            MPC_CHECK(r1 > idle, "%s %s: return %g is not above doing nothing (%g)", kind, era ? "era" : "floor", r1, idle);
            if (era) {
                const double h0 = 6 * (std::log(0.1) + mpc::kHalfLn2PiE);
                MPC_CHECK(h_min >= h0 - 1e-9, "%s era: entropy - delta %g below H0 %g", kind, h_min, h0);
            }
            std::printf("%s %-5s: return %.3f over 40 steps (doing nothing: %.3f)\n", kind, era ? "era" : "floor", r1, idle);
        }
    }
    // Invalid settings.
    int threw = 0;
    for (int which = 0; which < 3; which++) {
        mpc::PlannerSettings s;
        if (which == 0) s.elites = s.samples + 1;
        if (which == 1) s.knots = s.horizon + 1;
        if (which == 2) s.discount = 1.5;
        try {
            (void)(which == 1 ? mpc::make_cem(*task, s, std::make_unique<mpc::FloorControl>(0.05, 0.0), one)
                              : mpc::make_mppi(*task, s, std::make_unique<mpc::FloorControl>(0.05, 0.0), one));
        } catch (const std::invalid_argument&) {
            threw++;
        }
    }
    MPC_CHECK(threw == 3, "invalid planner settings must throw (%d of 3 did)", threw);
}

}  // namespace

int main() {
    try {
        test_era_pin();
        test_era_min();
        test_era_delta();
        test_floor();
        test_normal();
        test_planners(mpc_test::env("ERA_MPC_SUITE_DIR"));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "test_planners: %s\n", e.what());
        return 1;
    }
    std::printf("test_planners: ok\n");
    return 0;
}
