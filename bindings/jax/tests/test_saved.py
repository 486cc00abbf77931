"""The Gaussian and softmax heads' saved residual (docs/math.md#saved-softmax): on the CPU the
forward saves softmax(z) (era_gaussian_fwd_saved, era_softmax_fwd_saved) and the backward starts
from it (era_*_bwd_saved). The values and gradients equal the pure-JAX reference and, bit for
bit, the path that saves z (the unsaved targets, built with save_softmax=False); the softmax
head's float64 backward equals it to rounding (the saved form sums 1 - s_j from the saved
probabilities)."""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import era_jax
from era_jax import _compat, _small_heads

import reference as ref
from conftest import cpu_only, tol

ROWS = (1, 17, 256)
DIMS = (1, 6, 21, 61)
CLASSES = (2, 10, 17, 1000)
DTYPES = (np.float32, np.float64)
LO, HI = -8.0, 0.0
TAU = 4.0


def gaussian_h0(d):
    return -1.0 * d


def softmax_h0(n):
    # the middle of the valid range [1 + ln(ln(tau)/tau), 1 + ln(n*ln(tau)/tau)]
    return 1.0 + math.log(math.log(TAU) / TAU) + 0.5 * math.log(n)


def gaussian(d, saved):
    """The head's custom_vjp with the residual softmax(z) on the CPU (saved) or z everywhere."""
    return _small_heads._gaussian_fn(gaussian_h0(d), LO, HI, saved)


def softmax(n, saved):
    return _small_heads._softmax_fn(softmax_h0(n), TAU, saved)


def same(a, b):
    """Bit for bit (NaN-free inputs)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)


def softmax_same(a, b):
    """The softmax head's saved backward: the same bits in float32, equal to rounding in float64."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype == np.float64:
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)
    else:
        same(a, b)


def inputs(rng, shape, dtype, scale=2.0):
    return jnp.asarray(rng.normal(size=shape) * scale, dtype), jnp.asarray(rng.normal(size=shape), dtype)


def value_and_grads(op, args, w):
    """``op(*args)`` and the gradients of ``sum(w * op(*args))`` with respect to every argument, under jit."""

    def f(*a):
        out, vjp = jax.vjp(op, *a)
        return out, vjp(w)

    return jax.jit(f)(*args)


# --------------------------------------------------------------- Gaussian head


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("b", ROWS)
def test_gaussian_saved_is_the_z_path_and_the_reference(rng, b, d, dtype):
    z, w = inputs(rng, (b, d), dtype)
    delta = jnp.asarray(rng.uniform(-0.5, 0.5, size=(b,)), dtype)  # per row
    args = (z, delta)
    got, g_got = value_and_grads(gaussian(d, True), args, w)
    old, g_old = value_and_grads(gaussian(d, False), args, w)
    same(got, old)
    for x, y in zip(g_got, g_old):
        same(x, y)
    want = lambda z, delta: ref.gaussian_log_std(  # noqa: E731
        z, target_entropy=gaussian_h0(d), log_std_min=LO, log_std_max=HI, delta=delta
    )
    out_want, g_want = value_and_grads(want, args, w)
    np.testing.assert_allclose(got, out_want, **tol(dtype))
    for x, y in zip(g_got, g_want):
        np.testing.assert_allclose(x, y, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_public_function_is_the_saved_op(rng, dtype):
    z, w = inputs(rng, (17, 6), dtype)
    pub = lambda z, d: era_jax.gaussian_log_std(  # noqa: E731
        z, target_entropy=gaussian_h0(6), log_std_min=LO, log_std_max=HI, delta=d
    )
    args = (z, jnp.asarray(0.3, dtype))
    a, ga = value_and_grads(pub, args, w)
    b, gb = value_and_grads(gaussian(6, True), args, w)
    same(a, b)
    for x, y in zip(ga, gb):
        same(x, y)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_per_row_delta_under_vmap(rng, dtype):
    v, b, d = 3, 17, 6
    z, w = inputs(rng, (v, b, d), dtype)
    delta = jnp.asarray(rng.uniform(-0.5, 0.5, size=(v, b)), dtype)  # one delta per row of each instance
    outs = []
    for saved in (True, False):
        op = jax.vmap(gaussian(d, saved))
        outs.append(value_and_grads(op, (z, delta), w))
    (got, g_got), (old, g_old) = outs
    same(got, old)
    for x, y in zip(g_got, g_old):
        same(x, y)
    want = jax.vmap(lambda z, dl: ref.gaussian_log_std(z, target_entropy=gaussian_h0(d), delta=dl))
    out_want, g_want = value_and_grads(want, (z, delta), w)
    np.testing.assert_allclose(got, out_want, **tol(dtype))
    assert g_got[1].shape == (v, b)
    for x, y in zip(g_got, g_want):
        np.testing.assert_allclose(x, y, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_grad_of_vmapped_call_under_jit(rng, dtype):
    # one scalar delta per instance, a delta shared by all, nested vmap: value_and_grad under jit
    # the head's outputs (from the differentiated forward) and gradients, bit for bit; not the
    # loss, which is XLA's sum over the output, in an order that differs between the two paths
    # (the saved forward's result is declared flat)
    v, u, b, d = 2, 3, 5, 21
    z, w = inputs(rng, (v, u, b, d), dtype)
    delta = jnp.asarray(rng.uniform(-0.5, 0.5, size=(v,)), dtype)
    outs, grads = [], []
    for saved in (True, False):
        inner = jax.vmap(gaussian(d, saved), in_axes=(0, None))
        outer = jax.vmap(inner, in_axes=(0, 0))
        loss = lambda z, dl, op=outer: jnp.sum(w * op(z, dl))  # noqa: E731
        grads.append(jax.jit(jax.grad(loss, (0, 1)))(z, delta))
        outs.append(value_and_grads(outer, (z, delta), w)[0])
    same(*outs)
    (g1, g2) = grads
    for x, y in zip(g1, g2):
        same(x, y)
    assert g1[1].shape == (v,)
    head = jax.vmap(lambda zi, di: ref.gaussian_log_std(zi, target_entropy=gaussian_h0(d), delta=di))
    np.testing.assert_allclose(outs[0], head(z, delta), **tol(dtype))
    want = lambda z, dl: jnp.sum(w * head(z, dl))  # noqa: E731
    for x, y in zip(g1, jax.jit(jax.grad(want, (0, 1)))(z, delta)):
        np.testing.assert_allclose(x, y, **tol(dtype))


@cpu_only
def test_gaussian_traced_infeasible_delta_raises():
    # the saved forward checks delta as the z path does, with era's message
    f = lambda z, d: era_jax.gaussian_log_std(z, target_entropy=-2.0, delta=d)  # noqa: E731
    with pytest.raises(Exception, match="exceeds the widest Gaussian"):
        jax.block_until_ready(jax.jit(jax.grad(lambda z, d: jnp.sum(f(z, d)), (0, 1)))(jnp.ones((2, 3)), 100.0))
    with pytest.raises(Exception, match="exceeds the widest Gaussian"):
        jax.block_until_ready(jax.jit(jax.vmap(f))(jnp.ones((2, 2, 3)), jnp.array([0.0, 100.0])))


@cpu_only
def test_saved_results_declared_flat_or_with_rows(rng):
    # the *_saved handlers describe a result declared flat (z's element count) with z's shape,
    # and take a result declared with z's shape as it is: the same bits either way; a flat
    # result of another size reaches era's shape check
    d = 6
    z, g = inputs(rng, (4, d), np.float32)
    delta = jnp.asarray(0.1, np.float32)
    attrs = dict(target_entropy=np.float64(gaussian_h0(d)), log_std_min=np.float64(LO), log_std_max=np.float64(HI))
    rows = jax.ShapeDtypeStruct(z.shape, z.dtype)
    flat = jax.ShapeDtypeStruct((z.size,), z.dtype)
    fwd = lambda first: _compat.ffi_call(_small_heads._GAUSSIAN_FWD_SAVED, (first, rows), z, delta, **attrs)  # noqa: E731
    (out_flat, saved_flat), (out_rows, saved_rows) = fwd(flat), fwd(rows)
    same(out_flat.reshape(z.shape), out_rows)
    same(saved_flat, saved_rows)
    one = jax.ShapeDtypeStruct((), z.dtype)
    bwd = lambda first: _compat.ffi_call(_small_heads._GAUSSIAN_BWD_SAVED, (first, one), saved_rows, delta, g, **attrs)  # noqa: E731
    (gz_flat, gd_flat), (gz_rows, gd_rows) = bwd(flat), bwd(rows)
    same(gz_flat.reshape(z.shape), gz_rows)
    same(gd_flat, gd_rows)
    short = jax.ShapeDtypeStruct((z.size - 1,), z.dtype)
    with pytest.raises(Exception, match="INVALID_SHAPE"):
        jax.block_until_ready(fwd(short))
    with pytest.raises(Exception, match="INVALID_SHAPE"):
        jax.block_until_ready(bwd(short))


# ---------------------------------------------------------------- softmax head


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", CLASSES)
@pytest.mark.parametrize("b", ROWS)
def test_softmax_saved_is_the_z_path_and_the_reference(rng, b, n, dtype):
    z, w = inputs(rng, (b, n), dtype)
    got, (g_got,) = value_and_grads(softmax(n, True), (z,), w)
    old, (g_old,) = value_and_grads(softmax(n, False), (z,), w)
    same(got, old)
    softmax_same(g_got, g_old)
    want = lambda z: ref.softmax_logits(z, target_entropy=softmax_h0(n), tau=TAU)  # noqa: E731
    out_want, (g_want,) = value_and_grads(want, (z,), w)
    np.testing.assert_allclose(got, out_want, **tol(dtype))
    np.testing.assert_allclose(g_got, g_want, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_public_function_is_the_saved_op(rng, dtype):
    z, w = inputs(rng, (17, 10), dtype)
    pub = lambda z: era_jax.softmax_logits(z, target_entropy=softmax_h0(10), tau=TAU)  # noqa: E731
    a, (ga,) = value_and_grads(pub, (z,), w)
    b, (gb,) = value_and_grads(softmax(10, True), (z,), w)
    same(a, b)
    same(ga, gb)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_grad_of_vmapped_call_under_jit(rng, dtype):
    v, u, b, n = 2, 3, 5, 17
    z, w = inputs(rng, (v, u, b, n), dtype)
    # the outputs and gradients, not the loss (as for the Gaussian head)
    outs, grads = [], []
    for saved in (True, False):
        op = jax.vmap(jax.vmap(softmax(n, saved)))
        grads.append(jax.jit(jax.grad(lambda z, op=op: jnp.sum(w * op(z))))(z))
        outs.append(value_and_grads(op, (z,), w)[0])
    same(*outs)
    softmax_same(*grads)
    head = lambda z: ref.softmax_logits(z, target_entropy=softmax_h0(n), tau=TAU)  # noqa: E731
    np.testing.assert_allclose(outs[0], head(z), **tol(dtype))
    want = lambda z: jnp.sum(w * head(z))  # noqa: E731
    np.testing.assert_allclose(grads[0], jax.jit(jax.grad(want))(z), **tol(dtype))


# ------------------------------------------------- heads of several configurations in turn


@cpu_only
def test_heads_of_several_configurations_in_turn(rng):
    # the handlers keep the head of their last attributes per thread: heads of one width with
    # other targets, bounds or tau, called in turn in one program and from program to program,
    # each give their own configuration's values and gradients; 0.0 and -0.0 as a bound are
    # two keys with the same math
    d, n = 6, 6
    z, w = inputs(rng, (9, d), np.float32)
    delta = jnp.asarray(0.1, np.float32)
    gauss = [(-1.0 * d, LO, HI), (-2.0 * d, LO, HI), (-1.0 * d, -5.0, 1.0), (-1.0 * d, LO, -0.0)]
    taus = [4.0, 3.0]

    def native(z, delta):
        outs = [era_jax.gaussian_log_std(z, target_entropy=h, log_std_min=lo, log_std_max=hi, delta=delta)
                for h, lo, hi in gauss + gauss[::-1]]
        outs += [era_jax.softmax_logits(z, target_entropy=softmax_h0(n), tau=t) for t in taus + taus[::-1]]
        return jnp.stack(outs)

    def reference(z, delta):
        outs = [ref.gaussian_log_std(z, target_entropy=h, log_std_min=lo, log_std_max=hi, delta=delta)
                for h, lo, hi in gauss + gauss[::-1]]
        outs += [ref.softmax_logits(z, target_entropy=softmax_h0(n), tau=t) for t in taus + taus[::-1]]
        return jnp.stack(outs)

    ws = jnp.stack([w] * (2 * len(gauss) + 2 * len(taus)))
    want, want_grads = value_and_grads(reference, (z, delta), ws)
    got, grads = value_and_grads(native, (z, delta), ws)
    np.testing.assert_allclose(got, want, **tol(np.float32))
    for x, y in zip(grads, want_grads):
        np.testing.assert_allclose(x, y, **tol(np.float32))
    # one configuration per program, in turn: each program's first call finds another head last
    for (h, lo, hi) in gauss + gauss[::-1]:
        head = lambda z, dl, h=h, lo=lo, hi=hi: era_jax.gaussian_log_std(  # noqa: E731
            z, target_entropy=h, log_std_min=lo, log_std_max=hi, delta=dl
        )
        np.testing.assert_allclose(
            jax.jit(head)(z, delta), ref.gaussian_log_std(z, target_entropy=h, log_std_min=lo, log_std_max=hi, delta=delta),
            **tol(np.float32),
        )
    np.testing.assert_array_equal(got[0], got[2 * len(gauss) - 1])  # the first configuration, first and last in one program


@cpu_only
def test_a_refused_configuration_is_not_kept(rng):
    # a configuration era refuses raises every time it is called, between calls of a valid one
    # of the same width, which keeps giving its own values
    z, _ = inputs(rng, (4, 6), np.float32)
    good = lambda z: era_jax.gaussian_log_std(z, target_entropy=-6.0, log_std_min=LO, log_std_max=HI)  # noqa: E731
    bad = lambda z: _compat.ffi_call(  # noqa: E731  (lo >= hi: refused by era, not by Python)
        _small_heads._GAUSSIAN_FWD_SAVED, (jax.ShapeDtypeStruct(z.shape, z.dtype),) * 2, z, jnp.float32(0.0),
        target_entropy=np.float64(-6.0), log_std_min=np.float64(1.0), log_std_max=np.float64(0.0),
    )
    want = ref.gaussian_log_std(z, target_entropy=-6.0, log_std_min=LO, log_std_max=HI)
    for _ in range(2):
        np.testing.assert_allclose(jax.jit(good)(z), want, **tol(np.float32))
        with pytest.raises(Exception, match="INVALID_ARGUMENT"):
            jax.block_until_ready(bad(z))
    np.testing.assert_allclose(jax.jit(good)(z), want, **tol(np.float32))


# ---------------------------------------------------------------- the lowered program


TARGETS = [f"era_{h}_{p}{s}" for h in ("gaussian", "softmax") for p in ("fwd", "bwd") for s in ("", "_saved")]


def custom_calls(text):
    """The heads' custom-call targets named in a lowered program's text."""
    return {t for t in TARGETS if re.search(r'[@"]' + t + r'[("]', text)}


def lowered(f, *args):
    return jax.jit(f).lower(*args).as_text()


@cpu_only
def test_cpu_program_calls_the_saved_targets(rng):
    z, w = inputs(rng, (4, 6), np.float32)
    d = jnp.float32(0.1)
    g = lambda z, d: era_jax.gaussian_log_std(z, target_entropy=-3.0, delta=d)  # noqa: E731
    s = lambda z: era_jax.softmax_logits(z, target_entropy=1.0, tau=TAU)  # noqa: E731
    grad_g = jax.value_and_grad(lambda z, d: jnp.sum(w * g(z, d)), (0, 1))
    grad_s = jax.value_and_grad(lambda z: jnp.sum(w * s(z)))
    # the jaxpr holds both branches of platform_dependent; the CPU program only the saved one
    assert "era_gaussian_fwd_saved" in str(jax.make_jaxpr(grad_g)(z, d))
    assert custom_calls(lowered(grad_g, z, d)) == {"era_gaussian_fwd_saved", "era_gaussian_bwd_saved"}
    assert custom_calls(lowered(grad_s, z)) == {"era_softmax_fwd_saved", "era_softmax_bwd_saved"}
    # vmapped, with a per-instance delta
    vg = jax.value_and_grad(lambda z, d: jnp.sum(w * jax.vmap(g)(z, d)), (0, 1))
    assert custom_calls(lowered(vg, jnp.stack([z, z]), jnp.stack([d, d]))) == {
        "era_gaussian_fwd_saved", "era_gaussian_bwd_saved"}
    # without a gradient: the plain forward
    assert custom_calls(lowered(g, z, d)) == {"era_gaussian_fwd"}
    assert custom_calls(lowered(s, z)) == {"era_softmax_fwd"}
    # the z path (save_softmax=False) keeps the unsaved targets
    zg = jax.value_and_grad(lambda z, d: jnp.sum(w * gaussian(6, False)(z, d)), (0, 1))
    assert custom_calls(lowered(zg, z, d)) == {"era_gaussian_fwd", "era_gaussian_bwd"}
    zs = jax.value_and_grad(lambda z: jnp.sum(w * softmax(6, False)(z)))
    assert custom_calls(lowered(zs, z)) == {"era_softmax_fwd", "era_softmax_bwd"}


def test_saved_targets_have_no_cuda_handler():
    from era_jax import _native

    for name in ("era_gaussian_fwd_saved", "era_gaussian_bwd_saved", "era_softmax_fwd_saved",
                 "era_softmax_bwd_saved"):
        cpu, cuda = _native.targets()[name]
        assert cpu and not cuda
