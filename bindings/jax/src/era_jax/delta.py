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
from ._defaults import GAUSSIAN, OPTIMIZERS, pick
from ._ops import _static_float, _static_int

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
    Gaussian head: Adam with its usual hyperparameters; see
    ``era_jax._defaults.GAUSSIAN``).
    """
    h0 = _static_float(target_entropy, "target_entropy")
    d = _static_int(dim, "dim")
    lo = _static_float(pick(log_std_min, GAUSSIAN.log_std_min), "log_std_min")
    hi = _static_float(pick(log_std_max, GAUSSIAN.log_std_max), "log_std_max")
    lr_ = _static_float(pick(lr, GAUSSIAN.lr), "lr")
    b1 = _static_float(pick(beta1, GAUSSIAN.beta1), "beta1")
    b2 = _static_float(pick(beta2, GAUSSIAN.beta2), "beta2")
    ep = _static_float(pick(eps, GAUSSIAN.eps), "eps")
    optimizer = pick(optimizer, GAUSSIAN.optimizer)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"era_jax: optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
    native.validate_config(
        native.ERA_HEAD_KIND_GAUSSIAN,
        (
            ("dim", d),
            ("target_entropy", h0),
            ("log_std_min", lo),
            ("log_std_max", hi),
            ("delta", native.gaussian_probe_delta(d, h0, hi)),
            ("delta_optimizer", OPTIMIZERS[optimizer]),
            ("delta_lr", lr_),
            ("delta_beta1", b1),
            ("delta_beta2", b2),
            ("delta_eps", ep),
        ),
    )
    if optimizer == "fixed":
        return state
    dtype = state.delta.dtype
    bound = jnp.asarray(max_delta(target_entropy=h0, dim=d, log_std_max=hi, dtype=dtype), dtype)
    h = jnp.asarray(mean_entropy).astype(dtype)
    grad = h - jnp.asarray(h0, dtype)
    if optimizer == "sgd":
        new = state._replace(delta=state.delta - lr_ * grad)
    else:
        t = state.adam_t + 1
        m = b1 * state.adam_m + (1.0 - b1) * grad
        v = b2 * state.adam_v + (1.0 - b2) * grad * grad
        tf = t.astype(dtype)
        mhat = m / (1.0 - jnp.asarray(b1, dtype) ** tf)
        vhat = v / (1.0 - jnp.asarray(b2, dtype) ** tf)
        new = DeltaState(state.delta - lr_ * mhat / (jnp.sqrt(vhat) + ep), m, v, t)
    new = new._replace(delta=jnp.minimum(new.delta, bound))
    ok = jnp.isfinite(h)
    return jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, state)
