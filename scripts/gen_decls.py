#!/usr/bin/env python3
"""Declaration generator: include/era.h -> language bindings' declaration layers.

Reads the C ABI of era (``include/era.h``, which includes the upstream DLPack
header ``include/era/dlpack.h``) into a small intermediate model (structs with
their fields in order, enums with values, ``#define`` constants, typedefs,
opaque types and function prototypes, each with its doc comment), then hands
the model to one emitter per language. Python standard library only. The parts live
beside this script: the model and its parser in ``decls_model.py``, the emitters in
``decls_python.py`` and ``decls_julia.py``; this script registers the outputs.

    python3 scripts/gen_decls.py            # write every output
    python3 scripts/gen_decls.py --check    # exit 1 with a diff if a committed output differs

Outputs (committed, never edited by hand):

    python   bindings/jax/src/era_jax/_era_h.py                  ctypes declarations for era_jax (and era_torch)
             bindings/jax/src/era_jax/_era_support.py            their runtime support (scripts/python_support.py)
    julia    bindings/julia/ERA/src/generated/era_types.jl      constants, enums and structs of the Julia package ERA
             bindings/julia/ERA/src/generated/era_functions.jl  its ccall wrappers (included after era_types.jl):
                                                                the core and FUNCTIONS, then one file per family
             .../era_functions_gaussian.jl, era_functions_token.jl, era_functions_token_parts.jl
                                                                (decls_julia.JULIA_FUNCTION_FILES)

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
import difflib
import os
import sys
from typing import Callable, Dict, List, Optional, Tuple

# the generator's parts, beside this script (importable as gen_decls.* for check_julia.py)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from decls_julia import emit_julia_types, julia_function_emitters  # noqa: E402
from decls_model import ROOT, CType, Model, parse, used_names  # noqa: E402,F401  (CType, used_names: for check_julia.py)
from decls_python import emit_python, emit_python_support  # noqa: E402

# ------------------------------------------------------------------- registry

#: language -> [(output path relative to the repository root, emitter)]
EMITTERS: Dict[str, List[Tuple[str, Callable[[Model], str]]]] = {
    "python": [
        ("bindings/jax/src/era_jax/_era_h.py", emit_python),
        ("bindings/jax/src/era_jax/_era_support.py", emit_python_support),
    ],
    "julia": [
        ("bindings/julia/ERA/src/generated/era_types.jl", emit_julia_types),
    ] + [(f"bindings/julia/ERA/src/generated/{file}", emit) for file, emit in julia_function_emitters()],
    "python-torch": [
        ("bindings/torch/src/era_torch/_era_h.py", emit_python),
        ("bindings/torch/src/era_torch/_era_support.py", emit_python_support),
    ],
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
