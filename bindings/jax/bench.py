"""Benchmark: era_jax's native custom calls against the pure-JAX implementation
(tests/reference.py), forward + backward under jit, measured in the same run.

    python bindings/jax/bench.py            # every size of the table below
    python bindings/jax/bench.py --quick    # small sizes only (about a minute)
    python bindings/jax/bench.py --tiny     # one small case per head (seconds: a rehearsal of the code)
    python bindings/jax/bench.py --check    # also compare the values before timing (exit 1 if they differ)

Cases (forward and the VJP of a weighted sum of the outputs):
  gaussian   B in {256, 4096, 65536} x D in {6, 21, 61}            float32
  softmax    B = 256 x n in {10, 1000, 32000}                      float32
  token      N = 4096 x V in {32000, 152064}, logits float32 and bfloat16
  binding    the token head at N = 4096 x V = 32000 f32 through era_jax (as it is, and in place
             on donated logits) against the same two C ABI calls made directly (buffers
             reused; a new gradient buffer per call; the gradient over the logits)
  lone       (only when named) XLA:CPU's own cost of an elementwise product alone in its
             kernel against the same product fused with an addition, 256 x D, D from 1 to 64

Each case is timed per Python call of the jitted function ("call": includes
dispatch) and, for small sizes, per iteration of a lax.fori_loop inside one
jitted function ("loop": no dispatch; each iteration feeds its gradient back
into its input so that nothing is hoisted). For B = 256 (and under --tiny) the Gaussian
rows are followed by the same loop with the loss ``sum(out * w + 1)`` (both versions; on
XLA:CPU a product alone in its kernel is slow over rows of 6 values, see ``--heads lone``;
era_jax's CPU forward declares its result flat, so that XLA runs the loss's product over
one row) and by the loop with an identity head. Times are medians of repeated
measurements; "jax/native" > 1 means the native call is faster. This prints
numbers only: nothing here asserts a timing. With ``--check`` every case first
compares the native and the pure-JAX value and gradient (relative to the largest
magnitude: 1e-3 for float32, 3e-2 for bfloat16) and the exit status is 1 if one
differs. Inputs are drawn with jax.random on the default device (no host arrays
of the large sizes).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import era_jax

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "tests"))
import reference as ref  # noqa: E402  (the pure-JAX reference of the test suite)

LOOP_ELEMENTS = 1 << 20  # time the fori_loop variant for cases up to this many input elements
CHECK = {"on": False, "failures": []}  # --check: compare values before timing
TINY = {"on": False}  # --tiny: one small case per head, short timings


def timeit(fn, *args, min_time=0.3, repeats=5, max_calls=10_000):
    """Median seconds per call of ``fn(*args)`` (blocking on the result)."""
    if TINY["on"]:
        min_time, repeats = 0.01, 2
    jax.block_until_ready(fn(*args))  # compile + warm up
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    once = max(time.perf_counter() - t0, 1e-7)
    n = int(min(max_calls, max(1, min_time / repeats / once)))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            out = fn(*args)
        jax.block_until_ready(out)
        samples.append((time.perf_counter() - t0) / n)
    return statistics.median(samples)


def fwd_bwd(loss, argnums=0):
    """jit(value_and_grad(loss)): one forward and one backward per call."""
    return jax.jit(jax.value_and_grad(loss, argnums=argnums))


def looped(loss, iters):
    """One jitted function running ``iters`` forward+backward steps in a fori_loop;
    the input is nudged by its gradient each step so the loop body is not invariant."""
    vg = jax.value_and_grad(loss)

    @jax.jit
    def run(x, *rest):
        def body(_, carry):
            x, acc = carry
            v, g = vg(x, *rest)
            return x - (1e-6 * g).astype(x.dtype), acc + v

        return jax.lax.fori_loop(0, iters, body, (x, jnp.zeros((), jnp.float32)))

    return run


def per_iteration(loss, iters, *args):
    """Median seconds per iteration of ``looped(loss, iters)`` on ``args``."""
    return timeit(looped(loss, iters), *args) / iters


def compare(name, dtype, native_loss, ref_loss, args):
    """--check: the native and the pure-JAX value and gradient on ``args``; a difference
    beyond the dtype's tolerance (relative to the largest magnitude) is recorded."""
    tol = 1e-3 if dtype == "float32" else 3e-2
    got, want = fwd_bwd(native_loss)(*args), fwd_bwd(ref_loss)(*args)
    for what, a, b in (("value", got[0], want[0]), ("gradient", got[1], want[1])):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        scale = float(np.max(np.abs(b))) if b.size else 0.0
        err = float(np.max(np.abs(a - b))) / max(scale, 1e-30) if b.size else 0.0
        ok = bool(np.isfinite(a).all() == np.isfinite(b).all()) and err <= tol
        print(f"  check {name} {dtype} {what}: max difference {err:.2e} of the largest magnitude "
              f"(tolerance {tol:.0e}) {'ok' if ok else 'FAIL'}")
        if not ok:
            CHECK["failures"].append(f"{name} {dtype} {what}: {err:.2e}")


def measure(name, dtype, make, native_loss, ref_loss, elements, quick_loop_iters, rows):
    """Times one case for both implementations; appends table rows."""
    args = make()
    if CHECK["on"]:
        compare(name, dtype, native_loss, ref_loss, args)
    if TINY["on"]:
        quick_loop_iters = 2
    modes = [("call", None)]
    if elements <= LOOP_ELEMENTS:
        modes.append(("loop", quick_loop_iters))
    for mode, iters in modes:
        times = []
        for loss in (native_loss, ref_loss):
            if mode == "call":
                t = timeit(fwd_bwd(loss), *args)
            else:
                t = per_iteration(loss, iters, *args)
            times.append(t)
        rows.append((name, dtype, mode, times[0], times[1]))
        print_row(rows[-1])


def print_header():
    print(f"{'case':<34} {'dtype':<9} {'mode':<5} {'native us':>12} {'jax us':>12} {'jax/native':>10}")
    print("-" * 87)


def print_row(r):
    name, dtype, mode, tn, tr = r
    print(f"{name:<34} {dtype:<9} {mode:<5} {tn * 1e6:>12.1f} {tr * 1e6:>12.1f} {tr / tn:>10.2f}", flush=True)


def gaussian_cases(quick):
    if TINY["on"]:
        yield 64, 6
        return
    bs = [256, 4096] if quick else [256, 4096, 65536]
    for b in bs:
        for d in [6, 21, 61]:
            if quick and b == 4096 and d != 6:
                continue
            yield b, d


def run_gaussian(rng, quick, rows):
    for b, d in gaussian_cases(quick):
        h0 = -0.5 * d
        w = jnp.asarray(rng.normal(size=(b, d)), jnp.float32)

        def make(b=b, d=d):
            return (jnp.asarray(rng.normal(size=(b, d)), jnp.float32), jnp.float32(-0.1))

        def native(z, delta, w=w, h0=h0):
            return jnp.sum(era_jax.gaussian_log_std(z, target_entropy=h0, delta=delta) * w)

        def reference(z, delta, w=w, h0=h0):
            return jnp.sum(ref.gaussian_log_std(z, target_entropy=h0, delta=delta) * w)

        measure(f"gaussian B={b} D={d}", "float32", make, native, reference, b * d, 200, rows)
        if b == 256 or TINY["on"]:
            iters = 2 if TINY["on"] else 200

            def native_fused(z, delta, w=w, h0=h0):
                return jnp.sum(era_jax.gaussian_log_std(z, target_entropy=h0, delta=delta) * w + 1.0)

            def reference_fused(z, delta, w=w, h0=h0):
                return jnp.sum(ref.gaussian_log_std(z, target_entropy=h0, delta=delta) * w + 1.0)

            args = make()
            tn, tr = (per_iteration(f, iters, *args) for f in (native_fused, reference_fused))
            print_row(("  the same, loss sum(out * w + 1)", "float32", "loop", tn, tr))
            harness_alone(make, w, iters)


def harness_alone(make, w, iters):
    """The loop with an identity head (``sum(z * w)``, and the step on ``z`` by the constant
    gradient ``w``). Printed, not a table row. It is not the loop's cost in the other rows.
    On XLA:CPU (jax 0.10.2) an elementwise operation alone in its kernel, over rows of 6
    values, costs more than ten times the same operation fused with another (``--heads lone``).
    Here the step is such an operation at every width, and at D = 6 the product as well (at
    21 and 61 XLA hands the product and the sum to one library kernel). With the native head,
    the step is fused (``x - 1e-6 * g``) and the product ``out * w`` is alone (the custom
    call's output feeds nothing else), but over the custom call's flat result: XLA computes
    it on 256 * D values in one row and reshapes after. jnp fuses both into the head's
    arithmetic. The ``loss sum(out * w + 1)`` row above gives the product a partner in both
    versions (the gradient is the same)."""

    def identity(z, delta, w=w):
        return jnp.sum(z * w)

    t = per_iteration(identity, iters, *make())
    print(f"{'  the loop with an identity head':<34} {'float32':<9} {'loop':<5} {t * 1e6:>12.1f}", flush=True)


def run_lone_ops():
    """XLA:CPU's cost of one elementwise product that is alone in its kernel (``x * w``)
    against the same product fused with an addition (``x * w + 1``), per iteration of a
    jitted fori_loop over a 256 x D array: the cost the native loop rows pay for their
    loss's ``out * w``. Printed, not a table row."""
    widths = (6, 8) if TINY["on"] else (1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 21, 32, 61, 64)
    iters = 2 if TINY["on"] else 200
    print(f"\nlone elementwise product on XLA:CPU, 256 x D float32, us per iteration of a {iters}-step fori_loop")
    print("| D | x * w alone | x * w + 1 | ratio |")
    print("| --- | --- | --- | --- |")
    key = jax.random.PRNGKey(0)
    for d in widths:
        x = jax.random.normal(key, (256, d), jnp.float32)
        w = 1.0 + 1e-3 * jax.random.normal(jax.random.fold_in(key, d), (256, d), jnp.float32)
        alone, fused = (
            timeit(jax.jit(lambda x, w, f=f: jax.lax.fori_loop(0, iters, lambda i, x: f(x, w), x)), x, w) / iters
            for f in (lambda x, w: x * w, lambda x, w: x * w + 1.0))
        print(f"| {d} | {alone * 1e6:.2f} | {fused * 1e6:.2f} | {alone / fused:.1f}x |", flush=True)


def run_softmax(rng, quick, rows):
    for n in ([10] if TINY["on"] else [10, 1000] if quick else [10, 1000, 32000]):
        b = 256
        h0 = 1.0
        w = jnp.asarray(rng.normal(size=(b, n)), jnp.float32)

        def make(b=b, n=n):
            return (jnp.asarray(rng.normal(size=(b, n)), jnp.float32),)

        def native(z, w=w, h0=h0):
            return jnp.sum(era_jax.softmax_logits(z, target_entropy=h0) * w)

        def reference(z, w=w, h0=h0):
            return jnp.sum(ref.softmax_logits(z, target_entropy=h0) * w)

        measure(f"softmax B={b} n={n}", "float32", make, native, reference, b * n, 50, rows)


def token_batch(rng, n, v, dtype):
    resp_len = 64  # responses of 64 tokens, shuffled, 5% masked
    ids = rng.permutation(np.arange(n) // resp_len).astype(np.int32)
    ids[rng.random(n) < 0.05] = -1
    labels = rng.integers(0, v, size=n).astype(np.int32)
    adv = np.repeat(rng.normal(size=n // resp_len + 1), resp_len)[:n].astype(np.float32)
    # the [N, V] logits drawn on the default device in float32 (no float64 host array)
    key = jax.random.PRNGKey(int(rng.integers(0, 2**31)))
    logits = (jax.random.normal(key, (n, v), jnp.float32) * 2).astype(dtype)
    return logits, jnp.asarray(labels), jnp.asarray(ids), jnp.asarray(adv)


def available_bytes():
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def run_token(rng, quick, rows):
    sizes = [(64, 1000)] if TINY["on"] else [(256, 32000)] if quick else [(4096, 32000), (4096, 152064)]
    for n, v in sizes:
        for dtype in (jnp.float32, jnp.bfloat16):
            dname = jnp.dtype(dtype).name

            def make(n=n, v=v, dtype=dtype):
                return token_batch(rng, n, v, dtype)

            def native(logits, labels, ids, adv):
                lp, _, _, a2 = era_jax.token_logprobs(logits, labels, ids, adv, omega_low=2.0, omega_high=9.0)
                return jnp.sum(lp * a2)

            def reference(logits, labels, ids, adv):
                lp, _, _, a2 = ref.token_logprobs(logits, labels, ids, adv, omega_low=2.0, omega_high=9.0)
                return jnp.sum(lp * a2)

            # the pure-JAX backward holds several float32 [N, V] temporaries (host memory
            # matters on the CPU only)
            need, avail = 8 * n * v * 4, available_bytes()
            if avail is not None and need > avail and jax.default_backend() == "cpu":
                print(f"token N={n} V={v} {dname}: skipped (needs about {need / 2**30:.1f} GiB, "
                      f"{avail / 2**30:.1f} GiB available)")
                continue
            try:
                measure(f"token N={n} V={v}", dname, make, native, reference, n * v, 5, rows)
            except Exception as e:  # e.g. out of memory for the largest case
                print(f"token N={n} V={v} {dname}: skipped ({type(e).__name__}: {str(e).splitlines()[0][:120]})")
                if CHECK["on"]:  # a case that could not be compared is a failed check
                    CHECK["failures"].append(f"token N={n} V={v} {dname}: {type(e).__name__}")


def _dl(a: np.ndarray):
    """A DLTensor over a C-contiguous numpy array (kept alive by the caller)."""
    from era_jax import _era_h as h

    code = {"f": h.kDLFloat, "i": h.kDLInt}[a.dtype.kind]
    shape = (ctypes.c_int64 * a.ndim)(*a.shape)
    t = h.DLTensor(ctypes.c_void_p(a.ctypes.data), h.DLDevice(h.kDLCPU, 0), a.ndim,
                   h.DLDataType(code, 8 * a.itemsize, 1), ctypes.cast(shape, ctypes.POINTER(ctypes.c_int64)), None, 0)
    return t, shape


def run_binding_cost(rng, quick, reps=7):
    """The token head's forward + backward at N = 4096 x V = 32000 f32 six ways, interleaved
    in this process: the two C ABI calls on buffers allocated once (the kernels alone); the
    same calls with the [N, V] gradient allocated per call, as every framework that returns a
    new gradient does (numpy's allocator, glibc malloc, as XLA's CPU buffers are); the C ABI
    with the gradient written over the logits (in place); era_jax under jit(value_and_grad);
    and era_jax with ``inplace_backward=True`` on donated logits, where XLA hands the logits'
    buffer to the gradient, and on logits that are not donated, which XLA copies first. The in-place variants get a fresh copy of the logits before each
    call, outside the timed region (in a training step the logits are the output of the
    unembedding matmul). Prints the median of `reps` calls of each."""
    from era_jax import _era_h as h
    from era_jax import _native

    n, v = (256, 32000) if quick else (4096, 32000)
    logits, labels, ids, adv = (np.asarray(x) for x in token_batch(rng, n, v, jnp.float32))
    lib = _native.lib()
    cfg = _native.default_config(h.ERA_HEAD_KIND_TOKEN)
    cfg.omega_low, cfg.omega_high = 2.0, 9.0
    head = ctypes.c_void_p()
    _native.check(lib.era_head_new(ctypes.byref(cfg), ctypes.byref(head)), "era_head_new")
    outs = [np.empty(n, np.float32) for _ in range(4)]
    grad = np.empty((n, v), np.float32)
    work = logits.copy()
    keep = [_dl(x) for x in (logits, labels, ids, adv, *outs, grad, work)]
    d = [ctypes.byref(t) for t, _ in keep]

    def c_abi(mode: str):
        x = d[9] if mode == "in place" else d[0]
        _native.check(lib.era_token_forward(head, x, *d[1:8], None, None), "era_token_forward")
        g, dg = grad, d[8]
        if mode == "fresh":
            g = np.empty((n, v), np.float32)
            t = _dl(g)
            dg = ctypes.byref(t[0])
        elif mode == "in place":
            g, dg = work, d[9]
        # the loss sum(logp * advantages_out): its gradient wrt logp is advantages_out
        _native.check(lib.era_token_backward(head, x, d[1], d[2], d[6], d[7], dg, None), "era_token_backward")
        return g

    jl, jy, jr, ja = (jnp.asarray(x) for x in (logits, labels, ids, adv))

    def loss(x, inplace):
        lp, _, _, a2 = era_jax.token_logprobs(x, jy, jr, ja, omega_low=2.0, omega_high=9.0, inplace_backward=inplace)
        return jnp.sum(lp * jax.lax.stop_gradient(a2))

    vg = jax.jit(jax.value_and_grad(lambda x: loss(x, False)))
    vg_inplace = jax.jit(jax.value_and_grad(lambda x: loss(x, True)))
    vg_donated = jax.jit(jax.value_and_grad(lambda x: loss(x, True)), donate_argnums=0)
    fresh_logits = {}

    def refill():
        np.copyto(work, logits)

    def new_logits():
        fresh_logits["x"] = jax.block_until_ready(jnp.array(jl, copy=True))

    def donated():
        return jax.block_until_ready(vg_donated(fresh_logits.pop("x")))

    # name -> (untimed setup, timed call)
    variants = {
        "C ABI, buffers reused": (None, lambda: c_abi("reused")),
        "C ABI, new gradient buffer per call": (None, lambda: c_abi("fresh")),
        "C ABI, gradient over the logits": (refill, lambda: c_abi("in place")),
        "era_jax, jit(value_and_grad)": (None, lambda: jax.block_until_ready(vg(jl))),
        "era_jax, inplace_backward, donated": (new_logits, donated),
        "era_jax, inplace_backward, not donated": (None, lambda: jax.block_until_ready(vg_inplace(jl))),
    }
    want = c_abi("reused").copy()
    for k, (setup, f) in variants.items():
        if setup:
            setup()
        r = f()
        np.testing.assert_allclose(np.asarray(r[1] if isinstance(r, tuple) else r), want, rtol=1e-5, atol=1e-9, err_msg=k)
    times = {k: [] for k in variants}
    for _ in range(reps):  # interleaved, so that drifts of a noisy machine hit all alike
        for k, (setup, f) in variants.items():
            if setup:
                setup()
            t0 = time.perf_counter()
            r = f()
            times[k].append(time.perf_counter() - t0)
            del r
    lib.era_head_free(head)
    base = statistics.median(times["C ABI, buffers reused"])
    fresh = statistics.median(times["C ABI, new gradient buffer per call"])
    print(f"\ntoken N={n} V={v} float32, forward + backward, median of {reps} interleaved calls"
          f" (GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r}):")
    for k, ts in times.items():
        m = statistics.median(ts)
        print(f"  {k:<40} {m * 1e3:9.1f} ms   x{m / base:5.2f} of reused   x{m / fresh:5.2f} of new gradient")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes only")
    p.add_argument("--tiny", action="store_true", help="one small case per head, short timings (a rehearsal)")
    p.add_argument("--check", action="store_true", help="compare native and pure-JAX values first; exit 1 if they differ")
    p.add_argument("--heads", default="gaussian,softmax,token,binding", help="comma-separated subset to run "
                   "(binding: the token head through era_jax against the C ABI called directly; lone, not "
                   "run by default: XLA's cost of a lone elementwise product, 256 x D)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    CHECK["on"], TINY["on"] = a.check, a.tiny
    rng = np.random.default_rng(a.seed)
    dev = jax.devices()[0]
    print(f"era {era_jax.version()} | jax {jax.__version__} | {dev.platform} ({dev.device_kind}) | "
          f"{os.cpu_count()} CPUs | Python {platform.python_version()} | {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    print("forward + backward (value_and_grad of a weighted sum) under jit; median time per step\n")
    print_header()
    rows = []
    heads = set(a.heads.split(","))
    if "gaussian" in heads:
        run_gaussian(rng, a.quick, rows)
    if "softmax" in heads:
        run_softmax(rng, a.quick, rows)
    if "token" in heads:
        run_token(rng, a.quick, rows)
    if "binding" in heads:
        run_binding_cost(rng, a.quick)
    if "lone" in heads:
        run_lone_ops()
    if rows:
        ratios = [tr / tn for _, _, _, tn, tr in rows]
        print(f"\n{len(rows)} measurements; geometric mean jax/native = "
              f"{float(np.exp(np.mean(np.log(ratios)))):.2f}")
    if a.check:
        if CHECK["failures"]:
            print("values differ: " + "; ".join(CHECK["failures"]))
            return 1
        print("values checked: native and pure-JAX agree in every case")
    return 0


if __name__ == "__main__":
    sys.exit(main())
