"""The split token forward (docs/math.md#split-token-forward) and the per-token
temperature as ``torch.library`` custom ops, with fake implementations for
``torch.compile`` and autograd through the library's backward.

- :func:`token_logprob_columns`: per token, in one read of its logits row, the label's
  log-prob at the three scales the token head may choose (``c = 1, k, 1/k``), the
  entropy and, when asked, the sum of squared probabilities (``era_token_logprob_columns``).
  The columns and the entropy are differentiable (``era_token_columns_backward``).
- :func:`token_decide`: the scale decision from per-token tensors alone
  (``era_token_decide``), for a loss function that never sees the logits; its ``logprobs``
  is the column the scale selects, differentiable w.r.t. the columns.
- :func:`token_outputs` / :func:`token_logprobs` with a temperature tensor go through
  ``era_token_forward_temperature`` / ``era_token_backward_temperature``.

Given the same inputs, ``token_decide(token_logprob_columns(...))`` and the one-call
:func:`era_torch.token_outputs` give the same bits. No math here: the library computes,
this module allocates, describes and routes gradients.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from . import _native as native
from ._defaults import TOKEN, pick
from ._native import EraError
from ._ops import _FirstOrder, _new
from ._token import _TOKEN_CFG, _can_write_in_place, _token_head

__all__ = ["TokenColumns", "TokenDecision", "token_decide", "token_logprob_columns"]


class TokenColumns(NamedTuple):
    """The outputs of :func:`token_logprob_columns`."""

    columns: Tensor  # [..., 3]: the label's log-prob at c = 1, k, 1/k
    entropy: Tensor  # [...]: H(softmax(logits / T)) over the full vocabulary
    sum_sq: Optional[Tensor]  # [...]: sum of squared probabilities (None unless asked for)


class TokenDecision(NamedTuple):
    """The outputs of :func:`token_decide`, each ``[...]``."""

    logprobs: Optional[Tensor]  # the selected column (None without columns); 0 for masked tokens
    scale: Tensor  # c in {k, 1, 1/k}
    advantages: Tensor  # A / c with advantage scaling, else A
    response_entropy: Tensor  # the response's top-rho mean entropy (0 for masked tokens)
    column: Tensor  # int64 index of the chosen column (0 for c = 1, 1 for k, 2 for 1/k)


def _out_dtype(logits: Tensor) -> torch.dtype:
    return torch.float64 if logits.dtype == torch.float64 else torch.float32


# ------------------------------------------------------------------ columns


@torch.library.custom_op("era::token_columns", mutates_args=())
def _columns_fwd(
    logits: Tensor,
    labels: Tensor,
    temperature: Optional[Tensor],
    k: float,
    omega_low: float,
    omega_high: float,
    top_fraction: float,
    temperature_scalar: float,
    advantage_scaling: bool,
    vocab_topk: int,
    want_sum_sq: bool,
) -> Tuple[Tensor, Tensor, Tensor]:
    head = _token_head(k, omega_low, omega_high, top_fraction, temperature_scalar, advantage_scaling, vocab_topk)
    dt = _out_dtype(logits)
    cols = _new(tuple(logits.shape[:-1]) + (3,), dt, logits)
    ent = _new(logits.shape[:-1], dt, logits)
    sq = _new(logits.shape[:-1] if want_sum_sq else (0,), dt, logits)
    native.call("token_logprob_columns", head, logits, labels, temperature, cols, ent, sq if want_sum_sq else None)
    return cols, ent, sq


@_columns_fwd.register_fake
def _(logits, labels, temperature, k, omega_low, omega_high, top_fraction, temperature_scalar, scaling, topk, want):
    dt = _out_dtype(logits)
    batch = tuple(logits.shape[:-1])
    return (logits.new_empty(batch + (3,), dtype=dt), logits.new_empty(batch, dtype=dt),
            logits.new_empty(batch if want else (0,), dtype=dt))


@torch.library.custom_op("era::token_columns_backward", mutates_args=())
def _columns_bwd(
    logits: Tensor,
    labels: Tensor,
    temperature: Optional[Tensor],
    grad_columns: Tensor,
    grad_entropy: Tensor,
    k: float,
    omega_low: float,
    omega_high: float,
    top_fraction: float,
    temperature_scalar: float,
    advantage_scaling: bool,
    vocab_topk: int,
) -> Tensor:
    head = _token_head(k, omega_low, omega_high, top_fraction, temperature_scalar, advantage_scaling, vocab_topk)
    grad = _new(logits.shape, logits.dtype, logits)
    native.call("token_columns_backward", head, logits, labels, temperature, grad_columns, grad_entropy, grad)
    return grad


@_columns_bwd.register_fake
def _(logits, labels, temperature, grad_columns, grad_entropy, *cfg):
    return logits.new_empty(logits.shape)


@torch.library.custom_op(
    "era::token_columns_backward_",
    mutates_args=("logits",),
    schema="(Tensor(a!) logits, Tensor labels, Tensor? temperature, Tensor grad_columns, Tensor grad_entropy, "
    "float k, float omega_low, float omega_high, float top_fraction, float temperature_scalar, "
    "bool advantage_scaling, int vocab_topk) -> ()",
)
def _columns_bwd_inplace(logits, labels, temperature, grad_columns, grad_entropy, *cfg) -> None:
    """The columns' backward written over ``logits`` (CPU)."""
    head = _token_head(*cfg)
    native.call("token_columns_backward", head, logits, labels, temperature, grad_columns, grad_entropy, logits)


@_columns_bwd_inplace.register_fake
def _(logits, labels, temperature, grad_columns, grad_entropy, *cfg):
    return None


class _ColumnsBackward(_FirstOrder):
    @staticmethod
    def forward(logits, labels, temperature, grad_columns, grad_entropy, *cfg):
        return _columns_bwd(logits, labels, temperature, grad_columns, grad_entropy, *cfg)


class _Columns(torch.autograd.Function):
    """The columns with the library's backward (and ``inplace_backward``)."""

    @staticmethod
    def forward(logits, labels, temperature, *cfg_want_inplace):
        return _columns_fwd(logits, labels, temperature, *cfg_want_inplace[:_TOKEN_CFG + 1])

    @staticmethod
    def setup_context(ctx, inputs, output):
        logits, labels, temperature = inputs[:3]
        ctx.save_for_backward(logits, labels, temperature)
        ctx.cfg = tuple(inputs[3:3 + _TOKEN_CFG])
        ctx.inplace = bool(inputs[4 + _TOKEN_CFG])
        ctx.mark_non_differentiable(output[2])

    @staticmethod
    def backward(ctx, g_cols, g_ent, g_sq):
        logits, labels, temperature = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return (None,) * (5 + _TOKEN_CFG)
        dt = _out_dtype(logits)
        g_cols = (torch.zeros(tuple(logits.shape[:-1]) + (3,), dtype=dt, device=logits.device) if g_cols is None
                  else g_cols.to(dt).contiguous())
        g_ent = (torch.zeros(logits.shape[:-1], dtype=dt, device=logits.device) if g_ent is None
                 else g_ent.to(dt).contiguous())
        if ctx.inplace and _can_write_in_place(logits):
            _columns_bwd_inplace(logits, labels, temperature, g_cols, g_ent, *ctx.cfg)
            g_logits = logits
        else:
            g_logits = _ColumnsBackward.apply(logits, labels, temperature, g_cols, g_ent, *ctx.cfg)
        return (g_logits,) + (None,) * (4 + _TOKEN_CFG)


def _temperature_args(logits: Tensor, temperature):
    """(tensor or None, scalar) from a float, None or a per-token tensor."""
    if isinstance(temperature, Tensor):
        if temperature.shape != logits.shape[:-1]:
            if temperature.numel() == logits.shape[:-1].numel():
                temperature = temperature.reshape(logits.shape[:-1])
            else:
                raise EraError(
                    f"era_torch: temperature has shape {tuple(temperature.shape)}; expected a scalar or one per "
                    f"token {tuple(logits.shape[:-1])}", "ERA_STATUS_INVALID_SHAPE")
        return temperature.to(dtype=_out_dtype(logits), device=logits.device), float(TOKEN.temperature)
    return None, float(pick(temperature, TOKEN.temperature))


def token_logprob_columns(
    logits: Tensor,
    labels: Tensor,
    *,
    temperature=None,
    k=None,
    vocab_topk=None,
    sum_sq: bool = False,
    inplace_backward: bool = False,
) -> TokenColumns:
    """The label's log-prob at the three scales of the ERA token head, the entropy and the
    sum of squared probabilities, per token, in one read of the logits
    (docs/math.md#split-token-forward).

    Args:
      logits: ``[..., V]`` (float32, float64, bfloat16, float16; any layout), before
        division by the temperature.
      labels: ``[...]`` int32/int64 token ids; a negative label (e.g. -100) marks a token to
        ignore (its columns are 0).
      temperature: a float (every token) or a tensor ``[...]`` (one per token, as verl 0.8+
        samples each prompt at its own temperature); None: the library's default (1).
      k: the head's scale factor (the recipe's ``era_k``); None: the library's default.
      vocab_topk: restrict the log-probs to the K largest logits (the recipe's 20); 0 or
        None: the full vocabulary. The entropy always uses the full vocabulary.
      sum_sq: also return ``sum_i p_i^2`` (free with ``k = 2``).
      inplace_backward: write the gradient over ``logits`` in the backward (CPU), as
        :func:`era_torch.token_logprobs` does.

    Returns:
      :class:`TokenColumns`: ``columns [..., 3]`` (log-probs at ``c = 1, k, 1/k``) and
      ``entropy [...]``, both differentiable w.r.t. ``logits``, and ``sum_sq`` (not
      differentiable; None unless asked for). float64 for float64 logits, float32 otherwise.
    """
    if not isinstance(inplace_backward, bool):
        raise TypeError(f"era_torch: inplace_backward must be True or False, got {inplace_backward!r}")
    if logits.dim() < 2:
        raise EraError(f"era_torch: logits must be [..., V] with at least one token axis, got {tuple(logits.shape)}",
                       "ERA_STATUS_INVALID_SHAPE")
    t_tensor, t_scalar = _temperature_args(logits, temperature)
    cfg = (float(pick(k, TOKEN.k)), float(TOKEN.omega_low), float(TOKEN.omega_high), float(TOKEN.top_fraction),
           t_scalar, bool(TOKEN.advantage_scaling), int(pick(vocab_topk, TOKEN.vocab_topk)))
    cols, ent, sq = _Columns.apply(logits, labels, t_tensor, *cfg, bool(sum_sq), inplace_backward)
    return TokenColumns(cols, ent, sq if sum_sq else None)


# ------------------------------------------------------------------ decision


@torch.library.custom_op("era::token_decide", mutates_args=())
def _decide(
    entropy: Tensor,
    response_ids: Tensor,
    advantages: Tensor,
    k: float,
    omega_low: float,
    omega_high: float,
    top_fraction: float,
    temperature_scalar: float,
    advantage_scaling: bool,
    vocab_topk: int,
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    head = _token_head(k, omega_low, omega_high, top_fraction, temperature_scalar, advantage_scaling, vocab_topk)
    scale, adv, hresp = (_new(entropy.shape, entropy.dtype, entropy) for _ in range(3))
    column = _new(entropy.shape, torch.int64, entropy)
    native.call("token_decide", head, entropy, response_ids, advantages, None, None, scale, adv, hresp, column)
    return scale, adv, hresp, column


@_decide.register_fake
def _(entropy, response_ids, advantages, *cfg):
    return (entropy.new_empty(entropy.shape), entropy.new_empty(entropy.shape), entropy.new_empty(entropy.shape),
            entropy.new_empty(entropy.shape, dtype=torch.int64))


def token_decide(
    entropy: Tensor,
    response_ids: Tensor,
    advantages: Tensor,
    columns: Optional[Tensor] = None,
    *,
    k=None,
    omega_low=None,
    omega_high=None,
    top_fraction=None,
    advantage_scaling=None,
) -> TokenDecision:
    """The ERA token head's scale decision from per-token tensors (docs/math.md#split-token-forward):
    each response's mean entropy over its top-``rho`` tokens against ``omega_low`` /
    ``omega_high`` and the sign of the advantage choose ``c`` in ``{k, 1, 1/k}``.

    Args:
      entropy: ``[...]`` per-token entropies (:func:`token_logprob_columns`' ``entropy``;
        not differentiated: the decision is a constant).
      response_ids: ``[...]`` int: the response of each token (any id >= 0), -1 for a masked
        token (prompt, padding).
      advantages: ``[...]``, cast to the dtype of ``entropy``.
      columns: ``[..., 3]`` (:func:`token_logprob_columns`' ``columns``), needed for ``logprobs``.
      k, omega_low, omega_high, top_fraction, advantage_scaling: the head's configuration
        (the recipe's ``era_k``, ``era_lb``, ``era_ub``, 0.2, on); None: the library's defaults.

    Returns:
      :class:`TokenDecision`. ``logprobs`` (the column the scale selects; 0 for masked tokens)
      is differentiable w.r.t. ``columns`` and ``advantages`` w.r.t. ``advantages``; the
      scale, the response entropy and the column index are not.
    """
    cfg = (float(pick(k, TOKEN.k)), float(pick(omega_low, TOKEN.omega_low)), float(pick(omega_high, TOKEN.omega_high)),
           float(pick(top_fraction, TOKEN.top_fraction)), float(TOKEN.temperature),
           bool(pick(advantage_scaling, TOKEN.advantage_scaling)), int(TOKEN.vocab_topk))
    dt = entropy.dtype if entropy.dtype in (torch.float32, torch.float64) else torch.float32
    ent = entropy.detach().to(dt)
    adv_in = advantages if isinstance(advantages, Tensor) else torch.as_tensor(advantages)
    adv_in = adv_in.to(dtype=dt, device=entropy.device)
    scale, adv_det, hresp, column = _decide(ent, response_ids, adv_in.detach(), *cfg)
    # advantages_out = A / c with advantage scaling (c is a constant): its gradient is the
    # library's output divided by the input, routed through autograd without new math
    adv_out = adv_det
    if adv_in.requires_grad:
        # the library's values, with the gradient of A / c (or of A) attached: the added
        # term is exactly zero, so the values keep their bits
        delta = adv_in - adv_in.detach()
        adv_out = adv_det + (delta / scale if cfg[5] else delta)
    logprobs = None
    if columns is not None:
        if columns.shape != entropy.shape + (3,):
            raise EraError(f"era_torch: columns has shape {tuple(columns.shape)}; expected "
                           f"{tuple(entropy.shape) + (3,)}", "ERA_STATUS_INVALID_SHAPE")
        picked = columns.gather(-1, column.unsqueeze(-1)).squeeze(-1)
        logprobs = torch.where(response_ids >= 0, picked, torch.zeros_like(picked))
    return TokenDecision(logprobs, scale, adv_out, hresp, column)


# ------------------------------------------------------------------ one call, a temperature per token


@torch.library.custom_op("era::token_forward_t", mutates_args=())
def _forward_t(
    logits: Tensor,
    labels: Tensor,
    response_ids: Tensor,
    advantages: Tensor,
    temperature: Tensor,
    k: float,
    omega_low: float,
    omega_high: float,
    top_fraction: float,
    temperature_scalar: float,
    advantage_scaling: bool,
    vocab_topk: int,
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    head = _token_head(k, omega_low, omega_high, top_fraction, temperature_scalar, advantage_scaling, vocab_topk)
    outs = [_new(logits.shape[:-1], advantages.dtype, logits) for _ in range(5)]
    native.call("token_forward_temperature", head, logits, labels, response_ids, advantages, temperature, *outs)
    return tuple(outs)


@_forward_t.register_fake
def _(logits, labels, response_ids, advantages, temperature, *cfg):
    return tuple(logits.new_empty(logits.shape[:-1], dtype=advantages.dtype) for _ in range(5))


@torch.library.custom_op("era::token_backward_t", mutates_args=())
def _backward_t(
    logits: Tensor,
    labels: Tensor,
    response_ids: Tensor,
    temperature: Tensor,
    scale: Tensor,
    grad_logprobs: Tensor,
    k: float,
    omega_low: float,
    omega_high: float,
    top_fraction: float,
    temperature_scalar: float,
    advantage_scaling: bool,
    vocab_topk: int,
) -> Tensor:
    head = _token_head(k, omega_low, omega_high, top_fraction, temperature_scalar, advantage_scaling, vocab_topk)
    grad = _new(logits.shape, logits.dtype, logits)
    native.call("token_backward_temperature", head, logits, labels, response_ids, temperature, scale, grad_logprobs, grad)
    return grad


@_backward_t.register_fake
def _(logits, labels, response_ids, temperature, scale, grad_logprobs, *cfg):
    return logits.new_empty(logits.shape)


class _BackwardT(_FirstOrder):
    @staticmethod
    def forward(logits, labels, response_ids, temperature, scale, grad_logprobs, *cfg):
        return _backward_t(logits, labels, response_ids, temperature, scale, grad_logprobs, *cfg)


class _OutputsT(torch.autograd.Function):
    """The one-call token head at a temperature per token."""

    @staticmethod
    def forward(logits, labels, response_ids, advantages, temperature, *cfg):
        return _forward_t(logits, labels, response_ids, advantages, temperature, *cfg)

    @staticmethod
    def setup_context(ctx, inputs, output):
        logits, labels, ids, _, temperature = inputs[:5]
        ctx.save_for_backward(logits, labels, ids, temperature, output[2])
        ctx.cfg = tuple(inputs[5:5 + _TOKEN_CFG])
        ctx.mark_non_differentiable(output[1], output[2], output[4])

    @staticmethod
    def backward(ctx, g_logp, g_entropy, g_scale, g_adv, g_hresp):
        logits, labels, ids, temperature, scale = ctx.saved_tensors
        g_logits = g_advantages = None
        if ctx.needs_input_grad[0]:
            g_logits = _BackwardT.apply(logits, labels, ids, temperature, scale, g_logp.to(scale.dtype), *ctx.cfg)
        if ctx.needs_input_grad[3]:
            g_advantages = g_adv / scale if ctx.cfg[5] else g_adv
        return (g_logits, None, None, g_advantages, None) + (None,) * _TOKEN_CFG


def token_outputs_t(logits, labels, response_ids, advantages, temperature: Tensor, cfg: tuple):
    """:func:`era_torch.token_outputs` at a temperature per token (``temperature`` ``[...]``);
    ``cfg`` is the head's configuration in the order of the ops."""
    t, _ = _temperature_args(logits, temperature)
    return _OutputsT.apply(logits, labels, response_ids, advantages, t.to(advantages.dtype), *cfg)
