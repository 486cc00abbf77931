"""The native library: loading, config validation, and registration of the
XLA FFI targets.

``liberajax.so`` (built by ``pip install``) is one shared object holding both
the XLA FFI handlers and the era library itself; the ``era_*`` C functions are
exported from it, so Python calls them directly through ctypes for everything
that happens at trace time (config validation and error messages, versions).
Their ctypes declarations (structs, constants, prototypes) are generated from
era.h into ``_era_h.py``, their shared runtime support (loading, defaults) into
``_era_support.py`` (``scripts/gen_decls.py``); nothing here restates them.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import threading

from . import _compat
from . import _era_h as h
from . import _era_support as support
from ._era_h import (
    ERA_DELTA_OPTIMIZER_ADAM,
    ERA_DELTA_OPTIMIZER_FIXED,
    ERA_DELTA_OPTIMIZER_SGD,
    ERA_HEAD_KIND_GAUSSIAN,
    ERA_HEAD_KIND_SOFTMAX,
    ERA_HEAD_KIND_TOKEN,
    ERA_LN_2PI_E,
    EraConfig,
)

__all__ = [
    "ERA_DELTA_OPTIMIZER_ADAM",
    "ERA_DELTA_OPTIMIZER_FIXED",
    "ERA_DELTA_OPTIMIZER_SGD",
    "ERA_HEAD_KIND_GAUSSIAN",
    "ERA_HEAD_KIND_SOFTMAX",
    "ERA_HEAD_KIND_TOKEN",
    "ERA_LN_2PI_E",
    "EraConfig",
    "EraError",
    "abi_version",
    "lib",
    "library_path",
    "register_targets",
    "target",
    "targets",
    "validate_config",
    "version",
]

_LIB_NAME = "liberajax.so"


class EraError(ValueError):
    """An error reported by the era library; ``status`` is the era status name."""

    def __init__(self, message: str, status: str = ""):
        super().__init__(message)
        self.status = status


def library_path() -> str:
    """Path of the native library: ``$ERA_JAX_LIBRARY`` or the packaged ``liberajax.so``."""
    env = os.environ.get("ERA_JAX_LIBRARY")
    if env:
        return env
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), _LIB_NAME)


def _declare_shim(lib: ctypes.CDLL) -> None:
    """Declares the shim's own export (csrc/era_jax.cc): the table of FFI targets."""
    lib.era_jax_target.restype = ctypes.c_char_p
    lib.era_jax_target.argtypes = [ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_void_p)]


@functools.lru_cache(maxsize=None)
def lib() -> ctypes.CDLL:
    """The loaded native library (loaded once)."""
    handle = support.load(library_path(), "era_jax")
    _declare_shim(handle)
    return handle


def config_layout_mismatch(handle: ctypes.CDLL, struct: type = EraConfig) -> str:
    """Compares a ctypes declaration of ``EraConfig`` (the generated one by default) with the
    library's; returns what differs, or ``""`` (the shared support of ``_era_support``)."""
    return support.config_layout_mismatch(handle, struct)


def version() -> str:
    """The era library version ("MAJOR.MINOR.PATCH")."""
    return lib().era_version().decode()


def abi_version() -> int:
    """The era C ABI version of the loaded library."""
    return int(lib().era_abi_version())


def last_error() -> str:
    """The message of the last failed era call on this thread."""
    return support.last_error(lib())


def check(status: int, what: str = "") -> None:
    """Raises :class:`EraError` with era's message if ``status`` is not OK."""
    if status != 0:
        name = lib().era_status_str(status).decode()
        msg = last_error()
        raise EraError(f"era: {msg}" + (f" ({what}, {name})" if what else f" ({name})"), name)


def default_config(kind: int) -> EraConfig:
    """era's defaults for ``kind`` (``era_config_default``)."""
    cfg = EraConfig()
    check(lib().era_config_default(kind, ctypes.byref(cfg)), "era_config_default")
    return cfg


@functools.lru_cache(maxsize=4096)
def validate_config(kind: int, fields: tuple) -> None:
    """Builds (and frees) an era head from ``era_config_default(kind)`` with
    ``fields`` (a tuple of ``(name, value)`` pairs) set; raises
    :class:`EraError` (a ``ValueError``) with the library's message if era
    rejects it. Cached: a configuration is validated once per process."""
    cfg = default_config(kind)
    for name, value in fields:
        setattr(cfg, name, value)
    head = ctypes.c_void_p()
    status = lib().era_head_new(ctypes.byref(cfg), ctypes.byref(head))
    if status == 0:
        lib().era_head_free(head)
        return
    check(status, "invalid era configuration")


def gaussian_probe_delta(dim: int, target_entropy: float, log_std_max: float) -> float:
    """The stored delta of the native Gaussian heads (mirrors csrc/era_jax.cc):
    0 when the target is feasible on its own, otherwise a value far inside the
    feasible range, so that feasibility is decided per call from the delta
    operand."""
    max_entropy = float(dim) * (log_std_max + 0.5 * ERA_LN_2PI_E)
    if target_entropy <= max_entropy:
        return 0.0
    return -(abs(target_entropy) + abs(max_entropy) + 1.0)


@functools.lru_cache(maxsize=1024)
def validate_truncation(low: float, high: float) -> None:
    """Asks the library whether ``[low, high]`` is a valid truncation interval
    (one-element call of ``era_truncated_normal_entropy``); raises
    :class:`EraError` with its message if not."""
    one = (ctypes.c_int64 * 1)(1)
    vals = (ctypes.c_double * 3)(0.0, 0.0, 0.0)
    base = ctypes.addressof(vals)

    def t(i: int, ndim: int) -> h.DLTensor:
        return h.DLTensor(
            ctypes.c_void_p(base + 8 * i), h.DLDevice(h.kDLCPU, 0), ndim, h.DLDataType(h.kDLFloat, 64, 1),
            ctypes.cast(one, ctypes.POINTER(ctypes.c_int64)), None, 0,
        )

    m, s, e = t(0, 1), t(1, 1), t(2, 0)
    check(
        lib().era_truncated_normal_entropy(ctypes.byref(m), ctypes.byref(s), low, high, ctypes.byref(e), None),
        "invalid truncation interval",
    )


def _f64_tensor(values, ndim: int) -> tuple:
    """A float64 DLTensor over a ctypes array (kept alive by the returned tuple)."""
    shape = (ctypes.c_int64 * 1)(len(values))
    buf = (ctypes.c_double * max(len(values), 1))(*values)
    t = h.DLTensor(
        ctypes.cast(buf, ctypes.c_void_p), h.DLDevice(h.kDLCPU, 0), ndim, h.DLDataType(h.kDLFloat, 64, 1),
        ctypes.cast(shape, ctypes.POINTER(ctypes.c_int64)), None, 0,
    )
    return t, buf, shape


def gaussian_entropy_f64(log_std: float) -> float:
    """``era_gaussian_entropy`` of one log-std (a one-dimensional Gaussian), in float64
    through ctypes: usable at trace time, outside any JAX computation."""
    x = _f64_tensor([log_std], 1)
    e = _f64_tensor([0.0], 0)
    check(lib().era_gaussian_entropy(ctypes.byref(x[0]), ctypes.byref(e[0]), None), "era_gaussian_entropy")
    return float(e[1][0])


def truncated_normal_entropy_f64(mean: float, log_std: float, low: float, high: float) -> float:
    """``era_truncated_normal_entropy`` of one dimension, in float64 through ctypes."""
    m = _f64_tensor([mean], 1)
    s = _f64_tensor([log_std], 1)
    e = _f64_tensor([0.0], 0)
    check(
        lib().era_truncated_normal_entropy(ctypes.byref(m[0]), ctypes.byref(s[0]), low, high, ctypes.byref(e[0]),
                                           None),
        "era_truncated_normal_entropy",
    )
    return float(e[1][0])


# ------------------------------------------------------------ FFI targets


@functools.lru_cache(maxsize=None)
def targets() -> dict:
    """The XLA FFI targets of the native library, read from its table
    (``era_jax_target``): ``{target name: (cpu handler, cuda handler or None)}``,
    handlers as addresses."""
    out = {}
    i = 0
    while True:
        cpu, cuda = ctypes.c_void_p(), ctypes.c_void_p()
        name = lib().era_jax_target(i, ctypes.byref(cpu), ctypes.byref(cuda))
        if name is None:
            return out
        out[name.decode()] = (cpu.value, cuda.value)
        i += 1


def target(name: str) -> str:
    """``name`` if the native library has an FFI target of that name, else
    ImportError (a package and library out of step)."""
    if name not in targets():
        raise ImportError(f"era_jax: {library_path()} has no XLA FFI target {name!r}; rebuild era_jax")
    return name


_registered = False
_register_lock = threading.Lock()


def register_targets() -> None:
    """Registers every FFI target of the native library with XLA (once): the
    CPU handlers always; the CUDA handlers when the library was built with them and
    CUDA is usable here (``era_cuda_available``: a driver and a device), so that a CUDA
    build imports and runs on machines without a GPU."""
    global _registered
    if _registered:
        return
    with _register_lock:
        if _registered:
            return
        gpu = bool(lib().era_cuda_available())
        for name, (cpu, cuda) in targets().items():
            _compat.ffi.register_ffi_target(name, _compat.ffi.pycapsule(cpu), platform="cpu", api_version=1)
            if cuda and gpu:
                _compat.ffi.register_ffi_target(name, _compat.ffi.pycapsule(cuda), platform="CUDA", api_version=1)
        _registered = True


def is_finite_number(x) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False
