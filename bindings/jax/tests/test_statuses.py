"""One list of statuses: the header (include/era.h, read with the declaration
generator's parser), the generated module (era_jax._era_h) and the library
(era_status_str) must name the same EraStatus values. The JAX shim keeps no
status list of its own: it reports era_status_str's names."""

import importlib.util
import os
import sys

from era_jax import _era_h, _native

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def header_statuses():
    """{value: name} of enum EraStatus, parsed from include/era.h."""
    spec = importlib.util.spec_from_file_location("gen_decls", os.path.join(ROOT, "scripts", "gen_decls.py"))
    gen = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = gen  # dataclasses look their module up while the file runs
    spec.loader.exec_module(gen)
    return {v.value: v.name for v in gen.parse(ROOT).enums["EraStatus"].values}


def library_statuses():
    """{value: name} of every number in 0..128 that the library names."""
    lib = _native.lib()
    out = {}
    for n in range(129):
        name = lib.era_status_str(n).decode()
        if name != "ERA_STATUS_UNKNOWN":
            out[n] = name
    return out


def test_statuses_agree_everywhere():
    header = header_statuses()
    generated = dict(_era_h.STATUS_NAMES)
    library = library_statuses()
    constants = {getattr(_era_h, name): name for name in dir(_era_h) if name.startswith("ERA_STATUS_")}
    sources = {"header": header, "generated STATUS_NAMES": generated, "generated constants": constants,
               "library": library}
    every = set().union(*(set(s.items()) for s in sources.values()))
    missing = {f"{name} = {value}": [k for k, s in sources.items() if s.get(value) != name]
               for value, name in sorted(every)}
    missing = {k: v for k, v in missing.items() if v}
    assert not missing, f"statuses missing from (or named differently in) some sources: {missing}"
    assert header[0] == "ERA_STATUS_OK" and len(header) >= 10
    assert "ERA_STATUS_UNKNOWN" not in header.values()
