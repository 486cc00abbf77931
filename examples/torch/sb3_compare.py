#!/usr/bin/env python3
"""Stable-Baselines3's SAC against SAC-ERA (era_torch.sb3.SACERA) on one MuJoCo task.

Both agents are SB3's defaults (two 256x256 critics, a 256x256 actor, Adam 3e-4, batch
256, one update per step, gamma 0.99, Polyak 0.005) and differ only in the entropy
control: SAC learns its temperature from alpha = 1 toward target entropy -|A| for its tanh
policy (log-std clamped to [-20, 2]); SAC-ERA has no temperature and no entropy term, its
actor's log-std comes from ERA's head ([-8, 0]), it acts through the truncated normal
TN(tanh(mean), std, [-1, 1]) and learns delta by SGD at 0.5 so that the truncated normal's
batch-mean entropy meets -|A| (docs/sb3.md).

  python sb3_compare.py run --agent sac --seeds 0 1 2 --steps 8000 --out runs/sb3   # one agent
  python sb3_compare.py report --out runs/sb3                                         # the table

``run`` writes one JSON per seed: evaluation returns (5 deterministic episodes every
``--eval-every`` steps), the bounded policy's entropy at the end (mean over the last 1000
replay-buffer states: the truncated normal's closed form for SAC-ERA, ``-log_prob`` of a
sampled action for SAC), delta and the temperature, wall time.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import time

import numpy as np
import torch

AGENTS = ("sac", "sac-era")


def make_model(agent: str, env, seed: int, learning_starts: int):
    """SB3's SAC or era_torch.sb3.SACERA with SB3's default settings (``learning_starts`` aside)."""
    from stable_baselines3 import SAC

    from era_torch import sb3

    cls = SAC if agent == "sac" else sb3.SACERA
    return cls("MlpPolicy", env, learning_starts=learning_starts, seed=seed, device="cpu")


def bounded_entropy(model, states: int = 1000) -> float:
    """The acting policy's entropy averaged over the last ``states`` replay-buffer states."""
    buf = model.replay_buffer
    end = buf.buffer_size if buf.full else buf.pos
    obs = torch.as_tensor(buf.observations[max(0, end - states):end, 0], dtype=torch.float32)
    with torch.no_grad():
        _, log_prob = model.actor.action_log_prob(obs)
        if hasattr(model.actor, "bounded_entropy"):
            return float(model.actor.bounded_entropy(log_prob).mean())
        return float(-log_prob.mean())


def evaluate(model, env, episodes: int, seed: int) -> float:
    """The mean return of ``episodes`` deterministic episodes."""
    from stable_baselines3.common.evaluation import evaluate_policy

    env.reset(seed=seed)
    mean, _ = evaluate_policy(model, env, n_eval_episodes=episodes, deterministic=True)
    return float(mean)


def run(agent: str, task: str, seed: int, steps: int, eval_every: int, learning_starts: int, out: str) -> dict:
    """One training run; writes and returns its record."""
    import gymnasium as gym

    torch.set_num_threads(1)
    from stable_baselines3.common.monitor import Monitor

    env, eval_env = gym.make(task), Monitor(gym.make(task))
    model = make_model(agent, env, seed, learning_starts)
    start, evals, done = time.time(), [], 0
    while done < steps:
        chunk = min(eval_every, steps - done)
        model.learn(chunk, reset_num_timesteps=False)
        done += chunk
        evals.append((done, evaluate(model, eval_env, 5, 10_000 + seed)))
    record = dict(
        agent=agent, task=task, seed=seed, steps=steps, learning_starts=learning_starts, evals=evals,
        final_return=evals[-1][1], bounded_entropy=bounded_entropy(model),
        target_entropy=-float(np.prod(env.action_space.shape)),
        delta=float(model.actor.era.learner.delta) if agent == "sac-era" else None,
        ent_coef=None if agent == "sac-era" else float(torch.exp(model.log_ent_coef.detach()).item()),
        seconds=time.time() - start,
    )
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"{task}_{agent}_{seed}.json"), "w") as f:
        json.dump(record, f, indent=1)
    return record


def bootstrap_ci(values, n: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """A 95% percentile bootstrap interval of the mean."""
    rng = np.random.default_rng(seed)
    v = np.asarray(values, dtype=float)
    means = rng.choice(v, size=(n, v.size), replace=True).mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def report(out: str) -> str:
    """The markdown table of every run in ``out``, one row per task and agent."""
    records = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(out, "*.json")))]
    if not records:
        raise SystemExit(f"sb3_compare: no runs in {out}")
    lines = ["| task | agent | env steps | seeds | final return: mean [95% bootstrap CI] | per-seed final returns "
             "| bounded entropy at the end (target) | delta / alpha at the end | minutes per run |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for task in sorted({r["task"] for r in records}):
        for agent in AGENTS:
            rs = [r for r in records if r["task"] == task and r["agent"] == agent]
            if not rs:
                continue
            finals = [r["final_return"] for r in rs]
            lo, hi = bootstrap_ci(finals)
            scalar = "delta" if agent == "sac-era" else "ent_coef"
            lines.append(
                f"| {task} | {agent} | {rs[0]['steps']} | {len(rs)} | {np.mean(finals):.0f} [{lo:.0f}, {hi:.0f}] "
                f"| {', '.join(f'{x:.0f}' for x in finals)} "
                f"| {np.mean([r['bounded_entropy'] for r in rs]):.2f} ({rs[0]['target_entropy']:.0f}) "
                f"| {np.mean([r[scalar] for r in rs]):.3g} "
                f"| {np.mean([r['seconds'] for r in rs]) / 60:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    """Command line: ``run`` (one agent, its seeds in turn) or ``report``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--agent", choices=AGENTS, required=True)
    r.add_argument("--task", default="Hopper-v5")
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    r.add_argument("--steps", type=int, default=8000)
    r.add_argument("--eval-every", type=int, default=2000)
    r.add_argument("--learning-starts", type=int, default=1000)
    r.add_argument("--out", default="runs/sb3")
    q = sub.add_parser("report")
    q.add_argument("--out", default="runs/sb3")
    args = p.parse_args(argv)
    if args.cmd == "run":
        for seed in args.seeds:
            rec = run(args.agent, args.task, seed, args.steps, args.eval_every, args.learning_starts, args.out)
            print(f"{rec['agent']} seed {seed}: final return {rec['final_return']:.1f}, bounded entropy "
                  f"{rec['bounded_entropy']:.2f}, {rec['seconds'] / 60:.1f} min", flush=True)
    else:
        print(report(args.out))
        import gymnasium
        import mujoco
        import stable_baselines3

        print(f"\nPython {platform.python_version()}, torch {torch.__version__}, stable-baselines3 "
              f"{stable_baselines3.__version__}, gymnasium {gymnasium.__version__}, mujoco {mujoco.__version__}, "
              f"{os.cpu_count()} CPUs ({platform.machine()})")

if __name__ == "__main__":
    main()
