"""What the documentation states and the code does, kept in agreement (make test-docs).

Each test pins one statement: the torch era_torch needs, the CMake the bootstrap accepts,
what each binding does with float16/bfloat16 in the small heads, the shape of ERA.jl's
install instructions, and that the reference (make docs, run first) lists every public name.
"""

import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def version(text):
    return tuple(int(x) for x in text.split("."))


def code_blocks(text, lang):
    return re.findall(r"```" + lang + r"\n(.*?)```", text, re.S)


def test_torch_minimum_has_register_vmap():
    """era_torch registers batching rules with torch.library.register_vmap (torch 2.5)."""
    minimum = re.search(r'"torch>=([0-9.]+)"', read("bindings/torch/pyproject.toml")).group(1)
    sources = "".join(read(os.path.join("bindings/torch/src/era_torch", f))
                      for f in os.listdir(os.path.join(ROOT, "bindings/torch/src/era_torch")) if f.endswith(".py"))
    if "register_vmap" in sources:
        assert version(minimum) >= (2, 5), f"torch>={minimum}, but torch.library.register_vmap came in 2.5"
    assert f"torch {minimum} or later" in re.sub(r"\s+", " ", read("bindings/torch/README.md"))


def test_bootstrap_cmake_is_what_the_builds_ask():
    """scripts/bootstrap.sh asks for the highest cmake_minimum_required of what make test builds."""
    asked = []
    for path in ("CMakeLists.txt", "bindings/jax/CMakeLists.txt", "bindings/torch/CMakeLists.txt"):
        asked.append(re.search(r"cmake_minimum_required\(VERSION ([0-9.]+)", read(path)).group(1))
    for path in ("bindings/jax/pyproject.toml", "bindings/torch/pyproject.toml"):
        asked.append(re.search(r'cmake\.version = ">=([0-9.]+)"', read(path)).group(1))
    bootstrap = read("scripts/bootstrap.sh")
    accepted = re.search(r"^CMAKE_MIN=([0-9.]+)$", bootstrap, re.M).group(1)
    assert version(accepted) == max(version(v) for v in asked)
    assert f"CMake (>= {accepted}" in bootstrap


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_as_the_readmes_say(dtype):
    """era_torch: gaussian_log_std, softmax_logits, softmax_entropy compute half inputs in float32;
    gaussian_entropy and truncated_normal_entropy refuse them. era_jax refuses them all."""
    import era_jax
    import era_torch
    import jax.numpy as jnp
    import torch

    t = getattr(torch, dtype)
    assert era_torch.gaussian_log_std(torch.zeros(4, 6, dtype=t), target_entropy=-6.0).dtype == torch.float32
    assert era_torch.softmax_logits(torch.zeros(4, 5, dtype=t), target_entropy=1.0).dtype == torch.float32
    assert era_torch.softmax_entropy(torch.zeros(4, 5, dtype=t)).dtype == torch.float32
    with pytest.raises(era_torch.EraError, match="UNSUPPORTED_DTYPE"):
        era_torch.gaussian_entropy(torch.zeros(4, 6, dtype=t))
    with pytest.raises(era_torch.EraError, match="UNSUPPORTED_DTYPE"):
        era_torch.truncated_normal_entropy(torch.zeros(4, 6, dtype=t), torch.zeros(4, 6, dtype=t))
    j = getattr(jnp, dtype)
    for call in (lambda: era_jax.gaussian_log_std(jnp.zeros((4, 6), j), target_entropy=-6.0),
                 lambda: era_jax.softmax_logits(jnp.zeros((4, 5), j), target_entropy=1.0),
                 lambda: era_jax.gaussian_entropy(jnp.zeros((4, 6), j))):
        with pytest.raises(TypeError):
            call()
    torch_readme = re.sub(r"\s+", " ", read("bindings/torch/README.md"))
    jax_readme = re.sub(r"\s+", " ", read("bindings/jax/README.md"))
    assert ("`truncated_normal_entropy` take float32 or float64 only and raise `EraError`" in torch_readme
            and "era_jax differs here" in torch_readme)
    assert "raise `TypeError` for float16/bfloat16 inputs" in jax_readme


def test_julia_install_blocks_do_not_mix_modes():
    """ERA.jl's README: Pkg-REPL lines only in their own block, shell blocks only shell commands,
    Julia blocks only Julia code."""
    text = read("bindings/julia/ERA/README.md")
    for block in code_blocks(text, "julia"):
        for line in block.splitlines():
            assert not re.match(r"\s*(\]|pkg>|julia>|\$ )", line), f"not Julia code in a julia block: {line}"
    for block in code_blocks(text, "sh"):
        for line in block.splitlines():
            assert not re.match(r"\s*(\]|pkg>|julia>|using |Pkg\.)", line), f"not a shell line: {line}"
    assert "pkg> dev path/to/era/bindings/julia/ERA" in text


@pytest.mark.parametrize("package", ["era_jax", "era_torch"])
def test_every_public_name_is_in_the_reference(package):
    """Each name in the package's __all__ has an entry on its page of build/docs (make docs)."""
    module = __import__(package)
    page = os.path.join(ROOT, "build", "docs", "api", package + ".html")
    with open(page, encoding="utf-8") as f:
        ids = set(re.findall(r'id="([^"]+)"', f.read()))
    missing = [name for name in module.__all__
               if not any(i == f"{package}.{name}" or i == f"module-{package}.{name}"
                          or (i.startswith(package + ".") and i.endswith("." + name)) for i in ids)]
    assert not missing, f"not in docs/api/{package}.rst: {missing}"
