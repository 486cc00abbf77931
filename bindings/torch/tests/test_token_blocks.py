"""The token head over logits that are never whole (docs/math.md#vocabulary-blocks):
era_torch.fused_token_columns against logits computed whole and passed to
era_torch.token_logprob_columns (values and the gradients of hidden, weight and bias;
chunks that do not divide V, a bias, a logit scale, a soft cap, a top-K, ignored tokens,
f64 to 1e-12, f32 and bf16 within the head's precision), the largest allocation of the
fused path, and era_torch.sharded_token_logprob_columns / fused_token_columns(group=)
across 1, 2 and 4 gloo processes against the unsharded head, with the collectives counted.
"""

import os
import socket
import subprocess
import sys

import pytest
import torch

import era_torch

N, H, V = 24, 16, 53


def _case(dtype=torch.float64, seed=0, v=V):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(N, H, generator=g, dtype=torch.float64).to(dtype)
    weight = (0.7 * torch.randn(v, H, generator=g, dtype=torch.float64)).to(dtype)
    bias = (0.3 * torch.randn(v, generator=g, dtype=torch.float64)).to(dtype)
    labels = torch.randint(0, v, (N,), generator=g)
    labels[3] = -100
    labels[5] = v - 1
    gc = torch.randn(N, 3, generator=g, dtype=torch.float64)
    ge = torch.randn(N, generator=g, dtype=torch.float64)
    return hidden, weight, bias, labels, gc, ge


def _whole_logits(hidden, weight, bias, logit_scale, softcap):
    z = hidden @ weight.T
    if bias is not None:
        z = z + bias
    if logit_scale is not None:
        z = z * logit_scale
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    return z


def _both(dtype, chunk, *, use_bias=True, logit_scale=None, softcap=None, topk=0, temperature=0.8, seed=0):
    hidden, weight, bias, labels, gc, ge = _case(dtype, seed)
    bias = bias if use_bias else None
    outs = []
    for fused in (True, False):
        ins = [t.detach().clone().requires_grad_(True) if t is not None else None for t in (hidden, weight, bias)]
        kw = dict(temperature=temperature, vocab_topk=topk, sum_sq=True)
        if fused:
            r = era_torch.fused_token_columns(ins[0], ins[1], labels, bias=ins[2], logit_scale=logit_scale,
                                              softcap=softcap, chunk_size=chunk, **kw)
        else:
            r = era_torch.token_logprob_columns(_whole_logits(ins[0], ins[1], ins[2], logit_scale, softcap), labels, **kw)
        dt = r.columns.dtype
        loss = (r.columns * gc.to(dt)).sum() + (r.entropy * ge.to(dt)).sum()
        loss.backward()
        outs.append((r, [t.grad if t is not None else None for t in ins]))
    return outs


@pytest.mark.parametrize("chunk", [7, 16, 53, 100])
@pytest.mark.parametrize("topk", [0, 5])
def test_fused_f64_matches_whole_logits(chunk, topk):
    (f, fg), (w, wg) = _both(torch.float64, chunk, topk=topk)
    torch.testing.assert_close(f.columns, w.columns, rtol=0, atol=1e-12)
    torch.testing.assert_close(f.entropy, w.entropy, rtol=0, atol=1e-12)
    torch.testing.assert_close(f.sum_sq, w.sum_sq, rtol=0, atol=1e-12)
    assert (f.columns[3] == 0).all(), "an ignored token's columns are 0"
    for a, b, name in zip(fg, wg, ("hidden", "weight", "bias")):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-11, msg=f"d {name}")


@pytest.mark.parametrize("softcap,logit_scale", [(None, 0.5), (3.0, None), (2.5, 1.7)])
def test_fused_logit_scale_and_soft_cap(softcap, logit_scale):
    (f, fg), (w, wg) = _both(torch.float64, 11, logit_scale=logit_scale, softcap=softcap, use_bias=False)
    torch.testing.assert_close(f.columns, w.columns, rtol=0, atol=1e-12)
    torch.testing.assert_close(f.entropy, w.entropy, rtol=0, atol=1e-12)
    assert fg[2] is None
    for a, b in zip(fg[:2], wg[:2]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-11)


@pytest.mark.parametrize("dtype,grad_rel", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
def test_fused_low_precision(dtype, grad_rel):
    # the head reads the same rounded logits either way (values in float32 to a few ulp);
    # the gradients of hidden, weight and bias are accumulated in the inputs' dtype, chunk by
    # chunk against whole: within a few units of bfloat16's 2^-8 relative precision
    (f, fg), (w, wg) = _both(dtype, 20, topk=4)
    assert f.columns.dtype == torch.float32
    torch.testing.assert_close(f.columns, w.columns, rtol=0, atol=1e-5)
    torch.testing.assert_close(f.entropy, w.entropy, rtol=0, atol=1e-5)
    for a, b in zip(fg, wg):
        err = (a.float() - b.float()).abs().max().item()
        assert err <= grad_rel * b.float().abs().max().item(), (dtype, err)


def test_fused_per_token_temperature_and_batch_shape():
    hidden, weight, _, labels, _, _ = _case(torch.float64, 3)
    temp = torch.linspace(0.5, 1.5, N, dtype=torch.float64)
    f = era_torch.fused_token_columns(hidden.reshape(4, 6, H), weight, labels.reshape(4, 6), temperature=temp.reshape(4, 6),
                                      chunk_size=9)
    w = era_torch.token_logprob_columns(hidden @ weight.T, labels, temperature=temp)
    assert f.columns.shape == (4, 6, 3) and f.entropy.shape == (4, 6) and f.sum_sq is None
    torch.testing.assert_close(f.columns.reshape(N, 3), w.columns, rtol=0, atol=1e-12)


def test_fused_never_allocates_the_logits():
    n, h, v, chunk = 256, 16, 20000, 1000
    hidden = torch.randn(n, h, requires_grad=True)
    weight = torch.randn(v, h, requires_grad=True)
    labels = torch.randint(0, v, (n,))
    whole = n * v * 4
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        r = era_torch.fused_token_columns(hidden, weight, labels, chunk_size=chunk)
        (r.columns[:, 0].sum() + r.entropy.sum()).backward()
    largest = max((e.cpu_memory_usage for e in prof.events() if e.cpu_memory_usage > 0), default=0)
    # an op's memory counts its children (a chunk, its gradient, the weight's gradient of
    # v x h): a few chunks at most, never the n x v logits
    assert largest < whole / 4, (largest, whole)


def test_fused_rejects_bad_arguments():
    hidden, weight, bias, labels, _, _ = _case()
    with pytest.raises(era_torch.EraError):
        era_torch.fused_token_columns(hidden, weight[:, :5], labels)
    with pytest.raises(era_torch.EraError):
        era_torch.fused_token_columns(hidden, weight, labels, bias=bias[:5])
    with pytest.raises(era_torch.EraError):
        era_torch.fused_token_columns(hidden, weight, labels, chunk_size=0)
    with pytest.raises(era_torch.EraError):
        era_torch.fused_token_columns(hidden, weight, labels, softcap=0.0)
    with pytest.raises(era_torch.EraError):
        era_torch.fused_token_columns(hidden, weight, labels[:5])
    bad = labels.clone()
    bad[0] = V
    with pytest.raises(era_torch.EraError, match="INVALID_VALUE|outside"):
        era_torch.fused_token_columns(hidden, weight, bad)


def test_sharded_single_process_with_padding():
    # one process: the logits as one block of a padded vocabulary
    hidden, weight, _, labels, gc, ge = _case(torch.float64, 5)
    z = (hidden @ weight.T).requires_grad_(True)
    padded = torch.cat([z, torch.full((N, 3), float("nan"), dtype=torch.float64)], dim=1)
    s = era_torch.sharded_token_logprob_columns(padded, labels, vocab_valid=V, vocab_topk=6)
    w = era_torch.token_logprob_columns(z, labels, vocab_topk=6)
    torch.testing.assert_close(s.columns, w.columns, rtol=0, atol=1e-12)
    (gs,) = torch.autograd.grad((s.columns * gc).sum() + (s.entropy * ge).sum(), z)
    (gw,) = torch.autograd.grad((w.columns * gc).sum() + (w.entropy * ge).sum(), z)
    torch.testing.assert_close(gs, gw, rtol=0, atol=1e-12)


# ------------------------------------------------------------------ several processes (gloo)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("world,padded_v,topk", [(1, V, 0), (2, 54, 4), (4, 56, 3)])
def test_sharded_across_gloo_processes(world, padded_v, topk, tmp_path):
    hidden, weight, _, labels, gc, ge = _case(torch.float64, 7)
    z = (hidden @ weight.T).requires_grad_(True)
    w = era_torch.token_logprob_columns(z, labels, vocab_topk=topk)
    (gw,) = torch.autograd.grad((w.columns * gc).sum() + (w.entropy * ge).sum(), z)
    h = hidden.clone().requires_grad_(True)
    wt = weight.clone().requires_grad_(True)
    r = era_torch.token_logprob_columns(h @ wt.T, labels, vocab_topk=topk)
    ((r.columns * gc).sum() + (r.entropy * ge).sum()).backward()

    port = _free_port()
    worker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gloo_worker.py")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    procs = [subprocess.Popen([sys.executable, worker, str(rank), str(world), str(port), str(padded_v), str(topk),
                               str(tmp_path)], env=env, stderr=subprocess.PIPE, text=True) for rank in range(world)]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
    results = [torch.load(tmp_path / f"{rank}.pt") for rank in range(world)]
    gz_all = torch.cat([res[3] for res in results], dim=1)
    torch.testing.assert_close(gz_all[:, :V], gw, rtol=0, atol=1e-12)
    assert (gz_all[:, V:] == 0).all(), "padding gets no gradient"
    gw_all = torch.cat([res[8] for res in results])
    torch.testing.assert_close(gw_all[:V], wt.grad, rtol=0, atol=1e-11)
    for rank, cols, ent, _, fwd, bwd, fcols, hgrad, _ in results:
        torch.testing.assert_close(cols, w.columns, rtol=0, atol=1e-12)
        torch.testing.assert_close(ent, w.entropy, rtol=0, atol=1e-12)
        torch.testing.assert_close(fcols, w.columns, rtol=0, atol=1e-12)
        torch.testing.assert_close(hgrad, h.grad, rtol=0, atol=1e-11)
        if world > 1:
            assert fwd["all_reduce"] == 2 and fwd["all_gather"] == (1 if topk else 0), fwd
        assert bwd == {"all_reduce": 0, "all_gather": 0}, bwd
