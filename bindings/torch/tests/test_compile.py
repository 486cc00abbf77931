"""torch.compile(fullgraph=True) of functions using the ops (few: compiling is slow on 2 cores)."""

import torch

import era_torch


def test_compiled_actor_step_and_token_loss():
    torch.manual_seed(0)
    head = era_torch.EraGaussian(3, -3.0)
    lin = torch.nn.Linear(5, 6)

    def step(x, logits, labels, ids, adv):
        mu, z = lin(x).chunk(2, dim=-1)
        log_std = head(z)
        probs = era_torch.softmax_logits(mu, target_entropy=0.5)
        lp, ent, scale, a2 = era_torch.token_logprobs(logits, labels, ids, adv, vocab_topk=3)
        loss = log_std.sum() + probs.pow(2).sum() - (lp * a2).sum()
        return loss, era_torch.gaussian_entropy(log_std.detach()), ent

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    x = torch.randn(8, 5)
    logits = torch.randn(10, 7, requires_grad=True)
    labels, ids, adv = torch.randint(0, 7, (10,)), torch.arange(10) // 5, torch.randn(10)
    for delta in (0.0, -0.2):  # a new delta is a buffer value: no recompilation
        head.delta.fill_(delta)
        loss_c, h_c, e_c = compiled(x, logits, labels, ids, adv)
        g_c = torch.autograd.grad(loss_c, [logits, lin.weight])
        loss_e, h_e, e_e = step(x, logits, labels, ids, adv)
        g_e = torch.autograd.grad(loss_e, [logits, lin.weight])
        torch.testing.assert_close(loss_c, loss_e)
        torch.testing.assert_close(h_c, h_e)
        for a, b in zip(g_c, g_e):
            torch.testing.assert_close(a, b)


def test_inductor_compiles_the_gaussian_head():
    z = torch.randn(16, 4, requires_grad=True)
    f = torch.compile(lambda z: era_torch.gaussian_log_std(z, target_entropy=-4.0).exp().sum(), fullgraph=True)
    loss = f(z)
    (g,) = torch.autograd.grad(loss, z)
    z2 = z.detach().clone().requires_grad_()
    era_torch.gaussian_log_std(z2, target_entropy=-4.0).exp().sum().backward()
    torch.testing.assert_close(g, z2.grad)
