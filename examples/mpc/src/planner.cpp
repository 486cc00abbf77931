// planner.cpp: the cross-entropy and MPPI planners and the two std controls (planner.hpp).
#include "planner.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace mpc {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// ln of a std from a variance; an all-equal elite set (variance 0) becomes a very narrow but
// finite log-std, which the std control then lifts.
double log_std_of_variance(double variance) { return variance > 1e-60 ? 0.5 * std::log(variance) : -69.0; }

}  // namespace

// ---- Normal ----------------------------------------------------------------------------------

std::uint64_t Normal::mix(std::uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

double Normal::operator()() {
    if (has_spare_) {
        has_spare_ = false;
        return spare_;
    }
    auto uniform = [this] {
        state_ += 0x9e3779b97f4a7c15ULL;
        return (static_cast<double>(mix(state_) >> 11) + 0.5) * 0x1.0p-53;  // in (0, 1)
    };
    const double u1 = uniform(), u2 = uniform();
    const double radius = std::sqrt(-2.0 * std::log(u1)), angle = 6.283185307179586 * u2;
    spare_ = radius * std::sin(angle);
    has_spare_ = true;
    return radius * std::cos(angle);
}

// ---- std controls ------------------------------------------------------------------------------

FloorControl::FloorControl(double std_floor, double log_std_max) : log_floor_(std::log(std_floor)), log_std_max_(log_std_max) {
    if (!(std_floor > 0.0) || !(log_floor_ < log_std_max)) throw std::invalid_argument("floor: need 0 < floor < exp(log_std_max)");
}

void FloorControl::apply(std::vector<double>& log_std, int rows, int dim) {
    const std::size_t n = static_cast<std::size_t>(rows) * dim;
    for (std::size_t i = 0; i < n; i++) log_std[i] = std::clamp(log_std[i], log_floor_, log_std_max_);
}

EraControl::EraControl(int dim, double target_std, double log_std_min, double log_std_max, double delta_lr, double low,
                       double high, Mode mode)
    : head_(delta_lr > 0.0 ? era::GaussianConfig{dim, dim * (std::log(target_std) + kHalfLn2PiE)}
                                 .log_std_bounds(log_std_min, log_std_max)
                                 .delta_sgd(delta_lr)
                           : era::GaussianConfig{dim, dim * (std::log(target_std) + kHalfLn2PiE)}
                                 .log_std_bounds(log_std_min, log_std_max)
                                 .delta_fixed()),
      target_(dim * (std::log(target_std) + kHalfLn2PiE)),
      log_std_min_(log_std_min),
      log_std_max_(log_std_max),
      low_(low),
      high_(high),
      learn_(delta_lr > 0.0),
      mode_(mode) {}

void EraControl::apply(std::vector<double>& log_std, int rows, int dim) {
    const std::size_t n = static_cast<std::size_t>(rows) * dim;
    z_.resize(n);
    out_.resize(n);
    // z_i = ln(log_std_max - l_i): the head then scales each coordinate's distance below the
    // ceiling by one factor per row (planner.hpp). The distance is kept positive so that z is
    // finite; a coordinate at the ceiling stays there.
    for (std::size_t i = 0; i < n; i++) z_[i] = std::log(std::max(log_std_max_ - log_std[i], 1e-12));
    head_.forward(z_, out_, era::Shape{rows, dim});
    for (int r = 0; r < rows; r++) {
        double* l = &log_std[static_cast<std::size_t>(r) * dim];
        const double* out = &out_[static_cast<std::size_t>(r) * dim];
        double refit = 0.0, head = 0.0;
        for (int i = 0; i < dim; i++) {
            l[i] = std::clamp(l[i], log_std_min_, log_std_max_);
            refit += l[i];
            head += out[i];
        }
        if (mode_ == Mode::pin || refit < head) std::copy(out, out + dim, l);
    }
}

void EraControl::observe(const std::vector<double>& mean, const std::vector<double>& log_std, int rows, int dim) {
    if (!learn_) return;
    entropy_.resize(static_cast<std::size_t>(rows));
    era::truncated_normal_entropy(mean, log_std, low_, high_, entropy_, era::Shape{rows, dim});
    double sum = 0.0;
    for (double h : entropy_) sum += h;
    head_.update_delta(sum / rows);
}

// ---- Planner -----------------------------------------------------------------------------------

Planner::Planner(const Task& task, const PlannerSettings& settings, std::unique_ptr<StdControl> control, ThreadPool& pool,
                 int rows)
    : task_(task), s_(settings), control_(std::move(control)), pool_(pool), rows_(rows), nu_(task.action_dim()) {
    if (s_.samples < 2 || s_.elites < 2 || s_.elites > s_.samples) throw std::invalid_argument("need 2 <= elites <= samples");
    if (s_.iterations < 1 || s_.horizon < 1 || rows_ < 1 || rows_ > s_.horizon) throw std::invalid_argument("need iterations, horizon >= 1 and 1 <= knots <= horizon");
    if (!(s_.std_init > 0.0) || !(s_.discount > 0.0 && s_.discount <= 1.0)) throw std::invalid_argument("need std_init > 0 and discount in (0, 1]");
    const mjModel* m = task_.model();
    for (int w = 0; w < pool_.threads(); w++) data_.push_back(task_.make_data());
    state_.resize(static_cast<std::size_t>(mj_stateSize(m, mjSTATE_INTEGRATION)));
    row_of_step_.resize(static_cast<std::size_t>(s_.horizon));
    for (int t = 0; t < s_.horizon; t++) row_of_step_[t] = static_cast<int>(static_cast<long>(t) * rows_ / s_.horizon);
    const std::size_t n = static_cast<std::size_t>(rows_) * nu_;
    mean_.assign(n, 0.0);
    log_std_.assign(n, std::log(s_.std_init));
    samples_.resize(static_cast<std::size_t>(s_.samples) * n);
    returns_.resize(static_cast<std::size_t>(s_.samples));
    order_.resize(static_cast<std::size_t>(s_.samples));
}

void Planner::plan(const mjData* state, double* action, PlanLog& log) {
    const Clock::time_point start = Clock::now();
    era_seconds_ = 0.0;
    mj_getState(task_.model(), state, state_.data(), mjSTATE_INTEGRATION);
    optimize(action);
    if (control_->is_era()) {
        const Clock::time_point t = Clock::now();
        control_->observe(mean_, log_std_, rows_, nu_);
        era_seconds_ += seconds_since(t);
    } else {
        control_->observe(mean_, log_std_, rows_, nu_);
    }
    log.plan_ms = 1e3 * seconds_since(start);
    log.era_ms = 1e3 * era_seconds_;
    // What is logged (outside the timed step): the final distribution's entropy per time row.
    double sum = 0.0;
    for (double l : log_std_) sum += l;
    log.entropy = sum / rows_ + nu_ * kHalfLn2PiE;
    std::vector<double> entropy(static_cast<std::size_t>(rows_));
    era::truncated_normal_entropy(mean_, log_std_, -1.0, 1.0, entropy, era::Shape{rows_, nu_});
    sum = 0.0;
    for (double h : entropy) sum += h;
    log.trunc_entropy = sum / rows_;
    log.delta = control_->delta();
}

void Planner::control_std() {
    if (control_->is_era()) {
        const Clock::time_point t = Clock::now();
        control_->apply(log_std_, rows_, nu_);
        era_seconds_ += seconds_since(t);
    } else {
        control_->apply(log_std_, rows_, nu_);
    }
}

void Planner::sample_and_evaluate(bool keep_mean) {
    const std::size_t n = static_cast<std::size_t>(rows_) * nu_;
    std::vector<double> std_dev(n);
    for (std::size_t i = 0; i < n; i++) std_dev[i] = std::exp(log_std_[i]);
    const double* range = task_.model()->actuator_ctrlrange;
    const std::uint64_t first = draws_;
    draws_ += static_cast<std::uint64_t>(s_.samples);
    pool_.parallel_for(s_.samples, [&](int k, int worker) {
        double* a = &samples_[static_cast<std::size_t>(k) * n];
        Normal normal(s_.seed, first + static_cast<std::uint64_t>(k));
        const bool noise = !(keep_mean && k == 0);
        for (std::size_t i = 0; i < n; i++) {
            const int u = static_cast<int>(i % static_cast<std::size_t>(nu_));
            const double x = mean_[i] + (noise ? std_dev[i] * normal() : 0.0);
            a[i] = std::clamp(x, range[2 * u], range[2 * u + 1]);
        }
        returns_[static_cast<std::size_t>(k)] = rollout(k, worker);
    });
}

double Planner::rollout(int sample, int worker) {
    const mjModel* m = task_.model();
    mjData* d = data_[static_cast<std::size_t>(worker)].get();
    mj_setState(m, d, state_.data(), mjSTATE_INTEGRATION);
    task_.prepare(d);
    const double* a = &samples_[static_cast<std::size_t>(sample) * rows_ * nu_];
    double total = 0.0, weight = 1.0;
    for (int t = 0; t < s_.horizon; t++) {
        task_.step(d, a + static_cast<std::size_t>(row_of_step_[t]) * nu_);
        total += weight * task_.reward(d);
        weight *= s_.discount;
    }
    // A rollout that diverged (MuJoCo resets on bad states and warns) counts as the worst.
    return std::isfinite(total) ? total : -std::numeric_limits<double>::infinity();
}

const std::vector<int>& Planner::rank_elites() {
    for (int k = 0; k < s_.samples; k++) order_[static_cast<std::size_t>(k)] = k;
    std::partial_sort(order_.begin(), order_.begin() + s_.elites, order_.end(), [&](int a, int b) {
        const double ra = returns_[static_cast<std::size_t>(a)], rb = returns_[static_cast<std::size_t>(b)];
        return ra > rb || (ra == rb && a < b);
    });
    return order_;
}

// ---- cross-entropy (MuJoCo MPC style) ------------------------------------------------------------

namespace {

class CrossEntropy final : public Planner {
public:
    CrossEntropy(const Task& task, const PlannerSettings& s, std::unique_ptr<StdControl> control, ThreadPool& pool)
        : Planner(task, s, std::move(control), pool, s.knots) {}
    const char* name() const override { return "cem"; }
    void reset() override {
        started_ = false;
        std::fill(mean_.begin(), mean_.end(), 0.0);
        std::fill(log_std_.begin(), log_std_.end(), std::log(s_.std_init));
    }

protected:
    void optimize(double* action) override {
        if (started_) shift();
        started_ = true;
        const std::size_t n = static_cast<std::size_t>(rows_) * nu_;
        const int e = s_.elites;
        for (int it = 0; it < s_.iterations; it++) {
            sample_and_evaluate(true);
            const std::vector<int>& order = rank_elites();
            for (std::size_t i = 0; i < n; i++) {
                double avg = 0.0;
                for (int j = 0; j < e; j++) avg += samples_[static_cast<std::size_t>(order[j]) * n + i];
                avg /= e;
                double var = 0.0;
                for (int j = 0; j < e; j++) {
                    const double diff = samples_[static_cast<std::size_t>(order[j]) * n + i] - avg;
                    var += diff * diff;
                }
                mean_[i] = avg;
                log_std_[i] = log_std_of_variance(var / (e - 1));
            }
            control_std();
        }
        std::copy(mean_.begin(), mean_.begin() + nu_, action);
    }

private:
    // The warm start: the spline's knots sit at t_j = j*horizon/knots control steps; one control
    // step later knot j takes the (zero-order-hold) value of the old spline at t_j + 1.
    void shift() {
        const std::vector<double> mean = mean_, log_std = log_std_;
        for (int j = 0; j < rows_; j++) {
            const double t = static_cast<double>(j) * s_.horizon / rows_ + 1.0;
            const int from = std::min(rows_ - 1, static_cast<int>(std::floor(t * rows_ / s_.horizon)));
            for (int u = 0; u < nu_; u++) {
                mean_[static_cast<std::size_t>(j) * nu_ + u] = mean[static_cast<std::size_t>(from) * nu_ + u];
                log_std_[static_cast<std::size_t>(j) * nu_ + u] = log_std[static_cast<std::size_t>(from) * nu_ + u];
            }
        }
    }
    bool started_ = false;
};

// ---- MPPI (TD-MPC2 style) ---------------------------------------------------------------------

class Mppi final : public Planner {
public:
    Mppi(const Task& task, const PlannerSettings& s, std::unique_ptr<StdControl> control, ThreadPool& pool)
        : Planner(task, s, std::move(control), pool, s.horizon), previous_(mean_.size(), 0.0), score_(s.elites) {}
    const char* name() const override { return "mppi"; }
    void reset() override {
        started_ = false;
        step_ = 0;
    }

protected:
    void optimize(double* action) override {
        const std::size_t n = static_cast<std::size_t>(rows_) * nu_;
        // Warm start: the previous mean shifted by one step, the last step 0; std restarts.
        std::fill(mean_.begin(), mean_.end(), 0.0);
        if (started_) std::copy(previous_.begin() + nu_, previous_.end(), mean_.begin());
        started_ = true;
        std::fill(log_std_.begin(), log_std_.end(), std::log(s_.std_init));
        const int e = s_.elites;
        for (int it = 0; it < s_.iterations; it++) {
            sample_and_evaluate(false);
            const std::vector<int>& order = rank_elites();
            const double best = returns_[static_cast<std::size_t>(order[0])];
            double total = 0.0;
            for (int j = 0; j < e; j++) {
                const double g = returns_[static_cast<std::size_t>(order[j])];
                score_[static_cast<std::size_t>(j)] = std::isfinite(g) ? std::exp(s_.temperature * (g - best)) : 0.0;
                total += score_[static_cast<std::size_t>(j)];
            }
            for (double& w : score_) w /= total;
            for (std::size_t i = 0; i < n; i++) {
                double m = 0.0;
                for (int j = 0; j < e; j++) m += score_[static_cast<std::size_t>(j)] * samples_[static_cast<std::size_t>(order[j]) * n + i];
                m /= 1.0 + 1e-9;  // TD-MPC2 divides by (sum of scores + 1e-9); the scores sum to 1
                double var = 0.0;
                for (int j = 0; j < e; j++) {
                    const double diff = samples_[static_cast<std::size_t>(order[j]) * n + i] - m;
                    var += score_[static_cast<std::size_t>(j)] * diff * diff;
                }
                mean_[i] = m;
                log_std_[i] = log_std_of_variance(var / (1.0 + 1e-9));
            }
            control_std();
        }
        // The action: the first step of one elite, drawn with probability score.
        Normal draw(s_.seed ^ 0x5bd1e995ULL, step_++);
        const double u = 0.5 * (1.0 + std::erf(draw() / std::sqrt(2.0)));  // uniform from a normal draw
        const int chosen = pick(u);
        std::copy_n(&samples_[static_cast<std::size_t>(order_[static_cast<std::size_t>(chosen)]) * n], nu_, action);
        previous_ = mean_;
    }

private:
    int pick(double u) const {
        double c = 0.0;
        for (int j = 0; j < s_.elites; j++) {
            c += score_[static_cast<std::size_t>(j)];
            if (u < c) return j;
        }
        return 0;
    }
    std::vector<double> previous_, score_;
    bool started_ = false;
    std::uint64_t step_ = 0;
};

}  // namespace

std::unique_ptr<Planner> make_cem(const Task& task, const PlannerSettings& settings, std::unique_ptr<StdControl> control,
                                  ThreadPool& pool) {
    return std::make_unique<CrossEntropy>(task, settings, std::move(control), pool);
}

std::unique_ptr<Planner> make_mppi(const Task& task, const PlannerSettings& settings,
                                   std::unique_ptr<StdControl> control, ThreadPool& pool) {
    return std::make_unique<Mppi>(task, settings, std::move(control), pool);
}

}  // namespace mpc
