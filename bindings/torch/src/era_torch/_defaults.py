"""The configuration defaults of era's heads, read once from the library.

era_torch states no default of its own: at import, ``era_config_default(kind)``
fills one ``EraConfig`` per head kind and the values land in the frozen
dataclasses below. Every public function takes ``None`` for "the library's
default" and resolves it here with :func:`pick`.
"""

from __future__ import annotations

import dataclasses

from . import _era_h as h
from . import _native as native

__all__ = ["GAUSSIAN", "OPTIMIZERS", "SOFTMAX", "TOKEN", "pick"]

#: The delta learner's optimizers by name.
OPTIMIZERS = {
    "fixed": h.ERA_DELTA_OPTIMIZER_FIXED,
    "sgd": h.ERA_DELTA_OPTIMIZER_SGD,
    "adam": h.ERA_DELTA_OPTIMIZER_ADAM,
}


@dataclasses.dataclass(frozen=True)
class GaussianDefaults:
    """The Gaussian head's defaults: log-std bounds, initial ``delta``, the delta learner."""

    log_std_min: float
    log_std_max: float
    delta: float
    optimizer: str
    lr: float
    beta1: float
    beta2: float
    eps: float


@dataclasses.dataclass(frozen=True)
class SoftmaxDefaults:
    """The softmax head's defaults."""

    tau: float


@dataclasses.dataclass(frozen=True)
class TokenDefaults:
    """The token head's defaults."""

    k: float
    omega_low: float
    omega_high: float
    top_fraction: float
    temperature: float
    advantage_scaling: bool
    vocab_topk: int


def _load():
    g = native.default_config(native.ERA_HEAD_KIND_GAUSSIAN)
    names = {v: k for k, v in OPTIMIZERS.items()}
    gaussian = GaussianDefaults(
        log_std_min=g.log_std_min,
        log_std_max=g.log_std_max,
        delta=g.delta,
        optimizer=names[g.delta_optimizer],
        lr=g.delta_lr,
        beta1=g.delta_beta1,
        beta2=g.delta_beta2,
        eps=g.delta_eps,
    )
    softmax = SoftmaxDefaults(tau=native.default_config(native.ERA_HEAD_KIND_SOFTMAX).tau)
    t = native.default_config(native.ERA_HEAD_KIND_TOKEN)
    token = TokenDefaults(
        k=t.k,
        omega_low=t.omega_low,
        omega_high=t.omega_high,
        top_fraction=t.top_fraction,
        temperature=t.temperature,
        advantage_scaling=bool(t.advantage_scaling),
        vocab_topk=int(t.vocab_topk),
    )
    return gaussian, softmax, token


GAUSSIAN, SOFTMAX, TOKEN = _load()


def pick(value, default):
    """``value``, or ``default`` (the library's) when ``value`` is None."""
    return default if value is None else value
