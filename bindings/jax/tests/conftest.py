"""Test session setup: four host devices (shard_map tests) and x64 mode.

x64 is on for the whole session so that float64 tests and
``jax.test_util.check_grads`` run in double precision; float32, bfloat16 and
float16 inputs are created with explicit dtypes. test_x64_off.py checks the
default (x64 off) mode in a subprocess.
"""

import os
import zlib

_flag = "--xla_force_host_platform_device_count=4"
if _flag not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)


# What era's CUDA path cannot check without synchronising (docs/cuda.md, "What is not
# checked on the device") differs by platform: a traced infeasible delta raises on the CPU
# and gives NaN rows on CUDA; an out-of-vocabulary label gives NaN there, a response id
# below -1 counts as masked. Tests of such behaviour are marked with the platform it holds on.
ON_CPU = jax.default_backend() == "cpu"
cpu_only = pytest.mark.skipif(not ON_CPU, reason="CPU behaviour: the CUDA path does not check values on the device")
cuda_only = pytest.mark.skipif(ON_CPU, reason="CUDA behaviour: the CPU path checks values and raises instead")


@pytest.fixture
def rng(request):
    """A NumPy generator seeded from the test's name (reproducible, independent per test)."""
    seed = zlib.crc32(request.node.nodeid.encode())
    return np.random.default_rng(seed)


def tol(dtype):
    """(rtol, atol) for comparing a native result with the reference in ``dtype``."""
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        return dict(rtol=1e-10, atol=1e-10)
    if dtype == np.float32:
        return dict(rtol=2e-5, atol=2e-5)
    return dict(rtol=2e-2, atol=2e-2)
