"""A drop-in for the ERA step of the verl actor (the official ERA-LLM recipe).

The recipe, on verl's flattened ``[tokens, vocab]`` logits (padding removed),
computes each token's entropy, the mean entropy of the top 20% tokens of each
response, scales the logits of tokens with a positive advantage by ``k`` or
``1/k`` when that mean is below ``omega_low`` or above ``omega_high``, and takes
the labels' log-probs at the scaled logits (optionally over the top-K logits).
:func:`verl_era_logprobs` does the same in one fused library call
(docs/math.md#token-head), with no ``[tokens, vocab]`` temporary.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ._token import token_outputs

__all__ = ["EraLogprobs", "response_ids_from_mask", "verl_era_logprobs"]


class EraLogprobs(NamedTuple):
    """The outputs of :func:`verl_era_logprobs`, each in the token layout of the call."""

    log_probs: Tensor  # log-probs of the labels at the scaled logits (0 for masked tokens)
    entropy: Tensor  # per-token entropy of softmax(logits / temperature)
    scale: Tensor  # c in {k, 1, 1/k}
    advantages: Tensor  # advantages / c (with advantage scaling)
    response_entropy: Tensor  # the token's response's top-rho mean entropy (0 when masked)


def response_ids_from_mask(response_mask: Tensor) -> Tensor:
    """Response ids from verl's ``response_mask`` ``[batch, length]``: the row index for
    response tokens, -1 elsewhere (int64, same shape)."""
    rows = torch.arange(response_mask.shape[0], device=response_mask.device).unsqueeze(1)
    return torch.where(response_mask.bool(), rows, torch.full_like(rows, -1))


def verl_era_logprobs(
    logits: Tensor,
    labels: Tensor,
    response_mask_or_ids: Tensor,
    advantages: Tensor,
    *,
    k=None,
    omega_low=None,
    omega_high=None,
    top_fraction=None,
    temperature=None,
    vocab_topk=None,
    advantage_scaling=None,
    inplace_backward=False,
) -> EraLogprobs:
    """The ERA step of the verl actor, fused.

    Args:
      logits: ``[tokens, V]`` (verl's ``logits_rmpad``, *before* division by the temperature:
        pass ``temperature`` instead) or ``[batch, length, V]``; bf16 under autocast is fine.
      labels: the sampled ids (``input_ids_rmpad_rolled``), ``[tokens]`` or ``[batch, length]``.
      response_mask_or_ids: either verl's ``response_mask`` ``[batch, length]`` (bool or 0/1),
        with logits laid out ``[batch*length, V]`` or ``[batch, length, V]``; or one response id
        per token ``[tokens]`` (int, -1 for prompt/padding tokens) for the padding-free layout.
      advantages: per token, in the layout of ``labels``.
      k, omega_low, omega_high: the recipe's ``era_k``, ``era_lb``, ``era_ub``.
      top_fraction: the forking-token fraction (the recipe's 0.2).
      temperature: the rollout temperature (the recipe divides the logits by it).
      vocab_topk: the recipe's ``apply_topk`` (it used 20); 0 = the full vocabulary.
      advantage_scaling: divide the advantages by the scale (the library's default: on).
      Every None takes the library's default.
      inplace_backward: the gradient written over ``logits`` in the backward (CPU), as the
        recipe's ``logprobs_from_logits`` does with flash-attn's ``inplace_backward=True``;
        see :func:`era_torch.token_logprobs`.

    Returns:
      :class:`EraLogprobs` in the layout of ``labels``. Masked tokens get log-prob 0 (the
      recipe computes an unscaled log-prob there, which its loss masks out).
    """
    ids = response_mask_or_ids
    if ids.dim() == 2 or ids.dtype == torch.bool or ids.is_floating_point():
        ids = response_ids_from_mask(ids if ids.dim() == 2 else ids.unsqueeze(0))
    layout = labels.shape
    batch = logits.shape[:-1]
    outs = token_outputs(
        logits,
        labels.reshape(batch),
        ids.reshape(batch),
        advantages.reshape(batch),
        k=k,
        omega_low=omega_low,
        omega_high=omega_high,
        top_fraction=top_fraction,
        temperature=temperature,
        advantage_scaling=advantage_scaling,
        vocab_topk=vocab_topk,
        inplace_backward=inplace_backward,
    )
    return EraLogprobs(*(o.reshape(layout) for o in outs))
