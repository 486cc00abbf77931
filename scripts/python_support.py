# ------------------------------------------------------------------ support
# Shared by the Python bindings (era_jax, era_torch): written once in
# scripts/python_support.py and emitted as each package's _era_support.py by
# scripts/gen_decls.py. It uses only the declarations of _era_h.py and ctypes.

import ctypes
import dataclasses as _dataclasses

from ._era_h import (
    ERA_ABI_VERSION,
    ERA_DELTA_OPTIMIZER_ADAM,
    ERA_DELTA_OPTIMIZER_FIXED,
    ERA_DELTA_OPTIMIZER_SGD,
    ERA_HEAD_KIND_GAUSSIAN,
    ERA_HEAD_KIND_SOFTMAX,
    ERA_HEAD_KIND_TOKEN,
    ERA_STATUS_OK,
    EraConfig,
    bind,
)


def config_layout_mismatch(lib, struct=None):
    """Compares a ctypes declaration of ``EraConfig`` (``_era_h``'s by default) with the
    library's (``era_config_size`` and ``era_config_field`` of every field); returns what
    differs, or ``""``. ``lib`` is a ``ctypes.CDLL`` on which :func:`bind` ran."""
    struct = EraConfig if struct is None else struct
    if lib.era_config_size() != ctypes.sizeof(struct):
        return f"EraConfig has {lib.era_config_size()} bytes in the library but {ctypes.sizeof(struct)} here"
    for name, _ in struct._fields_:
        offset, size = ctypes.c_size_t(), ctypes.c_size_t()
        if lib.era_config_field(name.encode(), ctypes.byref(offset), ctypes.byref(size)) != 0:
            return f"the library's EraConfig has no field {name}"
        field = getattr(struct, name)
        if (offset.value, size.value) != (field.offset, field.size):
            return (
                f"EraConfig.{name} is at offset {offset.value} ({size.value} bytes) in the library "
                f"but at {field.offset} ({field.size} bytes) here"
            )
    return ""


def load(path, package):
    """Loads the era library at ``path`` for ``package`` (a name for messages), declares its
    functions (:func:`bind`) and checks its ABI version and ``EraConfig`` layout against these
    declarations; raises ImportError when the library is missing or does not match."""
    import os

    if not os.path.exists(path):
        raise ImportError(
            f"{package}: the native library {path} is missing; install {package} from an era "
            "checkout (it builds the library) or from its wheel"
        )
    lib = bind(ctypes.CDLL(path))
    abi = lib.era_abi_version()
    if abi != ERA_ABI_VERSION:
        raise ImportError(f"{package}: {path} has era ABI version {abi}, this package needs {ERA_ABI_VERSION}")
    mismatch = config_layout_mismatch(lib)
    if mismatch:
        raise ImportError(f"{package}: {mismatch}; rebuild {package}")
    return lib


def last_error(lib):
    """The message of the last failed era call on this thread (``era_last_error``)."""
    n = lib.era_last_error(None, 0)
    buf = ctypes.create_string_buffer(n + 1)
    lib.era_last_error(buf, n + 1)
    return buf.value.decode("utf-8", errors="replace")


def default_config(lib, kind):
    """``era_config_default(kind)`` as an ``EraConfig``; raises ValueError for an unknown kind."""
    cfg = EraConfig()
    if lib.era_config_default(kind, ctypes.byref(cfg)) != ERA_STATUS_OK:
        raise ValueError(f"era_config_default({kind}) failed")
    return cfg


#: The delta learner's optimizers by name.
OPTIMIZERS = {
    "fixed": ERA_DELTA_OPTIMIZER_FIXED,
    "sgd": ERA_DELTA_OPTIMIZER_SGD,
    "adam": ERA_DELTA_OPTIMIZER_ADAM,
}


@_dataclasses.dataclass(frozen=True)
class GaussianDefaults:
    """The Gaussian head's defaults (``ERA_HEAD_KIND_GAUSSIAN``): log-std bounds,
    initial ``delta`` and the delta learner (``optimizer`` as a name of :data:`OPTIMIZERS`)."""

    log_std_min: float
    log_std_max: float
    delta: float
    optimizer: str
    lr: float
    beta1: float
    beta2: float
    eps: float


@_dataclasses.dataclass(frozen=True)
class SoftmaxDefaults:
    """The softmax head's defaults (``ERA_HEAD_KIND_SOFTMAX``)."""

    tau: float


@_dataclasses.dataclass(frozen=True)
class TokenDefaults:
    """The token head's defaults (``ERA_HEAD_KIND_TOKEN``)."""

    k: float
    omega_low: float
    omega_high: float
    top_fraction: float
    temperature: float
    advantage_scaling: bool
    vocab_topk: int


def read_defaults(lib):
    """The library's defaults of every head kind, from ``era_config_default``:
    ``(GaussianDefaults, SoftmaxDefaults, TokenDefaults)``."""
    g = default_config(lib, ERA_HEAD_KIND_GAUSSIAN)
    names = {v: k for k, v in OPTIMIZERS.items()}
    gaussian = GaussianDefaults(
        log_std_min=g.log_std_min,
        log_std_max=g.log_std_max,
        delta=g.delta,
        optimizer=names[g.delta_optimizer],
        lr=g.delta_lr,
        beta1=g.delta_beta1,
        beta2=g.delta_beta2,
        eps=g.delta_eps,
    )
    softmax = SoftmaxDefaults(tau=default_config(lib, ERA_HEAD_KIND_SOFTMAX).tau)
    t = default_config(lib, ERA_HEAD_KIND_TOKEN)
    token = TokenDefaults(
        k=t.k,
        omega_low=t.omega_low,
        omega_high=t.omega_high,
        top_fraction=t.top_fraction,
        temperature=t.temperature,
        advantage_scaling=bool(t.advantage_scaling),
        vocab_topk=int(t.vocab_topk),
    )
    return gaussian, softmax, token


def pick(value, default):
    """``value``, or ``default`` (the library's) when ``value`` is None."""
    return default if value is None else value
