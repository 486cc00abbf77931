"""Julia static checker (check_julia.py), the rules of the hand-written code, read as text:
check 7 (ownership of library handles), check 8 (exports) and check 9 (gradients: no
``@non_differentiable`` on a differentiable result, no ``@not_implemented`` tangent, the
token forward's rrule reads every cotangent)."""

from __future__ import annotations

import os
import re
from typing import Dict, List, Optional, Tuple

# ------------------------------------------------------------------ ownership, exports, gradients

_STRUCT_RE = re.compile(r"^(\s*)(?:mutable\s+)?struct\s+(\w+)(?:\{[^}]*\})?(?:\s*<:\s*([\w.]+))?")


def _code(text: str) -> str:
    """The text without whole-line comments (docstrings and code stay)."""
    return re.sub(r"(?m)^\s*#.*$", "", text)


def handle_structs(texts: Dict[str, str], generated: str) -> List[Tuple[str, int, str, Optional[str], str]]:
    """(path, line, name, supertype, body) of every hand-written struct with a Ptr field."""
    out = []
    for path, text in texts.items():
        if os.path.abspath(path).startswith(os.path.abspath(generated) + os.sep):
            continue
        lines = text.split("\n")
        for i, line in enumerate(lines):
            m = _STRUCT_RE.match(line)
            if not m or line.rstrip().endswith(" end"):
                continue
            indent = m.group(1)
            body = []
            for line2 in lines[i + 1:]:
                if line2.rstrip() == indent + "end":
                    break
                body.append(line2)
            text_body = "\n".join(body)
            if re.search(r"^\s*\w+\s*::\s*Ptr\{", text_body, re.M):
                out.append((path, i + 1, m.group(2), m.group(3).split(".")[-1] if m.group(3) else None, text_body))
    return out


def check_ownership(texts: Dict[str, str], generated: str, rel) -> List[str]:
    errors = []
    code = {p: _code(t) for p, t in texts.items()}
    everything = "\n".join(code.values())
    ext = "\n".join(t for p, t in code.items() if os.sep + "ext" + os.sep in p)
    for path, line, name, sup, body in handle_structs(texts, generated):
        names = "|".join(re.escape(n) for n in (name, sup) if n)
        where = f"{rel(path)}:{line}: struct {name} holds a Ptr"
        for m in re.finditer(rf"\b{re.escape(name)}\s*\(\s*\w+\s*::\s*Ptr\{{", body):
            errors.append(f"{where} and its constructor {name}(::Ptr...) is reachable positionally: code that rebuilds "
                          f"structs from their fields (Functors, ConstructionBase) makes a second owner (a double free); "
                          f"take a private marker argument first")
        if not re.search(rf"deepcopy_internal\s*\(\s*\w+\s*::\s*(?:\w+\.)?(?:{names})\b", everything):
            errors.append(f"{where} but has no Base.deepcopy_internal method (deepcopy would copy the raw pointer)")
        if not re.search(rf"serialize\s*\(\s*\w+\s*::[^,]*,\s*\w+\s*::\s*(?:\w+\.)?(?:{names})\b", everything):
            errors.append(f"{where} but has no Serialization.serialize method (serialisation would store the raw pointer)")
        if not re.search(rf"functor\s*\(\s*::\s*Type\{{<:\s*(?:\w+\.)?(?:{names})\}}|@leaf\s+(?:\w+\.)?(?:{names})\b", ext):
            errors.append(f"{where} but no extension gives it a Functors rule (Functors 0.5 rebuilds every struct it walks: "
                          f"make it a leaf)")
    return errors


#: Names exported by packages commonly loaded beside ERA (a clash makes both unusable
#: unqualified after `using ERA, P`). Not exhaustive: the names a head's API is likely to want.
COMMON_EXPORTS = {
    "entropy": "StatsBase, Distributions",
    "crossentropy": "StatsBase",
    "kldivergence": "StatsBase, Distributions",
    "mean": "Statistics", "var": "Statistics", "std": "Statistics", "median": "Statistics",
    "fit": "StatsBase, Distributions", "params": "Distributions", "logpdf": "Distributions",
    "pdf": "Distributions", "sampler": "Distributions", "mode": "StatsBase, Distributions",
    "gradient": "Zygote, Flux", "jacobian": "Zygote", "pullback": "Zygote",
    "softmax": "NNlib, Flux", "logsoftmax": "NNlib, Flux", "sigmoid": "NNlib, Flux",
    "setup": "Optimisers (Flux.setup)", "update!": "Optimisers, Flux",
}

#: Generic verbs ERA keeps qualified (ERA.forward, ...), whoever else exports them.
GENERIC_NAMES = {"forward", "forward!", "backward", "backward!", "delta", "config", "entropy!"}


def check_exports(texts: Dict[str, str], rel) -> List[str]:
    errors = []
    for path, text in texts.items():
        code = _code(text)
        for m in re.finditer(r"(?m)^\s*export\s+((?:[^\n]*,\s*\n)*[^\n]*)", code):
            line = code[:m.start()].count("\n") + 1
            for name in (n.strip() for n in m.group(1).replace("\n", " ").split(",")):
                if name in COMMON_EXPORTS:
                    errors.append(f"{rel(path)}:{line}: exports `{name}`, which {COMMON_EXPORTS[name]} export too "
                                  f"(a clash for `using ERA, ...`): keep it qualified")
                elif name in GENERIC_NAMES:
                    errors.append(f"{rel(path)}:{line}: exports the generic name `{name}`: keep it qualified (ERA.{name})")
    return errors


#: A function whose name says its result has a derivative (an entropy, a forward, a log-prob).
_DIFFERENTIABLE_RE = re.compile(r"entropy|forward|logprob")


def check_gradients(texts: Dict[str, str], rel) -> List[str]:
    errors = []
    for path, text in texts.items():
        code = _code(text)
        for m in re.finditer(r"@non_differentiable\s+(?:[\w.]+\.)?(\w+!?)\s*\(", code):
            if _DIFFERENTIABLE_RE.search(m.group(1)) and not m.group(1).endswith("_backward"):
                line = code[:m.start()].count("\n") + 1
                errors.append(f"{rel(path)}:{line}: @non_differentiable {m.group(1)}: its result has a derivative, so "
                              f"Zygote would return `nothing` (a silent zero gradient); give it an rrule through the "
                              f"library's backward, or one whose pullback raises an error")
        for m in re.finditer(r"@not_implemented\b", code):
            line = code[:m.start()].count("\n") + 1
            errors.append(f"{rel(path)}:{line}: @not_implemented: a NotImplemented tangent reaches an optimiser's "
                          f"update; return the tangent, NoTangent() for a non-differentiable input, or raise an error")
    return errors


#: Token outputs whose derivative is zero wherever it exists (the scale decision).
PIECEWISE_CONSTANT_OUTPUTS = {"scale"}


def check_token_rrule(texts: Dict[str, str], rel) -> List[str]:
    """Every output of TOKEN_OUTPUTS is named in the pullback of token_forward's rrule."""
    outputs = None
    for text in texts.values():
        m = re.search(r"const\s+TOKEN_OUTPUTS\s*=\s*\(([^)]*)\)", text)
        if m:
            outputs = re.findall(r":(\w+)", m.group(1))
    if not outputs:
        return []
    errors = []
    for path, text in texts.items():
        code = _code(text)
        m = re.search(r"(?m)^function\s+ChainRulesCore\.rrule\(::typeof\((?:ERA\.)?token_forward\).*?^end\b", code, re.S)
        if not m:
            continue
        line = code[:m.start()].count("\n") + 1
        body = m.group(0)
        pullback = body[body.find("pullback"):]  # the pullback, not the forward's own use of the names
        for name in outputs:
            if name in PIECEWISE_CONSTANT_OUTPUTS:
                continue
            if not re.search(rf"(?::{name}\b|\b(?:t|ȳ)\.{name}\b)", pullback):
                errors.append(f"{rel(path)}:{line}: the rrule of token_forward never reads the cotangent of its "
                              f"`{name}` output (a dropped gradient): pass it on, or raise an error for it")
    return errors
