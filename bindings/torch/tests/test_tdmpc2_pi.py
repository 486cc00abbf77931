"""TD-MPC2's policy prior with the masked ERA head (docs/tdmpc2.md), shape for shape on the
CPU: latents [horizon+1, batch, latent], a task embedding, a small MLP giving the mean and the
log-std pre-activation [..., action_dim], the per-task action mask, the head, tanh squashing and
the log-prob over the active dimensions. Compiled as TD-MPC2 compiles its update
(``mode="reduce-overhead"``), with ``fullgraph=True``: no graph break and no host
synchronisation (``delta`` is a tensor), the same numbers as eager, and a new ``delta`` does
not recompile."""

import math

import torch
from torch import nn

import era_torch

HORIZON, BATCH, LATENT, TASK_DIM, ACTION_DIM = 3, 16, 24, 8, 6
ACTION_DIMS = (6, 4, 1, 3)  # each task's action count: the first ones of ACTION_DIM are active


class PolicyPrior(nn.Module):
    def __init__(self, target_entropy_per_dim=-1.0):
        super().__init__()
        self.task_emb = nn.Embedding(len(ACTION_DIMS), TASK_DIM)
        self.mlp = nn.Sequential(nn.Linear(LATENT + TASK_DIM, 32), nn.Mish(), nn.Linear(32, 2 * ACTION_DIM))
        masks = torch.zeros(len(ACTION_DIMS), ACTION_DIM)
        for i, n in enumerate(ACTION_DIMS):
            masks[i, :n] = 1.0
        self.register_buffer("action_masks", masks)
        # TD-MPC2's bounds [-10, 2]; the target per dimension times D (docs/math.md#gaussian-mask)
        self.head = era_torch.EraGaussian(ACTION_DIM, target_entropy_per_dim * ACTION_DIM, log_std_min=-10.0,
                                          log_std_max=2.0, optimizer="sgd", lr=0.5)

    def forward(self, z, task, eps):
        emb = self.task_emb(task).unsqueeze(0).expand(z.shape[0], -1, -1)
        mean, pre = self.mlp(torch.cat([z, emb], dim=-1)).chunk(2, dim=-1)
        mask = self.action_masks[task]  # [batch, action_dim], broadcast over the horizon
        log_std = self.head(pre, mask, fill=0.0)  # inactive: log-std 0, as TD-MPC2 masks them
        mean, eps = mean * mask, eps * mask
        u = mean + eps * log_std.exp()
        action = torch.tanh(u)
        gauss = (-0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi)) * mask
        jac = torch.log(torch.relu(1 - action.pow(2)) + 1e-6) * mask
        log_prob = gauss.sum(-1, keepdim=True) - jac.sum(-1, keepdim=True)
        return torch.tanh(mean), action, log_prob, log_std


def _inputs(seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(HORIZON + 1, BATCH, LATENT, generator=g)
    task = torch.randint(0, len(ACTION_DIMS), (BATCH,), generator=g)
    eps = torch.randn(HORIZON + 1, BATCH, ACTION_DIM, generator=g)
    return z, task, eps


def _step(model, z, task, eps):
    """The policy update's forward and backward (the actor loss without an entropy term)."""
    mu, action, log_prob, log_std = model(z, task, eps)
    loss = -(action * torch.linspace(-1, 1, ACTION_DIM)).sum(-1).mean()
    loss.backward()
    return mu, action, log_prob, log_std, loss


def test_the_policy_prior_compiles_without_graph_breaks_and_matches_eager():
    torch.manual_seed(0)
    model = PolicyPrior()
    z, task, eps = _inputs(1)
    explained = torch._dynamo.explain(model)(z, task, eps)
    assert explained.graph_break_count == 0, explained.break_reasons
    compiled = torch.compile(model, mode="reduce-overhead", fullgraph=True)
    counts = torch._dynamo.utils.counters
    counts.clear()
    for delta in (0.0, -0.4):  # a new delta is a buffer value: the same graph
        model.head.set_delta(delta)
        model.zero_grad()
        got = _step(compiled, z, task, eps)
        got_grads = [p.grad.clone() for p in model.mlp.parameters()]
        model.zero_grad()
        want = _step(model, z, task, eps)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        for a, p in zip(got_grads, model.mlp.parameters()):
            torch.testing.assert_close(a, p.grad, atol=1e-5, rtol=1e-5)
    assert counts["stats"]["unique_graphs"] == 1, dict(counts["stats"])


def test_the_floor_holds_on_every_active_set_and_delta_learns():
    model = PolicyPrior()
    z, task, eps = _inputs(2)
    with torch.no_grad():
        _, _, log_prob, log_std = model(z, task, eps)
    mask = model.action_masks[task].expand_as(log_std)
    a = mask.sum(-1)
    h0, d = model.head.target_entropy, ACTION_DIM
    gauss = (log_std * mask).sum(-1) + 0.5 * a * math.log(2 * math.pi * math.e)
    assert bool((gauss >= (a / d) * (h0 + model.head.learner.delta) - 1e-4).all())
    assert bool((log_std[mask == 0] == 0).all())
    # the learner's input: the bounded entropy per active dimension, scaled to D
    per_dim = (-log_prob.squeeze(-1) / a * d).mean()
    before = model.head.learner.delta
    after = model.head.update_delta(per_dim)
    assert (after > before) == (float(per_dim) < h0)
