#!/usr/bin/env python3
"""The tooling around ppo_era.py: the comparison's driver, its summaries and markdown
tables, the plot, the random-policy returns the aggregate is normalised by, and the
benchmark that measures the ERA head's share of the update.

  python examples/jax/ppo_tools.py compare --steps 499712 --tune-steps 98304   # tuning, then every run
  python examples/jax/ppo_tools.py report  --runs examples/jax/ppo_results     # markdown tables
  python examples/jax/ppo_tools.py plot    --runs examples/jax/ppo_results --png examples/jax/ppo_era.png
  python examples/jax/ppo_tools.py bench                                       # the head's share of an update
  python examples/jax/ppo_tools.py random  --out examples/jax/ppo_results      # random-policy returns

Bootstrap intervals, thread setup and the CSV reader are sac_tools.py's and sac_run.py's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from sac_run import configure_threads, load_runs, quiet_mujoco
from sac_tools import bootstrap_ci

HERE = os.path.dirname(os.path.abspath(__file__))
TASKS = ("Ant-v5", "Hopper-v5", "Walker2d-v5", "HalfCheetah-v5")  # longest first: the two workers finish together
TUNE_TASK = "Hopper-v5"
ACT_DIMS = {"Hopper-v5": 3, "Walker2d-v5": 6, "HalfCheetah-v5": 6, "Ant-v5": 8}
#: The tuning grid, fixed before the main runs: (agent, flag, values, tag prefix).
TUNE_GRID = (("ppo", "--log-std-init", (0.0, -0.5), "lsi"), ("ppo-era", "--h0-per-dim", (-0.3, 0.5), "h0"))


# ------------------------------------------------------------------- summaries


def summarize(run_dir: str) -> list[dict]:
    """One entry per run (task, agent, tag) of `run_dir`: the config, final returns per seed
    (ppo_era.final_returns), their mean and 95% bootstrap interval, the entropy per dimension
    at the first and last rollout, the smallest margin over the floor, time and speed."""
    out = []
    for fn in sorted(os.listdir(run_dir)):
        if not fn.endswith(".json") or fn.count("_") < 1:
            continue
        with open(os.path.join(run_dir, fn)) as f:
            s = json.load(f)
        if "config" not in s:
            continue
        rows = [r for r in load_runs_one(run_dir, s["name"])]
        steps = sorted({int(r["step"]) for r in rows})
        ent = lambda st: float(np.mean([float(r["entropy_per_dim"]) for r in rows if int(r["step"]) == st]))  # noqa: E731
        margins = [float(r["margin_min"]) for r in rows if r["margin_min"] not in ("", "nan")]
        fr = s["final_return"]
        lo, hi = bootstrap_ci(fr)
        fe = s.get("final_eval_return") or []
        elo, ehi = bootstrap_ci(fe) if fe else (float("nan"), float("nan"))
        cfg = s["config"]
        out.append({
            "name": s["name"], "task": cfg["task"], "agent": cfg["agent"], "tag": cfg.get("tag", ""),
            "log_std_init": cfg["log_std_init"], "h0_per_dim": cfg["h0_per_dim"], "act_dim": s["act_dim"],
            "steps": cfg["steps"], "seeds": s["seeds"], "final": fr, "mean": float(np.mean(fr)), "ci": (lo, hi),
            "final_eval": fe, "eval_mean": float(np.mean(fe)) if fe else float("nan"), "eval_ci": (elo, ehi),
            "eval_s": s.get("eval_s", 0.0),
            "entropy_first": ent(steps[0]), "entropy_last": ent(steps[-1]),
            "margin_min": min(margins) if margins and cfg["agent"] == "ppo-era" else float("nan"),
            "wall_s": s["wall_s"], "update_s": s["update_s"], "steps_per_s_per_seed": s["steps_per_s_per_seed"],
        })  # fmt: skip
    return out


def load_runs_one(run_dir: str, name: str) -> list[dict]:
    """The CSV rows of one run."""
    return [r for r in load_runs(run_dir) if r["run"] == name]


def choose(tune_dir: str) -> dict:
    """The tuning's choice per arm: the setting with the highest mean final return over seeds."""
    best: dict = {}
    for e in summarize(tune_dir):
        if e["agent"] not in best or e["mean"] > best[e["agent"]]["mean"]:
            best[e["agent"]] = e
    return {
        "ppo": {"log_std_init": best["ppo"]["log_std_init"], "from": best["ppo"]["name"]},
        "ppo-era": {"h0_per_dim": best["ppo-era"]["h0_per_dim"], "from": best["ppo-era"]["name"]},
    }


def normalized_scores(entries: list[dict], random_returns: dict, key: str = "final") -> dict:
    """Per agent, the per-seed scores `(R - R_random) / (R_best - R_random)` averaged over
    the tasks (seed i of every task together), where R is a seed's final return (`key`:
    "final", the training episodes', or "final_eval", the deterministic evaluation's),
    R_random the task's random-policy return and R_best the highest such return of any seed
    of either arm on that task."""
    tasks = sorted({e["task"] for e in entries})
    out: dict = {}
    for agent in ("ppo", "ppo-era"):
        per_task = []
        for t in tasks:
            best = max(max(e[key]) for e in entries if e["task"] == t)
            e = next(e for e in entries if e["task"] == t and e["agent"] == agent)
            r0 = random_returns[t]
            per_task.append((np.asarray(e[key]) - r0) / (best - r0))
        out[agent] = np.mean(per_task, axis=0)
    return out


def report(run_dir: str) -> str:
    """The markdown tables of PPO_RESULTS.md: per task and arm, then the aggregates (over the
    deterministic evaluations where the runs have them, and over the training episodes)."""
    entries = summarize(run_dir)
    evaluated = all(e["final_eval"] for e in entries)
    ev_head, ev_sep = ("| final eval return (mean, 95% CI) | per seed ", "| --- | --- ") if evaluated else ("", "")
    lines = [
        f"| task | agent | setting {ev_head}| final training return (mean, 95% CI) | per seed | entropy/dim first -> last "
        "| min margin over floor | wall (min) | steps/s per seed | update share |",
        f"| --- | --- | --- {ev_sep}| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for e in sorted(entries, key=lambda e: (e["task"], e["agent"])):
        setting = f"H0 = {e['h0_per_dim']:g} D" if e["agent"] == "ppo-era" else f"log-std init {e['log_std_init']:g}"
        margin = f"{e['margin_min']:.1e}" if e["agent"] == "ppo-era" else "-"
        ev = (f"| {e['eval_mean']:.0f} [{e['eval_ci'][0]:.0f}, {e['eval_ci'][1]:.0f}] "
              f"| {', '.join(f'{x:.0f}' for x in e['final_eval'])} ") if evaluated else ""
        lines.append(
            f"| {e['task']} | {e['agent']} | {setting} {ev}| {e['mean']:.0f} [{e['ci'][0]:.0f}, {e['ci'][1]:.0f}] "
            f"| {', '.join(f'{x:.0f}' for x in e['final'])} | {e['entropy_first']:.3f} -> {e['entropy_last']:.3f} "
            f"| {margin} | {e['wall_s'] / 60:.1f} | {e['steps_per_s_per_seed']:.0f} | {e['update_s'] / (e['wall_s'] - e['eval_s']):.0%} |"
        )
    rnd = os.path.join(run_dir, "random_returns.json")
    if os.path.exists(rnd) and len({e["task"] for e in entries}) > 1:
        with open(rnd) as f:
            random_returns = json.load(f)
        lines += ["", "| returns | agent | normalised score over the tasks (mean, 95% CI over seeds) | per seed |",
                  "| --- | --- | --- | --- |"]  # fmt: skip
        for key, label in (("final_eval", "deterministic evaluation"), ("final", "training episodes")):
            if key == "final_eval" and not evaluated:
                continue
            for agent, v in normalized_scores(entries, random_returns, key).items():
                lo, hi = bootstrap_ci(v)
                lines.append(f"| {label} | {agent} | {v.mean():.3f} [{lo:.3f}, {hi:.3f}] "
                             f"| {', '.join(f'{x:.3f}' for x in v)} |")  # fmt: skip
        lines += ["", "Random-policy returns: " + ", ".join(f"{t} {r:.1f}" for t, r in sorted(random_returns.items()))]
    return "\n".join(lines)


# ------------------------------------------------------------------- plot


def plot(run_dir: str, path: str, window: int = 5) -> None:
    """Per task: training-episode returns (mean over seeds of a `window`-rollout moving
    average, min-max band), the deterministic evaluation's returns where the runs have them
    (mean over seeds, min-max band) and the Gaussian entropy per dimension (ERA's floor
    H0/|A| dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = load_runs(run_dir)
    tasks = [t for t in TASKS if any(r["task"] == t for r in rows)]
    fig, axes = plt.subplots(len(tasks), 3, figsize=(15, 2.6 * len(tasks)), squeeze=False)
    for ti, task in enumerate(tasks):
        ax_r, ax_e, ax_h = axes[ti]
        for ci, agent in enumerate(("ppo", "ppo-era")):
            rs = [r for r in rows if r["task"] == task and r["agent"] == agent]
            if not rs:
                continue
            seeds = sorted({int(r["seed"]) for r in rs})
            steps = sorted({int(r["step"]) for r in rs})
            ret = np.full((len(seeds), len(steps)), np.nan)
            ent = np.full((len(seeds), len(steps)), np.nan)
            for r in rs:
                i, j = seeds.index(int(r["seed"])), steps.index(int(r["step"]))
                ret[i, j] = float(r["episode_return"]) if r["episode_return"] != "" else np.nan
                ent[i, j] = float(r["entropy_per_dim"])
            smooth = np.array([[np.nanmean(row[max(0, j - window + 1): j + 1]) for j in range(len(steps))] for row in ret])
            c = f"C{ci}"
            ax_r.plot(steps, np.nanmean(smooth, 0), color=c, label=f"{agent} ({len(seeds)} seeds)")
            ax_r.fill_between(steps, np.nanmin(smooth, 0), np.nanmax(smooth, 0), color=c, alpha=0.15)
            ev = [r for r in rs if r.get("eval_return", "") != ""]
            if ev:
                est = sorted({int(r["step"]) for r in ev})
                er = np.full((len(seeds), len(est)), np.nan)
                for r in ev:
                    er[seeds.index(int(r["seed"])), est.index(int(r["step"]))] = float(r["eval_return"])
                ax_e.plot(est, np.nanmean(er, 0), color=c, marker="o", ms=3, label=agent)
                ax_e.fill_between(est, np.nanmin(er, 0), np.nanmax(er, 0), color=c, alpha=0.15)
            ax_h.plot(steps, ent.mean(0), color=c, label=agent)
            ax_h.fill_between(steps, ent.min(0), ent.max(0), color=c, alpha=0.15)
            if agent == "ppo-era":
                ax_h.axhline(float(rs[0]["target_entropy"]) / ACT_DIMS[task], color="k", ls="--", lw=0.8,
                             label="ERA floor H0/|A|")
        ax_r.set(title=f"{task}: training-episode return", xlabel="environment steps per seed")
        ax_e.set(title=f"{task}: deterministic evaluation", xlabel="environment steps per seed")
        ax_h.set(title=f"{task}: Gaussian entropy per dimension (nats)", xlabel="environment steps per seed")
        for ax in (ax_r, ax_e, ax_h):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=60)
    plt.close(fig)


# ------------------------------------------------------------------- random policy and benchmark


def random_returns(tasks=TASKS, episodes: int = 10, seed: int = 0) -> dict:
    """Mean return of `episodes` episodes of the uniform random policy per task."""
    import gymnasium as gym

    quiet_mujoco()
    out = {}
    for t in tasks:
        env = gym.make(t)
        env.action_space.seed(seed)
        rets = []
        for ep in range(episodes):
            env.reset(seed=seed + ep)
            total, done = 0.0, False
            while not done:
                _, r, term, trunc, _ = env.step(env.action_space.sample())
                total += float(r)
                done = term or trunc
            rets.append(total)
        out[t] = float(np.mean(rets))
    return out


def bench(task: str = "Hopper-v5", repeats: int = 7, seeds: int = 5) -> list[dict]:
    """Time one jitted update (GAE + 10 epochs x 32 minibatches, `seeds` seeds vmapped, a
    random rollout) of PPO, PPO-ERA with era_jax's head and PPO-ERA with the same head written
    in jnp (sac_era.pure_jax_reference), interleaved in every repeat; the median per variant.
    The head's share of PPO-ERA's update is (ERA native - PPO) / ERA native."""
    import jax

    import ppo_era

    env = ppo_era.make_env(ppo_era.Config(task=task), 0)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    rng = np.random.default_rng(0)
    T = 2048
    batch = {
        "obs": rng.standard_normal((seeds, T, obs_dim)).astype(np.float32),
        "act": rng.standard_normal((seeds, T, act_dim)).astype(np.float32),
        "logp": rng.standard_normal((seeds, T)).astype(np.float32), "val": rng.standard_normal((seeds, T)).astype(np.float32),
        "rew": rng.standard_normal((seeds, T)).astype(np.float32), "done": (rng.random((seeds, T)) < 0.01).astype(np.float32),
    }  # fmt: skip
    variants = {
        "ppo": ppo_era.Config(task=task, agent="ppo"),
        "ppo-era (era_jax head)": ppo_era.Config(task=task, agent="ppo-era"),
        "ppo-era (jnp head)": ppo_era.Config(task=task, agent="ppo-era", head="jax"),
    }
    calls, times = {}, {k: [] for k in variants}
    keys = jax.vmap(jax.random.PRNGKey)(np.arange(seeds, dtype=np.uint32))
    for name, cfg in variants.items():
        init, _, update = ppo_era.make_agent(cfg, obs_dim, act_dim)
        p, o = init(keys)
        args = (p, o, batch, batch["obs"][:, -1], np.zeros(seeds, np.float32), keys)
        jax.block_until_ready(update(*args))  # compile
        calls[name] = (update, args)
    for _ in range(repeats):
        for name, (update, args) in calls.items():
            t = time.perf_counter()
            jax.block_until_ready(update(*args))
            times[name].append(time.perf_counter() - t)
    base = float(np.median(times["ppo"]))
    return [{"task": task, "variant": k, "ms_per_update": 1e3 * float(np.median(v)), "vs_ppo": float(np.median(v)) / base}
            for k, v in times.items()]  # fmt: skip


# ------------------------------------------------------------------- the comparison's driver


def run_queue(commands: list[list[str]], logs: list[str], workers: int = 2) -> None:
    """Run `commands` at most `workers` at a time, each logging to its file; fail if any fails."""
    pending, running = list(zip(commands, logs)), []
    while pending or running:
        while pending and len(running) < workers:
            cmd, log = pending.pop(0)
            print("+", " ".join(cmd), flush=True)
            running.append((subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT), cmd))
        time.sleep(2)
        for proc, cmd in list(running):
            if proc.poll() is not None:
                running.remove((proc, cmd))
                if proc.returncode:
                    raise RuntimeError(f"failed ({proc.returncode}): {' '.join(cmd)}")


def compare(out: str, steps: int, tune_steps: int, tune_seeds: str = "0-4", seeds: str = "10-14",
            workers: int = 2) -> None:
    """The whole comparison: the tuning on TUNE_TASK with `tune_seeds` (skipped for runs
    already in `out`/tune), the choice per arm, every task with both arms on `seeds` (other
    seeds than the tuning's: the Hopper runs are not the ones the choice was made on; runs
    already in `out` are skipped), the random-policy returns,
    the benchmark, then the report (`out`/report.md) and the plot (`out`/ppo_era.png)."""
    py, script = sys.executable, os.path.join(HERE, "ppo_era.py")
    tune = os.path.join(out, "tune")
    os.makedirs(tune, exist_ok=True)
    cmds, logs = [], []
    for agent, flag, values, prefix in TUNE_GRID:
        for v in values:
            tag = f"{prefix}{v:+g}" if prefix == "h0" else f"{prefix}{v:g}"
            if not os.path.exists(os.path.join(tune, f"{TUNE_TASK}_{agent}_{tag}.json")):
                cmds.append([py, script, "train", "--task", TUNE_TASK, "--agent", agent, flag, str(v), "--tag", tag,
                             "--steps", str(tune_steps), "--seeds", tune_seeds, "--out", tune])  # fmt: skip
                logs.append(os.path.join(tune, f"{agent}_{tag}.log"))
    run_queue(cmds, logs, workers)
    choice = choose(tune)
    with open(os.path.join(tune, "choice.json"), "w") as f:
        json.dump(choice, f, indent=1)
    cmds, logs = [], []
    for task in TASKS:
        for agent in ("ppo", "ppo-era"):
            if os.path.exists(os.path.join(out, f"{task}_{agent}.json")):
                continue
            flag = (["--log-std-init", str(choice["ppo"]["log_std_init"])] if agent == "ppo"
                    else ["--h0-per-dim", str(choice["ppo-era"]["h0_per_dim"])])  # fmt: skip
            cmds.append([py, script, "train", "--task", task, "--agent", agent, *flag, "--steps", str(steps),
                         "--seeds", seeds, "--out", out])  # fmt: skip
            logs.append(os.path.join(out, f"{task}_{agent}.log"))
    run_queue(cmds, logs, workers)
    with open(os.path.join(out, "random_returns.json"), "w") as f:
        json.dump(random_returns(), f, indent=1)
    with open(os.path.join(out, "bench.json"), "w") as f:
        json.dump([r for t in ("Hopper-v5", "Ant-v5") for r in bench(t)], f, indent=1)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(report(tune) + "\n\n" + report(out) + "\n")
    plot(out, os.path.join(out, "ppo_era.png"))
    print(open(os.path.join(out, "report.md")).read())


# ------------------------------------------------------------------- command line


def main(argv=None) -> int:
    """compare | report | plot | bench | random."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["compare", "report", "plot", "bench", "random"])
    ap.add_argument("--runs", default=os.path.join(HERE, "ppo_results"))
    ap.add_argument("--out", default=os.path.join(HERE, "ppo_results"))
    ap.add_argument("--png", default=os.path.join(HERE, "ppo_era.png"))
    ap.add_argument("--steps", type=int, default=499_712, help="compare: steps per seed of the main runs")
    ap.add_argument("--tune-steps", type=int, default=98_304, help="compare: steps per seed of the tuning runs")
    ap.add_argument("--tune-seeds", default="0-4")
    ap.add_argument("--seeds", default="10-14", help="compare: the main runs' seeds")
    ap.add_argument("--task", default="Hopper-v5", help="bench")
    a = ap.parse_args(argv)
    configure_threads(1)
    if a.command == "compare":
        compare(a.out, a.steps, a.tune_steps, a.tune_seeds, a.seeds)
    elif a.command == "report":
        print(report(a.runs))
    elif a.command == "plot":
        plot(a.runs, a.png)
    elif a.command == "bench":
        for r in bench(a.task):
            print(f"{r['task']:16s} {r['variant']:26s} {r['ms_per_update']:8.1f} ms/update  x{r['vs_ppo']:.3f} of PPO")
    else:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "random_returns.json"), "w") as f:
            json.dump(random_returns(), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
