"""The split token forward against the one-call head and against PyTorch (a command, not a test).

At N tokens x V vocabulary (default 4096 x 32000), float32 and bfloat16 logits, CPU:

- ``one-call``: era_torch.token_outputs (era_token_forward: log-probs at the chosen scale,
  entropies, the decision), under torch.no_grad;
- ``split``: era_torch.token_logprob_columns (the three columns and the entropy in one read)
  followed by era_torch.token_decide, under torch.no_grad;
- ``pytorch``: the same columns and entropy computed by PyTorch (three log_softmax calls at
  the scales 1, k, 1/k, a gather, and the entropy from the first), under torch.no_grad;
- ``split fwd+bwd`` and ``one-call fwd+bwd``: forward and backward of the selected column.

Times are the median (and minimum) of REPS runs, the variants interleaved in a new random
order every round so that they see the same machine load and no variant always follows the same
one; ratios are against the one-call forward measured in the same run.
Each memory figure is the peak RSS growth of a child process that runs one variant once, past
the inputs (the logits, and for a backward their gradient), with glibc's mmap threshold fixed so
that freed blocks leave the resident set.

With --trl: hidden states [N, H] (H = 1024) and an unembedding [V, H], forward and backward
of TRL's fused log-prob + entropy (trl.kernels.chunked_logprob.ChunkedLogProbFunction, which never
holds [N, V]) against ERA through materialised logits (the matmul, token_logprob_columns and
token_decide, as era_torch.trl.EraGRPOTrainer does until the head runs on vocabulary blocks):
time and peak extra memory beyond the inputs and the parameter gradients.

    python bindings/torch/bench_split.py [--reps 7] [--n 4096] [--v 32000] [--threads 1] [--trl] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time

import torch

import era_torch

K = 2.0


def inputs(n, v, dtype):
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(n, v, generator=g) * 2).to(dtype)
    labels = torch.randint(0, v, (n,), generator=g)
    ids = torch.arange(n) // 512
    adv = torch.randn(n, generator=g)
    return logits, labels, ids, adv


def variants(logits, labels, ids, adv):
    def one_call():
        with torch.no_grad():
            era_torch.token_outputs(logits, labels, ids, adv, k=K)

    def split():
        with torch.no_grad():
            c = era_torch.token_logprob_columns(logits, labels, k=K)
            era_torch.token_decide(c.entropy, ids, adv, c.columns, k=K)

    def pytorch():
        with torch.no_grad():
            z = logits.float()
            cols = [torch.log_softmax(c * z, -1).gather(-1, labels[:, None])[:, 0] for c in (1.0, K, 1.0 / K)]
            lp = torch.log_softmax(z, -1)
            ent = -(lp.exp() * lp).sum(-1)
            return torch.stack(cols, -1), ent

    def one_call_bwd():
        x = logits.detach().requires_grad_()
        era_torch.token_outputs(x, labels, ids, adv, k=K)[0].sum().backward()

    def split_bwd():
        x = logits.detach().requires_grad_()
        c = era_torch.token_logprob_columns(x, labels, k=K)
        era_torch.token_decide(c.entropy, ids, adv, c.columns, k=K).logprobs.sum().backward()

    return {"one-call": one_call, "split": split, "pytorch": pytorch, "one-call fwd+bwd": one_call_bwd,
            "split fwd+bwd": split_bwd}


H = 1024


def trl_inputs(n, v, dtype):
    g = torch.Generator().manual_seed(0)
    hidden = (torch.randn(n, H, generator=g) / 8).to(dtype)
    weight = (torch.randn(v, H, generator=g) / 8).to(dtype)
    labels = torch.randint(0, v, (n,), generator=g)
    ids = torch.arange(n) // 512
    adv = torch.randn(n, generator=g)
    return hidden, weight, labels, ids, adv


def trl_variants(hidden, weight, labels, ids, adv):
    from trl.kernels.chunked_logprob import ChunkedLogProbFunction

    def trl_fused():
        h = hidden.detach().requires_grad_()
        w = weight.detach().requires_grad_()
        out = ChunkedLogProbFunction.apply(h, w, None, labels, 1.0, 32768, None, 1.0, ("log_probs", "entropy"))
        out[0].sum().backward()

    def era_materialised():
        h = hidden.detach().requires_grad_()
        w = weight.detach().requires_grad_()
        logits = h @ w.T
        c = era_torch.token_logprob_columns(logits, labels, k=K, inplace_backward=True)
        era_torch.token_decide(c.entropy, ids, adv, c.columns, k=K).logprobs.sum().backward()

    return {"trl fused lp+entropy": trl_fused, "era via logits": era_materialised}


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def child(name, n, v, dtype):
    """Peak RSS growth (MiB) of one run of a variant past its inputs (and, for a backward,
    the gradient of the logits, which a training step holds anyway): the kernel's high-water
    mark is reset (/proc/self/clear_refs) once the inputs exist."""
    if name in ("trl fused lp+entropy", "era via logits"):
        data = trl_inputs(n, v, getattr(torch, dtype))
        fns = trl_variants(*data)
    else:
        data = inputs(n, v, getattr(torch, dtype))
        fns = variants(*data)
    fns[name]()  # a first run: allocator pools and lazily loaded code
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _status_kib("VmRSS")
    fns[name]()
    extra = (_status_kib("VmHWM") - base) / 1024
    if "bwd" in name:
        extra -= data[0].numel() * data[0].element_size() / 2**20
    if name in ("trl fused lp+entropy", "era via logits"):  # the parameter gradients
        extra -= (data[0].numel() + data[1].numel()) * data[0].element_size() / 2**20
    return extra


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--v", type=int, default=32000)
    ap.add_argument("--json")
    ap.add_argument("--trl", action="store_true", help="also: ERA through logits against TRL's fused head")
    ap.add_argument("--child", nargs=2, metavar=("VARIANT", "DTYPE"))
    ap.add_argument("--threads", type=int, default=0,
                    help="threads of both PyTorch and the library (0: their defaults); 1 compares per-core cost "
                         "and is steadier on a loaded machine")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
        os.environ["ERA_NUM_THREADS"] = str(a.threads)  # read by the library at its first parallel call
    if a.child:
        print(json.dumps(child(a.child[0], a.n, a.v, a.child[1])))
        return
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, N = {a.n}, V = {a.v}")
    results = {}
    groups = [("float32", variants, inputs), ("bfloat16", variants, inputs)]
    if a.trl:
        groups.append(("float32", trl_variants, trl_inputs))
    for dtype, make, make_inputs in groups:
        data = make_inputs(a.n, a.v, getattr(torch, dtype))
        fns = make(*data)
        times = {k: [] for k in fns}
        for fn in fns.values():
            fn()  # warm-up
        order = list(fns.items())
        rng = random.Random(0)
        for _ in range(a.reps):
            rng.shuffle(order)  # a new order every round: no variant always follows the same one
            for name, fn in order:
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        first = next(iter(times))
        base = statistics.median(times[first])
        base_bwd = statistics.median(times.get("one-call fwd+bwd", times[first]))
        print(f"\n{dtype}: median (min) ms, ratio to {first!r} (or to the one-call forward+backward), "
              "peak extra MiB")
        for name, ts in times.items():
            # a fixed mmap threshold: every large block is mapped on allocation and unmapped when
            # freed, so that the resident set follows the live memory
            env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
            mem = json.loads(subprocess.run(
                [sys.executable, __file__, "--n", str(a.n), "--v", str(a.v), "--threads", str(a.threads), "--child",
                 name, dtype],
                check=True, capture_output=True, text=True, env=env).stdout)
            ref = base_bwd if "bwd" in name else base
            med = statistics.median(ts)
            results[f"{dtype} {name}"] = {"median_ms": 1e3 * med, "min_ms": 1e3 * min(ts), "ratio": med / ref,
                                          "peak_extra_mib": mem}
            print(f"  {name:18s} {1e3 * med:9.1f} ({1e3 * min(ts):8.1f})  {med / ref:5.2f}x  {mem:8.1f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
