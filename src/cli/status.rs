//! `status`: one migration's status from every shard that serves it, shard
//! by shard and added up ([`crate::service::client::combine`]).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use crate::service::client::{ShardedClients, combine};
use crate::service::proto;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum StatusFormat {
    /// One line per shard and one for the whole migration, then one per
    /// table (added up over the shards).
    Table,
    /// The whole migration's figures as Prometheus text (for a scraper
    /// that reads one target, or a shell script).
    Prometheus,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Every shard's endpoint (comma-separated), or the one service's.
    #[arg(
        long = "endpoints",
        env = "SHADOWCAST_ENDPOINT",
        default_value = "http://127.0.0.1:50051",
        value_delimiter = ','
    )]
    pub endpoints: Vec<String>,
    /// Bearer token (an admin token, or an executor token when the services take any).
    #[arg(long, env = "SHADOWCAST_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM certificate of the authority that signed the services' certificates.
    #[arg(long, env = "SHADOWCAST_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: StatusFormat,
}

pub fn status(args: StatusArgs) -> Result<()> {
    let runtime = super::runtime()?;
    let shards = runtime.block_on(async {
        let mut shards = ShardedClients::connect(
            &args.endpoints,
            args.token.as_deref(),
            args.tls_ca.as_deref(),
        )
        .await?;
        shards
            .statuses()
            .await
            .with_context(|| format!("status of {}", args.endpoints.join(",")))
    })?;
    let whole = combine(&shards).map_err(anyhow::Error::msg)?;
    match args.format {
        StatusFormat::Table => print_table(&shards, &whole),
        StatusFormat::Prometheus => print!("{}", prometheus(&whole)),
    }
    Ok(())
}

fn phase_name(phase: i32) -> &'static str {
    proto::Phase::try_from(phase).map_or("?", |p| p.as_str_name().trim_start_matches("PHASE_"))
}

fn print_table(shards: &[proto::Status], whole: &proto::Status) {
    println!(
        "{:<6} {:<14} {:>12} {:>12} {:>10} {:>12} {:>10} {:>10} {:>7}",
        "shard",
        "phase",
        "keys",
        "current",
        "stale",
        "source-only",
        "leased",
        "confidence",
        "leases"
    );
    let keys = |counts: &Option<proto::KeysAndBytes>| counts.unwrap_or_default().keys;
    let line = |name: String, status: &proto::Status| {
        println!(
            "{:<6} {:<14} {:>12} {:>12} {:>10} {:>12} {:>10} {:>10.3} {:>7}",
            name,
            phase_name(status.phase),
            keys(&status.total),
            keys(&status.current),
            keys(&status.stale),
            keys(&status.source_only),
            keys(&status.leased),
            status.confidence,
            status.live_leases
        )
    };
    // In shard order, as ShardedClients gives them.
    for status in shards {
        line(
            format!("{}/{}", status.shard_index, status.shard_count.max(1)),
            status,
        );
    }
    if shards.len() > 1 {
        line("all".into(), whole);
    }
    if !whole.tables.is_empty() {
        println!(
            "{:<24} {:>12} {:>12} {:>10} {:>12} {:>10} {:>14}",
            "table", "keys", "current", "stale", "source-only", "shadow", "shadow-current"
        );
        for table in &whole.tables {
            println!(
                "{:<24} {:>12} {:>12} {:>10} {:>12} {:>10} {:>14}",
                table.table,
                keys(&table.total),
                keys(&table.current),
                keys(&table.stale),
                keys(&table.source_only),
                keys(&table.sample),
                keys(&table.sample_current)
            );
        }
    }
    let parked = whole.parked.unwrap_or_default();
    if parked.keys > 0 || whole.retrying_keys > 0 {
        println!(
            "{} keys retrying after failed copies; {} parked ({} bytes), offered again by RetryParked or a new write",
            whole.retrying_keys, parked.keys, parked.bytes
        );
        for key in &whole.failing_keys {
            println!(
                "{} {}/{} after {} failures: {}",
                if key.parked { "parked" } else { "retrying" },
                key.table,
                key.key,
                key.failures,
                key.last_reason
            );
        }
    }
    match whole.eta_seconds {
        Some(eta) => println!(
            "eta {eta:.0} s at {:.0} keys/s",
            whole.throughput_keys_per_s
        ),
        None => println!("eta unknown (nothing copied lately)"),
    }
}

/// The whole migration's figures in Prometheus' text format, under the
/// names the services' /metrics use where they share one.
fn prometheus(whole: &proto::Status) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: f64| {
        let _ = writeln!(out, "# HELP shadowcast_{name} {help}");
        let _ = writeln!(out, "# TYPE shadowcast_{name} gauge");
        let _ = writeln!(out, "shadowcast_{name} {value}");
    };
    gauge(
        "shards",
        "Shards answering for the migration.",
        f64::from(whole.shard_count),
    );
    gauge(
        "phase",
        "The slowest shard's phase (1 shadowing, 2 background, 3 cutover ready, 4 done).",
        f64::from(whole.phase),
    );
    for (location, counts) in [
        ("total", whole.total),
        ("source_only", whole.source_only),
        ("leased", whole.leased),
        ("current", whole.current),
        ("stale", whole.stale),
    ] {
        let counts = counts.unwrap_or_default();
        gauge(
            &format!("keys_{location}"),
            &format!("Keys {location}, all shards."),
            counts.keys as f64,
        );
        gauge(
            &format!("bytes_{location}"),
            &format!("Bytes {location}, all shards."),
            counts.bytes as f64,
        );
    }
    gauge(
        "confidence",
        "The lowest shard's confidence.",
        whole.confidence,
    );
    gauge(
        "live_leases",
        "Live leases, all shards.",
        whole.live_leases as f64,
    );
    gauge(
        "keys_leased_total",
        "Keys handed out in leases, all shards.",
        whole.keys_leased_total as f64,
    );
    gauge(
        "acks_accepted_total",
        "Acknowledgements accepted, all shards.",
        whole.acks_accepted_total as f64,
    );
    gauge(
        "copy_failures_total",
        "Copies reported failed, all shards.",
        whole.copy_failures_total as f64,
    );
    gauge(
        "keys_retrying",
        "Keys waiting to be offered again after failed copies, all shards.",
        whole.retrying_keys as f64,
    );
    gauge(
        "keys_parked",
        "Keys parked after max_copy_failures failures in a row, all shards.",
        whole.parked.unwrap_or_default().keys as f64,
    );
    out
}
