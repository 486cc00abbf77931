"""The era operations as JAX functions: XLA FFI calls into the era C ABI.

Layering, from the outside in, for every operation:

1. the public function checks shapes and dtypes, validates the static
   configuration through the C ABI (ctypes ``era_head_new``; an invalid one
   raises :class:`era_jax.EraError`, a ``ValueError``, with era's message) and
   aligns the operands' varying mesh axes (``shard_map``);
2. a ``jax.custom_vjp`` whose forward and backward are native calls;
3. each native call is a ``custom_vmap`` function: its batching rule folds the
   vmapped axis into the leading batch axes that every era function accepts
   (offsetting the token head's response ids per instance, and turning a
   batched ``delta`` into a per-row ``delta``) and calls itself again, so
   nested ``vmap`` works to any depth;
4. ``ffi_call`` of the registered target, with the configuration as static
   attributes.

No ERA math lives here; see docs/math.md and the era library.
"""

from __future__ import annotations

import functools
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from . import _compat
from . import _native as native
from ._defaults import TOKEN, pick
from ._native import EraError

__all__ = [
    "gaussian_entropy",
    "softmax_entropy",
    "token_entropy",
    "token_logprobs",
    "truncated_normal_entropy",
]

# The XLA FFI targets called here, by the names of the native library's target
# table (csrc/era_jax.cc); a name the library lacks fails at import. The Gaussian
# and softmax heads are built in _small_heads.py on the helpers below.
_TOKEN_FWD = native.target("era_token_fwd")
_TOKEN_BWD = native.target("era_token_bwd")
_GAUSSIAN_ENTROPY = native.target("era_gaussian_entropy")
_SOFTMAX_ENTROPY = native.target("era_softmax_entropy")
_TRUNCATED_NORMAL_ENTROPY = native.target("era_truncated_normal_entropy")

_F32_F64 = (np.dtype(np.float32), np.dtype(np.float64))
_LOGIT_DTYPES = _F32_F64 + (np.dtype(jnp.bfloat16), np.dtype(np.float16))
_INDEX_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))


# --------------------------------------------------------------------- helpers


def _static_float(value, name: str) -> float:
    """A configuration value: a Python (or NumPy) number, never a traced value."""
    if isinstance(value, jax.core.Tracer):
        raise TypeError(
            f"era_jax: {name} is a static configuration value and must be a Python number, not a traced array "
            "(changing it recompiles; for the Gaussian head, pass a traced `delta` instead of changing the target)"
        )
    try:
        return float(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"era_jax: {name} must be a number, got {value!r}") from e


def _static_int(value, name: str) -> int:
    if isinstance(value, jax.core.Tracer) or isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (numbers.Integral, np.integer)
    ):
        raise TypeError(f"era_jax: {name} must be a Python int, got {value!r}")
    return int(value)


def _static_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"era_jax: {name} must be True or False, got {value!r}")
    return bool(value)


def _float_array(x, name: str, allowed=_F32_F64, min_rank: int = 1):
    x = jnp.asarray(x)
    if x.dtype not in allowed:
        names = ", ".join(str(d) for d in allowed)
        raise TypeError(f"era_jax: {name} has dtype {x.dtype}; expected one of {names}")
    if x.ndim < min_rank:
        raise ValueError(f"era_jax: {name} must have rank >= {min_rank}, got shape {x.shape}")
    return x


def _index_array(x, name: str):
    x = jnp.asarray(x)
    if x.dtype in _INDEX_DTYPES:
        return x
    if jnp.issubdtype(x.dtype, jnp.integer):
        return x.astype(jnp.int32)
    raise TypeError(f"era_jax: {name} must hold integers (int32 or int64), got dtype {x.dtype}")


def _expect_shape(x, shape, name: str, what: str):
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"era_jax: {name} has shape {tuple(x.shape)}, expected {tuple(shape)} ({what})")


_like = _compat.like_sharding


def _bcast(x, batched: bool, size: int):
    """Gives an unbatched custom_vmap operand the leading batch axis."""
    return x if batched else jnp.broadcast_to(x, (size,) + x.shape)


def _out(shape, dtype, like=None):
    """The type of an FFI result computed from operand ``like`` (its mesh axes are
    handled by _compat.ffi_call)."""
    del like
    return jax.ShapeDtypeStruct(tuple(shape), dtype)


def _concrete(x):
    """The value of ``x`` as a NumPy array if it is known at trace time, else None."""
    if isinstance(x, jax.core.Tracer):
        return None
    try:
        return np.asarray(x, dtype=np.float64)
    except Exception:
        return None


# ------------------------------------------------------------------ token head


def _offset_response_ids(ids, axis_size: int):
    """Makes response ids unique per vmapped instance (axis 0): the C library
    treats ids as global over the whole call. Masked tokens (-1) stay masked;
    other negative ids are left for the library to reject."""
    if ids.size == 0:
        return ids
    span = jnp.maximum(jnp.max(ids), -1) + 1
    inst = jnp.arange(axis_size, dtype=ids.dtype).reshape((axis_size,) + (1,) * (ids.ndim - 1))
    return jnp.where(ids >= 0, ids + inst * span, ids)


@functools.lru_cache(maxsize=None)
def _token_fn(k, omega_low, omega_high, top_fraction, temperature, scaling: bool, topk: int, inplace: bool):
    attrs = dict(
        k=np.float64(k),
        omega_low=np.float64(omega_low),
        omega_high=np.float64(omega_high),
        top_fraction=np.float64(top_fraction),
        temperature=np.float64(temperature),
        advantage_scaling=np.int64(1 if scaling else 0),
        vocab_topk=np.int64(topk),
    )

    @_compat.custom_vmap
    def fwd_call(logits, labels, ids, adv):
        o = _out(logits.shape[:-1], adv.dtype, logits)
        return tuple(_compat.ffi_call(_TOKEN_FWD, (o, o, o, o, o), logits, labels, ids, adv, **attrs))

    @fwd_call.def_vmap
    def _fwd_rule(axis_size, in_batched, logits, labels, ids, adv):
        logits, labels, ids, adv = (_bcast(x, b, axis_size) for x, b in zip((logits, labels, ids, adv), in_batched))
        ids = _offset_response_ids(ids, axis_size)
        return fwd_call(logits, labels, ids, adv), (True,) * 5

    @_compat.custom_vmap
    def bwd_call(logits, labels, ids, scale, g):
        out = _out(logits.shape, logits.dtype, logits)
        plain = lambda *a: _compat.ffi_call(_TOKEN_BWD, out, *a, **attrs)  # noqa: E731
        if not inplace:
            return plain(logits, labels, ids, scale, g)
        # On CPU the gradient takes the logits' buffer (era_token_backward in place): XLA
        # reuses it where the logits are dead after the backward, and copies them first
        # where they are still needed. CUDA keeps a buffer of its own.
        aliased = lambda *a: _compat.ffi_call(_TOKEN_BWD, out, *a, input_output_aliases={0: 0}, **attrs)  # noqa: E731
        return jax.lax.platform_dependent(logits, labels, ids, scale, g, cpu=aliased, default=plain)

    @bwd_call.def_vmap
    def _bwd_rule(axis_size, in_batched, *args):
        # row-wise: only the sign of a response id matters here
        return bwd_call(*(_bcast(x, b, axis_size) for x, b in zip(args, in_batched))), True

    def run(logits, labels, ids, adv):
        return tuple(_like(o, logits, drop_last=True) for o in fwd_call(logits, labels, ids, adv)[:4])

    @jax.custom_vjp
    def op(logits, labels, ids, adv):
        return run(logits, labels, ids, adv)

    def op_fwd(logits, labels, ids, adv):
        outs = run(logits, labels, ids, adv)
        return outs, (logits, labels, ids, adv, outs[2])

    def op_bwd(res, cts):
        logits, labels, ids, adv, scale = res
        g_logp, _g_ent, _g_scale, g_adv = cts
        g_logits = bwd_call(logits, labels, ids, scale, g_logp.astype(scale.dtype))
        g_adv = g_adv / scale if scaling else g_adv  # advantages_out = A / c (c is a constant)
        zeros = lambda x: np.zeros(x.shape, dtype=jax.dtypes.float0)  # noqa: E731
        return _like(g_logits, logits), zeros(labels), zeros(ids), _like(g_adv.astype(adv.dtype), adv)

    op.defvjp(op_fwd, op_bwd)
    return op


def token_logprobs(
    logits,
    labels,
    response_ids,
    advantages,
    *,
    k=None,
    omega_low=None,
    omega_high=None,
    top_fraction=None,
    temperature=None,
    advantage_scaling=None,
    vocab_topk=None,
    inplace_backward=False,
):
    """ERA token head (docs/math.md#token-head) for LLM policy updates.

    Args:
      logits: ``[..., V]``, float32, float64, bfloat16 or float16.
      labels: ``[...]`` sampled token ids (int32/int64), in ``[0, V)`` for unmasked tokens.
      response_ids: ``[...]`` (int32/int64): the response of each token, or -1 for
        masked/padding tokens. Ids are global over one call (the tokens of one
        response may be anywhere in the batch); under ``vmap`` each mapped
        instance has its own responses.
      advantages: ``[...]`` float; cast to the output dtype.
      k, omega_low, omega_high, top_fraction, temperature, advantage_scaling, vocab_topk: the
        head's configuration (static; None: the library's default, ``era_jax._defaults.TOKEN``).
      inplace_backward: on CPU, let the backward write the logits' gradient into the
        logits' own buffer (static; the values are the same bit for bit). Inside a
        jitted training step the logits are an intermediate that is dead after this
        backward, and XLA then reuses their buffer, sparing the gradient's
        allocation (a fresh ``[..., V]`` buffer every step). Where the logits are
        still needed (an argument of the jitted function that is not donated, or
        another use after the backward), XLA copies them first, which costs more
        than a buffer of its own: hence off by default. CUDA buffers always get a
        gradient buffer of their own.

    Returns:
      ``(logprobs, entropy, scale, advantages_out)``, each ``[...]``, float64 for
      float64 logits and float32 otherwise. Gradients: ``logprobs`` with respect to
      ``logits`` (native backward) and ``advantages_out`` with respect to
      ``advantages`` (``1/scale``); ``entropy`` and ``scale`` are not
      differentiated (the scale decision is a constant, docs/math.md#token-head).
    """
    native.register_targets()
    logits = _float_array(logits, "logits", _LOGIT_DTYPES)
    labels = _index_array(labels, "labels")
    ids = _index_array(response_ids, "response_ids")
    batch = tuple(logits.shape[:-1])
    _expect_shape(labels, batch, "labels", "logits without its last axis")
    _expect_shape(ids, batch, "response_ids", "logits without its last axis")
    out_dtype = jnp.float64 if logits.dtype == np.float64 else jnp.float32
    adv = jnp.asarray(advantages)
    if not (jnp.issubdtype(adv.dtype, jnp.floating) or jnp.issubdtype(adv.dtype, jnp.integer)):
        raise TypeError(f"era_jax: advantages must be real numbers, got dtype {adv.dtype}")
    _expect_shape(adv, batch, "advantages", "logits without its last axis")
    adv = adv.astype(out_dtype)
    cfg = (
        _static_float(pick(k, TOKEN.k), "k"),
        _static_float(pick(omega_low, TOKEN.omega_low), "omega_low"),
        _static_float(pick(omega_high, TOKEN.omega_high), "omega_high"),
        _static_float(pick(top_fraction, TOKEN.top_fraction), "top_fraction"),
        _static_float(pick(temperature, TOKEN.temperature), "temperature"),
        bool(pick(advantage_scaling, TOKEN.advantage_scaling)),
        _static_int(pick(vocab_topk, TOKEN.vocab_topk), "vocab_topk"),
        _static_bool(inplace_backward, "inplace_backward"),
    )
    if cfg[6] < 0:
        raise EraError(f"era_jax: vocab_topk must be >= 0 (0 = full vocabulary), got {cfg[6]}", "ERA_STATUS_INVALID_CONFIG")
    native.validate_config(
        native.ERA_HEAD_KIND_TOKEN,
        (
            ("k", cfg[0]),
            ("omega_low", cfg[1]),
            ("omega_high", cfg[2]),
            ("top_fraction", cfg[3]),
            ("temperature", cfg[4]),
            ("advantage_scaling", 1 if cfg[5] else 0),
            ("vocab_topk", cfg[6]),
        ),
    )
    single = logits.ndim == 1
    if single:  # one token: the C ABI wants [..., V] with at least one batch axis
        logits, labels, ids, adv = logits[None], labels[None], ids[None], adv[None]
    logits, labels, ids, adv = _compat.match_vma(logits, labels, ids, adv)
    outs = _token_fn(*cfg)(logits, labels, ids, adv)
    if single:
        outs = tuple(o[0] for o in outs)
    return tuple(outs)


# ------------------------------------------------------- entropies (no gradient)


@functools.lru_cache(maxsize=None)
def _entropy_fn(target: str, out_dtype, **attrs):
    """``[..., n]`` -> ``[...]`` through FFI target ``target`` (the result in
    ``out_dtype``, or the input's dtype if None)."""
    attrs = {name: np.float64(value) for name, value in attrs.items()}

    @_compat.custom_vmap
    def call(x):
        return _compat.ffi_call(target, _out(x.shape[:-1], out_dtype or x.dtype, x), x, **attrs)

    @call.def_vmap
    def _rule(axis_size, in_batched, x):
        return call(x), True

    return call


def gaussian_entropy(log_std):
    """Entropy of ``N(mu, diag(exp(log_std))^2)`` per row: ``[..., D]`` -> ``[...]``
    in the dtype of ``log_std`` (era_gaussian_entropy). Not differentiated
    (treated as a constant)."""
    native.register_targets()
    x = _float_array(log_std, "log_std")
    return _like(_entropy_fn(_GAUSSIAN_ENTROPY, None)(jax.lax.stop_gradient(x)), x, drop_last=True)


def softmax_entropy(logits):
    """``H(softmax(logits))`` per row: ``[..., n]`` (n >= 2) -> ``[...]`` in the
    dtype of ``logits`` (era_softmax_entropy at temperature 1, the softmax
    head's output entropy). Not differentiated (treated as a constant)."""
    native.register_targets()
    x = _float_array(logits, "logits")
    if x.shape[-1] < 2:
        raise EraError(f"era_jax: softmax_entropy needs n >= 2 classes, got shape {tuple(x.shape)}",
                       "ERA_STATUS_INVALID_SHAPE")
    return _like(_entropy_fn(_SOFTMAX_ENTROPY, None, temperature=1.0)(jax.lax.stop_gradient(x)), x,
                 drop_last=True)


def token_entropy(logits, *, temperature=None):
    """``H(softmax(logits / temperature))`` per token: ``[..., V]`` -> ``[...]``
    (era_softmax_entropy; float64 for float64 logits, else float32), the token
    head's per-token entropy. ``temperature`` is static (None: the token
    head's default). Not differentiated (treated as a constant)."""
    native.register_targets()
    x = _float_array(logits, "logits", _LOGIT_DTYPES)
    t = _static_float(pick(temperature, TOKEN.temperature), "temperature")
    native.validate_config(native.ERA_HEAD_KIND_TOKEN, (("temperature", t),))
    out = np.dtype(np.float64) if x.dtype == np.float64 else np.dtype(np.float32)
    return _like(_entropy_fn(_SOFTMAX_ENTROPY, out, temperature=t)(jax.lax.stop_gradient(x)), x, drop_last=True)


@functools.lru_cache(maxsize=None)
def _truncnorm_fn(low: float, high: float):
    attrs = dict(low=np.float64(low), high=np.float64(high))

    @_compat.custom_vmap
    def call(mean, log_std):
        return _compat.ffi_call(
            _TRUNCATED_NORMAL_ENTROPY, _out(mean.shape[:-1], mean.dtype, mean), mean, log_std, **attrs
        )

    @call.def_vmap
    def _rule(axis_size, in_batched, mean, log_std):
        mb, sb = in_batched
        return call(_bcast(mean, mb, axis_size), _bcast(log_std, sb, axis_size)), True

    return call


def truncated_normal_entropy(mean, log_std, low=-1.0, high=1.0):
    """Entropy of the truncated normal ``TN(mean, exp(log_std), [low, high])``
    (docs/math.md#truncated-normal-entropy), summed over the last axis: ``[..., D]`` -> ``[...]``.

    ``mean`` and ``log_std`` are broadcast against each other (float32 or
    float64); ``low < high`` are static (infinite bounds allowed). The result
    is the statistic the ``delta`` learner consumes, and is not differentiated
    (treated as a constant: the C ABI has no derivative for it).
    """
    native.register_targets()
    lo = _static_float(low, "low")
    hi = _static_float(high, "high")
    native.validate_truncation(lo, hi)
    m = jnp.asarray(mean)
    s = jnp.asarray(log_std)
    dtype = jnp.result_type(m, s)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    m, s = jnp.broadcast_arrays(m.astype(dtype), s.astype(dtype))
    m = _float_array(m, "mean")
    s = _float_array(s, "log_std")
    m, s = _compat.match_vma(jax.lax.stop_gradient(m), jax.lax.stop_gradient(s))
    return _like(_truncnorm_fn(lo, hi)(m, s), m, drop_last=True)
