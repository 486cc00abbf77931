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


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("layout", ["contiguous", "strided", "permuted"])
def test_token_inplace_backward(gen, dtype, layout):
    """inplace_backward writes the logits' gradient over the logits (an intermediate here,
    as the unembedding matmul's output is): the same gradients bit for bit, the logits
    then hold their gradient, and every other input is untouched."""
    logits0, labels, ids, adv = batch(gen, n=20, v=40)
    src = layouts(logits0.to(dtype))[layout]

    def run(inplace):
        w = src.detach().clone().requires_grad_()  # clone keeps the layout
        a = adv.clone().requires_grad_()
        x = w * 1.0  # an intermediate, in w's layout
        before = snapshot(labels, ids)
        lp, _, _, a2 = era_torch.token_logprobs(x, labels, ids, a, inplace_backward=inplace, **CFG)
        ((lp * a2.detach()).sum() + a2.sum()).backward()
        assert_unchanged(before, (labels, ids))
        return w.grad, a.grad, x.detach()

    gw, ga, x = run(False)
    gw1, ga1, x1 = run(True)
    assert torch.equal(gw1, gw) and torch.equal(ga1, ga)
    assert torch.equal(x, src) and torch.equal(x1, gw)  # the logits now hold their gradient


def test_token_inplace_backward_compiled_and_transformed(gen):
    logits, labels, ids, adv = batch(gen, n=16, v=30, dtype=torch.float32)

    def loss(w, inplace):
        lp, _, _, a2 = era_torch.token_logprobs(w * 2.0, labels, ids, adv, inplace_backward=inplace, **CFG)
        return (lp * a2).sum()

    want = torch.func.grad(lambda w: loss(w, False))(logits)
    # torch.func transforms: the gradient gets a buffer of its own
    assert torch.equal(torch.func.grad(lambda w: loss(w, True))(logits), want)
    stacked = torch.stack([logits, logits.flip(0)])
    vm = torch.func.vmap(torch.func.grad(lambda w: loss(w, True)))(stacked)
    assert torch.equal(vm[0], want)
    # torch.compile(fullgraph=True)
    w = logits.clone().requires_grad_()
    torch.compile(lambda w: loss(w, True), fullgraph=True)(w).backward()
    torch.testing.assert_close(w.grad, want, rtol=1e-6, atol=1e-7)
    # create_graph=True: no in-place write; the double backward raises as without the flag
    w = logits.clone().requires_grad_()
    (g,) = torch.autograd.grad(loss(w, True), w, create_graph=True)
    assert torch.equal(g, want)
    with pytest.raises(NotImplementedError, match="no double backward"):
        g.sum().backward()


def test_token_inplace_backward_guards(gen):
    logits, labels, ids, adv = batch(gen, n=12, v=9)
    # an op that saved the logits and differentiates after the token backward sees them modified
    w = logits.clone().requires_grad_()
    x = w * 1.0
    sq = (x * x).sum()  # saves x; created first, so its backward runs after the token head's
    lp = era_torch.token_logprobs(x, labels, ids, adv, inplace_backward=True, **CFG)[0]
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        (lp.sum() + sq).backward()
    with pytest.raises(TypeError, match="inplace_backward must be True or False"):
        era_torch.token_logprobs(logits, labels, ids, adv, inplace_backward=1)
    scale = era_torch.token_logprobs(logits, labels, ids, adv, **CFG)[2]
    g = torch.randn(12, generator=gen, dtype=torch.float64)
    cfg = (2.0, 1.2, 1.6, 0.3, 0.8, True, 0)
    torch.library.opcheck(torch.ops.era.token_backward_.default, (logits.clone(), labels, ids, scale, g) + cfg)
    # the op in place equals the op into a new buffer
    x = logits.clone()
    torch.ops.era.token_backward_(x, labels, ids, scale, g, *cfg)
    assert torch.equal(x, torch.ops.era.token_backward(logits, labels, ids, scale, g, *cfg))


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
