"""``torch.nn`` wrappers of the heads and the ``delta`` learner.

:class:`DeltaLearner` owns a Gaussian head of the library and runs its learner
(``era_head_update_delta``: SGD or Adam on ``mean_entropy - H0``, then the
feasibility clamp, docs/math.md#delta-learning); :class:`EraGaussian` keeps the
learned value in a buffer that its forward passes to :func:`gaussian_log_std`,
so a compiled actor step reads the current ``delta`` without recompiling.
"""

from __future__ import annotations

import ctypes
import warnings
from typing import Optional

import torch
from torch import Tensor, nn

from . import _native as native
from ._defaults import GAUSSIAN, OPTIMIZERS, pick
from ._gaussian_mask import gaussian_log_std_masked
from ._native import EraError
from ._heads import gaussian_log_std, softmax_logits

__all__ = ["DeltaLearner", "EraGaussian", "EraSoftmax"]

#: The warning :class:`EraGaussian` gives for ``dim == 1`` (docs/math.md#gaussian-forward).
ONE_DIM_WARNING = (
    "era_torch: EraGaussian with dim=1 outputs the same log-std for every input, "
    "max(target_entropy + delta - 0.5*ln(2*pi*e), log_std_min), and passes no gradient to z "
    "(the softmax over one dimension is 1): the network cannot change the std. If a std fixed "
    "by the target (and a learned delta) is what you want, this is it; for a state-dependent std "
    "with the same entropy floor, bound the log-std below yourself "
    "(log_std = floor + softplus(z), floor = target_entropy + delta - 0.5*ln(2*pi*e)); "
    "the head is for action dimensions >= 2."
)


class DeltaLearner:
    """The learner of the Gaussian head's compensation ``delta``, run by the library.

    Args:
      dim, target_entropy: the head's ``D`` and ``H0``.
      log_std_min, log_std_max, delta: bounds and initial value (None: library defaults).
      optimizer: ``"adam"``, ``"sgd"`` or ``"fixed"`` (None: the library's default).
      lr, beta1, beta2, eps: the optimizer's settings (None: library defaults).

    Raises:
      era_torch.EraError: the library's status and message for an invalid configuration or an
        infeasible initial ``delta``.
    """

    def __init__(
        self,
        *,
        dim: int,
        target_entropy: float,
        log_std_min=None,
        log_std_max=None,
        delta=None,
        optimizer=None,
        lr=None,
        beta1=None,
        beta2=None,
        eps=None,
    ):
        name = pick(optimizer, GAUSSIAN.optimizer)
        if name not in OPTIMIZERS:
            raise EraError(f"unknown delta optimizer {name!r}; expected one of {sorted(OPTIMIZERS)}",
                           "ERA_STATUS_INVALID_CONFIG")
        self.dim = int(dim)
        self.target_entropy = float(target_entropy)
        self.log_std_min = float(pick(log_std_min, GAUSSIAN.log_std_min))
        self.log_std_max = float(pick(log_std_max, GAUSSIAN.log_std_max))
        fields = (
            ("dim", self.dim),
            ("target_entropy", self.target_entropy),
            ("log_std_min", self.log_std_min),
            ("log_std_max", self.log_std_max),
            ("delta", float(pick(delta, GAUSSIAN.delta))),
            ("delta_optimizer", OPTIMIZERS[name]),
            ("delta_lr", float(pick(lr, GAUSSIAN.lr))),
            ("delta_beta1", float(pick(beta1, GAUSSIAN.beta1))),
            ("delta_beta2", float(pick(beta2, GAUSSIAN.beta2))),
            ("delta_eps", float(pick(eps, GAUSSIAN.eps))),
        )
        self._head = native.Head(native.ERA_HEAD_KIND_GAUSSIAN, fields)

    @property
    def delta(self) -> float:
        """The current ``delta`` (``era_head_delta``)."""
        out = ctypes.c_double()
        native.check(native.lib().era_head_delta(self._head.ptr, ctypes.byref(out)), "era_head_delta")
        return out.value

    def set_delta(self, value: float) -> float:
        """Sets ``delta`` (clamped feasible by the library; Adam's moments kept); returns it."""
        native.check(native.lib().era_head_set_delta(self._head.ptr, float(value)), "era_head_set_delta")
        return self.delta

    def update(self, mean_entropy) -> float:
        """One learner step from the batch-mean entropy of the *bounded* policy (a float or a
        0-d tensor); returns the new ``delta``."""
        if isinstance(mean_entropy, Tensor):
            mean_entropy = mean_entropy.detach().item()
        out = ctypes.c_double()
        native.check(
            native.lib().era_head_update_delta(self._head.ptr, float(mean_entropy), ctypes.byref(out)),
            "era_head_update_delta",
        )
        return out.value

    def to_json(self) -> str:
        """The learner's state (configuration, ``delta``, Adam's moments) as the library's JSON."""
        n = ctypes.c_size_t()
        native.check(native.lib().era_head_to_json(self._head.ptr, None, 0, ctypes.byref(n)), "era_head_to_json")
        buf = ctypes.create_string_buffer(n.value + 1)
        native.check(native.lib().era_head_to_json(self._head.ptr, buf, n.value + 1, ctypes.byref(n)), "era_head_to_json")
        return buf.value.decode()

    def load_json(self, text: str) -> None:
        """Restores a state saved by :meth:`to_json`."""
        ptr = ctypes.c_void_p()
        native.check(native.lib().era_head_from_json(text.encode(), ctypes.byref(ptr)), "era_head_from_json")
        head = native.Head.__new__(native.Head)
        head.ptr, head.kind, head._free = ptr, native.ERA_HEAD_KIND_GAUSSIAN, native.lib().era_head_free
        self._head = head


class EraGaussian(nn.Module):
    """The ERA Gaussian head as a module: ``forward(z)`` returns log-stds whose Gaussian has
    entropy at least ``target_entropy + delta`` per row; ``update_delta(mean_entropy)`` runs
    one step of the learner (once per training step, outside the compiled region).

    The current ``delta`` lives in the buffer ``delta``, a copy of the learner's value (which
    the library keeps in float64) in torch's default dtype when the module is built, so that
    a float32 actor's compiled graph uses it as it is (a float64 buffer there costs a cast
    kernel per step); converting the module to float64 (``.double()``, ``.to(torch.float64)``)
    makes it float64 with the learner's exact value, and to a half dtype makes it float32,
    never coarser. Write it through :meth:`update_delta` (or ``load_state_dict``): a
    conversion of dtype takes the learner's value. The learner's full state (Adam's
    moments) is saved with the module's ``state_dict`` (extra state).

    With ``dim == 1`` the output is a constant (docs/math.md#gaussian-forward): construction
    warns (``UserWarning``, :data:`ONE_DIM_WARNING`) and says what to use instead."""

    def __init__(
        self,
        dim: int,
        target_entropy: float,
        *,
        log_std_min=None,
        log_std_max=None,
        delta=None,
        learn_delta: bool = True,
        optimizer=None,
        lr=None,
        beta1=None,
        beta2=None,
        eps=None,
    ):
        super().__init__()
        self.learner = DeltaLearner(
            dim=dim,
            target_entropy=target_entropy,
            log_std_min=log_std_min,
            log_std_max=log_std_max,
            delta=delta,
            optimizer=optimizer if learn_delta else "fixed",
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            eps=eps,
        )
        self.dim = self.learner.dim
        if self.dim == 1:
            warnings.warn(ONE_DIM_WARNING, UserWarning, stacklevel=2)
        self.target_entropy = self.learner.target_entropy
        self.log_std_min = self.learner.log_std_min
        self.log_std_max = self.learner.log_std_max
        self.register_buffer("delta", torch.tensor(self.learner.delta, dtype=torch.get_default_dtype()))

    def _apply(self, fn, recurse=True):
        before = self.delta.dtype
        out = super()._apply(fn, recurse)
        after = self.delta.dtype
        if after != before and after != torch.float32:  # float64 (exact) or a half dtype (float32)
            dtype = torch.float64 if after == torch.float64 else torch.float32
            self._buffers["delta"] = torch.tensor(self.learner.delta, dtype=dtype, device=self.delta.device)
        return out

    def forward(self, z: Tensor, mask: Optional[Tensor] = None, *, fill: Optional[float] = None) -> Tensor:
        """Log-stds of ``z`` ``[..., D]``. With ``mask`` (1/True active, 0/False inactive,
        broadcastable to ``z``): the head over each row's active coordinates, target
        ``(a/D)*(target_entropy + delta)`` for ``a`` of them, and ``fill`` (None: ``z``)
        at the inactive ones (:func:`era_torch.gaussian_log_std_masked`,
        docs/math.md#gaussian-mask)."""
        # a copy of the buffer: the backward needs the delta this forward used, and
        # update_delta may write the buffer in between (in a compiled graph, one fused kernel)
        kw = dict(
            target_entropy=self.target_entropy,
            log_std_min=self.log_std_min,
            log_std_max=self.log_std_max,
            delta=self.delta.clone(),
        )
        if mask is None:
            return gaussian_log_std(z, **kw)
        return gaussian_log_std_masked(z, mask, fill=fill, **kw)

    @torch.no_grad()
    def update_delta(self, mean_entropy) -> float:
        """One learner step (``mean_entropy``: batch mean of the bounded policy's entropy)."""
        value = self.learner.update(mean_entropy)
        self.delta.fill_(value)
        return value

    @torch.no_grad()
    def set_delta(self, value: float) -> float:
        """Sets ``delta`` (the library clamps it feasible and keeps Adam's moments,
        :meth:`DeltaLearner.set_delta`) and the buffer with it; returns the value set."""
        value = self.learner.set_delta(value)
        self.delta.fill_(value)
        return value

    def get_extra_state(self):
        return {"learner": self.learner.to_json()}

    def set_extra_state(self, state):
        self.learner.load_json(state["learner"])
        with torch.no_grad():
            self.delta.fill_(self.learner.delta)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, target_entropy={self.target_entropy}, "
                f"log_std=[{self.log_std_min}, {self.log_std_max}]")


class EraSoftmax(nn.Module):
    """The ERA softmax head as a module: ``forward(z)`` returns logits whose softmax has
    entropy at least ``target_entropy`` in every row."""

    def __init__(self, target_entropy: float, *, tau=None):
        super().__init__()
        self.target_entropy = float(target_entropy)
        self.tau = tau

    def forward(self, z: Tensor) -> Tensor:
        return softmax_logits(z, target_entropy=self.target_entropy, tau=self.tau)

    def extra_repr(self) -> str:
        return f"target_entropy={self.target_entropy}, tau={self.tau}"
