//! Training over rolling cut-offs: for a training cut-off T and horizon H the
//! model learns from cut-offs T−H, T−2H, …, each labelled by its own next
//! window, so every label lies at or before T and nothing after T is read.

use ndarray::{Axis, concatenate};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::ModelError;
use super::guard::{Guard, HeldOutCounts, HeldOutScores};
use super::input::{raw_inputs_by_batch, raw_inputs_of};
use super::labels::{Horizon, LabelRules, Outcome, classify};
use super::predictor::{CountTarget, Hyperparameters, Predictor, Scores, TrainingSet};
use crate::features::{self, FeatureOptions, FeatureTable};
use crate::logs::{LogError, LogSource};
use crate::time::format_instant;

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
    pub features: FeatureTable,
    pub outcomes: Vec<Outcome>,
    pub hot: Vec<bool>,
    pub churn: Vec<bool>,
    /// Totals over every key in the horizon, new keys included.
    pub total: Outcome,
}

impl LabelledCutoff {
    /// Features as of `cutoff` and outcomes over `(cutoff, cutoff + horizon]`.
    pub fn build(
        source: &LogSource,
        cutoff: i64,
        horizon: i64,
        rules: &LabelRules,
    ) -> Result<Self, ModelError> {
        let features = features::compute(
            source,
            FeatureOptions {
                as_of: cutoff,
                horizon,
                since: None,
            },
            &|_| {},
        )?;
        let future = Horizon::observe(source, cutoff, horizon)?;
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
    /// The given keys only (ascending row indices); the totals become theirs.
    pub fn subset(&self, rows: &[usize]) -> LabelledCutoff {
        let outcomes: Vec<Outcome> = rows.iter().map(|&row| self.outcomes[row]).collect();
        let mut total = Outcome::default();
        for outcome in &outcomes {
            total.add(*outcome);
        }
        LabelledCutoff {
            cutoff: self.cutoff,
            features: self.features.take(rows),
            outcomes,
            hot: rows.iter().map(|&row| self.hot[row]).collect(),
            churn: rows.iter().map(|&row| self.churn[row]).collect(),
            total,
        }
    }

    /// The same cut-off with `target` counted as its accesses, so that
    /// capture is judged on what a model was trained to predict.
    pub fn counting(&self, target: CountTarget) -> LabelledCutoff {
        let count = |outcome: &Outcome| Outcome {
            accesses: target.of(outcome),
            ..*outcome
        };
        LabelledCutoff {
            cutoff: self.cutoff,
            features: self.features.clone(),
            outcomes: self.outcomes.iter().map(count).collect(),
            hot: self.hot.clone(),
            churn: self.churn.clone(),
            total: count(&self.total),
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
/// oldest first, and of each only its sampled rows are kept, so memory
/// holds one cut-off's features at a time (the newest, which the guard
/// judges on, last) plus the sampled training rows.
pub fn train(
    source: &LogSource,
    options: &TrainOptions,
    on_step: &dyn Fn(&str),
) -> Result<TrainedModel, ModelError> {
    let hyper = &options.hyperparameters;
    let quota = (hyper.max_rows / options.cutoffs).max(1);
    let mut samples = Vec::new();
    let mut cutoffs_used = Vec::new();
    let mut rows_available = 0;
    let mut newest = None;
    for step in (1..=options.cutoffs).rev() {
        let cutoff = options.as_of - step as i64 * options.horizon;
        on_step(&format!(
            "cut-off {}/{}: {}",
            options.cutoffs + 1 - step,
            options.cutoffs,
            format_instant(cutoff)
        ));
        drop(newest.take());
        let labelled = match LabelledCutoff::build(source, cutoff, options.horizon, &options.rules)
        {
            Ok(labelled) => labelled,
            Err(ModelError::Logs(LogError::NothingInRange { .. })) => {
                tracing::warn!(cutoff = %format_instant(cutoff), "no history before this cut-off; skipped");
                continue;
            }
            Err(error) => return Err(error),
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
    let guard = if options.guard {
        let held_back = if samples.len() == 1 {
            tracing::warn!(
                "one cut-off has history: no held-out data to trust the learner on, so the best counter ranks"
            );
            None
        } else {
            on_step(&format!(
                "holding out {}: fitting {} model on the older cut-offs",
                format_instant(newest.cutoff),
                hyper.kind
            ));
            Some(Predictor::fit(&stack(&samples[1..]), hyper)?)
        };
        let mut counts = HeldOutCounts::new(options.rules.churn_min_writes);
        let mut held_out_scores = Scores::default();
        for raw in raw_inputs_by_batch(&newest.features) {
            counts.extend(raw.view());
            if let Some(model) = &held_back {
                let scores = model.score_unguarded(raw.view());
                held_out_scores.accesses.extend(scores.accesses);
                held_out_scores.churn.extend(scores.churn);
            }
        }
        let held_out = held_back.as_ref().map(|model| HeldOutScores {
            accesses: &held_out_scores.accesses,
            churn: &held_out_scores.churn,
            churn_learned_nothing: model.churn_is_constant(),
        });
        Some(Guard::choose(
            held_out,
            &newest.counting(hyper.target),
            counts,
        ))
    } else {
        None
    };
    let in_sample = newest.subset(&newest_rows);
    drop(newest);
    let set = stack(&samples);
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

fn stack(samples: &[TrainingSet]) -> TrainingSet {
    let views: Vec<_> = samples.iter().map(|s| s.raw.view()).collect();
    TrainingSet {
        raw: concatenate(Axis(0), &views).expect("same input columns"),
        hot: samples.iter().flat_map(|s| s.hot.iter().copied()).collect(),
        churn: samples
            .iter()
            .flat_map(|s| s.churn.iter().copied())
            .collect(),
        accesses: samples
            .iter()
            .flat_map(|s| s.accesses.iter().copied())
            .collect(),
    }
}
