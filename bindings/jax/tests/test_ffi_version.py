"""Every XLA FFI handler of the native library, CPU and (in a CUDA build) CUDA, answers
XLA's metadata query with FFI API version 0.1, so that a module built against one
jaxlib's headers loads into another jaxlib (a GPU machine's, newer or older).

The query is the call XLA makes when a handler is registered: a call frame whose first
extension is a metadata extension (xla/ffi/api/c_api.h); the handler fills in the
metadata and computes nothing. In a build without CUDA handlers only the CPU ones are
checked (the CUDA build's tests, scripts/cuda.sh test, check both)."""

import ctypes

import pytest

from era_jax import _native

XLA_FFI_Extension_Metadata = 1  # XLA_FFI_Extension_Type


class ExtensionBase(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("type", ctypes.c_int), ("next", ctypes.c_void_p)]


class ApiVersion(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("extension_start", ctypes.c_void_p),
        ("major_version", ctypes.c_int),
        ("minor_version", ctypes.c_int),
    ]


class Metadata(ctypes.Structure):
    # newer headers append fields (a state type id); the handler writes only these
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("api_version", ApiVersion),
        ("traits", ctypes.c_uint32),
        ("rest", ctypes.c_char * 64),
    ]


class MetadataExtension(ctypes.Structure):
    _fields_ = [("extension_base", ExtensionBase), ("metadata", ctypes.POINTER(Metadata))]


class CallFrame(ctypes.Structure):
    # struct_size and extension_start are all a metadata query reads; the rest stays zero
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("extension_start", ctypes.c_void_p),
        ("api", ctypes.c_void_p),
        ("ctx", ctypes.c_void_p),
        ("stage", ctypes.c_int),
        ("rest", ctypes.c_char * 512),
    ]


HANDLER = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)


def handlers():
    out = []
    for name, (cpu, cuda) in sorted(_native.targets().items()):
        out.append((name, "cpu", cpu))
        if cuda:
            out.append((name, "cuda", cuda))
    return out


def test_the_library_has_handlers():
    assert any(p == "cpu" for _, p, _ in handlers())


@pytest.mark.parametrize("name,platform,address", handlers(), ids=lambda x: x if isinstance(x, str) else "")
def test_handler_reports_ffi_api_0_1(name, platform, address):
    meta = Metadata(ctypes.sizeof(Metadata), ApiVersion(ctypes.sizeof(ApiVersion), None, -1, -1), 12345)
    ext = MetadataExtension(ExtensionBase(ctypes.sizeof(MetadataExtension), XLA_FFI_Extension_Metadata, None),
                            ctypes.pointer(meta))
    frame = CallFrame(ctypes.sizeof(CallFrame), ctypes.addressof(ext))
    err = HANDLER(address)(ctypes.addressof(frame))
    assert err is None, f"{name} ({platform}) returned an error to a metadata query"
    assert (meta.api_version.major_version, meta.api_version.minor_version) == (0, 1), (name, platform)
    assert meta.traits == 0
