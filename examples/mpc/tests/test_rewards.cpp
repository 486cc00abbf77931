// test_rewards: the C++ tasks against dm_control itself, and tolerance() against its definition.
//
// tests/data/dmc_steps.txt holds control steps recorded from dm_control 1.0.50 (tools/
// dmc_reference.py): the state before the step, the action, the state after it and dm_control's
// reward. Each is replayed here from the recorded state: the state after Task::step must match,
// and Task::reward of it must be dm_control's reward.
#include "check.hpp"
#include "tasks.hpp"
#include "tolerance.hpp"

#include <cmath>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <vector>

namespace {

void test_tolerance() {
    using mpc::Sigmoid;
    using mpc::Tol;
    // Inside the bounds 1; at distance == margin, value_at_margin, for each sigmoid.
    MPC_CHECK(mpc::tolerance(0.5, Tol{0, 1, 1}) == 1.0, "inside");
    MPC_CHECK(std::fabs(mpc::tolerance(2.0, Tol{0, 1, 1}) - 0.1) < 1e-15, "gaussian at margin");
    MPC_CHECK(std::fabs(mpc::tolerance(-3.0, Tol{0, 0, 3, Sigmoid::linear, 0.5}) - 0.5) < 1e-15, "linear at margin");
    MPC_CHECK(mpc::tolerance(-3.0, Tol{0, 0, 3, Sigmoid::quadratic, 0.0}) == 0.0, "quadratic at margin 0");
    // Linear with value_at_margin 0 reaches 0 at the margin and stays there.
    MPC_CHECK(mpc::tolerance(25.0, Tol{10, mpc::inf, 10, Sigmoid::linear, 0.0}) == 1.0, "above an infinite upper bound");
    MPC_CHECK(std::fabs(mpc::tolerance(5.0, Tol{10, mpc::inf, 10, Sigmoid::linear, 0.0}) - 0.5) < 1e-15, "halfway");
    MPC_CHECK(mpc::tolerance(-1.0, Tol{10, mpc::inf, 10, Sigmoid::linear, 0.0}) == 0.0, "beyond the margin");
    // Gaussian: exp(-0.5*(d*sqrt(-2 ln v))^2) = v^(d^2).
    MPC_CHECK(std::fabs(mpc::tolerance(1.5, Tol{0, 0, 1}) - std::pow(0.1, 2.25)) < 1e-15, "gaussian in between");
    // Quadratic: 1 - d^2 (value_at_margin 0).
    MPC_CHECK(std::fabs(mpc::tolerance(0.3, Tol{0, 0, 1, Sigmoid::quadratic, 0.0}) - 0.91) < 1e-15, "quadratic");
    // Margin 0: a step; the argument checks of dm_control.
    MPC_CHECK(mpc::tolerance(1e-9, Tol{0, 0, 0}) == 0.0, "margin 0 outside");
    bool threw = false;
    try {
        (void)mpc::tolerance(0.0, Tol{1, 0, 1});
    } catch (const std::invalid_argument&) {
        threw = true;
    }
    MPC_CHECK(threw, "lower > upper must throw");
    threw = false;
    try {
        (void)mpc::tolerance(2.0, Tol{0, 0, 1, Sigmoid::gaussian, 1.0});
    } catch (const std::invalid_argument&) {
        threw = true;
    }
    MPC_CHECK(threw, "gaussian value_at_margin 1 must throw");
}

std::vector<double> take(std::istringstream& in, int n, const std::string& what) {
    std::vector<double> v(static_cast<std::size_t>(n));
    for (auto& x : v)
        if (!(in >> x)) throw std::runtime_error("short line reading " + what);
    return v;
}

void test_against_dm_control(const std::string& suite, const std::string& data_dir) {
    std::ifstream file(data_dir + "/dmc_steps.txt");
    MPC_CHECK(file.good(), "cannot open %s/dmc_steps.txt", data_dir.c_str());
    std::map<std::string, std::unique_ptr<mpc::Task>> tasks;
    std::map<std::string, mpc::DataPtr> datas;
    std::map<std::string, int> lines, positive;
    double worst_state = 0.0, worst_reward = 0.0;
    for (std::string line; std::getline(file, line);) {
        if (line.empty() || line[0] == '#') continue;
        std::istringstream in(line);
        std::string name;
        in >> name;
        if (!tasks.count(name)) {
            tasks[name] = mpc::Task::make(name, suite);
            datas[name] = tasks[name]->make_data();
        }
        const mpc::Task& task = *tasks[name];
        const mjModel* m = task.model();
        mjData* d = datas[name].get();
        const auto qpos = take(in, m->nq, "qpos"), qvel = take(in, m->nv, "qvel"), act = take(in, m->na, "act");
        const auto warm = take(in, m->nv, "qacc_warmstart"), ctrl = take(in, m->nu, "ctrl");
        const auto qpos1 = take(in, m->nq, "qpos'"), qvel1 = take(in, m->nv, "qvel'");
        (void)take(in, m->na, "act'");
        const double reward = take(in, 1, "reward")[0];
        std::copy(qpos.begin(), qpos.end(), d->qpos);
        std::copy(qvel.begin(), qvel.end(), d->qvel);
        std::copy(act.begin(), act.end(), d->act);
        std::copy(warm.begin(), warm.end(), d->qacc_warmstart);
        task.prepare(d);
        task.step(d, ctrl.data());
        for (int i = 0; i < m->nq; i++) worst_state = std::fmax(worst_state, std::fabs(d->qpos[i] - qpos1[static_cast<std::size_t>(i)]));
        for (int i = 0; i < m->nv; i++) worst_state = std::fmax(worst_state, std::fabs(d->qvel[i] - qvel1[static_cast<std::size_t>(i)]));
        const double r = task.reward(d);
        worst_reward = std::fmax(worst_reward, std::fabs(r - reward));
        MPC_CHECK(std::fabs(r - reward) <= 1e-9, "%s: reward %.17g, dm_control %.17g", name.c_str(), r, reward);
        lines[name]++;
        if (reward > 0.0) positive[name]++;
    }
    // Every task is covered, with rewards that are not all zero (so more than a clamped branch
    // of the reward is checked).
    for (const char* name : {"cartpole-swingup", "cheetah-run", "walker-walk", "humanoid-stand"}) {
        MPC_CHECK(lines[name] >= 10, "%s: only %d reference steps", name, lines[name]);
        MPC_CHECK(positive[name] >= 5, "%s: only %d positive reference rewards", name, positive[name]);
    }
    MPC_CHECK(worst_state <= 1e-8, "state after the step differs from dm_control's by %.3g", worst_state);
    std::printf("dm_control replay: %zu tasks, worst |state - dm_control| %.3g, worst |reward - dm_control| %.3g\n",
                tasks.size(), worst_state, worst_reward);
}

// The initial-state distributions: what dm_control's initialize_episode promises.
void test_initial_states(const std::string& suite) {
    mpc::Rng rng(7);
    {
        auto task = mpc::Task::make("cartpole-swingup", suite);
        auto d = task->make_data();
        task->reset(d.get(), rng);
        MPC_CHECK(std::fabs(d->qpos[1] - 3.14159265358979) < 0.1, "cartpole starts hanging down: hinge %g", d->qpos[1]);
        MPC_CHECK(std::fabs(d->qpos[0]) < 0.1, "cartpole starts centred: %g", d->qpos[0]);
        MPC_CHECK(task->time_limit_steps() == 1000 && task->substeps() == 1, "cartpole: 1000 steps of 0.01 s");
    }
    {
        auto task = mpc::Task::make("cheetah-run", suite);
        auto d = task->make_data();
        task->reset(d.get(), rng);
        MPC_CHECK(d->time == 0.0, "cheetah: time reset after settling");
        MPC_CHECK(task->time_limit_steps() == 1000 && task->action_dim() == 6, "cheetah: 1000 steps, 6 actions");
    }
    {
        auto task = mpc::Task::make("walker-walk", suite);
        MPC_CHECK(task->substeps() == 10 && task->time_limit_steps() == 1000, "walker: 10 substeps, 1000 steps");
    }
    {
        auto task = mpc::Task::make("humanoid-stand", suite);
        auto d = task->make_data();
        for (int i = 0; i < 3; i++) {
            task->reset(d.get(), rng);
            MPC_CHECK(d->ncon == 0, "humanoid starts without contacts (%d)", d->ncon);
        }
        MPC_CHECK(task->substeps() == 5 && task->action_dim() == 21, "humanoid: 5 substeps, 21 actions");
    }
    bool threw = false;
    try {
        (void)mpc::Task::make("no-such-task", suite);
    } catch (const std::runtime_error&) {
        threw = true;
    }
    MPC_CHECK(threw, "an unknown task must throw");
    threw = false;
    try {
        (void)mpc::Task::make("cheetah-run", "/nonexistent");
    } catch (const std::runtime_error&) {
        threw = true;
    }
    MPC_CHECK(threw, "a missing model must throw");
}

}  // namespace

int main() {
    try {
        const std::string suite = mpc_test::env("ERA_MPC_SUITE_DIR");
        test_tolerance();
        test_against_dm_control(suite, mpc_test::env("ERA_MPC_DATA"));
        test_initial_states(suite);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "test_rewards: %s\n", e.what());
        return 1;
    }
    std::printf("test_rewards: ok\n");
    return 0;
}
