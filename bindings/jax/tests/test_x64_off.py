"""The default JAX mode (x64 off: float32 and int32 defaults), in a subprocess
(the rest of the suite runs with x64 on)."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    assert not jax.config.jax_enable_x64
    import era_jax
    import reference as ref  # tests/reference.py (on PYTHONPATH)

    z = jnp.asarray(np.random.default_rng(0).normal(size=(4, 6)), jnp.float32)
    f = jax.jit(lambda z, d: era_jax.gaussian_log_std(z, target_entropy=-3.0, delta=d))
    out = f(z, 0.1)  # a Python float delta: float32
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, ref.gaussian_log_std(z, target_entropy=-3.0, delta=0.1), rtol=2e-5, atol=2e-5)
    g = jax.grad(lambda d: jnp.sum(f(z, d)))(0.1)
    assert g.dtype == jnp.float32
    s = era_jax.delta_init()
    assert s.delta.dtype == jnp.float32
    s = jax.jit(lambda s, h: era_jax.delta_update(s, h, target_entropy=-3.0, dim=6))(s, 1.0)
    assert s.delta.dtype == jnp.float32
    logits = jnp.asarray(np.random.default_rng(1).normal(size=(10, 7)), jnp.bfloat16)
    ids = jnp.array([0, 0, 1, 1, 1, -1, 2, 2, 3, 3])
    out = jax.jit(era_jax.token_logprobs)(logits, jnp.arange(10) % 7, ids, jnp.linspace(-1, 1, 10))
    assert all(o.dtype == jnp.float32 for o in out), [o.dtype for o in out]
    gl = jax.grad(lambda l: jnp.sum(era_jax.token_logprobs(l, jnp.arange(10) % 7, ids, jnp.ones(10))[0]))(logits)
    assert gl.dtype == jnp.bfloat16
    y = era_jax.softmax_logits(jnp.ones((3, 5)), target_entropy=1.0)
    assert y.dtype == jnp.float32
    print("ok")
    """
)


def test_x64_off():
    env = dict(os.environ)
    env.pop("JAX_ENABLE_X64", None)
    here = os.path.dirname(os.path.abspath(__file__))
    env["PYTHONPATH"] = os.pathsep.join([here] + [p for p in [env.get("PYTHONPATH")] if p])
    r = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith("ok")
