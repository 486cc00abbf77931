"""The declaration generator's model of era.h: the intermediate model (structs with their
fields in order, enums with values, ``#define`` constants, typedefs, opaque types and function
prototypes, each with its doc comment), and the lexer, preprocessor and parser that read
``include/era.h`` (and the DLPack header it includes) into it. Used by ``gen_decls.py`` and
its emitters (``decls_python.py``, ``decls_julia.py``) and by ``check_julia.py``.
Python standard library only."""

from __future__ import annotations

import ast
import dataclasses
import operator
import os
import re
from typing import Dict, List, Tuple

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


#: The C primitive types the header uses; every emitter maps each of them.
PRIMITIVES = (
    "void", "char", "int", "unsigned int", "float", "double", "size_t",
    "int8_t", "int16_t", "int32_t", "int64_t", "uint8_t", "uint16_t", "uint32_t", "uint64_t",
)


def used_names(model: Model) -> List[str]:
    """Struct, enum and typedef names reachable from era.h's own declarations."""
    seen: List[str] = []

    def visit(name):
        if name in seen or name in PRIMITIVES:
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
