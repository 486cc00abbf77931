"""era_jax.softmax_logits: values, gradients, the entropy bound, transformations and errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import era_jax

import numpy_ref
import reference as ref
from conftest import tol


def upper(n, tau=4.0):
    return 1 + math.log(n * math.log(tau) / tau)


LOWER = 1 + math.log(math.log(4.0) / 4.0)


def test_worked_example():
    z = jnp.array([2.0, 0.0, -1.0, 0.5])
    out, vjp = jax.vjp(lambda z: era_jax.softmax_logits(z, target_entropy=0.6), z)
    np.testing.assert_allclose(out, [1.41745, 0.167547, 0.0, 0.325278], atol=1e-5)
    np.testing.assert_allclose(era_jax.softmax_entropy(out), 1.195788, atol=1e-6)
    (dz,) = vjp(jnp.array([1.0, -0.5, 0.25, 0.0]))
    np.testing.assert_allclose(dz, [0.440352, -0.239131, -0.015823, -0.185398], atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2,), (7, 10), (2, 3, 100)])
def test_forward_and_vjp_match_reference(rng, dtype, shape):
    n = shape[-1]
    h0 = 0.5 * (LOWER + upper(n))
    z = (rng.normal(size=shape) * 2).astype(dtype)
    g = rng.normal(size=shape).astype(dtype)
    f = lambda z: era_jax.softmax_logits(z, target_entropy=h0, tau=4.0)  # noqa: E731
    r = lambda z: ref.softmax_logits(z, target_entropy=h0, tau=4.0)  # noqa: E731
    out, vjp = jax.vjp(f, jnp.asarray(z))
    rout, rvjp = jax.vjp(r, jnp.asarray(z))
    assert out.dtype == dtype and out.shape == shape
    np.testing.assert_allclose(out, rout, **tol(dtype))
    np.testing.assert_allclose(vjp(jnp.asarray(g))[0], rvjp(jnp.asarray(g))[0], **tol(dtype))
    want = np.stack([numpy_ref.softmax_row(row, h0, 4.0) for row in z.astype(np.float64).reshape(-1, n)])
    np.testing.assert_allclose(out, want.reshape(shape), **tol(dtype))


@pytest.mark.parametrize("n", [2, 10, 1000])
def test_check_grads(rng, n):
    h0 = LOWER + 0.3 * (upper(n) - LOWER)
    z = jnp.asarray(rng.normal(size=(3, n)))
    # The row-min shift is a stop-gradient constant (docs/math.md#softmax-head), so the VJP is the
    # derivative of the logits up to a per-row constant: check it through the (shift-invariant)
    # distribution they define.
    f = lambda z: jax.nn.log_softmax(era_jax.softmax_logits(z, target_entropy=h0, tau=5.0))  # noqa: E731
    check_grads(f, (z,), order=1, modes=["rev"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_entropy_bound(rng, dtype):
    # H(softmax(out)) >= H0 on random and adversarial rows
    for n in (2, 10, 100, 1000):
        rows = [rng.normal(size=(32, n)) * s for s in (0.1, 1.0, 10.0, 1000.0)]
        onehot = np.full((n, n), -1000.0)
        np.fill_diagonal(onehot, 1000.0)
        rows += [onehot[: min(n, 64)], np.zeros((1, n))]
        z = jnp.asarray(np.concatenate(rows).astype(dtype))
        for h0 in np.linspace(0.0, upper(n), 5):
            out = era_jax.softmax_logits(z, target_entropy=float(h0))
            h = era_jax.softmax_entropy(out)
            np.testing.assert_allclose(h, ref.softmax_entropy(out), **tol(dtype))
            slack = 1e-9 if dtype == np.float64 else 1e-4
            assert float(jnp.min(h)) >= h0 - slack, (n, h0, float(jnp.min(h)))


def test_degenerate_upper_end():
    z = jnp.asarray([[3.0, -1.0, 0.5], [0.0, 0.0, 0.0]])
    out = era_jax.softmax_logits(z, target_entropy=upper(3))
    np.testing.assert_allclose(out, np.zeros((2, 3)), atol=1e-6)  # uniform
    g = jax.grad(lambda z: jnp.sum(era_jax.softmax_logits(z, target_entropy=upper(3)) * jnp.arange(3.0)))(z)
    np.testing.assert_array_equal(g, np.zeros((2, 3)))


def test_vmap_grad_jit(rng):
    z = jnp.asarray(rng.normal(size=(2, 3, 4, 10)))
    f = lambda z: jnp.sum(jnp.cos(era_jax.softmax_logits(z, target_entropy=1.0)))  # noqa: E731
    r = lambda z: jnp.sum(jnp.cos(ref.softmax_logits(z, target_entropy=1.0)))  # noqa: E731
    np.testing.assert_allclose(jax.jit(jax.vmap(jax.vmap(jax.grad(f))))(z), jax.jit(jax.vmap(jax.vmap(jax.grad(r))))(z),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(jax.jit(jax.vmap(f))(z), jax.vmap(r)(z), rtol=1e-10)
    np.testing.assert_allclose(jax.jit(jax.grad(lambda z: jnp.sum(jax.vmap(f)(z))))(z),
                               jax.jit(jax.grad(lambda z: jnp.sum(jax.vmap(r)(z))))(z),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        jax.vmap(lambda z: era_jax.softmax_logits(z, target_entropy=1.0), in_axes=1, out_axes=1)(z),
        ref.softmax_logits(z, target_entropy=1.0), rtol=1e-12)


def test_errors():
    z = jnp.ones((2, 4))
    with pytest.raises(era_jax.EraError, match="target_entropy must lie in"):
        era_jax.softmax_logits(z, target_entropy=3.0)
    with pytest.raises(ValueError, match="target_entropy must lie in"):
        era_jax.softmax_logits(z, target_entropy=-0.1)
    with pytest.raises(ValueError, match="tau must be finite and >= e"):
        era_jax.softmax_logits(z, target_entropy=0.5, tau=2.0)
    with pytest.raises(ValueError, match="num_classes must be >= 2"):
        era_jax.softmax_logits(jnp.ones((2, 1)), target_entropy=0.5)
    with pytest.raises(TypeError, match="dtype"):
        era_jax.softmax_logits(jnp.ones((2, 4), jnp.float16), target_entropy=0.5)
    with pytest.raises(TypeError, match="static configuration"):
        jax.jit(lambda z, t: era_jax.softmax_logits(z, target_entropy=0.5, tau=t))(z, 4.0)
