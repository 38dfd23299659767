#!/usr/bin/env python3
"""How much of the heuristic-to-oracle gap the history can explain, per trace.

An independent check on #18's accuracy target, written apart from the Rust
code (scikit-learn's HistGradientBoostingRegressor, Poisson loss, 200 trees
6 deep). For each trace in the common CSV layout it follows
../shared/EVALUATION.md (T = the row at 75%, horizon to the last row, 10% of
the keys seen at or before T, capture of the horizon's accesses) and scores:

- best heuristic: the best at T, in hindsight, of most frequent, most recent
  and decayed counters with half-lives H/16 .. 16H (at least as strong as the
  protocol's counter tuned on an earlier cut-off);
- learner: trained on rolling cut-offs T - H, T - 1.25H, T - 1.5H, T - 2H
  (labels: each key's accesses in the H after its cut-off, all before T),
  then ranking at T: what any model trained on the history alone can do;
- in-sample: the same learner fitted on half of the keys' real horizon counts
  at T and ranking the other half (two folds). Not a method: it reads the
  future. It says whether the features separate the oracle's keys at all,
  so that a gap the learner leaves open is the history's, not the features'.

Features, in units of H (so a trace's own time scale and the 96-hour stretch
give the same figures): counts in the last H/16, H/4, H, 4H and all history,
decayed counts with half-lives H/16 .. 16H, age since the last and the first
access, the last four gaps between accesses (-1 where missing).

"Every column" adds what else the CSV holds, for both the learner and the
in-sample fit: reads and writes decayed apart (H/4, H, 4H), the key's mean
and last size, its table's decayed activity, and its neighbourhood's
activity (keys written as a prefix and a number, such as a block address,
grouped by the number's 16 and 256 aligned neighbours: decayed H/4, H, 4H,
the count in the last H and in all history).

usage: benches/model_ceiling.py [TRACE.csv[.gz] ...]  (default: every trace in
../shared/data/traces); needs numpy and scikit-learn.
"""
import csv
import glob
import gzip
import os
import re
import statistics
import sys

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor

BUDGET = 0.10
WINDOWS = [1 / 16, 1 / 4, 1, 4]
HALF_LIVES = [1 / 16, 1 / 4, 1, 4, 16]
GAPS = 4
TRAINING_CUTOFFS = [1, 1.25, 1.5, 2]
# The median targets: share of the gap closed by keys and by bytes.
TARGETS = {"key": 30, "byte": 50}


NEIGHBOURHOODS = [16, 256]
NUMBERED_KEY = re.compile(r"^(.*?)(\d+)$")


class Trace:
    """One trace's events as arrays, keys and tables numbered from 0."""

    def __init__(self, path):
        opener = gzip.open if path.endswith(".gz") else open
        times, keys, writes, sizes, tables = [], [], [], [], []
        key_ids, table_ids = {}, {}
        with opener(path, "rt") as f:
            rows = csv.reader(f)
            next(rows)
            for row in rows:
                times.append(float(row[0]))
                keys.append(key_ids.setdefault(row[1], len(key_ids)))
                writes.append(row[2] != "read")
                sizes.append(max(float(row[3] or 0), 0.0))
                tables.append(table_ids.setdefault(row[4], len(table_ids)))
        self.times, self.keys = np.array(times), np.array(keys)
        self.writes, self.sizes, self.tables = np.array(writes), np.array(sizes), np.array(tables)
        self.n_keys, self.n_tables = len(key_ids), len(table_ids)
        names = sorted(key_ids, key=key_ids.get)
        self.neighbourhoods = [neighbourhood_of(names, span) for span in NEIGHBOURHOODS]


def neighbourhood_of(names, span):
    """Each key's neighbourhood id: keys ending in a number share one with
    the keys of the same prefix whose numbers fall in the same aligned span;
    any other key is a neighbourhood of its own."""
    ids = {}
    of_key = np.empty(len(names), dtype=np.int64)
    for key, name in enumerate(names):
        numbered = NUMBERED_KEY.match(name)
        group = (numbered.group(1), int(numbered.group(2)) // span) if numbered else (name,)
        of_key[key] = ids.setdefault(group, len(ids))
    return of_key, len(ids)


def features(trace, cutoff, horizon):
    times, keys, n_keys = trace.times, trace.keys, trace.n_keys
    before = times <= cutoff
    k, t = keys[before], times[before]
    columns = [np.bincount(k[t > cutoff - w * horizon], minlength=n_keys) for w in WINDOWS]
    columns.append(np.bincount(k, minlength=n_keys))
    for half_life in HALF_LIVES:
        weights = np.exp2(-(cutoff - t) / (half_life * horizon))
        columns.append(np.bincount(k, weights=weights, minlength=n_keys))
    last = np.full(n_keys, -np.inf)
    np.maximum.at(last, k, t)
    first = np.full(n_keys, np.inf)
    np.minimum.at(first, k, t)
    columns.append((cutoff - last) / horizon)
    columns.append((cutoff - first) / horizon)
    order = np.lexsort((t, k))
    k_sorted, t_sorted = k[order], t[order]
    gap_before = np.r_[0.0, np.diff(t_sorted)] / horizon
    starts = np.r_[0, np.flatnonzero(k_sorted[1:] != k_sorted[:-1]) + 1]
    ends = np.r_[starts[1:], len(k_sorted)]
    for back in range(GAPS):
        gap = np.full(n_keys, -1.0)
        at = ends - 1 - back
        has = at > starts
        gap[k_sorted[at[has]]] = gap_before[at[has]]
        columns.append(gap)
    seen = np.zeros(n_keys, bool)
    seen[k] = True
    return np.column_stack(columns).astype(float), seen


def every_column(trace, cutoff, horizon):
    x, seen = features(trace, cutoff, horizon)
    before = trace.times <= cutoff
    k, t = trace.keys[before], trace.times[before]
    writes, sizes, tables = trace.writes[before], trace.sizes[before], trace.tables[before]
    n_keys = trace.n_keys

    def decayed(groups, n_groups, half_life, weights=1.0):
        weights = weights * np.exp2(-(cutoff - t) / (half_life * horizon))
        return np.bincount(groups, weights=weights, minlength=n_groups)

    columns = [x]
    for half_life in (1 / 4, 1, 4):
        columns.append(decayed(k, n_keys, half_life, ~writes))
        columns.append(decayed(k, n_keys, half_life, writes))
    columns.append(np.bincount(k, weights=sizes, minlength=n_keys) / np.maximum(np.bincount(k, minlength=n_keys), 1))
    last_size, table_of_key = np.zeros(n_keys), np.zeros(n_keys, dtype=np.int64)
    last_size[k], table_of_key[k] = sizes, tables
    columns.append(last_size)
    columns.append(decayed(tables, trace.n_tables, 1)[table_of_key])
    for of_key, n_groups in trace.neighbourhoods:
        groups = of_key[k]
        for half_life in (1 / 4, 1, 4):
            columns.append(decayed(groups, n_groups, half_life)[of_key])
        columns.append(np.bincount(groups[t > cutoff - horizon], minlength=n_groups)[of_key])
        columns.append(np.bincount(groups, minlength=n_groups)[of_key])
    return np.column_stack(columns), seen


def accesses_after(trace, cutoff, horizon):
    inside = (trace.times > cutoff) & (trace.times <= cutoff + horizon)
    return np.bincount(trace.keys[inside], minlength=trace.n_keys).astype(float)


def last_sizes(trace, cutoff):
    before = trace.times <= cutoff
    sizes = np.zeros(trace.n_keys)
    sizes[trace.keys[before]] = trace.sizes[before]
    return sizes


def bytes_read_after(trace, cutoff, horizon):
    inside = (trace.times > cutoff) & (trace.times <= cutoff + horizon) & ~trace.writes
    return np.bincount(trace.keys[inside], weights=trace.sizes[inside], minlength=trace.n_keys)


class KeyBudget:
    """The keys ranked first, 10% of those seen, capturing the horizon's
    accesses; a key's label is its accesses."""

    name = "key"

    def __init__(self, trace, cutoff, horizon, candidates):
        self.candidates = candidates
        self.label = accesses_after(trace, cutoff, horizon)
        self.total = self.label.sum()

    @staticmethod
    def labels(trace, cutoff, horizon):
        return accesses_after(trace, cutoff, horizon)

    def capture(self, scores):
        budget = int(round(BUDGET * len(self.candidates)))
        tie_break = np.random.default_rng(0).random(len(self.candidates))
        top = self.candidates[np.lexsort((tie_break, -scores[self.candidates]))[:budget]]
        return 100 * self.label[top].sum() / self.total


class ByteBudget:
    """As evaluate judges bytes: keys taken by score as a density (bytes
    read per byte of their last size) while they fit in 10% of the bytes
    seen, capturing the horizon's bytes read (all keys' in the total); a
    key's label is that density."""

    name = "byte"

    def __init__(self, trace, cutoff, horizon, candidates):
        self.candidates = candidates
        self.sizes = last_sizes(trace, cutoff)
        self.read = bytes_read_after(trace, cutoff, horizon)
        self.label = self.read / np.maximum(self.sizes, 1)
        self.total = self.read.sum()

    @staticmethod
    def labels(trace, cutoff, horizon):
        return bytes_read_after(trace, cutoff, horizon) / np.maximum(last_sizes(trace, cutoff), 1)

    def capture(self, scores):
        tie_break = np.random.default_rng(0).random(len(self.candidates))
        order = self.candidates[np.lexsort((tie_break, -scores[self.candidates]))]
        allowance, used, read = BUDGET * self.sizes[self.candidates].sum(), 0.0, 0.0
        for key in order:
            if used + self.sizes[key] <= allowance:
                used += self.sizes[key]
                read += self.read[key]
        return 100 * read / self.total


def learner():
    return HistGradientBoostingRegressor(loss="poisson", max_iter=200, max_depth=6, learning_rate=0.05, random_state=0)


def on_the_history(trace, describe, cutoff, horizon, budget):
    rows, labels = [], []
    for back in TRAINING_CUTOFFS:
        earlier = cutoff - back * horizon
        if earlier <= trace.times[0]:
            continue
        x_earlier, seen_earlier = describe(trace, earlier, horizon)
        rows.append(x_earlier[seen_earlier])
        labels.append(budget.labels(trace, earlier, horizon)[seen_earlier])
    if not rows or np.concatenate(labels).sum() == 0:
        return None
    x, _ = describe(trace, cutoff, horizon)
    scores = np.zeros(trace.n_keys)
    candidates = budget.candidates
    scores[candidates] = learner().fit(np.vstack(rows), np.concatenate(labels)).predict(x[candidates])
    return budget.capture(scores)


def in_sample(trace, describe, cutoff, horizon, budget):
    candidates, future = budget.candidates, budget.label
    if future[candidates].sum() == 0:
        return None
    x, _ = describe(trace, cutoff, horizon)
    fold = np.random.default_rng(1).random(len(candidates)) < 0.5
    scores = np.zeros(trace.n_keys)
    for held in (True, False):
        fit_on, score_on = candidates[fold != held], candidates[fold == held]
        if future[fit_on].sum() > 0:
            scores[score_on] = learner().fit(x[fit_on], future[fit_on]).predict(x[score_on])
    return budget.capture(scores)


def judge(path):
    """Per budget (bytes only for traces with sizes and reads): the best
    heuristic's name and capture, each method's capture, the oracle's."""
    trace = Trace(path)
    times = trace.times
    cutoff = times[int(len(times) * 0.75) - 1]
    horizon = times[-1] - cutoff
    if horizon <= 0:
        return None
    x, seen = features(trace, cutoff, horizon)
    candidates = np.flatnonzero(seen)
    budgets = [KeyBudget(trace, cutoff, horizon, candidates)]
    if trace.sizes.any() and bytes_read_after(trace, cutoff, horizon).any():
        budgets.append(ByteBudget(trace, cutoff, horizon, candidates))
    judged = {}
    for budget in budgets:
        heuristics = {"most-recent": budget.capture(-x[:, len(WINDOWS) + 1 + len(HALF_LIVES)])}
        heuristics["most-frequent"] = budget.capture(x[:, len(WINDOWS)])
        for i, half_life in enumerate(HALF_LIVES):
            heuristics[f"decayed-{half_life:g}H"] = budget.capture(x[:, len(WINDOWS) + 1 + i])
        best_name = max(heuristics, key=heuristics.get)
        results = {
            method: way(trace, describe, cutoff, horizon, budget)
            for method, way, describe in METHODS
        }
        judged[budget.name] = (best_name, heuristics[best_name], results, budget.capture(budget.label))
    return judged


def gap_closed(value, best, oracle):
    if value is None or oracle <= best:
        return None
    return 100 * (value - best) / (oracle - best)


def cell(value, best, oracle):
    if value is None:
        return "n/a"
    share = gap_closed(value, best, oracle)
    return f"{value:.1f}" + ("" if share is None else f" ({share:+.0f}%)")


METHODS = [
    ("learner", on_the_history, features),
    ("learner, every column", on_the_history, every_column),
    ("in-sample", in_sample, features),
    ("in-sample, every column", in_sample, every_column),
]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    paths = sys.argv[1:] or sorted(glob.glob(os.path.join(here, "../../shared/data/traces/*.csv.gz")))
    judged = {}
    for path in paths:
        judged[os.path.basename(path).split(".")[0]] = judge(path)
    for budget, title in (("key", "10% of the keys, accesses captured"), ("byte", "10% of the bytes, bytes read captured")):
        print(f"### {title}\n")
        print("| trace | best heuristic | learner on the history | learner, every column "
              "| in-sample (reads the future) | in-sample, every column | oracle |")
        print("|---|---|---|---|---|---|---|")
        shares = {method: [] for method, _, _ in METHODS}
        for name, by_budget in judged.items():
            if by_budget is None:
                if budget == "key":
                    print(f"| {name} | no time span after the cut-off | | | | | |")
                continue
            if budget not in by_budget:
                continue
            best_name, best, results, oracle = by_budget[budget]
            cells = " | ".join(cell(results[method], best, oracle) for method in shares)
            print(f"| {name} | {best_name} {best:.1f} | {cells} | {oracle:.1f} |")
            for method, value in results.items():
                share = gap_closed(value, best, oracle)
                if share is not None:
                    shares[method].append(share)
        print()
        for method, values in shares.items():
            if values:
                reaching = sum(share >= TARGETS[budget] for share in values)
                print(f"- {method}: median gap closed {statistics.median(values):+.1f}% over {len(values)} traces, "
                      f"{TARGETS[budget]}% or more on {reaching}")
        print()


if __name__ == "__main__":
    main()
