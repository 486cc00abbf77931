"""Every XLA FFI target of era_jax called once, under jit, value and gradient against the pure-JAX
reference (reference.py) or the whole-logits call it must equal, in float64, on small inputs.

This file is the check that an installed era_jax works end to end (the wheels' tests run it:
bindings/jax/wheel.sh); the other files test each op in depth. A target registered but not
reached by any test below fails test_every_target_is_reached."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import era_jax
from era_jax import _native, _small_heads

import reference as ref

REACHED = set()


def reach(*targets):
    REACHED.update(targets)


def close(a, b, tol=1e-10):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=tol, atol=tol)


def weights(rng, shape):
    return jnp.asarray(rng.normal(size=shape))


def check_head(ours, want, z, w):
    """Value and gradient of a weighted sum of `ours(z)` (jitted) against the reference `want`."""
    ours = jax.jit(ours)
    close(ours(z), want(z))
    close(jax.grad(lambda z: jnp.sum(w * ours(z)))(z), jax.grad(lambda z: jnp.sum(w * want(z)))(z))


def on_cpu(*xs):
    """The arrays committed to a CPU device: jit then compiles for the CPU on any machine."""
    cpu = jax.devices("cpu")[0]
    return tuple(jax.device_put(x, cpu) for x in xs)


# The Gaussian and softmax heads save softmax(z) for the backward on the CPU (the *_saved
# targets, CPU only) and z elsewhere (docs/math.md#saved-softmax): each path is called below,
# the saved one on a CPU device, the one that saves z through the op built without saving.


def test_gaussian(rng):
    z, w = weights(rng, (5, 4)), weights(rng, (5, 4))
    kw = dict(target_entropy=-3.0, log_std_min=-8.0, log_std_max=0.0, delta=0.4)
    ours = lambda z: era_jax.gaussian_log_std(z, **kw)  # noqa: E731
    want = lambda z: ref.gaussian_log_std(z, **kw)  # noqa: E731
    check_head(ours, want, z, w)
    check_head(ours, want, *on_cpu(z, w))
    z_path = _small_heads._gaussian_fn(-3.0, -8.0, 0.0, False)
    check_head(lambda z: z_path(z, jnp.asarray(0.4, z.dtype)), want, z, w)
    reach("era_gaussian_fwd", "era_gaussian_bwd", "era_gaussian_fwd_saved", "era_gaussian_bwd_saved")


def test_gaussian_masked_with_all_ones_is_the_head(rng):
    z, w = weights(rng, (5, 4)), weights(rng, (5, 4))
    mask = jnp.ones((5, 4), bool)
    kw = dict(target_entropy=-3.0, delta=0.2)
    check_head(lambda z: era_jax.gaussian_log_std_masked(z, mask, **kw), lambda z: ref.gaussian_log_std(z, **kw), z, w)
    reach("era_gaussian_masked_fwd", "era_gaussian_masked_bwd")


def test_softmax(rng):
    z, w = weights(rng, (6, 7)), weights(rng, (6, 7))
    kw = dict(target_entropy=1.2, tau=4.0)
    ours = lambda z: era_jax.softmax_logits(z, **kw)  # noqa: E731
    want = lambda z: ref.softmax_logits(z, **kw)  # noqa: E731
    check_head(ours, want, z, w)
    check_head(ours, want, *on_cpu(z, w))
    check_head(_small_heads._softmax_fn(1.2, 4.0, False), want, z, w)
    reach("era_softmax_fwd", "era_softmax_bwd", "era_softmax_fwd_saved", "era_softmax_bwd_saved")


def test_entropies(rng):
    log_std = weights(rng, (5, 3)) * 0.3
    mean = jnp.tanh(weights(rng, (5, 3)))
    logits = weights(rng, (5, 11))
    close(jax.jit(era_jax.gaussian_entropy)(log_std), ref.gaussian_entropy(log_std))
    close(jax.jit(era_jax.softmax_entropy)(logits), ref.softmax_entropy(logits))
    close(jax.jit(era_jax.truncated_normal_entropy)(mean, log_std), ref.truncated_normal_entropy(mean, log_std), 1e-8)
    reach("era_gaussian_entropy", "era_softmax_entropy", "era_truncated_normal_entropy")


def token_batch(rng, n=12, v=17):
    logits = weights(rng, (n, v)) * 2.0
    labels = jnp.asarray(rng.integers(0, v, size=n))
    ids = jnp.asarray(np.repeat(np.arange(3), 4))
    adv = weights(rng, (n,))
    return logits, labels, ids, adv


def test_token_head(rng):
    logits, labels, ids, adv = token_batch(rng)
    w = weights(rng, (len(labels),))
    ours = jax.jit(lambda x: era_jax.token_logprobs(x, labels, ids, adv, temperature=0.9))
    want = ref.token_logprobs(logits, labels, ids, adv, temperature=0.9)
    for got, exp in zip(ours(logits), want):
        close(got, exp)
    g = jax.grad(lambda x: jnp.sum(w * ours(x)[0]))(logits)
    g_ref = jax.grad(lambda x: jnp.sum(w * ref.token_logprobs(x, labels, ids, adv, temperature=0.9)[0]))(logits)
    close(g, g_ref)
    reach("era_token_fwd", "era_token_bwd")


def test_split_token_head_is_the_one_call_head(rng):
    logits, labels, ids, adv = token_batch(rng)
    w = weights(rng, (len(labels),))
    one = era_jax.token_logprobs(logits, labels, ids, adv)

    def split(x):
        cols = era_jax.token_logprob_columns(x, labels)
        return cols, era_jax.token_decide(cols.entropy, ids, adv, cols.columns)

    cols, dec = jax.jit(split)(logits)
    close(dec.logprobs, one[0], 0)
    close(cols.entropy, one[1], 0)
    close(dec.scale, one[2], 0)
    g_split = jax.grad(lambda x: jnp.sum(w * split(x)[1].logprobs))(logits)
    g_one = jax.grad(lambda x: jnp.sum(w * era_jax.token_logprobs(x, labels, ids, adv)[0]))(logits)
    close(g_split, g_one, 1e-12)
    reach("era_token_columns", "era_token_decide", "era_token_columns_bwd")


def test_fused_unembedding_is_the_whole_logits(rng):
    n, h, v = 7, 5, 23
    hidden, weight = weights(rng, (n, h)), weights(rng, (v, h)) * 0.7
    labels = jnp.asarray(rng.integers(0, v, size=n))
    w = weights(rng, (n, 3))

    def fused(hidden, weight):
        out = era_jax.fused_token_columns(hidden, weight, labels, chunk_size=8)
        return jnp.sum(w * out.columns) + jnp.sum(out.entropy)

    def whole(hidden, weight):
        out = era_jax.token_logprob_columns(hidden @ weight.T, labels)
        return jnp.sum(w * out.columns) + jnp.sum(out.entropy)

    close(jax.jit(fused)(hidden, weight), whole(hidden, weight), 1e-12)
    for got, want in zip(jax.grad(fused, (0, 1))(hidden, weight), jax.grad(whole, (0, 1))(hidden, weight)):
        close(got, want, 1e-12)
    reach("era_token_block_stats", "era_token_stats_rebase", "era_token_block_finish", "era_token_block_bwd")


def test_vocabulary_shards_are_the_whole_logits(rng):
    devices = jax.devices()
    if len(devices) < 2:
        pytest.skip("needs two host devices (conftest.py asks for four)")
    mesh = jax.sharding.Mesh(np.array(devices[:2]), ("vocab",))
    logits, labels, _, _ = token_batch(rng, v=18)
    got = jax.jit(lambda x: era_jax.vocab_sharded_token_columns(x, labels, mesh=mesh, axis_name="vocab"))(logits)
    want = era_jax.token_logprob_columns(logits, labels)
    close(got.columns, want.columns, 1e-12)
    close(got.entropy, want.entropy, 1e-12)
    reach("era_token_stats_merge")


def test_every_target_is_reached():
    """Runs last in this file (pytest keeps the file's order)."""
    assert set(_native.targets()) == REACHED, sorted(set(_native.targets()) ^ REACHED)
