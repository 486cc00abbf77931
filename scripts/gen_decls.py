#!/usr/bin/env python3
"""Declaration generator: include/era.h -> language bindings' declaration layers.

Reads the C ABI of era (``include/era.h``, which includes the upstream DLPack
header ``include/era/dlpack.h``) into a small intermediate model (structs with
their fields in order, enums with values, ``#define`` constants, typedefs,
opaque types and function prototypes, each with its doc comment), then hands
the model to one emitter per language. Python standard library only.

    python3 scripts/gen_decls.py            # write every output
    python3 scripts/gen_decls.py --check    # exit 1 with a diff if a committed output differs

Outputs (committed, never edited by hand):

    python   bindings/jax/src/era_jax/_era_h.py                  ctypes declarations for era_jax
    julia    bindings/julia/ERA/src/generated/era_types.jl      constants, enums and structs of the Julia package ERA
             bindings/julia/ERA/src/generated/era_functions.jl  its ccall wrappers (included after era_types.jl)

An emitter is a function ``emit(model) -> str`` registered in ``EMITTERS``
under its language with its output path; a language may have several outputs.
A path in ``RETIRED`` was once an output: a run deletes it, ``--check`` fails
while it exists.

The parser understands the C that cbindgen and DLPack write, not C in general:
preprocessor conditionals are evaluated as a C11 compiler would (``__cplusplus``
undefined, ``__STDC_VERSION__`` 201112L), so ``typedef enum : int32_t {`` under
``#ifdef __cplusplus`` is skipped in favour of ``typedef enum {``.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import operator
import os
import re
import sys
from typing import Callable, Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = os.path.join("include", "era.h")

# ------------------------------------------------------------------ the model


@dataclasses.dataclass
class CType:
    """A C type: ``base`` with ``pointers`` levels of indirection.

    ``base`` is the type name without qualifiers or tags (``uint32_t``,
    ``EraConfig``, ``void``); ``const`` records whether the pointee (or, for
    a value, the value) is const-qualified; ``function`` is set for a
    function pointer (then ``base`` is its return type's text)."""

    base: str
    pointers: int = 0
    const: bool = False
    function: bool = False

    def c(self) -> str:
        """The type written as C."""
        if self.function:
            return f"{self.base} (*)(...)"
        return ("const " if self.const else "") + self.base + (" " + "*" * self.pointers if self.pointers else "")


@dataclasses.dataclass
class Field:
    """A struct field or a function argument."""

    name: str
    type: CType
    doc: str = ""


@dataclasses.dataclass
class Struct:
    """A struct with its fields in declaration order."""

    name: str
    fields: List[Field]
    doc: str = ""
    header: str = ""


@dataclasses.dataclass
class EnumValue:
    name: str
    value: int
    doc: str = ""


@dataclasses.dataclass
class Enum:
    """An enum; ``underlying`` is the integer type it is stored as in C
    (``int`` for a plain C enum, or the typedef cbindgen gives it)."""

    name: str
    values: List[EnumValue]
    underlying: str = "int"
    doc: str = ""
    header: str = ""


@dataclasses.dataclass
class Define:
    """An object-like ``#define`` with a constant value (int, float or str)."""

    name: str
    value: object
    doc: str = ""
    header: str = ""


@dataclasses.dataclass
class Typedef:
    """``typedef <target> name;`` for a non-struct, non-enum target."""

    name: str
    target: CType
    doc: str = ""
    header: str = ""


@dataclasses.dataclass
class Function:
    """A function prototype."""

    name: str
    restype: CType
    args: List[Field]
    doc: str = ""
    header: str = ""


@dataclasses.dataclass
class Model:
    """Everything the headers declare, in order of appearance per kind."""

    structs: Dict[str, Struct] = dataclasses.field(default_factory=dict)
    enums: Dict[str, Enum] = dataclasses.field(default_factory=dict)
    defines: Dict[str, Define] = dataclasses.field(default_factory=dict)
    typedefs: Dict[str, Typedef] = dataclasses.field(default_factory=dict)
    opaque: Dict[str, str] = dataclasses.field(default_factory=dict)  # name -> doc
    functions: Dict[str, Function] = dataclasses.field(default_factory=dict)

    def resolve(self, name: str) -> str:
        """Follows typedefs of a type name to a primitive, struct, enum or opaque name."""
        seen = set()
        while name in self.typedefs and name not in seen:
            seen.add(name)
            t = self.typedefs[name].target
            if t.pointers or t.function:
                break
            name = t.base
        return name

    def enum_values(self, prefix: str) -> Dict[str, int]:
        """Every integer constant (enum value or ``#define``) whose name starts with ``prefix``."""
        out = {}
        for e in self.enums.values():
            for v in e.values:
                if v.name.startswith(prefix):
                    out[v.name] = v.value
        for d in self.defines.values():
            if d.name.startswith(prefix) and isinstance(d.value, int):
                out[d.name] = d.value
        return out


# ------------------------------------------------------------------ the lexer

_TOKEN = re.compile(
    r"""
    (?P<doc>/\*[*!](?!/).*?\*/)          # /** doc */ or /*! doc */
  | (?P<comment>/\*.*?\*/|//[^\n]*)      # other comments
  | (?P<pp>^[ \t]*\#(?:\\\n|[^\n])*)     # a preprocessor line (with continuations)
  | (?P<string>"(?:\\.|[^"\\])*")
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[uUlLfF]*)
  | (?P<ident>[A-Za-z_]\w*)
  | (?P<punct>::|[{}()\[\];,*=:<>\-+|&!~.])
  | (?P<space>\s+)
    """,
    re.VERBOSE | re.DOTALL | re.MULTILINE,
)


def _clean_doc(text: str) -> str:
    """The text of a doc comment without its delimiters, leading stars and ``\\brief``."""
    body = text[3:-2]
    lines = []
    for line in body.splitlines():
        line = line.strip()
        if line.startswith("*"):
            line = line[1:]
            if line.startswith(" "):
                line = line[1:]
        lines.append(line.rstrip())
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    out = "\n".join(lines)
    return re.sub(r"^\\brief\s+", "", out.strip()).strip()


def _lex(text: str) -> List[Tuple[str, str]]:
    """Tokens ``(kind, text)`` of a header: doc, pp, string, number, ident, punct."""
    toks = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise SyntaxError(f"gen_decls: cannot lex {text[pos:pos + 40]!r}")
        kind = m.lastgroup
        pos = m.end()
        if kind in ("space", "comment"):
            continue
        tok = m.group(kind)
        if kind == "pp":
            tok = re.sub(r"/\*.*?\*/|//.*", "", tok.replace("\\\n", " ")).strip()
        toks.append((kind, tok))
    return toks


# ---------------------------------------------------------- the preprocessor

#: Macros as a C11 compiler sees them (the C view of the headers is the ABI).
PREDEFINED = {"__STDC_VERSION__": 201112}

_BINOPS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.LShift: operator.lshift,
    ast.RShift: operator.rshift, ast.BitOr: operator.or_, ast.BitAnd: operator.and_,
}


def _const_eval(expr: str):
    """The value of a constant C expression of numbers and + - * << >> | & ( ),
    or None if it is not one. Integer suffixes (U, L) are dropped."""
    e = expr.strip()
    if not e:
        return None
    if re.fullmatch(r'"(?:\\.|[^"\\])*"', e):
        return ast.literal_eval(e)
    e = re.sub(r"\b(0[xX][0-9a-fA-F]+|\d+)[uUlL]+\b", r"\1", e)
    e = re.sub(r"\b(\d+\.\d*(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)[fF]\b", r"\1", e)
    try:
        tree = ast.parse(e, mode="eval").body
    except SyntaxError:
        return None

    def ev(n):
        if isinstance(n, ast.Constant) and isinstance(n.value, (int, float)) and not isinstance(n.value, bool):
            return n.value
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, (ast.USub, ast.UAdd, ast.Invert)):
            v = ev(n.operand)
            return -v if isinstance(n.op, ast.USub) else (~v if isinstance(n.op, ast.Invert) else v)
        if isinstance(n, ast.BinOp) and type(n.op) in _BINOPS:
            return _BINOPS[type(n.op)](ev(n.left), ev(n.right))
        raise ValueError(n)

    try:
        return ev(tree)
    except (ValueError, TypeError):
        return None


def _pp_condition(cond: str, macros: Dict[str, object]) -> bool:
    """Evaluates an ``#if`` condition with ``macros`` (undefined names are 0)."""
    c = re.sub(r"defined\s*\(\s*(\w+)\s*\)|defined\s+(\w+)",
               lambda m: "1" if (m.group(1) or m.group(2)) in macros else "0", cond)
    c = re.sub(r"\b(\d+)[uUlL]+\b", r"\1", c)
    c = c.replace("&&", " and ").replace("||", " or ")
    c = re.sub(r"!(?!=)", " not ", c)
    c = re.sub(r"\b[A-Za-z_]\w*\b",
               lambda m: m.group(0) if m.group(0) in ("and", "or", "not") else
               repr(macros.get(m.group(0), 0) if isinstance(macros.get(m.group(0), 0), int) else 1), c)
    return bool(eval(c, {"__builtins__": {}}, {}))  # only numbers and operators remain


def _preprocess(toks, macros, header, model, include):
    """Drops inactive conditional branches, records ``#define`` constants in
    ``model`` (with their doc comments), follows quoted ``#include``s through
    ``include(path) -> tokens``; returns the remaining tokens."""
    out = []
    stack = []  # (this branch active, some branch taken, parent active)
    active = True
    pending_doc = ""
    for kind, tok in toks:
        if kind == "pp":
            m = re.match(r"#\s*(\w+)\s*(.*)", tok)
            d, rest = (m.group(1), m.group(2).strip()) if m else ("", "")
            if d in ("if", "ifdef", "ifndef"):
                if d == "ifdef":
                    cond = rest.split()[0] in macros
                elif d == "ifndef":
                    cond = rest.split()[0] not in macros
                else:
                    cond = _pp_condition(rest, macros)
                stack.append((active and cond, cond, active))
                active = active and cond
            elif d == "elif":
                _, taken, parent = stack.pop()
                cond = not taken and _pp_condition(rest, macros)
                stack.append((parent and cond, taken or cond, parent))
                active = parent and cond
            elif d == "else":
                _, taken, parent = stack.pop()
                stack.append((parent and not taken, True, parent))
                active = parent and not taken
            elif d == "endif":
                _, _, parent = stack.pop()
                active = parent
            elif active and d == "define":
                dm = re.match(r"(\w+)(\()?\s*(.*)", rest)
                name, func, body = dm.group(1), dm.group(2), dm.group(3).strip()
                macros[name] = 1
                if not func:
                    value = _const_eval(body)
                    if value is not None:
                        macros[name] = value
                        model.defines[name] = Define(name, value, pending_doc, header)
            elif active and d == "include":
                im = re.match(r'"([^"]+)"', rest)
                if im:
                    out.extend(include(im.group(1)))
            pending_doc = ""
            continue
        if not active:
            continue
        if kind == "doc":
            pending_doc = _clean_doc(tok)
        out.append((kind, tok))
    if stack:
        raise SyntaxError(f"gen_decls: unterminated #if in {header}")
    return out


# ----------------------------------------------------------------- the parser



def _parse_type(words: List[str]) -> CType:
    """A CType from the tokens of a declaration without its name (``const struct X *``)."""
    const = "const" in words
    ptr = words.count("*")
    names = [w for w in words if w not in ("const", "struct", "enum", "volatile", "*")]
    base = " ".join(names)
    return CType(base, ptr, const)


def _split_decl(toks: List[str]) -> Tuple[CType, str]:
    """``[type tokens..., name]`` -> (type, name); handles function pointers ``ret (*name)(args)``."""
    if "(" in toks:
        i = toks.index("(")
        if toks[i + 1] == "*":
            return CType(" ".join(t for t in toks[:i] if t not in ("const", "struct")), 1, False, True), toks[i + 2]
    return _parse_type(toks[:-1]), toks[-1]


class _Parser:
    """A recursive reader of the declaration tokens (after preprocessing)."""

    def __init__(self, toks, model: Model, header_of):
        self.toks = toks
        self.i = 0
        self.model = model
        self.header_of = header_of  # token index -> header path

    def peek(self, k=0):
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else ("eof", "")

    def next(self):
        t = self.peek()
        self.i += 1
        return t

    def expect(self, text):
        k, t = self.next()
        if t != text:
            raise SyntaxError(f"gen_decls: expected {text!r}, got {t!r} near token {self.i}")

    def doc(self) -> str:
        d = ""
        while self.peek()[0] == "doc":
            d = _clean_doc(self.next()[1])
        return d

    def parse(self):
        while True:
            doc = self.doc()
            kind, tok = self.peek()
            if kind == "eof":
                return
            header = self.header_of(self.i)
            if tok == "extern" and self.peek(1)[0] == "string":
                self.i += 2
                if self.peek()[1] == "{":
                    self.i += 1
                continue
            if tok == "}":  # end of an extern "C" block
                self.i += 1
                continue
            if tok == "typedef":
                self.i += 1
                self.typedef(doc, header)
            elif tok in ("struct", "enum") and self.peek(2)[1] in ("{", ":"):
                self.i += 1
                name = self.next()[1]
                if tok == "struct":
                    self.model.structs[name] = Struct(name, self.struct_body(), doc, header)
                else:
                    self.model.enums[name] = Enum(name, self.enum_body(), "int", doc, header)
                self.expect(";")
            else:
                self.function(doc, header)

    def typedef(self, doc, header):
        kind, tok = self.peek()
        if tok in ("struct", "enum"):
            self.i += 1
            tag = self.next()[1] if self.peek()[0] == "ident" else None
            underlying = "int"
            if self.peek()[1] == ":":  # C23 / C++ fixed underlying type
                self.i += 1
                underlying = self.next()[1]
            if self.peek()[1] == "{":
                if tok == "struct":
                    fields = self.struct_body()
                    name = self.next()[1]
                    self.model.structs[name] = Struct(name, fields, doc, header)
                else:
                    values = self.enum_body()
                    name = self.next()[1]
                    self.model.enums[name] = Enum(name, values, underlying, doc, header)
                self.expect(";")
                return
            name = self.next()[1]
            self.expect(";")
            if tok == "struct":
                if tag not in self.model.structs:
                    self.model.opaque[name] = doc
            elif name != tag:
                self.model.typedefs[name] = Typedef(name, CType(tag), doc, header)
            return
        words = []
        while self.peek()[1] != ";":
            words.append(self.next()[1])
        self.expect(";")
        target, name = _split_decl(words)
        if name in self.model.enums and not target.pointers:
            self.model.enums[name].underlying = target.base  # cbindgen: enum X {...}; typedef int32_t X;
            return
        self.model.typedefs[name] = Typedef(name, target, doc, header)

    def struct_body(self) -> List[Field]:
        self.expect("{")
        fields = []
        while True:
            doc = self.doc()
            if self.peek()[1] == "}":
                self.i += 1
                return fields
            words = []
            depth = 0
            while depth or self.peek()[1] != ";":
                t = self.next()[1]
                depth += {"(": 1, ")": -1}.get(t, 0)
                words.append(t)
            self.expect(";")
            ctype, name = _split_decl(words)
            fields.append(Field(name, ctype, doc))

    def enum_body(self) -> List[EnumValue]:
        self.expect("{")
        values = []
        last = -1
        while True:
            doc = self.doc()
            if self.peek()[1] == "}":
                self.i += 1
                return values
            name = self.next()[1]
            if self.peek()[1] == "=":
                self.i += 1
                expr = []
                while self.peek()[1] not in (",", "}"):
                    expr.append(self.next()[1])
                value = _const_eval(" ".join(expr))
                if not isinstance(value, int):
                    raise SyntaxError(f"gen_decls: enum value {name} = {' '.join(expr)} is not an integer constant")
            else:
                value = last + 1
            last = value
            values.append(EnumValue(name, value, doc))
            if self.peek()[1] == ",":
                self.i += 1

    def function(self, doc, header):
        words = []
        while self.peek()[1] != "(":
            k, t = self.next()
            if k == "eof":
                raise SyntaxError("gen_decls: unexpected end of header")
            words.append(t)
        restype, name = _split_decl(words)
        self.expect("(")
        args = []
        cur = []
        depth = 0
        while True:
            t = self.next()[1]
            if t == "(":
                depth += 1
            elif t == ")" and depth:
                depth -= 1
            elif (t == "," or t == ")") and not depth:
                if cur and cur != ["void"]:
                    atype, aname = _split_decl(cur)
                    args.append(Field(aname, atype))
                cur = []
                if t == ")":
                    break
                continue
            cur.append(t)
        self.expect(";")
        self.model.functions[name] = Function(name, restype, args, doc, header)


def parse(root: str = ROOT, header: str = HEADER) -> Model:
    """Reads ``header`` (relative to ``root``) and the headers it includes with
    quotes (looked up in ``root/include``) into a :class:`Model`."""
    model = Model()
    macros = dict(PREDEFINED)

    def load(path):
        """The declaration tokens of ``path``, each as (kind, text, header)."""
        with open(path, encoding="utf-8") as f:
            text = f.read()
        rel = os.path.relpath(path, root)
        included = []

        def include(name):
            included.append(load(os.path.join(root, "include", name)))
            return [("incl", str(len(included) - 1))]

        out = []
        for k, t in _preprocess(_lex(text), macros, rel, model, include):
            out.extend(included[int(t)] if k == "incl" else [(k, t, rel)])
        return out

    toks = load(os.path.join(root, header))
    headers = [h for _, _, h in toks]
    _Parser([(k, t) for k, t, _ in toks], model, lambda i: headers[i] if i < len(headers) else "").parse()
    return model


# ------------------------------------------------------------- python emitter

_CTYPES = {
    "void": None,
    "char": "ctypes.c_char",
    "int": "ctypes.c_int",
    "unsigned int": "ctypes.c_uint",
    "float": "ctypes.c_float",
    "double": "ctypes.c_double",
    "size_t": "ctypes.c_size_t",
    "int8_t": "ctypes.c_int8",
    "int16_t": "ctypes.c_int16",
    "int32_t": "ctypes.c_int32",
    "int64_t": "ctypes.c_int64",
    "uint8_t": "ctypes.c_uint8",
    "uint16_t": "ctypes.c_uint16",
    "uint32_t": "ctypes.c_uint32",
    "uint64_t": "ctypes.c_uint64",
}


def _py_type(model: Model, t: CType) -> str:
    """The ctypes expression of a C type (by name: typedefs and structs are emitted first)."""
    if t.function:
        return "ctypes.c_void_p"
    base = t.base
    if t.pointers == 0:
        if base in _CTYPES:
            return _CTYPES[base] or "None"
        return base  # a struct, enum or typedef name emitted above
    if t.pointers == 1:
        if base == "char":
            return "ctypes.c_char_p"
        if base == "void" or model.resolve(base) in model.opaque:
            return "ctypes.c_void_p"  # opaque handles travel as void*
    inner = CType(base, t.pointers - 1, t.const)
    if t.pointers == 2 and model.resolve(base) in model.opaque:
        return "ctypes.POINTER(ctypes.c_void_p)"
    return f"ctypes.POINTER({_py_type(model, inner)})"


def _comment(doc: str, indent: str = "") -> List[str]:
    """A doc comment as ``#:`` lines."""
    return [indent + ("#: " + l if l else "#:") for l in doc.splitlines()] if doc else []


def _used_names(model: Model) -> List[str]:
    """Struct, enum and typedef names reachable from era.h's own declarations."""
    seen: List[str] = []

    def visit(name):
        if name in seen or name in _CTYPES:
            return
        if name in model.typedefs:
            seen.append(name)
            visit(model.typedefs[name].target.base)
        elif name in model.structs:
            for f in model.structs[name].fields:
                visit(f.type.base)
            seen.append(name)
        elif name in model.enums:
            seen.append(name)

    for f in model.functions.values():
        visit(f.restype.base)
        for a in f.args:
            visit(a.type.base)
    for s in [s for s in model.structs.values() if s.header == HEADER]:
        visit(s.name)
    for e in [e for e in model.enums.values() if e.header == HEADER]:
        visit(e.name)
    for t in [t for t in model.typedefs.values() if t.header == HEADER]:
        visit(t.name)
    return seen


def emit_python(model: Model) -> str:
    """``_era_h.py``: ctypes declarations of era.h for the Python bindings, followed by
    the runtime support they share (``scripts/python_support.py``)."""
    out = [
        '"""ctypes declarations of the era C ABI (include/era.h and the DLPack types it uses).',
        "",
        "GENERATED by scripts/gen_decls.py from include/era.h; DO NOT EDIT. Regenerate with",
        "``python3 scripts/gen_decls.py``; ``python3 scripts/gen_decls.py --check`` fails if this",
        "file is out of date.",
        "",
        "Contents: the ``#define`` constants, the enum values (``STATUS_NAMES`` maps every",
        "``EraStatus`` to its name), the structs as ``ctypes.Structure`` with their exact",
        "layout, ``FUNCTIONS = {name: (restype, [argtypes])}`` and ``bind(lib)``, which",
        "declares them on a loaded ``ctypes.CDLL``. Opaque handles (``EraHead*``) are",
        "``ctypes.c_void_p``.",
        '"""',
        "",
        "import ctypes",
        "",
    ]
    dl_enums = [e for e in model.enums.values() if e.header != HEADER]
    used = _used_names(model)

    out += ["# ------------------------------------------------------------------ constants", ""]
    for d in model.defines.values():
        out += _comment(d.doc)
        out.append(f"{d.name} = {d.value!r}")
    out.append("")

    out += ["# ---------------------------------------------------------------------- enums", ""]
    for e in list(model.enums.values()):
        if e.header != HEADER and e not in dl_enums:
            continue
        out.append(f"# enum {e.name} ({e.header})" + (f": {e.doc.splitlines()[0]}" if e.doc else ""))
        for v in e.values:
            out += _comment(v.doc)
            out.append(f"{v.name} = {v.value}")
        out.append("")
    status = model.enums.get("EraStatus")
    if status is not None:
        out.append("#: EraStatus value -> name (the names era_status_str returns).")
        out.append("STATUS_NAMES = {")
        for v in status.values:
            out.append(f"    {v.value}: {v.name!r},")
        out.append("}")
        out.append("")

    out += ["# -------------------------------------------------------------- types", ""]
    for name in used:
        if name in model.enums:
            e = model.enums[name]
            out += _comment(f"enum {name} ({e.header})")
            out.append(f"{name} = {_CTYPES.get(e.underlying) or 'ctypes.c_int'}")
            out.append("")
        elif name in model.typedefs:
            t = model.typedefs[name]
            out += _comment(t.doc)
            out.append(f"{name} = {_py_type(model, t.target)}")
            out.append("")
        elif name in model.structs:
            s = model.structs[name]
            while out[-2:] != ["", ""]:
                out.append("")
            out.append(f"class {name}(ctypes.Structure):")
            doc = (s.doc + "\n\n" if s.doc else "") + f"``{name}`` of {s.header}."
            lines = doc.replace("\\", "\\\\").replace('"""', "'''").splitlines()
            out.append('    """' + lines[0])
            out += [("    " + line).rstrip() for line in lines[1:]]
            out[-1] += '"""'
            out.append("")
            out.append("    _fields_ = [")
            for f in s.fields:
                out += _comment(f.doc, "        ")
                out.append(f"        ({f.name!r}, {_py_type(model, f.type)}),")
            out.append("    ]")
            out.append("")
            out.append("")
    for name in model.opaque:
        out += _comment(model.opaque[name])
        out.append(f"{name} = ctypes.c_void_p  # opaque: handles are void*")
        out.append("")

    out += ["", "# ---------------------------------------------------------------- functions", ""]
    out.append("#: name -> (restype, [argtypes]), in header order.")
    out.append("FUNCTIONS = {")
    for f in model.functions.values():
        proto = f"{f.restype.c()} {f.name}(" + ", ".join(f"{a.type.c()} {a.name}" for a in f.args) + ")"
        out.append(f"    # {proto}")
        args = ", ".join(_py_type(model, a.type) for a in f.args)
        out.append(f"    {f.name!r}: ({_py_type(model, f.restype)}, [{args}]),")
    out.append("}")
    out.append("")
    out.append("#: name -> argument names, in order.")
    out.append("ARGNAMES = {")
    for f in model.functions.values():
        out.append(f"    {f.name!r}: {[a.name for a in f.args]!r},")
    out.append("}")
    out.append("")
    out.append("")
    out += [
        "def bind(lib):",
        '    """Sets ``restype`` and ``argtypes`` of every era function on ``lib`` (a',
        "    ``ctypes.CDLL``); raises AttributeError if the library lacks one. Returns ``lib``.\"\"\"",
        "    for name, (restype, argtypes) in FUNCTIONS.items():",
        "        fn = getattr(lib, name)",
        "        fn.restype = restype",
        "        fn.argtypes = argtypes",
        "    return lib",
        "",
        "",
    ]
    # the runtime support both Python bindings share, written once beside this script
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "python_support.py"), encoding="utf-8") as f:
        out.append(f.read().rstrip("\n"))
    out.append("")
    return "\n".join(out)


# -------------------------------------------------------------- julia emitter

#: C primitive -> Julia type (the C-compatible aliases of Base where they exist).
_JLTYPES = {
    "void": "Cvoid",
    "char": "Cchar",
    "int": "Cint",
    "unsigned int": "Cuint",
    "float": "Cfloat",
    "double": "Cdouble",
    "size_t": "Csize_t",
    "int8_t": "Int8",
    "int16_t": "Int16",
    "int32_t": "Int32",
    "int64_t": "Int64",
    "uint8_t": "UInt8",
    "uint16_t": "UInt16",
    "uint32_t": "UInt32",
    "uint64_t": "UInt64",
}

#: Julia keywords that cannot name an argument; such a C name gets a trailing underscore.
_JL_KEYWORDS = {
    "baremodule", "begin", "break", "catch", "const", "continue", "do", "else", "elseif", "end",
    "export", "false", "finally", "for", "function", "global", "if", "import", "let", "local",
    "macro", "module", "quote", "return", "struct", "true", "try", "using", "while",
}


def _jl_type(model: Model, t: CType, argument: bool = False) -> str:
    """The Julia type of a C type (by name: typedefs, enums and structs are emitted first).
    ``const char*`` is ``Cstring`` for arguments and results (NUL-terminated text);
    a writable ``char*`` is ``Ptr{Cchar}``; a function pointer is ``Ptr{Cvoid}``."""
    if t.function:
        return "Ptr{Cvoid}"
    if t.pointers == 0:
        return _JLTYPES.get(t.base, t.base)
    if t.pointers == 1 and t.base == "char" and t.const and argument:
        return "Cstring"
    return "Ptr{" + _jl_type(model, CType(t.base, t.pointers - 1, t.const)) + "}"


def _jl_comment(doc: str, indent: str = "") -> List[str]:
    """A doc comment as ``#`` lines."""
    return [indent + ("# " + l if l else "#") for l in doc.splitlines()] if doc else []


def _jl_docstring(doc: str, indent: str = "") -> List[str]:
    """A doc comment as a Julia docstring (``\\`` and ``$`` escaped)."""
    text = doc.replace("\\", "\\\\").replace("$", "\\$").replace('"""', '\\"\\"\\"')
    return [indent + '"""'] + [(indent + l).rstrip() for l in text.splitlines()] + [indent + '"""']


def _jl_name(name: str) -> str:
    return name + "_" if name in _JL_KEYWORDS else name


def _jl_header(title: str, contents: List[str]) -> List[str]:
    """The comment block that opens a generated Julia file."""
    return [
        f"# {title}",
        "#",
        "# GENERATED by scripts/gen_decls.py from include/era.h; DO NOT EDIT. Regenerate with",
        "# `python3 scripts/gen_decls.py`; `python3 scripts/gen_decls.py --check` fails if this",
        "# file is out of date.",
        "#",
    ] + ["# " + line if line else "#" for line in contents] + [""]


def emit_julia_types(model: Model) -> str:
    """``era_types.jl``: the constants, enums and structs of era.h for the Julia package ERA."""
    out = _jl_header("Types and constants of the era C ABI (include/era.h and the DLPack types it uses).", [
        "Contents: the `#define` constants, the enums as integer aliases with typed constants",
        "(`STATUS_NAMES` maps every `EraStatus` to its name), the structs as Julia `struct`s",
        "with the C layout (isbits, fields in C order) and the opaque `EraHead`. The `ccall`",
        "wrappers that use them are in era_functions.jl, included after this file.",
    ])
    used = _used_names(model)

    out += ["# ------------------------------------------------------------------ constants", ""]
    for d in model.defines.values():
        out += _jl_comment(d.doc)
        value = repr(d.value) if not isinstance(d.value, str) else '"' + d.value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'
        out.append(f"const {d.name} = {value}")
    out.append("")

    out += ["# ---------------------------------------------------------------------- enums", ""]
    for e in model.enums.values():
        out += _jl_comment(f"enum {e.name} ({e.header})" + (f": {e.doc}" if e.doc else ""))
        out.append(f"const {e.name} = {_JLTYPES.get(e.underlying, 'Cint')}")
        for v in e.values:
            out += _jl_comment(v.doc)
            out.append(f"const {v.name} = {e.name}({v.value})")
        out.append("")
    status = model.enums.get("EraStatus")
    if status is not None:
        out.append("# EraStatus value -> name (the names era_status_str returns).")
        out.append("const STATUS_NAMES = Dict{EraStatus,String}(")
        for v in status.values:
            out.append(f'    {v.value} => "{v.name}",')
        out.append(")")
        out.append("")

    out += ["# ---------------------------------------------------------------------- types", ""]
    for name in used:
        if name in model.enums:
            continue  # emitted with its values above
        if name in model.typedefs:
            t = model.typedefs[name]
            out += _jl_comment(t.doc)
            out.append(f"const {name} = {_jl_type(model, t.target)}")
            out.append("")
        elif name in model.structs:
            s = model.structs[name]
            out += _jl_docstring((s.doc + "\n\n" if s.doc else "") + f"`{name}` of {s.header} (C layout).")
            out.append(f"struct {name}")
            for f in s.fields:
                out += _jl_comment(f.doc, "    ")
                out.append(f"    {f.name}::{_jl_type(model, f.type)}")
            out.append("end")
            out.append("")
    for name, doc in model.opaque.items():
        out += _jl_docstring((doc + "\n\n" if doc else "") + "Opaque: only `Ptr{" + name + "}` is used.")
        out.append(f"mutable struct {name} end")
        out.append("")
    return "\n".join(out)


def emit_julia_functions(model: Model) -> str:
    """``era_functions.jl``: the ``ccall`` wrappers of era.h for the Julia package ERA."""
    out = _jl_header("ccall wrappers of the era C ABI (include/era.h).", [
        "Contents: one function per C function that `@ccall`s it with the exact C types, and",
        "`FUNCTIONS` (name -> argument names). The types they name are in era_types.jl, which",
        "the including module includes first. The library is `liberapath()`, which the",
        "including module defines; it is evaluated when a call runs, so the library can be",
        "chosen at load time.",
    ])
    out += ["# ------------------------------------------------------------------ functions", ""]
    for f in model.functions.values():
        proto = f"{f.restype.c()} {f.name}(" + ", ".join(f"{a.type.c()} {a.name}" for a in f.args) + ")"
        names = [_jl_name(a.name) for a in f.args]
        sig = f"{f.name}(" + ", ".join(names) + ")"
        ret = _jl_type(model, f.restype, argument=True)
        out += _jl_docstring(f"    {sig} -> {ret}\n\n`{proto}`" + (f"\n\n{f.doc}" if f.doc else ""))
        out.append(f"function {sig}")
        cargs = ", ".join(f"{n}::{_jl_type(model, a.type, argument=True)}" for n, a in zip(names, f.args))
        out.append(f"    @ccall liberapath().{f.name}({cargs})::{ret}")
        out.append("end")
        out.append("")
    out.append("# name -> argument names, in header order.")
    out.append("const FUNCTIONS = (")
    for f in model.functions.values():
        args = "".join(f":{_jl_name(a.name)}, " for a in f.args)
        out.append(f"    {f.name} = ({args.rstrip(', ')}{',' if len(f.args) == 1 else ''}),")
    out.append(")")
    out.append("")
    return "\n".join(out)


# ------------------------------------------------------------------- registry

#: language -> [(output path relative to the repository root, emitter)]
EMITTERS: Dict[str, List[Tuple[str, Callable[[Model], str]]]] = {
    "python": [("bindings/jax/src/era_jax/_era_h.py", emit_python)],
    "julia": [
        ("bindings/julia/ERA/src/generated/era_types.jl", emit_julia_types),
        ("bindings/julia/ERA/src/generated/era_functions.jl", emit_julia_functions),
    ],
    "python-torch": [("bindings/torch/src/era_torch/_era_h.py", emit_python)],
}

#: language -> former outputs: deleted by a run, an error for --check while they exist.
RETIRED: Dict[str, List[str]] = {
    "julia": ["bindings/julia/ERA/src/generated/era_h.jl"],  # split into era_types.jl + era_functions.jl
}


def _write_or_check(root: str, rel: str, text: str, check: bool) -> int:
    """Writes ``text`` to ``rel`` if it differs; with ``check``, prints the diff
    instead and returns 1 if it differs."""
    path = os.path.join(root, rel)
    try:
        with open(path, encoding="utf-8") as f:
            old = f.read()
    except FileNotFoundError:
        old = None
    if old == text:
        return 0
    if check:
        sys.stdout.writelines(difflib.unified_diff(
            (old or "").splitlines(True), text.splitlines(True), f"{rel} (committed)", f"{rel} (generated)"))
        what = "is missing" if old is None else "is out of date"
        print(f"gen_decls: {rel} {what}; run python3 scripts/gen_decls.py", file=sys.stderr)
        return 1
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"gen_decls: wrote {rel}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="compare the committed outputs; exit 1 with a diff if one differs or a retired one exists")
    ap.add_argument("--root", default=ROOT, help="repository root (default: this script's parent folder)")
    ap.add_argument("--lang", action="append", choices=sorted(EMITTERS), help="only these languages (default: all)")
    args = ap.parse_args(argv)
    model = parse(args.root)
    status = 0
    for lang in args.lang or sorted(EMITTERS):
        for rel in RETIRED.get(lang, []):
            if not os.path.lexists(os.path.join(args.root, rel)):
                continue
            if args.check:
                status = 1
                print(f"gen_decls: {rel} is no longer generated; delete it (python3 scripts/gen_decls.py does)",
                      file=sys.stderr)
            else:
                os.remove(os.path.join(args.root, rel))
                print(f"gen_decls: removed {rel}")
        for rel, emit in EMITTERS[lang]:
            status |= _write_or_check(args.root, rel, emit(model), args.check)
    return status


if __name__ == "__main__":
    sys.exit(main())
