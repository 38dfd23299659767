//! The command-line front door: clap arguments in, validated library calls
//! out. Nothing here decides anything the library could.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

mod demo;
mod model_commands;
mod policy_commands;
mod postgres_commands;
mod simulate;
mod status;

use crate::features::{self, FeatureOptions, FeatureTable};
use crate::logs::LogSource;
use crate::logs::import::{self, ColumnMapping, ImportOptions, InputFormat, TsFormat};
use crate::time::{format_instant, parse_duration, parse_instant};
use crate::workload::{GenerateOptions, Generator, profile};

#[derive(Parser, Debug)]
#[command(
    name = "shadowcast",
    version,
    about = "Predicts the hot and high-churn keys of a database under migration, so they can be copied first.",
    long_about = "Predicts the hot and high-churn keys of a database under migration, so they can be copied first.\n\n\
        Start with `shadowcast demo`: it generates a sample workload, computes per-key features and shows \
        the hottest and highest-churn keys. Logging goes to stderr; set RUST_LOG (e.g. RUST_LOG=info) for more."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the whole loop on embedded defaults: generate logs and a SQLite source, plan with the shipped model, serve, copy with executors into a SQLite destination while the application writes, check both agree.
    Demo(DemoArgs),
    /// Write realistic synthetic access logs (deterministic by seed) as Hive-partitioned Parquet.
    Generate(GenerateArgs),
    /// Convert CSV or JSON-lines access logs into shadowcast's Parquet layout.
    Import(ImportArgs),
    /// Compute per-key features as of a cut-off time and write them as Parquet.
    Features(FeaturesArgs),
    /// Write what each key did in the horizon after a cut-off (the label table that `train --labels` reads).
    Labels(model_commands::LabelsArgs),
    /// Train a model of near-future hot and high-churn keys over rolling cut-offs and store it in the registry.
    Train(model_commands::TrainArgs),
    /// Compare models, heuristics and the oracle on a cut-off the models never trained on.
    Evaluate(model_commands::EvaluateArgs),
    /// Replay the logs through a migration and compare pre-migration strategies (none, key order, random, heuristics, the model, model + policy, the oracle) at the same budgets.
    Simulate(Box<simulate::SimulateArgs>),
    /// List, show, promote and roll back stored models.
    Models(model_commands::ModelsArgs),
    /// Validate a WebAssembly policy, or run it over real features to see how it changes the ranking.
    Policy(policy_commands::PolicyArgs),
    /// Serve the gRPC API: plan from the logs, lease batches to executors, track where every key is.
    Serve(Box<crate::config::ServeArgs>),
    /// Copy rows by key from a source database to a destination as the service leases them (the reference executor).
    Executor(ExecutorArgs),
    /// A migration's status from its service, or from every shard of a sharded one, added up.
    Status(status::StatusArgs),
    /// Follow a PostgreSQL source's write-ahead log and report every committed write to the service (and keep the shadowcast_status table).
    Capture(postgres_commands::CaptureArgs),
    /// Compare a PostgreSQL source and destination chunk by chunk and list the keys that differ.
    Verify(postgres_commands::VerifyArgs),
    /// Fill a database (SQLite or PostgreSQL) with the rows the access logs describe, for trying the executor.
    Seed(SeedArgs),
}

/// How a client command reaches the service.
#[derive(Args, Debug)]
pub struct ServiceArgs {
    /// The service: http://HOST:PORT, or https://HOST:PORT with --tls-ca.
    /// For a sharded service, every shard's endpoint (comma-separated).
    #[arg(
        long,
        env = "SHADOWCAST_ENDPOINT",
        default_value = "http://127.0.0.1:50051",
        value_delimiter = ','
    )]
    pub endpoint: Vec<String>,
    /// Bearer token (an executor token).
    #[arg(long, env = "SHADOWCAST_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM certificate of the authority that signed the service's certificate.
    #[arg(long, env = "SHADOWCAST_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ExecutorArgs {
    /// One copier per endpoint when the service is sharded.
    #[command(flatten)]
    pub service: ServiceArgs,
    /// Source database: sqlite:PATH or postgres://USER@HOST/DB.
    #[arg(long)]
    pub source: String,
    /// Destination database: sqlite:PATH or postgres://USER@HOST/DB.
    #[arg(long)]
    pub destination: String,
    /// What the tables are: `tables` (PostgreSQL to PostgreSQL, any table
    /// with a primary key, versions are log sequence numbers: serve with
    /// --versions lsn) or `versioned` (`key, version, value` tables, SQLite
    /// or PostgreSQL). `--mapping` implies `tables`.
    #[arg(long, value_enum, default_value = "versioned")]
    pub layout: Layout,
    /// Where each source table goes and how its columns map (TOML; see the
    /// README's "Your own PostgreSQL").
    #[arg(long)]
    pub mapping: Option<PathBuf>,
    /// The replication slot of `shadowcast capture` that must exist on the
    /// source before anything is copied (`tables` layout).
    #[arg(long, default_value = "shadowcast")]
    pub slot: String,
    /// Copy without a capture slot: only for a source that takes no writes.
    #[arg(long)]
    pub without_capture: bool,
    /// Name in the service's logs and metrics.
    #[arg(long, default_value = "executor")]
    pub id: String,
    /// Keys per batch.
    #[arg(long, default_value_t = 1000)]
    pub max_keys: u32,
    /// Bytes per batch.
    #[arg(long, default_value_t = 64 << 20)]
    pub max_bytes: u64,
    /// Only these tables (comma-separated); all when absent.
    #[arg(long, value_delimiter = ',')]
    pub tables: Vec<String>,
    /// Stop once every key is current (CUTOVER_READY) instead of when the migration is DONE.
    #[arg(long)]
    pub until_ready: bool,
    /// How long to keep retrying while the service is unavailable (e.g. restarting), e.g. 5m.
    #[arg(long, default_value = "5m", value_parser = crate::time::parse_std_duration)]
    pub retry_for: std::time::Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    Versioned,
    Tables,
}

#[derive(Args, Debug)]
pub struct SeedArgs {
    /// Access logs (Parquet file, directory or Hive tree).
    #[arg(long)]
    pub logs: PathBuf,
    /// Database to fill: sqlite:PATH or postgres://USER@HOST/DB.
    #[arg(long)]
    pub database: String,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Working directory for the generated logs and features (generated logs in it are replaced).
    #[arg(long, default_value = "shadowcast-demo")]
    pub dir: PathBuf,
    /// Events to generate.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Keys to list per ranking.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Random seed of the workload.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Executors copying in parallel.
    #[arg(long, default_value_t = 2)]
    pub executors: usize,
    /// Roughly how long the copy should take: sets the bandwidth budget from the data's size.
    #[arg(long, default_value_t = 15.0)]
    pub seconds: f64,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Output directory; partitions are written below it as dt=YYYY-MM-DD/hour=HH/part-0.parquet.
    #[arg(long)]
    pub out: PathBuf,
    /// Workload profile: oltp (default; users, products, sessions, carts), read-heavy, write-heavy, deletes.
    #[arg(long, default_value = "oltp", value_parser = clap::builder::PossibleValuesParser::new(profile::names()))]
    pub profile: String,
    /// Total events to write.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Hours of traffic to spread them over.
    #[arg(long, default_value_t = 72)]
    pub hours: u32,
    /// First hour (UTC), e.g. 2026-11-01 or 2026-11-01T06:00:00Z.
    #[arg(long, default_value = "2026-11-01", value_parser = parse_instant)]
    pub start: i64,
    /// Random seed: the same seed and options give the same logs.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Replace partitions (dt=… directories) already present under --out.
    #[arg(long)]
    pub overwrite: bool,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Input file: .csv or .jsonl (optionally .gz).
    pub input: PathBuf,
    /// Output directory for the Parquet partitions.
    #[arg(long)]
    pub out: PathBuf,
    /// Input format (guessed from the file name when omitted).
    #[arg(long, value_enum)]
    pub format: Option<InputFormat>,
    /// Column mapping FIELD=SOURCE, repeatable. Fields: ts, key, table_name (or table), op, size_bytes (or size), tenant, latency_us. Defaults: each field from the column of the same name; tenant and latency unmapped.
    #[arg(long = "map", value_name = "FIELD=SOURCE")]
    pub mappings: Vec<String>,
    /// How the time column is written.
    #[arg(long, value_enum, default_value = "rfc3339")]
    pub ts_format: TsFormat,
    /// Extra operation spellings INPUT=read|insert|update|delete, repeatable. Already understood: read/get/select, insert/add/create, update/write/set/put/upsert/cas/incr, delete/del/remove.
    #[arg(long = "op-map", value_name = "INPUT=OP")]
    pub op_map: Vec<String>,
    /// Table name for every row when the input has no table column (use with --map table=).
    #[arg(long, default_value = "default")]
    pub table: String,
    /// Shift all times so the first row is at this instant (for traces whose times are request indices).
    #[arg(long, value_parser = parse_instant)]
    pub rebase_to: Option<i64>,
    /// Multiply each time's distance from the first row's by this factor (to stretch a trace to another time scale).
    #[arg(long, default_value_t = 1.0, value_parser = parse_time_scale)]
    pub time_scale: f64,
}

#[derive(Args, Debug)]
pub struct FeaturesArgs {
    /// Access logs: a Parquet file, a directory, or a Hive-partitioned tree.
    #[arg(long)]
    pub logs: PathBuf,
    /// Cut-off time T (UTC): features use events at or before it. `latest` means the last event in the logs.
    #[arg(long)]
    pub as_of: String,
    /// Ignore events before this time (default: all history).
    #[arg(long, value_parser = parse_instant)]
    pub since: Option<i64>,
    /// Horizon H of the model that will read the features: the features on the horizon's time scale are measured in it.
    #[arg(long, default_value = "6h", value_parser = parse_duration)]
    pub horizon: i64,
    /// Output Parquet file.
    #[arg(long)]
    pub out: PathBuf,
    /// Also print the N hottest and highest-churn keys.
    #[arg(long, default_value_t = 0)]
    pub top: usize,
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Demo(args) => demo::demo(args),
        Command::Generate(args) => generate(args).map(|_| ()),
        Command::Import(args) => import_logs(args),
        Command::Features(args) => features_command(args),
        Command::Labels(args) => model_commands::labels_command(args),
        Command::Train(args) => model_commands::train_command(args),
        Command::Evaluate(args) => model_commands::evaluate_command(args),
        Command::Models(args) => model_commands::models_command(args),
        Command::Simulate(args) => simulate::simulate_command(*args),
        Command::Policy(args) => policy_commands::policy_command(args),
        Command::Serve(args) => serve(*args),
        Command::Executor(args) => executor(args),
        Command::Status(args) => status::status(args),
        Command::Capture(args) => postgres_commands::capture(args),
        Command::Verify(args) => postgres_commands::verify(args),
        Command::Seed(args) => seed(args).map(|_| ()),
    }
}

fn executor(args: ExecutorArgs) -> Result<()> {
    let tables = args.mapping.is_some() || args.layout == Layout::Tables;
    let mapping = match &args.mapping {
        Some(path) => crate::executor::tables::mapping::Mapping::read(path)?,
        None => Default::default(),
    };
    let slot = (!args.without_capture).then_some(args.slot.as_str());
    let open = || -> Result<Box<dyn crate::executor::Copier>> {
        if tables {
            Ok(Box::new(crate::executor::tables::PostgresTables::open(
                &args.source,
                &args.destination,
                mapping.clone(),
                slot,
            )?))
        } else {
            Ok(Box::new(crate::executor::VersionedRows::open(
                &args.source,
                &args.destination,
            )?))
        }
    };
    let options = crate::executor::ExecutorOptions {
        endpoint: args.service.endpoint[0].clone(),
        token: args.service.token,
        tls_ca: args.service.tls_ca,
        id: args.id,
        max_keys: args.max_keys,
        max_bytes: args.max_bytes,
        tables: args.tables,
        until: if args.until_ready {
            crate::executor::Until::CutoverReady
        } else {
            crate::executor::Until::Done
        },
        patience: args.retry_for,
    };
    let stop = stop_on_signal();
    let report = crate::executor::run_sharded(&args.service.endpoint, &options, &open, &stop)?;
    eprintln!(
        "{} leases, {} keys ({} bytes): {} accepted, {} stale, {} failed",
        report.leases, report.keys, report.bytes, report.accepted, report.stale, report.failed
    );
    Ok(())
}

fn seed(args: SeedArgs) -> Result<u64> {
    let source = LogSource::open(&args.logs)?;
    let activity = crate::logs::activity::KeyActivity::scan(&source).map_err(anyhow::Error::msg)?;
    let mut database = crate::executor::open(&args.database)?;
    let rows = crate::executor::seed(database.as_mut(), &activity)?;
    eprintln!("seeded {rows} rows into {}", args.database);
    Ok(rows)
}

/// A flag set on Ctrl-C or SIGTERM, for the commands that loop.
fn stop_on_signal() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            runtime.block_on(shutdown_signal());
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    stop
}

/// A multi-threaded runtime for the network commands.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(crate::logs::reader::worker_count())
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    eprintln!("shutting down: finishing the calls under way");
}

fn serve(args: crate::config::ServeArgs) -> Result<()> {
    let config = crate::config::ServeConfig::resolve(args)?;
    runtime()?.block_on(crate::service::serve(
        config,
        |address| {
            println!("shadowcast listening on {address}");
            use std::io::Write as _;
            let _ = std::io::stdout().flush();
        },
        shutdown_signal(),
    ))
}

fn progress(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:>10} [{bar:30}] {human_pos}/{human_len} {per_sec} eta {eta}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

fn generate(args: GenerateArgs) -> Result<u64> {
    let profile = profile::named(&args.profile).expect("clap checked the profile name");
    if args.overwrite {
        remove_partitions(&args.out)?;
    }
    let generator = Generator::new(GenerateOptions {
        profile,
        seed: args.seed,
        events: args.events,
        start: args.start,
        hours: args.hours,
    });
    let bar = progress(args.events, "generate");
    let started = Instant::now();
    let report = generator.write(&args.out, &|events| bar.inc(events))?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "wrote {} events ({} new keys) in {} files under {} in {:.1}s ({:.0} events/s)",
        report.events,
        report.keys_created,
        report.files.len(),
        args.out.display(),
        seconds,
        report.events as f64 / seconds.max(1e-9),
    );
    Ok(report.events)
}

/// Removes `dt=…` directories under `root` (and nothing else).
fn remove_partitions(root: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", root.display()))?;
        if entry.file_name().to_string_lossy().starts_with("dt=") && entry.path().is_dir() {
            std::fs::remove_dir_all(entry.path())
                .with_context(|| format!("removing {}", entry.path().display()))?;
        }
    }
    Ok(())
}

fn import_logs(args: ImportArgs) -> Result<()> {
    let format = match args.format.or_else(|| InputFormat::from_path(&args.input)) {
        Some(format) => format,
        None => bail!(
            "{}: cannot tell the format from the name; pass --format csv or --format jsonl",
            args.input.display()
        ),
    };
    let mut mapping = ColumnMapping::default();
    for assignment in &args.mappings {
        mapping
            .apply(assignment)
            .map_err(anyhow::Error::msg)
            .context("--map")?;
    }
    let mut op_names = import::default_op_names();
    for assignment in &args.op_map {
        import::apply_op_name(&mut op_names, assignment)
            .map_err(anyhow::Error::msg)
            .context("--op-map")?;
    }
    let options = ImportOptions {
        format,
        mapping,
        ts_format: args.ts_format,
        op_names,
        default_table: args.table,
        rebase_to: args.rebase_to,
        time_scale: args.time_scale,
    };
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} import {human_pos} rows {per_sec}")
            .expect("static template"),
    );
    let started = Instant::now();
    let report = import::import(&args.input, &args.out, &options, &|rows| bar.inc(rows))?;
    bar.finish_and_clear();
    let span = match (report.first_ts, report.last_ts) {
        (Some(first), Some(last)) => format!(
            " spanning {} to {}",
            format_instant(first),
            format_instant(last)
        ),
        _ => String::new(),
    };
    eprintln!(
        "imported {} rows{span} into {} partition files under {} in {:.1}s",
        report.rows,
        report.files.len(),
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn resolve_as_of(text: &str, source: &LogSource) -> Result<i64> {
    source
        .resolve_as_of(text)
        .map_err(anyhow::Error::msg)
        .context("--as-of")
}

fn compute_features(
    logs: &Path,
    as_of: &str,
    horizon: i64,
    since: Option<i64>,
) -> Result<FeatureTable> {
    let source = LogSource::open(logs)?;
    let as_of = resolve_as_of(as_of, &source)?;
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} features {human_pos} events {per_sec}")
            .expect("static template"),
    );
    let started = Instant::now();
    let options = FeatureOptions {
        as_of,
        horizon,
        since,
    };
    let table = features::compute(&source, options, &|rows| bar.inc(rows))?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "features of {} keys from {} events as of {} in {:.2}s ({:.0} events/s)",
        table.len(),
        table.events_scanned,
        format_instant(as_of),
        seconds,
        table.events_scanned as f64 / seconds.max(1e-9)
    );
    Ok(table)
}

fn features_command(args: FeaturesArgs) -> Result<()> {
    let table = compute_features(&args.logs, &args.as_of, args.horizon, args.since)?;
    let started = Instant::now();
    table.write_parquet(&args.out)?;
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        "wrote feature table"
    );
    eprintln!("wrote {}", args.out.display());
    if args.top > 0 {
        print_summary(&table, args.top);
    }
    Ok(())
}

/// Prints the keys most likely to be read (decayed reads, 6h half-life) and
/// written (decayed writes, 6h half-life) soon.
pub fn print_summary(table: &FeatureTable, top: usize) {
    let keys = table.len().max(1) as f64;
    let (deleted, active_24h) = table.rows().fold((0, 0), |(deleted, active), row| {
        (
            deleted + usize::from(row.is_deleted),
            active + usize::from(row.events_24h() > 0),
        )
    });
    println!(
        "{} keys as of {}: {:.1}% active in the last 24h, {:.1}% deleted",
        table.len(),
        format_instant(table.as_of),
        100.0 * active_24h as f64 / keys,
        100.0 * deleted as f64 / keys
    );
    let section = |title: &str, score: &dyn Fn(&features::KeyFeatures) -> f64| {
        println!("\n{title}");
        println!(
            "{:<10} {:<20} {:>10} {:>10} {:>10} {:>9} {:>8}",
            "table", "key", "score", "events_1h", "events_24h", "read_share", "size"
        );
        for row in table.top_by(top, score) {
            println!(
                "{:<10} {:<20} {:>10.2} {:>10} {:>10} {:>9.2} {:>8}",
                row.table,
                row.key_display(),
                score(&row),
                row.events[0],
                row.events_24h(),
                row.read_share,
                row.size_last
            );
        }
    };
    section("hottest keys (decayed reads, 6h half-life)", &|r| {
        r.reads_decay[1]
    });
    section("highest-churn keys (decayed writes, 6h half-life)", &|r| {
        r.writes_decay[1]
    });
}

fn parse_time_scale(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(scale) if scale.is_finite() && scale > 0.0 => Ok(scale),
        _ => Err(format!("`{text}` is not a positive number")),
    }
}
