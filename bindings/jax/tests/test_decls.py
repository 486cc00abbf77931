"""The generated ctypes declarations (era_jax/_era_h.py, from scripts/gen_decls.py).

- the committed file is what the generator writes from the current header
  (``gen_decls.py --check``);
- the struct layouts match a C compiler's: sizeof and offsetof of every field
  of EraConfig, DLTensor, DLDevice and DLDataType, from a small C program
  compiled here against include/era.h (skipped only without a C compiler).

These tests read the checkout (the generator, the header and the generated
source file), not the installed package, and need no native library.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
GEN = os.path.join(ROOT, "scripts", "gen_decls.py")
ERA_H_PY = os.path.join(ROOT, "bindings", "jax", "src", "era_jax", "_era_h.py")
STRUCTS = ["EraConfig", "DLTensor", "DLDevice", "DLDataType"]


def load_module(name: str, path: str):
    """Imports the Python file ``path`` as module ``name`` (without installing it)."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def era_h():
    return load_module("era_h_checkout", ERA_H_PY)


def test_generated_module_is_up_to_date():
    r = subprocess.run([sys.executable, GEN, "--check"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def _c_compiler():
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def test_struct_layouts_match_the_c_compiler(era_h, tmp_path):
    cc = _c_compiler()
    if cc is None:
        pytest.skip("no C compiler (cc, gcc or clang) on PATH")
    lines = ["#include <stddef.h>", "#include <stdio.h>", '#include "era.h"', "int main(void) {"]
    for s in STRUCTS:
        struct = getattr(era_h, s)
        lines.append(f'  printf("{s} sizeof %zu\\n", sizeof({s}));')
        for field, _ in struct._fields_:
            lines.append(f'  printf("{s} {field} %zu\\n", offsetof({s}, {field}));')
    lines += ["  return 0;", "}"]
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines) + "\n")
    exe = tmp_path / "layout"
    subprocess.run([cc, "-std=c11", "-I", os.path.join(ROOT, "include"), str(src), "-o", str(exe)], check=True,
                   timeout=120)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True, timeout=60).stdout
    c_layout = {}
    for line in out.splitlines():
        s, what, value = line.split()
        c_layout[(s, what)] = int(value)
    checked = 0
    for s in STRUCTS:
        struct = getattr(era_h, s)
        assert ctypes.sizeof(struct) == c_layout[(s, "sizeof")], s
        for field, _ in struct._fields_:
            assert getattr(struct, field).offset == c_layout[(s, field)], f"{s}.{field}"
            checked += 1
    assert checked >= 30


def test_functions_table(era_h):
    # every prototype is declared, with as many argtypes as the header has arguments
    assert set(era_h.FUNCTIONS) == set(era_h.ARGNAMES)
    for name, (restype, argtypes) in era_h.FUNCTIONS.items():
        assert name.startswith("era_")
        assert len(argtypes) == len(era_h.ARGNAMES[name]), name
    for name in ["era_config_default", "era_head_new", "era_status_str", "era_gaussian_entropy",
                 "era_softmax_entropy", "era_token_forward"]:
        assert name in era_h.FUNCTIONS
    assert era_h.FUNCTIONS["era_softmax_entropy"][1][1] is ctypes.c_double
    assert isinstance(era_h.ERA_LN_2PI_E, float) and isinstance(era_h.ERA_ABI_VERSION, int)


def test_config_layout_matches_the_library():
    """Every field of the generated EraConfig at the library's offset and size (run-time check)."""
    from era_jax import _native

    lib = _native.lib()
    assert _native.config_layout_mismatch(lib) == ""
    assert lib.era_config_size() == ctypes.sizeof(_native.EraConfig)
    # a wrong declaration is caught: an extra field shifts everything after it
    fields = list(_native.EraConfig._fields_)
    at = [n for n, _ in fields].index("delta_lr")

    class Shifted(ctypes.Structure):
        _fields_ = fields[:at] + [("extra", ctypes.c_uint32)] + fields[at:]

    assert "bytes" in _native.config_layout_mismatch(lib, Shifted)

    # the same size, one field moved: reserved0 and delta_optimizer swapped names
    swapped = [(("reserved0" if n == "delta_optimizer" else "delta_optimizer" if n == "reserved0" else n), t) for n, t in fields]

    class Swapped(ctypes.Structure):
        _fields_ = swapped

    assert ctypes.sizeof(Swapped) == ctypes.sizeof(_native.EraConfig)
    assert "reserved0 is at offset 52" in _native.config_layout_mismatch(lib, Swapped)
    offset = ctypes.c_size_t()
    assert lib.era_config_field(b"no_such_field", ctypes.byref(offset), None) != 0
