#!/usr/bin/env python3
"""Summarise the CSV logs of the MPC sampling-planner example.

The C++ example (``cem`` / ``mppi`` planners on dm_control tasks) writes, per
output directory, ``episodes.csv`` (one row per episode) and ``steps.csv``
(one row per control step).  Each planner keeps its sampling distribution
alive either with a per-coordinate std floor (variant ``floor``) or with the
ERA Gaussian head (variants ``era`` and ``era-min``); ``setting`` is the
variant's numeric knob.

Usage::

    analyze.py DIR [DIR ...] --out OUTDIR

Several directories are concatenated.  Episodes are grouped by
(task, planner, variant, setting); for each group the script reports the mean
return with a 95% percentile bootstrap interval (10,000 resamples over
episodes, fixed seed, so reruns give identical numbers), mean entropies,
planning time and the share of it spent in ERA.  It then picks, for every
(task, planner), the best setting of each variant by mean return and
bootstraps each variant's difference from the floor (each group resampled independently).
Note that the best setting is chosen on the same episodes it is evaluated on,
so the difference interval is optimistic for whichever variant has more
settings.

Outputs in OUTDIR: ``summary.md``, ``summary.json`` and ``results.png``.
"""
import argparse
import csv
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

EPISODE_COLS = ["task", "planner", "variant", "setting", "seed", "episode", "steps", "return",
                "mean_entropy", "mean_trunc_entropy", "mean_plan_ms", "mean_era_ms"]
STEP_COLS = ["task", "planner", "variant", "setting", "seed", "episode", "step", "entropy"]
N_BOOT = 10_000
BOOT_SEED = 20240611
VARIANT_COLORS = {"floor": "tab:blue", "era": "tab:orange", "era-min": "tab:green"}
PLANNER_STYLES = ["-", "--", ":", "-."]


def read_csv(path, required):
    """Read one CSV file into a list of dicts; exit with a message if it or a column is missing."""
    if not path.is_file():
        sys.exit(f"analyze.py: error: missing file {path}")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            sys.exit(f"analyze.py: error: {path} lacks column(s) {', '.join(missing)}")
        return [{k: (v or "").strip() for k, v in row.items() if k is not None} for row in reader]


def num(text):
    """Parse a float; empty or malformed fields become NaN."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def setting_key(s):
    """Sort key for settings: numeric order when they parse as floats, else lexical, after numbers."""
    v = num(s)
    return (0, v, s) if not math.isnan(v) else (1, 0.0, s)


def group_key(row):
    """The (task, planner, variant, setting) key of an episodes/steps row."""
    return (row["task"], row["planner"], row["variant"], row["setting"])


def sort_groups(keys):
    """Sort group keys by task, planner, variant, then setting (numerically where possible)."""
    return sorted(keys, key=lambda k: (k[0], k[1], k[2], setting_key(k[3])))


def boot_ci(values):
    """Mean and 95% percentile bootstrap interval of the mean; a single value is its own interval."""
    x = np.asarray(values, dtype=float)
    m = float(np.mean(x))
    if len(x) < 2:
        return m, m, m
    rng = np.random.default_rng(BOOT_SEED)
    means = x[rng.integers(0, len(x), size=(N_BOOT, len(x)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return m, float(lo), float(hi)


def boot_diff_ci(a, b):
    """Mean(a) - mean(b) with a 95% bootstrap interval, resampling a and b independently."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    rng = np.random.default_rng(BOOT_SEED + 1)
    ma = a[rng.integers(0, len(a), size=(N_BOOT, len(a)))].mean(axis=1)
    mb = b[rng.integers(0, len(b), size=(N_BOOT, len(b)))].mean(axis=1)
    lo, hi = np.percentile(ma - mb, [2.5, 97.5])
    return float(a.mean() - b.mean()), float(lo), float(hi)


def summarise(episodes):
    """Per-group statistics (dict keyed by group tuple) from the episode rows."""
    by_group = defaultdict(list)
    for row in episodes:
        by_group[group_key(row)].append(row)
    stats = {}
    for key in sort_groups(by_group):
        rows = by_group[key]
        col = lambda c: np.array([num(r[c]) for r in rows])  # noqa: E731
        mean, lo, hi = boot_ci(col("return"))
        plan, era = float(np.nanmean(col("mean_plan_ms"))), float(np.nanmean(col("mean_era_ms")))
        stats[key] = {
            "task": key[0], "planner": key[1], "variant": key[2], "setting": key[3],
            "n_episodes": len(rows), "n_seeds": len({r["seed"] for r in rows}),
            "return_mean": mean, "return_lo": lo, "return_hi": hi,
            "returns": col("return").tolist(),
            "entropy": float(np.nanmean(col("mean_entropy"))),
            "trunc_entropy": float(np.nanmean(col("mean_trunc_entropy"))),
            "plan_ms": plan, "era_ms": era,
            "era_share_pct": 100.0 * era / plan if plan > 0 else math.nan,
        }
    return stats


def main_comparison(stats):
    """For each (task, planner): best setting per variant by mean return, and each variant's
    difference from the floor's (variant - floor)."""
    best = {}
    for key, s in stats.items():
        k = (key[0], key[1], key[2])
        if k not in best or s["return_mean"] > best[k]["return_mean"]:
            best[k] = s
    rows = []
    for task, planner in sorted({k[:2] for k in best}):
        variants = {v: best[(t, p, v)] for (t, p, v) in best if (t, p) == (task, planner)}
        row = {"task": task, "planner": planner,
               "best": {v: {"setting": s["setting"], "return_mean": s["return_mean"],
                            "return_lo": s["return_lo"], "return_hi": s["return_hi"],
                            "n_episodes": s["n_episodes"]} for v, s in sorted(variants.items())}}
        row["vs_floor"] = {}
        for v in sorted(variants):
            if v == "floor" or "floor" not in variants:
                continue
            d, lo, hi = boot_diff_ci(variants[v]["returns"], variants["floor"]["returns"])
            single = min(len(variants[v]["returns"]), len(variants["floor"]["returns"])) < 2
            row["vs_floor"][v] = {"mean": d, "lo": lo, "hi": hi,  # None: a group has 1 episode
                                  "excludes_zero": None if single else (lo > 0 or hi < 0)}
        rows.append(row)
    return rows


def fmt(x, digits=2):
    """Format a float for the markdown tables ('–' for NaN)."""
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def write_markdown(path, stats, comparison):
    """Write per-task tables and the main comparison table to ``path``."""
    best_per_tp = {}
    for key, s in stats.items():
        tp = key[:2]
        best_per_tp[tp] = max(best_per_tp.get(tp, -math.inf), s["return_mean"])
    lines = ["# Planner results", "",
             f"Return: mean over episodes [95% percentile bootstrap, {N_BOOT} resamples]. "
             "n = episodes (seeds). Bold: best mean return per (task, planner).", ""]
    for task in sorted({k[0] for k in stats}):
        lines += [f"## {task}", "",
                  "| planner | variant | setting | n | return (mean [lo, hi]) | entropy/step | "
                  "trunc. entropy/step | plan ms/step | ERA share |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for key, s in stats.items():
            if key[0] != task:
                continue
            ret = f"{fmt(s['return_mean'])} [{fmt(s['return_lo'])}, {fmt(s['return_hi'])}]"
            if s["return_mean"] == best_per_tp[key[:2]]:
                ret = f"**{ret}**"
            share = "–" if math.isnan(s["era_share_pct"]) else f"{s['era_share_pct']:.1f}%"
            lines.append(f"| {s['planner']} | {s['variant']} | {s['setting']} | "
                         f"{s['n_episodes']} ({s['n_seeds']}) | {ret} | {fmt(s['entropy'], 3)} | "
                         f"{fmt(s['trunc_entropy'], 3)} | {fmt(s['plan_ms'])} | {share} |")
        lines.append("")
    lines += ["## Main comparison", "",
              "Best setting of each variant by mean return; variant − floor with a 95% bootstrap "
              "interval (groups resampled independently). The selection uses the same episodes, "
              "so intervals are somewhat optimistic.", "",
              "| task | planner | variant | setting | return | floor setting | floor return | "
              "variant − floor [lo, hi] | excludes 0 |", "|---|---|---|---|---|---|---|---|---|"]
    for row in comparison:
        f = row["best"].get("floor")
        for v, d in row.get("vs_floor", {}).items():
            b = row["best"][v]
            lines.append("| " + " | ".join([
                row["task"], row["planner"], v, b["setting"],
                f"{fmt(b['return_mean'])} [{fmt(b['return_lo'])}, {fmt(b['return_hi'])}]",
                f["setting"], f"{fmt(f['return_mean'])} [{fmt(f['return_lo'])}, {fmt(f['return_hi'])}]",
                f"{fmt(d['mean'])} [{fmt(d['lo'])}, {fmt(d['hi'])}]",
                {True: "yes", False: "no", None: "n/a (1 episode)"}[d["excludes_zero"]]]) + " |")
    path.write_text("\n".join(lines) + "\n")


def entropy_curves(steps, task, planner, variant, setting):
    """Per-step entropy for one group: (steps, mean over seeds, min over seeds, max over seeds).

    Episodes of one seed are averaged first; steps missing for some seeds use the seeds present.
    """
    per_seed = defaultdict(lambda: defaultdict(list))
    for r in steps:
        if group_key(r) == (task, planner, variant, setting):
            v = num(r["entropy"])
            if not math.isnan(v):
                per_seed[int(num(r["step"]))][r["seed"]].append(v)
    xs = sorted(per_seed)
    seed_means = [[np.mean(v) for v in per_seed[x].values()] for x in xs]
    return (np.array(xs), np.array([np.mean(m) for m in seed_means]),
            np.array([np.min(m) for m in seed_means]), np.array([np.max(m) for m in seed_means]))


def plot(path, stats, comparison, steps):
    """Draw one row per task: returns with CIs (left) and entropy per step over the episode (right)."""
    tasks = sorted({k[0] for k in stats})
    fig, axes = plt.subplots(len(tasks), 2, figsize=(12, 3.2 * len(tasks)), squeeze=False)
    variants = sorted({k[2] for k in stats})
    colors = {v: VARIANT_COLORS.get(v, f"C{i + 2}") for i, v in enumerate(variants)}
    for ti, task in enumerate(tasks):
        ax, ax2 = axes[ti]
        keys = [k for k in stats if k[0] == task]
        planners = sorted({k[1] for k in keys})
        x, ticks, labels = 0, [], []
        for p in planners:
            start = x
            for k in [k for k in keys if k[1] == p]:
                s = stats[k]
                err = [[s["return_mean"] - s["return_lo"]], [s["return_hi"] - s["return_mean"]]]
                ax.errorbar([x], [s["return_mean"]], yerr=err, fmt="o", color=colors[k[2]],
                            capsize=3, ms=5)
                ticks.append(x)
                labels.append(k[3])
                x += 1
            ax.text((start + x - 1) / 2, 1.02, p, transform=ax.get_xaxis_transform(),
                    ha="center", va="bottom", fontsize=9, fontweight="bold")
            if p != planners[-1]:
                ax.axvline(x, color="0.8", lw=0.8)
            x += 1
        ax.set_xticks(ticks, labels, fontsize=8, rotation=45 if len(ticks) > 12 else 0)
        ax.set_xlim(-0.7, x - 1.3)
        ax.set_ylabel(f"{task}\nreturn")
        ax.grid(axis="y", alpha=0.3)
        for v in variants:
            ax.plot([], [], "o", color=colors[v], label=v)
        ax.legend(fontsize=8, loc="best")
        for row in (r for r in comparison if r["task"] == task):
            style = PLANNER_STYLES[planners.index(row["planner"]) % len(PLANNER_STYLES)]
            for v, b in row["best"].items():
                xs, mean, lo, hi = entropy_curves(steps, task, row["planner"], v, b["setting"])
                if len(xs) == 0:
                    continue
                ax2.fill_between(xs, lo, hi, color=colors[v], alpha=0.15, lw=0)
                ax2.plot(xs, mean, style, color=colors[v], lw=1.4,
                         label=f"{row['planner']} {v} ({b['setting']})")
        ax2.set_ylabel("entropy / step (nats)")
        ax2.grid(alpha=0.3)
        ax2.legend(fontsize=8, loc="best")
        if ti == len(tasks) - 1:
            ax.set_xlabel("setting")
            ax2.set_xlabel("step")
    axes[0, 1].set_title("sampling entropy, best setting per variant (band: min..max over seeds)",
                         fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def json_safe(obj):
    """Recursively replace NaN/inf floats by None so the JSON output is standard."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def main(argv=None):
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="+", type=Path, help="output directories of the example")
    ap.add_argument("--out", type=Path, required=True, help="directory for the summary files")
    args = ap.parse_args(argv)
    episodes, steps = [], []
    for d in args.dirs:
        episodes += read_csv(d / "episodes.csv", EPISODE_COLS)
        steps += read_csv(d / "steps.csv", STEP_COLS)
    if not episodes:
        sys.exit("analyze.py: error: no episode rows found")
    stats = summarise(episodes)
    comparison = main_comparison(stats)
    args.out.mkdir(parents=True, exist_ok=True)
    write_markdown(args.out / "summary.md", stats, comparison)
    groups = [{k: v for k, v in s.items() if k != "returns"} for s in stats.values()]
    doc = {"inputs": [str(d) for d in args.dirs],
           "bootstrap": {"resamples": N_BOOT, "seed": BOOT_SEED, "level": 0.95},
           "groups": groups, "main_comparison": comparison}
    (args.out / "summary.json").write_text(json.dumps(json_safe(doc), indent=2) + "\n")
    plot(args.out / "results.png", stats, comparison, steps)
    print(f"wrote {args.out / 'summary.md'}, summary.json, results.png "
          f"({len(stats)} groups, {len(episodes)} episodes)")


if __name__ == "__main__":
    main()
