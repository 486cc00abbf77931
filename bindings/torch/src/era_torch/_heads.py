"""The Gaussian and softmax heads' public functions, and the ops behind their autograd on CPU.

Both heads see ``z`` only through ``s = softmax(z)`` (docs/math.md#saved-softmax). On CPU
(float32 and float64, which the public functions pass on) the forward is
``era::gaussian_log_std_saved`` / ``era::softmax_logits_saved``, which return the output and
``s`` (the library's ``era_gaussian_forward_saved``) and, for the softmax head, ``dw/dh`` as
well (``era_softmax_forward_saved_dw``); the autograd graph keeps those instead of ``z``, and
the backward ops ``era::*_saved_backward`` compute the gradient from them (the library's
``era_gaussian_backward_saved`` / ``era_softmax_backward_saved_dw``: no exponential, and for
the softmax head no logarithm or square root either). Forward and backward then compute each
transcendental once, with the same bits as the path from ``z`` (the softmax head's float64
gradient: equal to rounding). The softmax head's residuals take twice the memory of ``z``.
Elsewhere (CUDA tensors, which the library's saved functions do not take) the autograd of
``_ops.py`` keeps ``z``.

The path is chosen by the tensor's device and dtype, which are static under ``torch.compile``
(no graph break) and under ``torch.func``. The ``autograd.Function``s keep ``s`` (and
``dw/dh``) as further outputs of their forward (``setup_context`` saves them; the public
functions return the first output only). They stay differentiable in the graph so that a double
backward reaches the backward op's ``_FirstOrder`` error, as it does from ``z``; the public
functions' backward ignores a gradient of a residual (they never return one; ``torch.compile``
traces the backward with one), the ``*_saved`` ops' own autograd raises for one. The ops'
Python implementations are the checking fallback of the C++ CPU kernels (csrc/cpu_ops.cpp), as
in ``_ops.py``; nothing here computes.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

from . import _native as native
from ._defaults import GAUSSIAN, SOFTMAX, pick
from ._ops import (
    _HALF,
    _front,
    _FirstOrder,
    _gaussian_bwd_rule,
    _gaussian_fwd_rule,
    _gaussian_head,
    _GaussianLogStd,
    _last,
    _new,
    _softmax_fwd_rule,
    _softmax_head,
    _SoftmaxLogits,
)

__all__ = ["gaussian_log_std", "softmax_logits"]

_SAVED_DTYPES = (torch.float32, torch.float64)


def _saves_softmax(z: Tensor) -> bool:
    """Whether the autograd path that saves ``softmax(z)`` takes ``z`` (host memory, float32/64)."""
    return z.device.type == "cpu" and z.dtype in _SAVED_DTYPES


def _no_grad_to_saved():
    return NotImplementedError(
        "era_torch: the saved softmax (the second output of the era::*_saved ops) is a residual for "
        "the backward op, not differentiable; differentiate the first output"
    )


# ------------------------------------------------------------------ Gaussian head


def _gaussian_saved_fwd_impl(
    z: Tensor, delta: Tensor, target_entropy: float, log_std_min: float, log_std_max: float
) -> Tuple[Tensor, Tensor]:
    head = _gaussian_head(_last(z, 1), target_entropy, log_std_min, log_std_max)
    out, saved = _new(z.shape, z.dtype, z), _new(z.shape, z.dtype, z)
    native.call("gaussian_forward_saved", head, z, delta, out, saved)
    return out, saved


_gaussian_saved_fwd = torch.library.custom_op("era::gaussian_log_std_saved", mutates_args=())(_gaussian_saved_fwd_impl)


@_gaussian_saved_fwd.register_fake
def _(z, delta, target_entropy, log_std_min, log_std_max):
    return z.new_empty(z.shape), z.new_empty(z.shape)


def _gaussian_saved_bwd_impl(
    saved: Tensor, delta: Tensor, grad: Tensor, target_entropy: float, log_std_min: float, log_std_max: float
) -> Tuple[Tensor, Tensor]:
    head = _gaussian_head(_last(saved, 1), target_entropy, log_std_min, log_std_max)
    gz = _new(saved.shape, saved.dtype, saved)
    gd = _new(delta.shape, delta.dtype, delta)
    native.call("gaussian_backward_saved", head, saved, delta, grad, gz, gd)
    return gz, gd


_gaussian_saved_bwd = torch.library.custom_op("era::gaussian_log_std_saved_backward", mutates_args=())(
    _gaussian_saved_bwd_impl
)


@_gaussian_saved_bwd.register_fake
def _(saved, delta, grad, target_entropy, log_std_min, log_std_max):
    return saved.new_empty(saved.shape), delta.new_empty(delta.shape)


def _gaussian_saved_setup(ctx, inputs, output):
    _, delta, h0, lo, hi = inputs
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(output[1], delta)
    ctx.cfg = (h0, lo, hi)


def _gaussian_saved_grad(ctx, grad, grad_saved):
    # grad_saved: never a gradient for the public function, which does not return the residual
    # (torch.compile traces this with a tensor there)
    if grad is None:
        return None, None, None, None, None
    saved, delta = ctx.saved_tensors
    gz, gd = _GaussianSavedBackward.apply(saved, delta, grad.to(saved.dtype), *ctx.cfg)
    return gz, gd, None, None, None


def _gaussian_saved_op_grad(ctx, grad, grad_saved):
    if grad_saved is not None:
        raise _no_grad_to_saved()
    return _gaussian_saved_grad(ctx, grad, None)


_gaussian_saved_fwd.register_autograd(_gaussian_saved_op_grad, setup_context=_gaussian_saved_setup)
torch.library.register_vmap(_gaussian_saved_fwd, _gaussian_fwd_rule(_gaussian_saved_fwd))
torch.library.register_vmap(_gaussian_saved_bwd, _gaussian_bwd_rule(_gaussian_saved_bwd))


class _GaussianSavedBackward(_FirstOrder):
    @staticmethod
    def forward(saved, delta, grad, target_entropy, log_std_min, log_std_max):
        return _gaussian_saved_bwd(saved, delta, grad, target_entropy, log_std_min, log_std_max)


class _GaussianLogStdSaved(torch.autograd.Function):
    """The Gaussian head saving ``softmax(z)`` (CPU): ``(out, softmax(z))``."""

    generate_vmap_rule = True  # the ops' batching rules

    @staticmethod
    def forward(z, delta, target_entropy, log_std_min, log_std_max):
        return _gaussian_saved_fwd(z, delta, target_entropy, log_std_min, log_std_max)

    setup_context = staticmethod(_gaussian_saved_setup)
    backward = staticmethod(_gaussian_saved_grad)


class _GaussianLogStdSavedOp(_GaussianLogStdSaved):
    """The op's own autograd (the C++ CPU kernels' graph-recording calls), where the residual
    is an output that a gradient could reach."""

    backward = staticmethod(_gaussian_saved_op_grad)


def _gaussian_log_std_graph(z: Tensor, delta: Tensor, target_entropy: float, log_std_min: float, log_std_max: float):
    """The public function's autograd once its arguments are resolved."""
    if _saves_softmax(z):
        return _GaussianLogStdSaved.apply(z, delta, target_entropy, log_std_min, log_std_max)[0]
    return _GaussianLogStd.apply(z, delta, target_entropy, log_std_min, log_std_max)


def gaussian_log_std(z: Tensor, *, target_entropy: float, log_std_min=None, log_std_max=None, delta=None) -> Tensor:
    """ERA Gaussian head (docs/math.md#gaussian-head): log-stds ``[..., D]`` whose Gaussian
    entropy is at least ``target_entropy + delta`` in every row.

    Args:
      z: raw log-std pre-activations ``[..., D]``, float32 or float64 (float16/bfloat16,
        e.g. under autocast, are computed and returned in float32); any layout.
      target_entropy: ``H0``, nats, of the whole D-dimensional Gaussian.
      log_std_min, log_std_max: the log-std bounds (None: the library's defaults).
      delta: the compensation: a float, a 0-d tensor, or a tensor with one value per row
        (``z.shape[:-1]``); differentiable (d/d delta from the library's backward).
        None: the library's default.

    Returns:
      ``clip(log_std_max + k*softmax(z), log_std_min, log_std_max)``, shape of ``z``. On CPU
      the autograd graph keeps ``softmax(z)`` for the backward instead of ``z``
      (docs/math.md#saved-softmax): each exponential is computed once.

    Raises:
      EraError: the library's status and message for an invalid configuration, an
        infeasible ``target_entropy + delta``, a NaN delta, a bad shape or dtype.
    """
    if z.dtype in _HALF:
        z = z.float()
    lo = float(pick(log_std_min, GAUSSIAN.log_std_min))
    hi = float(pick(log_std_max, GAUSSIAN.log_std_max))
    delta = pick(delta, GAUSSIAN.delta)
    if isinstance(delta, Tensor):
        delta = delta.to(dtype=z.dtype, device=z.device)
    else:
        delta = torch.full((), float(delta), dtype=z.dtype, device=z.device)
    return _gaussian_log_std_graph(z, delta, float(target_entropy), lo, hi)


# ------------------------------------------------------------------ softmax head


def _softmax_saved_fwd_impl(z: Tensor, target_entropy: float, tau: float) -> Tuple[Tensor, Tensor, Tensor]:
    head = _softmax_head(_last(z, 2), target_entropy, tau)
    out, saved, dwdh = _new(z.shape, z.dtype, z), _new(z.shape, z.dtype, z), _new(z.shape, z.dtype, z)
    native.call("softmax_forward_saved_dw", head, z, out, saved, dwdh)
    return out, saved, dwdh


_softmax_saved_fwd = torch.library.custom_op("era::softmax_logits_saved", mutates_args=())(_softmax_saved_fwd_impl)


@_softmax_saved_fwd.register_fake
def _(z, target_entropy, tau):
    return z.new_empty(z.shape), z.new_empty(z.shape), z.new_empty(z.shape)


def _softmax_saved_bwd_impl(saved: Tensor, dwdh: Tensor, grad: Tensor, target_entropy: float, tau: float) -> Tensor:
    head = _softmax_head(_last(saved, 2), target_entropy, tau)
    gz = _new(saved.shape, saved.dtype, saved)
    native.call("softmax_backward_saved_dw", head, saved, dwdh, grad, gz)
    return gz


_softmax_saved_bwd = torch.library.custom_op("era::softmax_logits_saved_backward", mutates_args=())(_softmax_saved_bwd_impl)


@_softmax_saved_bwd.register_fake
def _(saved, dwdh, grad, target_entropy, tau):
    return saved.new_empty(saved.shape)


def _softmax_saved_setup(ctx, inputs, output):
    _, h0, tau = inputs
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(output[1], output[2])
    ctx.cfg = (h0, tau)


def _softmax_saved_grad(ctx, grad, grad_saved, grad_dwdh):
    if grad is None:
        return None, None, None
    saved, dwdh = ctx.saved_tensors
    return _SoftmaxSavedBackward.apply(saved, dwdh, grad.to(saved.dtype), *ctx.cfg), None, None


def _softmax_saved_op_grad(ctx, grad, grad_saved, grad_dwdh):
    if grad_saved is not None or grad_dwdh is not None:
        raise _no_grad_to_saved()
    return _softmax_saved_grad(ctx, grad, None, None)


def _softmax_saved_bwd_rule(info, in_dims, saved, dwdh, grad, target_entropy, tau):
    """The batching rule of the backward from ``(softmax(z), dw/dh)``."""
    n = info.batch_size
    args = (_front(t, b, n) for t, b in zip((saved, dwdh, grad), in_dims[:3]))
    return _softmax_saved_bwd(*args, target_entropy, tau), 0


_softmax_saved_fwd.register_autograd(_softmax_saved_op_grad, setup_context=_softmax_saved_setup)
torch.library.register_vmap(_softmax_saved_fwd, _softmax_fwd_rule(_softmax_saved_fwd))
torch.library.register_vmap(_softmax_saved_bwd, _softmax_saved_bwd_rule)


class _SoftmaxSavedBackward(_FirstOrder):
    @staticmethod
    def forward(saved, dwdh, grad, target_entropy, tau):
        return _softmax_saved_bwd(saved, dwdh, grad, target_entropy, tau)


class _SoftmaxLogitsSaved(torch.autograd.Function):
    """The softmax head saving ``softmax(z)`` and ``dw/dh`` (CPU): ``(out, softmax(z), dw/dh)``."""

    generate_vmap_rule = True

    @staticmethod
    def forward(z, target_entropy, tau):
        return _softmax_saved_fwd(z, target_entropy, tau)

    setup_context = staticmethod(_softmax_saved_setup)
    backward = staticmethod(_softmax_saved_grad)


class _SoftmaxLogitsSavedOp(_SoftmaxLogitsSaved):
    """The op's own autograd (the C++ CPU kernels' graph-recording calls)."""

    backward = staticmethod(_softmax_saved_op_grad)


def _softmax_logits_graph(z: Tensor, target_entropy: float, tau: float):
    """The public function's autograd once its arguments are resolved."""
    if _saves_softmax(z):
        return _SoftmaxLogitsSaved.apply(z, target_entropy, tau)[0]
    return _SoftmaxLogits.apply(z, target_entropy, tau)


def softmax_logits(z: Tensor, *, target_entropy: float, tau=None) -> Tensor:
    """ERA softmax head (docs/math.md#softmax-head): logits ``[..., n]`` whose softmax has
    entropy at least ``target_entropy`` in every row.

    Args:
      z: raw logits ``[..., n]``, float32 or float64 (float16/bfloat16 computed and returned
        in float32); any layout.
      target_entropy: ``H0`` in nats.
      tau: sharpness ``>= e`` (None: the library's default).

    Returns:
      the output logits, shape of ``z``; differentiable (the library's VJP). On CPU the
      autograd graph keeps ``softmax(z)`` for the backward instead of ``z``.
    """
    if z.dtype in _HALF:
        z = z.float()
    return _softmax_logits_graph(z, float(target_entropy), float(pick(tau, SOFTMAX.tau)))
