"""The token head (docs/math.md#token-head) as ``torch.library`` custom ops: the forward,
the backward into a new gradient, and the backward written over the logits
(``era::token_backward_``, for ``inplace_backward=True``), with their fake
implementations, autograd and batching rules, on the shared helpers of ``_ops.py``.
"""

from __future__ import annotations

import functools
from typing import Tuple

import torch
from torch import Tensor

from . import _native as native
from ._defaults import TOKEN, pick
from ._native import EraError
from ._ops import _FirstOrder, _front, _new

__all__ = ["token_logprobs", "token_outputs"]


# ------------------------------------------------------------------ token head


@functools.lru_cache(maxsize=1024)
def _token_head(k, omega_low, omega_high, top_fraction, temperature, scaling, topk):
    if topk < 0:
        raise EraError(f"vocab_topk must be >= 0 (0 = full vocabulary), got {topk}", "ERA_STATUS_INVALID_CONFIG")
    fields = (
        ("k", k),
        ("omega_low", omega_low),
        ("omega_high", omega_high),
        ("top_fraction", top_fraction),
        ("temperature", temperature),
        ("advantage_scaling", 1 if scaling else 0),
        ("vocab_topk", topk),
    )
    return native.cached_head(native.ERA_HEAD_KIND_TOKEN, fields)


@torch.library.custom_op("era::token_forward", mutates_args=())
def _token_fwd(
    logits: Tensor,
    labels: Tensor,
    response_ids: Tensor,
    advantages: Tensor,
    k: float,
    omega_low: float,
    omega_high: float,
    top_fraction: float,
    temperature: float,
    advantage_scaling: bool,
    vocab_topk: int,
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    head = _token_head(k, omega_low, omega_high, top_fraction, temperature, advantage_scaling, vocab_topk)
    outs = [_new(logits.shape[:-1], advantages.dtype, logits) for _ in range(5)]
    native.call("token_forward", head, logits, labels, response_ids, advantages, *outs)
    return tuple(outs)


@_token_fwd.register_fake
def _(logits, labels, response_ids, advantages, *cfg):
    return tuple(logits.new_empty(logits.shape[:-1], dtype=advantages.dtype) for _ in range(5))


@torch.library.custom_op("era::token_backward", mutates_args=())
def _token_bwd(
    logits: Tensor,
    labels: Tensor,
    response_ids: Tensor,
    scale: Tensor,
    grad_logprobs: Tensor,
    k: float,
    omega_low: float,
    omega_high: float,
    top_fraction: float,
    temperature: float,
    advantage_scaling: bool,
    vocab_topk: int,
) -> Tensor:
    head = _token_head(k, omega_low, omega_high, top_fraction, temperature, advantage_scaling, vocab_topk)
    grad = _new(logits.shape, logits.dtype, logits)
    native.call("token_backward", head, logits, labels, response_ids, scale, grad_logprobs, grad)
    return grad


@_token_bwd.register_fake
def _(logits, labels, response_ids, scale, grad_logprobs, *cfg):
    return logits.new_empty(logits.shape)


@torch.library.custom_op(
    "era::token_backward_",
    mutates_args=("logits",),
    # era::token_backward's arguments, the logits written in place
    schema="(Tensor(a!) logits, Tensor labels, Tensor response_ids, Tensor scale, Tensor grad_logprobs, float k, "
    "float omega_low, float omega_high, float top_fraction, float temperature, bool advantage_scaling, "
    "int vocab_topk) -> ()",
)
def _token_bwd_inplace(logits, labels, response_ids, scale, grad_logprobs, *cfg) -> None:
    """The token backward written over ``logits`` (era_token_backward in place, CPU)."""
    head = _token_head(*cfg)
    native.call("token_backward", head, logits, labels, response_ids, scale, grad_logprobs, logits)


@_token_bwd_inplace.register_fake
def _(logits, labels, response_ids, scale, grad_logprobs, *cfg):
    return None


# the configuration arguments of the token ops (k ... vocab_topk)
_TOKEN_CFG = 7


def _token_setup(ctx, inputs, output):
    logits, labels, ids = inputs[:3]
    ctx.save_for_backward(logits, labels, ids, output[2])
    ctx.cfg = tuple(inputs[4:4 + _TOKEN_CFG])
    # _TokenOutputs passes inplace_backward after the configuration; the op itself has none
    ctx.inplace = bool(inputs[4 + _TOKEN_CFG]) if len(inputs) > 4 + _TOKEN_CFG else False
    ctx.mark_non_differentiable(output[1], output[2], output[4])


def _token_grad(ctx, g_logp, g_entropy, g_scale, g_adv, g_hresp):
    logits, labels, ids, scale = ctx.saved_tensors
    g_logits = None
    if ctx.needs_input_grad[0]:
        g = g_logp.to(scale.dtype)
        if ctx.inplace and _can_write_in_place(logits):
            _token_bwd_inplace(logits, labels, ids, scale, g, *ctx.cfg)
            g_logits = logits
        else:
            g_logits = _TokenBackward.apply(logits, labels, ids, scale, g, *ctx.cfg)
    g_advantages = None
    if ctx.needs_input_grad[3]:
        # advantages_out = advantages / scale with advantage scaling (the scale is a constant)
        g_advantages = g_adv / scale if ctx.cfg[5] else g_adv
    return (g_logits, None, None, g_advantages) + (None,) * (len(ctx.needs_input_grad) - 4)


def _can_write_in_place(logits: Tensor) -> bool:
    """Whether the token backward may overwrite ``logits``: CPU memory, eager (a compiled
    graph would functionalize the write into a copy), outside ``torch.func`` transforms, and
    not a double backward (``create_graph=True`` raises in :class:`_FirstOrder`)."""
    if torch.compiler.is_compiling():
        return False
    return (logits.device.type == "cpu" and not torch.is_grad_enabled()
            and not torch._C._functorch.is_functorch_wrapped_tensor(logits))


def _separate_responses(ids: Tensor) -> Tensor:
    """Response ids ``[B, ...]`` of B independent examples made distinct across examples
    (``id * B + example``; -1 and invalid negative ids kept), so that one call of the library
    groups the tokens of each example's responses as B separate calls would."""
    n = ids.shape[0]
    ids = ids.to(torch.int64)
    fits = ids <= (2**63 - 1 - n) // n
    if not torch.compiler.is_compiling() and not torch._C._functorch.is_batchedtensor(ids):
        if not bool(fits.all()):
            raise EraError(
                f"a response id of {int(ids.max())} is too large to batch {n} examples under vmap "
                f"(id * {n} must fit in int64)",
                "ERA_STATUS_INVALID_VALUE",
            )
    # where the check cannot run (under an outer vmap, while compiling) an id that does not
    # fit becomes -2, which the library rejects: never a silent merge of two responses
    example = torch.arange(n, device=ids.device).reshape((n,) + (1,) * (ids.dim() - 1))
    return torch.where(ids < 0, ids, torch.where(fits, ids * n + example, -2))


def _token_fwd_vmap(info, in_dims, logits, labels, response_ids, advantages, *cfg):
    n = info.batch_size
    logits, labels, response_ids, advantages = (_front(t, b, n) for t, b in
                                                zip((logits, labels, response_ids, advantages), in_dims))
    outs = _token_fwd(logits, labels, _separate_responses(response_ids), advantages, *cfg)
    return outs, (0,) * 5


def _token_bwd_vmap(info, in_dims, logits, labels, response_ids, scale, grad_logprobs, *cfg):
    # the backward reads the response ids only to zero masked tokens: no regrouping needed
    n = info.batch_size
    args = (_front(t, b, n) for t, b in zip((logits, labels, response_ids, scale, grad_logprobs), in_dims))
    return _token_bwd(*args, *cfg), 0


_token_fwd.register_autograd(_token_grad, setup_context=_token_setup)
torch.library.register_vmap(_token_fwd, _token_fwd_vmap)
torch.library.register_vmap(_token_bwd, _token_bwd_vmap)


class _TokenBackward(_FirstOrder):
    @staticmethod
    def forward(logits, labels, response_ids, scale, grad_logprobs, *cfg):
        return _token_bwd(logits, labels, response_ids, scale, grad_logprobs, *cfg)


class _TokenOutputs(torch.autograd.Function):
    """The token head for the public functions (and ``torch.func``)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(logits, labels, response_ids, advantages, *cfg_and_inplace):
        return _token_fwd(logits, labels, response_ids, advantages, *cfg_and_inplace[:_TOKEN_CFG])

    setup_context = staticmethod(_token_setup)
    backward = staticmethod(_token_grad)


def token_outputs(
    logits: Tensor,
    labels: Tensor,
    response_ids: Tensor,
    advantages: Tensor,
    *,
    k=None,
    omega_low=None,
    omega_high=None,
    top_fraction=None,
    temperature=None,
    advantage_scaling=None,
    vocab_topk=None,
    inplace_backward=False,
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """:func:`token_logprobs` with the fifth output of the library: each token's response
    entropy (the mean entropy of its response's top-rho tokens; 0 for masked tokens)."""
    if not isinstance(inplace_backward, bool):
        raise TypeError(f"era_torch: inplace_backward must be True or False, got {inplace_backward!r}")
    single = logits.dim() == 1
    if single:  # one token: the C ABI wants [..., V] with at least one batch axis
        logits, labels, response_ids = logits.unsqueeze(0), labels.reshape(1), response_ids.reshape(1)
        advantages = advantages.reshape(1)
    out_dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    if not isinstance(advantages, Tensor):
        advantages = torch.as_tensor(advantages)
    advantages = advantages.to(dtype=out_dtype, device=logits.device)
    per_token = isinstance(temperature, Tensor)
    cfg = (
        float(pick(k, TOKEN.k)),
        float(pick(omega_low, TOKEN.omega_low)),
        float(pick(omega_high, TOKEN.omega_high)),
        float(pick(top_fraction, TOKEN.top_fraction)),
        float(TOKEN.temperature if per_token else pick(temperature, TOKEN.temperature)),
        bool(pick(advantage_scaling, TOKEN.advantage_scaling)),
        int(pick(vocab_topk, TOKEN.vocab_topk)),
    )
    if per_token:
        from ._token_split import token_outputs_t

        if single:
            temperature = temperature.reshape(1)
        outs = token_outputs_t(logits, labels, response_ids, advantages, temperature, cfg)
    else:
        outs = _TokenOutputs.apply(logits, labels, response_ids, advantages, *cfg, inplace_backward)
    if single:
        outs = tuple(o[0] for o in outs)
    return outs


def token_logprobs(
    logits: Tensor,
    labels: Tensor,
    response_ids: Tensor,
    advantages: Tensor,
    *,
    k=None,
    omega_low=None,
    omega_high=None,
    top_fraction=None,
    temperature=None,
    advantage_scaling=None,
    vocab_topk=None,
    inplace_backward=False,
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """ERA token head (docs/math.md#token-head) for LLM policy updates (GRPO, PPO).

    Args:
      logits: ``[..., V]``: float32, float64, bfloat16 or float16 (e.g. under autocast); any layout.
      labels: ``[...]`` sampled token ids (int32/int64), in ``[0, V)`` for unmasked tokens.
      response_ids: ``[...]`` (int32/int64): the response of each token (any id >= 0, any
        order), or -1 for masked/padding tokens.
      advantages: ``[...]``, cast to the output dtype.
      k, omega_low, omega_high, top_fraction, temperature, advantage_scaling, vocab_topk:
        the head's configuration (None: the library's defaults, ``era_torch.defaults.TOKEN``).
        ``temperature`` may also be a tensor ``[...]``: one temperature per token, as verl 0.8+
        samples each prompt at its own (era_token_forward_temperature; ``inplace_backward`` is
        then ignored and the gradient gets a buffer of its own).
      inplace_backward: write the gradient of ``logits`` over ``logits`` themselves in the
        backward (CPU tensors; the values are the same bit for bit), as verl does with
        flash-attn's cross-entropy: no ``[..., V]`` gradient is allocated. ``logits`` must
        be dead after the backward: an intermediate such as the unembedding matmul's
        output, which nothing else reads afterwards (an op that saved ``logits`` for its
        own backward and runs after this one raises PyTorch's in-place modification
        error). The gradient returned for ``logits`` is then ``logits`` itself. CUDA
        tensors, ``torch.compile``'d graphs, ``torch.func`` transforms and
        ``create_graph=True`` get a gradient of their own.

    Returns:
      ``(logprobs, entropy, scale, advantages_out)``, each ``[...]``, float64 for float64
      logits and float32 otherwise: the log-prob of each label under the scaled logits
      ``c*logits/T``, the per-token entropy of ``softmax(logits/T)``, the scale ``c`` in
      ``{k, 1, 1/k}``, and ``advantages/c`` (with advantage scaling). ``logprobs`` is
      differentiable w.r.t. ``logits`` (the library's backward) and ``advantages_out``
      w.r.t. ``advantages``; the entropy and the scale are not (the scale decision is a constant).

    Raises:
      EraError: the library's status and message (bad configuration, shapes, dtypes, a
        label outside ``[0, V)``, a response id below -1).
    """
    outs = token_outputs(
        logits,
        labels,
        response_ids,
        advantages,
        k=k,
        omega_low=omega_low,
        omega_high=omega_high,
        top_fraction=top_fraction,
        temperature=temperature,
        advantage_scaling=advantage_scaling,
        vocab_topk=vocab_topk,
        inplace_backward=inplace_backward,
    )
    return outs[0], outs[1], outs[2], outs[3]
