"""Gaussian and softmax heads, the entropies and the delta learner: agreement with the
independent NumPy reference, gradcheck in float64, opcheck on every layout, inputs untouched."""

import math

import numpy as np
import pytest
import torch
from conftest import assert_unchanged, layouts, numpy_ref, snapshot

import era_torch
from era_torch import defaults

H0, LO, HI = -1.5, -5.0, 0.0


def test_defaults_come_from_the_library():
    assert defaults.GAUSSIAN.log_std_min < defaults.GAUSSIAN.log_std_max
    assert defaults.SOFTMAX.tau >= math.e
    assert defaults.TOKEN.k > 1
    assert era_torch.version().count(".") == 2 and era_torch.abi_version() >= 1


@pytest.mark.parametrize("layout", ["contiguous", "strided", "permuted"])
def test_gaussian_matches_numpy_ref(gen, layout):
    z0 = torch.randn(6, 4, generator=gen, dtype=torch.float64) * 2
    z = layouts(z0)[layout]
    delta = torch.linspace(-0.5, 0.3, 6, dtype=torch.float64)
    for d, dnp in ((0.25, [0.25] * 6), (delta, delta.numpy())):
        before = snapshot(z, delta)
        out = era_torch.gaussian_log_std(z, target_entropy=H0, log_std_min=LO, log_std_max=HI, delta=d)
        assert_unchanged(before, (z, delta))
        ref = np.stack([numpy_ref.gaussian_row(z0[i].numpy(), H0, LO, HI, dnp[i]) for i in range(6)])
        np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12, atol=1e-12)


def test_gaussian_float32_and_defaults(gen):
    z = torch.randn(33, 6, generator=gen)
    out = era_torch.gaussian_log_std(z, target_entropy=-6.0)
    ref = np.stack([numpy_ref.gaussian_row(r.double().numpy(), -6.0, defaults.GAUSSIAN.log_std_min,
                                           defaults.GAUSSIAN.log_std_max, defaults.GAUSSIAN.delta) for r in z])
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), ref, atol=2e-5)
    # half precision (autocast outputs) is computed in float32
    assert era_torch.gaussian_log_std(z.bfloat16(), target_entropy=-6.0).dtype == torch.float32


def test_gaussian_gradcheck(gen):
    z = torch.randn(5, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    d = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    rows = torch.linspace(-0.3, 0.1, 5, dtype=torch.float64, requires_grad=True)
    f = lambda z, d: era_torch.gaussian_log_std(z, target_entropy=H0, log_std_min=LO, log_std_max=HI, delta=d)  # noqa: E731
    assert torch.autograd.gradcheck(f, (z, d))
    assert torch.autograd.gradcheck(f, (z, rows))
    zt = torch.randn(4, 5, generator=gen, dtype=torch.float64).t().requires_grad_()
    assert torch.autograd.gradcheck(f, (zt, d))


def test_gaussian_worked_example():
    # docs/math.md#worked-examples
    z = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
    d = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    out = era_torch.gaussian_log_std(z, target_entropy=-1.5, log_std_min=-5.0, log_std_max=0.0, delta=d)
    np.testing.assert_allclose(out.detach().numpy(), [-1.009114, -0.225164, -4.522537], atol=1e-6)
    out.backward(torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64))
    np.testing.assert_allclose(z.grad.numpy(), [-1.546046, -0.570133, 2.116179], atol=1e-6)
    np.testing.assert_allclose(d.grad.item(), -0.532081, atol=1e-6)


@pytest.mark.parametrize("layout", ["contiguous", "strided", "permuted"])
def test_gaussian_opcheck(gen, layout):
    z = layouts(torch.randn(4, 3, generator=gen, dtype=torch.float64))[layout].requires_grad_()
    for d in (torch.tensor(0.1, dtype=torch.float64, requires_grad=True),
              torch.zeros(4, dtype=torch.float64, requires_grad=True)):
        torch.library.opcheck(torch.ops.era.gaussian_log_std.default, (z, d, H0, LO, HI))
    g = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    torch.library.opcheck(torch.ops.era.gaussian_log_std_backward.default, (z.detach(), d.detach(), g, H0, LO, HI))


@pytest.mark.parametrize("layout", ["contiguous", "strided", "permuted"])
def test_softmax_matches_numpy_ref(gen, layout):
    z0 = torch.randn(7, 5, generator=gen, dtype=torch.float64) * 3
    z = layouts(z0)[layout]
    before = snapshot(z)
    out = era_torch.softmax_logits(z, target_entropy=0.6, tau=4.0)
    assert_unchanged(before, (z,))
    ref = np.stack([numpy_ref.softmax_row(r.numpy(), 0.6, 4.0) for r in z0])
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-10, atol=1e-10)
    ent = era_torch.softmax_entropy(out)
    assert (ent >= 0.6).all()


def test_softmax_worked_example_and_gradcheck(gen):
    z = torch.tensor([2.0, 0.0, -1.0, 0.5], dtype=torch.float64, requires_grad=True)
    out = era_torch.softmax_logits(z, target_entropy=0.6, tau=4.0)
    np.testing.assert_allclose(out.detach().numpy(), [1.41745, 0.167547, 0, 0.325278], atol=1e-5)
    out.backward(torch.tensor([1, -0.5, 0.25, 0], dtype=torch.float64))
    np.testing.assert_allclose(z.grad.numpy(), [0.440352, -0.239131, -0.015823, -0.185398], atol=1e-6)
    zz = torch.randn(4, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    # the output's min-shift is a constant (stop-gradient, docs/math.md#softmax-backward):
    # check the gradient of a shift-invariant function of the output
    f = lambda x: torch.log_softmax(era_torch.softmax_logits(x, target_entropy=1.0), -1)  # noqa: E731
    assert torch.autograd.gradcheck(f, (zz,))
    zp = torch.randn(6, 4, generator=gen, dtype=torch.float64).t().requires_grad_()
    assert torch.autograd.gradcheck(f, (zp,))


@pytest.mark.parametrize("layout", ["contiguous", "strided", "permuted"])
def test_softmax_opcheck(gen, layout):
    z = layouts(torch.randn(4, 5, generator=gen, dtype=torch.float64))[layout].requires_grad_()
    torch.library.opcheck(torch.ops.era.softmax_logits.default, (z, 1.0, 4.0))
    g = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    torch.library.opcheck(torch.ops.era.softmax_logits_backward.default, (z.detach(), g, 1.0, 4.0))


@pytest.mark.parametrize("layout", ["contiguous", "strided", "permuted"])
def test_entropies(gen, layout):
    ls0 = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    mu0 = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    ls, mu = layouts(ls0)[layout], layouts(mu0)[layout]
    before = snapshot(ls, mu)
    np.testing.assert_allclose(era_torch.gaussian_entropy(ls).numpy(),
                               ls0.sum(-1).numpy() + 1.5 * numpy_ref.L2PE, rtol=1e-13)
    ent = era_torch.softmax_entropy(ls, temperature=0.7)
    np.testing.assert_allclose(ent.numpy(), [numpy_ref.entropy(r.numpy() / 0.7) for r in ls0], rtol=1e-12)
    tn = era_torch.truncated_normal_entropy(mu, ls, -1.0, 1.0)
    ref = [sum(numpy_ref.truncated_normal_1d(m, s, -1.0, 1.0) for m, s in zip(mr, sr))
           for mr, sr in zip(mu0.tolist(), ls0.tolist())]
    np.testing.assert_allclose(tn.numpy(), ref, rtol=1e-9, atol=1e-9)
    assert_unchanged(before, (ls, mu))
    assert era_torch.softmax_entropy(ls.bfloat16()).dtype == torch.float32
    for op, args in ((torch.ops.era.gaussian_entropy.default, (ls,)),
                     (torch.ops.era.softmax_entropy.default, (ls, 0.7)),
                     (torch.ops.era.truncated_normal_entropy.default, (mu, ls, -1.0, math.inf))):
        torch.library.opcheck(op, args)


def test_delta_learner_and_module(gen):
    learner = era_torch.DeltaLearner(dim=3, target_entropy=-3.0, optimizer="sgd", lr=0.1)
    assert learner.delta == 0.0
    assert learner.update(-2.0) == pytest.approx(-0.1)  # entropy above target lowers delta
    assert learner.update(torch.tensor(-4.0)) == pytest.approx(0.0)
    head = era_torch.EraGaussian(3, -3.0, lr=0.01)
    z = torch.randn(8, 3, generator=gen, requires_grad=True)
    out = head(z)
    ent = era_torch.gaussian_entropy(out.detach())
    assert (ent >= -3.0 - 1e-4).all()
    before = head.delta.item()
    new = head.update_delta(ent.mean() + 1.0)
    assert new < before and head.delta.item() == torch.tensor(new).item()  # in the buffer's dtype
    out.sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
    other = era_torch.EraGaussian(3, -3.0, lr=0.01)
    other.load_state_dict(head.state_dict())
    assert other.delta.item() == torch.tensor(new).item() and other.learner.delta == new
    assert other.update_delta(0.0) == head.update_delta(0.0)  # Adam moments restored too
    sm = era_torch.EraSoftmax(1.0)
    assert sm(torch.randn(2, 5, generator=gen)).shape == (2, 5)


def test_module_delta_buffer_dtype(gen):
    # the buffer is in torch's default dtype; float64 conversions take the learner's exact value,
    # half conversions keep float32
    head = era_torch.EraGaussian(3, -3.0, delta=-0.1234567890123)
    exact = head.learner.delta
    assert head.delta.dtype == torch.get_default_dtype() == torch.float32
    assert head.delta.item() == torch.tensor(exact, dtype=torch.float32).item()
    z = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    head.double()
    assert head.delta.dtype == torch.float64 and head.delta.item() == exact
    torch.testing.assert_close(head(z), era_torch.gaussian_log_std(z, target_entropy=-3.0, delta=exact), rtol=0, atol=0)
    for convert in (head.half, head.bfloat16):
        convert()
        assert head.delta.dtype == torch.float32 and head.delta.item() == torch.tensor(exact, dtype=torch.float32).item()
    head.to(torch.float64)
    assert head.delta.item() == exact
    # forward, update_delta, backward (a SAC step's order): the backward uses the forward's delta
    zg = z.clone().requires_grad_(True)
    out = head(zg)
    (ref,) = torch.autograd.grad(era_torch.gaussian_log_std(zg, target_entropy=-3.0, delta=exact).pow(2).sum(), zg)
    head.update_delta(0.0)
    assert head.delta.item() != exact
    (g,) = torch.autograd.grad(out.pow(2).sum(), zg)
    torch.testing.assert_close(g, ref, rtol=0, atol=0)
    head.learner.set_delta(exact)
    head.delta.fill_(exact)
    head.float()
    assert head.delta.dtype == torch.float32
    # a state dict with a float64 buffer (and one made in float32) loads into either
    other = era_torch.EraGaussian(3, -3.0)
    other.load_state_dict(era_torch.EraGaussian(3, -3.0, delta=0.25).double().state_dict())
    assert other.delta.dtype == torch.float32 and other.delta.item() == 0.25 and other.learner.delta == 0.25
    wide = era_torch.EraGaussian(3, -3.0).double()
    wide.load_state_dict(head.state_dict())
    assert wide.delta.dtype == torch.float64 and wide.learner.delta == exact
    try:
        torch.set_default_dtype(torch.float64)
        assert era_torch.EraGaussian(3, -3.0).delta.dtype == torch.float64
    finally:
        torch.set_default_dtype(torch.float32)


def test_torch_func_functional_call(gen):
    # torch.func.functional_call over the module (with torch.func.grad: tests/test_func.py)
    head = era_torch.EraGaussian(4, -4.0)
    z = torch.randn(3, 4, generator=gen, requires_grad=True)
    out = torch.func.functional_call(head, {"delta": torch.tensor(-0.5, dtype=torch.float64)}, (z,))
    ref = era_torch.gaussian_log_std(z, target_entropy=-4.0, delta=-0.5)
    torch.testing.assert_close(out, ref)
    (g,) = torch.autograd.grad(out.sum(), z)
    assert torch.isfinite(g).all()
