"""The Gaussian head under a per-row active-dimension mask (docs/math.md#gaussian-mask):
the XLA FFI targets ``era_gaussian_masked_fwd`` / ``era_gaussian_masked_bwd``
(csrc/gaussian_mask.inc, over ``era_gaussian_forward_masked`` / ``era_gaussian_backward_masked``)
with a ``custom_vjp`` (the library's backward, d/d delta included) and batching rules
(``custom_vmap``), built like the unmasked head in ``_ops.py`` on its helpers. No math here.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from . import _compat
from . import _native as native
from ._defaults import GAUSSIAN, pick
from ._ops import _bcast, _concrete, _float_array, _like, _out, _static_float

__all__ = ["gaussian_log_std_masked"]

_FWD = native.target("era_gaussian_masked_fwd")
_BWD = native.target("era_gaussian_masked_bwd")


def _per_row(delta, batched: bool, rows):
    """A (batched) delta as one value per row of the batched ``z`` (``rows``: its shape
    without the last axis)."""
    if batched:
        delta = jnp.reshape(delta, delta.shape + (1,) * (len(rows) - delta.ndim))
    return jnp.broadcast_to(delta, rows)


@functools.lru_cache(maxsize=None)
def _masked_fn(h0: float, lo: float, hi: float, fill):
    attrs = dict(
        target_entropy=np.float64(h0),
        log_std_min=np.float64(lo),
        log_std_max=np.float64(hi),
        fill=np.float64(0.0 if fill is None else fill),
        pass_through=np.int64(1 if fill is None else 0),
    )

    @_compat.custom_vmap
    def fwd_call(z, mask, delta):
        return _compat.ffi_call(_FWD, _out(z.shape, z.dtype, z), z, mask, delta, **attrs)

    @fwd_call.def_vmap
    def _fwd_rule(axis_size, in_batched, z, mask, delta):
        zb, mb, db = in_batched
        z, mask = _bcast(z, zb, axis_size), _bcast(mask, mb, axis_size)
        if db or delta.ndim:
            delta = _per_row(delta, db, z.shape[:-1])
        return fwd_call(z, mask, delta), True

    @_compat.custom_vmap
    def bwd_call(z, mask, delta, g):
        return tuple(
            _compat.ffi_call(
                _BWD, (_out(z.shape, z.dtype, z), _out(delta.shape, delta.dtype, z)), z, mask, delta, g, **attrs
            )
        )

    @bwd_call.def_vmap
    def _bwd_rule(axis_size, in_batched, z, mask, delta, g):
        zb, mb, db, gb = in_batched
        z, mask, g = _bcast(z, zb, axis_size), _bcast(mask, mb, axis_size), _bcast(g, gb, axis_size)
        per_row = (delta.ndim - (1 if db else 0)) > 0
        # every instance needs its own d/d delta: per row, then the sum over each instance's rows
        gz, gd = bwd_call(z, mask, _per_row(delta, db, z.shape[:-1]), g)
        if not per_row:
            gd = jnp.sum(jnp.reshape(gd, (axis_size, -1)), axis=1)
        return (gz, gd), (True, True)

    def primal(z, mask, delta):
        return _like(fwd_call(z, mask, delta), z)

    @jax.custom_vjp
    def op(z, mask, delta):
        return primal(z, mask, delta)

    def op_fwd(z, mask, delta):
        return primal(z, mask, delta), (z, mask, delta)

    def op_bwd(res, g):
        z, mask, delta = res
        gz, gd = bwd_call(z, mask, delta, g.astype(z.dtype))
        return _like(gz, z), jnp.zeros_like(mask), _like(gd, delta)

    op.defvjp(op_fwd, op_bwd)
    return op


def gaussian_log_std_masked(z, mask, *, target_entropy, log_std_min=None, log_std_max=None, delta=None,
                            fill=None):
    """ERA Gaussian head with a per-row active-dimension mask (docs/math.md#gaussian-mask).

    Each row's ``a`` active coordinates get the head of dimension ``a`` with target
    ``(a/D)*(target_entropy + delta)``; a mask of ones gives :func:`era_jax.gaussian_log_std`'s
    result exactly.

    Args:
      z: raw log-std pre-activations ``[..., D]``, float32 or float64.
      mask: True/1 for active, False/0 for inactive coordinates, any bool or numeric dtype,
        broadcastable to ``z`` (e.g. one row per task, indexed by each row's task). Not
        differentiated (its cotangent is zero).
      target_entropy: ``H0`` of the whole D-dimensional Gaussian (static).
      log_std_min, log_std_max: the bounds (static; None: the library's defaults).
      delta: a traced scalar or one value per row (``z.shape[:-1]``); differentiable.
      fill: the value of inactive coordinates (static; gradient 0); None passes ``z`` through
        there (gradient passed through).

    Raises:
      EraError with era's message for an invalid configuration (for a concrete ``delta``
      its feasibility), a mask entry other than 0 or 1 (when the computation runs);
      TypeError/ValueError for dtypes and shapes.
    """
    native.register_targets()
    z = _float_array(z, "z")
    h0 = _static_float(target_entropy, "target_entropy")
    lo = _static_float(pick(log_std_min, GAUSSIAN.log_std_min), "log_std_min")
    hi = _static_float(pick(log_std_max, GAUSSIAN.log_std_max), "log_std_max")
    fill = None if fill is None else _static_float(fill, "fill")
    delta = pick(delta, GAUSSIAN.delta)
    dim = int(z.shape[-1])
    known = _concrete(delta)
    if known is not None and known.size:
        probe = float(np.max(known)) if not np.isnan(known).any() else float("nan")
    else:
        probe = native.gaussian_probe_delta(dim, h0, hi)
    native.validate_config(
        native.ERA_HEAD_KIND_GAUSSIAN,
        (("dim", dim), ("target_entropy", h0), ("log_std_min", lo), ("log_std_max", hi), ("delta", probe)),
    )
    delta = jnp.asarray(delta)
    if not jnp.issubdtype(delta.dtype, jnp.floating) and not jnp.issubdtype(delta.dtype, jnp.integer):
        raise TypeError(f"era_jax: delta must be a real number or array, got dtype {delta.dtype}")
    delta = delta.astype(z.dtype)
    if delta.ndim and tuple(delta.shape) != tuple(z.shape[:-1]):
        raise ValueError(
            f"era_jax: delta has shape {tuple(delta.shape)}; expected a scalar or one value per row, "
            f"shape {tuple(z.shape[:-1])}"
        )
    mask = jnp.asarray(mask)
    try:
        mask = jnp.broadcast_to(mask, z.shape)
    except ValueError as e:
        raise ValueError(f"era_jax: mask of shape {tuple(mask.shape)} does not broadcast to z's {tuple(z.shape)}") from e
    mask = jax.lax.stop_gradient(mask.astype(z.dtype))
    z, mask, delta = _compat.match_vma(z, mask, delta)
    return _masked_fn(h0, lo, hi, fill)(z, mask, delta)
