"""EraGaussian: with one action dimension its output is a constant (docs/math.md#gaussian-forward),
so construction warns and says what to use instead (two or more dimensions do not warn);
set_delta writes the learner and the buffer together."""

import math
import warnings

import pytest
import torch

import era_torch
from era_torch.modules import ONE_DIM_WARNING

L2PE = math.log(2 * math.pi * math.e)


def test_one_dimension_warns_and_the_output_is_the_constant_it_names():
    with pytest.warns(UserWarning, match="dim=1 outputs the same log-std") as record:
        head = era_torch.EraGaussian(1, -1.0, log_std_min=-8.0, log_std_max=0.0, delta=0.25)
    assert str(record[0].message) == ONE_DIM_WARNING
    assert record[0].filename == __file__  # points at the caller, not at era_torch
    assert "softplus" in ONE_DIM_WARNING  # says what to use instead
    z = torch.randn(7, 1, dtype=torch.float64, requires_grad=True) * 5
    z.retain_grad()
    out = head.double()(z)
    expected = max(-1.0 + 0.25 - 0.5 * L2PE, -8.0)
    torch.testing.assert_close(out, torch.full_like(out, expected), rtol=0, atol=1e-12)
    out.sum().backward()
    assert torch.count_nonzero(z.grad) == 0  # no gradient reaches z


def test_one_dimension_clipped_at_the_lower_bound():
    with pytest.warns(UserWarning, match="dim=1"):
        head = era_torch.EraGaussian(1, -20.0, log_std_min=-5.0, log_std_max=0.0)
    out = head(torch.randn(3, 1))
    assert torch.all(out == -5.0)


def test_several_dimensions_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        era_torch.EraGaussian(2, -2.0)
        era_torch.EraGaussian(6, -6.0, learn_delta=False)


def test_an_invalid_one_dimensional_head_raises_before_any_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(era_torch.EraError, match="INFEASIBLE_TARGET"):
            era_torch.EraGaussian(1, 100.0)  # above the widest Gaussian the bounds allow


def test_set_delta_writes_the_learner_and_the_buffer():
    head = era_torch.EraGaussian(3, -3.0, lr=0.01)
    head.update_delta(-1.0)  # Adam's moments become non-zero
    moments = head.learner.to_json().split('"delta_state"')[1].split("adam_m")[1]
    assert head.set_delta(0.5) == 0.5 and float(head.delta) == 0.5 and head.learner.delta == 0.5
    assert head.learner.to_json().split('"delta_state"')[1].split("adam_m")[1] == moments  # moments kept
    widest = 3 * (0.0 + 0.5 * L2PE) - (-3.0)
    value = head.set_delta(math.inf)  # clamped to the feasible maximum
    assert value == pytest.approx(widest) and value <= widest and float(head.delta) == pytest.approx(widest)
    with pytest.raises(era_torch.EraError, match="INVALID_ARGUMENT"):
        head.set_delta(math.nan)
    assert head.learner.delta == value  # unchanged by the refused call

