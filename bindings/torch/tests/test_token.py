"""Token head and the verl drop-in: agreement with the NumPy reference and with the
PyTorch transcription of the recipe, gradcheck, opcheck, autocast, inputs untouched."""

import numpy as np
import pytest
import torch
from conftest import assert_unchanged, layouts, numpy_ref, snapshot, torch_ref

import era_torch

CFG = dict(k=2.0, omega_low=1.2, omega_high=1.6, top_fraction=0.3, temperature=0.8)


def batch(gen, n=24, v=11, dtype=torch.float64, scale=2.0):
    logits = torch.randn(n, v, generator=gen, dtype=dtype) * scale
    labels = torch.randint(0, v, (n,), generator=gen)
    ids = torch.randint(0, 4, (n,), generator=gen) * 7 + 3  # non-contiguous, unsorted ids
    ids[torch.rand(n, generator=gen) < 0.2] = -1
    labels[ids < 0] = 10**6  # masked labels are never read
    adv = torch.randn(n, generator=gen, dtype=dtype)
    return logits, labels, ids, adv


@pytest.mark.parametrize("topk", [0, 4])
@pytest.mark.parametrize("layout", ["contiguous", "strided", "permuted"])
def test_token_matches_numpy_ref(gen, topk, layout):
    logits0, labels, ids, adv = batch(gen)
    logits = layouts(logits0)[layout]
    before = snapshot(logits, labels, ids, adv)
    outs = era_torch.token_outputs(logits, labels, ids, adv, vocab_topk=topk, **CFG)
    assert_unchanged(before, (logits, labels, ids, adv))
    ref = numpy_ref.token(logits0.numpy(), labels.numpy(), ids.numpy(), adv.numpy(), k=2.0, omega_low=1.2,
                          omega_high=1.6, rho=0.3, temperature=0.8, topk=topk)
    for o, r in zip(outs, ref):
        np.testing.assert_allclose(o.numpy(), r, rtol=1e-10, atol=1e-10)
    c = outs[2]
    assert set(c.unique().tolist()) <= {0.5, 1.0, 2.0} and len(c.unique()) >= 2  # the data exercise the decision


def test_token_float32_and_bf16(gen):
    logits, labels, ids, adv = batch(gen, dtype=torch.float32)
    ref = numpy_ref.token(logits.double().numpy(), labels.numpy(), ids.numpy(), adv.numpy(), k=2.0,
                          omega_low=1.2, omega_high=1.6, rho=0.3, temperature=0.8)
    outs = era_torch.token_logprobs(logits, labels, ids, adv, **CFG)
    assert all(o.dtype == torch.float32 for o in outs)
    for o, r in zip(outs, ref):
        np.testing.assert_allclose(o.numpy(), r, rtol=2e-5, atol=2e-5)
    lb = logits.bfloat16()
    ref = numpy_ref.token(lb.double().numpy(), labels.numpy(), ids.numpy(), adv.numpy(), k=2.0,
                          omega_low=1.2, omega_high=1.6, rho=0.3, temperature=0.8)
    for o, r in zip(era_torch.token_logprobs(lb, labels, ids, adv, **CFG), ref):
        np.testing.assert_allclose(o.numpy(), r, rtol=2e-5, atol=2e-5)


def test_token_gradcheck(gen):
    logits, labels, ids, adv = batch(gen, n=10, v=6)
    for topk in (0, 3):
        def f(lg, a):
            lp, _, _, a2 = era_torch.token_logprobs(lg, labels, ids, a, vocab_topk=topk, **CFG)
            return lp, a2
        assert torch.autograd.gradcheck(f, (logits.clone().requires_grad_(), adv.clone().requires_grad_()))
    lt = layouts(logits)["permuted"].requires_grad_()
    assert torch.autograd.gradcheck(lambda lg: era_torch.token_logprobs(lg, labels, ids, adv, **CFG)[0], (lt,))


@pytest.mark.parametrize("layout", ["contiguous", "strided", "permuted"])
def test_token_opcheck(gen, layout):
    logits, labels, ids, adv = batch(gen, n=8, v=5)
    logits = layouts(logits)[layout].requires_grad_()
    cfg = (2.0, 1.2, 1.6, 0.3, 0.8, True, 0)
    torch.library.opcheck(torch.ops.era.token_forward.default, (logits, labels, ids, adv) + cfg)
    scale = era_torch.token_logprobs(logits.detach(), labels, ids, adv, **CFG)[2]
    g = torch.randn(8, generator=gen, dtype=torch.float64)
    torch.library.opcheck(torch.ops.era.token_backward.default, (logits.detach(), labels, ids, scale, g) + cfg)


def test_token_single_token_and_batch_shape(gen):
    logits, labels, ids, adv = batch(gen, n=12, v=7)
    flat = era_torch.token_logprobs(logits, labels, ids, adv)
    shaped = era_torch.token_logprobs(logits.reshape(3, 4, 7), labels.reshape(3, 4), ids.reshape(3, 4),
                                      adv.reshape(3, 4))
    for a, b in zip(flat, shaped):
        torch.testing.assert_close(a, b.reshape(-1))
    one = era_torch.token_logprobs(logits[0], torch.tensor(2), torch.tensor(0), adv[0])
    assert all(o.dim() == 0 for o in one)


def test_token_autocast_bf16(gen):
    torch.manual_seed(0)
    lin = torch.nn.Linear(16, 50)
    x = torch.randn(32, 16)
    labels = torch.randint(0, 50, (32,))
    ids = torch.arange(32) // 8
    adv = torch.randn(32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = lin(x)
        assert logits.dtype == torch.bfloat16
        lp, ent, scale, a2 = era_torch.token_logprobs(logits, labels, ids, adv)
    assert lp.dtype == torch.float32
    (lp * a2).sum().backward()
    grad_bf16 = lin.weight.grad.clone()
    ref = era_torch.token_logprobs(logits.detach().float(), labels, ids, adv)[0]
    torch.testing.assert_close(lp.detach(), ref, rtol=1e-5, atol=1e-5)
    lin.zero_grad()
    lf = torch.nn.functional.linear(x.bfloat16(), lin.weight.bfloat16(), lin.bias.bfloat16()).float()
    lp2, _, _, a22 = era_torch.token_logprobs(lf, labels, ids, adv)
    (lp2 * a22).sum().backward()
    torch.testing.assert_close(grad_bf16, lin.weight.grad, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("topk", [0, 5])
def test_verl_drop_in_matches_the_recipe_transcription(gen, topk):
    b, length, v = 4, 9, 40
    logits = (torch.randn(b * length, v, generator=gen) * 3).requires_grad_()
    labels = torch.randint(0, v, (b, length), generator=gen)
    mask = torch.rand(b, length, generator=gen) < 0.8
    adv = torch.randn(b, 1, generator=gen).expand(b, length)  # one advantage per response
    cfg = dict(k=2.0, omega_low=2.0, omega_high=3.2, temperature=0.9, vocab_topk=topk)
    out = era_torch.verl_era_logprobs(logits, labels, mask, adv, **cfg)
    ids = era_torch.response_ids_from_mask(mask).reshape(-1)
    ref = torch_ref.era_logprobs_reference(logits, labels.reshape(-1), ids, adv.reshape(-1), **cfg)
    assert out.log_probs.shape == (b, length)
    for o, r in zip(out, ref):
        torch.testing.assert_close(o.reshape(-1), r, rtol=2e-5, atol=2e-5)
    assert len(out.scale.unique()) >= 2
    g1 = torch.autograd.grad((out.log_probs * out.advantages).sum(), logits)[0]
    g2 = torch.autograd.grad((ref[0] * ref[3]).sum(), logits)[0]
    torch.testing.assert_close(g1, g2, rtol=1e-5, atol=1e-6)
    # the padding-free layout: one response id per token
    out2 = era_torch.verl_era_logprobs(logits.detach(), labels.reshape(-1), ids, adv.reshape(-1), **cfg)
    torch.testing.assert_close(out2.log_probs, out.log_probs.detach().reshape(-1))
