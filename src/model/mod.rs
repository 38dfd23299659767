//! Stage 3 — models.
//!
//! Takes: feature tables (stage 2) and, for training and evaluation, the
//! access logs after each cut-off, from which labels are read
//! ([`labels`]), or feature and label tables built elsewhere
//! ([`label_table`], [`train::CutoffSource`]).
//!
//! Gives: a [`predictor::Predictor`] that scores raw features (probability
//! of hot, probability of churn, expected accesses); [`train`] fits one over
//! several rolling cut-offs.
//!
//! Guarantees: training never reads an event after its cut-off; a model
//! carries its own input preprocessing, so callers pass raw features.

pub mod chart;
pub mod ensemble;
pub mod evaluate;
pub mod guard;
pub mod handle;
pub mod input;
pub mod label_table;
pub mod labels;
pub mod predictor;
pub mod registry;
pub mod train;

use std::path::PathBuf;

use crate::logs::LogError;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("hyperparameter `{field}` {problem}")]
    InvalidHyperparameter {
        field: &'static str,
        problem: String,
    },

    #[error("option `{field}` {problem}")]
    InvalidOption {
        field: &'static str,
        problem: String,
    },

    #[error("training the {target} model failed: {problem}")]
    Training {
        target: &'static str,
        problem: String,
    },

    #[error(transparent)]
    Logs(#[from] LogError),

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: corrupt or truncated model: {problem}")]
    Corrupt { path: PathBuf, problem: String },

    #[error(
        "{path}: checksum mismatch (manifest says {expected}, file hashes to {found}): the model file was altered or truncated"
    )]
    Checksum {
        path: PathBuf,
        expected: String,
        found: String,
    },

    #[error(
        "{path}: trained on feature set {found}, but this shadowcast computes {expected}; retrain it"
    )]
    FeatureSetMismatch {
        path: PathBuf,
        found: String,
        expected: String,
    },

    #[error("{0}")]
    Registry(String),

    #[error("{path}: {problem}")]
    Table { path: PathBuf, problem: String },

    #[error(transparent)]
    Features(#[from] crate::features::FeatureFileError),

    #[error("{path}: drawing the chart failed: {problem}")]
    Chart { path: PathBuf, problem: String },
}
