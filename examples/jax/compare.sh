#!/usr/bin/env bash
# The SAC vs SAC-ERA comparison of RESULTS.md: two workers (one core each), SAC on
# one and SAC-ERA on the other; HalfCheetah-v5 for 100k steps, then Hopper-v5 for
# 30k, five seeds each; SAC-ERA's worker then runs Hopper-v5 with a fixed delta.
# Then the table (stdout) and the plot. Its longest run logged 89 minutes on a
# 2-vCPU machine.
# With --preset paper: both agents at the official SAC-ERA settings (sac_era.py's
# PRESETS), HalfCheetah-v5 for 10k steps then Humanoid-v5 for 6k (2000 random steps
# first, evaluations every 2000), five seeds; results in examples/jax/results-paper
# and examples/jax/sac_era_paper.png unless given. Each worker took 105 minutes on 2 vCPUs.
#
#   examples/jax/compare.sh [--preset paper] [--python PY] [--out DIR] [--png FILE]
#
# Defaults, also taken from the environment: PYTHON (<repo>/.venv/bin/python),
# SAC_RESULTS (<repo>/examples/jax/results[-paper]), SAC_PNG (<repo>/examples/jax/sac_era[_paper].png).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
out=${SAC_RESULTS:-}
png=${SAC_PNG:-}
preset=default
while [ $# -gt 0 ]; do
    case $1 in
        --preset) preset=$2; shift 2 ;;
        --python) python=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --png) png=$2; shift 2 ;;
        -h|--help) sed -n '2,16s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "compare.sh: unknown argument $1 (--help)" >&2; exit 2 ;;
    esac
done
case $preset in
    default) suffix= ;;
    paper) suffix=-paper ;;
    *) echo "compare.sh: unknown preset $preset (default, paper)" >&2; exit 2 ;;
esac
out=${out:-$root/examples/jax/results$suffix}
png=${png:-$root/examples/jax/sac_era${suffix/-/_}.png}
sac=("$python" "$here/sac_era.py")
seeds=(0 1 2 3 4)

# One worker: every run of one agent, one after the other.
worker() {
    local agent=$1 common=(--seeds "${seeds[@]}" --threads 1 --out "$out" --no-progress)
    if [ "$preset" = paper ]; then
        common=(--preset paper --start-steps 2000 --eval-every 2000 "${common[@]}")
        "${sac[@]}" train --agent "$agent" --task HalfCheetah-v5 --steps 10000 "${common[@]}"
        "${sac[@]}" train --agent "$agent" --task Humanoid-v5 --steps 6000 "${common[@]}"
        return
    fi
    "${sac[@]}" train --agent "$agent" --task HalfCheetah-v5 --steps 100000 "${common[@]}"
    "${sac[@]}" train --agent "$agent" --task Hopper-v5 --steps 30000 "${common[@]}"
    if [ "$agent" = sac-era ]; then
        "${sac[@]}" train --agent sac-era --delta fixed --task Hopper-v5 --steps 30000 "${common[@]}"
    fi
}

mkdir -p "$out"
pids=()
for agent in sac sac-era; do
    worker "$agent" &
    pids+=($!)
done
status=0
for p in "${pids[@]}"; do
    wait "$p" || status=1
done
if [ $status -ne 0 ]; then
    echo "compare.sh: a training run failed" >&2
    exit 1
fi
"${sac[@]}" report --runs "$out"
"${sac[@]}" plot --runs "$out" --png "$png"
