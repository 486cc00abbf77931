#!/usr/bin/env bash
# The full comparison behind examples/mpc/RESULTS.md: every task x planner x variant over a short
# sweep of its setting, then the tables and the plot (tools/analyze.py).
#
#   examples/mpc/tools/compare.sh [RUNNER] [OUT]      (make mpc-compare builds and runs it)
#
# RUNNER: the era_mpc binary [build/mpc/era_mpc]; OUT: the log directory [build/mpc-compare].
# RESUME=1 keeps OUT's logs and skips every configuration whose episodes are all there (the runs
# are deterministic, so a resumed comparison logs what an uninterrupted one would).
#
# Sized for about 90 minutes on 2 cores: 5 seeds for every setting; episodes of 300 control steps
# for the light tasks (cartpole swing-up, cheetah run: 3 s), 100 for walker walk (2.5 s) and 30 for
# humanoid stand (0.75 s). The planners run at their sources' sizes (MPPI: TD-MPC2's 512 samples,
# 64 elites, 6 iterations, horizon 3; cross-entropy: 64 samples, 6 elites, horizon 25 control steps
# on 5 knots, one iteration per control step).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
runner=${1:-build/mpc/era_mpc}
out=${2:-build/mpc-compare}
python=${PYTHON:-python3}
threads=${THREADS:-2}
mkdir -p "$out"
if [ "${RESUME:-0}" != 1 ]; then
    rm -f "$out/episodes.csv" "$out/steps.csv"
fi

# The settings: the std floor, or the per-dimension std of the ERA target entropy. The sources'
# floors are in each list: TD-MPC2's min_std 0.05 (MPPI); MuJoCo MPC's std_min, which its
# cross-entropy planner reads from the task with 0.1 as the default (cross-entropy), and two
# smaller floors a task may set.
declare -A settings=([mppi]="0.02 0.05 0.2" [cem]="0.01 0.03 0.1")
declare -A steps=([cartpole-swingup]=300 [cheetah-run]=300 [walker-walk]=100 [humanoid-stand]=30)
seeds=1,2,3,4,5
n_seeds=5

{
    echo "started: $(date -u +%Y-%m-%dT%H:%M:%SZ)${RESUME:+ (resumed)}"
    echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
    echo "runner: $runner, threads: $threads"
} >> "$out/meta.txt"
start=$(date +%s)
for task in cartpole-swingup cheetah-run walker-walk humanoid-stand; do
    for planner in mppi cem; do
        for variant in floor era era-min; do
            for setting in ${settings[$planner]}; do
                done_rows=0
                if [ -f "$out/episodes.csv" ]; then
                    done_rows=$(grep -c "^$task,$planner,$variant,$setting," "$out/episodes.csv" || true)
                fi
                if [ "$done_rows" -ge "$n_seeds" ]; then
                    echo "$task $planner $variant $setting: logged already"
                    continue
                fi
                if [ "$done_rows" -gt 0 ]; then
                    echo "$out: $task $planner $variant $setting is incomplete ($done_rows episodes); remove its rows or start afresh" >&2
                    exit 1
                fi
                "$runner" --task "$task" --planner "$planner" --variant "$variant" --setting "$setting" \
                    --seeds "$seeds" --steps "${steps[$task]}" --threads "$threads" --out "$out" --quiet \
                    2> >(grep -v settotalmass >&2)
                echo "$task $planner $variant $setting: $(( $(date +%s) - start )) s"
            done
        done
    done
done
echo "finished: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(( $(date +%s) - start )) s" >> "$out/meta.txt"
"$python" "$here/analyze.py" "$out" --out "$out"
