"""The operations inside shard_map over a 4-device data-parallel CPU mesh
(XLA_FLAGS=--xla_force_host_platform_device_count=4, set in conftest.py),
with batch-sharded inputs (whole responses per shard for the token head)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import era_jax

try:
    shard_map = jax.shard_map
except AttributeError:  # older jax
    from jax.experimental.shard_map import shard_map

pytestmark = pytest.mark.skipif(jax.device_count() < 4, reason="needs 4 host devices (XLA_FLAGS)")


@pytest.fixture(scope="module")
def mesh():
    return jax.sharding.Mesh(np.array(jax.devices()[:4]), ("data",))


def put(mesh, x, spec):
    return jax.device_put(jnp.asarray(x), NamedSharding(mesh, spec))


def test_gaussian_replicated_delta(mesh, rng):
    z = rng.normal(size=(16, 6))
    h0 = -3.0

    def loss(z, d):
        return jnp.sum(jnp.sin(era_jax.gaussian_log_std(z, target_entropy=h0, delta=d)))

    sharded = jax.jit(shard_map(lambda z, d: jax.lax.psum(loss(z, d), "data"), mesh=mesh,
                                in_specs=(P("data"), P()), out_specs=P()))
    zs, ds = put(mesh, z, P("data")), put(mesh, -0.4, P())
    np.testing.assert_allclose(sharded(zs, ds), loss(z, -0.4), rtol=1e-12)
    g = jax.jit(jax.grad(sharded, (0, 1)))(zs, ds)
    want = jax.grad(loss, (0, 1))(jnp.asarray(z), jnp.float64(-0.4))
    np.testing.assert_allclose(g[0], want[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g[1], want[1], rtol=1e-10)  # d/d delta summed over all shards


def test_gaussian_per_row_delta_and_softmax(mesh, rng):
    z = rng.normal(size=(8, 5))
    d = rng.uniform(-1, 0, size=8)

    def f(z, d):
        return (era_jax.gaussian_log_std(z, target_entropy=-2.0, delta=d),
                era_jax.softmax_logits(z, target_entropy=1.0))

    sharded = jax.jit(shard_map(f, mesh=mesh, in_specs=(P("data"), P("data")), out_specs=(P("data"), P("data"))))
    for a, b in zip(sharded(put(mesh, z, P("data")), put(mesh, d, P("data"))), f(z, d)):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    loss = lambda fn: (lambda z, d: jnp.sum(jnp.cos(sum(fn(z, d)))))  # noqa: E731
    gs = jax.jit(jax.grad(loss(sharded), (0, 1)))(put(mesh, z, P("data")), put(mesh, d, P("data")))
    gu = jax.grad(loss(f), (0, 1))(jnp.asarray(z), jnp.asarray(d))
    for a, b in zip(gs, gu):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_token_whole_responses_per_shard(mesh, rng):
    n, v = 32, 11
    ids = np.repeat(np.arange(16), 2)  # 8 tokens, 4 whole responses per shard
    ids[5] = -1
    logits = rng.normal(size=(n, v)) * 2
    labels = rng.integers(0, v, size=n)
    adv = rng.normal(size=n)
    cfg = dict(omega_low=1.5, omega_high=2.2)
    f = lambda l, y, i, a: era_jax.token_logprobs(l, y, i, a, **cfg)  # noqa: E731
    sharded = shard_map(f, mesh=mesh, in_specs=(P("data"),) * 4, out_specs=(P("data"),) * 4)
    args = [put(mesh, x, P("data")) for x in (logits, labels, ids, adv)]
    for a, b in zip(jax.jit(sharded)(*args), f(logits, labels, ids, adv)):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    gs = jax.jit(jax.grad(lambda l, a: jnp.sum(jnp.sin(sharded(l, args[1], args[2], a)[0]))
                          + jnp.sum(sharded(l, args[1], args[2], a)[3] ** 2), (0, 1)))(args[0], args[3])
    gu = jax.grad(lambda l, a: jnp.sum(jnp.sin(f(l, labels, ids, a)[0])) + jnp.sum(f(l, labels, ids, a)[3] ** 2),
                  (0, 1))(jnp.asarray(logits), jnp.asarray(adv))
    for a, b in zip(gs, gu):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_train_step_in_shard_map(mesh, rng):
    """Data-parallel step: sharded batch, replicated learner state, pmean'd statistic."""
    h0, dim = -1.0, 3

    def step(state, z, mean):
        log_std = era_jax.gaussian_log_std(z, target_entropy=h0, delta=state.delta)
        h = jax.lax.pmean(jnp.mean(era_jax.truncated_normal_entropy(jnp.tanh(mean), log_std)), "data")
        return era_jax.delta_update(state, h, target_entropy=h0, dim=dim, lr=0.1)

    state = era_jax.delta_init()
    z, mean = rng.normal(size=(16, dim)), rng.normal(size=(16, dim))
    spec_state = era_jax.DeltaState(P(), P(), P(), P())
    sharded = jax.jit(shard_map(step, mesh=mesh, in_specs=(spec_state, P("data"), P("data")), out_specs=spec_state))
    got = sharded(jax.tree_util.tree_map(lambda x: put(mesh, x, P()), state), put(mesh, z, P("data")),
                  put(mesh, mean, P("data")))
    log_std = era_jax.gaussian_log_std(z, target_entropy=h0)
    h = jnp.mean(era_jax.truncated_normal_entropy(jnp.tanh(mean), log_std))
    want = era_jax.delta_update(state, h, target_entropy=h0, dim=dim, lr=0.1)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_explicit_sharding_mode(rng):
    """jit with explicitly sharded types (jax.set_mesh + AxisType.Explicit, new JAX): the custom
    call runs on gathered operands; results and gradients keep the operands' sharding."""
    axis_type = getattr(jax.sharding, "AxisType", None)
    if axis_type is None or not hasattr(jax, "set_mesh") or not hasattr(jax.sharding, "reshard"):
        pytest.skip("explicit sharding needs a newer jax")
    mesh = jax.make_mesh((4,), ("data",), axis_types=(axis_type.Explicit,))
    z = rng.normal(size=(8, 6))
    f = lambda z: jnp.sum(era_jax.gaussian_log_std(z, target_entropy=-2.0) ** 2)  # noqa: E731
    want = jax.grad(f)(jnp.asarray(z))
    with jax.set_mesh(mesh):
        zs = jax.device_put(jnp.asarray(z), P("data"))
        g = jax.jit(jax.grad(f))(zs)
        out = jax.jit(lambda z: era_jax.gaussian_log_std(z, target_entropy=-2.0))(zs)
    np.testing.assert_allclose(g, want, rtol=1e-10)
    assert out.sharding.spec == P("data", None)
