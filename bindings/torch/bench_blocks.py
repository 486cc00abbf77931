"""Peak memory and time of ERA's token head when the logits are never whole
(docs/math.md#vocabulary-blocks), forward + backward, from hidden states ``[N, H]`` and an
unembedding weight ``[V, H]`` (float32, CPU):

- ``whole``: the logits made whole (``hidden @ weight.T``), then the split forward
  (:func:`era_torch.token_logprob_columns`) and autograd's backward;
- ``fused``: :func:`era_torch.fused_token_columns` (vocabulary chunks, never ``[N, V]``);
- ``trl``: TRL's ``ChunkedLogProbFunction`` computing the log-prob and the entropy alone
  (what TRL's fused LM head does anyway; ERA's price is ``fused`` over it).

Each measurement runs in a process of its own (peak resident memory beyond the inputs,
``ru_maxrss``), the arms interleaved so that a noisy machine hurts them alike. With
``--ranks 2,4`` it runs ``fused`` with the weight split by rows across that many gloo
processes instead and reports each rank's time, peak memory and collectives.

    python bindings/torch/bench_blocks.py [--n 4096] [--h 1024] [--vocab 32000,152064]
        [--chunk 8192] [--reps 2] [--markdown] [--ranks 2,4]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def one(arm, n, h, v, chunk, warm=True):
    """One forward + backward of ``arm`` (after a small one that pays the first call's costs);
    returns seconds and the peak memory beyond the inputs (MiB)."""
    import torch

    import era_torch

    if warm:
        one(arm, 16, 8, 64, 32, warm=False)
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(n, h, generator=g).requires_grad_(True)
    weight = (0.05 * torch.randn(v, h, generator=g)).requires_grad_(True)
    labels = torch.randint(0, v, (n,), generator=g)
    base = _rss_mb()
    t0 = time.perf_counter()
    if arm == "whole":
        r = era_torch.token_logprob_columns(hidden @ weight.T, labels, temperature=0.9)
        loss = r.columns[:, 0].sum() + r.entropy.sum()
    elif arm == "fused":
        r = era_torch.fused_token_columns(hidden, weight, labels, temperature=0.9, chunk_size=chunk)
        loss = r.columns[:, 0].sum() + r.entropy.sum()
    else:
        from trl.kernels import ChunkedLogProbFunction

        lp, ent, *_ = ChunkedLogProbFunction.apply(hidden, weight, None, labels, 0.9, chunk, None, 1.0, ("entropy",))
        loss = lp.sum() + ent.sum()
    loss.backward()
    secs = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"arm": arm, "n": n, "h": h, "v": v, "chunk": chunk, "seconds": secs, "peak_mib": peak - base}


def rank_run(rank, world, port, n, h, v, chunk):
    """One rank of the sharded fused head: its time, peak memory beyond its inputs, and collectives."""
    import torch
    import torch.distributed as dist

    import era_torch

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    counts = {"all_reduce": 0, "all_gather": 0}
    for name in counts:
        f = getattr(dist, name)

        def counting(*a, _f=f, _name=name, **k):
            counts[_name] += 1
            return _f(*a, **k)

        setattr(dist, name, counting)
    g = torch.Generator().manual_seed(0)
    local = -(-v // world)
    hidden = torch.randn(n, h, generator=g).requires_grad_(True)
    weight = (0.05 * torch.randn(local, h, generator=g)).requires_grad_(True)
    labels = torch.randint(0, v, (n,), generator=g)
    base = _rss_mb()
    t0 = time.perf_counter()
    r = era_torch.fused_token_columns(hidden, weight, labels, temperature=0.9, chunk_size=chunk,
                                      group=dist.group.WORLD, vocab_size=local * world, vocab_valid=v)
    fwd = dict(counts)
    (r.columns[:, 0].sum() + r.entropy.sum()).backward()
    secs = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    bwd = {k: counts[k] - fwd[k] for k in counts}
    dist.destroy_process_group()
    return {"rank": rank, "world": world, "v": v, "seconds": secs, "peak_mib": peak - base,
            "forward_collectives": fwd, "backward_collectives": bwd}


def ranks_table(a):
    import socket

    for world in (int(x) for x in a.ranks.split(",")):
        v = int(a.vocab.split(",")[0])
        with socket.socket() as so:
            so.bind(("127.0.0.1", 0))
            port = so.getsockname()[1]
        procs = [subprocess.Popen([sys.executable, __file__, "--rank", f"{r}:{world}:{port}", "--n", str(a.n),
                                   "--h", str(a.h), "--vocab", str(v), "--chunk", str(a.chunk)],
                                  stdout=subprocess.PIPE, text=True) for r in range(world)]
        rows = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
        for r in rows:
            print(f"ranks {world} rank {r['rank']}: V={v} {r['seconds']:.2f} s, peak +{r['peak_mib']:.0f} MiB, "
                  f"collectives forward {r['forward_collectives']}, backward {r['backward_collectives']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--h", type=int, default=1024)
    ap.add_argument("--vocab", default="32000,152064")
    ap.add_argument("--chunk", type=int, default=8192)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--arms", default="whole,fused,trl")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--ranks", help="world sizes for the sharded fused head (gloo), e.g. 2,4")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--rank", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.rank:
        r, w, port = (int(x) for x in a.rank.split(":"))
        print(json.dumps(rank_run(r, w, port, a.n, a.h, int(a.vocab.split(",")[0]), a.chunk)))
        return
    if a.ranks:
        ranks_table(a)
        return
    if a.one:
        arm, v = a.one.split(":")
        print(json.dumps(one(arm, a.n, a.h, int(v), a.chunk)))
        return
    rows = []
    for v in (int(x) for x in a.vocab.split(",")):
        for _ in range(a.reps):
            for arm in a.arms.split(","):
                out = subprocess.run([sys.executable, __file__, "--one", f"{arm}:{v}", "--n", str(a.n), "--h", str(a.h),
                                      "--chunk", str(a.chunk)], capture_output=True, text=True, check=True)
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(json.dumps(rows[-1]), file=sys.stderr)
    table = {}
    for r in rows:
        key = (r["v"], r["arm"])
        best = table.get(key)
        if best is None or r["seconds"] < best["seconds"]:
            table[key] = dict(r, peak_mib=max(r["peak_mib"], best["peak_mib"] if best else 0))
    if a.markdown:
        print(f"| V | arm | time (s, best of {a.reps}) | peak memory beyond inputs (MiB) | time / trl | time / whole |")
        print("| --- | --- | --- | --- | --- | --- |")
    for (v, arm), r in sorted(table.items()):
        trl = table.get((v, "trl"))
        whole = table.get((v, "whole"))
        rt = f"{r['seconds'] / trl['seconds']:.2f}x" if trl else "-"
        rw = f"{r['seconds'] / whole['seconds']:.2f}x" if whole else "-"
        if a.markdown:
            print(f"| {v} | {arm} | {r['seconds']:.2f} | {r['peak_mib']:.0f} | {rt} | {rw} |")
        else:
            print(f"V={v:>7} {arm:>6}: {r['seconds']:7.2f} s  peak +{r['peak_mib']:7.0f} MiB  vs trl {rt}  vs whole {rw}")


if __name__ == "__main__":
    main()
