"""What differs between the JAX versions era_jax supports (jax >= 0.4.31)."""

from __future__ import annotations

import inspect

import jax

try:  # jax >= 0.4.38
    from jax import ffi  # noqa: F401
except ImportError:  # older: jax.extend.ffi
    from jax.extend import ffi  # type: ignore[no-redef]  # noqa: F401

try:
    shard_map = jax.shard_map  # jax >= 0.6
except AttributeError:
    from jax.experimental.shard_map import shard_map  # type: ignore[no-redef]  # noqa: F401

from jax.custom_batching import custom_vmap  # noqa: F401


def _register_shard_map_rules() -> None:
    """shard_map of older jax (static replication checking, ``check_rep``) needs a
    replication rule per primitive and has none for ``custom_vmap_call``, which
    every era operation binds. Its standard rule (the outputs vary like the
    operands, which are aligned first) is exactly right for a computation that
    runs on each shard independently; register it where that machinery exists.
    Newer jax (varying-axes types) needs nothing."""
    try:
        from jax._src.custom_batching import custom_vmap_p
    except ImportError:  # pragma: no cover
        return
    import importlib

    for name in ("jax._src.shard_map", "jax.experimental.shard_map"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        rules = getattr(mod, "_check_rules", None)
        check = getattr(mod, "register_standard_check", None)
        rewrite = getattr(mod, "register_standard_rewrite", None)
        if isinstance(rules, dict) and check is not None and rewrite is not None and custom_vmap_p not in rules:
            check(custom_vmap_p)
            rewrite(custom_vmap_p)


_register_shard_map_rules()

# ffi_call(name, types) returns a callable since jax 0.4.35 (the release that added
# `vmap_method`); before, it took the operands directly: ffi_call(name, types, *args, **attrs).
_FFI_CALL_TAKES_ARGS = "vmap_method" not in inspect.signature(ffi.ffi_call).parameters


def ffi_call(name, result_shape_dtypes, *args, input_output_aliases=None, **attrs):
    """``jax.ffi.ffi_call(name, result_shape_dtypes)(*args, **attrs)`` on every version.

    ``input_output_aliases`` (``{operand: result}``) lets XLA give a result the
    operand's buffer; JAX before 0.4.35 has no such option, and there the
    result gets a buffer of its own (the same values).

    Batching never reaches the call: every era operation is wrapped in a
    ``custom_vmap`` whose rule calls it again with the batch axis folded in.

    Inside ``shard_map`` the operands of one call vary along the same manual
    mesh axes (see :func:`match_vma`), and so do the results: their types are
    marked so (``ffi_call`` itself types its results as not varying).
    """
    if _FFI_CALL_TAKES_ARGS:
        out = ffi.ffi_call(name, result_shape_dtypes, *args, **attrs)
    else:
        kw = {"input_output_aliases": input_output_aliases} if input_output_aliases else {}
        out = ffi.ffi_call(name, result_shape_dtypes, **kw)(*args, **attrs)
    axes = frozenset().union(*(vma(a) for a in args)) if args else frozenset()
    if not axes:
        return out
    if isinstance(out, (list, tuple)):
        return type(out)(pvary(o, axes - vma(o)) for o in out)
    return pvary(out, axes - vma(out))


def vma(x) -> frozenset:
    """The manual mesh axes along which ``x`` varies inside ``shard_map`` (JAX with
    varying types: ``aval.mat.varying`` in jax >= 0.9, ``aval.vma`` before); empty otherwise."""
    typeof = getattr(jax, "typeof", None)
    if typeof is None:
        return frozenset()
    try:
        aval = typeof(x)
    except Exception:  # pragma: no cover - non-array leaves
        return frozenset()
    mat = getattr(aval, "mat", None)
    if mat is not None and hasattr(mat, "varying"):
        return frozenset(mat.varying)
    return frozenset(getattr(aval, "vma", None) or ())


def pvary(x, axes):
    """Marks ``x`` as varying along the manual mesh ``axes`` (a no-op on JAX without varying types)."""
    axes = tuple(sorted(axes))
    if not axes:
        return x
    pcast = getattr(jax.lax, "pcast", None)
    if pcast is not None:
        return pcast(x, axes, to="varying")
    pv = getattr(jax.lax, "pvary", None)
    if pv is not None:
        return pv(x, axes)
    return x  # pragma: no cover


def match_vma(*xs):
    """Makes every operand vary along the union of the operands' manual axes.

    The FFI operands of one call must agree inside ``shard_map``; doing this
    outside the ``custom_vjp`` lets JAX transpose it (a ``psum``) for the
    gradients of operands that did not vary, e.g. a replicated ``delta``.
    """
    sets = [vma(x) for x in xs]
    union = frozenset().union(*sets)
    if not union:
        return xs
    return tuple(x if s == union else pvary(x, union - s) for x, s in zip(xs, sets))


def like_sharding(x, like, drop_last: bool = False):
    """Gives ``x`` the sharding type of ``like`` (without its last axis when
    ``drop_last``) under explicit sharding (``jax.set_mesh`` with
    ``AxisType.Explicit`` axes, jax >= 0.7); a no-op otherwise.

    XLA runs a custom call without a partitioning rule on whole (gathered)
    operands and types its results as replicated; cotangents must have the
    primal's type, and results keep the operand's batch sharding.
    """
    reshard = getattr(jax.sharding, "reshard", None)
    typeof = getattr(jax, "typeof", None)
    if reshard is None or typeof is None:
        return x
    try:
        s = typeof(like).sharding
        mesh = s.mesh
        if mesh.empty or not getattr(mesh, "explicit_axes", ()):
            return x
        spec = tuple(s.spec) + (None,) * (like.ndim - len(tuple(s.spec)))
        if drop_last:
            spec = spec[:-1]
        if len(spec) != x.ndim:
            return x
        cur = typeof(x).sharding
        cur_spec = tuple(cur.spec) + (None,) * (x.ndim - len(tuple(cur.spec)))
        if cur_spec == spec:
            return x
        return reshard(x, jax.sharding.PartitionSpec(*spec))
    except (AttributeError, TypeError):  # pragma: no cover - older sharding types
        return x
