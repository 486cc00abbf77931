// era_mpc: runs sampling planners with a per-coordinate std floor or the ERA Gaussian head on
// dm_control tasks, and logs every episode and planning step as CSV.
//
//   era_mpc --task walker-walk --planner mppi --variant era --setting 0.05 --seeds 1,2,3 --out runs/
//
// Options (defaults in brackets; the planner defaults are MuJoCo MPC's and TD-MPC2's, see
// README.md):
//   --task NAME          cartpole-swingup, cheetah-run, walker-stand, walker-walk, humanoid-stand,
//                        humanoid-walk [cartpole-swingup]
//   --planner cem|mppi   [mppi]
//   --variant V          floor: per-coordinate std floor; era: the ERA Gaussian head sets every
//                        time row's entropy to the target; era-min: the head only on rows whose
//                        refit fell below the target [floor]
//   --setting X          floor: the std floor; era, era-min: the per-dimension std whose entropy
//                        is the per-row target [cem 0.1, mppi 0.05]
//   --delta-lr X         era: SGD learning rate of delta on the truncated entropy, 0 = fixed [0.5]
//   --seeds A,B,...      [1]           --episodes N    per seed [1]
//   --steps N            control steps per episode [the task's dm_control length]
//   --threads N          [2]           --samples N     [cem 64, mppi 512]
//   --elites N           [cem samples/10 (at least 2), mppi 64]
//   --iterations N       [cem 1, mppi 6]           --horizon N   control steps [cem 25, mppi 3]
//   --knots N            cem spline knots [cem 5]  --std-init X  [cem 0.3, mppi 2]
//   --suite-dir DIR      dm_control/suite [ERA_MPC_SUITE_DIR, else the one found at build time]
//   --out DIR            append to DIR/episodes.csv and DIR/steps.csv [no files]
//   --quiet              no per-episode line on stdout
#include "planner.hpp"
#include "tasks.hpp"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <sys/stat.h>
#include <vector>

#ifndef ERA_MPC_SUITE_DIR
#define ERA_MPC_SUITE_DIR ""
#endif

namespace {

struct Options {
    std::string task = "cartpole-swingup", planner = "mppi", variant = "floor", out, suite_dir;
    std::string setting;  // as given, so that the logs group on the exact string
    std::vector<unsigned> seeds = {1};
    int episodes = 1, steps = 0, threads = 2;
    int samples = 0, elites = 0, iterations = 0, horizon = 0, knots = 0;
    double std_init = 0.0, delta_lr = 0.5;
    bool quiet = false;
};

[[noreturn]] void usage(const std::string& why) {
    throw std::invalid_argument(why + " (see the comment at the top of examples/mpc/src/main.cpp, or README.md)");
}

int to_int(const std::string& name, const std::string& v) {
    try {
        std::size_t used = 0;
        const int x = std::stoi(v, &used);
        if (used != v.size()) usage(name + ": not an integer: " + v);
        return x;
    } catch (const std::logic_error&) {
        usage(name + ": not an integer: " + v);
    }
}

double to_double(const std::string& name, const std::string& v) {
    try {
        std::size_t used = 0;
        const double x = std::stod(v, &used);
        if (used != v.size() || !std::isfinite(x)) usage(name + ": not a finite number: " + v);
        return x;
    } catch (const std::logic_error&) {
        usage(name + ": not a number: " + v);
    }
}

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        if (a == "--quiet") {
            o.quiet = true;
            continue;
        }
        if (a == "--help" || a == "-h") usage("usage");
        if (i + 1 >= argc) usage(a + " needs a value");
        const std::string v = argv[++i];
        if (a == "--task") o.task = v;
        else if (a == "--planner") o.planner = v;
        else if (a == "--variant") o.variant = v;
        else if (a == "--setting") o.setting = v;
        else if (a == "--out") o.out = v;
        else if (a == "--suite-dir") o.suite_dir = v;
        else if (a == "--episodes") o.episodes = to_int(a, v);
        else if (a == "--steps") o.steps = to_int(a, v);
        else if (a == "--threads") o.threads = to_int(a, v);
        else if (a == "--samples") o.samples = to_int(a, v);
        else if (a == "--elites") o.elites = to_int(a, v);
        else if (a == "--iterations") o.iterations = to_int(a, v);
        else if (a == "--horizon") o.horizon = to_int(a, v);
        else if (a == "--knots") o.knots = to_int(a, v);
        else if (a == "--std-init") o.std_init = to_double(a, v);
        else if (a == "--delta-lr") o.delta_lr = to_double(a, v);
        else if (a == "--seeds") {
            o.seeds.clear();
            std::stringstream list(v);
            for (std::string s; std::getline(list, s, ',');) {
                const int seed = to_int(a, s);
                if (seed < 0) usage("--seeds: negative seed");
                o.seeds.push_back(static_cast<unsigned>(seed));
            }
            if (o.seeds.empty()) usage("--seeds: empty list");
        } else usage("unknown option " + a);
    }
    if (o.planner != "cem" && o.planner != "mppi") usage("--planner must be cem or mppi");
    if (o.variant != "floor" && o.variant != "era" && o.variant != "era-min") usage("--variant must be floor, era or era-min");
    if (o.episodes < 1 || o.threads < 1 || o.steps < 0) usage("--episodes and --threads must be >= 1, --steps >= 0");
    if (o.delta_lr < 0.0) usage("--delta-lr must be >= 0");
    return o;
}

// Opens DIR/name for appending, writing the header when the file is new.
std::ofstream open_log(const std::string& dir, const std::string& name, const char* header) {
    ::mkdir(dir.c_str(), 0755);
    const std::string path = dir + "/" + name;
    const bool fresh = !std::ifstream(path).good();
    std::ofstream f(path, std::ios::app);
    if (!f) throw std::runtime_error("cannot write " + path);
    if (fresh) f << header << '\n';
    return f;
}

int run(const Options& o) {
    std::string suite = o.suite_dir;
    if (suite.empty() && std::getenv("ERA_MPC_SUITE_DIR")) suite = std::getenv("ERA_MPC_SUITE_DIR");
    if (suite.empty()) suite = ERA_MPC_SUITE_DIR;
    if (suite.empty()) usage("no dm_control suite directory: pass --suite-dir or set ERA_MPC_SUITE_DIR");
    const std::unique_ptr<mpc::Task> task = mpc::Task::make(o.task, suite);
    const bool cem = o.planner == "cem";

    mpc::PlannerSettings s;
    s.samples = o.samples ? o.samples : (cem ? 64 : 512);
    s.elites = o.elites ? o.elites : (cem ? std::max(s.samples / 10, 2) : 64);
    s.iterations = o.iterations ? o.iterations : (cem ? 1 : 6);
    s.horizon = o.horizon ? o.horizon : (cem ? 25 : 3);
    s.knots = cem ? (o.knots ? o.knots : std::min(5, s.horizon)) : s.horizon;
    s.temperature = 0.5;
    s.std_init = o.std_init > 0.0 ? o.std_init : (cem ? 0.3 : 2.0);
    // TD-MPC2's discount heuristic from the episode length (frames / action repeat, here the
    // number of control steps): (L/5 - 1)/(L/5) clipped to [0.95, 0.995].
    const double l5 = task->time_limit_steps() / 5.0;
    s.discount = std::min(0.995, std::max(0.95, (l5 - 1.0) / l5));
    // Bounds of the log-std: the floor variant clamps to [ln floor, ceiling]; the ERA head keeps
    // the same ceiling and a floor far below any planner's (-8), so the entropy target is what
    // keeps its distribution alive. Ceiling: TD-MPC2's max_std 2 for MPPI, 1 (the action range's
    // half-width) for the cross-entropy planner.
    const double log_std_max = cem ? 0.0 : std::log(2.0);
    const std::string setting = !o.setting.empty() ? o.setting : (cem ? "0.1" : "0.05");
    const double value = to_double("--setting", setting);
    const int steps = o.steps ? o.steps : task->time_limit_steps();

    mpc::ThreadPool pool(o.threads);
    std::ofstream episodes_csv, steps_csv;
    if (!o.out.empty()) {
        episodes_csv = open_log(o.out, "episodes.csv",
                                "task,planner,variant,setting,seed,episode,steps,return,mean_entropy,mean_trunc_entropy,"
                                "mean_plan_ms,mean_era_ms,threads,samples,iterations,horizon");
        steps_csv = open_log(o.out, "steps.csv",
                             "task,planner,variant,setting,seed,episode,step,reward,entropy,trunc_entropy,delta,plan_ms,era_ms");
    }
    const std::string key = o.task + "," + o.planner + "," + o.variant + "," + setting;
    char line[512];
    for (unsigned seed : o.seeds) {
        std::unique_ptr<mpc::StdControl> control;
        if (o.variant == "floor") control = std::make_unique<mpc::FloorControl>(value, log_std_max);
        else
            control = std::make_unique<mpc::EraControl>(task->action_dim(), value, -8.0, log_std_max, o.delta_lr, -1.0, 1.0,
                                                        o.variant == "era" ? mpc::EraControl::Mode::pin : mpc::EraControl::Mode::min);
        s.seed = 1000003ULL * seed + 17;
        std::unique_ptr<mpc::Planner> planner =
            cem ? mpc::make_cem(*task, s, std::move(control), pool) : mpc::make_mppi(*task, s, std::move(control), pool);
        mpc::Rng rng(seed);
        mpc::DataPtr data = task->make_data();
        std::vector<double> action(static_cast<std::size_t>(task->action_dim()));
        for (int e = 0; e < o.episodes; e++) {
            task->reset(data.get(), rng);
            planner->reset();
            double ret = 0.0, entropy = 0.0, trunc = 0.0, plan_ms = 0.0, era_ms = 0.0;
            for (int t = 0; t < steps; t++) {
                mpc::PlanLog log;
                planner->plan(data.get(), action.data(), log);
                task->step(data.get(), action.data());
                const double r = task->reward(data.get());
                ret += r;
                entropy += log.entropy;
                trunc += log.trunc_entropy;
                plan_ms += log.plan_ms;
                era_ms += log.era_ms;
                if (steps_csv.is_open()) {
                    std::snprintf(line, sizeof line, "%s,%u,%d,%d,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g\n", key.c_str(), seed, e, t, r,
                                  log.entropy, log.trunc_entropy, log.delta, log.plan_ms, log.era_ms);
                    steps_csv << line;
                }
            }
            std::snprintf(line, sizeof line, "%s,%u,%d,%d,%.6f,%.6g,%.6g,%.6g,%.6g,%d,%d,%d,%d", key.c_str(), seed, e, steps, ret,
                          entropy / steps, trunc / steps, plan_ms / steps, era_ms / steps, o.threads, s.samples, s.iterations,
                          s.horizon);
            if (episodes_csv.is_open()) episodes_csv << line << '\n' << std::flush;
            if (!o.quiet) std::cout << line << std::endl;
        }
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(parse(argc, argv));
    } catch (const era::Error& e) {
        std::cerr << "era_mpc: era: " << e.what() << '\n';
    } catch (const std::exception& e) {
        std::cerr << "era_mpc: " << e.what() << '\n';
    }
    return 1;
}
