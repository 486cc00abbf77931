"""The split token forward (token_logprob_columns + token_decide) against the one-call
head (the same bits), against a plain PyTorch computation of the same columns, its
gradients (the one-call backward's bits for a single column; gradcheck in float64 for
columns and entropy together), and the per-token temperature."""

import pytest
import torch

import era_torch
from era_torch import EraError


def batch(seed=0, n_resp=4, per=6, vocab=40, dtype=torch.float32):
    """Responses in all three scale branches: 0 peaked (sharpen), 1 flat (flatten), 2 in
    between, 3 with a negative advantage; two masked tokens at the end."""
    g = torch.Generator().manual_seed(seed)
    n = n_resp * per + 2
    ids = torch.tensor([t // per if t < n_resp * per else -1 for t in range(n)])
    scale = torch.where(ids == 1, 0.03, 1.5)
    x = torch.randn(n, vocab, generator=g, dtype=torch.float64) * scale[:, None]
    y = torch.randint(0, vocab, (n,), generator=g)
    x[ids == 0, :] = x[ids == 0, :].index_put_((torch.arange((ids == 0).sum()), y[ids == 0]), torch.tensor(60.0, dtype=torch.float64))
    adv = torch.where(ids == 3, -0.7, 0.5).to(torch.float64) + 0.05 * torch.randn(n, generator=g, dtype=torch.float64)
    return x.to(dtype), y, ids, adv


CFG = dict(k=2.0, omega_low=0.45, omega_high=3.0, top_fraction=0.2)


def split(x, y, ids, adv, temperature=None, vocab_topk=0, k=2.0, **kw):
    labels = torch.where(ids >= 0, y, -100)
    cols = era_torch.token_logprob_columns(x, labels, temperature=temperature, k=k, vocab_topk=vocab_topk, sum_sq=True)
    dec = era_torch.token_decide(cols.entropy, ids, adv, cols.columns, k=k, **kw)
    return cols, dec


def bits(a, b):
    return torch.equal(a.view(-1), b.view(-1)) or bool(((a == b) | (a.isnan() & b.isnan())).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("vocab_topk", [0, 5])
@pytest.mark.parametrize("k", [2.0, 3.0])
def test_split_is_the_one_call_head_bit_for_bit(dtype, vocab_topk, k):
    x, y, ids, adv = batch(dtype=dtype)
    out_dt = torch.float64 if dtype == torch.float64 else torch.float32
    adv = adv.to(out_dt)
    cfg = dict(CFG, k=k)
    one = era_torch.token_outputs(x, y, ids, adv, vocab_topk=vocab_topk, temperature=0.8, **cfg)
    cols, dec = split(x, y, ids, adv, temperature=0.8, vocab_topk=vocab_topk, **cfg)
    assert bits(one[1], cols.entropy)
    assert bits(one[0], dec.logprobs)
    assert bits(one[2], dec.scale)
    assert bits(one[3], dec.advantages)
    assert bits(one[4], dec.response_entropy)
    assert set(dec.scale.tolist()) == {1.0, k, 1.0 / k} or set(dec.scale.tolist()) == {1.0, k, float(torch.tensor(1 / k, dtype=out_dt))}
    expected_col = torch.where(dec.scale == 1.0, 0, torch.where(dec.scale == k, 1, 2))
    assert torch.equal(dec.column, expected_col)


def test_columns_against_plain_pytorch():
    x, y, ids, adv = batch(dtype=torch.float64)
    temp = 0.7
    cols = era_torch.token_logprob_columns(x, y, temperature=temp, k=3.0, sum_sq=True)
    z = x / temp
    for j, c in enumerate([1.0, 3.0, 1.0 / 3.0]):
        want = torch.log_softmax(c * z, -1).gather(-1, y[:, None])[:, 0]
        torch.testing.assert_close(cols.columns[:, j], want, rtol=1e-12, atol=1e-12)
    p = torch.softmax(z, -1)
    torch.testing.assert_close(cols.entropy, -(p * torch.log_softmax(z, -1)).sum(-1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(cols.sum_sq, (p * p).sum(-1), rtol=1e-12, atol=1e-12)
    # top-K: log-softmax over the K largest, -1e4 for a label outside them
    ck = era_torch.token_logprob_columns(x, y, temperature=temp, k=3.0, vocab_topk=5)
    top = z.topk(5, -1)
    for t in range(len(y)):
        inside = (top.indices[t] == y[t]).any()
        for j, c in enumerate([1.0, 3.0, 1.0 / 3.0]):
            if inside:
                want = c * z[t, y[t]] - torch.logsumexp(c * top.values[t], -1)
            else:
                want = torch.tensor(-1e4, dtype=torch.float64)
            torch.testing.assert_close(ck.columns[t, j], want, rtol=1e-12, atol=1e-12)


def test_a_selected_column_has_the_one_call_gradient_bit_for_bit():
    for dtype in (torch.float32, torch.bfloat16):
        x, y, ids, adv = batch(dtype=dtype)
        g = torch.randn(len(y), generator=torch.Generator().manual_seed(3))
        x1 = x.clone().requires_grad_()
        one = era_torch.token_outputs(x1, y, ids, adv, **CFG)
        (one[0] * g).sum().backward()
        x2 = x.clone().requires_grad_()
        _, dec = split(x2, y, ids, adv.float(), **CFG)
        (dec.logprobs * g).sum().backward()
        assert bits(x1.grad, x2.grad), dtype
    # in place: the same values, written over the logits
    x, y, ids, adv = batch()
    x3 = x.clone().requires_grad_()
    x4 = x.clone().requires_grad_()
    labels = torch.where(ids >= 0, y, -100)
    for xx, inplace in ((x3, False), (x4, True)):
        logits = xx * 1.0  # an intermediate, dead after its backward
        cols = era_torch.token_logprob_columns(logits, labels, k=2.0, inplace_backward=inplace)
        dec = era_torch.token_decide(cols.entropy, ids, adv.float(), cols.columns, **CFG)
        dec.logprobs.sum().backward()
    assert bits(x3.grad, x4.grad)


def test_gradcheck_columns_and_entropy_float64():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 7, dtype=torch.float64, generator=g, requires_grad=True)
    y = torch.tensor([0, 3, -100, 6, 2])
    temp = torch.tensor([1.0, 0.6, 1.3, 0.9, 2.0], dtype=torch.float64)
    for topk in (0, 4):
        def f(x):
            c = era_torch.token_logprob_columns(x, y, temperature=temp, k=3.0, vocab_topk=topk)
            return c.columns, c.entropy
        assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-7, rtol=1e-6)


def test_per_token_temperature():
    x, y, ids, adv = batch()
    n = len(y)
    temps = torch.tensor([0.6, 1.0, 1.3] * (n // 3) + [1.0] * (n % 3))
    one = era_torch.token_outputs(x, y, ids, adv, temperature=temps, **CFG)
    cols, dec = split(x, y, ids, adv.float(), temperature=temps, **CFG)
    for a, b in zip(one, (dec.logprobs, cols.entropy, dec.scale, dec.advantages, dec.response_entropy)):
        assert bits(a, b)
    # each token's columns are those at its own temperature
    for tv in (0.6, 1.0, 1.3):
        at = era_torch.token_logprob_columns(x, torch.where(ids >= 0, y, -100), temperature=tv)
        m = temps == tv
        assert bits(cols.columns[m], at.columns[m]) and bits(cols.entropy[m], at.entropy[m])
    # gradients through the one-call head at per-token temperatures: the library's backward
    xg = x.double().clone().requires_grad_()
    out = era_torch.token_outputs(xg, y, ids, adv, temperature=temps.double(), **CFG)
    out[0].sum().backward()
    xr = x.double().clone().requires_grad_()
    z = xr / temps.double()[:, None]
    lp = torch.log_softmax(out[2][:, None] * z, -1).gather(-1, y[:, None])[:, 0]
    torch.where(ids >= 0, lp, torch.zeros_like(lp)).sum().backward()
    torch.testing.assert_close(xg.grad, xr.grad, rtol=1e-12, atol=1e-12)


def test_errors():
    x, y, ids, adv = batch()
    with pytest.raises(EraError, match="INVALID_VALUE"):
        era_torch.token_logprob_columns(x, y, temperature=torch.zeros(len(y)))
    with pytest.raises(EraError, match="INVALID_SHAPE"):
        era_torch.token_logprob_columns(x, y, temperature=torch.ones(3))
    with pytest.raises(EraError, match="INVALID_VALUE"):
        era_torch.token_logprob_columns(x, torch.full_like(y, 10_000))
    with pytest.raises(EraError, match="INVALID_VALUE"):
        era_torch.token_decide(torch.zeros(4), torch.tensor([0, 0, -2, 1]), torch.zeros(4))
    with pytest.raises(TypeError):
        era_torch.token_logprob_columns(x, y, inplace_backward="yes")


def test_compiles_with_fullgraph():
    x, y, ids, adv = batch()
    labels = torch.where(ids >= 0, y, -100)

    def step(x):
        cols = era_torch.token_logprob_columns(x, labels, k=2.0, sum_sq=True)
        dec = era_torch.token_decide(cols.entropy, ids, adv.float(), cols.columns, **CFG)
        return dec.logprobs.sum() + cols.sum_sq.sum()

    compiled = torch.compile(step, fullgraph=True, backend="eager")
    assert bits(compiled(x), step(x))
