//! Stage 7 — the reference executor: the template a team adapts to its
//! own stores.
//!
//! Takes: a shadowcast endpoint (or the endpoints of every shard of a
//! sharded service: [`run_sharded`]) and a [`Copier`]: PostgreSQL tables as
//! they are ([`tables`], versions are log sequence numbers), or stores of
//! `key, version, value` rows ([`VersionedRows`] over a SQLite or
//! PostgreSQL [`Database`], versions are the logs' write times).
//! Gives: rows copied by key, source → destination, batch by batch as the
//! service leases them, each acknowledged with the version copied.
//!
//! Guarantees: a destination row is never replaced by an older version
//! (writes are conditional on the version); a key absent from the source is
//! removed from the destination, acknowledged at the version the lease
//! asked for; a batch the databases fail on is copied again in halves
//! until the keys at fault fail alone, and what still fails is
//! acknowledged as failed, so its keys go back in line instead of waiting
//! for the lease to expire. While the service is unavailable (restarting, or the connection
//! dropped) every call is retried with backoff for `ExecutorOptions::patience`,
//! so a restart of the service costs the executor a pause, not its batch:
//! copies made meanwhile are acknowledged once it is back. A batch's
//! acknowledgement is sent from a thread of its own while the next batch is
//! leased and copied, so the copier does not wait for the service to make
//! the last one durable; at most one acknowledgement is outstanding.

mod postgres;
mod sqlite;
pub mod tables;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::service::client::{Clients, connect};
use crate::service::proto::{self, key_ack};

/// A row as the executor moves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub version: u64,
    pub value: Vec<u8>,
}

/// One key to write to the destination: the source's row, or its absence.
#[derive(Clone, Copy, Debug)]
pub struct Copy<'a> {
    pub key: &'a [u8],
    pub version: u64,
    /// `None`: the key is gone from the source.
    pub value: Option<&'a [u8]>,
}

#[derive(Debug, thiserror::Error)]
#[error("{database}: {problem}")]
pub struct DatabaseError {
    pub database: String,
    pub problem: String,
}

/// Copies leased keys of one table from the source to the destination.
pub trait Copier: Send {
    /// What the versions it acknowledges are: the service must count
    /// versions the same way.
    fn versions(&self) -> crate::scheduler::Versions;

    /// Reads `keys` of `table` from the source in one snapshot and writes
    /// them to the destination in one transaction; gives, in order, the
    /// version each was copied at or why that key could not be. An error
    /// fails every key.
    fn copy(
        &mut self,
        table: &str,
        keys: &[&proto::LeasedKey],
    ) -> Result<Vec<Result<u64, String>>, DatabaseError>;
}

/// Stores of `key, version, value` rows: each row carries its version.
pub struct VersionedRows {
    pub source: Box<dyn Database>,
    pub destination: Box<dyn Database>,
}

impl VersionedRows {
    /// Opens both stores ([`open`]).
    pub fn open(source: &str, destination: &str) -> Result<VersionedRows, DatabaseError> {
        Ok(VersionedRows {
            source: open(source)?,
            destination: open(destination)?,
        })
    }
}

impl Copier for VersionedRows {
    fn versions(&self) -> crate::scheduler::Versions {
        crate::scheduler::Versions::Time
    }

    fn copy(
        &mut self,
        table: &str,
        keys: &[&proto::LeasedKey],
    ) -> Result<Vec<Result<u64, String>>, DatabaseError> {
        let names: Vec<&[u8]> = keys.iter().map(|k| k.key.as_ref()).collect();
        let rows = self.source.read(table, &names)?;
        let copies: Vec<Copy> = keys
            .iter()
            .zip(&rows)
            .map(|(key, row)| match row {
                Some(row) => Copy {
                    key: &key.key,
                    version: row.version,
                    value: Some(&row.value),
                },
                None => Copy {
                    key: &key.key,
                    version: key.min_version,
                    value: None,
                },
            })
            .collect();
        self.destination.write(table, &copies)?;
        Ok(copies.iter().map(|c| Ok(c.version)).collect())
    }
}

/// A table's name and its rows by key, sorted by key.
pub type TableRows = (String, Vec<(Vec<u8>, Row)>);

/// A store holding rows by (table, key), each with a version. Tables have
/// the columns `key` (bytes, primary key), `version` (64-bit integer) and
/// `value` (bytes).
pub trait Database: Send {
    /// The rows of `keys` (in order; `None` for a missing row), read in one
    /// consistent snapshot. A table that does not exist has no rows.
    fn read(&mut self, table: &str, keys: &[&[u8]]) -> Result<Vec<Option<Row>>, DatabaseError>;

    /// Applies `copies` in one transaction, creating the table if needed: a
    /// row is written unless the stored version is newer; an absent row
    /// deletes the stored one unless that is newer.
    fn write(&mut self, table: &str, copies: &[Copy]) -> Result<(), DatabaseError>;

    /// Every table and its rows, sorted by key (for checks of small stores).
    fn dump(&mut self) -> Result<Vec<TableRows>, DatabaseError>;
}

/// Opens `url`: `postgres://…` / `postgresql://…`, or `sqlite:PATH` (a bare
/// path is a SQLite file too).
pub fn open(url: &str) -> Result<Box<dyn Database>, DatabaseError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Box::new(postgres::Postgres::connect(url)?))
    } else {
        let path = url.strip_prefix("sqlite:").unwrap_or(url);
        Ok(Box::new(sqlite::Sqlite::open(path.as_ref())?))
    }
}

/// `"name"`, safe to put in SQL whatever `name` holds.
fn quoted(table: &str) -> String {
    format!("\"{}\"", table.replace('"', "\"\""))
}

pub(crate) fn to_sql_version(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

/// When to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Until {
    /// The operator ends the migration (phase DONE).
    Done,
    /// Every key is current (phase CUTOVER_READY) and nothing is due.
    CutoverReady,
}

#[derive(Clone, Debug)]
pub struct ExecutorOptions {
    pub endpoint: String,
    pub token: Option<String>,
    pub tls_ca: Option<std::path::PathBuf>,
    pub id: String,
    pub max_keys: u32,
    pub max_bytes: u64,
    pub tables: Vec<String>,
    pub until: Until,
    /// How long to keep retrying while the service is unavailable.
    pub patience: Duration,
}

/// What one executor did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecutorReport {
    pub leases: u64,
    pub keys: u64,
    pub bytes: u64,
    pub accepted: u64,
    pub stale: u64,
    pub failed: u64,
}

impl ExecutorReport {
    /// Counts what the service said of a lease's copies.
    fn count(&mut self, answer: Option<proto::AcknowledgeResponse>) {
        let Some(answer) = answer else {
            return;
        };
        self.accepted += answer.others_accepted;
        let others = answer
            .others_not_accepted
            .into_iter()
            .filter_map(|p| p.result);
        for result in answer.results.into_iter().chain(others) {
            match proto::AckOutcome::try_from(result.outcome) {
                Ok(proto::AckOutcome::Accepted | proto::AckOutcome::AlreadyCurrent) => {
                    self.accepted += 1
                }
                Ok(proto::AckOutcome::Stale) => self.stale += 1,
                _ => self.failed += 1,
            }
        }
    }

    fn add(&mut self, other: ExecutorReport) {
        self.leases += other.leases;
        self.keys += other.keys;
        self.bytes += other.bytes;
        self.accepted += other.accepted;
        self.stale += other.stale;
        self.failed += other.failed;
    }
}

/// Runs one copier per endpoint (the shards of one migration), each on its
/// own thread with its own connections from `open` (opened before it
/// leases anything, so unreachable databases are refused first), until each shard is finished by `options.until` or `stop`. Every shard
/// is worked to its end even when another fails; the first failure is then
/// returned, naming its endpoint.
pub fn run_sharded(
    endpoints: &[String],
    options: &ExecutorOptions,
    open: &(dyn Fn() -> anyhow::Result<Box<dyn Copier>> + Sync),
    stop: &AtomicBool,
) -> anyhow::Result<ExecutorReport> {
    let results: Vec<anyhow::Result<ExecutorReport>> = std::thread::scope(|scope| {
        let copiers: Vec<_> = endpoints
            .iter()
            .map(|endpoint| {
                let options = ExecutorOptions {
                    endpoint: endpoint.clone(),
                    ..options.clone()
                };
                scope.spawn(move || {
                    let mut copier = open()?;
                    run(&options, copier.as_mut(), stop)
                        .map_err(|error| error.context(format!("shard at {}", options.endpoint)))
                })
            })
            .collect();
        copiers
            .into_iter()
            .map(|copier| {
                copier
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a copier panicked")))
            })
            .collect()
    });
    let mut total = ExecutorReport::default();
    for result in results {
        total.add(result?);
    }
    Ok(total)
}

/// Leases, copies and acknowledges until `options.until` or `stop`.
pub fn run(
    options: &ExecutorOptions,
    copier: &mut dyn Copier,
    stop: &AtomicBool,
) -> anyhow::Result<ExecutorReport> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut clients = connect_patiently(&runtime, options)?;
    let status = patiently(
        &runtime,
        &mut clients,
        options.patience,
        "status",
        async |c| c.management.get_status(proto::GetStatusRequest {}).await,
    )?
    .into_inner();
    check_versions(&status, copier.versions(), &options.endpoint)?;
    let mut report = ExecutorReport::default();
    let request = proto::LeaseRequest {
        executor_id: options.id.clone(),
        max_keys: options.max_keys,
        max_bytes: options.max_bytes,
        tables: options.tables.clone(),
        wait_ms: 1_000,
    };
    let mut acknowledger = Acknowledger::start({
        let options = options.clone();
        move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let mut clients = connect_patiently(&runtime, &options)?;
            Ok(move |lease: &proto::LeaseResponse, acks| {
                acknowledge(&runtime, &mut clients, lease, acks, options.patience)
            })
        }
    });
    while !stop.load(Ordering::Relaxed) {
        let lease = patiently(
            &runtime,
            &mut clients,
            options.patience,
            "lease",
            async |c| c.executor.lease(request.clone()).await,
        )?
        .into_inner();
        if lease.keys.is_empty() {
            report.count(acknowledger.settle()?);
            if finished(&runtime, &mut clients, &lease, options)? {
                break;
            }
            let pause = Duration::from_millis(lease.retry_after_ms.min(1_000));
            std::thread::sleep(pause);
            continue;
        }
        report.leases += 1;
        let acks = copy_batch(&runtime, &mut clients, &lease, copier);
        report.keys += lease.keys.len() as u64;
        report.bytes += lease.keys.iter().map(|k| k.size_bytes).sum::<u64>();
        report.count(acknowledger.send(lease, acks)?);
    }
    report.count(acknowledger.settle()?);
    Ok(report)
}

/// Sends each lease's acknowledgements from a thread of its own, over a
/// connection of its own, one lease at a time: the executor leases and
/// copies its next batch while the service applies the last one and makes
/// it durable, instead of waiting for that answer first.
struct Acknowledger {
    leases: Option<mpsc::Sender<(proto::LeaseResponse, Vec<proto::KeyAck>)>>,
    answers: mpsc::Receiver<anyhow::Result<proto::AcknowledgeResponse>>,
    awaiting_answer: bool,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Acknowledger {
    /// Starts the thread, which first runs `connect` to get the function
    /// that acknowledges a lease (if connecting fails, each lease handed
    /// over is answered with that failure).
    fn start<F>(connect: impl FnOnce() -> anyhow::Result<F> + Send + 'static) -> Acknowledger
    where
        F: FnMut(
            &proto::LeaseResponse,
            Vec<proto::KeyAck>,
        ) -> anyhow::Result<proto::AcknowledgeResponse>,
    {
        let (leases, handed_over) = mpsc::channel::<(proto::LeaseResponse, Vec<proto::KeyAck>)>();
        let (answer, answers) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("acknowledger".into())
            .spawn(move || {
                let mut acknowledge = connect();
                for (lease, acks) in handed_over {
                    let answered = match &mut acknowledge {
                        Ok(acknowledge) => acknowledge(&lease, acks),
                        Err(error) => Err(anyhow::anyhow!(
                            "connecting to acknowledge copies: {error:#}"
                        )),
                    };
                    if answer.send(answered).is_err() {
                        break;
                    }
                }
            })
            .expect("starting the acknowledging thread");
        Acknowledger {
            leases: Some(leases),
            answers,
            awaiting_answer: false,
            thread: Some(thread),
        }
    }

    /// Hands over `lease`'s acknowledgements, once the answer to the lease
    /// handed over before (returned) has come.
    fn send(
        &mut self,
        lease: proto::LeaseResponse,
        acks: Vec<proto::KeyAck>,
    ) -> anyhow::Result<Option<proto::AcknowledgeResponse>> {
        let before = self.settle()?;
        self.leases
            .as_ref()
            .expect("lease handed over before the acknowledger is dropped")
            .send((lease, acks))
            .map_err(|_| anyhow::anyhow!("the acknowledging thread ended"))?;
        self.awaiting_answer = true;
        Ok(before)
    }

    /// Waits for the answer to the lease handed over last, if it has not
    /// been returned yet.
    fn settle(&mut self) -> anyhow::Result<Option<proto::AcknowledgeResponse>> {
        if !std::mem::take(&mut self.awaiting_answer) {
            return Ok(None);
        }
        let answer = self
            .answers
            .recv()
            .map_err(|_| anyhow::anyhow!("the acknowledging thread ended"))?;
        answer.map(Some)
    }
}

impl Drop for Acknowledger {
    /// Lets an acknowledgement already handed over finish (an executor
    /// that stops on an error keeps the copies it had made).
    fn drop(&mut self) {
        self.leases.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Refuses a service that counts versions another way than `copying`
/// (a copy acknowledged at an LSN against write times would be stale for
/// good, and the other way round current for good).
pub(crate) fn check_versions(
    status: &proto::Status,
    copying: crate::scheduler::Versions,
    endpoint: &str,
) -> anyhow::Result<()> {
    if status.versions != copying.name() {
        anyhow::bail!(
            "the service at {endpoint} counts versions as `{}`, but this copies at `{}` versions: serve it with --versions {}",
            status.versions,
            copying.name(),
            copying.name()
        );
    }
    Ok(())
}

/// Acknowledges a lease compactly: keys copied at exactly the version they
/// were leased with go unnamed (`others_copied_at_leased_version`), the
/// rest (failures, newer versions) one by one. If the lease is gone
/// (expired, or the service restarted), every key is named instead.
fn acknowledge(
    runtime: &tokio::runtime::Runtime,
    clients: &mut Clients,
    lease: &proto::LeaseResponse,
    acks: Vec<proto::KeyAck>,
    patience: Duration,
) -> anyhow::Result<proto::AcknowledgeResponse> {
    let leased: std::collections::HashMap<(&str, &[u8]), u64> = lease
        .keys
        .iter()
        .map(|k| ((k.table.as_str(), &k.key[..]), k.min_version))
        .collect();
    let at_leased_version = |ack: &proto::KeyAck| {
        matches!(ack.result, Some(key_ack::Result::CopiedVersion(version))
            if leased.get(&(ack.table.as_str(), &ack.key[..])) == Some(&version))
    };
    let compact = acks.len() == lease.keys.len() && acks.iter().any(at_leased_version);
    if compact {
        let named: Vec<proto::KeyAck> = acks
            .iter()
            .filter(|ack| !at_leased_version(ack))
            .cloned()
            .collect();
        let request = proto::AcknowledgeRequest {
            lease_id: lease.lease_id,
            acks: named,
            others_copied_at_leased_version: true,
        };
        let answer = patiently(runtime, clients, patience, "acknowledge", async |c| {
            c.executor.acknowledge(request.clone()).await
        });
        match answer {
            Ok(answer) => return Ok(answer.into_inner()),
            Err(status) if status.code() == tonic::Code::NotFound => {}
            Err(status) => return Err(status.into()),
        }
    }
    let request = proto::AcknowledgeRequest {
        lease_id: lease.lease_id,
        acks,
        others_copied_at_leased_version: false,
    };
    Ok(
        patiently(runtime, clients, patience, "acknowledge", async |c| {
            c.executor.acknowledge(request.clone()).await
        })?
        .into_inner(),
    )
}

/// Connects, retrying for `options.patience` while nothing answers (the
/// executor may start before the service).
fn connect_patiently(
    runtime: &tokio::runtime::Runtime,
    options: &ExecutorOptions,
) -> anyhow::Result<Clients> {
    Ok(until_connected(runtime, options.patience, async || {
        connect(
            &options.endpoint,
            options.token.as_deref(),
            options.tls_ca.as_deref(),
        )
        .await
    })?)
}

/// Runs `attempt` until it connects, retrying with backoff for `patience`
/// while nothing answers (a client may start before the service).
pub(crate) fn until_connected<T, E: std::fmt::Display>(
    runtime: &tokio::runtime::Runtime,
    patience: Duration,
    mut attempt: impl AsyncFnMut() -> Result<T, E>,
) -> Result<T, E> {
    let mut backoff = Backoff::new(patience);
    loop {
        match runtime.block_on(attempt()) {
            Ok(connected) => return Ok(connected),
            Err(error) => {
                let Some(pause) = backoff.next() else {
                    return Err(error);
                };
                tracing::warn!(%error, retry_in_ms = pause.as_millis() as u64, "the service does not answer; retrying");
                std::thread::sleep(pause);
            }
        }
    }
}

/// Whether `status` says the service could not be reached (UNAVAILABLE,
/// or the connection broke under the call, which tonic reports as UNKNOWN
/// with the transport's, hyper's or the socket's error as its source: a
/// service killed while it sent an answer gives hyper's "error reading a
/// body from connection"), not that it refused the call.
pub(crate) fn unreachable(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if error.is::<tonic::transport::Error>()
            || error.is::<hyper::Error>()
            || error.is::<std::io::Error>()
        {
            return true;
        }
        source = error.source();
    }
    status.code() == tonic::Code::Unavailable
}

/// The pauses between attempts: 0.1 s doubling to 5 s, while the next
/// attempt still starts within `patience` of the first.
struct Backoff {
    started: Instant,
    pause: Duration,
    patience: Duration,
}

impl Backoff {
    fn new(patience: Duration) -> Backoff {
        Backoff {
            started: Instant::now(),
            pause: Duration::from_millis(100),
            patience,
        }
    }

    /// How long to wait before the next attempt; `None` once the patience
    /// would run out.
    fn next(&mut self) -> Option<Duration> {
        let pause = self.pause;
        if self.started.elapsed() + pause >= self.patience {
            return None;
        }
        self.pause = (pause * 2).min(Duration::from_secs(5));
        Some(pause)
    }
}

/// Runs `call`, again and again with backoff while the service is
/// [`unreachable`], for up to `patience`; any other answer is returned.
/// `clients` are the executor's [`Clients`] or a routing
/// [`ShardedClients`](crate::service::client::ShardedClients).
pub(crate) fn patiently<C, T>(
    runtime: &tokio::runtime::Runtime,
    clients: &mut C,
    patience: Duration,
    what: &str,
    mut call: impl AsyncFnMut(&mut C) -> Result<T, tonic::Status>,
) -> Result<T, tonic::Status> {
    let mut backoff = Backoff::new(patience);
    loop {
        let status = match runtime.block_on(call(clients)) {
            Ok(answer) => return Ok(answer),
            Err(status) => status,
        };
        if !unreachable(&status) {
            return Err(status);
        }
        let Some(pause) = backoff.next() else {
            return Err(status);
        };
        tracing::warn!(
            call = what,
            message = status.message(),
            retry_in_ms = pause.as_millis() as u64,
            "the service is unavailable; retrying"
        );
        std::thread::sleep(pause);
    }
}

fn finished(
    runtime: &tokio::runtime::Runtime,
    clients: &mut Clients,
    lease: &proto::LeaseResponse,
    options: &ExecutorOptions,
) -> anyhow::Result<bool> {
    if lease.idle_reason == proto::IdleReason::Done as i32 {
        return Ok(true);
    }
    if options.until == Until::CutoverReady
        && lease.idle_reason == proto::IdleReason::NothingDue as i32
    {
        let status = patiently(runtime, clients, options.patience, "status", async |c| {
            c.management.get_status(proto::GetStatusRequest {}).await
        })?
        .into_inner();
        return Ok(status.phase == proto::Phase::CutoverReady as i32 && status.live_leases == 0);
    }
    Ok(false)
}

/// Copies one lease's keys table by table and says what to acknowledge.
fn copy_batch(
    runtime: &tokio::runtime::Runtime,
    clients: &mut Clients,
    lease: &proto::LeaseResponse,
    copier: &mut dyn Copier,
) -> Vec<proto::KeyAck> {
    let started = Instant::now();
    let lease_length =
        Duration::from_micros((lease.expires_at_us - crate::time::now_us()).max(0) as u64);
    let mut by_table: Vec<(&str, Vec<&proto::LeasedKey>)> = Vec::new();
    for key in &lease.keys {
        match by_table.iter_mut().find(|(t, _)| *t == key.table) {
            Some((_, keys)) => keys.push(key),
            None => by_table.push((&key.table, vec![key])),
        }
    }
    let mut acks = Vec::with_capacity(lease.keys.len());
    let mut extending = true;
    for (table, keys) in by_table {
        if extending && started.elapsed() > lease_length / 2 {
            // A slow batch keeps its lease rather than being handed out twice.
            let extended =
                runtime.block_on(clients.executor.extend_lease(proto::ExtendLeaseRequest {
                    lease_id: lease.lease_id,
                }));
            if let Err(status) = extended {
                // The copies still count (acknowledgements are judged by
                // version); the keys may meanwhile go to another executor.
                tracing::warn!(
                    lease = lease.lease_id,
                    code = ?status.code(),
                    message = status.message(),
                    "the lease could not be extended; copying on, its keys may be copied twice"
                );
                extending = false;
            }
        }
        let ack = |key: &proto::LeasedKey, result| proto::KeyAck {
            table: key.table.clone(),
            key: key.key.clone(),
            result: Some(result),
        };
        let copied = match copier.copy(table, &keys) {
            Ok(versions) => versions,
            Err(error) => {
                tracing::warn!(%error, table, keys = keys.len(), "copy failed; copying the batch in halves to find the keys at fault");
                isolate(copier, table, &keys, error.to_string())
            }
        };
        acks.extend(keys.iter().zip(copied).map(|(key, copied)| {
            ack(
                key,
                match copied {
                    Ok(version) => key_ack::Result::CopiedVersion(version),
                    Err(problem) => key_ack::Result::Failure(problem),
                },
            )
        }));
    }
    acks
}

/// Copies `keys`, whose copy in one batch failed with `error`, in parts,
/// so that a key that cannot be copied (a row the destination refuses)
/// fails alone and the rest are copied: first in halves, and a part that
/// fails while another goes through is split again. When both halves fail
/// they are tried once more as quarters (two refused rows may have fallen
/// one in each half); when every quarter fails too, the failure is not the
/// keys' (the destination is down, say) and every key fails with it, after
/// seven tries in all.
fn isolate(
    copier: &mut dyn Copier,
    table: &str,
    keys: &[&proto::LeasedKey],
    error: String,
) -> Vec<Result<u64, String>> {
    if keys.len() == 1 {
        return vec![Err(error)];
    }
    for split in [2, 4] {
        if split > keys.len() {
            break;
        }
        let parts: Vec<&[&proto::LeasedKey]> = keys.chunks(keys.len().div_ceil(split)).collect();
        let tried: Vec<_> = parts.iter().map(|part| copier.copy(table, part)).collect();
        if tried.iter().any(Result::is_ok) {
            let mut copied = Vec::with_capacity(keys.len());
            for (part, result) in parts.into_iter().zip(tried) {
                match result {
                    Ok(versions) => copied.extend(versions),
                    Err(failed) => copied.extend(isolate(copier, table, part, failed.to_string())),
                }
            }
            return copied;
        }
    }
    vec![Err(error); keys.len()]
}

/// Fills `database` with the state the logs describe: every key not
/// deleted, at its latest write's version (0 when never written), with a
/// value of its latest size. Returns the rows written.
pub fn seed(
    database: &mut dyn Database,
    activity: &crate::logs::activity::KeyActivity,
) -> Result<u64, DatabaseError> {
    let mut rows = 0;
    for (table, keys) in activity.tables() {
        let mut sorted: Vec<_> = keys.iter().filter(|(_, a)| !a.deleted).collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        let values: Vec<Vec<u8>> = sorted
            .iter()
            .map(|(key, a)| {
                value_of(
                    key,
                    a.last_write_ts.max(0) as u64,
                    a.last_size.max(0) as usize,
                )
            })
            .collect();
        for (chunk, values) in sorted.chunks(10_000).zip(values.chunks(10_000)) {
            let copies: Vec<Copy> = chunk
                .iter()
                .zip(values)
                .map(|((key, a), value)| Copy {
                    key,
                    version: a.last_write_ts.max(0) as u64,
                    value: Some(value),
                })
                .collect();
            database.write(table, &copies)?;
            rows += copies.len() as u64;
        }
    }
    Ok(rows)
}

/// A row's contents for seeding and simulated writes: `size` bytes that
/// depend on the key and version, so a wrong version shows in the value.
pub fn value_of(key: &[u8], version: u64, size: usize) -> Vec<u8> {
    let mut state = version ^ 0x9e37_79b9_7f4a_7c15;
    for &byte in key {
        state = (state ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Checks that the databases at `source` and `destination` hold the same
/// rows (tables without rows are ignored); returns the tables and rows
/// compared, or says where they first differ.
pub fn compare(source: &str, destination: &str) -> anyhow::Result<(usize, usize)> {
    let nonempty = |url: &str| -> anyhow::Result<Vec<TableRows>> {
        let mut tables = open(url)?.dump()?;
        tables.retain(|(_, rows)| !rows.is_empty());
        Ok(tables)
    };
    let (a, b) = (nonempty(source)?, nonempty(destination)?);
    if a.len() != b.len() {
        anyhow::bail!(
            "the source has {} tables, the destination {}",
            a.len(),
            b.len()
        );
    }
    let mut rows = 0;
    for ((table, rows_a), (other, rows_b)) in a.iter().zip(&b) {
        if table != other || rows_a != rows_b {
            let differing = rows_a.iter().zip(rows_b).find(|(x, y)| x != y).map_or_else(
                || "row counts".to_string(),
                |(x, _)| crate::keys::display_key(&x.0),
            );
            anyhow::bail!("table {table}: source and destination differ (first at {differing})");
        }
        rows += rows_a.len();
    }
    Ok((a.len(), rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(id: u64) -> proto::LeaseResponse {
        proto::LeaseResponse {
            lease_id: id,
            ..Default::default()
        }
    }

    /// Fails a whole batch holding a key it refuses, or every batch when
    /// `down`; counts its calls.
    struct Refusing {
        refused: &'static [&'static [u8]],
        down: bool,
        calls: usize,
    }

    impl Copier for Refusing {
        fn versions(&self) -> crate::scheduler::Versions {
            crate::scheduler::Versions::Time
        }

        fn copy(
            &mut self,
            _table: &str,
            keys: &[&proto::LeasedKey],
        ) -> Result<Vec<Result<u64, String>>, DatabaseError> {
            self.calls += 1;
            let failed = |problem: String| DatabaseError {
                database: "destination".into(),
                problem,
            };
            if self.down {
                return Err(failed("connection refused".into()));
            }
            if keys.iter().any(|key| self.refused.contains(&&key.key[..])) {
                return Err(failed(format!("{} keys, one refused", keys.len())));
            }
            Ok(keys.iter().map(|_| Ok(7)).collect())
        }
    }

    /// The keys `copier` fails among k0..k7 after their batch failed, and
    /// how many copies it took.
    fn isolated(
        refused: &'static [&'static [u8]],
        down: bool,
    ) -> (Vec<usize>, usize, Vec<Result<u64, String>>) {
        let keys: Vec<proto::LeasedKey> = (0..8)
            .map(|i| proto::LeasedKey {
                table: "t".into(),
                key: format!("k{i}").into_bytes().into(),
                ..Default::default()
            })
            .collect();
        let keys: Vec<&proto::LeasedKey> = keys.iter().collect();
        let mut copier = Refusing {
            refused,
            down,
            calls: 0,
        };
        let results = isolate(&mut copier, "t", &keys, "the batch".into());
        let failed = (0..8).filter(|&i| results[i].is_err()).collect();
        (failed, copier.calls, results)
    }

    #[test]
    fn a_failed_batch_is_copied_in_parts_until_the_keys_at_fault_fail_alone() {
        // One refused key: halves of 4, 2 and 1 keys, two copies each.
        let (failed, calls, results) = isolated(&[b"k5"], false);
        assert_eq!(failed, [5]);
        assert!(
            results[5]
                .as_ref()
                .unwrap_err()
                .contains("1 keys, one refused")
        );
        assert!(results.iter().flatten().all(|&version| version == 7));
        assert_eq!(calls, 6);
        // One in each half: both halves fail (2), the quarters (4), then
        // the two failing quarters in halves (2 + 2).
        let (failed, calls, _) = isolated(&[b"k1", b"k6"], false);
        assert_eq!(failed, [1, 6]);
        assert_eq!(calls, 10);
        // Down: halves and quarters fail, and every key with the batch.
        let (failed, calls, results) = isolated(&[], true);
        assert_eq!(failed, (0..8).collect::<Vec<_>>());
        assert!(results.iter().all(|r| r == &Err("the batch".to_string())));
        assert_eq!(calls, 6);
    }

    #[test]
    fn the_next_batch_goes_on_while_an_acknowledgement_waits_for_its_answer() {
        let (release, released) = mpsc::channel::<()>();
        let (sent, acknowledged) = mpsc::channel::<u64>();
        let mut acknowledger = Acknowledger::start(move || {
            Ok(move |lease: &proto::LeaseResponse, _acks| {
                sent.send(lease.lease_id).unwrap();
                released
                    .recv_timeout(Duration::from_secs(10))
                    .expect("the test lets the service answer");
                Ok(proto::AcknowledgeResponse {
                    others_accepted: lease.lease_id,
                    ..Default::default()
                })
            })
        });
        // Handing over the first lease returns while the service has not
        // answered it: an acknowledger that waited would never return here.
        assert!(acknowledger.send(lease(1), vec![]).unwrap().is_none());
        assert_eq!(acknowledged.recv().unwrap(), 1);
        release.send(()).unwrap();
        let first = acknowledger.send(lease(2), vec![]).unwrap();
        assert_eq!(first.unwrap().others_accepted, 1);
        assert_eq!(acknowledged.recv().unwrap(), 2);
        release.send(()).unwrap();
        assert_eq!(acknowledger.settle().unwrap().unwrap().others_accepted, 2);
        assert!(acknowledger.settle().unwrap().is_none());
    }

    #[test]
    fn a_failure_to_connect_answers_each_lease_handed_over() {
        type Acknowledge = fn(
            &proto::LeaseResponse,
            Vec<proto::KeyAck>,
        ) -> anyhow::Result<proto::AcknowledgeResponse>;
        let mut acknowledger = Acknowledger::start(|| -> anyhow::Result<Acknowledge> {
            anyhow::bail!("no route to host")
        });
        acknowledger.send(lease(1), vec![]).unwrap();
        let error = acknowledger.settle().unwrap_err();
        assert!(
            format!("{error:#}").contains("no route to host"),
            "{error:#}"
        );
    }

    #[test]
    fn a_broken_connection_is_unreachable_and_a_refusal_is_not() {
        let broken_pipe = std::io::Error::new(
            std::io::ErrorKind::BrokenPipe,
            "stream closed because of a broken pipe",
        );
        let broken = tonic::Status::from_error(Box::new(broken_pipe));
        assert_eq!(broken.code(), tonic::Code::Unknown);
        assert!(unreachable(&broken));
        assert!(unreachable(&tonic::Status::unavailable("nothing listens")));
        assert!(!unreachable(&tonic::Status::invalid_argument(
            "keys: empty"
        )));
        assert!(!unreachable(&tonic::Status::unknown("the policy trapped")));
        assert!(!unreachable(&tonic::Status::internal(
            "the state cannot be written"
        )));
    }
}
