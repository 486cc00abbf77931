"""Julia static checker (check_julia.py), its calls into the C library: the mapping of C and
Julia types to one canonical spelling (independent of the generator's), check 2 (every
``ccall`` against include/era.h and a built library's exports) and check 3 (calls of the
generated wrappers: arity, ``GC.@preserve``)."""

from __future__ import annotations

import os
import re
from typing import Dict, List, Optional, Tuple

import gen_decls
from jlcheck_syntax import _text, _walk

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
