"""The token head over vocabulary blocks (docs/math.md#vocabulary-blocks): era_jax.fused_token_columns
(the unembedding a chunk at a time) and the vocabulary-sharded columns against
era_jax.token_logprob_columns of the whole logits, forward and gradients, under jit; that no
[N, V] buffer exists; the x64-off mode in a subprocess. The sharded tests use 1, 2 and 4 of the
four host devices that conftest.py asks for."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import era_jax
from era_jax import _compat

N, H, V = 9, 6, 29


def head(h, w, b=None, logit_scale=None, softcap=None, valid=None):
    """The whole logits, as a model computes them (the reference's input)."""
    x = h @ w[:valid].T
    if b is not None:
        x = x + b[:valid]
    if logit_scale is not None:
        x = x * logit_scale
    if softcap is not None:
        x = softcap * jnp.tanh(x / softcap)
    return x


def problem(rng, dtype=np.float64, n=N, v=V):
    h = jnp.asarray(rng.normal(size=(n, H)), dtype)
    w = jnp.asarray(rng.normal(size=(v, H)) * 0.8, dtype)
    b = jnp.asarray(rng.normal(size=v), dtype)
    y = rng.integers(0, v, size=n)
    y[3] = -100  # an ignored token
    return h, w, b, jnp.asarray(y)


def loss(out):
    return jnp.sum(jnp.sin(out.columns) * jnp.arange(1.0, 4.0)) + jnp.sum(out.entropy ** 2)


def assert_close(got, want, rtol, atol):
    for a, b in zip(got, want):
        if b is None:
            assert a is None
            continue
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol, atol=atol)


@pytest.mark.parametrize("chunk", [4, 7, 29, 64])
@pytest.mark.parametrize("topk", [0, 5])
@pytest.mark.parametrize("transform", [(None, None), (0.7, None), (None, 2.5), (1.3, 3.0)])
def test_fused_matches_whole_logits_f64(rng, chunk, topk, transform):
    scale, cap = transform
    h, w, b, y = problem(rng)
    t = jnp.asarray(rng.uniform(0.6, 1.4, size=N))
    cfg = dict(temperature=t, vocab_topk=topk, k=2.0, sum_sq=True)

    def whole(h, w, b):
        return era_jax.token_logprob_columns(head(h, w, b, scale, cap), y, **cfg)

    def fused(h, w, b):
        return era_jax.fused_token_columns(h, w, y, bias=b, logit_scale=scale, softcap=cap, chunk_size=chunk, **cfg)

    assert_close(jax.jit(fused)(h, w, b), whole(h, w, b), rtol=1e-12, atol=1e-12)
    gf = jax.jit(jax.grad(lambda *a: loss(fused(*a)), (0, 1, 2)))(h, w, b)
    gw = jax.grad(lambda *a: loss(whole(*a)), (0, 1, 2))(h, w, b)
    assert_close(gf, gw, rtol=1e-10, atol=1e-12)


def test_fused_without_bias_ignored_labels_and_padding(rng):
    h, w, b, y = problem(rng)
    y = y.at[0].set(-1).at[5].set(-100)
    valid = V - 4  # the last rows of the weight are padding, never read
    y = jnp.where(y >= valid, valid - 1, y)

    def whole(h, w):
        return era_jax.token_logprob_columns(head(h, w, valid=valid), y, temperature=0.8, vocab_topk=3)

    def fused(h, w):
        return era_jax.fused_token_columns(h, w, y, temperature=0.8, vocab_topk=3, chunk_size=6, vocab_valid=valid)

    out = jax.jit(fused)(h, w)
    assert out.sum_sq is None
    assert_close(out, whole(h, w), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(out.columns)[[0, 5]], 0.0)
    gf = jax.jit(jax.grad(lambda *a: loss(fused(*a)), (0, 1)))(h, w)
    gw = jax.grad(lambda *a: loss(whole(*a)), (0, 1))(h, w)
    assert_close(gf, gw, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(gf[1][valid:], 0.0)  # padding rows get no gradient


@pytest.mark.parametrize("topk", [0, 5])
def test_fused_f32(rng, topk):
    h, w, b, y = problem(rng, np.float32)
    cfg = dict(temperature=1.1, vocab_topk=topk, softcap=4.0, logit_scale=0.9)

    def whole(h, w, b):
        x = head(h, w, b, cfg["logit_scale"], cfg["softcap"])
        return era_jax.token_logprob_columns(x, y, temperature=1.1, vocab_topk=topk)

    def fused(h, w, b):
        return era_jax.fused_token_columns(h, w, y, bias=b, chunk_size=8, **cfg)

    out = jax.jit(fused)(h, w, b)
    assert out.columns.dtype == jnp.float32 and out.entropy.dtype == jnp.float32
    assert_close(out, whole(h, w, b), rtol=1e-5, atol=1e-5)
    gf = jax.jit(jax.grad(lambda *a: loss(fused(*a)), (0, 1, 2)))(h, w, b)
    gw = jax.grad(lambda *a: loss(whole(*a)), (0, 1, 2))(h, w, b)
    assert all(g.dtype == jnp.float32 for g in gf)
    assert_close(gf, gw, rtol=1e-4, atol=1e-5)


def test_fused_bfloat16(rng):
    h, w, b, y = problem(rng, jnp.bfloat16)

    def whole(h, w):
        x = 5.0 * jnp.tanh(jnp.matmul(h, w.T, precision="highest") / 5.0)
        return era_jax.token_logprob_columns(x, y)

    def fused(h, w):
        return era_jax.fused_token_columns(h, w, y, chunk_size=7, softcap=5.0)

    out = jax.jit(fused)(h, w)
    assert out.columns.dtype == jnp.float32
    assert_close(out, whole(h, w), rtol=1e-5, atol=1e-5)  # the same bf16 logits
    gf = jax.jit(jax.grad(lambda *a: jnp.sum(fused(*a).columns), (0, 1)))(h, w)
    gw = jax.grad(lambda *a: jnp.sum(whole(*a).columns), (0, 1))(h, w)
    assert all(g.dtype == jnp.bfloat16 for g in gf)
    assert_close(gf, gw, rtol=5e-2, atol=0.1)


def _avals(jaxpr):
    """Every abstract value of a closed jaxpr, its sub-jaxprs (scan bodies, custom rules) included."""
    for eqn in jaxpr.eqns:
        for v in list(eqn.invars) + list(eqn.outvars):
            if hasattr(v, "aval"):
                yield v.aval
        for p in eqn.params.values():
            for sub in (p if isinstance(p, (list, tuple)) else [p]):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _avals(inner)


def test_no_buffer_of_the_logits_size(rng):
    n, v, chunk = 64, 4096, 256
    h, w, b, y = problem(rng, np.float32, n=n, v=v)

    def f(h, w, b):
        return loss(era_jax.fused_token_columns(h, w, y, bias=b, chunk_size=chunk, vocab_topk=20, softcap=5.0))

    g = jax.value_and_grad(f, (0, 1, 2))
    jaxpr = jax.make_jaxpr(g)(h, w, b)
    biggest = max(int(np.prod(a.shape)) for a in _avals(jaxpr.jaxpr) if hasattr(a, "shape"))
    assert biggest < n * v, biggest  # the largest is the weight (or its gradient), [V, H]
    compiled = jax.jit(g).lower(h, w, b).compile()
    mem = compiled.memory_analysis()
    if mem is not None:
        assert mem.temp_size_in_bytes < n * v * 4, mem.temp_size_in_bytes


def _mesh(devices):
    if jax.device_count() < devices:
        pytest.skip(f"needs {devices} host devices (XLA_FLAGS)")
    return jax.sharding.Mesh(np.array(jax.devices()[:devices]), ("vocab",))


@pytest.mark.parametrize("devices", [1, 2, 4])
@pytest.mark.parametrize("topk", [0, 6])
def test_sharded_logits_against_whole(rng, devices, topk):
    mesh = _mesh(devices)
    v = 32  # a multiple of the device counts; the last 3 entries are padding
    valid = v - 3
    logits = jnp.asarray(rng.normal(size=(N, v)) * 2)
    y = rng.integers(0, valid, size=N)
    y[4] = -100
    y = jnp.asarray(y)
    t = jnp.asarray(rng.uniform(0.7, 1.3, size=N))
    cfg = dict(temperature=t, vocab_topk=topk, sum_sq=True)
    sharded = jax.device_put(logits, NamedSharding(mesh, P(None, "vocab")))

    def mine(x):
        return era_jax.vocab_sharded_token_columns(x, y, mesh=mesh, axis_name="vocab", vocab_valid=valid, **cfg)

    def whole(x):
        return era_jax.token_logprob_columns(x[:, :valid], y, **cfg)

    assert_close(jax.jit(mine)(sharded), whole(logits), rtol=1e-12, atol=1e-12)
    g = jax.jit(jax.grad(lambda x: loss(mine(x))))(sharded)
    want = jax.grad(lambda x: loss(whole(x)))(logits)
    np.testing.assert_allclose(g, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(g)[:, valid:], 0.0)


@pytest.mark.parametrize("devices", [1, 2, 4])
@pytest.mark.parametrize("topk", [0, 4])
def test_fused_sharded_weight_against_unsharded(rng, devices, topk):
    mesh = _mesh(devices)
    v = 36
    h, w, b, y = problem(rng, v=v)
    cfg = dict(temperature=0.9, vocab_topk=topk, softcap=3.0, sum_sq=True)

    def local(h, w, b):
        c = era_jax.fused_token_columns(h, w, y, bias=b, chunk_size=5, axis_name="vocab", **cfg)
        return c.columns, c.entropy, c.sum_sq

    sharded = jax.jit(_compat.shard_map(local, mesh=mesh, in_specs=(P(), P("vocab"), P("vocab")),
                                        out_specs=(P(), P(), P())))

    def unsharded(h, w, b):
        c = era_jax.fused_token_columns(h, w, y, bias=b, chunk_size=5, **cfg)
        return c.columns, c.entropy, c.sum_sq

    assert_close(sharded(h, w, b), unsharded(h, w, b), rtol=1e-12, atol=1e-12)
    lossf = lambda f: (lambda *a: jnp.sum(jnp.sin(f(*a)[0])) + jnp.sum(f(*a)[1] ** 2))  # noqa: E731
    gs = jax.jit(jax.grad(lossf(sharded), (0, 1, 2)))(h, w, b)
    gu = jax.grad(lossf(unsharded), (0, 1, 2))(h, w, b)
    assert_close(gs, gu, rtol=1e-10, atol=1e-12)


def test_invalid_arguments(rng):
    h, w, b, y = problem(rng)
    with pytest.raises(ValueError, match="vocab_valid"):
        era_jax.fused_token_columns(h, w, y, vocab_valid=V + 1)
    with pytest.raises(ValueError, match="weight"):
        era_jax.fused_token_columns(h, w.T, y)
    with pytest.raises(ValueError, match="chunk_size"):
        era_jax.fused_token_columns(h, w, y, chunk_size=0)
    with pytest.raises(Exception, match="INVALID_VALUE"):  # a label past the real entries
        jax.block_until_ready(era_jax.fused_token_columns(h, w, y.at[0].set(V - 1), vocab_valid=V - 2).columns)


X64_OFF = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    assert not jax.config.jax_enable_x64
    import era_jax
    from jax.sharding import PartitionSpec as P, NamedSharding
    rng = np.random.default_rng(3)
    n, v, h = 8, 24, 5
    hid = jnp.asarray(rng.normal(size=(n, h)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(v, h)), jnp.float32)
    y = jnp.asarray(rng.integers(0, v, size=n))
    for topk in (0, 5):
        want = era_jax.token_logprob_columns(hid @ w.T, y, vocab_topk=topk)
        got = jax.jit(lambda a, b: era_jax.fused_token_columns(a, b, y, chunk_size=7, vocab_topk=topk))(hid, w)
        for a, b in zip(got[:2], want[:2]):
            assert a.dtype == jnp.float32
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
        g = jax.grad(lambda a: jnp.sum(era_jax.fused_token_columns(a, w, y, chunk_size=7, vocab_topk=topk)[0]))(hid)
        gw = jax.grad(lambda a: jnp.sum(era_jax.token_logprob_columns(a @ w.T, y, vocab_topk=topk)[0]))(hid)
        np.testing.assert_allclose(g, gw, rtol=1e-4, atol=1e-5)
        mesh = jax.sharding.Mesh(np.array(jax.devices()[:4]), ("vocab",))
        x = jax.device_put(hid @ w.T, NamedSharding(mesh, P(None, "vocab")))
        got = jax.jit(lambda x: era_jax.vocab_sharded_token_columns(x, y, mesh=mesh, axis_name="vocab",
                                                                    vocab_topk=topk))(x)
        for a, b in zip(got[:2], want[:2]):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    print("ok")
    """
)


def test_x64_off():
    env = dict(os.environ)
    env.pop("JAX_ENABLE_X64", None)
    flag = "--xla_force_host_platform_device_count=4"
    if flag not in env.get("XLA_FLAGS", ""):
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + flag).strip()
    r = subprocess.run([sys.executable, "-c", X64_OFF], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith("ok")
