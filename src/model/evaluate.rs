//! The honest comparison: every method ranks the same keys at a cut-off none
//! of them trained on, and is judged on what then happened.
//!
//! Methods: random, most recent (LRU-like), most frequent (LFU-like), the
//! time-decayed counter with the half-life that did best on the cut-off
//! before (tuned on past data only), each model, and the oracle.
//!
//! Metrics, per method: ROC AUC and precision at 1% of keys for hot and for
//! high-churn; capture — the share of the horizon's accesses that fall on the
//! top 1/5/10/20% of keys, and the share of its bytes read that fall on the
//! keys chosen within 1/5/10/20% of the bytes (keys taken by score per byte)
//! — also as a fraction of the oracle's capture. Keys first seen in the
//! horizon count in the totals: no method can pick them.

use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::guard::Counter;
use super::input::raw_inputs_of_rows;
use super::predictor::Predictor;
use super::train::LabelledCutoff;
use crate::features::KeyFeatures;
use crate::features::definition::DECAY_HALF_LIVES;

pub const BUDGETS: [f64; 4] = [0.01, 0.05, 0.10, 0.20];

/// The capture curve is measured at every whole percent up to this one.
pub const CURVE_PERCENT: usize = 20;

/// Budget of point `index` of a capture curve.
pub fn curve_budget(index: usize) -> f64 {
    (index + 1) as f64 / 100.0
}

/// Index of `budget` (one of [`BUDGETS`]) on a capture curve.
fn curve_index(budget: f64) -> usize {
    (budget * 100.0).round() as usize - 1
}

/// How one method ranks keys.
pub struct Ranking {
    pub method: String,
    /// Higher is more likely hot / more accesses.
    pub hot: Vec<f64>,
    /// Higher is more likely to churn.
    pub churn: Vec<f64>,
    /// What the key is worth for byte budgets (divided by its size to rank);
    /// `None`: the hot score times the key's size (so the hot score ranks).
    pub byte_value: Option<Vec<f64>>,
}

/// A method's results at one cut-off.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MethodResult {
    pub method: String,
    pub auc_hot: f64,
    pub auc_churn: f64,
    pub precision_hot: f64,
    pub precision_churn: f64,
    /// Capture of accesses at each of [`BUDGETS`] of keys.
    pub capture_keys: [f64; 4],
    /// Capture of bytes read at each of [`BUDGETS`] of bytes.
    pub capture_bytes: [f64; 4],
    /// Capture of accesses at 1%, 2%, … [`CURVE_PERCENT`]% of keys.
    pub curve_keys: Vec<f64>,
    /// Capture of bytes read at 1%, 2%, … [`CURVE_PERCENT`]% of bytes.
    pub curve_bytes: Vec<f64>,
}

/// Area under the ROC curve of `scores` for `labels` (ties count half);
/// `NaN` when one class is absent.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> f64 {
    let positives = labels.iter().filter(|l| **l).count() as f64;
    let negatives = labels.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return f64::NAN;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Sum of positive ranks, with tied scores sharing their average rank.
    let mut rank_sum = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start;
        while end < order.len() && scores[order[end]].total_cmp(&scores[order[start]]).is_eq() {
            end += 1;
        }
        let average_rank = (start + end + 1) as f64 / 2.0;
        rank_sum += order[start..end].iter().filter(|&&i| labels[i]).count() as f64 * average_rank;
        start = end;
    }
    (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives)
}

/// Indices by descending score; ties keep key order.
fn descending(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order
}

fn precision_at(scores: &[f64], labels: &[bool], share: f64) -> f64 {
    let k = ((scores.len() as f64 * share).ceil() as usize).clamp(1, scores.len().max(1));
    let order = descending(scores);
    order.iter().take(k).filter(|&&i| labels[i]).count() as f64 / k as f64
}

/// Share of the horizon's accesses on the top 1%, 2%, … [`CURVE_PERCENT`]%
/// of the keys ranked by `hot` (keys first seen in the horizon count in the
/// total).
fn key_curve(hot: &[f64], cutoff: &LabelledCutoff) -> Vec<f64> {
    let keys = cutoff.outcomes.len();
    let total_accesses = cutoff.total.accesses.max(1) as f64;
    let order = descending(hot);
    let mut taken = 0;
    let mut captured = 0.0;
    (0..CURVE_PERCENT)
        .map(|index| {
            let k = (keys as f64 * curve_budget(index)).ceil() as usize;
            for &i in &order[taken..k.min(keys)] {
                captured += cutoff.outcomes[i].accesses as f64;
            }
            taken = k.min(keys);
            captured / total_accesses
        })
        .collect()
}

/// Share of the horizon's accesses on the `budget` share (one of
/// [`BUDGETS`]) of the keys ranked by `hot`: the capture of [`judge`]
/// alone, without the other metrics.
pub fn key_capture(hot: &[f64], cutoff: &LabelledCutoff, budget: f64) -> f64 {
    key_curve(hot, cutoff)[curve_index(budget)]
}

/// The keys `hot` ranks into its top `budget` share (one of [`BUDGETS`]),
/// taken as [`key_capture`] takes them.
pub fn top_keys(hot: &[f64], budget: f64) -> Vec<usize> {
    let k = (hot.len() as f64 * curve_budget(curve_index(budget))).ceil() as usize;
    let mut order = descending(hot);
    order.truncate(k);
    order
}

/// Judges `ranking` on the outcomes of `cutoff`.
pub fn judge(ranking: &Ranking, cutoff: &LabelledCutoff, sizes: &[f64]) -> MethodResult {
    // Traces without sizes read no bytes: their byte capture is undefined.
    let total_bytes_read = match cutoff.total.bytes_read {
        0 => f64::NAN,
        bytes => bytes as f64,
    };
    let curve_keys = key_curve(&ranking.hot, cutoff);
    // A key is worth the bytes read from it: its accesses times its size,
    // so per byte of budget it is worth its accesses, whatever its size.
    let per_byte: Vec<f64> = match &ranking.byte_value {
        Some(value) => value
            .iter()
            .zip(sizes)
            .map(|(v, size)| v / size.max(1.0))
            .collect(),
        None => ranking.hot.clone(),
    };
    let by_density = descending(&per_byte);
    let all_bytes: f64 = sizes.iter().sum();
    let curve_bytes: Vec<f64> = (0..CURVE_PERCENT)
        .map(|index| {
            let allowance = all_bytes * curve_budget(index);
            let mut used = 0.0;
            let mut read = 0.0;
            for &i in &by_density {
                if used + sizes[i] > allowance {
                    continue;
                }
                used += sizes[i];
                read += cutoff.outcomes[i].bytes_read as f64;
            }
            read / total_bytes_read
        })
        .collect();
    MethodResult {
        method: ranking.method.clone(),
        auc_hot: roc_auc(&ranking.hot, &cutoff.hot),
        auc_churn: roc_auc(&ranking.churn, &cutoff.churn),
        precision_hot: precision_at(&ranking.hot, &cutoff.hot, 0.01),
        precision_churn: precision_at(&ranking.churn, &cutoff.churn, 0.01),
        capture_keys: BUDGETS.map(|budget| curve_keys[curve_index(budget)]),
        capture_bytes: BUDGETS.map(|budget| curve_bytes[curve_index(budget)]),
        curve_keys,
        curve_bytes,
    }
}

fn from_rows(
    method: &str,
    rows: &[KeyFeatures],
    hot: impl Fn(&KeyFeatures) -> f64,
    churn: impl Fn(&KeyFeatures) -> f64,
) -> Ranking {
    Ranking {
        method: method.to_string(),
        hot: rows.iter().map(hot).collect(),
        churn: rows.iter().map(churn).collect(),
        byte_value: None,
    }
}

/// The heuristics, the decayed counter using half-life index `half_life`.
pub fn heuristics(rows: &[KeyFeatures], half_life: usize, seed: u64) -> Vec<Ranking> {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
    let random: Vec<f64> = rows.iter().map(|_| rng.random()).collect();
    let recency = |secs: Option<f64>| -secs.unwrap_or(f64::INFINITY);
    vec![
        Ranking {
            method: "random".into(),
            hot: random.clone(),
            churn: random,
            byte_value: None,
        },
        from_rows(
            "most-recent",
            rows,
            |r| recency(r.secs_since_last_read).max(recency(r.secs_since_last_write)),
            |r| recency(r.secs_since_last_write),
        ),
        from_rows(
            &Counter::MostFrequent.name(),
            rows,
            |r| Counter::MostFrequent.of_features(r),
            |r| r.writes_total as f64,
        ),
        decayed(rows, half_life),
    ]
}

/// The time-decayed counter with half-life index `half_life`.
fn decayed(rows: &[KeyFeatures], half_life: usize) -> Ranking {
    let counter = Counter::Decayed(half_life);
    from_rows(
        &counter.name(),
        rows,
        |r| counter.of_features(r),
        |r| r.writes_decay[half_life],
    )
}

/// The half-life whose decayed counter captured the most accesses at a 10%
/// key budget on `cutoff` (a past cut-off: no peeking at the evaluation).
pub fn best_half_life(cutoff: &LabelledCutoff) -> usize {
    let rows: Vec<KeyFeatures> = cutoff.features.rows().collect();
    let captures: Vec<f64> = (0..DECAY_HALF_LIVES.len())
        .map(|h| key_capture(&decayed(&rows, h).hot, cutoff, 0.10))
        .collect();
    (0..captures.len())
        .max_by(|&a, &b| captures[a].total_cmp(&captures[b]))
        .expect("half-lives exist")
}

/// The decayed counter's half-life tuned by [`best_half_life`] on the
/// period of `horizon` before `cutoff` (default labels); the middle one
/// when that period has no history (or no tables of it were given). Any
/// other failure (an unreadable log file) is an error, not a silent
/// default.
pub fn tuned_half_life(
    data: &super::train::CutoffSource,
    cutoff: i64,
    horizon: i64,
) -> Result<usize, super::ModelError> {
    let rules = super::labels::LabelRules::default();
    Ok(data
        .labelled(cutoff - horizon, horizon, &rules)?
        .map_or(1, |past| best_half_life(&past)))
}

/// The model's ranking: expected accesses for hot (it ranks), churn probability.
pub fn model_ranking(name: &str, predictor: &Predictor, cutoff: &LabelledCutoff) -> Ranking {
    let scores = predictor.score(raw_inputs_of_rows(&cutoff.features).view());
    Ranking {
        method: name.to_string(),
        hot: scores.accesses,
        churn: scores.churn,
        byte_value: None,
    }
}

/// The oracle: the true future.
pub fn oracle(cutoff: &LabelledCutoff) -> Ranking {
    Ranking {
        method: "oracle".into(),
        hot: cutoff.outcomes.iter().map(|o| o.accesses as f64).collect(),
        churn: cutoff.outcomes.iter().map(|o| o.writes as f64).collect(),
        byte_value: Some(
            cutoff
                .outcomes
                .iter()
                .map(|o| o.bytes_read as f64)
                .collect(),
        ),
    }
}

/// Every method judged on `cutoff`, oracle last.
pub fn compare(
    cutoff: &LabelledCutoff,
    half_life: usize,
    models: &[(String, &Predictor)],
    seed: u64,
) -> Vec<MethodResult> {
    let rows: Vec<KeyFeatures> = cutoff.features.rows().collect();
    let sizes: Vec<f64> = rows.iter().map(|r| r.size_last as f64).collect();
    let mut rankings = heuristics(&rows, half_life, seed);
    rankings.extend(
        models
            .iter()
            .map(|(name, predictor)| model_ranking(name, predictor, cutoff)),
    );
    rankings.push(oracle(cutoff));
    rankings.iter().map(|r| judge(r, cutoff, &sizes)).collect()
}

/// Writes results as long-format Parquet (method, metric, budget, value,
/// share of the oracle's value), for notebooks; capture at every point of
/// the curve.
pub fn write_report(
    path: &std::path::Path,
    as_of: &str,
    results: &[MethodResult],
) -> Result<(), super::ModelError> {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Float64Array, StringArray};

    let oracle = results.iter().find(|r| r.method == "oracle");
    let mut rows: Vec<(String, &'static str, f64, f64, f64)> = Vec::new();
    for result in results {
        for (metric, value, oracle_value) in [
            ("auc_hot", result.auc_hot, oracle.map(|o| o.auc_hot)),
            ("auc_churn", result.auc_churn, oracle.map(|o| o.auc_churn)),
            (
                "precision_hot_1pct",
                result.precision_hot,
                oracle.map(|o| o.precision_hot),
            ),
            (
                "precision_churn_1pct",
                result.precision_churn,
                oracle.map(|o| o.precision_churn),
            ),
        ] {
            rows.push((
                result.method.clone(),
                metric,
                f64::NAN,
                value,
                value / oracle_value.unwrap_or(f64::NAN),
            ));
        }
        for index in 0..CURVE_PERCENT {
            let oracle_keys = oracle.map_or(f64::NAN, |o| o.curve_keys[index]);
            let oracle_bytes = oracle.map_or(f64::NAN, |o| o.curve_bytes[index]);
            rows.push((
                result.method.clone(),
                "capture_accesses_by_keys",
                curve_budget(index),
                result.curve_keys[index],
                result.curve_keys[index] / oracle_keys,
            ));
            rows.push((
                result.method.clone(),
                "capture_bytes_read_by_bytes",
                curve_budget(index),
                result.curve_bytes[index],
                result.curve_bytes[index] / oracle_bytes,
            ));
        }
    }
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "as_of",
            Arc::new(StringArray::from_iter_values(rows.iter().map(|_| as_of))),
        ),
        (
            "method",
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.0.as_str()),
            )),
        ),
        (
            "metric",
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
        ),
        (
            "budget",
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
        ),
        (
            "value",
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.3))),
        ),
        (
            "share_of_oracle",
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.4))),
        ),
    ];
    crate::export::write_columns(path, columns).map_err(|source| super::ModelError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::labels::Outcome;

    #[test]
    fn auc_of_perfect_inverse_and_tied_rankings() {
        let labels = [false, false, true, true];
        assert_eq!(roc_auc(&[0.1, 0.2, 0.8, 0.9], &labels), 1.0);
        assert_eq!(roc_auc(&[0.9, 0.8, 0.2, 0.1], &labels), 0.0);
        assert_eq!(roc_auc(&[0.5; 4], &labels), 0.5);
        assert!(roc_auc(&[0.5; 4], &[true; 4]).is_nan());
        // NaN scores tie with each other and rank above every number
        // (total order): the two positives outrank both negatives.
        assert_eq!(roc_auc(&[0.1, 0.2, f64::NAN, f64::NAN], &labels), 1.0);
    }

    /// 20 keys ranked in key order (hot score 20 − i), all 100 B but `k2`
    /// (300 B). In the horizon: `k0` read 3 times (300 B), `k2` 6 times
    /// (600 B), `k3` once (50 B), `k5` written 10 times, `k1` written
    /// twice; keys first seen in the horizon add 5 accesses and 50 B read:
    /// 25 accesses and 1000 B read in all. Worked by hand:
    /// - keys: 1% and 5% of 20 keys is 1 key (`k0`): 3/25; 10% is 2 keys
    ///   (`k0`, `k1`): 5/25; 20% is 4 (`k0`–`k3`): 12/25.
    /// - bytes (2200 B in all; each key worth its score times its size, so
    ///   taken by score, `k0`, `k1`, `k2`, …, each if it fits): 1% (22 B)
    ///   takes nothing; 5% (110 B) `k0`: 300/1000; 10% (220 B) `k0`, `k1`
    ///   (`k2`'s 300 B do not fit): 300/1000; 20% (440 B) `k0`, `k1`, then
    ///   `k3`, `k4` (`k2` does not fit): 350/1000.
    /// - hot = {k0, k2, k5}: `k0` outranks all 17 others, `k2` 16 (not
    ///   `k1`), `k5` 14: AUC 47/51; the top 1% (`k0`) is hot: precision 1.
    /// - churn = {k1, k5}, churn score = i: `k1` outranks `k0`, `k5`
    ///   outranks `k0`, `k2`, `k3`, `k4`: AUC 5/36; the top 1% (`k19`) does
    ///   not churn: precision 0.
    #[test]
    fn judge_matches_a_small_example_worked_by_hand() {
        let keys = 20;
        let mut outcomes = vec![Outcome::default(); keys];
        let outcome = |accesses, bytes_read, writes| Outcome {
            accesses,
            bytes_read,
            writes,
            reads_before_write: 0,
        };
        outcomes[0] = outcome(3, 300, 0);
        outcomes[1] = outcome(2, 0, 2);
        outcomes[2] = outcome(6, 600, 0);
        outcomes[3] = outcome(1, 50, 0);
        outcomes[5] = outcome(10, 0, 10);
        let mut hot = vec![false; keys];
        for i in [0, 2, 5] {
            hot[i] = true;
        }
        let mut churn = vec![false; keys];
        for i in [1, 5] {
            churn[i] = true;
        }
        let cutoff = LabelledCutoff {
            cutoff: 0,
            features: crate::features::FeatureRows::Built(
                crate::features::FeatureTable::from_batches(0, 1, true, 0, Vec::new()),
            ),
            outcomes,
            hot,
            churn,
            total: outcome(3 + 2 + 6 + 1 + 10 + 3, 1000, 12),
        };
        let mut sizes = vec![100.0; keys];
        sizes[2] = 300.0;
        let ranking = Ranking {
            method: "by hand".into(),
            hot: (0..keys).map(|i| (keys - i) as f64).collect(),
            churn: (0..keys).map(|i| i as f64).collect(),
            byte_value: None,
        };
        let judged = judge(&ranking, &cutoff, &sizes);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        for (got, want) in
            judged
                .capture_keys
                .iter()
                .zip([3.0 / 25.0, 3.0 / 25.0, 5.0 / 25.0, 12.0 / 25.0])
        {
            assert!(
                close(*got, want),
                "capture by keys {:?}",
                judged.capture_keys
            );
        }
        for (got, want) in judged.capture_bytes.iter().zip([0.0, 0.3, 0.3, 0.35]) {
            assert!(
                close(*got, want),
                "capture by bytes {:?}",
                judged.capture_bytes
            );
        }
        assert!(close(judged.auc_hot, 47.0 / 51.0), "{}", judged.auc_hot);
        assert!(close(judged.auc_churn, 5.0 / 36.0), "{}", judged.auc_churn);
        assert_eq!(judged.precision_hot, 1.0);
        assert_eq!(judged.precision_churn, 0.0);
    }

    #[test]
    fn precision_counts_the_top_share() {
        let scores: Vec<f64> = (0..200).map(f64::from).collect();
        let labels: Vec<bool> = (0..200).map(|i| i >= 199).collect();
        assert_eq!(precision_at(&scores, &labels, 0.01), 0.5);
    }
}
