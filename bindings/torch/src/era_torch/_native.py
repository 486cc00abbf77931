"""The native library: loading, errors, DLPack descriptors and the head cache.

``libera.so`` (era's own shared library, built by ``pip install``) ships inside
the package; Python calls its ``era_*`` C functions through ctypes. Their
declarations (structs, constants, prototypes) are generated from era.h into
``_era_h.py`` by ``scripts/gen_decls.py``, their shared runtime support (loading,
defaults) into ``_era_support.py``; nothing here restates them.

Tensors reach the library as borrowed ``DLTensor`` descriptors built from
``tensor.data_ptr()``, the sizes, the strides (in elements) and the dtype: any
layout (non-contiguous, permuted, broadcast inputs) is passed as it is, without
a copy. The ``stream`` argument is NULL for CPU tensors and the current CUDA
stream for CUDA tensors.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading

import torch

from . import _era_h as h
from . import _era_support as support
from ._era_h import ERA_HEAD_KIND_GAUSSIAN, ERA_HEAD_KIND_SOFTMAX, ERA_HEAD_KIND_TOKEN, ERA_LN_2PI_E, EraConfig

__all__ = [
    "ERA_HEAD_KIND_GAUSSIAN",
    "ERA_HEAD_KIND_SOFTMAX",
    "ERA_HEAD_KIND_TOKEN",
    "EraConfig",
    "EraError",
    "Head",
    "abi_version",
    "call",
    "cached_head",
    "check",
    "cpu_kernels",
    "cpu_kernels_status",
    "default_config",
    "describe",
    "function_address",
    "last_error",
    "lib",
    "library_path",
    "load_cpu_kernels",
    "version",
]

_LIB_NAME = "libera.so"


class EraError(ValueError):
    """An error reported by the era library.

    ``status`` is the status name (``"ERA_STATUS_INVALID_CONFIG"``, ...), ``message``
    the library's own message (``era_last_error``) and ``function`` the C function
    that failed."""

    def __init__(self, message: str, status: str = "", function: str = ""):
        super().__init__(message)
        self.status = status
        self.message = message
        self.function = function

    def __reduce__(self):  # picklable (torch.compile and multiprocessing re-raise it)
        return (type(self), (self.message, self.status, self.function))

    def __str__(self) -> str:
        where = f"{self.function}: " if self.function else ""
        return f"{self.status}: {where}{self.message}" if self.status else f"{where}{self.message}"


def library_path() -> str:
    """Path of the native library: ``$ERA_TORCH_LIBRARY`` or the packaged ``libera.so``."""
    env = os.environ.get("ERA_TORCH_LIBRARY")
    if env:
        return env
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), _LIB_NAME)


def config_layout_mismatch(handle: ctypes.CDLL, struct: type = EraConfig) -> str:
    """Compares a ctypes declaration of ``EraConfig`` (the generated one by default) with the
    library's; returns what differs, or ``""`` (the shared support of ``_era_support``)."""
    return support.config_layout_mismatch(handle, struct)


@functools.lru_cache(maxsize=None)
def lib() -> ctypes.CDLL:
    """The loaded native library (loaded once; its ABI version and EraConfig layout checked)."""
    handle = support.load(library_path(), "era_torch")
    return handle


def version() -> str:
    """The era library version ("MAJOR.MINOR.PATCH")."""
    return lib().era_version().decode()


def abi_version() -> int:
    """The era C ABI version of the loaded library."""
    return int(lib().era_abi_version())


def last_error() -> str:
    """The message of the last failed era call on this thread."""
    return support.last_error(lib())


def check(status: int, function: str = "") -> None:
    """Raises :class:`EraError` with the library's status name and message unless ``status`` is OK."""
    if status != h.ERA_STATUS_OK:
        raise EraError(last_error(), lib().era_status_str(status).decode(), function)


def default_config(kind: int) -> EraConfig:
    """The library's defaults for head ``kind`` (``era_config_default``)."""
    cfg = EraConfig()
    check(lib().era_config_default(kind, ctypes.byref(cfg)), "era_config_default")
    return cfg


# ------------------------------------------------------------------ heads


class Head:
    """An owned ``EraHead*`` (freed with the object)."""

    __slots__ = ("ptr", "kind", "_free")

    def __init__(self, kind: int, fields: tuple):
        cfg = default_config(kind)
        for name, value in fields:
            setattr(cfg, name, value)
        ptr = ctypes.c_void_p()
        check(lib().era_head_new(ctypes.byref(cfg), ctypes.byref(ptr)), "era_head_new")
        self.ptr = ptr
        self.kind = kind
        self._free = lib().era_head_free

    def __del__(self):
        ptr = getattr(self, "ptr", None)
        if ptr is not None and ptr.value:
            self._free(ptr)
            self.ptr = None


_head_lock = threading.Lock()


@functools.lru_cache(maxsize=1024)
def _cached_head(kind: int, fields: tuple) -> Head:
    return Head(kind, fields)


def cached_head(kind: int, fields: tuple) -> Head:
    """A shared, immutable head for ``era_config_default(kind)`` with ``fields``
    (``(name, value)`` pairs) set; built (and validated by the library) once per
    configuration. Forward, backward and entropy calls never mutate a head, so one
    head serves every thread."""
    with _head_lock:
        return _cached_head(kind, fields)


# ------------------------------------------------------------ descriptors

_DTYPES = {
    torch.float32: h.DLDataType(h.kDLFloat, 32, 1),
    torch.float64: h.DLDataType(h.kDLFloat, 64, 1),
    torch.float16: h.DLDataType(h.kDLFloat, 16, 1),
    torch.bfloat16: h.DLDataType(h.kDLBfloat, 16, 1),
    torch.int8: h.DLDataType(h.kDLInt, 8, 1),
    torch.int16: h.DLDataType(h.kDLInt, 16, 1),
    torch.int32: h.DLDataType(h.kDLInt, 32, 1),
    torch.int64: h.DLDataType(h.kDLInt, 64, 1),
    torch.uint8: h.DLDataType(h.kDLUInt, 8, 1),
    torch.bool: h.DLDataType(h.kDLBool, 8, 1),
    torch.complex64: h.DLDataType(h.kDLComplex, 64, 1),
    torch.complex128: h.DLDataType(h.kDLComplex, 128, 1),
}
_DEVICES = {"cpu": h.kDLCPU, "cuda": h.kDLCUDA}
_I64P = ctypes.POINTER(ctypes.c_int64)


# The parts of a descriptor that depend on a tensor's dtype, device, shape and strides only
# (the shape and stride arrays, the DLDevice and DLDataType), built once per layout: a call
# then only builds the DLTensor around the data pointer. The arrays are never written (the
# library reads descriptors only), so one entry serves every thread. Bounded: cleared when full.
_LAYOUTS: dict = {}
_LAYOUTS_MAX = 4096


def _layout(t: torch.Tensor, key: tuple) -> tuple:
    dtype = _DTYPES.get(t.dtype)
    if dtype is None:
        raise EraError(f"era_torch: tensors of dtype {t.dtype} cannot be passed to era", "ERA_STATUS_UNSUPPORTED_DTYPE")
    dev = _DEVICES.get(t.device.type)
    if dev is None:
        raise EraError(
            f"era_torch: tensors on device {t.device} cannot be passed to era (CPU and CUDA only)",
            "ERA_STATUS_UNSUPPORTED_DEVICE",
        )
    n = t.dim()
    dims = (ctypes.c_int64 * max(2 * n, 1))(*key[2], *key[3])
    shape = ctypes.cast(dims, _I64P)
    strides = ctypes.cast(ctypes.byref(dims, 8 * n), _I64P)
    entry = (h.DLDevice(dev, t.device.index or 0), n, dtype, shape, strides, dims)
    if len(_LAYOUTS) >= _LAYOUTS_MAX:
        _LAYOUTS.clear()
    _LAYOUTS[key] = entry
    return entry


def describe(t: torch.Tensor) -> h.DLTensor:
    """A borrowed ``DLTensor`` for ``t``: its data pointer (storage offset included),
    sizes, strides in elements, dtype and device. The descriptor keeps its shape and
    stride arrays alive; ``t`` must outlive the call it is passed to."""
    key = (t.dtype, t.device, t.shape, t.stride())
    e = _LAYOUTS.get(key)
    if e is None:
        e = _layout(t, key)
    desc = h.DLTensor(t.data_ptr() if t.numel() else None, e[0], e[1], e[2], e[3], e[4], 0)
    desc._keep = e  # the arrays live as long as the descriptor
    return desc


def stream_of(*tensors) -> ctypes.c_void_p:
    """The ``stream`` argument: NULL for CPU tensors, the current CUDA stream of
    the first CUDA tensor otherwise."""
    for t in tensors:
        if t is not None and t.is_cuda:
            return ctypes.c_void_p(torch.cuda.current_stream(t.device).cuda_stream)
    return None


@functools.lru_cache(maxsize=None)
def _function(name: str):
    return getattr(lib(), name)


def function_address(name: str) -> int:
    """The address of the loaded library's C function ``name`` (for the C++ CPU kernels, so
    that they call the library era_torch loaded, never a second copy of it)."""
    return ctypes.cast(_function(name), ctypes.c_void_p).value


def call(function: str, head, *tensors, scalars: tuple = ()) -> None:
    """Calls ``era_<function>(head?, *descriptors, *scalars, stream)``; ``None``
    tensors are passed as NULL (optional outputs). Raises :class:`EraError` on failure.
    ``scalars`` go where the C prototype has them: after the tensors listed in
    ``tensors[:scalars[0]]`` when given as ``(position, values...)``."""
    descs = [None if t is None else ctypes.byref(describe(t)) for t in tensors]
    if scalars:
        pos, values = scalars[0], scalars[1:]
        descs = descs[:pos] + list(values) + descs[pos:]
    name = "era_" + function
    if head is not None:
        status = _function(name)(head.ptr, *descs, stream_of(*tensors))
    else:
        status = _function(name)(*descs, stream_of(*tensors))
    if status != h.ERA_STATUS_OK:
        check(status, name)


# ------------------------------------------------------------ the C++ CPU kernels

_CPU_OPS_NAME = "_cpu_ops.so"
_cpu_ops: dict = {"loaded": False, "why": "not loaded yet"}


def load_cpu_kernels() -> None:
    """Loads the C++ CPU kernels of the Gaussian and softmax ops (``_cpu_ops.so``, built with
    the package when torch was importable at build time) after the ops are defined. Skipped
    when ``ERA_TORCH_CPU_KERNELS=0``, or when the file is absent; a file that cannot be loaded
    (built against another torch) is reported by a warning. Either way every op still works,
    through its Python implementation."""
    if os.environ.get("ERA_TORCH_CPU_KERNELS", "1") == "0":
        _cpu_ops.update(loaded=False, why="disabled by ERA_TORCH_CPU_KERNELS=0")
        return
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), _CPU_OPS_NAME)
    if not os.path.exists(path):
        _cpu_ops.update(loaded=False, why=f"{_CPU_OPS_NAME} was not built (torch was not importable at build time)")
        return
    import sys
    import warnings

    here = f"torch={torch.__version__}\npython={sys.version_info[0]}.{sys.version_info[1]}\n"
    try:
        with open(path[: -len(".so")] + ".built") as f:
            built = f.read()
    except OSError:
        built = "(unknown)"
    if built != here:
        why = f"{_CPU_OPS_NAME} was built for {built.split()} and this is {here.split()}: rebuild era_torch"
        warnings.warn(f"era_torch: {why}; the ops run in Python", stacklevel=2)
        _cpu_ops.update(loaded=False, why=why)
        return
    try:
        torch.ops.load_library(path)
    except OSError as e:
        warnings.warn(f"era_torch: the C++ CPU kernels could not be loaded ({e}); the ops run in Python", stacklevel=2)
        _cpu_ops.update(loaded=False, why=str(e))
        return
    _cpu_ops.update(loaded=True, why=path)


def cpu_kernels() -> bool:
    """Whether the CPU calls of the Gaussian and softmax ops run in the C++ kernels (``True``)
    or in Python (``False``: see :func:`cpu_kernels_status`). Same results either way; the C++
    kernels cost less per call (what matters for small heads inside compiled graphs)."""
    return bool(_cpu_ops["loaded"])


def cpu_kernels_status() -> str:
    """Where the C++ CPU kernels were loaded from, or why they are not in use."""
    return str(_cpu_ops["why"])
