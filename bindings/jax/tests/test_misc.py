"""Truncated-normal and head entropies, the delta learner (against the
library's own learner), a jitted train step, and the package surface."""

import ctypes
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import era_jax
from era_jax import _native

import numpy_ref
import reference as ref
from conftest import tol

# ------------------------------------------------------------------- entropies


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bounds", [(-1.0, 1.0), (-2.0, 0.5), (-np.inf, 1.0), (-np.inf, np.inf), (0.0, 3.0)])
def test_truncated_normal_entropy(rng, dtype, bounds):
    low, high = bounds
    mean = (rng.normal(size=(5, 4)) * 2).astype(dtype)
    mean[0, 0] = 3.5  # outside [low, high] for most bounds: a tail
    log_std = rng.uniform(-2, 1, size=(5, 4)).astype(dtype)
    h = era_jax.truncated_normal_entropy(mean, log_std, low, high)
    assert h.shape == (5,) and h.dtype == dtype
    # the library computes in float64 (a float32 formula loses digits to cancellation in the tails)
    r = ref.truncated_normal_entropy(mean.astype(np.float64), log_std.astype(np.float64), low, high)
    np.testing.assert_allclose(h, r, **tol(dtype))
    want = [sum(numpy_ref.truncated_normal_1d(float(m), float(s), low, high) for m, s in zip(mr, sr))
            for mr, sr in zip(mean.astype(np.float64), log_std.astype(np.float64))]
    np.testing.assert_allclose(h, want, rtol=1e-9 if dtype == np.float64 else 1e-4, atol=1e-6)


def test_truncated_normal_entropy_transforms(rng):
    mean = jnp.asarray(rng.normal(size=(3, 6, 2)))
    log_std = jnp.asarray(rng.uniform(-1, 0, size=(2,)))  # broadcast
    f = lambda m, s: era_jax.truncated_normal_entropy(jnp.tanh(m), s)  # noqa: E731
    r = lambda m, s: ref.truncated_normal_entropy(jnp.tanh(m), s)  # noqa: E731
    np.testing.assert_allclose(jax.jit(jax.vmap(f, (0, None)))(mean, log_std), jax.vmap(r, (0, None))(mean, log_std),
                               rtol=1e-12)
    np.testing.assert_allclose(jax.vmap(jax.vmap(f, (0, None)), (1, None))(mean, log_std),
                               jax.vmap(jax.vmap(r, (0, None)), (1, None))(mean, log_std), rtol=1e-12)
    # a statistic for the delta learner: not differentiated
    g = jax.grad(lambda m: jnp.sum(f(m, log_std)))(mean)
    np.testing.assert_array_equal(g, np.zeros_like(mean))
    with pytest.raises(era_jax.EraError, match="low < high"):
        era_jax.truncated_normal_entropy(mean, log_std, 1.0, 1.0)
    with pytest.raises(TypeError, match="dtype"):
        era_jax.truncated_normal_entropy(mean.astype(jnp.bfloat16), log_std.astype(jnp.bfloat16))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, jnp.bfloat16, np.float16])
def test_head_entropies(rng, dtype):
    x = jnp.asarray(rng.normal(size=(3, 4, 11)) * 3).astype(dtype)
    t = era_jax.token_entropy(x, temperature=0.7)
    assert t.dtype == (np.float64 if dtype == np.float64 else np.float32)
    np.testing.assert_allclose(t, ref.token_entropy(x, temperature=0.7), **tol(dtype))
    if dtype in (np.float32, np.float64):
        np.testing.assert_allclose(era_jax.softmax_entropy(x), ref.softmax_entropy(x), **tol(dtype))
        np.testing.assert_allclose(era_jax.gaussian_entropy(x), ref.gaussian_entropy(x), **tol(dtype))
        g = jax.grad(lambda x: jnp.sum(era_jax.softmax_entropy(x) + era_jax.gaussian_entropy(x)))(x)
        np.testing.assert_array_equal(g, np.zeros_like(x))
        v = jax.vmap(era_jax.softmax_entropy, in_axes=2)(x)
        np.testing.assert_allclose(v, jnp.moveaxis(ref.softmax_entropy(jnp.moveaxis(x, 2, 0)), 0, 0), **tol(dtype))


# ------------------------------------------------------------------ delta learner


def library_learner(steps, **cfg):
    """Runs era_head_update_delta (the library's learner) and returns the deltas."""
    lib = _native.lib()
    c = _native.default_config(_native.ERA_HEAD_KIND_GAUSSIAN)
    for k, v in cfg.items():
        setattr(c, k, v)
    h = ctypes.c_void_p()
    _native.check(lib.era_head_new(ctypes.byref(c), ctypes.byref(h)))
    try:
        out = []
        d = ctypes.c_double()
        for m in steps:
            _native.check(lib.era_head_update_delta(h, float(m), ctypes.byref(d)))
            out.append(d.value)
        return np.array(out)
    finally:
        lib.era_head_free(h)


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "fixed"])
def test_delta_learner_matches_library(rng, optimizer):
    dim, h0 = 6, -3.0
    # entropies below the target for a while (delta rises into the clamp), then above (it falls)
    steps = np.concatenate([rng.normal(-40.0, 3.0, size=60), rng.normal(5.0, 1.0, size=60)])
    lr, b1, b2 = (0.5 if optimizer == "adam" else 0.05), 0.8, 0.99
    opt = {"adam": 2, "sgd": 1, "fixed": 0}[optimizer]
    want = library_learner(steps, dim=dim, target_entropy=h0, delta=0.5, delta_optimizer=opt, delta_lr=lr,
                           delta_beta1=b1, delta_beta2=b2)
    cfg = dict(target_entropy=h0, dim=dim, optimizer=optimizer, lr=lr, beta1=b1, beta2=b2)

    @jax.jit
    def run(state, steps):
        def body(s, m):
            s = era_jax.delta_update(s, m, **cfg)
            return s, s.delta
        return jax.lax.scan(body, state, steps)[1]

    got = run(era_jax.delta_init(0.5), jnp.asarray(steps))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    bound = era_jax.max_delta(target_entropy=h0, dim=dim)
    assert float(jnp.max(got)) <= bound
    if optimizer != "fixed":
        assert float(jnp.max(got)) == bound  # the clamp was reached
        assert h0 + bound <= dim * 0.5 * ref.L2PE


def test_delta_learner_details():
    s = era_jax.delta_init(0.1, dtype=jnp.float32)
    assert s.delta.dtype == jnp.float32 and s.adam_t.dtype == jnp.int32
    cfg = dict(target_entropy=-2.0, dim=2)
    s2 = era_jax.delta_update(s, jnp.nan, **cfg)  # non-finite: unchanged (the library rejects it)
    assert all(bool(a == b) for a, b in zip(s2, s))
    s3 = era_jax.delta_update(s, 1.0, **cfg)
    assert int(s3.adam_t) == 1 and float(s3.delta) < 0.1  # entropy above target: delta falls
    # the float32 clamp bound keeps the target feasible once rounded
    b = era_jax.max_delta(target_entropy=-2.0, dim=2, dtype=np.float32)
    assert np.float32(b) == b and -2.0 + b <= 2 * 0.5 * ref.L2PE
    for bad, msg in [(dict(lr=-1.0), "learning rate"), (dict(beta1=1.0), "beta1"), (dict(eps=0.0), "eps")]:
        with pytest.raises(era_jax.EraError, match=msg):
            era_jax.delta_update(s, 1.0, **cfg, **bad)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        era_jax.delta_update(s, 1.0, **cfg, optimizer="rmsprop")


def test_train_step_with_learned_delta(rng):
    """A jitted SAC-style step: the head uses the learner's delta (traced, no
    recompilation), the learner consumes the truncated-normal entropy."""
    dim, h0 = 3, -1.5
    traces = []

    @jax.jit
    def step(state, z, mean):
        traces.append(1)
        log_std = era_jax.gaussian_log_std(z, target_entropy=h0, delta=state.delta)
        h_gauss = era_jax.gaussian_entropy(log_std)
        h_trunc = era_jax.truncated_normal_entropy(jnp.tanh(mean), log_std)
        loss, g = jax.value_and_grad(
            lambda d: jnp.mean(era_jax.gaussian_log_std(z, target_entropy=h0, delta=d)))(state.delta)
        return era_jax.delta_update(state, jnp.mean(h_trunc), target_entropy=h0, dim=dim, lr=0.01), h_gauss, g

    state = era_jax.delta_init()
    for _ in range(5):
        z = jnp.asarray(rng.normal(size=(16, dim)))
        mean = jnp.asarray(rng.normal(size=(16, dim)))
        new, h, g = step(state, z, mean)
        assert float(jnp.min(h)) >= h0 + float(state.delta) - 1e-9
        assert np.isfinite(float(g))
        state = new
    assert len(traces) == 1
    assert float(state.delta) > 0.0  # truncation loses entropy: delta grows to compensate


def test_max_delta_is_accepted_by_the_head():
    # target_entropy + max_delta never exceeds the widest Gaussian after rounding
    for dim, h0 in [(37, -76.32143052308082), (6, 0.1), (1, -3.3)]:
        for dtype in (np.float32, np.float64):
            d = era_jax.max_delta(target_entropy=h0, dim=dim, dtype=dtype)
            out = jax.jit(lambda z, d: era_jax.gaussian_log_std(z, target_entropy=h0, delta=d))(
                jnp.zeros((2, dim), dtype), jnp.asarray(d, dtype))
            np.testing.assert_allclose(out, 0.0, atol=1e-5)  # the widest Gaussian: every log-std at the top


# ------------------------------------------------------------------- package


def test_package_surface():
    assert era_jax.version() == "0.1.0"
    assert era_jax.abi_version() == 1
    assert os.path.exists(era_jax.library_path())
    assert issubclass(era_jax.EraError, ValueError)
    lib = _native.lib()
    for name in ["era_head_new", "era_last_error", "era_token_forward", "era_gaussian_forward_delta",
                 "era_jax_token_fwd_cpu"]:
        assert hasattr(lib, name)
    assert math.isclose(_native.ERA_LN_2PI_E, ref.L2PE, rel_tol=1e-15)
    # every FFI target of the native library's table is registered, and the ops call only those
    assert {"era_gaussian_fwd", "era_token_bwd", "era_gaussian_entropy", "era_softmax_entropy"} <= set(_native.targets())
    assert all(cpu for cpu, _ in _native.targets().values())


def test_defaults_come_from_the_library():
    from era_jax import _defaults

    g = _native.default_config(_native.ERA_HEAD_KIND_GAUSSIAN)
    assert (_defaults.GAUSSIAN.log_std_min, _defaults.GAUSSIAN.log_std_max) == (g.log_std_min, g.log_std_max)
    assert (_defaults.GAUSSIAN.lr, _defaults.GAUSSIAN.beta1, _defaults.GAUSSIAN.beta2, _defaults.GAUSSIAN.eps) == (
        g.delta_lr, g.delta_beta1, g.delta_beta2, g.delta_eps)
    assert _defaults.OPTIMIZERS[_defaults.GAUSSIAN.optimizer] == g.delta_optimizer
    assert _defaults.SOFTMAX.tau == _native.default_config(_native.ERA_HEAD_KIND_SOFTMAX).tau
    t = _native.default_config(_native.ERA_HEAD_KIND_TOKEN)
    assert (_defaults.TOKEN.k, _defaults.TOKEN.omega_low, _defaults.TOKEN.omega_high, _defaults.TOKEN.top_fraction,
            _defaults.TOKEN.temperature, _defaults.TOKEN.vocab_topk) == (
        t.k, t.omega_low, t.omega_high, t.top_fraction, t.temperature, t.vocab_topk)
    # None (the default of every keyword) and the library's value give the same result
    z = jnp.asarray(np.linspace(-1.0, 1.0, 12).reshape(3, 4))
    np.testing.assert_array_equal(
        era_jax.gaussian_log_std(z, target_entropy=-2.0),
        era_jax.gaussian_log_std(z, target_entropy=-2.0, log_std_min=g.log_std_min, log_std_max=g.log_std_max,
                                 delta=g.delta))
    np.testing.assert_array_equal(era_jax.softmax_logits(z, target_entropy=1.0),
                                  era_jax.softmax_logits(z, target_entropy=1.0, tau=_defaults.SOFTMAX.tau))


def test_reference_is_not_in_the_package():
    import subprocess
    import sys

    # the pure-JAX reference lives in the tests (the package holds no math)
    code = "import era_jax, importlib.util; print(hasattr(era_jax, 'reference'), importlib.util.find_spec('era_jax.reference'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "False None"
