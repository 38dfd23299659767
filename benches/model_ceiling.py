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

usage: benches/model_ceiling.py [TRACE.csv[.gz] ...]  (default: every trace in
../shared/data/traces); needs numpy and scikit-learn.
"""
import csv
import glob
import gzip
import os
import statistics
import sys

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor

BUDGET = 0.10
WINDOWS = [1 / 16, 1 / 4, 1, 4]
HALF_LIVES = [1 / 16, 1 / 4, 1, 4, 16]
GAPS = 4
TRAINING_CUTOFFS = [1, 1.25, 1.5, 2]


def load(path):
    opener = gzip.open if path.endswith(".gz") else open
    times, keys, ids = [], [], {}
    with opener(path, "rt") as f:
        rows = csv.reader(f)
        next(rows)
        for row in rows:
            times.append(float(row[0]))
            keys.append(ids.setdefault(row[1], len(ids)))
    return np.array(times), np.array(keys), len(ids)


def features(times, keys, n_keys, cutoff, horizon):
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


def accesses_after(times, keys, n_keys, cutoff, horizon):
    inside = (times > cutoff) & (times <= cutoff + horizon)
    return np.bincount(keys[inside], minlength=n_keys).astype(float)


def capture(scores, candidates, future, total):
    budget = int(round(BUDGET * len(candidates)))
    tie_break = np.random.default_rng(0).random(len(candidates))
    top = candidates[np.lexsort((tie_break, -scores[candidates]))[:budget]]
    return 100 * future[top].sum() / total


def learner():
    return HistGradientBoostingRegressor(loss="poisson", max_iter=200, max_depth=6, learning_rate=0.05)


def judge(path):
    times, keys, n_keys = load(path)
    cutoff = times[int(len(times) * 0.75) - 1]
    horizon = times[-1] - cutoff
    if horizon <= 0:
        return None
    x, seen = features(times, keys, n_keys, cutoff, horizon)
    candidates = np.flatnonzero(seen)
    future = accesses_after(times, keys, n_keys, cutoff, horizon)
    total = future.sum()
    heuristics = {"most-recent": capture(-x[:, len(WINDOWS) + 1 + len(HALF_LIVES)], candidates, future, total)}
    heuristics["most-frequent"] = capture(x[:, len(WINDOWS)], candidates, future, total)
    for i, half_life in enumerate(HALF_LIVES):
        heuristics[f"decayed-{half_life:g}H"] = capture(x[:, len(WINDOWS) + 1 + i], candidates, future, total)
    best_name = max(heuristics, key=heuristics.get)
    oracle = capture(future, candidates, future, total)

    rows, labels = [], []
    for back in TRAINING_CUTOFFS:
        earlier = cutoff - back * horizon
        if earlier <= times[0]:
            continue
        x_earlier, seen_earlier = features(times, keys, n_keys, earlier, horizon)
        rows.append(x_earlier[seen_earlier])
        labels.append(accesses_after(times, keys, n_keys, earlier, horizon)[seen_earlier])
    learned = None
    if rows and np.concatenate(labels).sum() > 0:
        scores = np.zeros(n_keys)
        scores[candidates] = learner().fit(np.vstack(rows), np.concatenate(labels)).predict(x[candidates])
        learned = capture(scores, candidates, future, total)

    in_sample = None
    if future[candidates].sum() > 0:
        fold = np.random.default_rng(1).random(len(candidates)) < 0.5
        scores = np.zeros(n_keys)
        for held in (True, False):
            fit_on, score_on = candidates[fold != held], candidates[fold == held]
            if future[fit_on].sum() > 0:
                scores[score_on] = learner().fit(x[fit_on], future[fit_on]).predict(x[score_on])
        in_sample = capture(scores, candidates, future, total)
    return best_name, heuristics[best_name], learned, in_sample, oracle


def gap_closed(value, best, oracle):
    if value is None or oracle <= best:
        return None
    return 100 * (value - best) / (oracle - best)


def cell(value, best, oracle):
    if value is None:
        return "n/a"
    share = gap_closed(value, best, oracle)
    return f"{value:.1f}" + ("" if share is None else f" ({share:+.0f}%)")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    paths = sys.argv[1:] or sorted(glob.glob(os.path.join(here, "../../shared/data/traces/*.csv.gz")))
    print("| trace | best heuristic | learner on the history | in-sample (reads the future) | oracle |")
    print("|---|---|---|---|---|")
    shares = {"learner": [], "in-sample": []}
    for path in paths:
        name = os.path.basename(path).split(".")[0]
        judged = judge(path)
        if judged is None:
            print(f"| {name} | no time span after the cut-off | | | |")
            continue
        best_name, best, learned, in_sample, oracle = judged
        print(f"| {name} | {best_name} {best:.1f} | {cell(learned, best, oracle)} | {cell(in_sample, best, oracle)} | {oracle:.1f} |")
        for label, value in (("learner", learned), ("in-sample", in_sample)):
            share = gap_closed(value, best, oracle)
            if share is not None:
                shares[label].append(share)
    print()
    for label, values in shares.items():
        if values:
            print(f"- {label}: median gap closed {statistics.median(values):+.1f}% over {len(values)} traces")


if __name__ == "__main__":
    main()
