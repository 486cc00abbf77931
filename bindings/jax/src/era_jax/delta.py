"""The ``delta`` learner (docs/math.md#delta-learning) as pure functions for a jitted train step.

This is the one piece of era_jax written in ``jax.numpy`` rather than a call
into the era library: it is a scalar optimiser (a handful of flops per train
step), and a native call would need the state to round-trip through the C
ABI's mutable head. It mirrors the library's learner rule exactly
(``delta_step`` in src/heads/gaussian.rs, ``era_head_update_delta``):

    grad  = mean_entropy - target_entropy
    SGD:    delta -= lr * grad
    Adam:   t += 1; m = b1*m + (1-b1)*grad; v = b2*v + (1-b2)*grad^2
            delta -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
    then    delta = min(delta, D*(log_std_max + 0.5*ln(2*pi*e)) - target_entropy)

The configuration is validated by the library (``era_head_new``), and the
tests compare trajectories against ``era_head_update_delta``. Two deliberate
details: the clamp bound is rounded down so that ``target_entropy + delta``
never exceeds the widest Gaussian after rounding (in the state's dtype), so a
clamped ``delta`` is always accepted by :func:`era_jax.gaussian_log_std`; and a
non-finite ``mean_entropy`` leaves the state unchanged (the library rejects it
with an error; inside ``jit`` there is no error to raise).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _native as native
from ._defaults import GAUSSIAN, pick

__all__ = ["DeltaState", "delta_init", "delta_update", "max_delta"]


class DeltaState(NamedTuple):
    """The learner state: ``delta`` and Adam's moments (all 0-d arrays)."""

    delta: jax.Array
    adam_m: jax.Array
    adam_v: jax.Array
    adam_t: jax.Array  # int32 step count


def delta_init(delta=None, *, dtype=None) -> DeltaState:
    """A fresh learner state with the given initial ``delta`` (None: the
    library's default, 0), float32, or float64 in x64 mode, unless ``dtype``
    says otherwise."""
    dtype = jnp.dtype(dtype) if dtype is not None else jnp.result_type(float)
    d = jnp.asarray(pick(delta, GAUSSIAN.delta), dtype=dtype)
    if d.ndim != 0:
        raise ValueError(f"era_jax: delta must be a scalar, got shape {d.shape}")
    z = jnp.zeros((), dtype)
    return DeltaState(d, z, z, jnp.zeros((), jnp.int32))


def max_delta(*, target_entropy, dim, log_std_max=None, dtype=np.float64) -> float:
    """The largest feasible ``delta``, ``D*(log_std_max + 0.5*ln(2*pi*e)) - H0``,
    rounded down (in ``dtype``) so that ``H0 + delta`` stays feasible in float64.
    ``log_std_max`` None: the library's default."""
    h0 = float(target_entropy)
    hi = float(pick(log_std_max, GAUSSIAN.log_std_max))
    widest = float(dim) * (hi + 0.5 * native.ERA_LN_2PI_E)
    bound = widest - h0
    while h0 + bound > widest:
        bound = float(np.nextafter(bound, -np.inf))
    dt = np.dtype(dtype)
    b = dt.type(bound)
    while float(b) > bound:
        b = np.nextafter(b, dt.type(-np.inf))
    return float(b)


def delta_update(
    state: DeltaState,
    mean_entropy,
    *,
    target_entropy,
    dim,
    log_std_min=None,
    log_std_max=None,
    optimizer=None,
    lr=None,
    beta1=None,
    beta2=None,
    eps=None,
) -> DeltaState:
    """One learner step from the batch-mean entropy of the agent's bounded
    policy (e.g. :func:`era_jax.truncated_normal_entropy` averaged over the
    batch). Jit-able; ``mean_entropy`` may be traced, the configuration is static.

    ``optimizer`` is "adam", "sgd" or "fixed" (no change). Every configuration
    value left None takes the library's default (``era_config_default`` of a
    Gaussian head: Adam, lr 3e-4; see ``era_jax._defaults.GAUSSIAN``).

    Prefer :class:`era_jax.GaussianEra`: it holds the settings the head and this
    learner must share (``dim``, ``target_entropy``, bounds) once, and its
    learner defaults to SGD at rate 0.5, which holds a truncated normal's entropy
    at its target; Adam at 3e-4 lags a fast-moving gap by thousands of steps
    (``GaussianEra.update_delta`` says why). This function is
    ``GaussianEra(dim, target_entropy, ..., mode="bounded", optimizer=...,
    lr=...).update_delta(state, mean_entropy)`` with the library's learner
    defaults.
    """
    from .gaussian_era import GaussianEra  # noqa: PLC0415 (gaussian_era imports this module)

    settings = GaussianEra(
        dim,
        target_entropy,
        log_std_min=log_std_min,
        log_std_max=log_std_max,
        mode="bounded",
        optimizer=pick(optimizer, GAUSSIAN.optimizer),
        lr=pick(lr, GAUSSIAN.lr),
        beta1=beta1,
        beta2=beta2,
        eps=eps,
    )
    return settings.update_delta(state, mean_entropy)
