"""SAC-ERA and PPO-ERA for SBX, Stable-Baselines3 in JAX (tested with sbx-rl 0.28.0,
stable-baselines3 2.9.2, jax 0.10.2, flax 0.12.8, tfp-nightly 0.26.0.dev20261027,
gymnasium 1.4.0 and mujoco 4.0.0; recipe: docs/sb3.md).

SBX is imported when this module is imported, not by ``import era_jax``. The entropy
control is ERA's (docs/math.md#using-the-head-in-an-agent); the settings of the head and
of its ``delta`` are one :class:`era_jax.GaussianEra`, and the policies are
:mod:`era_jax.policies`.

- :class:`SACERA`: SBX's ``SAC`` with no entropy coefficient (none in the critic's target,
  none in the actor's loss) and the actor :class:`EraActor`, whose log-std goes through the
  head. ``delta`` is a :class:`era_jax.DeltaState` carried in the actor's train state
  (:class:`EraActorState`), a traced value: the jitted update reads it in every forward
  and steps it once per actor update from the bounded policy's batch-mean entropy (the
  truncated normal's closed form or the tanh policy's ``-log_prob``), inside SBX's
  ``fori_loop``; nothing of it lives on the host. Rollouts read it from the same state.
- :class:`PPOERA`: SBX's ``PPO`` with no entropy bonus and the actor :class:`EraPPOActor`:
  the Gaussian's state-independent log-std parameter (or a layer on the latent,
  ``state_dependent_std=True``) goes through the head, a floor on the Gaussian with a
  fixed ``delta`` (``GaussianEra(mode="gaussian")``).

``model.save`` / ``load`` keep ``delta`` and its learner state (SBX pickles the policy
with its train states). gSDE is not supported; SBX's TQC, CrossQ and the Simba networks
are not wrapped.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.training.train_state import TrainState

try:
    import tensorflow_probability.substrates.jax as tfp
    from gymnasium import spaces
    from sbx import PPO, SAC
    from sbx.common.policies import Flatten
    from sbx.ppo.policies import PPOPolicy
    from sbx.sac.policies import SACPolicy
except ImportError as e:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "era_jax.sbx needs SBX (tested with sbx-rl==0.28.0): pip install sbx-rl==0.28.0"
    ) from e

from .delta import DeltaState
from .gaussian_era import GaussianEra

__all__ = ["PPOERA", "SACERA", "SBX_VERSION", "EraActor", "EraActorState", "EraPPOActor", "PPOERAPolicy",
           "SACERAPolicy"]

#: The SBX (sbx-rl) version this module is tested with.
SBX_VERSION = "0.28.0"


def _no_sde(use_sde: bool, what: str) -> None:
    if use_sde:
        raise ValueError(f"era_jax.sbx: {what} does not support gSDE (use_sde=True): ERA's head sets the "
                         "log-std of a plain diagonal Gaussian")


class EraActorState(TrainState):
    """SBX's actor train state plus ERA's ``delta``: ``delta`` (a :class:`era_jax.DeltaState`,
    traced) and ``era`` (the static :class:`era_jax.GaussianEra` settings that step it)."""

    delta: DeltaState
    era: GaussianEra = flax.struct.field(pytree_node=False)


class EraActor(nn.Module):
    """SAC-ERA's actor: an MLP whose two heads give the mean and the head's input ``z``;
    ``__call__(obs, delta=None)`` returns ``era.distribution(mean, z, delta)``, the bounded
    policy of the settings (:class:`era_jax.policies.TruncatedNormal` or
    :class:`era_jax.policies.TanhGaussian`; ``delta`` None: the settings' initial one).
    The keyword arguments SBX's ``SACPolicy.build`` passes are accepted."""

    action_dim: int
    net_arch: Sequence[int]
    era: GaussianEra
    activation_fn: Callable[[jnp.ndarray], jnp.ndarray] = nn.relu

    @nn.compact
    def __call__(self, x: jnp.ndarray, delta=None):
        x = Flatten()(x)
        for n_units in self.net_arch:
            x = self.activation_fn(nn.Dense(n_units)(x))
        mean = nn.Dense(self.action_dim)(x)
        z = nn.Dense(self.action_dim)(x)
        return self.era.distribution(mean, z, delta)


def _bounded_entropy(era: GaussianEra, dist, log_prob):
    """The bounded policy's entropy per state: the truncated normal's closed form, or the tanh
    policy's ``-log_prob`` of its sampled action; not differentiated."""
    if era.policy == "truncnorm":
        return dist.entropy()
    return jax.lax.stop_gradient(-log_prob)


def _actor_class(actor_class, base):
    """``actor_class`` (None: ``base``), which must be ``base`` or a subclass of it."""
    actor_class = base if actor_class is None else actor_class
    if not (isinstance(actor_class, type) and issubclass(actor_class, base)):
        raise TypeError(f"era_jax.sbx: actor_class must be {base.__name__} or a subclass of it, got {actor_class!r}")
    return actor_class


class SACERAPolicy(SACPolicy):
    """SBX's ``SACPolicy`` with :class:`EraActor` (settings ``era``, a
    :class:`era_jax.GaussianEra`) and an :class:`EraActorState` holding ``delta``; its
    predictions read ``delta`` from that state. :class:`SACERA` fills ``era`` in.
    ``actor_class``: a subclass of :class:`EraActor` in its place (None: EraActor)."""

    def __init__(self, observation_space, action_space, lr_schedule, *, era: GaussianEra,
                 actor_class: type[EraActor] = None, use_sde: bool = False, **kwargs):
        _no_sde(use_sde, "SAC-ERA")
        if not isinstance(era, GaussianEra):
            raise TypeError(f"era_jax.sbx: era must be an era_jax.GaussianEra, got {type(era).__name__}")
        actor_class = _actor_class(actor_class, EraActor)
        super().__init__(observation_space, action_space, lr_schedule,
                         actor_class=functools.partial(actor_class, era=era), **kwargs)
        self.era = era

    def build(self, key: jax.Array, lr_schedule, qf_learning_rate: float) -> jax.Array:
        """SBX's build, with the actor's train state an :class:`EraActorState` whose
        ``delta`` starts at ``era.init_delta()``."""
        key = super().build(key, lr_schedule, qf_learning_rate)
        state = self.actor_state
        self.actor_state = EraActorState.create(apply_fn=state.apply_fn, params=state.params, tx=state.tx,
                                                delta=self.era.init_delta(), era=self.era)
        return key

    @staticmethod
    @jax.jit
    def _sample(actor_state: EraActorState, observations, key):
        return actor_state.apply_fn(actor_state.params, observations, actor_state.delta).sample(key)

    @staticmethod
    @jax.jit
    def _mode(actor_state: EraActorState, observations):
        return actor_state.apply_fn(actor_state.params, observations, actor_state.delta).mode()

    def _predict(self, observation: np.ndarray, deterministic: bool = False) -> np.ndarray:  # type: ignore[override]
        if deterministic:
            return self._mode(self.actor_state, observation)
        self.reset_noise()
        return self._sample(self.actor_state, observation, self.noise_key)


class SACERA(SAC):
    """SAC-ERA on SBX: SBX's ``SAC`` without entropy terms, with :class:`EraActor`.

    The arguments are SBX ``SAC``'s (except ``ent_coef`` and ``use_sde``, which it refuses) and:

    Args:
      target_entropy: the bounded policy's entropy target, nats (``"auto"``: ``-dim``).
      bounded_policy: ``"truncnorm"`` (default, the official code's) or ``"tanh"``.
      learn_delta: learn ``delta`` (default) or keep it at its initial value.
      delta: the initial (or fixed) ``delta``; None: :attr:`era_jax.GaussianEra.initial_delta`
        (``dim`` times the truncation gap bound for the truncated normal, 0 for tanh).
      delta_optimizer, delta_lr: the learner (None: SGD at 0.5, GaussianEra's default).
      log_std_min, log_std_max: the head's bounds (None: the library's, -8 and 0).

    The settings become ``self.era`` (a :class:`era_jax.GaussianEra`, ``mode="bounded"``).
    Logs ``train/delta`` and ``train/bounded_entropy`` (of the last update of a call) in
    place of SBX's ``ent_coef`` entries.
    """

    policy_aliases = {"MlpPolicy": SACERAPolicy}  # noqa: RUF012 (SBX's own class attribute)

    def __init__(self, policy, env, *, target_entropy="auto", bounded_policy: str = "truncnorm",
                 learn_delta: bool = True, delta=None, delta_optimizer=None, delta_lr=None, log_std_min=None,
                 log_std_max=None, **kwargs):
        if "ent_coef" in kwargs:
            raise ValueError("era_jax.sbx: SAC-ERA has no entropy coefficient (ent_coef): the head keeps the "
                             "entropy at target_entropy instead")
        _no_sde(kwargs.get("use_sde", False), "SAC-ERA")
        self.era_options = dict(policy=bounded_policy, delta=delta, lr=delta_lr, log_std_min=log_std_min,
                                log_std_max=log_std_max,
                                optimizer=delta_optimizer if learn_delta else "fixed")
        super().__init__(policy, env, ent_coef=0.0, target_entropy=target_entropy, **kwargs)

    def _setup_model(self) -> None:
        if not (isinstance(self.policy_class, type) and issubclass(self.policy_class, SACERAPolicy)):
            raise ValueError(f"era_jax.sbx: SACERA needs a SACERAPolicy (or 'MlpPolicy'), got {self.policy_class!r}")
        dim = int(np.prod(self.action_space.shape))
        h0 = -float(dim) if self.target_entropy == "auto" else float(self.target_entropy)
        self.era = GaussianEra(dim, h0, mode="bounded", **self.era_options)
        self.policy_kwargs = dict(self.policy_kwargs, era=self.era)  # a copy: SBX keeps the caller's dict
        super()._setup_model()

    def train(self, gradient_steps: int, batch_size: int) -> None:
        """SBX's jitted update (this class's critic and actor steps); logs ``train/delta``
        (after the call) and ``train/bounded_entropy`` (the last actor update's batch mean)
        in place of SBX's ``ent_coef`` entries."""
        super().train(gradient_steps, batch_size)
        values = self.logger.name_to_value
        for old in ("train/ent_coef", "train/ent_coef_loss"):
            self.logger.name_to_excluded.pop(old, None)
        del values["train/ent_coef"]  # the delta of the last critic step
        self.logger.record("train/bounded_entropy", values.pop("train/ent_coef_loss"))
        self.logger.record("train/delta", float(self.policy.actor_state.delta.delta))

    @staticmethod
    @jax.jit
    def update_critic(actor_state: EraActorState, qf_state, ent_coef_state, observations, actions,
                      next_observations, rewards, dones, discounts, key):
        """The critic's step toward ``r + gamma * min Q'(s', a')``, ``a'`` from the bounded
        policy with the current ``delta``: no entropy term. Returns SBX's tuple, with
        ``delta`` where SBX returns the entropy coefficient."""
        del ent_coef_state
        key, noise_key, dropout_key_target, dropout_key_current = jax.random.split(key, 4)
        dist = actor_state.apply_fn(actor_state.params, next_observations, actor_state.delta)
        next_actions = dist.sample(noise_key)
        next_q = qf_state.apply_fn(qf_state.target_params, next_observations, next_actions,
                                   rngs={"dropout": dropout_key_target})
        next_q = jnp.min(next_q, axis=0)
        target_q = rewards[:, None] + (1 - dones[:, None]) * discounts[:, None] * next_q

        def mse_loss(params, dropout_key):
            current_q = qf_state.apply_fn(params, observations, actions, rngs={"dropout": dropout_key})
            return 0.5 * ((target_q - current_q) ** 2).mean(axis=1).sum()

        qf_loss_value, grads = jax.value_and_grad(mse_loss)(qf_state.params, dropout_key_current)
        qf_state = qf_state.apply_gradients(grads=grads)
        return qf_state, (qf_loss_value, actor_state.delta.delta.astype(qf_loss_value.dtype)), key

    @staticmethod
    @jax.jit
    def update_actor(actor_state: EraActorState, qf_state, ent_coef_state, observations, key):
        """The actor's step on ``-min Q(s, a)`` (no entropy term), then one step of the
        ``delta`` learner (``actor_state.era.update_delta``) from the bounded policy's
        entropy on the same batch. Returns SBX's tuple, the batch-mean entropy last."""
        del ent_coef_state
        key, dropout_key, noise_key = jax.random.split(key, 3)
        era = actor_state.era

        def actor_loss(params):
            dist = actor_state.apply_fn(params, observations, actor_state.delta)
            actions, log_prob = dist.sample_and_log_prob(noise_key)
            q = qf_state.apply_fn(qf_state.params, observations, actions, rngs={"dropout": dropout_key})
            return -jnp.min(q, axis=0).mean(), _bounded_entropy(era, dist, log_prob)

        (loss, entropy), grads = jax.value_and_grad(actor_loss, has_aux=True)(actor_state.params)
        actor_state = actor_state.apply_gradients(grads=grads)
        actor_state = actor_state.replace(delta=era.update_delta(actor_state.delta, entropy))
        return actor_state, qf_state, loss, key, jnp.mean(entropy).astype(loss.dtype)

    @staticmethod
    def update_temperature(target_entropy, ent_coef_state, entropy):
        """No temperature in SAC-ERA: the state passes through, and the bounded entropy takes
        the place of SBX's temperature loss (logged as ``train/bounded_entropy``)."""
        del target_entropy
        return ent_coef_state, entropy


class EraPPOActor(nn.Module):
    """PPO-ERA's actor (continuous actions): an MLP for the mean and ``MultivariateNormalDiag``
    whose log-std is ``era.log_std(z)``, ``z`` the state-independent parameter ``log_std``
    (SBX's own, initialised at ``log_std_init``) or, with ``state_dependent_std``, a layer on
    the latent. ``era``: a :class:`era_jax.GaussianEra` (``mode="gaussian"``: a floor on the
    Gaussian, ``delta`` fixed). The keyword arguments SBX's ``PPOPolicy.build`` passes are
    accepted; features extractors and discrete actions are not."""

    action_dim: int
    net_arch: Sequence[int]
    era: GaussianEra
    state_dependent_std: bool = False
    log_std_init: float = 0.0
    activation_fn: Callable[[jnp.ndarray], jnp.ndarray] = nn.tanh
    ortho_init: bool = False
    features_extractor: Any = None
    features_dim: int = 512

    @nn.compact
    def __call__(self, x: jnp.ndarray):
        x = Flatten()(x)
        for n_units in self.net_arch:
            x = self.activation_fn(nn.Dense(n_units)(x))
        if self.ortho_init:
            mean = nn.Dense(self.action_dim, kernel_init=nn.initializers.orthogonal(scale=0.01),
                            bias_init=nn.initializers.zeros)(x)
        else:
            mean = nn.Dense(self.action_dim)(x)
        if self.state_dependent_std:
            z = nn.Dense(self.action_dim, name="log_std_net")(x)
        else:
            z = self.param("log_std", nn.initializers.constant(self.log_std_init), (self.action_dim,))
        return tfp.distributions.MultivariateNormalDiag(loc=mean, scale_diag=jnp.exp(self.era.log_std(z)))


class PPOERAPolicy(PPOPolicy):
    """SBX's ``PPOPolicy`` with :class:`EraPPOActor` (settings ``era``, state dependence
    ``state_dependent_std``; ``actor_class``: a subclass in its place, None: EraPPOActor).
    :class:`PPOERA` fills them in."""

    def __init__(self, observation_space, action_space, lr_schedule, *, era: GaussianEra,
                 state_dependent_std: bool = False, actor_class: type[EraPPOActor] = None, use_sde: bool = False,
                 **kwargs):
        _no_sde(use_sde, "PPO-ERA")
        actor_class = _actor_class(actor_class, EraPPOActor)
        if not isinstance(action_space, spaces.Box):
            raise ValueError(f"era_jax.sbx: PPO-ERA needs a continuous (Box) action space, got {action_space}")
        if kwargs.get("features_extractor_class") is not None:
            raise ValueError("era_jax.sbx: PPO-ERA's actor takes flat observations (no features extractor)")
        super().__init__(observation_space, action_space, lr_schedule,
                         actor_class=functools.partial(actor_class, era=era,
                                                       state_dependent_std=bool(state_dependent_std)),
                         **kwargs)
        self.era = era
        self.state_dependent_std = bool(state_dependent_std)


class PPOERA(PPO):
    """PPO-ERA on SBX: SBX's ``PPO`` without entropy bonus, with :class:`EraPPOActor`.

    Args (the rest are SBX ``PPO``'s, except ``ent_coef`` and ``use_sde``, which it refuses):
      target_entropy: required; the entropy floor of the Gaussian in every state, nats.
      state_dependent_std: a log-std per state instead of the state-independent parameter.
      delta: fixed compensation (None: 0).
      log_std_min, log_std_max: the head's bounds (None: the library's, -8 and 0).

    ``train/std`` is logged from the head's output (the state-independent case).
    """

    policy_aliases = {"MlpPolicy": PPOERAPolicy}  # noqa: RUF012 (SBX's own class attribute)

    def __init__(self, policy, env, *, target_entropy=None, state_dependent_std: bool = False, delta=None,
                 log_std_min=None, log_std_max=None, _init_setup_model: bool = True, **kwargs):
        if "ent_coef" in kwargs:
            raise ValueError("era_jax.sbx: PPO-ERA has no entropy bonus (ent_coef): the head keeps the "
                             "entropy at or above target_entropy instead")
        _no_sde(kwargs.get("use_sde", False), "PPO-ERA")
        if target_entropy is None and _init_setup_model:
            raise ValueError("era_jax.sbx: PPOERA needs target_entropy, the floor on the Gaussian's entropy "
                             "in every state (nats)")
        self.target_entropy = target_entropy
        self.state_dependent_std = bool(state_dependent_std)
        self.era_options = dict(delta=delta, log_std_min=log_std_min, log_std_max=log_std_max)
        super().__init__(policy, env, ent_coef=0.0, _init_setup_model=_init_setup_model, **kwargs)

    def _setup_model(self) -> None:
        if not (isinstance(self.policy_class, type) and issubclass(self.policy_class, PPOERAPolicy)):
            raise ValueError(f"era_jax.sbx: PPOERA needs a PPOERAPolicy (or 'MlpPolicy'), got {self.policy_class!r}")
        if not isinstance(self.action_space, spaces.Box):
            raise ValueError(f"era_jax.sbx: PPO-ERA needs a continuous (Box) action space, got {self.action_space}")
        if not hasattr(self, "policy") or self.policy is None:
            dim = int(np.prod(self.action_space.shape))
            self.era = GaussianEra(dim, float(self.target_entropy), mode="gaussian", **self.era_options)
            self.policy_kwargs = dict(self.policy_kwargs, era=self.era, state_dependent_std=self.state_dependent_std)
        super()._setup_model()

    def train(self) -> None:
        """SBX's PPO update (its entropy term multiplied by ``ent_coef = 0``), then ``train/std``
        from the head's output where the log-std is state-independent."""
        super().train()
        if not self.state_dependent_std:
            z = self.policy.actor_state.params["params"]["log_std"]
            self.logger.record("train/std", float(jnp.exp(self.era.log_std(z)).mean()))
