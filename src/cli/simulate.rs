//! `simulate`: clap arguments in, a simulation and its report out.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

use super::model_commands::{load_model, refuse_if_trained_after, spinner};
use crate::logs::{LogSource, TimeRange};
use crate::model::labels::LabelRules;
use crate::model::predictor::{CountTarget, Hyperparameters, ModelKind, Predictor};
use crate::model::train::{self, TrainOptions};
use crate::policy::{PolicyHost, PolicyLimits, PolicyRegistry};
use crate::scheduler::SchedulerConfig;
use crate::simulate::{self, Inputs, SimulationOptions, Strategy, Timeline, report};
use crate::time::{format_instant, parse_duration};

/// The policy `model+policy` uses unless `--policy` names another: the
/// hand-written example that favours small rows.
const DEFAULT_POLICY: &[u8] = include_bytes!("../../policies/examples/wat/favour-small-rows.wat");
const DEFAULT_POLICY_NAME: &str = "favour-small-rows";

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Access logs: a Parquet file, a directory, or a Hive-partitioned tree.
    #[arg(long)]
    pub logs: PathBuf,
    /// When the pre-migration window opens (the plan's cut-off). `auto`: the window and the measured period end at the last event.
    #[arg(long, default_value = "auto")]
    pub start: String,
    /// Length of the pre-migration window; cutover is at its end.
    #[arg(long, default_value = "6h", value_parser = parse_duration)]
    pub window: i64,
    /// How long after cutover reads are measured (background migration goes on until everything is copied).
    #[arg(long, default_value = "6h", value_parser = parse_duration)]
    pub after: i64,
    /// Replay step: a copy takes effect at the end of the step it was leased in.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub step: i64,
    /// The budget of the table and the over-time chart: the share of the source's bytes the window's bandwidth can move.
    #[arg(long, default_value_t = 0.1)]
    pub budget: f64,
    /// Budgets of the hit-share-vs-budget chart (comma-separated shares; --budget is added).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0.01,0.02,0.05,0.1,0.2,0.5"
    )]
    pub budgets: Vec<f64>,
    /// Bandwidth after cutover, as a multiple of the window's.
    #[arg(long, default_value_t = 1.0)]
    pub background_factor: f64,
    /// Strategies to compare (comma-separated): none, key-order, random, most-frequent, decayed, model, model+policy, oracle.
    #[arg(long, value_delimiter = ',', value_parser = Strategy::parse, default_value = "none,key-order,random,most-frequent,decayed,model,model+policy,oracle")]
    pub strategies: Vec<Strategy>,
    /// A stored model (REGISTRY/NAME[/VERSION]) trained at or before the start. Default: train one on the history before the start.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Kind of the model trained when --model is absent.
    #[arg(long, value_enum, default_value = "forest")]
    pub model_kind: ModelKind,
    /// What the model trained when --model is absent predicts: by default the reads before each key's first write, the reads a copy made before cutover serves.
    #[arg(long, value_enum, default_value = "reads-before-write")]
    pub model_target: CountTarget,
    /// Policy of the model+policy strategy (.wasm or .wat). Default: the favour-small-rows example.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Configuration blob for the policy.
    #[arg(long)]
    pub policy_config: Option<PathBuf>,
    /// Folder for runs.parquet, timeline.parquet and the two PNG charts.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seeds the random strategy and the model's training sample.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Plan the forecasting strategies again every this long (e.g. 1h), from features as of each time, as `serve --replan-every` does. Default: plan once, at the start.
    #[arg(long, value_parser = parse_duration)]
    pub replan_every: Option<i64>,
    /// How much predicted churn lowers a key's benefit, in [0, 1] (0: ignore churn), as the service's setting of the same name.
    #[arg(long, default_value_t = SchedulerConfig::default().churn_penalty)]
    pub churn_penalty: f64,
}

pub fn simulate_command(args: SimulateArgs) -> Result<()> {
    let source = LogSource::open(&args.logs)?;
    let timeline = timeline(&args, &source)?;
    let mut budgets = args.budgets.clone();
    budgets.push(args.budget);
    budgets.sort_by(f64::total_cmp);
    budgets.dedup();
    let started = Instant::now();
    let bar = spinner("simulate");
    let needs_model = args
        .strategies
        .iter()
        .any(|s| matches!(s, Strategy::Model | Strategy::ModelPolicy));
    let model = if needs_model {
        Some(model(&args, &source, timeline, &|step| {
            bar.set_message(step.to_string())
        })?)
    } else {
        None
    };
    let policies = if args.strategies.contains(&Strategy::ModelPolicy) {
        Some(policy(&args)?)
    } else {
        None
    };
    let inputs = Inputs {
        model: model.as_ref().map(|(label, p, _)| (label.clone(), p)),
        policy: policies.as_ref(),
    };
    let options = SimulationOptions {
        timeline,
        budgets,
        background_factor: args.background_factor,
        strategies: args.strategies.clone(),
        scheduler: SchedulerConfig {
            churn_penalty: args.churn_penalty,
            ..SchedulerConfig::default()
        },
        seed: args.seed,
        replan_every_us: args.replan_every,
        feature_horizon_us: model
            .as_ref()
            .map_or(timeline.end_us - timeline.start_us, |(_, _, horizon)| {
                *horizon
            }),
    };
    let simulation = simulate::simulate(&source, &options, &inputs, &|step| {
        bar.set_message(step.to_string())
    })?;
    bar.finish_and_clear();
    println!("{}", report::budget_table(&simulation, args.budget));
    println!("{}", report::sweep_table(&simulation));
    if let Some(headline) = report::headline(&simulation, args.budget) {
        println!("{}", report::headline_line(&headline));
    }
    println!(
        "decayed half-life {}; model {}; policy {}; {:.1} s",
        simulation.half_life,
        simulation.model.as_deref().unwrap_or("-"),
        simulation.policy.as_deref().unwrap_or("-"),
        started.elapsed().as_secs_f64()
    );
    if let Some(out) = &args.out {
        report::write_outputs(&simulation, args.budget, out)?;
        eprintln!(
            "wrote {} and {}, {} and {} in {}",
            report::RUNS_FILE,
            report::TIMELINE_FILE,
            report::OVER_TIME_CHART,
            report::BUDGET_CHART,
            out.display()
        );
    }
    Ok(())
}

fn timeline(args: &SimulateArgs, source: &LogSource) -> Result<Timeline> {
    let span = source
        .plan(TimeRange::ALL)?
        .stats()
        .data_span
        .context("the logs carry no time statistics")?;
    let start = if args.start == "auto" {
        span.1 - args.window - args.after
    } else {
        source
            .resolve_as_of(&args.start)
            .map_err(anyhow::Error::msg)
            .context("--start")?
    };
    let timeline = Timeline::new(start, args.window, args.after, args.step)?;
    if timeline.start_us <= span.0 {
        bail!(
            "--start {} leaves no history: the logs begin at {}",
            format_instant(timeline.start_us),
            format_instant(span.0)
        );
    }
    if timeline.end_us > span.1 {
        bail!(
            "the timeline ends at {} (start + window + after), after the last event at {}: start earlier or shorten --window/--after",
            format_instant(timeline.end_us),
            format_instant(span.1)
        );
    }
    Ok(timeline)
}

/// The stored model (refused when trained past the start), or one trained
/// now on the history before the start.
fn model(
    args: &SimulateArgs,
    source: &LogSource,
    timeline: Timeline,
    on_step: &dyn Fn(&str),
) -> Result<(String, Predictor, i64)> {
    if let Some(path) = &args.model {
        let loaded = load_model(path)?;
        refuse_if_trained_after(
            &loaded,
            timeline.start_us,
            "the simulation's start",
            "it would know the future",
        )?;
        let label = crate::service::planning::model_label(&loaded.manifest);
        let horizon = loaded.manifest.window.horizon_seconds * crate::time::SECOND_US;
        return Ok((label, loaded.predictor, horizon));
    }
    let options = TrainOptions {
        as_of: timeline.start_us,
        horizon: timeline.end_us - timeline.start_us,
        cutoffs: 4,
        rules: LabelRules::default(),
        hyperparameters: Hyperparameters {
            max_rows: 100_000,
            seed: args.seed,
            target: args.model_target,
            ..Hyperparameters::new(args.model_kind)
        },
        guard: true,
    }
    .check()?;
    let trained = train::train(&train::CutoffSource::Logs(source), &options, on_step)?;
    let label = format!(
        "{} ({}) trained to {} on {} cut-offs",
        args.model_kind,
        args.model_target
            .to_possible_value()
            .expect("not skipped")
            .get_name(),
        format_instant(timeline.start_us),
        trained.window.cutoffs.len()
    );
    Ok((label, trained.predictor, options.horizon))
}

fn policy(args: &SimulateArgs) -> Result<PolicyRegistry> {
    let registry = PolicyRegistry::new(PolicyHost::new(PolicyLimits::default())?);
    match &args.policy {
        Some(path) => registry.load_file(path, args.policy_config.as_deref())?,
        None => registry.load(
            DEFAULT_POLICY_NAME,
            DEFAULT_POLICY,
            &crate::policy::read_config(args.policy_config.as_deref())?,
        )?,
    };
    Ok(registry)
}
