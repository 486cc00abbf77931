#!/usr/bin/env python3
"""PPO and PPO-ERA for continuous control on MuJoCo, in plain JAX + optax.

  --agent ppo      PPO with the hyperparameters of CleanRL's ppo_continuous_action: 2048 steps
                   per rollout, 10 epochs of 32 minibatches, Adam at 3e-4 annealed linearly to 0,
                   GAE (gamma 0.99, lambda 0.95), clip 0.2 with value clipping, advantages
                   normalised per minibatch, 64x64 tanh networks with orthogonal init, a
                   state-independent log-std parameter, no entropy bonus, max grad norm 0.5;
                   observations and rewards normalised by running statistics and clipped at 10
                   (gymnasium's NormalizeObservation / NormalizeReward), actions clipped to the
                   bounds by the environment wrapper (ClipAction).
  --agent ppo-era  the same agent, but the Gaussian's log-std is era_jax.gaussian_log_std applied
                   to the state-independent parameter (docs/math.md#gaussian-head), with the
                   target entropy H0 = h0_per_dim * |A| as a floor on the Gaussian in every state
                   and delta fixed at 0 (docs/settings.md, "PPO"); no entropy term anywhere.

Seeds run together: the parameters, optimiser states and keys carry a leading seed axis and
every jitted function is vmapped over it; the environments are one per seed, stepped in a
plain loop. The whole update (GAE, 10 epochs of 32 minibatches) is one jitted call.

  python examples/jax/ppo_era.py train --task Hopper-v5 --agent ppo-era --steps 100000 --seeds 0-4 \
      --out examples/jax/ppo_results

One CSV per run, `<out>/<name>.csv`, one row per seed and rollout (columns: `LOG_COLUMNS`),
rewritten whole after every rollout, and `<out>/<name>.json` when the run ends. Two kinds of
return are logged: those of the training episodes (the stochastic policy, raw rewards, as
CleanRL reports them) and those of a deterministic evaluation (`evaluate`: the Gaussian's mean
as the action, observations normalised with the training statistics frozen, on environments
of their own), run `eval_points` times over the run, the last at its end, `eval_episodes`
episodes per seed each time. ppo_tools.py reports and plots both.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import sys
import time

import numpy as np

from ppo_envs import EVAL_SEED_OFFSET, NumpyPolicy, RunningMeanStd, SeedEnvs, evaluate, make_env  # noqa: F401
from sac_run import configure_threads, write_csv

L2PE = math.log(2.0 * math.pi * math.e)  # the entropy of N(0, 1) is 0.5 * L2PE

#: The columns of a run's CSV, in order.
LOG_COLUMNS = (
    "agent", "task", "tag", "seed", "step", "episode_return", "episodes", "entropy_per_dim", "margin_min",
    "target_entropy", "pg_loss", "v_loss", "approx_kl", "clipfrac", "lr", "wall_s", "rollout_s", "update_s",
    "steps_per_s_per_seed", "eval_return", "eval_s",
)  # fmt: skip



# ------------------------------------------------------------------- configuration


@dataclasses.dataclass(frozen=True)
class Config:
    """One run's settings; the defaults are CleanRL's ppo_continuous_action."""

    task: str = "Hopper-v5"
    agent: str = "ppo"  # "ppo" or "ppo-era"
    steps: int = 1_000_000  # environment steps per seed
    num_steps: int = 2048  # rollout length (one environment per seed)
    update_epochs: int = 10
    num_minibatches: int = 32
    lr: float = 3e-4
    anneal_lr: bool = True
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_coef: float = 0.2
    clip_vloss: bool = True
    norm_adv: bool = True
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    adam_eps: float = 1e-5
    hidden: int = 64
    obs_clip: float = 10.0
    rew_clip: float = 10.0
    log_std_init: float = 0.0  # ppo: the log-std parameter's initial value
    h0_per_dim: float = -0.3  # ppo-era: H0 = h0_per_dim * |A|, a floor on the Gaussian
    log_std_min: float = -8.0  # ppo-era: the head's bounds (the library's defaults)
    log_std_max: float = 0.0
    head: str = "native"  # ppo-era: "native" (era_jax) or "jax" (the same math in plain jnp)
    tag: str = ""  # appended to the run's name (tuning runs)
    eval_points: int = 10  # deterministic evaluations over the run, evenly spaced, the last at its end
    eval_episodes: int = 3  # episodes per seed and evaluation
    eval_last: int = 3  # the final evaluation return averages this many last evaluations

    @property
    def is_era(self) -> bool:
        """True for PPO-ERA."""
        return self.agent == "ppo-era"

    @property
    def minibatch_size(self) -> int:
        """Samples per minibatch and seed (64 with the defaults)."""
        return self.num_steps // self.num_minibatches

    @property
    def iterations(self) -> int:
        """Rollouts (and updates) in the run."""
        return max(1, self.steps // self.num_steps)

    def is_eval_iteration(self, it: int) -> bool:
        """True when the update of rollout `it` (0-based) is followed by an evaluation: every
        `iterations // eval_points` rollouts, and after the last one."""
        if self.eval_points <= 0:
            return False
        every = max(1, self.iterations // self.eval_points)
        return (it + 1) % every == 0 or it == self.iterations - 1

    def target_entropy(self, act_dim: int) -> float:
        """H0 of the ERA arm (nats, the whole |A|-dimensional Gaussian); NaN for PPO."""
        return self.h0_per_dim * act_dim if self.is_era else float("nan")


def run_name(cfg: Config) -> str:
    """`<task>_<agent>[_<tag>]`: the CSV and JSON names of a run."""
    return f"{cfg.task}_{cfg.agent}" + (f"_{cfg.tag}" if cfg.tag else "")


# ------------------------------------------------------------------- networks and policy


def mlp_init(key, sizes, last_scale: float):
    """Orthogonal weights (gain sqrt(2), `last_scale` on the last layer), zero biases."""
    import jax
    import jax.numpy as jnp

    keys = jax.random.split(key, len(sizes) - 1)
    layers = []
    for i, (k, a, b) in enumerate(zip(keys, sizes[:-1], sizes[1:])):
        gain = last_scale if i == len(sizes) - 2 else math.sqrt(2.0)
        layers.append((jax.nn.initializers.orthogonal(gain)(k, (a, b), jnp.float32), jnp.zeros(b, jnp.float32)))
    return layers


def mlp_apply(layers, x):
    """tanh hidden layers, linear output."""
    import jax.numpy as jnp

    for w, b in layers[:-1]:
        x = jnp.tanh(x @ w + b)
    w, b = layers[-1]
    return x @ w + b


def init_params(cfg: Config, key, obs_dim: int, act_dim: int) -> dict:
    """One seed's parameters: the actor's mean network, the critic, and the
    state-independent log-std parameter (PPO: the log-std itself; PPO-ERA: the head's input)."""
    import jax
    import jax.numpy as jnp

    ka, kc = jax.random.split(key)
    h = cfg.hidden
    start = 0.0 if cfg.is_era else cfg.log_std_init  # the head spreads H0 evenly from z = 0
    return {
        "actor": mlp_init(ka, (obs_dim, h, h, act_dim), 0.01),
        "critic": mlp_init(kc, (obs_dim, h, h, 1), 1.0),
        "log_std": jnp.full((act_dim,), start, jnp.float32),
    }


def make_log_std(cfg: Config, act_dim: int):
    """`log_std(param, rows) -> [rows, act_dim]`: the policy's log-std for `rows` states.
    PPO broadcasts its parameter; PPO-ERA passes every row through the ERA head (native, or
    the same math in jnp with `cfg.head == "jax"`), so each state's Gaussian has entropy
    `>= H0` (delta 0)."""
    import jax.numpy as jnp

    if not cfg.is_era:
        return lambda p, rows: jnp.broadcast_to(p, (rows, act_dim))
    if cfg.head == "native":
        import era_jax

        head = era_jax.gaussian_log_std
    else:
        import sac_era

        head = sac_era.pure_jax_reference().gaussian_log_std
    h0, lo, hi = cfg.target_entropy(act_dim), cfg.log_std_min, cfg.log_std_max

    def log_std(p, rows):
        return head(jnp.broadcast_to(p, (rows, act_dim)), target_entropy=h0, log_std_min=lo, log_std_max=hi)

    return log_std


def gaussian_log_prob(mean, log_std, act):
    """log N(act; mean, exp(log_std)^2), summed over the last axis."""
    import jax.numpy as jnp

    z = (act - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z * z - log_std - 0.5 * math.log(2.0 * math.pi), axis=-1)


def gaussian_entropy(log_std):
    """Entropy of the diagonal Gaussian, summed over the last axis (docs/math.md#gaussian-entropy)."""
    import jax.numpy as jnp

    return jnp.sum(log_std, axis=-1) + 0.5 * log_std.shape[-1] * L2PE


# ------------------------------------------------------------------- the agent's jitted functions


def learning_rate(cfg: Config, count):
    """Adam's rate at optimiser step `count`: `lr * (1 - i / iterations)` in update i
    (0-based), constant within an update (CleanRL's annealing); `lr` without annealing."""
    if not cfg.anneal_lr:
        return cfg.lr
    return cfg.lr * (1.0 - (count // (cfg.update_epochs * cfg.num_minibatches)) / cfg.iterations)


def make_optimizer(cfg: Config):
    """Clip by global norm `max_grad_norm`, then Adam (eps 1e-5) at `learning_rate`."""
    import optax

    lr = functools.partial(learning_rate, cfg) if cfg.anneal_lr else cfg.lr
    return optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), optax.adam(lr, eps=cfg.adam_eps))


def gae(val, rew, done, next_value, gamma: float, lam: float):
    """Generalised advantage estimates of one rollout `[T]`: `done[t]` says the episode ended
    after step t (no bootstrap across it); `next_value` is the value after the last step
    (already 0 if that step ended an episode)."""
    import jax
    import jax.numpy as jnp

    def back(carry, x):
        adv_next, v_next = carry
        v, r, d = x
        nonterminal = 1.0 - d
        delta = r + gamma * v_next * nonterminal - v
        adv = delta + gamma * lam * nonterminal * adv_next
        return (adv, v), adv

    _, adv = jax.lax.scan(back, (jnp.zeros((), val.dtype), next_value), (val, rew, done), reverse=True)
    return adv


@functools.lru_cache(maxsize=16)
def make_agent(cfg: Config, obs_dim: int, act_dim: int):
    """`(init, act_log_std, update)`, each jitted and vmapped over the leading seed axis.

    - `init(keys[S]) -> (params, opt_state)`
    - `act_log_std(params) -> [S, act_dim]`: the log-std of the policy that acts (one row,
      the same in every state), for `NumpyPolicy`
    - `update(params, opt_state, batch, next_obs, next_done, keys) -> (params, opt_state, metrics, keys)`:
      GAE over the rollout `batch` (a dict of `[S, T, ...]` arrays: obs, act, logp, val, rew,
      done = the episode ended after that step), then `update_epochs` epochs of
      `num_minibatches` minibatches. `metrics` has one value per seed.

    Cached per (cfg, obs_dim, act_dim): a second run of the same configuration compiles nothing."""
    import jax
    import jax.numpy as jnp
    import optax

    opt = make_optimizer(cfg)
    log_std_fn = make_log_std(cfg, act_dim)
    h0 = cfg.target_entropy(act_dim)

    def init_one(key):
        p = init_params(cfg, key, obs_dim, act_dim)
        return p, opt.init(p)

    def loss_fn(p, mb):
        mean = mlp_apply(p["actor"], mb["obs"])
        ls = log_std_fn(p["log_std"], mb["obs"].shape[0])
        newlogp = gaussian_log_prob(mean, ls, mb["act"])
        ent = gaussian_entropy(ls)
        logratio = newlogp - mb["logp"]
        ratio = jnp.exp(logratio)
        adv = mb["adv"]
        if cfg.norm_adv:
            adv = (adv - adv.mean()) / (adv.std(ddof=1) + 1e-8)
        pg = jnp.maximum(-adv * ratio, -adv * jnp.clip(ratio, 1 - cfg.clip_coef, 1 + cfg.clip_coef)).mean()
        v = mlp_apply(p["critic"], mb["obs"])[:, 0]
        v_loss = (v - mb["ret"]) ** 2
        if cfg.clip_vloss:
            v_clip = mb["val"] + jnp.clip(v - mb["val"], -cfg.clip_coef, cfg.clip_coef)
            v_loss = jnp.maximum(v_loss, (v_clip - mb["ret"]) ** 2)
        v_loss = 0.5 * v_loss.mean()
        loss = pg - cfg.ent_coef * ent.mean() + cfg.vf_coef * v_loss
        m = {
            "pg_loss": pg,
            "v_loss": v_loss,
            "approx_kl": jnp.mean((ratio - 1) - logratio),
            "clipfrac": jnp.mean((jnp.abs(ratio - 1) > cfg.clip_coef).astype(jnp.float32)),
            "margin_min": jnp.min(ent) - h0 if cfg.is_era else jnp.nan,
        }
        return loss, m

    def update_one(p, o, batch, next_obs, next_done, key):
        next_value = mlp_apply(p["critic"], next_obs)[0]
        adv = gae(batch["val"], batch["rew"], batch["done"], next_value * (1.0 - next_done), cfg.gamma, cfg.gae_lambda)
        data = {k: batch[k] for k in ("obs", "act", "logp", "val")}
        data["adv"], data["ret"] = adv, adv + batch["val"]
        ls_rollout = log_std_fn(p["log_std"], batch["obs"].shape[0])  # the policy that collected the batch
        ent_rollout = gaussian_entropy(ls_rollout)
        n = cfg.num_steps

        def minibatch(carry, mb):
            p, o = carry
            (_, m), g = jax.value_and_grad(loss_fn, has_aux=True)(p, mb)
            upd, o = opt.update(g, o, p)
            return (optax.apply_updates(p, upd), o), m

        def epoch(carry, k):
            perm = jax.random.permutation(k, n)
            mbs = jax.tree_util.tree_map(
                lambda x: x[perm].reshape((cfg.num_minibatches, cfg.minibatch_size) + x.shape[1:]), data
            )
            return jax.lax.scan(minibatch, carry, mbs)

        key, k = jax.random.split(key)
        (p, o), ms = jax.lax.scan(epoch, (p, o), jax.random.split(k, cfg.update_epochs))
        metrics = {k: jnp.mean(v) for k, v in ms.items() if k != "margin_min"}
        metrics["approx_kl"] = ms["approx_kl"][-1].mean()  # the last epoch's, as CleanRL logs it
        margin = jnp.min(ent_rollout) - h0 if cfg.is_era else jnp.nan
        metrics["margin_min"] = jnp.minimum(jnp.min(ms["margin_min"]), margin)
        metrics["entropy_per_dim"] = jnp.mean(ent_rollout) / act_dim
        return p, o, metrics, key

    # One seed at a time, stacked: vmapped, the orthogonal init is a batched QR, which jaxlib's
    # LAPACK kernel splits over XLA's intra-op thread pool and waits for from a thread of that
    # pool; with two such kernels on a two-thread pool (a 2-core machine) both wait forever.
    # One matrix per call runs inline, and gives the same bits as the batched call.
    init_single = jax.jit(init_one)

    def init(keys):
        per_seed = [init_single(k) for k in keys]
        return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *per_seed)

    act_log_std = jax.jit(jax.vmap(lambda p: log_std_fn(p["log_std"], 1)[0]))
    update = jax.jit(jax.vmap(update_one))
    return init, act_log_std, update


# ------------------------------------------------------------------- training


def train(cfg: Config, seeds: list[int], out_dir: str | None = None, log=print) -> dict:
    """Train `cfg.agent` on `cfg.task` for every seed at once; write the CSV after every
    rollout and the JSON at the end (when `out_dir` is given). Returns the summary, with
    the final parameters (numpy, seed axis first) under "params" (not written)."""
    import jax

    envs = SeedEnvs(cfg, seeds)
    eval_envs = [make_env(cfg, s + EVAL_SEED_OFFSET) for s in seeds]
    for e, s in zip(eval_envs, seeds):
        e.reset(seed=s + EVAL_SEED_OFFSET)
    obs_dim, act_dim = envs.dims
    init, act_log_std, update = make_agent(cfg, obs_dim, act_dim)
    rngs = [np.random.default_rng([s, 1]) for s in seeds]  # the rollouts' action noise
    keys = jax.vmap(jax.random.PRNGKey)(np.asarray(seeds, np.uint32))
    params, opt_state = init(keys)
    keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
    S, T = len(seeds), cfg.num_steps
    buf = {
        "obs": np.zeros((S, T, obs_dim), np.float32), "act": np.zeros((S, T, act_dim), np.float32),
        "logp": np.zeros((S, T), np.float32), "val": np.zeros((S, T), np.float32),
        "rew": np.zeros((S, T), np.float32), "done": np.zeros((S, T), np.float32),
    }  # fmt: skip
    obs, done = envs.obs.copy(), np.zeros(S, np.float32)
    rows, history = [], []
    t0 = time.perf_counter()
    rollout_s = update_s = eval_s = 0.0
    evals: list[tuple[int, list[float]]] = []  # (step, mean evaluation return per seed)
    step = 0
    name = run_name(cfg)
    for it in range(cfg.iterations):
        t = time.perf_counter()
        seen = [len(r) for r in envs.returns]
        policy = NumpyPolicy(params, act_log_std(params))
        for i in range(T):
            a, lp, v = policy.act(obs, rngs)
            buf["obs"][:, i], buf["act"][:, i] = obs, a
            buf["logp"][:, i], buf["val"][:, i] = lp, v
            obs, buf["rew"][:, i], done = envs.step(a)
            buf["done"][:, i] = done
        step += T
        t1 = time.perf_counter()
        rollout_s += t1 - t
        params, opt_state, m, keys = update(params, opt_state, buf, obs, done, keys)
        m = {k: np.asarray(v) for k, v in m.items()}
        update_s += time.perf_counter() - t1
        ev = None
        if cfg.is_eval_iteration(it):
            t2 = time.perf_counter()
            ev = [float(np.mean(r)) for r in evaluate(cfg, eval_envs, params, envs.obs_rms, cfg.eval_episodes)]
            evals.append((step, ev))
            eval_s += time.perf_counter() - t2
        wall = time.perf_counter() - t0
        lr = learning_rate(cfg, it * cfg.update_epochs * cfg.num_minibatches)
        for j, s in enumerate(seeds):
            new = envs.returns[j][seen[j]:]
            rows.append({
                "agent": cfg.agent, "task": cfg.task, "tag": cfg.tag, "seed": s, "step": step,
                "episode_return": float(np.mean(new)) if new else "", "episodes": len(new),
                "entropy_per_dim": float(m["entropy_per_dim"][j]), "margin_min": float(m["margin_min"][j]),
                "target_entropy": cfg.target_entropy(act_dim), "pg_loss": float(m["pg_loss"][j]),
                "v_loss": float(m["v_loss"][j]), "approx_kl": float(m["approx_kl"][j]),
                "clipfrac": float(m["clipfrac"][j]), "lr": lr, "wall_s": wall, "rollout_s": rollout_s,
                "update_s": update_s, "steps_per_s_per_seed": step / (wall - eval_s),
                "eval_return": ev[j] if ev else "", "eval_s": eval_s,
            })  # fmt: skip
            history.append((step, j, new))
        if out_dir:
            os.makedirs(out_dir, exist_ok=True)
            write_csv(os.path.join(out_dir, name + ".csv"), rows)
        if log and (it % 10 == 0 or it == cfg.iterations - 1):
            recent = [np.mean(r[-5:]) if r else float("nan") for r in envs.returns]
            last_eval = f" eval {np.mean(evals[-1][1]):.0f}" if evals else ""
            log(f"{name} step {step} return {np.nanmean(recent):.0f}{last_eval} H/dim {np.mean(m['entropy_per_dim']):.3f} "
                f"margin {np.min(m['margin_min']):.2e} {step / (wall - eval_s):.0f} steps/s/seed", flush=True)  # fmt: skip
    wall = time.perf_counter() - t0
    summary = {
        "config": dataclasses.asdict(cfg), "name": name, "seeds": list(seeds), "obs_dim": obs_dim,
        "act_dim": act_dim, "final_return": final_returns(envs.returns, history, cfg.steps),
        "episode_returns": envs.returns, "eval_returns": evals,
        "final_eval_return": final_eval_returns(evals, cfg.eval_last), "wall_s": wall, "rollout_s": rollout_s,
        "update_s": update_s, "eval_s": eval_s, "steps_per_s_per_seed": cfg.iterations * T / (wall - eval_s),
        "jax": jax.__version__,
    }  # fmt: skip
    if out_dir:
        with open(os.path.join(out_dir, name + ".json"), "w") as f:
            json.dump(summary, f, indent=1)
    summary["params"] = jax.tree_util.tree_map(np.asarray, params)
    summary["rows"] = rows
    return summary


def final_returns(returns, history, total: int, tail: float = 0.1) -> list[float]:
    """Per seed, the mean return of the training episodes that ended in the last `tail`
    of the run (its last 10% of steps); the last episode's if none did. `history` holds
    (step, seed index, returns of the episodes that ended in the rollout up to step)."""
    out = []
    for j, r in enumerate(returns):
        late = [x for st, i, new in history if i == j and st > (1 - tail) * total for x in new]
        out.append(float(np.mean(late)) if late else (float(r[-1]) if r else float("nan")))
    return out


# ------------------------------------------------------------------- command line


def final_eval_returns(evals: list[tuple[int, list[float]]], last: int) -> list[float]:
    """Per seed, the mean of its last `last` evaluation returns (`evals`: (step, per-seed
    means) in order); an empty list when the run was not evaluated."""
    if not evals:
        return []
    tail = np.asarray([per_seed for _, per_seed in evals[-last:]])
    return [float(x) for x in tail.mean(axis=0)]


def parse_seeds(text: str) -> list[int]:
    """"0-4" or "0,1,2"."""
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def main(argv=None) -> int:
    """`train` one agent on one task; `report`, `plot` and `bench` go to ppo_tools.py."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("report", "plot", "bench", "compare"):
        import ppo_tools

        return ppo_tools.main(argv)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["train"])
    ap.add_argument("--task", default="Hopper-v5")
    ap.add_argument("--agent", choices=["ppo", "ppo-era"], default="ppo")
    ap.add_argument("--steps", type=int, default=1_000_000, help="environment steps per seed")
    ap.add_argument("--seeds", default="0-4")
    ap.add_argument("--log-std-init", type=float, default=0.0, help="ppo: initial log-std")
    ap.add_argument("--h0-per-dim", type=float, default=-0.3, help="ppo-era: H0 / |A|")
    ap.add_argument("--head", choices=["native", "jax"], default="native")
    ap.add_argument("--tag", default="")
    ap.add_argument("--eval-points", type=int, default=10, help="deterministic evaluations over the run (0: none)")
    ap.add_argument("--eval-episodes", type=int, default=3, help="episodes per seed and evaluation")
    ap.add_argument("--threads", type=int, default=1, help="1: one core per process (XLA and era)")
    ap.add_argument("--out", default="examples/jax/ppo_results")
    a = ap.parse_args(argv)
    configure_threads(a.threads)
    cfg = Config(task=a.task, agent=a.agent, steps=a.steps, log_std_init=a.log_std_init,
                 h0_per_dim=a.h0_per_dim, head=a.head, tag=a.tag, eval_points=a.eval_points,
                 eval_episodes=a.eval_episodes)  # fmt: skip
    s = train(cfg, parse_seeds(a.seeds), a.out)
    keys = ("name", "final_return", "final_eval_return", "wall_s", "steps_per_s_per_seed")
    print(json.dumps({k: s[k] for k in keys}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
