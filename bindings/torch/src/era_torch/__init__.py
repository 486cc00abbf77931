"""era_torch: PyTorch bindings of era, the ERA (Entropy Regularizing Activation) heads.

Every op is a ``torch.library`` custom op over era's C ABI (namespace ``era``):
it works in eager mode, under ``torch.compile(fullgraph=True)``, with autograd
(the library's own backward), under autocast and under ``torch.func`` (``grad``,
``vjp``, ``jacrev``, ``vmap`` with batching rules). Defaults come from the library
(``era_config_default``), see :mod:`era_torch.defaults`.
"""

from . import _defaults as defaults
from ._native import EraError, abi_version, library_path, version
from ._ops import (
    gaussian_entropy,
    gaussian_log_std,
    softmax_entropy,
    softmax_logits,
    truncated_normal_entropy,
)
from ._token import token_logprobs, token_outputs
from .modules import DeltaLearner, EraGaussian, EraSoftmax
from .verl import EraLogprobs, response_ids_from_mask, verl_era_logprobs

__version__ = "0.1.0"

__all__ = [
    "DeltaLearner",
    "EraError",
    "EraGaussian",
    "EraLogprobs",
    "EraSoftmax",
    "abi_version",
    "defaults",
    "gaussian_entropy",
    "gaussian_log_std",
    "library_path",
    "response_ids_from_mask",
    "softmax_entropy",
    "softmax_logits",
    "token_logprobs",
    "token_outputs",
    "truncated_normal_entropy",
    "verl_era_logprobs",
    "version",
]
