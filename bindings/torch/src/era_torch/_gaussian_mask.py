"""The Gaussian head under a per-row active-dimension mask (docs/math.md#gaussian-mask) as
``torch.library`` custom ops: ``era::gaussian_log_std_masked`` and its backward, over
``era_gaussian_forward_masked`` / ``era_gaussian_backward_masked``.

Built like the unmasked op in ``_ops.py`` (fake implementations for ``torch.compile``, an
autograd formula that calls the library's backward, batching rules), on its helpers. The
mask is not differentiated; ``delta`` is a tensor, so a compiled graph reads its current
value without recompiling or synchronising with the host.
"""

from __future__ import annotations

import ctypes
from typing import Optional, Tuple

import torch
from torch import Tensor

from . import _native as native
from ._defaults import GAUSSIAN, pick
from ._ops import _HALF, _FirstOrder, _front, _gaussian_delta_rows, _gaussian_head, _last, _new

__all__ = ["gaussian_log_std_masked"]


def _fill_ptr(fill: Optional[float]):
    """The C call's ``fill``: a pointer to the value, or NULL (pass-through)."""
    return None if fill is None else ctypes.byref(ctypes.c_double(fill))


def _fwd_impl(z: Tensor, mask: Tensor, delta: Tensor, target_entropy: float, log_std_min: float,
              log_std_max: float, fill: Optional[float]) -> Tensor:
    head = _gaussian_head(_last(z, 1), target_entropy, log_std_min, log_std_max)
    out = _new(z.shape, z.dtype, z)
    native.call("gaussian_forward_masked", head, z, mask, delta, out, scalars=(3, _fill_ptr(fill)))
    return out


_fwd = torch.library.custom_op("era::gaussian_log_std_masked", mutates_args=())(_fwd_impl)


@_fwd.register_fake
def _(z, mask, delta, target_entropy, log_std_min, log_std_max, fill):
    return z.new_empty(z.shape)


def _bwd_impl(z: Tensor, mask: Tensor, delta: Tensor, grad: Tensor, target_entropy: float, log_std_min: float,
              log_std_max: float, fill: Optional[float]) -> Tuple[Tensor, Tensor]:
    head = _gaussian_head(_last(z, 1), target_entropy, log_std_min, log_std_max)
    gz = _new(z.shape, z.dtype, z)
    gd = _new(delta.shape, delta.dtype, delta)
    native.call("gaussian_backward_masked", head, z, mask, delta, grad, gz, gd, scalars=(3, _fill_ptr(fill)))
    return gz, gd


_bwd = torch.library.custom_op("era::gaussian_log_std_masked_backward", mutates_args=())(_bwd_impl)


@_bwd.register_fake
def _(z, mask, delta, grad, target_entropy, log_std_min, log_std_max, fill):
    return z.new_empty(z.shape), delta.new_empty(delta.shape)


def _setup(ctx, inputs, output):
    z, mask, delta, h0, lo, hi, fill = inputs
    ctx.save_for_backward(z, mask, delta)
    ctx.cfg = (h0, lo, hi, fill)


def _grad(ctx, grad):
    z, mask, delta = ctx.saved_tensors
    gz, gd = _MaskedBackward.apply(z, mask, delta, grad.to(z.dtype), *ctx.cfg)
    return gz, None, gd, None, None, None, None


def _fwd_vmap(info, in_dims, z, mask, delta, target_entropy, log_std_min, log_std_max, fill):
    n = info.batch_size
    z, mask = _front(z, in_dims[0], n), _front(mask, in_dims[1], n)
    db = in_dims[2]
    if db is not None or delta.dim() > 1 or (delta.dim() == 1 and delta.shape[0] != 1):
        delta = _gaussian_delta_rows(delta, db, tuple(z.shape[:-1]), n)
    return _fwd(z, mask, delta, target_entropy, log_std_min, log_std_max, fill), 0


def _bwd_vmap(info, in_dims, z, mask, delta, grad, target_entropy, log_std_min, log_std_max, fill):
    n = info.batch_size
    z, mask, grad = _front(z, in_dims[0], n), _front(mask, in_dims[1], n), _front(grad, in_dims[3], n)
    db = in_dims[2]
    shape = tuple(delta.shape[1:]) if db is not None else tuple(delta.shape)  # delta of one example
    rows = _gaussian_delta_rows(delta, db, tuple(z.shape[:-1]), n)
    gz, gd = _bwd(z, mask, rows, grad, target_entropy, log_std_min, log_std_max, fill)
    if shape in ((), (1,)) and gd.dim() > 1:
        # a scalar delta's gradient: the sum over the example's rows in row order, in float64 (as the library)
        gd = gd.reshape(n, -1).double().cumsum(1)[:, -1].to(gd.dtype)
    return (gz, gd.reshape((n,) + shape)), (0, 0)


_fwd.register_autograd(_grad, setup_context=_setup)
torch.library.register_vmap(_fwd, _fwd_vmap)
torch.library.register_vmap(_bwd, _bwd_vmap)


class _MaskedBackward(_FirstOrder):
    @staticmethod
    def forward(z, mask, delta, grad, target_entropy, log_std_min, log_std_max, fill):
        return _bwd(z, mask, delta, grad, target_entropy, log_std_min, log_std_max, fill)


class _MaskedLogStd(torch.autograd.Function):
    """The masked Gaussian head for the public function (and ``torch.func``)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(z, mask, delta, target_entropy, log_std_min, log_std_max, fill):
        return _fwd(z, mask, delta, target_entropy, log_std_min, log_std_max, fill)

    setup_context = staticmethod(_setup)
    backward = staticmethod(_grad)


def gaussian_log_std_masked(z: Tensor, mask: Tensor, *, target_entropy: float, log_std_min=None,
                            log_std_max=None, delta=None, fill: Optional[float] = None) -> Tensor:
    """ERA Gaussian head with a per-row active-dimension mask (docs/math.md#gaussian-mask).

    Each row's ``a`` active coordinates get the head of dimension ``a`` with target
    ``(a/D)*(target_entropy + delta)``: their Gaussian has at least that entropy. A mask of
    ones gives :func:`era_torch.gaussian_log_std`'s result exactly.

    Args:
      z: raw log-std pre-activations ``[..., D]``, float32 or float64 (float16/bfloat16 are
        computed and returned in float32).
      mask: 1 (or True) for active, 0 (False) for inactive coordinates; bool or any float
        dtype, broadcastable to ``z`` (e.g. one row per task, indexed by each row's task).
        Not differentiated.
      target_entropy: ``H0``, nats, of the whole D-dimensional Gaussian.
      log_std_min, log_std_max: the log-std bounds (None: the library's defaults).
      delta: the compensation, as for :func:`era_torch.gaussian_log_std` (a float, a 0-d
        tensor or one value per row; differentiable).
      fill: the value of inactive coordinates (gradient 0); None passes ``z`` through there
        (gradient passed through).

    Raises:
      EraError: the library's status and message (a mask entry other than 0 or 1, an
        infeasible ``target_entropy + delta``, a bad shape or dtype).
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
    mask = mask.to(dtype=z.dtype, device=z.device).expand_as(z)
    return _MaskedLogStd.apply(z, mask, delta, float(target_entropy), lo, hi, None if fill is None else float(fill))
