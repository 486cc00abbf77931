"""A pure-JAX implementation of docs/math.md, independent of the era library.

For comparisons (the test suite, ``bench.py``) and as executable
documentation. Same signatures as the native functions of ``era_jax``;
gradients come from JAX autodiff, with the conventions of docs/math.md: the
Gaussian clip passes gradient only strictly inside the bounds, the softmax
head's min-shift and the token head's scale decision are constants
(``stop_gradient``). Computation happens in the input dtype (float32 for
bfloat16/float16 logits), so float32 results differ from the library, which
accumulates in float64, by float32 rounding.

Not the production path: the token head here builds per-response statistics
with sorts and segment sums, and materialises ``[N, V]`` temporaries.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import erfc, log_ndtr, logsumexp

__all__ = [
    "L2PE",
    "OUTSIDE_TOPK_LOGPROB",
    "gaussian_entropy",
    "gaussian_log_std",
    "response_entropy",
    "softmax_entropy",
    "softmax_logits",
    "token_entropy",
    "token_logprobs",
    "truncated_normal_entropy",
]

#: ln(2*pi*e)
L2PE = math.log(2.0 * math.pi * math.e)
#: log-prob of a label outside the vocabulary top-K
OUTSIDE_TOPK_LOGPROB = -1e4


def _entropy_of_logits(z):
    """H(softmax(z)) = lse(z) - sum(p*z) over the last axis (stable)."""
    m = jax.lax.stop_gradient(jnp.max(z, axis=-1, keepdims=True))
    zs = z - m
    e = jnp.exp(zs)
    s = jnp.sum(e, axis=-1)
    return jnp.log(s) - jnp.sum(jnp.where(e > 0, e * zs, 0.0), axis=-1) / s


# ---------------------------------------------------------------- Gaussian head (docs/math.md#gaussian-head)


def gaussian_log_std(z, *, target_entropy, log_std_min=-8.0, log_std_max=0.0, delta=0.0):
    """docs/math.md#gaussian-head: ``clip(log_std_max + k*softmax(z), log_std_min, log_std_max)``."""
    z = jnp.asarray(z)
    d = z.shape[-1]
    delta = jnp.asarray(delta, z.dtype)
    if delta.ndim:
        delta = delta[..., None]
    s_total = target_entropy + delta - 0.5 * d * L2PE
    k = s_total - d * log_std_max
    y = log_std_max + k * jax.nn.softmax(z, axis=-1)
    inside = (y > log_std_min) & (y < log_std_max)
    return jnp.where(inside, y, jax.lax.stop_gradient(jnp.clip(y, log_std_min, log_std_max)))


def gaussian_entropy(log_std):
    """Entropy of ``N(mu, diag(exp(log_std))^2)``: ``sum(log_std) + 0.5*D*ln(2*pi*e)``."""
    log_std = jnp.asarray(log_std)
    return jnp.sum(log_std, axis=-1) + 0.5 * log_std.shape[-1] * L2PE


def truncated_normal_entropy(mean, log_std, low=-1.0, high=1.0):
    """docs/math.md#truncated-normal-entropy, summed over the last axis. Computed in log space
    (``log Z`` from ``log_ndtr`` of the tail that keeps its precision) so that
    float32 stays finite far in the tails."""
    mean = jnp.asarray(mean)
    log_std = jnp.asarray(log_std)
    sigma = jnp.exp(log_std)
    alpha = (low - mean) / sigma
    beta = (high - mean) / sigma

    def log_diff(a, b):  # log(exp(a) - exp(b)) for a > b
        return a + jnp.log1p(-jnp.exp(b - a))

    def q(x):  # P(X > x), accurate in the upper tail
        return 0.5 * erfc(x / math.sqrt(2.0))

    # Z = Phi(beta) - Phi(alpha) from the tail that keeps its precision; in log space
    # (log_ndtr) only where Z itself would underflow
    direct = jnp.where(alpha > 0, q(alpha) - q(beta), jnp.where(beta < 0, q(-beta) - q(-alpha),
                                                                 1.0 - q(-alpha) - q(beta)))
    tiny = jnp.finfo(direct.dtype).tiny * 1e6
    in_log = jnp.where(alpha > 0, log_diff(log_ndtr(-alpha), log_ndtr(-beta)),
                       log_diff(log_ndtr(beta), log_ndtr(jnp.minimum(alpha, beta - 1e-30))))
    log_mass = jnp.where(direct > tiny, jnp.log(jnp.maximum(direct, tiny)), in_log)

    def x_phi_over_mass(x):  # x * phi(x) / Z, 0 at an infinite bound
        fin = jnp.isfinite(x)
        xf = jnp.where(fin, x, 0.0)
        return jnp.where(fin, xf * jnp.exp(-0.5 * xf * xf - 0.5 * math.log(2.0 * math.pi) - log_mass), 0.0)

    h = 0.5 * L2PE + log_std + log_mass + 0.5 * (x_phi_over_mass(alpha) - x_phi_over_mass(beta))
    return jnp.sum(h, axis=-1)


# ---------------------------------------------------------------- softmax head (docs/math.md#softmax-head)


def softmax_logits(z, *, target_entropy, tau=4.0):
    """docs/math.md#softmax-head (the min-shift is a constant)."""
    z = jnp.asarray(z)
    n = z.shape[-1]
    c = math.exp(target_entropy - 1.0)
    ub = math.log(tau) / tau
    slope = (ub - c / n) / (1.0 - 1.0 / n)
    b = (c - slope) / n
    h = slope * jax.nn.softmax(z, axis=-1) + b
    u = -1.0 - jnp.log(h)
    w = -1.0 - jnp.sqrt(2.0 * u) - 0.75 * u
    return w - jax.lax.stop_gradient(jnp.min(w, axis=-1, keepdims=True))


def softmax_entropy(logits):
    """``H(softmax(logits))`` over the last axis."""
    return _entropy_of_logits(jnp.asarray(logits))


# ---------------------------------------------------------------- token head (docs/math.md#token-head)


def _compute_dtype(x):
    return jnp.float64 if x.dtype == jnp.float64 else jnp.float32


def token_entropy(logits, *, temperature=1.0):
    """``H(softmax(logits / T))`` per token."""
    logits = jnp.asarray(logits)
    return _entropy_of_logits(logits.astype(_compute_dtype(logits)) / temperature)


def response_entropy(entropy, response_ids, *, top_fraction=0.2):
    """Per token, the mean of the ``max(1, floor(rho*n_r))`` largest entropies
    of its response (0 for masked tokens, id -1). Works on flat ``[N]`` arrays
    (any batch shape is flattened); ids need not be sorted or contiguous."""
    shape = jnp.shape(entropy)
    h = jnp.reshape(entropy, (-1,))
    ids = jnp.reshape(response_ids, (-1,))
    n = h.shape[0]
    if n == 0:
        return jnp.zeros(shape, h.dtype)
    # sort by response, then by descending entropy
    order = jnp.lexsort((-h, ids))
    sid = ids[order]
    sh = h[order]
    pos = jnp.arange(n)
    start = jnp.searchsorted(sid, sid, side="left")
    stop = jnp.searchsorted(sid, sid, side="right")
    rank = pos - start
    count = stop - start
    # k_r = max(1, floor(rho*n_r)), tabulated in float64 for every possible n_r
    table = np.maximum(1, np.floor(top_fraction * np.arange(n + 1, dtype=np.float64))).astype(np.int32)
    k = jnp.asarray(table)[count]
    sel = jnp.where(rank < k, sh, 0.0)
    sums = jax.ops.segment_sum(sel, start, num_segments=n)
    mean_sorted = sums[start] / k.astype(h.dtype)
    out = jnp.zeros_like(h).at[order].set(mean_sorted)
    return jnp.reshape(jnp.where(ids >= 0, out, 0.0), shape)


def token_logprobs(
    logits,
    labels,
    response_ids,
    advantages,
    *,
    k=2.0,
    omega_low=0.45,
    omega_high=3.0,
    top_fraction=0.2,
    temperature=1.0,
    advantage_scaling=True,
    vocab_topk=0,
):
    """docs/math.md#token-head: ``(logprobs, entropy, scale, advantages_out)``."""
    logits = jnp.asarray(logits)
    dt = _compute_dtype(logits)
    z = logits.astype(dt) / temperature
    ids = jnp.asarray(response_ids)
    valid = ids >= 0
    adv = jnp.asarray(advantages).astype(dt)
    v = z.shape[-1]

    ent = jax.lax.stop_gradient(_entropy_of_logits(z))
    hresp = response_entropy(ent, ids, top_fraction=top_fraction)
    pos = adv > 0
    c = jnp.where(pos & (hresp < omega_low), k, jnp.where(pos & (hresp > omega_high), 1.0 / k, 1.0))
    c = jax.lax.stop_gradient(jnp.where(valid, c, 1.0).astype(dt))

    y = jnp.clip(jnp.asarray(labels), 0, v - 1)
    cz = c[..., None] * z
    if vocab_topk and vocab_topk < v:
        zs = jax.lax.stop_gradient(z)
        _, idx = jax.lax.top_k(zs, vocab_topk)
        # mark the K largest entries (top_k keeps the lower index among ties)
        onehots = jax.nn.one_hot(idx, v, dtype=jnp.bool_)
        mask = jnp.any(onehots, axis=-2)
        lse = logsumexp(jnp.where(mask, cz, -jnp.inf), axis=-1)
        in_topk = jnp.take_along_axis(mask, y[..., None], axis=-1)[..., 0]
    else:
        lse = logsumexp(cz, axis=-1)
        in_topk = jnp.ones(y.shape, bool)
    zy = jnp.take_along_axis(cz, y[..., None], axis=-1)[..., 0]
    logp = jnp.where(in_topk, zy - lse, OUTSIDE_TOPK_LOGPROB)
    logp = jnp.where(valid, logp, 0.0)
    adv_out = adv / c if advantage_scaling else adv
    return logp, ent, c, adv_out
