"""A straightforward PyTorch transcription of the ERA token step (docs/math.md#token-head),
in the shape of the verl recipe: materialised ``[tokens, vocab]`` log-softmax, a loop over
responses for the top-rho entropy mean, masked scaling of the logits, log-probs at the
scaled logits (optionally over the top-K logits). It is the baseline of the tests and of
bench.py, and depends on nothing but torch. Also the Gaussian and softmax heads' forwards
(docs/math.md#gaussian-forward, #softmax-forward), differentiated by torch's autograd."""

import math

import torch


def era_logprobs_reference(logits, labels, response_ids, advantages, *, k=2.0, omega_low=0.45, omega_high=3.0,
                           top_fraction=0.2, temperature=1.0, advantage_scaling=True, vocab_topk=0):
    """Flat ``[N, V]`` logits; returns ``(logprobs, entropy, scale, advantages_out, response_entropy)``."""
    z = logits.float() / temperature
    with torch.no_grad():
        logp_all = torch.log_softmax(z, dim=-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        del logp_all
        mask = response_ids >= 0
        hresp = torch.zeros_like(entropy)
        for r in torch.unique(response_ids[mask]).tolist():
            sel = response_ids == r
            h = entropy[sel]
            kr = max(1, int(math.floor(top_fraction * h.numel())))
            hresp[sel] = torch.topk(h, kr).values.mean()
        adv = advantages.to(entropy.dtype)
        scale = torch.ones_like(entropy)
        scale[mask & (adv > 0) & (hresp < omega_low)] = k
        scale[mask & (adv > 0) & (hresp > omega_high)] = 1.0 / k
    zc = z * scale.unsqueeze(-1)
    safe = torch.where(mask, labels, torch.zeros_like(labels)).long()
    if vocab_topk and vocab_topk < z.shape[-1]:
        vals, idx = torch.topk(zc, vocab_topk, dim=-1)
        lse = torch.logsumexp(vals, dim=-1)
        hit = idx == safe.unsqueeze(-1)
        picked = (vals * hit).sum(-1)
        logp = torch.where(hit.any(-1), picked - lse, torch.full_like(lse, -1e4))
    else:
        logp = torch.log_softmax(zc, dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    logp = torch.where(mask, logp, torch.zeros_like(logp))
    adv_out = adv / scale if advantage_scaling else adv
    return logp, entropy, scale, adv_out, hresp


LN_2PI_E = math.log(2 * math.pi * math.e)


def gaussian_log_std_reference(z, h0, lo, hi, delta):
    """``clip(hi + k*softmax(z), lo, hi)`` with ``k = h0 + delta - D/2 ln(2 pi e) - D*hi``;
    ``delta`` a number, a 0-d tensor or one value per row."""
    d = z.shape[-1]
    if isinstance(delta, torch.Tensor) and delta.dim() > 0:
        delta = delta.unsqueeze(-1)
    k = h0 + delta - 0.5 * d * LN_2PI_E - d * hi
    return torch.clamp(hi + k * torch.softmax(z, dim=-1), lo, hi)


def softmax_logits_reference(z, h0, tau):
    """The softmax head's logits ``w - min(w)`` (the min-shift a constant, as in its VJP)."""
    n = z.shape[-1]
    c = math.exp(h0 - 1)
    ub = math.log(tau) / tau
    slope = (ub - c / n) / (1 - 1 / n)
    b = (c - slope) / n
    h = slope * torch.softmax(z, dim=-1) + b
    u = -1 - torch.log(h)
    w = -1 - torch.sqrt(2 * u) - 0.75 * u
    return w - w.min(dim=-1, keepdim=True).values.detach()


def softmax_dwdh_reference(z, h0, tau):
    """``dw/dh = (1/sqrt(2u) + 0.75)/h`` per element, the residual the softmax head's saved
    forward keeps beside ``softmax(z)`` (docs/math.md#saved-softmax)."""
    n = z.shape[-1]
    c = math.exp(h0 - 1)
    ub = math.log(tau) / tau
    slope = (ub - c / n) / (1 - 1 / n)
    h = slope * torch.softmax(z, dim=-1) + (c - slope) / n
    u = -1 - torch.log(h)
    return (1 / torch.sqrt(2 * u) + 0.75) / h
