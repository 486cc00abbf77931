"""The split token forward (docs/math.md#split-token-forward) as XLA FFI calls:
:func:`token_logprob_columns` (the label's log-prob at the three scales ``1, k, 1/k``, the
entropy and the sum of squared probabilities, per token, in one read of the logits, at one
temperature per token) and :func:`token_decide` (the scale decision from per-token arrays,
for a loss that never sees the logits). Differentiable with ``jax.custom_vjp`` (the
library's ``era_token_columns_backward``), batchable with ``jax.vmap``, usable in ``jit``.
The same bits as :func:`era_jax.token_logprobs` on the same inputs. CPU buffers only in this
version (the library answers ``UNSUPPORTED_DEVICE`` on CUDA).
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from . import _compat
from . import _native as native
from ._defaults import TOKEN, pick
from ._native import EraError
from ._ops import (
    _LOGIT_DTYPES,
    _bcast,
    _expect_shape,
    _float_array,
    _index_array,
    _like,
    _offset_response_ids,
    _out,
    _static_float,
    _static_int,
)

__all__ = ["TokenColumns", "TokenDecision", "token_decide", "token_logprob_columns"]

_COLUMNS = native.target("era_token_columns")
_DECIDE = native.target("era_token_decide")
_COLUMNS_BWD = native.target("era_token_columns_bwd")


class TokenColumns(NamedTuple):
    """The outputs of :func:`token_logprob_columns`."""

    columns: jax.Array  # [..., 3]: the label's log-prob at c = 1, k, 1/k
    entropy: jax.Array  # [...]
    sum_sq: Optional[jax.Array]  # [...] (None unless asked for)


class TokenDecision(NamedTuple):
    """The outputs of :func:`token_decide`, each ``[...]``."""

    logprobs: Optional[jax.Array]
    scale: jax.Array
    advantages: jax.Array
    response_entropy: jax.Array
    column: jax.Array  # int32: 0 for c = 1, 1 for k, 2 for 1/k


def _attrs(k, omega_low, omega_high, top_fraction, scaling, topk):
    return dict(k=np.float64(k), omega_low=np.float64(omega_low), omega_high=np.float64(omega_high),
                top_fraction=np.float64(top_fraction), temperature=np.float64(TOKEN.temperature),
                advantage_scaling=np.int64(1 if scaling else 0), vocab_topk=np.int64(topk))


@functools.lru_cache(maxsize=None)
def _columns_fn(k: float, topk: int, want_sq: bool):
    attrs = _attrs(k, TOKEN.omega_low, TOKEN.omega_high, TOKEN.top_fraction, TOKEN.advantage_scaling, topk)

    @_compat.custom_vmap
    def fwd_call(logits, labels, temperature):
        batch = logits.shape[:-1]
        dt = temperature.dtype
        outs = (_out(batch + (3,), dt, logits), _out(batch, dt, logits), _out(batch, dt, logits))
        return tuple(_compat.ffi_call(_COLUMNS, outs, logits, labels, temperature, want_sum_sq=np.int64(want_sq),
                                      **attrs))

    @fwd_call.def_vmap
    def _fwd_rule(axis_size, in_batched, *args):  # row-wise
        return fwd_call(*(_bcast(x, b, axis_size) for x, b in zip(args, in_batched))), (True,) * 3

    @_compat.custom_vmap
    def bwd_call(logits, labels, temperature, g_cols, g_ent):
        return _compat.ffi_call(_COLUMNS_BWD, _out(logits.shape, logits.dtype, logits), logits, labels, temperature,
                                g_cols, g_ent, **attrs)

    @bwd_call.def_vmap
    def _bwd_rule(axis_size, in_batched, *args):
        return bwd_call(*(_bcast(x, b, axis_size) for x, b in zip(args, in_batched))), True

    @jax.custom_vjp
    def op(logits, labels, temperature):
        return fwd_call(logits, labels, temperature)

    def op_fwd(logits, labels, temperature):
        return fwd_call(logits, labels, temperature), (logits, labels, temperature)

    def op_bwd(res, cts):
        logits, labels, temperature = res
        g_cols, g_ent, _ = cts  # the squared sum is not differentiated
        g = bwd_call(logits, labels, temperature, g_cols.astype(temperature.dtype), g_ent.astype(temperature.dtype))
        zeros = lambda x: np.zeros(x.shape, dtype=jax.dtypes.float0)  # noqa: E731
        return _like(g, logits), zeros(labels), jnp.zeros_like(temperature)

    op.defvjp(op_fwd, op_bwd)
    return op


def token_logprob_columns(logits, labels, *, temperature=None, k=None, vocab_topk=None, sum_sq: bool = False):
    """Per token, in one read of the logits: the label's log-prob at the scales ``1, k, 1/k``
    of the ERA token head, the entropy and optionally the sum of squared probabilities
    (docs/math.md#split-token-forward).

    Args:
      logits: ``[..., V]`` float32, float64, bfloat16 or float16, before the temperature.
      labels: ``[...]`` int32/int64; a negative label marks a token to ignore (columns 0).
      temperature: a number (static) or an array ``[...]`` (one per token); None: the
        library's default.
      k, vocab_topk: the head's scale factor and vocabulary top-K (static; None: defaults).
      sum_sq: also return ``sum_i p_i^2`` (static).

    Returns:
      :class:`TokenColumns`: ``columns [..., 3]`` and ``entropy [...]``, differentiable with
      respect to ``logits`` (the library's backward), and ``sum_sq`` (not differentiated;
      None unless asked for). float64 for float64 logits, float32 otherwise.
    """
    native.register_targets()
    logits = _float_array(logits, "logits", _LOGIT_DTYPES, min_rank=2)
    labels = _index_array(labels, "labels")
    batch = tuple(logits.shape[:-1])
    _expect_shape(labels, batch, "labels", "logits without its last axis")
    dt = jnp.float64 if logits.dtype == np.float64 else jnp.float32
    if temperature is None or isinstance(temperature, (int, float, np.number)):
        t = jnp.full(batch, _static_float(pick(temperature, TOKEN.temperature), "temperature"), dt)
    else:
        t = jnp.asarray(temperature).astype(dt)
        _expect_shape(t, batch, "temperature", "one per token")
    kk = _static_float(pick(k, TOKEN.k), "k")
    topk = _static_int(pick(vocab_topk, TOKEN.vocab_topk), "vocab_topk")
    if topk < 0:
        raise EraError(f"era_jax: vocab_topk must be >= 0 (0 = full vocabulary), got {topk}", "ERA_STATUS_INVALID_CONFIG")
    logits, labels, t = _compat.match_vma(logits, labels, t)
    cols, ent, sq = _columns_fn(kk, topk, bool(sum_sq))(logits, labels, t)
    return TokenColumns(cols, ent, sq if sum_sq else None)


@functools.lru_cache(maxsize=None)
def _decide_fn(k, omega_low, omega_high, top_fraction, scaling: bool):
    attrs = _attrs(k, omega_low, omega_high, top_fraction, scaling, 0)

    @_compat.custom_vmap
    def call(entropy, ids, adv, cols):
        b = entropy.shape
        dt = entropy.dtype
        outs = (_out(b, dt, entropy), _out(b, dt, entropy), _out(b, dt, entropy), _out(b, dt, entropy),
                _out(b, jnp.int64 if jax.config.jax_enable_x64 else jnp.int32, entropy))
        return tuple(_compat.ffi_call(_DECIDE, outs, entropy, ids, adv, cols, **attrs))

    @call.def_vmap
    def _rule(axis_size, in_batched, entropy, ids, adv, cols):
        entropy, ids, adv, cols = (_bcast(x, b, axis_size) for x, b in zip((entropy, ids, adv, cols), in_batched))
        return call(entropy, _offset_response_ids(ids, axis_size), adv, cols), (True,) * 5

    @jax.custom_vjp
    def op(entropy, ids, adv, cols):
        return call(entropy, ids, adv, cols)

    def op_fwd(entropy, ids, adv, cols):
        outs = call(entropy, ids, adv, cols)
        return outs, (ids, outs[1], outs[4], cols)

    def op_bwd(res, cts):
        ids, scale, column, cols = res
        g_logp, _, g_adv, _, _ = cts
        # logprobs picks one column per token (0 for masked tokens); advantages_out = A / c
        pick_ = jax.nn.one_hot(column, 3, dtype=cols.dtype) * jnp.where(ids >= 0, g_logp, 0)[..., None]
        g_a = g_adv / scale if scaling else g_adv
        zeros = lambda x: np.zeros(x.shape, dtype=jax.dtypes.float0)  # noqa: E731
        return jnp.zeros_like(scale), zeros(ids), g_a, pick_

    op.defvjp(op_fwd, op_bwd)
    return op


def token_decide(entropy, response_ids, advantages, columns, *, k=None, omega_low=None, omega_high=None,
                 top_fraction=None, advantage_scaling=None) -> TokenDecision:
    """The ERA token head's scale decision from per-token arrays (docs/math.md#split-token-forward).

    Args:
      entropy: ``[...]`` (:func:`token_logprob_columns`' ``entropy``; not differentiated).
      response_ids: ``[...]`` int32/int64: the response of each token (any id >= 0), -1 for a
        masked token; global over one call, per instance under ``vmap``.
      advantages: ``[...]``, cast to the dtype of ``entropy``.
      columns: ``[..., 3]`` (:func:`token_logprob_columns`' ``columns``).
      k, omega_low, omega_high, top_fraction, advantage_scaling: static; None: defaults.

    Returns:
      :class:`TokenDecision`: ``logprobs`` (the selected column, 0 for masked tokens;
      differentiable w.r.t. ``columns``), ``scale``, ``advantages`` (``A/c``, differentiable
      w.r.t. ``advantages``), ``response_entropy`` and ``column`` (the chosen column's index).
    """
    native.register_targets()
    ent = _float_array(entropy, "entropy", min_rank=1)
    ids = _index_array(response_ids, "response_ids")
    batch = tuple(ent.shape)
    _expect_shape(ids, batch, "response_ids", "entropy's shape")
    adv = jnp.asarray(advantages).astype(ent.dtype)
    _expect_shape(adv, batch, "advantages", "entropy's shape")
    cols = jnp.asarray(columns).astype(ent.dtype)
    _expect_shape(cols, batch + (3,), "columns", "entropy's shape with a last axis of 3")
    cfg = (_static_float(pick(k, TOKEN.k), "k"), _static_float(pick(omega_low, TOKEN.omega_low), "omega_low"),
           _static_float(pick(omega_high, TOKEN.omega_high), "omega_high"),
           _static_float(pick(top_fraction, TOKEN.top_fraction), "top_fraction"),
           bool(pick(advantage_scaling, TOKEN.advantage_scaling)))
    ent, ids, adv, cols = _compat.match_vma(jax.lax.stop_gradient(ent), ids, adv, cols)
    lp, scale, a, hresp, column = _decide_fn(*cfg)(ent, ids, adv, cols)
    return TokenDecision(lp, scale, a, hresp, column)
