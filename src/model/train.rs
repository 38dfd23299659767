//! Training over rolling cut-offs: for a training cut-off T and horizon H the
//! model learns from cut-offs T−H, T−2H, …, each labelled by its own next
//! window, so every label lies at or before T and nothing after T is read.

use ndarray::{Array2, Axis, concatenate};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::ModelError;
use super::input::raw_inputs;
use super::labels::{Horizon, LabelRules, Outcome, classify};
use super::predictor::{Hyperparameters, Predictor, TrainingSet};
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
    /// The labelled training cut-offs, for picking heuristic settings.
    pub cutoffs: Vec<LabelledCutoff>,
}

/// Trains a model; `on_step` hears what is being done.
pub fn train(
    source: &LogSource,
    options: &TrainOptions,
    on_step: &dyn Fn(&str),
) -> Result<TrainedModel, ModelError> {
    let mut cutoffs = Vec::new();
    for step in 1..=options.cutoffs {
        let cutoff = options.as_of - step as i64 * options.horizon;
        on_step(&format!(
            "cut-off {step}/{}: {}",
            options.cutoffs,
            format_instant(cutoff)
        ));
        match LabelledCutoff::build(source, cutoff, options.horizon, &options.rules) {
            Ok(labelled) => cutoffs.push(labelled),
            Err(ModelError::Logs(LogError::NothingInRange { .. })) => {
                tracing::warn!(cutoff = %format_instant(cutoff), "no history before this cut-off; skipped");
            }
            Err(error) => return Err(error),
        }
    }
    if cutoffs.is_empty() {
        return Err(ModelError::InvalidOption {
            field: "as_of",
            problem: format!(
                "leaves no cut-off with history: {} cut-offs of {}s before {} all precede the first event",
                options.cutoffs,
                options.horizon / 1_000_000,
                format_instant(options.as_of)
            ),
        });
    }
    let set = training_set(
        &cutoffs,
        options.hyperparameters.max_rows,
        options.hyperparameters.seed,
    );
    let rows_available = cutoffs.iter().map(|c| c.outcomes.len()).sum();
    on_step(&format!(
        "fitting {} model on {} rows",
        options.hyperparameters.kind,
        set.hot.len()
    ));
    let predictor = Predictor::fit(&set, &options.hyperparameters)?;
    let window = TrainingWindow {
        as_of: format_instant(options.as_of),
        horizon_seconds: options.horizon / 1_000_000,
        cutoffs: cutoffs.iter().map(|c| format_instant(c.cutoff)).collect(),
        rules: options.rules,
        rows_available,
        rows_used: set.hot.len(),
    };
    Ok(TrainedModel {
        predictor,
        window,
        cutoffs,
    })
}

/// Stacks the cut-offs' rows and keeps a uniform sample of at most `max_rows`.
fn training_set(cutoffs: &[LabelledCutoff], max_rows: usize, seed: u64) -> TrainingSet {
    let raws: Vec<Array2<f64>> = cutoffs.iter().map(|c| raw_inputs(&c.features)).collect();
    let views: Vec<_> = raws.iter().map(|r| r.view()).collect();
    let raw = concatenate(Axis(0), &views).expect("same input columns");
    let hot: Vec<bool> = cutoffs.iter().flat_map(|c| c.hot.iter().copied()).collect();
    let churn: Vec<bool> = cutoffs
        .iter()
        .flat_map(|c| c.churn.iter().copied())
        .collect();
    let accesses: Vec<f64> = cutoffs
        .iter()
        .flat_map(|c| c.outcomes.iter().map(|o| o.accesses as f64))
        .collect();
    if raw.nrows() <= max_rows {
        return TrainingSet {
            raw,
            hot,
            churn,
            accesses,
        };
    }
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
    let mut keep = rand::seq::index::sample(&mut rng, raw.nrows(), max_rows).into_vec();
    keep.sort_unstable();
    TrainingSet {
        raw: raw.select(Axis(0), &keep),
        hot: keep.iter().map(|&i| hot[i]).collect(),
        churn: keep.iter().map(|&i| churn[i]).collect(),
        accesses: keep.iter().map(|&i| accesses[i]).collect(),
    }
}
