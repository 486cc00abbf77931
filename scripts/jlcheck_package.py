"""Julia static checker (check_julia.py), the package as a whole: check 5 (the generated
files are the generator's outputs, included once and in order, without drift), check 6
(Project.toml) and the exports of a built library (``nm -D``)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from typing import Dict, List, Optional, Tuple

import gen_decls
from jlcheck_syntax import _text, _walk

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


def check_drift(root: str, scripts: str) -> List[str]:
    """``gen_decls.py --check`` of the Julia outputs under ``root`` (the generator in ``scripts``)."""
    r = subprocess.run([sys.executable, os.path.join(scripts, "gen_decls.py"), "--check", "--root", root, "--lang", "julia"],
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
