"""One settings object for the Gaussian head and its ``delta``: :class:`GaussianEra`.

The head (:func:`era_jax.gaussian_log_std`) and the learner
(:func:`era_jax.delta_update`) take the same settings (dimension, target
entropy, log-std bounds); passed separately, a mismatch goes unnoticed.
``GaussianEra`` holds them once, says which of the two ways of using ERA they
describe (``mode``), and computes the log-stds, the initial ``delta`` and the
learner step from them. It is a frozen, hashable dataclass: a static field of
a Flax module, a static argument of ``jax.jit``, a closure constant.

Two modes (docs/math.md#bounded-policies, #delta-learning):

``mode="gaussian"`` -- a floor on the Gaussian, before any bounding.
    ``target_entropy`` is the entropy the *Gaussian* ``N(mean, exp(log_std)^2)``
    has at least, in every state; ``delta`` is fixed (default 0) and
    :meth:`update_delta` changes nothing. This is the paper's setting
    (``target_entropy = 0.25 * dim``, the official SAC-ERA configuration). The
    policy that acts (tanh-squashed or truncated to [-1, 1]) has less entropy
    than the Gaussian, by a gap that depends on the state, and nothing holds
    it at a particular value. Pick it to reproduce the paper, or when a hard
    per-state floor on the Gaussian is what you want.

``mode="bounded"`` -- a target for the bounded policy, with a learned ``delta``.
    ``target_entropy`` is the batch-mean entropy the *bounded* policy should
    have (SAC's usual ``-dim``). The head guarantees ``H0 + delta`` on the
    Gaussian, and ``delta`` is learned (:meth:`update_delta`) so that the
    bounded policy's measured entropy meets ``H0``: the truncated normal's
    closed form (:meth:`era_jax.policies.TruncatedNormal.entropy`) or the
    tanh-Gaussian's estimate ``-mean(log_prob)``
    (:meth:`era_jax.policies.TanhGaussian.entropy_estimate`). Pick it when you
    think of the target as SAC's target entropy for the policy that acts (a
    drop-in for SAC's temperature), as ``examples/jax/sac_era.py`` does. Use it
    with the truncated normal: a tanh-Gaussian's gap is unbounded (its mean can
    saturate), and ``delta`` may hit its feasibility limit without closing it.

Defaults: the log-std bounds and Adam's hyperparameters are the library's
(``era_config_default``, -8 and 0). The learner is not: for ``mode="bounded"``
it is SGD at rate 0.5 (see :meth:`update_delta`), for ``mode="gaussian"`` it is
``"fixed"``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings

import jax
import jax.numpy as jnp

from . import _native as native
from ._defaults import GAUSSIAN, OPTIMIZERS, pick
from ._gaussian_mask import gaussian_log_std_masked
from ._ops import _static_float, _static_int
from ._small_heads import gaussian_log_std
from .delta import DeltaState, delta_init, max_delta

__all__ = ["GaussianEra", "MODES", "POLICIES", "truncation_gap_bound"]

MODES = ("gaussian", "bounded")
POLICIES = ("truncnorm", "tanh")

#: The warning :class:`GaussianEra` gives for ``dim == 1`` (docs/math.md#gaussian-forward).
ONE_DIM_WARNING = (
    "era_jax: GaussianEra with dim=1: the head outputs the same log-std for every input, "
    "max(target_entropy + delta - 0.5*ln(2*pi*e), log_std_min), and passes no gradient to z "
    "(the softmax over one dimension is 1): the network cannot change the std. If a std fixed "
    "by the target (and a learned delta) is what you want, this is it; for a state-dependent std "
    "with the same entropy floor, bound the log-std below yourself "
    "(log_std = floor + jax.nn.softplus(z), floor = target_entropy + delta - 0.5*ln(2*pi*e)); "
    "the head is for action dimensions >= 2."
)

#: The learner ``mode="bounded"`` uses unless told otherwise (see GaussianEra.update_delta).
BOUNDED_OPTIMIZER = "sgd"
BOUNDED_LR = 0.5


@functools.lru_cache(maxsize=1024)
def truncation_gap_bound(log_std_max: float, low: float = -1.0, high: float = 1.0) -> float:
    """The most entropy, per dimension, that truncating ``N(loc, exp(log_std)^2)`` to
    ``[low, high]`` removes, over every ``loc`` in ``[low, high]`` and every
    ``log_std <= log_std_max``: the gap with ``loc`` at a bound and the std at its
    upper bound (the gap grows with the std and with the distance of ``loc`` from the
    interval's middle). Computed from the library's closed forms
    (``era_gaussian_entropy``, ``era_truncated_normal_entropy``) in float64: ln 2 for a
    tiny std, 0.853 at std 1 on [-1, 1], 2.73 at std e^2."""
    native.validate_truncation(float(low), float(high))
    if not math.isfinite(low) or not math.isfinite(high):
        raise ValueError("era_jax: the truncation gap bound needs a finite interval")
    h_normal = native.gaussian_entropy_f64(float(log_std_max))
    h_tn = native.truncated_normal_entropy_f64(float(high), float(log_std_max), float(low), float(high))
    return h_normal - h_tn


@dataclasses.dataclass(frozen=True)
class GaussianEra:
    """The settings of one ERA Gaussian head and its ``delta`` (module docstring: the two modes).

    Args:
      dim: the action dimension ``D`` (the last axis of the head's input).
      target_entropy: ``H0`` in nats, total over the ``D`` dimensions: the Gaussian's
        floor (``mode="gaussian"``, paper: ``0.25 * dim``) or the bounded policy's
        target (``mode="bounded"``, SAC: ``-dim``).
      log_std_min, log_std_max: the log-std bounds (None: the library's, -8 and 0;
        0 is the official SAC-ERA value: under truncation to [-1, 1] a larger std
        buys almost no entropy).
      mode: ``"gaussian"`` or ``"bounded"``; required.
      policy: the bounded policy, ``"truncnorm"`` (the official code's, default) or
        ``"tanh"``; sets the initial ``delta`` and :meth:`distribution`.
      low, high: the truncated normal's interval (default [-1, 1]).
      delta: the initial ``delta`` (``mode="bounded"``) or the fixed one
        (``mode="gaussian"``); None: see :attr:`initial_delta`.
      optimizer, lr: the learner, ``"sgd"``, ``"adam"`` or ``"fixed"`` (None: SGD at
        0.5 for ``"bounded"``; ``"fixed"`` for ``"gaussian"``; Adam's ``lr`` None: the
        library's 3e-4).
      beta1, beta2, eps: Adam's (None: the library's).

    With ``dim == 1`` the head's output is a constant (docs/math.md#gaussian-forward):
    construction warns (``UserWarning``, :data:`ONE_DIM_WARNING`) and says what to use instead.

    Every field is resolved at construction (``repr`` shows the values in use), the
    configuration is validated by the library (:class:`era_jax.EraError`), and two
    equal settings compare and hash equal.
    """

    dim: int
    target_entropy: float
    log_std_min: float | None = None
    log_std_max: float | None = None
    mode: str | None = None
    policy: str = "truncnorm"
    low: float = -1.0
    high: float = 1.0
    delta: float | None = None
    optimizer: str | None = None
    lr: float | None = None
    beta1: float | None = None
    beta2: float | None = None
    eps: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(
                f"era_jax: GaussianEra needs mode='gaussian' (target_entropy is a floor on the Gaussian, "
                f"delta fixed; the paper's 0.25*dim) or mode='bounded' (target_entropy is the bounded "
                f"policy's, delta learned; SAC's -dim), got {self.mode!r}"
            )
        if self.policy not in POLICIES:
            raise ValueError(f"era_jax: policy must be one of {POLICIES}, got {self.policy!r}")
        bounded = self.mode == "bounded"
        optimizer = pick(self.optimizer, BOUNDED_OPTIMIZER if bounded else "fixed")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"era_jax: optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
        default_lr = BOUNDED_LR if optimizer == "sgd" else GAUSSIAN.lr
        values = dict(
            dim=_static_int(self.dim, "dim"),
            target_entropy=_static_float(self.target_entropy, "target_entropy"),
            log_std_min=_static_float(pick(self.log_std_min, GAUSSIAN.log_std_min), "log_std_min"),
            log_std_max=_static_float(pick(self.log_std_max, GAUSSIAN.log_std_max), "log_std_max"),
            low=_static_float(self.low, "low"),
            high=_static_float(self.high, "high"),
            delta=None if self.delta is None else _static_float(self.delta, "delta"),
            optimizer=optimizer,
            lr=_static_float(pick(self.lr, default_lr), "lr"),
            beta1=_static_float(pick(self.beta1, GAUSSIAN.beta1), "beta1"),
            beta2=_static_float(pick(self.beta2, GAUSSIAN.beta2), "beta2"),
            eps=_static_float(pick(self.eps, GAUSSIAN.eps), "eps"),
        )
        for name, value in values.items():
            object.__setattr__(self, name, value)
        native.validate_config(
            native.ERA_HEAD_KIND_GAUSSIAN,
            (
                ("dim", self.dim),
                ("target_entropy", self.target_entropy),
                ("log_std_min", self.log_std_min),
                ("log_std_max", self.log_std_max),
                # the Gaussian floor with its fixed delta must be feasible as given; a learned
                # delta starts capped at the feasible maximum (initial_delta)
                ("delta", pick(self.delta, GAUSSIAN.delta) if self.mode == "gaussian"
                 else native.gaussian_probe_delta(self.dim, self.target_entropy, self.log_std_max)),
                ("delta_optimizer", OPTIMIZERS[self.optimizer]),
                ("delta_lr", self.lr),
                ("delta_beta1", self.beta1),
                ("delta_beta2", self.beta2),
                ("delta_eps", self.eps),
            ),
        )
        if self.policy == "truncnorm":
            native.validate_truncation(self.low, self.high)
        if self.dim == 1:
            warnings.warn(ONE_DIM_WARNING, UserWarning, stacklevel=3)  # through the dataclass __init__

    # ------------------------------------------------------------------ delta

    @property
    def max_delta(self) -> float:
        """The largest feasible ``delta``: ``dim*(log_std_max + 0.5*ln(2*pi*e)) - target_entropy``
        (rounded down, :func:`era_jax.max_delta`)."""
        return max_delta(target_entropy=self.target_entropy, dim=self.dim, log_std_max=self.log_std_max)

    @property
    def initial_delta(self) -> float:
        """The ``delta`` :meth:`init_delta` starts from: the ``delta`` field if given; else

        - ``mode="bounded"``, ``policy="truncnorm"``: the safe start,
          ``dim * truncation_gap_bound(log_std_max, low, high)`` (0.853 nats per dimension
          for bounds [-8, 0] on [-1, 1]): truncation removes at most that much entropy
          from a Gaussian whose location lies in ``[low, high]``, so every state's
          bounded entropy starts at or above ``target_entropy``, whatever the
          network's initial output;
        - ``mode="bounded"``, ``policy="tanh"``: 0 (the library's default; a
          tanh-Gaussian's gap has no bound, so there is no safe start);
        - ``mode="gaussian"``: the library's default, 0 (the paper's fixed delta).

        In ``mode="bounded"`` capped at :attr:`max_delta` (the widest Gaussian the bounds
        allow); in ``mode="gaussian"`` an infeasible floor is an error at construction."""
        if self.delta is not None:
            d = self.delta
        elif self.mode == "bounded" and self.policy == "truncnorm":
            d = self.dim * truncation_gap_bound(self.log_std_max, self.low, self.high)
        else:
            d = float(GAUSSIAN.delta)
        return min(d, self.max_delta) if self.mode == "bounded" else d

    def init_delta(self, dtype=None) -> DeltaState:
        """A fresh learner state at :attr:`initial_delta` (float32, or float64 in x64
        mode, unless ``dtype`` says otherwise). In ``mode="bounded"`` capped at
        :attr:`max_delta` rounded down in that dtype, as the learner caps it: a start at the
        feasible maximum (an unreachable target) does not round above it in float32."""
        d = self.initial_delta
        if self.mode == "bounded":
            dt = jnp.dtype(dtype) if dtype is not None else jnp.result_type(float)
            d = min(d, max_delta(target_entropy=self.target_entropy, dim=self.dim, log_std_max=self.log_std_max,
                                 dtype=dt))
        return delta_init(d, dtype=dtype)

    def update_delta(self, state: DeltaState, bounded_entropy) -> DeltaState:
        """One learner step (docs/math.md#delta-learning) from the bounded policy's
        entropy: per state (``[batch]``, averaged here) or already the batch mean.
        Jit-able; ``bounded_entropy`` is traced, the settings are static.

        The default learner of ``mode="bounded"`` is SGD at rate 0.5, the one that
        held the truncated normal's batch-mean entropy at its target within about
        0.1 nats in ``examples/jax`` (RESULTS.md). Why: ``delta`` and its gradient
        (``mean entropy - target``) are both in nats, so SGD moves ``delta`` by a
        fixed fraction of the deficit, an integral controller; the bounded entropy
        rises by 0 to 1 nat per nat of ``delta``, so every rate below 2 is stable and
        0.5 closes half the deficit per update. Adam moves about its rate per update
        whatever the deficit: at SAC's 3e-4 (the library's default) it lagged the
        gap by some 20k updates. ``mode="gaussian"`` keeps ``delta`` fixed (a no-op)
        unless an ``optimizer`` is given.

        A non-finite entropy leaves the state unchanged; the new ``delta`` is capped at
        :attr:`max_delta`."""
        h = jnp.asarray(bounded_entropy)
        if h.ndim:
            h = jnp.mean(h)
        if self.optimizer == "fixed":
            return state
        return _step(state, h, self)

    # ------------------------------------------------------------------ head and policy

    def log_std(self, z, delta=None, mask=None, fill=None):
        """The head: log-stds ``[..., dim]`` whose Gaussian has entropy at least
        ``target_entropy + delta`` in every row (:func:`era_jax.gaussian_log_std`).
        ``delta``: a :class:`era_jax.DeltaState`, a scalar or one value per row
        (traced, differentiable); None: :attr:`initial_delta` (the fixed delta of
        ``mode="gaussian"``). With ``mask`` (1/True active, 0/False inactive, broadcastable
        to ``z``): the head over each row's ``a`` active coordinates with the floor
        ``(a/dim)*(target_entropy + delta)``, and ``fill`` (None: ``z``) at the inactive ones
        (:func:`era_jax.gaussian_log_std_masked`, docs/math.md#gaussian-mask)."""
        z = jnp.asarray(z)
        if z.ndim < 1 or z.shape[-1] != self.dim:
            raise ValueError(
                f"era_jax: the head's input has shape {tuple(z.shape)}, but these settings are for dim={self.dim} "
                "(the last axis)"
            )
        if isinstance(delta, DeltaState):
            delta = delta.delta
        if delta is None:
            delta = self.initial_delta
        if mask is not None:
            return gaussian_log_std_masked(z, mask, target_entropy=self.target_entropy, log_std_min=self.log_std_min,
                                           log_std_max=self.log_std_max, delta=delta, fill=fill)
        return gaussian_log_std(z, target_entropy=self.target_entropy, log_std_min=self.log_std_min,
                                log_std_max=self.log_std_max, delta=delta)

    def distribution(self, mean, z, delta=None):
        """The bounded policy of these settings from the network's two outputs:
        ``TruncatedNormal(loc, log_std, low, high)`` with ``loc`` the interval's middle
        plus half its width times ``tanh(mean)`` (``tanh(mean)`` on [-1, 1], as in the
        official code), or ``TanhGaussian(mean, log_std)``; ``log_std = self.log_std(z, delta)``."""
        from .policies import TanhGaussian, TruncatedNormal  # noqa: PLC0415

        log_std = self.log_std(z, delta)
        mean = jnp.asarray(mean)
        if self.policy == "tanh":
            return TanhGaussian(mean, log_std)
        mid, half = 0.5 * (self.low + self.high), 0.5 * (self.high - self.low)
        loc = jnp.tanh(mean) if (mid, half) == (0.0, 1.0) else mid + half * jnp.tanh(mean)
        return TruncatedNormal(loc, log_std, low=self.low, high=self.high)


def _step(state: DeltaState, h, s: GaussianEra) -> DeltaState:
    """The learner rule of the library (``delta_step`` in src/heads/gaussian.rs) for SGD and Adam."""
    dtype = state.delta.dtype
    bound = jnp.asarray(max_delta(target_entropy=s.target_entropy, dim=s.dim, log_std_max=s.log_std_max,
                                  dtype=dtype), dtype)
    h = jnp.asarray(h).astype(dtype)
    grad = h - jnp.asarray(s.target_entropy, dtype)
    if s.optimizer == "sgd":
        new = state._replace(delta=state.delta - s.lr * grad)
    else:
        b1, b2 = s.beta1, s.beta2
        t = state.adam_t + 1
        m = b1 * state.adam_m + (1.0 - b1) * grad
        v = b2 * state.adam_v + (1.0 - b2) * grad * grad
        tf = t.astype(dtype)
        mhat = m / (1.0 - jnp.asarray(b1, dtype) ** tf)
        vhat = v / (1.0 - jnp.asarray(b2, dtype) ** tf)
        new = DeltaState(state.delta - s.lr * mhat / (jnp.sqrt(vhat) + s.eps), m, v, t)
    new = new._replace(delta=jnp.minimum(new.delta, bound))
    ok = jnp.isfinite(h)
    return jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, state)

