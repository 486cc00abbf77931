"""era_jax.gaussian_log_std_masked (docs/math.md#gaussian-mask): against the NumPy reference
(the unmasked head of each row's active sub-vector), a mask of ones against the unmasked head
exactly, gradients (check_grads, d/d delta), jit, vmap (of the op and of its gradient) and
errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import era_jax

import numpy_ref
from conftest import cpu_only

H0, LO, HI = -3.0, -6.0, 1.5


def era(z, mask, delta=0.0, fill=None):
    return era_jax.gaussian_log_std_masked(z, mask, target_entropy=H0, log_std_min=LO, log_std_max=HI, delta=delta,
                                           fill=fill)


def ref_masked(z, mask, delta, fill):
    z = np.asarray(z, np.float64).reshape(-1, np.shape(z)[-1])
    mask = np.broadcast_to(np.asarray(mask, np.float64), np.shape(z)).reshape(z.shape)
    delta = np.broadcast_to(np.asarray(delta, np.float64), z.shape[:-1])
    out = np.empty_like(z)
    d = z.shape[-1]
    for r in range(z.shape[0]):
        act = mask[r] != 0
        a = int(act.sum())
        out[r] = z[r] if fill is None else fill
        if a:
            out[r, act] = numpy_ref.gaussian_row(z[r, act], H0 * a / d, LO, HI, delta[r] * a / d)
    return out


def masks(rng, n, d):
    m = rng.uniform(size=(n, d)) < 0.6
    m[0] = True
    m[1] = False
    m[2] = False
    m[2, 1] = True
    return m


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fill", [None, 0.0, -2.5])
def test_against_the_numpy_reference(rng, dtype, fill):
    n, d = 12, 5
    z = (rng.normal(size=(n, d)) * 2).astype(dtype)
    m = masks(rng, n, d)
    delta = np.linspace(-0.5, 0.5, n).astype(dtype)
    tol = dict(atol=1e-12, rtol=1e-12) if dtype == np.float64 else dict(atol=2e-5, rtol=2e-5)
    out = jax.jit(lambda z, m, dl: era(z, m, dl, fill))(z, m, delta)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, ref_masked(z, m, delta, fill), **tol)
    # one row per task, indexed by each row's task, and a scalar delta
    tasks = np.array([[1, 1, 0, 0, 1], [1, 1, 1, 1, 1]], np.float32)
    idx = np.arange(n) % 2
    out = era(z, tasks[idx], 0.25, fill)
    np.testing.assert_allclose(out, ref_masked(z, tasks[idx], 0.25, fill), **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_mask_of_ones_is_the_unmasked_head_exactly(rng, dtype):
    z = jnp.asarray(rng.normal(size=(3, 7, 4)).astype(dtype))
    g = jnp.asarray(rng.normal(size=(3, 7, 4)).astype(dtype))
    f0 = lambda z, d: era_jax.gaussian_log_std(z, target_entropy=H0, log_std_min=LO, log_std_max=HI, delta=d)
    f1 = lambda z, d: era(z, jnp.ones(4, bool), d, fill=3.0)
    a, va = jax.vjp(f0, z, jnp.asarray(0.1, dtype))
    b, vb = jax.vjp(f1, z, jnp.asarray(0.1, dtype))
    np.testing.assert_array_equal(a, b)
    for x, y in zip(va(g), vb(g)):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("fill", [None, 0.5])
@pytest.mark.parametrize("per_row", [False, True])
def test_gradients(rng, fill, per_row):
    n, d = 6, 4
    z = jnp.asarray(rng.normal(size=(n, d)))
    m = jnp.asarray(masks(rng, n, d))
    delta = jnp.linspace(-0.4, 0.4, n) if per_row else jnp.asarray(0.3)
    check_grads(lambda z, dl: era(z, m, dl, fill), (z, delta), order=1, modes=["rev"], eps=1e-6, atol=1e-6, rtol=1e-6)


def test_vmap_of_the_op_and_of_its_gradient(rng):
    z = jnp.asarray(rng.normal(size=(4, 6, 3)))
    m = jnp.asarray(rng.uniform(size=(4, 6, 3)) < 0.7)
    deltas = jnp.linspace(-0.3, 0.3, 4)
    f = lambda z, m, dl: era(z, m, dl, 0.0)
    got = jax.jit(jax.vmap(f))(z, m, deltas)
    want = jnp.stack([f(z[i], m[i], deltas[i]) for i in range(4)])
    np.testing.assert_allclose(got, want, atol=1e-14)
    loss = lambda z, m, dl: jnp.sum(jnp.exp(f(z, m, dl)))
    gz, gd = jax.vmap(jax.grad(loss, argnums=(0, 2)))(z, m, deltas)
    for i in range(4):
        wz, wd = jax.grad(loss, argnums=(0, 2))(z[i], m[i], deltas[i])
        np.testing.assert_allclose(gz[i], wz, atol=1e-14)
        np.testing.assert_allclose(gd[i], wd, atol=1e-14)
    # the mask shared by every instance (unbatched), delta batched
    got = jax.vmap(f, in_axes=(0, None, 0))(z, m[0], deltas)
    np.testing.assert_allclose(got[2], f(z[2], m[0], deltas[2]), atol=1e-14)


@cpu_only
def test_errors(rng):
    z = jnp.asarray(rng.normal(size=(3, 4)))
    # a mask value is data: the library's status comes when the computation runs (XLA's error)
    with pytest.raises(Exception, match="ERA_STATUS_INVALID_ARGUMENT: mask entries must be 0 or 1"):
        jax.block_until_ready(era(z, jnp.full((3, 4), 0.5)))
    with pytest.raises(era_jax.EraError):
        era(z, jnp.ones(4), delta=1e6)
    with pytest.raises(ValueError):
        era(z, jnp.ones(3))


def test_gaussian_era_settings_take_a_mask(rng):
    s = era_jax.GaussianEra(dim=4, target_entropy=-2.0, mode="gaussian")
    z = jnp.asarray(rng.normal(size=(5, 4)))
    m = jnp.asarray([True, True, False, True])
    got = s.log_std(z, mask=m, fill=0.0)
    want = era_jax.gaussian_log_std_masked(z, m, target_entropy=-2.0, log_std_min=s.log_std_min,
                                           log_std_max=s.log_std_max, delta=s.initial_delta, fill=0.0)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(s.log_std(z, mask=jnp.ones(4)), s.log_std(z))
