"""The bounded policies ERA's Gaussian head is used with, in plain JAX.

docs/math.md#bounded-policies: an agent acts through a bounded distribution
built on the head's Gaussian, and ``delta`` is learned from that
distribution's entropy. Both classes here are thin JAX code (standard
probability, no ERA math); the truncated normal's entropy is the library's
closed form (:func:`era_jax.truncated_normal_entropy`).

- :class:`TruncatedNormal` ``TN(loc, exp(log_std), [low, high])``: the official
  SAC-ERA code's policy, with ``loc = tanh(mean)``. Its entropy gap to the
  Gaussian is bounded, so a learned ``delta`` can cover it.
- :class:`TanhGaussian` ``tanh(N(mean, exp(log_std)^2))``: SAC's policy. Its
  entropy has no closed form; ``-mean(log_prob)`` of sampled actions estimates it.

Both are pytrees (their arrays are leaves, the interval is static), so they
pass through ``jit`` and ``vmap``. Events are the last axis: ``log_prob`` and
the entropies sum over it and return the batch shape.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import log_ndtr, ndtr, ndtri

from ._ops import truncated_normal_entropy

__all__ = ["TanhGaussian", "TruncatedNormal"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _float(x):
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


def _log_diff_ndtr(a, b):
    """``ln(Phi(b) - Phi(a))`` for ``a < b``, from the tail that avoids cancellation."""
    upper = a > 0  # both in the upper tail: Phi(b) - Phi(a) = Phi(-a) - Phi(-b)
    lo = jnp.where(upper, -b, a)
    hi = jnp.where(upper, -a, b)
    # lo < hi; in the lower tail (hi <= 0) log-space is accurate, elsewhere the difference is >= Phi(0)-ish
    # an infinite end contributes Phi = 0 exactly (kept off log_ndtr's derivative at -inf)
    l_lo = jnp.where(jnp.isneginf(lo), -jnp.inf, log_ndtr(jnp.where(jnp.isneginf(lo), 0.0, lo)))
    l_hi = log_ndtr(hi)
    tail = l_hi + jnp.log1p(-jnp.exp(jnp.minimum(l_lo - l_hi, 0.0)))
    direct = jnp.log(jnp.maximum(ndtr(hi) - ndtr(lo), jnp.finfo(hi.dtype).tiny))
    return jnp.where(hi <= 0, tail, direct)


@jax.tree_util.register_pytree_node_class
class TruncatedNormal:
    """``TN(loc, exp(log_std), [low, high])`` per dimension (the last axis), independent
    dimensions. ``loc`` and ``log_std`` broadcast against each other; ``low < high``
    are static Python numbers (default [-1, 1]; infinite bounds allowed)."""

    def __init__(self, loc, log_std, low=-1.0, high=1.0):
        self.loc = _float(loc)
        self.log_std = _float(log_std)
        self.low = float(low)
        self.high = float(high)
        if not self.low < self.high:
            raise ValueError(f"era_jax: TruncatedNormal needs low < high, got [{self.low}, {self.high}]")

    def tree_flatten(self):
        return (self.loc, self.log_std), (self.low, self.high)

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        obj.loc, obj.log_std = children
        obj.low, obj.high = aux
        return obj

    def _standard(self):
        loc, log_std = jnp.broadcast_arrays(self.loc, self.log_std)
        std = jnp.exp(log_std)
        # an infinite bound is a constant (no gradient path through inf/std)
        alpha = (self.low - loc) / std if math.isfinite(self.low) else jnp.full_like(loc, self.low)
        beta = (self.high - loc) / std if math.isfinite(self.high) else jnp.full_like(loc, self.high)
        return loc, log_std, std, alpha, beta

    def sample(self, key, sample_shape=()):
        """Actions of shape ``sample_shape + batch``, by inverse CDF: a pathwise
        (reparameterised) sample, differentiable with respect to ``loc`` and
        ``log_std``. The draw is made in the tail whose CDF is accurate (reflected
        when the interval lies above ``loc``) and clipped to ``[low, high]``."""
        loc, _, std, alpha, beta = self._standard()
        shape = tuple(sample_shape) + loc.shape
        dtype = loc.dtype
        flip = alpha > 0  # the interval above loc: sample the mirror image, in the lower tail
        a = jnp.where(flip, -beta, alpha)
        b = jnp.where(flip, -alpha, beta)
        cdf_a, cdf_b = ndtr(a), ndtr(b)
        tiny = jnp.finfo(dtype).eps
        u = jax.random.uniform(key, shape, dtype, minval=tiny, maxval=1.0 - tiny)
        p = jnp.clip(cdf_a + u * (cdf_b - cdf_a), jnp.finfo(dtype).tiny, 1.0 - tiny)
        xi = ndtri(p)
        xi = jnp.where(flip, -xi, xi)
        return jnp.clip(loc + std * xi, self.low, self.high)

    def log_prob(self, x):
        """``ln p(x)`` summed over the last axis (``x`` inside ``[low, high]``; outside it
        the density is 0, returned as ``-inf``)."""
        loc, log_std, std, alpha, beta = self._standard()
        x = jnp.asarray(x, loc.dtype)
        xi = (x - loc) / std
        lp = -0.5 * xi**2 - _HALF_LOG_2PI - log_std - _log_diff_ndtr(alpha, beta)
        lp = jnp.where((x >= self.low) & (x <= self.high), lp, -jnp.inf)
        return jnp.sum(lp, axis=-1)

    def sample_and_log_prob(self, key, sample_shape=()):
        """``(x, log_prob(x))`` for a pathwise sample ``x``."""
        x = self.sample(key, sample_shape)
        return x, self.log_prob(x)

    def entropy(self):
        """The closed-form entropy, summed over the last axis
        (:func:`era_jax.truncated_normal_entropy`, the library's; a statistic, not
        differentiated): what :meth:`era_jax.GaussianEra.update_delta` takes."""
        loc, log_std = jnp.broadcast_arrays(self.loc, self.log_std)
        return truncated_normal_entropy(loc, log_std, low=self.low, high=self.high)

    def mode(self):
        """The most likely action, ``clip(loc, low, high)`` (for evaluation)."""
        return jnp.clip(jnp.broadcast_to(self.loc, jnp.broadcast_shapes(self.loc.shape, self.log_std.shape)),
                        self.low, self.high)


@jax.tree_util.register_pytree_node_class
class TanhGaussian:
    """``a = tanh(u)``, ``u ~ N(mean, exp(log_std)^2)`` per dimension (the last axis),
    independent dimensions: actions in ``(-1, 1)``."""

    def __init__(self, mean, log_std):
        self.mean = _float(mean)
        self.log_std = _float(log_std)

    def tree_flatten(self):
        return (self.mean, self.log_std), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        del aux
        return cls(*children)

    @staticmethod
    def _log_jacobian(u):
        """``ln(1 - tanh(u)^2) = 2*(ln 2 - u - softplus(-2u))``, stable for large ``|u|``."""
        return 2.0 * (math.log(2.0) - u - jax.nn.softplus(-2.0 * u))

    def _log_prob_u(self, u, log_std, mean):
        xi = (u - mean) * jnp.exp(-log_std)
        return jnp.sum(-0.5 * xi**2 - _HALF_LOG_2PI - log_std - self._log_jacobian(u), axis=-1)

    def sample_and_log_prob(self, key, sample_shape=()):
        """``(a, log_prob(a))`` for a reparameterised sample ``a = tanh(mean + std*eps)``;
        the log-density is computed from ``u`` (no ``atanh``), including the tanh
        Jacobian: ``ln N(u) - sum ln(1 - tanh(u)^2)``."""
        mean, log_std = jnp.broadcast_arrays(self.mean, self.log_std)
        eps = jax.random.normal(key, tuple(sample_shape) + mean.shape, mean.dtype)
        u = mean + jnp.exp(log_std) * eps
        return jnp.tanh(u), self._log_prob_u(u, log_std, mean)

    def sample(self, key, sample_shape=()):
        """A reparameterised action ``tanh(mean + exp(log_std) * eps)``."""
        return self.sample_and_log_prob(key, sample_shape)[0]

    def log_prob(self, a):
        """``ln p(a)`` summed over the last axis, through ``u = atanh(a)`` (``a`` clipped
        just inside (-1, 1)); prefer :meth:`sample_and_log_prob` for sampled actions."""
        mean, log_std = jnp.broadcast_arrays(self.mean, self.log_std)
        a = jnp.asarray(a, mean.dtype)
        bound = 1.0 - jnp.finfo(mean.dtype).eps
        u = jnp.arctanh(jnp.clip(a, -bound, bound))
        return self._log_prob_u(u, log_std, mean)

    def entropy_estimate(self, key, num_samples=1):
        """The bounded entropy's Monte Carlo estimate ``-mean(log_prob(a))`` over
        ``num_samples`` actions per state (batch shape; not differentiated): what
        :meth:`era_jax.GaussianEra.update_delta` takes. With actions already sampled
        for the loss, ``-log_prob`` of those is the same estimate at no extra cost."""
        _, logp = self.sample_and_log_prob(key, (num_samples,))
        return jax.lax.stop_gradient(-jnp.mean(logp, axis=0))

    def mode(self):
        """``tanh(mean)`` (for evaluation)."""
        return jnp.tanh(self.mean)
