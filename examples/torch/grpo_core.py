"""The pieces of grpo_era.py that do not depend on the arm: the addition task and its
verifier, the held-out split, a small decoder-only transformer, sampling, supervised
pretraining, and the pass@k estimator."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

PLUS, EQ = 10, 11  # tokens 0-9 are the digits
VOCAB = 12
TEST_MOD = 64  # 1 in 64 operand pairs is held out (never a training problem)
TEST_SEED = 20260  # the held-out problems are the same for every seed and arm

# ------------------------------------------------------------------------------ the task


def _split_hash(a: np.ndarray, b: np.ndarray, width: int) -> np.ndarray:
    """splitmix64 of the pair's key ``a * 10^width + b`` (uint64, wrapping)."""
    with np.errstate(over="ignore"):
        z = np.asarray(a, np.uint64) * np.uint64(10**width) + np.asarray(b, np.uint64)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def is_test(a, b, width: int) -> np.ndarray:
    """Whether each problem ``a + b`` belongs to the held-out split."""
    return _split_hash(a, b, width) % np.uint64(TEST_MOD) == 0


def sample_train(rng: np.random.Generator, n: int, width: int):
    """``n`` training problems: operands uniform in ``[0, 10^width)``, held-out pairs redrawn."""
    a = rng.integers(0, 10**width, n)
    b = rng.integers(0, 10**width, n)
    while True:
        bad = is_test(a, b, width)
        if not bad.any():
            return a, b
        a[bad] = rng.integers(0, 10**width, int(bad.sum()))
        b[bad] = rng.integers(0, 10**width, int(bad.sum()))


def test_set(width: int, n: int):
    """The first ``n`` distinct held-out problems of a fixed stream (same for every run)."""
    rng = np.random.default_rng(TEST_SEED)
    seen, out = set(), []
    while len(out) < n:
        a = rng.integers(0, 10**width, 64 * n)
        b = rng.integers(0, 10**width, 64 * n)
        for x, y in zip(a[is_test(a, b, width)], b[is_test(a, b, width)]):
            if (int(x), int(y)) not in seen and len(out) < n:
                seen.add((int(x), int(y)))
                out.append((int(x), int(y)))
    arr = np.array(out, dtype=np.int64)
    return arr[:, 0], arr[:, 1]


def digits(x, w: int) -> np.ndarray:
    """``[n, w]`` decimal digits of ``x``, most significant first, zero-padded."""
    return (np.asarray(x, np.int64)[:, None] // 10 ** np.arange(w - 1, -1, -1)) % 10


def encode(a, b, width: int) -> torch.Tensor:
    """Prompts ``"aaa+bbb="`` as tokens ``[n, 2*width + 2]``."""
    n = len(a)
    cols = [digits(a, width), np.full((n, 1), PLUS), digits(b, width), np.full((n, 1), EQ)]
    return torch.as_tensor(np.concatenate(cols, 1), dtype=torch.long)


def answer(a, b, width: int) -> torch.Tensor:
    """The reference completions: the sum's ``width + 1`` digits."""
    return torch.as_tensor(digits(np.asarray(a) + np.asarray(b), width + 1), dtype=torch.long)


def verify(completions: torch.Tensor, a, b) -> np.ndarray:
    """The verifier: a completion is correct iff all its tokens are digits and, read as a
    decimal number, it equals ``a + b``."""
    c = completions.numpy().astype(np.int64)
    ok = (c < 10).all(1)
    value = (np.where(c < 10, c, 0) * 10 ** np.arange(c.shape[1] - 1, -1, -1)).sum(1)
    return ok & (value == np.asarray(a) + np.asarray(b))


def to_text(tokens) -> str:
    return "".join("+" if t == PLUS else "=" if t == EQ else str(int(t)) for t in tokens)


# ------------------------------------------------------------------------------ the model


class Block(nn.Module):
    """Pre-norm transformer block: causal multi-head self-attention, then a 4x GELU MLP."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # position t sees 0..t only
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, D))
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    """Decoder-only transformer over the task's 12 tokens; logits ``[B, T, VOCAB]``."""

    def __init__(self, width: int, layers: int, d_model: int, heads: int):
        super().__init__()
        self.tok = nn.Embedding(VOCAB, d_model)
        self.pos = nn.Embedding(3 * width + 3, d_model)
        self.blocks = nn.ModuleList(Block(d_model, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, VOCAB)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, tokens):
        x = self.tok(tokens) + self.pos(torch.arange(tokens.shape[1]))
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln(x))


@torch.no_grad()
def generate(model, prompts, n_new: int, gen: torch.Generator, greedy: bool = False, temperature: float = 1.0):
    """``n_new`` tokens after each prompt: sampled from ``softmax(logits / temperature)`` with
    ``gen``, or greedy. Returns the completions ``[B, n_new]``."""
    seq = prompts
    for _ in range(n_new):
        logits = model(seq)[:, -1].float()
        if greedy:
            nxt = logits.argmax(-1, keepdim=True)
        else:
            nxt = torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=gen)
        seq = torch.cat([seq, nxt], 1)
    return seq[:, prompts.shape[1]:]


def supervised(model, width: int, max_steps: int, batch: int, lr: float, rng: np.random.Generator,
               target: float = 1.0, check_every: int = 20, check_size: int = 512, gen=None):
    """Teacher-forced cross-entropy on the answer tokens (AdamW, linear warmup over 50 steps,
    then constant), until the temperature-1 accuracy on ``check_size`` fresh *training* problems
    reaches ``target`` (checked every ``check_every`` steps) or ``max_steps``.
    Returns ``(steps, last check's accuracy)``."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50))
    n_prompt, acc = 2 * width + 2, 0.0
    for step in range(1, max_steps + 1):
        model.train()
        a, b = sample_train(rng, batch, width)
        seq = torch.cat([encode(a, b, width), answer(a, b, width)], 1)
        logits = model(seq[:, :-1])[:, n_prompt - 1:]
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), seq[:, n_prompt:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % check_every == 0 or step == max_steps:
            model.eval()
            a, b = sample_train(rng, check_size, width)
            acc = float(verify(generate(model, encode(a, b, width), width + 1, gen), a, b).mean())
            if acc >= target:
                break
    model.eval()
    return step, acc


# ------------------------------------------------------------------------------ metrics


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples with ``c`` correct: ``1 - C(n-c, k) / C(n, k)``
    (Chen et al. 2021, "Evaluating Large Language Models Trained on Code"), as a product."""
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def top_fraction_mean(values: torch.Tensor, fraction: float) -> torch.Tensor:
    """Per row of ``[B, L]``: the mean of the ``max(1, floor(fraction * L))`` largest values
    (the forking-token entropy of docs/math.md#token-forward)."""
    k = max(1, int(math.floor(fraction * values.shape[1])))
    return values.topk(k, dim=1).values.mean(1)
