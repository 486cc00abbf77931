#!/usr/bin/env python3
"""Static checks of the Julia package ERA (bindings/julia/ERA), without a Julia runtime.

    python scripts/check_julia.py [--root DIR] [--package DIR] [--lib libera.so]

1. every ``.jl`` file of the package (and ``bindings/julia/build_tarballs.jl``) parses with
   the tree-sitter Julia grammar; ERROR and MISSING nodes are reported as file:line;
2. every ``@ccall``/``ccall`` names a function of ``include/era.h`` (and, with a built
   ``libera``, one it exports: ``nm -D``), with the header's argument count and C types
   (C types mapped to Julia independently of the generator) and return type;
3. every call of a generated wrapper ``era_*(...)`` in the hand-written files has the C
   function's argument count, and a call that passes ``pointer(...)`` or a ``DLArg`` is
   inside ``GC.@preserve``;
4. every struct of ``src/generated/`` has the fields of the C struct in order, and the
   sizes and offsets that Julia's C-compatible layout gives them equal a C compiler's
   (a small C program compiled against include/era.h);
5. the generated layer has no drift (``gen_decls.py --check``), ``src/generated/`` holds
   only the generator's Julia outputs (``era_types.jl``, then the ``era_functions*.jl``
   files of ``decls_julia.JULIA_FUNCTION_FILES``), each ``include``d once and in that
   order, and every ``include("...")`` names a file;
6. ``Project.toml`` is valid TOML with a UUID, compat entries for every dep, weakdep and
   extra (and julia), extensions naming weakdeps, and the known UUIDs of the packages used;
7. ownership: a hand-written struct holding a ``Ptr`` (a library handle) has no positional
   constructor taking the raw pointer (Functors/ConstructionBase rebuild structs as
   ``T(fields...)``: a second owner, a double free), and has, for itself or its supertype,
   a ``Base.deepcopy_internal`` method, a ``Serialization.serialize`` method and a Functors
   rule in an extension (``functor(::Type{<:T}, x)`` or ``@leaf T``);
8. exports: no exported name that a package commonly used beside ERA exports too
   (``COMMON_EXPORTS``: ``entropy`` of StatsBase and Distributions, ...), nor one of the
   generic verbs kept qualified (``GENERIC_NAMES``);
9. gradients: no ``@non_differentiable`` on a function whose result has a derivative
   (an entropy, a forward, a log-prob: Zygote would return ``nothing``, a silent zero),
   and no ``@not_implemented`` tangent (it reaches an optimiser's update); the rrule of
   ``token_forward`` reads the cotangent of every output in ``TOKEN_OUTPUTS`` (one it never
   reads is a silently dropped gradient).

Exit status 1 with one line per problem. Needs ``tree-sitter`` and ``tree-sitter-julia``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from typing import Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import gen_decls  # noqa: E402  (the header parser; its Julia emitter's mapping is not reused)

PACKAGE = os.path.join("bindings", "julia", "ERA")
EXTRA_FILES = [os.path.join("bindings", "julia", "build_tarballs.jl")]

# ------------------------------------------------------------------ parsing


def _parser():
    try:
        import tree_sitter_julia
        from tree_sitter import Language, Parser
    except ImportError as e:  # pragma: no cover
        sys.exit(f"check_julia: {e}; pip install tree-sitter tree-sitter-julia")
    return Parser(Language(tree_sitter_julia.language()))


def _walk(node):
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(n.children))


def _text(node) -> str:
    return node.text.decode("utf-8")


def jl_files(package: str) -> List[str]:
    out = []
    for d, _, files in os.walk(package):
        out += [os.path.join(d, f) for f in sorted(files) if f.endswith(".jl")]
    return sorted(out)


def check_syntax(trees: Dict[str, object], rel) -> List[str]:
    errors = []
    for path, tree in trees.items():
        for n in _walk(tree.root_node):
            if n.type == "ERROR" or n.is_missing:
                what = "missing " + n.type if n.is_missing else "syntax error"
                errors.append(f"{rel(path)}:{n.start_point[0] + 1}: {what} near {_text(n)[:40]!r}")
                break  # the first one per file: later ones are usually consequences
    return errors


# ------------------------------------------------------------ type mapping

#: Julia names of C-compatible types -> canonical primitive (LP64: Linux, macOS).
JL_ALIASES = {
    "Cvoid": "void", "Nothing": "void", "Cchar": "Int8", "Cuchar": "UInt8", "Cshort": "Int16",
    "Cushort": "UInt16", "Cint": "Int32", "Cuint": "UInt32", "Clong": "Int64", "Culong": "UInt64",
    "Clonglong": "Int64", "Culonglong": "UInt64", "Csize_t": "UInt64", "Cssize_t": "Int64",
    "Cfloat": "Float32", "Cdouble": "Float64", "Cintptr_t": "Int64", "Cuintptr_t": "UInt64",
    "Cptrdiff_t": "Int64",
}
PRIMS = {"Int8": 1, "UInt8": 1, "Int16": 2, "UInt16": 2, "Int32": 4, "UInt32": 4, "Int64": 8, "UInt64": 8,
         "Float32": 4, "Float64": 8, "Bool": 1}
#: C primitive -> canonical primitive.
C_PRIMS = {
    "void": "void", "char": "Int8", "int": "Int32", "unsigned int": "UInt32", "float": "Float32",
    "double": "Float64", "size_t": "UInt64", "int8_t": "Int8", "int16_t": "Int16", "int32_t": "Int32",
    "int64_t": "Int64", "uint8_t": "UInt8", "uint16_t": "UInt16", "uint32_t": "UInt32", "uint64_t": "UInt64",
}


def c_canonical(model, t: gen_decls.CType, argument: bool = True) -> List[str]:
    """The canonical Julia spellings a C type may take in a ccall (first: the strict one)."""
    if t.function:
        return ["Ptr{void}"]
    base = t.base
    if t.pointers == 0:
        name = model.resolve(base)
        if name in model.enums:
            return [C_PRIMS.get(model.enums[name].underlying, "Int32")]
        if name in C_PRIMS:
            return [C_PRIMS[name]]
        return [name]  # a struct by value
    inner = c_canonical(model, gen_decls.CType(base, t.pointers - 1, t.const), argument)[0]
    out = [f"Ptr{{{inner}}}"]
    if t.pointers == 1 and base == "char":
        out += ["Cstring", "Ptr{UInt8}"] if t.const else ["Ptr{UInt8}"]
    if argument and t.pointers >= 1:
        out.append(f"Ref{{{inner}}}")
    return out


def jl_canonical(text: str, aliases: Dict[str, str]) -> str:
    """A Julia type expression with every alias resolved (``Ptr{EraStatus}`` -> ``Ptr{Int32}``)."""
    text = re.sub(r"\s+", "", text)
    m = re.fullmatch(r"(Ptr|Ref)\{(.*)\}", text)
    if m:
        return f"{m.group(1)}{{{jl_canonical(m.group(2), aliases)}}}"
    seen = set()
    while text in aliases and text not in seen:
        seen.add(text)
        text = aliases[text]
    return JL_ALIASES.get(text, text)


def const_aliases(trees) -> Dict[str, str]:
    """``const X = T`` where T is a type name or ``Ptr{...}``: X -> T (from every file)."""
    out = {}
    for tree in trees.values():
        for n in _walk(tree.root_node):
            if n.type == "const_statement":
                m = re.fullmatch(r"const\s+(\w+)\s*=\s*([A-Z]\w*(?:\{[\w{}, ]*\})?)\s*", _text(n))
                if m:
                    out[m.group(1)] = m.group(2)
    return out


# ------------------------------------------------------------------ ccalls


def _ccall_sites(tree):
    """(line, name, [(arg, type)], rettype) of every @ccall and ccall((:name, lib), ...)."""
    for n in _walk(tree.root_node):
        if n.type == "macrocall_expression":
            mid = n.child_by_field_name("macro") or n.children[0]
            if _text(mid) != "@ccall":
                continue
            args = [c for c in n.children if c.type == "macro_argument_list"]
            body = args[0].named_children[0] if args and args[0].named_children else None
            if body is None or body.type != "typed_expression":
                yield (n.start_point[0] + 1, None, [], None)
                continue
            call, ret = body.named_children[0], body.named_children[-1]
            if call.type != "call_expression":
                yield (n.start_point[0] + 1, None, [], None)
                continue
            callee = call.named_children[0]
            name = _text(callee.named_children[-1]) if callee.type == "field_expression" else _text(callee)
            argl = [c for c in call.named_children if c.type == "argument_list"]
            items = []
            for a in (argl[0].named_children if argl else []):
                if a.type == "typed_expression":
                    items.append((_text(a.named_children[0]), _text(a.named_children[-1])))
                else:
                    items.append((_text(a), None))
            yield (n.start_point[0] + 1, name, items, _text(ret))
        elif n.type == "call_expression" and _text(n.named_children[0]) == "ccall":
            argl = [c for c in n.named_children if c.type == "argument_list"]
            a = argl[0].named_children if argl else []
            if len(a) < 3:
                yield (n.start_point[0] + 1, None, [], None)
                continue
            m = re.match(r"\(\s*:(\w+)", _text(a[0]))
            types = [_text(t) for t in a[2].named_children] if a[2].type == "tuple_expression" else None
            vals = [_text(v) for v in a[3:]]
            items = [(v, t) for v, t in zip(vals, types or [])] if types is not None else []
            yield (n.start_point[0] + 1, m.group(1) if m else None, items, _text(a[1]))


def check_ccalls(trees, model, aliases, exported: Optional[set], rel) -> Tuple[List[str], int]:
    errors, count = [], 0
    for path, tree in trees.items():
        for line, name, items, ret in _ccall_sites(tree):
            where = f"{rel(path)}:{line}"
            count += 1
            if name is None:
                errors.append(f"{where}: a ccall this checker cannot read (write `@ccall lib.name(arg::T, ...)::R`)")
                continue
            fn = model.functions.get(name)
            if fn is None:
                errors.append(f"{where}: {name} is not a function of include/era.h")
                continue
            if exported is not None and name not in exported:
                errors.append(f"{where}: {name} is not exported by the built libera")
            if len(items) != len(fn.args):
                errors.append(f"{where}: {name} takes {len(fn.args)} arguments in era.h, the ccall passes {len(items)}")
                continue
            for i, ((val, jt), ca) in enumerate(zip(items, fn.args)):
                if jt is None:
                    errors.append(f"{where}: {name} argument {i + 1} ({val}) has no type annotation")
                    continue
                allowed = c_canonical(model, ca.type)
                got = jl_canonical(jt, aliases)
                if got not in allowed:
                    errors.append(f"{where}: {name} argument {i + 1} ({ca.name}) is `{ca.type.c()}` in era.h "
                                  f"(Julia {allowed[0]}), the ccall says {jt} ({got})")
            want = c_canonical(model, fn.restype, argument=False)
            got = jl_canonical(ret or "", aliases)
            if got not in want:
                errors.append(f"{where}: {name} returns `{fn.restype.c()}` in era.h (Julia {want[0]}), the ccall says {ret}")
    return errors, count


def check_wrapper_calls(trees, model, generated: str, rel) -> List[str]:
    """Calls of the generated wrappers from hand-written code: arity and GC.@preserve."""
    errors = []
    for path, tree in trees.items():
        if os.path.abspath(path).startswith(os.path.abspath(generated)):
            continue
        for n in _walk(tree.root_node):
            if n.type != "call_expression":
                continue
            callee = n.named_children[0]
            name = _text(callee.named_children[-1]) if callee.type == "field_expression" else _text(callee)
            if name not in model.functions:
                continue
            argl = [c for c in n.named_children if c.type == "argument_list"]
            args = argl[0].named_children if argl else []
            fn = model.functions[name]
            where = f"{rel(path)}:{n.start_point[0] + 1}"
            if len(args) != len(fn.args):
                errors.append(f"{where}: {name} takes {len(fn.args)} arguments, the call passes {len(args)}")
            passes_memory = "pointer(" in _text(n) or any(
                t.base == "DLTensor" and t.pointers for t in (f.type for f in fn.args))
            if passes_memory and not _inside_preserve(n):
                errors.append(f"{where}: {name} passes array memory outside GC.@preserve")
    return errors


def _inside_preserve(node) -> bool:
    p = node.parent
    while p is not None:
        if p.type == "macrocall_expression" and _text(p).startswith("GC.@preserve"):
            return True
        p = p.parent
    return False


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


# ------------------------------------------------------------------ includes


def check_includes(trees, generated: str, rel) -> List[str]:
    """The generated files are exactly gen_decls.py's Julia outputs, each included once and
    in the generator's order (types before the functions that use them); every literal
    ``include("...")`` names an existing file."""
    errors = []
    outputs = [os.path.basename(p) for p, _ in gen_decls.EMITTERS["julia"]]
    present = sorted(f for f in os.listdir(generated) if f.endswith(".jl")) if os.path.isdir(generated) else []
    for f in present:
        if f not in outputs:
            errors.append(f"{rel(os.path.join(generated, f))}: not an output of scripts/gen_decls.py "
                          f"(its Julia outputs: {', '.join(outputs)}); delete it")
    sites: Dict[str, List[Tuple[str, int]]] = {}  # generated file -> [(including file, line)]
    order: Dict[str, List[str]] = {}  # including file -> generated files in include order
    for path, tree in trees.items():
        for n in _walk(tree.root_node):
            if n.type != "call_expression" or _text(n.named_children[0]) != "include":
                continue
            argl = [c for c in n.named_children if c.type == "argument_list"]
            args = argl[0].named_children if argl else []
            if len(args) != 1 or args[0].type != "string_literal" or not re.fullmatch(r'"[^"$\\]*"', _text(args[0])):
                continue  # a computed path: not checked
            where = f"{rel(path)}:{n.start_point[0] + 1}"
            target = os.path.normpath(os.path.join(os.path.dirname(path), _text(args[0])[1:-1]))
            if not os.path.isfile(target):
                errors.append(f"{where}: include({_text(args[0])}) names no file")
            if os.path.dirname(target) == os.path.normpath(generated):
                name = os.path.basename(target)
                sites.setdefault(name, []).append((rel(path), n.start_point[0] + 1))
                order.setdefault(rel(path), []).append(name)
    for name in outputs:
        found = sites.get(name, [])
        if not found:
            errors.append(f"{rel(os.path.join(generated, name))}: not included by the package")
        elif len(found) > 1:
            errors.append(f"{rel(os.path.join(generated, name))}: included {len(found)} times "
                          f"({', '.join(f'{f}:{line}' for f, line in found)})")
    for path, names in order.items():
        known = [n for n in names if n in outputs]
        if known != sorted(known, key=outputs.index):
            errors.append(f"{path}: includes {', '.join(known)}; the generator's order is {', '.join(outputs)}")
    return errors


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


# ------------------------------------------------------------------ drift, Project.toml

#: UUIDs of the packages the ERA package may name (General registry and stdlibs).
KNOWN_UUIDS = {
    "CUDA": "052768ef-5323-5732-b1bb-66c8b64840ba",
    "ChainRulesCore": "d360d2e6-b24c-11e9-a2a3-2a2ae2dbcce4",
    "Flux": "587475ba-b771-5e3f-ad9e-33799f191a9c",
    "Functors": "d9f16b24-f501-4c13-a1f2-28368ffc5196",
    "JLD2": "033835bb-8acc-5ee8-8aae-3f567f8a3819",
    "Libdl": "8f399da3-3557-5675-b5ff-fb832c97cbdb",
    "Preferences": "21216c6a-2e73-6563-6e65-726566657250",
    "Random": "9a3f8284-a2c9-5f02-9a11-845980a1fd5c",
    "Serialization": "9e88b42a-f829-5b0c-bbe9-9e923198166b",
    "Test": "8dfed614-e22c-5e08-85e1-65c5234f0b40",
    "TOML": "fa267f1f-6049-4f14-aa54-33bafae1ed76",
}


def check_drift(root: str) -> List[str]:
    r = subprocess.run([sys.executable, os.path.join(HERE, "gen_decls.py"), "--check", "--root", root, "--lang", "julia"],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        return ["drift: " + (r.stderr.strip() or "gen_decls.py --check failed") + "\n" + r.stdout[:2000]]
    return []


def check_project(package: str, rel) -> List[str]:
    path = os.path.join(package, "Project.toml")
    try:
        with open(path, "rb") as f:
            p = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        return [f"{rel(path)}: {e}"]
    errors = []
    uuid_re = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
    for key in ("name", "uuid", "version"):
        if key not in p:
            errors.append(f"{rel(path)}: no {key}")
    if "uuid" in p and not uuid_re.match(p["uuid"]):
        errors.append(f"{rel(path)}: uuid {p['uuid']!r} is not a UUID")
    compat = p.get("compat", {})
    if "julia" not in compat:
        errors.append(f"{rel(path)}: [compat] has no julia entry")
    for section in ("deps", "weakdeps", "extras"):
        for name, uuid in p.get(section, {}).items():
            if not uuid_re.match(uuid):
                errors.append(f"{rel(path)}: [{section}] {name} = {uuid!r} is not a UUID")
            elif name in KNOWN_UUIDS and KNOWN_UUIDS[name] != uuid:
                errors.append(f"{rel(path)}: [{section}] {name} has UUID {uuid}, the registry's is {KNOWN_UUIDS[name]}")
            if name not in compat:
                errors.append(f"{rel(path)}: [{section}] {name} has no [compat] entry")
    weak = p.get("weakdeps", {})
    for ext, trig in p.get("extensions", {}).items():
        for t in [trig] if isinstance(trig, str) else trig:
            if t not in weak:
                errors.append(f"{rel(path)}: extension {ext} is triggered by {t}, which is not a weakdep")
        if not os.path.isfile(os.path.join(package, "ext", ext + ".jl")):
            errors.append(f"{rel(path)}: extension {ext} has no ext/{ext}.jl")
    for name in compat:
        if name != "julia" and not any(name in p.get(s, {}) for s in ("deps", "weakdeps", "extras")):
            errors.append(f"{rel(path)}: [compat] {name} is not a dependency")
    for target, names in p.get("targets", {}).items():
        for n in names:
            if n not in p.get("extras", {}) and n not in p.get("deps", {}):
                errors.append(f"{rel(path)}: [targets] {target} names {n}, not in [extras]")
    return errors


def exported_symbols(lib: str) -> Optional[set]:
    nm = shutil.which("nm")
    if nm is None or not os.path.isfile(lib):
        return None
    out = subprocess.run([nm, "-D", "--defined-only", lib], capture_output=True, text=True, timeout=60).stdout
    return {line.split()[-1] for line in out.splitlines() if line.split() and line.split()[-2:-1] == ["T"]}


# ------------------------------------------------------------------ main


def run(root: str = ROOT, package: Optional[str] = None, lib: Optional[str] = None, drift: bool = True,
        quiet: bool = False) -> List[str]:
    package = package or os.path.join(root, PACKAGE)
    generated = os.path.join(package, "src", "generated")

    def rel(p):
        return os.path.relpath(p, root)

    parser = _parser()
    files = jl_files(package) + [os.path.join(root, f) for f in EXTRA_FILES if os.path.isfile(os.path.join(root, f))]
    trees = {}
    for f in files:
        with open(f, "rb") as fh:
            trees[f] = parser.parse(fh.read())
    model = gen_decls.parse(root)
    aliases = const_aliases(trees)
    if lib is None:
        for cand in (os.path.join(root, "target", "release", "libera.so"), os.path.join(root, "target", "debug", "libera.so")):
            if os.path.isfile(cand):
                lib = cand
                break
    exported = exported_symbols(lib) if lib else None

    errors = check_syntax(trees, rel)
    e, n_ccalls = check_ccalls(trees, model, aliases, exported, rel)
    errors += e
    errors += check_wrapper_calls(trees, model, generated, rel)
    e, n_fields = check_layouts(root, trees, model, aliases, generated, rel)
    errors += e
    called = {name for t in trees.values() for _, name, _, _ in _ccall_sites(t)}
    for name in model.functions:
        if name not in called:
            errors.append(f"{rel(generated)}: no ccall of {name}")
    errors += check_includes(trees, generated, rel)
    if drift:
        errors += check_drift(root)
    errors += check_project(package, rel)
    texts = {}
    for f in jl_files(package):
        with open(f, encoding="utf-8") as fh:
            texts[f] = fh.read()
    errors += check_ownership(texts, generated, rel)
    errors += check_exports(texts, rel)
    errors += check_gradients(texts, rel)
    errors += check_token_rrule(texts, rel)
    if not quiet:
        print(f"check_julia: {len(files)} files parsed, {n_ccalls} ccalls against {len(model.functions)} C functions"
              f"{' and ' + rel(lib) + ' exports' if exported is not None else ''}, {n_fields} struct fields laid out, "
              f"includes, {'drift, ' if drift else ''}Project.toml, ownership, exports, gradients, token rrule checked: {len(errors)} problem(s)")
    return errors


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=ROOT, help="repository root (default: this script's parent folder)")
    ap.add_argument("--package", default=None, help="the Julia package folder (default: ROOT/bindings/julia/ERA)")
    ap.add_argument("--lib", default=None, help="a built libera whose exports to check (default: target/release/libera.so if present)")
    ap.add_argument("--no-drift", action="store_true", help="skip gen_decls.py --check")
    args = ap.parse_args(argv)
    errors = run(args.root, args.package, args.lib, drift=not args.no_drift)
    for e in errors:
        print("check_julia: " + e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
