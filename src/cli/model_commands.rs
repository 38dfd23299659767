//! `train`, `evaluate` and `models`: clap arguments in, model-stage calls out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use super::resolve_as_of;
use crate::logs::LogSource;
use crate::model::evaluate::{self, MethodResult};
use crate::model::label_table;
use crate::model::labels::{Horizon, LabelRules};
use crate::model::predictor::{CountTarget, Hyperparameters, ModelKind};
use crate::model::registry::{LoadedModel, Registry};
use crate::model::train::{self, CutoffSource, TablePair, TrainOptions};
use crate::time::{format_instant, parse_duration};

/// How outcomes become the hot and high-churn classes.
#[derive(Args, Debug)]
pub struct LabelArgs {
    /// A key is hot when in this top share of keys by accesses or bytes read in the horizon.
    #[arg(long, default_value_t = 0.05)]
    pub hot_share: f64,
    /// A key is high-churn when written at least this many times in the horizon.
    #[arg(long, default_value_t = 2)]
    pub churn_min_writes: u64,
}

impl LabelArgs {
    fn rules(&self) -> LabelRules {
        LabelRules {
            hot_share: self.hot_share,
            churn_min_writes: self.churn_min_writes,
        }
    }
}

/// Feature and label tables built elsewhere, instead of the access logs.
#[derive(Args, Debug)]
pub struct TableArgs {
    /// Feature tables, one per cut-off (comma-separated or repeated): as
    /// written by `shadowcast features` or by sql/features.sql (a file or a
    /// folder of part files). Each records its cut-off and horizon.
    #[arg(long = "features", value_delimiter = ',', requires = "label_tables", conflicts_with_all = ["logs", "as_of"])]
    pub feature_tables: Vec<PathBuf>,
    /// Label tables, one per feature table (matched by cut-off): as written
    /// by `shadowcast labels` or by sql/labels.sql.
    #[arg(long = "labels", value_delimiter = ',', requires = "feature_tables")]
    pub label_tables: Vec<PathBuf>,
}

impl TableArgs {
    /// The table pairs, oldest first; `None` when the logs are read instead.
    fn pairs(&self) -> Result<Option<Vec<TablePair>>> {
        if self.feature_tables.is_empty() {
            return Ok(None);
        }
        Ok(Some(TablePair::match_up(
            &self.feature_tables,
            &self.label_tables,
        )?))
    }
}

/// The logs and the cut-off given on the command line: both, or neither
/// when tables are given instead (clap enforces it; this names it).
fn logs_and_cutoff<'a>(
    logs: &'a Option<PathBuf>,
    as_of: &'a Option<String>,
) -> Result<(&'a Path, &'a str)> {
    match (logs, as_of) {
        (Some(logs), Some(as_of)) => Ok((logs, as_of)),
        (None, _) => bail!("give --logs (with --as-of), or --features with --labels"),
        (Some(_), None) => bail!("--logs needs --as-of, the cut-off"),
    }
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Access logs: a Parquet file, a directory, or a Hive-partitioned tree.
    #[arg(long, required_unless_present = "feature_tables")]
    pub logs: Option<PathBuf>,
    /// Training cut-off T: no event after it is read. `latest` means the last event.
    #[arg(long, required_unless_present = "feature_tables")]
    pub as_of: Option<String>,
    #[command(flatten)]
    pub tables: TableArgs,
    /// Horizon H of the labels, e.g. 6h (with tables, theirs).
    #[arg(long, default_value = "6h", value_parser = parse_duration, conflicts_with = "feature_tables")]
    pub horizon: i64,
    /// Where to store the model: REGISTRY/NAME (a new version is added), e.g. models/oltp.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value = "logistic")]
    pub kind: ModelKind,
    /// What the count model learns: every access in the horizon, or only the reads before a key's first write there (those a copy made beforehand serves).
    #[arg(long, value_enum, default_value = "accesses")]
    pub target: CountTarget,
    /// Rolling cut-offs T-H, T-2H, ... to learn from (with tables, every pair given).
    #[arg(long, default_value_t = 4, conflicts_with = "feature_tables")]
    pub cutoffs: usize,
    #[command(flatten)]
    pub labels: LabelArgs,
    /// L2 penalty of the logistic regressions.
    #[arg(long, default_value_t = 1.0)]
    pub l2: f64,
    /// Optimizer iterations of the logistic regressions.
    #[arg(long, default_value_t = 100)]
    pub max_iterations: u64,
    /// Depth limit of trees (tree and forest).
    #[arg(long, default_value_t = 10)]
    pub max_depth: u16,
    /// Fewest training rows per tree leaf (tree and forest).
    #[arg(long, default_value_t = 20)]
    pub min_samples_leaf: usize,
    /// Trees per forest.
    #[arg(long, default_value_t = 20)]
    pub trees: usize,
    /// Training rows kept (uniform sample over keys and cut-offs).
    #[arg(long, default_value_t = 200_000)]
    pub max_rows: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Depth limit of boosted trees (gbdt).
    #[arg(long, default_value_t = 6)]
    pub boost_depth: u16,
    /// Boosting rounds (gbdt).
    #[arg(long, default_value_t = 100)]
    pub rounds: usize,
    /// Shrinkage of each boosting round (gbdt).
    #[arg(long, default_value_t = 0.1)]
    pub learning_rate: f32,
    /// Also make the new version the active one.
    #[arg(long)]
    pub promote: bool,
    /// Rank by the learner alone: do not hold out the newest cut-off to
    /// choose between it, the best counter and a blend of the two.
    #[arg(long)]
    pub no_guard: bool,
}

#[derive(Args, Debug)]
pub struct LabelsArgs {
    /// Access logs, including the horizon after the cut-off.
    #[arg(long)]
    pub logs: PathBuf,
    /// Cut-off T: keys seen at or before it are the ones labelled.
    #[arg(long)]
    pub as_of: String,
    /// Horizon H: what each key did in (T, T+H].
    #[arg(long, default_value = "6h", value_parser = parse_duration)]
    pub horizon: i64,
    /// Output Parquet file (the label table; see README "Tables built elsewhere").
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub labels: LabelArgs,
}

#[derive(Args, Debug)]
pub struct EvaluateArgs {
    /// Access logs, including the horizon after the cut-off.
    #[arg(long, required_unless_present = "feature_tables")]
    pub logs: Option<PathBuf>,
    /// Evaluation cut-off T; the models must have been trained with a cut-off at or before it.
    #[arg(long, required_unless_present = "feature_tables")]
    pub as_of: Option<String>,
    /// Judge the cut-offs of these tables instead: every pair at or after
    /// the models' training cut-off, each with its decayed counter tuned on
    /// the pair one horizon before it when that is given too.
    #[command(flatten)]
    pub tables: TableArgs,
    /// Horizon H judged after T (with tables, theirs).
    #[arg(long, default_value = "6h", value_parser = parse_duration, conflicts_with = "feature_tables")]
    pub horizon: i64,
    /// Models to compare: REGISTRY/NAME (its active version, else its newest) or REGISTRY/NAME/VERSION. Repeatable.
    #[arg(long = "model")]
    pub models: Vec<PathBuf>,
    /// Write the results as Parquet here (long format, for notebooks).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Draw capture against budget for every method to this PNG.
    #[arg(long)]
    pub chart: Option<PathBuf>,
    /// Judge this many successive cut-offs T, T+H, T+2H, … (each on its next H) and report each method's mean and spread: one cut-off is noise. --out and --chart describe the last one.
    #[arg(long, default_value_t = 1, conflicts_with = "feature_tables")]
    pub cutoffs: usize,
    #[command(flatten)]
    pub labels: LabelArgs,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// Every model with its versions and the active one.
    List,
    /// A version's manifest (the active one when VERSION is omitted).
    Show {
        name: String,
        version: Option<String>,
    },
    /// Make VERSION the active version of NAME (after checking it loads).
    Promote { name: String, version: String },
    /// Return NAME to the version promoted before the active one.
    Rollback { name: String },
}

#[derive(Args, Debug)]
pub struct ModelsArgs {
    /// The model registry directory.
    #[arg(long, default_value = "models")]
    pub registry: PathBuf,
    #[command(subcommand)]
    pub command: ModelsCommand,
}

pub(super) fn spinner(what: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix} {wide_msg} {elapsed}")
            .expect("static template"),
    );
    bar.set_prefix(what.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// Splits REGISTRY/NAME into the registry and the name.
fn registry_and_name(path: &Path) -> Result<(Registry, String)> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .with_context(|| {
            format!(
                "{}: expected REGISTRY/NAME, e.g. models/oltp",
                path.display()
            )
        })?;
    let root = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok((Registry::new(root), name))
}

pub fn train_command(args: TrainArgs) -> Result<()> {
    let pairs = args.tables.pairs()?;
    let source;
    let (data, as_of, horizon, cutoffs) = match &pairs {
        Some(pairs) => {
            let newest = pairs.last().expect("at least one pair");
            // The newest labels end one horizon after the newest cut-off:
            // the model has seen data up to there.
            (
                CutoffSource::Tables(pairs),
                newest.cutoff + newest.horizon,
                newest.horizon,
                pairs.len(),
            )
        }
        None => {
            let (logs, as_of) = logs_and_cutoff(&args.logs, &args.as_of)?;
            source = LogSource::open(logs)?;
            let as_of = resolve_as_of(as_of, &source)?;
            (
                CutoffSource::Logs(&source),
                as_of,
                args.horizon,
                args.cutoffs,
            )
        }
    };
    let (registry, name) = registry_and_name(&args.out)?;
    let options = TrainOptions {
        as_of,
        horizon,
        cutoffs,
        rules: args.labels.rules(),
        hyperparameters: Hyperparameters {
            kind: args.kind,
            l2: args.l2,
            max_iterations: args.max_iterations,
            max_depth: args.max_depth,
            min_samples_leaf: args.min_samples_leaf,
            trees: args.trees,
            max_rows: args.max_rows,
            seed: args.seed,
            boost_depth: args.boost_depth,
            rounds: args.rounds,
            learning_rate: args.learning_rate,
            target: args.target,
        },
        guard: !args.no_guard,
    }
    .check()?;
    let bar = spinner("train");
    let started = Instant::now();
    let trained = train::train(&data, &options, &|step| bar.set_message(step.to_string()))?;
    bar.finish_and_clear();
    // In-sample figures on the newest training cut-off's keys the model was
    // fitted on: a sanity check, not the honest comparison (that is
    // `shadowcast evaluate` on a later cut-off).
    let newest = &trained.in_sample;
    let half_life = evaluate::best_half_life(newest);
    let results = evaluate::compare(
        newest,
        half_life,
        &[(name.clone(), &trained.predictor)],
        options.hyperparameters.seed,
    );
    let mine = results
        .iter()
        .find(|r| r.method == name)
        .expect("the model is judged");
    let metrics = BTreeMap::from([
        ("in_sample_auc_hot".to_string(), mine.auc_hot),
        ("in_sample_auc_churn".to_string(), mine.auc_churn),
        (
            "in_sample_capture_accesses_10pct_keys".to_string(),
            mine.capture_keys[2],
        ),
        (
            "training_seconds".to_string(),
            started.elapsed().as_secs_f64(),
        ),
    ]);
    let manifest = registry.save(&name, &trained.predictor, trained.window, metrics)?;
    eprintln!(
        "trained {} model {} {} on {} rows from {} cut-offs in {:.1}s",
        manifest.kind,
        manifest.name,
        manifest.version,
        manifest.window.rows_used,
        manifest.window.cutoffs.len(),
        started.elapsed().as_secs_f64()
    );
    if let Some(guard) = trained.predictor.guard() {
        eprintln!("guard: {}", guard.describe());
    }
    if args.promote {
        registry.promote(&name, &manifest.version)?;
        eprintln!("promoted {} {}", manifest.name, manifest.version);
    }
    println!(
        "{}",
        registry
            .root()
            .join(&name)
            .join(&manifest.version)
            .display()
    );
    Ok(())
}

/// Refuses `model` when it was trained on data after `instant` (`what`
/// names that instant; `advice` says what to do instead): judged there,
/// it would have seen the future.
pub(super) fn refuse_if_trained_after(
    model: &LoadedModel,
    instant: i64,
    what: &str,
    advice: &str,
) -> Result<()> {
    if trained_until(model)? > instant {
        bail!(
            "model {} {} was trained with data up to {}, after {what} {}: {advice}",
            model.manifest.name,
            model.manifest.version,
            model.manifest.window.as_of,
            format_instant(instant)
        );
    }
    Ok(())
}

/// The end of the data `model` was trained on.
fn trained_until(model: &LoadedModel) -> Result<i64> {
    crate::time::parse_instant(&model.manifest.window.as_of).map_err(anyhow::Error::msg)
}

/// Loads REGISTRY/NAME (active, else newest) or REGISTRY/NAME/VERSION.
pub(super) fn load_model(path: &Path) -> Result<LoadedModel> {
    let as_version = path
        .parent()
        .and_then(|parent| registry_and_name(parent).ok())
        .filter(|(registry, name)| {
            registry
                .versions(name)
                .map(|v| !v.is_empty())
                .unwrap_or(false)
        });
    if let Some((registry, name)) = as_version {
        let version = path
            .file_name()
            .expect("has a parent, so a name")
            .to_string_lossy();
        if registry.versions(&name)?.iter().any(|v| *v == version) {
            return Ok(registry.load(&name, &version)?);
        }
    }
    let (registry, name) = registry_and_name(path)?;
    let version = match registry.active(&name)? {
        Some(version) => version,
        None => registry
            .versions(&name)?
            .pop()
            .with_context(|| format!("{}: no model versions there", path.display()))?,
    };
    Ok(registry.load(&name, &version)?)
}

pub fn labels_command(args: LabelsArgs) -> Result<()> {
    let source = LogSource::open(&args.logs)?;
    let as_of = resolve_as_of(&args.as_of, &source)?;
    if args.horizon <= 0 {
        bail!("--horizon must be positive");
    }
    let bar = spinner("labels");
    bar.set_message("the keys seen before the cut-off");
    let features = crate::features::FeatureRows::OnDemand(crate::features::scan(
        &source,
        crate::features::FeatureOptions {
            as_of,
            horizon: args.horizon,
            since: None,
        },
        &|_| {},
    )?);
    bar.set_message("what each key did in the horizon");
    let future = Horizon::observe(&source, as_of, args.horizon)
        .with_context(|| format!("labels of {} need logs after it", format_instant(as_of)))?;
    label_table::write(&args.out, &features, &future, &args.labels.rules())?;
    bar.finish_and_clear();
    eprintln!(
        "wrote {} ({} keys seen before {}, {} accesses in the next {})",
        args.out.display(),
        features.len(),
        format_instant(as_of),
        future.total.accesses,
        crate::time::format_duration(args.horizon)
    );
    Ok(())
}

pub fn evaluate_command(args: EvaluateArgs) -> Result<()> {
    let models = args
        .models
        .iter()
        .map(|path| load_model(path))
        .collect::<Result<Vec<_>>>()?;
    let pairs = args.tables.pairs()?;
    let source;
    let (data, cutoffs, horizon) = match &pairs {
        Some(pairs) => {
            // Pairs before a model's training cut-off cannot judge it; they
            // still tune the decayed counter of the pair one horizon later.
            let mut latest_training = i64::MIN;
            for model in &models {
                latest_training = latest_training.max(trained_until(model)?);
            }
            let judged: Vec<i64> = pairs
                .iter()
                .map(|pair| pair.cutoff)
                .filter(|&cutoff| cutoff >= latest_training)
                .collect();
            if judged.is_empty() {
                bail!(
                    "every table pair's cut-off precedes {}, where a model's training ended: give the tables of a later cut-off",
                    format_instant(latest_training)
                );
            }
            (CutoffSource::Tables(pairs), judged, pairs[0].horizon)
        }
        None => {
            if !(1..=64).contains(&args.cutoffs) {
                bail!("--cutoffs must be between 1 and 64, got {}", args.cutoffs);
            }
            let (logs, as_of) = logs_and_cutoff(&args.logs, &args.as_of)?;
            source = LogSource::open(logs)?;
            let as_of = resolve_as_of(as_of, &source)?;
            for model in &models {
                refuse_if_trained_after(
                    model,
                    as_of,
                    "the evaluation cut-off",
                    "evaluate at a later cut-off",
                )?;
            }
            (
                CutoffSource::Logs(&source),
                (0..args.cutoffs as i64)
                    .map(|step| as_of + step * args.horizon)
                    .collect(),
                args.horizon,
            )
        }
    };
    let rules = args.labels.rules();
    let named: Vec<(String, &crate::model::predictor::Predictor)> = models
        .iter()
        .map(|m| {
            (
                format!("{}-{}", m.manifest.name, m.manifest.version),
                &m.predictor,
            )
        })
        .collect();
    let bar = spinner("evaluate");
    let mut judged = Vec::with_capacity(cutoffs.len());
    for (step, &at) in cutoffs.iter().enumerate() {
        bar.set_message(format!(
            "cut-off {}/{}: tuning the decayed-counter half-life on the cut-off before",
            step + 1,
            cutoffs.len()
        ));
        let half_life = evaluate::tuned_half_life(&data, at, horizon)?;
        bar.set_message(format!(
            "cut-off {}/{}: labelling {} + {}",
            step + 1,
            cutoffs.len(),
            format_instant(at),
            crate::time::format_duration(horizon)
        ));
        let cutoff = data
            .labelled(at, horizon, &rules)?
            .with_context(|| {
                format!(
                    "cut-off {}: the logs hold no event at or before it; evaluation needs history before it and logs after it",
                    format_instant(at)
                )
            })?
            // Every method reads every row.
            .built();
        let results = evaluate::compare(&cutoff, half_life, &named, args.seed);
        judged.push((at, cutoff.features.len(), results));
    }
    bar.finish_and_clear();
    for (at, keys, results) in &judged {
        print_results(results, *keys, &format_instant(*at), horizon);
        println!();
    }
    if judged.len() > 1 {
        print_spread(&judged);
    }
    for (name, predictor) in &named {
        match predictor.guard() {
            Some(guard) => println!("{name} {}", guard.describe()),
            None => println!("{name} ranks by the learner alone (trained without a guard)"),
        }
    }
    let (as_of, cutoff_keys, results) = judged.last().expect("at least one cut-off");
    let (as_of, cutoff_keys) = (*as_of, *cutoff_keys);
    if let Some(out) = &args.out {
        evaluate::write_report(out, &format_instant(as_of), results)?;
        eprintln!("wrote {}", out.display());
    }
    if let Some(chart) = &args.chart {
        let subtitle = format!(
            "{} keys at {}, next {}",
            cutoff_keys,
            format_instant(as_of),
            crate::time::format_duration(horizon)
        );
        crate::model::chart::write_chart(chart, &subtitle, results)?;
        eprintln!("wrote {}", chart.display());
    }
    Ok(())
}

/// Each method's mean and spread (sample standard deviation) over the
/// cut-offs, at a 10% budget; the decayed counter under one name whatever
/// half-life each cut-off tuned.
fn print_spread(judged: &[(i64, usize, Vec<MethodResult>)]) {
    let family = |method: &str| {
        if method.starts_with("decayed-") {
            "decayed (tuned)".to_string()
        } else {
            method.to_string()
        }
    };
    let mut methods: Vec<String> = Vec::new();
    for (_, _, results) in judged {
        for result in results {
            let name = family(&result.method);
            if !methods.contains(&name) {
                methods.push(name);
            }
        }
    }
    println!(
        "over {} cut-offs, capture at a 10% budget: mean ± standard deviation",
        judged.len()
    );
    println!(
        "{:<22} {:>16} {:>16}",
        "method", "of accesses", "of bytes read"
    );
    for method in methods {
        let pick = |value: fn(&MethodResult) -> f64| -> Vec<f64> {
            judged
                .iter()
                .filter_map(|(_, _, results)| results.iter().find(|r| family(&r.method) == method))
                .map(value)
                .collect()
        };
        let keys = mean_and_spread(&pick(|r| r.capture_keys[2]));
        let bytes = mean_and_spread(&pick(|r| r.capture_bytes[2]));
        println!(
            "{:<22} {:>7.1}% ± {:>4.1} {:>7.1}% ± {:>4.1}",
            method,
            100.0 * keys.0,
            100.0 * keys.1,
            100.0 * bytes.0,
            100.0 * bytes.1
        );
    }
}

/// Mean and sample standard deviation (0 for one value).
fn mean_and_spread(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, variance.sqrt())
}

fn print_results(results: &[MethodResult], keys: usize, as_of: &str, horizon: i64) {
    println!(
        "{keys} keys at {as_of}, judged on the next {}",
        crate::time::format_duration(horizon)
    );
    println!(
        "{:<22} {:>7} {:>7} {:>7} {:>7} | {:>6} {:>6} {:>6} {:>6} | {:>6} {:>6} | {:>8}",
        "method",
        "auc_hot",
        "auc_chn",
        "p@1%hot",
        "p@1%chn",
        "cap1%",
        "cap5%",
        "cap10%",
        "cap20%",
        "byte5%",
        "byte10%",
        "%oracle10"
    );
    let oracle = results.iter().find(|r| r.method == "oracle");
    for r in results {
        let share = oracle.map_or(f64::NAN, |o| r.capture_keys[2] / o.capture_keys[2]);
        println!(
            "{:<22} {:>7.3} {:>7.3} {:>7.3} {:>7.3} | {:>6.3} {:>6.3} {:>6.3} {:>6.3} | {:>6.3} {:>6.3} | {:>7.1}%",
            r.method,
            r.auc_hot,
            r.auc_churn,
            r.precision_hot,
            r.precision_churn,
            r.capture_keys[0],
            r.capture_keys[1],
            r.capture_keys[2],
            r.capture_keys[3],
            r.capture_bytes[1],
            r.capture_bytes[2],
            100.0 * share
        );
    }
    let is_heuristic = |r: &&MethodResult| {
        ["random", "most-recent", "most-frequent"].contains(&r.method.as_str())
            || r.method.starts_with("decayed-")
    };
    let best_heuristic = results
        .iter()
        .filter(is_heuristic)
        .max_by(|a, b| a.capture_keys[2].total_cmp(&b.capture_keys[2]));
    let models: Vec<&MethodResult> = results
        .iter()
        .filter(|r| !is_heuristic(r) && r.method != "oracle")
        .collect();
    if let (Some(heuristic), Some(oracle)) = (best_heuristic, oracle) {
        for model in models {
            let verdict = if model.capture_keys[2] > heuristic.capture_keys[2] {
                "beats"
            } else {
                "does NOT beat"
            };
            println!(
                "{} {verdict} the best heuristic ({}) at a 10% key budget: {:.1}% vs {:.1}% of accesses captured; {:.1}% of the oracle's capture",
                model.method,
                heuristic.method,
                100.0 * model.capture_keys[2],
                100.0 * heuristic.capture_keys[2],
                100.0 * model.capture_keys[2] / oracle.capture_keys[2]
            );
        }
    }
}

pub fn models_command(args: ModelsArgs) -> Result<()> {
    let registry = Registry::new(&args.registry);
    match args.command {
        ModelsCommand::List => {
            for name in registry.names()? {
                let active = registry.active(&name)?;
                for version in registry.versions(&name)? {
                    let manifest = registry.manifest(&name, &version)?;
                    let marker = if active.as_deref() == Some(version.as_str()) {
                        "*"
                    } else {
                        " "
                    };
                    println!(
                        "{marker} {name:<16} {version:<5} {:<8} trained to {} horizon {}s  {}",
                        manifest.kind,
                        manifest.window.as_of,
                        manifest.window.horizon_seconds,
                        manifest.feature_set_label()
                    );
                }
            }
        }
        ModelsCommand::Show { name, version } => {
            let version = match version {
                Some(version) => version,
                None => registry
                    .active(&name)?
                    .with_context(|| format!("model {name} has no active version; name one"))?,
            };
            let manifest = registry.manifest(&name, &version)?;
            println!("{}", serde_json::to_string_pretty(&manifest)?);
        }
        ModelsCommand::Promote { name, version } => {
            registry.promote(&name, &version)?;
            println!("{name} {version} is now active");
        }
        ModelsCommand::Rollback { name } => {
            let loaded = registry.rollback(&name)?;
            println!("{name} rolled back to {}", loaded.manifest.version);
        }
    }
    Ok(())
}
