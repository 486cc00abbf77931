"""The "SAC-ERA in 20 lines" recipe of bindings/jax/README.md, run as written.

The code block is read from the README (the fenced block after the marker
``<!-- recipe: sac-era -->``), so the README and this test cannot drift apart.
The recipe leaves the networks to the reader (``actor_apply``, ``q_apply``);
the test supplies small ones and a random batch, runs the recipe's functions,
and checks what the README says they do.
"""

import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import era_jax

README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "README.md")
MARKER = "<!-- recipe: sac-era -->"


def recipe_source() -> str:
    with open(README, encoding="utf-8") as f:
        text = f.read()
    assert MARKER in text, f"{README} has no {MARKER}"
    m = re.search(re.escape(MARKER) + r"\s*```python\n(.*?)```", text, re.S)
    assert m, "the recipe marker must be followed by a ```python block"
    return m.group(1)


def test_recipe_is_short():
    code = [ln for ln in recipe_source().splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert len(code) <= 25, len(code)


def _mlp_init(key, sizes):
    keys = jax.random.split(key, len(sizes) - 1)
    return [(jax.random.normal(k, (m, n)) / np.sqrt(m), jnp.zeros(n)) for k, m, n in zip(keys, sizes[:-1], sizes[1:])]


def _mlp(params, x):
    for w, b in params[:-1]:
        x = jax.nn.relu(x @ w + b)
    w, b = params[-1]
    return x @ w + b


def test_recipe_runs():
    obs_dim, batch_size = 5, 64

    def actor_apply(params, obs):
        out = _mlp(params, obs)
        d = out.shape[-1] // 2
        return out[..., :d], out[..., d:]

    def q_apply(params, obs, act):
        return _mlp(params, jnp.concatenate([obs, act], axis=-1))[..., 0]

    ns = {"actor_apply": actor_apply, "q_apply": q_apply, "__name__": "recipe"}
    exec(compile(recipe_source(), "README.md (recipe)", "exec"), ns)

    era, D = ns["era"], ns["D"]
    assert era == era_jax.GaussianEra(D, target_entropy=-D, mode="bounded")
    assert (era.optimizer, era.lr) == ("sgd", 0.5)
    delta = ns["delta"]
    assert float(delta.delta) == pytest.approx(D * era_jax.truncation_gap_bound(0.0), rel=1e-6)

    ka, kc, kd = jax.random.split(jax.random.PRNGKey(0), 3)
    actor = _mlp_init(ka, [obs_dim, 32, 2 * D])
    critic = _mlp_init(kc, [obs_dim + D, 32, 1])
    k1, k2, k3 = jax.random.split(kd, 3)
    batch = {
        "obs": jax.random.normal(k1, (batch_size, obs_dim)),
        "next_obs": jax.random.normal(k2, (batch_size, obs_dim)),
        "reward": jax.random.normal(k3, (batch_size,)),
        "done": jnp.zeros((batch_size,)),
    }

    pi = ns["policy"](actor, batch["obs"], delta)
    assert isinstance(pi, era_jax.policies.TruncatedNormal)
    # ERA's guarantee on the Gaussian, and the safe start on the truncated normal
    h_gauss = era_jax.gaussian_entropy(pi.log_std)
    assert float(jnp.min(h_gauss - (-D + delta.delta))) >= -1e-9
    assert float(jnp.min(pi.entropy())) >= -D - 1e-9

    y = ns["critic_target"](actor, critic, batch, delta, jax.random.PRNGKey(1))
    assert y.shape == (batch_size,) and bool(jnp.all(jnp.isfinite(y)))

    hs = []
    for t in range(30):
        key = jax.random.PRNGKey(10 + t)
        new_actor, new_delta, loss = ns["actor_step"](actor, critic, delta, batch["obs"], key)
        assert np.isfinite(float(loss))
        hs.append(float(jnp.mean(ns["policy"](actor, batch["obs"], delta).entropy())))
        actor, delta = new_actor, new_delta
    # the learner pulls the truncated normal's batch-mean entropy onto the target (-D)
    assert hs[0] > -D
    assert abs(hs[-1] + D) < 0.1
