"""One rank of test_token_blocks.py's tensor-parallel check (run as a process of its own):
``gloo_worker.py RANK WORLD PORT PADDED_V TOPK OUT_DIR``. The rank holds its slice of a
vocabulary padded to PADDED_V (as Megatron pads it), computes
era_torch.sharded_token_logprob_columns and fused_token_columns(group=) with the
collectives counted, and saves what the parent compares into OUT_DIR/RANK.pt."""

import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import era_torch  # noqa: E402
from test_token_blocks import H, V, _case  # noqa: E402


def main(rank, world, port, padded_v, topk, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        counts = {"all_reduce": 0, "all_gather": 0}
        originals = {name: getattr(dist, name) for name in counts}

        def counting(name):
            def call(*a, **k):
                counts[name] += 1
                return originals[name](*a, **k)

            return call

        hidden, weight, _, labels, gc, ge = _case(torch.float64, 7)
        local = padded_v // world
        wpad = torch.cat([weight, torch.zeros(padded_v - V, H, dtype=torch.float64)])
        rows = slice(rank * local, (rank + 1) * local)
        z = (hidden @ wpad.T)[:, rows].clone().requires_grad_(True)
        for name in counts:
            setattr(dist, name, counting(name))
        s = era_torch.sharded_token_logprob_columns(z, labels, group=dist.group.WORLD, vocab_valid=V, vocab_topk=topk)
        forward_counts = dict(counts)
        (gz,) = torch.autograd.grad((s.columns * gc).sum() + (s.entropy * ge).sum(), z)
        backward_counts = {k: counts[k] - forward_counts[k] for k in counts}
        for name, f in originals.items():
            setattr(dist, name, f)
        hs = hidden.clone().requires_grad_(True)
        ws = wpad[rows].clone().requires_grad_(True)
        f = era_torch.fused_token_columns(hs, ws, labels, group=dist.group.WORLD, vocab_valid=V, vocab_topk=topk,
                                          chunk_size=5)
        ((f.columns * gc).sum() + (f.entropy * ge).sum()).backward()
        result = (rank, s.columns, s.entropy, gz, forward_counts, backward_counts, f.columns, hs.grad, ws.grad)
        torch.save(result, os.path.join(out_dir, f"{rank}.pt"))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    r, w, p, v, k = (int(a) for a in sys.argv[1:6])
    main(r, w, p, v, k, sys.argv[6])
