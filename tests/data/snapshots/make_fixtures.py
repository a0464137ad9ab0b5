#!/usr/bin/python3
"""Writes the torch.save fixtures of the snapshot reader tests (run with Debian's python3-torch).

Every fixture holds the counts of `counts()`: T=3 steps, 5 model layers (layer 0 dense, all zero),
16 experts, count[t][l][e] = (7*t + 5*l + 3*e) % 23 + 1 for l >= 1. The C++ tests rebuild the
same numbers (tests/unit/snapshot_test.cpp).

    cd tests/data/snapshots && /usr/bin/python3 make_fixtures.py
"""
import torch

T, L, E = 3, 5, 16


def counts(dtype=torch.int64):
    c = torch.zeros(T, L, E, dtype=dtype)
    for t in range(T):
        for l in range(1, L):
            for e in range(E):
                c[t, l, e] = (7 * t + 5 * l + 3 * e) % 23 + 1
    return c


def recorder_dump(logical_count):
    # What SGLang's ExpertDistributionRecorder writes (expert_distribution_recorder_<time>.pt).
    return dict(rank=0, logical_count=logical_count, average_utilization_rate_over_window=0.75)


torch.save(recorder_dump(counts()), "recorder.pt")
torch.save(recorder_dump(counts(torch.int32)[0]), "recorder_2d_int32.pt")
torch.save(counts(), "bare_tensor.pt")
torch.save(dict(logical_count=counts()), "single_key.pt")
torch.save(recorder_dump(counts()), "legacy.pt", _use_new_zipfile_serialization=False)
torch.save(dict(rank=0, counts=counts()), "no_logical_count.pt")
torch.save(recorder_dump(counts()[0, 0]), "wrong_rank.pt")
for name, value in [("nan", float("nan")), ("inf", float("inf")), ("negative", -5.0)]:
    bad = counts(torch.float64)
    bad[1, 2, 3] = value
    torch.save(recorder_dump(bad), name + ".pt")
