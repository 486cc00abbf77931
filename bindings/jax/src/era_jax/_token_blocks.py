"""The token head over vocabulary blocks (docs/math.md#vocabulary-blocks): the split forward's
columns when the logits are never whole.

* :func:`fused_token_columns` computes the unembedding ``hidden @ weight.T`` (with an optional
  bias, logit scale and Gemma-2 soft cap) one vocabulary chunk at a time inside a ``lax.scan``,
  folds each chunk into the library's per-token statistics (``era_token_block_stats``,
  accumulated) and finishes them (``era_token_block_finish``); its ``custom_vjp`` recomputes
  each chunk and takes the chunk's gradient from ``era_token_block_backward``. No ``[N, V]``
  array exists, forward or backward.
* :func:`token_logprob_columns_sharded` runs inside ``shard_map`` on one rank's slice of the
  vocabulary: the block pass over the slice, the statistics merged across the mesh axis
  (``pmax`` of the maxima, ``era_token_stats_rebase``, ``psum`` of the other rows, and with a
  top-K an ``all_gather`` of the candidates merged by ``era_token_stats_merge``), then the
  finish. Its backward needs no collective. :func:`fused_token_columns` takes ``axis_name`` for
  a weight sharded the same way; :func:`vocab_sharded_token_columns` wraps the logits version
  for an array with a vocabulary-sharded ``NamedSharding``.

The results are :class:`era_jax.TokenColumns`, as :func:`era_jax.token_logprob_columns` gives
them for the whole logits; the scale decision is then :func:`era_jax.token_decide`'s.

The statistics, the candidates and the finish's saved entries are float64/int64 in the C ABI;
they travel here as uint32 arrays with a trailing axis of 2 (the same bytes), so that the head
works with x64 off. With x64 on the merge across ranks uses ``pmax``/``psum`` on the float64
view; with x64 off it gathers every rank's statistics (``[R, 9, N]`` 8-byte values) and merges
them with ``era_token_stats_merge``. CPU buffers only in this version (the library answers
``UNSUPPORTED_DEVICE`` on CUDA). The math is the library's; this module holds only the chain
rule of the matmul, the logit scale and the soft cap. The tokens are one axis ``N``: fold batch
axes into it (these functions have no ``vmap`` rule).
"""

from __future__ import annotations

import functools
import inspect
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import _compat
from . import _native as native
from ._defaults import TOKEN, pick
from ._era_h import ERA_TOKEN_SAVED, ERA_TOKEN_STATS_ROWS
from ._native import EraError
from ._ops import _LOGIT_DTYPES, _expect_shape, _float_array, _index_array, _static_float, _static_int
from ._token_split import TokenColumns, _attrs

__all__ = ["fused_token_columns", "token_logprob_columns_sharded", "vocab_sharded_token_columns"]

_STATS = native.target("era_token_block_stats")
_MERGE = native.target("era_token_stats_merge")
_REBASE = native.target("era_token_stats_rebase")
_FINISH = native.target("era_token_block_finish")
_BWD = native.target("era_token_block_bwd")

_ROWS = int(ERA_TOKEN_STATS_ROWS)
_SAVED = int(ERA_TOKEN_SAVED)


class _Cfg(NamedTuple):
    """The static configuration of one head over blocks."""

    k: float
    topk: int  # the head's vocab_topk
    vocab_size: int
    vocab_valid: int
    want_sq: bool

    @property
    def with_topk(self) -> bool:
        return 0 < self.topk < self.vocab_valid

    @property
    def kk(self) -> int:  # the candidates per token
        return self.topk if self.with_topk else 0

    def attrs(self) -> dict:
        return _attrs(self.k, TOKEN.omega_low, TOKEN.omega_high, TOKEN.top_fraction, TOKEN.advantage_scaling,
                      self.topk)


# ---------------------------------------------------------------- native calls


def _wide(shape):
    """The type of a float64/int64 buffer ``shape`` carried as uint32 pairs."""
    return jax.ShapeDtypeStruct(tuple(shape) + (2,), jnp.uint32)


def _call(target, outs, *args, aliases=None, **attrs):
    """``ffi_call`` with the operands' varying mesh axes aligned."""
    args = _compat.match_vma(*args)
    return _compat.ffi_call(target, outs, *args, input_output_aliases=aliases, **attrs)


def _stats(cfg: _Cfg, logits, labels, temp, offset, carry, accumulate: bool):
    """The block pass of ``logits`` at vocabulary ``offset``, merged into ``carry`` (statistics,
    candidates' values and indices) when ``accumulate``."""
    n = logits.shape[0]
    outs = (_wide((_ROWS, n)), _wide((n, cfg.kk)), _wide((n, cfg.kk)))
    if carry is None:
        carry = tuple(jnp.zeros(o.shape, o.dtype) for o in outs)
    return tuple(_call(_STATS, outs, logits, labels, temp, offset, *carry, aliases={4: 0, 5: 1, 6: 2},
                       vocab_size=np.int64(cfg.vocab_size), vocab_valid=np.int64(cfg.vocab_valid),
                       accumulate=np.int64(1 if accumulate else 0), with_topk=np.int64(cfg.with_topk),
                       **cfg.attrs()))


def _merge(cfg: _Cfg, mine, other):
    """``era_token_stats_merge`` of two (statistics, values, indices) triples."""
    outs = tuple(jax.ShapeDtypeStruct(x.shape, x.dtype) for x in mine)
    return tuple(_call(_MERGE, outs, *mine, *other, aliases={0: 0, 1: 1, 2: 2}, with_topk=np.int64(cfg.with_topk),
                       **cfg.attrs()))


def _rebase(cfg: _Cfg, stats, maximum):
    """``era_token_stats_rebase`` of ``stats`` to the float64 ``maximum`` ``[N]``."""
    return _call(_REBASE, jax.ShapeDtypeStruct(stats.shape, stats.dtype), stats, maximum, aliases={0: 0},
                 **cfg.attrs())


def _finish(cfg: _Cfg, carry, labels, dt):
    """``era_token_block_finish``: columns, entropy, squared sums (when asked) and the saved entries."""
    n = labels.shape[0]
    outs = (jax.ShapeDtypeStruct((n, 3), dt), jax.ShapeDtypeStruct((n,), dt), jax.ShapeDtypeStruct((n,), dt),
            _wide((n, _SAVED)))
    return tuple(_call(_FINISH, outs, *carry, labels, vocab_valid=np.int64(cfg.vocab_valid),
                       want_sum_sq=np.int64(cfg.want_sq), with_topk=np.int64(cfg.with_topk), **cfg.attrs()))


def _block_bwd(cfg: _Cfg, logits, labels, temp, offset, saved, g_cols, g_ent, in_place: bool):
    """``era_token_block_backward`` of the block ``logits`` at ``offset`` (in place: a temporary)."""
    out = jax.ShapeDtypeStruct(logits.shape, logits.dtype)
    return _call(_BWD, out, logits, labels, temp, offset, saved, g_cols, g_ent, aliases={0: 0} if in_place else None,
                 vocab_size=np.int64(cfg.vocab_size), vocab_valid=np.int64(cfg.vocab_valid), **cfg.attrs())


# ------------------------------------------------------------- across ranks

_GATHER_TO = "to" in inspect.signature(lax.all_gather).parameters


def _gather(x, axis_name):
    """Every rank's ``x`` stacked on a new leading axis, the same on every rank."""
    if _GATHER_TO:  # typed as not varying along the axis (its name differs between versions)
        for to in ("invarying", "invariant"):
            try:
                return lax.all_gather(x, axis_name, to=to)
            except ValueError:
                continue
    return lax.all_gather(x, axis_name)  # pragma: no cover - older jax


def _axis_size(axis_name) -> int:
    size = getattr(lax, "axis_size", None)
    return int(size(axis_name)) if size is not None else int(lax.psum(1, axis_name))


def _combine(cfg: _Cfg, carry, axis_name):
    """The statistics of every rank's blocks merged across ``axis_name`` (docs/math.md#vocabulary-blocks)."""
    stats, tv, ti = carry
    ranks = _axis_size(axis_name)
    if not jax.config.jax_enable_x64:  # no float64 arrays: gather the 8-byte values and merge them
        gathered = [_gather(x, axis_name) for x in carry]
        out = tuple(g[0] for g in gathered)
        for r in range(1, ranks):
            out = _merge(cfg, out, tuple(g[r] for g in gathered))
        return out
    f64 = lax.bitcast_convert_type(stats, jnp.float64)
    maximum = lax.pmax(f64[_ROWS - 1], axis_name)
    f64 = lax.bitcast_convert_type(_rebase(cfg, stats, maximum), jnp.float64)
    f64 = jnp.concatenate([lax.psum(f64[:_ROWS - 1], axis_name), maximum[None]])
    stats = lax.bitcast_convert_type(f64, jnp.uint32)
    if cfg.with_topk:
        gv, gi = _gather(tv, axis_name), _gather(ti, axis_name)
        tv, ti = gv[0], gi[0]
        for r in range(1, ranks):  # the statistics are merged already: only the candidates are kept
            _, tv, ti = _merge(cfg, (stats, tv, ti), (stats, gv[r], gi[r]))
    else:  # empty, and like the merged statistics not varying along the axis
        tv, ti = jnp.zeros(tv.shape, tv.dtype), jnp.zeros(ti.shape, ti.dtype)
    return stats, tv, ti


# ------------------------------------------------------- the fused unembedding


class _Unembed(NamedTuple):
    """The static shape of the chunked unembedding and its logit transform."""

    chunk: int  # vocabulary entries per chunk
    full: int  # whole chunks
    rem: int  # entries of the last, shorter chunk (0: none)
    scale: Optional[float]  # logit_scale
    cap: Optional[float]  # softcap


def _chunk_logits(u: _Unembed, hidden, weight, bias, start: int, size: int):
    """The logits of vocabulary rows ``[start, start + size)`` of ``weight`` and ``tanh`` of the soft cap."""
    w = lax.dynamic_slice_in_dim(weight, start, size, 0)
    x = jnp.matmul(hidden, w.T, precision=lax.Precision.HIGHEST)
    if bias is not None:
        x = x + lax.dynamic_slice_in_dim(bias, start, size, 0)
    if u.scale is not None:
        x = x * u.scale
    if u.cap is None:
        return x, None
    t = jnp.tanh(x / u.cap)
    return u.cap * t, t


def _fused_stats(cfg: _Cfg, u: _Unembed, hidden, weight, bias, labels, temp, base):
    """The statistics of every chunk of the unembedding, accumulated (a scan over whole chunks)."""
    carry = None
    if u.full:
        x, _ = _chunk_logits(u, hidden, weight, bias, 0, u.chunk)
        carry = _stats(cfg, x, labels, temp, base, None, False)

        def body(c, i):
            start = i * u.chunk
            x, _ = _chunk_logits(u, hidden, weight, bias, start, u.chunk)
            return _stats(cfg, x, labels, temp, base + start, c, True), None

        if u.full > 1:
            carry, _ = lax.scan(body, carry, jnp.arange(1, u.full, dtype=jnp.int32))
    if u.rem:
        start = u.full * u.chunk
        x, _ = _chunk_logits(u, hidden, weight, bias, start, u.rem)
        carry = _stats(cfg, x, labels, temp, base + start, carry, carry is not None)
    return carry


def _fused_grads(cfg: _Cfg, u: _Unembed, hidden, weight, bias, labels, temp, base, saved, g_cols, g_ent):
    """d hidden, d weight, d bias: each chunk recomputed, its gradient from the block backward, then
    the chain rule of the soft cap, the logit scale and the matmul."""
    acc = jnp.promote_types(hidden.dtype, jnp.float32)

    def chunk(start, size):
        x, t = _chunk_logits(u, hidden, weight, bias, start, size)
        g = _block_bwd(cfg, x, labels, temp, base + start, saved, g_cols, g_ent, True)
        if t is not None:
            g = g * (1 - t * t)
        if u.scale is not None:
            g = g * u.scale
        w = lax.dynamic_slice_in_dim(weight, start, size, 0)
        gh = jnp.matmul(g, w, precision=lax.Precision.HIGHEST, preferred_element_type=acc)
        gw = jnp.matmul(g.T, hidden, precision=lax.Precision.HIGHEST, preferred_element_type=acc)
        gb = None if bias is None else jnp.sum(g, axis=0, dtype=acc).astype(bias.dtype)
        return gh, gw.astype(weight.dtype), gb

    gh = jnp.zeros(hidden.shape, acc)
    gws, gbs = [], []
    if u.full:
        def body(gh, i):
            a, w, b = chunk(i * u.chunk, u.chunk)
            return gh + a, (w, b)

        axes = frozenset().union(*(_compat.vma(x) for x in (hidden, weight, bias, labels, temp, saved, g_cols, g_ent)
                                   if x is not None))
        gh, (w, b) = lax.scan(body, _compat.pvary(gh, axes), jnp.arange(u.full, dtype=jnp.int32))
        gws.append(w.reshape(u.full * u.chunk, -1))
        gbs.append(None if b is None else b.reshape(-1))
    if u.rem:
        a, w, b = chunk(u.full * u.chunk, u.rem)
        gh = gh + a
        gws.append(w)
        gbs.append(b)
    gw = gws[0] if len(gws) == 1 else jnp.concatenate(gws)
    gb = None if bias is None else (gbs[0] if len(gbs) == 1 else jnp.concatenate(gbs))
    return gh.astype(hidden.dtype), gw, gb


def _zeros_f0(x):
    return np.zeros(x.shape, dtype=jax.dtypes.float0)


@functools.lru_cache(maxsize=None)
def _fused_fn(cfg: _Cfg, u: _Unembed, axis_name):
    def forward(hidden, weight, bias, labels, temp, base):
        carry = _fused_stats(cfg, u, hidden, weight, bias, labels, temp, base)
        if axis_name is not None:
            carry = _combine(cfg, carry, axis_name)
        cols, ent, sq, saved = _finish(cfg, carry, labels, temp.dtype)
        return (cols, ent, sq), saved

    @jax.custom_vjp
    def op(hidden, weight, bias, labels, temp, base):
        return forward(hidden, weight, bias, labels, temp, base)[0]

    def op_fwd(hidden, weight, bias, labels, temp, base):
        outs, saved = forward(hidden, weight, bias, labels, temp, base)
        return outs, (hidden, weight, bias, labels, temp, base, saved)

    def op_bwd(res, cts):
        hidden, weight, bias, labels, temp, base, saved = res
        g_cols, g_ent, _ = cts  # the squared sum is not differentiated
        gh, gw, gb = _fused_grads(cfg, u, hidden, weight, bias, labels, temp, base, saved,
                                  g_cols.astype(temp.dtype), g_ent.astype(temp.dtype))
        return gh, gw, gb, _zeros_f0(labels), jnp.zeros_like(temp), _zeros_f0(base)

    op.defvjp(op_fwd, op_bwd)
    return op


# ------------------------------------------------------------------ helpers


def _temperature(temperature, n: int, dt):
    if temperature is None or isinstance(temperature, (int, float, np.number)):
        return jnp.full((n,), _static_float(pick(temperature, TOKEN.temperature), "temperature"), dt)
    t = jnp.asarray(temperature).astype(dt)
    _expect_shape(t, (n,), "temperature", "one per token")
    return t


def _head(k, vocab_topk):
    kk = _static_float(pick(k, TOKEN.k), "k")
    topk = _static_int(pick(vocab_topk, TOKEN.vocab_topk), "vocab_topk")
    if topk < 0:
        raise EraError(f"era_jax: vocab_topk must be >= 0 (0 = full vocabulary), got {topk}", "ERA_STATUS_INVALID_CONFIG")
    return kk, topk


def _opt_float(x, name: str) -> Optional[float]:
    return None if x is None else _static_float(x, name)


def _vocab(vocab_size: int, vocab_valid) -> int:
    valid = vocab_size if vocab_valid is None else _static_int(vocab_valid, "vocab_valid")
    if not 1 <= valid <= vocab_size:
        raise ValueError(f"era_jax: vocab_valid = {valid} must lie in [1, {vocab_size}] (the vocabulary's size)")
    return valid


# --------------------------------------------------------------- public API


def fused_token_columns(hidden, weight, labels, *, bias=None, logit_scale=None, softcap=None, temperature=None,
                        k=None, vocab_topk=None, chunk_size: int = 8192, sum_sq: bool = False, axis_name=None,
                        vocab_valid=None) -> TokenColumns:
    """:func:`era_jax.token_logprob_columns` of the logits ``hidden @ weight.T`` without ever
    forming them: the unembedding is computed ``chunk_size`` vocabulary entries at a time (XLA's
    matmul inside a ``lax.scan``) and each chunk folded into the library's per-token statistics
    (docs/math.md#vocabulary-blocks). The backward recomputes each chunk. Memory beyond the
    operands and their gradients: one ``[N, chunk_size]`` chunk (and its gradient) and ``O(N)``
    statistics; no ``[N, V]`` array.

    The logits are ``x = hidden @ weight.T + bias``, then ``x * logit_scale``, then (with a soft
    cap, as Gemma 2) ``softcap * tanh(x / softcap)``.

    Args:
      hidden: ``[N, H]`` float32, float64, bfloat16 or float16 (the final hidden states).
      weight: ``[V, H]``, the unembedding, in ``hidden``'s dtype. With ``axis_name``: this rank's
        rows of a vocabulary split evenly across the mesh axis (rank ``r`` holds rows
        ``[r*V, (r+1)*V)``).
      labels: ``[N]`` int32/int64 vocabulary indices; a negative label (-100) marks a token to
        ignore (columns 0, no column gradient).
      bias: ``[V]`` or None. logit_scale, softcap: numbers (static) or None.
      temperature: a number (static) or ``[N]`` (one per token); None: the library's default.
      k, vocab_topk: the head's scale factor and vocabulary top-K (static; None: defaults).
      chunk_size: vocabulary entries per chunk (static); it need not divide ``V``.
      sum_sq: also return ``sum_i p_i^2`` (not differentiated).
      axis_name: inside ``shard_map``, the mesh axis the vocabulary (``weight``'s rows) is split
        over; the statistics are merged across it before the finish, and ``d hidden`` is summed
        over it by JAX's transpose.
      vocab_valid: the real vocabulary entries (the rest are padding rows of ``weight``, never
        read); None: all of them.

    Returns:
      :class:`era_jax.TokenColumns` (``columns [N, 3]``, ``entropy [N]``, ``sum_sq`` or None),
      float64 for float64 inputs, float32 otherwise; ``columns`` and ``entropy`` differentiable
      with respect to ``hidden``, ``weight`` and ``bias``.
    """
    native.register_targets()
    hidden = _float_array(hidden, "hidden", _LOGIT_DTYPES, min_rank=2)
    if hidden.ndim != 2:
        raise ValueError(f"era_jax: hidden must be [N, H], got shape {hidden.shape}")
    n, width = hidden.shape
    weight = jnp.asarray(weight)
    if weight.ndim != 2 or weight.shape[1] != width or weight.dtype != hidden.dtype:
        raise ValueError(f"era_jax: weight must be [V, {width}] of dtype {hidden.dtype}, got {weight.shape} "
                         f"{weight.dtype}")
    vocab = int(weight.shape[0])
    if bias is not None:
        bias = jnp.asarray(bias).astype(hidden.dtype)
        _expect_shape(bias, (vocab,), "bias", "one per row of weight")
    labels = _index_array(labels, "labels")
    _expect_shape(labels, (n,), "labels", "one per row of hidden")
    dt = jnp.float64 if hidden.dtype == np.float64 else jnp.float32
    temp = _temperature(temperature, n, dt)
    kk, topk = _head(k, vocab_topk)
    chunk = _static_int(chunk_size, "chunk_size")
    if chunk < 1:
        raise ValueError(f"era_jax: chunk_size must be >= 1, got {chunk}")
    chunk = min(chunk, vocab)
    u = _Unembed(chunk, vocab // chunk, vocab % chunk, _opt_float(logit_scale, "logit_scale"),
                 _opt_float(softcap, "softcap"))
    if axis_name is None:
        total, base = vocab, jnp.int32(0)
    else:
        total = vocab * _axis_size(axis_name)
        base = (lax.axis_index(axis_name) * vocab).astype(jnp.int32)
    cfg = _Cfg(kk, topk, total, _vocab(total, vocab_valid), bool(sum_sq))
    # the differentiated operands vary alike, outside the custom_vjp: JAX then sums the
    # gradient of an operand that did not vary (hidden across vocabulary ranks) over the ranks
    if bias is None:
        hidden, weight = _compat.match_vma(hidden, weight)
    else:
        hidden, weight, bias = _compat.match_vma(hidden, weight, bias)
    cols, ent, sq = _fused_fn(cfg, u, axis_name)(hidden, weight, bias, labels, temp, base)
    return TokenColumns(cols, ent, sq if sum_sq else None)


@functools.lru_cache(maxsize=None)
def _sharded_fn(cfg: _Cfg, axis_name):
    def forward(logits, labels, temp, offset):
        carry = _combine(cfg, _stats(cfg, logits, labels, temp, offset, None, False), axis_name)
        cols, ent, sq, saved = _finish(cfg, carry, labels, temp.dtype)
        return (cols, ent, sq), saved

    @jax.custom_vjp
    def op(logits, labels, temp, offset):
        return forward(logits, labels, temp, offset)[0]

    def op_fwd(logits, labels, temp, offset):
        outs, saved = forward(logits, labels, temp, offset)
        return outs, (logits, labels, temp, offset, saved)

    def op_bwd(res, cts):  # no collective: each rank's gradient from its own block
        logits, labels, temp, offset, saved = res
        g_cols, g_ent, _ = cts
        g = _block_bwd(cfg, logits, labels, temp, offset, saved, g_cols.astype(temp.dtype),
                       g_ent.astype(temp.dtype), False)
        return g, _zeros_f0(labels), jnp.zeros_like(temp), _zeros_f0(offset)

    op.defvjp(op_fwd, op_bwd)
    return op


def token_logprob_columns_sharded(logits_shard, labels, *, axis_name, vocab_offset=None, vocab_size=None,
                                  vocab_valid=None, temperature=None, k=None, vocab_topk=None,
                                  sum_sq: bool = False) -> TokenColumns:
    """:func:`era_jax.token_logprob_columns` over a vocabulary split across the mesh axis
    ``axis_name``, called inside ``shard_map`` with this rank's slice of the logits
    (docs/math.md#vocabulary-blocks): the block pass over the slice, the statistics merged
    across the axis (max-reduction, rebase, sum-reduction; with a top-K a gather of the
    candidates), then the finish, the same on every rank. The backward gives each rank the
    gradient of its own slice, without communication.

    Args:
      logits_shard: ``[N, V_shard]`` float32, float64, bfloat16 or float16: the logits of
        vocabulary entries ``[vocab_offset, vocab_offset + V_shard)``.
      labels: ``[N]`` int32/int64 indices into the whole vocabulary (negative: ignored).
      axis_name: the mesh axis the vocabulary is split over.
      vocab_offset: this slice's first vocabulary index (an int or a traced scalar); None:
        ``lax.axis_index(axis_name) * V_shard`` (even slices in rank order).
      vocab_size: the whole vocabulary's size; None: ``V_shard`` times the axis size.
      vocab_valid: the real entries (the indices ``>= vocab_valid`` are padding, never read);
        None: ``vocab_size``.
      temperature, k, vocab_topk, sum_sq: as in :func:`era_jax.token_logprob_columns`.

    Returns:
      :class:`era_jax.TokenColumns` for the whole vocabulary, not varying along ``axis_name``;
      ``columns`` and ``entropy`` differentiable with respect to ``logits_shard``.
    """
    native.register_targets()
    logits = _float_array(logits_shard, "logits_shard", _LOGIT_DTYPES, min_rank=2)
    if logits.ndim != 2:
        raise ValueError(f"era_jax: logits_shard must be [N, V_shard], got shape {logits.shape}")
    n, width = logits.shape
    labels = _index_array(labels, "labels")
    _expect_shape(labels, (n,), "labels", "one per row of logits_shard")
    dt = jnp.float64 if logits.dtype == np.float64 else jnp.float32
    temp = _temperature(temperature, n, dt)
    kk, topk = _head(k, vocab_topk)
    total = width * _axis_size(axis_name) if vocab_size is None else _static_int(vocab_size, "vocab_size")
    if vocab_offset is None:
        offset = (lax.axis_index(axis_name) * width).astype(jnp.int32)
    else:
        offset = jnp.asarray(vocab_offset).astype(jnp.int32)
    cfg = _Cfg(kk, topk, total, _vocab(total, vocab_valid), bool(sum_sq))
    cols, ent, sq = _sharded_fn(cfg, axis_name)(logits, labels, temp, offset)
    return TokenColumns(cols, ent, sq if sum_sq else None)


def vocab_sharded_token_columns(logits, labels, *, mesh, axis_name, temperature=None, vocab_valid=None, k=None,
                                vocab_topk=None, sum_sq: bool = False) -> TokenColumns:
    """:func:`era_jax.token_logprob_columns` of ``logits`` ``[N, V]`` whose vocabulary axis is split
    over the mesh axis ``axis_name`` (``NamedSharding(mesh, P(None, axis_name))``): a ``shard_map``
    of :func:`token_logprob_columns_sharded`, so that no device gathers the whole rows. ``labels``
    and ``temperature`` (a number or ``[N]``) are replicated; the results are replicated.
    ``V`` must be a multiple of the axis size; ``vocab_valid`` as in
    :func:`token_logprob_columns_sharded`.
    """
    from jax.sharding import PartitionSpec as P

    logits = jnp.asarray(logits)
    n = logits.shape[0]
    dt = jnp.float64 if logits.dtype == np.float64 else jnp.float32
    temp = _temperature(temperature, n, dt)

    def body(l, y, t):
        c = token_logprob_columns_sharded(l, y, axis_name=axis_name, vocab_valid=vocab_valid, temperature=t, k=k,
                                          vocab_topk=vocab_topk, sum_sq=sum_sq)
        return c.columns, c.entropy, (c.sum_sq if sum_sq else jnp.zeros_like(c.entropy))

    f = _compat.shard_map(body, mesh=mesh, in_specs=(P(None, axis_name), P(), P()), out_specs=(P(), P(), P()))
    cols, ent, sq = f(logits, labels, temp)
    return TokenColumns(cols, ent, sq if sum_sq else None)
