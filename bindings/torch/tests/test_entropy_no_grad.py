"""The head-free entropies are documented as having no gradient: their results are detached
(era_jax stops the gradient), so they never require grad and a loss built from them alone
cannot reach a backward that raises."""

import pytest
import torch

import era_torch


def _calls():
    log_std = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    mean = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    logits = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    return [
        ("gaussian_entropy", lambda: era_torch.gaussian_entropy(log_std), log_std),
        ("softmax_entropy", lambda: era_torch.softmax_entropy(logits, temperature=0.7), logits),
        ("truncated_normal_entropy", lambda: era_torch.truncated_normal_entropy(mean, log_std, -1.0, 1.0), log_std),
    ]


@pytest.mark.parametrize("name", ["gaussian_entropy", "softmax_entropy", "truncated_normal_entropy"])
def test_entropies_are_detached(name):
    (fn, inp), = [(f, x) for n, f, x in _calls() if n == name]
    h = fn()
    assert not h.requires_grad and h.grad_fn is None
    # used next to a differentiable term, the entropy contributes no gradient and nothing raises
    loss = (inp ** 2).sum() + h.sum()
    loss.backward()
    torch.testing.assert_close(inp.grad, 2 * inp.detach())


def test_detached_values_match_the_graph_free_call():
    x = torch.randn(8, 6, dtype=torch.float64)
    with torch.no_grad():
        ref = era_torch.gaussian_entropy(x)
    torch.testing.assert_close(era_torch.gaussian_entropy(x.clone().requires_grad_()), ref, rtol=0, atol=0)


def test_entropies_under_compile_and_vmap_stay_detached():
    x = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    h = torch.func.vmap(era_torch.gaussian_entropy)(x)
    assert not h.requires_grad
    torch.testing.assert_close(h, era_torch.gaussian_entropy(x.detach()), rtol=0, atol=0)
