"""Tests of the GRPO / GRPO-ERA example (grpo_era.py, grpo_core.py): the task and its
verifier, the held-out split, causal masking, the pass@k estimator, the ERA arm's use of
the token head against independent formulas, and a tiny run of every arm."""

import csv
import itertools
import math
import os
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grpo_core as core  # noqa: E402
import grpo_era as G  # noqa: E402

torch.set_num_threads(1)


# ------------------------------------------------------------------------------ task


def test_prompts_and_answers_spell_the_problem():
    a, b = np.array([7, 123, 999, 0]), np.array([45, 877, 999, 0])
    prompts, ans = core.encode(a, b, 3), core.answer(a, b, 3)
    assert [core.to_text(p) for p in prompts] == ["007+045=", "123+877=", "999+999=", "000+000="]
    assert [core.to_text(x) for x in ans] == ["0052", "1000", "1998", "0000"]
    assert core.verify(ans, a, b).all()


def test_verifier_rejects_wrong_answers():
    rng = np.random.default_rng(0)
    a, b = core.sample_train(rng, 500, 3)
    ans = core.answer(a, b, 3)
    assert core.verify(ans, a, b).all()
    for pos in range(4):  # any changed digit is wrong
        bad = ans.clone()
        bad[:, pos] = (bad[:, pos] + torch.as_tensor(rng.integers(1, 10, 500))) % 10
        assert not core.verify(bad, a, b).any()
    for tok in (core.PLUS, core.EQ):  # a non-digit token is wrong, even in a leading position
        bad = ans.clone()
        bad[:, 0] = tok
        assert not core.verify(bad, a, b).any()
    # random completions: the verifier agrees with a string comparison
    comp = torch.as_tensor(rng.integers(0, core.VOCAB, (4000, 4)))
    comp[:2000] = torch.where(torch.as_tensor(rng.random((2000, 4)) < 0.9), ans.repeat(4, 1), comp[:2000])
    aa, bb = np.tile(a, 8), np.tile(b, 8)
    expect = [core.to_text(c) == f"{x + y:04d}" for c, x, y in zip(comp, aa, bb)]
    got = core.verify(comp, aa, bb)
    assert got.tolist() == expect and 0 < got.sum() < len(got)


def test_held_out_problems_are_never_training_problems():
    a, b = core.test_set(3, 200)
    assert core.is_test(a, b, 3).all() and len(set(zip(a.tolist(), b.tolist()))) == 200
    a2, b2 = core.test_set(3, 200)
    assert (a == a2).all() and (b == b2).all()  # the same set every time
    ta, tb = core.sample_train(np.random.default_rng(1), 200_000, 3)
    assert not core.is_test(ta, tb, 3).any()
    assert not set(zip(ta.tolist(), tb.tolist())) & set(zip(a.tolist(), b.tolist()))
    ua, ub = np.random.default_rng(2).integers(0, 1000, (2, 200_000))
    frac = core.is_test(ua, ub, 3).mean()
    assert abs(frac - 1 / core.TEST_MOD) < 0.003  # the split holds out about 1 in 64 pairs


# ------------------------------------------------------------------------------ model


def test_causal_masking():
    torch.manual_seed(0)
    model = core.TinyGPT(3, 2, 32, 4).eval()
    x = torch.randint(0, core.VOCAB, (4, 12))
    base = model(x)
    for j in range(1, 12):
        y = x.clone()
        y[:, j] = (y[:, j] + 1) % core.VOCAB
        out = model(y)
        assert torch.equal(out[:, :j], base[:, :j]), j  # earlier positions see nothing later
        assert not torch.allclose(out[:, j:], base[:, j:])  # later ones do see the change


def test_sampling_is_seeded():
    torch.manual_seed(0)
    model = core.TinyGPT(3, 2, 32, 4).eval()
    p = core.encode(*core.sample_train(np.random.default_rng(0), 64, 3), 3)
    c1 = core.generate(model, p, 4, torch.Generator().manual_seed(5))
    c2 = core.generate(model, p, 4, torch.Generator().manual_seed(5))
    c3 = core.generate(model, p, 4, torch.Generator().manual_seed(6))
    assert torch.equal(c1, c2) and not torch.equal(c1, c3) and c1.shape == (64, 4)


# ------------------------------------------------------------------------------ estimators


@pytest.mark.parametrize("n", range(1, 8))
def test_pass_at_k_against_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(range(n), k))  # samples 0..c-1 are the correct ones
            brute = sum(any(i < c for i in s) for s in subsets) / len(subsets)
            assert core.pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12), (n, c, k)


def test_group_advantages():
    r = torch.tensor([[1.0, 0, 0, 1], [1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 0, 0]])
    adv = G.group_advantages(r).reshape(4, 4)
    assert torch.equal(adv[1], torch.zeros(4)) and torch.equal(adv[2], torch.zeros(4))
    for row, rew in ((0, r[0]), (3, r[3])):
        expect = (rew - rew.mean()) / (rew.std() + 1e-6)
        assert torch.allclose(adv[row], expect) and abs(float(adv[row].sum())) < 1e-5
    assert adv[3, 0] > 0 > adv[3, 1]


# ------------------------------------------------------------------------------ the ERA arm


def _era_batch(V=50, B=8, L=10, seed=0):
    """Logits with sharp (low-entropy), medium and near-uniform (entropy > 3) responses,
    advantages of both signs, so that every scale (k, 1, 1/k) occurs."""
    g = torch.Generator().manual_seed(seed)
    temp = torch.tensor([30.0, 30.0, 30.0, 1.0, 0.05, 0.05, 30.0, 0.05])[:B]  # logit scale per response
    logits = torch.randn(B, L, V, generator=g, dtype=torch.float64) * temp[:, None, None]
    labels = torch.randint(0, V, (B, L), generator=g)
    adv = torch.tensor([1.2, -0.7, 0.4, 0.9, 1.5, -1.1, 0.0, 0.3])[:B]
    return logits.float().requires_grad_(), labels, adv


def test_era_logprobs_are_log_softmax_of_the_scaled_logits():
    logits, labels, adv = _era_batch()
    t = G.policy_terms("grpo-era", logits, labels, adv)
    z = logits.detach().double()
    c = t["scale"].double()
    assert set(c.unique().tolist()) == {0.5, 1.0, 2.0}
    # log-probs: a plain log-softmax of c * logits at the labels, for the scales returned
    ref = torch.log_softmax(c[..., None] * z, -1).gather(-1, labels[..., None])[..., 0]
    torch.testing.assert_close(t["logp"].double(), ref, atol=2e-5, rtol=0)
    # the advantages the loss uses: each response's advantage divided by the scale
    torch.testing.assert_close(t["adv"].double(), adv.double()[:, None] / c, atol=1e-6, rtol=0)
    # entropies of softmax(logits) and the scale rule of docs/math.md#token-forward, recomputed
    lp = torch.log_softmax(z, -1)
    ent = -(lp.exp() * lp).sum(-1)
    torch.testing.assert_close(t["entropy"].double(), ent, atol=2e-5, rtol=0)
    fork = core.top_fraction_mean(ent, 0.2)[:, None].expand_as(ent)
    pos = (adv > 0)[:, None].expand_as(ent)
    want = torch.where(pos & (fork < 0.45), 2.0, torch.where(pos & (fork > 3.0), 0.5, 1.0)).double()
    assert torch.equal(c, want)
    # the gradient of the script's loss equals autograd through the same formula
    t["loss"].backward()
    zz = logits.detach().double().requires_grad_()
    ref = torch.log_softmax(c[..., None] * zz, -1).gather(-1, labels[..., None])[..., 0]
    (-(adv.double()[:, None] / c * ref).mean()).backward()
    torch.testing.assert_close(logits.grad.double(), zz.grad, atol=1e-6, rtol=0)


def test_forking_entropy_matches_the_library_response_entropy():
    import era_torch

    logits, labels, adv = _era_batch(V=12, B=6, L=7, seed=3)
    B, L, V = logits.shape
    ids = torch.arange(B).repeat_interleave(L)
    out = era_torch.token_outputs(logits.detach().reshape(-1, V), labels.reshape(-1), ids,
                                  adv.repeat_interleave(L), **G.ERA)
    mine = core.top_fraction_mean(out[1].reshape(B, L), G.FORK_FRACTION)
    torch.testing.assert_close(out[4].reshape(B, L)[:, 0], mine)


def test_plain_arms_use_log_softmax_and_the_entropy_bonus():
    logits, labels, adv = _era_batch(V=12, B=6, L=5)
    lp = torch.log_softmax(logits.detach(), -1)
    plain = G.policy_terms("grpo", logits, labels, adv)
    bonus = G.policy_terms("grpo-entropy", logits, labels, adv)
    torch.testing.assert_close(plain["logp"], lp.gather(-1, labels[..., None])[..., 0])
    assert torch.equal(plain["scale"], torch.ones(6, 5))
    h = -(lp.exp() * lp).sum(-1).mean()
    torch.testing.assert_close(bonus["loss"], plain["loss"] - G.ENTROPY_COEF * h)
    with pytest.raises(ValueError):
        G.policy_terms("ppo", logits, labels, adv)


# ------------------------------------------------------------------------------ runs

TINY = replace(G.Config(), d_model=32, sft_steps=40, sft_target=1.0, steps=6, prompts=4, group=4, eval_every=3,
               eval_problems=16, eval_samples=8)


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_tiny_run_of_every_arm_logs_finite_values(tmp_path):
    out = str(tmp_path)
    for arm in G.ARMS:
        G.run(TINY, arm, 0, out, log=lambda *a: None)
    rows = {arm: _rows(os.path.join(out, f"{arm}_seed0.csv")) for arm in G.ARMS}
    for arm, rs in rows.items():
        assert [int(r["step"]) for r in rs] == list(range(TINY.steps + 1))
        for r in rs[:-1]:
            for key in ("train_reward", "entropy", "fork_entropy", "frac_scaled", "loss", "wall_s"):
                assert math.isfinite(float(r[key])), (arm, key)
            assert 0 <= float(r["train_reward"]) <= 1 and float(r["fork_entropy"]) >= float(r["entropy"]) - 1e-6
        evals = [r for r in rs if r["pass1"] != ""]
        assert [int(r["step"]) for r in evals] == [0, 3, 6]
        for r in evals:
            assert 0 <= float(r["pass1"]) <= float(r["passk"]) <= 1 and 0 <= float(r["greedy"]) <= 1
        if arm != "grpo-era":
            assert all(float(r["frac_scaled"]) == 0 for r in rs[:-1])
    # every arm starts from the same SFT model with the same prompts and samples
    first = {arm: (rs[0]["pass1"], rs[0]["train_reward"]) for arm, rs in rows.items()}
    assert len(set(first.values())) == 1
    h0 = [float(rs[0]["entropy"]) for rs in rows.values()]  # the library's entropy vs torch's
    assert max(h0) - min(h0) < 1e-4
    # a rerun (SFT now from the cache) gives the same log, wall times aside
    G.run(TINY, "grpo-era", 0, out + "/again", log=lambda *a: None)
    G.run(TINY, "grpo-era", 0, out, log=lambda *a: None)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "wall_s"} for r in rs]  # noqa: E731
    assert strip(_rows(os.path.join(out, "grpo-era_seed0.csv"))) == strip(rows["grpo-era"])
    assert strip(_rows(os.path.join(out, "again", "grpo-era_seed0.csv"))) == strip(rows["grpo-era"])
    # the report: a table row per arm, RESULTS.md and the plot
    text = G.report(out)
    assert all(f"| {arm} | 1 |" in text for arm in G.ARMS)
    assert os.path.getsize(os.path.join(out, "grpo_era.png")) > 10_000
    assert os.path.exists(os.path.join(out, "RESULTS.md"))


def test_bootstrap_interval_and_estimate():
    lo, hi = G.bootstrap_ci([0.2, 0.4, 0.6])
    assert 0.2 <= lo < 0.4 < hi <= 0.6
    assert G.bootstrap_ci([0.5]) == (0.5, 0.5)
    cfg = G.Config()
    one = G.estimate_s(cfg, 3, 3, jobs=1)
    two = G.estimate_s(cfg, 3, 3, jobs=2)
    assert two < one and 60 * 60 < two < 90 * 60  # the default compare is sized for about 75 min
