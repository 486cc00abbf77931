#!/usr/bin/env python3
"""GRPO with and without the ERA token head, on CPU, on a synthetic task with a verifier.

A small decoder-only transformer learns fixed-width addition ("123+458=" -> "0581") by
supervised pretraining (SFT), then is trained by GRPO with a 0/1 verifier reward in three
arms that differ only in the policy-gradient loss:

  grpo          -(A * log pi(y)) averaged over completion tokens;
  grpo-entropy  the same minus ENTROPY_COEF times the mean token entropy;
  grpo-era      -(A' * log pi'(y)) with (log pi', A') from era_torch.token_logprobs
                (docs/math.md#token-head; the loss of bindings/torch/README.md).

  python grpo_era.py demo                        # 1 seed, 3 arms, short: a small table
  python grpo_era.py run --arm grpo-era --seed 0 # one run (CSV + JSON in --out)
  python grpo_era.py compare                     # every arm x seed, then `report`
  python grpo_era.py report                      # RESULTS.md and grpo_era.png in --out

The helpers (task, model, sampling, pass@k) live in grpo_core.py.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace

import era_torch
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grpo_core as core  # noqa: E402

ARMS = ("grpo", "grpo-entropy", "grpo-era")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENTROPY_COEF = 0.005  # grpo-entropy's bonus: one value in the usual 0.001-0.01 range, not tuned
# The official ERA token-head settings (ICLR 2026 recipe; the library's defaults, docs/math.md#token-head)
ERA = dict(k=2.0, omega_low=0.45, omega_high=3.0, top_fraction=0.2, temperature=1.0, advantage_scaling=True,
           vocab_topk=0)
FORK_FRACTION = 0.2  # "forking" tokens: the top 20% highest-entropy tokens of each completion


@dataclass(frozen=True)
class Config:
    width: int = 3  # digits per operand; the answer has width + 1 digits
    layers: int = 2
    d_model: int = 64
    heads: int = 4
    sft_steps: int = 1500  # at most; SFT stops once the model reaches sft_target
    sft_target: float = 0.3  # temperature-1 accuracy on fresh training problems that ends SFT
    sft_batch: int = 64
    sft_lr: float = 3e-3
    steps: int = 12000  # GRPO steps (the default compare: about 75 min, README.md "Sizes")
    prompts: int = 16  # P prompts per step
    group: int = 8  # G completions per prompt
    lr: float = 1e-4
    grad_clip: float = 1.0
    eval_every: int = 250
    eval_problems: int = 200
    eval_samples: int = 16  # n samples per held-out problem, for the unbiased pass@1 and pass@k
    pass_k: int = 8


DEMO = Config(steps=150, eval_every=50, eval_problems=100)


# ------------------------------------------------------------------------------ the loss


def policy_terms(arm: str, logits: torch.Tensor, labels: torch.Tensor, adv: torch.Tensor) -> dict:
    """The arm's loss on completion logits ``[B, L, V]`` (labels ``[B, L]``, one advantage per
    completion ``[B]``), with the per-token log-probs, entropies, scales and advantages it used."""
    B, L, V = logits.shape
    adv_tok = adv.to(torch.float32).repeat_interleave(L)  # each token carries its response's advantage
    if arm == "grpo-era":
        ids = torch.arange(B).repeat_interleave(L)  # response id = index of the completion in the batch
        logp, ent, scale, adv_used = era_torch.token_logprobs(logits.reshape(B * L, V), labels.reshape(-1), ids,
                                                              adv_tok, **ERA)
        # The recipe's policy gradient: the scaled advantages times the log-probs at the scaled
        # logits (docs/math.md#token-head; bindings/torch/README.md, "Token head (GRPO)").
        loss = -(adv_used * logp).mean()
    else:
        logp_all = torch.log_softmax(logits.float(), -1)
        logp = logp_all.gather(-1, labels.unsqueeze(-1)).reshape(-1)
        ent_d = -(logp_all.exp() * logp_all).sum(-1).reshape(-1)
        loss = -(adv_tok * logp).mean()
        if arm == "grpo-entropy":
            loss = loss - ENTROPY_COEF * ent_d.mean()
        elif arm != "grpo":
            raise ValueError(f"unknown arm {arm!r} (one of {', '.join(ARMS)})")
        ent, scale, adv_used = ent_d.detach(), torch.ones_like(adv_tok), adv_tok
    r = lambda t: t.reshape(B, L)  # noqa: E731
    return dict(loss=loss, logp=r(logp), entropy=r(ent.detach()), scale=r(scale), adv=r(adv_used))


def group_advantages(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """GRPO's advantages: ``(r - mean) / (std + eps)`` within each group (rows of ``[P, G]``;
    sample std, as torch.std); a group whose rewards are all equal gets zeros."""
    return ((rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + eps)).reshape(-1)


# ------------------------------------------------------------------------------ phases


def sft_model(cfg: Config, seed: int, out: str, log=print) -> torch.nn.Module:
    """Phase 1: supervised pretraining, cached per seed and configuration under ``out/sft``."""
    keys = ("width", "layers", "d_model", "heads", "sft_steps", "sft_target", "sft_batch", "sft_lr")
    tag = hashlib.sha1(json.dumps({k: getattr(cfg, k) for k in keys}).encode()).hexdigest()[:10]
    path = os.path.join(out, "sft", f"seed{seed}_{tag}.pt")
    torch.manual_seed(seed)  # the initialisation
    model = core.TinyGPT(cfg.width, cfg.layers, cfg.d_model, cfg.heads)
    if os.path.exists(path):
        model.load_state_dict(torch.load(path))
        return model
    t0 = time.time()
    rng, gen = np.random.default_rng([seed, 0]), torch.Generator().manual_seed(seed)
    steps, acc = core.supervised(model, cfg.width, cfg.sft_steps, cfg.sft_batch, cfg.sft_lr, rng, cfg.sft_target,
                                 gen=gen)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)  # atomic: parallel workers never read half a file
    log(f"  SFT seed {seed}: {steps} steps in {time.time() - t0:.1f} s, sampled accuracy {acc:.2f} -> {path}")
    return model


def evaluate(model, cfg: Config, seed: int, step: int) -> dict:
    """Held-out pass@1 and pass@k (unbiased, from n = eval_samples temperature-1 samples per
    problem) and greedy accuracy, on the fixed held-out set."""
    a, b = core.test_set(cfg.width, cfg.eval_problems)
    gen = torch.Generator().manual_seed(1_000_003 * seed + step + 7)  # independent of the training stream
    n = cfg.eval_samples
    comp = core.generate(model, core.encode(np.repeat(a, n), np.repeat(b, n), cfg.width), cfg.width + 1, gen)
    c = core.verify(comp, np.repeat(a, n), np.repeat(b, n)).reshape(-1, n).sum(1)
    greedy = core.generate(model, core.encode(a, b, cfg.width), cfg.width + 1, gen, greedy=True)
    return dict(pass1=float(np.mean([core.pass_at_k(n, int(x), 1) for x in c])),
                passk=float(np.mean([core.pass_at_k(n, int(x), cfg.pass_k) for x in c])),
                greedy=float(core.verify(greedy, a, b).mean()))


FIELDS = ("step", "wall_s", "train_reward", "entropy", "fork_entropy", "frac_scaled", "loss", "pass1", "passk",
          "greedy")


def run(cfg: Config, arm: str, seed: int, out: str, log=print) -> dict:
    """Phase 2: GRPO of one arm from the seed's SFT model; writes ``out/{arm}_seed{seed}.csv``."""
    model = sft_model(cfg, seed, out, log)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    rng = np.random.default_rng([seed, 1])  # prompts: the same stream in every arm
    gen = torch.Generator().manual_seed(seed)  # sampling
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"{arm}_seed{seed}.csv")
    rows, t0, W, P, G = [], time.time(), cfg.width, cfg.prompts, cfg.group
    for step in range(cfg.steps + 1):
        row = dict.fromkeys(FIELDS, "")
        if step % cfg.eval_every == 0 or step == cfg.steps:
            model.eval()
            ev = evaluate(model, cfg, seed, step)
            row.update(pass1=ev["pass1"], passk=ev["passk"], greedy=ev["greedy"])
        if step < cfg.steps:
            model.train()
            a, b = core.sample_train(rng, P, W)
            a, b = np.repeat(a, G), np.repeat(b, G)
            prompts = core.encode(a, b, W)
            comp = core.generate(model, prompts, W + 1, gen)
            reward = torch.as_tensor(core.verify(comp, a, b), dtype=torch.float32)
            adv = group_advantages(reward.reshape(P, G))
            logits = model(torch.cat([prompts, comp], 1)[:, :-1])[:, prompts.shape[1] - 1:]
            t = policy_terms(arm, logits, comp, adv)
            opt.zero_grad(set_to_none=True)
            t["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            row.update(train_reward=float(reward.mean()), entropy=float(t["entropy"].mean()),
                       fork_entropy=float(core.top_fraction_mean(t["entropy"], FORK_FRACTION).mean()),
                       frac_scaled=float((t["scale"] != 1).float().mean()), loss=float(t["loss"].detach()))
        row.update(step=step, wall_s=round(time.time() - t0, 3))
        rows.append(row)
        if row["pass1"] != "":
            log(f"  {arm:12s} seed {seed} step {step:4d}  reward {_f(row['train_reward'])}  "
                f"H {_f(row['entropy'])}  H_fork {_f(row['fork_entropy'])}  pass@1 {row['pass1']:.3f}  "
                f"pass@{cfg.pass_k} {row['passk']:.3f}  ({row['wall_s']:.0f} s)")
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        w.writeheader()
        w.writerows({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    summary = dict(arm=arm, seed=seed, config=asdict(cfg), era=ERA, entropy_coef=ENTROPY_COEF,
                   wall_s=time.time() - t0, threads=torch.get_num_threads(), csv=os.path.basename(path))
    with open(path[:-4] + ".json", "w") as f:
        json.dump(summary, f, indent=1)
    return summary


def _f(x):
    return f"{x:.3f}" if x != "" else "  -  "


# ------------------------------------------------------------------------------ report


def load_runs(out: str) -> dict:
    """``{arm: {seed: rows}}`` from the CSVs in ``out`` (numbers as floats, blanks as NaN)."""
    runs = {}
    for name in sorted(os.listdir(out)):
        if not name.endswith(".csv") or "_seed" not in name:
            continue
        arm, seed = name[:-4].rsplit("_seed", 1)
        with open(os.path.join(out, name)) as f:
            rows = [{k: float(v) if v != "" else float("nan") for k, v in r.items()} for r in csv.DictReader(f)]
        runs.setdefault(arm, {})[int(seed)] = rows
    return runs


def bootstrap_ci(x, n: int = 10000, seed: int = 0):
    """95% percentile bootstrap interval of the mean over seeds."""
    x = np.asarray(x, float)
    if len(x) < 2:
        return float(x.mean()), float(x.mean())
    m = np.random.default_rng(seed).choice(x, (n, len(x))).mean(1)
    return float(np.percentile(m, 2.5)), float(np.percentile(m, 97.5))


def final_metrics(rows: list) -> dict:
    """The end of one run: train reward and entropies averaged over the last 10% of steps, the
    last evaluation's pass@1 / pass@k / greedy, the first evaluation (the SFT model), wall time."""
    steps = [r for r in rows if not np.isnan(r["train_reward"])]
    tail = steps[-max(1, len(steps) // 10):]
    evals = [r for r in rows if not np.isnan(r["pass1"])]
    m = {k: float(np.mean([r[k] for r in tail])) for k in ("train_reward", "entropy", "fork_entropy", "frac_scaled")}
    m.update({k: evals[-1][k] for k in ("pass1", "passk", "greedy")})
    m.update(sft_pass1=evals[0]["pass1"], sft_passk=evals[0]["passk"], wall_min=rows[-1]["wall_s"] / 60)
    return m


def report(out: str, plot: bool = True) -> str:
    """The table of the runs in ``out`` (also written to ``out/RESULTS.md``) and the plot."""
    runs = load_runs(out)
    if not runs:
        raise SystemExit(f"no runs in {out}")
    arm, seed = next((a, s) for a in runs for s in runs[a])
    with open(os.path.join(out, f"{arm}_seed{seed}.json")) as f:
        cfg = json.load(f)["config"]
    k, n = cfg["pass_k"], cfg["eval_samples"]
    cols = [("train_reward", "final train reward"), ("pass1", "pass@1"), ("passk", f"pass@{k}"),
            ("greedy", "greedy acc."), ("entropy", "entropy (nats)"), ("fork_entropy", "forking entropy"),
            ("frac_scaled", "tokens rescaled by ERA"), ("wall_min", "GRPO wall min / run")]
    lines = ["| arm | seeds | " + " | ".join(c[1] for c in cols) + " |", "|" + " --- |" * (len(cols) + 2)]
    finals = {}
    for arm in [a for a in ARMS if a in runs] + [a for a in runs if a not in ARMS]:
        fm = [final_metrics(rows) for rows in runs[arm].values()]
        finals[arm] = fm
        cells = []
        for key, _ in cols:
            x = [m[key] for m in fm]
            lo, hi = bootstrap_ci(x)
            cells.append(f"{np.mean(x):.3f} [{lo:.3f}, {hi:.3f}]" if len(x) > 1 else f"{np.mean(x):.3f}")
        lines.append(f"| {arm} | {len(fm)} | " + " | ".join(cells) + " |")
    sft = [m for fm in finals.values() for m in fm]
    text = "\n".join(lines) + (
        f"\n\nStart (the SFT models, step 0): pass@1 {np.mean([m['sft_pass1'] for m in sft]):.3f}, "
        f"pass@{k} {np.mean([m['sft_passk'] for m in sft]):.3f}. Mean over seeds with a 95% bootstrap interval "
        "over seeds in brackets. Reward and entropies: mean over the last 10% of GRPO steps; pass@1 and "
        f"pass@{k}: unbiased estimates from {n} temperature-1 samples on each of {cfg['eval_problems']} held-out "
        f"problems, at the last step; greedy acc.: the same problems decoded greedily. {cfg['steps']} GRPO steps "
        f"of {cfg['prompts']} prompts x {cfg['group']} completions per run.\n")
    with open(os.path.join(out, "RESULTS.md"), "w") as f:
        f.write("# GRPO vs GRPO-ERA: results\n\n" + text)
    if plot:
        plot_runs(runs, os.path.join(out, "grpo_era.png"), k)
    return text


def plot_runs(runs: dict, path: str, k: int = 8):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("entropy", "mean token entropy (nats)"), ("fork_entropy", "forking-token entropy (top 20%)"),
              ("pass1", "held-out pass@1"), ("passk", f"held-out pass@{k}")]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    for ax, (key, title) in zip(axes.ravel(), panels):
        for arm in [a for a in ARMS if a in runs] + [a for a in runs if a not in ARMS]:
            seeds, curves = runs[arm], []
            for rows in seeds.values():
                pts = [(r["step"], r[key]) for r in rows if not np.isnan(r[key])]
                curves.append(np.array(pts))
            n = min(len(c) for c in curves)
            x = curves[0][:n, 0]
            y = np.stack([c[:n, 1] for c in curves])
            if key in ("entropy", "fork_entropy"):  # trailing mean over 2% of the run
                w = max(1, n // 50)
                c = np.cumsum(np.pad(y, ((0, 0), (1, 0))), 1)
                lo = np.maximum(np.arange(1, n + 1) - w, 0)
                y = (c[:, 1:] - c[:, lo]) / (np.arange(1, n + 1) - lo)
            (line,) = ax.plot(x, y.mean(0), label=arm)
            ax.fill_between(x, y.min(0), y.max(0), color=line.get_color(), alpha=0.2)
        ax.set_title(title)
        ax.set_xlabel("GRPO step")
        ax.grid(alpha=0.3)
    axes[0, 0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------ commands

# Seconds per GRPO step, per evaluation and per SFT step of one process with one thread, measured
# on the 2-core development machine while other jobs kept it busy (README.md, "Sizes"); rounded up.
COST = dict(grpo_step=0.07, eval=1.2, sft_step=0.02)


def estimate_s(cfg: Config, n_arms: int, n_seeds: int, jobs: int, cost=COST) -> float:
    """Wall seconds of `compare`, assuming ``jobs`` processes run at full speed side by side."""
    per_run = cfg.steps * cost["grpo_step"] + (cfg.steps // cfg.eval_every + 2) * cost["eval"]
    waves = -(-n_arms * n_seeds // max(1, jobs))
    return -(-n_seeds // max(1, jobs)) * cfg.sft_steps * cost["sft_step"] + waves * per_run


def _overrides(cfg: Config) -> list:
    base = Config()
    return [x for k, v in asdict(cfg).items() if v != getattr(base, k) for x in ("--set", f"{k}={v}")]


def cmd_compare(args, cfg: Config):
    arms, seeds, jobs = args.arms, args.seeds, args.jobs
    est = estimate_s(cfg, len(arms), len(seeds), jobs)
    print(f"compare: {len(arms)} arms x {len(seeds)} seeds, SFT {cfg.sft_steps} steps, {cfg.steps} GRPO steps "
          f"per run, {jobs} job(s) of one thread, into {args.out}\n"
          f"compare: estimated {est / 60:.0f} min (from per-step costs measured on a busy 2-core machine; "
          "an idle one may be up to twice as fast)", flush=True)
    t0 = time.time()
    todo = [(a, s) for s in seeds for a in arms if args.fresh or not _done(cfg, a, s, args.out)]
    if len(todo) < len(arms) * len(seeds):
        print(f"compare: {len(arms) * len(seeds) - len(todo)} run(s) already in {args.out} (--fresh to redo)")
    if jobs <= 1:
        for arm, seed in todo:
            run(cfg, arm, seed, args.out)
            print(f"  done {arm} seed {seed}: {(time.time() - t0) / 60:.1f} min elapsed", flush=True)
    else:  # parallel workers, one thread each; SFT first so that no two workers train the same model
        base = [sys.executable, os.path.abspath(__file__)]
        opts = ["--out", args.out, "--threads", "1"] + _overrides(cfg)
        _pool([base + ["sft", "--seed", str(s)] + opts for s in sorted({s for _, s in todo})], jobs)
        _pool([base + ["run", "--arm", a, "--seed", str(s)] + opts for a, s in todo], jobs)
    print(f"compare: {(time.time() - t0) / 60:.1f} min")
    print(report(args.out))


def _done(cfg: Config, arm: str, seed: int, out: str) -> bool:
    path = os.path.join(out, f"{arm}_seed{seed}.json")
    if not os.path.exists(path):
        return False
    with open(path) as f:
        return json.load(f).get("config") == asdict(cfg)


def _pool(cmds: list, jobs: int):
    """Run the commands, ``jobs`` at a time; stop at the first failure."""
    live, queue = [], list(cmds)
    while queue or live:
        while queue and len(live) < jobs:
            live.append(subprocess.Popen(queue.pop(0)))
        time.sleep(0.5)
        for p in [p for p in live if p.poll() is not None]:
            live.remove(p)
            if p.returncode:
                for q in live:
                    q.terminate()
                raise SystemExit(f"failed ({p.returncode}): {' '.join(p.args)}")


def cmd_demo(args, cfg: Config):
    t0 = time.time()
    print(f"demo: SFT (at most {cfg.sft_steps} steps, until sampled accuracy {cfg.sft_target}), then {cfg.steps} "
          f"GRPO steps ({cfg.prompts} prompts x {cfg.group}) per arm, seed {args.seeds[0]}, into {args.out}")
    for arm in ARMS:
        run(cfg, arm, args.seeds[0], args.out)
    print(report(args.out, plot=not args.no_plot))
    print(f"demo: {time.time() - t0:.0f} s")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=("demo", "run", "sft", "compare", "report"))
    p.add_argument("--out", help="run directory (default: runs/grpo_era, runs/grpo_era_demo for demo)")
    p.add_argument("--arm", choices=ARMS, default="grpo-era")
    p.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", default=None)
    p.add_argument("--steps", type=int, help="GRPO steps per run")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a Config field, e.g. --set prompts=32 (repeatable)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (1: see README.md)")
    p.add_argument("--jobs", type=int, default=2, help="compare: runs side by side, one thread each")
    p.add_argument("--fresh", action="store_true", help="compare: redo runs already in --out")
    p.add_argument("--no-plot", action="store_true")
    args = p.parse_args(argv)
    demo = args.command == "demo"
    cfg = DEMO if demo else Config()
    over = dict(kv.split("=", 1) for kv in args.set)
    bad = set(over) - set(asdict(cfg))
    if bad:
        p.error(f"unknown Config field(s) {sorted(bad)}; fields: {', '.join(asdict(cfg))}")
    cfg = replace(cfg, **{k: type(getattr(cfg, k))(v) for k, v in over.items()})
    if args.steps is not None:
        cfg = replace(cfg, steps=args.steps)
    args.out = args.out or os.path.join(ROOT, "runs", "grpo_era_demo" if demo else "grpo_era")
    args.seeds = args.seeds or ([0] if demo else [0, 1, 2])
    torch.set_num_threads(args.threads)
    if args.command == "run":
        run(cfg, args.arm, args.seed, args.out)
    elif args.command == "sft":
        sft_model(cfg, args.seed, args.out)
    elif args.command == "compare":
        cmd_compare(args, cfg)
    elif args.command == "demo":
        cmd_demo(args, cfg)
    else:
        print(report(args.out, plot=not args.no_plot))


if __name__ == "__main__":
    main()
