#!/usr/bin/env bash
# examples/mpc from the repository: MuJoCo and dm_control's models into the venv, the example
# built against the installed era prefix, then its tests, a short demo, the full comparison or
# the benchmark.
#
#   scripts/mpc.sh deps|build|test|demo|compare|bench
#
# Environment (the Makefile passes them): PY (the venv's python), PREFIX (the installed era),
# BUILD (build root), JOBS, CMAKE_FLAGS. MuJoCo_ROOT, if set, names a MuJoCo install (release
# tarball or libmujoco-dev layout) to use instead of the mujoco-core wheel.
#
# The versions are pinned: tests/data/dmc_steps.txt was recorded with dm_control 1.0.50 on
# MuJoCo 4.0.0, and the replay test expects the same engine. dm_control is installed without
# its dependencies: only its suite's XML models are used.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
: "${PY:?PY (the venv python) must be set}" "${PREFIX:?}" "${BUILD:?}"
JOBS=${JOBS:-2}
MUJOCO_CORE=mujoco-core==4.0.0
DM_CONTROL=dm-control==1.0.50
build="$BUILD/mpc"

deps() {
    if [ -z "${MuJoCo_ROOT:-}" ]; then
        "$PY" -m pip install --quiet "$MUJOCO_CORE" || return 1
    fi
    "$PY" -m pip install --quiet --no-deps "$DM_CONTROL" || return 1
}

build() {
    # shellcheck disable=SC2086
    cmake -S "$root/examples/mpc" -B "$build" ${CMAKE_FLAGS:-} -U era_DIR -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_PREFIX_PATH="$PREFIX" -DMuJoCo_PYTHON="$PY"
    cmake --build "$build" --parallel "$JOBS"
}

case "${1:-}" in
    deps) deps ;;
    build) deps && build ;;
    test)
        if ! deps; then
            echo "examples/mpc: SKIPPED: MuJoCo ($MUJOCO_CORE) or dm_control ($DM_CONTROL) could not be installed" \
                 "into $PY's environment (no wheel for this platform?); set MuJoCo_ROOT to a MuJoCo install to test it"
            exit 0
        fi
        build
        (cd "$build" && ctest --output-on-failure)
        ;;
    demo)
        deps && build
        echo "== examples/mpc: cheetah run, MPPI at TD-MPC2's sizes, 60 control steps (0.6 s), 2 threads"
        for variant in floor era; do
            "$build/era_mpc" --task cheetah-run --planner mppi --variant "$variant" --setting 0.2 --steps 60 --threads 2 \
                2> >(grep -v -e settotalmass -e '^$' >&2)
        done
        echo "(columns: task,planner,variant,setting,seed,episode,steps,return,entropy/step,truncated entropy/step," \
             "ms/planning step,ERA ms/step,threads,samples,iterations,horizon)"
        ;;
    compare)
        deps && build
        PYTHON="$PY" bash "$root/examples/mpc/tools/compare.sh" "$build/era_mpc" "$BUILD/mpc-compare"
        ;;
    bench)
        deps && build
        PYTHON="$PY" bash "$root/examples/mpc/tools/bench.sh" "$build/era_mpc" "$BUILD/mpc-bench"
        ;;
    *)
        echo "usage: scripts/mpc.sh deps|build|test|demo|compare|bench" >&2
        exit 2
        ;;
esac
