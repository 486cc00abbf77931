"""era_torch against era_jax on the same inputs: both bindings are thin over the same C ABI,
so every value and gradient must be the same, bit for bit. era_jax hands XLA's contiguous
buffers over; era_torch is given contiguous, strided and permuted views of the same values
(the library's kernels read strided rows where they lie, with the same arithmetic). The
delta learner is the library's own in era_torch and a jax.numpy transcription in era_jax:
their trajectories must agree to rounding."""

import jax
import numpy as np
import pytest
import torch

import era_jax
import era_torch

from conftest import layouts

jax.config.update("jax_enable_x64", True)  # float64 arrays stay float64 (this process runs no other JAX code)

DTYPES = [torch.float64, torch.float32]


def same(t, j, dtype, what):
    a, b = t.detach().numpy(), np.asarray(j)
    assert a.dtype == b.dtype, f"{what}: era_torch gives {a.dtype}, era_jax {b.dtype}"
    np.testing.assert_array_equal(a, b, err_msg=f"{what} ({dtype})")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("per_row", [False, True])
def test_gaussian_head(gen, dtype, per_row):
    rows, dim, h0 = 9, 5, -5.0
    z0 = (torch.randn(rows, dim, generator=gen, dtype=torch.float64) * 3).to(dtype)
    d0 = (torch.rand(rows, generator=gen, dtype=torch.float64) * 2 - 1 if per_row else torch.tensor(0.7, dtype=torch.float64)).to(dtype)
    g = torch.randn(rows, dim, generator=gen, dtype=torch.float64).to(dtype)
    kw = dict(target_entropy=h0, log_std_min=-3.0, log_std_max=1.0)

    def jax_head(z, d):
        return era_jax.gaussian_log_std(z, delta=d, **kw)

    out_j, vjp = jax.vjp(jax_head, z0.numpy(), d0.numpy())
    gz_j, gd_j = vjp(g.numpy())
    for name, z in layouts(z0).items():
        z = z.requires_grad_(True)
        d = d0.clone().requires_grad_(True)
        out = era_torch.gaussian_log_std(z, delta=d, **kw)
        gz, gd = torch.autograd.grad(out, (z, d), g)
        same(out, out_j, dtype, f"log_std ({name})")
        same(gz, gz_j, dtype, f"d/dz ({name})")
        same(gd, gd_j, dtype, f"d/ddelta ({name})")
    # the clip must be active somewhere, so that the masked backward is compared too
    assert (out_j == kw["log_std_min"]).any() and (out_j > kw["log_std_min"]).any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_head(gen, dtype):
    z0 = (torch.randn(7, 11, generator=gen, dtype=torch.float64) * 4).to(dtype)
    g = torch.randn(7, 11, generator=gen, dtype=torch.float64).to(dtype)
    kw = dict(target_entropy=1.3, tau=5.0)
    out_j, vjp = jax.vjp(lambda z: era_jax.softmax_logits(z, **kw), z0.numpy())
    (gz_j,) = vjp(g.numpy())
    for name, z in layouts(z0).items():
        z = z.requires_grad_(True)
        out = era_torch.softmax_logits(z, **kw)
        (gz,) = torch.autograd.grad(out, (z,), g)
        same(out, out_j, dtype, f"logits ({name})")
        same(gz, gz_j, dtype, f"d/dz ({name})")


def token_inputs(gen, dtype, vocab):
    """Four responses of six tokens in a [4, 6] batch, one of them spread over two rows,
    with masked tokens: confident responses with positive advantages (sharpened), near-uniform
    ones with positive advantages (flattened) and the rest unscaled."""
    shape = (4, 6)
    sharp = torch.tensor([40.0, 0.05, 1.0, 40.0], dtype=torch.float64).view(4, 1, 1)
    logits = (torch.randn(*shape, vocab, generator=gen, dtype=torch.float64) * sharp).to(dtype)
    labels = torch.randint(0, vocab, shape, generator=gen)
    ids = torch.tensor([[0, 0, 0, 3, 3, -1], [1, 1, 1, 1, -1, 1], [2, 2, 2, 2, 2, 2], [3, 3, 3, 0, 0, -1]])
    adv = torch.tensor([0.8, 0.5, 0.3, -0.9], dtype=torch.float64)
    advantages = adv[ids.clamp(min=0)].where(ids >= 0, torch.zeros(()))
    return logits, labels, ids, advantages


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("topk", [0, 5])
def test_token_head(gen, dtype, topk):
    vocab = 48  # ln 48 = 3.87 > omega_high: the flattening branch can fire
    logits0, labels, ids, adv0 = token_inputs(gen, dtype, vocab)
    out_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    adv0 = adv0.to(out_dtype)
    g_logp = torch.randn(ids.shape, generator=gen, dtype=torch.float64).to(out_dtype)
    g_adv = torch.randn(ids.shape, generator=gen, dtype=torch.float64).to(out_dtype)
    cfg = dict(k=2.0, omega_low=0.45, omega_high=3.0, top_fraction=0.2, temperature=1.0,
               advantage_scaling=True, vocab_topk=topk)

    def jax_head(logits, adv):
        logp, ent, scale, adv_out = era_jax.token_logprobs(logits, labels.numpy(), ids.numpy(), adv, **cfg)
        return (logp, adv_out), (ent, scale)

    (logp_j, adv_j), vjp, (ent_j, scale_j) = jax.vjp(jax_head, logits0.numpy(), adv0.numpy(), has_aux=True)
    glog_j, gadv_j = vjp((g_logp.numpy(), g_adv.numpy()))
    assert set(np.unique(np.asarray(scale_j))) == {0.5, 1.0, 2.0}, "every scale branch is compared"
    for name, logits in layouts(logits0).items():
        logits = logits.requires_grad_(True)
        adv = adv0.clone().requires_grad_(True)
        logp, ent, scale, adv_out = era_torch.token_logprobs(logits, labels, ids, adv, **cfg)
        glog, gadv = torch.autograd.grad((logp, adv_out), (logits, adv), (g_logp, g_adv))
        for what, t, j in (("logprobs", logp, logp_j), ("entropy", ent, ent_j), ("scale", scale, scale_j),
                           ("advantages", adv_out, adv_j), ("d/dlogits", glog, glog_j), ("d/dadvantages", gadv, gadv_j)):
            same(t, j, dtype, f"{what} ({name})")


@pytest.mark.parametrize("dtype", DTYPES)
def test_entropies(gen, dtype):
    log_std = (torch.randn(5, 4, generator=gen, dtype=torch.float64) - 1).to(dtype)
    mean = torch.randn(5, 4, generator=gen, dtype=torch.float64).to(dtype)
    logits = (torch.randn(5, 9, generator=gen, dtype=torch.float64) * 3).to(dtype)
    for name in ("contiguous", "strided", "permuted"):
        s, m, x = layouts(log_std)[name], layouts(mean)[name], layouts(logits)[name]
        same(era_torch.gaussian_entropy(s), era_jax.gaussian_entropy(log_std.numpy()), dtype, f"gaussian ({name})")
        same(era_torch.softmax_entropy(x, temperature=1.0), era_jax.softmax_entropy(logits.numpy()), dtype,
              f"softmax ({name})")
        same(era_torch.softmax_entropy(x, temperature=0.7), era_jax.token_entropy(logits.numpy(), temperature=0.7),
              dtype, f"token entropy at T = 0.7 ({name})")
        for lo, hi in ((-1.0, 1.0), (-0.5, float("inf"))):
            same(era_torch.truncated_normal_entropy(m, s, lo, hi),
                  era_jax.truncated_normal_entropy(mean.numpy(), log_std.numpy(), lo, hi), dtype,
                  f"truncated normal on [{lo}, {hi}] ({name})")


@pytest.mark.parametrize("optimizer, lr", [("adam", 0.5), ("sgd", 0.5)])
def test_delta_learner(optimizer, lr):
    dim, h0 = 3, -3.0
    torch_learner = era_torch.DeltaLearner(dim=dim, target_entropy=h0, optimizer=optimizer, lr=lr)
    state = era_jax.delta_init(dtype=np.float64)
    rng = np.random.default_rng(7)
    # entropies above, at and far below the target: the last drive delta up into the feasibility clamp
    for e in np.concatenate([rng.normal(-2.0, 0.5, 20), [h0] * 3, rng.normal(-30.0, 1.0, 60)]):
        d_torch = torch_learner.update(float(e))
        state = era_jax.delta_update(state, e, target_entropy=h0, dim=dim, optimizer=optimizer, lr=lr)
        np.testing.assert_allclose(d_torch, float(state.delta), rtol=1e-12, atol=1e-12)
    assert d_torch == pytest.approx(era_jax.max_delta(target_entropy=h0, dim=dim), abs=1e-12), "the clamp was reached"
