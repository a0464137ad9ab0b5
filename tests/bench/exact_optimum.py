#!/usr/bin/python3
"""Exact minimum max GPU load of expert placement plans, per layer.

How far is the best possible plan from eplb's lower bound?  For each layer of a snapshot this
computes the least max GPU load over every valid plan of a mode:
  - every expert has >= 1 replica, every GPU exactly R/G slots,
  - no two replicas of one expert on one GPU (so at most G_domain replicas per expert),
  - hierarchical: each group with all its replicas on one node, groups/N groups per node, the
    split of groups over nodes free (min over splits of max over nodes, solved lazily: a node's
    MILP is solved only when its cheap bound could decide the layer);
  - global: one domain of G GPUs (large: usually time-limited, reported as [lower, upper]).
A slot of expert e with c replicas carries w_e / c.  Zero-load experts only fill slots.

Two solvers per node (or the global domain).  Default (--solver search): bisection on a cap T
with an exact depth-first search in integer arithmetic that decides whether a plan with max
load <= T exists (see search_feasible); a time-limited domain is reported as [lower, upper].
--solver cbc: the MILP below with COIN-OR CBC (much weaker at proving bounds here; kept as a
cross-check: --self-test compares both with a brute force on small cases).  The MILP is: y[e,k] = 1 when loaded expert e has k replicas,
z[e,g,k] = 1 when one of them is on GPU g; sum_k y = 1, sum_g z[e,.,k] = k y[e,k],
z <= y, loaded slots per GPU in [S - Z, S] (the rest are filled by the Z zero experts, one per
GPU each), GPU loads L_g = sum (w_e / k) z[e,g,k] <= T, L_1 >= L_2 >= ... (symmetry), min T.
Counts are limited to k >= ceil(w_e / U) for a heuristic upper bound U.  Every solution CBC
returns is re-checked and re-evaluated in float64; the reported upper bound is that evaluation.

Usage (run from the repository root; CBC from Debian: apt-get install coinor-cbc):
  /usr/bin/python3 tests/bench/exact_optimum.py --self-test
  eplb plan SNAPSHOT.json -t 288/8/4/32 --policy balanced --json > plan.json
  nice -n 10 /usr/bin/python3 tests/bench/exact_optimum.py SNAPSHOT.json -t 288/8/4/32 \
      [--mode hierarchical|global] [--zero-columns 255] [--plan-json plan.json] \
      [--time-limit 60] [--cache optimum_cache.json] [--layers 3-60] [--json out.json]
Snapshots: SGLang statistics JSON {"logical_count": [L][E]} or an eplb HDF5 snapshot
(logical_count [W][L][E] or [L][E]; each window's layers are reported in turn).
"""

import argparse
import hashlib
import itertools
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

FORMULATION_VERSION = 3
EXACT_RTOL = 1e-4  # [lower, upper] closer than this (relative) counts as exact


# ---------------------------------------------------------------- cheap bounds and heuristic

def dhondt_peak(w, slots, cap):
    """min over counts 1 <= c_e <= cap, sum c_e <= slots of max w_e / c_e (None if infeasible)."""
    w = np.asarray(w, dtype=float)
    if len(w) > slots:
        return None
    counts = np.ones(len(w), dtype=int)
    extra = slots - len(w)
    # Greedy D'Hondt: give each extra slot to the largest current share (optimal for the max).
    for _ in range(extra):
        share = np.where(counts < cap, w / counts, -1.0)
        e = int(np.argmax(share))
        if share[e] <= 0:
            break
        counts[e] += 1
    return float(np.max(w / counts)) if len(w) else 0.0, counts


def domain_lower_bound(w, gpus, slots_per_gpu):
    """max(W / G, D'Hondt peak with counts capped at G) for one domain."""
    w = np.asarray(w, dtype=float)
    peak = dhondt_peak(w, gpus * slots_per_gpu, gpus)
    if peak is None:
        return math.inf
    return max(w.sum() / gpus, peak[0])


def greedy_plan(w, gpus, slots_per_gpu):
    """D'Hondt counts (capped at G), then largest replica first onto the lightest GPU that has a
    free slot and no replica of the expert.  Returns (max load, counts, gpu of each replica) or
    None when it gets stuck."""
    w = np.asarray(w, dtype=float)
    res = dhondt_peak(w, gpus * slots_per_gpu, gpus)
    if res is None:
        return None
    _, counts = res
    if counts.sum() < gpus * slots_per_gpu:
        return None
    replicas = sorted(((w[e] / counts[e], e) for e in range(len(w)) for _ in range(counts[e])),
                      key=lambda t: (-t[0], t[1]))
    load = np.zeros(gpus)
    used = np.zeros(gpus, dtype=int)
    holds = [set() for _ in range(gpus)]
    for size, e in replicas:
        best = None
        for g in range(gpus):
            if used[g] < slots_per_gpu and e not in holds[g] and (best is None or load[g] < load[best]):
                best = g
        if best is None:
            return None
        load[best] += size
        used[best] += 1
        holds[best].add(e)
    return float(load.max()), counts


# ---------------------------------------------------------------- MILP

def cbc_solve(w, gpus, slots_per_gpu, time_limit, workdir, rel_tol=1e-4, start="upper"):
    """Min max GPU load of one domain: an upper bound from the MILP, then bisection on a cap T*
    (each step: the MILP with T <= T*, counts >= ceil(w / T*) and the conflicts of T*: replicas
    larger than T* / (m + 1) at most m per GPU, pairs larger than T* together never on one GPU).
    An infeasible step proves optimum > T*.  Stops when (upper - lower) <= rel_tol * upper, when
    a step is solved to optimality (then exact), or when a step ends without an answer.
    `time_limit` is per MILP; start="middle" begins the bisection at once (self-test).  Returns dict(lower, upper, status, seconds, steps)."""
    t0 = time.time()
    w = np.asarray(w, dtype=float)
    loaded = [e for e in range(len(w)) if w[e] > 0]
    zeros = len(w) - len(loaded)
    slots = gpus * slots_per_gpu
    if len(w) > slots or (zeros == 0 and len(w) * gpus < slots):
        return dict(lower=math.inf, upper=math.inf, status="infeasible", seconds=0.0, steps=[])
    if not loaded:
        return dict(lower=0.0, upper=0.0, status="trivial", seconds=0.0, steps=[])
    lower = domain_lower_bound(w, gpus, slots_per_gpu)
    greedy = greedy_plan(w, gpus, slots_per_gpu)
    upper = greedy[0] if greedy else math.inf
    if upper <= lower * (1 + 1e-12):
        return dict(lower=lower, upper=upper, status="heuristic=bound", seconds=time.time() - t0,
                    steps=[])
    if math.isinf(upper):
        upper = float(w.sum())  # everything on one GPU bounds any plan from above
    steps = []
    status = "interval"
    cap = upper if start == "upper" else lower + 0.5 * (upper - lower)
    while True:
        r = capped_milp(w, loaded, zeros, gpus, slots_per_gpu, cap, time_limit, workdir)
        steps.append(dict(cap=cap, **r))
        if r["upper"] is not None:
            upper = min(upper, r["upper"])
        if r["result"] == "infeasible":
            lower = max(lower, cap)
        elif r["result"] == "optimal":
            lower = upper = min(upper, max(lower, r["objective"]))
            status = "optimal"
            break
        else:
            lower = max(lower, min(cap, r["lower"]))
            if r["upper"] is None:
                break  # neither a plan under the cap nor a proof that none exists
        if upper - lower <= rel_tol * upper:
            status = "within tolerance"
            break
        cap = lower + 0.5 * (upper - lower)
    return dict(lower=min(lower, upper), upper=upper, status=status, seconds=time.time() - t0,
                steps=steps)


def capped_milp(w, loaded, zeros, gpus, slots_per_gpu, cap, time_limit, workdir):
    """The MILP min T s.t. T <= cap.  Returns dict(result: optimal | infeasible | time limit,
    objective, lower, upper (verified max of the best solution, or None), seconds)."""
    t0 = time.time()
    scale = w.sum() / gpus  # work in units of the mean GPU load
    loaded_slots = gpus * slots_per_gpu - zeros
    min_count = {e: max(1, math.ceil(w[e] / cap * (1 - 1e-12))) for e in loaded}
    spare = loaded_slots - sum(min_count.values())
    if spare < 0 or max(min_count.values()) > gpus:
        return dict(result="infeasible", objective=None, lower=cap, upper=None, seconds=0.0)
    ks = {e: range(min_count[e], min(gpus, min_count[e] + spare) + 1) for e in loaded}
    items = [(e, k, w[e] / k) for e in loaded for k in ks[e]]
    ws = {e: w[e] / scale for e in loaded}
    capacity = cap * (1 + 1e-9)

    lines = ["Minimize", " obj: T", "Subject To"]
    for e in loaded:
        lines.append(f" c1_{e}: " + " + ".join(f"y_{e}_{k}" for k in ks[e]) + " = 1")
        for k in ks[e]:
            lines.append(f" c2_{e}_{k}: " + " + ".join(f"z_{e}_{g}_{k}" for g in range(gpus))
                         + f" - {k} y_{e}_{k} = 0")
            for g in range(gpus):
                lines.append(f" c3_{e}_{g}_{k}: z_{e}_{g}_{k} - y_{e}_{k} <= 0")
    slot_terms = {g: " + ".join(f"z_{e}_{g}_{k}" for e in loaded for k in ks[e]) for g in range(gpus)}
    for g in range(gpus):
        lines.append(f" s_{g}: {slot_terms[g]} <= {slots_per_gpu}")
        if zeros < slots_per_gpu:
            lines.append(f" f_{g}: {slot_terms[g]} >= {slots_per_gpu - zeros}")
    total = " + ".join(f"{k} y_{e}_{k}" for e in loaded for k in ks[e])
    lines.append(f" tot: {total} <= {loaded_slots}")
    if zeros == 0:
        lines.append(f" tot2: {total} >= {loaded_slots}")
    for g in range(gpus):
        lines.append(f" l_{g}: " + " + ".join(f"{ws[e] / k:.12g} z_{e}_{g}_{k}" for e, k, _ in items)
                     + f" - L_{g} = 0")
    lines.append(" t: T - L_0 >= 0")
    for g in range(gpus - 1):
        lines.append(f" o_{g}: L_{g} - L_{g + 1} >= 0")
    lines.append(f" ub: T <= {capacity / scale:.12g}")
    # Conflicts of the cap: at most m replicas larger than cap / (m + 1) on one GPU ...
    for m in range(1, slots_per_gpu):
        big = [(e, k) for e, k, s in items if s > capacity / (m + 1)]
        if len({e for e, _ in big}) > m:
            for g in range(gpus):
                lines.append(f" k{m}_{g}: " + " + ".join(f"z_{e}_{g}_{k}" for e, k in big) + f" <= {m}")
    # ... and no two replicas whose sizes add up to more than the cap.
    half = [(e, k, s) for e, k, s in items if s <= capacity / 2]
    for e1, k1, s1 in items:
        for e2, k2, s2 in half:
            if e2 > e1 and s1 + s2 > capacity:
                for g in range(gpus):
                    lines.append(f" p_{e1}_{k1}_{e2}_{k2}_{g}: z_{e1}_{g}_{k1} + z_{e2}_{g}_{k2} <= 1")
    lines.append("Bounds")
    lines.append(" T >= 0")
    lines.append("Binaries")
    for e in loaded:
        for k in ks[e]:
            lines.append(f" y_{e}_{k}")
            lines.extend(f" z_{e}_{g}_{k}" for g in range(gpus))
    lines.append("End")

    lp = os.path.join(workdir, "model.lp")
    sol = os.path.join(workdir, "model.sol")
    with open(lp, "w") as f:
        f.write("\n".join(lines) + "\n")
    if os.path.exists(sol):
        os.remove(sol)
    cmd = ["cbc", lp, "sec", str(time_limit), "ratio", "1e-9", "allow", "1e-9", "solve",
           "solu", sol]
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    result = re.search(r"Result - (.*)", out)
    result = result.group(1) if result else "no result line"
    upper = check_solution(sol, w, loaded, gpus, slots_per_gpu, zeros) if os.path.exists(sol) else None
    if result.startswith("Optimal solution found"):
        m = re.search(r"Objective value:\s*([-0-9.eE+]+)", out)
        objective = float(m.group(1)) * scale * (1 - 1e-7)
        return dict(result="optimal", objective=objective, lower=objective, upper=upper,
                    seconds=time.time() - t0)
    if "infeasible" in result.lower() or "Pre-processing says infeasible" in out \
            or "Problem is infeasible" in out:
        return dict(result="infeasible", objective=None, lower=cap, upper=None,
                    seconds=time.time() - t0)
    if not result.startswith("Stopped on time"):
        raise RuntimeError(f"cbc: unexpected result {result!r}:\n{out[-1500:]}")
    m = re.search(r"Lower bound:\s*([-0-9.eE+]+)", out)
    lower = float(m.group(1)) * scale * (1 - 1e-9) if m else 0.0
    return dict(result="time limit", objective=None, lower=lower, upper=upper,
                seconds=time.time() - t0)


# ---------------------------------------------------------------- exact search

class Budget(Exception):
    pass


def search_feasible(w, gpus, slots_per_gpu, cap, node_limit, time_limit):
    """Is there a plan of one domain with max GPU load <= cap?  Exact depth-first search in
    integer arithmetic (loads in units of 1 / lcm(1..G) token): experts in decreasing load, each
    given a count k >= ceil(w / cap) and k distinct GPUs; GPUs in the same state (load, slots
    used) are interchangeable, and a state that failed is never searched again (the state is
    only the GPUs' (load, used) multiset, the next expert and the spare slots: the no-duplicate
    rule concerns the expert being placed only).  Pruned when the remaining load exceeds the
    free capacity.  Returns (True, {expert: [gpu, ...]}), (False, None), or raises Budget."""
    unit = math.lcm(*range(1, gpus + 1))
    order = sorted((e for e in range(len(w)) if w[e] > 0), key=lambda e: (-w[e], e))
    wi = [int(w[e]) for e in order]
    if any(w[e] != int(w[e]) for e in order):
        raise ValueError("search needs integer loads")
    zeros = len(w) - len(order)
    S = slots_per_gpu
    loaded_slots = gpus * S - zeros
    T = math.floor(cap * unit)  # integer cap, in the unit
    n = len(wi)
    minc = [max(1, -(-x * unit // T)) for x in wi] if T > 0 else [gpus + 1] * n
    if any(c > gpus for c in minc) or sum(minc) > loaded_slots:
        return False, None
    suffix_load = [0] * (n + 1)
    suffix_minc = [0] * (n + 1)
    for i in range(n - 1, -1, -1):
        suffix_load[i] = suffix_load[i + 1] + wi[i] * unit
        suffix_minc[i] = suffix_minc[i + 1] + minc[i]
    need_fill = max(0, S - zeros)  # loaded replicas every GPU must hold
    failed = set()
    nodes = [0]
    deadline = time.time() + time_limit
    choice = [None] * n

    def rec(i, bins, spare):
        # bins: list of [load, used, gpu id]
        if i == n:
            return all(u >= need_fill for _, u, _ in bins)
        key = (i, spare, tuple(sorted((l, u) for l, u, _ in bins)))
        if key in failed:
            return False
        nodes[0] += 1
        if nodes[0] > node_limit or (nodes[0] & 1023 == 0 and time.time() > deadline):
            raise Budget()
        free = sum(T - l for l, u, _ in bins if u < S)
        missing = sum(max(0, need_fill - u) for _, u, _ in bins)
        if suffix_load[i] > free or missing > suffix_minc[i] + spare:
            failed.add(key)
            return False
        x = wi[i] * unit
        for k in range(minc[i], min(gpus, minc[i] + spare) + 1):
            size = x // k  # exact: unit is a multiple of k
            classes = {}
            for b in bins:
                if b[1] < S and b[0] + size <= T:
                    classes.setdefault((b[0], b[1]), []).append(b)
            if sum(len(v) for v in classes.values()) < k:
                continue
            keys = sorted(classes)  # lightest first
            for pick in pick_counts([len(classes[c]) for c in keys], k):
                chosen = [b for c, m in zip(keys, pick) for b in classes[c][:m]]
                for b in chosen:
                    b[0] += size
                    b[1] += 1
                choice[i] = [b[2] for b in chosen]
                ok = rec(i + 1, bins, spare - (k - minc[i]))
                for b in chosen:
                    b[0] -= size
                    b[1] -= 1
                if ok:
                    return True
        failed.add(key)
        return False

    bins = [[0, 0, g] for g in range(gpus)]
    if rec(0, bins, loaded_slots - suffix_minc[0]):
        return True, {order[i]: choice[i] for i in range(n)}
    return False, None


def pick_counts(sizes, k):
    """Every way to take k items from classes of the given sizes (counts per class)."""
    if not sizes:
        if k == 0:
            yield []
        return
    rest = sum(sizes[1:])
    for m in range(min(sizes[0], k), max(0, k - rest) - 1, -1):
        for tail in pick_counts(sizes[1:], k - m):
            yield [m] + tail


def plan_max_load(plan, w, gpus, slots_per_gpu):
    """Checks a plan {expert: [gpu, ...]} of one domain and returns its max GPU load (float64)."""
    loaded = [e for e in range(len(w)) if w[e] > 0]
    zeros = len(w) - len(loaded)
    load = np.zeros(gpus)
    used = np.zeros(gpus, dtype=int)
    for e in loaded:
        gs = plan[e]
        assert gs and len(set(gs)) == len(gs) and all(0 <= g < gpus for g in gs), (e, gs)
        for g in gs:
            load[g] += w[e] / len(gs)
            used[g] += 1
    fill = slots_per_gpu - used
    assert (fill >= 0).all() and (fill <= zeros).all() and fill.sum() >= zeros, fill
    return float(load.max())


def search_solve(w, gpus, slots_per_gpu, time_limit, rel_tol=1e-4, node_limit=10**8):
    """Bisection on the cap with search_feasible between the cheap lower bound and the greedy
    plan, to (upper - lower) <= rel_tol * upper ("optimal": exact to rel_tol).  Returns dict(lower, upper, status, seconds, steps)."""
    t0 = time.time()
    w = np.asarray(w, dtype=float)
    loaded = [e for e in range(len(w)) if w[e] > 0]
    zeros = len(w) - len(loaded)
    if len(w) > gpus * slots_per_gpu or (zeros == 0 and len(w) * gpus < gpus * slots_per_gpu):
        return dict(lower=math.inf, upper=math.inf, status="infeasible", seconds=0.0, steps=[])
    if not loaded:
        return dict(lower=0.0, upper=0.0, status="trivial", seconds=0.0, steps=[])
    lower = domain_lower_bound(w, gpus, slots_per_gpu)
    greedy = greedy_plan(w, gpus, slots_per_gpu)
    upper = greedy[0] if greedy else float(w.sum())
    steps = []
    # First 0.1 % above the cheap bound (easier than the bound itself, and enough to tell
    # whether a domain can come within 0.998 of it), then bisection.  A step that runs out of
    # its share of the time moves the next cap up (towards a better upper bound).
    cap = min(lower * (1 + 1e-3), lower + 0.5 * (upper - lower))
    while upper - lower > rel_tol * upper:
        left = time_limit - (time.time() - t0)
        if left <= 0:
            break
        t1 = time.time()
        try:
            ok, plan = search_feasible(w, gpus, slots_per_gpu, cap, node_limit,
                                       min(left, time_limit / 3))
        except Budget:
            steps.append(dict(cap=cap, result="budget", seconds=time.time() - t1))
            cap = cap + 0.5 * (upper - cap)
            if upper - cap <= rel_tol * upper:
                break
            continue
        steps.append(dict(cap=cap, result="feasible" if ok else "infeasible",
                          seconds=time.time() - t1))
        if ok:
            upper = min(upper, plan_max_load(plan, w, gpus, slots_per_gpu))
        else:
            lower = max(lower, cap)
        unknown = [st["cap"] for st in steps if st["result"] == "budget" and lower < st["cap"] < upper]
        cap = lower + 0.5 * (upper - lower)
        if unknown:
            cap = max(unknown) + 0.5 * (upper - max(unknown))
    status = "optimal" if upper - lower <= rel_tol * upper else "time limit"
    return dict(lower=lower, upper=upper, status=status, seconds=time.time() - t0, steps=steps)


def check_solution(path, w, loaded, gpus, slots_per_gpu, zeros):
    """Re-checks a CBC solution file and returns its max GPU load in float64 (None if invalid)."""
    with open(path) as f:
        text = f.read().splitlines()
    if not text or "no integer solution" in text[0].lower() or "infeasible" in text[0].lower():
        return None
    z = {}
    for line in text[1:]:
        parts = line.split()
        if len(parts) >= 3 and parts[1].startswith("z_") and float(parts[2]) > 0.5:
            _, e, g, k = parts[1].split("_")
            z.setdefault(int(e), []).append((int(g), int(k)))
    load = np.zeros(gpus)
    used = np.zeros(gpus, dtype=int)
    for e in loaded:
        reps = z.get(e, [])
        if not reps:
            return None
        ks = {k for _, k in reps}
        gs = [g for g, _ in reps]
        if len(ks) != 1 or len(reps) != ks.pop() or len(set(gs)) != len(gs):
            return None
        for g in gs:
            load[g] += w[e] / len(reps)
            used[g] += 1
    fill = slots_per_gpu - used
    if (used > slots_per_gpu).any() or (fill > zeros).any() or fill.sum() < zeros:
        return None
    return float(load.max())


# ---------------------------------------------------------------- cache

class Cache:
    def __init__(self, path):
        self.path = path
        self.data = {}
        if path and os.path.exists(path):
            with open(path) as f:
                self.data = json.load(f)

    @staticmethod
    def key(w, gpus, slots_per_gpu, solver):
        ws = ",".join(repr(float(x)) for x in sorted(np.asarray(w, dtype=float), reverse=True))
        text = f"v{FORMULATION_VERSION}|{solver}|{gpus}|{slots_per_gpu}|{ws}"
        return hashlib.sha1(text.encode()).hexdigest()

    def solve(self, w, gpus, slots_per_gpu, time_limit, workdir, solver):
        k = self.key(w, gpus, slots_per_gpu, solver)
        hit = self.data.get(k)
        if hit and (hit["status"] not in ("time limit", "interval") or hit["time_limit"] >= time_limit):
            return dict(hit, cached=True)
        if solver == "cbc":
            r = cbc_solve(w, gpus, slots_per_gpu, time_limit, workdir)
        else:
            r = search_solve(w, gpus, slots_per_gpu, time_limit)
        r["time_limit"] = time_limit
        self.data[k] = r
        self.save()
        return dict(r, cached=False)

    def save(self):
        if self.path:
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(self.data, f, indent=0, sort_keys=True)
            os.replace(tmp, self.path)


# ---------------------------------------------------------------- modes

def splits(groups, nodes):
    """Every partition of range(groups) into `nodes` unordered blocks of groups/nodes."""
    per = groups // nodes

    def rec(rest):
        if not rest:
            yield []
            return
        first, others = rest[0], rest[1:]
        for mates in itertools.combinations(others, per - 1):
            block = (first,) + mates
            left = [g for g in others if g not in mates]
            for tail in rec(left):
                yield [block] + tail

    return list(rec(list(range(groups))))


def hierarchical_optimum(w, topo, solve):
    """Lazy min over splits of max over nodes.  Returns dict(bound, lower, upper, solves)."""
    R, groups, N, G = topo
    E = len(w)
    per_group = E // groups
    gpn, spg = G // N, R // G
    all_splits = splits(groups, N)
    blocks = sorted({b for s in all_splits for b in s})
    experts = {b: np.concatenate([w[g * per_group:(g + 1) * per_group] for g in b]) for b in blocks}
    lo = {b: domain_lower_bound(experts[b], gpn, spg) for b in blocks}
    up = {b: math.inf for b in blocks}
    done = set()
    bound = min(max(lo[b] for b in s) for s in all_splits)
    solves = []
    while True:
        best = min(all_splits, key=lambda s: max(lo[b] for b in s))
        todo = [b for b in best if b not in done]
        if not todo:
            break
        b = max(todo, key=lambda b: lo[b])
        r = solve(experts[b], gpn, spg)
        lo[b], up[b] = max(lo[b], r["lower"]), r["upper"]
        done.add(b)
        solves.append(dict(block=list(b), **r))
    best = min(all_splits, key=lambda s: max(lo[b] for b in s))
    lower = max(lo[b] for b in best)
    upper = min(max(up[b] for b in s) for s in all_splits)
    return dict(bound=bound, lower=lower, upper=upper, solves=solves)


def global_optimum(w, topo, solve):
    R, _, _, G = topo
    bound = domain_lower_bound(w, G, R // G)
    r = solve(w, G, R // G)
    return dict(bound=bound, lower=max(bound, r["lower"]), upper=r["upper"], solves=[r])


# ---------------------------------------------------------------- brute force (self-test)

def brute_domain(w, gpus, spg):
    """Exhaustive min max GPU load of one domain (tiny cases only)."""
    E = len(w)
    best = [math.inf]

    def place(reps, i, load, used, holds):
        if max(load) >= best[0]:
            return
        if i == len(reps):
            best[0] = max(load)
            return
        size, e = reps[i]
        seen = set()
        for g in range(gpus):
            key = (load[g], used[g], frozenset(holds[g]))
            if used[g] < spg and e not in holds[g] and key not in seen:
                seen.add(key)
                load[g] += size
                used[g] += 1
                holds[g].add(e)
                place(reps, i + 1, load, used, holds)
                load[g] -= size
                used[g] -= 1
                holds[g].discard(e)

    for counts in itertools.product(range(1, gpus + 1), repeat=E):
        if sum(counts) != gpus * spg:
            continue
        reps = sorted(((w[e] / counts[e], e) for e in range(E) for _ in range(counts[e])), reverse=True)
        place(reps, 0, [0.0] * gpus, [0] * gpus, [set() for _ in range(gpus)])
    return best[0]


def brute_hierarchical(w, topo):
    R, groups, N, G = topo
    per_group = len(w) // groups
    return min(max(brute_domain(np.concatenate([w[g * per_group:(g + 1) * per_group] for g in b]),
                                G // N, R // G) for b in s)
               for s in splits(groups, N))


def self_test():
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        starts = itertools.cycle(["upper", "middle"])

        def solve(w, gpus, spg):
            w = np.asarray(w, dtype=float)
            a = cbc_solve(w, gpus, spg, 60, tmp, rel_tol=1e-9, start=next(starts))
            b = search_solve(w, gpus, spg, 60, rel_tol=1e-12)
            for key in ("lower", "upper"):
                if not (a[key] == b[key] or abs(a[key] - b[key]) <= 1e-6 * max(1, abs(b[key]))):
                    print(f"  cbc and search differ on {list(w)} {gpus}x{spg}: {a} {b}")
                    a["status"] = "solvers differ"
                    a["upper"] = math.nan
            return a

        # Hand cases: (weights, gpus, slots per GPU, optimum).
        hand = [
            ([4, 3, 0], 2, 2, 4.0),     # bound 3.5; (1,1,2) puts 4 and 3 apart: 4
            ([9, 0], 3, 1, 4.5),        # the zero expert needs a slot: 2 replicas of 9
            ([6, 2], 2, 2, 4.0),        # 3+1 on each GPU
            ([12, 0, 0, 0], 2, 2, 12.0),  # three zero experts leave one slot: no replica
            ([10, 0, 0], 3, 2, 10 / 3),
            ([8, 1, 1], 2, 2, 5.0),     # 4+1 each
        ]
        for w, gpus, spg, want in hand:
            r = solve(w, gpus, spg)
            good = abs(r["upper"] - want) < 1e-6 * want and abs(r["lower"] - want) < 1e-6 * want
            ok &= good
            print(f"hand {w} on {gpus}x{spg}: lower {r['lower']:.6g} upper {r['upper']:.6g} "
                  f"want {want:.6g} {'ok' if good else 'FAIL'}")
        r = solve([8], 2, 2)  # one expert cannot fill 4 slots without duplicates
        ok &= r["status"] == "infeasible"
        print(f"hand [8] on 2x2: {r['status']} {'ok' if r['status'] == 'infeasible' else 'FAIL'}")

        rng = np.random.default_rng(7)
        for case in range(150):
            gpus = int(rng.integers(2, 4))
            spg = int(rng.integers(1, 4))
            E = int(rng.integers(max(1, -(-gpus * spg // gpus)), min(5, gpus * spg) + 1))
            w = np.round(rng.pareto(1.2, E) * 10) * (rng.random(E) > 0.25)
            want = brute_domain(w, gpus, spg)
            r = solve(w, gpus, spg)
            if math.isinf(want):
                good = r["status"] == "infeasible"
            else:
                good = abs(r["upper"] - want) <= 1e-6 * max(want, 1) and \
                    abs(r["lower"] - want) <= 1e-6 * max(want, 1)
            ok &= good
            if not good or case < 5:
                print(f"random {list(w)} on {gpus}x{spg}: brute {want:.6g} milp "
                      f"[{r['lower']:.6g}, {r['upper']:.6g}] {r['status']} {'ok' if good else 'FAIL'}")

        # Hierarchical: 4 groups of 2 experts on 2 nodes of 2 GPUs with 3 slots each.
        topo = (12, 4, 2, 4)
        for case in range(6):
            w = np.round(rng.pareto(1.0, 8) * 10) * (rng.random(8) > 0.3)
            want = brute_hierarchical(w, topo)
            r = hierarchical_optimum(w, topo, solve)
            good = abs(r["upper"] - want) <= 1e-6 * max(want, 1) and \
                abs(r["lower"] - want) <= 1e-6 * max(want, 1)
            ok &= good
            print(f"hierarchical {list(w)} 12/4/2/4: brute {want:.6g} milp [{r['lower']:.6g}, "
                  f"{r['upper']:.6g}] bound {r['bound']:.6g} ({len(r['solves'])} solves) "
                  f"{'ok' if good else 'FAIL'}")
    print("self-test", "passed" if ok else "FAILED")
    return 0 if ok else 1


# ---------------------------------------------------------------- driver

def load_snapshot(path, zero_columns):
    if path.endswith(".json"):
        with open(path) as f:
            counts = np.array(json.load(f)["logical_count"], dtype=float)
    else:
        import h5py
        with h5py.File(path, "r") as f:
            counts = np.array(f["logical_count"], dtype=float)
    if counts.ndim == 2:
        counts = counts[None]
    for c in zero_columns:
        counts[..., c] = 0
    return counts  # [W, L, E]


def parse_layers(text, L):
    if not text:
        return list(range(L))
    out = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("snapshot", nargs="?")
    ap.add_argument("-t", "--topology", default="288/8/4/32")
    ap.add_argument("--mode", choices=["hierarchical", "global"], default="hierarchical")
    ap.add_argument("-z", "--zero-columns", default="")
    ap.add_argument("--plan-json", help="`eplb plan --json` output of the same snapshot and mode")
    ap.add_argument("--solver", choices=["search", "cbc"], default="search",
                    help="exact search with bisection (default) or CBC's MILP")
    ap.add_argument("--time-limit", type=float, default=60,
                    help="seconds per domain (search) or per MILP (cbc)")
    ap.add_argument("--cache", default="optimum_cache.json")
    ap.add_argument("--layers", help="e.g. 3-60 or 10,43 (default: all)")
    ap.add_argument("--json", help="write the per-layer results here")
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    if not args.snapshot:
        ap.error("a snapshot is required")
    topo = tuple(int(x) for x in args.topology.split("/"))
    zero_cols = [int(c) for c in args.zero_columns.split(",") if c]
    counts = load_snapshot(args.snapshot, zero_cols)
    W_, L, E = counts.shape
    hierarchical = args.mode == "hierarchical" and topo[1] % topo[2] == 0
    policy = {}
    if args.plan_json:
        with open(args.plan_json) as f:
            docs = json.load(f)
        docs = docs if isinstance(docs, list) else [docs]
        for wi, d in enumerate(docs):
            for row in d["layers"]:
                policy[(wi, row["layer"])] = (row["max_gpu_load"], row["lower_bound"])
    cache = Cache(args.cache)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        solve = lambda w, g, s: cache.solve(w, g, s, args.time_limit, tmp, args.solver)  # noqa: E731
        print(f"{'win':>3} {'layer':>5} {'mean':>12} {'bound':>12} {'lower':>12} {'upper':>12} "
              f"{'opt/bound':>9} {'policy':>12} {'pol/opt':>8} {'solves':>6} {'sec':>7} status")
        for wi in range(W_):
            for l in parse_layers(args.layers, L):
                w = counts[wi, l]
                if w.sum() == 0:
                    continue
                t0 = time.time()
                r = (hierarchical_optimum if hierarchical else global_optimum)(w, topo, solve)
                pol = policy.get((wi, l), (None, None))
                if pol[0] is not None and pol[0] < r["upper"]:
                    r["upper"] = pol[0]  # the policy's plan is a valid plan of the mode
                secs = time.time() - t0
                mean = w.sum() / topo[3]
                exact = r["upper"] - r["lower"] <= EXACT_RTOL * r["upper"]
                row = dict(window=wi, layer=l, mean=mean, bound=r["bound"], lower=r["lower"],
                           upper=r["upper"], exact=exact, policy_max=pol[0], policy_bound=pol[1],
                           milp_solves=sum(1 for s in r["solves"] if not s.get("cached") and
                                           s["status"] in ("optimal", "time limit")),
                           seconds=secs,
                           statuses=sorted({s["status"] for s in r["solves"]}))
                rows.append(row)
                polr = f"{pol[0]:12.1f} {pol[0] / r['upper']:8.4f}" if pol[0] else f"{'-':>12} {'-':>8}"
                print(f"{wi:3d} {l:5d} {mean:12.1f} {r['bound']:12.1f} {r['lower']:12.1f} "
                      f"{r['upper']:12.1f} {r['bound'] / r['upper']:9.4f} {polr} "
                      f"{len(r['solves']):6d} {secs:7.1f} {'exact' if exact else 'interval'}",
                      flush=True)
    if not rows:
        return 0
    sm = sum(r["mean"] for r in rows)
    sb = sum(r["bound"] for r in rows)
    slo = sum(r["lower"] for r in rows)
    sup = sum(r["upper"] for r in rows)
    print(f"layers: {len(rows)}, exact: {sum(r['exact'] for r in rows)}")
    print(f"sum(mean)/sum(bound)    = {sm / sb:.4f}")
    print(f"sum(mean)/sum(optimum)  = {sm / sup:.4f} .. {sm / slo:.4f}  (upper .. lower)")
    print(f"sum(bound)/sum(optimum) = {sb / sup:.4f} .. {sb / slo:.4f}  "
          "(best in-sample / bound any plan reaches)")
    if all(r["policy_max"] for r in rows):
        sp = sum(r["policy_max"] for r in rows)
        print(f"policy: sum(mean)/sum(max) = {sm / sp:.4f}, / bound = {sb / sp:.4f}, "
              f"/ optimum = {slo / sp:.4f} .. {sup / sp:.4f}")
    below = [r for r in rows if r["bound"] < 0.998 * r["lower"]]
    print("layers whose optimum is above bound / 0.998: "
          + (", ".join(f"{r['layer']} ({r['bound'] / r['lower']:.4f})" for r in below) or "none"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1, default=lambda v: v.item())  # numpy scalars
    return 0


if __name__ == "__main__":
    sys.exit(main())
