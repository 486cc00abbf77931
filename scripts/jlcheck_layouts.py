"""Julia static checker (check_julia.py), check 4: the structs of the generated layer against
the C structs of include/era.h (fields in order; sizes and offsets of Julia's C-compatible
layout against a C compiler's)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from typing import Dict, List, Optional, Tuple

import gen_decls
from jlcheck_ccalls import PRIMS, jl_canonical
from jlcheck_syntax import _text, _walk

# ------------------------------------------------------------------ layouts


def jl_structs(trees, generated: str) -> Dict[str, List[Tuple[str, str]]]:
    out = {}
    for path, tree in trees.items():
        if not os.path.abspath(path).startswith(os.path.abspath(generated)):
            continue
        for n in _walk(tree.root_node):
            if n.type != "struct_definition" or _text(n).startswith("mutable"):
                continue
            head = [c for c in n.named_children if c.type == "type_head"]
            name = _text(head[0]) if head else None
            fields = []
            for c in n.named_children:
                if c.type == "typed_expression":
                    fields.append((_text(c.named_children[0]), _text(c.named_children[-1])))
            if name:
                out[name] = fields
    return out


def jl_layout(name: str, structs, aliases, memo=None) -> Tuple[int, int, List[int]]:
    """(size, alignment, field offsets) of a Julia isbits struct under the C layout rules."""
    memo = {} if memo is None else memo
    if name in memo:
        return memo[name]
    offsets, off, align = [], 0, 1
    for _, t in structs[name]:
        c = jl_canonical(t, aliases)
        if c.startswith("Ptr{") or c == "Cstring":
            size = a = 8
        elif c in PRIMS:
            size = a = PRIMS[c]
        elif c in structs:
            size, a, _ = jl_layout(c, structs, aliases, memo)
        else:
            raise ValueError(f"{name}: field type {t} ({c}) has no known layout")
        off = (off + a - 1) // a * a
        offsets.append(off)
        off += size
        align = max(align, a)
    size = (off + align - 1) // align * align
    memo[name] = (size, align, offsets)
    return memo[name]


def c_layouts(root: str, structs) -> Optional[Dict[Tuple[str, str], int]]:
    cc = next((shutil.which(c) for c in (os.environ.get("CC"), "cc", "gcc", "clang") if c and shutil.which(c)), None)
    if cc is None:
        return None
    lines = ["#include <stddef.h>", "#include <stdio.h>", '#include "era.h"', "int main(void) {"]
    for s, fields in structs.items():
        lines.append(f'  printf("{s} sizeof %zu\\n", sizeof({s}));')
        for f, _ in fields:
            lines.append(f'  printf("{s} {f} %zu\\n", offsetof({s}, {f}));')
    lines += ["  return 0;", "}"]
    with tempfile.TemporaryDirectory() as d:
        src, exe = os.path.join(d, "layout.c"), os.path.join(d, "layout")
        with open(src, "w") as f:
            f.write("\n".join(lines) + "\n")
        r = subprocess.run([cc, "-std=c11", "-I", os.path.join(root, "include"), src, "-o", exe],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            return {("error", r.stderr.strip().splitlines()[0] if r.stderr.strip() else "cc failed"): -1}
        out = subprocess.run([exe], capture_output=True, text=True, check=True, timeout=60).stdout
    return {(s, w): int(v) for s, w, v in (line.split() for line in out.splitlines())}


def check_layouts(root, trees, model, aliases, generated, rel) -> Tuple[List[str], int]:
    errors, checked = [], 0
    structs = jl_structs(trees, generated)
    for s in model.structs:
        if s not in structs and s in gen_decls.used_names(model):
            errors.append(f"{rel(generated)}: struct {s} of era.h is not declared")
    for s, fields in structs.items():
        cs = model.structs.get(s)
        if cs is None:
            errors.append(f"{rel(generated)}: struct {s} is not a struct of era.h")
            continue
        if [f for f, _ in fields] != [f.name for f in cs.fields]:
            errors.append(f"{rel(generated)}: {s} has fields {[f for f, _ in fields]}, era.h {[f.name for f in cs.fields]}")
    known = {s: f for s, f in structs.items() if s in model.structs}
    c = c_layouts(root, known)
    if c is None:
        return errors + ["layout: no C compiler (cc, gcc, clang) to compare struct layouts with"], 0
    if any(v == -1 for v in c.values()):
        return errors + [f"layout: the C layout program did not compile: {list(c)[0][1]}"], 0
    for s, fields in known.items():
        try:
            size, _, offsets = jl_layout(s, known, aliases)
        except ValueError as e:
            errors.append(f"{rel(generated)}: {e}")
            continue
        if size != c[(s, "sizeof")]:
            errors.append(f"{rel(generated)}: {s} has {size} bytes in Julia, {c[(s, 'sizeof')]} in C")
        for (f, t), off in zip(fields, offsets):
            checked += 1
            if (s, f) in c and off != c[(s, f)]:
                errors.append(f"{rel(generated)}: {s}.{f}::{t} is at offset {off} in Julia, {c[(s, f)]} in C")
    return errors, checked
