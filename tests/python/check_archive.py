#!/usr/bin/python3
"""Reads an eplb plan archive as a user would, with h5py and pandas only (no eplb code), and checks
its layout: the index, the failures, every plan's datasets and shapes, and one metric recomputed
from the stored maps and loads.

    check_archive.py ARCHIVE --plans N --failures F
"""
import argparse
import sys

import h5py
import numpy as np
import pandas as pd


def text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def fail(message):
    sys.exit(f"check_archive.py: {message}")


def expect(condition, message):
    if not condition:
        fail(message)


def check_plan(group, row):
    pid = text(row["id"])
    attrs = group.attrs
    L, E, R = int(attrs["num_layers"]), int(attrs["num_experts"]), int(attrs["num_replicas"])
    G = int(attrs["num_gpus"])
    expect(text(attrs["id"]) == pid, f"plan {pid}: attribute id is {text(attrs['id'])}")
    expect(text(attrs["topology"]) == text(row["topology"]), f"plan {pid}: topology differs from the index")
    expect(len(text(attrs["source_sha256"])) == 64, f"plan {pid}: source_sha256 is not a SHA-256")
    expect(group["phy2log"].shape == (L, R), f"plan {pid}: phy2log {group['phy2log'].shape} != {(L, R)}")
    expect(group["log2phy"].shape[:2] == (L, E), f"plan {pid}: log2phy {group['log2phy'].shape}")
    expect(group["logcnt"].shape == (L, E), f"plan {pid}: logcnt {group['logcnt'].shape}")
    expect(group["layer_ids"].shape == (L,), f"plan {pid}: layer_ids {group['layer_ids'].shape}")
    expect(group["loads"].shape == (L, E), f"plan {pid}: loads {group['loads'].shape}")
    has_next = int(attrs["next_window"]) >= 0
    expect(("next_loads" in group) == has_next, f"plan {pid}: next_loads present = {'next_loads' in group}")
    expect(np.isnan(row["next_balancedness"]) != has_next, f"plan {pid}: next_balancedness in the index")
    for name in ("command_line", "created", "planning_seconds"):
        expect(name in group["run"].attrs, f"plan {pid}: run has no {name}")

    phy2log, logcnt = group["phy2log"][()], group["logcnt"][()]
    expect(np.all(logcnt.sum(axis=1) == R), f"plan {pid}: logcnt rows do not sum to R")
    metrics = pd.DataFrame(group["metrics"][()])
    expect(len(metrics) == L, f"plan {pid}: metrics has {len(metrics)} rows, expected {L}")
    expect(np.array_equal(metrics["layer"].to_numpy(), group["layer_ids"][()]), f"plan {pid}: metrics.layer")

    # Recompute the balancedness from the maps and loads (DESIGN section 4).
    loads = group["loads"][()]
    rows = np.arange(L)[:, None]
    gpu = (loads[rows, phy2log] / logcnt[rows, phy2log]).reshape(L, G, -1).sum(axis=2)
    mean, peak = gpu.mean(axis=1), gpu.max(axis=1)
    per_layer = np.where(peak > 0, mean / np.where(peak > 0, peak, 1), 1.0)
    expect(np.allclose(metrics["balancedness"], per_layer, rtol=1e-12, atol=0),
           f"plan {pid}: per-layer balancedness differs from the recomputed one")
    aggregate = mean.sum() / peak.sum()
    expect(abs(aggregate - row["balancedness"]) <= 1e-12 * aggregate,
           f"plan {pid}: index balancedness {row['balancedness']} != recomputed {aggregate}")
    expect(abs(attrs["balancedness"] - aggregate) <= 1e-12 * aggregate, f"plan {pid}: attribute balancedness")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("archive")
    parser.add_argument("--plans", type=int, required=True)
    parser.add_argument("--failures", type=int, required=True)
    args = parser.parse_args()

    with h5py.File(args.archive, "r") as f:
        expect(text(f.attrs["format"]) == "eplb plan archive", "root attribute format")
        index = pd.DataFrame(f["index"][()])
        failures = pd.DataFrame(f["failures"][()])
        expect(len(index) == args.plans, f"index has {len(index)} rows, expected {args.plans}")
        expect(len(failures) == args.failures, f"failures has {len(failures)} rows, expected {args.failures}")
        expect(set(failures.columns) >= {"input", "topology", "policy", "message"}, "failures columns")
        ids = index["id"].map(text)
        expect(ids.is_unique and list(ids) == sorted(ids), "index ids are not unique and sorted")
        expect(set(ids) == set(f["plans"].keys()), "index and /plans disagree")
        for _, row in index.iterrows():
            check_plan(f["plans"][text(row["id"])], row)
        series = index[index["num_windows"] > 1]
        expect(series["next_balancedness"].notna().sum() == len(series) - series.groupby(
            ["source", "topology", "policy"]).ngroups, "next-window metrics: one per window but the last")
    print(f"{args.archive}: {len(index)} plans and {len(failures)} failures read with h5py and pandas; "
          "shapes and recomputed balancedness check out")


if __name__ == "__main__":
    main()
