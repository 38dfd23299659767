//! Runs the stages before the scheduler for the service: features of the
//! logs as of the cut-off (or a feature table computed elsewhere), the
//! serving model's scores, the active policy's decisions, for
//! [`crate::scheduler::Scheduler::plan`].
//!
//! Takes: the logs or a feature table, the model registry and name, the
//! policy registry.
//! Gives: a [`PreparedPlan`] computed beside the scheduler (the service
//! hands it to the scheduler's owner in one message), and the top
//! [`Prediction`]s behind the plan the scheduler took.
//! Guarantees: a failed step (no logs yet, a model that does not load)
//! leaves the previous plan in place; the features are kept, so a model
//! promotion or a policy change re-plans without re-reading the logs, and
//! the key states behind them are rolled forward as log files arrive, so a
//! re-plan reads only the new files.

use std::path::{Path, PathBuf};

use crate::features::{self, FeatureOptions, FeatureRows, FeatureTable, RollingFeatures};
use crate::logs::{LogError, LogSource};
use crate::model::input::for_each_input_block;
use crate::model::registry::{Manifest, Registry};
use crate::policy::{Candidates, Decisions, PolicyRegistry, scheduling_order};

/// Keys scored at a time while planning.
const INPUT_BLOCK_ROWS: usize = 65_536;

/// How many predictions the service keeps for `TopPredictions`.
pub const KEPT_PREDICTIONS: usize = 10_000;

/// One key as the last plan saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    pub table: String,
    pub key: Vec<u8>,
    pub expected_accesses: f64,
    pub p_hot: f64,
    pub p_churn: f64,
    pub weight: f64,
    pub priority: u32,
    pub destination: u32,
    pub not_before_us: i64,
    pub size_bytes: u64,
}

/// What one plan used and gave.
#[derive(Clone, Debug, Default)]
pub struct PlanSummary {
    pub keys: usize,
    /// When the plan was made.
    pub made_at_us: i64,
    /// The features' cut-off.
    pub as_of_us: i64,
    /// The logs the features were computed from (`features PATH` for a
    /// feature table built elsewhere), and how many events went into them.
    pub logs: String,
    pub events: u64,
    /// `name/version` of the model, and its horizon.
    pub model: String,
    pub horizon_seconds: i64,
    pub policy: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("the logs at {path}: {problem}")]
    Logs { path: PathBuf, problem: String },
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error("the scheduler did not take the plan: {0}")]
    Scheduler(String),
    #[error(transparent)]
    Features(#[from] crate::features::FeatureFileError),
    #[error(
        "the feature table {path} is on the time scale of a {table} horizon, but model {model} was trained for {wanted}: compute the table for the model's horizon"
    )]
    HorizonMismatch {
        path: PathBuf,
        table: String,
        model: String,
        wanted: String,
    },
}

/// What a feature table's files looked like when read: each part's path
/// and [stamp](crate::export::file_stamp). A table replaced in place (a new
/// file, or a cluster job's new folder of parts) looks different.
#[derive(Clone, Debug, PartialEq)]
struct TableStamp(Vec<(PathBuf, Option<crate::export::FileStamp>)>);

impl TableStamp {
    fn of(path: &Path) -> std::io::Result<Self> {
        let parts = crate::export::table_parts(path)?;
        Ok(TableStamp(
            parts
                .into_iter()
                .map(|part| {
                    let stamp = crate::export::file_stamp(&part);
                    (part, stamp)
                })
                .collect(),
        ))
    }
}

pub struct Planner {
    logs: PathBuf,
    as_of: String,
    /// A feature table to plan from instead of the logs, and how its files
    /// looked when last read.
    feature_table: Option<(PathBuf, Option<TableStamp>)>,
    /// Only this shard's keys are planned.
    shard: crate::shard::Shard,
    models: Registry,
    model_name: String,
    policies: PolicyRegistry,
    features: Option<FeatureRows>,
    /// The key states behind `features` when they come from the logs,
    /// rolled forward as files arrive.
    rolling: RollingFeatures,
}

impl Planner {
    pub fn new(
        logs: PathBuf,
        as_of: String,
        feature_table: Option<PathBuf>,
        shard: crate::shard::Shard,
        models: Registry,
        model_name: String,
        policies: PolicyRegistry,
    ) -> Self {
        Planner {
            logs,
            as_of,
            feature_table: feature_table.map(|path| (path, None)),
            shard,
            models,
            model_name,
            policies,
            features: None,
            rolling: RollingFeatures::default(),
        }
    }

    pub fn models(&self) -> &Registry {
        &self.models
    }

    pub fn model_name(&self) -> &str {
        &self.model_name
    }

    pub fn policies(&self) -> &PolicyRegistry {
        &self.policies
    }

    /// Brings the features up to date with the logs (rolled forward from
    /// the files read before where that is exact), or reads the feature
    /// table again if it was replaced. `Ok(false)`: nothing new to plan
    /// from (no log files yet, the same files and cut-off, or the same table).
    pub fn refresh_features(&mut self) -> Result<bool, PlanError> {
        if let Some((path, read)) = &mut self.feature_table {
            let stamp =
                TableStamp::of(path).map_err(|source| crate::features::FeatureFileError::Io {
                    path: path.display().to_string(),
                    source,
                })?;
            if read.as_ref() == Some(&stamp) {
                return Ok(false);
            }
            let shard = self.shard;
            let owned = |table: &str, key: &[u8]| shard.owns(table, key);
            let keep: Option<crate::features::table::KeyFilter> =
                (shard != crate::shard::Shard::WHOLE).then_some(&owned);
            let table = FeatureTable::read_parquet_where(path, keep)?;
            *read = Some(stamp);
            self.features = Some(FeatureRows::Built(table));
            return Ok(true);
        }
        let logs_error = |problem: String| PlanError::Logs {
            path: self.logs.clone(),
            problem,
        };
        if !self.logs.exists() {
            return Ok(false);
        }
        let source = match LogSource::open(&self.logs) {
            Ok(source) => source,
            Err(LogError::NoFiles { .. }) => return Ok(false),
            Err(error) => return Err(logs_error(error.to_string())),
        };
        let as_of = source.resolve_as_of(&self.as_of).map_err(logs_error)?;
        let horizon = self.serving_horizon()?;
        let started = std::time::Instant::now();
        let Some(refresh) = self
            .rolling
            .advance(&source, as_of, horizon)
            .map_err(|error| logs_error(error.to_string()))?
        else {
            return Ok(false);
        };
        tracing::debug!(
            rolled = refresh.rolled,
            keys = refresh.states.len(),
            seconds = started.elapsed().as_secs_f64(),
            "features refreshed"
        );
        self.features = Some(self.own_keys(FeatureRows::OnDemand(refresh.states)));
        Ok(true)
    }

    /// The rows of `table` whose keys this shard owns. Features are
    /// computed over every key first: a key's neighbourhood features
    /// (same prefix, nearby keys) count keys of other shards.
    fn own_keys(&self, features: FeatureRows) -> FeatureRows {
        if self.shard == crate::shard::Shard::WHOLE {
            return features;
        }
        let mut rows = Vec::new();
        let mut row = 0;
        features.for_each_key(|name, key, _| {
            if self.shard.owns(name, key) {
                rows.push(row);
            }
            row += 1;
        });
        FeatureRows::Built(features.take(&rows))
    }

    fn compute(source: &LogSource, as_of: i64, horizon: i64) -> Result<FeatureTable, String> {
        let options = FeatureOptions {
            as_of,
            horizon,
            since: None,
        };
        features::compute(source, options, &|_| {}).map_err(|error| error.to_string())
    }

    /// The horizon of the active model: the features' time scale.
    fn serving_horizon(&self) -> Result<i64, PlanError> {
        let version = self.models.active_version(&self.model_name)?;
        let manifest = self.models.manifest(&self.model_name, &version)?;
        Ok(manifest.window.horizon_seconds * crate::time::SECOND_US)
    }

    /// Scores the kept features with the serving model and decides them
    /// with the active policy: everything a plan needs, computed without
    /// the scheduler. `Ok(None)`: no features yet (no logs).
    pub fn prepare(&self) -> Result<Option<PreparedPlan>, PlanError> {
        let Some(features) = &self.features else {
            return Ok(None);
        };
        let (as_of, features_horizon) = features.cutoff();
        let model = self.models.load_active(&self.model_name)?;
        let horizon = model.manifest.window.horizon_seconds * crate::time::SECOND_US;
        // A model promoted with another horizon reads features on its own
        // time scale: scan again rather than score features it was not made for.
        let rescanned;
        let features = if features_horizon == horizon {
            features
        } else if let Some((path, _)) = &self.feature_table {
            return Err(PlanError::HorizonMismatch {
                path: path.clone(),
                table: crate::time::format_duration(features_horizon),
                model: model_label(&model.manifest),
                wanted: crate::time::format_duration(horizon),
            });
        } else {
            let source = LogSource::open(&self.logs).map_err(|error| PlanError::Logs {
                path: self.logs.clone(),
                problem: error.to_string(),
            })?;
            let table =
                Self::compute(&source, as_of, horizon).map_err(|problem| PlanError::Logs {
                    path: self.logs.clone(),
                    problem,
                })?;
            rescanned = self.own_keys(FeatureRows::Built(table));
            &rescanned
        };
        // Scored a block of keys at a time: the inputs of every key at once
        // would be hundreds of megabytes at millions of keys, paged in anew
        // for each plan.
        let mut candidates = Candidates::starting(as_of, features.len());
        for_each_input_block(features.borrowed(), INPUT_BLOCK_ROWS, |raw| {
            let scores = model.predictor.score(raw);
            candidates.extend_scored(raw, &scores);
        });
        candidates.name_keys(features.borrowed());
        let decided = self.policies.decide(&candidates);
        for failure in &decided.failures {
            tracing::error!(%failure, "policy failed while planning and was unloaded");
        }
        let summary = PlanSummary {
            keys: candidates.len(),
            made_at_us: crate::time::now_us(),
            as_of_us: as_of,
            logs: match &self.feature_table {
                Some((path, _)) => format!("features {}", path.display()),
                None => self.logs.display().to_string(),
            },
            events: features.events(),
            model: model_label(&model.manifest),
            horizon_seconds: model.manifest.window.horizon_seconds,
            policy: decided.policy,
        };
        Ok(Some(PreparedPlan {
            candidates,
            decisions: decided.decisions,
            summary,
        }))
    }

    /// The top predictions of a plan, in scheduling order.
    pub fn top_predictions(plan: &PreparedPlan) -> Vec<Prediction> {
        let (candidates, decisions) = (&plan.candidates, &plan.decisions);
        scheduling_order(candidates, decisions)
            .into_iter()
            .take(KEPT_PREDICTIONS)
            .map(|i| Prediction {
                table: candidates.tables.name(candidates.table_ids[i]).to_string(),
                key: candidates.key(i).to_vec(),
                expected_accesses: candidates.expected_accesses[i],
                p_hot: candidates.hot[i],
                p_churn: candidates.churn[i],
                weight: decisions.weight[i],
                priority: decisions.priority[i],
                destination: decisions.destination[i],
                not_before_us: decisions.not_before_us[i],
                size_bytes: candidates.size_bytes[i],
            })
            .collect()
    }
}

/// A plan computed beside the scheduler, to be handed to it whole.
pub struct PreparedPlan {
    pub candidates: Candidates,
    pub decisions: Decisions,
    pub summary: PlanSummary,
}

pub fn model_label(manifest: &Manifest) -> String {
    format!("{}/{}", manifest.name, manifest.version)
}
