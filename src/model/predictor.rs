//! The model kinds and what every model predicts for a key: the probability
//! that it is hot, the probability that it churns, and its expected accesses
//! in the horizon (for ranking).
//!
//! * `logistic`: linfa-logistic for the two classes, and ridge regression
//!   (least squares from linfa-linear on data augmented with the penalty)
//!   on log(1 + accesses) for the count. (linfa-linear's
//!   Poisson/Tweedie regressor would fit counts more directly, but its
//!   optimizer did not return on correlated inputs in our tests.)
//! * `tree` and `forest`: smartcore regression trees / random forests. A
//!   regression tree fitted to 0/1 labels predicts the share of positives in
//!   each leaf, a probability; the count is fitted on log(1 + accesses).
//!   (linfa-trees' decision tree only predicts labels, and ranking keys needs
//!   scores.)
//! * `gbdt`: gradient-boosted trees from forust-ml, log loss for the two
//!   classes and squared loss on log(1 + accesses) for the count, stored
//!   and scored as a flat [`Ensemble`]. Why
//!   forust-ml and not perpetual (kind `gbdt-perpetual` with the cargo
//!   feature `gbdt-peer`, kept for the comparison): see the README's Models
//!   section and `benches/gbdt_crates.sh`.

use forust_ml::objective::ObjectiveType;
use forust_ml::{GradientBooster, Matrix};

use super::ensemble::{Ensemble, Ensembles};
use linfa::prelude::*;
use linfa_linear::{FittedLinearRegression, LinearRegression};
use linfa_logistic::{FittedLogisticRegression, LogisticRegression};
use ndarray::{Array1, Array2, ArrayView2};
use serde::{Deserialize, Serialize};
use smartcore::ensemble::random_forest_regressor::{
    RandomForestRegressor, RandomForestRegressorParameters,
};
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::tree::decision_tree_regressor::{
    DecisionTreeRegressor, DecisionTreeRegressorParameters,
};

use super::ModelError;
use super::guard::{ChurnSource, Guard};
use super::input::Preprocess;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Logistic regression (classes) and ridge regression on log counts.
    Logistic,
    /// One regression tree per target.
    Tree,
    /// A random forest per target.
    Forest,
    /// Gradient-boosted trees (forust-ml) per target.
    Gbdt,
    /// Gradient-boosted trees from perpetual, kept only to compare the two crates.
    #[cfg(feature = "gbdt-peer")]
    #[value(name = "gbdt-perpetual")]
    #[serde(rename = "gbdt-perpetual")]
    GbdtPerpetual,
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ModelKind::Logistic => "logistic",
            ModelKind::Tree => "tree",
            ModelKind::Forest => "forest",
            ModelKind::Gbdt => "gbdt",
            #[cfg(feature = "gbdt-peer")]
            ModelKind::GbdtPerpetual => "gbdt-perpetual",
        })
    }
}

/// What the count model learns to predict for each key in the horizon.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CountTarget {
    /// Every read and write.
    #[default]
    Accesses,
    /// Reads before the key's first write in the horizon: the reads only a
    /// copy made beforehand can serve (what a pre-migration buys).
    ReadsBeforeWrite,
}

impl CountTarget {
    pub fn of(self, outcome: &super::labels::Outcome) -> u64 {
        match self {
            CountTarget::Accesses => outcome.accesses,
            CountTarget::ReadsBeforeWrite => outcome.reads_before_write,
        }
    }
}

/// Hyperparameters, checked by [`Hyperparameters::check`] before training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hyperparameters {
    pub kind: ModelKind,
    /// L2 penalty of the logistic and log-count regressions (default 1.0).
    pub l2: f64,
    /// Optimizer iterations of the logistic regressions (default 100).
    pub max_iterations: u64,
    /// Depth limit of trees (default 10).
    pub max_depth: u16,
    /// Fewest training rows per leaf (default 20).
    pub min_samples_leaf: usize,
    /// Trees per forest (default 20).
    pub trees: usize,
    /// Training rows kept: a uniform sample of each cut-off, split evenly (default 200 000).
    pub max_rows: usize,
    pub seed: u64,
    /// Depth limit of `gbdt`'s trees (default 6).
    #[serde(default = "default_boost_depth")]
    pub boost_depth: u16,
    /// Boosting rounds of `gbdt` (default 100).
    #[serde(default = "default_rounds")]
    pub rounds: usize,
    /// Shrinkage of each boosting round (default 0.1).
    #[serde(default = "default_learning_rate")]
    pub learning_rate: f32,
    /// What the count model predicts (models from before it was a choice predict accesses).
    #[serde(default)]
    pub target: CountTarget,
}

impl Hyperparameters {
    pub fn new(kind: ModelKind) -> Self {
        Hyperparameters {
            kind,
            l2: 1.0,
            max_iterations: 100,
            max_depth: 10,
            min_samples_leaf: 20,
            trees: 20,
            max_rows: 200_000,
            seed: 1,
            boost_depth: default_boost_depth(),
            rounds: default_rounds(),
            learning_rate: default_learning_rate(),
            target: CountTarget::Accesses,
        }
    }

    pub fn check(self) -> Result<Self, ModelError> {
        let bad = |field: &'static str, problem: &str| {
            Err(ModelError::InvalidHyperparameter {
                field,
                problem: problem.to_string(),
            })
        };
        if !(self.l2.is_finite() && self.l2 >= 0.0) {
            return bad("l2", "must be a finite number >= 0");
        }
        if self.max_iterations == 0 {
            return bad("max_iterations", "must be at least 1");
        }
        if self.max_depth == 0 {
            return bad("max_depth", "must be at least 1");
        }
        if self.min_samples_leaf == 0 {
            return bad("min_samples_leaf", "must be at least 1");
        }
        if self.trees == 0 {
            return bad("trees", "must be at least 1");
        }
        if self.max_rows < 100 {
            return bad("max_rows", "must be at least 100");
        }
        if self.boost_depth == 0 || self.boost_depth > super::ensemble::MAX_DEPTH {
            let most = super::ensemble::MAX_DEPTH;
            return bad("boost_depth", &format!("must be between 1 and {most}"));
        }
        if self.rounds == 0 {
            return bad("rounds", "must be at least 1");
        }
        if !(self.learning_rate.is_finite()
            && self.learning_rate > 0.0
            && self.learning_rate <= 1.0)
        {
            return bad("learning_rate", "must be a number in (0, 1]");
        }
        Ok(self)
    }
}

fn default_boost_depth() -> u16 {
    6
}

fn default_rounds() -> usize {
    100
}

fn default_learning_rate() -> f32 {
    0.1
}

type Tree = DecisionTreeRegressor<f64, f64, DenseMatrix<f64>, Vec<f64>>;
type Forest = RandomForestRegressor<f64, f64, DenseMatrix<f64>, Vec<f64>>;

/// Predicts one target.
#[derive(Serialize, Deserialize)]
enum Target {
    /// The training labels held a single value: predict it.
    Constant(f64),
    Logistic(FittedLogisticRegression<f64, bool>),
    /// Least squares on log(1 + value).
    LogLinear(FittedLinearRegression<f64>),
    /// Fitted on the value itself (classes) or on log(1 + value) (counts).
    Tree {
        tree: Tree,
        log_count: bool,
    },
    Forest {
        forest: Forest,
        log_count: bool,
    },
    Boosted {
        ensemble: Ensemble,
        link: Link,
    },
    #[cfg(feature = "gbdt-peer")]
    BoostedPerpetual {
        booster: Box<perpetual::PerpetualBooster>,
        link: Link,
    },
}

/// How a boosted ensemble's raw output becomes a prediction.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
enum Link {
    /// Log-odds of a class: its probability.
    Logit,
    /// log(1 + count), fitted by least squares.
    LogCount,
}

impl Link {
    fn apply(self, raw: f64) -> f64 {
        match self {
            Link::Logit => 1.0 / (1.0 + (-raw).exp()),
            Link::LogCount => raw.exp_m1().max(0.0),
        }
    }

    /// [`apply`](Self::apply) to each of `values`, in place.
    fn apply_in_place(self, values: &mut [f64]) {
        for value in values {
            *value = self.apply(*value);
        }
    }
}

/// A boosted ensemble whose own training rows score NaN or infinite has
/// diverged: refused, so no ranking is built on it.
fn finite_on_training_rows(name: &'static str, raw: Vec<f64>) -> Result<(), ModelError> {
    match raw.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(row) => Err(fit_error(
            name,
            format!(
                "gradient boosting diverged: training row {row} scores {}",
                raw[row]
            ),
        )),
    }
}

/// The column-major copy both boosting crates read.
fn column_major(x: ArrayView2<f64>) -> Vec<f64> {
    x.t().iter().copied().collect()
}

fn dense(x: ArrayView2<f64>) -> DenseMatrix<f64> {
    let values: Vec<f64> = x.as_standard_layout().iter().copied().collect();
    DenseMatrix::new(x.nrows(), x.ncols(), values, false).expect("shape matches values")
}

fn fit_error(target: &'static str, error: impl std::fmt::Display) -> ModelError {
    ModelError::Training {
        target,
        problem: error.to_string(),
    }
}

impl Target {
    fn fit_class(
        name: &'static str,
        x: &Array2<f64>,
        y: &[bool],
        hyper: &Hyperparameters,
    ) -> Result<Self, ModelError> {
        let positives = y.iter().filter(|v| **v).count();
        if positives == 0 || positives == y.len() {
            return Ok(Target::Constant(positives as f64 / y.len().max(1) as f64));
        }
        match hyper.kind {
            ModelKind::Logistic => {
                let data = Dataset::new(x.clone(), Array1::from(y.to_vec()));
                LogisticRegression::default()
                    .alpha(hyper.l2)
                    .max_iterations(hyper.max_iterations)
                    .fit(&data)
                    .map(Target::Logistic)
                    .map_err(|e| fit_error(name, e))
            }
            _ => {
                let values: Vec<f64> = y.iter().map(|&v| f64::from(u8::from(v))).collect();
                Self::fit_tree(name, x, values, hyper, Link::Logit)
            }
        }
    }

    fn fit_count(
        name: &'static str,
        x: &Array2<f64>,
        y: &[f64],
        hyper: &Hyperparameters,
    ) -> Result<Self, ModelError> {
        if y.iter().all(|v| *v == y[0]) {
            return Ok(Target::Constant(y.first().copied().unwrap_or(0.0)));
        }
        match hyper.kind {
            ModelKind::Logistic => {
                // Ridge regression by augmentation: one extra row per input,
                // sqrt(l2) on the diagonal with target 0, then least squares.
                // It keeps the fit solvable when inputs are constant or
                // collinear (a single-table workload, say).
                let inputs = x.ncols();
                let penalty = Array2::from_diag_elem(inputs, hyper.l2.sqrt());
                let augmented = ndarray::concatenate(ndarray::Axis(0), &[x.view(), penalty.view()])
                    .expect("same input columns");
                let logs: Array1<f64> = y
                    .iter()
                    .map(|v| v.ln_1p())
                    .chain(std::iter::repeat_n(0.0, inputs))
                    .collect();
                LinearRegression::new()
                    .fit(&Dataset::new(augmented, logs))
                    .map(Target::LogLinear)
                    .map_err(|e| fit_error(name, e))
            }
            _ => Self::fit_tree(
                name,
                x,
                y.iter().map(|v| v.ln_1p()).collect(),
                hyper,
                Link::LogCount,
            ),
        }
    }

    /// Trees of every kind; `link` says what `y` is (classes, counts, log counts).
    fn fit_tree(
        name: &'static str,
        x: &Array2<f64>,
        y: Vec<f64>,
        hyper: &Hyperparameters,
        link: Link,
    ) -> Result<Self, ModelError> {
        let log_count = matches!(link, Link::LogCount);
        match hyper.kind {
            ModelKind::Gbdt => {
                let columns = column_major(x.view());
                let objective = match link {
                    Link::Logit => ObjectiveType::LogLoss,
                    Link::LogCount => ObjectiveType::SquaredLoss,
                };
                let mut booster = GradientBooster::default()
                    .set_objective_type(objective)
                    .set_iterations(hyper.rounds)
                    .set_learning_rate(hyper.learning_rate)
                    .set_max_depth(usize::from(hyper.boost_depth))
                    .set_seed(hyper.seed);
                let matrix = Matrix::new(&columns, x.nrows(), x.ncols());
                booster
                    .fit_unweighted(&matrix, &y, None)
                    .map_err(|e| fit_error(name, e))?;
                finite_on_training_rows(name, booster.predict(&matrix, true))?;
                let ensemble = Ensemble::from_booster(&booster).map_err(|e| fit_error(name, e))?;
                return Ok(Target::Boosted { ensemble, link });
            }
            #[cfg(feature = "gbdt-peer")]
            ModelKind::GbdtPerpetual => {
                use perpetual::objective::Objective;
                let columns = column_major(x.view());
                let objective = match link {
                    Link::Logit => Objective::LogLoss,
                    Link::LogCount => Objective::SquaredLoss,
                };
                let mut booster = perpetual::PerpetualBooster::default()
                    .set_objective(objective)
                    .set_seed(hyper.seed);
                let matrix = perpetual::Matrix::new(&columns, x.nrows(), x.ncols());
                booster
                    .fit(&matrix, &y, None, None)
                    .map_err(|e| fit_error(name, e))?;
                return finite_on_training_rows(name, booster.predict(&matrix, true)).map(|()| {
                    Target::BoostedPerpetual {
                        booster: Box::new(booster),
                        link,
                    }
                });
            }
            _ => {}
        }
        let matrix = dense(x.view());
        match hyper.kind {
            ModelKind::Forest => {
                let parameters = RandomForestRegressorParameters {
                    max_depth: Some(hyper.max_depth),
                    min_samples_leaf: hyper.min_samples_leaf,
                    min_samples_split: 2 * hyper.min_samples_leaf,
                    n_trees: hyper.trees,
                    m: None,
                    keep_samples: false,
                    seed: hyper.seed,
                };
                Forest::fit(&matrix, &y, parameters)
                    .map(|forest| Target::Forest { forest, log_count })
                    .map_err(|e| fit_error(name, e))
            }
            _ => {
                let parameters = DecisionTreeRegressorParameters {
                    max_depth: Some(hyper.max_depth),
                    min_samples_leaf: hyper.min_samples_leaf,
                    min_samples_split: 2 * hyper.min_samples_leaf,
                    seed: Some(hyper.seed),
                };
                Tree::fit(&matrix, &y, parameters)
                    .map(|tree| Target::Tree { tree, log_count })
                    .map_err(|e| fit_error(name, e))
            }
        }
    }

    /// Appends the prediction of each of `keys` keys whose preprocessed
    /// inputs are laid out column by column, input `j` at
    /// `columns[j * COLUMN_STRIDE..][..keys]`, to `out`: boosted trees
    /// tree by tree over the block, linear targets key by key.
    fn predict_columns(&self, columns: &[f64], keys: usize, inputs: usize, out: &mut Vec<f64>) {
        match self {
            Target::Boosted { ensemble, link } => {
                let first = out.len();
                ensemble.score_columns(columns, COLUMN_STRIDE, keys, out);
                link.apply_in_place(&mut out[first..]);
            }
            _ => {
                let mut row = vec![0.0; inputs];
                out.extend((0..keys).map(|key| {
                    for (column, value) in row.iter_mut().enumerate() {
                        *value = columns[column * COLUMN_STRIDE + key];
                    }
                    self.predict_row(&row)
                }));
            }
        }
    }

    /// Whether the target predicts rows without a matrix (linear scores and
    /// boosted trees; smartcore's trees predict whole matrices).
    fn predicts_by_row(&self) -> bool {
        matches!(
            self,
            Target::Constant(_)
                | Target::Logistic(_)
                | Target::LogLinear(_)
                | Target::Boosted { .. }
        )
    }

    /// This target with the preprocessing folded in, when it is linear.
    fn folded(&self, preprocess: &Preprocess) -> Option<FoldedLinear> {
        let (mean, inverse_scale) = preprocess.standardization();
        let fold = |weights: Vec<f64>, intercept: f64, output| {
            let weights: Vec<f64> = weights
                .iter()
                .zip(inverse_scale)
                .map(|(w, s)| w * s)
                .collect();
            let shift: f64 = weights.iter().zip(mean).map(|(w, m)| w * m).sum();
            FoldedLinear {
                weights,
                intercept: intercept - shift,
                output,
            }
        };
        match self {
            Target::Constant(value) => Some(FoldedLinear::constant(*value)),
            Target::Logistic(model) => {
                // linfa-logistic's score is for the majority class.
                let sign = if model.labels().pos.class { 1.0 } else { -1.0 };
                Some(fold(
                    model.params().iter().map(|w| sign * w).collect(),
                    sign * model.intercept(),
                    LinearOutput::Probability,
                ))
            }
            Target::LogLinear(model) => Some(fold(
                model.params().to_vec(),
                model.intercept(),
                LinearOutput::CountFromLog,
            )),
            _ => None,
        }
    }

    /// The prediction of a linear target for one preprocessed row.
    fn predict_row(&self, x: &[f64]) -> f64 {
        let linear = |weights: &Array1<f64>, intercept: f64| {
            let weights = weights.as_slice().expect("fitted weights are contiguous");
            weights.iter().zip(x).map(|(w, v)| w * v).sum::<f64>() + intercept
        };
        match self {
            Target::Constant(value) => *value,
            Target::Logistic(model) => {
                // linfa-logistic's score is for the majority class.
                let z = linear(model.params(), model.intercept());
                let z = if model.labels().pos.class { z } else { -z };
                1.0 / (1.0 + (-z).exp())
            }
            Target::LogLinear(model) => linear(model.params(), model.intercept()).exp_m1().max(0.0),
            _ => unreachable!("trees predict blocks or whole matrices"),
        }
    }

    fn predict(&self, x: ArrayView2<f64>) -> Vec<f64> {
        let from_log = |values: Vec<f64>, log_count: bool| {
            if log_count {
                values.into_iter().map(|v| v.exp_m1().max(0.0)).collect()
            } else {
                values.into_iter().map(|v| v.clamp(0.0, 1.0)).collect()
            }
        };
        match self {
            Target::Constant(_)
            | Target::Logistic(_)
            | Target::LogLinear(_)
            | Target::Boosted { .. } => x
                .axis_iter(ndarray::Axis(0))
                .map(|row| self.predict_row(row.as_slice().expect("contiguous rows")))
                .collect(),
            Target::Tree { tree, log_count } => from_log(
                tree.predict(&dense(x)).expect("fitted tree predicts"),
                *log_count,
            ),
            Target::Forest { forest, log_count } => from_log(
                forest.predict(&dense(x)).expect("fitted forest predicts"),
                *log_count,
            ),
            #[cfg(feature = "gbdt-peer")]
            Target::BoostedPerpetual { booster, link } => {
                let columns = column_major(x);
                let matrix = perpetual::Matrix::new(&columns, x.nrows(), x.ncols());
                let raw = booster.predict(&matrix, true);
                raw.into_iter().map(|v| link.apply(v)).collect()
            }
        }
    }
}

/// Keys scored together: their inputs stay in the cache while each tree
/// walks them, or while each linear target runs down their columns.
const BLOCK: usize = 256;

/// Distance between two columns of a block laid out column by column: not
/// a power of two, so that writing one key's inputs across the columns
/// does not land every store in the same cache set.
const COLUMN_STRIDE: usize = BLOCK + 8;

/// `rows` (`inputs` values a row, at most [`BLOCK`] rows) laid out column
/// by column, input j at `columns[j * COLUMN_STRIDE..][..rows]`; eight
/// rows at a time, so that each column gets a whole cache line while the
/// eight rows stay in the cache.
fn column_by_column(rows: &[f64], inputs: usize, columns: &mut [f64]) {
    let keys = rows.len() / inputs;
    let whole = keys - keys % 8;
    for first in (0..whole).step_by(8) {
        let tile = &rows[first * inputs..][..8 * inputs];
        for input in 0..inputs {
            let column = &mut columns[input * COLUMN_STRIDE + first..][..8];
            for (row, slot) in column.iter_mut().enumerate() {
                *slot = tile[row * inputs + input];
            }
        }
    }
    for (row, values) in rows.chunks_exact(inputs).enumerate().skip(whole) {
        for (input, &value) in values.iter().enumerate() {
            columns[input * COLUMN_STRIDE + row] = value;
        }
    }
}

/// What a linear target gives for its linear combination `z`.
#[derive(Clone, Copy, Debug)]
enum LinearOutput {
    Constant(f64),
    /// 1 / (1 + e^−z).
    Probability,
    /// A count fitted on log(1 + count): e^z − 1, at least 0.
    CountFromLog,
}

/// A linear target as scoring runs it: the inputs' standardization folded
/// into its weights and intercept (w·(x − mean)/sd + b = (w/sd)·x +
/// (b − Σ w·mean/sd)), so a key costs one multiply-add per input, done
/// down the columns of a block of keys.
#[derive(Clone, Debug)]
struct FoldedLinear {
    weights: Vec<f64>,
    intercept: f64,
    output: LinearOutput,
}

impl FoldedLinear {
    fn constant(value: f64) -> Self {
        FoldedLinear {
            weights: Vec::new(),
            intercept: value,
            output: LinearOutput::Constant(value),
        }
    }

    /// Appends the score of each of `keys` keys whose scaled inputs are in
    /// `columns`, input j at `columns[j * COLUMN_STRIDE..][..keys]`.
    fn score_block(&self, columns: &[f64], keys: usize, out: &mut Vec<f64>) {
        if let LinearOutput::Constant(value) = self.output {
            out.extend(std::iter::repeat_n(value, keys));
            return;
        }
        let mut z = [self.intercept; BLOCK];
        let z = &mut z[..keys];
        for (column, &weight) in self.weights.iter().enumerate() {
            for (sum, &value) in z.iter_mut().zip(&columns[column * COLUMN_STRIDE..][..keys]) {
                *sum += weight * value;
            }
        }
        match self.output {
            LinearOutput::Probability => out.extend(z.iter().map(|z| 1.0 / (1.0 + (-z).exp()))),
            LinearOutput::CountFromLog => out.extend(z.iter().map(|z| z.exp_m1().max(0.0))),
            LinearOutput::Constant(_) => unreachable!("answered above"),
        }
    }
}

/// Scores of a batch of keys, one entry per key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scores {
    pub hot: Vec<f64>,
    pub churn: Vec<f64>,
    pub accesses: Vec<f64>,
}

/// Training inputs: raw features and the three targets, one row per key and cut-off.
pub struct TrainingSet {
    pub raw: Array2<f64>,
    pub hot: Vec<bool>,
    pub churn: Vec<bool>,
    pub accesses: Vec<f64>,
}

/// A trained model: preprocessing and one predictor per target.
#[derive(Serialize, Deserialize)]
pub struct Predictor {
    pub hyperparameters: Hyperparameters,
    pub preprocess: Preprocess,
    hot: Target,
    churn: Target,
    accesses: Target,
    /// What ranks keys when the learner alone did not do best on held-out
    /// data; `None` in models trained without a held-out cut-off.
    #[serde(default)]
    guard: Option<Guard>,
    /// The three targets' boosted trees scored together, with each
    /// target's link, when all three are boosted; made on first use.
    #[serde(skip)]
    boosted_together: std::sync::OnceLock<Option<(Ensembles, [Link; 3])>>,
}

impl Predictor {
    pub fn fit(set: &TrainingSet, hyper: &Hyperparameters) -> Result<Self, ModelError> {
        let preprocess = Preprocess::fit(set.raw.view());
        let x = preprocess.apply(set.raw.view());
        Ok(Predictor {
            hyperparameters: hyper.clone(),
            hot: Target::fit_class("hot", &x, &set.hot, hyper)?,
            churn: Target::fit_class("churn", &x, &set.churn, hyper)?,
            accesses: Target::fit_count("accesses", &x, &set.accesses, hyper)?,
            preprocess,
            guard: None,
            boosted_together: Default::default(),
        })
    }

    pub fn guard(&self) -> Option<&Guard> {
        self.guard.as_ref()
    }

    /// Whether the churn model predicts one value for every key (its
    /// training rows held one class only).
    pub fn churn_is_constant(&self) -> bool {
        matches!(self.churn, Target::Constant(_))
    }

    pub fn set_guard(&mut self, guard: Guard) {
        self.guard = Some(guard);
    }

    /// Scores keys from their raw inputs (see [`super::input::raw_inputs`]).
    /// A target the guard replaces (churn from the write rate, accesses
    /// from the counter alone) is not computed.
    pub fn score(&self, raw: ArrayView2<f64>) -> Scores {
        let mut scores = self.score_targets(raw, self.targets_scored());
        if let Some(guard) = &self.guard {
            guard.apply(&mut scores.accesses, &mut scores.churn, raw);
        }
        scores
    }

    /// Which of hot, churn and accesses [`Predictor::score`] computes.
    pub fn targets_scored(&self) -> [bool; 3] {
        match &self.guard {
            None => [true; 3],
            Some(guard) => [
                true,
                guard.churn == ChurnSource::Learner,
                guard.model_weight > 0.0,
            ],
        }
    }

    /// [`Ensembles`] of the three targets and their links, when all three
    /// are boosted trees.
    fn boosted_together(&self) -> Option<&(Ensembles, [Link; 3])> {
        self.boosted_together
            .get_or_init(|| {
                let boosted: Option<Vec<(&Ensemble, Link)>> =
                    [&self.hot, &self.churn, &self.accesses]
                        .into_iter()
                        .map(|target| match target {
                            Target::Boosted { ensemble, link } => Some((ensemble, *link)),
                            _ => None,
                        })
                        .collect();
                let boosted = boosted?;
                let ensembles: Vec<&Ensemble> = boosted.iter().map(|(e, _)| *e).collect();
                let links = [boosted[0].1, boosted[1].1, boosted[2].1];
                Some((Ensembles::combine(&ensembles).ok()?, links))
            })
            .as_ref()
    }

    /// The learner's own scores, whatever its guard would rank by.
    pub fn score_unguarded(&self, raw: ArrayView2<f64>) -> Scores {
        self.score_targets(raw, [true; 3])
    }

    /// Hot, churn and accesses, each where `needed` (zeros elsewhere).
    fn score_targets(&self, raw: ArrayView2<f64>, needed: [bool; 3]) -> Scores {
        let targets = [&self.hot, &self.churn, &self.accesses];
        let wanted = || {
            targets
                .iter()
                .zip(needed)
                .filter(|(_, n)| *n)
                .map(|(t, _)| t)
        };
        if wanted().all(|t| t.predicts_by_row()) {
            let folded: Option<Vec<FoldedLinear>> = targets
                .iter()
                .zip(needed)
                .map(|(target, needed)| match needed {
                    true => target.folded(&self.preprocess),
                    false => Some(FoldedLinear::constant(0.0)),
                })
                .collect();
            return self.score_by_row(raw, needed, folded.as_deref());
        }
        let x = self.preprocess.apply(raw);
        let [hot, churn, accesses] = targets;
        let predict = |target: &Target, needed: bool| match needed {
            true => target.predict(x.view()),
            false => vec![0.0; x.nrows()],
        };
        Scores {
            hot: predict(hot, needed[0]),
            churn: predict(churn, needed[1]),
            accesses: predict(accesses, needed[2]),
        }
    }

    /// Linear and boosted models: blocks of keys, no matrix, in slices of
    /// keys on the current thread pool. Linear targets (`folded`) read the
    /// block column by column; boosted trees walk it row by row.
    fn score_by_row(
        &self,
        raw: ArrayView2<f64>,
        needed: [bool; 3],
        folded: Option<&[FoldedLinear]>,
    ) -> Scores {
        use rayon::prelude::*;
        const SLICE: usize = 8192;
        let targets = [&self.hot, &self.churn, &self.accesses];
        let raw = raw.as_standard_layout();
        let inputs = raw.ncols();
        let raw_values = raw.as_slice().expect("standard layout");
        let slices: Vec<Scores> = (0..raw.nrows())
            .step_by(SLICE)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|first| {
                let last = (first + SLICE).min(raw.nrows());
                let mut out: [Vec<f64>; 3] =
                    std::array::from_fn(|_| Vec::with_capacity(last - first));
                let mut buffer = vec![0.0; COLUMN_STRIDE * inputs];
                for block in (first..last).step_by(BLOCK) {
                    let end = (block + BLOCK).min(last);
                    let keys = end - block;
                    let raw_rows = &raw_values[block * inputs..end * inputs];
                    column_by_column(raw_rows, inputs, &mut buffer);
                    let columns = buffer.chunks_mut(COLUMN_STRIDE).take(inputs);
                    match folded {
                        Some(folded) => {
                            for (input, values) in columns.enumerate() {
                                self.preprocess.scale_column(input, &mut values[..keys]);
                            }
                            for (linear, out) in folded.iter().zip(&mut out) {
                                linear.score_block(&buffer, keys, out);
                            }
                        }
                        None => {
                            for (input, values) in columns.enumerate() {
                                self.preprocess.apply_column(input, &mut values[..keys]);
                            }
                            match self.boosted_together() {
                                Some((together, links)) => {
                                    let firsts = out.each_ref().map(Vec::len);
                                    let mut outs = out.each_mut().map(Some);
                                    for (slot, needed) in outs.iter_mut().zip(needed) {
                                        if !needed {
                                            *slot = None;
                                        }
                                    }
                                    together.score_columns(&buffer, COLUMN_STRIDE, keys, &mut outs);
                                    for (((link, needed), out), first) in
                                        links.iter().zip(needed).zip(&mut out).zip(firsts)
                                    {
                                        match needed {
                                            true => link.apply_in_place(&mut out[first..]),
                                            false => out.extend(std::iter::repeat_n(0.0, keys)),
                                        }
                                    }
                                }
                                None => {
                                    for ((target, needed), out) in
                                        targets.iter().zip(needed).zip(&mut out)
                                    {
                                        match needed {
                                            true => {
                                                target.predict_columns(&buffer, keys, inputs, out)
                                            }
                                            false => out.extend(std::iter::repeat_n(0.0, keys)),
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                let [hot, churn, accesses] = out;
                Scores {
                    hot,
                    churn,
                    accesses,
                }
            })
            .collect();
        let mut scores = Scores::default();
        for slice in slices {
            scores.hot.extend(slice.hot);
            scores.churn.extend(slice.churn);
            scores.accesses.extend(slice.accesses);
        }
        scores
    }

    pub fn kind(&self) -> ModelKind {
        self.hyperparameters.kind
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::input::input_names;

    /// Keys whose first input (events in the last hour) decides everything.
    fn separable(rows: usize) -> TrainingSet {
        let columns = input_names().len();
        let mut raw = Array2::<f64>::zeros((rows, columns));
        let mut hot = Vec::new();
        let mut churn = Vec::new();
        let mut accesses = Vec::new();
        for row in 0..rows {
            let activity = (row % 10) as f64;
            for column in 0..columns {
                raw[[row, column]] =
                    activity * (1.0 + column as f64 * 0.01) + (row % 7) as f64 * 0.001;
            }
            hot.push(activity >= 8.0);
            churn.push(activity <= 1.0);
            accesses.push(activity * 3.0);
        }
        TrainingSet {
            raw,
            hot,
            churn,
            accesses,
        }
    }

    /// Scoring with the standardization folded into the weights, down the
    /// columns of blocks, gives what linfa's own predictions give on the
    /// standardized matrix.
    #[test]
    fn folded_linear_scores_match_linfa_on_the_standardized_inputs() {
        let mut set = separable(1000);
        set.raw[[3, 14]] = f64::NAN;
        let model = Predictor::fit(&set, &Hyperparameters::new(ModelKind::Logistic)).unwrap();
        let scores = model.score_unguarded(set.raw.view());
        let x = model.preprocess.apply(set.raw.view());
        let probability_of_true = |target: &Target| match target {
            Target::Logistic(fitted) => {
                let p = fitted.predict_probabilities(&x);
                let positive_is_true = fitted.labels().pos.class;
                p.iter()
                    .map(|&p| if positive_is_true { p } else { 1.0 - p })
                    .collect::<Vec<f64>>()
            }
            _ => panic!("a logistic target"),
        };
        let Target::LogLinear(fitted) = &model.accesses else {
            panic!("a log-linear count target");
        };
        let counts: Vec<f64> = fitted
            .predict(&x)
            .iter()
            .map(|v| v.exp_m1().max(0.0))
            .collect();
        for (name, got, want) in [
            ("hot", &scores.hot, probability_of_true(&model.hot)),
            ("churn", &scores.churn, probability_of_true(&model.churn)),
            ("accesses", &scores.accesses, counts),
        ] {
            assert_eq!(got.len(), want.len());
            for (key, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-9 * w.abs().max(1.0),
                    "{name} of key {key}: {g} vs {w}"
                );
            }
        }
    }

    #[test]
    fn every_kind_learns_a_separable_target_and_survives_serialization() {
        let set = separable(600);
        for kind in [
            ModelKind::Logistic,
            ModelKind::Tree,
            ModelKind::Forest,
            ModelKind::Gbdt,
        ] {
            let mut hyper = Hyperparameters::new(kind);
            hyper.min_samples_leaf = 5;
            hyper.trees = 5;
            let model = Predictor::fit(&set, &hyper).unwrap();
            let scores = model.score(set.raw.view());
            let mean = |values: &[f64], pick: &dyn Fn(usize) -> bool| {
                let chosen: Vec<f64> = (0..values.len())
                    .filter(|&i| pick(i))
                    .map(|i| values[i])
                    .collect();
                chosen.iter().sum::<f64>() / chosen.len() as f64
            };
            let hot_mean = mean(&scores.hot, &|i| set.hot[i]);
            assert!(hot_mean > 0.8, "{kind}: hot keys score high ({hot_mean})");
            assert!(
                mean(&scores.hot, &|i| !set.hot[i]) < 0.2,
                "{kind}: others score low"
            );
            assert!(
                mean(&scores.churn, &|i| set.churn[i]) > 0.8,
                "{kind}: churn"
            );
            assert!(
                mean(&scores.accesses, &|i| set.accesses[i] > 20.0)
                    > mean(&scores.accesses, &|i| set.accesses[i] < 5.0),
                "{kind}: counts rank"
            );
            let json = serde_json::to_string(&model).unwrap();
            let back: Predictor = serde_json::from_str(&json).unwrap();
            assert_eq!(
                back.score(set.raw.view()),
                scores,
                "{kind}: same scores after a round trip"
            );
        }
    }

    #[test]
    fn constant_inputs_do_not_break_the_count_regression() {
        let mut set = separable(300);
        set.raw.column_mut(5).fill(3.0);
        set.raw.column_mut(6).fill(0.0);
        let model = Predictor::fit(&set, &Hyperparameters::new(ModelKind::Logistic)).unwrap();
        assert!(
            model
                .score(set.raw.view())
                .accesses
                .iter()
                .all(|v| v.is_finite())
        );
    }

    #[test]
    fn a_single_class_becomes_a_constant() {
        let mut set = separable(200);
        set.churn = vec![false; 200];
        let model = Predictor::fit(&set, &Hyperparameters::new(ModelKind::Logistic)).unwrap();
        assert!(model.score(set.raw.view()).churn.iter().all(|p| *p == 0.0));
    }

    #[test]
    fn bad_hyperparameters_name_the_field() {
        let mut hyper = Hyperparameters::new(ModelKind::Forest);
        hyper.trees = 0;
        let error = hyper.check().unwrap_err().to_string();
        assert!(error.contains("trees"), "{error}");
    }
}
