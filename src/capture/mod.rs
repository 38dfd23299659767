//! Change capture: every committed write of a PostgreSQL source, from its
//! write-ahead log, reported to the service with its commit LSN as version.
//!
//! Takes: the source (with `wal_level = logical`), the destination (where
//! the capture records the slot it made and keeps the `shadowcast_status`
//! table), the service's endpoints.
//! Gives: ReportWrites for each committed change (inserts, updates,
//! deletes; an update that changes a key reports both keys; a TRUNCATE
//! reports its tables, whose every tracked key the service then copies
//! again), and the status table refreshed every few seconds.
//! Guarantees: the slot is confirmed only up to transactions the service
//! has accepted, so a crash of the capture or of the service loses no
//! write and re-sends at most what was not confirmed (a re-sent write is
//! harmless: versions only rise). The slot is dropped when the migration is
//! DONE or on `capture --drop`, and a slot this capture did not make is
//! never taken over.

mod log_appender;
pub mod pgoutput;
pub mod status_table;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use postgres::Client;

use self::log_appender::LogAppender;
use self::pgoutput::{Committed, Decoder};
use crate::executor::{patiently, unreachable, until_connected};
use crate::pg::{self, catalog, quote_identifier};
use crate::service::client::ShardedClients;
use crate::service::proto;

/// The destination table naming the slots a capture made (and so may
/// resume).
pub const CAPTURE_SLOTS: &str = "shadowcast_capture_slots";

#[derive(Clone, Debug)]
pub struct CaptureOptions {
    pub source: String,
    pub destination: String,
    pub endpoints: Vec<String>,
    pub token: Option<String>,
    pub tls_ca: Option<std::path::PathBuf>,
    pub slot: String,
    pub publication: String,
    /// Tables to capture; every table of the current schema with a
    /// primary key when empty.
    pub tables: Vec<String>,
    /// Pause between polls of an idle slot.
    pub poll: Duration,
    /// How often the status table is refreshed (and DONE looked for).
    pub status_every: Duration,
    /// How long to keep retrying while the service is unavailable.
    pub patience: Duration,
    /// Also append the writes to these Parquet access logs, every
    /// `logs_every`.
    pub logs: Option<std::path::PathBuf>,
    pub logs_every: Duration,
}

/// What one run of the capture did.
#[derive(Clone, Debug, Default)]
pub struct CaptureReport {
    pub transactions: u64,
    pub writes: u64,
    /// Tables reported truncated (once per truncating transaction).
    pub truncations: u64,
    /// Commit to accepted by the service, per transaction, in microseconds.
    pub lags_us: Vec<i64>,
    /// The migration was DONE and the slot dropped.
    pub finished: bool,
}

impl CaptureReport {
    /// The `share` quantile of the lags, in milliseconds.
    pub fn lag_ms(&self, share: f64) -> Option<f64> {
        let mut lags = self.lags_us.clone();
        lags.sort_unstable();
        let at = ((lags.len() as f64 - 1.0) * share).round() as usize;
        lags.get(at).map(|&us| us as f64 / 1000.0)
    }
}

/// Creates (or, if this capture made it, resumes) the slot, then reports
/// every committed write until the migration is DONE or `stop` is set.
pub fn run(options: &CaptureOptions, stop: &AtomicBool) -> anyhow::Result<CaptureReport> {
    let mut source = pg::connect(&options.source).context("source")?;
    let mut destination = pg::connect(&options.destination).context("destination")?;
    let source_name = pg::display_url(&options.source);
    check_logical(&mut source, &source_name)?;
    ensure_publication(&mut source, &source_name, options)?;
    ensure_slot(&mut source, &mut destination, &source_name, options)?;
    status_table::create(&mut destination)
        .map_err(pg::failed_at("destination: creating the status table"))?;
    let schema: String = source
        .query_one("SELECT current_schema()::text", &[])?
        .get(0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut clients = connect_patiently(&runtime, options)?;
    let statuses = runtime
        .block_on(clients.statuses())
        .map_err(|status| anyhow::anyhow!("asking the service its status: {}", status.message()))?;
    for status in &statuses {
        crate::executor::check_versions(
            status,
            crate::scheduler::Versions::Lsn,
            &options.endpoints.join(","),
        )?;
    }
    let mut decoder = Decoder::new(&schema);
    let mut appender = options
        .logs
        .as_deref()
        .map(|root| LogAppender::new(root, options.logs_every));
    let mut report = CaptureReport::default();
    let mut last_status: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        let (committed, decoded_to) = peek(&mut source, &mut decoder, options)
            .with_context(|| format!("{source_name}: reading slot {}", options.slot))?;
        if let Some(last) = committed.last() {
            let writes: Vec<proto::Write> = committed
                .iter()
                .flat_map(|txn| {
                    txn.writes.iter().map(|w| proto::Write {
                        table: w.table.clone(),
                        key: w.key.clone().into(),
                        version: txn.commit_lsn,
                        size_bytes: Some(w.size_bytes),
                    })
                })
                .collect();
            let truncations: Vec<proto::Truncation> = committed
                .iter()
                .flat_map(|txn| {
                    txn.truncated.iter().map(|table| proto::Truncation {
                        table: table.clone(),
                        version: txn.commit_lsn,
                    })
                })
                .collect();
            for table in &truncations {
                tracing::info!(
                    table = table.table,
                    lsn = %pg::lsn::format(table.version),
                    "table truncated in the source: its keys will be copied again (deleted)"
                );
            }
            // Versions only rise, so the order of writes and truncations
            // across calls does not matter.
            report_patiently(&runtime, &mut clients, &[], &truncations, options.patience)?;
            for chunk in writes.chunks(10_000) {
                report_patiently(&runtime, &mut clients, chunk, &[], options.patience)?;
            }
            let accepted_at = crate::time::now_us();
            match &mut appender {
                Some(appender) => appender.add(&committed),
                None => advance(&mut source, options, last.end_lsn)?,
            }
            report.transactions += committed.len() as u64;
            report.writes += writes.len() as u64;
            report.truncations += truncations.len() as u64;
            report.lags_us.extend(
                committed
                    .iter()
                    .map(|txn| accepted_at - txn.committed_at_us),
            );
        }
        if last_status.is_none_or(|at| at.elapsed() >= options.status_every) {
            last_status = Some(Instant::now());
            let status = runtime.block_on(clients.statuses());
            let combined = match status {
                Ok(statuses) => crate::service::client::combine(&statuses).ok(),
                Err(error) => {
                    tracing::warn!(
                        message = error.message(),
                        "the service did not give its status"
                    );
                    None
                }
            };
            if let Some(status) = &combined {
                let slot = status_table::slot_figures(&mut source, &options.slot)
                    .map_err(pg::failed_at(&source_name))?;
                status_table::write(&mut destination, status, slot.as_ref())
                    .map_err(pg::failed_at("destination: writing the status table"))?;
                if status.phase == proto::Phase::Done as i32 {
                    drop_slot(&mut source, &mut destination, options)?;
                    report.finished = true;
                    break;
                }
            }
        }
        if let Some(appender) = appender.as_mut().filter(|a| a.due()) {
            flush_logs(appender, &mut source, options)?;
        }
        if committed.is_empty() {
            // Nothing was committed up to `decoded_to`: confirming it
            // keeps an idle slot from holding WAL back (a transaction
            // still open there is decoded in full when it commits).
            if !appender.as_ref().is_some_and(LogAppender::holds_events) {
                advance(&mut source, options, decoded_to)?;
            }
            std::thread::sleep(options.poll);
        }
    }
    if let Some(appender) = appender.as_mut() {
        flush_logs(appender, &mut source, options)?;
    }
    Ok(report)
}

/// Writes the buffered events to the logs, then confirms the slot past them.
fn flush_logs(
    appender: &mut LogAppender,
    source: &mut Client,
    options: &CaptureOptions,
) -> anyhow::Result<()> {
    let logs = options.logs.as_deref().unwrap_or(std::path::Path::new(""));
    if let Some(end_lsn) = appender.flush().with_context(|| {
        format!(
            "appending writes to the access logs under {}",
            logs.display()
        )
    })? {
        advance(source, options, end_lsn)?;
    }
    Ok(())
}

/// Drops the slot and the publication this capture made, and forgets them.
pub fn drop_slot(
    source: &mut Client,
    destination: &mut Client,
    options: &CaptureOptions,
) -> anyhow::Result<()> {
    let source_name = pg::display_url(&options.source);
    source
        .execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
            &[&options.slot],
        )
        .map_err(pg::failed_at(&source_name))?;
    source
        .batch_execute(&format!(
            "DROP PUBLICATION IF EXISTS {}",
            quote_identifier(&options.publication)
        ))
        .map_err(pg::failed_at(&source_name))?;
    forget_slot(destination, &options.slot)?;
    tracing::info!(slot = options.slot, "replication slot dropped");
    Ok(())
}

/// [`drop_slot`] with its own connections (`capture --drop`).
pub fn drop_slot_at(options: &CaptureOptions) -> anyhow::Result<()> {
    let mut source = pg::connect(&options.source).context("source")?;
    let mut destination = pg::connect(&options.destination).context("destination")?;
    drop_slot(&mut source, &mut destination, options)
}

fn check_logical(source: &mut Client, source_name: &str) -> anyhow::Result<()> {
    let level: String = source
        .query_one("SHOW wal_level", &[])
        .map_err(pg::failed_at(source_name))?
        .get(0);
    if level != "logical" {
        bail!(
            "{source_name}: wal_level is {level}; capturing writes needs logical: set wal_level = logical in postgresql.conf (or ALTER SYSTEM SET wal_level = logical) and restart the server"
        );
    }
    Ok(())
}

fn ensure_publication(
    source: &mut Client,
    source_name: &str,
    options: &CaptureOptions,
) -> anyhow::Result<()> {
    let tables = if options.tables.is_empty() {
        catalog::tables_with_keys(source).map_err(pg::failed_at(&source_name))?
    } else {
        options.tables.clone()
    };
    if tables.is_empty() {
        bail!("{source_name}: no table with a primary key to capture in the current schema");
    }
    let mut names = Vec::new();
    for table in &tables {
        let described = catalog::describe(source, table)
            .map_err(pg::failed_at(&source_name))?
            .ok_or_else(|| anyhow::anyhow!("{source_name}: there is no table {table}"))?;
        if described.primary_key.is_empty() {
            bail!(
                "{source_name}: table {table} has no primary key: its changes would not say which row they touched"
            );
        }
        names.push(described.sql_name);
    }
    let exists = source
        .query_opt(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&options.publication],
        )
        .map_err(pg::failed_at(&source_name))?
        .is_some();
    let publication = quote_identifier(&options.publication);
    if !exists {
        source
            .batch_execute(&format!(
                "CREATE PUBLICATION {publication} FOR TABLE {}",
                names.join(", ")
            ))
            .map_err(pg::failed_at(&source_name))?;
        return Ok(());
    }
    for name in names {
        let member = source
            .query_opt(
                "SELECT 1 FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid \
                 WHERE p.pubname = $1 AND r.prrelid = $2::text::regclass",
                &[&options.publication, &name],
            )
            .map_err(pg::failed_at(&source_name))?
            .is_some();
        if !member {
            source
                .batch_execute(&format!("ALTER PUBLICATION {publication} ADD TABLE {name}"))
                .map_err(pg::failed_at(&source_name))?;
        }
    }
    Ok(())
}

/// Makes the slot, or resumes it when the destination records that this
/// capture made it; refuses one made by anyone else, and a recorded slot
/// that is gone (writes since it went were not captured).
fn ensure_slot(
    source: &mut Client,
    destination: &mut Client,
    source_name: &str,
    options: &CaptureOptions,
) -> anyhow::Result<()> {
    let slot = &options.slot;
    destination
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {CAPTURE_SLOTS} (\
                 slot_name text PRIMARY KEY, publication text NOT NULL, \
                 made boolean NOT NULL, recorded_at timestamptz NOT NULL DEFAULT now())"
        ))
        .map_err(pg::failed_at("destination"))?;
    let recorded: Option<bool> = destination
        .query_opt(
            &format!("SELECT made FROM {CAPTURE_SLOTS} WHERE slot_name = $1"),
            &[slot],
        )
        .map_err(pg::failed_at("destination"))?
        .map(|row| row.get(0));
    let on_source: Option<String> = source
        .query_opt(
            "SELECT plugin::text FROM pg_replication_slots WHERE slot_name = $1",
            &[slot],
        )
        .map_err(pg::failed_at(&source_name))?
        .map(|row| row.get(0));
    match (recorded, on_source) {
        (Some(true), Some(_)) => {
            tracing::info!(slot, "resuming the replication slot this capture made");
            Ok(())
        }
        (Some(true), None) => bail!(
            "{source_name}: replication slot {slot} was made for this migration but is gone: writes since it was dropped were not captured; run `shadowcast verify --requeue`, then `shadowcast capture --drop` and start the capture again"
        ),
        (None, Some(plugin)) => bail!(
            "{source_name}: a replication slot named {slot} (plugin {plugin}) already exists and was not made by shadowcast capture for this destination: drop it if it is left over (SELECT pg_drop_replication_slot('{slot}')) or pass another --slot"
        ),
        (Some(false), _) | (None, None) => {
            // Recorded first, so a crash after making the slot finds it
            // ours; an unmade record with no slot is simply made again.
            destination
                .execute(
                    &format!(
                        "INSERT INTO {CAPTURE_SLOTS} (slot_name, publication, made) VALUES ($1, $2, false) \
                         ON CONFLICT (slot_name) DO NOTHING"
                    ),
                    &[slot, &options.publication],
                )
                .map_err(pg::failed_at("destination"))?;
            if let Err(error) = source.execute(
                "SELECT pg_create_logical_replication_slot($1, 'pgoutput') \
                 WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
                &[slot],
            ) {
                return Err(pg::failed_at(&source_name)(error))
                    .context(format!("creating replication slot {slot}"));
            }
            destination
                .execute(
                    &format!("UPDATE {CAPTURE_SLOTS} SET made = true WHERE slot_name = $1"),
                    &[slot],
                )
                .map_err(pg::failed_at("destination"))?;
            tracing::info!(slot, "replication slot made");
            Ok(())
        }
    }
}

fn forget_slot(destination: &mut Client, slot: &str) -> anyhow::Result<()> {
    let exists = destination
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&CAPTURE_SLOTS])
        .map_err(pg::failed_at("destination"))?
        .get::<_, bool>(0);
    if exists {
        destination
            .execute(
                &format!("DELETE FROM {CAPTURE_SLOTS} WHERE slot_name = $1"),
                &[&slot],
            )
            .map_err(pg::failed_at("destination"))?;
    }
    Ok(())
}

/// The committed transactions waiting in the slot (at most about 10,000
/// changes), without confirming them, and a position the slot was decoded
/// to (read before decoding, so when no transaction came back, none
/// committed before it).
fn peek(
    source: &mut Client,
    decoder: &mut Decoder,
    options: &CaptureOptions,
) -> anyhow::Result<(Vec<Committed>, u64)> {
    let flushed: String = source
        .query_one("SELECT pg_current_wal_flush_lsn()::text", &[])
        .map_err(pg::failed)?
        .get(0);
    let flushed = pg::lsn::parse(&flushed).map_err(anyhow::Error::msg)?;
    let rows = source
        .query(
            "SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, 10000, \
             'proto_version', '1', 'publication_names', $2)",
            &[&options.slot, &options.publication],
        )
        .map_err(pg::failed)?;
    let mut committed = Vec::new();
    for row in rows {
        let data: &[u8] = row.get(0);
        if let Some(done) = decoder.message(data)? {
            committed.push(done);
        }
    }
    Ok((committed, flushed))
}

/// Confirms the slot up to `end_lsn` (never backwards).
fn advance(source: &mut Client, options: &CaptureOptions, end_lsn: u64) -> anyhow::Result<()> {
    source
        .execute(
            "SELECT pg_replication_slot_advance(slot_name, $2::text::pg_lsn) FROM pg_replication_slots \
             WHERE slot_name = $1 AND confirmed_flush_lsn < $2::text::pg_lsn",
            &[&options.slot, &pg::lsn::format(end_lsn)],
        )
        .map_err(pg::failed_at(format!(
            "{}: confirming slot {}",
            pg::display_url(&options.source),
            options.slot
        )))?;
    Ok(())
}

fn connect_patiently(
    runtime: &tokio::runtime::Runtime,
    options: &CaptureOptions,
) -> anyhow::Result<ShardedClients> {
    Ok(until_connected(runtime, options.patience, async || {
        ShardedClients::connect(
            &options.endpoints,
            options.token.as_deref(),
            options.tls_ca.as_deref(),
        )
        .await
    })?)
}

/// Reports `writes` and `truncations`, retrying with backoff while the
/// service is unreachable; a refusal is an error (the slot stays
/// unconfirmed). Nothing to report is no call.
fn report_patiently(
    runtime: &tokio::runtime::Runtime,
    clients: &mut ShardedClients,
    writes: &[proto::Write],
    truncations: &[proto::Truncation],
    patience: Duration,
) -> anyhow::Result<()> {
    if writes.is_empty() && truncations.is_empty() {
        return Ok(());
    }
    match patiently(runtime, clients, patience, "report writes", async |c| {
        c.report_writes(writes.to_vec(), truncations).await
    }) {
        Ok(_) => Ok(()),
        Err(status) if unreachable(&status) => {
            bail!("the service stayed unavailable: {}", status.message())
        }
        Err(status) => bail!(
            "the service refused the writes ({:?}): {}",
            status.code(),
            status.message()
        ),
    }
}
