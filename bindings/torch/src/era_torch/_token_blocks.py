"""The token head over logits that are never whole (docs/math.md#vocabulary-blocks).

- :func:`fused_token_columns`: the split forward's outputs (the label's log-prob at the
  three scales, the entropy, optionally the sum of squared probabilities) straight from the
  hidden states ``[N, H]`` and the unembedding weight ``[V, H]``: the logits are computed a
  vocabulary chunk at a time with PyTorch's own matmul, each chunk folded into the library's
  per-token statistics (``era_token_block_stats``), and in the backward each chunk is
  recomputed, its gradient taken from the library in place (``era_token_block_backward``) and
  the two gradient matmuls accumulated. ``[N, V]`` is never allocated.
- :func:`sharded_token_logprob_columns`: the same for logits whose vocabulary is split across
  the ranks of a process group (Megatron-style tensor parallelism): each rank passes its
  slice, the statistics are merged with two collectives of ``O(N)`` floats (a max and a sum)
  and, with a vocabulary top-K, one gather of ``N x K`` candidates; the backward has none.
  :func:`fused_token_columns` takes ``group=`` too, for a vocabulary-sharded weight.

The scale decision is :func:`era_torch.token_decide`'s, on the returned entropies. No math
here beyond the chain rule of the matmul, the logit scale and the soft cap: the library
computes the head.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from . import _native as native
from ._defaults import TOKEN, pick
from ._native import EraError
from ._token import _token_head
from ._token_split import TokenColumns

__all__ = ["fused_token_columns", "sharded_token_logprob_columns"]

_STATS_ROWS = 9
_SAVED = 8


def _cfg(k, vocab_topk, t_scalar):
    return (float(pick(k, TOKEN.k)), float(TOKEN.omega_low), float(TOKEN.omega_high), float(TOKEN.top_fraction),
            float(t_scalar), bool(TOKEN.advantage_scaling), int(pick(vocab_topk, TOKEN.vocab_topk)))


def _topk_width(cfg, vocab_valid: int) -> int:
    """The head's effective vocabulary top-K for ``vocab_valid`` real entries (0: none)."""
    kk = cfg[6]
    return kk if 0 < kk < vocab_valid else 0


class _Blocks:
    """The per-token state of a blocked forward: statistics ``[9, N]`` and, with a top-K,
    the candidates ``[N, K]`` (float64 values, int64 indices)."""

    def __init__(self, n: int, kk: int, device):
        self.stats = torch.empty((_STATS_ROWS, n), dtype=torch.float64, device=device)
        self.tv = torch.empty((n, kk), dtype=torch.float64, device=device) if kk else None
        self.ti = torch.empty((n, kk), dtype=torch.int64, device=device) if kk else None
        self.kk = kk

    def fold(self, head, logits, labels, temperature, offset, vocab_size, vocab_valid, accumulate):
        native.call("token_block_stats", head, logits, labels, temperature, self.stats, self.tv, self.ti,
                    scalars=(3, int(offset), int(vocab_size), int(vocab_valid), int(bool(accumulate))))

    def reduce(self, head, group):
        """Merges the ranks' statistics: a max of row 8, a rebase, a sum of rows 0-7, and a
        gather of the candidates (three collectives with a top-K, two without)."""
        import torch.distributed as dist

        gmax = self.stats[8].clone()
        dist.all_reduce(gmax, op=dist.ReduceOp.MAX, group=group)
        native.call("token_stats_rebase", head, self.stats, gmax)
        dist.all_reduce(self.stats[:8], op=dist.ReduceOp.SUM, group=group)
        if not self.kk:
            return
        packed = torch.cat([self.tv, self.ti.to(torch.float64)], dim=1)  # indices < 2^53: exact
        parts = [torch.empty_like(packed) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, packed, group=group)
        kk = self.kk
        self.tv = parts[0][:, :kk].contiguous()
        self.ti = parts[0][:, kk:].to(torch.int64)
        # the statistics are reduced already: the merge sees zero statistics on both sides
        # and merges the candidates alone
        zeros = torch.zeros((_STATS_ROWS, packed.shape[0]), dtype=torch.float64, device=packed.device)
        for p in parts[1:]:
            ov, oi = p[:, :kk].contiguous(), p[:, kk:].to(torch.int64)
            native.call("token_stats_merge", head, zeros, zeros.clone(), self.tv, self.ti, ov, oi)

    def finish(self, head, labels, vocab_valid, out_dtype, sum_sq: bool):
        n = self.stats.shape[1]
        dev = self.stats.device
        cols = torch.empty((n, 3), dtype=out_dtype, device=dev)
        ent = torch.empty((n,), dtype=out_dtype, device=dev)
        sq = torch.empty((n,), dtype=out_dtype, device=dev) if sum_sq else None
        saved = torch.empty((n, _SAVED), dtype=torch.float64, device=dev)
        native.call("token_block_finish", head, self.stats, self.tv, self.ti, labels, cols, ent, sq, saved,
                    scalars=(4, int(vocab_valid)))
        return cols, ent, sq, saved


def _grads(g_cols, g_ent, n, dt, device):
    g_cols = torch.zeros((n, 3), dtype=dt, device=device) if g_cols is None else g_cols.to(dt).contiguous()
    g_ent = torch.zeros((n,), dtype=dt, device=device) if g_ent is None else g_ent.to(dt).contiguous()
    return g_cols, g_ent


def _out_dtype(t: Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _temperature(temperature, n: int, dt, device):
    """(per-token tensor or None, scalar) from a float, None or a tensor of N entries."""
    if isinstance(temperature, Tensor):
        if temperature.numel() != n:
            raise EraError(f"era_torch: temperature has {temperature.numel()} entries; expected a scalar or one per "
                           f"token ({n})", "ERA_STATUS_INVALID_SHAPE")
        return temperature.reshape(n).to(dtype=dt, device=device), float(TOKEN.temperature)
    return None, float(pick(temperature, TOKEN.temperature))


def _place(group, local: int, vocab_offset, vocab_size, vocab_valid):
    """The local slice's offset, the whole vocabulary and its real part (equal slices by
    default: rank r holds rows ``[r*local, (r+1)*local)``)."""
    if group is None:
        off, size = pick(vocab_offset, 0), pick(vocab_size, local)
    else:
        import torch.distributed as dist

        rank, world = dist.get_rank(group), dist.get_world_size(group)
        off, size = pick(vocab_offset, rank * local), pick(vocab_size, world * local)
    return int(off), int(size), int(pick(vocab_valid, size))


# ------------------------------------------------------------------ sharded logits


class _Sharded(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, labels, temperature, cfg, place, group, sum_sq):
        head = _token_head(*cfg)
        off, size, valid = place
        n = labels.numel()
        blocks = _Blocks(n, _topk_width(cfg, valid), logits.device)
        blocks.fold(head, logits, labels, temperature, off, size, valid, False)
        if group is not None:
            blocks.reduce(head, group)
        cols, ent, sq, saved = blocks.finish(head, labels, valid, _out_dtype(logits), sum_sq)
        ctx.save_for_backward(logits, labels, temperature, saved)
        ctx.cfg, ctx.place = cfg, place
        if sq is not None:
            ctx.mark_non_differentiable(sq)
        return cols, ent, sq

    @staticmethod
    def backward(ctx, g_cols, g_ent, g_sq):
        logits, labels, temperature, saved = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return (None,) * 7
        off, size, valid = ctx.place
        g_cols, g_ent = _grads(g_cols, g_ent, labels.numel(), _out_dtype(logits), logits.device)
        grad = torch.empty_like(logits)
        native.call("token_block_backward", _token_head(*ctx.cfg), logits, labels, temperature, saved, g_cols, g_ent,
                    grad, scalars=(3, off, size, valid))
        return (grad,) + (None,) * 6


def sharded_token_logprob_columns(
    logits: Tensor,
    labels: Tensor,
    *,
    group=None,
    vocab_offset: Optional[int] = None,
    vocab_size: Optional[int] = None,
    vocab_valid: Optional[int] = None,
    temperature=None,
    k=None,
    vocab_topk=None,
    sum_sq: bool = False,
) -> TokenColumns:
    """:func:`era_torch.token_logprob_columns` over logits whose vocabulary is split across
    the ranks of ``group`` (docs/math.md#vocabulary-blocks).

    Args:
      logits: ``[N, V_local]`` this rank's columns of the vocabulary (any float dtype the
        library reads); every rank holds the same N tokens.
      labels: ``[N]`` int token ids in the whole vocabulary (negative: ignored).
      group: a ``torch.distributed`` process group (gloo on CPU, NCCL on GPUs); None: one
        process (the blocks are then only a way to pass a padded vocabulary).
      vocab_offset, vocab_size: this slice's first index and the whole vocabulary; default
        equal slices, rank ``r`` holding ``[r*V_local, (r+1)*V_local)``.
      vocab_valid: entries at indices ``>= vocab_valid`` are padding (Megatron pads the
        vocabulary to a multiple of the ranks), never read; default ``vocab_size``.
      temperature, k, vocab_topk, sum_sq: as in :func:`era_torch.token_logprob_columns`.

    Returns:
      :class:`era_torch.TokenColumns` on every rank (the same values): ``columns [N, 3]`` and
      ``entropy [N]`` differentiable w.r.t. this rank's ``logits``. The forward makes two
      collectives of ``O(N)`` floats, and a third (a gather of ``N x K`` candidates) with a
      vocabulary top-K; the backward makes none.
    """
    if logits.dim() != 2:
        raise EraError(f"era_torch: logits must be [N, V_local], got {tuple(logits.shape)}", "ERA_STATUS_INVALID_SHAPE")
    n = logits.shape[0]
    t_tensor, t_scalar = _temperature(temperature, n, _out_dtype(logits), logits.device)
    cfg = _cfg(k, vocab_topk, t_scalar)
    place = _place(group, logits.shape[1], vocab_offset, vocab_size, vocab_valid)
    cols, ent, sq = _Sharded.apply(logits, labels.reshape(n), t_tensor, cfg, place, group, bool(sum_sq))
    return TokenColumns(cols, ent, sq)


# ------------------------------------------------------------------ fused unembedding


def _chunk_logits(hidden, weight, bias, c0, c1, logit_scale, softcap):
    """One vocabulary chunk of the logits, and ``tanh`` of the soft cap (None without one)."""
    z = hidden @ weight[c0:c1].T
    if bias is not None:
        z = z + bias[c0:c1]
    if logit_scale is not None:
        z = z * logit_scale
    if softcap is None:
        return z, None
    t = torch.tanh(z / softcap)
    return t * softcap, t


class _Fused(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, labels, temperature, cfg, opts):
        chunk, logit_scale, softcap, place, group, reduce_grad, sum_sq = opts
        head = _token_head(*cfg)
        off, size, valid = place
        n, local = hidden.shape[0], weight.shape[0]
        blocks = _Blocks(n, _topk_width(cfg, valid), hidden.device)
        with torch.no_grad():
            for c0 in range(0, local, chunk):
                c1 = min(c0 + chunk, local)
                z, _ = _chunk_logits(hidden, weight, bias, c0, c1, logit_scale, softcap)
                blocks.fold(head, z, labels, temperature, off + c0, size, valid, c0 > 0)
                del z
            if group is not None:
                blocks.reduce(head, group)
        cols, ent, sq, saved = blocks.finish(head, labels, valid, _out_dtype(hidden), sum_sq)
        ctx.save_for_backward(hidden, weight, bias, labels, temperature, saved)
        ctx.cfg, ctx.opts = cfg, opts
        if sq is not None:
            ctx.mark_non_differentiable(sq)
        return cols, ent, sq

    @staticmethod
    def backward(ctx, g_cols, g_ent, g_sq):
        hidden, weight, bias, labels, temperature, saved = ctx.saved_tensors
        chunk, logit_scale, softcap, place, group, reduce_grad, _ = ctx.opts
        off, size, valid = place
        head = _token_head(*ctx.cfg)
        n, local = hidden.shape[0], weight.shape[0]
        g_cols, g_ent = _grads(g_cols, g_ent, n, _out_dtype(hidden), hidden.device)
        want_h, want_w, want_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        d_hidden = torch.zeros_like(hidden) if want_h else None
        d_weight = torch.zeros_like(weight) if want_w else None
        d_bias = torch.zeros_like(bias) if (want_b and bias is not None) else None
        with torch.no_grad():
            for c0 in range(0, local, chunk):
                c1 = min(c0 + chunk, local)
                z, t = _chunk_logits(hidden, weight, bias, c0, c1, logit_scale, softcap)
                z = z.contiguous()
                # the chunk is a temporary: its gradient is written over it
                native.call("token_block_backward", head, z, labels, temperature, saved, g_cols, g_ent, z,
                            scalars=(3, off + c0, size, valid))
                if t is not None:
                    z = z * (1 - t * t)
                if logit_scale is not None:
                    z = z * logit_scale
                if d_hidden is not None:
                    d_hidden.addmm_(z, weight[c0:c1])
                if d_weight is not None:
                    d_weight[c0:c1] = z.T @ hidden
                if d_bias is not None:
                    d_bias[c0:c1] = z.sum(0)
                del z, t
        if d_hidden is not None and group is not None and reduce_grad:
            import torch.distributed as dist

            dist.all_reduce(d_hidden, op=dist.ReduceOp.SUM, group=group)
        return d_hidden, d_weight, d_bias, None, None, None, None


def fused_token_columns(
    hidden: Tensor,
    weight: Tensor,
    labels: Tensor,
    *,
    bias: Optional[Tensor] = None,
    logit_scale: Optional[float] = None,
    softcap: Optional[float] = None,
    temperature=None,
    k=None,
    vocab_topk=None,
    chunk_size: int = 8192,
    sum_sq: bool = False,
    group=None,
    vocab_offset: Optional[int] = None,
    vocab_size: Optional[int] = None,
    vocab_valid: Optional[int] = None,
    reduce_hidden_grad: bool = True,
) -> TokenColumns:
    """The split token forward from hidden states and the unembedding weight, the logits
    computed a vocabulary chunk at a time and never whole (docs/math.md#vocabulary-blocks).

    The logits are ``softcap * tanh(z / softcap)`` (with a soft cap, as Gemma 2) of
    ``z = (hidden @ weight.T + bias) * logit_scale``; each ``[N, chunk_size]`` chunk is made
    by PyTorch's matmul (cuBLAS on GPUs, the CPU BLAS here), folded into the library's
    per-token statistics and freed. The backward recomputes each chunk, takes its gradient
    from the library over it (in place) and accumulates ``d hidden += g @ W_chunk`` and
    ``d W_chunk = g^T @ hidden``. Extra memory: one or two chunks and ``O(N)`` statistics.

    Args:
      hidden: ``[..., H]`` the last hidden states (the tokens whose labels are given).
      weight: ``[V, H]`` the unembedding (``lm_head.weight``), or this rank's rows with ``group``.
      labels: ``[...]`` int token ids (negative: ignored, as -100).
      bias, logit_scale, softcap: where the model has them (``[V]``, a float, a float).
      temperature, k, vocab_topk, sum_sq: as in :func:`era_torch.token_logprob_columns`.
      chunk_size: vocabulary entries per chunk (TRL's fused head uses 32768; smaller chunks
        use less memory, larger ones make fewer, larger matmuls).
      group, vocab_offset, vocab_size, vocab_valid: a vocabulary-sharded weight, as in
        :func:`sharded_token_logprob_columns`.
      reduce_hidden_grad: with ``group``, all-reduce the gradient of ``hidden`` (each rank
        computes its vocabulary slice's part). Pass False where the framework's
        column-parallel layer reduces it in its own backward (Megatron's copy-to-region).

    Returns:
      :class:`era_torch.TokenColumns`: ``columns [..., 3]`` and ``entropy [...]``
      differentiable w.r.t. ``hidden``, ``weight`` and ``bias``; ``sum_sq`` when asked for.
    """
    if hidden.dim() < 1 or weight.dim() != 2 or hidden.shape[-1] != weight.shape[1]:
        raise EraError(f"era_torch: hidden [..., H] and weight [V, H] expected, got {tuple(hidden.shape)} and "
                       f"{tuple(weight.shape)}", "ERA_STATUS_INVALID_SHAPE")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise EraError(f"era_torch: bias has shape {tuple(bias.shape)}; expected ({weight.shape[0]},)",
                       "ERA_STATUS_INVALID_SHAPE")
    if int(chunk_size) < 1:
        raise EraError(f"era_torch: chunk_size must be >= 1, got {chunk_size}", "ERA_STATUS_INVALID_ARGUMENT")
    if softcap is not None and not float(softcap) > 0:
        raise EraError(f"era_torch: softcap must be > 0, got {softcap}", "ERA_STATUS_INVALID_ARGUMENT")
    batch = hidden.shape[:-1]
    h2 = hidden.reshape(-1, hidden.shape[-1])
    n = h2.shape[0]
    if labels.numel() != n:
        raise EraError(f"era_torch: labels has {labels.numel()} entries; hidden has {n} tokens",
                       "ERA_STATUS_INVALID_SHAPE")
    t_tensor, t_scalar = _temperature(temperature, n, _out_dtype(hidden), hidden.device)
    cfg = _cfg(k, vocab_topk, t_scalar)
    place = _place(group, weight.shape[0], vocab_offset, vocab_size, vocab_valid)
    opts = (int(chunk_size), None if logit_scale is None else float(logit_scale),
            None if softcap is None else float(softcap), place, group, bool(reduce_hidden_grad), bool(sum_sq))
    cols, ent, sq = _Fused.apply(h2, weight, bias, labels.reshape(n), t_tensor, cfg, opts)
    return TokenColumns(cols.reshape(batch + (3,)), ent.reshape(batch), None if sq is None else sq.reshape(batch))
