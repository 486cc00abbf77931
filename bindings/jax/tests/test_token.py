"""era_jax.token_logprobs: values against two independent implementations,
masking, forking-token thresholds, top-K, dtypes, gradients, vmap (responses
of different instances kept apart), shard_map and errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import era_jax

import numpy_ref
import reference as ref
from conftest import cpu_only, cuda_only, tol


def make_batch(rng, n, v, n_resp=None, masked=0.15, scale=3.0, dtype=np.float32):
    """Random tokens: responses of several lengths (including length 1) in
    shuffled order, some masked tokens (id -1, label -100)."""
    n_resp = n_resp or max(1, n // 5)
    ids = rng.integers(0, n_resp, size=n)
    ids[: min(n, n_resp)] = np.arange(min(n, n_resp))  # every response present
    ids = rng.permutation(ids)
    ids[rng.random(n) < masked] = -1
    single = rng.integers(0, n)  # a response of length 1
    ids[single] = n_resp + 7
    labels = rng.integers(0, v, size=n)
    labels[ids < 0] = -100  # masked labels are never read
    logits = (rng.normal(size=(n, v)) * scale * rng.uniform(0.05, 1.0, size=(n, 1))).astype(dtype)
    adv = rng.normal(size=n)
    return logits, labels, ids, adv


def between_response_entropies(logits64, ids, rho, temperature):
    """Two thresholds halfway between sorted response entropies, at about 1/3 and 2/3 of them."""
    hresp = numpy_ref.token(logits64, np.zeros(len(ids), int), ids, np.ones(len(ids)), rho=rho,
                            temperature=temperature)[4]
    hs = np.unique(hresp[ids >= 0])
    i, j = len(hs) // 3, 2 * len(hs) // 3
    return 0.5 * (hs[i - 1] + hs[i]), 0.5 * (hs[j - 1] + hs[j])


def compare(out, want, dtype):
    names = ["logprobs", "entropy", "scale", "advantages_out"]
    for name, a, b in zip(names, out, want):
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), err_msg=name, **tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, jnp.bfloat16, np.float16])
@pytest.mark.parametrize("topk", [0, 5])
def test_matches_references(rng, dtype, topk):
    logits, labels, ids, adv = make_batch(rng, 60, 37, dtype=np.float32)
    logits = jnp.asarray(logits).astype(dtype)
    l64 = np.asarray(logits.astype(jnp.float64))
    adv[ids == ids[ids >= 0][0]] = 1.0  # some response has only positive advantages
    # thresholds between response entropies (away from each): all three scales occur
    omega_low, omega_high = between_response_entropies(l64, ids, 0.3, 1.3)
    cfg = dict(k=2.0, omega_low=omega_low, omega_high=omega_high, top_fraction=0.3, temperature=1.3,
               vocab_topk=topk)
    out = era_jax.token_logprobs(logits, labels, ids, adv, **cfg)
    want_dtype = np.float64 if dtype == np.float64 else np.float32
    assert all(o.dtype == want_dtype and o.shape == (60,) for o in out)
    compare(out, jax.jit(functools.partial(ref.token_logprobs, **cfg))(logits, labels, ids, adv), dtype)
    np_out = numpy_ref.token(l64, labels, ids, adv, k=2.0, omega_low=omega_low, omega_high=omega_high, rho=0.3,
                             temperature=1.3, topk=topk)
    compare(out, np_out[:4], dtype if dtype in (np.float32, np.float64) else np.float32)
    assert set(np.unique(np.asarray(out[2])).tolist()) == {0.5, 1.0, 2.0}
    masked = ids < 0
    np.testing.assert_array_equal(np.asarray(out[0])[masked], 0.0)
    np.testing.assert_array_equal(np.asarray(out[2])[masked], 1.0)


@pytest.mark.parametrize("shape", [(4, 9), (2, 3, 7), (1, 11)])
def test_batch_shapes_and_index_dtypes(rng, shape):
    n = int(np.prod(shape))
    logits, labels, ids, adv = make_batch(rng, n, 13, dtype=np.float64)
    rs = lambda x: x.reshape(shape + x.shape[1:])  # noqa: E731
    for idt in (np.int32, np.int64):
        out = era_jax.token_logprobs(rs(logits), rs(labels).astype(idt), rs(ids).astype(idt), rs(adv),
                                     advantage_scaling=False, omega_low=1.5)
        want = jax.jit(functools.partial(ref.token_logprobs, advantage_scaling=False, omega_low=1.5))(
            logits, labels, ids, adv)
        assert out[0].shape == shape
        compare([o.reshape(-1) for o in out], want, np.float64)
        np.testing.assert_array_equal(np.asarray(out[3]).reshape(-1), adv)  # no scaling


def test_single_token_rank_one(rng):
    logits = rng.normal(size=7)
    out = era_jax.token_logprobs(logits, 3, 0, 1.0, omega_low=5.0, omega_high=6.0)
    want = numpy_ref.token(logits[None], [3], [0], [1.0], omega_low=5.0, omega_high=6.0)
    assert want[2][0] == 2.0
    assert out[0].shape == ()
    compare(out, [w[0] for w in want[:4]], np.float64)


def test_thresholds_near_response_entropies(rng):
    # omega_low / omega_high a hair above / below response entropies: the decisions must follow exactly
    logits, labels, ids, adv = make_batch(rng, 80, 23, n_resp=10, dtype=np.float64)
    adv = np.abs(adv) + 0.1  # positive: every valid token is eligible
    hresp = numpy_ref.token(logits, labels, ids, adv)[4]
    hs = np.unique(hresp[ids >= 0])
    for i in range(1, len(hs) - 1):
        for eps in (1e-9, -1e-9):
            lo_, hi_ = hs[i] + eps, hs[i] + eps
            for cfg in (dict(omega_low=lo_, omega_high=10.0), dict(omega_low=0.0, omega_high=hi_)):
                out = era_jax.token_logprobs(logits, labels, ids, adv, **cfg)
                want = numpy_ref.token(logits, labels, ids, adv, **cfg)
                np.testing.assert_array_equal(np.asarray(out[2]), want[2])
                np.testing.assert_allclose(out[0], want[0], rtol=1e-10, atol=1e-10)
    # the reference agrees on the per-token response entropies
    np.testing.assert_allclose(ref.response_entropy(ref.token_entropy(logits), ids), hresp, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, jnp.bfloat16])
def test_gradients_match_reference(rng, dtype):
    logits, labels, ids, adv = make_batch(rng, 40, 17)
    logits = jnp.asarray(logits).astype(dtype)
    w = jnp.asarray(rng.normal(size=40))
    cfg = dict(omega_low=1.0, omega_high=1.4, vocab_topk=0)

    def loss(fn):
        def f(logits, adv):
            lp, ent, sc, a2 = fn(logits, labels, ids, adv, **cfg)
            return jnp.sum(lp * w) + jnp.sum(a2 * w) + 0.0 * jnp.sum(ent)
        return f

    g = jax.jit(jax.grad(loss(era_jax.token_logprobs), (0, 1)))(logits, jnp.asarray(adv))
    r = jax.jit(jax.grad(loss(ref.token_logprobs), (0, 1)))(logits, jnp.asarray(adv))
    assert g[0].dtype == logits.dtype
    np.testing.assert_allclose(np.asarray(g[0], np.float64), np.asarray(r[0], np.float64), **tol(dtype))
    np.testing.assert_allclose(g[1], r[1], **tol(np.float32))
    np.testing.assert_array_equal(np.asarray(g[0])[ids < 0], 0.0)  # masked tokens


def test_topk_gradients(rng):
    logits, labels, ids, adv = make_batch(rng, 30, 12, dtype=np.float64)
    f = lambda fn: (lambda l: jnp.sum(fn(l, labels, ids, adv, vocab_topk=4)[0] ** 2))  # noqa: E731
    np.testing.assert_allclose(jax.grad(f(era_jax.token_logprobs))(logits), jax.jit(jax.grad(f(ref.token_logprobs)))(logits),
                               rtol=1e-10, atol=1e-12)


def test_check_grads(rng):
    logits, labels, ids, adv = make_batch(rng, 24, 9, dtype=np.float64)
    # thresholds far from every response entropy: finite differences never flip a scale
    cfg = dict(omega_low=0.0, omega_high=100.0, k=3.0)
    check_grads(lambda l: era_jax.token_logprobs(l, labels, ids, adv, **cfg)[0], (logits,), order=1, modes=["rev"])
    check_grads(lambda l: era_jax.token_logprobs(l, labels, ids, adv, vocab_topk=5, **cfg)[0], (logits,), order=1,
                modes=["rev"])
    cfg = dict(omega_low=100.0, omega_high=100.0, k=3.0)  # every positive advantage sharpened
    pos = np.abs(adv) + 0.5
    check_grads(lambda l, a: era_jax.token_logprobs(l, labels, ids, a, **cfg)[::3], (logits, pos), order=1,
                modes=["rev"])


def test_vmap_keeps_instances_apart(rng):
    # identical response ids in both instances; instance 0 is peaked (low entropy), instance 1 flat:
    # mixing them would change every response's forking-token entropy
    n, v = 20, 50
    ids = np.repeat(np.arange(4), 5)
    labels = rng.integers(0, v, size=(2, n))
    logits = np.stack([rng.normal(size=(n, v)) * 20, rng.normal(size=(n, v)) * 0.01])
    adv = np.abs(rng.normal(size=(2, n))) + 0.1
    cfg = dict(omega_low=2.5, omega_high=3.5)
    out = jax.vmap(lambda l, y, a: era_jax.token_logprobs(l, y, ids, a, **cfg), (0, 0, 0))(logits, labels, adv)
    for i in range(2):
        compare([o[i] for o in out], era_jax.token_logprobs(logits[i], labels[i], ids, adv[i], **cfg), np.float64)
    np.testing.assert_array_equal(np.asarray(out[2][0]), 2.0)
    np.testing.assert_array_equal(np.asarray(out[2][1]), 0.5)
    # the same when ids are mapped too, and with unmapped advantages
    out2 = jax.vmap(lambda l, y, i, a: era_jax.token_logprobs(l, y, i, a, **cfg), (0, 0, 0, None))(
        logits, labels, np.stack([ids, ids]), adv[0])
    np.testing.assert_array_equal(np.asarray(out2[2]), [[2.0] * n, [0.5] * n])


def test_nested_vmap_and_grad(rng):
    b1, b2, n, v = 2, 3, 12, 8
    logits = rng.normal(size=(b1, b2, n, v)) * 2
    labels = rng.integers(0, v, size=(b1, b2, n))
    ids = np.tile(np.array([0, 0, 1, 1, 1, -1, 2, 3, 3, 3, 3, 4]), (b1, b2, 1))
    adv = rng.normal(size=(b1, b2, n))
    cfg = dict(omega_low=1.2, omega_high=1.5)
    f = lambda l, y, i, a: era_jax.token_logprobs(l, y, i, a, **cfg)  # noqa: E731
    r = lambda l, y, i, a: ref.token_logprobs(l, y, i, a, **cfg)  # noqa: E731
    out = jax.jit(jax.vmap(jax.vmap(f)))(logits, labels, ids, adv)
    want = jax.jit(jax.vmap(jax.vmap(r)))(logits, labels, ids, adv)
    compare(out, want, np.float64)
    loss = lambda fn: (lambda l, y, i, a: jnp.sum(jnp.sin(fn(l, y, i, a)[0])))  # noqa: E731
    g = jax.jit(jax.vmap(jax.vmap(jax.grad(loss(f)))))(logits, labels, ids, adv)
    gr = jax.jit(jax.vmap(jax.vmap(jax.grad(loss(r)))))(logits, labels, ids, adv)
    np.testing.assert_allclose(g, gr, rtol=1e-10, atol=1e-12)
    g = jax.jit(jax.grad(lambda l: jnp.sum(jax.vmap(jax.vmap(loss(f)))(l, labels, ids, adv))))(logits)
    np.testing.assert_allclose(g, gr, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, jnp.bfloat16, np.float16])
def test_inplace_backward_gives_the_same_gradients(rng, dtype):
    """inplace_backward hands the logits' buffer to their gradient (on CPU): the
    gradient is the same bit for bit, whether XLA can reuse the buffer (an
    intermediate, donated logits) or must keep the logits (used again after the
    backward, an argument that is not donated), under jit, vmap and eagerly."""
    logits, labels, ids, adv = make_batch(rng, 30, 2 * 64 + 3, dtype=np.float64)
    logits = jnp.asarray(logits).astype(dtype)
    w = jnp.asarray(rng.normal(size=30)).astype(jnp.float32 if dtype != np.float64 else jnp.float64)
    cfg = dict(omega_low=1.0, omega_high=1.4)

    def loss(inplace, extra):
        def f(x):
            lp = era_jax.token_logprobs(x * 1.5, labels, ids, adv, inplace_backward=inplace, **cfg)[0]
            # `extra`: the logits are needed again after the token backward
            return jnp.sum(lp * w) + (jnp.sum(jnp.sin(x * 1.5).astype(w.dtype)) if extra else 0.0)
        return f

    for extra in (False, True):
        want = jax.jit(jax.grad(loss(False, extra)))(logits)
        got = jax.jit(jax.grad(loss(True, extra)))(logits)
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=f"extra={extra}")
        eager = [np.asarray(jax.grad(loss(inplace, extra))(logits)) for inplace in (True, False)]
        np.testing.assert_array_equal(eager[0], eager[1], err_msg=f"eager, extra={extra}")
    # the logits themselves, not an intermediate: an argument kept by the caller, and donated
    direct = lambda inplace: jax.grad(  # noqa: E731
        lambda x: jnp.sum(era_jax.token_logprobs(x, labels, ids, adv, inplace_backward=inplace, **cfg)[0] * w))
    want = jax.jit(direct(False))(logits)
    if not era_jax._compat._FFI_CALL_TAKES_ARGS and jax.default_backend() == "cpu":  # aliasing needs jax >= 0.4.35
        hlo = lambda inplace: jax.jit(direct(inplace)).lower(logits).compile().as_text()  # noqa: E731
        assert "output_to_operand_aliasing" in hlo(True)
        assert "output_to_operand_aliasing" not in hlo(False)
    before = np.asarray(logits).copy()
    np.testing.assert_array_equal(np.asarray(jax.jit(direct(True))(logits)), np.asarray(want))
    np.testing.assert_array_equal(np.asarray(logits), before)  # the caller's logits are untouched
    donated = jax.jit(direct(True), donate_argnums=0)(jnp.array(logits, copy=True))
    np.testing.assert_array_equal(np.asarray(donated), np.asarray(want))
    # vmapped: each instance its own responses
    stack = jnp.stack([logits, logits[::-1]])
    vm = lambda inplace: jax.jit(jax.vmap(direct(inplace)))(stack)  # noqa: E731
    np.testing.assert_array_equal(np.asarray(vm(True)), np.asarray(vm(False)))


def test_inplace_backward_is_a_static_flag(rng):
    logits, labels, ids, adv = make_batch(rng, 4, 5)
    with pytest.raises(TypeError, match="inplace_backward must be True or False"):
        era_jax.token_logprobs(logits, labels, ids, adv, inplace_backward=1)
    with pytest.raises(TypeError, match="inplace_backward must be True or False"):
        jax.jit(lambda f: era_jax.token_logprobs(logits, labels, ids, adv, inplace_backward=f))(True)


def test_errors(rng):
    logits = jnp.zeros((4, 5))
    y = jnp.zeros(4, jnp.int32)
    r = jnp.zeros(4, jnp.int32)
    a = jnp.zeros(4)
    for cfg, msg in [
        (dict(k=1.0), "k must be finite and > 1"),
        (dict(omega_low=2.0, omega_high=1.0), "0 <= omega_low <= omega_high"),
        (dict(top_fraction=0.0), r"top_fraction must be in \(0, 1\]"),
        (dict(temperature=0.0), "temperature must be finite and > 0"),
        (dict(vocab_topk=-1), "vocab_topk must be >= 0"),
    ]:
        with pytest.raises(era_jax.EraError, match=msg):
            era_jax.token_logprobs(logits, y, r, a, **cfg)
    with pytest.raises(ValueError, match="labels has shape"):
        era_jax.token_logprobs(logits, jnp.zeros(3, jnp.int32), r, a)
    with pytest.raises(ValueError, match="advantages has shape"):
        era_jax.token_logprobs(logits, y, r, jnp.zeros((4, 1)))
    with pytest.raises(TypeError, match="labels must hold integers"):
        era_jax.token_logprobs(logits, jnp.zeros(4), r, a)
    with pytest.raises(TypeError, match="logits has dtype"):
        era_jax.token_logprobs(jnp.zeros((4, 5), jnp.int32), y, r, a)
    with pytest.raises(TypeError, match="vocab_topk must be a Python int"):
        era_jax.token_logprobs(logits, y, r, a, vocab_topk=2.5)


@cpu_only
def test_data_errors_raise_on_cpu():
    # found when the computation runs, with era's message
    logits, y, r, a = jnp.zeros((4, 5)), jnp.zeros(4, jnp.int32), jnp.zeros(4, jnp.int32), jnp.zeros(4)
    with pytest.raises(Exception, match=r"labels\[2\] = 5 is outside the vocabulary"):
        jax.block_until_ready(era_jax.token_logprobs(logits, jnp.array([0, 1, 5, 2]), r, a))
    with pytest.raises(Exception, match=r"response_ids\[1\] = -2"):
        jax.block_until_ready(jax.jit(era_jax.token_logprobs)(logits, y, jnp.array([0, -2, 0, 0]), a))


@cuda_only
def test_data_errors_on_cuda():
    # the device does not check values: a label outside the vocabulary gives a NaN log-prob,
    # a response id below -1 counts as masked (log-prob 0, scale 1)
    logits, y, r, a = jnp.zeros((4, 5)), jnp.zeros(4, jnp.int32), jnp.zeros(4, jnp.int32), jnp.ones(4)
    lp = np.asarray(era_jax.token_logprobs(logits, jnp.array([0, 1, 5, 2]), r, a)[0])
    assert np.isnan(lp[2]) and np.isfinite(lp[[0, 1, 3]]).all()
    lp, _, c, _ = (np.asarray(x) for x in jax.jit(era_jax.token_logprobs)(logits, y, jnp.array([0, -2, 0, 0]), a))
    assert lp[1] == 0.0 and c[1] == 1.0 and np.isfinite(lp).all()
