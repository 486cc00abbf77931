"""The first step of scripts/gpu-check.sh: what this machine runs, and whether the
carried artifacts can run here at all.

    python3 scripts/gpu_preflight.py ARTIFACTS [--rehearse]

Prints Python's, jax's and jaxlib's, torch's (and its CUDA's) and the driver's
versions, the GPU, and what the artifacts were built with (ARTIFACTS/versions.env,
written by ``scripts/cuda.sh artifacts``), then checks, in this order:

- every file scripts/gpu-check.sh uses is in ARTIFACTS (``ARTIFACT_FILES``), and era_torch and
  era_jax from this tree import with its libraries (artifacts built from another tree lack
  or differ in the functions and FFI targets the bindings ask for);
- a CUDA driver loads and reports a version (``cuDriverGetVersion``), and it is not
  older than the toolkit that compiled the kernels (its CUDA version, e.g. 13000 for
  13.0): an older driver cannot load their code, and nothing here can fix that;
- torch has CUDA and sees a GPU.

Any of these failing stops the check (exit status 3) with a message: the steps after it
could only fail. What it cannot decide by itself is reported and left to the step that
needs it: jax or pytest that do not import (the JAX steps then fail, saying why), optax
missing (the SAC step; the machine's own optax is used, nothing is carried for it), a jaxlib older than the one whose headers era_jax's handlers
were compiled against (they report XLA FFI API 0.1 and use nothing newer, so they should
load; the JAX steps say whether they do).

``--rehearse`` (on a machine without a GPU, in ``make test``): the same report, the
artifact files checked, the GPU conditions reported but not required, and the rules
above applied to made-up versions (a driver older than the toolkit must stop the check).
"""

from __future__ import annotations

import ctypes
import importlib
import os
import platform
import re
import subprocess
import sys

#: the files of the artifacts that scripts/gpu-check.sh uses (scripts/cuda.sh artifacts makes them)
ARTIFACT_FILES = ("lib/libera.so", "cuda-tests", "liberajax.so", "versions.env")


def read_env(path: str) -> dict:
    """KEY=VALUE lines of a file (versions.env); {} when it is absent."""
    out = {}
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#") and "=" in line:
                    k, v = line.split("=", 1)
                    out[k.strip()] = v.strip()
    except OSError:
        pass
    return out


def cuda_version_str(v) -> str:
    """12080 -> '12.8'; None -> 'none'."""
    if v is None:
        return "none"
    return f"{v // 1000}.{(v % 1000) // 10}"


def driver_version():
    """(the driver's CUDA version from cuDriverGetVersion, or None; why not)."""
    for name in ("libcuda.so.1", "libcuda.so"):
        try:
            cuda = ctypes.CDLL(name)
        except OSError as e:
            why = f"{name} does not load ({e})"
            continue
        v = ctypes.c_int(0)
        r = cuda.cuDriverGetVersion(ctypes.byref(v))
        if r != 0:
            return None, f"cuDriverGetVersion failed (CUDA error {r})"
        return v.value, ""
    return None, why


def module_version(name: str):
    """(version string or None, why not)."""
    try:
        m = importlib.import_module(name)
    except Exception as e:  # an import error of any kind is reported, never raised
        return None, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return str(getattr(m, "__version__", "unknown")), ""


def version_tuple(v: str):
    """'2.11.0+cu130' -> (2, 11, 0): the leading number of each dotted part, up to the first without one."""
    out = []
    for part in v.split("."):
        m = re.match(r"\d+", part)
        if not m:
            break
        out.append(int(m.group()))
        if m.end() < len(part):  # '0+cu130', '2rc1': the rest is not a version number
            break
    return tuple(out)


def binding_problems(art: str) -> list:
    """era_torch and era_jax of this tree (bindings/*/src) imported with the artifacts'
    libraries, in this process: the messages of those that fail."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = []
    for name, var, lib in (("era_torch", "ERA_TORCH_LIBRARY", "lib/libera.so"), ("era_jax", "ERA_JAX_LIBRARY", "liberajax.so")):
        path = os.path.join(art, lib)
        if not os.path.exists(path):
            continue  # reported as a missing file
        os.environ[var] = path
        sys.path.insert(0, os.path.join(root, "bindings", name.split("_")[1], "src"))
        try:
            importlib.import_module(name)
        except Exception as e:  # any failure to import is the message
            out.append(f"{name} of this tree does not import with {path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    return out


def stops(facts: dict) -> list:
    """The conditions that stop the check: a list of messages (empty: go on).

    ``facts``: missing (artifact files not found), driver (int or None), driver_why,
    toolkit (int or None), torch_cuda (str or None), gpus (int), rehearse (bool)."""
    out = []
    if facts["missing"]:
        out.append(f"artifact files missing: {', '.join(facts['missing'])} (run scripts/cuda.sh artifacts on the build machine)")
    for p in facts.get("bindings", []):
        out.append(f"{p} (the artifacts were built from another tree: rebuild them from this one)")
    if facts["rehearse"]:
        return out
    if facts["driver"] is None:
        out.append(f"no usable CUDA driver: {facts['driver_why']}")
    elif facts["toolkit"] is not None and facts["driver"] < facts["toolkit"]:
        out.append(
            f"the driver supports CUDA {cuda_version_str(facts['driver'])}, older than the CUDA "
            f"{cuda_version_str(facts['toolkit'])} toolkit that compiled era's kernels: it cannot load them. "
            "Rebuild the artifacts with an older toolkit (ERA_NVCC) or update the driver"
        )
    if not facts["torch_cuda"]:
        out.append("torch has no CUDA support here (torch.version.cuda is None)")
    elif facts["gpus"] < 1:
        out.append("torch sees no CUDA device (torch.cuda.device_count() == 0)")
    return out


def warnings(facts: dict) -> list:
    """What the steps after this one will report: messages, nothing stops."""
    out = []
    for mod in ("jax", "pytest"):
        if facts["modules"].get(mod) is None:
            out.append(f"{mod} does not import: the JAX steps will fail")
    if facts["modules"].get("optax") is None:
        out.append("optax does not import: the SAC step will fail (examples/jax/sac_era.py needs it)")
    built, here = facts.get("jaxlib_built"), facts["modules"].get("jaxlib")
    if built and here and version_tuple(here) < version_tuple(built):
        out.append(f"jaxlib {here} is older than the jaxlib {built} era_jax was built against "
                   "(its handlers report XLA FFI API 0.1, so they should still load)")
    return out


def self_test() -> None:
    """The rules applied to made-up versions (a rehearsal)."""
    base = dict(missing=[], driver=13000, driver_why="", toolkit=13000, torch_cuda="13.0", gpus=1, rehearse=False,
                modules={"jax": "0.11.2", "jaxlib": "0.11.2", "pytest": "8", "optax": "0.2"},
                jaxlib_built="0.8.0")
    assert stops(base) == [] and warnings(base) == [], (stops(base), warnings(base))
    assert any("older than the CUDA 13.0 toolkit" in m for m in stops(dict(base, driver=12080)))
    assert stops(dict(base, driver=13010)) == []
    assert any("no usable CUDA driver" in m for m in stops(dict(base, driver=None, driver_why="x")))
    assert any("no CUDA support" in m for m in stops(dict(base, torch_cuda=None)))
    assert any("no CUDA device" in m for m in stops(dict(base, gpus=0)))
    assert any("artifact files missing" in m for m in stops(dict(base, missing=["cuda-tests"])))
    assert any("rebuild them" in m for m in stops(dict(base, rehearse=True, bindings=["era_jax of this tree does not import"])))
    assert any("JAX steps" in m for m in warnings(dict(base, modules=dict(base["modules"], jax=None))))
    assert any("optax" in m for m in warnings(dict(base, modules=dict(base["modules"], optax=None))))
    assert any("older than the jaxlib" in m for m in warnings(dict(base, jaxlib_built="0.12.0")))
    assert version_tuple("0.11.2") < version_tuple("0.12.0") and version_tuple("2.11.0+cu130") == (2, 11, 0)


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    rehearse = "--rehearse" in args
    paths = [a for a in args if not a.startswith("--")]
    if len(paths) != 1:
        print(__doc__)
        return 2
    art = paths[0]
    built = read_env(os.path.join(art, "versions.env"))
    toolkit = int(built["ERA_CUDA_TOOLKIT"]) if built.get("ERA_CUDA_TOOLKIT", "").isdigit() else None
    modules, why = {}, {}
    for m in ("jax", "jaxlib", "torch", "pytest", "optax"):
        modules[m], why[m] = module_version(m)
    torch_cuda, gpus = None, 0
    if modules["torch"]:
        import torch

        torch_cuda = torch.version.cuda
        gpus = torch.cuda.device_count() if torch_cuda else 0
    drv, drv_why = driver_version()
    smi = "-"
    try:
        r = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=10)
        smi = r.stdout.strip() or r.stderr.strip() or "-"
    except (OSError, subprocess.TimeoutExpired) as e:
        smi = f"nvidia-smi: {type(e).__name__}"

    def show(m):
        return modules[m] or f"not importable ({why[m]})"

    print(f"python    {platform.python_version()} ({sys.executable})")
    print(f"jax       {show('jax')}; jaxlib {show('jaxlib')}")
    print(f"torch     {show('torch')}; its CUDA {torch_cuda or 'none'}; devices {gpus}")
    print(f"driver    CUDA {cuda_version_str(drv)}{'' if drv else f' ({drv_why})'}; nvidia-smi: {smi}")
    print(f"pytest    {show('pytest')}; optax {show('optax')}")
    print(f"artifacts {art}: era {built.get('ERA_VERSION', '?')} (commit {built.get('ERA_COMMIT', '?')}), kernels by the "
          f"CUDA {cuda_version_str(toolkit)} toolkit, era_jax against jaxlib {built.get('ERA_JAXLIB', '?')}")
    missing = [f for f in ARTIFACT_FILES if not os.path.exists(os.path.join(art, f))]
    bindings = binding_problems(art) if modules["torch"] and modules["jax"] else []
    facts = dict(missing=missing, driver=drv, driver_why=drv_why, toolkit=toolkit, torch_cuda=torch_cuda, gpus=gpus,
                 rehearse=rehearse, modules=modules, jaxlib_built=built.get("ERA_JAXLIB"), bindings=bindings)
    for w in warnings(facts):
        print(f"preflight: note: {w}")
    if rehearse:
        self_test()
        print("preflight: rules checked on made-up versions (a driver older than the toolkit stops the check)")
    problems = stops(facts)
    for p in problems:
        print(f"preflight: STOP: {p}")
    return 3 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
