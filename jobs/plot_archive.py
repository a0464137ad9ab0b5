#!/usr/bin/python3
"""Draws an eplb plan archive with h5py and matplotlib (Debian: python3-h5py, python3-matplotlib).

    jobs/plot_archive.py ARCHIVE [-o OUTDIR] [--plan ID] [--max-plans N]

Writes two PNG files into OUTDIR (default: next to the archive):
  <archive>_balancedness.png   per-layer balancedness of each plan: in-sample (solid) and, when the
                               input is a time series, on the next window (dashed)
  <archive>_gpu_loads_<id>.png GPU load of every layer of one plan (--plan, default the first
                               plan of the index), relative to the layer's mean GPU load
It reads the archive with h5py alone (no eplb code): see the README for the layout.
"""
import argparse
import os
import sys

import h5py
import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def plan_label(row):
    label = f"{text(row['id'])[:8]} {text(row['policy'])} {text(row['topology'])}"
    if row["num_windows"] > 1:
        label += f" w{row['window']}"
    return label


def gpu_loads(plan):
    """GPU loads [L, G] of a plan on the loads it was planned on (DESIGN section 4)."""
    phy2log = plan["phy2log"][()]
    logcnt = plan["logcnt"][()]
    loads = plan["loads"][()]
    gpus = int(plan.attrs["num_gpus"])
    rows = np.arange(phy2log.shape[0])[:, None]
    slot_loads = loads[rows, phy2log] / logcnt[rows, phy2log]
    return slot_loads.reshape(phy2log.shape[0], gpus, -1).sum(axis=2)


def plot_balancedness(archive, index, path, max_plans):
    fig, ax = plt.subplots(figsize=(12, 5))
    ordered = sorted(index, key=lambda r: (text(r["source"]), text(r["topology"]), text(r["policy"]), r["window"]))
    shown = ordered[:max_plans]
    colours = plt.cm.tab10(np.linspace(0, 1, 10))
    for i, row in enumerate(shown):
        metrics = archive["plans"][text(row["id"])]["metrics"][()]
        colour = colours[i % 10]
        ax.plot(metrics["layer"], metrics["balancedness"], "-o", ms=3, color=colour, label=plan_label(row))
        if not np.all(np.isnan(metrics["next_balancedness"])):
            ax.plot(metrics["layer"], metrics["next_balancedness"], "--", color=colour, alpha=0.8)
    ax.set_xlabel("model layer")
    ax.set_ylabel("balancedness (mean / max GPU load)")
    title = "per-layer balancedness: in-sample (solid), on the next window (dashed)"
    if len(index) > len(shown):
        title += f"\nthe first {len(shown)} of {len(index)} plans (--max-plans)"
    ax.set_title(title)
    ax.set_ylim(top=1.0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_gpu_loads(archive, row, path):
    plan = archive["plans"][text(row["id"])]
    loads = gpu_loads(plan)
    mean = loads.mean(axis=1, keepdims=True)
    relative = np.divide(loads, mean, out=np.ones_like(loads), where=mean > 0)
    layers = plan["layer_ids"][()]
    fig, ax = plt.subplots(figsize=(max(6, loads.shape[1] * 0.35 + 2), max(4, loads.shape[0] * 0.12 + 2)))
    spread = max(0.05, float(np.abs(relative - 1.0).max()))  # colour scale centred on the mean
    image = ax.imshow(relative, aspect="auto", cmap="coolwarm", vmin=1.0 - spread, vmax=1.0 + spread,
                      interpolation="nearest")
    ax.set_xlabel("GPU")
    ax.set_ylabel("model layer")
    step = max(1, len(layers) // 20)
    ax.set_yticks(range(0, len(layers), step))
    ax.set_yticklabels(layers[::step])
    ax.set_title(f"GPU load / layer mean\nplan {text(row['id'])}: {text(row['policy'])} {text(row['topology'])}, "
                 f"window {row['window']}, {os.path.basename(text(row['source']))}", fontsize="medium")
    fig.colorbar(image, ax=ax, label="GPU load / mean GPU load of the layer")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("archive")
    parser.add_argument("-o", "--outdir", help="where the PNG files go (default: next to the archive)")
    parser.add_argument("--plan", help="plan ID (or a unique prefix) for the GPU load heatmap")
    parser.add_argument("--max-plans", type=int, default=12, help="plans drawn in the balancedness figure")
    args = parser.parse_args()

    outdir = args.outdir or os.path.dirname(os.path.abspath(args.archive))
    os.makedirs(outdir, exist_ok=True)
    stem = os.path.splitext(os.path.basename(args.archive))[0]
    with h5py.File(args.archive, "r") as archive:
        if text(archive.attrs.get("format", "")) != "eplb plan archive":
            sys.exit(f"plot_archive.py: {args.archive}: not an eplb plan archive")
        index = archive["index"][()]
        if len(index) == 0:
            sys.exit(f"plot_archive.py: {args.archive}: the archive holds no plan")
        rows = index
        if args.plan:
            rows = [r for r in index if text(r["id"]).startswith(args.plan)]
            if len(rows) != 1:
                sys.exit(f"plot_archive.py: {args.archive}: plan '{args.plan}' matches {len(rows)} plans")
        balancedness = os.path.join(outdir, f"{stem}_balancedness.png")
        heatmap = os.path.join(outdir, f"{stem}_gpu_loads_{text(rows[0]['id'])}.png")
        plot_balancedness(archive, index, balancedness, args.max_plans)
        plot_gpu_loads(archive, rows[0], heatmap)
    print(balancedness)
    print(heatmap)


if __name__ == "__main__":
    main()
