//! `capture` and `verify`: a PostgreSQL migration's change stream and its
//! final check.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::capture::{self, CaptureOptions};
use crate::executor::tables::mapping::Mapping;
use crate::verify::{self, VerifyOptions};

#[derive(Args, Debug)]
pub struct CaptureArgs {
    /// The source: postgres://USER@HOST/DB, with wal_level = logical.
    #[arg(long)]
    pub source: String,
    /// The destination, where the capture records its slot and keeps the
    /// shadowcast_status table.
    #[arg(long)]
    pub destination: String,
    #[command(flatten)]
    pub service: super::ServiceArgs,
    /// The logical replication slot to make (or resume).
    #[arg(long, default_value = "shadowcast")]
    pub slot: String,
    /// The publication naming the captured tables.
    #[arg(long, default_value = "shadowcast")]
    pub publication: String,
    /// Tables to capture (comma-separated); every table of the current
    /// schema with a primary key when absent.
    #[arg(long, value_delimiter = ',')]
    pub tables: Vec<String>,
    /// Pause between polls of an idle slot, e.g. 100ms.
    #[arg(long, default_value = "100ms", value_parser = crate::time::parse_std_duration)]
    pub poll: std::time::Duration,
    /// How often the status table is refreshed, e.g. 2s.
    #[arg(long, default_value = "2s", value_parser = crate::time::parse_std_duration)]
    pub status_every: std::time::Duration,
    /// How long to keep retrying while the service is unavailable, e.g. 5m.
    #[arg(long, default_value = "5m", value_parser = crate::time::parse_std_duration)]
    pub retry_for: std::time::Duration,
    /// Also append every captured write to these Parquet access logs
    /// (Hive layout), so features see the writes the source committed.
    #[arg(long)]
    pub logs: Option<PathBuf>,
    /// How often the appended writes are written out, e.g. 1m.
    #[arg(long, default_value = "1m", value_parser = crate::time::parse_std_duration)]
    pub logs_every: std::time::Duration,
    /// Drop the slot and the publication, and stop (the migration is over
    /// or abandoned; a forgotten slot keeps WAL on the source's disk).
    #[arg(long)]
    pub drop: bool,
}

pub fn capture(args: CaptureArgs) -> Result<()> {
    let options = CaptureOptions {
        source: args.source,
        destination: args.destination,
        endpoints: args.service.endpoint,
        token: args.service.token,
        tls_ca: args.service.tls_ca,
        slot: args.slot,
        publication: args.publication,
        tables: args.tables,
        poll: args.poll,
        status_every: args.status_every,
        patience: args.retry_for,
        logs: args.logs,
        logs_every: args.logs_every,
    };
    if args.drop {
        capture::drop_slot_at(&options)?;
        eprintln!(
            "dropped replication slot {} and publication {}",
            options.slot, options.publication
        );
        return Ok(());
    }
    let stop = super::stop_on_signal();
    let report = capture::run(&options, &stop)?;
    let lag = |share| {
        report
            .lag_ms(share)
            .map_or("-".to_string(), |ms| format!("{ms:.1} ms"))
    };
    eprintln!(
        "{} transactions, {} writes reported; lag from commit to accepted p50 {} p99 {}{}",
        report.transactions,
        report.writes,
        lag(0.5),
        lag(0.99),
        if report.finished {
            "; the migration is DONE: replication slot dropped"
        } else {
            ""
        }
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The source: postgres://USER@HOST/DB.
    #[arg(long)]
    pub source: String,
    /// The destination: postgres://USER@HOST/DB.
    #[arg(long)]
    pub destination: String,
    /// The executor's mapping file, so each table is compared as the
    /// destination should hold it.
    #[arg(long)]
    pub mapping: Option<PathBuf>,
    /// Tables to compare (comma-separated); every table of the source's
    /// current schema with a primary key when absent.
    #[arg(long, value_delimiter = ',')]
    pub tables: Vec<String>,
    /// Keys per chunk.
    #[arg(long, default_value_t = 1000)]
    pub chunk: usize,
    /// Report the keys that differ (and no later write explains) to the
    /// service as written, so they are copied again.
    #[arg(long)]
    pub requeue: bool,
    /// The service, for --requeue.
    #[command(flatten)]
    pub service: super::ServiceArgs,
    /// Keys listed per table.
    #[arg(long, default_value_t = 20)]
    pub show: usize,
}

/// Exits with an error when a difference is left that no later write explains.
pub fn verify(args: VerifyArgs) -> Result<()> {
    let mapping = match &args.mapping {
        Some(path) => Mapping::read(path)?,
        None => Mapping::default(),
    };
    let options = VerifyOptions {
        source: args.source,
        destination: args.destination,
        mapping,
        tables: args.tables,
        chunk: args.chunk,
    };
    let report = verify::verify(&options)?;
    let snapshot = crate::pg::lsn::format(report.snapshot_lsn + 1);
    let mut rows = 0;
    for table in &report.tables {
        rows += table.rows;
        let explained = table
            .differing
            .iter()
            .filter(|d| d.copied_after_snapshot.is_some())
            .count();
        println!(
            "table {}: {} rows in {} chunks ({} compared row by row): {} keys differ, {} of them explained by writes after the snapshot",
            table.table,
            table.rows,
            table.chunks,
            table.chunks_compared_by_row,
            table.differing.len(),
            explained
        );
        for differing in table.differing.iter().take(args.show) {
            let why = match differing.copied_after_snapshot {
                Some(version) => format!(
                    " (explained: copied at {} after the snapshot)",
                    crate::pg::lsn::format(version)
                ),
                None => String::new(),
            };
            println!(
                "  {:<28} {}{why}",
                differing.difference.describe(),
                crate::keys::display_key(&differing.key)
            );
        }
    }
    let unexplained: Vec<(&str, &verify::DifferingKey)> = report.unexplained().collect();
    println!(
        "verified {} tables, {rows} rows at source snapshot {snapshot}: {} keys differ with no later write to explain them",
        report.tables.len(),
        unexplained.len()
    );
    if args.requeue && !unexplained.is_empty() {
        let writes: Vec<crate::service::proto::Write> = unexplained
            .iter()
            .map(|(table, differing)| crate::service::proto::Write {
                table: table.to_string(),
                key: differing.key.clone().into(),
                // The snapshot's LSN: later than the copy the service
                // counts as current, so the key is copied again.
                version: report.snapshot_lsn + 1,
                size_bytes: None,
            })
            .collect();
        let runtime = super::runtime()?;
        runtime.block_on(async {
            let mut clients = crate::service::client::ShardedClients::connect(
                &args.service.endpoint,
                args.service.token.as_deref(),
                args.service.tls_ca.as_deref(),
            )
            .await?;
            for chunk in writes.chunks(10_000) {
                clients.report_writes(chunk.to_vec(), &[]).await?;
            }
            anyhow::Ok(())
        })?;
        println!("requeued {} keys", writes.len());
    }
    if !unexplained.is_empty() {
        anyhow::bail!(
            "{} keys differ between source and destination",
            unexplained.len()
        );
    }
    Ok(())
}
