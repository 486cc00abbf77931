"""The configuration defaults of era's heads, read once from the library.

era_jax states no default of its own: at import, ``era_config_default(kind)`` fills
one ``EraConfig`` per head kind, and the values land in frozen dataclasses
(``GaussianDefaults``, ``SoftmaxDefaults``, ``TokenDefaults``, shared by the
Python bindings in the generated ``_era_support`` module). Every public function
takes ``None`` for "the library's default" and resolves it with :func:`pick`.
"""

from __future__ import annotations

from . import _era_support as support
from . import _native as native

__all__ = ["GAUSSIAN", "OPTIMIZERS", "SOFTMAX", "TOKEN", "GaussianDefaults", "SoftmaxDefaults", "TokenDefaults",
           "pick"]

OPTIMIZERS = support.OPTIMIZERS
GaussianDefaults = support.GaussianDefaults
SoftmaxDefaults = support.SoftmaxDefaults
TokenDefaults = support.TokenDefaults
pick = support.pick

#: The library's defaults, read at import.
GAUSSIAN, SOFTMAX, TOKEN = support.read_defaults(native.lib())
