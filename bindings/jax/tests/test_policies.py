"""era_jax.policies: the truncated normal against scipy.stats.truncnorm, the tanh
Gaussian against the change of variables and a numerical integral."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from era_jax.policies import TanhGaussian, TruncatedNormal

stats = pytest.importorskip("scipy.stats")
integrate = pytest.importorskip("scipy.integrate")


def _scipy_tn(loc, std, low, high):
    return stats.truncnorm((low - loc) / std, (high - loc) / std, loc=loc, scale=std)


CASES = [  # loc, log_std, low, high
    (0.3, -0.5, -1.0, 1.0),
    (1.0, 0.0, -1.0, 1.0),     # location at a bound, widest std
    (-0.99, -6.0, -1.0, 1.0),  # narrow, near a bound
    (2.5, -1.0, -1.0, 1.0),    # location above the interval (the reflected tail)
    (-4.0, -0.5, -1.0, 1.0),   # location far below the interval
    (0.0, 0.5, -np.inf, 0.5),  # a half line
]


@pytest.mark.parametrize("loc,log_std,low,high", CASES)
def test_truncated_normal_log_prob_and_entropy(loc, log_std, low, high):
    ref = _scipy_tn(loc, math.exp(log_std), low, high)
    x = ref.ppf(np.linspace(0.01, 0.99, 9))
    pi = TruncatedNormal(jnp.full((9, 1), loc), jnp.full((9, 1), log_std), low, high)
    np.testing.assert_allclose(pi.log_prob(x[:, None]), ref.logpdf(x), rtol=1e-9, atol=1e-9)
    if np.isfinite(low) and np.isfinite(high):
        want = ref.entropy()
    else:  # scipy's closed form gives NaN for an infinite bound: integrate -p ln p instead
        std = math.exp(log_std)
        a, b = max(low, loc - 40 * std), min(high, loc + 40 * std)
        want = integrate.quad(lambda x: -ref.pdf(x) * ref.logpdf(x), a, b, limit=200)[0]
    np.testing.assert_allclose(pi.entropy(), np.full(9, want), rtol=1e-8, atol=1e-8)
    assert float(TruncatedNormal(loc, log_std, low, high).log_prob(jnp.asarray([high + 1.0]))) == -np.inf


@pytest.mark.parametrize("loc,log_std,low,high", CASES)
def test_truncated_normal_samples_follow_scipy(loc, log_std, low, high):
    pi = TruncatedNormal(jnp.asarray([loc]), jnp.asarray([log_std]), low, high)
    x = np.asarray(pi.sample(jax.random.PRNGKey(0), (20000,)))[:, 0]
    assert np.all((x >= low) & (x <= high))
    ks = stats.kstest(x, _scipy_tn(loc, math.exp(log_std), low, high).cdf)
    assert ks.pvalue > 1e-3, ks


def test_truncated_normal_pathwise_gradient():
    """d/d(loc, log_std) of the sample mean (one fixed key, many draws) approaches the
    derivative of the true mean (scipy, central differences)."""
    low, high, n = -1.0, 1.0, 400_000
    key = jax.random.PRNGKey(1)

    def sample_mean(params):
        loc, log_std = params
        return jnp.mean(TruncatedNormal(jnp.full((1,), loc), jnp.full((1,), log_std), low, high).sample(key, (n,)))

    for loc, log_std in [(0.2, -0.7), (0.9, 0.0), (-0.5, -2.0)]:
        got = jax.grad(sample_mean)(jnp.asarray([loc, log_std]))

        def true_mean(l, s):
            return _scipy_tn(l, math.exp(s), low, high).mean()

        h = 1e-5
        want = [(true_mean(loc + h, log_std) - true_mean(loc - h, log_std)) / (2 * h),
                (true_mean(loc, log_std + h) - true_mean(loc, log_std - h)) / (2 * h)]
        np.testing.assert_allclose(got, want, atol=5e-3)
        # and the log-density is differentiable where the samples are
        g = jax.grad(lambda p: jnp.sum(TruncatedNormal(p[0], p[1], low, high).log_prob(jnp.asarray([0.1]))))(
            jnp.asarray([loc, log_std]))
        assert np.all(np.isfinite(g))


def test_truncated_normal_is_a_pytree_and_vmaps():
    pi = TruncatedNormal(jnp.zeros((3, 2)), jnp.full((3, 2), -1.0), -2.0, 2.0)
    leaves, tree = jax.tree_util.tree_flatten(pi)
    assert len(leaves) == 2
    back = jax.tree_util.tree_unflatten(tree, leaves)
    assert (back.low, back.high) == (-2.0, 2.0)
    out = jax.jit(lambda p: p.entropy())(pi)
    assert out.shape == (3,)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.vmap(lambda k, loc: TruncatedNormal(loc, -1.0).sample(k))(keys, jnp.zeros((3, 2)))
    assert x.shape == (3, 2)
    with pytest.raises(ValueError, match="low < high"):
        TruncatedNormal(0.0, 0.0, 1.0, 1.0)


def test_tanh_gaussian_log_prob_change_of_variables(rng):
    mean = rng.normal(size=(50, 3))
    log_std = rng.normal(-0.5, 0.5, size=(50, 3))
    pi = TanhGaussian(jnp.asarray(mean), jnp.asarray(log_std))
    a, logp = pi.sample_and_log_prob(jax.random.PRNGKey(2))
    a = np.asarray(a)
    u = np.arctanh(a)
    want = np.sum(stats.norm.logpdf(u, mean, np.exp(log_std)) - np.log1p(-a**2), axis=-1)
    np.testing.assert_allclose(logp, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(pi.log_prob(a), want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(pi.sample(jax.random.PRNGKey(2)), a)
    # saturated means: the log-density from u stays finite
    far = TanhGaussian(jnp.full((1, 2), 30.0), jnp.full((1, 2), -3.0))
    assert np.isfinite(float(far.sample_and_log_prob(jax.random.PRNGKey(0))[1][0]))


@pytest.mark.parametrize("mean,log_std", [(0.0, 0.0), (1.5, -1.0), (-0.7, 0.8)])
def test_tanh_gaussian_entropy_estimate(mean, log_std):
    """Monte Carlo: -mean(log_prob) against the entropy by quadrature,
    H(tanh(u)) = H(N(mean, std)) + E[ln(1 - tanh(u)^2)]."""
    std = math.exp(log_std)
    def log_jac(u):  # ln(1 - tanh(u)^2), without cancellation for large |u|
        return 2.0 * (math.log(2.0) - abs(u) - math.log1p(math.exp(-2.0 * abs(u))))

    jac, _ = integrate.quad(lambda u: stats.norm.pdf(u, mean, std) * log_jac(u),
                            mean - 12 * std, mean + 12 * std, limit=200)
    want = stats.norm(mean, std).entropy() + jac
    pi = TanhGaussian(jnp.full((2, 1), mean), jnp.full((2, 1), log_std))
    got = pi.entropy_estimate(jax.random.PRNGKey(3), num_samples=200_000)
    assert got.shape == (2,)
    np.testing.assert_allclose(got, want, atol=0.01)
    g = jax.grad(lambda m: jnp.sum(TanhGaussian(m, log_std).entropy_estimate(jax.random.PRNGKey(0))))(
        jnp.asarray([mean]))
    assert float(g[0]) == 0.0  # a statistic, not differentiated
