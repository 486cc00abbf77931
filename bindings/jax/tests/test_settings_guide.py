"""docs/settings.md against the READMEs that quote it and against the code.

- The recommended recipe is one line after ``<!-- settings: recipe -->`` in docs/settings.md;
  README.md and the JAX and PyTorch bindings' READMEs carry the same line after the same
  marker, word for word, and link the guide.
- Its numbers (bounds, SGD rate, initial delta per dimension) are those that
  ``era_jax.GaussianEra(mode="bounded")`` resolves, and 0.853 is ``truncation_gap_bound(0)``.
- The defaults table states the library's defaults (``era_config_default``).
- The snippets of README.md (C, C++, Rust) and of the PyTorch README that set the learner use
  the recipe's numbers.
(The Julia README is checked by the Julia package's own tooling, not here.)
"""

import os
import re

import pytest

import era_jax
from era_jax._defaults import GAUSSIAN, SOFTMAX

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
GUIDE = "docs/settings.md"
READMES = ["README.md", "bindings/jax/README.md", "bindings/torch/README.md"]
MARKER = "<!-- settings: recipe -->"


def read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


def recipe_line(rel):
    text = read(rel)
    assert text.count(MARKER) == 1, f"{rel}: expected one {MARKER}"
    m = re.search(re.escape(MARKER) + r"\n([^\n]+)\n", text)
    assert m, f"{rel}: the recipe line must follow {MARKER}"
    return m.group(1)


def test_guide_states_the_recipe():
    line = recipe_line(GUIDE)
    assert line.startswith("Recommended SAC-ERA recipe:")


@pytest.mark.parametrize("rel", READMES)
def test_readmes_quote_the_recipe_word_for_word_and_link_the_guide(rel):
    assert recipe_line(rel) == recipe_line(GUIDE)
    assert "docs/settings.md" in read(rel).replace("../../docs/settings.md", "docs/settings.md")


def _numbers(line):
    m = re.search(r"log-std bounds \[(-?[\d.]+), (-?[\d.]+)\]", line)
    lo, hi = float(m.group(1)), float(m.group(2))
    rate = float(re.search(r"SGD at rate ([\d.]+)", line).group(1))
    per_dim = float(re.search(r"from an initial ([\d.]+) \* D", line).group(1))
    target = re.search(r"`target_entropy = (-?)D`", line).group(1)
    return lo, hi, rate, per_dim, target


def test_recipe_numbers_are_what_gaussian_era_resolves():
    lo, hi, rate, per_dim, target = _numbers(recipe_line(GUIDE))
    assert target == "-"
    D = 6
    era = era_jax.GaussianEra(D, target_entropy=-D, mode="bounded")
    assert (era.log_std_min, era.log_std_max) == (lo, hi)
    assert era.optimizer == "sgd" and era.lr == rate
    assert round(era_jax.truncation_gap_bound(hi), 3) == per_dim
    assert era.initial_delta == pytest.approx(D * era_jax.truncation_gap_bound(hi))


def test_defaults_table_states_the_library_defaults():
    text = read(GUIDE)
    row = lambda name: next(ln for ln in text.splitlines() if ln.startswith(f"| {name}"))
    assert f"| {GAUSSIAN.log_std_min:g}, {GAUSSIAN.log_std_max:g} |" in row("`log_std_min`")
    learner = row("`delta_optimizer`")
    m = re.search(r"\| Adam, ([\d.e-]+) \(beta1 ([\d.]+), beta2 ([\d.]+), eps ([\d.e-]+)\) \|", learner)
    assert m and GAUSSIAN.optimizer.lower() == "adam", learner
    assert tuple(map(float, m.groups())) == (GAUSSIAN.lr, GAUSSIAN.beta1, GAUSSIAN.beta2, GAUSSIAN.eps)
    assert "| SGD, 0.5 |" in learner
    assert f"| {GAUSSIAN.delta:g} |" in row("`delta` (initial)")
    assert f"| {SOFTMAX.tau:g} |" in row("softmax `tau`")


def test_readme_snippets_use_the_recipe_numbers():
    lo, hi, rate, per_dim, _ = _numbers(recipe_line(GUIDE))
    top = read("README.md")
    assert f"cfg.delta_lr = {rate};" in top and f"cfg.delta = {per_dim} * 6;" in top          # C
    assert f".log_std_bounds({lo:g}, {hi:g})" in top                                            # C++
    assert f".delta_sgd({rate}).delta({per_dim} * 6)" in top
    assert f"optimizer: DeltaOptimizer::Sgd, lr: {rate}," in top and f"cfg.delta = {per_dim} * 6.0;" in top  # Rust
    torch_readme = read("bindings/torch/README.md")
    recipe = f"log_std_min={lo:g}, log_std_max={hi:g}"
    calls = re.findall(r"EraGaussian\(act_dim[^)]*\)", torch_readme, re.S)
    assert calls, "the PyTorch README's EraGaussian examples"
    for call in calls:
        assert recipe in call and f'optimizer="sgd", lr={rate}' in call and f"delta={per_dim} * act_dim" in call
    for lr in re.findall(r'optimizer="sgd", lr=([\d.e-]+)', torch_readme):
        assert float(lr) == rate
