"""The Gaussian and softmax heads (docs/math.md#gaussian-head, #softmax-head): their
``custom_vjp`` (the library's backward; the Gaussian head's d/d delta included) and batching
rules (``custom_vmap``), built on the helpers of ``_ops.py``. No math here.

The backward's residuals (docs/math.md#saved-softmax): on the CPU the forward is
``era_gaussian_fwd_saved`` / ``era_softmax_fwd_saved``, which also returns ``softmax(z)``
(the softmax head's also ``dw/dh``), and the backward (``era_gaussian_bwd_saved`` /
``era_softmax_bwd_saved``) starts from them, so forward and backward compute each
exponential once (and the softmax head each logarithm and square root once). The era
functions behind those targets take host memory only: on other platforms (CUDA) the residual
is ``z`` itself and the backward is ``era_gaussian_bwd`` / ``era_softmax_bwd``, which
computes ``softmax(z)`` again. ``jax.lax.platform_dependent`` picks the branch when the
computation is lowered; the residuals have the shape and dtype of ``z`` on both (the softmax
head's are a pair on both: ``z`` twice on other platforms).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from . import _compat
from . import _native as native
from ._defaults import GAUSSIAN, SOFTMAX, pick
from ._ops import _bcast, _concrete, _float_array, _like, _out, _static_float

__all__ = ["gaussian_log_std", "softmax_logits"]

# The XLA FFI targets called here, by the names of the native library's target
# table (csrc/era_jax.cc); a name the library lacks fails at import. The *_SAVED
# targets have CPU handlers only (ERA_JAX_CPU_OPS).
_GAUSSIAN_FWD = native.target("era_gaussian_fwd")
_GAUSSIAN_BWD = native.target("era_gaussian_bwd")
_GAUSSIAN_FWD_SAVED = native.target("era_gaussian_fwd_saved")
_GAUSSIAN_BWD_SAVED = native.target("era_gaussian_bwd_saved")
_SOFTMAX_FWD = native.target("era_softmax_fwd")
_SOFTMAX_BWD = native.target("era_softmax_bwd")
_SOFTMAX_FWD_SAVED = native.target("era_softmax_fwd_saved")
_SOFTMAX_BWD_SAVED = native.target("era_softmax_bwd_saved")


def _flat_out(x):
    """The result type of a *_SAVED target's output with the elements of ``x``, declared flat
    (one axis); its handler describes it to the library with ``x``'s shape, and the caller
    reshapes it to that shape (a bitcast, no copy). On XLA:CPU an elementwise operation left
    alone on a custom call's result with rows of a few values copies each row through a stack
    buffer; on a flat result, reshaped, it does not (BENCHMARKS.md, "The lone product")."""
    return _out((x.size,), x.dtype, x)


# --------------------------------------------------------------- Gaussian head


def _fold_delta_fwd(axis_size, in_batched, z, delta):
    """The forward's operands with the vmapped axis folded into the batch: a batched
    ``delta`` (one per instance, scalar or per row) becomes one value per row."""
    zb, db = in_batched
    z = _bcast(z, zb, axis_size)
    rows = z.shape[:-1]
    if db:  # one delta per instance (scalar or per row): make it per row
        delta = jnp.reshape(delta, delta.shape + (1,) * (len(rows) - delta.ndim))
        delta = jnp.broadcast_to(delta, rows)
    elif delta.ndim:  # per-row delta shared by the instances
        delta = jnp.broadcast_to(delta, rows)
    return z, delta


def _gaussian_bwd_call(target: str, attrs: dict, flat: bool = False):
    """The backward through ``target`` (``era_gaussian_bwd``, whose first operand is ``z``,
    or ``era_gaussian_bwd_saved``, whose first operand is ``softmax(z)``), with its batching rule.
    ``flat``: the gradient is declared flat (``_flat_out``; the *_SAVED target)."""

    @_compat.custom_vmap
    def bwd_call(r, delta, g):
        gz_type = _flat_out(r) if flat else _out(r.shape, r.dtype, r)
        gz, gd = _compat.ffi_call(target, (gz_type, _out(delta.shape, delta.dtype, r)), r, delta, g, **attrs)
        return gz.reshape(r.shape), gd

    @bwd_call.def_vmap
    def _bwd_rule(axis_size, in_batched, r, delta, g):
        rb, db, gb = in_batched
        r = _bcast(r, rb, axis_size)
        g = _bcast(g, gb, axis_size)
        rows = r.shape[:-1]
        per_row = (delta.ndim - (1 if db else 0)) > 0
        # every instance needs its own d/d delta: compute per row, then sum each instance's rows
        d = jnp.reshape(delta, delta.shape + (1,) * (len(rows) - delta.ndim)) if db else delta
        d = jnp.broadcast_to(d, rows)
        gz, gd = bwd_call(r, d, g)
        if not per_row:
            gd = jnp.sum(jnp.reshape(gd, (axis_size, -1)), axis=1)
        return (gz, gd), (True, True)

    return bwd_call


@functools.lru_cache(maxsize=None)
def _gaussian_fn(h0: float, lo: float, hi: float, save_softmax: bool = True):
    """The head's ``custom_vjp`` for one configuration. ``save_softmax``: the residual is
    ``softmax(z)`` on the CPU (the *_saved targets); False: ``z`` on every platform."""
    attrs = dict(target_entropy=np.float64(h0), log_std_min=np.float64(lo), log_std_max=np.float64(hi))

    @_compat.custom_vmap
    def fwd_call(z, delta):
        return _compat.ffi_call(_GAUSSIAN_FWD, _out(z.shape, z.dtype, z), z, delta, **attrs)

    @fwd_call.def_vmap
    def _fwd_rule(axis_size, in_batched, z, delta):
        return fwd_call(*_fold_delta_fwd(axis_size, in_batched, z, delta)), True

    @_compat.custom_vmap
    def fwd_saved_call(z, delta):
        o = _out(z.shape, z.dtype, z)
        out, saved = _compat.ffi_call(_GAUSSIAN_FWD_SAVED, (_flat_out(z), o), z, delta, **attrs)
        return out.reshape(z.shape), saved

    @fwd_saved_call.def_vmap
    def _fwd_saved_rule(axis_size, in_batched, z, delta):
        return fwd_saved_call(*_fold_delta_fwd(axis_size, in_batched, z, delta)), (True, True)

    bwd_call = _gaussian_bwd_call(_GAUSSIAN_BWD, attrs)
    bwd_saved_call = _gaussian_bwd_call(_GAUSSIAN_BWD_SAVED, attrs, flat=True)

    def primal(z, delta):
        return _like(fwd_call(z, delta), z)

    def saved_fwd(z, delta):  # CPU: (out, softmax(z))
        out, saved = fwd_saved_call(z, delta)
        return _like(out, z), _like(saved, z)

    def plain_fwd(z, delta):  # elsewhere: (out, z)
        return primal(z, delta), z

    @jax.custom_vjp
    def op(z, delta):
        return primal(z, delta)

    def op_fwd(z, delta):
        if save_softmax:
            out, r = jax.lax.platform_dependent(z, delta, cpu=saved_fwd, default=plain_fwd)
        else:
            out, r = plain_fwd(z, delta)
        return out, (r, delta)

    def op_bwd(res, g):
        r, delta = res
        g = g.astype(r.dtype)
        if save_softmax:
            gz, gd = jax.lax.platform_dependent(r, delta, g, cpu=bwd_saved_call, default=bwd_call)
        else:
            gz, gd = bwd_call(r, delta, g)
        return _like(gz, r), _like(gd, delta)

    op.defvjp(op_fwd, op_bwd)
    return op


def gaussian_log_std(z, *, target_entropy, log_std_min=None, log_std_max=None, delta=None):
    """ERA Gaussian head (docs/math.md#gaussian-head): log-stds ``[..., D]`` whose
    Gaussian entropy is at least ``target_entropy + delta`` in every row.

    Args:
      z: raw log-std pre-activations, ``[..., D]``, float32 or float64.
      target_entropy: ``H0``, total entropy in nats of the D-dimensional Gaussian (static).
      log_std_min, log_std_max: the log-std bounds (static; None: the library's
        defaults, ``era_jax._defaults.GAUSSIAN``).
      delta: the compensation, a traced operand (changing it does not recompile):
        a scalar, or one value per row (shape ``z.shape[:-1]``). Differentiable.
        None: the library's default (0).

    Returns:
      ``clip(log_std_max + k*softmax(z), log_std_min, log_std_max)``, shape and dtype of ``z``.
      For the gradient, the forward saves ``softmax(z)`` on the CPU (the backward then
      computes no exponential, docs/math.md#saved-softmax) and ``z`` on other
      platforms (the backward computes ``softmax(z)`` again); the gradients are the same.

    Raises:
      EraError (a ValueError) with era's message for an invalid configuration
      (for a concrete ``delta`` including its feasibility; a traced infeasible
      ``delta`` fails when the computation runs); TypeError/ValueError for
      dtypes and shapes.
    """
    native.register_targets()
    z = _float_array(z, "z")
    h0 = _static_float(target_entropy, "target_entropy")
    lo = _static_float(pick(log_std_min, GAUSSIAN.log_std_min), "log_std_min")
    hi = _static_float(pick(log_std_max, GAUSSIAN.log_std_max), "log_std_max")
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
    if not isinstance(delta, jax.core.Tracer) and not hasattr(delta, "dtype"):
        delta = np.asarray(delta, dtype=np.float64)
    delta = jnp.asarray(delta)
    if not jnp.issubdtype(delta.dtype, jnp.floating) and not jnp.issubdtype(delta.dtype, jnp.integer):
        raise TypeError(f"era_jax: delta must be a real number or array, got dtype {delta.dtype}")
    delta = delta.astype(z.dtype)
    if delta.ndim and tuple(delta.shape) != tuple(z.shape[:-1]):
        raise ValueError(
            f"era_jax: delta has shape {tuple(delta.shape)}; expected a scalar or one value per row, "
            f"shape {tuple(z.shape[:-1])}"
        )
    z, delta = _compat.match_vma(z, delta)
    return _gaussian_fn(h0, lo, hi)(z, delta)


# ---------------------------------------------------------------- softmax head


def _softmax_bwd_call(target: str, attrs: dict):
    """The backward through ``era_softmax_bwd`` (whose first operand is ``z``), with its
    batching rule."""

    @_compat.custom_vmap
    def bwd_call(r, g):
        return _compat.ffi_call(target, _out(r.shape, r.dtype, r), r, g, **attrs)

    @bwd_call.def_vmap
    def _bwd_rule(axis_size, in_batched, r, g):
        rb, gb = in_batched
        return bwd_call(_bcast(r, rb, axis_size), _bcast(g, gb, axis_size)), True

    return bwd_call


def _softmax_bwd_saved_call(attrs: dict):
    """The backward through ``era_softmax_bwd_saved`` (whose operands are the residuals
    ``softmax(z)`` and ``dw/dh``, then the cotangent), with its batching rule."""

    @_compat.custom_vmap
    def bwd_call(s, q, g):
        return _compat.ffi_call(_SOFTMAX_BWD_SAVED, _flat_out(s), s, q, g, **attrs).reshape(s.shape)

    @bwd_call.def_vmap
    def _bwd_rule(axis_size, in_batched, s, q, g):
        sb, qb, gb = in_batched
        return bwd_call(_bcast(s, sb, axis_size), _bcast(q, qb, axis_size), _bcast(g, gb, axis_size)), True

    return bwd_call


@functools.lru_cache(maxsize=None)
def _softmax_fn(h0: float, tau: float, save_softmax: bool = True):
    """The head's ``custom_vjp`` for one configuration. ``save_softmax``: the residuals are
    ``softmax(z)`` and ``dw/dh`` on the CPU (the *_saved targets); False: ``z`` on every
    platform."""
    attrs = dict(target_entropy=np.float64(h0), tau=np.float64(tau))

    @_compat.custom_vmap
    def fwd_call(z):
        return _compat.ffi_call(_SOFTMAX_FWD, _out(z.shape, z.dtype, z), z, **attrs)

    @fwd_call.def_vmap
    def _fwd_rule(axis_size, in_batched, z):
        return fwd_call(z), True  # z is batched: the only operand

    @_compat.custom_vmap
    def fwd_saved_call(z):
        o = _out(z.shape, z.dtype, z)
        out, saved, dwdh = _compat.ffi_call(_SOFTMAX_FWD_SAVED, (_flat_out(z), o, o), z, **attrs)
        return out.reshape(z.shape), saved, dwdh

    @fwd_saved_call.def_vmap
    def _fwd_saved_rule(axis_size, in_batched, z):
        return fwd_saved_call(z), (True, True, True)

    bwd_call = _softmax_bwd_call(_SOFTMAX_BWD, attrs)
    bwd_saved_call = _softmax_bwd_saved_call(attrs)

    def primal(z):
        return _like(fwd_call(z), z)

    def saved_fwd(z):  # CPU: (out, (softmax(z), dw/dh))
        out, saved, dwdh = fwd_saved_call(z)
        return _like(out, z), (_like(saved, z), _like(dwdh, z))

    def plain_fwd(z):  # elsewhere: (out, (z, z)), the CPU's structure
        return primal(z), (z, z)

    @jax.custom_vjp
    def op(z):
        return primal(z)

    def op_fwd(z):
        if save_softmax:
            return jax.lax.platform_dependent(z, cpu=saved_fwd, default=plain_fwd)
        return plain_fwd(z)

    def op_bwd(res, g):
        r, q = res
        g = g.astype(r.dtype)
        if save_softmax:
            gz = jax.lax.platform_dependent(r, q, g, cpu=bwd_saved_call, default=lambda z, _, g: bwd_call(z, g))
        else:
            gz = bwd_call(r, g)
        return (_like(gz, r),)

    op.defvjp(op_fwd, op_bwd)
    return op


def softmax_logits(z, *, target_entropy, tau=None):
    """ERA softmax head (docs/math.md#softmax-head): logits ``[..., n]`` whose
    softmax has entropy at least ``target_entropy`` in every row.

    Args:
      z: raw logits ``[..., n]`` (n >= 2), float32 or float64.
      target_entropy: ``H0`` in nats (static); valid range
        ``[1 + ln(ln(tau)/tau), 1 + ln(n*ln(tau)/tau)]``.
      tau: sharpness, ``>= e`` (static; None: the library's default).

    Returns:
      the new logits, shape and dtype of ``z`` (their row minimum is 0). For the
      gradient, the forward saves ``softmax(z)`` and ``dw/dh`` on the CPU (the backward
      then computes no exponential, logarithm or square root, docs/math.md#saved-softmax)
      and ``z`` on other platforms (the backward computes them again).
    """
    native.register_targets()
    z = _float_array(z, "z")
    h0 = _static_float(target_entropy, "target_entropy")
    t = _static_float(pick(tau, SOFTMAX.tau), "tau")
    native.validate_config(
        native.ERA_HEAD_KIND_SOFTMAX, (("num_classes", int(z.shape[-1])), ("target_entropy", h0), ("tau", t))
    )
    return _softmax_fn(h0, t)(z)
