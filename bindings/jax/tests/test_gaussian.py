"""era_jax.gaussian_log_std: values, gradients (including d/d delta), bounds,
transformations and errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import era_jax

import numpy_ref
import reference as ref
from conftest import cpu_only, cuda_only, tol


def era(z, delta=0.0, h0=-2.0, lo=-8.0, hi=0.0):
    return era_jax.gaussian_log_std(z, target_entropy=h0, log_std_min=lo, log_std_max=hi, delta=delta)


def refg(z, delta=0.0, h0=-2.0, lo=-8.0, hi=0.0):
    return ref.gaussian_log_std(z, target_entropy=h0, log_std_min=lo, log_std_max=hi, delta=delta)


def test_worked_example():
    z = jnp.array([0.5, -1.0, 2.0])
    out, vjp = jax.vjp(lambda z: era(z, h0=-1.5, lo=-5.0), z)
    np.testing.assert_allclose(out, [-1.009114, -0.225164, -4.522537], atol=1e-6)
    (dz,) = vjp(jnp.array([1.0, 2.0, -1.0]))
    np.testing.assert_allclose(dz, [-1.546046, -0.570133, 2.116179], atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(6,), (5, 21), (2, 3, 61), (4, 1)])
@pytest.mark.parametrize("per_row", [False, True])
def test_forward_and_vjp_match_reference(rng, dtype, shape, per_row):
    d = shape[-1]
    h0 = -0.5 * d
    z = (rng.normal(size=shape) * 3).astype(dtype)
    delta = rng.uniform(-1.0, 0.5, size=shape[:-1]).astype(dtype) if per_row else dtype(-0.25)
    g = rng.normal(size=shape).astype(dtype)
    out, vjp = jax.vjp(lambda z, d_: era(z, d_, h0=h0), jnp.asarray(z), jnp.asarray(delta))
    rout, rvjp = jax.vjp(lambda z, d_: refg(z, d_, h0=h0), jnp.asarray(z), jnp.asarray(delta))
    assert out.dtype == dtype and out.shape == shape
    np.testing.assert_allclose(out, rout, **tol(dtype))
    for a, b in zip(vjp(jnp.asarray(g)), rvjp(jnp.asarray(g))):
        assert a.dtype == dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, **tol(dtype))
    # and the loop-based float64 implementation
    z64 = z.astype(np.float64).reshape(-1, d)
    d64 = np.broadcast_to(np.asarray(delta, np.float64), shape[:-1]).reshape(-1)
    want = np.stack([numpy_ref.gaussian_row(r, h0, -8.0, 0.0, dd) for r, dd in zip(z64, d64)]).reshape(shape)
    np.testing.assert_allclose(out, want, **tol(dtype))


def test_clipping_at_log_std_min(rng):
    # a very peaked softmax pushes most coordinates to log_std_min
    z = jnp.asarray(rng.normal(size=(8, 6)) * 30)
    out = era(z, h0=-30.0, lo=-6.0)
    assert float(jnp.min(out)) == -6.0
    np.testing.assert_allclose(out, refg(z, h0=-30.0, lo=-6.0), rtol=1e-12, atol=1e-12)
    g = jax.grad(lambda z: jnp.sum(era(z, h0=-30.0, lo=-6.0) * jnp.arange(6.0)))(z)
    gr = jax.grad(lambda z: jnp.sum(refg(z, h0=-30.0, lo=-6.0) * jnp.arange(6.0)))(z)
    np.testing.assert_allclose(g, gr, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape", [(3,), (4, 5), (2, 2, 6)])
def test_check_grads(rng, shape):
    d = shape[-1]
    z = jnp.asarray(rng.normal(size=shape))
    f = lambda z, delta: era(z, delta, h0=-1.0 * d, lo=-20.0)  # noqa: E731  (no clipping: smooth)
    check_grads(f, (z, jnp.float64(-0.3)), order=1, modes=["rev"])
    check_grads(f, (z, jnp.asarray(rng.uniform(-1, 0, size=shape[:-1]))), order=1, modes=["rev"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_entropy_bound(rng, dtype):
    # H(N(mu, diag(exp(out))^2)) >= H0 + delta for every row, every input
    for d in (1, 2, 6, 21):
        for scale in (0.1, 3.0, 100.0):
            z = jnp.asarray((rng.normal(size=(64, d)) * scale).astype(dtype))
            for h0, delta in ((-d, 0.0), (0.25 * d, -0.5), (-3.0 * d, 1.0)):
                out = era(z, delta, h0=h0, lo=-5.0)
                h = era_jax.gaussian_entropy(out)
                np.testing.assert_allclose(h, ref.gaussian_entropy(out), **tol(dtype))
                slack = 1e-9 if dtype == np.float64 else 1e-3 * d
                assert float(jnp.min(h)) >= h0 + delta - slack


def test_dim_one_is_constant():
    z = jnp.asarray([[0.3], [-2.0], [50.0]])
    out = era(z, h0=-1.0, lo=-8.0)
    np.testing.assert_allclose(out, np.full((3, 1), -1.0 - 0.5 * ref.L2PE), rtol=1e-12)
    g = jax.grad(lambda z: jnp.sum(era(z, h0=-1.0)))(z)
    np.testing.assert_array_equal(g, np.zeros_like(z))


def test_delta_is_traced_no_recompile(rng):
    traces = []

    @jax.jit
    def f(z, delta):
        traces.append(1)
        return era(z, delta)

    z = jnp.asarray(rng.normal(size=(4, 6)))
    a = f(z, -0.1)
    b = f(z, -0.7)
    assert len(traces) == 1
    np.testing.assert_allclose(a, refg(z, -0.1), rtol=1e-12)
    np.testing.assert_allclose(b, refg(z, -0.7), rtol=1e-12)


def test_vmap_and_grad_compositions(rng):
    z = jnp.asarray(rng.normal(size=(3, 5, 4)))
    d = jnp.asarray([-0.5, 0.0, -1.0])
    loss = lambda f: (lambda z, d: jnp.sum(f(z, d) ** 2))  # noqa: E731
    for in_axes in [(0, 0), (0, None)]:
        dd = d if in_axes[1] == 0 else d[0]
        np.testing.assert_allclose(jax.vmap(era, in_axes)(z, dd), jax.vmap(refg, in_axes)(z, dd), rtol=1e-12)
        a = jax.jit(jax.vmap(jax.grad(loss(era), argnums=(0, 1)), in_axes))(z, dd)
        b = jax.vmap(jax.grad(loss(refg), argnums=(0, 1)), in_axes)(z, dd)
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-12)
        # grad of a vmapped function: d/d delta sums over the mapped instances
        a = jax.grad(lambda z, d: jnp.sum(jax.vmap(era, in_axes)(z, d) ** 2), argnums=(0, 1))(z, dd)
        b = jax.grad(lambda z, d: jnp.sum(jax.vmap(refg, in_axes)(z, d) ** 2), argnums=(0, 1))(z, dd)
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-12)
    # vmap over delta only (z shared)
    np.testing.assert_allclose(
        jax.vmap(era, (None, 0))(z[0], d), jax.vmap(refg, (None, 0))(z[0], d), rtol=1e-12
    )


def test_nested_vmap(rng):
    z = jnp.asarray(rng.normal(size=(2, 3, 5, 4)))
    d = jnp.asarray(rng.uniform(-1, 0, size=(2, 3)))
    loss = lambda f: (lambda z, d: jnp.sum(jnp.sin(f(z, d))))  # noqa: E731
    for axes in [((0, 0), (0, 0)), ((0, None), (0, 0)), ((0, 0), (None, 0)), ((0, None), (0, None))]:
        inner, outer = axes
        dd = d
        if outer[1] is None:
            dd = dd[0]
        if inner[1] is None:
            dd = dd[:, 0] if outer[1] == 0 else dd[0]
        zz = z if outer[0] == 0 else z[0]
        a = jax.jit(jax.vmap(jax.vmap(jax.grad(loss(era), (0, 1)), inner), outer))(zz, dd)
        b = jax.jit(jax.vmap(jax.vmap(jax.grad(loss(refg), (0, 1)), inner), outer))(zz, dd)
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(
            jax.vmap(jax.vmap(era, inner), outer)(zz, dd), jax.vmap(jax.vmap(refg, inner), outer)(zz, dd), rtol=1e-12
        )


def test_errors():
    z = jnp.ones((2, 3))
    with pytest.raises(era_jax.EraError, match="exceeds the widest Gaussian"):
        era(z, h0=10.0)
    with pytest.raises(ValueError, match="exceeds the widest Gaussian"):  # EraError is a ValueError
        era(z, 6.0, h0=0.0)
    with pytest.raises(ValueError, match="log_std_min must be < log_std_max"):
        era(z, lo=0.0, hi=0.0)
    with pytest.raises(ValueError, match="dim must be >= 1"):
        era(jnp.ones((2, 0)))
    with pytest.raises(ValueError, match="finite"):
        era(z, float("nan"))
    with pytest.raises(TypeError, match="dtype"):
        era(jnp.ones((2, 3), jnp.int32))
    with pytest.raises(TypeError, match="dtype"):
        era(jnp.ones((2, 3), jnp.bfloat16))
    with pytest.raises(ValueError, match="rank"):
        era(jnp.float64(1.0))
    with pytest.raises(ValueError, match="delta has shape"):
        era(z, jnp.zeros(3))
    with pytest.raises(TypeError, match="static configuration"):
        jax.jit(lambda z, h: era(z, h0=h))(z, -1.0)


@cpu_only
def test_traced_infeasible_delta_raises_on_cpu():
    # found when the computation runs, with era's message
    with pytest.raises(Exception, match="exceeds the widest Gaussian"):
        jax.block_until_ready(jax.jit(era)(jnp.ones((2, 3)), 100.0))


@cuda_only
def test_traced_infeasible_delta_gives_nan_on_cuda():
    # the device does not check values: the rows whose delta is infeasible are NaN
    out = np.asarray(jax.block_until_ready(jax.jit(era)(jnp.ones((2, 3)), 100.0)))
    assert np.isnan(out).all()


def test_target_infeasible_alone_but_delta_makes_it_feasible():
    # H0 above the widest Gaussian, compensated by a negative (traced) delta
    z = jnp.zeros((2, 3))
    out = jax.jit(lambda z, d: era(z, d, h0=5.0))(z, -2.0)
    np.testing.assert_allclose(out, refg(z, -2.0, h0=5.0), rtol=1e-12)
