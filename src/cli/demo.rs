//! `shadowcast demo`: the whole loop on embedded defaults. Generates logs
//! and a SQLite source database from them, serves on a loopback port with
//! the shipped model, runs executors that copy into a SQLite destination
//! while a simulated application keeps writing hot keys (each write is
//! reported, as a shadowing module would), prints how the phase, the
//! confidence and the share of predicted accesses in the destination move,
//! and ends by checking that source and destination agree.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rand::{Rng, SeedableRng};

use super::{DemoArgs, GenerateArgs, compute_features, generate, print_summary, runtime};
use crate::config::{ServeArgs, ServeConfig};
use crate::executor::{self, Copy, ExecutorOptions, Until};
use crate::logs::LogSource;
use crate::logs::activity::KeyActivity;
use crate::service::client::{Clients, connect};
use crate::service::proto;
use crate::time::{now_us, parse_instant};

pub fn demo(args: DemoArgs) -> Result<()> {
    let dir = &args.dir;
    let logs = dir.join("logs");
    let source = format!("sqlite:{}", dir.join("source.db").display());
    let destination = format!("sqlite:{}", dir.join("destination.db").display());
    eprintln!(
        "1/5 generating {} events (profile oltp, seed {}) into {}",
        args.events,
        args.seed,
        logs.display()
    );
    generate(GenerateArgs {
        out: logs.clone(),
        profile: "oltp".into(),
        events: args.events,
        hours: 72,
        start: parse_instant("2026-11-01").expect("valid literal"),
        seed: args.seed,
        overwrite: true,
    })?;
    eprintln!("2/5 computing features as of the last event");
    // The shipped model's horizon: the service plans with the same features.
    let table = compute_features(&logs, "latest", 6 * crate::time::HOUR_US, None)?;
    table.write_parquet(&dir.join("features.parquet"))?;
    print_summary(&table, args.top);

    for stale in ["source.db", "destination.db", "state"] {
        let path = dir.join(stale);
        let _ = std::fs::remove_dir_all(&path);
        let _ = std::fs::remove_file(&path);
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(dir.join(format!("{stale}{suffix}")));
        }
    }
    eprintln!("\n3/5 seeding the source database {source} from the logs");
    let activity = KeyActivity::scan(&LogSource::open(&logs)?).map_err(anyhow::Error::msg)?;
    let rows = executor::seed(executor::open(&source)?.as_mut(), &activity)?;
    eprintln!("    {rows} rows");

    let config = ServeConfig::resolve(ServeArgs {
        listen: Some("127.0.0.1:0".parse().expect("valid literal")),
        state_dir: Some(dir.join("state")),
        logs: Some(logs),
        follow_seconds: Some(0.0),
        models: Some(registry_with_default_model(dir)?),
        ..Default::default()
    })?;
    eprintln!(
        "4/5 serving: planning with model `{}` from {}",
        config.model,
        config.models.display()
    );
    let runtime = runtime()?;
    let (address_tx, address_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let service = runtime.spawn(crate::service::serve(
        config,
        move |address| {
            let _ = address_tx.send(address);
        },
        async move {
            let _ = stop_rx.await;
        },
    ));
    let address = match address_rx.recv() {
        Ok(address) => address,
        Err(_) => {
            return match runtime.block_on(service) {
                Ok(Err(error)) => Err(error),
                _ => bail!("the service stopped before it listened"),
            };
        }
    };
    let endpoint = format!("http://{address}");
    let mut clients = runtime.block_on(connect(&endpoint, None, None))?;
    let status = runtime
        .block_on(clients.management.get_status(proto::GetStatusRequest {}))?
        .into_inner();
    let total = status.total.unwrap_or_default();
    let budget = ((total.bytes as f64 / args.seconds.max(1.0)) as u64).max(1 << 16);
    runtime.block_on(
        clients
            .management
            .set_bandwidth(proto::SetBandwidthRequest {
                bytes_per_s: Some(budget),
            }),
    )?;
    eprintln!(
        "    {} keys, {:.1} MB, plan by {}; budget {:.1} MB/s\n5/5 copying with {} executors while the application writes",
        total.keys,
        total.bytes as f64 / 1e6,
        status.model,
        budget as f64 / 1e6,
        args.executors
    );

    let stop_writes = Arc::new(AtomicBool::new(false));
    let writer = {
        let hot = hot_keys(&runtime, &mut clients)?;
        let (source, endpoint, stop) = (source.clone(), endpoint.clone(), stop_writes.clone());
        std::thread::spawn(move || application(&hot, &source, &endpoint, &stop))
    };
    let copying = Arc::new(AtomicBool::new(true));
    let executors = spawn_executors(&args, &endpoint, &source, &destination);
    let monitor = {
        let copying = copying.clone();
        let stop_writes = stop_writes.clone();
        let mut clients = clients.clone();
        std::thread::spawn(move || -> Result<()> {
            let started = Instant::now();
            let mut background_since = None;
            println!(
                "\n{:>6} {:<14} {:>10} {:>22} {:>16} {:>7}",
                "time", "phase", "confidence", "predicted accesses in", "keys current", "stale"
            );
            let tokio = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            while copying.load(Ordering::Relaxed) {
                let status = tokio
                    .block_on(clients.management.get_status(proto::GetStatusRequest {}))?
                    .into_inner();
                let phase = phase_name(status.phase);
                let current = status.current.unwrap_or_default();
                let total = status.total.unwrap_or_default();
                println!(
                    "{:>5.1}s {:<14} {:>10.3} {:>21.1}% {:>16} {:>7}",
                    started.elapsed().as_secs_f64(),
                    phase,
                    status.confidence,
                    100.0 * status.predicted_access_share_in_destination,
                    format!("{}/{}", current.keys, total.keys),
                    status.stale.unwrap_or_default().keys
                );
                if status.phase != proto::Phase::Shadowing as i32 {
                    let since = *background_since.get_or_insert_with(Instant::now);
                    // The application keeps writing into the background
                    // phase, then stops so the migration can finish.
                    if since.elapsed() > Duration::from_secs(2) {
                        stop_writes.store(true, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(1_000));
            }
            Ok(())
        })
    };
    let mut accepted = 0;
    for handle in executors {
        accepted += handle.join().expect("executor thread")?.accepted;
    }
    stop_writes.store(true, Ordering::Relaxed);
    let (writes, made_stale) = writer.join().expect("writer thread")?;
    // Writes that landed after the executors saw CUTOVER_READY: copy them too.
    let mut last = ExecutorOptions {
        until: Until::CutoverReady,
        ..executor_options(&endpoint, 0)
    };
    last.id = "final".into();
    accepted += executor::run(
        &last,
        &mut executor::VersionedRows::open(&source, &destination)?,
        &AtomicBool::new(false),
    )?
    .accepted;
    copying.store(false, Ordering::Relaxed);
    monitor.join().expect("monitor thread")?;
    let status = runtime
        .block_on(clients.management.get_status(proto::GetStatusRequest {}))?
        .into_inner();
    let _ = stop_tx.send(());
    runtime.block_on(service)??;
    println!(
        "\n{} copies accepted; {} application writes, {} of them to keys already copied (re-synced), {} copies refused as stale; phase {}",
        accepted,
        writes,
        made_stale,
        status.acks_stale_total,
        phase_name(status.phase)
    );
    let (tables, rows) = executor::compare(&source, &destination)?;
    println!("source and destination agree: {rows} rows in {tables} tables");
    Ok(())
}

fn phase_name(phase: i32) -> &'static str {
    proto::Phase::try_from(phase).map_or("?", |p| p.as_str_name().trim_start_matches("PHASE_"))
}

fn executor_options(endpoint: &str, index: usize) -> ExecutorOptions {
    ExecutorOptions {
        endpoint: endpoint.to_string(),
        token: None,
        tls_ca: None,
        id: format!("demo-{index}"),
        max_keys: 1_000,
        max_bytes: 16 << 20,
        tables: Vec::new(),
        until: Until::CutoverReady,
        patience: std::time::Duration::from_secs(30),
    }
}

fn spawn_executors(
    args: &DemoArgs,
    endpoint: &str,
    source: &str,
    destination: &str,
) -> Vec<std::thread::JoinHandle<Result<executor::ExecutorReport>>> {
    (0..args.executors.max(1))
        .map(|i| {
            let options = executor_options(endpoint, i);
            let (source, destination) = (source.to_string(), destination.to_string());
            std::thread::spawn(move || {
                let mut copier = executor::VersionedRows::open(&source, &destination)?;
                let stop = AtomicBool::new(false);
                executor::run(&options, &mut copier, &stop)
            })
        })
        .collect()
}

/// The keys the model expects to be hot: the ones the application writes.
fn hot_keys(
    runtime: &tokio::runtime::Runtime,
    clients: &mut Clients,
) -> Result<Vec<(String, Vec<u8>, u64)>> {
    let top = runtime
        .block_on(
            clients
                .management
                .top_predictions(proto::TopPredictionsRequest {
                    limit: 2_000,
                    table: String::new(),
                }),
        )?
        .into_inner();
    Ok(top
        .predictions
        .into_iter()
        .map(|p| (p.table, p.key.to_vec(), p.size_bytes))
        .collect())
}

/// Updates random hot keys in the source (20 a second) and reports each
/// write, until `stop`. Returns the writes made and how many of them found
/// the key already current in the destination (re-syncs).
fn application(
    hot: &[(String, Vec<u8>, u64)],
    source: &str,
    endpoint: &str,
    stop: &AtomicBool,
) -> Result<(u64, u64)> {
    if hot.is_empty() {
        return Ok((0, 0));
    }
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut clients = tokio.block_on(connect(endpoint, None, None))?;
    let mut database = executor::open(source)?;
    let mut random = rand_pcg::Pcg64::seed_from_u64(7);
    let (mut writes, mut made_stale) = (0, 0);
    while !stop.load(Ordering::Relaxed) {
        let (table, key, size) = &hot[random.random_range(0..hot.len())];
        let version = now_us() as u64;
        let value = executor::value_of(key, version, *size as usize);
        database
            .write(
                table,
                &[Copy {
                    key,
                    version,
                    value: Some(&value),
                }],
            )
            .context("the application's write")?;
        let report =
            tokio.block_on(clients.executor.report_writes(proto::ReportWritesRequest {
                writes: vec![proto::Write {
                    table: table.clone(),
                    key: key.clone().into(),
                    version,
                    size_bytes: Some(*size),
                }],
                truncations: Vec::new(),
            }))?;
        made_stale += report.into_inner().made_stale;
        writes += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((writes, made_stale))
}

/// The shipped default model (`models/default`), built into the binary so
/// that the demo runs from any folder.
const SHIPPED_DEFAULT_MODEL: [(&str, &[u8]); 4] = [
    ("active", include_bytes!("../../models/default/active")),
    ("history", include_bytes!("../../models/default/history")),
    (
        "v1/manifest.json",
        include_bytes!("../../models/default/v1/manifest.json"),
    ),
    (
        "v1/model.json",
        include_bytes!("../../models/default/v1/model.json"),
    ),
];

/// The registry the demo plans from: `models` when it holds a default
/// model (run from the repository's root), else a copy of the shipped one
/// written under the demo's folder.
fn registry_with_default_model(dir: &std::path::Path) -> Result<std::path::PathBuf> {
    let here = std::path::PathBuf::from("models");
    if here.join("default").is_dir() {
        return Ok(here);
    }
    let registry = dir.join("models");
    for (file, bytes) in SHIPPED_DEFAULT_MODEL {
        let path = registry.join("default").join(file);
        let folder = path.parent().expect("a file in a folder");
        std::fs::create_dir_all(folder)
            .with_context(|| format!("creating {}", folder.display()))?;
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(registry)
}
