"""era_torch.trl.EraGRPOTrainer against the real TRL (1.16.0): a tiny randomly initialised
Llama (built from a config, no download) with a tokenizer built in code trains a few GRPO
steps on CPU with a toy verifiable reward, with and without ERA; ERA's statistics are logged
and the losses are finite. The trainer's plain log-probs and entropies agree with TRL's fused
LM head, and the loss's log-probs and advantages are the recipe's."""

import json
import math
import os

import pytest
import torch

trl = pytest.importorskip("trl")
transformers = pytest.importorskip("transformers")
datasets = pytest.importorskip("datasets")
tokenizers = pytest.importorskip("tokenizers")

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from era_torch.trl import EraGRPOTrainer  # noqa: E402

WORDS = [f"w{i}" for i in range(60)]


def tokenizer():
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, **{w: i + 4 for i, w in enumerate(WORDS)}}
    tk = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>",
                                               bos_token="<bos>", unk_token="<unk>")
    tok.padding_side = "left"
    return tok


def model(seed=0):
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                   num_key_value_heads=2, intermediate_size=32, max_position_embeddings=64,
                                   pad_token_id=0, eos_token_id=1, bos_token_id=2)
    m = transformers.AutoModelForCausalLM.from_config(cfg)
    m.generation_config.pad_token_id = 0
    m.generation_config.eos_token_id = 1
    return m


def reward_w7(completions, **kwargs):
    """A verifiable toy reward: how often the completion says w7."""
    return [float(c.split().count("w7")) for c in completions]


def make(cls, tmp_path, **kw):
    args = trl.GRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, fp16=False,
                          per_device_train_batch_size=4, num_generations=4, max_completion_length=8, max_steps=3,
                          logging_steps=1, report_to="none", save_strategy="no", learning_rate=1e-3,
                          temperature=0.9, beta=0.0, seed=0, dataloader_num_workers=0)
    ds = datasets.Dataset.from_dict({"prompt": [" ".join(WORDS[i:i + 3]) for i in range(16)]})
    return cls(model=model(), reward_funcs=reward_w7, args=args, train_dataset=ds, processing_class=tokenizer(), **kw)


@pytest.mark.parametrize("era", [False, True])
def test_a_few_grpo_steps(tmp_path, era):
    if era:
        # thresholds around a random 64-word model's entropies (about 4.1 nats), so that decisions happen
        trainer = make(EraGRPOTrainer, tmp_path, era_k=2.0, era_lb=4.0, era_ub=4.12)
    else:
        trainer = make(trl.GRPOTrainer, tmp_path)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 3
    assert all(math.isfinite(h["loss"]) for h in logs), json.dumps(logs)
    if era:
        for h in logs:
            assert 0.0 <= h["era/sharpen"] <= 1.0 and 0.0 <= h["era/flatten"] <= 1.0
            assert 3.5 < h["era/response_entropy"] < math.log(64) + 1e-6
        assert any(h["era/sharpen"] + h["era/flatten"] > 0 for h in logs), "no decision in three steps"
    else:
        assert not any("era/sharpen" in h for h in logs)


def test_plain_log_probs_agree_with_trls_fused_head(tmp_path):
    ours = make(EraGRPOTrainer, tmp_path)
    theirs = make(trl.GRPOTrainer, tmp_path)
    theirs.model.load_state_dict(ours.model.state_dict())
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 64, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[0, :2] = 0
    a = ours._get_per_token_logps_and_entropies(ours.model, ids, mask, 5, compute_entropy=True)
    b = theirs._get_per_token_logps_and_entropies(theirs.model, ids, mask, 5, compute_entropy=True)
    torch.testing.assert_close(a[0], b[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a[1], b[1], rtol=1e-5, atol=1e-5)


def test_the_loss_sees_the_recipes_log_probs_and_advantages(tmp_path):
    trainer = make(EraGRPOTrainer, tmp_path, era_k=2.0, era_lb=4.0, era_ub=4.12)
    m = trainer.model
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(4, 64, (4, 10), generator=g)
    keep = 6
    cmask = torch.ones(4, keep, dtype=torch.int64)
    cmask[1, 4:] = 0
    adv = torch.tensor([0.7, 0.3, -0.4, 1.1])
    inputs = {"completion_mask": cmask, "advantages": adv}
    trainer._era_inputs = inputs
    try:
        logps, ent, _ = trainer._get_per_token_logps_and_entropies(m, ids, torch.ones_like(ids), keep, compute_entropy=True)
    finally:
        trainer._era_inputs = None
    # the recipe in PyTorch
    with torch.no_grad():
        z = m(input_ids=ids).logits[:, -keep - 1:-1] / 0.9
        lp = torch.log_softmax(z, -1)
        h = -(lp.exp() * lp).sum(-1)
    labels = ids[:, -keep:]
    for b in range(4):
        valid = cmask[b].bool()
        hs = h[b][valid].sort(descending=True).values
        hresp = hs[:max(1, math.floor(0.2 * int(valid.sum())))].mean()
        c = 2.0 if (adv[b] > 0 and hresp < 4.0) else (0.5 if (adv[b] > 0 and hresp > 4.12) else 1.0)
        want = torch.log_softmax(c * z[b], -1).gather(-1, labels[b][:, None])[:, 0]
        torch.testing.assert_close(logps[b][valid], want[valid].float(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(inputs["advantages"][b][valid], torch.full((int(valid.sum()),), float(adv[b] / c)))
    torch.testing.assert_close(ent, h.float(), rtol=1e-5, atol=1e-5)


def test_the_fused_head_never_makes_the_logits_and_agrees_with_the_ordinary_head(tmp_path):
    fused = make(EraGRPOTrainer, tmp_path, era_chunk_size=10)
    plain = make(EraGRPOTrainer, tmp_path, era_fused_head=False)
    plain.model.load_state_dict(fused.model.state_dict())

    def no_logits(*a, **k):
        raise AssertionError("the fused head must not call lm_head")

    fused.model.lm_head.forward = no_logits
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(4, 64, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    a = fused._get_per_token_logps_and_entropies(fused.model, ids, mask, 5, compute_entropy=True)
    b = plain._get_per_token_logps_and_entropies(plain.model, ids, mask, 5, compute_entropy=True)
    torch.testing.assert_close(a[0], b[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a[1], b[1], rtol=1e-5, atol=1e-5)
    (a[0].sum() + a[1].sum()).backward()
    (b[0].sum() + b[1].sum()).backward()
    for (name, p), q in zip(fused.model.named_parameters(), plain.model.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=name)
