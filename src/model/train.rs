//! Training over rolling cut-offs: for a training cut-off T and horizon H the
//! model learns from cut-offs T−H, T−2H, …, each labelled by its own next
//! window, so every label lies at or before T and nothing after T is read.
//! The cut-offs come from the access logs, or from feature and label
//! tables built elsewhere ([`CutoffSource`]): the same rows either way.

use std::path::{Path, PathBuf};

use ndarray::{Axis, concatenate};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::ModelError;
use super::guard::{Guard, HeldOutCounts, HeldOutScores, in_row_order};
use super::input::{raw_inputs_drained, raw_inputs_of};
use super::label_table::LabelTable;
use super::labels::{Horizon, LabelRules, Outcome, classify};
use super::predictor::{CountTarget, Hyperparameters, Predictor, Scores, TrainingSet};
use crate::features::{self, FeatureOptions, FeatureRows, FeatureTable};
use crate::logs::{LogError, LogSource};
use crate::time::{format_duration, format_instant};

/// Where labelled cut-offs come from.
pub enum CutoffSource<'a> {
    /// Features and labels computed from the access logs.
    Logs(&'a LogSource),
    /// Tables built elsewhere (by the SQL in `sql/`, or by `shadowcast
    /// features` and `shadowcast labels`), one pair per cut-off, oldest
    /// first.
    Tables(&'a [TablePair]),
}

/// The feature table and the label table of one cut-off.
#[derive(Clone, Debug)]
pub struct TablePair {
    pub features: PathBuf,
    pub labels: PathBuf,
    pub cutoff: i64,
    pub horizon: i64,
}

impl TablePair {
    /// Pairs each feature table with the label table of the same cut-off
    /// (reading only what each records), oldest first. Refuses lists of
    /// different lengths, a cut-off with no partner or listed twice, and
    /// tables of different horizons, naming the files.
    pub fn match_up(
        features: &[PathBuf],
        labels: &[PathBuf],
    ) -> Result<Vec<TablePair>, ModelError> {
        let invalid = |problem: String| ModelError::InvalidOption {
            field: "labels",
            problem,
        };
        if features.len() != labels.len() {
            return Err(invalid(format!(
                "lists {} label tables for {} feature tables: give one of each per cut-off",
                labels.len(),
                features.len()
            )));
        }
        let mut label_cutoffs = Vec::with_capacity(labels.len());
        for path in labels {
            label_cutoffs.push((LabelTable::recorded_cutoff(path)?, path));
        }
        let mut pairs: Vec<TablePair> = Vec::with_capacity(features.len());
        for path in features {
            let (cutoff, horizon) = FeatureTable::recorded_cutoff(path)?;
            if let Some(earlier) = pairs.iter().find(|pair| pair.cutoff == cutoff) {
                return Err(invalid(format!(
                    "{} and {} are both the features of {}",
                    earlier.features.display(),
                    path.display(),
                    format_instant(cutoff)
                )));
            }
            let Some(&((_, label_horizon), label_path)) = label_cutoffs
                .iter()
                .find(|((label_cutoff, _), _)| *label_cutoff == cutoff)
            else {
                return Err(invalid(format!(
                    "no label table has the cut-off of {} ({}); the label tables are of {}",
                    path.display(),
                    format_instant(cutoff),
                    label_cutoffs
                        .iter()
                        .map(|((at, _), _)| format_instant(*at))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            if label_horizon != horizon {
                return Err(invalid(format!(
                    "{} has a horizon of {}, its label table {} one of {}",
                    path.display(),
                    format_duration(horizon),
                    label_path.display(),
                    format_duration(label_horizon)
                )));
            }
            pairs.push(TablePair {
                features: path.clone(),
                labels: label_path.clone(),
                cutoff,
                horizon,
            });
        }
        if let Some(pair) = pairs.iter().find(|pair| pair.horizon != pairs[0].horizon) {
            return Err(invalid(format!(
                "{} has a horizon of {}, {} one of {}: the cut-offs of one model share a horizon",
                pairs[0].features.display(),
                format_duration(pairs[0].horizon),
                pair.features.display(),
                format_duration(pair.horizon)
            )));
        }
        pairs.sort_by_key(|pair| pair.cutoff);
        Ok(pairs)
    }
}

impl CutoffSource<'_> {
    /// The labelled cut-off at `cutoff`, or `None` when there is nothing
    /// to learn from there: no event at or before it in the logs, or no
    /// table pair of it.
    pub fn labelled(
        &self,
        cutoff: i64,
        horizon: i64,
        rules: &LabelRules,
    ) -> Result<Option<LabelledCutoff>, ModelError> {
        match self {
            CutoffSource::Logs(source) => {
                match LabelledCutoff::build(source, cutoff, horizon, rules) {
                    Ok(labelled) => Ok(Some(labelled)),
                    Err(ModelError::Logs(LogError::NothingInRange { .. })) => Ok(None),
                    Err(error) => Err(error),
                }
            }
            CutoffSource::Tables(pairs) => pairs
                .iter()
                .find(|pair| pair.cutoff == cutoff)
                .map(|pair| LabelledCutoff::from_tables(&pair.features, &pair.labels, rules))
                .transpose(),
        }
    }

    /// The cut-offs a model trained as of `as_of` learns from, oldest
    /// first: `count` steps of `horizon` back from the logs, or every
    /// table pair.
    fn cutoffs(&self, as_of: i64, horizon: i64, count: usize) -> Vec<i64> {
        match self {
            CutoffSource::Logs(_) => (1..=count as i64)
                .rev()
                .map(|step| as_of - step * horizon)
                .collect(),
            CutoffSource::Tables(pairs) => pairs.iter().map(|pair| pair.cutoff).collect(),
        }
    }
}

/// Options of one training run, checked by [`TrainOptions::check`].
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// The training cut-off: no event after it is read.
    pub as_of: i64,
    /// Horizon H of the labels, in microseconds.
    pub horizon: i64,
    /// How many rolling cut-offs to learn from (default 4).
    pub cutoffs: usize,
    pub rules: LabelRules,
    pub hyperparameters: Hyperparameters,
    /// Hold the newest cut-off out to choose between the learner, the best
    /// counter and blends of the two ([`super::guard`]).
    pub guard: bool,
}

impl TrainOptions {
    pub fn check(mut self) -> Result<Self, ModelError> {
        let bad = |field: &'static str, problem: &str| {
            Err(ModelError::InvalidOption {
                field,
                problem: problem.to_string(),
            })
        };
        if self.horizon <= 0 {
            return bad("horizon", "must be positive");
        }
        if !(1..=64).contains(&self.cutoffs) {
            return bad("cutoffs", "must be between 1 and 64");
        }
        if !(self.rules.hot_share > 0.0 && self.rules.hot_share < 1.0) {
            return bad("hot_share", "must be strictly between 0 and 1");
        }
        if self.rules.churn_min_writes == 0 {
            return bad("churn_min_writes", "must be at least 1");
        }
        self.hyperparameters = self.hyperparameters.check()?;
        Ok(self)
    }
}

/// One cut-off with its features and what then happened to every key.
pub struct LabelledCutoff {
    pub cutoff: i64,
    pub features: FeatureRows,
    pub outcomes: Vec<Outcome>,
    pub hot: Vec<bool>,
    pub churn: Vec<bool>,
    /// Totals over every key in the horizon, new keys included.
    pub total: Outcome,
}

impl LabelledCutoff {
    /// Features as of `cutoff` (their rows built on demand) and outcomes
    /// over `(cutoff, cutoff + horizon]`.
    pub fn build(
        source: &LogSource,
        cutoff: i64,
        horizon: i64,
        rules: &LabelRules,
    ) -> Result<Self, ModelError> {
        // The horizon first: its scan's partial tallies come and go before
        // the key states are built.
        let future = Horizon::observe(source, cutoff, horizon)?;
        let features = FeatureRows::OnDemand(features::scan(
            source,
            FeatureOptions {
                as_of: cutoff,
                horizon,
                since: None,
            },
            &|_| {},
        )?);
        let outcomes = future.outcomes_of(&features);
        let (hot, churn) = classify(&outcomes, rules);
        Ok(LabelledCutoff {
            cutoff,
            features,
            outcomes,
            hot,
            churn,
            total: future.total,
        })
    }
}

impl LabelledCutoff {
    /// The cut-off of a feature table and the label table of the same
    /// cut-off, built elsewhere; `rules` classify the label table's counts.
    pub fn from_tables(
        features: &Path,
        labels: &Path,
        rules: &LabelRules,
    ) -> Result<Self, ModelError> {
        let table = FeatureTable::read_parquet(features)?;
        let label_table = LabelTable::read(labels)?;
        if (table.as_of, table.horizon) != (label_table.as_of, label_table.horizon) {
            return Err(ModelError::InvalidOption {
                field: "labels",
                problem: format!(
                    "{} is of {} + {}, but {} of {} + {}",
                    labels.display(),
                    format_instant(label_table.as_of),
                    format_duration(label_table.horizon),
                    features.display(),
                    format_instant(table.as_of),
                    format_duration(table.horizon)
                ),
            });
        }
        if label_table.keys_seen_before != table.len() {
            return Err(ModelError::InvalidOption {
                field: "labels",
                problem: format!(
                    "{} names {} keys seen before its cut-off, {} holds {}: were they built from the same logs?",
                    labels.display(),
                    label_table.keys_seen_before,
                    features.display(),
                    table.len()
                ),
            });
        }
        let table = FeatureRows::Built(table);
        let outcomes = label_table.future.outcomes_of(&table);
        let (hot, churn) = classify(&outcomes, rules);
        Ok(LabelledCutoff {
            cutoff: label_table.as_of,
            features: table,
            outcomes,
            hot,
            churn,
            total: label_table.future.total,
        })
    }

    /// The given keys only (ascending row indices); the totals become theirs.
    pub fn subset(&self, rows: &[usize]) -> LabelledCutoff {
        let outcomes: Vec<Outcome> = rows.iter().map(|&row| self.outcomes[row]).collect();
        let mut total = Outcome::default();
        for outcome in &outcomes {
            total.add(*outcome);
        }
        LabelledCutoff {
            cutoff: self.cutoff,
            features: FeatureRows::Built(self.features.take(rows)),
            outcomes,
            hot: rows.iter().map(|&row| self.hot[row]).collect(),
            churn: rows.iter().map(|&row| self.churn[row]).collect(),
            total,
        }
    }

    /// The same cut-off with `target` counted as its accesses, so that
    /// capture is judged on what a model was trained to predict.
    pub fn counting(self, target: CountTarget) -> LabelledCutoff {
        let count = |outcome: &Outcome| Outcome {
            accesses: target.of(outcome),
            ..*outcome
        };
        LabelledCutoff {
            outcomes: self.outcomes.iter().map(count).collect(),
            total: count(&self.total),
            ..self
        }
    }

    /// The same cut-off with its feature table built whole, for callers
    /// that read every row more than once.
    pub fn built(self) -> LabelledCutoff {
        LabelledCutoff {
            features: self.features.built(),
            ..self
        }
    }
}

/// When and on what a model was trained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingWindow {
    /// The training cut-off: the model saw no event after it.
    pub as_of: String,
    pub horizon_seconds: i64,
    /// The cut-offs whose features and labels were learned from.
    pub cutoffs: Vec<String>,
    pub rules: LabelRules,
    /// Rows (key × cut-off) available, and kept after sampling.
    pub rows_available: usize,
    pub rows_used: usize,
}

pub struct TrainedModel {
    pub predictor: Predictor,
    pub window: TrainingWindow,
    /// The keys of the newest training cut-off the model was fitted on,
    /// labelled (for in-sample checks).
    pub in_sample: LabelledCutoff,
}

/// Trains a model; `on_step` hears what is being done. Cut-offs are built
/// oldest first, each as its keys' states, and of each only the sampled
/// rows are built and kept, so memory holds one cut-off's states at a time
/// (the newest, which the guard judges on, last, freed shard by shard as
/// the guard reads it) plus the sampled training rows.
pub fn train(
    data: &CutoffSource,
    options: &TrainOptions,
    on_step: &dyn Fn(&str),
) -> Result<TrainedModel, ModelError> {
    let hyper = &options.hyperparameters;
    let quota = (hyper.max_rows / options.cutoffs).max(1);
    let mut samples = Vec::new();
    let mut cutoffs_used = Vec::new();
    let mut rows_available = 0;
    let mut newest = None;
    let mut held_back = None;
    let cutoffs = data.cutoffs(options.as_of, options.horizon, options.cutoffs);
    for (index, &cutoff) in cutoffs.iter().enumerate() {
        let step = cutoffs.len() - index;
        on_step(&format!(
            "cut-off {}/{}: {}",
            index + 1,
            cutoffs.len(),
            format_instant(cutoff)
        ));
        drop(newest.take());
        if index + 1 == cutoffs.len() && options.guard && !samples.is_empty() {
            // Fitted before the newest cut-off is built, so that the fit's
            // memory and the newest cut-off's never add up.
            on_step(&format!(
                "holding out {}: fitting {} model on the older cut-offs",
                format_instant(cutoff),
                hyper.kind
            ));
            held_back = Some(Predictor::fit(&stack(samples.iter().rev()), hyper)?);
        }
        let Some(labelled) = data.labelled(cutoff, options.horizon, &options.rules)? else {
            tracing::warn!(cutoff = %format_instant(cutoff), "no history before this cut-off; skipped");
            continue;
        };
        rows_available += labelled.outcomes.len();
        cutoffs_used.push(format_instant(cutoff));
        let rows = sample_rows(
            labelled.outcomes.len(),
            quota,
            hyper.seed.wrapping_add(step as u64),
        );
        samples.push(training_set(&labelled, hyper.target, &rows));
        newest = Some((labelled, rows));
    }
    // Newest first, as the cut-offs are listed and stacked.
    samples.reverse();
    cutoffs_used.reverse();
    let Some((newest, newest_rows)) = newest else {
        return Err(ModelError::InvalidOption {
            field: "as_of",
            problem: format!(
                "leaves no cut-off with history: {} cut-offs of {}s before {} all precede the first event",
                options.cutoffs,
                options.horizon / 1_000_000,
                format_instant(options.as_of)
            ),
        });
    };
    let in_sample = newest.subset(&newest_rows);
    let guard = if options.guard {
        if held_back.is_none() {
            tracing::warn!(
                "one cut-off has history: no held-out data to trust the learner on, so the best counter ranks"
            );
        }
        Some(guard_judged_on(
            newest.counting(hyper.target),
            held_back.as_ref(),
            options.rules.churn_min_writes,
        ))
    } else {
        drop(newest);
        None
    };
    let set = stack(samples.iter());
    on_step(&format!(
        "fitting {} model on {} rows",
        hyper.kind,
        set.hot.len()
    ));
    let mut predictor = Predictor::fit(&set, hyper)?;
    if let Some(guard) = guard {
        predictor.set_guard(guard);
    }
    let window = TrainingWindow {
        as_of: format_instant(options.as_of),
        horizon_seconds: options.horizon / 1_000_000,
        cutoffs: cutoffs_used,
        rules: options.rules,
        rows_available,
        rows_used: set.hot.len(),
    };
    Ok(TrainedModel {
        predictor,
        window,
        in_sample,
    })
}

/// The guard chosen on the held-out cut-off `held_out` for the model fitted
/// without it (`None`: no older cut-off to fit one on).
fn guard_judged_on(
    mut held_out: LabelledCutoff,
    held_back: Option<&Predictor>,
    churn_min_writes: u64,
) -> Guard {
    // The guard reads each key's inputs once, then only outcomes: the
    // features go, batch by batch, as the counts and scores come.
    let empty = FeatureTable::empty(held_out.cutoff, held_out.features.cutoff().1);
    let features = std::mem::replace(&mut held_out.features, FeatureRows::Built(empty));
    let mut counts = HeldOutCounts::new(churn_min_writes);
    let mut scores = Scores::default();
    let mut gathered_rows = Vec::with_capacity(features.len());
    for (rows, raw) in raw_inputs_drained(features) {
        counts.extend(raw.view());
        if let Some(model) = held_back {
            let batch_scores = model.score_unguarded(raw.view());
            scores.accesses.extend(batch_scores.accesses);
            scores.churn.extend(batch_scores.churn);
        }
        gathered_rows.extend(rows);
    }
    let counts = counts.in_row_order(&gathered_rows);
    let accesses = in_row_order(scores.accesses, &gathered_rows);
    let churn = in_row_order(scores.churn, &gathered_rows);
    let scores = held_back.map(|model| HeldOutScores {
        accesses: &accesses,
        churn: &churn,
        churn_learned_nothing: model.churn_is_constant(),
    });
    Guard::choose(scores, &held_out, counts)
}

/// A uniform sample of at most `quota` of `keys` rows, ascending.
fn sample_rows(keys: usize, quota: usize, seed: u64) -> Vec<usize> {
    let mut rows: Vec<usize> = if keys <= quota {
        (0..keys).collect()
    } else {
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
        rand::seq::index::sample(&mut rng, keys, quota).into_vec()
    };
    rows.sort_unstable();
    rows
}

/// The training rows `rows` of one cut-off.
fn training_set(cutoff: &LabelledCutoff, target: CountTarget, rows: &[usize]) -> TrainingSet {
    TrainingSet {
        raw: raw_inputs_of(&cutoff.features, rows),
        hot: rows.iter().map(|&i| cutoff.hot[i]).collect(),
        churn: rows.iter().map(|&i| cutoff.churn[i]).collect(),
        accesses: rows
            .iter()
            .map(|&i| target.of(&cutoff.outcomes[i]) as f64)
            .collect(),
    }
}

fn stack<'a>(samples: impl Iterator<Item = &'a TrainingSet> + Clone) -> TrainingSet {
    let views: Vec<_> = samples.clone().map(|s| s.raw.view()).collect();
    TrainingSet {
        raw: concatenate(Axis(0), &views).expect("same input columns"),
        hot: samples
            .clone()
            .flat_map(|s| s.hot.iter().copied())
            .collect(),
        churn: samples
            .clone()
            .flat_map(|s| s.churn.iter().copied())
            .collect(),
        accesses: samples.flat_map(|s| s.accesses.iter().copied()).collect(),
    }
}
