"""What a training run of sac_era.py needs besides the agent: the process setup
(XLA threads, MuJoCo's warnings), the replay buffer, the evaluation episodes,
and the run's logs (the per-window CSV rows, the JSON summary at the end, the
progress bar, reading the CSVs back).

One CSV per run, `<out>/<name>.csv`, with one row per seed every `log_every`
environment steps (columns: README.md), rewritten whole at every window so that
a run in progress can be reported on; `<out>/<name>.json` when the run ends.
Importing this file imports no jax: the agent's functions and metrics arrive as
arguments (sac_tools.py reads the logs without jax).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import time
import warnings

import numpy as np


# ------------------------------------------------------------------- process setup


def configure_threads(threads: int) -> None:
    """One core per run when `threads` is 1: call before jax's first computation
    (XLA reads XLA_FLAGS when its CPU backend starts, the ERA library reads
    ERA_NUM_THREADS on its first threaded call)."""
    if threads > 0:
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_cpu_multi_thread_eigen" not in flags:
            flags += " --xla_cpu_multi_thread_eigen=false"
        os.environ["XLA_FLAGS"] = flags.strip()
        os.environ.setdefault("ERA_NUM_THREADS", str(threads))


def quiet_mujoco() -> None:
    """Drop MuJoCo 4's deprecation warning about gymnasium's models, which it would
    append to MUJOCO_LOG.TXT on every model load; other warnings go to Python's."""
    import mujoco

    def handler(msg: str) -> None:
        if "settotalmass" not in msg:
            warnings.warn(f"MuJoCo: {msg}", RuntimeWarning, stacklevel=2)

    mujoco.set_mju_user_warning(handler)


# ------------------------------------------------------------------- replay buffer


class Replay:
    """One ring buffer per seed, stored as [seeds, capacity, ...] numpy arrays."""

    def __init__(self, seeds: int, capacity: int, obs_dim: int, act_dim: int, rng):
        self.obs = np.zeros((seeds, capacity, obs_dim), np.float32)
        self.act = np.zeros((seeds, capacity, act_dim), np.float32)
        self.rew = np.zeros((seeds, capacity), np.float32)
        self.nobs = np.zeros((seeds, capacity, obs_dim), np.float32)
        self.done = np.zeros((seeds, capacity), np.float32)
        self.capacity, self.size, self.pos, self.rng = capacity, 0, 0, rng

    def add(self, obs, act, rew, nobs, done):
        i = self.pos
        self.obs[:, i], self.act[:, i], self.rew[:, i], self.nobs[:, i], self.done[:, i] = obs, act, rew, nobs, done
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch: int):
        seeds = self.obs.shape[0]
        idx = self.rng.integers(0, self.size, size=(seeds, batch))
        s = np.arange(seeds)[:, None]
        return (self.obs[s, idx], self.act[s, idx], self.rew[s, idx], self.nobs[s, idx], self.done[s, idx])


# ------------------------------------------------------------------- evaluation


def evaluate(greedy, agent, envs, episodes: int, seed: int):
    """Mean return of `episodes` deterministic episodes (action tanh(mean)) per seed."""
    n = len(envs)
    totals = np.zeros((n, episodes))
    for ep in range(episodes):
        obs = np.stack([e.reset(seed=seed + 1000 * ep + i)[0] for i, e in enumerate(envs)]).astype(np.float32)
        live = np.ones(n, bool)
        while live.any():
            acts = np.asarray(greedy(agent, obs[:, None]))[:, 0]
            for i, e in enumerate(envs):
                if not live[i]:
                    continue
                o, r, term, trunc, _ = e.step(acts[i])
                totals[i, ep] += r
                obs[i] = o
                if term or trunc:
                    live[i] = False
    return totals.mean(axis=1)


# ------------------------------------------------------------------- logs


def run_name(cfg) -> str:
    """`<task>_<agent>[-fixed][_<policy>][_<preset>]`: the CSV and JSON names of a run."""
    name = f"{cfg.task}_{cfg.agent}" + ("" if cfg.delta == "learned" or not cfg.is_era else "-fixed")
    if cfg.policy != "tanh":
        name += f"_{cfg.policy}"
    if getattr(cfg, "preset", "default") != "default":
        name += f"_{cfg.preset}"
    return name


def write_csv(path: str, rows: list[dict]) -> None:
    """Every row, the columns in order of first appearance (atomically replaced)."""
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def load_runs(run_dir: str) -> list[dict]:
    """Every row of every CSV in `run_dir`, with its file's name under "run"."""
    rows = []
    for fn in sorted(os.listdir(run_dir)):
        if fn.endswith(".csv"):
            with open(os.path.join(run_dir, fn)) as f:
                for r in csv.DictReader(f):
                    r["run"] = fn[:-4]
                    rows.append(r)
    return rows


class RunLog:
    """The log of one training run (one agent, one task, several seeds).

    The training loop calls `update(metrics)` after every gradient step,
    `step(step, eval_returns, episode_returns)` after every environment step
    (`eval_returns`: the per-seed evaluation returns when this step evaluated,
    else None), times its evaluations with `eval_timer()`, and ends with
    `close(final_eval_returns)`, which writes and returns the summary."""

    def __init__(self, cfg, seeds: list[int], out_dir: str, target_entropy: float, progress: bool = True):
        os.makedirs(out_dir, exist_ok=True)
        self.cfg, self.seeds, self.h0 = cfg, list(seeds), target_entropy
        self.path = os.path.join(out_dir, run_name(cfg))
        self.rows: list[dict] = []
        self.window: list[dict] = []  # the metrics of every update since the last row
        self.eval_s = 0.0
        self.last_eval = [float("nan")] * len(self.seeds)  # for the progress bar
        self.t0 = time.perf_counter()
        self.bar = None
        if progress:
            from tqdm import tqdm

            self.bar = tqdm(total=cfg.steps, desc=f"{cfg.agent} {cfg.task} seeds={seeds}", unit="step", mininterval=2.0)

    def update(self, metrics: dict) -> None:
        self.window.append(metrics)

    @contextlib.contextmanager
    def eval_timer(self):
        """Time spent in here counts in `eval_s`, not in the training speed."""
        t = time.perf_counter()
        yield
        self.eval_s += time.perf_counter() - t

    def _window_metrics(self) -> dict:
        """Means over the window's updates; the minima of the *_min columns."""
        if not self.window:
            return {}
        stacked = {k: np.stack([np.asarray(m[k]) for m in self.window]) for k in sorted(self.window[0])}
        m = {k: v.mean(axis=0) for k, v in stacked.items()}
        for k in ("gauss_entropy_min", "gauss_margin_min", "bounded_entropy_min"):
            m[k] = stacked[k].min(axis=0)
        self.window = []
        return m

    def step(self, step: int, eval_returns, episode_returns: list[list[float]]) -> None:
        cfg = self.cfg
        if self.bar is not None:
            self.bar.update(1)
        if eval_returns is not None:
            self.last_eval = eval_returns
        if not (step % cfg.log_every == 0 or step == cfg.steps):
            return
        wall = time.perf_counter() - self.t0
        m = self._window_metrics()
        n = len(self.seeds)
        for i, s in enumerate(self.seeds):
            self.rows.append(
                {
                    "agent": cfg.agent,
                    "task": cfg.task,
                    "policy": cfg.policy,
                    "delta_mode": cfg.delta if cfg.is_era else "",
                    "preset": getattr(cfg, "preset", "default"),
                    "seed": s,
                    "step": step,
                    "eval_return": float(eval_returns[i]) if eval_returns is not None else "",
                    "train_return": float(np.mean(episode_returns[i][-5:])) if episode_returns[i] else "",
                    "target_entropy": self.h0,
                    **{k: float(v[i]) for k, v in m.items()},
                    "wall_s": wall,
                    "train_steps_per_s": step * n / max(wall - self.eval_s, 1e-9),
                }
            )
        write_csv(self.path + ".csv", self.rows)
        if self.bar is not None and m:
            self.bar.set_postfix(
                ret=f"{np.nanmean(self.last_eval):.0f}",
                H=f"{np.mean(m['bounded_entropy']):.2f}",
                H0=self.h0,
                delta=f"{np.mean(m['delta']):.2f}",
                refresh=False,
            )

    def close(self, final_eval_returns) -> dict:
        """Write `<name>.json` and return it: the config, the final evaluation
        returns, wall and evaluation time, training steps per second."""
        import jax

        if self.bar is not None:
            self.bar.close()
        wall = time.perf_counter() - self.t0
        summary = {
            "config": dataclasses.asdict(self.cfg),
            "seeds": self.seeds,
            "final_eval_return": [float(x) for x in final_eval_returns],
            "wall_s": wall,
            "eval_s": self.eval_s,
            "train_steps_per_s": self.cfg.steps * len(self.seeds) / max(wall - self.eval_s, 1e-9),
            "jax": jax.__version__,
        }
        with open(self.path + ".json", "w") as f:
            json.dump(summary, f, indent=1)
        return summary
