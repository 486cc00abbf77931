"""era_jax: ERA (Entropy Regularizing Activation) heads for JAX.

Every operation is an XLA FFI custom call into the era C library (one native
shared object shipped with this package), differentiable through
``jax.custom_vjp`` with the library's backward, batchable with ``jax.vmap``
and usable inside ``jax.jit`` and ``shard_map``.

    import era_jax
    era = era_jax.GaussianEra(6, target_entropy=-6.0, mode="bounded")   # settings of head + delta
    delta = era.init_delta()
    pi = era_jax.policies.TruncatedNormal(jnp.tanh(mean), era.log_std(z, delta))
    delta = era.update_delta(delta, pi.entropy())
    log_std = era_jax.gaussian_log_std(z, target_entropy=-6.0, delta=delta)   # the functional API
    logits = era_jax.softmax_logits(z, target_entropy=1.0)
    logp, ent, scale, adv = era_jax.token_logprobs(logits, labels, response_ids, advantages)

Configuration keywords left ``None`` take the library's defaults
(``era_config_default``, read once at import).
"""

from . import _native
from ._native import EraError, abi_version, library_path, version
from ._ops import (
    gaussian_entropy,
    softmax_entropy,
    token_entropy,
    token_logprobs,
    truncated_normal_entropy,
)
from ._small_heads import gaussian_log_std, softmax_logits
from ._gaussian_mask import gaussian_log_std_masked
from ._token_split import TokenColumns, TokenDecision, token_decide, token_logprob_columns
from ._token_blocks import fused_token_columns, token_logprob_columns_sharded, vocab_sharded_token_columns
from .delta import DeltaState, delta_init, delta_update, max_delta
from .gaussian_era import GaussianEra, truncation_gap_bound
from . import policies  # noqa: E402  (TruncatedNormal, TanhGaussian)

__version__ = "0.1.0"

# Load the native library and register the XLA FFI targets now, so that a broken
# installation fails at import (this does not initialise any JAX backend).
_native.lib()
_native.register_targets()

__all__ = [
    "DeltaState",
    "EraError",
    "TokenColumns",
    "TokenDecision",
    "GaussianEra",
    "abi_version",
    "delta_init",
    "delta_update",
    "gaussian_entropy",
    "token_decide",
    "token_logprob_columns",
    "fused_token_columns",
    "token_logprob_columns_sharded",
    "vocab_sharded_token_columns",
    "gaussian_log_std",
    "gaussian_log_std_masked",
    "library_path",
    "max_delta",
    "policies",
    "softmax_entropy",
    "softmax_logits",
    "token_entropy",
    "token_logprobs",
    "truncated_normal_entropy",
    "truncation_gap_bound",
    "version",
]
