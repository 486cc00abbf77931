"""The native library: loading, ctypes declarations of the era C ABI, config
validation, and registration of the XLA FFI targets.

``liberajax.so`` (built by ``pip install``) is one shared object holding both
the XLA FFI handlers and the era library itself; the ``era_*`` C functions are
exported from it, so Python calls them directly through ctypes for everything
that happens at trace time (config validation and error messages, versions).
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import threading

from . import _compat

__all__ = [
    "ERA_HEAD_KIND_GAUSSIAN",
    "ERA_HEAD_KIND_SOFTMAX",
    "ERA_HEAD_KIND_TOKEN",
    "EraConfig",
    "EraError",
    "L2PE",
    "abi_version",
    "lib",
    "library_path",
    "register_targets",
    "validate_config",
    "version",
]

#: ln(2*pi*e): the entropy of a standard normal is 0.5 * L2PE.
L2PE = 2.8378770664093453

ERA_HEAD_KIND_GAUSSIAN = 1
ERA_HEAD_KIND_SOFTMAX = 2
ERA_HEAD_KIND_TOKEN = 3

ERA_DELTA_OPTIMIZER_FIXED = 0
ERA_DELTA_OPTIMIZER_SGD = 1
ERA_DELTA_OPTIMIZER_ADAM = 2

# The ABI version this package was written against (era.h ERA_ABI_VERSION).
_EXPECTED_ABI = 1

_LIB_NAME = "liberajax.so"


class EraError(ValueError):
    """An error reported by the era library; ``status`` is the era status name."""

    def __init__(self, message: str, status: str = ""):
        super().__init__(message)
        self.status = status


class EraConfig(ctypes.Structure):
    """ctypes mirror of ``EraConfig`` (era.h); field order and types must match."""

    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("kind", ctypes.c_uint32),
        ("target_entropy", ctypes.c_double),
        ("dim", ctypes.c_uint64),
        ("log_std_min", ctypes.c_double),
        ("log_std_max", ctypes.c_double),
        ("delta", ctypes.c_double),
        ("delta_optimizer", ctypes.c_uint32),
        ("delta_lr", ctypes.c_double),
        ("delta_beta1", ctypes.c_double),
        ("delta_beta2", ctypes.c_double),
        ("delta_eps", ctypes.c_double),
        ("num_classes", ctypes.c_uint64),
        ("tau", ctypes.c_double),
        ("k", ctypes.c_double),
        ("omega_low", ctypes.c_double),
        ("omega_high", ctypes.c_double),
        ("top_fraction", ctypes.c_double),
        ("temperature", ctypes.c_double),
        ("advantage_scaling", ctypes.c_uint32),
        ("vocab_topk", ctypes.c_uint64),
        ("num_threads", ctypes.c_uint32),
    ]


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", _DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", _DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


def library_path() -> str:
    """Path of the native library: ``$ERA_JAX_LIBRARY`` or the packaged ``liberajax.so``."""
    env = os.environ.get("ERA_JAX_LIBRARY")
    if env:
        return env
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), _LIB_NAME)


def _declare(lib: ctypes.CDLL) -> None:
    c = ctypes
    status = c.c_int32
    head_p = c.c_void_p
    lib.era_abi_version.restype = c.c_uint32
    lib.era_abi_version.argtypes = []
    lib.era_version.restype = c.c_char_p
    lib.era_version.argtypes = []
    lib.era_status_str.restype = c.c_char_p
    lib.era_status_str.argtypes = [c.c_int32]
    lib.era_last_error.restype = c.c_size_t
    lib.era_last_error.argtypes = [c.c_char_p, c.c_size_t]
    lib.era_config_default.restype = status
    lib.era_config_default.argtypes = [c.c_uint32, c.POINTER(EraConfig)]
    lib.era_head_new.restype = status
    lib.era_head_new.argtypes = [c.POINTER(EraConfig), c.POINTER(head_p)]
    lib.era_head_free.restype = None
    lib.era_head_free.argtypes = [head_p]
    lib.era_head_set_delta.restype = status
    lib.era_head_set_delta.argtypes = [head_p, c.c_double]
    lib.era_head_delta.restype = status
    lib.era_head_delta.argtypes = [head_p, c.POINTER(c.c_double)]
    lib.era_head_update_delta.restype = status
    lib.era_head_update_delta.argtypes = [head_p, c.c_double, c.POINTER(c.c_double)]
    lib.era_truncated_normal_entropy.restype = status
    lib.era_truncated_normal_entropy.argtypes = [
        c.POINTER(_DLTensor), c.POINTER(_DLTensor), c.c_double, c.c_double, c.POINTER(_DLTensor), c.c_void_p,
    ]
    lib.era_jax_has_cuda.restype = c.c_int
    lib.era_jax_has_cuda.argtypes = []


@functools.lru_cache(maxsize=None)
def lib() -> ctypes.CDLL:
    """The loaded native library (loaded once)."""
    path = library_path()
    if not os.path.exists(path):
        raise ImportError(
            f"era_jax: the native library {path} is missing; install era_jax with "
            "`pip install ./bindings/jax` from an era checkout (it builds the library)"
        )
    handle = ctypes.CDLL(path)
    _declare(handle)
    abi = handle.era_abi_version()
    if abi != _EXPECTED_ABI:
        raise ImportError(f"era_jax: {path} has era ABI version {abi}, this package needs {_EXPECTED_ABI}")
    size = EraConfig()
    if handle.era_config_default(ERA_HEAD_KIND_TOKEN, ctypes.byref(size)) != 0:
        raise ImportError("era_jax: era_config_default failed")
    if size.struct_size != ctypes.sizeof(EraConfig):
        raise ImportError(
            f"era_jax: EraConfig has {size.struct_size} bytes in the library but "
            f"{ctypes.sizeof(EraConfig)} in era_jax; rebuild era_jax"
        )
    return handle


def version() -> str:
    """The era library version ("MAJOR.MINOR.PATCH")."""
    return lib().era_version().decode()


def abi_version() -> int:
    """The era C ABI version of the loaded library."""
    return int(lib().era_abi_version())


def last_error() -> str:
    """The message of the last failed era call on this thread."""
    n = lib().era_last_error(None, 0)
    buf = ctypes.create_string_buffer(n + 1)
    lib().era_last_error(buf, n + 1)
    return buf.value.decode("utf-8", errors="replace")


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
    max_entropy = float(dim) * (log_std_max + 0.5 * L2PE)
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

    def t(i: int, ndim: int) -> _DLTensor:
        return _DLTensor(
            ctypes.c_void_p(base + 8 * i), _DLDevice(1, 0), ndim, _DLDataType(2, 64, 1),
            ctypes.cast(one, ctypes.POINTER(ctypes.c_int64)), None, 0,
        )

    m, s, e = t(0, 1), t(1, 1), t(2, 0)
    check(
        lib().era_truncated_normal_entropy(ctypes.byref(m), ctypes.byref(s), low, high, ctypes.byref(e), None),
        "invalid truncation interval",
    )


# ------------------------------------------------------------ FFI targets

#: target name -> symbol stem in liberajax.so (era_jax_<stem>_<platform>)
TARGETS = {
    "era_gaussian_fwd": "gaussian_fwd",
    "era_gaussian_bwd": "gaussian_bwd",
    "era_softmax_fwd": "softmax_fwd",
    "era_softmax_bwd": "softmax_bwd",
    "era_token_fwd": "token_fwd",
    "era_token_bwd": "token_bwd",
    "era_head_entropy": "head_entropy",
    "era_truncated_normal_entropy": "truncated_normal_entropy",
}

_registered = False
_register_lock = threading.Lock()


def _capsule(fn_name: str):
    fn = getattr(lib(), fn_name)
    return _compat.ffi.pycapsule(fn)


def register_targets() -> None:
    """Registers every era FFI target with XLA (once): the CPU handlers always,
    the CUDA handlers when the library was built with them."""
    global _registered
    if _registered:
        return
    with _register_lock:
        if _registered:
            return
        for target, stem in TARGETS.items():
            _compat.ffi.register_ffi_target(target, _capsule(f"era_jax_{stem}_cpu"), platform="cpu", api_version=1)
        if lib().era_jax_has_cuda():
            for target, stem in TARGETS.items():
                _compat.ffi.register_ffi_target(
                    target, _capsule(f"era_jax_{stem}_cuda"), platform="CUDA", api_version=1
                )
        _registered = True


def is_finite_number(x) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False
