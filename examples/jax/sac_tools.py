#!/usr/bin/env python3
"""The tooling around sac_era.py: run summaries, the markdown table of
RESULTS.md, the plot of returns and entropies, and the update benchmark.

  python examples/jax/sac_tools.py report --runs examples/jax/results      # markdown table (bootstrap CIs)
  python examples/jax/sac_tools.py plot   --runs examples/jax/results --png examples/jax/sac_era.png
  python examples/jax/sac_tools.py bench                                   # cost of one update step

`sac_era.py report|plot|bench ...` runs the same commands. The logs are the
CSVs that sac_era.py's `train` writes (sac_run.py, columns: README.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from sac_run import configure_threads, load_runs, quiet_mujoco

# ------------------------------------------------------------------- run summaries and report


def run_label(r: dict) -> str:
    """The agent, with its delta mode and policy when not the defaults of plain SAC."""
    lab = r["agent"]
    if r.get("delta_mode") == "fixed":
        lab += " (fixed delta)"
    if r.get("policy", "tanh") != "tanh":
        lab += f" [{r['policy']}]"
    if r.get("preset", "default") not in ("", "default"):
        lab += f", {r['preset']} preset"
    return lab


def bootstrap_ci(values, reps: int = 10_000, seed: int = 0):
    """95% percentile bootstrap interval of the mean."""
    v = np.asarray(values, float)
    if len(v) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(reps, len(v)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def summarize(run_dir: str) -> list[dict]:
    """One entry per (task, agent): final returns per seed, entropies, speed."""
    rows = load_runs(run_dir)
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["task"], run_label(r)), []).append(r)
    out = []
    for (task, label), rs in sorted(groups.items()):
        # the last evaluation (a run still in progress reports where it is)
        last_step = max(int(r["step"]) for r in rs if r["eval_return"] != "")
        final = {int(r["seed"]): float(r["eval_return"]) for r in rs if int(r["step"]) == last_step}
        seeds = sorted(final)
        finals = [final[s] for s in seeds]
        learning = [r for r in rs if r.get("bounded_entropy", "") != ""]
        last = [r for r in learning if int(r["step"]) == last_step]
        lo, hi = bootstrap_ci(finals)
        out.append(
            {
                "task": task,
                "agent": label,
                "steps": last_step,
                "seeds": seeds,
                "finals": finals,
                "mean": float(np.mean(finals)),
                "ci": (lo, hi),
                "target": float(rs[0]["target_entropy"]),
                "bounded_entropy_final": float(np.mean([float(r["bounded_entropy"]) for r in last])),
                "gauss_entropy_final": float(np.mean([float(r["gauss_entropy"]) for r in last])),
                # the lowest 1000-update window mean, and the lowest single-batch mean
                # (absent from logs written before that column existed)
                "bounded_entropy_min": float(min(float(r["bounded_entropy"]) for r in learning)),
                "bounded_entropy_min_batch": (
                    float(min(float(r["bounded_entropy_min"]) for r in learning))
                    if all(r.get("bounded_entropy_min", "") not in ("", None) for r in learning)
                    else None
                ),
                "margin_min": float(min(float(r["gauss_margin_min"]) for r in learning)),
                "gauss_entropy_min": float(min(float(r["gauss_entropy_min"]) for r in learning)),
                "delta_final": float(np.mean([float(r["delta"]) for r in last])),
                "steps_per_s": float(np.mean([float(r["train_steps_per_s"]) for r in last])),
            }
        )
    return out


def report(run_dir: str) -> str:
    """The markdown table of RESULTS.md."""
    lines = [
        "| task | agent | env steps | seeds | final return: mean [95% bootstrap CI] | per-seed final returns "
        "| bounded entropy: end / lowest window / lowest batch | target | ERA margin: min over every state "
        "| delta at end | env steps/s (all seeds) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in summarize(run_dir):
        per_seed = ", ".join(f"{v:.0f}" for v in s["finals"])
        era = "sac-era" in s["agent"]
        margin = f"{s['margin_min']:+.1e}" if era else "-"
        low_batch = "-" if s["bounded_entropy_min_batch"] is None else f"{s['bounded_entropy_min_batch']:.2f}"
        lines.append(
            f"| {s['task']} | {s['agent']} | {s['steps']} | {len(s['seeds'])} | {s['mean']:.0f} "
            f"[{s['ci'][0]:.0f}, {s['ci'][1]:.0f}] | {per_seed} "
            f"| {s['bounded_entropy_final']:.2f} / {s['bounded_entropy_min']:.2f} / {low_batch} "
            f"| {s['target']:g} | {margin} | {s['delta_final']:.2f} | {s['steps_per_s']:.0f} |"
        )
    return "\n".join(lines)


def demo_table(run_dir: str) -> str:
    """The short table `sac_era.py demo` prints: one line per run."""
    lines = [f"{'agent':<20} {'task':<16} {'final return':>12} {'bounded H':>10} {'Gaussian H':>11} {'target':>7} {'delta':>7}"]
    for s in summarize(run_dir):
        lines.append(
            f"{s['agent']:<20} {s['task']:<16} {s['mean']:>12.1f} {s['bounded_entropy_final']:>10.2f} "
            f"{s['gauss_entropy_final']:>11.2f} {s['target']:>7.1f} {s['delta_final']:>7.2f}"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------- plot


def plot(run_dir: str, path: str) -> None:
    """Returns (left) and entropies (right), mean over seeds with min-max bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = load_runs(run_dir)
    tasks = sorted({r["task"] for r in rows})
    fig, axes = plt.subplots(
        len(tasks), 2, figsize=(16, 3.8 * len(tasks)), squeeze=False, gridspec_kw={"width_ratios": [1, 1.2]}
    )
    colors = {}
    for ti, task in enumerate(tasks):
        ax_r, ax_h = axes[ti]
        labels = sorted({run_label(r) for r in rows if r["task"] == task})
        for label in labels:
            c = colors.setdefault(label, f"C{len(colors)}")
            rs = [r for r in rows if r["task"] == task and run_label(r) == label]
            seeds = sorted({int(r["seed"]) for r in rs})

            def curve(field):
                steps = sorted({int(r["step"]) for r in rs if r.get(field, "") != ""})
                m = np.full((len(seeds), len(steps)), np.nan)
                for r in rs:
                    if r.get(field, "") != "":
                        m[seeds.index(int(r["seed"])), steps.index(int(r["step"]))] = float(r[field])
                return np.array(steps), m

            st, m = curve("eval_return")
            if len(st):
                ax_r.plot(st, np.nanmean(m, 0), color=c, label=f"{label} ({len(seeds)} seeds)")
                ax_r.fill_between(st, np.nanmin(m, 0), np.nanmax(m, 0), color=c, alpha=0.15)
            st, m = curve("bounded_entropy")
            if len(st):
                ax_h.plot(st, np.nanmean(m, 0), color=c, label=f"{label}: bounded policy")
                ax_h.fill_between(st, np.nanmin(m, 0), np.nanmax(m, 0), color=c, alpha=0.15)
            st, m = curve("bounded_entropy_min")
            if len(st) and "sac-era" in label:
                ax_h.plot(st, np.nanmin(m, 0), color=c, lw=0.6, alpha=0.7, label=f"{label}: lowest batch mean")
            st, m = curve("gauss_entropy")
            if len(st):
                ax_h.plot(st, np.nanmean(m, 0), color=c, ls=":", label=f"{label}: Gaussian")
            if "sac-era" in label:
                st, m = curve("delta")
                if len(st):
                    h0 = float(rs[0]["target_entropy"])
                    ax_h.plot(st, h0 + np.nanmean(m, 0), color=c, ls="-.", lw=0.8, label=f"{label}: H0 + delta (Gaussian floor)")
        # one line per target: a -|A| target is on the bounded policy, a positive one
        # (the paper's 0.25 |A|) is a floor on the Gaussian
        for j, target in enumerate(sorted({float(r["target_entropy"]) for r in rows if r["task"] == task})):
            what = "Gaussian floor" if target > 0 else "bounded policy"
            ax_h.axhline(target, color="k", ls=("--", ":")[j % 2], lw=1, label=f"target {target:g} ({what})")
        ax_r.set(title=f"{task}: evaluation return", xlabel="environment steps", ylabel="return")
        ax_h.set(title=f"{task}: policy entropy (nats)", xlabel="environment steps", ylabel="entropy")
        ax_r.legend(fontsize=8)
        ax_h.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))  # outside: the curves stay visible
        ax_r.grid(alpha=0.3)
        ax_h.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------- update-step benchmark


def random_batch(rng, obs_dim: int, act_dim: int, batch: int):
    """A replay batch (obs, act, rew, next_obs, done) of random f32 values, for
    timing and testing an update without an environment."""
    import jax.numpy as jnp
    return tuple(
        jnp.asarray(x, jnp.float32)
        for x in (
            rng.standard_normal((batch, obs_dim)),
            rng.uniform(-1, 1, (batch, act_dim)),
            rng.standard_normal(batch),
            rng.standard_normal((batch, obs_dim)),
            np.zeros(batch),
        )
    )


def bench(batch: int = 256, task: str = "HalfCheetah-v5", iters: int = 200, repeats: int = 7,
          dims: tuple[int, int] | None = None) -> list[dict]:
    """Time one jitted update step (one seed, batch `batch`) of plain SAC, SAC-ERA
    with the native head and SAC-ERA with the pure-JAX head (all three with the
    tanh-Gaussian policy, so that only the head differs), and SAC-ERA as the
    comparison runs it (native head, truncated normal); the variants are
    interleaved in every repeat and the median per-step time is reported.
    `dims` = (obs_dim, act_dim) replaces the task's sizes (no environment is made:
    the batch is random either way)."""
    import jax

    import sac_era  # here, not at the top: report and plot need no jax
    if dims is None:
        import gymnasium as gym

        quiet_mujoco()
        env = gym.make(task)
        dims = (env.observation_space.shape[0], env.action_space.shape[0])
    obs_dim, act_dim = dims
    b = random_batch(np.random.default_rng(0), obs_dim, act_dim, batch)
    variants = {
        "sac": sac_era.Config(agent="sac", task=task),
        "sac-era (native head)": sac_era.Config(agent="sac-era", task=task, head="native"),
        "sac-era (pure-JAX head)": sac_era.Config(agent="sac-era", task=task, head="jax"),
        # the configuration the comparison runs (truncated-normal policy, closed-form entropy)
        "sac-era (native, truncnorm)": sac_era.Config(agent="sac-era", task=task, policy="truncnorm"),
    }
    steps, states = {}, {}
    for name, cfg in variants.items():
        init, opt = sac_era.make_agent(cfg, obs_dim, act_dim)
        update = sac_era.make_update(cfg, act_dim, opt)

        def run(agent, batch, update=update):
            def body(a, _):
                a, m = update(a, batch)
                return a, m["critic_loss"]

            return jax.lax.scan(body, agent, None, length=iters)

        steps[name] = jax.jit(run)
        states[name] = init(jax.random.PRNGKey(0))
        jax.block_until_ready(steps[name](states[name], b))  # compile + warm up
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(repeats):
        for name in variants:
            t = time.perf_counter()
            jax.block_until_ready(steps[name](states[name], b))
            times[name].append((time.perf_counter() - t) / iters)
    base = float(np.median(times["sac"]))
    return [
        {"variant": k, "ms_per_update": 1e3 * float(np.median(v)), "vs_sac": float(np.median(v)) / base}
        for k, v in times.items()
    ]


# ------------------------------------------------------------------- command line


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("plot", "report"):
        q = sub.add_parser(name)
        q.add_argument("--runs", default="runs/sac")
        q.add_argument("--png", default=None, help="plot: output file (default <runs>/sac_era.png)")
    bq = sub.add_parser("bench", help="time one update step: sac, sac-era native, sac-era pure JAX")
    bq.add_argument("--task", default="HalfCheetah-v5")
    bq.add_argument("--batch", type=int, default=256)
    bq.add_argument("--iters", type=int, default=200)
    bq.add_argument("--repeats", type=int, default=7)
    bq.add_argument("--threads", type=int, default=0)
    bq.add_argument("--obs-dim", type=int, default=None, help="with --act-dim: these sizes instead of the task's "
                    "(no environment needed: gymnasium and MuJoCo may be absent)")
    bq.add_argument("--act-dim", type=int, default=None)
    a = p.parse_args(argv)
    if a.cmd == "bench" and (a.obs_dim is None) != (a.act_dim is None):
        p.error("bench: --obs-dim and --act-dim go together")

    if a.cmd == "report":
        print(report(a.runs))
    elif a.cmd == "plot":
        png = a.png or os.path.join(a.runs, "sac_era.png")
        plot(a.runs, png)
        print(png)
    elif a.cmd == "bench":
        configure_threads(a.threads)  # before jax's first computation
        import jax

        dims = (a.obs_dim, a.act_dim) if a.obs_dim is not None else None
        res = bench(batch=a.batch, task=a.task, iters=a.iters, repeats=a.repeats, dims=dims)
        what = f"obs {a.obs_dim}, act {a.act_dim}" if dims else a.task
        print(f"one update step, batch {a.batch}, {what}, jax {jax.__version__}, {jax.devices()[0].platform}")
        print(f"{'variant':<26} {'ms/update':>10} {'vs sac':>8}")
        for r in res:
            print(f"{r['variant']:<26} {r['ms_per_update']:>10.3f} {r['vs_sac']:>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
