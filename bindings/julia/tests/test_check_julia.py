"""Tests of scripts/check_julia.py, the static checker of the Julia package ERA.

Each test copies the checker, the generator, the headers and the package into a
temporary folder, breaks one thing there, and expects the checker to name it; the
package itself is never modified.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
PKG = os.path.join("bindings", "julia", "ERA")
GENERATED_DIR = os.path.join(PKG, "src", "generated")
TYPES = os.path.join(GENERATED_DIR, "era_types.jl")  # constants, enums, structs
FUNCTIONS = os.path.join(GENERATED_DIR, "era_functions.jl")  # the ccall wrappers


def _load_checker(root):
    path = os.path.join(root, "scripts", "check_julia.py")
    spec = importlib.util.spec_from_file_location(f"check_julia_{abs(hash(root))}", path)
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, os.path.join(root, "scripts"))
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.pop(0)
    return mod


@pytest.fixture
def tree(tmp_path):
    """A copy of what the checker reads: scripts, include, bindings/julia."""
    for d in ("scripts", "include", os.path.join("bindings", "julia")):
        shutil.copytree(os.path.join(ROOT, d), tmp_path / d, ignore=shutil.ignore_patterns("__pycache__", "tests"))
    return tmp_path


def check(root, **kw):
    return _load_checker(str(root)).run(str(root), lib=kw.pop("lib", ""), quiet=True, **kw)


def edit(root, rel, old, new, count=1):
    path = os.path.join(root, rel)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    assert old in text, f"{old!r} not in {rel}"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.replace(old, new, count))


def has(errors, *parts):
    return any(all(p in e for p in parts) for e in errors)


def test_the_package_passes(tree):
    assert check(tree) == []


def test_the_checkout_passes():
    checker = _load_checker(ROOT)
    assert checker.run(ROOT, quiet=True) == []


def test_wrong_function_name(tree):
    edit(tree, FUNCTIONS, "liberapath().era_head_free(", "liberapath().era_head_freee(")
    errors = check(tree, drift=False)
    assert has(errors, "era_functions.jl:", "era_head_freee is not a function of include/era.h")
    assert has(errors, "no ccall of era_head_free")


def test_wrong_arity(tree):
    edit(tree, FUNCTIONS, "era_head_forward(head::Ptr{EraHead}, z::Ptr{DLTensor}, out::Ptr{DLTensor}, stream::Ptr{Cvoid})",
         "era_head_forward(head::Ptr{EraHead}, z::Ptr{DLTensor}, out::Ptr{DLTensor})")
    errors = check(tree, drift=False)
    assert has(errors, "era_head_forward takes 4 arguments in era.h, the ccall passes 3")


def test_wrong_argument_type(tree):
    edit(tree, FUNCTIONS, "era_last_error(buf::Ptr{Cchar}, len::Csize_t)", "era_last_error(buf::Ptr{Cchar}, len::Cint)")
    errors = check(tree, drift=False)
    assert has(errors, "era_last_error argument 2 (len)", "size_t", "Cint")


def test_wrong_pointer_type(tree):
    edit(tree, FUNCTIONS, "era_head_delta(head::Ptr{EraHead}, out::Ptr{Cdouble})",
         "era_head_delta(head::Ptr{EraHead}, out::Ptr{Cfloat})")
    assert has(check(tree, drift=False), "era_head_delta argument 2 (out)", "Ptr{Float64}")


def test_wrong_return_type(tree):
    edit(tree, FUNCTIONS, "liberapath().era_config_size()::Csize_t", "liberapath().era_config_size()::Cint")
    assert has(check(tree, drift=False), "era_config_size returns `size_t`")


def test_handwritten_ccall_is_checked_too(tree):
    edit(tree, os.path.join(PKG, "src", "library.jl"), "library_path() = _LIBPATH[]",
         "library_path() = _LIBPATH[]\n_bad() = ccall((:era_no_such, liberapath()), Cint, (Cint,), 1)")
    assert has(check(tree, drift=False), "library.jl:", "era_no_such is not a function")


def test_drifted_generated_file(tree):
    edit(tree, TYPES, "const ERA_ABI_VERSION = 1", "const ERA_ABI_VERSION = 2")
    errors = check(tree)
    assert has(errors, "drift:", "era_types.jl is out of date")


def test_drifted_functions_file(tree):
    edit(tree, FUNCTIONS, "# name -> argument names, in header order.", "# name -> argument names.")
    errors = check(tree)
    assert has(errors, "drift:", "era_functions.jl is out of date")
    assert not has(errors, "era_types.jl is out of date")


def test_missing_generated_file(tree):
    os.remove(os.path.join(tree, FUNCTIONS))
    errors = check(tree)
    assert has(errors, "drift:", "era_functions.jl is missing")
    assert has(errors, "ERA.jl:", 'include("generated/era_functions.jl") names no file')
    assert has(errors, "no ccall of era_head_new")


def test_retired_era_h_jl_reappears(tree):
    # the single generated file that era_types.jl + era_functions.jl replaced
    with open(os.path.join(tree, GENERATED_DIR, "era_h.jl"), "w", encoding="utf-8") as f:
        f.write("# an old copy\n")
    errors = check(tree)
    assert has(errors, "era_h.jl:", "not an output of scripts/gen_decls.py")
    assert has(errors, "drift:", "era_h.jl is no longer generated")
    gen = _load_checker(str(tree)).gen_decls
    assert gen.main(["--check", "--root", str(tree), "--lang", "julia"]) == 1
    assert gen.main(["--root", str(tree), "--lang", "julia"]) == 0  # a run deletes it
    assert not os.path.exists(os.path.join(tree, GENERATED_DIR, "era_h.jl"))
    assert check(tree) == []


def test_generated_includes(tree):
    rel = os.path.join(PKG, "src", "ERA.jl")
    edit(tree, rel, 'include("generated/era_types.jl")\ninclude("generated/era_functions.jl")\n',
         'include("generated/era_functions.jl")\ninclude("generated/era_types.jl")\n')
    assert has(check(tree, drift=False), "ERA.jl: includes era_functions.jl, era_types.jl; the generator's order is")
    edit(tree, rel, 'include("generated/era_types.jl")\n', "")
    assert has(check(tree, drift=False), "era_types.jl: not included by the package")


def test_syntax_error_with_file_and_line(tree):
    rel = os.path.join(PKG, "src", "heads.jl")
    with open(os.path.join(tree, rel), encoding="utf-8") as f:
        n = sum(1 for _ in f)
    with open(os.path.join(tree, rel), "a", encoding="utf-8") as f:
        f.write("\nfunction broken(x\n    x +* 1\nend\n")
    errors = check(tree, drift=False)
    assert any(e.startswith(f"{rel}:") and ("syntax error" in e or "missing" in e) and
               int(e.split(":")[1]) > n for e in errors), errors


def test_struct_layout_mismatch(tree):
    edit(tree, TYPES, "    ndim::Int32\n", "    ndim::Int64\n")
    errors = check(tree, drift=False)
    assert has(errors, "DLTensor.dtype::DLDataType is at offset 24 in Julia, 20 in C")


def test_struct_field_order(tree):
    # the same types, two names swapped: reserved0 first, then delta_optimizer
    edit(tree, TYPES, "    reserved0::UInt32\n", "    delta_optimizer::UInt32\n")
    edit(tree, TYPES, "    delta_optimizer::EraDeltaOptimizer\n", "    reserved0::EraDeltaOptimizer\n")
    assert has(check(tree, drift=False), "EraConfig has fields")


def test_wrapper_call_arity_and_preserve(tree):
    rel = os.path.join(PKG, "src", "heads.jl")
    edit(tree, rel, "check(era_head_delta(h, out), \"era_head_delta\")", "check(era_head_delta(h), \"era_head_delta\")")
    edit(tree, rel, """    GC.@preserve h zt gt dzt begin
        check(era_head_backward(h, zt, gt, dzt, dlstream(z)), "era_head_backward")
    end""", """    check(era_head_backward(h, zt, gt, dzt, dlstream(z)), "era_head_backward")""")
    errors = check(tree, drift=False)
    assert has(errors, "heads.jl:", "era_head_delta takes 2 arguments, the call passes 1")
    assert has(errors, "heads.jl:", "era_head_backward passes array memory outside GC.@preserve")


def test_project_toml(tree):
    rel = os.path.join(PKG, "Project.toml")
    edit(tree, rel, 'Preferences = "1.3"\n', "")
    edit(tree, rel, 'CUDA = "052768ef-5323-5732-b1bb-66c8b64840ba"', 'CUDA = "052768ef-5323-5732-b1bb-66c8b64840bb"')
    errors = check(tree, drift=False)
    assert has(errors, "[deps] Preferences has no [compat] entry")
    assert has(errors, "[weakdeps] CUDA has UUID")


def test_project_toml_invalid(tree):
    edit(tree, os.path.join(PKG, "Project.toml"), "[deps]", "[deps")
    assert has(check(tree, drift=False), "Project.toml:")


def test_exports_of_a_built_library(tree):
    lib = os.environ.get("ERA_LIBRARY") or os.path.join(ROOT, "target", "release", "libera.so")
    if not os.path.isfile(lib) or shutil.which("nm") is None:
        pytest.skip("no built libera (cargo build --release, or ERA_LIBRARY) or no nm")
    assert check(tree, lib=lib, drift=False) == []
    edit(tree, FUNCTIONS, "liberapath().era_head_free(", "liberapath().era_head_freee(")
    edit(tree, os.path.join("include", "era.h"), "void era_head_free(struct EraHead *head);",
         "void era_head_free(struct EraHead *head);\nvoid era_head_freee(struct EraHead *head);")
    assert has(check(tree, lib=lib, drift=False), "era_head_freee is not exported by the built libera")
