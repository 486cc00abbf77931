"""GPU check of era's CUDA build (run by scripts/gpu-check.sh on a machine with an
NVIDIA GPU, its driver, Python and a CUDA build of PyTorch; no Rust, no internet).

It loads the CUDA build of libera.so through era_torch (``ERA_TORCH_LIBRARY``,
``PYTHONPATH=bindings/torch/src``) and prints:

1. correctness: every operation and dtype on the GPU against the same library's CPU
   path on the same inputs (max error; edge cases: NaN/inf rows, clipped coordinates,
   masked tokens, ties, tau = e, per-row and scalar delta, strided layouts);
2. semantics: results on a side stream, no synchronisation inside a call (the stream
   is still busy when the call returns), a forward + backward captured into a CUDA
   graph and replayed, mixed devices rejected;
3. throughput against the copy bandwidth measured in the same run, and the token head
   against the recipe's PyTorch computation (time and peak extra memory).

Exit status 1 if a correctness or semantics check fails. ``--quick`` skips the large
throughput sizes.

``--rehearse`` runs the same code on the CPU (no GPU needed; part of ``make test``
through ``scripts/gpu-check.sh --rehearse``): every check compares the CPU path with
itself, the CUDA-only steps (side stream, no-synchronisation, graph capture, events)
run their CPU counterparts or report themselves skipped, and the throughput and recipe
tables use tiny sizes. It catches a renamed function, a missing file or a wrong call
before a GPU window is spent on it; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
import traceback

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "bindings", "torch", "tests"))

import era_torch  # noqa: E402
from era_torch import _native, _token  # noqa: E402

REHEARSE = "--rehearse" in sys.argv[1:]
DEV = torch.device("cpu") if REHEARSE else torch.device("cuda", 0)
FAILS: list = []
ROWS: list = []

# Tolerances against the CPU path (the GPU computes f32 rows with f64 row sums, like the
# CPU's vectorised kernels, but sums in another order): relative to 1 + |value|.
TOL = {torch.float64: 1e-10, torch.float32: 2e-5, torch.bfloat16: 2e-5, torch.float16: 2e-5}


def err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Max |a - b| / (1 + |b|) over finite entries; inf if NaN/inf patterns differ."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    if a.shape != b.shape:
        return math.inf
    fa, fb = torch.isfinite(a), torch.isfinite(b)
    if not torch.equal(fa, fb):
        return math.inf
    nf = ~fa
    if nf.any() and not torch.equal(torch.nan_to_num(a[nf], nan=7.0), torch.nan_to_num(b[nf], nan=7.0)):
        return math.inf
    if not fa.any():
        return 0.0
    return float(((a[fa] - b[fa]).abs() / (1 + b[fa].abs())).max())


def check(name: str, dtype, fn, tol=None):
    """fn(device) -> tensor or tuple of tensors; compares cuda against cpu."""
    try:
        cpu = fn(torch.device("cpu"))
        gpu = fn(DEV)
        sync()
        cpu = cpu if isinstance(cpu, tuple) else (cpu,)
        gpu = gpu if isinstance(gpu, tuple) else (gpu,)
        t = tol if tol is not None else TOL[dtype]
        # an output stored in bfloat16/float16 (the token head's gradient) is the f32 value
        # rounded to that dtype on both sides: two f32 values within t of each other round to
        # values at most t + one unit in the last place apart (relative to 1 + |value|: eps)
        e, ok, tmax = 0.0, True, t
        for g, c in zip(gpu, cpu):
            ti = t + torch.finfo(c.dtype).eps if c.dtype in (torch.bfloat16, torch.float16) else t
            ei = err(g, c)
            e, ok, tmax = max(e, ei), ok and ei <= ti, max(tmax, ti)
        ROWS.append((name, str(dtype).replace("torch.", ""), f"{e:.2e}", f"{tmax:.0e}", "ok" if ok else "FAIL"))
        if not ok:
            FAILS.append(f"{name} {dtype}: max error {e:.3e} > {tmax:.0e}")
    except Exception as ex:  # a failed check is reported, the others still run
        ROWS.append((name, str(dtype).replace("torch.", ""), "-", "-", "FAIL"))
        FAILS.append(f"{name} {dtype}: {type(ex).__name__}: {ex}")
        traceback.print_exc()


def sync():
    if DEV.type == "cuda":
        torch.cuda.synchronize()


def skipped(name: str):
    """A CUDA-only check in a rehearsal: reported, not run."""
    ROWS.append((name, "-", "-", "-", "skipped (rehearsal: needs a GPU)"))


def gen(seed, *shape, dtype=torch.float32, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)


def correctness():
    for dt in (torch.float32, torch.float64):
        # Gaussian head through era_torch (delta as a 0-d tensor and per row), with clipped
        # coordinates (scale 30) and a NaN row
        def gauss(dev, dt=dt, per_row=False):
            z = gen(1, 64, 3, 6, dtype=dt, scale=3.0)
            z[0, 0, 0] = 40.0
            z[1, 1] = float("nan")
            z = z.to(dev).requires_grad_()
            delta = (gen(2, 64, 3, dtype=dt, scale=0.3) if per_row else torch.tensor(0.2, dtype=dt)).to(dev)
            delta.requires_grad_()
            y = era_torch.gaussian_log_std(z, target_entropy=-3.0, log_std_min=-5.0, log_std_max=1.0, delta=delta)
            g = gen(3, *y.shape, dtype=dt).to(dev)
            gz, gd = torch.autograd.grad(y, (z, delta), g)
            return y, gz, gd

        check("gaussian fwd+bwd, scalar delta", dt, gauss)
        check("gaussian fwd+bwd, per-row delta", dt, lambda d, dt=dt: gauss(d, dt, True))

        def gauss_permuted(dev, dt=dt):
            z = gen(4, 6, 50, dtype=dt).to(dev).t()  # [50, 6], column-major
            return era_torch.gaussian_log_std(z, target_entropy=-2.0)

        check("gaussian fwd, permuted", dt, gauss_permuted)

        # the head's stored delta (era_head_forward / era_head_backward)
        def head_call(dev, dt=dt):
            head = _native.cached_head(_native.ERA_HEAD_KIND_GAUSSIAN, (("dim", 6), ("target_entropy", -6.0), ("delta", 0.5)))
            z = gen(5, 33, 6, dtype=dt).to(dev)
            g = gen(6, 33, 6, dtype=dt).to(dev)
            out, gz, ent = torch.empty_like(z), torch.empty_like(z), torch.empty(33, dtype=dt, device=dev)
            _native.call("head_forward", head, z, out)
            _native.call("head_backward", head, z, g, gz)
            _native.call("head_entropy", head, out, ent)
            inplace = z.clone()
            _native.call("head_forward", head, inplace, inplace)  # exact aliasing
            return out, gz, ent, inplace

        check("gaussian head (stored delta), entropy, in place", dt, head_call)

        # the masked head (era_gaussian_forward_masked / era_gaussian_backward_masked):
        # rows with a = 0, a = 1, a = D and random masks, fill and pass-through, a scalar
        # and a per-row delta; both sides compute in float64
        def gauss_masked(dev, dt=dt, per_row=False, fill=None):
            z = gen(11, 40, 6, dtype=dt, scale=2.0)
            mask = (gen(12, 40, 6) > 0).to(dt)
            mask[0::4] = 0.0
            mask[1::4] = 0.0
            mask[1::4, 2] = 1.0
            mask[2::4] = 1.0
            z = z.to(dev).requires_grad_()
            delta = (gen(13, 40, dtype=dt, scale=0.3) if per_row else torch.tensor(0.2, dtype=dt)).to(dev)
            delta.requires_grad_()
            y = era_torch.gaussian_log_std_masked(z, mask.to(dev), target_entropy=-3.0, log_std_min=-5.0,
                                                  log_std_max=1.0, delta=delta, fill=fill)
            g = gen(14, *y.shape, dtype=dt).to(dev)
            gz, gd = torch.autograd.grad(y, (z, delta), g)
            return y, gz, gd

        check("gaussian masked fwd+bwd, scalar delta, pass-through", dt, gauss_masked)
        check("gaussian masked fwd+bwd, per-row delta, fill", dt,
              lambda d, dt=dt: gauss_masked(d, dt, True, -0.5))

        for tau in (math.e, 10.0):
            def soft(dev, dt=dt, tau=tau):
                z = gen(7, 40, 300, dtype=dt, scale=4.0)
                z[3, 5] = float("inf")
                z[4] = float("-inf")
                z[5, 7] = float("nan")
                z = z.to(dev).requires_grad_()
                y = era_torch.softmax_logits(z, target_entropy=2.0, tau=tau)
                (gz,) = torch.autograd.grad(y, z, gen(8, *y.shape, dtype=dt).to(dev))
                return y, gz

            check(f"softmax fwd+bwd, tau={tau:.3g}", dt, soft)

        check("gaussian entropy", dt, lambda d, dt=dt: era_torch.gaussian_entropy(gen(9, 17, 5, dtype=dt).to(d)))
        check(
            "truncated-normal entropy",
            dt,
            lambda d, dt=dt: era_torch.truncated_normal_entropy(gen(10, 17, 5, dtype=dt).to(d), gen(11, 17, 5, dtype=dt, scale=2).to(d)),
        )
        check(
            "truncated-normal entropy, infinite bound",
            dt,
            lambda d, dt=dt: era_torch.truncated_normal_entropy(
                gen(10, 17, 5, dtype=dt).to(d), gen(11, 17, 5, dtype=dt).to(d), low=-math.inf, high=0.5
            ),
        )
    for dt in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
        check("softmax entropy, T=0.7", dt, lambda d, dt=dt: era_torch.softmax_entropy(gen(12, 9, 7, 1000, dtype=dt).to(d), temperature=0.7))
        for topk in (0, 40):
            def token(dev, dt=dt, topk=topk, permuted=False):
                n, v = 96, 3001
                x = gen(13, n, v, dtype=torch.float64, scale=3.0)
                x[5, :] = 0.0  # every logit tied
                x[6, 100:200] = 9.0  # ties at the K-th value
                x[7, 10] = float("inf")
                x = x.to(dt)
                if permuted:
                    x = x.t().contiguous().t()
                g = torch.Generator().manual_seed(14)
                labels = torch.randint(0, v, (n,), generator=g)
                ids = torch.randint(0, 7, (n,), generator=g) * 3  # unsorted, non-contiguous ids
                ids[::9] = -1  # masked
                adv = gen(15, n, dtype=torch.float64).clamp(-2, 2)
                adv[ids == 6] = 1.0
                out_dt = torch.float64 if dt == torch.float64 else torch.float32
                x = x.to(dev).requires_grad_()
                lp, ent, c, a2 = era_torch.token_logprobs(
                    x, labels.to(dev), ids.to(dev), adv.to(out_dt).to(dev), vocab_topk=topk, temperature=0.9, omega_low=1.0, omega_high=1.5
                )
                (gx,) = torch.autograd.grad(lp, x, a2)
                return lp, ent, c, a2, gx

            check(f"token fwd+bwd, top-K {topk}", dt, token)
            check(f"token fwd+bwd, top-K {topk}, column-major", dt, lambda d, dt=dt, topk=topk: token(d, dt, topk, True))


def semantics():
    # a side stream: era_torch passes the current stream; results as on the default one
    def on_side_stream(dev):
        x = gen(20, 512, 32000, scale=2.0).to(dev)
        labels = torch.randint(0, 32000, (512,), generator=torch.Generator().manual_seed(0)).to(dev)
        ids = (torch.arange(512) // 64).to(dev)
        adv = gen(21, 512).to(dev)
        if dev.type == "cuda":
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                out = era_torch.token_logprobs(x, labels, ids, adv)
            torch.cuda.current_stream().wait_stream(s)
            return out
        return era_torch.token_logprobs(x, labels, ids, adv)

    check("token fwd on a side stream", torch.float32, on_side_stream)
    fresh_process_capture()
    if REHEARSE:
        skipped("no synchronisation inside a call (stream still busy on return)")
        graph_capture_rehearsal()
        skipped("mixed host/device tensors rejected")
        return

    # no synchronisation inside a call: the stream is still busy when the call returns
    try:
        x = gen(22, 1024, 6).to(DEV)
        era_torch.gaussian_log_std(x, target_entropy=-6.0)  # warm-up: kernels loaded
        torch.cuda.synchronize()
        torch.cuda._sleep(2_000_000_000)  # about a second of GPU time on the current stream
        era_torch.gaussian_log_std(x, target_entropy=-6.0)
        busy = not torch.cuda.current_stream().query()
        torch.cuda.synchronize()
        ROWS.append(("no synchronisation inside a call (stream still busy on return)", "f32", "-", "-", "ok" if busy else "FAIL"))
        if not busy:
            FAILS.append("a call waited for the stream: it synchronised")
    except Exception as ex:
        FAILS.append(f"no-sync check: {ex}")

    # a forward and backward captured into a CUDA graph and replayed
    try:
        n, v = 256, 4096
        x = gen(23, n, v).to(DEV).requires_grad_()
        labels = torch.randint(0, v, (n,), generator=torch.Generator().manual_seed(1)).to(DEV)
        ids = (torch.arange(n) // 32).to(DEV)
        adv = gen(24, n).to(DEV)
        z = gen(25, n, 6).to(DEV).requires_grad_()

        def step():
            lp, ent, c, a2 = era_torch.token_logprobs(x, labels, ids, adv)
            (gx,) = torch.autograd.grad(lp, x, a2)
            ls = era_torch.gaussian_log_std(z, target_entropy=-6.0, delta=0.1)
            (gz,) = torch.autograd.grad(ls.sum(), z)
            return lp, gx, ls, gz

        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(2):
                step()
        torch.cuda.current_stream().wait_stream(s)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static = step()
        with torch.no_grad():
            x.copy_(gen(26, n, v).to(DEV))
            z.copy_(gen(27, n, 6).to(DEV))
        graph.replay()
        torch.cuda.synchronize()
        eager = step()
        e = max(err(a, b) for a, b in zip(static, eager))
        ok = e <= 1e-6
        ROWS.append(("CUDA graph: token + Gaussian fwd+bwd captured, replayed on new inputs", "f32", f"{e:.2e}", "1e-06", "ok" if ok else "FAIL"))
        if not ok:
            FAILS.append(f"graph replay differs from eager by {e}")
    except Exception as ex:
        ROWS.append(("CUDA graph capture", "f32", "-", "-", "FAIL"))
        FAILS.append(f"graph capture: {type(ex).__name__}: {ex}")
        traceback.print_exc()

    # mixed devices are rejected with the library's status
    try:
        era_torch.token_logprobs(gen(28, 4, 10).to(DEV), torch.zeros(4, dtype=torch.int64), torch.zeros(4, dtype=torch.int64), torch.zeros(4))
        FAILS.append("host and device tensors in one call were accepted")
    except era_torch.EraError as ex:
        ok = ex.status == "ERA_STATUS_UNSUPPORTED_DEVICE"
        ROWS.append(("mixed host/device tensors rejected", "-", "-", "-", "ok" if ok else "FAIL"))
        if not ok:
            FAILS.append(f"mixed devices gave {ex.status}")
    except Exception as ex:  # torch itself may refuse first; that is not era's answer
        ROWS.append((f"mixed host/device tensors: {type(ex).__name__}", "-", "-", "-", "FAIL"))
        FAILS.append(f"mixed devices: {ex}")


def graph_capture_rehearsal():
    """The graph check's step (token + Gaussian forward and backward) run eagerly twice on
    the CPU: the code that the GPU captures, with its calls and argument lists."""
    try:
        n, v = 16, 300
        x = gen(23, n, v).requires_grad_()
        labels = torch.randint(0, v, (n,), generator=torch.Generator().manual_seed(1))
        ids = torch.arange(n) // 4
        adv = gen(24, n)
        z = gen(25, n, 6).requires_grad_()

        def step():
            lp, ent, c, a2 = era_torch.token_logprobs(x, labels, ids, adv)
            (gx,) = torch.autograd.grad(lp, x, a2)
            ls = era_torch.gaussian_log_std(z, target_entropy=-6.0, delta=0.1)
            (gz,) = torch.autograd.grad(ls.sum(), z)
            return lp, gx, ls, gz

        e = max(err(a, b) for a, b in zip(step(), step()))
        ok = e == 0.0
        ROWS.append(("CUDA graph step, run eagerly twice (rehearsal)", "f32", f"{e:.2e}", "0", "ok" if ok else "FAIL"))
        if not ok:
            FAILS.append(f"the graph step differs between two eager runs by {e}")
    except Exception as ex:
        ROWS.append(("CUDA graph step (rehearsal)", "f32", "-", "-", "FAIL"))
        FAILS.append(f"graph step: {type(ex).__name__}: {ex}")
        traceback.print_exc()


def fresh_capture_main() -> int:
    """``--fresh-capture``: in a process of its own, one Gaussian call, then a bf16 token
    forward + backward captured into a CUDA graph with no token call before it (the first
    use of the token kernels is inside the capture: they must have been loaded with the
    device's state), replayed on new logits and compared with an eager call. In a
    rehearsal the same calls run eagerly on the CPU. Exit status 0 when they agree."""
    n, v = 64, 2048
    g = torch.Generator().manual_seed(3)
    labels = torch.randint(0, v, (n,), generator=g).to(DEV)
    ids = (torch.arange(n) // 16).to(DEV)
    adv = gen(31, n).to(DEV)
    x = gen(32, n, v, dtype=torch.bfloat16).to(DEV).requires_grad_()
    era_torch.gaussian_log_std(gen(30, 8, 6).to(DEV), target_entropy=-6.0)  # loads the device's state
    sync()

    def step():
        lp, _, _, a2 = era_torch.token_logprobs(x, labels, ids, adv)
        (gx,) = torch.autograd.grad(lp, x, a2)
        return lp, gx

    if DEV.type == "cuda":
        # torch's own lazy state (autograd's device thread, the allocator) warmed up on a
        # side stream with a torch-only step, as torch asks; era's token kernels are not used
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            torch.autograd.grad((x.float() * 2).sum(), x)
        torch.cuda.current_stream().wait_stream(s)
        sync()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static = step()
        with torch.no_grad():
            x.copy_(gen(33, n, v, dtype=torch.bfloat16).to(DEV))
        graph.replay()
        sync()
    else:
        with torch.no_grad():
            x.copy_(gen(33, n, v, dtype=torch.bfloat16))
        static = step()
    eager = step()
    sync()
    e = max(err(a, b) for a, b in zip(static, eager))
    print(f"fresh-process capture of a bf16 token forward + backward: max difference {e:.2e}")
    return 0 if e <= 1e-6 else 1


def fresh_process_capture():
    """Runs ``fresh_capture_main`` in a new process (a fresh device state), with a limit."""
    name = "bf16 token fwd+bwd captured in a fresh process after one Gaussian call"
    if REHEARSE:
        name += " (rehearsal: eager, CPU)"
    cmd = [sys.executable, os.path.abspath(__file__), "--fresh-capture"] + (["--rehearse"] if REHEARSE else [])
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=45)
        ok = r.returncode == 0
        print(r.stdout.strip() + ("\n" + r.stderr.strip() if not ok else ""))
    except subprocess.TimeoutExpired:
        ok = False
        print("fresh-process capture: no answer within 45 s")
    ROWS.append((name, "bf16", "-", "1e-06", "ok" if ok else "FAIL"))
    if not ok:
        FAILS.append("the capture of a first token call in a fresh process failed")


def timed(fn, reps=10, warmup=2) -> float:
    """Median milliseconds per call, with CUDA events on the current stream (a rehearsal:
    the host clock)."""
    for _ in range(warmup):
        fn()
    if DEV.type != "cuda":
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - t0) * 1e3)
        ts.sort()
        return ts[len(ts) // 2]
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2]


def empty_cache():
    if DEV.type == "cuda":
        torch.cuda.empty_cache()


def throughput(quick: bool):
    out = []
    nbytes = (4 << 20) if REHEARSE else (4 << 30)
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=DEV)
    dst = torch.empty_like(src)
    ms = timed(lambda: dst.copy_(src), reps=10)
    bw = 2 * nbytes / ms / 1e6  # GB/s, read + write
    out.append((f"device-to-device copy, {nbytes >> 20} MiB", f"{ms:.2f} ms", f"{bw:.0f} GB/s", "100%"))
    del src, dst
    empty_cache()

    def row(name, ms, nbytes):
        gbs = nbytes / ms / 1e6
        out.append((name, f"{ms:.3f} ms", f"{gbs:.0f} GB/s", f"{100 * gbs / bw:.0f}%"))

    sizes = [(4096, 32000)] if quick else [(4096, 32000), (16384, 152064)]
    if REHEARSE:
        sizes = [(64, 1000)]
    for n, v in sizes:
        for dt in (torch.bfloat16, torch.float32):
            x = torch.randn(n, v, device=DEV).to(dt)
            labels = torch.randint(0, v, (n,), device=DEV)
            ids = torch.arange(n, device=DEV) // 512
            adv = torch.randn(n, device=DEV)
            head = _token._token_head(2.0, 0.45, 3.0, 0.2, 1.0, True, 0)
            outs = [torch.empty(n, device=DEV) for _ in range(5)]
            ms = timed(lambda: _native.call("token_forward", head, x, labels, ids, adv, *outs), reps=5)
            row(f"token forward {n}x{v} {str(dt)[6:]}", ms, x.numel() * x.element_size())
            g = torch.empty_like(x)
            ms = timed(lambda: _native.call("token_backward", head, x, labels, ids, outs[2], outs[3], g), reps=5)
            row(f"token backward {n}x{v} {str(dt)[6:]} (read + write)", ms, 2 * x.numel() * x.element_size())
            del x, g
            empty_cache()
    for b, d in ((256, 6),) if REHEARSE else ((65536, 6), (65536, 61)):
        z = torch.randn(b, d, device=DEV, requires_grad=True)

        def gfb():
            y = era_torch.gaussian_log_std(z, target_entropy=-float(d))
            torch.autograd.grad(y, z, y)

        ms = timed(gfb, reps=20)
        row(f"gaussian fwd+bwd {b}x{d} f32 (via era_torch)", ms, 5 * z.numel() * 4)
    z = torch.randn(*((64, 1000) if REHEARSE else (4096, 32000)), device=DEV, requires_grad=True)

    def sfb():
        y = era_torch.softmax_logits(z, target_entropy=3.0)
        torch.autograd.grad(y, z, y)

    ms = timed(sfb, reps=10)
    row(f"softmax fwd+bwd {z.shape[0]}x{z.shape[1]} f32 (via era_torch)", ms, 5 * z.numel() * 4)
    # an SAC batch: the C call alone, with events, and inside a captured graph
    z = torch.randn(256, 6, device=DEV)
    o = torch.empty_like(z)
    head = _native.cached_head(_native.ERA_HEAD_KIND_GAUSSIAN, (("dim", 6), ("target_entropy", -6.0)))
    ms = timed(lambda: [_native.call("head_forward", head, z, o) for _ in range(100)], reps=5) / 100
    out.append(("gaussian forward 256x6, per call (events, 100 calls)", f"{ms * 1e3:.1f} us", "-", "-"))
    if REHEARSE:
        out.append(("gaussian forward 256x6, per call inside a CUDA graph", "skipped (rehearsal: needs a GPU)", "-", "-"))
        return out, bw
    graph = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        _native.call("head_forward", head, z, o)
    torch.cuda.synchronize()
    with torch.cuda.graph(graph):
        for _ in range(100):
            _native.call("head_forward", head, z, o)
    ms = timed(graph.replay, reps=5) / 100
    out.append(("gaussian forward 256x6, per call inside a CUDA graph", f"{ms * 1e3:.1f} us", "-", "-"))
    return out, bw


def recipe_comparison():
    """era_torch.token_logprobs fwd+bwd against the recipe's PyTorch sequence on the GPU."""
    import torch_ref  # bindings/torch/tests/torch_ref.py

    n, v = (64, 1000) if REHEARSE else (4096, 32000)
    x = torch.randn(n, v, device=DEV) * 2
    labels = torch.randint(0, v, (n,), device=DEV)
    ids = torch.arange(n, device=DEV) // 256
    adv = torch.randn(n, device=DEV)
    res = []
    for name, fn in (
        ("era_torch", lambda xx: era_torch.token_logprobs(xx, labels, ids, adv)),
        ("PyTorch recipe", lambda xx: torch_ref.era_logprobs_reference(xx, labels, ids, adv)[:4]),
    ):
        xx = x.clone().requires_grad_()

        def step():
            lp, _, _, a2 = fn(xx)
            torch.autograd.grad(lp, xx, a2)

        step()
        if DEV.type != "cuda":  # a rehearsal: no device memory statistics
            res.append((name, timed(step, reps=5), float("nan")))
            continue
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        ms = timed(step, reps=5)
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20 - n * v * 4 / 2**20  # beyond the gradient
        res.append((name, ms, peak))
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="skip the large throughput sizes")
    ap.add_argument("--rehearse", action="store_true", help="every step on the CPU, tiny sizes (no GPU needed)")
    ap.add_argument("--fresh-capture", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.fresh_capture:
        sys.exit(fresh_capture_main())
    t0 = time.time()
    if REHEARSE:
        where = "rehearsal on the CPU (no GPU: every number below is meaningless)"
    else:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"], capture_output=True, text=True)
        where = smi.stdout.strip()
    print(f"# era GPU check, {time.strftime('%Y-%m-%d %H:%M')}: {where}; torch {torch.__version__}")
    print(f"# library: {era_torch.library_path()}; era_cuda_available = {_native.lib().era_cuda_available()}")
    correctness()
    semantics()
    print("\n| check | dtype | max error | tolerance | |\n| --- | --- | --- | --- | --- |")
    for r in ROWS:
        print("| " + " | ".join(r) + " |")
    try:
        rows, bw = throughput(args.quick)
        print("\n| throughput | time | bandwidth | of copy |\n| --- | --- | --- | --- |")
        for r in rows:
            print("| " + " | ".join(r) + " |")
        cmp = recipe_comparison()
        size = "64x1000" if REHEARSE else "4096x32000"
        print(f"\n| token head fwd+bwd {size} f32 | ms | peak extra MiB beyond the gradient |\n| --- | --- | --- |")
        for name, ms, peak in cmp:
            print(f"| {name} | {ms:.2f} | {peak:.0f} |")
        print(f"era_torch is {cmp[1][1] / cmp[0][1]:.1f}x faster than the recipe's PyTorch sequence")

    except Exception as ex:
        FAILS.append(f"throughput: {type(ex).__name__}: {ex}")
        traceback.print_exc()
    print(f"\n# {time.time() - t0:.0f} s; {len(FAILS)} failure(s)")
    for f in FAILS:
        print("FAIL:", f)
    sys.exit(1 if FAILS else 0)


if __name__ == "__main__":
    main()
