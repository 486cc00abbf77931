#!/usr/bin/env bash
# The planners' two performance figures, measured in one run (make mpc-bench):
#   1. the share of a planning step spent in the ERA head (pin mode: one forward over every time
#      row after each of the 6 refits, plus the delta update) at TD-MPC2's sizes: 512 samples,
#      64 elites, 6 iterations, horizon 3, 5 and 10, on tasks with action dimension 1, 6 and 21;
#   2. a planning step with 2 threads against 1 (the same samples: the noise does not depend on
#      the thread count), runs alternated so that drift hits both.
#
#   examples/mpc/tools/bench.sh [RUNNER] [OUT]
set -euo pipefail
runner=${1:-build/mpc/era_mpc}
out=${2:-build/mpc-bench}
python=${PYTHON:-python3}
mkdir -p "$out"
rm -rf "$out/share" "$out/threads-1" "$out/threads-2"
quiet() { "$@" 2> >(grep -v settotalmass >&2); }

for task in cartpole-swingup cheetah-run humanoid-stand; do
    for horizon in 3 5 10; do
        steps=20
        [ "$task" = humanoid-stand ] && steps=6
        quiet "$runner" --task "$task" --planner mppi --variant era --setting 0.1 --horizon "$horizon" --steps "$steps" \
            --threads 2 --out "$out/share" --quiet
    done
done
# The cross-entropy planner at its own sizes (64 samples, horizon 25 on 5 knots): far fewer
# rollouts per step, so the head's share is larger there.
for task in cartpole-swingup cheetah-run humanoid-stand; do
    quiet "$runner" --task "$task" --planner cem --variant era --setting 0.1 --steps 20 --threads 2 --out "$out/share" --quiet
done
for round in 1 2 3; do
    for threads in 1 2; do
        quiet "$runner" --task cheetah-run --planner mppi --variant era --setting 0.1 --steps 30 --seeds "$round" \
            --threads "$threads" --out "$out/threads-$threads" --quiet
        quiet "$runner" --task humanoid-stand --planner mppi --variant era --setting 0.1 --steps 4 --seeds "$round" \
            --threads "$threads" --out "$out/threads-$threads" --quiet
    done
done

"$python" - "$out" <<'PY'
import csv, statistics, sys
out = sys.argv[1]
def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))
print("ERA share of a planning step (MPPI: 512 samples, 64 elites, 6 iterations; cross-entropy: 64 samples,")
print("6 elites, 1 iteration, horizon 25 on 5 knots; 2 threads; means over the episode's planning steps):")
print("| planner | task | action dim | horizon | ms / planning step | ERA ms / step | ERA share |")
print("|---|---|---|---|---|---|---|")
dims = {"cartpole-swingup": 1, "cheetah-run": 6, "humanoid-stand": 21}
print_rows = {}
for e in rows(f"{out}/share/episodes.csv"):
    key = (e["planner"], e["task"], int(e["horizon"]))
    print_rows[key] = (float(e["mean_plan_ms"]), float(e["mean_era_ms"]))
for (planner, task, horizon), (plan, era) in print_rows.items():
    print(f"| {planner} | {task} | {dims[task]} | {horizon} | {plan:.2f} | {era:.4f} | {100 * era / plan:.3f}% |")
print()
print("Planning step, 2 threads against 1 (MPPI at TD-MPC2's sizes, horizon 3; 3 alternated rounds):")
print("| task | ms / step, 1 thread | ms / step, 2 threads | speed-up |")
print("|---|---|---|---|")
for task in ("cheetah-run", "humanoid-stand"):
    one = [float(e["mean_plan_ms"]) for e in rows(f"{out}/threads-1/episodes.csv") if e["task"] == task]
    two = [float(e["mean_plan_ms"]) for e in rows(f"{out}/threads-2/episodes.csv") if e["task"] == task]
    a, b = statistics.mean(one), statistics.mean(two)
    print(f"| {task} | {a:.1f} | {b:.1f} | {a / b:.2f}x |")
PY
