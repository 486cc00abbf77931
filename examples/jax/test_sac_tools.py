"""Tests of the tooling around the SAC / SAC-ERA agent: the run logs (sac_run.py),
the summaries, report table, plot and update benchmark (sac_tools.py), the
command lines that reach them, and the runs compare.sh starts."""

import csv
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import sac_run as R  # noqa: E402
import sac_tools as T  # noqa: E402

HEADER = "| task | agent | env steps | seeds | final return: mean [95% bootstrap CI] |"


def _row(agent, seed, step, eval_return, **kw):
    r = {"agent": agent, "task": "Hopper-v5", "policy": "tanh" if agent == "sac" else "truncnorm"}
    r.update(delta_mode="" if agent == "sac" else "learned", seed=seed, step=step, eval_return=eval_return)
    r.update(train_return="", target_entropy=-3.0)
    r.update(kw)
    return r


def _learning(h, h_min, h_gauss, margin, delta, speed):
    return dict(
        bounded_entropy=h,
        bounded_entropy_min=h_min,
        gauss_entropy=h_gauss,
        gauss_entropy_min=h_gauss - 1.0,
        gauss_margin_min=margin,
        delta=delta,
        train_steps_per_s=speed,
    )


def _small_runs(d):
    """Two runs, two seeds, two windows each: SAC (no evaluation yet in the first
    window) and SAC-ERA (its second window not evaluated: a run in progress)."""
    sac = [
        _row("sac", 0, 1000, "", train_return=5.0),
        _row("sac", 1, 1000, "", train_return=6.0),
        _row("sac", 0, 2000, 100.0, **_learning(-2.5, -4.0, 1.0, -9.0, 0.0, 50.0)),
        _row("sac", 1, 2000, 300.0, **_learning(-3.5, -5.0, 3.0, -9.0, 0.0, 50.0)),
    ]
    era = [
        _row("sac-era", 0, 1000, 10.0, **_learning(-2.0, -2.5, 2.0, 1e-6, 3.0, 70.0)),
        _row("sac-era", 1, 1000, 20.0, **_learning(-2.4, -2.9, 2.0, -2e-6, 3.0, 70.0)),
        _row("sac-era", 0, 2000, "", **_learning(-3.0, -3.5, 1.0, 5e-7, 1.0, 90.0)),
        _row("sac-era", 1, 2000, "", **_learning(-3.2, -3.3, 1.0, 4e-7, 2.0, 110.0)),
    ]
    R.write_csv(os.path.join(d, "Hopper-v5_sac.csv"), sac)
    R.write_csv(os.path.join(d, "Hopper-v5_sac-era_truncnorm.csv"), era)


def test_write_csv_keeps_columns_in_order_of_first_appearance(tmp_path):
    path = str(tmp_path / "a.csv")
    R.write_csv(path, [{"b": 1, "a": 2}, {"b": 3, "c": 4.5}])
    with open(path) as f:
        assert f.read().splitlines() == ["b,a,c", "1,2,", "3,,4.5"]
    assert not os.path.exists(path + ".tmp")
    rows = R.load_runs(str(tmp_path))
    assert rows == [{"b": "1", "a": "2", "c": "", "run": "a"}, {"b": "3", "a": "", "c": "4.5", "run": "a"}]


def _cfg(**kw):
    return SimpleNamespace(**{"agent": "sac-era", "task": "Hopper-v5", "policy": "truncnorm", "delta": "learned",
                              "is_era": True, **kw})  # fmt: skip


def test_run_names():
    assert R.run_name(_cfg()) == "Hopper-v5_sac-era_truncnorm"
    assert R.run_name(_cfg(delta="fixed")) == "Hopper-v5_sac-era-fixed_truncnorm"
    assert R.run_name(_cfg(agent="sac", policy="tanh", delta="fixed", is_era=False)) == "Hopper-v5_sac"
    assert R.run_name(_cfg(policy="tanh")) == "Hopper-v5_sac-era"


def test_run_log_rows_window_means_minima_and_summary(tmp_path, monkeypatch):
    """Rows every log_every steps with the window's means and minima, the
    evaluation only where the step evaluated, the mean of the last five training
    episodes, and the JSON summary."""
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class Cfg:
        agent: str = "sac-era"
        task: str = "Hopper-v5"
        policy: str = "truncnorm"
        delta: str = "learned"
        steps: int = 4
        log_every: int = 2
        is_era: bool = True

    log = R.RunLog(Cfg(), [3, 7], str(tmp_path), -3.0, progress=False)
    keys = ["critic_loss", "bounded_entropy", "bounded_entropy_min", "gauss_entropy", "gauss_entropy_min"]
    keys += ["gauss_margin_min", "delta"]

    def metrics(v):
        return {k: np.array([v, 10 * v], np.float32) for k in keys}

    episodes = [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], []]
    log.step(1, None, episodes)  # no learning yet, no row
    log.update(metrics(1.0))
    log.step(2, None, episodes)
    log.update(metrics(2.0))
    log.update(metrics(4.0))
    log.step(3, None, episodes)
    with log.eval_timer():
        pass
    log.step(4, np.array([11.0, 12.0]), episodes)
    s = log.close(np.array([11.0, 12.0]))
    rows = R.load_runs(str(tmp_path))
    assert [(r["seed"], r["step"]) for r in rows] == [("3", "2"), ("7", "2"), ("3", "4"), ("7", "4")]
    assert [r["eval_return"] for r in rows] == ["", "", "11.0", "12.0"]
    assert [r["train_return"] for r in rows] == ["4.0", "", "4.0", ""]  # the mean of episodes 2..6
    last = rows[2:]
    assert [float(r["bounded_entropy"]) for r in last] == [3.0, 30.0]  # mean of the window (2, 4)
    for k in ("bounded_entropy_min", "gauss_entropy_min", "gauss_margin_min"):
        assert [float(r[k]) for r in last] == [2.0, 20.0]  # minimum of the window
    assert all(r["target_entropy"] == "-3.0" and r["delta_mode"] == "learned" for r in rows)
    # the metric columns come after the fixed ones, in sorted order, as in the committed logs
    with open(tmp_path / "Hopper-v5_sac-era_truncnorm.csv") as f:
        header = next(csv.reader(f))
    assert header == [
        "agent", "task", "policy", "delta_mode", "preset", "seed", "step", "eval_return", "train_return", "target_entropy",
        *sorted(keys), "wall_s", "train_steps_per_s",
    ]  # fmt: skip
    with open(tmp_path / "Hopper-v5_sac-era_truncnorm.json") as f:
        assert json.load(f) == s
    assert s["seeds"] == [3, 7] and s["final_eval_return"] == [11.0, 12.0] and s["config"]["steps"] == 4
    assert s["wall_s"] >= s["eval_s"] >= 0


def test_replay_sampling_stays_per_seed():
    r = R.Replay(2, 10, 1, 1, np.random.default_rng(0))
    for t in range(4):
        r.add(np.array([[t], [100 + t]]), np.zeros((2, 1)), np.array([t, 100 + t]), np.zeros((2, 1)), np.zeros(2))
    obs, _, rew, _, _ = r.sample(50)
    assert set(obs[0, :, 0]) <= {0, 1, 2, 3} and set(obs[1, :, 0]) <= {100, 101, 102, 103}
    np.testing.assert_array_equal(obs[..., 0], rew)


def test_bootstrap_ci():
    lo, hi = T.bootstrap_ci([1.0, 2.0, 3.0, 4.0])
    assert 1.0 <= lo < 2.5 < hi <= 4.0
    assert T.bootstrap_ci([1.0, 2.0]) == T.bootstrap_ci([1.0, 2.0])  # seeded
    assert all(np.isnan(T.bootstrap_ci([5.0])))


def test_summaries_and_report_table_from_small_csvs(tmp_path):
    _small_runs(str(tmp_path))
    sac, era = T.summarize(str(tmp_path))
    assert (sac["agent"], era["agent"]) == ("sac", "sac-era [truncnorm]")
    assert sac["steps"] == 2000 and sac["finals"] == [100.0, 300.0] and sac["mean"] == 200.0
    assert era["steps"] == 1000 and era["finals"] == [10.0, 20.0]  # the last evaluation of a run in progress
    assert era["bounded_entropy_min"] == -3.2 and era["bounded_entropy_min_batch"] == -3.5
    assert era["margin_min"] == -2e-6 and era["delta_final"] == 3.0 and era["steps_per_s"] == 70.0
    table = T.report(str(tmp_path)).splitlines()
    assert table[0].startswith(HEADER) and table[1] == "| --- " * 11 + "|"
    lo, hi = T.bootstrap_ci([100.0, 300.0])
    assert table[2] == (
        f"| Hopper-v5 | sac | 2000 | 2 | 200 [{lo:.0f}, {hi:.0f}] | 100, 300 | -3.00 / -3.50 / -5.00 | -3 | - | 0.00 | 50 |"
    )
    assert table[3] == "| Hopper-v5 | sac-era [truncnorm] | 1000 | 2 | 15 [10, 20] | 10, 20 | -2.20 / -3.20 / -3.50 | -3 | -2.0e-06 | 3.00 | 70 |"
    assert len(table) == 4
    demo = T.demo_table(str(tmp_path)).splitlines()
    assert demo[0].split() == ["agent", "task", "final", "return", "bounded", "H", "Gaussian", "H", "target", "delta"]
    assert demo[2].split() == ["sac-era", "[truncnorm]", "Hopper-v5", "15.0", "-2.20", "2.00", "-3.0", "3.00"]


def test_report_labels_fixed_delta_and_reads_logs_without_the_lowest_batch(tmp_path):
    rows = [_row("sac-era", s, 1000, 1.0 + s, **_learning(-2.0, -2.5, 2.0, 0.0, 3.0, 70.0)) for s in (0, 1)]
    for r in rows:
        r["delta_mode"] = "fixed"
        del r["bounded_entropy_min"]  # logs written before that column existed
    R.write_csv(str(tmp_path / "Hopper-v5_sac-era-fixed_truncnorm.csv"), rows)
    (line,) = T.report(str(tmp_path)).splitlines()[2:]
    assert line.startswith("| Hopper-v5 | sac-era (fixed delta) [truncnorm] | 1000 | 2 |")
    assert "| -2.00 / -2.00 / - |" in line


@pytest.mark.parametrize("runs", ["results", "results-paper"])
def test_report_of_the_committed_results_is_the_table_of_results_md(runs):
    """Each committed comparison's report is one of RESULTS.md's tables, whole."""
    with open(os.path.join(HERE, "RESULTS.md")) as f:
        results_md = f.read().splitlines()
    table = T.report(os.path.join(HERE, runs)).splitlines()
    i = results_md.index(table[2])  # the first row: the header is the same in both tables
    assert results_md[i - 2 : i - 2 + len(table)] == table


def _run(*args, **env):
    e = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MPLBACKEND")}
    e.update(env)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=e, cwd=HERE, check=True)


def test_plot_runs_headless_and_report_needs_no_jax(tmp_path):
    _small_runs(str(tmp_path))
    png = str(tmp_path / "plot.png")
    out = _run("sac_tools.py", "plot", "--runs", str(tmp_path), "--png", png)
    assert out.stdout.strip() == png
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(png) > 10_000
    code = "import sys, sac_tools; sac_tools.main(sys.argv[1:]); assert 'jax' not in sys.modules"
    out = _run("-c", code, "report", "--runs", str(tmp_path))
    assert out.stdout.strip() == T.report(str(tmp_path))
    # the default output file of plot
    _run("sac_tools.py", "plot", "--runs", str(tmp_path))
    assert os.path.exists(tmp_path / "sac_era.png")


def test_sac_era_entry_runs_the_tool_commands(tmp_path):
    _small_runs(str(tmp_path))
    out = _run("sac_era.py", "report", "--runs", str(tmp_path))
    assert out.stdout.strip() == T.report(str(tmp_path))
    help_text = _run("sac_era.py", "--help").stdout
    assert "{train,demo,report,plot,bench}" in help_text


def test_update_benchmark_runs():
    res = T.bench(batch=16, iters=2, repeats=1)
    assert [r["variant"] for r in res] == [
        "sac",
        "sac-era (native head)",
        "sac-era (pure-JAX head)",
        "sac-era (native, truncnorm)",
    ]
    assert all(r["ms_per_update"] > 0 for r in res) and res[0]["vs_sac"] == 1.0


def test_update_benchmark_without_an_environment(tmp_path):
    """bench --obs-dim/--act-dim (the GPU check's SAC-size update) runs where gymnasium
    and MuJoCo cannot be imported: a stand-in module that raises on import shadows it."""
    (tmp_path / "gymnasium.py").write_text("raise ImportError('no gymnasium here')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), HERE, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, os.path.join(HERE, "sac_era.py"), "bench", "--obs-dim", "5",
                          "--act-dim", "3", "--batch", "8", "--iters", "2", "--repeats", "1"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "obs 5, act 3" in out.stdout and "sac-era (native head)" in out.stdout
    bad = subprocess.run([sys.executable, os.path.join(HERE, "sac_era.py"), "bench", "--obs-dim", "5"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert bad.returncode != 0 and "--obs-dim and --act-dim go together" in bad.stderr


@pytest.mark.parametrize("how", ["env", "args"])
def test_compare_script_starts_the_runs_of_results_md(tmp_path, how):
    """compare.sh with a stand-in interpreter that records its arguments: the
    training runs of RESULTS.md (one worker per agent), then report and plot."""
    record = tmp_path / "calls"
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/sh\necho "$*" >> "{record}"\n')
    fake.chmod(0o755)
    out, png = str(tmp_path / "out"), str(tmp_path / "p.png")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "SAC_RESULTS", "SAC_PNG")}
    if how == "env":
        cmd, env = ["bash", "compare.sh"], {**env, "PYTHON": str(fake), "SAC_RESULTS": out, "SAC_PNG": png}
    else:
        cmd = ["bash", "compare.sh", "--python", str(fake), "--out", out, "--png", png]
    subprocess.run(cmd, cwd=HERE, env=env, check=True)
    calls = record.read_text().splitlines()
    sac = os.path.join(HERE, "sac_era.py")
    common = f"--seeds 0 1 2 3 4 --threads 1 --out {out} --no-progress"
    trains = {
        f"{sac} train --agent sac --task HalfCheetah-v5 --steps 100000 {common}",
        f"{sac} train --agent sac --task Hopper-v5 --steps 30000 {common}",
        f"{sac} train --agent sac-era --task HalfCheetah-v5 --steps 100000 {common}",
        f"{sac} train --agent sac-era --task Hopper-v5 --steps 30000 {common}",
        f"{sac} train --agent sac-era --delta fixed --task Hopper-v5 --steps 30000 {common}",
    }
    assert set(calls[:5]) == trains and len(calls) == 7
    for agent in ("sac", "sac-era"):  # each worker runs its agent's HalfCheetah run before its Hopper runs
        mine = [c for c in calls[:5] if f"--agent {agent} " in c]
        assert "HalfCheetah" in mine[0] and all("Hopper" in c for c in mine[1:])
    assert calls[5:] == [f"{sac} report --runs {out}", f"{sac} plot --runs {out} --png {png}"]
    assert os.path.isdir(out)


def test_compare_script_fails_when_a_run_fails(tmp_path):
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\ncase "$*" in *"--agent sac-era --task Hopper"*) exit 3 ;; esac\n')
    fake.chmod(0o755)
    r = subprocess.run(
        ["bash", "compare.sh", "--python", str(fake), "--out", str(tmp_path / "o"), "--png", str(tmp_path / "p.png")],
        cwd=HERE,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and "a training run failed" in r.stderr


def test_compare_script_paper_preset_starts_the_paper_runs(tmp_path):
    """compare.sh --preset paper: both agents at the paper's settings on HalfCheetah-v5
    then Humanoid-v5, into results-paper and sac_era_paper.png by default."""
    record = tmp_path / "calls"
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/sh\necho "$*" >> "{record}"\n')
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "SAC_RESULTS", "SAC_PNG")}
    subprocess.run(["bash", "compare.sh", "--preset", "paper", "--python", str(fake)], cwd=HERE, env=env, check=True)
    calls = record.read_text().splitlines()
    sac = os.path.join(HERE, "sac_era.py")
    out = os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples", "jax", "results-paper")
    common = f"--preset paper --start-steps 2000 --eval-every 2000 --seeds 0 1 2 3 4 --threads 1 --out {out} --no-progress"
    trains = {f"{sac} train --agent {a} --task {t} --steps {n} {common}"
              for a in ("sac", "sac-era") for t, n in (("HalfCheetah-v5", 10000), ("Humanoid-v5", 6000))}
    assert set(calls[:4]) == trains and len(calls) == 6
    png = os.path.join(os.path.dirname(out), "sac_era_paper.png")
    assert calls[4:] == [f"{sac} report --runs {out}", f"{sac} plot --runs {out} --png {png}"]
    r = subprocess.run(["bash", "compare.sh", "--preset", "huge", "--python", str(fake)], cwd=HERE, capture_output=True, text=True)
    assert r.returncode == 2 and "unknown preset" in r.stderr
