#!/usr/bin/env python3
"""SAC and SAC-ERA on MuJoCo, in plain JAX + optax, with era_jax's Gaussian head.

Two agents that differ only in how the actor's log-std is produced and in the
entropy terms:

  --agent sac      standard SAC: log_std = lo + (hi - lo) * (tanh(z) + 1) / 2 with
                   [lo, hi] = [-5, 2], a tanh-squashed Gaussian policy, an automatic
                   temperature alpha with target entropy -|A|, entropy terms in the
                   critic target and the actor loss.
  --agent sac-era  SAC-ERA (ERA_MATH.md 1.2): log_std = era_jax.gaussian_log_std(z)
                   with the ERA bounds [-8, 0], whose Gaussian entropy is
                   >= H0 + delta in every state; a truncated-normal policy; no
                   temperature and no entropy term anywhere (the actor maximises Q
                   only). delta is learned from the *bounded* policy's entropy
                   (ERA_MATH.md 1.3) so that the truncated (or tanh-squashed)
                   policy meets H0 = -|A|, the same target SAC uses.

Everything else is shared: networks (two 256x256 ReLU MLPs), Adam at 3e-4,
replay, batch 256, one update per environment step, the seeds. Several seeds
of one agent train together in one process: every per-seed quantity (networks,
optimiser states, replay buffer, environment, random keys) has a leading seed
axis and the update is jax.vmap'ed over it, which is the same computation as
separate runs but amortises Python and dispatch overhead on a small CPU.

Usage (see examples/jax/README.md):

  python examples/jax/sac_era.py train --task HalfCheetah-v5 --agent sac-era --seeds 0 1 2 3 4
  python examples/jax/sac_era.py plot   --runs runs/sac   # PNG of returns and entropies
  python examples/jax/sac_era.py report --runs runs/sac   # markdown table (bootstrap CIs)
  python examples/jax/sac_era.py bench                    # cost of one update: ERA native / pure JAX / SAC
  python examples/jax/sac_era.py demo                     # a few minutes: both agents, small table
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import json
import math
import os
import sys
import time
from typing import Any, NamedTuple



def _configure_threads(threads: int) -> None:
    """Limit XLA's CPU thread pool before jax is imported (one core per run)."""
    if threads > 0 and "jax" not in sys.modules:
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_cpu_multi_thread_eigen" not in flags:
            flags += " --xla_cpu_multi_thread_eigen=false"
        os.environ["XLA_FLAGS"] = flags.strip()
        os.environ.setdefault("ERA_NUM_THREADS", str(threads))


def _quiet_mujoco() -> None:
    """gymnasium's MuJoCo models use an attribute that MuJoCo 4 deprecates; MuJoCo
    prints that warning and appends it to MUJOCO_LOG.TXT in the working directory
    on every model load. Send MuJoCo's warnings to Python's warnings module
    instead, and drop that one."""
    import warnings

    import mujoco

    def handler(msg: str) -> None:
        if "settotalmass" not in msg:
            warnings.warn(f"MuJoCo: {msg}", RuntimeWarning, stacklevel=2)

    mujoco.set_mju_user_warning(handler)


# ------------------------------------------------------------------- configuration


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that defines a run. Both agents use the same values, except
    the fields marked per agent (policy, log-std bounds) and those one agent
    ignores."""

    agent: str = "sac-era"  # "sac" or "sac-era"
    task: str = "HalfCheetah-v5"
    # "tanh" (tanh-squashed Gaussian, standard SAC) or "truncnorm" (TN(tanh(mean), std, [-1, 1]),
    # ERA_MATH.md 1.1, the official ERA code's policy); default_policy() picks per agent
    policy: str = "tanh"
    head: str = "native"  # sac-era only: "native" (era_jax) or "jax" (era_jax.reference)
    delta: str = "learned"  # sac-era only: "learned" (ERA's default) or "fixed"
    # sac-era only: the initial (or fixed) delta; None: initial_delta() (the largest
    # truncation gap the log-std bounds allow, so the bounded policy starts at or
    # above H0 whatever the initial means)
    delta_init: float | None = None
    # sac-era only: the delta learner (ERA_MATH.md 1.3). delta and its gradient (the
    # batch-mean entropy surplus) are both in nats, so SGD moves delta by a fixed
    # fraction of the deficit per update: an integral controller. Its loop gain
    # d H_bounded / d delta lies in [0, 1], so any rate below 2 is stable; 0.5 closes
    # half of a deficit per update. Adam moves about `lr` per update whatever the
    # deficit, which at 3e-4 lagged the truncation gap by up to 4 nats.
    delta_optimizer: str = "sgd"
    delta_lr: float = 0.5
    steps: int = 100_000  # environment steps per seed
    start_steps: int = 5_000  # uniform random actions before learning starts
    batch: int = 256
    hidden: int = 256
    lr: float = 3e-4
    gamma: float = 0.99
    polyak: float = 0.005
    # log-std bounds; None: the agent's usual ones (default_log_std_bounds)
    log_std_min: float | None = None
    log_std_max: float | None = None
    init_alpha: float = 1.0  # sac only
    eval_every: int = 5_000
    eval_episodes: int = 5
    log_every: int = 1_000

    def __post_init__(self) -> None:
        lo, hi = default_log_std_bounds(self.agent)
        if self.log_std_min is None:
            object.__setattr__(self, "log_std_min", lo)
        if self.log_std_max is None:
            object.__setattr__(self, "log_std_max", hi)

    @property
    def is_era(self) -> bool:
        return self.agent == "sac-era"


def default_log_std_bounds(agent: str) -> tuple[float, float]:
    """Each agent's usual log-std range: SAC's tanh-squashed [-5, 2], and for
    SAC-ERA the ERA head's bounds of the official code, [-8, 0] (ERA_MATH.md 1).
    Under a truncated normal on [-1, 1] a std above 1 buys almost no bounded
    entropy (the policy is already nearly uniform) while it counts fully in the
    Gaussian entropy ERA constrains; with an upper bound of 2 the truncation gap
    on HalfCheetah swung by several nats and delta with it (README.md)."""
    return (-5.0, 2.0) if agent == "sac" else (-8.0, 0.0)


# ------------------------------------------------------------------- networks and policy


def _jax():
    import jax
    import jax.numpy as jnp

    return jax, jnp


def mlp_init(key, sizes):
    jax, jnp = _jax()
    init = jax.nn.initializers.glorot_uniform()
    keys = jax.random.split(key, len(sizes) - 1)
    return [(init(k, (m, n)), jnp.zeros((n,))) for k, m, n in zip(keys, sizes[:-1], sizes[1:])]


def mlp_apply(params, x):
    jax, _ = _jax()
    for w, b in params[:-1]:
        x = jax.nn.relu(x @ w + b)
    w, b = params[-1]
    return x @ w + b


def default_policy(agent: str) -> str:
    """Each agent's usual action distribution: SAC's tanh-squashed Gaussian, and
    for SAC-ERA the truncated normal of the official ERA code. Without an entropy
    term the actor is free to push a tanh Gaussian's mean into saturation, where
    the bounded entropy falls without limit below the Gaussian one (below -100
    nats within a thousand updates on HalfCheetah, README.md); the truncated
    normal's gap is bounded (truncation_gap_bound), which delta can cover."""
    return "tanh" if agent == "sac" else "truncnorm"


def target_entropy(act_dim: int) -> float:
    """H0 for both agents: SAC's usual -|A| (for the bounded policy)."""
    return -float(act_dim)


def truncation_gap_bound(log_std: float, low: float = -1.0, high: float = 1.0) -> float:
    """The largest entropy, per dimension, that truncating N(loc, exp(log_std)^2)
    to [low, high] removes, over every location loc in [low, high]: the gap with
    the location at a bound, H(normal) - H(TN(high, std, [low, high])), from the
    library's closed forms in f64. It rises with the std, from ln 2 as the std
    goes to 0 to 0.85 at std (high - low) / 2 (the tests check both, and that no
    other location gives more)."""
    jax, jnp = _jax()
    import era_jax

    with jax.enable_x64(True):
        ls = jnp.asarray([log_std], jnp.float64)
        h_normal = era_jax.gaussian_entropy(ls)
        h_tn = era_jax.truncated_normal_entropy(jnp.asarray([high], jnp.float64), ls, low=low, high=high)
        return float(h_normal - h_tn)


def initial_delta(cfg: Config, act_dim: int) -> float:
    """SAC-ERA's starting delta: --delta-init if given; else, for the truncated
    normal, the largest truncation gap the log-std bounds allow, summed over the
    dimensions (with it, every state's bounded entropy is >= H0); 0 for the tanh
    Gaussian, whose gap has no bound."""
    if cfg.delta_init is not None:
        return float(cfg.delta_init)
    if cfg.is_era and cfg.policy == "truncnorm":
        return act_dim * truncation_gap_bound(cfg.log_std_max)
    return 0.0


def actor_dist(cfg: Config, params, obs, delta):
    """Mean and log-std of the actor's Gaussian. The only place the agents differ
    in the policy: SAC squashes z into [lo, hi] with tanh, SAC-ERA applies ERA."""
    jax, jnp = _jax()
    out = mlp_apply(params, obs)
    act_dim = out.shape[-1] // 2
    mean, z = out[..., :act_dim], out[..., act_dim:]
    lo, hi = cfg.log_std_min, cfg.log_std_max
    if not cfg.is_era:
        return mean, lo + 0.5 * (hi - lo) * (jnp.tanh(z) + 1.0)
    import era_jax

    head = era_jax.gaussian_log_std if cfg.head == "native" else era_jax.reference.gaussian_log_std
    log_std = head(z, target_entropy=target_entropy(act_dim), log_std_min=lo, log_std_max=hi, delta=delta)
    return mean, log_std


def sample_action(cfg: Config, mean, log_std, key):
    """A reparameterised action in [-1, 1]^D, its log-density, and an estimate of
    the bounded policy's entropy in this state.

    tanh: a = tanh(mean + std*eps); log pi includes the tanh Jacobian, and the
          entropy estimate is -log pi(a|s) (ERA_MATH.md 1.1, no closed form).
    truncnorm: TN(tanh(mean), std, [-1, 1]) sampled by inverse CDF; the entropy
          is the closed form (era_jax.truncated_normal_entropy).
    """
    jax, jnp = _jax()
    from jax.scipy.special import ndtr, ndtri

    std = jnp.exp(log_std)
    if cfg.policy == "tanh":
        eps = jax.random.normal(key, mean.shape, mean.dtype)
        u = mean + std * eps
        a = jnp.tanh(u)
        log_jac = 2.0 * (math.log(2.0) - u - jax.nn.softplus(-2.0 * u))  # log(1 - tanh(u)^2)
        logp = jnp.sum(-0.5 * eps**2 - 0.5 * math.log(2.0 * math.pi) - log_std - log_jac, axis=-1)
        return a, logp, -logp
    import era_jax

    loc = jnp.tanh(mean)
    alpha, beta = (-1.0 - loc) / std, (1.0 - loc) / std
    cdf_a, cdf_b = ndtr(alpha), ndtr(beta)
    tiny = jnp.finfo(mean.dtype).eps
    uu = jax.random.uniform(key, mean.shape, mean.dtype, minval=tiny, maxval=1.0 - tiny)
    p = jnp.clip(cdf_a + uu * (cdf_b - cdf_a), tiny, 1.0 - tiny)
    a = jnp.clip(loc + std * ndtri(p), -1.0, 1.0)
    xi = (a - loc) / std
    log_z = jnp.log(jnp.maximum(cdf_b - cdf_a, 1e-30))
    logp = jnp.sum(-0.5 * xi**2 - 0.5 * math.log(2.0 * math.pi) - log_std - log_z, axis=-1)
    h = era_jax.truncated_normal_entropy(loc, log_std, low=-1.0, high=1.0)
    return a, logp, h


# ------------------------------------------------------------------- agent state and update


class Agent(NamedTuple):
    actor: Any
    critic: Any  # two Q networks stacked on a leading axis
    target: Any
    actor_opt: Any
    critic_opt: Any
    log_alpha: Any  # sac only (unused by sac-era)
    alpha_opt: Any
    delta: Any  # era_jax.DeltaState (sac-era only; stays at delta_init for sac)
    key: Any


def make_agent(cfg: Config, obs_dim: int, act_dim: int):
    """init(key) -> Agent, and the optax optimiser shared by all networks."""
    jax, jnp = _jax()
    import era_jax
    import optax

    opt = optax.adam(cfg.lr)
    h = cfg.hidden

    def init(key):
        ka, kc, kn = jax.random.split(key, 3)
        actor = mlp_init(ka, [obs_dim, h, h, 2 * act_dim])
        critic = jax.vmap(lambda k: mlp_init(k, [obs_dim + act_dim, h, h, 1]))(jax.random.split(kc, 2))
        log_alpha = jnp.asarray(math.log(cfg.init_alpha), jnp.float32)
        return Agent(
            actor=actor,
            critic=critic,
            target=critic,
            actor_opt=opt.init(actor),
            critic_opt=opt.init(critic),
            log_alpha=log_alpha,
            alpha_opt=opt.init(log_alpha),
            delta=era_jax.delta_init(initial_delta(cfg, act_dim), dtype=jnp.float32),
            key=kn,
        )

    return init, opt


def q_values(critic, obs, act):
    jax, jnp = _jax()
    sa = jnp.concatenate([obs, act], axis=-1)
    return jax.vmap(lambda p: mlp_apply(p, sa)[..., 0])(critic)  # [2, B]


def make_update(cfg: Config, act_dim: int, opt):
    """One SAC / SAC-ERA gradient step on a batch, for one seed."""
    jax, jnp = _jax()
    import era_jax
    import optax

    h0 = target_entropy(act_dim)

    def update(agent: Agent, batch):
        obs, act, rew, nobs, done = batch
        key, k_next, k_pi = jax.random.split(agent.key, 3)
        delta = agent.delta.delta
        alpha = jnp.exp(agent.log_alpha)

        # critic: r + gamma * (min Q'(s', a') [- alpha log pi(a'|s') for SAC])
        nmean, nlog_std = actor_dist(cfg, agent.actor, nobs, delta)
        nact, nlogp, _ = sample_action(cfg, nmean, nlog_std, k_next)
        next_q = jnp.min(q_values(agent.target, nobs, nact), axis=0)
        if not cfg.is_era:
            next_q = next_q - alpha * nlogp
        y = jax.lax.stop_gradient(rew + cfg.gamma * (1.0 - done) * next_q)

        def critic_loss(critic):
            q = q_values(critic, obs, act)
            return jnp.mean(jnp.sum((q - y[None]) ** 2, axis=0)), jnp.mean(q)

        (c_loss, q_mean), c_grad = jax.value_and_grad(critic_loss, has_aux=True)(agent.critic)
        c_upd, critic_opt = opt.update(c_grad, agent.critic_opt, agent.critic)
        critic = optax.apply_updates(agent.critic, c_upd)

        # actor: maximise Q [- alpha log pi for SAC]
        def actor_loss(actor):
            mean, log_std = actor_dist(cfg, actor, obs, delta)
            a, logp, h_bounded = sample_action(cfg, mean, log_std, k_pi)
            q = jnp.min(q_values(critic, obs, a), axis=0)
            loss = -jnp.mean(q) if cfg.is_era else jnp.mean(alpha * logp - q)
            return loss, (logp, log_std, h_bounded)

        (a_loss, (logp, log_std, h_bounded)), a_grad = jax.value_and_grad(actor_loss, has_aux=True)(agent.actor)
        a_upd, actor_opt = opt.update(a_grad, agent.actor_opt, agent.actor)
        actor = optax.apply_updates(agent.actor, a_upd)

        h_bounded = jax.lax.stop_gradient(h_bounded)
        log_alpha, alpha_opt, delta_state = agent.log_alpha, agent.alpha_opt, agent.delta
        if cfg.is_era:
            if cfg.delta == "learned":
                delta_state = era_jax.delta_update(
                    agent.delta,
                    jnp.mean(h_bounded),
                    target_entropy=h0,
                    dim=act_dim,
                    log_std_min=cfg.log_std_min,
                    log_std_max=cfg.log_std_max,
                    optimizer=cfg.delta_optimizer,
                    lr=cfg.delta_lr,
                )
        else:
            # SAC's temperature: d/d log_alpha of -log_alpha * (log pi + target)
            logp_sg = jax.lax.stop_gradient(logp)
            t_grad = -jnp.mean(logp_sg + h0)
            t_upd, alpha_opt = opt.update(t_grad, agent.alpha_opt, agent.log_alpha)
            log_alpha = optax.apply_updates(agent.log_alpha, t_upd)

        target = jax.tree_util.tree_map(lambda t, c: (1.0 - cfg.polyak) * t + cfg.polyak * c, agent.target, critic)
        h_gauss = era_jax.gaussian_entropy(jax.lax.stop_gradient(log_std))
        metrics = {
            "critic_loss": c_loss,
            "actor_loss": a_loss,
            "q_mean": q_mean,
            "gauss_entropy": jnp.mean(h_gauss),
            "gauss_entropy_min": jnp.min(h_gauss),
            # ERA's guarantee, row by row: H(Gaussian) - (H0 + delta) >= 0 (up to f32 rounding)
            "gauss_margin_min": jnp.min(h_gauss - (h0 + delta)),
            "bounded_entropy": jnp.mean(h_bounded),
            "bounded_entropy_min": jnp.mean(h_bounded),  # the log keeps the interval's minimum
            "delta": delta,
            "alpha": alpha if not cfg.is_era else jnp.zeros(()),
        }
        new = Agent(actor, critic, target, actor_opt, critic_opt, log_alpha, alpha_opt, delta_state, key)
        return new, metrics

    return update


def make_step(cfg: Config, act_dim: int, opt):
    """The jitted per-environment-step call, vmapped over seeds: optionally one
    update on a replay batch, then actions for the current observations."""
    jax, jnp = _jax()
    update = make_update(cfg, act_dim, opt)

    def act(agent: Agent, obs):
        key, k = jax.random.split(agent.key)
        mean, log_std = actor_dist(cfg, agent.actor, obs[None], agent.delta.delta)
        a, _, _ = sample_action(cfg, mean, log_std, k)
        return agent._replace(key=key), a[0]

    def train_and_act(agent, batch, obs):
        agent, metrics = update(agent, batch)
        agent, a = act(agent, obs)
        return agent, a, metrics

    def greedy(agent, obs):
        mean, _ = actor_dist(cfg, agent.actor, obs, agent.delta.delta)
        return jnp.tanh(mean)

    return (
        jax.jit(jax.vmap(train_and_act), donate_argnums=0),
        jax.jit(jax.vmap(act)),
        jax.jit(jax.vmap(greedy)),
        update,
    )


# ------------------------------------------------------------------- replay buffer


class Replay:
    """One ring buffer per seed, stored as [seeds, capacity, ...] numpy arrays."""

    def __init__(self, seeds: int, capacity: int, obs_dim: int, act_dim: int, rng):
        import numpy as np

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
        import numpy as np

        seeds = self.obs.shape[0]
        idx = self.rng.integers(0, self.size, size=(seeds, batch))
        s = np.arange(seeds)[:, None]
        return (self.obs[s, idx], self.act[s, idx], self.rew[s, idx], self.nobs[s, idx], self.done[s, idx])


# ------------------------------------------------------------------- training


def evaluate(greedy, agent, envs, episodes: int, seed: int):
    """Mean return of `episodes` deterministic episodes (action tanh(mean)) per seed."""
    import numpy as np

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


def train(cfg: Config, seeds: list[int], out_dir: str, progress: bool = True) -> dict:
    """Train `cfg.agent` on `cfg.task` for every seed (vmapped); write
    <out_dir>/<task>_<agent>.csv and a summary JSON; return the summary."""
    jax, jnp = _jax()
    import gymnasium as gym
    import numpy as np

    _quiet_mujoco()
    os.makedirs(out_dir, exist_ok=True)
    n = len(seeds)
    envs = [gym.make(cfg.task) for _ in seeds]
    eval_envs = [gym.make(cfg.task) for _ in seeds]
    obs_dim = envs[0].observation_space.shape[0]
    act_dim = envs[0].action_space.shape[0]
    assert np.allclose(envs[0].action_space.low, -1) and np.allclose(envs[0].action_space.high, 1)
    init, opt = make_agent(cfg, obs_dim, act_dim)
    train_and_act, act, greedy, _ = make_step(cfg, act_dim, opt)
    agent = jax.vmap(init)(jnp.stack([jax.random.PRNGKey(s) for s in seeds]))
    # distinct buffers for every leaf (the step donates them; target starts equal to critic)
    agent = jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), agent)
    replay = Replay(n, cfg.steps, obs_dim, act_dim, np.random.default_rng(seeds[0] * 7919 + 17))
    action_rngs = [np.random.default_rng(s + 123_457) for s in seeds]

    obs = np.stack([e.reset(seed=s)[0] for e, s in zip(envs, seeds)]).astype(np.float32)
    ep_ret, ep_len = np.zeros(n), np.zeros(n, int)
    finished: list[list[float]] = [[] for _ in seeds]
    recent_metrics: list[dict] = []
    rows: list[dict] = []
    name = f"{cfg.task}_{cfg.agent}" + ("" if cfg.delta == "learned" or not cfg.is_era else "-fixed")
    if cfg.policy != "tanh":
        name += f"_{cfg.policy}"
    csv_path = os.path.join(out_dir, f"{name}.csv")
    h0 = target_entropy(act_dim)
    t0 = time.perf_counter()
    eval_time = 0.0
    last_eval = np.full(n, np.nan)
    actions = None
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, desc=f"{cfg.agent} {cfg.task} seeds={seeds}", unit="step", mininterval=2.0)

    for t in range(cfg.steps):
        if t < cfg.start_steps:
            actions = np.stack([r.uniform(-1.0, 1.0, act_dim) for r in action_rngs]).astype(np.float32)
        elif t == cfg.start_steps:
            agent, a = act(agent, jnp.asarray(obs))
            actions = np.asarray(a)
        # actions for step t are known here (from the previous call, or random)
        nobs = np.empty_like(obs)
        rew = np.empty(n, np.float32)
        term = np.empty(n, np.float32)
        reset_obs = obs.copy()
        for i, e in enumerate(envs):
            o, r, te, tr, _ = e.step(actions[i])
            nobs[i], rew[i], term[i] = o, r, float(te)
            ep_ret[i] += r
            ep_len[i] += 1
            reset_obs[i] = o
            if te or tr:
                finished[i].append(float(ep_ret[i]))
                ep_ret[i], ep_len[i] = 0.0, 0
                reset_obs[i] = e.reset()[0]
        # the stored transition is (s_t, a_t, r_t, s_{t+1}, terminated); truncation bootstraps
        replay.add(obs, actions, rew, nobs, term)
        obs = reset_obs
        if t + 1 >= cfg.start_steps:
            batch = tuple(jnp.asarray(x) for x in replay.sample(cfg.batch))
            agent, a, metrics = train_and_act(agent, batch, jnp.asarray(obs))
            actions = np.asarray(a)
            recent_metrics.append(metrics)
        if bar is not None:
            bar.update(1)
        step = t + 1
        if step % cfg.eval_every == 0 or step == cfg.steps:
            te0 = time.perf_counter()
            last_eval = evaluate(greedy, agent, eval_envs, cfg.eval_episodes, seed=10_000 + step)
            eval_time += time.perf_counter() - te0
        if step % cfg.log_every == 0 or step == cfg.steps:
            wall = time.perf_counter() - t0
            m = {}
            if recent_metrics:
                stacked = jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *recent_metrics)
                m = {k: v.mean(axis=0) for k, v in stacked.items()}
                m["gauss_entropy_min"] = stacked["gauss_entropy_min"].min(axis=0)
                m["gauss_margin_min"] = stacked["gauss_margin_min"].min(axis=0)
                m["bounded_entropy_min"] = stacked["bounded_entropy_min"].min(axis=0)
            recent_metrics = []
            evaluated = step % cfg.eval_every == 0 or step == cfg.steps
            for i, s in enumerate(seeds):
                rows.append(
                    {
                        "agent": cfg.agent,
                        "task": cfg.task,
                        "policy": cfg.policy,
                        "delta_mode": cfg.delta if cfg.is_era else "",
                        "seed": s,
                        "step": step,
                        "eval_return": float(last_eval[i]) if evaluated else "",
                        "train_return": float(np.mean(finished[i][-5:])) if finished[i] else "",
                        "target_entropy": h0,
                        **{k: float(v[i]) for k, v in m.items()},
                        "wall_s": wall,
                        "train_steps_per_s": step * n / max(wall - eval_time, 1e-9),
                    }
                )
            _write_csv(csv_path, rows)
            if bar is not None and m:
                bar.set_postfix(
                    ret=f"{np.nanmean(last_eval):.0f}",
                    H=f"{np.mean(m['bounded_entropy']):.2f}",
                    H0=h0,
                    delta=f"{np.mean(m['delta']):.2f}",
                    refresh=False,
                )
    if bar is not None:
        bar.close()
    wall = time.perf_counter() - t0
    summary = {
        "config": dataclasses.asdict(cfg),
        "seeds": seeds,
        "final_eval_return": [float(x) for x in last_eval],
        "wall_s": wall,
        "eval_s": eval_time,
        "train_steps_per_s": cfg.steps * n / max(wall - eval_time, 1e-9),
        "jax": jax.__version__,
    }
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary


def _write_csv(path: str, rows: list[dict]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


# ------------------------------------------------------------------- report and plot


def load_runs(run_dir: str) -> list[dict]:
    """Every row of every CSV in `run_dir`."""
    rows = []
    for fn in sorted(os.listdir(run_dir)):
        if fn.endswith(".csv"):
            with open(os.path.join(run_dir, fn)) as f:
                for r in csv.DictReader(f):
                    r["run"] = fn[:-4]
                    rows.append(r)
    return rows


def _label(r: dict) -> str:
    lab = r["agent"]
    if r.get("delta_mode") == "fixed":
        lab += " (fixed delta)"
    if r.get("policy", "tanh") != "tanh":
        lab += f" [{r['policy']}]"
    return lab


def bootstrap_ci(values, reps: int = 10_000, seed: int = 0):
    """95% percentile bootstrap interval of the mean."""
    import numpy as np

    v = np.asarray(values, float)
    if len(v) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(reps, len(v)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def summarize(run_dir: str) -> list[dict]:
    """One entry per (task, agent): final returns per seed, entropies, speed."""
    import numpy as np

    rows = load_runs(run_dir)
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["task"], _label(r)), []).append(r)
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
            f"| {s['target']:.0f} | {margin} | {s['delta_final']:.2f} | {s['steps_per_s']:.0f} |"
        )
    return "\n".join(lines)


def plot(run_dir: str, path: str) -> None:
    """Returns (left) and entropies (right), mean over seeds with min-max bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = load_runs(run_dir)
    tasks = sorted({r["task"] for r in rows})
    fig, axes = plt.subplots(
        len(tasks), 2, figsize=(16, 3.8 * len(tasks)), squeeze=False, gridspec_kw={"width_ratios": [1, 1.2]}
    )
    colors = {}
    for ti, task in enumerate(tasks):
        ax_r, ax_h = axes[ti]
        labels = sorted({_label(r) for r in rows if r["task"] == task})
        for label in labels:
            c = colors.setdefault(label, f"C{len(colors)}")
            rs = [r for r in rows if r["task"] == task and _label(r) == label]
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
        target = float(next(r for r in rows if r["task"] == task)["target_entropy"])
        ax_h.axhline(target, color="k", ls="--", lw=1, label=f"target {target:.0f}")
        ax_r.set(title=f"{task}: evaluation return", xlabel="environment steps", ylabel="return")
        ax_h.set(title=f"{task}: policy entropy (nats)", xlabel="environment steps", ylabel="entropy")
        ax_r.legend(fontsize=8)
        ax_h.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))  # outside: the curves stay visible
        ax_r.grid(alpha=0.3)
        ax_h.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------- update-step overhead


def random_batch(rng, obs_dim: int, act_dim: int, batch: int):
    """A replay batch (obs, act, rew, next_obs, done) of random f32 values, for
    timing and testing an update without an environment."""
    _, jnp = _jax()
    import numpy as np

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


def bench(batch: int = 256, task: str = "HalfCheetah-v5", iters: int = 200, repeats: int = 7) -> list[dict]:
    """Time one jitted update step (one seed, batch `batch`) of plain SAC, SAC-ERA
    with the native head and SAC-ERA with the pure-JAX head (all three with the
    tanh-Gaussian policy, so that only the head differs), and SAC-ERA as the
    comparison runs it (native head, truncated normal); the variants are
    interleaved in every repeat and the median per-step time is reported."""
    jax, jnp = _jax()
    import gymnasium as gym
    import numpy as np

    _quiet_mujoco()
    env = gym.make(task)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    b = random_batch(np.random.default_rng(0), obs_dim, act_dim, batch)
    variants = {
        "sac": Config(agent="sac", task=task),
        "sac-era (native head)": Config(agent="sac-era", task=task, head="native"),
        "sac-era (pure-JAX head)": Config(agent="sac-era", task=task, head="jax"),
        # the configuration the comparison runs (truncated-normal policy, closed-form entropy)
        "sac-era (native, truncnorm)": Config(agent="sac-era", task=task, policy="truncnorm"),
    }
    steps, states = {}, {}
    for name, cfg in variants.items():
        init, opt = make_agent(cfg, obs_dim, act_dim)
        update = make_update(cfg, act_dim, opt)

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


def _cfg_from_args(a, agent: str) -> Config:
    return Config(
        agent=agent,
        task=a.task,
        policy=a.policy if a.policy != "auto" else default_policy(agent),
        head=a.head,
        delta=a.delta,
        delta_init=a.delta_init,
        delta_optimizer=a.delta_optimizer,
        delta_lr=a.delta_lr,
        log_std_min=a.log_std_min,
        log_std_max=a.log_std_max,
        steps=a.steps,
        start_steps=a.start_steps,
        eval_every=a.eval_every,
        eval_episodes=a.eval_episodes,
        log_every=a.log_every,
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def train_args(q, steps, start, eval_every, episodes, log_every):
        q.add_argument("--task", default="HalfCheetah-v5")
        q.add_argument(
            "--policy", choices=["auto", "tanh", "truncnorm"], default="auto", help="auto: tanh for sac, truncnorm for sac-era"
        )
        q.add_argument("--head", choices=["native", "jax"], default="native", help="sac-era: ERA head implementation")
        q.add_argument("--delta", choices=["learned", "fixed"], default="learned", help="sac-era: delta learning")
        q.add_argument(
            "--delta-init", type=float, default=None, help="sac-era: initial (or fixed) delta (default: initial_delta)"
        )
        q.add_argument(
            "--delta-optimizer", choices=["sgd", "adam"], default=Config.delta_optimizer, help="sac-era: delta learner"
        )
        q.add_argument("--delta-lr", type=float, default=Config.delta_lr, help="sac-era: delta learning rate")
        q.add_argument("--log-std-min", type=float, default=None, help="default: the agent's usual bounds")
        q.add_argument("--log-std-max", type=float, default=None)
        q.add_argument("--steps", type=int, default=steps, help="environment steps per seed")
        q.add_argument("--start-steps", type=int, default=start)
        q.add_argument("--eval-every", type=int, default=eval_every)
        q.add_argument("--eval-episodes", type=int, default=episodes)
        q.add_argument("--log-every", type=int, default=log_every)
        q.add_argument("--seeds", type=int, nargs="+", default=[0])
        q.add_argument("--out", default="runs/sac")
        q.add_argument("--threads", type=int, default=0, help="limit XLA to one thread when 1 (0: all cores)")
        q.add_argument("--no-progress", action="store_true")

    t = sub.add_parser("train", help="train one agent on one task for several seeds")
    t.add_argument("--agent", choices=["sac", "sac-era"], required=True)
    train_args(t, 100_000, 5_000, 5_000, 5, 1_000)
    d = sub.add_parser("demo", help="a few minutes: both agents, one seed, then a table")
    train_args(d, 10_000, 2_000, 2_000, 3, 500)
    d.set_defaults(out="runs/demo")
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
    a = p.parse_args(argv)

    if a.cmd in ("train", "demo", "bench"):
        _configure_threads(a.threads)
    if a.cmd == "train":
        s = train(_cfg_from_args(a, a.agent), a.seeds, a.out, progress=not a.no_progress)
        print(json.dumps({k: s[k] for k in ("seeds", "final_eval_return", "train_steps_per_s", "wall_s")}))
    elif a.cmd == "demo":
        for agent in ("sac", "sac-era"):
            train(_cfg_from_args(a, agent), a.seeds, a.out, progress=not a.no_progress)
        print()
        print(f"{'agent':<20} {'task':<16} {'final return':>12} {'bounded H':>10} {'Gaussian H':>11} {'target':>7} {'delta':>7}")
        for s in summarize(a.out):
            print(
                f"{s['agent']:<20} {s['task']:<16} {s['mean']:>12.1f} {s['bounded_entropy_final']:>10.2f} "
                f"{s['gauss_entropy_final']:>11.2f} {s['target']:>7.1f} {s['delta_final']:>7.2f}"
            )
        png = os.path.join(a.out, "sac_era.png")
        plot(a.out, png)
        print(f"\nCSV logs and {png} written; the full comparison: examples/jax/README.md")
    elif a.cmd == "report":
        print(report(a.runs))
    elif a.cmd == "plot":
        png = a.png or os.path.join(a.runs, "sac_era.png")
        plot(a.runs, png)
        print(png)
    elif a.cmd == "bench":
        import jax

        res = bench(batch=a.batch, task=a.task, iters=a.iters, repeats=a.repeats)
        print(f"one update step, batch {a.batch}, {a.task}, jax {jax.__version__}, {jax.devices()[0].platform}")
        print(f"{'variant':<26} {'ms/update':>10} {'vs sac':>8}")
        for r in res:
            print(f"{r['variant']:<26} {r['ms_per_update']:>10.3f} {r['vs_sac']:>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
