"""The masked Gaussian head (docs/math.md#gaussian-mask) in era_torch: against the NumPy
reference (the unmasked head of each row's active sub-vector), a mask of ones against the
unmasked op, gradients (gradcheck, the reference's finite differences), opcheck, vmap, the
module's mask argument and the library's errors."""

import numpy as np
import pytest
import torch

import era_torch
from conftest import numpy_ref

H0, LO, HI = -3.0, -6.0, 1.5


def ref_masked(z, mask, delta, fill):
    """Rows of ``z`` [N, D] under ``mask`` [N, D]; ``delta`` one value per row."""
    z, mask = np.asarray(z, np.float64), np.asarray(mask, np.float64)
    out = np.empty_like(z)
    d = z.shape[-1]
    for r in range(z.shape[0]):
        act = mask[r] != 0
        a = int(act.sum())
        out[r] = z[r] if fill is None else fill
        if a:
            f = a / d
            out[r, act] = numpy_ref.gaussian_row(z[r, act], H0 * f, LO, HI, delta[r] * f)
    return out


def masks(n, d, gen):
    m = (torch.rand(n, d, generator=gen) < 0.6).double()
    m[0] = 1.0  # all active
    m[1] = 0.0  # none
    m[2] = 0.0
    m[2, 1] = 1.0  # one
    return m


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("fill", [None, 0.0, -2.5])
def test_against_the_numpy_reference(dtype, fill, gen):
    n, d = 12, 5
    z = (torch.randn(n, d, generator=gen) * 2).to(dtype)
    m = masks(n, d, gen)
    delta = torch.linspace(-0.5, 0.5, n, dtype=dtype)
    out = era_torch.gaussian_log_std_masked(z, m, target_entropy=H0, log_std_min=LO, log_std_max=HI,
                                            delta=delta, fill=fill)
    want = ref_masked(z.double().numpy(), m.numpy(), delta.double().numpy(), fill)
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    np.testing.assert_allclose(out.double().numpy(), want, atol=tol, rtol=tol)
    # scalar delta, a boolean mask broadcast from one row per task
    tasks = torch.tensor([[True, True, False, False, True], [True] * 5])
    idx = torch.arange(n) % 2
    out = era_torch.gaussian_log_std_masked(z, tasks[idx], target_entropy=H0, log_std_min=LO, log_std_max=HI,
                                            delta=0.25, fill=fill)
    want = ref_masked(z.double().numpy(), tasks[idx].numpy(), np.full(n, 0.25), fill)
    np.testing.assert_allclose(out.double().numpy(), want, atol=tol, rtol=tol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_mask_of_ones_is_the_unmasked_head_exactly(dtype, gen):
    z = torch.randn(3, 7, 4, generator=gen).to(dtype).requires_grad_()
    a = era_torch.gaussian_log_std(z, target_entropy=H0, log_std_min=LO, log_std_max=HI, delta=0.1)
    b = era_torch.gaussian_log_std_masked(z, torch.ones(4), target_entropy=H0, log_std_min=LO, log_std_max=HI,
                                          delta=0.1, fill=3.0)
    assert torch.equal(a, b)
    g = torch.randn(a.shape, generator=gen, dtype=dtype)
    (ga,) = torch.autograd.grad(a, z, g)
    (gb,) = torch.autograd.grad(b, z, g)
    assert torch.equal(ga, gb)


@pytest.mark.parametrize("fill", [None, 0.5])
def test_gradcheck_z_and_delta(fill, gen):
    n, d = 6, 4
    z = torch.randn(n, d, generator=gen, dtype=torch.float64, requires_grad=True)
    m = masks(n, d, gen)
    for delta in (torch.tensor(0.3, dtype=torch.float64), torch.linspace(-0.4, 0.4, n, dtype=torch.float64)):
        delta = delta.clone().requires_grad_()

        def f(z, delta):
            return era_torch.gaussian_log_std_masked(z, m, target_entropy=H0, log_std_min=LO, log_std_max=HI,
                                                     delta=delta, fill=fill)

        assert torch.autograd.gradcheck(f, (z, delta), eps=1e-6, atol=1e-7)


def test_opcheck(gen):
    from era_torch import _gaussian_mask as gm

    z = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    m = masks(5, 3, gen)
    d = torch.tensor(0.1, dtype=torch.float64)
    torch.library.opcheck(gm._fwd, (z, m, d, H0, LO, HI, 0.0))
    torch.library.opcheck(gm._fwd, (z, m, d, H0, LO, HI, None))
    torch.library.opcheck(gm._bwd, (z, m, d, torch.randn(5, 3, dtype=torch.float64), H0, LO, HI, None))


def test_vmap_and_grad(gen):
    z = torch.randn(4, 6, 3, generator=gen, dtype=torch.float64)
    m = (torch.rand(4, 6, 3, generator=gen) < 0.7).double()

    def f(z, m):
        return era_torch.gaussian_log_std_masked(z, m, target_entropy=H0, log_std_min=LO, log_std_max=HI,
                                                 delta=0.2, fill=0.0)

    torch.testing.assert_close(torch.func.vmap(f)(z, m), f(z, m))
    g = torch.func.vmap(torch.func.grad(lambda z, m: f(z, m).exp().sum()))(z, m)
    zz = z.clone().requires_grad_()
    f(zz, m).exp().sum().backward()
    torch.testing.assert_close(g, zz.grad)


def test_module_mask_argument(gen):
    head = era_torch.EraGaussian(4, H0, log_std_min=LO, log_std_max=HI, delta=0.3)
    z = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    head = head.double()
    m = masks(5, 4, gen)
    out = head(z, m, fill=0.0)
    want = ref_masked(z.numpy(), m.numpy(), np.full(5, head.learner.delta), 0.0)
    np.testing.assert_allclose(out.numpy(), want, atol=1e-12)
    assert torch.equal(head(z), head(z, torch.ones(4)))


def test_errors(gen):
    z = torch.randn(3, 4, generator=gen)
    with pytest.raises(era_torch.EraError, match="mask"):
        era_torch.gaussian_log_std_masked(z, torch.full((3, 4), 0.5), target_entropy=H0)
    with pytest.raises(era_torch.EraError):
        era_torch.gaussian_log_std_masked(z, torch.ones(4), target_entropy=H0, delta=1e6)
    with pytest.raises(RuntimeError):  # not broadcastable
        era_torch.gaussian_log_std_masked(z, torch.ones(3), target_entropy=H0)
