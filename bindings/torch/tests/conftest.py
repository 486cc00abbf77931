"""Shared helpers: the independent NumPy reference of the JAX binding's tests and the
PyTorch transcription of the token step, both imported by path."""

import importlib.util
import os

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


numpy_ref = _load("era_numpy_ref", os.path.join(ROOT, "bindings", "jax", "tests", "numpy_ref.py"))
torch_ref = _load("era_torch_ref", os.path.join(HERE, "torch_ref.py"))


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


def layouts(t):
    """``t`` (rank >= 2) as contiguous, non-contiguous (every other row of a larger
    buffer) and permuted (stored transposed) tensors holding the same values."""
    big = torch.zeros((t.shape[0] * 2,) + tuple(t.shape[1:]), dtype=t.dtype)
    big[::2] = t
    strided = big[::2]
    permuted = t.transpose(0, -1).contiguous().transpose(0, -1)
    assert not strided.is_contiguous() and not permuted.is_contiguous()
    return {"contiguous": t.clone(), "strided": strided, "permuted": permuted}


def snapshot(*tensors):
    return [t.detach().clone() for t in tensors]


def assert_unchanged(before, tensors):
    for b, t in zip(before, tensors):
        assert torch.equal(b, t.detach()), "an input was modified"
