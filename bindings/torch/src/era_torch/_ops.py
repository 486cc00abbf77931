"""The era heads as ``torch.library`` custom ops (namespace ``era``).

Each op allocates its outputs and hands every tensor to the C ABI as a borrowed
DLPack descriptor (any strides, no copies); inputs are never modified. Every op
has a fake (meta) implementation, so it traces under ``torch.compile``, and the
differentiable ones register an autograd formula that calls the library's own
backward, and every op has a batching rule (``torch.library.register_vmap``).

The public functions go through ``torch.autograd.Function`` subclasses (forward: the
forward op, backward: the backward op) rather than the ops' registered autograd: unlike
the function that ``register_autograd`` generates, they define ``setup_context`` as a
staticmethod, which the ``torch.func`` transforms (``grad``, ``vjp``, ``jacrev``,
``vmap`` of those) require. They resolve the library's defaults and the dtypes, then
call the ops; they hold no math (docs/math.md is the contract). The Gaussian and softmax
heads' public functions live in ``_heads.py``: on CPU their autograd saves ``softmax(z)``
(the ops there), elsewhere it saves ``z`` and uses the ops and ``autograd.Function``s defined
here. The token head's ops, which also write its gradient in place, live in ``_token.py`` on
the helpers defined here.
"""

from __future__ import annotations

import functools
from typing import Tuple

import torch
from torch import Tensor

from . import _native as native
from ._defaults import TOKEN, pick
from ._native import EraError

__all__ = [
    "gaussian_entropy",
    "softmax_entropy",
    "truncated_normal_entropy",
]

_HALF = (torch.float16, torch.bfloat16)


def _last(t: Tensor, empty: int) -> int:
    """The length of the last axis (``empty`` for a 0-d tensor, which the library then rejects)."""
    return int(t.shape[-1]) if t.dim() else empty


def _new(shape, dtype, like: Tensor) -> Tensor:
    return torch.empty(tuple(shape), dtype=dtype, device=like.device)


# ------------------------------------------------------------ torch.func support


def _front(t: Tensor, bdim, n: int) -> Tensor:
    """``t`` with its vmapped axis first; an unbatched ``t`` broadcast (stride 0, no copy)."""
    if bdim is None:
        return t.unsqueeze(0).expand((n,) + tuple(t.shape))
    return t.movedim(bdim, 0)


class _FirstOrder(torch.autograd.Function):
    """Base of the ``autograd.Function`` around each backward op: the library gives first
    derivatives only, so differentiating a backward (``create_graph=True``, ``grad`` of
    ``grad``, ``jacrev`` of ``jacrev``) raises instead of returning wrong numbers."""

    generate_vmap_rule = True

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError(
            "era_torch: the ERA heads have no double backward (second derivatives: create_graph=True, "
            "torch.func.grad of grad, jacrev of jacrev); the library provides first derivatives only"
        )


# ------------------------------------------------------------------ Gaussian head


@functools.lru_cache(maxsize=1024)  # per call it is a lookup (the library validates a new one)
def _gaussian_head(dim: int, h0: float, lo: float, hi: float):
    # The stored delta is never used (every call passes its own): a value far inside the
    # feasible range, so that the head exists for any target and the call's delta decides.
    probe = -(abs(h0) + dim * (abs(hi) + native.ERA_LN_2PI_E) + 1.0)
    fields = (("dim", dim), ("target_entropy", h0), ("log_std_min", lo), ("log_std_max", hi), ("delta", probe))
    return native.cached_head(native.ERA_HEAD_KIND_GAUSSIAN, fields)


# Each op's Python implementation has a name of its own: the C++ CPU kernels (csrc/cpu_ops.cpp)
# hand every call they do not take (another device or dtype, a failure to report) to it.
def _gaussian_fwd_impl(z: Tensor, delta: Tensor, target_entropy: float, log_std_min: float, log_std_max: float) -> Tensor:
    head = _gaussian_head(_last(z, 1), target_entropy, log_std_min, log_std_max)
    out = _new(z.shape, z.dtype, z)
    native.call("gaussian_forward_delta", head, z, delta, out)
    return out


_gaussian_fwd = torch.library.custom_op("era::gaussian_log_std", mutates_args=())(_gaussian_fwd_impl)


@_gaussian_fwd.register_fake
def _(z, delta, target_entropy, log_std_min, log_std_max):
    return z.new_empty(z.shape)


def _gaussian_bwd_impl(
    z: Tensor, delta: Tensor, grad: Tensor, target_entropy: float, log_std_min: float, log_std_max: float
) -> Tuple[Tensor, Tensor]:
    head = _gaussian_head(_last(z, 1), target_entropy, log_std_min, log_std_max)
    gz = _new(z.shape, z.dtype, z)
    gd = _new(delta.shape, delta.dtype, delta)
    native.call("gaussian_backward_delta", head, z, delta, grad, gz, gd)
    return gz, gd


_gaussian_bwd = torch.library.custom_op("era::gaussian_log_std_backward", mutates_args=())(_gaussian_bwd_impl)


@_gaussian_bwd.register_fake
def _(z, delta, grad, target_entropy, log_std_min, log_std_max):
    return z.new_empty(z.shape), delta.new_empty(delta.shape)


def _gaussian_setup(ctx, inputs, output):
    z, delta, h0, lo, hi = inputs
    ctx.save_for_backward(z, delta)
    ctx.cfg = (h0, lo, hi)


def _gaussian_grad(ctx, grad):
    z, delta = ctx.saved_tensors
    gz, gd = _GaussianBackward.apply(z, delta, grad.to(z.dtype), *ctx.cfg)
    return gz, gd, None, None, None


def _gaussian_delta_rows(delta: Tensor, dbdim, rows: tuple, n: int) -> Tensor:
    """The batched ``delta`` (0-d, ``[1]`` or one value per row of each example) as one value
    per row of the batched ``z`` (``rows``: its shape without the last axis)."""
    delta = _front(delta, dbdim, n)
    if tuple(delta.shape[1:]) in ((), (1,)):
        delta = delta.reshape((n,) + (1,) * (len(rows) - 1))
    if delta.dim() == len(rows) and all(d in (1, r) for d, r in zip(delta.shape, rows)):
        delta = delta.expand(rows)
    return delta  # a delta of another shape: the library's shape error


def _gaussian_fwd_rule(op):
    """The batching rule of a Gaussian forward op ``op(z, delta, *cfg)`` (one output or several,
    each batched along its first axis)."""

    def rule(info, in_dims, z, delta, target_entropy, log_std_min, log_std_max):
        zb, db = in_dims[0], in_dims[1]
        z = _front(z, zb, info.batch_size)
        if db is not None or delta.dim() > 1 or (delta.dim() == 1 and delta.shape[0] != 1):
            delta = _gaussian_delta_rows(delta, db, tuple(z.shape[:-1]), info.batch_size)
        # else: one delta for every row of every example, as it is
        out = op(z, delta, target_entropy, log_std_min, log_std_max)
        return out, ((0,) * len(out) if isinstance(out, tuple) else 0)

    return rule


def _gaussian_bwd_rule(op):
    """The batching rule of a Gaussian backward op ``op(x, delta, grad, *cfg) -> (gz, gd)``
    (``x``: ``z``, or the saved softmax)."""

    def rule(info, in_dims, z, delta, grad, target_entropy, log_std_min, log_std_max):
        zb, db, gb = in_dims[0], in_dims[1], in_dims[2]
        n = info.batch_size
        z, grad = _front(z, zb, n), _front(grad, gb, n)
        shape = tuple(delta.shape[1:]) if db is not None else tuple(delta.shape)  # delta of one example
        # each example needs its own d/d delta: one delta per row, then the sum over an example's rows
        rows = _gaussian_delta_rows(delta, db, tuple(z.shape[:-1]), n)
        gz, gd = op(z, rows, grad, target_entropy, log_std_min, log_std_max)
        if shape in ((), (1,)) and gd.dim() > 1:
            # a scalar delta's gradient: the sum over the example's rows in row order, in float64 (as the library)
            gd = gd.reshape(n, -1).double().cumsum(1)[:, -1].to(gd.dtype)
        return (gz, gd.reshape((n,) + shape)), (0, 0)

    return rule


_gaussian_fwd.register_autograd(_gaussian_grad, setup_context=_gaussian_setup)
torch.library.register_vmap(_gaussian_fwd, _gaussian_fwd_rule(_gaussian_fwd))
torch.library.register_vmap(_gaussian_bwd, _gaussian_bwd_rule(_gaussian_bwd))


class _GaussianBackward(_FirstOrder):
    @staticmethod
    def forward(z, delta, grad, target_entropy, log_std_min, log_std_max):
        return _gaussian_bwd(z, delta, grad, target_entropy, log_std_min, log_std_max)


class _GaussianLogStd(torch.autograd.Function):
    """The Gaussian head saving ``z``: the public function's autograd off the CPU (and under
    ``torch.func``), and that of the op itself (whose one output leaves no room for ``softmax(z)``)."""

    generate_vmap_rule = True  # the ops' batching rules

    @staticmethod
    def forward(z, delta, target_entropy, log_std_min, log_std_max):
        return _gaussian_fwd(z, delta, target_entropy, log_std_min, log_std_max)

    setup_context = staticmethod(_gaussian_setup)
    backward = staticmethod(_gaussian_grad)


# ------------------------------------------------------------------ softmax head


@functools.lru_cache(maxsize=1024)
def _softmax_head(n: int, h0: float, tau: float):
    fields = (("num_classes", n), ("target_entropy", h0), ("tau", tau))
    return native.cached_head(native.ERA_HEAD_KIND_SOFTMAX, fields)


def _softmax_fwd_impl(z: Tensor, target_entropy: float, tau: float) -> Tensor:
    head = _softmax_head(_last(z, 2), target_entropy, tau)
    out = _new(z.shape, z.dtype, z)
    native.call("head_forward", head, z, out)
    return out


_softmax_fwd = torch.library.custom_op("era::softmax_logits", mutates_args=())(_softmax_fwd_impl)


@_softmax_fwd.register_fake
def _(z, target_entropy, tau):
    return z.new_empty(z.shape)


def _softmax_bwd_impl(z: Tensor, grad: Tensor, target_entropy: float, tau: float) -> Tensor:
    head = _softmax_head(_last(z, 2), target_entropy, tau)
    gz = _new(z.shape, z.dtype, z)
    native.call("head_backward", head, z, grad, gz)
    return gz


_softmax_bwd = torch.library.custom_op("era::softmax_logits_backward", mutates_args=())(_softmax_bwd_impl)


@_softmax_bwd.register_fake
def _(z, grad, target_entropy, tau):
    return z.new_empty(z.shape)


def _softmax_setup(ctx, inputs, output):
    z, h0, tau = inputs
    ctx.save_for_backward(z)
    ctx.cfg = (h0, tau)


def _softmax_grad(ctx, grad):
    (z,) = ctx.saved_tensors
    return _SoftmaxBackward.apply(z, grad.to(z.dtype), *ctx.cfg), None, None


def _softmax_fwd_rule(op):
    """The batching rule of a softmax forward op ``op(z, *cfg)`` (one output or several)."""

    def rule(info, in_dims, z, target_entropy, tau):
        out = op(_front(z, in_dims[0], info.batch_size), target_entropy, tau)
        return out, ((0,) * len(out) if isinstance(out, tuple) else 0)

    return rule


def _softmax_bwd_rule(op):
    """The batching rule of a softmax backward op ``op(x, grad, *cfg)`` (``x``: ``z``, or the saved softmax)."""

    def rule(info, in_dims, z, grad, target_entropy, tau):
        n = info.batch_size
        return op(_front(z, in_dims[0], n), _front(grad, in_dims[1], n), target_entropy, tau), 0

    return rule


_softmax_fwd.register_autograd(_softmax_grad, setup_context=_softmax_setup)
torch.library.register_vmap(_softmax_fwd, _softmax_fwd_rule(_softmax_fwd))
torch.library.register_vmap(_softmax_bwd, _softmax_bwd_rule(_softmax_bwd))


class _SoftmaxBackward(_FirstOrder):
    @staticmethod
    def forward(z, grad, target_entropy, tau):
        return _softmax_bwd(z, grad, target_entropy, tau)


class _SoftmaxLogits(torch.autograd.Function):
    """The softmax head saving ``z``: the public function's autograd off the CPU (and under
    ``torch.func``), and that of the op itself."""

    generate_vmap_rule = True

    @staticmethod
    def forward(z, target_entropy, tau):
        return _softmax_fwd(z, target_entropy, tau)

    setup_context = staticmethod(_softmax_setup)
    backward = staticmethod(_softmax_grad)


# ------------------------------------------------------- entropies (no gradient)


def _float_out(t: Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


@torch.library.custom_op("era::gaussian_entropy", mutates_args=())
def _gaussian_entropy(log_std: Tensor) -> Tensor:
    out = _new(log_std.shape[:-1], log_std.dtype, log_std)
    native.call("gaussian_entropy", None, log_std, out)
    return out


@_gaussian_entropy.register_fake
def _(log_std):
    return log_std.new_empty(log_std.shape[:-1])


@torch.library.custom_op("era::softmax_entropy", mutates_args=())
def _softmax_entropy(logits: Tensor, temperature: float) -> Tensor:
    out = _new(logits.shape[:-1], _float_out(logits), logits)
    native.call("softmax_entropy", None, logits, out, scalars=(1, temperature))
    return out


@_softmax_entropy.register_fake
def _(logits, temperature):
    return logits.new_empty(logits.shape[:-1], dtype=_float_out(logits))


@torch.library.custom_op("era::truncated_normal_entropy", mutates_args=())
def _truncnorm_entropy(mean: Tensor, log_std: Tensor, low: float, high: float) -> Tensor:
    out = _new(log_std.shape[:-1], log_std.dtype, log_std)
    native.call("truncated_normal_entropy", None, mean, log_std, out, scalars=(2, low, high))
    return out


@_truncnorm_entropy.register_fake
def _(mean, log_std, low, high):
    return log_std.new_empty(log_std.shape[:-1])


def _gaussian_entropy_vmap(info, in_dims, log_std):
    return _gaussian_entropy(_front(log_std, in_dims[0], info.batch_size)), 0


def _softmax_entropy_vmap(info, in_dims, logits, temperature):
    return _softmax_entropy(_front(logits, in_dims[0], info.batch_size), temperature), 0


def _truncnorm_entropy_vmap(info, in_dims, mean, log_std, low, high):
    n = info.batch_size
    return _truncnorm_entropy(_front(mean, in_dims[0], n), _front(log_std, in_dims[1], n), low, high), 0


torch.library.register_vmap(_gaussian_entropy, _gaussian_entropy_vmap)
torch.library.register_vmap(_softmax_entropy, _softmax_entropy_vmap)
torch.library.register_vmap(_truncnorm_entropy, _truncnorm_entropy_vmap)


def gaussian_entropy(log_std: Tensor) -> Tensor:
    """Entropy of ``N(mu, diag(exp(log_std))^2)`` per row (docs/math.md#gaussian-entropy):
    ``[..., D]`` -> ``[...]``, float32 or float64. No gradient: the result is detached (as
    JAX's stops the gradient), so it never requires grad."""
    return _gaussian_entropy(log_std).detach()


def softmax_entropy(logits: Tensor, *, temperature=None) -> Tensor:
    """Entropy of ``softmax(logits / temperature)`` per row (docs/math.md#categorical-entropy):
    ``[..., n]`` (float32/64, bfloat16, float16) -> ``[...]`` (float64 for float64 logits,
    else float32). ``temperature`` None: the token head's default sampling temperature.
    No gradient: the result is detached (as JAX's stops the gradient)."""
    return _softmax_entropy(logits, float(pick(temperature, TOKEN.temperature))).detach()


def truncated_normal_entropy(mean: Tensor, log_std: Tensor, low: float = -1.0, high: float = 1.0) -> Tensor:
    """Entropy of ``TN(mean, exp(log_std), [low, high])`` summed over the last axis
    (docs/math.md#truncated-normal-entropy): ``[..., D]`` -> ``[...]``, float32 or float64;
    infinite bounds allowed. No gradient: the result is detached (as JAX's stops the gradient)."""
    return _truncnorm_entropy(mean, log_std, float(low), float(high)).detach()
