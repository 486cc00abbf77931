"""era_jax's split token forward (token_logprob_columns + token_decide): the one-call head's
bits (float32, bfloat16, float64, top-K, a temperature per token), the columns and the squared
sum against jax.numpy, gradients of the columns and the entropy against jax.numpy's and the
selected column's against the one-call backward, vmap, jit, and errors. CPU (the library's
split forward runs on CPU buffers)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import era_jax
from conftest import cpu_only

pytestmark = cpu_only


def batch(seed=0, per=6, vocab=40, dtype=np.float32):
    """Responses in all three scale branches: 0 peaked (sharpen), 1 flat (flatten), 2 in
    between, 3 with a negative advantage; two masked tokens."""
    rng = np.random.default_rng(seed)
    n = 4 * per + 2
    ids = np.array([t // per if t < 4 * per else -1 for t in range(n)])
    labels = rng.integers(0, vocab, size=n)
    x = rng.normal(size=(n, vocab)) * np.where(ids == 1, 0.03, 1.5)[:, None]
    x[ids == 0, labels[ids == 0]] = 60.0
    adv = np.where(ids == 3, -0.7, 0.5) + 0.05 * rng.normal(size=n)
    return jnp.asarray(x.astype(dtype)), jnp.asarray(labels), jnp.asarray(ids), jnp.asarray(adv)


CFG = dict(k=2.0, omega_low=0.45, omega_high=3.0)


def split(x, y, ids, adv, temperature=None, vocab_topk=0, **cfg):
    cols = era_jax.token_logprob_columns(x, jnp.where(ids >= 0, y, -100), temperature=temperature,
                                         k=cfg.get("k"), vocab_topk=vocab_topk, sum_sq=True)
    return cols, era_jax.token_decide(cols.entropy, ids, adv, cols.columns, **cfg)


def same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


@pytest.mark.parametrize("dtype", [np.float32, jnp.bfloat16, np.float64])
@pytest.mark.parametrize("vocab_topk", [0, 5])
@pytest.mark.parametrize("k", [2.0, 3.0])
def test_split_is_the_one_call_head_bit_for_bit(dtype, vocab_topk, k):
    x, y, ids, adv = batch(dtype=dtype)
    cfg = dict(CFG, k=k)
    out_dt = np.float64 if dtype == np.float64 else np.float32
    adv = adv.astype(out_dt)
    one = era_jax.token_logprobs(x, y, ids, adv, temperature=0.8, vocab_topk=vocab_topk, **cfg)
    cols, dec = split(x, y, ids, adv, temperature=0.8, vocab_topk=vocab_topk, **cfg)
    assert same(one[0], dec.logprobs) and same(one[1], cols.entropy)
    assert same(one[2], dec.scale) and same(one[3], dec.advantages)
    assert len(set(np.asarray(dec.scale).tolist())) == 3


def test_columns_and_sum_sq_against_jax_numpy():
    x, y, ids, adv = batch(dtype=np.float64)
    t = jnp.asarray(np.linspace(0.6, 1.4, len(y)))
    cols = era_jax.token_logprob_columns(x, y, temperature=t, k=3.0, sum_sq=True)
    z = x / t[:, None]
    for j, c in enumerate([1.0, 3.0, 1 / 3]):
        want = jnp.take_along_axis(jax.nn.log_softmax(c * z), y[:, None], -1)[:, 0]
        np.testing.assert_allclose(cols.columns[:, j], want, rtol=1e-12, atol=1e-12)
    p = jax.nn.softmax(z)
    np.testing.assert_allclose(cols.entropy, -(p * jax.nn.log_softmax(z)).sum(-1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cols.sum_sq, (p * p).sum(-1), rtol=1e-12, atol=1e-12)


def test_gradients():
    x, y, ids, adv = batch(dtype=np.float64)
    t = jnp.asarray(np.linspace(0.6, 1.4, len(y)))
    w = jnp.asarray(np.random.default_rng(3).normal(size=(len(y), 3)))
    b = jnp.asarray(np.random.default_rng(4).normal(size=len(y)))

    def ours(x):
        c = era_jax.token_logprob_columns(x, y, temperature=t, k=3.0)
        return (c.columns * w).sum() + (c.entropy * b).sum()

    def theirs(x):
        z = x / t[:, None]
        cols = jnp.stack([jnp.take_along_axis(jax.nn.log_softmax(c * z), y[:, None], -1)[:, 0]
                          for c in (1.0, 3.0, 1 / 3)], -1)
        p = jax.nn.softmax(z)
        return (cols * w).sum() + (-(p * jax.nn.log_softmax(z)).sum(-1) * b).sum()

    np.testing.assert_allclose(jax.grad(ours)(x), jax.grad(theirs)(x), rtol=1e-10, atol=1e-12)
    # the selected column's gradient is the one-call backward's, bit for bit (float32)
    x32, y, ids, adv = batch()
    g1 = jax.grad(lambda x: era_jax.token_logprobs(x, y, ids, adv.astype(np.float32), **CFG)[0].sum())(x32)
    g2 = jax.grad(lambda x: split(x, y, ids, adv.astype(np.float32), **CFG)[1].logprobs.sum())(x32)
    assert same(g1, g2)
    # advantages_out = A / c
    ga = jax.grad(lambda a: split(x32, y, ids, a, **CFG)[1].advantages.sum())(adv.astype(np.float32))
    _, dec = split(x32, y, ids, adv.astype(np.float32), **CFG)
    np.testing.assert_allclose(ga, 1.0 / dec.scale)


def test_vmap_and_jit():
    x, y, ids, adv = batch()
    xs, ys, idss, advs = (jnp.stack([a, a]) for a in (x, y, ids, adv.astype(np.float32)))
    f = jax.jit(jax.vmap(lambda x, y, i, a: split(x, y, i, a, **CFG)[1].logprobs))
    out = f(xs, ys, idss, advs)
    _, dec = split(x, y, ids, adv.astype(np.float32), **CFG)
    assert same(out[0], dec.logprobs) and same(out[1], dec.logprobs)


def test_errors():
    x, y, ids, adv = batch()
    with pytest.raises(Exception, match="INVALID_VALUE"):
        era_jax.token_logprob_columns(x, y, temperature=jnp.zeros(len(y))).columns.block_until_ready()
    with pytest.raises(ValueError, match="temperature"):
        era_jax.token_logprob_columns(x, y, temperature=jnp.ones(3))
    with pytest.raises(ValueError, match="columns"):
        era_jax.token_decide(jnp.zeros(4), jnp.zeros(4, int), jnp.zeros(4), jnp.zeros((4, 2)))
