#!/usr/bin/env python3
"""SAC and SAC-ERA on MuJoCo, in plain JAX + optax, with era_jax's Gaussian head.

  --agent sac      standard SAC: log-std squashed into [-5, 2] by tanh, a tanh-squashed
                   Gaussian policy, a temperature alpha learned towards H0 = -|A|.
  --agent sac-era  SAC-ERA (docs/math.md#using-the-head-in-an-agent): log-std from era_jax.gaussian_log_std in
                   [-8, 0], so that H(Gaussian) >= H0 + delta in every state; a truncated
                   normal policy; no entropy term in the losses; delta is learned
                   (docs/math.md#delta-learning) so that the bounded policy's entropy meets H0 = -|A|.

Everything else is shared (README.md). The seeds of one agent train together, the
update jax.vmap'ed over a leading seed axis. sac_run.py holds the replay buffer and
the logs; sac_tools.py the report, the plot and the update benchmark, and runs
the `report`, `plot` and `bench` commands:

  python examples/jax/sac_era.py train --task HalfCheetah-v5 --agent sac-era --seeds 0 1 2 3 4
  python examples/jax/sac_era.py train --task Humanoid-v5 --agent sac-era --preset paper --seeds 0 1 2 3 4
                                                          # the official SAC-ERA settings (PRESETS, README.md)
  python examples/jax/sac_era.py demo                     # a few minutes: both agents, small table
  python examples/jax/sac_era.py report --runs runs/sac   # markdown table (bootstrap CIs)
  python examples/jax/sac_era.py plot   --runs runs/sac   # PNG of returns and entropies
  python examples/jax/sac_era.py bench                    # cost of one update step
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from typing import Any, NamedTuple

import era_jax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import ndtr, ndtri

import sac_tools
from sac_run import Replay, RunLog, configure_threads, evaluate, quiet_mujoco


def pure_jax_reference():
    """The pure-JAX ERA reference of era_jax's test suite (bindings/jax/tests/reference.py),
    for comparing the native head with one that XLA compiles itself (``--head jax``)."""
    tests = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bindings", "jax", "tests")
    if tests not in sys.path:
        sys.path.insert(0, os.path.normpath(tests))
    import reference  # noqa: PLC0415

    return reference


# ------------------------------------------------------------------- configuration


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that defines a run. Both agents use the same values, except
    the fields marked per agent (policy, log-std bounds) and those one agent
    ignores."""

    agent: str = "sac-era"  # "sac" or "sac-era"
    task: str = "HalfCheetah-v5"
    # "tanh" (tanh-squashed Gaussian, standard SAC) or "truncnorm" (TN(tanh(mean), std, [-1, 1]),
    # docs/math.md#truncated-normal-entropy, the official ERA code's policy); default_policy() picks per agent
    policy: str = "tanh"
    head: str = "native"  # sac-era only: "native" (era_jax) or "jax" (the pure-JAX reference of the binding's tests)
    delta: str = "learned"  # sac-era only: "learned" (ERA's default) or "fixed"
    # sac-era only: the initial (or fixed) delta; None: initial_delta()
    delta_init: float | None = None
    # sac-era only: the delta learner (docs/math.md#delta-learning). SGD is an integral controller
    # on the entropy deficit, stable for any rate below 2; 0.5 closes half a deficit
    # per update (README.md). Adam moves about `lr` per update whatever the deficit.
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
    activation: str = "relu"  # hidden layers of the actor and the critics: "relu" or "elu"
    utd: int = 1  # gradient updates per environment step
    # sac-era only: what H0 means (bindings/jax/README.md, "Which target entropy").
    # "bounded": H0 = -|A| for the bounded policy, met by learning delta;
    # "gaussian": H0 = 0.25 |A|, a floor on the Gaussian in every state with delta fixed (the paper's)
    target: str = "bounded"
    preset: str = "default"  # "paper" when PRESETS["paper"] chose the settings (a label in the logs)

    def __post_init__(self) -> None:
        lo, hi = default_log_std_bounds(self.agent)
        if self.log_std_min is None:
            object.__setattr__(self, "log_std_min", lo)
        if self.log_std_max is None:
            object.__setattr__(self, "log_std_max", hi)
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, not {self.activation!r}")
        if self.utd < 1:
            raise ValueError(f"utd must be >= 1, not {self.utd}")
        if self.target not in ("bounded", "gaussian"):
            raise ValueError(f"target must be 'bounded' or 'gaussian', not {self.target!r}")
        if self.is_era and self.target == "gaussian" and self.delta != "fixed":
            # the learner steers the bounded policy's entropy to H0: meaningless for a Gaussian floor
            raise ValueError("target 'gaussian' (a floor on the Gaussian) needs delta 'fixed'")

    @property
    def is_era(self) -> bool:
        return self.agent == "sac-era"


ACTIVATIONS = {"relu": jax.nn.relu, "elu": jax.nn.elu}

# --preset paper: the official SAC-ERA code's settings (examples/jax/README.md lists what
# still differs). Shared by both agents, so that SAC is compared at the same network size
# and update ratio; PRESET_ERA adds SAC-ERA's own. Explicit command-line values win.
PRESETS = {"paper": {"hidden": 512, "activation": "elu", "utd": 2, "batch": 256}}
PRESET_ERA = {"paper": {"target": "gaussian", "delta": "fixed", "delta_init": 0.0, "policy": "truncnorm"}}


def default_log_std_bounds(agent: str) -> tuple[float, float]:
    """Each agent's usual log-std range: SAC's [-5, 2]; for SAC-ERA the official ERA
    code's [-8, 0]: under truncation to [-1, 1] a std above 1 buys almost no
    bounded entropy but counts fully in the Gaussian entropy ERA constrains (README.md)."""
    return (-5.0, 2.0) if agent == "sac" else (-8.0, 0.0)


def default_policy(agent: str) -> str:
    """Each agent's usual action distribution: SAC's tanh-squashed Gaussian; for
    SAC-ERA the official ERA code's truncated normal, whose entropy gap to the
    Gaussian is bounded (truncation_gap_bound), unlike a saturated tanh's (README.md)."""
    return "tanh" if agent == "sac" else "truncnorm"


# ------------------------------------------------------------------- networks and policy


def mlp_init(key, sizes):
    init = jax.nn.initializers.glorot_uniform()
    keys = jax.random.split(key, len(sizes) - 1)
    return [(init(k, (m, n)), jnp.zeros((n,))) for k, m, n in zip(keys, sizes[:-1], sizes[1:])]


def mlp_apply(params, x, activation: str = "relu"):
    f = ACTIVATIONS[activation]
    for w, b in params[:-1]:
        x = f(x @ w + b)
    w, b = params[-1]
    return x @ w + b


def target_entropy(cfg: Config, act_dim: int) -> float:
    """H0: SAC's usual -|A| for the bounded policy (SAC, and SAC-ERA with target
    "bounded"); the paper's 0.25 nats per dimension on the Gaussian for SAC-ERA with
    target "gaussian"."""
    if cfg.is_era and cfg.target == "gaussian":
        return 0.25 * act_dim
    return -float(act_dim)


def truncation_gap_bound(log_std: float, low: float = -1.0, high: float = 1.0) -> float:
    """The largest entropy, per dimension, that truncating N(loc, exp(log_std)^2) to
    [low, high] removes, over every loc in [low, high]: the gap with loc at a bound,
    from the library's closed forms in f64. It rises with the std, from ln 2 for a
    tiny std to 0.85 at std (high - low) / 2."""
    with jax.enable_x64(True):
        ls = jnp.asarray([log_std], jnp.float64)
        h_normal = era_jax.gaussian_entropy(ls)
        h_tn = era_jax.truncated_normal_entropy(jnp.asarray([high], jnp.float64), ls, low=low, high=high)
        return float(h_normal - h_tn)


def initial_delta(cfg: Config, act_dim: int) -> float:
    """SAC-ERA's starting delta: --delta-init if given; else, for the truncated normal,
    the largest truncation gap the log-std bounds allow, summed over the dimensions
    (every state's bounded entropy then starts >= H0); 0 for the tanh Gaussian."""
    if cfg.delta_init is not None:
        return float(cfg.delta_init)
    if cfg.is_era and cfg.policy == "truncnorm":
        return act_dim * truncation_gap_bound(cfg.log_std_max)
    return 0.0


def actor_dist(cfg: Config, params, obs, delta):
    """Mean and log-std of the actor's Gaussian. The only place the agents differ
    in the policy: SAC squashes z into [lo, hi] with tanh, SAC-ERA applies ERA."""
    out = mlp_apply(params, obs, cfg.activation)
    act_dim = out.shape[-1] // 2
    mean, z = out[..., :act_dim], out[..., act_dim:]
    lo, hi = cfg.log_std_min, cfg.log_std_max
    if not cfg.is_era:
        return mean, lo + 0.5 * (hi - lo) * (jnp.tanh(z) + 1.0)
    head = era_jax.gaussian_log_std if cfg.head == "native" else pure_jax_reference().gaussian_log_std
    log_std = head(z, target_entropy=target_entropy(cfg, act_dim), log_std_min=lo, log_std_max=hi, delta=delta)
    return mean, log_std


def sample_action(cfg: Config, mean, log_std, key):
    """A reparameterised action in [-1, 1]^D, its log-density, and an estimate of
    the bounded policy's entropy in this state.

    tanh: a = tanh(mean + std*eps); log pi includes the tanh Jacobian, and the
          entropy estimate is -log pi(a|s) (docs/math.md#truncated-normal-entropy, no closed form).
    truncnorm: TN(tanh(mean), std, [-1, 1]) sampled by inverse CDF; the entropy
          is the closed form (era_jax.truncated_normal_entropy).
    """
    std = jnp.exp(log_std)
    if cfg.policy == "tanh":
        eps = jax.random.normal(key, mean.shape, mean.dtype)
        u = mean + std * eps
        a = jnp.tanh(u)
        log_jac = 2.0 * (math.log(2.0) - u - jax.nn.softplus(-2.0 * u))  # log(1 - tanh(u)^2)
        logp = jnp.sum(-0.5 * eps**2 - 0.5 * math.log(2.0 * math.pi) - log_std - log_jac, axis=-1)
        return a, logp, -logp
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


def q_values(critic, obs, act, activation: str = "relu"):
    sa = jnp.concatenate([obs, act], axis=-1)
    return jax.vmap(lambda p: mlp_apply(p, sa, activation)[..., 0])(critic)  # [2, B]


def make_update(cfg: Config, act_dim: int, opt):
    """One SAC / SAC-ERA gradient step on a batch, for one seed."""
    h0 = target_entropy(cfg, act_dim)
    fn = cfg.activation

    def update(agent: Agent, batch):
        obs, act, rew, nobs, done = batch
        key, k_next, k_pi = jax.random.split(agent.key, 3)
        delta = agent.delta.delta
        alpha = jnp.exp(agent.log_alpha)

        # critic: r + gamma * (min Q'(s', a') [- alpha log pi(a'|s') for SAC])
        nmean, nlog_std = actor_dist(cfg, agent.actor, nobs, delta)
        nact, nlogp, _ = sample_action(cfg, nmean, nlog_std, k_next)
        next_q = jnp.min(q_values(agent.target, nobs, nact, fn), axis=0)
        if not cfg.is_era:
            next_q = next_q - alpha * nlogp
        y = jax.lax.stop_gradient(rew + cfg.gamma * (1.0 - done) * next_q)

        def critic_loss(critic):
            q = q_values(critic, obs, act, fn)
            return jnp.mean(jnp.sum((q - y[None]) ** 2, axis=0)), jnp.mean(q)

        (c_loss, q_mean), c_grad = jax.value_and_grad(critic_loss, has_aux=True)(agent.critic)
        c_upd, critic_opt = opt.update(c_grad, agent.critic_opt, agent.critic)
        critic = optax.apply_updates(agent.critic, c_upd)

        # actor: maximise Q [- alpha log pi for SAC]
        def actor_loss(actor):
            mean, log_std = actor_dist(cfg, actor, obs, delta)
            a, logp, h_bounded = sample_action(cfg, mean, log_std, k_pi)
            q = jnp.min(q_values(critic, obs, a, fn), axis=0)
            loss = -jnp.mean(q) if cfg.is_era else jnp.mean(alpha * logp - q)
            return loss, (logp, log_std, h_bounded)

        (a_loss, (logp, log_std, h_bounded)), a_grad = jax.value_and_grad(actor_loss, has_aux=True)(agent.actor)
        a_upd, actor_opt = opt.update(a_grad, agent.actor_opt, agent.actor)
        actor = optax.apply_updates(agent.actor, a_upd)

        h_bounded = jax.lax.stop_gradient(h_bounded)
        log_alpha, alpha_opt, delta_state = agent.log_alpha, agent.alpha_opt, agent.delta
        if cfg.is_era:
            if cfg.delta == "learned":
                # docs/math.md#delta-learning: delta follows the bounded policy's batch-mean entropy towards H0
                delta_state = era_jax.delta_update(
                    agent.delta, jnp.mean(h_bounded), target_entropy=h0, dim=act_dim, log_std_min=cfg.log_std_min,
                    log_std_max=cfg.log_std_max, optimizer=cfg.delta_optimizer, lr=cfg.delta_lr,
                )  # fmt: skip
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
    """The jitted per-environment-step call, vmapped over seeds: `cfg.utd` updates
    (one replay batch each: with utd > 1 the batch leaves and the metrics carry a
    leading [utd] axis after the seed axis), then actions for the current observations."""
    update = make_update(cfg, act_dim, opt)

    def act(agent: Agent, obs):
        key, k = jax.random.split(agent.key)
        mean, log_std = actor_dist(cfg, agent.actor, obs[None], agent.delta.delta)
        a, _, _ = sample_action(cfg, mean, log_std, k)
        return agent._replace(key=key), a[0]

    def train_and_act(agent, batch, obs):
        if cfg.utd == 1:
            agent, metrics = update(agent, batch)
        else:
            agent, metrics = jax.lax.scan(update, agent, batch)
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


# ------------------------------------------------------------------- training


def make_env(task: str):
    """The task with actions in [-1, 1]^D, the box both policies act in: tasks with
    other bounds (Humanoid-v5: [-0.4, 0.4]) are rescaled affinely."""
    import gymnasium as gym  # here: the update and its benchmark need no environment

    env = gym.make(task)
    low, high = env.action_space.low, env.action_space.high
    if not (np.allclose(low, -1.0) and np.allclose(high, 1.0)):
        ones = np.ones(env.action_space.shape, np.float32)
        env = gym.wrappers.RescaleAction(env, -ones, ones)
    return env


def train(cfg: Config, seeds: list[int], out_dir: str, progress: bool = True) -> dict:
    """Train `cfg.agent` on `cfg.task` for every seed (vmapped); write
    <out_dir>/<task>_<agent>.csv and a summary JSON (sac_run.py); return the summary."""
    quiet_mujoco()
    n = len(seeds)
    envs = [make_env(cfg.task) for _ in seeds]
    eval_envs = [make_env(cfg.task) for _ in seeds]
    obs_dim = envs[0].observation_space.shape[0]
    act_dim = envs[0].action_space.shape[0]
    init, opt = make_agent(cfg, obs_dim, act_dim)
    train_and_act, act, greedy, _ = make_step(cfg, act_dim, opt)
    agent = jax.vmap(init)(jnp.stack([jax.random.PRNGKey(s) for s in seeds]))
    # distinct buffers for every leaf (the step donates them; target starts equal to critic)
    agent = jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), agent)
    replay = Replay(n, cfg.steps, obs_dim, act_dim, np.random.default_rng(seeds[0] * 7919 + 17))
    action_rngs = [np.random.default_rng(s + 123_457) for s in seeds]

    obs = np.stack([e.reset(seed=s)[0] for e, s in zip(envs, seeds)]).astype(np.float32)
    ep_ret = np.zeros(n)
    finished: list[list[float]] = [[] for _ in seeds]  # every finished episode's return, per seed
    last_eval = np.full(n, np.nan)
    actions = None
    log = RunLog(cfg, seeds, out_dir, target_entropy(cfg, act_dim), progress)

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
            reset_obs[i] = o
            if te or tr:
                finished[i].append(float(ep_ret[i]))
                ep_ret[i] = 0.0
                reset_obs[i] = e.reset()[0]
        # the stored transition is (s_t, a_t, r_t, s_{t+1}, terminated); truncation bootstraps
        replay.add(obs, actions, rew, nobs, term)
        obs = reset_obs
        if t + 1 >= cfg.start_steps:
            if cfg.utd == 1:
                batch = tuple(jnp.asarray(x) for x in replay.sample(cfg.batch))
            else:  # [seeds, utd, batch, ...]
                draws = [replay.sample(cfg.batch) for _ in range(cfg.utd)]
                batch = tuple(jnp.asarray(np.stack(xs, axis=1)) for xs in zip(*draws))
            agent, a, metrics = train_and_act(agent, batch, jnp.asarray(obs))
            actions = np.asarray(a)
            if cfg.utd == 1:
                log.update(metrics)
            else:
                metrics = jax.device_get(metrics)
                for u in range(cfg.utd):
                    log.update({k: v[:, u] for k, v in metrics.items()})
        step = t + 1
        evaluated = step % cfg.eval_every == 0 or step == cfg.steps
        if evaluated:
            with log.eval_timer():
                last_eval = evaluate(greedy, agent, eval_envs, cfg.eval_episodes, seed=10_000 + step)
        log.step(step, last_eval if evaluated else None, finished)
    return log.close(last_eval)


# ------------------------------------------------------------------- command line


def _cfg_from_args(a, agent: str) -> Config:
    """The Config of the command line: the preset's values (PRESETS, and PRESET_ERA for
    sac-era), then every option given explicitly; Config's defaults for the rest."""
    kw = {"preset": a.preset}
    if a.preset != "default":
        kw.update(PRESETS[a.preset])
        if agent == "sac-era":
            kw.update(PRESET_ERA[a.preset])
    fields = ("task", "head", "delta", "delta_init", "delta_optimizer", "delta_lr", "log_std_min", "log_std_max",
              "steps", "start_steps", "eval_every", "eval_episodes", "log_every", "hidden", "activation", "utd",
              "batch", "target")  # fmt: skip
    kw.update({f: getattr(a, f) for f in fields if getattr(a, f) is not None})
    if a.policy != "auto":
        kw["policy"] = a.policy
    kw.setdefault("policy", default_policy(agent))
    return Config(agent=agent, **kw)


TOOL_COMMANDS = ("report", "plot", "bench")  # run by sac_tools.py


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in TOOL_COMMANDS:
        return sac_tools.main(argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="{train,demo,report,plot,bench}")

    def train_args(q, steps, start, eval_every, episodes, log_every):
        arg = q.add_argument
        arg("--task", default="HalfCheetah-v5")
        arg("--policy", choices=["auto", "tanh", "truncnorm"], default="auto", help="auto: tanh for sac, truncnorm for sac-era")
        arg("--head", choices=["native", "jax"], default="native", help="sac-era: ERA head implementation")
        arg("--preset", choices=["default", *PRESETS], default="default",
            help="paper: the official SAC-ERA settings (PRESETS, PRESET_ERA); explicit options override them")
        arg("--delta", choices=["learned", "fixed"], default=None, help="sac-era: delta learning (default: learned)")
        arg("--target", choices=["bounded", "gaussian"], default=None,
            help="sac-era: H0 = -|A| for the bounded policy (default), or 0.25 |A| on the Gaussian (needs --delta fixed)")
        arg("--hidden", type=int, default=None, help=f"hidden width (default {Config.hidden})")
        arg("--activation", choices=sorted(ACTIVATIONS), default=None, help=f"default {Config.activation}")
        arg("--utd", type=int, default=None, help=f"updates per environment step (default {Config.utd})")
        arg("--batch", type=int, default=None, help=f"default {Config.batch}")
        arg("--delta-init", type=float, default=None, help="sac-era: initial (or fixed) delta (default: initial_delta)")
        arg("--delta-optimizer", choices=["sgd", "adam"], default=Config.delta_optimizer, help="sac-era: delta learner")
        arg("--delta-lr", type=float, default=Config.delta_lr, help="sac-era: delta learning rate")
        arg("--log-std-min", type=float, default=None, help="default: the agent's usual bounds")
        arg("--log-std-max", type=float, default=None)
        arg("--steps", type=int, default=steps, help="environment steps per seed")
        arg("--start-steps", type=int, default=start)
        arg("--eval-every", type=int, default=eval_every)
        arg("--eval-episodes", type=int, default=episodes)
        arg("--log-every", type=int, default=log_every)
        arg("--seeds", type=int, nargs="+", default=[0])
        arg("--out", default="runs/sac")
        arg("--threads", type=int, default=0, help="limit XLA to one thread when 1 (0: all cores)")
        arg("--no-progress", action="store_true")

    t = sub.add_parser("train", help="train one agent on one task for several seeds")
    t.add_argument("--agent", choices=["sac", "sac-era"], required=True)
    train_args(t, 100_000, 5_000, 5_000, 5, 1_000)
    d = sub.add_parser("demo", help="a few minutes: both agents, one seed, then a table")
    train_args(d, 10_000, 2_000, 2_000, 3, 500)
    d.set_defaults(out="runs/demo")
    for name in TOOL_COMMANDS:
        sub.add_parser(name, help="see sac_tools.py")
    a = p.parse_args(argv)

    configure_threads(a.threads)  # before jax's first computation
    if a.cmd == "train":
        s = train(_cfg_from_args(a, a.agent), a.seeds, a.out, progress=not a.no_progress)
        print(json.dumps({k: s[k] for k in ("seeds", "final_eval_return", "train_steps_per_s", "wall_s")}))
    elif a.cmd == "demo":
        for agent in ("sac", "sac-era"):
            train(_cfg_from_args(a, agent), a.seeds, a.out, progress=not a.no_progress)
        print()
        print(sac_tools.demo_table(a.out))
        png = os.path.join(a.out, "sac_era.png")
        sac_tools.plot(a.out, png)
        print(f"\nCSV logs and {png} written; the full comparison: examples/jax/README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
