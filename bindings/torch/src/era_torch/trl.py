"""ERA's token head in TRL's GRPO (tested with trl 1.16.0 and transformers 5.10.4).

:class:`EraGRPOTrainer` is TRL's ``GRPOTrainer`` whose per-token log-probs and entropies go
through the library's token head; everything else (generation, rewards, advantages, the
clipped objective, ``top_entropy_quantile``, an entropy bonus, logging) is TRL's own.

- Every forward of the policy (old log-probs, the loss) computes, per completion token and in
  one read of its logits row, the label's log-prob at the three scales ERA may choose
  (``c = 1, k, 1/k``) and the entropy at the sampling temperature
  (:func:`era_torch.token_logprob_columns`). Outside the loss the log-prob is the plain one
  (``c = 1``).
- In the loss, each completion (a row of ``completion_mask``) takes the mean entropy of its
  top ``era_top_fraction`` tokens; with a positive advantage it is sharpened (``c = k``) below
  ``era_lb`` and flattened (``c = 1/k``) above ``era_ub`` (:func:`era_torch.token_decide`).
  The loss then sees the selected column as the log-prob and ``A/c`` per token as the
  advantage. The fractions of sharpened and flattened tokens and the mean response entropy
  are logged as ``era/sharpen``, ``era/flatten`` and ``era/response_entropy``.

Memory: TRL 1.16 computes log-probs and entropies with a fused LM head that never holds the
``[batch, completion, vocabulary]`` logits, and so does this trainer: it runs the model's decoder,
then :func:`era_torch.fused_token_columns` over the completion positions' hidden states and the
LM head's weight (its bias, Cohere's ``logit_scale``, Granite's ``logits_scaling`` and Gemma's
``final_logit_softcapping`` applied), a vocabulary chunk of ``era_chunk_size`` at a time. A model
whose head this cannot reproduce (``era_fused_head=False``, or one without ``get_decoder`` /
``get_output_embeddings``, or a mixture of experts that returns a router loss) takes the model's
ordinary head on the completion positions only (``logits_to_keep``).

No math here: the library computes the columns, the entropies and the decision; TRL the objective.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Optional

import torch

from ._defaults import TOKEN
from ._token_blocks import fused_token_columns
from ._token_split import token_decide, token_logprob_columns

__all__ = ["EraGRPOTrainer"]

try:
    from trl import GRPOTrainer as _GRPOTrainer
except ImportError as e:  # pragma: no cover - exercised where trl is missing
    raise ImportError("era_torch.trl needs TRL (pip install 'trl>=1.16'): " + str(e)) from e


def _fused_parts(model):
    """(decoder, weight, bias, logit scale, soft cap) of a causal LM whose logits are
    ``cap * tanh(scale * (decoder(x) @ W.T + b) / cap)``, or None where the model does not
    expose them (or returns a router loss, which only its own forward computes)."""
    cfg = getattr(model, "config", None)
    get_dec, get_out = getattr(model, "get_decoder", None), getattr(model, "get_output_embeddings", None)
    if cfg is None or get_dec is None or get_out is None or getattr(cfg, "output_router_logits", False):
        return None
    decoder, head = get_dec(), get_out()
    weight = getattr(head, "weight", None)
    if decoder is None or weight is None or decoder is model:
        return None
    scale = getattr(cfg, "logit_scale", None)
    if getattr(cfg, "logits_scaling", None):
        scale = (scale or 1.0) / float(cfg.logits_scaling)
    cap = getattr(cfg, "final_logit_softcapping", None)
    return decoder, weight, getattr(head, "bias", None), scale, cap


class _EraHead:
    """Stands in for the model in TRL's forward loop: TRL calls it as its fused LM head
    (``model(**inputs, labels=..., fused_lm_head=True)``); it runs the model's ordinary head
    on the last ``keep + 1`` positions and returns the library's columns as TRL's outputs."""

    def __init__(self, model, trainer: "EraGRPOTrainer", keep: int):
        self.model, self.trainer, self.keep = model, trainer, keep
        self.columns = []

    def __call__(self, labels=None, fused_lm_head=None, **inputs):
        ids = inputs["input_ids"][:, -self.keep:]
        t = self.trainer
        parts = _fused_parts(self.model) if t.era_fused_head else None
        if parts is not None:
            decoder, weight, bias, scale, cap = parts
            out = decoder(**inputs, use_cache=False)
            hidden = out.last_hidden_state[:, -self.keep - 1:-1, :]  # the states that predict the completion
            cols = fused_token_columns(hidden, weight, ids, bias=bias, logit_scale=scale, softcap=cap,
                                       temperature=float(t.temperature), k=t.era_k, vocab_topk=t.era_topk,
                                       chunk_size=t.era_chunk_size)
        else:
            out = self.model(**inputs, logits_to_keep=self.keep + 1, use_cache=False)
            logits = out.logits[:, :-1, :]  # the distributions of the completion tokens
            cols = token_logprob_columns(logits, ids, temperature=float(t.temperature), k=t.era_k,
                                         vocab_topk=t.era_topk)
        self.columns.append(cols.columns)
        return SimpleNamespace(log_probs=cols.columns[..., 0], entropy=cols.entropy, aux_loss=getattr(out, "aux_loss", None))

    def __getattr__(self, name):  # anything else TRL asks of the model
        return getattr(self.model, name)


class EraGRPOTrainer(_GRPOTrainer):
    """TRL's ``GRPOTrainer`` with ERA's token head (docs/llm-rl.md).

    Keyword arguments besides ``GRPOTrainer``'s own (None: the library's defaults, which are
    the official recipe's):

    Args:
      era_k: the scale factor ``k`` (2).
      era_lb, era_ub: ``omega_low`` and ``omega_high``, the response-entropy thresholds (0.45, 3.0).
      era_topk: log-probs over the K largest logits only (0: the full vocabulary; the recipe
        used 20 in verl).
      era_top_fraction: the share of each response's highest-entropy tokens whose mean
        entropy decides (0.2).
      era_advantage_scaling: divide the advantage by the scale (on).
      era_fused_head: compute the columns from the decoder's hidden states and the LM head's
        weight a vocabulary chunk at a time, never the whole logits (on).
      era_chunk_size: vocabulary entries per chunk of the fused head (32768, as TRL's).
    """

    def __init__(self, *args, era_k: Optional[float] = None, era_lb: Optional[float] = None,
                 era_ub: Optional[float] = None, era_topk: Optional[int] = None,
                 era_top_fraction: Optional[float] = None, era_advantage_scaling: Optional[bool] = None,
                 era_fused_head: bool = True, era_chunk_size: int = 32768, **kwargs):
        pick = lambda v, d: d if v is None else v  # noqa: E731
        self.era_k = float(pick(era_k, TOKEN.k))
        self.era_lb = float(pick(era_lb, TOKEN.omega_low))
        self.era_ub = float(pick(era_ub, TOKEN.omega_high))
        self.era_topk = int(pick(era_topk, TOKEN.vocab_topk))
        self.era_top_fraction = float(pick(era_top_fraction, TOKEN.top_fraction))
        self.era_advantage_scaling = bool(pick(era_advantage_scaling, TOKEN.advantage_scaling))
        self.era_fused_head = bool(era_fused_head)
        self.era_chunk_size = int(era_chunk_size)
        self._era_inputs = None
        super().__init__(*args, **kwargs)

    def _compute_loss(self, model, inputs):
        # a copy: the scaled advantages replace the batch's own for this loss only (TRL may
        # reuse the batch for several iterations)
        inputs = copy.copy(inputs)
        self._era_inputs = inputs
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._era_inputs = None

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_aux_loss=False, **kwargs):
        head = _EraHead(model, self, logits_to_keep)
        logps, entropies, aux = super()._get_per_token_logps_and_entropies(
            head, input_ids, attention_mask, logits_to_keep, batch_size, True, compute_aux_loss, **kwargs)
        inputs = self._era_inputs
        if inputs is not None:
            logps = self._era_decide(inputs, torch.cat(head.columns, 0), entropies)
        return logps, (entropies if compute_entropy else None), aux

    def _era_decide(self, inputs, columns, entropies):
        """ERA's decision for the loss: the selected column as the log-prob, ``A/c`` per token
        into ``inputs["advantages"]``, and the statistics into TRL's metrics."""
        mask = inputs["completion_mask"]
        if "tool_mask" in inputs:
            mask = mask * inputs["tool_mask"]
        mask = mask.bool()
        rows = torch.arange(mask.shape[0], device=mask.device).unsqueeze(1).expand_as(mask)
        ids = torch.where(mask, rows, torch.full_like(rows, -1))
        adv = inputs["advantages"]
        if adv.dim() == 1:
            adv = adv.unsqueeze(1).expand_as(mask)
        dec = token_decide(entropies.detach(), ids, adv, columns, k=self.era_k, omega_low=self.era_lb,
                           omega_high=self.era_ub, top_fraction=self.era_top_fraction,
                           advantage_scaling=self.era_advantage_scaling)
        inputs["advantages"] = dec.advantages.to(inputs["advantages"].dtype)
        mode = "train" if self.model.training else "eval"
        n = max(int(mask.sum()), 1)
        counts = mask.sum(1)
        per_response = (dec.response_entropy * mask).sum(1)[counts > 0] / counts[counts > 0]
        metrics = self._metrics[mode]
        metrics["era/sharpen"].append(float(((dec.scale == self.era_k) & mask).sum()) / n)
        metrics["era/flatten"].append(float(((dec.scale < 1) & mask).sum()) / n)
        metrics["era/response_entropy"].append(float(per_response.mean()) if per_response.numel() else 0.0)
        return dec.logprobs
