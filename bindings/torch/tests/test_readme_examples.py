"""The op and module examples of bindings/torch/README.md, run as written.

Each block is read from the README (the fenced block after ``<!-- example: NAME -->``), so
the README and this test cannot drift apart; each runs in a fresh namespace (every name it
uses is defined in it)."""

import os
import re

import pytest
import torch

README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "README.md")


def block(name: str) -> str:
    with open(README, encoding="utf-8") as f:
        text = f.read()
    marker = f"<!-- example: {name} -->"
    m = re.search(re.escape(marker) + r"\s*```python\n(.*?)```", text, re.S)
    assert m, f"{README}: no ```python block after {marker}"
    return m.group(1)


@pytest.mark.parametrize("name", ["ops", "modules"])
def test_readme_block_runs_as_written(name):
    torch.manual_seed(0)
    ns: dict = {}
    exec(compile(block(name), f"README.md[{name}]", "exec"), ns)
    if name == "ops":
        assert ns["z"].grad is not None and ns["delta"].grad is not None
        assert ns["logits_bf16"].grad is not None and ns["logits_bf16"].grad.shape == (64, 1000)
    else:
        head = ns["head"]
        # the recipe's settings, the safe start moved by one SGD step at 0.5
        assert head.learner.to_json()
        assert float(head.delta) != pytest.approx(0.853 * 6)
