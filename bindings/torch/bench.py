"""era_torch benchmarks (a command, not a test; run with `make bench-torch`).

1. Token head forward+backward, N = 4096 tokens x V = 32000, float32 logits, CPU:
   era_torch.token_logprobs (custom op + autograd; also with inplace_backward=True, the
   gradient written over a fresh copy of the logits) against the same two C calls made
   directly through ctypes (on the same buffers; with new buffers per run; in place), and
   against the straightforward PyTorch transcription of the recipe (tests/torch_ref.py). Each variant runs in its own
   process so that its peak RSS can be read; times are the median (and min) of REPS runs.
2. The Gaussian head inside a torch.compile'd SAC actor update (batch 256): ERA log-stds
   against a plain clamp of the log-stds, one step of each in turn (in random order) in one
   process, so that both see the same machine load, both updating the same actor; the added
   time is the median of the paired per-step differences (with its 95% distribution-free
   interval) over the clamp's median step. A control row: the clamp against the clamp
   compiled a second time, measured the same way (the harness's own difference). The floor
   of an op Inductor cannot fuse, in a child process whose Inductor calls aten's softmax and
   its backward as opaque ops (as it calls a custom op): that softmax into [lo, hi] against
   the clamp, and ERA against it (what the library's ops cost beyond any two opaque calls).
   With the C++ CPU kernels (when built), then again in a child process with the ops' Python
   implementations (ERA_TORCH_CPU_KERNELS=0), against its own clamp.

3. With --op-cost: where one Gaussian op's time goes at 256 x 6 (the library's calls, the
   Python body, the op through the dispatcher, a compiled forward + backward of the head).
4. With --softmax: the softmax head's forward + backward at 256 x 10 and 256 x 1000, eager and
   compiled, against the PyTorch transcription of the same math run the same two ways.

    python bindings/torch/bench.py [--reps 5] [--skip-token] [--skip-sac] [--op-cost] [--softmax]

--reps: runs of each token variant, repeats of each op-cost timing; the SAC comparison
takes 400 x reps steps of each.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
N, V = 4096, 32000
VARIANTS = ("ctypes", "ctypes_alloc", "ctypes_inplace", "era_torch", "era_torch_inplace", "transcription")


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _inputs():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(N, V, generator=g) * 2
    labels = torch.randint(0, V, (N,), generator=g)
    ids = torch.arange(N) // 256  # 16 responses of 256 tokens
    ids[torch.rand(N, generator=g) < 0.05] = -1
    adv = torch.randn(N // 256, generator=g)[ids.clamp(min=0)]
    return logits, labels, ids, adv


def _child(variant: str, reps: int) -> dict:
    import era_torch
    from era_torch import _native

    logits, labels, ids, adv = _inputs()
    base = _rss_mib()
    times = []
    setup = None  # untimed, before each run
    if variant in ("era_torch", "era_torch_inplace"):
        inplace = variant == "era_torch_inplace"
        x = logits.requires_grad_()
        if inplace:
            # the logits are overwritten by their gradient: a fresh copy before each run, as a
            # training step's unembedding matmul makes them
            work = logits.detach().clone()
            box = {}

            def setup():
                work.copy_(logits.detach())
                box["x"] = work.detach().requires_grad_()

        def run():
            xx = box["x"] if inplace else x
            lp, ent, c, a2 = era_torch.token_logprobs(xx, labels, ids, adv, inplace_backward=inplace)
            (g,) = torch.autograd.grad(lp, xx, grad_outputs=a2)
            return g
    elif variant in ("ctypes", "ctypes_alloc", "ctypes_inplace"):
        # the C ABI called directly: the same buffers every run ("ctypes"), fresh outputs
        # and gradient per run, as autograd needs ("ctypes_alloc"), or the gradient written
        # over a fresh copy of the logits ("ctypes_inplace")
        head = _native.cached_head(_native.ERA_HEAD_KIND_TOKEN, ())
        lib = _native.lib()
        work = logits.clone() if variant == "ctypes_inplace" else None

        def buffers():
            grad = work if variant == "ctypes_inplace" else torch.empty(N, V)
            x = work if variant == "ctypes_inplace" else logits
            outs = [torch.empty(N) for _ in range(4)] + [grad]
            d = [_native.describe(t) for t in (x, labels, ids, adv, *outs)]
            return outs, [ctypes.byref(x) for x in d]
        fixed = buffers()
        if variant == "ctypes_inplace":
            def setup():
                work.copy_(logits)

        def run():
            outs, r = buffers() if variant == "ctypes_alloc" else fixed
            assert lib.era_token_forward(head.ptr, r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], None, None) == 0
            # grad_logprobs = advantages_out (the loss sum(logp * A'))
            assert lib.era_token_backward(head.ptr, r[0], r[1], r[2], r[6], r[7], r[8], None) == 0
            return outs[-1]
    else:
        spec = importlib.util.spec_from_file_location("torch_ref", os.path.join(HERE, "tests", "torch_ref.py"))
        ref = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(ref)
        x = logits.requires_grad_()

        def run():
            lp, ent, c, a2, _ = ref.era_logprobs_reference(x, labels, ids, adv)
            (g,) = torch.autograd.grad(lp, x, grad_outputs=a2)
            return g
    if setup:
        setup()
    run()  # warm-up
    for _ in range(reps):
        if setup:
            setup()
        t0 = time.perf_counter()
        g = run()
        times.append(time.perf_counter() - t0)
        del g
    # peak RSS above the inputs, less the [N, V] gradient every variant returns (for the
    # in-place variants: the working copy of the logits that becomes the gradient)
    return {"variant": variant, "times": times, "extra_peak_mib": _peak_mib() - base - N * V * 4 / 2**20}


def bench_token(reps: int) -> dict:
    res = {}
    for variant in VARIANTS:
        out = subprocess.run([sys.executable, __file__, "--child", variant, "--reps", str(reps)],
                             check=True, capture_output=True, text=True)
        res[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    return res


def _aten_softmax_unfused() -> None:
    """Makes Inductor call aten's softmax and its backward as opaque ops, as it calls a custom
    op, instead of fusing them: a lowering changed for the whole process, so only in a child."""
    from torch._inductor import decomposition, lowering

    aten = torch.ops.aten
    for op in (aten._softmax, aten._softmax_backward_data):
        decomposition.decompositions.pop(op, None)
        decomposition.decompositions.pop(op.default, None)
        lowering.lowerings.pop(op.default, None)
        lowering.make_fallback(op)
        if op.default not in lowering.fallbacks:
            raise RuntimeError(f"this torch's Inductor did not take {op} as a fallback")


def bench_sac(pairs: int, other: str = "era", base: str = "clamp") -> dict:
    """Seconds per step of the compiled SAC actor update with `base` and with `other` log-stds
    (as "clamp" and "other"), `pairs` steps of each, one of each in turn in random order. The
    log-stds: "era" (the ERA head), "clamp" (a clamp; against the clamp, the harness's own
    difference) or "aten" (aten's softmax into [lo, hi], which after `_aten_softmax_unfused` is
    two opaque aten calls where the ERA head makes two opaque era calls). Both update
    the same actor with the same optimizer: separate copies differ by themselves (about 1%
    in this setting, from where their tensors lie). Two variants only: with a third one
    interleaved, the code that two of them share would run more often, and warmer."""
    import random

    import era_torch

    torch.manual_seed(0)
    obs_dim, act_dim, batch = 17, 6, 256

    def mlp(i, o):
        return torch.nn.Sequential(torch.nn.Linear(i, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                                   torch.nn.ReLU(), torch.nn.Linear(256, o))

    critic = mlp(obs_dim + act_dim, 1).requires_grad_(False)
    actor = mlp(obs_dim, 2 * act_dim)
    opt = torch.optim.Adam(actor.parameters(), lr=3e-4)
    head = era_torch.EraGaussian(act_dim, -float(act_dim))
    lo, hi = head.log_std_min, head.log_std_max

    def make(kind: str):
        def loss_fn(obs, eps):
            mu, z = actor(obs).chunk(2, dim=-1)
            if kind == "era":
                log_std = head(z)
            elif kind == "aten":
                log_std = hi + (lo - hi) * torch.softmax(z, dim=-1)
            else:
                log_std = z.clamp(lo, hi)
            a = torch.tanh(mu + log_std.exp() * eps)
            return -critic(torch.cat([obs, a], -1)).mean()

        compiled = torch.compile(loss_fn, fullgraph=True)

        def step(obs, eps):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            compiled(obs, eps).backward()
            opt.step()
            return time.perf_counter() - t0
        return step

    steps = {"clamp": make(base), "other": make(other)}
    obs, eps = torch.randn(batch, obs_dim), torch.randn(batch, act_dim)
    for s in steps.values():
        for _ in range(50):
            s(obs, eps)
    rng = random.Random(0)
    times = {k: [] for k in steps}
    for _ in range(pairs):
        order = list(steps)
        rng.shuffle(order)
        for k in order:
            times[k].append(steps[k](obs, eps))
    return times


def added_time(t: dict) -> tuple[float, float, float]:
    """The median of the paired per-step differences (the other arm - the base arm, "clamp" in
    `t` whatever it holds) and its 95% distribution-free interval (order statistics
    n/2 -+ 0.98 sqrt(n)), as fractions of the base arm's median step."""
    d = sorted(e - c for e, c in zip(t["other"], t["clamp"]))
    n, base = len(d), statistics.median(t["clamp"])
    half = 0.98 * n ** 0.5
    lo, hi = max(0, int(n / 2 - half)), min(n - 1, int(n / 2 + half + 1))
    return statistics.median(d) / base, d[lo] / base, d[hi] / base


def _per_call_us(fn, k: int, reps: int, warm: int) -> list:
    """Microseconds per call of `fn`, one figure per loop of `k` calls, `reps` loops after
    `warm` untimed calls."""
    for _ in range(warm):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(k):
            fn()
        ts.append((time.perf_counter() - t0) / k * 1e6)
    return ts


def bench_op_cost(reps: int) -> dict:
    """Where a Gaussian op's time goes at 256 x 6 (microseconds per call, best of `reps`
    repeats): the library's two calls on descriptors built once, era_torch's Python body
    (descriptors + the foreign call), the op through the dispatcher (no grad), a compiled
    forward + backward of the head alone against the same with a clamp; then the saved ops
    and aten's clamp in a tight loop, and called once after each compiled step (the median),
    as a step calls them."""
    import era_torch
    from era_torch import _native, _ops

    z, d = torch.randn(256, 6), torch.zeros(())
    out, g, gz, gd = torch.empty(256, 6), torch.ones(256, 6), torch.empty(256, 6), torch.empty(())
    head = _ops._gaussian_head(6, -6.0, -8.0, 0.0)
    lib = _native.lib()
    keep = [_native.describe(t) for t in (z, d, out, g, gz, gd)]
    p = [ctypes.byref(x) for x in keep]

    def best(fn, k):
        return min(_per_call_us(fn, k, reps, warm=1))

    res = {
        "library forward (ctypes, descriptors built once)": best(lambda: lib.era_gaussian_forward_delta(head.ptr, p[0], p[1], p[2], None), 5000),
        "library backward (ctypes, descriptors built once)": best(lambda: lib.era_gaussian_backward_delta(head.ptr, p[0], p[1], p[3], p[4], p[5], None), 5000),
        "era_torch body of the forward (_native.call)": best(lambda: _native.call("gaussian_forward_delta", head, z, d, out), 5000),
        "the forward's Python implementation (head lookup, output, _native.call)": best(
            lambda: _ops._gaussian_fwd_impl(z, d, -6.0, -8.0, 0.0), 5000),
    }
    op = torch.ops.era.gaussian_log_std.default
    kernels = "C++ CPU kernel" if era_torch.cpu_kernels() else "Python implementation"
    with torch.no_grad():
        res[f"torch.ops.era.gaussian_log_std, no grad ({kernels})"] = best(lambda: op(z, d, -6.0, -8.0, 0.0), 2000)
    era_head = era_torch.EraGaussian(6, -6.0)
    x = torch.randn(256, 12, requires_grad=True)

    def head_only(use_era):
        def f(x):
            mu, s = x.chunk(2, -1)
            return (mu * (era_head(s) if use_era else s.clamp(-8.0, 0.0)).exp()).sum()
        c = torch.compile(f, fullgraph=True)
        return lambda: c(x).backward()
    for name, use_era in (("compiled head alone fwd+bwd, clamp", False), ("compiled head alone fwd+bwd, ERA", True)):
        res[name] = best(head_only(use_era), 300)

    # In a training step no call runs warm: between two calls of an op lies the rest of the
    # step. One call after each compiled clamp step (its median), an aten op's beside ours.
    clamp_step = head_only(False)
    fwd = torch.ops.era.gaussian_log_std_saved.default
    bwd = torch.ops.era.gaussian_log_std_saved_backward.default
    zs = x.detach()[:, 6:]
    with torch.no_grad():
        _, s = fwd(zs, d, -6.0, -8.0, 0.0)
    calls = {
        "era::gaussian_log_std_saved, no grad": lambda: fwd(zs, d, -6.0, -8.0, 0.0),
        "era::gaussian_log_std_saved_backward, no grad": lambda: bwd(s, d, g, -6.0, -8.0, 0.0),
        "aten::clamp, no grad (for comparison)": lambda: torch.ops.aten.clamp.default(zs, -8.0, 0.0),
    }
    with torch.no_grad():
        for name, call in calls.items():
            res[name + ", in a tight loop"] = best(call, 2000)
    for name, call in calls.items():
        ts = []
        for _ in range(300 * reps):
            clamp_step()
            with torch.no_grad():
                t0 = time.perf_counter()
                call()
                ts.append((time.perf_counter() - t0) * 1e6)
        res[name + ", one call after a compiled step"] = statistics.median(ts)
    return res


def bench_softmax(reps: int) -> dict:
    """The softmax head's forward + backward (float32, one gradient w.r.t. z), eager and
    compiled (Inductor's defaults), against the PyTorch transcription of the same math
    (tests/torch_ref.py) run the same two ways: microseconds per step, the median of `reps`
    loops of 2000 steps (n = 10) or 100 steps (n = 1000)."""
    import era_torch

    sys.path.insert(0, os.path.join(HERE, "tests"))
    import torch_ref

    h0, tau = 0.3, 4.0
    res = {}
    for rows, n in ((256, 10), (256, 1000)):
        g = torch.Generator().manual_seed(0)
        z = (torch.randn(rows, n, generator=g) * 3).requires_grad_()
        w = torch.randn(rows, n, generator=g)
        era = lambda z: era_torch.softmax_logits(z, target_entropy=h0, tau=tau)  # noqa: E731
        ref = lambda z: torch_ref.softmax_logits_reference(z, h0, tau)  # noqa: E731
        arms = {"era_torch": era, "transcription": ref,
                "era_torch, compiled": torch.compile(era, fullgraph=True),
                "transcription, compiled": torch.compile(ref, fullgraph=True)}
        k = 2000 if n <= 10 else 100
        for name, f in arms.items():
            def step(f=f):
                return torch.autograd.grad((f(z) * w).sum(), z)
            res[(f"{rows} x {n}", name)] = statistics.median(_per_call_us(step, k, reps, warm=20))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--child")
    ap.add_argument("--skip-token", action="store_true")
    ap.add_argument("--skip-sac", action="store_true")
    ap.add_argument("--op-cost", action="store_true", help="also: where a Gaussian op's time goes (256 x 6)")
    ap.add_argument("--softmax", action="store_true", help="also: the softmax head against its PyTorch transcription")
    args = ap.parse_args()
    if args.child == "sac":
        print(json.dumps(bench_sac(args.reps)))
        return
    if args.child in ("sac-aten", "sac-era-aten"):
        _aten_softmax_unfused()
        print(json.dumps(bench_sac(args.reps, other="aten") if args.child == "sac-aten" else
                         bench_sac(args.reps, other="era", base="aten")))
        return
    if args.child:
        print(json.dumps(_child(args.child, args.reps)))
        return
    print(f"# era_torch benchmarks: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), {time.strftime('%Y-%m-%d')}")
    if not args.skip_token:
        res = bench_token(args.reps)
        c = statistics.median(res["ctypes"]["times"])
        print(f"\ntoken head fwd+bwd, N={N} x V={V} float32, {args.reps} runs")
        ca = statistics.median(res["ctypes_alloc"]["times"])
        print("| variant | median ms | min ms | vs ctypes | vs ctypes_alloc | peak RSS beyond inputs and gradient, MiB |")
        print("| --- | --- | --- | --- | --- | --- |")
        for k in VARIANTS:
            t = res[k]["times"]
            print(f"| {k} | {statistics.median(t) * 1e3:.1f} | {min(t) * 1e3:.1f} | "
                  f"{statistics.median(t) / c:.3f}x | {statistics.median(t) / ca:.3f}x | {res[k]['extra_peak_mib']:.0f} |")
        tr = statistics.median(res["transcription"]["times"]) / statistics.median(res["era_torch"]["times"])
        print(f"era_torch is {tr:.1f}x faster than the transcription")
    if not args.skip_sac:
        import era_torch

        pairs = 400 * args.reps
        print(f"\nSAC actor update (torch.compile, batch 256, obs 17, act 6, MLP 256x2), {pairs} steps of each arm, "
              "the two arms of a row in turn; added time = median of the paired differences [95% interval] / "
              "the base arm's median")
        print("| log-stds | base arm | base median us/step | median us/step | adds |")
        print("| --- | --- | --- | --- | --- |")
        cpp = era_torch.cpu_kernels()
        era = "ERA, C++ CPU kernels" if cpp else "ERA, Python (" + era_torch.cpu_kernels_status() + ")"
        runs = [(era, "clamp", bench_sac(pairs)),
                ("control: the clamp compiled again", "clamp", bench_sac(pairs, other="clamp"))]

        def child(kind, env):
            out = subprocess.run([sys.executable, __file__, "--child", kind, "--reps", str(pairs)], env=env,
                                 capture_output=True, text=True)
            if out.returncode:
                # the aten arms change Inductor's private tables, which another torch may lay out
                # differently: say so and go on with the other rows
                print(f"(child {kind} failed: {out.stderr.strip().splitlines()[-1:]})")
                return None
            return json.loads(out.stdout.splitlines()[-1])
        opaque = "aten's softmax, unfused"
        runs.append((opaque + ": two opaque aten calls, as Inductor calls a custom op (own process)", "clamp",
                     child("sac-aten", os.environ)))
        runs.append((era + " (own process)", opaque, child("sac-era-aten", os.environ)))
        if cpp:
            runs.append(("ERA, Python implementations (ERA_TORCH_CPU_KERNELS=0, own process)", "clamp",
                         child("sac", dict(os.environ, ERA_TORCH_CPU_KERNELS="0"))))
        for name, base, t in runs:
            if t is None:
                print(f"| {name} | {base} | | | not measured (above) |")
                continue
            m, lo, hi = (100 * x for x in added_time(t))
            print(f"| {name} | {base} | {statistics.median(t['clamp']) * 1e6:.0f} | "
                  f"{statistics.median(t['other']) * 1e6:.0f} | {m:+.1f}% [{lo:+.1f}%, {hi:+.1f}%] |")
    if args.op_cost:
        print(f"\nwhere a Gaussian op's time goes, 256 x 6, best of {args.reps} repeats ('one call after a compiled step': medians)")
        print("| measurement | us per call |")
        print("| --- | --- |")
        for k, v in bench_op_cost(args.reps).items():
            print(f"| {k} | {v:.1f} |")
    if args.softmax:
        res = bench_softmax(args.reps)
        print(f"\nsoftmax head forward + backward, float32, median of {args.reps} repeats, us per step")
        print("| shape | era_torch | transcription | ratio | era_torch compiled | transcription compiled | ratio |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for shape in dict.fromkeys(k[0] for k in res):
            e, t = res[(shape, "era_torch")], res[(shape, "transcription")]
            ec, tc = res[(shape, "era_torch, compiled")], res[(shape, "transcription, compiled")]
            print(f"| {shape} | {e:.1f} | {t:.1f} | {t / e:.2f}x | {ec:.1f} | {tc:.1f} | {tc / ec:.2f}x |")


if __name__ == "__main__":
    main()
