"""The verl 0.7 drop-in (era_torch.verl_era_logprobs) against the real verl 0.7.1, installed
without its heavy dependencies under build/verl-0.7.1 (``make torch-install``), in a process of
its own (verl 0.9.1 is the one installed in the environment): for tokens whose scale is 1 the
drop-in's log-probs and entropies are verl 0.7.1's own ``logprobs_from_logits`` and
``entropy_from_logits`` of the temperature-scaled logits (gradients included), and importing
era_torch.verl registers the ``era`` policy loss in 0.7.1's registry too."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
VERL_071 = os.environ.get("ERA_VERL_071", os.path.join(ROOT, "build", "verl-0.7.1"))

SCRIPT = r'''
import torch
import verl
assert verl.__version__ == "0.7.1", verl.__version__
import verl.utils.torch_functional as F
from verl.trainer.ppo.core_algos import get_policy_loss_fn
import era_torch
import era_torch.verl as ev

assert get_policy_loss_fn("era") is ev.compute_policy_loss_era

g = torch.Generator().manual_seed(0)
B, L, V, T = 3, 7, 50, 0.8
logits = torch.randn(B * L, V, generator=g, dtype=torch.float64) * 2
labels = torch.randint(0, V, (B * L,), generator=g)
mask = torch.ones(B, L, dtype=torch.int64)
mask[1, 5:] = 0
adv = torch.full((B, L), -0.5, dtype=torch.float64)  # negative advantages: every scale is 1

x1 = logits.clone().requires_grad_()
out = era_torch.verl_era_logprobs(x1, labels, mask, adv.reshape(-1), temperature=T)
assert bool((out.scale == 1).all())
x2 = logits.clone().requires_grad_()
z = x2 / T
want_lp = F.logprobs_from_logits(z, labels, inplace_backward=False)
want_h = F.entropy_from_logits(z)
m = mask.reshape(-1).bool()
torch.testing.assert_close(out.log_probs.reshape(-1)[m], want_lp[m], rtol=1e-12, atol=1e-12)
torch.testing.assert_close(out.entropy.reshape(-1), want_h, rtol=1e-12, atol=1e-12)
w = torch.randn(B * L, generator=g, dtype=torch.float64) * m
(out.log_probs.reshape(-1) * w).sum().backward()
(want_lp * w).sum().backward()
torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-12, atol=1e-12)
print("ok")
'''


@pytest.mark.skipif(not os.path.isdir(os.path.join(VERL_071, "verl")), reason="verl 0.7.1 not installed under build/")
def test_drop_in_against_verl_071():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([VERL_071] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    r = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr
