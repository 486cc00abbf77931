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
# the ccall wrappers, one file per family (decls_julia.JULIA_FUNCTION_FILES), in include order
FUNCTIONS = os.path.join(GENERATED_DIR, "era_functions.jl")  # the core and FUNCTIONS
GAUSSIAN = os.path.join(GENERATED_DIR, "era_functions_gaussian.jl")  # delta API, masked head
TOKEN = os.path.join(GENERATED_DIR, "era_functions_token.jl")  # one-call token forward/backward
TOKEN_PARTS = os.path.join(GENERATED_DIR, "era_functions_token_parts.jl")  # split forward, vocabulary blocks
FUNCTION_FILES = [FUNCTIONS, GAUSSIAN, TOKEN, TOKEN_PARTS]


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


def test_wrong_function_name_in_every_functions_file(tree):
    for rel, name in [(GAUSSIAN, "era_gaussian_forward_masked"), (TOKEN, "era_token_backward"),
                      (TOKEN_PARTS, "era_token_stats_merge")]:
        edit(tree, rel, f"liberapath().{name}(", f"liberapath().{name}x(")
        errors = check(tree, drift=False)
        assert has(errors, f"{os.path.basename(rel)}:", f"{name}x is not a function of include/era.h")
        assert has(errors, f"no ccall of {name}")
        edit(tree, rel, f"liberapath().{name}x(", f"liberapath().{name}(")
    assert check(tree, drift=False) == []


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
    edit(tree, GAUSSIAN, "era_head_delta(head::Ptr{EraHead}, out::Ptr{Cdouble})",
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
    edit(tree, FUNCTIONS, "# name -> argument names, in header order", "# name -> argument names")
    errors = check(tree)
    assert has(errors, "drift:", "era_functions.jl is out of date")
    assert not has(errors, "era_types.jl is out of date")


def test_drifted_family_file(tree):
    edit(tree, TOKEN_PARTS, "function era_token_decide(", "function era_token_decide_(")
    errors = check(tree)
    assert has(errors, "drift:", "era_functions_token_parts.jl is out of date")
    assert not has(errors, "era_functions.jl is out of date")
    assert not has(errors, "era_functions_token.jl is out of date")


def test_every_function_in_exactly_one_file(tree):
    gen = _load_checker(str(tree)).gen_decls
    model = gen.parse(str(tree))
    defined = {}
    for rel in FUNCTION_FILES:
        with open(os.path.join(tree, rel), encoding="utf-8") as f:
            for line in f:
                if line.startswith("function era_"):
                    defined.setdefault(line.split()[1].split("(")[0], []).append(os.path.basename(rel))
    assert sorted(defined) == sorted(model.functions)
    assert all(len(files) == 1 for files in defined.values()), defined
    assert defined["era_head_new"] == ["era_functions.jl"]
    assert defined["era_gaussian_backward_masked"] == ["era_functions_gaussian.jl"]
    assert defined["era_token_forward_temperature"] == ["era_functions_token.jl"]
    assert defined["era_token_block_finish"] == ["era_functions_token_parts.jl"]


def test_missing_generated_file(tree):
    os.remove(os.path.join(tree, FUNCTIONS))
    errors = check(tree)
    assert has(errors, "drift:", "era_functions.jl is missing")
    assert has(errors, "ERA.jl:", 'include("generated/era_functions.jl") names no file')
    assert has(errors, "no ccall of era_head_new")


def test_missing_family_file(tree):
    os.remove(os.path.join(tree, GAUSSIAN))
    errors = check(tree)
    assert has(errors, "drift:", "era_functions_gaussian.jl is missing")
    assert has(errors, "ERA.jl:", 'include("generated/era_functions_gaussian.jl") names no file')
    assert has(errors, "no ccall of era_gaussian_forward_delta")
    assert not has(errors, "no ccall of era_head_new")


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
    assert has(check(tree, drift=False), "ERA.jl: includes era_functions.jl, era_types.jl, era_functions_gaussian.jl,",
               "the generator's order is era_types.jl, era_functions.jl,")
    edit(tree, rel, 'include("generated/era_types.jl")\n', "")
    assert has(check(tree, drift=False), "era_types.jl: not included by the package")


def test_function_files_includes(tree):
    rel = os.path.join(PKG, "src", "ERA.jl")
    edit(tree, rel, 'include("generated/era_functions_token.jl")\ninclude("generated/era_functions_token_parts.jl")\n',
         'include("generated/era_functions_token_parts.jl")\ninclude("generated/era_functions_token.jl")\n')
    assert has(check(tree, drift=False), "ERA.jl: includes", "era_functions_token_parts.jl, era_functions_token.jl;",
               "the generator's order is")
    edit(tree, rel, 'include("generated/era_functions_token.jl")\n', "")
    assert has(check(tree, drift=False), "era_functions_token.jl: not included by the package")
    edit(tree, rel, 'include("generated/era_functions_gaussian.jl")\n',
         'include("generated/era_functions_gaussian.jl")\ninclude("generated/era_functions_gaussian.jl")\n')
    assert has(check(tree, drift=False), "era_functions_gaussian.jl: included 2 times")


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


HEADS = os.path.join(PKG, "src", "heads.jl")
CHAINRULES = os.path.join(PKG, "ext", "ERAChainRulesCoreExt.jl")


def test_handle_constructor_reachable_positionally(tree):
    edit(tree, HEADS, "SoftmaxHead(::_Owned, ptr::Ptr{EraHead}) = finalizer(_free!, new(ptr))",
         "SoftmaxHead(ptr::Ptr{EraHead}) = finalizer(_free!, new(ptr))")
    errors = check(tree, drift=False)
    assert has(errors, "heads.jl:", "struct SoftmaxHead holds a Ptr", "reachable positionally")
    assert not has(errors, "struct GaussianHead holds a Ptr")


def test_handle_without_deepcopy_or_serialize(tree):
    edit(tree, HEADS, "function Base.deepcopy_internal(h::AbstractHead, seen::IdDict)",
         "function deepcopy_head(h::AbstractHead, seen::IdDict)")
    edit(tree, HEADS, "function Serialization.serialize(s::Serialization.AbstractSerializer, h::AbstractHead)",
         "function serialize_head(h::AbstractHead)")
    errors = check(tree, drift=False)
    for name in ("GaussianHead", "SoftmaxHead", "TokenHead"):
        assert has(errors, f"struct {name} holds a Ptr", "no Base.deepcopy_internal method")
        assert has(errors, f"struct {name} holds a Ptr", "no Serialization.serialize method")


def test_handle_without_functors_rule(tree):
    edit(tree, os.path.join(PKG, "ext", "ERAFunctorsExt.jl"),
         "Functors.functor(::Type{<:AbstractHead}, h) = _NO_CHILDREN, _ -> h", "")
    assert has(check(tree, drift=False), "struct TokenHead holds a Ptr", "Functors rule")


def test_a_new_handle_struct_needs_every_rule(tree):
    edit(tree, HEADS, "struct _Owned end", """struct _Owned end

mutable struct Workspace
    ptr::Ptr{Cvoid}
    Workspace(ptr::Ptr{Cvoid}) = new(ptr)
end""")
    errors = check(tree, drift=False)
    for what in ("reachable positionally", "deepcopy_internal", "Serialization.serialize", "Functors rule"):
        assert has(errors, "struct Workspace holds a Ptr", what), what
    # a @leaf rule in an extension counts as the Functors rule
    edit(tree, os.path.join(PKG, "ext", "ERAFunctorsExt.jl"), "end # module", "Functors.@leaf ERA.Workspace\nend # module")
    assert not has(check(tree, drift=False), "struct Workspace holds a Ptr", "Functors rule")


def test_exported_name_that_clashes(tree):
    rel = os.path.join(PKG, "src", "ERA.jl")
    edit(tree, rel, "export set_delta!, update_delta!, to_json, from_json",
         "export set_delta!, update_delta!, to_json, from_json,\n       entropy, delta")
    errors = check(tree, drift=False)
    assert has(errors, "ERA.jl:", "exports `entropy`", "StatsBase, Distributions")
    assert has(errors, "ERA.jl:", "generic name `delta`")


def test_non_differentiable_on_a_differentiable_function(tree):
    edit(tree, CHAINRULES, "@non_differentiable ERA.config(::Any)",
         "@non_differentiable ERA.config(::Any)\n@non_differentiable ERA.softmax_entropy(::Any)\n"
         "@non_differentiable ERA.entropy(::AbstractHead, ::Any)")
    errors = check(tree, drift=False)
    assert has(errors, "ERAChainRulesCoreExt.jl:", "@non_differentiable softmax_entropy", "silent zero")
    assert has(errors, "ERAChainRulesCoreExt.jl:", "@non_differentiable entropy")
    assert not has(errors, "@non_differentiable config")


def test_not_implemented_tangent(tree):
    edit(tree, CHAINRULES, "dadv = gA === nothing ? ZeroTangent() : scaled ? gA ./ full.scale : gA",
         "dadv = @not_implemented(\"d advantages\")")
    assert has(check(tree, drift=False), "ERAChainRulesCoreExt.jl:", "@not_implemented", "optimiser")


def test_token_rrule_drops_an_output(tree):
    edit(tree, CHAINRULES, "glp, gH, gA = _live(t, :logprobs), _live(t, :entropy), _live(t, :advantages)",
         "glp, gH, gA = _live(t, :logprobs), nothing, nothing")
    errors = check(tree, drift=False)
    assert has(errors, "ERAChainRulesCoreExt.jl:", "never reads the cotangent of its `entropy` output")
    assert has(errors, "never reads the cotangent of its `advantages` output")
    assert not has(errors, "`logprobs` output") and not has(errors, "`scale` output")
