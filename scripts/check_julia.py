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
import sys
from typing import List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
# the checker's parts, beside this script: parsing, ccalls and types, struct layouts, the package
# as a whole (includes, drift, Project.toml, a library's exports), the hand-written code's rules
import gen_decls  # noqa: E402  (the header parser; its Julia emitter's mapping is not reused)
from jlcheck_ccalls import _ccall_sites, check_ccalls, check_wrapper_calls, const_aliases  # noqa: E402
from jlcheck_layouts import check_layouts  # noqa: E402
from jlcheck_package import check_drift, check_includes, check_project, exported_symbols  # noqa: E402
from jlcheck_rules import check_exports, check_gradients, check_ownership, check_token_rrule  # noqa: E402
from jlcheck_syntax import _parser, check_syntax, jl_files  # noqa: E402

PACKAGE = os.path.join("bindings", "julia", "ERA")
EXTRA_FILES = [os.path.join("bindings", "julia", "build_tarballs.jl")]

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
        errors += check_drift(root, HERE)
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
