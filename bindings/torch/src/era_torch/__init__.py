"""era_torch: PyTorch bindings of era, the ERA (Entropy Regularizing Activation) heads.

Every op is a ``torch.library`` custom op over era's C ABI (namespace ``era``):
it works in eager mode, under ``torch.compile(fullgraph=True)``, with autograd
(the library's own backward), under autocast and under ``torch.func`` (``grad``,
``vjp``, ``jacrev``, ``vmap`` with batching rules). Defaults come from the library
(``era_config_default``), see :mod:`era_torch.defaults`. On CPU the Gaussian and
softmax ops run in C++ kernels over the same C ABI where the package was built with
torch at hand (:func:`cpu_kernels`), in Python otherwise, with the same results.
"""

from . import _defaults as defaults
from ._native import EraError, abi_version, cpu_kernels, cpu_kernels_status, library_path, version
from ._ops import gaussian_entropy, softmax_entropy, truncated_normal_entropy
from ._heads import gaussian_log_std, softmax_logits
from ._gaussian_mask import gaussian_log_std_masked
from ._token import token_logprobs, token_outputs
from ._token_split import TokenColumns, TokenDecision, token_decide, token_logprob_columns
from ._token_blocks import fused_token_columns, sharded_token_logprob_columns
from .modules import DeltaLearner, EraGaussian, EraSoftmax
from ._verl_legacy import EraLogprobs, response_ids_from_mask, verl_era_logprobs
from ._native import load_cpu_kernels as _load_cpu_kernels

_load_cpu_kernels()  # after the ops are defined: their CPU kernels in C++, where built

__version__ = "0.1.0"

__all__ = [
    "DeltaLearner",
    "EraError",
    "EraGaussian",
    "EraLogprobs",
    "EraSoftmax",
    "abi_version",
    "cpu_kernels",
    "cpu_kernels_status",
    "defaults",
    "fused_token_columns",
    "gaussian_entropy",
    "gaussian_log_std",
    "gaussian_log_std_masked",
    "library_path",
    "response_ids_from_mask",
    "sharded_token_logprob_columns",
    "softmax_entropy",
    "softmax_logits",
    "TokenColumns",
    "TokenDecision",
    "token_decide",
    "token_logprob_columns",
    "token_logprobs",
    "token_outputs",
    "truncated_normal_entropy",
    "verl_era_logprobs",
    "version",
]
