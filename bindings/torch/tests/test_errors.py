"""Every invalid argument raises EraError with the library's status name and message."""

import ctypes
import math

import pytest
import torch

import era_torch
from era_torch import EraError, _era_h, _native


def raises(status, fn, *args, **kw):
    with pytest.raises(EraError) as info:
        fn(*args, **kw)
    err = info.value
    assert err.status == status, str(err)
    assert err.message and status in str(err)
    return err


Z = torch.zeros(2, 3, dtype=torch.float64)
LOGITS = torch.zeros(4, 5)
LABELS = torch.zeros(4, dtype=torch.int64)
IDS = torch.zeros(4, dtype=torch.int64)
ADV = torch.ones(4)


def test_gaussian_errors():
    g = era_torch.gaussian_log_std
    raises("ERA_STATUS_INVALID_CONFIG", g, Z, target_entropy=-1.0, log_std_min=0.0, log_std_max=-1.0)
    raises("ERA_STATUS_INVALID_CONFIG", g, Z, target_entropy=math.nan)
    raises("ERA_STATUS_INVALID_CONFIG", g, torch.zeros(2, 0), target_entropy=-1.0)
    raises("ERA_STATUS_INFEASIBLE_TARGET", g, Z, target_entropy=100.0)
    raises("ERA_STATUS_INFEASIBLE_TARGET", g, Z, target_entropy=-1.0, delta=50.0)
    raises("ERA_STATUS_INVALID_ARGUMENT", g, Z, target_entropy=-1.0, delta=math.nan)
    raises("ERA_STATUS_INVALID_SHAPE", g, Z, target_entropy=-1.0, delta=torch.zeros(3, dtype=torch.float64))
    raises("ERA_STATUS_UNSUPPORTED_DTYPE", g, torch.zeros(2, 3, dtype=torch.int32), target_entropy=-1.0)
    raises("ERA_STATUS_INVALID_CONFIG", era_torch.DeltaLearner, dim=2, target_entropy=-1.0, lr=-1.0)
    raises("ERA_STATUS_INVALID_CONFIG", era_torch.DeltaLearner, dim=2, target_entropy=-1.0, optimizer="rmsprop")
    learner = era_torch.DeltaLearner(dim=2, target_entropy=-1.0)
    raises("ERA_STATUS_INVALID_ARGUMENT", learner.update, math.inf)
    raises("ERA_STATUS_INVALID_ARGUMENT", learner.set_delta, math.nan)
    raises("ERA_STATUS_JSON", learner.load_json, "{not json")


def test_softmax_and_entropy_errors():
    s = era_torch.softmax_logits
    raises("ERA_STATUS_INVALID_CONFIG", s, Z, target_entropy=0.5, tau=2.0)
    raises("ERA_STATUS_INFEASIBLE_TARGET", s, Z, target_entropy=5.0)
    raises("ERA_STATUS_INVALID_CONFIG", s, torch.zeros(3, 1), target_entropy=0.5)
    raises("ERA_STATUS_INVALID_ARGUMENT", era_torch.softmax_entropy, Z, temperature=0.0)
    raises("ERA_STATUS_INVALID_ARGUMENT", era_torch.truncated_normal_entropy, Z, Z, 1.0, -1.0)
    raises("ERA_STATUS_INVALID_SHAPE", era_torch.truncated_normal_entropy, Z, torch.zeros(3, 3, dtype=torch.float64))
    raises("ERA_STATUS_UNSUPPORTED_DTYPE", era_torch.gaussian_entropy, Z.bfloat16())
    raises("ERA_STATUS_UNSUPPORTED_DTYPE", era_torch.gaussian_entropy, Z.to(torch.complex64))


def test_token_errors():
    t = era_torch.token_logprobs
    raises("ERA_STATUS_INVALID_CONFIG", t, LOGITS, LABELS, IDS, ADV, k=1.0)
    raises("ERA_STATUS_INVALID_CONFIG", t, LOGITS, LABELS, IDS, ADV, omega_low=3.0, omega_high=1.0)
    raises("ERA_STATUS_INVALID_CONFIG", t, LOGITS, LABELS, IDS, ADV, top_fraction=0.0)
    raises("ERA_STATUS_INVALID_CONFIG", t, LOGITS, LABELS, IDS, ADV, temperature=-1.0)
    raises("ERA_STATUS_INVALID_CONFIG", t, LOGITS, LABELS, IDS, ADV, vocab_topk=-1)
    raises("ERA_STATUS_INVALID_VALUE", t, LOGITS, torch.tensor([0, 1, 5, 0]), IDS, ADV)
    raises("ERA_STATUS_INVALID_VALUE", t, LOGITS, LABELS, torch.tensor([0, -2, 0, 0]), ADV)
    raises("ERA_STATUS_INVALID_SHAPE", t, LOGITS, LABELS[:3], IDS, ADV)
    raises("ERA_STATUS_UNSUPPORTED_DTYPE", t, LOGITS, LABELS.float(), IDS, ADV)
    raises("ERA_STATUS_UNSUPPORTED_DTYPE", t, LOGITS.to(torch.int64), LABELS, IDS, ADV)


def test_cuda_memory_is_reported_as_unsupported_device():
    # A CUDA descriptor (as era_torch builds for CUDA tensors) reaches this CPU build's
    # library, which answers ERA_STATUS_UNSUPPORTED_DEVICE; era_torch raises it.
    x = torch.zeros(2, 3)
    desc, out = _native.describe(x), _native.describe(torch.zeros(2))
    desc.device = _era_h.DLDevice(_era_h.kDLCUDA, 0)
    status = _native.lib().era_gaussian_entropy(ctypes.byref(desc), ctypes.byref(out), None)
    with pytest.raises(EraError) as info:
        _native.check(status, "era_gaussian_entropy")
    assert info.value.status == "ERA_STATUS_UNSUPPORTED_DEVICE" and "era_gaussian_entropy" in str(info.value)
