// planner.hpp: two sampling planners over a true MuJoCo model, and the two ways of keeping their
// sampling distribution from collapsing.
//
// Both planners sample action sequences from a diagonal Gaussian with one row of (mean, log-std)
// per time row (a knot of the action spline for the cross-entropy planner, a control step for
// MPPI) and one column per action dimension, roll every sample out on the model (one mjData per
// thread), and refit the Gaussian to the best samples. The refit's log-stds then pass through a
// StdControl before the next round of samples is drawn:
//   - FloorControl: the usual per-coordinate floor (and ceiling) on the std;
//   - EraControl: the ERA Gaussian head (era.hpp) with rows = time rows and D = action dimension,
//     which gives every time row a Gaussian entropy of at least the target (docs/math.md in the
//     era repository, section "Gaussian head"), optionally learning delta from the entropy of the
//     distribution truncated to the action range.
#pragma once

#include "pool.hpp"
#include "tasks.hpp"

#include <era.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mpc {

/// Natural log of the Gaussian entropy constant: H(N(0, s^2)) = ln s + 0.5*ln(2*pi*e).
constexpr double kHalfLn2PiE = 0.5 * ERA_LN_2PI_E;

/// A counter-based normal generator: the same (seed, stream) gives the same numbers on any
/// thread, so a planner's result does not depend on the number of threads.
class Normal {
public:
    Normal(std::uint64_t seed, std::uint64_t stream) : state_(mix(seed ^ mix(stream + 0x9e3779b97f4a7c15ULL))) {}
    /// The next N(0, 1) draw (Box-Muller, both values used).
    double operator()();

private:
    static std::uint64_t mix(std::uint64_t z);
    std::uint64_t state_;
    double spare_ = 0.0;
    bool has_spare_ = false;
};

/// Keeps the sampling distribution alive: maps the refit's log-stds to the ones sampled from.
class StdControl {
public:
    virtual ~StdControl() = default;
    /// log_std [rows x dim] in: the elite refit; out: the distribution to sample.
    virtual void apply(std::vector<double>& log_std, int rows, int dim) = 0;
    /// After a planning step, the final distribution (mean, log_std [rows x dim]); the ERA
    /// control's delta learner reads it.
    virtual void observe(const std::vector<double>& mean, const std::vector<double>& log_std, int rows, int dim) {
        (void)mean, (void)log_std, (void)rows, (void)dim;
    }
    /// The current compensation delta (0 where there is none).
    virtual double delta() const { return 0.0; }
    /// True for the ERA control (its time is logged as ERA time).
    virtual bool is_era() const { return false; }
};

/// The per-coordinate floor: log_std <- clamp(log_std, ln(floor), log_std_max).
class FloorControl final : public StdControl {
public:
    FloorControl(double std_floor, double log_std_max);
    void apply(std::vector<double>& log_std, int rows, int dim) override;

private:
    double log_floor_, log_std_max_;
};

/// The ERA Gaussian head on the refit's log-stds, one row per time row.
///
/// The head computes out_i = clip(log_std_max + k*softmax(z)_i, log_std_min, log_std_max) with
/// k = S - D*log_std_max and S the log-std sum its target needs (docs/math.md, "Gaussian
/// forward"). The control feeds it z_i = ln(log_std_max - l_i) for the refit's log-stds l (kept
/// below log_std_max): then softmax(z)_i = (log_std_max - l_i) / sum_j (log_std_max - l_j) and
///     out_i = log_std_max - r*(log_std_max - l_i),  r = (D*log_std_max - S) / (D*log_std_max - sum_j l_j),
/// every coordinate's distance below the ceiling scaled by one factor: the refit comes back
/// unchanged when its entropy is the target, a collapsed refit is widened (most where it is
/// narrowest in absolute log terms), and the shape across dimensions is the elites'.
///
/// Two modes: Pin uses the head's output for every row, so each row's entropy is the target
/// (H0 + delta, more only where a coordinate is clipped), as ERA sets a policy's entropy; Min
/// keeps a row's refit when its entropy is already at least that of the head's output and uses
/// the head only for the rows that fell below, a lower bound on the entropy and nothing more.
class EraControl final : public StdControl {
public:
    enum class Mode { pin, min };
    /// target_std: the per-dimension std whose entropy is the per-row target,
    /// H0 = dim*(ln(target_std) + 0.5*ln(2*pi*e)); log-stds bounded to [log_std_min,
    /// log_std_max]; delta_lr > 0 learns delta (SGD) from the mean entropy of the distribution
    /// truncated to [low, high], 0 keeps delta at 0.
    EraControl(int dim, double target_std, double log_std_min, double log_std_max, double delta_lr, double low,
               double high, Mode mode = Mode::pin);
    void apply(std::vector<double>& log_std, int rows, int dim) override;
    void observe(const std::vector<double>& mean, const std::vector<double>& log_std, int rows, int dim) override;
    double delta() const override { return head_.delta(); }
    bool is_era() const override { return true; }
    /// The per-row target entropy H0.
    double target_entropy() const { return target_; }

private:
    era::GaussianHead head_;
    double target_, log_std_min_, log_std_max_, low_, high_;
    bool learn_;
    Mode mode_;
    std::vector<double> z_, out_, entropy_;
};

/// Settings shared by both planners.
struct PlannerSettings {
    int samples = 512;         ///< sampled action sequences per iteration
    int elites = 64;           ///< best samples the refit uses
    int iterations = 6;        ///< sample-and-refit rounds per planning step
    int horizon = 3;           ///< control steps rolled out
    int knots = 3;             ///< cross-entropy planner: spline knots (zero-order hold) over the horizon
    double temperature = 0.5;  ///< MPPI: elite weights exp(temperature*(G - max G))
    double std_init = 2.0;     ///< the std every coordinate starts from
    double discount = 0.99;    ///< per control step, on the rolled-out rewards
    std::uint64_t seed = 1;    ///< the sampling noise
};

/// What one planning step reports.
struct PlanLog {
    double entropy = 0.0;        ///< mean over time rows of the final Gaussian's entropy (nats per row)
    double trunc_entropy = 0.0;  ///< the same for the distribution truncated to [-1, 1]
    double delta = 0.0;          ///< ERA's delta after the step (0 for the floor)
    double plan_ms = 0.0;        ///< wall time of the planning step
    double era_ms = 0.0;         ///< the part spent in the ERA control (0 for the floor)
};

/// A sampling planner: call reset() at the start of an episode, then plan() once per control step.
class Planner {
public:
    virtual ~Planner() = default;
    /// Forget the warm start.
    virtual void reset() = 0;
    /// Plans from the state in `state` (with mj_step1's quantities, as after Task::step) and writes
    /// the action to take into action[0 .. nu).
    void plan(const mjData* state, double* action, PlanLog& log);
    /// "cem" or "mppi".
    virtual const char* name() const = 0;

protected:
    Planner(const Task& task, const PlannerSettings& settings, std::unique_ptr<StdControl> control, ThreadPool& pool,
            int rows);
    /// One planning step from state_ (already captured); the action into action.
    virtual void optimize(double* action) = 0;
    /// Draws samples_ [samples x rows x nu] = clamp(mean + exp(log_std)*eps, -1, 1) (sample 0 is the
    /// mean itself when keep_mean) and rolls each out; returns_ gets the discounted returns.
    void sample_and_evaluate(bool keep_mean);
    /// Indices of the `elites` best samples, best first.
    const std::vector<int>& rank_elites();
    /// The StdControl on log_std_ (timed as ERA time when it is the ERA control).
    void control_std();

    const Task& task_;
    PlannerSettings s_;
    std::unique_ptr<StdControl> control_;
    ThreadPool& pool_;
    const int rows_, nu_;
    std::vector<int> row_of_step_;  ///< time row of each control step of the horizon
    std::vector<double> mean_, log_std_;
    std::vector<double> samples_, returns_;
    std::vector<int> order_;
    std::uint64_t draws_ = 0;  ///< sample counter (noise stream id)
    double era_seconds_ = 0.0;

private:
    double rollout(int sample, int worker);
    std::vector<DataPtr> data_;
    std::vector<double> state_;
};

/// The cross-entropy planner in the manner of MuJoCo MPC's: a zero-order-hold spline of `knots`
/// action knots, sample 0 the nominal (the elite mean) itself, elite mean and unbiased variance
/// refit, the std kept alive by the StdControl, and a warm start that shifts the spline by the
/// elapsed control step. The action is the nominal's first knot.
std::unique_ptr<Planner> make_cem(const Task& task, const PlannerSettings& settings, std::unique_ptr<StdControl> control,
                                  ThreadPool& pool);
/// MPPI in the manner of TD-MPC2's plan(): mean warm-started from the previous step shifted by
/// one, std restarted at std_init, `iterations` rounds of `samples` clamped Gaussian samples, the
/// `elites` best weighted by exp(temperature*(G - max G)), weighted mean and std refit, the std
/// kept alive by the StdControl; the action is the first step of an elite drawn by weight.
std::unique_ptr<Planner> make_mppi(const Task& task, const PlannerSettings& settings,
                                   std::unique_ptr<StdControl> control, ThreadPool& pool);

}  // namespace mpc
