//! The gRPC service over loopback: lease + acknowledge throughput with 1, 8
//! and 32 concurrent executors (1,000-key batches), with p50 and p99 lease
//! latency and p50 acknowledge latency (for the service: applied and
//! durable), beside the same clients against a bare tonic server that
//! answers the same message sizes and does no work, in a process of its
//! own built with mimalloc (the machine's loopback gRPC limit); executors
//! acknowledge per key, then in the compact form (the whole lease copied
//! at the versions leased). After each run, the service's /metrics say
//! where its calls spent their time (waiting for the scheduler's owner,
//! run by it, waiting for a tokio worker, waiting for the commit's fsync).
//! Then 8 executors for
//! 10 s while log files arrive every second and the service re-plans its
//! 2M keys from them (the window opens once its start-up plan is in place),
//! beside the same service planned once from the same logs and not
//! re-planning. Then batched location
//! look-ups of random tracked keys over one connection.
//!
//! `cargo bench --bench service_throughput [-- KEYS] [quick] [lean-peer]`
//! (`quick`: only the 8-executor rows, to compare builds in alternating
//! runs; `lean-peer`: the bare peer writes its leases and reads
//! acknowledgements with the service's own message code, `service::wire`,
//! instead of the generated types, so it too skips their work per key;
//! default 20 million keys:
//! more than the fastest run copies in a 10 s window, 1.9 M keys/s on the
//! machine of 2026-12-02's fifth session; with fewer, a run that copies
//! every key ends early, and its share counts only the windows that still
//! had keys to lease).
//! Plans KEYS keys into a location map once, then for each executor count
//! serves a fresh copy of it in this process and lets the executors lease
//! and acknowledge (every key copied at the version asked) for up to 4 s,
//! in four 1 s windows taken in turn with the bare peer's; the share is
//! the median of the windows' shares, their range beside it.
//! Server and clients share this machine's cores, as they would on one
//! host.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use common::executors::{AckForm, BATCH, Measured, drive};
use shadowcast::config::{ServeArgs, ServeConfig};
use shadowcast::policy::Decisions;
use shadowcast::scheduler::{Scheduler, SchedulerConfig};
use shadowcast::service::client::{Clients, connect};
use shadowcast::service::proto;
use shadowcast::service::proto::executor_server::{Executor, ExecutorServer};
use shadowcast::service::wire;
use tonic::{Request, Response, Status};

/// How long the executors run against each of the service and the bare
/// peer, in [`ROUNDS`] windows taken in turn (the peer first in even
/// rounds, the service first in odd ones): the machine's speed drifts
/// between runs, and by up to 70% for the bare peer on the development
/// machine, so each window's share is taken against the peer's window
/// beside it.
const RUN: Duration = Duration::from_secs(4);
/// Windows per run; the share printed is the median of their shares,
/// with the lowest and highest beside it.
const ROUNDS: u32 = 4;
/// Keys the re-planning run's logs name (each re-plan scores them all).
const REPLANNED_KEYS: usize = 2_000_000;
/// Long enough for several re-plans to start and finish.
const REPLAN_RUN: Duration = Duration::from_secs(10);

/// Where the service's plan comes from.
#[derive(Clone, Copy)]
enum Planning<'a> {
    /// The location map planned beforehand; no logs.
    Template,
    /// Planned at start from `logs`, and again every second when `replan`
    /// and new log files arrived (each re-plan brings every key's features
    /// up to date, scores, ranks and swaps the plan in).
    Logs { logs: &'a Path, replan: bool },
}

fn config(state: &Path, planning: Planning) -> ServeConfig {
    let (logs, replan) = match planning {
        Planning::Template => (state.join("no-logs"), false),
        Planning::Logs { logs, replan } => (logs.to_path_buf(), replan),
    };
    ServeConfig::resolve(ServeArgs {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        state_dir: Some(state.to_path_buf()),
        logs: Some(logs),
        follow_seconds: Some(0.0),
        replan_every: Some(if replan { "1s" } else { "off" }.into()),
        models: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("models")),
        ..Default::default()
    })
    .expect("config")
}

async fn start(state: &Path, planning: Planning<'_>) -> (SocketAddr, common::Stop) {
    common::serve_in_process(config(state, planning)).await
}

/// The service started over `state` (see [`config`]) and moved to
/// BACKGROUND, so every key may be leased: its endpoint, its stop signal
/// and an admin client.
async fn start_in_background(
    state: &Path,
    planning: Planning<'_>,
) -> (String, common::Stop, Clients) {
    let (address, stop) = start(state, planning).await;
    let endpoint = format!("http://{address}");
    let mut admin = connect(&endpoint, None, None).await.unwrap();
    admin
        .management
        .force_phase(proto::ForcePhaseRequest {
            phase: proto::Phase::Background as i32,
        })
        .await
        .unwrap();
    (endpoint, stop, admin)
}

/// How many plans the service has put in place since it started.
async fn plans_made(admin: &mut Clients) -> u64 {
    admin
        .management
        .get_status(proto::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .plans_made
}

/// The peer: a tonic server with the same API that answers every lease
/// with the same 1,000 keys (as the service would send them) and every
/// acknowledgement with 1,000 results, doing nothing else.
struct Bare {
    lease: proto::LeaseResponse,
    ack: proto::AcknowledgeResponse,
}

#[tonic::async_trait]
impl Executor for Bare {
    async fn lease(
        &self,
        _: Request<proto::LeaseRequest>,
    ) -> Result<Response<proto::LeaseResponse>, Status> {
        Ok(Response::new(self.lease.clone()))
    }

    async fn extend_lease(
        &self,
        _: Request<proto::ExtendLeaseRequest>,
    ) -> Result<Response<proto::ExtendLeaseResponse>, Status> {
        Ok(Response::new(proto::ExtendLeaseResponse::default()))
    }

    async fn acknowledge(
        &self,
        request: Request<proto::AcknowledgeRequest>,
    ) -> Result<Response<proto::AcknowledgeResponse>, Status> {
        Ok(acknowledged(
            request.get_ref().others_copied_at_leased_version,
            &self.ack,
        ))
    }

    async fn report_writes(
        &self,
        _: Request<proto::ReportWritesRequest>,
    ) -> Result<Response<proto::ReportWritesResponse>, Status> {
        Ok(Response::new(proto::ReportWritesResponse::default()))
    }
}

/// The bare peer written as the service writes its messages
/// (`lean-peer`): the same lease, kept as the scheduler's batch and
/// written by `service::wire`, and acknowledgements read by it.
struct LeanBare {
    lease: shadowcast::scheduler::LeasedBatch,
    ack: proto::AcknowledgeResponse,
}

#[tonic::async_trait]
impl wire::executor_server::Executor for LeanBare {
    async fn lease(
        &self,
        _: Request<proto::LeaseRequest>,
    ) -> Result<Response<wire::LeaseAnswer>, Status> {
        Ok(Response::new(wire::LeaseAnswer::Leased(self.lease.clone())))
    }

    async fn extend_lease(
        &self,
        _: Request<proto::ExtendLeaseRequest>,
    ) -> Result<Response<proto::ExtendLeaseResponse>, Status> {
        Ok(Response::new(proto::ExtendLeaseResponse::default()))
    }

    async fn acknowledge(
        &self,
        request: Request<wire::AckRequest>,
    ) -> Result<Response<proto::AcknowledgeResponse>, Status> {
        Ok(acknowledged(
            request.get_ref().others_copied_at_leased_version,
            &self.ack,
        ))
    }

    async fn report_writes(
        &self,
        _: Request<proto::ReportWritesRequest>,
    ) -> Result<Response<proto::ReportWritesResponse>, Status> {
        Ok(Response::new(proto::ReportWritesResponse::default()))
    }
}

/// A bare peer's answer to an acknowledgement: the compact form's count,
/// or one result per key named.
fn acknowledged(
    compact: bool,
    per_key: &proto::AcknowledgeResponse,
) -> Response<proto::AcknowledgeResponse> {
    if compact {
        return Response::new(proto::AcknowledgeResponse {
            others_accepted: u64::from(BATCH),
            ..Default::default()
        });
    }
    Response::new(per_key.clone())
}

/// Set in the environment of the bare peer's process.
const PEER_VARIABLE: &std::ffi::CStr = c"SHADOWCAST_BENCH_BARE_PEER";
/// Set beside it for `lean-peer`.
const LEAN_PEER_VARIABLE: &str = "SHADOWCAST_BENCH_LEAN_PEER";

/// The bare peer runs in a process of its own that allocates with
/// mimalloc, as a skilled tonic user would run it (bound by glibc's heap
/// locks, the same server answered 40–60% fewer keys/s; BENCHMARKS.md),
/// while this process serves shadowcast on glibc's allocator, as the
/// shipped program does. Which one a process uses is settled at its first
/// allocation, from the environment, so no block is freed by the other.
struct ChosenAllocator;

static PEER_PROCESS: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(UNSETTLED);
const UNSETTLED: u8 = 0;
const SERVICE: u8 = 1;
const PEER: u8 = 2;

fn in_peer_process() -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    match PEER_PROCESS.load(Relaxed) {
        SERVICE => false,
        PEER => true,
        _ => {
            // SAFETY: getenv reads the environment without allocating; the
            // first allocation comes before any thread could change it.
            let peer = unsafe { !libc::getenv(PEER_VARIABLE.as_ptr()).is_null() };
            PEER_PROCESS.store(if peer { PEER } else { SERVICE }, Relaxed);
            peer
        }
    }
}

/// The allocator this process settled on.
fn chosen() -> &'static dyn std::alloc::GlobalAlloc {
    if in_peer_process() {
        &mimalloc::MiMalloc
    } else {
        &std::alloc::System
    }
}

// SAFETY: every call goes to the one allocator the process settled on.
unsafe impl std::alloc::GlobalAlloc for ChosenAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        unsafe { chosen().alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        unsafe { chosen().alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { chosen().dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        unsafe { chosen().realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: ChosenAllocator = ChosenAllocator;

/// The bare peer's process: serves [`Bare`] on a loopback port, prints
/// the port's address, and runs until its standard input closes.
fn run_bare_peer() {
    let candidates = common::candidates(BATCH as usize);
    let keys = (0..BATCH as usize)
        .map(|i| proto::LeasedKey {
            table: candidates.tables.name(candidates.table_ids[i]).to_string(),
            key: candidates.key(i).to_vec().into(),
            size_bytes: candidates.size_bytes[i],
            priority: 3,
            destination: 0,
            min_version: 0,
        })
        .collect();
    let lease = proto::LeaseResponse {
        lease_id: 1,
        expires_at_us: 1,
        keys,
        ..Default::default()
    };
    let ack = proto::AcknowledgeResponse {
        results: (0..BATCH)
            .map(|_| proto::KeyAckResult {
                outcome: proto::AckOutcome::Accepted as i32,
                latest_write: 0,
                reason: String::new(),
            })
            .collect(),
        ..Default::default()
    };
    let lean = std::env::var_os(LEAN_PEER_VARIABLE).is_some();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap());
        let parent_gone = tokio::task::spawn_blocking(|| {
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
        });
        let router = if lean {
            let lease = LeanBare {
                lease: batch_of(&lease),
                ack,
            };
            tonic::transport::Server::builder()
                .add_service(wire::executor_server::ExecutorServer::new(lease))
        } else {
            tonic::transport::Server::builder()
                .add_service(ExecutorServer::new(Bare { lease, ack }))
        };
        router
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                async move {
                    let _ = parent_gone.await;
                },
            )
            .await
            .expect("bare server");
    });
}

/// `lease` as the scheduler hands a lease out.
fn batch_of(lease: &proto::LeaseResponse) -> shadowcast::scheduler::LeasedBatch {
    let mut batch =
        shadowcast::scheduler::LeasedBatch::new(lease.lease_id, lease.expires_at_us, Vec::new());
    for key in &lease.keys {
        let table = match batch.tables.iter().position(|name| *name == key.table) {
            Some(known) => known,
            None => {
                batch.tables.push(key.table.clone());
                batch.tables.len() - 1
            }
        };
        batch.push(
            table as u32,
            &key.key,
            key.size_bytes,
            key.priority as u32 - 1,
            key.destination,
            key.min_version,
        );
    }
    batch
}

/// The bare peer's process, ended when dropped.
struct BarePeer {
    process: std::process::Child,
    endpoint: String,
}

impl BarePeer {
    fn start(lean: bool) -> BarePeer {
        let mut command = std::process::Command::new(std::env::current_exe().unwrap());
        if lean {
            command.env(LEAN_PEER_VARIABLE, "1");
        }
        let mut process = command
            .env(PEER_VARIABLE.to_str().unwrap(), "1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("starting the bare peer");
        let mut address = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(process.stdout.take().unwrap()),
            &mut address,
        )
        .expect("the bare peer's address");
        BarePeer {
            process,
            endpoint: format!("http://{}", address.trim()),
        }
    }
}

impl Drop for BarePeer {
    fn drop(&mut self) {
        drop(self.process.stdin.take());
        let _ = self.process.wait();
    }
}

/// Where the service's calls spent their time, from its /metrics: the
/// mean per call of each stage (see `src/service/metrics.rs`), and the
/// journal's records and commits.
fn call_times(endpoint: &str) -> String {
    use std::io::{Read, Write};
    let address = endpoint.trim_start_matches("http://");
    let mut http = std::net::TcpStream::connect(address).expect("connecting for /metrics");
    write!(
        http,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut page = String::new();
    http.read_to_string(&mut page).unwrap();
    let sample = |name: &str| -> f64 {
        page.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} on the service's /metrics"))
            .parse()
            .unwrap()
    };
    let mean_us = |name: &str, labels: &str| {
        let sum = sample(&format!("shadowcast_{name}_sum{labels}"));
        let count = sample(&format!("shadowcast_{name}_count{labels}"));
        1e6 * sum / count.max(1.0)
    };
    let stages = |call: &str| {
        let labels = format!("{{call=\"{call}\"}}");
        format!(
            "queued {:.0} µs, run {:.0} µs, answer taken up after {:.0} µs",
            mean_us("scheduler_queued_seconds", &labels),
            mean_us("scheduler_running_seconds", &labels),
            mean_us("scheduler_answer_wait_seconds", &labels),
        )
    };
    let records = sample("shadowcast_journal_records_total");
    format!(
        "    where a call's time went (means): lease {}; acknowledge {}, then {:.0} µs waiting for its commit; \
         journal: {records} records of {:.1} commits each, {:.0} µs to append and fsync one",
        stages("lease"),
        stages("acknowledge"),
        mean_us("durable_wait_seconds", ""),
        sample("shadowcast_journal_commits_total") / records.max(1.0),
        1e6 * sample("shadowcast_journal_append_seconds_total") / records.max(1.0),
    )
}

/// The median of `sorted` (the middle two's mean when even; NaN for none).
fn median(sorted: &[f64]) -> f64 {
    let middle = sorted.len() / 2;
    match sorted.len() % 2 {
        _ if sorted.is_empty() => f64::NAN,
        1 => sorted[middle],
        _ => (sorted[middle - 1] + sorted[middle]) / 2.0,
    }
}

/// One read of each of the first `keys` candidate keys, a second apart, as
/// an access log.
/// When the first logged read happened; one read a second from then on.
const LOGS_START_US: i64 = 1_700_000_000_000_000;
/// Reads in each file shipped while a run serves.
const SHIPPED_READS: usize = 20_000;

/// Writes one read of each of the first `keys` candidates, a second apart.
fn write_logs(path: &Path, candidates: &shadowcast::policy::Candidates, keys: usize) {
    write_reads(
        path,
        candidates,
        (0..keys).map(|i| (i, LOGS_START_US + i as i64 * 1_000_000)),
    );
}

/// Writes reads of candidates at the given times, under a name the
/// service does not read until the file is whole.
fn write_reads(
    path: &Path,
    candidates: &shadowcast::policy::Candidates,
    reads: impl Iterator<Item = (usize, i64)>,
) {
    use shadowcast::logs::Op;
    use shadowcast::logs::writer::{AccessEvent, LogBatchBuilder, write_log_file};
    let mut builder = LogBatchBuilder::new();
    for (i, ts) in reads {
        let key = std::str::from_utf8(candidates.key(i)).expect("UTF-8 keys");
        builder.push(&AccessEvent {
            ts,
            key,
            table: candidates.tables.name(candidates.table_ids[i]),
            op: Op::Read,
            size: candidates.size_bytes[i] as i64,
            tenant: None,
            latency_us: None,
        });
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let writing = path.with_extension("writing");
    write_log_file(&writing, &builder.finish()).expect("writing the log");
    std::fs::rename(&writing, path).unwrap();
}

/// Ships a log file into `logs` every second until `stop`, as a log
/// shipper would: [`SHIPPED_READS`] reads of random keys among the first
/// `keys`, later than every read before (which were a second apart from
/// [`LOGS_START_US`]).
fn ship_logs(
    logs: &Path,
    candidates: &shadowcast::policy::Candidates,
    keys: usize,
    stop: &std::sync::atomic::AtomicBool,
) -> usize {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(11);
    let mut shipped = 0;
    let mut next_ts = LOGS_START_US + keys as i64 * 1_000_000;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(Duration::from_secs(1));
        shipped += 1;
        let reads: Vec<(usize, i64)> = (0..SHIPPED_READS)
            .map(|j| (rng.random_range(0..keys), next_ts + j as i64 * 1_000))
            .collect();
        next_ts += SHIPPED_READS as i64 * 1_000;
        write_reads(
            &logs.join(format!("part-{shipped}.parquet")),
            candidates,
            reads.into_iter(),
        );
    }
    shipped
}

/// Frees the disk a run's copy of the state took (a gigabyte at 20
/// million keys).
fn remove_state(state: &Path) {
    std::fs::remove_dir_all(state).expect("removing the run's state");
}

/// A copy of the planned state in `dir/name`: the redb file and the key
/// files beside it.
fn fresh_state(dir: &Path, template: &Path, name: &str) -> std::path::PathBuf {
    let state = dir.join(name);
    std::fs::create_dir_all(&state).unwrap();
    for file in std::fs::read_dir(template).unwrap() {
        let file = file.unwrap().path();
        std::fs::copy(&file, state.join(file.file_name().unwrap())).unwrap();
    }
    state
}

fn main() {
    if in_peer_process() {
        run_bare_peer();
        return;
    }
    let keys: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000_000);
    let quick = std::env::args().skip(1).any(|a| a == "quick");
    let lean_peer = std::env::args().skip(1).any(|a| a == "lean-peer");
    let executor_counts: &[usize] = if quick { &[8] } else { &[1, 8, 32] };
    let dir = tempfile::tempdir().expect("temp dir");
    let template = dir.path().join("template");
    std::fs::create_dir_all(&template).unwrap();
    let candidates = common::candidates(keys);
    let started = Instant::now();
    {
        let mut scheduler = Scheduler::open(
            template.join("locations.redb"),
            SchedulerConfig::default(),
            0,
        )
        .expect("open");
        scheduler
            .plan(&candidates, &Decisions::neutral(keys))
            .expect("plan");
    }
    println!(
        "service throughput: {keys} keys planned in {:.1} s; batches of {BATCH} keys; up to {} s per run",
        started.elapsed().as_secs_f64(),
        RUN.as_secs()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "{:>8} {:>9} | {:>12} {:>10} {:>10} {:>10} {:>11} | {:>12} {:>10} {:>10} {:>10} | {:>8} {:>13}",
        "acks",
        "executors",
        "keys/s",
        "lease p50",
        "lease p99",
        "ack p50",
        "keys copied",
        "bare keys/s",
        "bare p50",
        "bare p99",
        "bare ack",
        "share",
        "(windows)"
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for form in [AckForm::PerKey, AckForm::Compact] {
        for &executors in executor_counts {
            let state = fresh_state(dir.path(), &template, &format!("run-{form:?}-{executors}"));
            runtime.block_on(async {
                let peer = BarePeer::start(lean_peer);
                let bare_endpoint = peer.endpoint.clone();
                let (endpoint, stop, _admin) = start_in_background(&state, Planning::Template).await;
                let (mut bare, mut ours) = (Measured::default(), Measured::default());
                let mut shares = Vec::new();
                for round in 0..ROUNDS {
                    let window = RUN / ROUNDS;
                    let (bare_rate, our_rate) = if round % 2 == 0 {
                        let bare_rate = bare.drive(&bare_endpoint, executors, form, window).await;
                        (bare_rate, ours.drive(&endpoint, executors, form, window).await)
                    } else {
                        let our_rate = ours.drive(&endpoint, executors, form, window).await;
                        (bare.drive(&bare_endpoint, executors, form, window).await, our_rate)
                    };
                    if our_rate == 0.0 {
                        // Every key is copied: later windows measure nothing.
                        break;
                    }
                    shares.push(100.0 * our_rate / bare_rate);
                }
                drop(peer);
                shares.sort_by(f64::total_cmp);
                let (bare, ours) = (bare.summary(), ours.summary());
                println!(
                    "{:>8} {:>9} | {:>12.0} {:>8.2}ms {:>8.2}ms {:>8.2}ms {:>11} | {:>12.0} {:>8.2}ms {:>8.2}ms {:>8.2}ms | {:>7.1}% {:>13}",
                    match form {
                        AckForm::PerKey => "per-key",
                        AckForm::Compact => "compact",
                    },
                    executors,
                    ours.keys_per_second,
                    ms(ours.lease_p50),
                    ms(ours.lease_p99),
                    ms(ours.ack_p50),
                    ours.copied,
                    bare.keys_per_second,
                    ms(bare.lease_p50),
                    ms(bare.lease_p99),
                    ms(bare.ack_p50),
                    median(&shares),
                    format!(
                        "{:.0}–{:.0}%",
                        shares.first().copied().unwrap_or(f64::NAN),
                        shares.last().copied().unwrap_or(f64::NAN)
                    ),
                );
                println!("{}", call_times(&endpoint));
                stop.stop().await;
            });
            remove_state(&state);
        }
    }

    if quick {
        return;
    }
    // The same with 8 executors while logs keep arriving (a file of
    // 20,000 reads a second) and the service re-plans all keys from them
    // (`--replan-every 1s`), beside the same service not re-planning.
    let planned_keys = REPLANNED_KEYS.min(keys);
    let first_logs = dir.path().join("logs-at-start.parquet");
    write_logs(&first_logs, &candidates, planned_keys);
    for form in [AckForm::PerKey, AckForm::Compact] {
        for replan in [true, false] {
            let name = format!("replan-{form:?}-{replan}");
            let state = fresh_state(dir.path(), &template, &name);
            let logs = dir.path().join(format!("logs-{name}"));
            std::fs::create_dir_all(&logs).unwrap();
            std::fs::copy(&first_logs, logs.join("part-0.parquet")).unwrap();
            let planning = Planning::Logs {
                logs: &logs,
                replan,
            };
            let stop_shipping = std::sync::atomic::AtomicBool::new(false);
            std::thread::scope(|scope| {
                runtime.block_on(async {
                    let (endpoint, stop, mut admin) = start_in_background(&state, planning).await;
                    // The window opens once the start-up plan from the logs is
                    // in place: what is measured is serving, not the start.
                    let before = loop {
                        let made = plans_made(&mut admin).await;
                        if made > 0 {
                            break made;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    };
                    let shipper =
                        scope.spawn(|| ship_logs(&logs, &candidates, planned_keys, &stop_shipping));
                    let run = drive(&endpoint, 8, form, REPLAN_RUN).await;
                    let after = plans_made(&mut admin).await;
                    stop_shipping.store(true, std::sync::atomic::Ordering::Relaxed);
                    let shipped = shipper.join().expect("the log shipper");
                    let planned = match replan {
                        true => format!(
                            "while re-planning {planned_keys} keys ({} plans made in {} s, {shipped} log files shipped)",
                            after - before,
                            REPLAN_RUN.as_secs()
                        ),
                        false => format!(
                            "planned once from the same logs, for {} s ({shipped} log files shipped)",
                            REPLAN_RUN.as_secs()
                        ),
                    };
                    println!(
                        "{planned}, {form:?} acks, 8 executors: {:.0} keys/s, lease p50 {:.2}ms, p99 {:.2}ms, ack p50 {:.2}ms, {} keys copied",
                        run.keys_per_second,
                        ms(run.lease_p50),
                        ms(run.lease_p99),
                        ms(run.ack_p50),
                        run.copied
                    );
                    stop.stop().await;
                });
            });
            remove_state(&state);
            std::fs::remove_dir_all(&logs).expect("removing the run's logs");
        }
    }

    // Look-ups: one connection, batches of 10,000 keys drawn at random
    // from all tracked keys, for 3 s.
    let state = fresh_state(dir.path(), &template, "run-lookup");
    runtime.block_on(async {
        let (address, stop) = start(&state, Planning::Template).await;
        let mut clients = connect(&format!("http://{address}"), None, None)
            .await
            .unwrap();
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(5);
        let mut batch = || -> Vec<proto::TableKeys> {
            let mut tables: Vec<proto::TableKeys> = Vec::new();
            for _ in 0..10_000 {
                let i = rng.random_range(0..keys);
                let table = candidates.tables.name(candidates.table_ids[i]);
                let key = candidates.key(i).to_vec().into();
                match tables.iter_mut().find(|t| t.table == table) {
                    Some(group) => group.keys.push(key),
                    None => tables.push(proto::TableKeys {
                        table: table.to_string(),
                        keys: vec![key],
                    }),
                }
            }
            tables
        };
        let batches: Vec<Vec<proto::TableKeys>> = (0..64).map(|_| batch()).collect();
        let started = Instant::now();
        let mut located = 0u64;
        let mut next = 0;
        while started.elapsed() < Duration::from_secs(3) {
            let tables = batches[next % batches.len()].clone();
            next += 1;
            let answer = clients
                .routing
                .lookup(proto::LookupRequest { tables })
                .await
                .unwrap()
                .into_inner();
            located += answer.locations.len() as u64;
        }
        println!(
            "look-ups: {:.0} keys/s over one connection (batches of 10,000 random tracked keys)",
            located as f64 / started.elapsed().as_secs_f64()
        );
        stop.stop().await;
    });
}
