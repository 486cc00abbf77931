"""era_torch.verl against the real verl (0.9.1, installed without its heavy dependencies):
the registered policy loss ``era`` through verl's own ``ppo_loss`` on the outputs of an
installed engine (a tiny randomly initialised Llama on CPU, padding-free nested batches,
per-sample temperatures), against a plain PyTorch transcription of the recipe, loss and
gradients; the engine's plain outputs against verl's own; the errors a misconfiguration
meets."""

import math
import types
import warnings

import pytest
import torch

verl = pytest.importorskip("verl")
transformers = pytest.importorskip("transformers")
pytest.importorskip("verl.workers.engine.fsdp.transformer_impl")

import era_torch.verl as ev  # noqa: E402
from tensordict import TensorDict  # noqa: E402
from verl.trainer.ppo.core_algos import get_policy_loss_fn  # noqa: E402
from verl.utils import tensordict_utils as tu  # noqa: E402
import verl.utils.torch_functional as verl_F  # noqa: E402
from verl.workers.config.actor import ActorConfig  # noqa: E402
from verl.workers.engine.base import EngineRegistry  # noqa: E402
from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead  # noqa: E402
from verl.workers.utils.losses import ppo_loss  # noqa: E402

VOCAB = 64


def tiny_model(seed=0):
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=32, max_position_embeddings=64)
    return transformers.AutoModelForCausalLM.from_config(cfg).float()


def engine(cls):
    """An engine object of ``cls`` with just what prepare_model_inputs/outputs read (no FSDP)."""
    eng = object.__new__(cls)
    eng.pad_to_length = False
    eng.use_ulysses_sp = False
    eng.engine_config = types.SimpleNamespace(entropy_checkpointing=False, entropy_from_logits_with_chunking=False)
    eng.compute_entropy_from_logits = verl_F.entropy_from_logits
    return eng


def batch(seed=1, prompts=(3, 4, 2, 5), responses=(6, 5, 7, 4), temperature=(0.7, 1.0, 1.3, 0.9)):
    g = torch.Generator().manual_seed(seed)
    p = [torch.randint(0, VOCAB, (n,), generator=g) for n in prompts]
    r = [torch.randint(0, VOCAB, (n,), generator=g) for n in responses]
    nt = lambda xs: torch.nested.nested_tensor(xs, layout=torch.jagged)  # noqa: E731
    ids = nt([torch.cat([a, b]) for a, b in zip(p, r)])
    mb = TensorDict({
        "input_ids": ids,
        "position_ids": nt([torch.arange(len(a) + len(b)) for a, b in zip(p, r)]),
        "prompts": nt(p),
        "responses": nt(r),
        "response_mask": nt([torch.ones(len(b), dtype=torch.int64) for b in r]),
        "advantages": nt([torch.full((len(b),), a) for b, a in zip(r, (0.8, 0.5, 1.2, -0.6))]),
        "old_log_probs": nt([-4.2 + 0.1 * torch.randn(len(b), generator=g) for b in r]),
        "temperature": torch.tensor(temperature),
    }, batch_size=[len(prompts)])
    tu.assign_non_tensor(mb, use_remove_padding=True, calculate_entropy=False, dp_size=1, batch_num_tokens=None,
                         global_batch_size=None)
    return mb, p, r


def reference(model, p, r, temperature, adv, old, k, lb, ub, rho=0.2, clip=0.2, clip_c=3.0):
    """The recipe in plain PyTorch: per response, entropies at the sampling temperature,
    the top-rho mean, the scale, log-probs at the scaled logits, A/c, PPO's clipped
    objective (dual clip for negative advantages), token-mean over the batch."""
    losses, scales = [], []
    for pi, ri, t, a, o in zip(p, r, temperature, adv, old):
        seq = torch.cat([pi, ri])[None]
        logits = model(input_ids=seq, use_cache=False).logits[0]
        z = logits[len(pi) - 1:len(pi) + len(ri) - 1] / t
        lp = torch.log_softmax(z, -1)
        h = -(lp.exp() * lp).sum(-1).detach()
        n_top = max(1, math.floor(rho * len(ri)))
        hresp = h.sort(descending=True).values[:n_top].mean()
        c = k if (a > 0 and hresp < lb) else (1 / k if (a > 0 and hresp > ub) else 1.0)
        logp = torch.log_softmax(c * z, -1).gather(-1, ri[:, None])[:, 0]
        a2 = a / c
        ratio = torch.exp(logp - o)
        l1 = -a2 * ratio
        l2 = -a2 * torch.clamp(ratio, 1 - clip, 1 + clip)
        lc = torch.maximum(l1, l2)
        if a2 < 0:
            lc = torch.minimum(torch.full_like(lc, -a2 * clip_c), lc)
        losses.append(lc)
        scales.append(c)
    return torch.cat(losses).mean(), scales


@pytest.fixture(scope="module")
def era_engine_cls():
    saved = {k: dict(v) for k, v in EngineRegistry._engines.get("language_model", {}).items()}
    wrapped = ev.install(k=2.0, vocab_topk=0)
    yield EngineRegistry._engines["language_model"]["fsdp"]["cuda"]
    for backend, by_device in saved.items():  # leave the registry as it was for other tests
        EngineRegistry._engines["language_model"][backend] = by_device
    assert wrapped


def run_update(model, eng_cls, mb, cfg):
    eng = engine(eng_cls)
    inputs, oargs = eng.prepare_model_inputs(mb)
    out = model(**inputs, use_cache=False)
    model_output = eng.prepare_model_outputs(out, oargs, mb, None)
    loss, metrics = ppo_loss(cfg, model_output, mb)
    return loss, metrics, model_output


def actor_config(**era):
    pl = ev.policy_loss_config_class()(**era)
    return ActorConfig(strategy="fsdp", rollout_n=1, ppo_micro_batch_size_per_gpu=4, policy_loss=pl,
                       use_torch_compile=False)


def test_the_loss_is_registered_and_configurable():
    assert get_policy_loss_fn("era") is ev.compute_policy_loss_era
    cfg = actor_config(era_k=3.0, era_lb=0.1, era_ub=2.5, era_topk=20)
    assert cfg.policy_loss.loss_mode == "era"
    assert (cfg.policy_loss.get("era_k"), cfg.policy_loss.get("era_topk")) == (3.0, 20)


def test_era_loss_through_ppo_loss_matches_the_recipe(era_engine_cls):
    mb, p, r = batch()
    temps = mb["temperature"].tolist()
    adv = [0.8, 0.5, 1.2, -0.6]
    old = [o for o in mb["old_log_probs"].unbind()]
    model = tiny_model()
    # thresholds between the responses' top-20% entropies, so that all three branches occur
    with torch.no_grad():
        _, _ = reference(model, p, r, temps, adv, old, 2.0, -1.0, 100.0)
        h = []
        for pi, ri, t in zip(p, r, temps):
            z = model(input_ids=torch.cat([pi, ri])[None], use_cache=False).logits[0][len(pi) - 1:len(pi) + len(ri) - 1] / t
            e = -(torch.softmax(z, -1) * torch.log_softmax(z, -1)).sum(-1)
            h.append(e.sort(descending=True).values[:max(1, math.floor(0.2 * len(ri)))].mean().item())
    pos = sorted(h[i] for i in range(4) if adv[i] > 0)
    lb, ub = (pos[0] + pos[1]) / 2, (pos[1] + pos[2]) / 2
    cfg = actor_config(era_k=2.0, era_lb=lb, era_ub=ub, era_topk=0)

    loss, metrics, model_output = run_update(model, era_engine_cls, mb, cfg)
    loss.backward()
    got = {n: q.grad.clone() for n, q in model.named_parameters()}

    model.zero_grad()
    want, scales = reference(model, p, r, temps, adv, old, 2.0, lb, ub)
    want.backward()
    assert sorted(set(scales)) == [0.5, 1.0, 2.0], scales
    torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-6)
    for n, q in model.named_parameters():
        torch.testing.assert_close(got[n], q.grad, rtol=1e-4, atol=1e-6, msg=n)
    value = lambda m: float(m.values[0] if hasattr(m, "values") else m)  # noqa: E731
    total = sum(len(x) for x in r)
    assert value(metrics["actor/era_sharpen"]) == pytest.approx(sum(len(x) for x, c in zip(r, scales) if c == 2.0) / total)
    assert value(metrics["actor/era_flatten"]) == pytest.approx(sum(len(x) for x, c in zip(r, scales) if c == 0.5) / total)
    assert "era_columns" in model_output and model_output["era_columns"].values().shape[-1] == 3


def test_plain_outputs_match_verls_own(era_engine_cls):
    mb, _, _ = batch(seed=3)
    tu.assign_non_tensor(mb, calculate_entropy=True, calculate_sum_pi_squared=True)
    del mb["advantages"]  # an old-log-prob pass: nothing is left for a loss
    model = tiny_model(1)
    ours = engine(era_engine_cls)
    theirs = engine(FSDPEngineWithLMHead)
    with torch.no_grad():
        inputs, oargs = ours.prepare_model_inputs(mb)
        out = model(**inputs, use_cache=False)
        a = ours.prepare_model_outputs(out, oargs, mb, None)
        b = theirs.prepare_model_outputs(out, oargs, mb, None)
    for key in ("log_probs", "entropy", "sum_pi_squared"):
        torch.testing.assert_close(a[key].values(), b[key].values(), rtol=1e-5, atol=1e-5, msg=key)
    assert ev._PENDING.item is None


def test_misconfigurations_raise(era_engine_cls):
    # no engine columns for this micro-batch
    ev._PENDING.item = None
    z = torch.zeros(2, 3)
    with pytest.raises(RuntimeError, match="install"):
        ev.compute_policy_loss_era(z, z, z, torch.ones(2, 3), config=actor_config())
    # columns computed with another k than the loss's
    mb, _, _ = batch()
    model = tiny_model()
    with pytest.raises(RuntimeError, match="era_k"):
        run_update(model, era_engine_cls, mb, actor_config(era_k=3.0))
    # fused kernels never materialise the logits: the engine keeps its own outputs and warns
    eng = engine(era_engine_cls)
    mb, _, _ = batch()
    tu.assign_non_tensor(mb, use_remove_padding=False)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        inputs, oargs = eng.prepare_model_inputs(mb)
        with torch.no_grad():
            out = model(**inputs, use_cache=False)
            eng.prepare_model_outputs(out, oargs, mb, None)
    assert any("use_remove_padding" in str(x.message) for x in w)
