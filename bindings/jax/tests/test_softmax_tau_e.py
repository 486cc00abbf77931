"""The softmax head at tau = e against a 50-digit reference.

At tau = e the factor 1/sqrt(2u) of the head's VJP is singular where
h -> ub (a probability -> 1), while the exact VJP stays bounded
(docs/math.md#softmax-numerics-near-the-upper-bound). The reference here is
independent of the library and of its formulas for the VJP: mpmath evaluates
the forward w(z) at 50 digits and differentiates F(z) = sum_i g_i w_i(z)
numerically (the row-minimum shift is a stop-gradient constant, so the VJP is
exactly dF/dz).
"""

import math

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest

import era_jax

E = math.e


def target_range(n, tau=E):
    ub = math.log(tau) / tau
    return 1 + math.log(ub), 1 + math.log(n * ub)


def ref_vjp(z, g, h0, tau=E, digits=50):
    """d/dz of sum_i g_i w_i(z) at `digits` digits (mpmath)."""
    with mpmath.workdps(digits):
        n = len(z)
        tau_ = mpmath.mpf(tau)
        ub = mpmath.log(tau_) / tau_
        c = mpmath.exp(mpmath.mpf(h0) - 1)
        slope = (ub - c / n) / (1 - mpmath.mpf(1) / n)
        b = (c - slope) / n
        g_ = [mpmath.mpf(float(v)) for v in g]

        def f(*zs):
            m = max(zs)
            e = [mpmath.exp(v - m) for v in zs]
            s = sum(e)
            total = 0
            for gi, ei in zip(g_, e):
                h = slope * ei / s + b
                u = -1 - mpmath.log(h)
                total += gi * (-1 - mpmath.sqrt(2 * u) - mpmath.mpf(3) / 4 * u)
            return total

        z_ = [mpmath.mpf(float(v)) for v in z]
        out = []
        for j in range(n):
            order = [0] * n
            order[j] = 1
            out.append(float(mpmath.diff(f, z_, tuple(order))))
        return np.array(out)


def era_vjp(z, g, h0, dtype):
    z = jnp.asarray(z, dtype)
    _, vjp = jax.vjp(lambda x: era_jax.softmax_logits(x, target_entropy=h0, tau=E), z)
    return np.asarray(vjp(jnp.asarray(g, dtype))[0], np.float64)


def test_the_reported_row():
    # n = 2, H0 = 0.3, tau = e, z = [37, 0], g = [1, -0.5] gave -2.6e137 (inf in f32)
    z, g = [37.0, 0.0], [1.0, -0.5]
    want = ref_vjp(z, g, 0.3)
    assert np.all(np.abs(want) < 1e-6)
    np.testing.assert_allclose(era_vjp(z, g, 0.3, jnp.float64), want, rtol=1e-6, atol=1e-14)
    np.testing.assert_allclose(era_vjp(z, g, 0.3, jnp.float32), want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("n", [2, 3, 10])
@pytest.mark.parametrize("where", [0.05, 0.5, 0.95])
@pytest.mark.parametrize("gap", [20.0, 37.0, 60.0, 200.0])
def test_near_one_hot_rows_match_the_reference(rng, n, where, gap):
    lo, hi = target_range(n)
    h0 = lo + where * (hi - lo)
    z = np.concatenate([[gap], rng.normal(size=n - 1) * 0.5])
    g = rng.normal(size=n)
    want = ref_vjp(z, g, h0)
    scale = 1 + np.abs(g).sum()
    got = era_vjp(z, g, h0, jnp.float64)
    # relative to the row's scale: the gradients are tiny (of order exp(-gap/2))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-12 * scale)
    got32 = era_vjp(z, g, h0, jnp.float32)
    assert np.all(np.isfinite(got32)) and np.all(np.abs(got32) <= 10 * scale)
    np.testing.assert_allclose(got32, want, rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("n", [2, 3, 10, 1000])
@pytest.mark.parametrize("end", ["lower", "upper"])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_both_ends_of_the_range_stay_bounded(rng, n, end, dtype):
    lo, hi = target_range(n)
    h0 = lo if end == "lower" else hi
    for gap in [20.0, 40.0, 100.0, 800.0]:
        z = np.concatenate([[gap], rng.normal(size=n - 1)])
        g = rng.normal(size=n)
        got = era_vjp(z, g, h0, dtype)
        assert np.all(np.isfinite(got)), (gap, got)
        assert np.all(np.abs(got) <= 10 * (1 + np.abs(g).sum())), (gap, got)
        if end == "upper":
            # the degenerate head: uniform output, zero gradient
            assert np.all(got == 0)
        elif n <= 10 and gap <= 40:
            np.testing.assert_allclose(got, ref_vjp(z, g, h0), rtol=1e-5, atol=1e-5 * (1 + np.abs(g).sum()))
