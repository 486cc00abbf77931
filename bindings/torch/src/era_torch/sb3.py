"""SAC-ERA and PPO-ERA for Stable-Baselines3 (tested with stable-baselines3 2.9.2,
gymnasium 1.4.0 and mujoco 4.0.0; recipe: docs/sb3.md).

Stable-Baselines3 is imported when this module is imported, not by ``import era_torch``.
The entropy control is ERA's (docs/math.md#using-the-head-in-an-agent): the Gaussian
head :class:`era_torch.EraGaussian` replaces the log-std activation, and the losses carry
no entropy term.

- :class:`SACERA`: SB3's ``SAC`` with no entropy coefficient (none in the critic's target,
  none in the actor's loss: the actor maximises Q alone) and the head on the actor's
  log-std. The policy that acts is bounded: the truncated normal
  ``TN(tanh(mean), std, [-1, 1])`` of the official ERA code (``bounded_policy="truncnorm"``,
  the default) or SB3's tanh-squashed Gaussian (``"tanh"``). ``target_entropy`` is the
  bounded policy's entropy target (SAC's, ``"auto"``: ``-dim``); the head guarantees
  ``target_entropy + delta`` on the Gaussian in every state, and ``delta`` is learned once
  per gradient step from the batch mean of the bounded policy's entropy (the truncated
  normal's closed form, :func:`era_torch.truncated_normal_entropy`, or the tanh policy's
  ``-log_prob`` of its sampled action), or fixed (``learn_delta=False``).
- :class:`PPOERA`: SB3's ``PPO`` with no entropy bonus, its Gaussian's log-std passed
  through the head: the state-independent parameter (SB3's own, default) or a linear
  layer on the policy's latent (``state_dependent_std=True``). ``target_entropy`` is a
  floor on the Gaussian in every state, ``delta`` fixed.

``model.save`` / ``load`` keep ``delta`` and its learner's state (the head's
``state_dict``, extra state included). gSDE is not supported (``use_sde=True`` raises).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

try:
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.distributions import DiagGaussianDistribution, Distribution
    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.common.preprocessing import get_action_dim
    from stable_baselines3.common.utils import polyak_update
    from stable_baselines3.sac.policies import Actor, SACPolicy
except ImportError as e:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "era_torch.sb3 needs Stable-Baselines3 (tested with stable-baselines3==2.9.2): "
        "pip install stable-baselines3==2.9.2"
    ) from e

from ._ops import gaussian_entropy, truncated_normal_entropy
from .modules import EraGaussian

__all__ = [
    "BOUNDED_POLICIES",
    "PPOERA",
    "SACERA",
    "SB3_VERSION",
    "EraActor",
    "EraActorCriticPolicy",
    "SACERAPolicy",
    "TruncatedNormalDistribution",
    "truncation_gap_bound",
]

#: The Stable-Baselines3 version this module is tested with.
SB3_VERSION = "2.9.2"
#: The bounded policies of SAC-ERA.
BOUNDED_POLICIES = ("truncnorm", "tanh")
#: SAC-ERA's default learner of ``delta``: SGD at rate 0.5 on ``mean entropy - target``
#: (examples/jax/RESULTS.md: it held the truncated normal's batch-mean entropy on its target).
DELTA_OPTIMIZER, DELTA_LR = "sgd", 0.5

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def truncation_gap_bound(log_std_max: float, low: float = -1.0, high: float = 1.0) -> float:
    """The most entropy, per dimension, that truncating ``N(loc, exp(log_std)^2)`` to
    ``[low, high]`` removes over every ``loc`` in the interval and ``log_std <= log_std_max``
    (the location at a bound, the widest std), from the library's closed forms in float64
    (:func:`era_torch.gaussian_entropy`, :func:`era_torch.truncated_normal_entropy`):
    0.853 nats for ``log_std_max = 0`` on [-1, 1]. ``dim`` times it is SAC-ERA's default
    start of ``delta`` with the truncated normal: every state's bounded entropy then starts
    at or above the target, whatever the network's first outputs."""
    log_std = torch.tensor([float(log_std_max)], dtype=torch.float64)
    mean = torch.tensor([float(high)], dtype=torch.float64)
    gap = gaussian_entropy(log_std) - truncated_normal_entropy(mean, log_std, float(low), float(high))
    return float(gap)


class TruncatedNormalDistribution(Distribution):
    """``TN(tanh(mean), exp(log_std), [-1, 1])`` per action dimension (independent), as an SB3
    distribution: the bounded policy of the official SAC-ERA code.

    Sampling is by inverse CDF, pathwise (differentiable with respect to ``mean`` and
    ``log_std``), and clipped to [-1, 1]; the location ``tanh(mean)`` lies inside the interval,
    so the normalising mass ``Z = Phi(beta) - Phi(alpha)`` is at least ``Phi(1/std) - 1/2``
    and is computed directly. :meth:`entropy` is the library's closed form (a statistic for
    the ``delta`` learner, not differentiated)."""

    def __init__(self, action_dim: int):
        super().__init__()
        self.action_dim = int(action_dim)
        self.loc: Tensor | None = None
        self.log_std: Tensor | None = None

    def proba_distribution_net(self, latent_dim: int) -> tuple[nn.Module, nn.Module]:
        """The mean and log-std pre-activation layers, two ``nn.Linear(latent_dim, action_dim)``."""
        return nn.Linear(latent_dim, self.action_dim), nn.Linear(latent_dim, self.action_dim)

    def proba_distribution(self, mean_actions: Tensor, log_std: Tensor) -> TruncatedNormalDistribution:
        """Sets the parameters: location ``tanh(mean_actions)``, log-std ``log_std``; returns self."""
        self.loc, self.log_std = torch.broadcast_tensors(torch.tanh(mean_actions), log_std)
        return self

    def _standard(self):
        std = torch.exp(self.log_std)
        alpha = (-1.0 - self.loc) / std
        beta = (1.0 - self.loc) / std
        return std, alpha, beta

    def _log_z(self, alpha: Tensor, beta: Tensor) -> Tensor:
        tiny = torch.finfo(alpha.dtype).tiny
        return torch.log(torch.clamp(torch.special.ndtr(beta) - torch.special.ndtr(alpha), min=tiny))

    def log_prob(self, actions: Tensor) -> Tensor:
        """``ln p(actions)`` summed over the action axis (``-inf`` outside [-1, 1])."""
        std, alpha, beta = self._standard()
        xi = (actions - self.loc) / std
        lp = -0.5 * xi**2 - _HALF_LOG_2PI - self.log_std - self._log_z(alpha, beta)
        lp = torch.where((actions >= -1.0) & (actions <= 1.0), lp, torch.full_like(lp, -math.inf))
        return lp.sum(dim=-1)

    def entropy(self) -> Tensor:
        """The closed-form entropy per state (:func:`era_torch.truncated_normal_entropy`),
        detached: what the ``delta`` learner takes."""
        return truncated_normal_entropy(self.loc.detach(), self.log_std.detach(), -1.0, 1.0)

    def sample(self) -> Tensor:
        """A pathwise sample in [-1, 1]."""
        std, alpha, beta = self._standard()
        cdf_a, cdf_b = torch.special.ndtr(alpha), torch.special.ndtr(beta)
        eps = torch.finfo(self.loc.dtype).eps
        u = torch.rand_like(self.loc).clamp(eps, 1.0 - eps)
        p = torch.clamp(cdf_a + u * (cdf_b - cdf_a), torch.finfo(self.loc.dtype).tiny, 1.0 - eps)
        return torch.clamp(self.loc + std * torch.special.ndtri(p), -1.0, 1.0)

    def mode(self) -> Tensor:
        """The most likely action, ``tanh(mean)``."""
        return self.loc

    def actions_from_params(self, mean_actions: Tensor, log_std: Tensor, deterministic: bool = False) -> Tensor:
        """Actions for the given parameters (the mode if ``deterministic``, else a sample)."""
        self.proba_distribution(mean_actions, log_std)
        return self.get_actions(deterministic=deterministic)

    def log_prob_from_params(self, mean_actions: Tensor, log_std: Tensor) -> tuple[Tensor, Tensor]:
        """A pathwise sample and its log-density, for the given parameters."""
        actions = self.actions_from_params(mean_actions, log_std)
        return actions, self.log_prob(actions)


def _check_bounded_policy(name: str) -> str:
    if name not in BOUNDED_POLICIES:
        raise ValueError(f"era_torch.sb3: bounded_policy must be one of {BOUNDED_POLICIES}, got {name!r}")
    return name


def _no_sde(use_sde: bool, what: str) -> None:
    if use_sde:
        raise ValueError(f"era_torch.sb3: {what} does not support gSDE (use_sde=True): ERA's head sets the "
                         "log-std of a plain diagonal Gaussian")


class EraActor(Actor):
    """SB3's SAC actor with ERA's Gaussian head on its log-std (``self.era``, an
    :class:`era_torch.EraGaussian`) instead of the clamp to [-20, 2], and the bounded
    policy ``bounded_policy`` (``"truncnorm"``: :class:`TruncatedNormalDistribution`;
    ``"tanh"``: SB3's squashed Gaussian).

    Args (besides SB3's ``Actor``'s): ``target_entropy`` (``H0``, the bounded policy's
    target), ``bounded_policy``, ``log_std_min`` / ``log_std_max`` (None: the library's,
    -8 and 0), ``delta`` (the initial or fixed value; None: ``dim *``
    :func:`truncation_gap_bound` for the truncated normal, 0 for tanh), ``learn_delta``,
    ``delta_optimizer`` and ``delta_lr`` (the learner: SGD at 0.5 by default)."""

    def __init__(
        self,
        observation_space,
        action_space,
        net_arch,
        features_extractor,
        features_dim,
        *,
        target_entropy: float,
        bounded_policy: str = "truncnorm",
        log_std_min=None,
        log_std_max=None,
        delta=None,
        learn_delta: bool = True,
        delta_optimizer: str = DELTA_OPTIMIZER,
        delta_lr: float = DELTA_LR,
        use_sde: bool = False,
        **kwargs,
    ):
        _no_sde(use_sde, "SAC-ERA")
        super().__init__(observation_space, action_space, net_arch, features_extractor, features_dim,
                         use_sde=False, **kwargs)
        self.bounded_policy = _check_bounded_policy(bounded_policy)
        self.era_settings = dict(
            target_entropy=float(target_entropy), bounded_policy=bounded_policy, log_std_min=log_std_min,
            log_std_max=log_std_max, delta=delta, learn_delta=bool(learn_delta),
            delta_optimizer=delta_optimizer, delta_lr=delta_lr,
        )
        dim = get_action_dim(self.action_space)
        self.era = EraGaussian(dim, float(target_entropy), log_std_min=log_std_min, log_std_max=log_std_max,
                               delta=delta, learn_delta=learn_delta, optimizer=delta_optimizer, lr=delta_lr)
        if delta is None and bounded_policy == "truncnorm":
            self.era.set_delta(dim * truncation_gap_bound(self.era.log_std_max))
        if bounded_policy == "truncnorm":
            self.action_dist = TruncatedNormalDistribution(dim)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(self.era_settings)
        return data

    def get_action_dist_params(self, obs) -> tuple[Tensor, Tensor, dict]:
        """The mean and the head's log-std ``era(log_std_layer(latent))`` for ``obs``."""
        latent_pi = self.latent_pi(self.extract_features(obs, self.features_extractor))
        return self.mu(latent_pi), self.era(self.log_std(latent_pi)), {}

    def bounded_entropy(self, log_prob: Tensor) -> Tensor:
        """The bounded policy's entropy per state of the batch just passed to
        :meth:`action_log_prob` (``log_prob``: what it returned), detached: the truncated
        normal's closed form, or ``-log_prob`` of the tanh policy's sampled action."""
        if self.bounded_policy == "truncnorm":
            return self.action_dist.entropy()
        return -log_prob.detach()


class SACERAPolicy(SACPolicy):
    """SB3's ``SACPolicy`` whose actor is an :class:`EraActor`; the ERA keyword arguments
    are :class:`EraActor`'s (``target_entropy`` required). :class:`SACERA` fills them in."""

    def __init__(self, observation_space, action_space, lr_schedule, *, target_entropy: float,
                 bounded_policy: str = "truncnorm", log_std_min=None, log_std_max=None, delta=None,
                 learn_delta: bool = True, delta_optimizer: str = DELTA_OPTIMIZER, delta_lr: float = DELTA_LR,
                 use_sde: bool = False, **kwargs):
        _no_sde(use_sde, "SAC-ERA")
        # read by make_actor, which SACPolicy.__init__ calls
        self.era_settings = dict(
            target_entropy=float(target_entropy), bounded_policy=_check_bounded_policy(bounded_policy),
            log_std_min=log_std_min, log_std_max=log_std_max, delta=delta, learn_delta=bool(learn_delta),
            delta_optimizer=delta_optimizer, delta_lr=delta_lr,
        )
        super().__init__(observation_space, action_space, lr_schedule, use_sde=False, **kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(self.era_settings)
        return data

    def make_actor(self, features_extractor=None) -> EraActor:
        """An :class:`EraActor` with this policy's network and ERA settings."""
        actor_kwargs = self._update_features_extractor(self.actor_kwargs, features_extractor)
        return EraActor(**actor_kwargs, **self.era_settings).to(self.device)


class SACERA(SAC):
    """SAC-ERA: SB3's ``SAC`` without entropy terms, with ERA's Gaussian head on the actor.

    The arguments are ``SAC``'s (except ``ent_coef`` and ``use_sde``, which it refuses) and:

    Args:
      target_entropy: the bounded policy's entropy target in nats (``"auto"``: ``-dim``).
      bounded_policy: ``"truncnorm"`` (default; the official code's truncated normal) or
        ``"tanh"`` (SB3's squashed Gaussian; its entropy gap has no bound, so a learned
        ``delta`` may reach its feasibility limit without closing it, examples/jax).
      learn_delta: learn ``delta`` (default) or keep it fixed.
      delta: the initial (or fixed) ``delta``; None: ``dim * truncation_gap_bound(log_std_max)``
        for the truncated normal (every state starts at or above the target), 0 for tanh.
      delta_optimizer, delta_lr: the learner (``"sgd"`` at 0.5, or ``"adam"``).
      log_std_min, log_std_max: the head's bounds (None: the library's, -8 and 0).

    Logs ``train/delta`` and ``train/bounded_entropy`` (the batch mean, averaged over the
    gradient steps of a call) besides SAC's losses.
    """

    policy_aliases = {"MlpPolicy": SACERAPolicy}  # noqa: RUF012 (SB3's own class attribute)

    def __init__(self, policy, env, *, target_entropy="auto", bounded_policy: str = "truncnorm",
                 learn_delta: bool = True, delta=None, delta_optimizer: str = DELTA_OPTIMIZER,
                 delta_lr: float = DELTA_LR, log_std_min=None, log_std_max=None, **kwargs):
        if "ent_coef" in kwargs:
            raise ValueError("era_torch.sb3: SAC-ERA has no entropy coefficient (ent_coef): the head keeps the "
                             "entropy at target_entropy instead")
        _no_sde(kwargs.get("use_sde", False), "SAC-ERA")
        self.bounded_policy = _check_bounded_policy(bounded_policy)
        self.learn_delta = bool(learn_delta)
        self.delta_init = delta
        self.delta_optimizer = delta_optimizer
        self.delta_lr = delta_lr
        self.log_std_min = log_std_min
        self.log_std_max = log_std_max
        super().__init__(policy, env, ent_coef=0.0, target_entropy=target_entropy, **kwargs)

    def _setup_model(self) -> None:
        if not (isinstance(self.policy_class, type) and issubclass(self.policy_class, SACERAPolicy)):
            raise ValueError(f"era_torch.sb3: SACERA needs a SACERAPolicy (or 'MlpPolicy'), got {self.policy_class!r}")
        if self.target_entropy == "auto":
            self.target_entropy = -float(get_action_dim(self.action_space))
        self.policy_kwargs = dict(  # a copy: SB3 keeps the caller's dict
            self.policy_kwargs, target_entropy=float(self.target_entropy), bounded_policy=self.bounded_policy,
            learn_delta=self.learn_delta, delta=self.delta_init, delta_optimizer=self.delta_optimizer,
            delta_lr=self.delta_lr, log_std_min=self.log_std_min, log_std_max=self.log_std_max,
        )
        super()._setup_model()

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        """SAC's update with the entropy terms removed (critic target: ``r + gamma*min Q'``;
        actor loss: ``-min Q``), then one step of the ``delta`` learner per gradient step from
        the batch mean of the bounded policy's entropy."""
        self.policy.set_training_mode(True)
        self._update_learning_rate([self.actor.optimizer, self.critic.optimizer])
        actor_losses, critic_losses, entropies, deltas = [], [], [], []
        for gradient_step in range(gradient_steps):
            data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
            discounts = data.discounts if data.discounts is not None else self.gamma

            actions_pi, log_prob = self.actor.action_log_prob(data.observations)
            entropy = self.actor.bounded_entropy(log_prob)

            with torch.no_grad():
                next_actions, _ = self.actor.action_log_prob(data.next_observations)
                next_q = torch.cat(self.critic_target(data.next_observations, next_actions), dim=1)
                next_q, _ = torch.min(next_q, dim=1, keepdim=True)
                target_q = data.rewards + (1 - data.dones) * discounts * next_q

            current_q = self.critic(data.observations, data.actions)
            critic_loss = 0.5 * sum(F.mse_loss(q, target_q) for q in current_q)
            critic_losses.append(critic_loss.item())
            self.critic.optimizer.zero_grad()
            critic_loss.backward()
            self.critic.optimizer.step()

            q_pi = torch.cat(self.critic(data.observations, actions_pi), dim=1)
            actor_loss = -torch.min(q_pi, dim=1, keepdim=True)[0].mean()
            actor_losses.append(actor_loss.item())
            self.actor.optimizer.zero_grad()
            actor_loss.backward()
            self.actor.optimizer.step()

            mean_entropy = entropy.mean().item()
            entropies.append(mean_entropy)
            deltas.append(self.actor.era.update_delta(mean_entropy))

            if gradient_step % self.target_update_interval == 0:
                polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
                polyak_update(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)

        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/actor_loss", sum(actor_losses) / len(actor_losses))
        self.logger.record("train/critic_loss", sum(critic_losses) / len(critic_losses))
        self.logger.record("train/bounded_entropy", sum(entropies) / len(entropies))
        self.logger.record("train/delta", deltas[-1])


class EraActorCriticPolicy(ActorCriticPolicy):
    """SB3's ``ActorCriticPolicy`` (continuous actions) whose Gaussian log-std goes through
    ERA's head (``self.era``): the state-independent parameter ``log_std`` (SB3's own, now
    the head's input) or, with ``state_dependent_std=True``, a linear layer ``log_std_net``
    on the policy's latent.

    Args (besides SB3's): ``target_entropy`` (required: the floor on the Gaussian's entropy
    in every state, nats), ``log_std_min`` / ``log_std_max`` (None: the library's, -8 and
    0), ``delta`` (fixed; None: 0), ``state_dependent_std``."""

    def __init__(self, observation_space, action_space, lr_schedule, *, target_entropy: float,
                 log_std_min=None, log_std_max=None, delta=None, state_dependent_std: bool = False,
                 use_sde: bool = False, **kwargs):
        _no_sde(use_sde, "PPO-ERA")
        super().__init__(observation_space, action_space, lr_schedule, use_sde=False, **kwargs)
        if not isinstance(self.action_dist, DiagGaussianDistribution):
            raise ValueError(f"era_torch.sb3: PPO-ERA needs a continuous (Box) action space, got {action_space}")
        self.era_settings = dict(target_entropy=float(target_entropy), log_std_min=log_std_min,
                                 log_std_max=log_std_max, delta=delta, state_dependent_std=bool(state_dependent_std))
        dim = get_action_dim(self.action_space)
        self.era = EraGaussian(dim, float(target_entropy), log_std_min=log_std_min, log_std_max=log_std_max,
                               delta=delta, learn_delta=False).to(self.device)
        self.state_dependent_std = bool(state_dependent_std)
        if self.state_dependent_std:
            del self.log_std  # SB3's parameter, replaced by a layer on the latent
            self.log_std_net = nn.Linear(self.mlp_extractor.latent_dim_pi, dim).to(self.device)
            if self.ortho_init:
                self.log_std_net.apply(lambda m: self.init_weights(m, gain=0.01))
            self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(self.era_settings)
        return data

    def head_input(self, latent_pi: Tensor) -> Tensor:
        """The head's input ``z``: ``log_std_net(latent_pi)`` or the parameter ``log_std``."""
        return self.log_std_net(latent_pi) if self.state_dependent_std else self.log_std

    def _get_action_dist_from_latent(self, latent_pi: Tensor):
        return self.action_dist.proba_distribution(self.action_net(latent_pi), self.era(self.head_input(latent_pi)))


class PPOERA(PPO):
    """PPO-ERA: SB3's ``PPO`` without entropy bonus, the Gaussian's log-std through ERA's head.

    The arguments are ``PPO``'s (except ``ent_coef`` and ``use_sde``, which it refuses) and:

    Args:
      target_entropy: required; the entropy floor of the policy's Gaussian in every state,
        nats (the head guarantees ``target_entropy + delta``).
      state_dependent_std: a log-std per state (a linear layer on the latent) instead of
        SB3's state-independent parameter.
      delta: fixed compensation (None: 0).
      log_std_min, log_std_max: the head's bounds (None: the library's, -8 and 0).

    ``train/std`` is logged from the head's output (the state-independent case).
    """

    policy_aliases = {"MlpPolicy": EraActorCriticPolicy}  # noqa: RUF012 (SB3's own class attribute)

    def __init__(self, policy, env, *, target_entropy=None, state_dependent_std: bool = False, delta=None,
                 log_std_min=None, log_std_max=None, _init_setup_model: bool = True, **kwargs):
        if "ent_coef" in kwargs:
            raise ValueError("era_torch.sb3: PPO-ERA has no entropy bonus (ent_coef): the head keeps the "
                             "entropy at or above target_entropy instead")
        _no_sde(kwargs.get("use_sde", False), "PPO-ERA")
        if target_entropy is None and _init_setup_model:
            raise ValueError("era_torch.sb3: PPOERA needs target_entropy, the floor on the Gaussian's entropy "
                             "in every state (nats)")
        self.target_entropy = None if target_entropy is None else float(target_entropy)
        self.state_dependent_std = bool(state_dependent_std)
        self.delta = delta
        self.log_std_min = log_std_min
        self.log_std_max = log_std_max
        super().__init__(policy, env, ent_coef=0.0, _init_setup_model=_init_setup_model, **kwargs)

    def _setup_model(self) -> None:
        if not (isinstance(self.policy_class, type) and issubclass(self.policy_class, EraActorCriticPolicy)):
            raise ValueError(f"era_torch.sb3: PPOERA needs an EraActorCriticPolicy (or 'MlpPolicy'), "
                             f"got {self.policy_class!r}")
        self.policy_kwargs = dict(  # a copy: SB3 keeps the caller's dict
            self.policy_kwargs, target_entropy=self.target_entropy, state_dependent_std=self.state_dependent_std,
            delta=self.delta, log_std_min=self.log_std_min, log_std_max=self.log_std_max)
        super()._setup_model()

    def train(self) -> None:
        """PPO's update (its entropy term multiplied by ``ent_coef = 0``), then ``train/std``
        from the head's output where the log-std is state-independent."""
        super().train()
        if not self.policy.state_dependent_std:
            with torch.no_grad():
                std = torch.exp(self.policy.era(self.policy.log_std)).mean().item()
            self.logger.record("train/std", std)

