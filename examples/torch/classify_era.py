"""The ERA softmax head (era_torch.EraSoftmax) on real classification data.

Two datasets, both made or bundled locally (nothing is downloaded at run time):

- MNIST-1D (the ``mnist1d`` package, generated procedurally with its own
  ``get_dataset_args`` / ``make_dataset``; its download path is never called): 1-D
  signals of 40 samples, ten classes. Hard enough that a small 1-D conv net does not
  saturate (test accuracy well below 100%), so calibration and confidence differ between
  arms, and the training set can be made as large as needed for the test accuracy not to
  be noise.
- scikit-learn's 8x8 digits (``load_digits``, bundled with scikit-learn): 1797 images,
  tiny and near-saturated for a small 2-D conv net. It shows the head where classes are
  easy: there the entropy floor is the main thing that changes the predictions.

Arms (same seeds, schedule, budget and optimiser: Adam, cosine learning rate):

- ``ce``: cross-entropy on the network's logits.
- ``ls``: cross-entropy with label smoothing 0.1.
- ``era``: EraSoftmax(H0 = 0.6, tau = 4) after the last linear layer, active in training and
  in evaluation; the loss is cross-entropy on the head's output logits.
- ``era-h1``: the same with H0 = 1.0 (for ten classes the largest feasible H0 at tau = 4 is
  2.243, docs/math.md#softmax-validity; 1.0 is a floor about 0.4 nats higher than the
  official 0.6, still far below the uniform ln 10 = 2.30, so the effect of the floor's height
  shows without making predictions near-uniform).
- ``era-ls``: ERA (H0 = 0.6) with label smoothing 0.1.

Metrics on the test set per run: accuracy, NLL, expected calibration error (15 equal-width
bins, top-1 confidence), the entropy of the predicted distributions (mean and lowest per
example: the ERA arms' floor H0), and wall time with the head's share. The head's share is
measured with time.perf_counter around each EraSoftmax forward and, through tensor hooks on
the head's output and input, around its backward (the time between the gradient reaching
its output and leaving its input).

Commands:

  python examples/torch/classify_era.py run --dataset mnist1d --arm era --seed 0
  python examples/torch/classify_era.py compare     # datasets x arms x 5 seeds -> classify_results/
  python examples/torch/classify_era.py report      # tables (mean, 95% bootstrap) + classify_era.png
  python examples/torch/classify_era.py demo        # one seed, few epochs, small data (< 1 min)
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import sys
import time

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

import era_torch

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "classify_results")
PLOT = os.path.join(HERE, "classify_era.png")

DATASETS = ("mnist1d", "digits")
#: arm -> (H0 of the ERA head or None, label smoothing)
ARMS = {
    "ce": (None, 0.0),
    "ls": (None, 0.1),
    "era": (0.6, 0.0),
    "era-h1": (1.0, 0.0),
    "era-ls": (0.6, 0.1),
}
TAU = 4.0
SEEDS = (0, 1, 2, 3, 4)
#: Torch threads: the 2 cores of the reference machine (recorded in every run's JSON).
THREADS = 2
#: The compare's budget per dataset: data sizes and epochs. On the 2-core reference machine,
#: unloaded, a 12000-example / 12-epoch MNIST-1D run took 7-9 s (about 0.05 ms per training
#: example and epoch; the same machine under other jobs' load was 10x slower); the budget below
#: (20000 x 24 epochs) is about 25 s per run, and the whole comparison (50 runs) about 12 minutes.
#: Raise n_train/epochs for a longer one: `compare` measures one epoch per dataset first and
#: prints its projection.
COMPARE = {
    "mnist1d": dict(n_train=20000, n_test=4000, epochs=24, batch=128, lr=3e-3),
    "digits": dict(n_train=1297, n_test=500, epochs=60, batch=64, lr=3e-3),
}
DEMO = {
    "mnist1d": dict(n_train=2000, n_test=500, epochs=3, batch=128, lr=3e-3),
    "digits": dict(n_train=1297, n_test=500, epochs=3, batch=64, lr=3e-3),
}
ECE_BINS = 15


# ----------------------------------------------------------------------------- data


def load_data(name: str, n_train: int, n_test: int):
    """(x_train, y_train, x_test, y_test) as tensors; x with a channel axis."""
    if name == "mnist1d":
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()  # generated locally: make_dataset never downloads
        args.num_samples = n_train + n_test
        args.train_split = n_train / (n_train + n_test)
        args.seed = 42
        d = make_dataset(args)
        xtr, ytr, xte, yte = d["x"], d["y"], d["x_test"], d["y_test"]
        xtr, xte = xtr[:, None, :], xte[:, None, :]
    elif name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x = (d.images / 16.0)[:, None, :, :]
        perm = np.random.RandomState(0).permutation(len(d.target))
        x, y = x[perm], d.target[perm]
        n_test = min(n_test, len(y) // 3)
        n_train = min(n_train, len(y) - n_test)
        xtr, ytr, xte, yte = x[:n_train], y[:n_train], x[-n_test:], y[-n_test:]
    else:
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")
    t = lambda a, dt: torch.as_tensor(np.ascontiguousarray(a), dtype=dt)  # noqa: E731
    return t(xtr, torch.float32), t(ytr, torch.long), t(xte, torch.float32), t(yte, torch.long)


# ----------------------------------------------------------------------------- model


class TimedHead(nn.Module):
    """EraSoftmax with perf_counter timing of its forward and (through hooks) backward."""

    def __init__(self, h0: float, tau: float = TAU):
        super().__init__()
        self.head = era_torch.EraSoftmax(h0, tau=tau)
        self.seconds = 0.0
        self._t_back = None

    def forward(self, z):
        t0 = time.perf_counter()
        out = self.head(z)
        self.seconds += time.perf_counter() - t0
        if out.requires_grad and z.requires_grad:
            out.register_hook(self._start)
            z.register_hook(self._stop)
        return out

    def _start(self, g):
        self._t_back = time.perf_counter()

    def _stop(self, g):
        if self._t_back is not None:
            self.seconds += time.perf_counter() - self._t_back
            self._t_back = None


def make_model(dataset: str, h0):
    if dataset == "mnist1d":
        body = [
            nn.Conv1d(1, 32, 5, padding=2), nn.ReLU(),
            nn.Conv1d(32, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(32, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(32 * 10, 10),
        ]
    else:
        body = [
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(32 * 4 * 4, 10),
        ]
    if h0 is not None:
        body.append(TimedHead(h0))
    return nn.Sequential(*body)


def head_of(model):
    last = model[-1]
    return last if isinstance(last, TimedHead) else None


# ----------------------------------------------------------------------------- metrics


def ece(probs: torch.Tensor, y: torch.Tensor, bins: int = ECE_BINS) -> float:
    """Expected calibration error, top-1, ``bins`` equal-width bins over (0, 1]
    (a confidence c falls in bin ceil(c*bins) - 1; c = 0 in the first)."""
    conf, pred = probs.max(dim=1)
    correct = (pred == y).double()
    conf = conf.double()
    idx = (torch.ceil(conf * bins) - 1).clamp(0, bins - 1).long()
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.double().mean().item() * abs(correct[m].mean().item() - conf[m].mean().item())
    return total


def metrics(logits: torch.Tensor, y: torch.Tensor) -> dict:
    """Accuracy, NLL, ECE and prediction entropies of the (head's) logits."""
    logits = logits.double()
    logp = F.log_softmax(logits, dim=1)
    p = logp.exp()
    ent = -(p * logp).sum(dim=1)
    return {
        "accuracy": (logits.argmax(1) == y).double().mean().item(),
        "nll": F.nll_loss(logp, y).item(),
        "ece": ece(p, y),
        "entropy_mean": ent.mean().item(),
        "entropy_min": ent.min().item(),
    }


@torch.no_grad()
def predict(model, x, batch=1024):
    model.eval()
    out = torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])
    model.train()
    return out


# ----------------------------------------------------------------------------- run


def run(dataset: str, arm: str, seed: int, cfg: dict, data=None, threads: int = THREADS) -> dict:
    """Trains one network and returns its JSON-ready record."""
    torch.set_num_threads(threads)
    h0, smoothing = ARMS[arm]
    if data is None:
        data = load_data(dataset, cfg["n_train"], cfg["n_test"])
    xtr, ytr, xte, yte = data
    torch.manual_seed(seed)
    model = make_model(dataset, h0)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    steps_per_epoch = math.ceil(len(ytr) / cfg["batch"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg["epochs"] * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    t0 = time.perf_counter()
    for _ in range(cfg["epochs"]):
        perm = torch.randperm(len(ytr), generator=gen)
        for i in range(0, len(ytr), cfg["batch"]):
            j = perm[i:i + cfg["batch"]]
            loss = F.cross_entropy(model(xtr[j]), ytr[j], label_smoothing=smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
    train_s = time.perf_counter() - t0
    head = head_of(model)
    head_train_s = head.seconds if head else 0.0
    m = metrics(predict(model, xte), yte)
    wall_s = time.perf_counter() - t0
    head_s = head.seconds if head else 0.0
    return {
        "dataset": dataset, "arm": arm, "seed": seed, "h0": h0, "tau": TAU if h0 else None,
        "label_smoothing": smoothing, "config": cfg, "threads": threads,
        "n_train": len(ytr), "n_test": len(yte), "torch": torch.__version__,
        "final_train_loss": float(np.mean(losses[-steps_per_epoch:])),
        "losses_finite": bool(np.all(np.isfinite(losses))),
        "metrics": m,
        "wall_s": wall_s, "train_s": train_s, "head_s": head_s, "head_train_s": head_train_s,
        "head_share": head_s / wall_s if wall_s > 0 else 0.0,
        "head_timing": "perf_counter around EraSoftmax forward; backward via hooks on its output and input",
    }


def result_path(out, dataset, arm, seed):
    return os.path.join(out, f"{dataset}_{arm}_s{seed}.json")


def compare(out: str, plan: dict, seeds=SEEDS, datasets=DATASETS, arms=tuple(ARMS),
            threads: int = THREADS, force: bool = False, verbose: bool = True) -> list:
    """Every dataset x arm x seed; one JSON per run under ``out`` (existing ones kept unless
    ``force``). Prints the projection from the runs measured so far."""
    os.makedirs(out, exist_ok=True)
    total = len(datasets) * len(arms) * len(seeds)
    done, paths, t_start = 0, [], time.perf_counter()
    for ds in datasets:
        cfg = plan[ds]
        data = load_data(ds, cfg["n_train"], cfg["n_test"])
        for seed in seeds:
            for arm in arms:
                path = result_path(out, ds, arm, seed)
                paths.append(path)
                done += 1
                if os.path.exists(path) and not force:
                    continue
                rec = run(ds, arm, seed, cfg, data=data, threads=threads)
                with open(path, "w") as f:
                    json.dump(rec, f, indent=1)
                if verbose:
                    el = time.perf_counter() - t_start
                    print(f"[{done}/{total}] {ds} {arm} s{seed}: acc {rec['metrics']['accuracy']:.4f} "
                          f"min H {rec['metrics']['entropy_min']:.3f} {rec['wall_s']:.1f} s "
                          f"(elapsed {el / 60:.1f} min)", flush=True)
    return paths


def projection(plan: dict, seeds=SEEDS, arms=tuple(ARMS), threads: int = THREADS) -> float:
    """Seconds the compare would take, from one measured epoch of the ``era`` arm per dataset."""
    total = 0.0
    for ds, cfg in plan.items():
        one = dict(cfg, epochs=1)
        data = load_data(ds, cfg["n_train"], cfg["n_test"])
        t0 = time.perf_counter()
        run(ds, "era", 0, one, data=data, threads=threads)
        per_run = (time.perf_counter() - t0) * cfg["epochs"]
        print(f"{ds}: one epoch {per_run / cfg['epochs']:.2f} s -> about {per_run:.0f} s per run", flush=True)
        total += per_run * len(seeds) * len(arms)
    return total


# ----------------------------------------------------------------------------- report

METRICS = ("accuracy", "nll", "ece", "entropy_mean", "entropy_min", "wall_s", "head_share")


def bootstrap(values, n=2000, seed=0):
    """Mean and 95% percentile-bootstrap interval of the mean over ``values``."""
    v = np.asarray(values, dtype=float)
    if len(v) == 1:
        return float(v[0]), float(v[0]), float(v[0])
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(n, len(v)))].mean(axis=1)
    return float(v.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def load_runs(out: str) -> list:
    runs = []
    for p in sorted(glob.glob(os.path.join(out, "*.json"))):
        with open(p) as f:
            runs.append(json.load(f))
    return runs


def summarise(runs: list) -> dict:
    """{dataset: {arm: {metric: (mean, lo, hi), "seeds": n}}}"""
    table = {}
    for r in runs:
        table.setdefault(r["dataset"], {}).setdefault(r["arm"], []).append(r)
    out = {}
    for ds, arms in table.items():
        out[ds] = {}
        for arm in [a for a in ARMS if a in arms]:
            rs = arms[arm]
            row = {"seeds": len(rs)}
            for k in METRICS:
                row[k] = bootstrap([x["metrics"][k] if k in x["metrics"] else x[k] for x in rs])
            out[ds][arm] = row
    return out


def markdown(summary: dict) -> str:
    lines = []
    for ds, arms in summary.items():
        lines += [f"### {ds}", "",
                  "| arm | seeds | " + " | ".join(METRICS) + " |",
                  "|---|---|" + "---|" * len(METRICS)]
        for arm, row in arms.items():
            cells = [f"{row[k][0]:.4f} [{row[k][1]:.4f}, {row[k][2]:.4f}]" for k in METRICS]
            lines.append(f"| {arm} | {row['seeds']} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(summary: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("accuracy", "test accuracy"), ("ece", "ECE (15 bins)"), ("entropy_min", "lowest entropy (nats)"))
    fig, axes = plt.subplots(len(summary), len(panels), figsize=(4 * len(panels), 3 * len(summary)), squeeze=False)
    for i, (ds, arms) in enumerate(summary.items()):
        names = list(arms)
        for j, (k, label) in enumerate(panels):
            ax = axes[i][j]
            mean = np.array([arms[a][k][0] for a in names])
            err = np.array([[arms[a][k][0] - arms[a][k][1] for a in names],
                            [arms[a][k][2] - arms[a][k][0] for a in names]])
            ax.bar(range(len(names)), mean, yerr=err, capsize=3, color="C0")
            if k == "entropy_min":
                for x, a in enumerate(names):
                    if ARMS[a][0] is not None:
                        ax.hlines(ARMS[a][0], x - 0.4, x + 0.4, colors="C3")
            if k == "accuracy":
                lo = float((mean - err[0]).min())
                ax.set_ylim(max(0.0, lo - 0.05), min(1.0, float((mean + err[1]).max()) + 0.02))
            ax.set_xticks(range(len(names)), names, rotation=30)
            ax.set_title(f"{ds}: {label}")
    fig.suptitle("mean and 95% bootstrap interval over seeds; red: the ERA arms' H0")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def report(out: str, png: str) -> str:
    runs = load_runs(out)
    if not runs:
        raise SystemExit(f"no run JSONs under {out}")
    summary = summarise(runs)
    text = markdown(summary)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(text)
    plot(summary, png)
    return text


# ----------------------------------------------------------------------------- CLI


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="one dataset/arm/seed -> JSON on stdout (or --out)")
    r.add_argument("--dataset", choices=DATASETS, default="mnist1d")
    r.add_argument("--arm", choices=tuple(ARMS), default="era")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--epochs", type=int)
    r.add_argument("--out")
    c = sub.add_parser("compare", help="datasets x arms x 5 seeds -> classify_results/")
    c.add_argument("--out", default=RESULTS)
    c.add_argument("--force", action="store_true")
    c.add_argument("--no-projection", action="store_true")
    p = sub.add_parser("report", help="tables and plot from the run JSONs")
    p.add_argument("--out", default=RESULTS)
    p.add_argument("--png", default=PLOT)
    d = sub.add_parser("demo", help="one seed, few epochs, all arms, small data")
    for s in (r, c, d):
        s.add_argument("--threads", type=int, default=THREADS)
    a = ap.parse_args(argv)

    if a.cmd == "run":
        cfg = dict(COMPARE[a.dataset])
        if a.epochs:
            cfg["epochs"] = a.epochs
        rec = run(a.dataset, a.arm, a.seed, cfg, threads=a.threads)
        text = json.dumps(rec, indent=1)
        if a.out:
            with open(a.out, "w") as f:
                f.write(text)
        print(text)
    elif a.cmd == "compare":
        if not a.no_projection:
            proj = projection(COMPARE, threads=a.threads)
            print(f"projected compare time: {proj / 60:.1f} min", flush=True)
        compare(a.out, COMPARE, threads=a.threads, force=a.force)
    elif a.cmd == "report":
        print(report(a.out, a.png))
        print(f"plot: {a.png}")
    elif a.cmd == "demo":
        t0 = time.perf_counter()
        for ds in DATASETS:
            cfg = DEMO[ds]
            data = load_data(ds, cfg["n_train"], cfg["n_test"])
            for arm in ARMS:
                m = run(ds, arm, 0, cfg, data=data, threads=a.threads)
                mm = m["metrics"]
                print(f"{ds:8s} {arm:7s} acc {mm['accuracy']:.4f} nll {mm['nll']:.4f} ece {mm['ece']:.4f} "
                      f"H mean {mm['entropy_mean']:.3f} min {mm['entropy_min']:.3f} "
                      f"wall {m['wall_s']:.2f} s head {100 * m['head_share']:.1f}%", flush=True)
        print(f"demo: {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
