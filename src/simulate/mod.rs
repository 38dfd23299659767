//! Replay simulation — what pre-migration buys, strategy against strategy.
//!
//! Takes: access logs, a [`Timeline`] (history up to the window's start,
//! a pre-migration window with a bandwidth budget, cutover, then
//! background migration of the rest), the budgets to try, and the model
//! and policy for the strategies that use them.
//!
//! Gives: a [`Simulation`] — per strategy and budget, the [`Figures`] one
//! replay measured: the share of post-cutover reads (and bytes read) the
//! destination served, over time too; bytes copied and wasted on re-sync;
//! when the confidence threshold was reached and the migration completed;
//! the work left at cutover.
//!
//! Guarantees:
//! - Every strategy is the real pipeline with different scores: the
//!   features as of the start ([`crate::features`]), scores ([`Scores`])
//!   from a heuristic, the model ([`Predictor::score`]) or the future
//!   (oracle), the policy stage's [`Decisions`] (the neutral default, or a
//!   WASM policy through the [`PolicyRegistry`]), then the real
//!   [`Scheduler`](crate::scheduler::Scheduler) — over an in-memory
//!   location map — plans, leases, re-syncs and judges acknowledgements.
//! - Every strategy replays the same events in the same order under the
//!   same budget; nothing but the oracle reads past the start; runs are
//!   deterministic for a seed.

mod replay;
pub mod report;
mod traffic;

use rand::{Rng, SeedableRng};
use rayon::prelude::*;

pub use replay::{Figures, Reads};
pub use traffic::Traffic;

use crate::features::{self, FeatureOptions, FeatureTable, KeyFeatures};
use crate::logs::{LogError, LogSource, Op, TimeRange};
use crate::model::ModelError;
use crate::model::evaluate::{self, Ranking};
use crate::model::input::raw_inputs;
use crate::model::predictor::{Predictor, Scores};
use crate::policy::{Candidates, Decisions, PolicyRegistry};
use crate::scheduler::{SchedulerConfig, SchedulerError};
use crate::time::SECOND_US;

/// Bytes added to a key's size wherever an order must not depend on size
/// (the scheduler ranks by benefit per byte: `score · (size + this)` keeps
/// a plain order intact). The same per-key cost the scheduler uses.
const PER_KEY_BYTES: f64 = 64.0;

/// Points on the hit-share-over-time curve.
const TIMELINE_BUCKETS: i64 = 48;

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("simulation option `{field}` {problem}")]
    InvalidOption {
        field: &'static str,
        problem: String,
    },
    #[error(transparent)]
    Logs(#[from] LogError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
}

fn invalid(field: &'static str, problem: impl Into<String>) -> SimulateError {
    SimulateError::InvalidOption {
        field,
        problem: problem.into(),
    }
}

/// The migration's timeline, in microseconds since the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeline {
    /// The pre-migration window opens: the plan's cut-off (strategies see
    /// the logs up to here).
    pub start_us: i64,
    /// The application switches to the destination.
    pub cutover_us: i64,
    /// Reads are measured up to here; traffic stops.
    pub end_us: i64,
    /// Granularity of the replay: copies take effect at the end of the
    /// step they were leased in.
    pub step_us: i64,
}

impl Timeline {
    /// A window of `window_us` from `start_us`, then `after_us` measured.
    pub fn new(
        start_us: i64,
        window_us: i64,
        after_us: i64,
        step_us: i64,
    ) -> Result<Self, SimulateError> {
        if window_us <= 0 {
            return Err(invalid("window", "must be positive"));
        }
        if after_us <= 0 {
            return Err(invalid("after", "must be positive"));
        }
        if step_us < SECOND_US / 1000 || step_us > window_us {
            return Err(invalid(
                "step",
                format!(
                    "must be between 1 ms and the window ({} s)",
                    window_us / SECOND_US
                ),
            ));
        }
        Ok(Timeline {
            start_us,
            cutover_us: start_us + window_us,
            end_us: start_us + window_us + after_us,
            step_us,
        })
    }

    pub fn window_us(&self) -> i64 {
        self.cutover_us - self.start_us
    }

    /// Width of one point of the hit-share-over-time curve.
    pub fn bucket_us(&self) -> i64 {
        ((self.end_us - self.cutover_us) / TIMELINE_BUCKETS).max(1)
    }

    pub fn buckets(&self) -> usize {
        ((self.end_us - self.cutover_us + self.bucket_us() - 1) / self.bucket_us()) as usize
    }

    /// The bucket of a time in `(cutover, end]`.
    fn bucket_of(&self, ts: i64) -> usize {
        (((ts - self.cutover_us - 1) / self.bucket_us()) as usize).min(self.buckets() - 1)
    }
}

/// How keys are picked for pre-migration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Strategy {
    /// Nothing moves before cutover; everything is copied after it, in
    /// key order (its work left at cutover is a stop-and-copy's downtime).
    Nothing,
    /// A bulk copy in (table, key) order.
    KeyOrder,
    Random,
    /// Most accesses in the history.
    MostFrequent,
    /// Time-decayed access counter, half-life tuned on the window before.
    Decayed,
    /// The trained model's expected accesses and churn.
    Model,
    /// The model, then a WASM policy's weights and hints.
    ModelPolicy,
    /// Knows which keys the application reads after cutover.
    Oracle,
}

impl Strategy {
    pub const ALL: [Strategy; 8] = [
        Strategy::Nothing,
        Strategy::KeyOrder,
        Strategy::Random,
        Strategy::MostFrequent,
        Strategy::Decayed,
        Strategy::Model,
        Strategy::ModelPolicy,
        Strategy::Oracle,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::Nothing => "none",
            Strategy::KeyOrder => "key-order",
            Strategy::Random => "random",
            Strategy::MostFrequent => "most-frequent",
            Strategy::Decayed => "decayed",
            Strategy::Model => "model",
            Strategy::ModelPolicy => "model+policy",
            Strategy::Oracle => crate::chart::ORACLE,
        }
    }

    pub fn parse(name: &str) -> Result<Strategy, String> {
        Strategy::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Strategy::ALL.iter().map(|s| s.name()).collect();
                format!("unknown strategy `{name}` (one of {})", names.join(", "))
            })
    }

    /// The heuristics a model has to beat (they need no future and no model).
    pub fn is_heuristic(self) -> bool {
        matches!(
            self,
            Strategy::KeyOrder | Strategy::Random | Strategy::MostFrequent | Strategy::Decayed
        )
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What to simulate.
#[derive(Clone, Debug)]
pub struct SimulationOptions {
    pub timeline: Timeline,
    /// Each a share of the source's bytes at the start that the budget
    /// moves over the window.
    pub budgets: Vec<f64>,
    /// Background budget after cutover, as a multiple of the window's.
    pub background_factor: f64,
    pub strategies: Vec<Strategy>,
    pub scheduler: SchedulerConfig,
    /// Seeds the random strategy.
    pub seed: u64,
    /// Plan the predictive strategies again every this long, from features
    /// as of each time, as the service does while serving (`None`: plan
    /// once, at the start).
    pub replan_every_us: Option<i64>,
    /// The horizon the features are computed for: the model's.
    pub feature_horizon_us: i64,
}

/// The model and policy the strategies that need them use.
#[derive(Default)]
pub struct Inputs<'a> {
    /// A label (e.g. `oltp/3`, `forest trained to T`) and the predictor.
    pub model: Option<(String, &'a Predictor)>,
    /// A registry with the policy loaded (its active policy decides).
    pub policy: Option<&'a PolicyRegistry>,
}

/// One strategy at one budget.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub strategy: Strategy,
    pub budget: f64,
    pub rate_before: u64,
    pub rate_after: u64,
    pub figures: Figures,
}

/// Everything one simulation measured.
#[derive(Clone, Debug)]
pub struct Simulation {
    pub timeline: Timeline,
    /// Keys and bytes the logs show at the start (what a migration moves).
    pub keys: usize,
    pub bytes: u64,
    pub budgets: Vec<f64>,
    /// Strategy inputs, for the report: the decayed counter's half-life,
    /// the model and the policy.
    pub half_life: String,
    pub model: Option<String>,
    pub policy: Option<String>,
    /// In strategy order, then budget order.
    pub runs: Vec<RunResult>,
}

impl Simulation {
    pub fn run(&self, strategy: Strategy, budget: f64) -> Option<&RunResult> {
        self.runs
            .iter()
            .find(|r| r.strategy == strategy && r.budget == budget)
    }
}

/// A strategy's plan: what the scheduler is given.
struct Planned {
    candidates: Candidates,
    decisions: Decisions,
}

/// Runs every strategy at every budget. `on_step` hears what is being done.
pub fn simulate(
    source: &LogSource,
    options: &SimulationOptions,
    inputs: &Inputs,
    on_step: &(dyn Fn(&str) + Sync),
) -> Result<Simulation, SimulateError> {
    check(options, inputs)?;
    let timeline = options.timeline;
    on_step("features as of the window's start");
    // Re-plans roll these features forward, as the service keeps them: the
    // logs are read whole once.
    let mut rolling = features::RollingFeatures::default();
    let features = match options.replan_every_us {
        Some(_) => rolling
            .advance(source, timeline.start_us, options.feature_horizon_us)?
            .expect("the first features are new")
            .states
            .into_table(),
        None => features::compute(
            source,
            FeatureOptions {
                as_of: timeline.start_us,
                horizon: options.feature_horizon_us,
                since: None,
            },
            &|_| {},
        )?,
    };
    on_step("loading the traffic after the start");
    let traffic = Traffic::load(
        source,
        TimeRange {
            start: Some(timeline.start_us + 1),
            end: Some(timeline.end_us),
        },
    )?;
    let half_life = evaluate::tuned_half_life(
        &crate::model::train::CutoffSource::Logs(source),
        timeline.start_us,
        timeline.end_us - timeline.start_us,
    )?;
    on_step("scoring the keys");
    let rows: Vec<KeyFeatures> = features.rows().collect();
    let heuristics = evaluate::heuristics(&rows, half_life, options.seed);
    let sizes: Vec<u64> = rows.iter().map(|r| r.size_last.max(0) as u64).collect();
    let bytes: u64 = sizes.iter().sum();
    if bytes == 0 {
        return Err(invalid(
            "budgets",
            "cannot apply: the logs give every key a size of 0 bytes before the start, and budgets are shares of the bytes",
        ));
    }
    let replan_times: Vec<i64> = match options.replan_every_us {
        Some(every) => (1..)
            .map(|k| timeline.start_us + k * every)
            .take_while(|&at| at < timeline.end_us)
            .collect(),
        None => Vec::new(),
    };
    let mut replan_features = Vec::with_capacity(replan_times.len());
    for (k, &at) in replan_times.iter().enumerate() {
        on_step(&format!(
            "features for re-plan {}/{}",
            k + 1,
            replan_times.len()
        ));
        let refresh = rolling
            .advance(source, at, options.feature_horizon_us)?
            .expect("each re-plan is later than the one before");
        replan_features.push(refresh.states.into_table());
    }
    let context = PlanContext {
        features: &features,
        rows: &rows,
        sizes: &sizes,
        heuristics: &heuristics,
        traffic: &traffic,
        options,
        inputs,
        half_life,
    };
    let window_s = timeline.window_us() as f64 / SECOND_US as f64;
    on_step(&format!(
        "replaying {} runs",
        options.strategies.len() * options.budgets.len()
    ));
    // Each strategy's plan (its candidates carry every feature column) is
    // built inside its task and dropped with it, so only the plans being
    // replayed are held, not one per strategy.
    let runs = options
        .strategies
        .par_iter()
        .map(|&strategy| {
            let planned = context.plan(strategy);
            options
                .budgets
                .par_iter()
                .map(|&budget| {
                    let rate = ((budget * bytes as f64 / window_s).round() as u64).max(1);
                    let rate_after =
                        ((rate as f64 * options.background_factor).round() as u64).max(1);
                    let run = replay::Run {
                        timeline,
                        scheduler: options.scheduler,
                        rate_before: if strategy == Strategy::Nothing {
                            0
                        } else {
                            rate
                        },
                        rate_after,
                        plain_order: !predictive(strategy),
                        give_up_us: give_up(timeline, bytes, rate_after),
                    };
                    let replans = if replans_strategy(strategy) {
                        replan_times.as_slice()
                    } else {
                        &[]
                    };
                    let replan = |k: usize| {
                        let planned = context.plan_from(strategy, &replan_features[k]);
                        (planned.candidates, planned.decisions)
                    };
                    let figures = replay::replay(
                        &traffic,
                        &run,
                        (&planned.candidates, &planned.decisions),
                        replans,
                        &replan,
                    )?;
                    Ok(RunResult {
                        strategy,
                        budget,
                        rate_before: run.rate_before,
                        rate_after,
                        figures,
                    })
                })
                .collect::<Result<Vec<_>, SchedulerError>>()
        })
        .collect::<Result<Vec<_>, SchedulerError>>()?
        .into_iter()
        .flatten()
        .collect();
    Ok(Simulation {
        timeline,
        keys: features.len(),
        bytes,
        budgets: options.budgets.clone(),
        half_life: half_life_name(half_life),
        model: inputs.model.as_ref().map(|(label, _)| label.clone()),
        policy: inputs.policy.map(|p| p.active()),
        runs,
    })
}

fn check(options: &SimulationOptions, inputs: &Inputs) -> Result<(), SimulateError> {
    if options.budgets.is_empty() {
        return Err(invalid("budgets", "needs at least one budget"));
    }
    if let Some(bad) = options
        .budgets
        .iter()
        .find(|b| !(b.is_finite() && **b > 0.0))
    {
        return Err(invalid(
            "budgets",
            format!("must be positive shares, got {bad}"),
        ));
    }
    if !(options.background_factor.is_finite() && options.background_factor > 0.0) {
        return Err(invalid(
            "background_factor",
            format!("must be positive, got {}", options.background_factor),
        ));
    }
    if options.strategies.is_empty() {
        return Err(invalid("strategies", "needs at least one strategy"));
    }
    if let Some(every) = options.replan_every_us
        && every < options.timeline.step_us
    {
        return Err(invalid(
            "replan_every",
            format!(
                "must be at least the step ({} s), got {} s",
                options.timeline.step_us as f64 / SECOND_US as f64,
                every as f64 / SECOND_US as f64
            ),
        ));
    }
    for strategy in &options.strategies {
        let needs_model = matches!(strategy, Strategy::Model | Strategy::ModelPolicy);
        if needs_model && inputs.model.is_none() {
            return Err(invalid("strategies", format!("`{strategy}` needs a model")));
        }
        if *strategy == Strategy::ModelPolicy && inputs.policy.is_none() {
            return Err(invalid(
                "strategies",
                format!("`{strategy}` needs a policy"),
            ));
        }
    }
    Ok(())
}

/// Strategies that rank by predicted value go through the scheduler's
/// phases (shadow sample and predicted-hot keys first); the plain orders
/// start in BACKGROUND, as an operator would run a bulk copy.
fn predictive(strategy: Strategy) -> bool {
    !matches!(
        strategy,
        Strategy::Nothing | Strategy::KeyOrder | Strategy::Random
    )
}

/// Strategies that forecast from the logs, and so are planned again from
/// fresher logs when the simulation re-plans (the plain orders are not
/// forecasts; the oracle already knows the future).
fn replans_strategy(strategy: Strategy) -> bool {
    matches!(
        strategy,
        Strategy::MostFrequent | Strategy::Decayed | Strategy::Model | Strategy::ModelPolicy
    )
}

/// When a run stops waiting for completion: three times what the
/// background budget needs to move everything, after the measured period.
fn give_up(timeline: Timeline, bytes: u64, rate_after: u64) -> i64 {
    let all_us = (3.0 * bytes as f64 / rate_after as f64 * SECOND_US as f64).min(1e17) as i64;
    timeline
        .end_us
        .saturating_add(all_us.max(timeline.window_us()))
}

fn half_life_name(half_life: usize) -> String {
    crate::features::definition::DECAY_HALF_LIVES[half_life]
        .0
        .to_string()
}

/// Scores that make the scheduler (which ranks by score per byte) follow
/// `order` whatever the sizes: the first key gets the highest.
fn plain_order_scores(sizes: &[u64], order: &[usize]) -> Vec<f64> {
    let mut accesses = vec![0.0; sizes.len()];
    for (rank, &i) in order.iter().enumerate() {
        accesses[i] = (order.len() - rank) as f64 * (sizes[i] as f64 + PER_KEY_BYTES);
    }
    accesses
}

/// Scores with only expected accesses (heuristics know nothing of churn).
fn accesses_only(accesses: Vec<f64>) -> Scores {
    Scores {
        hot: vec![0.0; accesses.len()],
        churn: vec![0.0; accesses.len()],
        accesses,
    }
}

/// What every strategy's plan is made from.
#[derive(Clone, Copy)]
struct PlanContext<'a> {
    features: &'a FeatureTable,
    rows: &'a [KeyFeatures],
    /// Each key's size at the start (as the candidates carry it).
    sizes: &'a [u64],
    heuristics: &'a [Ranking],
    traffic: &'a Traffic,
    options: &'a SimulationOptions,
    inputs: &'a Inputs<'a>,
    /// The decayed counter's tuned half-life (index).
    half_life: usize,
}

impl PlanContext<'_> {
    /// A forecasting strategy's plan from `features` taken later than the
    /// start (a re-plan): the same scoring, on fresher logs.
    fn plan_from(&self, strategy: Strategy, features: &FeatureTable) -> Planned {
        let rows: Vec<KeyFeatures> = features.rows().collect();
        let heuristics = evaluate::heuristics(&rows, self.half_life, self.options.seed);
        let sizes: Vec<u64> = rows.iter().map(|r| r.size_last.max(0) as u64).collect();
        PlanContext {
            features,
            rows: &rows,
            sizes: &sizes,
            heuristics: &heuristics,
            ..*self
        }
        .plan(strategy)
    }

    fn plan(&self, strategy: Strategy) -> Planned {
        let PlanContext {
            features,
            rows,
            sizes,
            heuristics,
            traffic,
            options,
            inputs,
            half_life: _,
        } = *self;
        let heuristic = |method: &str| {
            heuristics
                .iter()
                .find(|r| r.method.starts_with(method))
                .expect("a known heuristic")
                .hot
                .clone()
        };
        let raw = raw_inputs(features);
        let scores = match strategy {
            Strategy::Nothing | Strategy::KeyOrder => {
                let mut order: Vec<usize> = (0..rows.len()).collect();
                order.sort_by(|&a, &b| {
                    (&rows[a].table, &rows[a].key).cmp(&(&rows[b].table, &rows[b].key))
                });
                accesses_only(plain_order_scores(sizes, &order))
            }
            Strategy::Random => {
                let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(options.seed);
                let draws: Vec<f64> = rows.iter().map(|_| rng.random()).collect();
                let mut order: Vec<usize> = (0..rows.len()).collect();
                order.sort_by(|&a, &b| draws[a].total_cmp(&draws[b]));
                accesses_only(plain_order_scores(sizes, &order))
            }
            Strategy::MostFrequent => accesses_only(heuristic("most-frequent")),
            Strategy::Decayed => accesses_only(heuristic("decayed")),
            Strategy::Model | Strategy::ModelPolicy => {
                let (_, predictor) = inputs.model.as_ref().expect("checked");
                predictor.score(raw.view())
            }
            Strategy::Oracle => accesses_only(reads_after_cutover(rows, traffic, options.timeline)),
        };
        let candidates =
            Candidates::from_features(features.into(), raw.view(), &scores, features.as_of);
        let decisions = match (strategy, inputs.policy) {
            (Strategy::ModelPolicy, Some(policies)) => {
                let decided = policies.decide(&candidates);
                for failure in &decided.failures {
                    tracing::error!(%failure, "policy failed in the simulation and was unloaded");
                }
                decided.decisions
            }
            _ => Decisions::neutral(candidates.len()),
        };
        Planned {
            candidates,
            decisions,
        }
    }
}

/// Per key of `rows`, its reads in (cutover, end]: the oracle's scores.
fn reads_after_cutover(rows: &[KeyFeatures], traffic: &Traffic, timeline: Timeline) -> Vec<f64> {
    let mut reads = vec![0.0; traffic.key_count()];
    for event in &traffic.events {
        if event.op == Op::Read && event.ts > timeline.cutover_us && event.ts <= timeline.end_us {
            reads[event.key as usize] += 1.0;
        }
    }
    rows.iter()
        .map(|row| {
            traffic
                .find(&row.table, &row.key)
                .map_or(0.0, |key| reads[key as usize])
        })
        .collect()
}
