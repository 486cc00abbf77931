"""The environments of ppo_era.py and what runs on them outside the jitted update: one
MuJoCo environment per seed with the observation and reward normalisation of all seeds
done at once (`SeedEnvs`), the rollout's policy in NumPy (`NumpyPolicy`) and the
deterministic evaluation (`evaluate`). `cfg` is a `ppo_era.Config` throughout."""

from __future__ import annotations

import math

import numpy as np

from sac_run import quiet_mujoco

#: Added to a seed to seed its evaluation environments (distinct from its training environment's).
EVAL_SEED_OFFSET = 1_000_000


def make_env(cfg, seed: int):
    """One seed's environment: episode statistics on the raw rewards, actions clipped to the
    bounds (CleanRL's RecordEpisodeStatistics and ClipAction). The normalisation of
    observations and rewards is `SeedEnvs`'s, for every seed at once."""
    import gymnasium as gym

    env = gym.wrappers.ClipAction(gym.wrappers.RecordEpisodeStatistics(gym.make(cfg.task)))
    env.action_space.seed(seed)
    return env


class RunningMeanStd:
    """Running mean and variance per seed (`shape` = (seeds, ...)), updated one sample per
    seed at a time: the arithmetic of gymnasium's RunningMeanStd (count starts at 1e-4)."""

    def __init__(self, shape):
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = 1e-4

    def update(self, x) -> None:
        """Add one sample per seed."""
        delta = x - self.mean
        tot = self.count + 1.0
        self.mean = self.mean + delta / tot
        self.var = (self.var * self.count + delta * delta * self.count / tot) / tot
        self.count = tot


class SeedEnvs:
    """One environment per seed, stepped in a loop. An environment whose episode ended
    (terminated or truncated) is reset at once and its raw return recorded. Observations
    and rewards are normalised per seed as gymnasium's NormalizeObservation and
    NormalizeReward do (running statistics; the reward divided by the std of the
    discounted return), then clipped to +-`obs_clip` and +-`rew_clip`; vectorised over the
    seeds, which halves the cost of a step against one wrapper stack per environment."""

    def __init__(self, cfg, seeds: list[int]):
        quiet_mujoco()
        self.cfg = cfg
        self.envs = [make_env(cfg, s) for s in seeds]
        raw = np.stack([e.reset(seed=s)[0] for e, s in zip(self.envs, seeds)])
        self.obs_rms = RunningMeanStd(raw.shape)
        self.ret_rms = RunningMeanStd((len(seeds),))
        self.discounted = np.zeros(len(seeds))
        self.obs = self._norm_obs(raw)
        self.returns: list[list[float]] = [[] for _ in seeds]

    def _norm_obs(self, raw):
        self.obs_rms.update(raw)
        o = (raw - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + 1e-8)
        return np.clip(o, -self.cfg.obs_clip, self.cfg.obs_clip).astype(np.float32)

    @property
    def dims(self) -> tuple[int, int]:
        """(obs_dim, act_dim)."""
        e = self.envs[0]
        return e.observation_space.shape[0], e.action_space.shape[0]

    def step(self, actions: np.ndarray):
        """Step every environment; returns (next_obs, normalised rewards, done) per seed."""
        n = len(self.envs)
        raw = np.empty(self.obs_rms.mean.shape)
        rew, term, done = np.empty(n), np.zeros(n), np.zeros(n, np.float32)
        for i, e in enumerate(self.envs):
            o, rew[i], te, tr, info = e.step(actions[i])
            if te or tr:
                self.returns[i].append(float(info["episode"]["r"]))
                o, _ = e.reset()
            raw[i], term[i], done[i] = o, float(te), float(te or tr)
        self.discounted = self.discounted * self.cfg.gamma * (1.0 - term) + rew
        self.ret_rms.update(self.discounted)
        rew = np.clip(rew / np.sqrt(self.ret_rms.var + 1e-8), -self.cfg.rew_clip, self.cfg.rew_clip)
        self.obs = self._norm_obs(raw)
        return self.obs.copy(), rew.astype(np.float32), done


class NumpyPolicy:
    """The rollout's policy in numpy, for every seed at once: the actor and critic
    networks of `params` (seed axis first) and the log-std of the policy that acts,
    computed once per rollout by the jitted `log_std` (PPO-ERA: through the ERA head;
    the std is state-independent). Saves a jitted call per environment step."""

    def __init__(self, params, log_std):
        self.actor = [(np.asarray(w), np.asarray(b)) for w, b in params["actor"]]
        self.critic = [(np.asarray(w), np.asarray(b)) for w, b in params["critic"]]
        self.log_std = np.asarray(log_std, np.float64)  # [S, A]
        self.std = np.exp(self.log_std)

    @staticmethod
    def _mlp(layers, x):
        for w, b in layers[:-1]:
            x = np.tanh(np.einsum("si,sij->sj", x, w) + b)
        w, b = layers[-1]
        return np.einsum("si,sij->sj", x, w) + b

    def act(self, obs, rngs):
        """(action, log_prob, value) per seed; one draw from each seed's generator."""
        mean = self._mlp(self.actor, obs)
        eps = np.stack([g.standard_normal(mean.shape[1]) for g in rngs])
        a = mean + self.std * eps
        logp = np.sum(-0.5 * eps * eps - self.log_std - 0.5 * math.log(2 * math.pi), axis=1)
        return a.astype(np.float32), logp, self._mlp(self.critic, obs)[:, 0]


def evaluate(cfg, envs: list, params, obs_rms: RunningMeanStd, episodes: int) -> list[list[float]]:
    """Run the deterministic policy (the Gaussian's mean; no noise) of every seed on its own
    evaluation environment in `envs` for `episodes` whole episodes; returns the raw returns
    per seed. Observations are normalised with the training statistics `obs_rms` as they are
    now (frozen: evaluation does not update them); actions are clipped by the environment's
    wrapper, as in training. Each environment continues its own seeded sequence of resets."""
    actor = NumpyPolicy(params, np.zeros((len(envs), 1))).actor
    std = np.sqrt(obs_rms.var + 1e-8)
    obs = np.stack([e.reset()[0] for e in envs])
    out: list[list[float]] = [[] for _ in envs]
    while any(len(r) < episodes for r in out):
        norm = np.clip((obs - obs_rms.mean) / std, -cfg.obs_clip, cfg.obs_clip).astype(np.float32)
        act = NumpyPolicy._mlp(actor, norm).astype(np.float32)
        for i, e in enumerate(envs):
            if len(out[i]) >= episodes:
                continue
            o, _, te, tr, info = e.step(act[i])
            if te or tr:
                out[i].append(float(info["episode"]["r"]))
                o, _ = e.reset()
            obs[i] = o
    return out
