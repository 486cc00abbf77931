"""era_jax.GaussianEra: one settings object for the head and its delta learner."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import era_jax
from era_jax import _defaults


def test_modes_are_explicit_and_defaults_are_the_library():
    with pytest.raises(ValueError, match="mode='gaussian'"):
        era_jax.GaussianEra(3, -3.0)
    g = era_jax.GaussianEra(3, 0.75, mode="gaussian")
    b = era_jax.GaussianEra(3, -3.0, mode="bounded")
    for s in (g, b):
        assert (s.log_std_min, s.log_std_max) == (_defaults.GAUSSIAN.log_std_min, _defaults.GAUSSIAN.log_std_max)
        assert (s.beta1, s.beta2, s.eps) == (_defaults.GAUSSIAN.beta1, _defaults.GAUSSIAN.beta2,
                                             _defaults.GAUSSIAN.eps)
    assert (g.optimizer, g.initial_delta) == ("fixed", _defaults.GAUSSIAN.delta)
    assert (b.optimizer, b.lr) == ("sgd", 0.5)
    assert era_jax.GaussianEra(3, -3.0, mode="bounded", optimizer="adam").lr == _defaults.GAUSSIAN.lr
    with pytest.raises(ValueError, match="policy"):
        era_jax.GaussianEra(3, -3.0, mode="bounded", policy="beta")
    with pytest.raises(era_jax.EraError, match="learning rate"):
        era_jax.GaussianEra(3, -3.0, mode="bounded", lr=-1.0)
    with pytest.raises(era_jax.EraError):
        era_jax.GaussianEra(3, 100.0, mode="gaussian")  # infeasible: above the widest Gaussian
    with pytest.raises(TypeError):
        era_jax.GaussianEra(3.5, -3.0, mode="bounded")


def test_frozen_hashable_static():
    a = era_jax.GaussianEra(2, -2.0, mode="bounded")
    b = era_jax.GaussianEra(2, -2, log_std_min=-8, log_std_max=0.0, mode="bounded")
    assert a == b and hash(a) == hash(b)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.dim = 3
    traces = []

    def f(z, delta, era):
        traces.append(era)
        return era.log_std(z, delta)

    f = jax.jit(f, static_argnums=2)
    z = jnp.ones((4, 2))
    f(z, 0.1, a)
    f(z, 0.2, b)  # equal settings, another delta: one compilation
    assert len(traces) == 1


def test_safe_initial_delta_is_computed():
    b = era_jax.GaussianEra(6, -6.0, mode="bounded")
    per_dim = era_jax.truncation_gap_bound(0.0, -1.0, 1.0)
    assert abs(per_dim - 0.853) < 1e-3  # the value the example documents for bounds [-8, 0] on [-1, 1]
    assert b.initial_delta == pytest.approx(6 * per_dim, rel=1e-12)
    assert math.log(2) < era_jax.truncation_gap_bound(-8.0) < 0.7  # tiny std: ln 2
    assert era_jax.truncation_gap_bound(2.0) == pytest.approx(2.73, abs=0.01)
    assert era_jax.GaussianEra(6, -6.0, mode="bounded", policy="tanh").initial_delta == 0.0
    assert era_jax.GaussianEra(6, -6.0, mode="bounded", delta=1.25).initial_delta == 1.25
    # capped at the feasible maximum
    tight = era_jax.GaussianEra(2, 2.5, mode="bounded")
    assert tight.initial_delta == tight.max_delta < 2 * per_dim
    s = b.init_delta(dtype=jnp.float32)
    assert s.delta.dtype == jnp.float32 and float(s.delta) == pytest.approx(b.initial_delta, rel=1e-6)


def test_safe_start_puts_every_state_above_the_target(rng):
    """With the initial delta, the truncated normal's entropy is >= H0 in every state,
    whatever the raw outputs (means pushed to the bounds, any z)."""
    dim, h0 = 4, -4.0
    era = era_jax.GaussianEra(dim, h0, mode="bounded")
    delta = era.init_delta()
    z = jnp.asarray(rng.normal(scale=5.0, size=(2000, dim)))
    mean = jnp.asarray(rng.normal(scale=20.0, size=(2000, dim)))
    pi = era.distribution(mean, z, delta)
    assert isinstance(pi, era_jax.policies.TruncatedNormal)
    assert float(jnp.min(pi.entropy())) >= h0 - 1e-9


def test_log_std_checks_dim_and_matches_functional(rng):
    era = era_jax.GaussianEra(3, -1.5, mode="bounded")
    z = jnp.asarray(rng.normal(size=(5, 3)))
    want = era_jax.gaussian_log_std(z, target_entropy=-1.5, log_std_min=-8.0, log_std_max=0.0, delta=0.3)
    np.testing.assert_array_equal(era.log_std(z, 0.3), want)
    np.testing.assert_array_equal(era.log_std(z, era_jax.delta_init(0.3)), want)
    np.testing.assert_array_equal(era.log_std(z), era.log_std(z, era.initial_delta))
    with pytest.raises(ValueError, match="dim=3"):
        era.log_std(jnp.zeros((5, 4)), 0.0)
    g = era_jax.GaussianEra(3, 0.75, mode="gaussian")
    h = era_jax.gaussian_entropy(g.log_std(z))
    assert float(jnp.min(h)) >= 0.75 - 1e-9


def test_update_delta_matches_functional_and_defaults(rng):
    era = era_jax.GaussianEra(3, -3.0, mode="bounded")
    s = era.init_delta()
    h = jnp.asarray(rng.normal(-5.0, 1.0, size=64))
    new = jax.jit(era.update_delta)(s, h)
    # SGD at 0.5 on the batch mean
    assert float(new.delta) == pytest.approx(float(s.delta) - 0.5 * (float(jnp.mean(h)) + 3.0), rel=1e-12)
    want = era_jax.delta_update(s, jnp.mean(h), target_entropy=-3.0, dim=3, optimizer="sgd", lr=0.5)
    assert float(want.delta) == float(new.delta)
    # the functional default stays the library's (Adam)
    adam = era_jax.delta_update(s, jnp.mean(h), target_entropy=-3.0, dim=3)
    assert int(adam.adam_t) == 1
    # fixed delta in the Gaussian mode
    g = era_jax.GaussianEra(3, 0.75, mode="gaussian")
    sg = g.init_delta()
    assert g.update_delta(sg, h) is sg
    # the cap and non-finite entropies
    low = era.update_delta(s, jnp.full((4,), -1e6))
    assert float(low.delta) == pytest.approx(era.max_delta)
    same = era.update_delta(s, jnp.nan)
    assert float(same.delta) == float(s.delta)


def test_sgd_holds_the_bounded_target(rng):
    """A stand-in for training: an adversary pushes the means toward the bounds each
    step; SGD at 0.5 keeps the batch-mean truncated entropy near the target."""
    dim, h0 = 6, -6.0
    era = era_jax.GaussianEra(dim, h0, mode="bounded")

    @jax.jit
    def step(state, mean, z):
        h = era.distribution(mean, z, state).entropy()
        return era.update_delta(state, h), jnp.mean(h)

    state = era.init_delta()
    z = jnp.asarray(rng.normal(size=(256, dim)))
    hs = []
    for t in range(80):
        mean = jnp.asarray(rng.normal(loc=min(t, 40) * 0.1, size=(256, dim)))
        state, h = step(state, mean, z)
        hs.append(float(h))
    assert abs(np.mean(hs[-20:]) - h0) < 0.1


def test_one_dimension_warns_and_the_head_is_the_constant_it_names():
    """dim=1: the head's output is a constant (docs/math.md#gaussian-forward); construction
    warns, naming the constant and what to use instead; more dimensions do not warn."""
    from era_jax.gaussian_era import ONE_DIM_WARNING

    with pytest.warns(UserWarning, match="dim=1") as record:
        era = era_jax.GaussianEra(1, -1.0, mode="gaussian", delta=0.25)
    assert str(record[0].message) == ONE_DIM_WARNING and "softplus" in ONE_DIM_WARNING
    assert record[0].filename == __file__  # points at the caller
    z = jnp.linspace(-10.0, 10.0, 7)[:, None]
    expected = max(-1.0 + 0.25 - 0.5 * math.log(2 * math.pi * math.e), era.log_std_min)
    np.testing.assert_allclose(np.asarray(era.log_std(z)), expected, rtol=0, atol=1e-6)
    grad = jax.grad(lambda z: jnp.sum(era.log_std(z)))(z)
    assert not np.any(np.asarray(grad))
    with pytest.warns(UserWarning, match="dim=1"):
        era_jax.GaussianEra(1, -1.0, mode="bounded", policy="tanh")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        era_jax.GaussianEra(2, -2.0, mode="bounded")
        with pytest.raises(era_jax.EraError):  # an invalid configuration raises before any warning
            era_jax.GaussianEra(1, 100.0, mode="gaussian")


def test_a_start_at_the_feasible_maximum_stays_feasible_in_float32():
    """An unreachable bounded target starts delta at max_delta; rounded to float32 it must not
    exceed it (the head would refuse every call)."""
    era = era_jax.GaussianEra(3, 50.0, mode="bounded")
    state = era.init_delta(jnp.float32)
    assert state.delta.dtype == jnp.float32
    assert float(state.delta) <= era.max_delta and float(state.delta) == pytest.approx(era.max_delta, rel=1e-6)
    out = era.log_std(jnp.zeros((2, 3), jnp.float32), state)  # accepted by the library
    np.testing.assert_allclose(np.asarray(out), 0.0, atol=1e-5)  # every std at its widest
    assert float(era.init_delta(jnp.float64).delta) == era.max_delta

