//! Stage 6 — the gRPC API (`proto/shadowcast/v1/`).
//!
//! Takes: a checked [`ServeConfig`]; requests from executors, routing
//! layers and operators. Gives: the `Executor`, `Routing` and `Management`
//! services, the standard health and reflection services, and Prometheus
//! metrics at `/metrics`, on one port (HTTP/2 for gRPC, HTTP/1.1 too).
//!
//! Concurrency (who owns what, who waits for what):
//! - The [`Scheduler`] has one owner, a thread driven by messages
//!   (`owner.rs`): handlers send it short jobs and await the answer; they
//!   never take a lock or block a tokio worker on it. Acknowledgements that
//!   queue up are applied together.
//! - Its commits go to the state writer thread, which groups whatever
//!   queued into one journal record and one fsync; a checkpoint thread
//!   moves the journal into the state's key files now and then. The owner
//!   does not wait for either: a call that changed something (acknowledge,
//!   report writes, operator commands) answers once its commit is durable;
//!   a lease or look-up waits for nobody's fsync. A lease's answer is
//!   written onto the wire straight from the batch the owner hands back
//!   (`wire.rs`: no allocation per key, on the owner or the tokio worker).
//! - Planning (features, scores, policy decisions) runs on a blocking
//!   thread under the planner's own lock, beside the scheduler; the result
//!   is handed to the owner in slices and one final message. The planner
//!   keeps the key states behind its features and rolls them forward to
//!   each re-plan's cut-off, reading only the log files that arrived. The
//!   planner's lock is always taken before any work enters the planning
//!   threads, never inside them. Planning threads run in the idle
//!   scheduling class: any serving thread that wakes takes the CPU from
//!   them. Log files are scanned beside it too, and only what they say
//!   about keys is applied by the owner.
//! - The owner and the state writer stay awake for 50 µs waiting for their
//!   next message before they sleep (`crate::wait`).
//! - A timer sends the owner one `advance` step every 500 ms (phases,
//!   lease expiry, confidence) and wakes waiting lease calls.
//! - /metrics say how long calls wait at each of these hand-offs: for the
//!   owner, while it runs them, for a tokio worker to take the answer, and
//!   for the commit (`owner::CallTimes`, the writer's journal totals).
//!
//! Guarantees:
//! - Everything a call accepts is durable when it answers; shutdown
//!   (SIGTERM, Ctrl-C) stops taking calls and lets those under way finish.
//!   If the state cannot be written, the service stops with the reason
//!   (memory may then hold what the disk does not; a restart reloads it).
//! - A malformed request gets INVALID_ARGUMENT naming the field; no
//!   request can take the service down.
//! - With tokens configured, every call needs one: executor tokens reach
//!   the executor and routing services and the read-only management calls,
//!   admin tokens everything. Without tokens the service only listens on
//!   loopback (the configuration refuses anything else).

mod auth;
pub mod client;
pub mod codec;
mod connections;
mod executor;
mod management;
mod metrics;
mod owner;
pub mod planning;
mod routing;
pub mod wire;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use crate::config::{Replan, ServeConfig};
use crate::model::registry::Registry;
use crate::policy::{PolicyHost, PolicyLimits, PolicyRegistry};
use crate::scheduler::{IngestReport, LogFollower, Scheduler};
use crate::time::now_us;
use owner::SchedulerOwner;
use planning::{PlanSummary, Planner};

/// The generated API types, clients and servers.
pub mod proto {
    tonic::include_proto!("shadowcast.v1");

    /// The API's file descriptors, for the reflection service.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("shadowcast_descriptor");
}

/// Candidates scored per message to the scheduler's owner while re-planning:
/// small enough that a lease waits at most a few milliseconds behind one.
const SCORE_SLICE: usize = 10_000;

/// Keys whose ranking input is taken per message to the owner while
/// re-planning (a copy of a few bytes each: well under a millisecond).
const RANKING_SLICE: usize = 25_000;

/// What every handler shares.
struct Shared {
    scheduler: SchedulerOwner,
    planner: Mutex<Planner>,
    /// What the current plan was made with, and its top predictions
    /// (readable while a re-plan runs).
    serving: Mutex<PlanSummary>,
    predictions: Mutex<Arc<Vec<planning::Prediction>>>,
    /// Plans made since the start, and log events followed since the last.
    plans_made: AtomicU64,
    events_since_plan: AtomicU64,
    /// Threads for planning while serving (features, ranking): one fewer
    /// than the cores, so serving always keeps a core.
    planning_pool: rayon::ThreadPool,
    /// The runtime the handlers run on, for blocking threads that wait on
    /// the scheduler's owner.
    runtime: tokio::runtime::Handle,
    /// Woken when keys may have become available to lease, and when the
    /// service starts stopping.
    work: Notify,
    /// Set once shutdown begins: waiting lease calls answer at once.
    stopping: std::sync::atomic::AtomicBool,
    metrics: metrics::Requests,
    limits: crate::config::RequestLimits,
    policy_dir: std::path::PathBuf,
    /// The keys this instance owns.
    shard: crate::shard::Shard,
}

/// Locks `mutex`. A panic while it was held cannot leave what it guards
/// half changed in a way that matters (each is replaced whole), so a
/// poisoned lock is taken as it is.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    /// Refuses a key another shard owns, naming it and its shard (a client
    /// routes by [`crate::shard::shard_of`]).
    fn check_owned(
        &self,
        field: impl std::fmt::Display,
        table: &str,
        key: &[u8],
    ) -> Result<(), tonic::Status> {
        if self.shard.owns(table, key) {
            return Ok(());
        }
        Err(invalid(
            field,
            format!(
                "key {} of table `{table}` belongs to shard {}/{}, and this service is shard {}: route each key to the shard its hash picks",
                crate::keys::display_key(key),
                crate::shard::shard_of(table, key, self.shard.count),
                self.shard.count,
                self.shard
            ),
        ))
    }

    fn planner(&self) -> std::sync::MutexGuard<'_, Planner> {
        lock(&self.planner)
    }

    fn serving(&self) -> PlanSummary {
        lock(&self.serving).clone()
    }

    fn predictions(&self) -> Arc<Vec<planning::Prediction>> {
        lock(&self.predictions).clone()
    }

    /// Plans again from the kept features (after a model or policy change,
    /// or on schedule). Everything heavy happens here, on a blocking
    /// thread: scores and policy decisions, then the ranking sort. The
    /// scheduler's owner only takes slices of scoring and the finished
    /// ranking as separate messages, so executors keep leasing throughout.
    fn replan(&self, planner: &Planner) -> Result<(), planning::PlanError> {
        self.planning_pool.install(|| self.replan_here(planner))
    }

    fn replan_here(&self, planner: &Planner) -> Result<(), planning::PlanError> {
        let Some(prepared) = planner.prepare()? else {
            return Ok(());
        };
        let runtime = &self.runtime;
        let swap_failed =
            |status: tonic::Status| planning::PlanError::Scheduler(status.message().to_string());
        let prepared = Arc::new(prepared);
        let keys = prepared.candidates.len();
        for start in (0..keys.max(1)).step_by(SCORE_SLICE) {
            let slice = start..(start + SCORE_SLICE).min(keys);
            let plan = prepared.clone();
            runtime
                .block_on(self.scheduler.run(move |scheduler| {
                    scheduler.score(&plan.candidates, &plan.decisions, slice)
                }))
                .map_err(swap_failed)?
                .map_err(|error| planning::PlanError::Scheduler(error.to_string()))?;
        }
        let mut input = runtime
            .block_on(
                self.scheduler
                    .run_durable(|scheduler| scheduler.begin_ranking_input()),
            )
            .map_err(swap_failed)?;
        loop {
            let (taken, complete) = runtime
                .block_on(self.scheduler.run(move |scheduler| {
                    let complete = scheduler.extend_ranking_input(&mut input, RANKING_SLICE);
                    (input, complete)
                }))
                .map_err(swap_failed)?;
            input = taken;
            if complete {
                break;
            }
        }
        let ranking = input.rank();
        // The lines the ranking replaced are freed here, not on the owner.
        let replaced = runtime
            .block_on(
                self.scheduler
                    .run(move |scheduler| scheduler.install_ranking(ranking)),
            )
            .map_err(swap_failed)?;
        drop(replaced);
        let predictions = Planner::top_predictions(&prepared);
        let summary = prepared.summary.clone();
        tracing::info!(keys = summary.keys, model = %summary.model, policy = %summary.policy, "planned");
        *lock(&self.serving) = summary;
        *lock(&self.predictions) = Arc::new(predictions);
        self.plans_made.fetch_add(1, Ordering::Relaxed);
        self.work.notify_waiters();
        Ok(())
    }
}

/// Runs blocking work (commits, plans) off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, tonic::Status> + Send + 'static,
) -> Result<T, tonic::Status> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| tonic::Status::internal(format!("the call failed: {error}")))?
}

/// Opens the state, plans from the logs, and serves until `shutdown`
/// resolves. `on_listening` gets the bound address (the configured port
/// may be 0).
pub async fn serve(
    config: ServeConfig,
    on_listening: impl FnOnce(std::net::SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<()> {
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("creating {}", config.state_dir.display()))?;
    let mut scheduler = Scheduler::open(config.state_file(), config.scheduler, now_us())?;
    scheduler.claim_shard(config.shard)?;
    let policies = PolicyRegistry::new(PolicyHost::new(PolicyLimits::default())?);
    for policy in &config.policies {
        policies.load_file(&policy.module, policy.config.as_deref())?;
    }
    let planner = Planner::new(
        config.logs.clone(),
        config.as_of.clone(),
        config.features.clone(),
        config.shard,
        Registry::new(&config.models),
        config.model.clone(),
        policies,
    );
    let follower = LogFollower::new(&config.logs, &scheduler)?.owning(config.shard);
    let shared = Arc::new(Shared {
        scheduler: SchedulerOwner::start(scheduler),
        planner: Mutex::new(planner),
        serving: Mutex::new(PlanSummary::default()),
        predictions: Mutex::new(Arc::new(Vec::new())),
        plans_made: AtomicU64::new(0),
        events_since_plan: AtomicU64::new(0),
        planning_pool: rayon::ThreadPoolBuilder::new()
            .num_threads(
                std::thread::available_parallelism()
                    .map_or(1, |cores| cores.get().saturating_sub(1))
                    .max(1),
            )
            .thread_name(|i| format!("planning-{i}"))
            .start_handler(|_| yield_to_serving())
            .build()
            .context("starting the planning threads")?,
        runtime: tokio::runtime::Handle::current(),
        work: Notify::new(),
        stopping: std::sync::atomic::AtomicBool::new(false),
        metrics: Default::default(),
        limits: config.limits,
        policy_dir: config.policy_dir.clone(),
        shard: config.shard,
    });
    let started = std::time::Instant::now();
    let follower = {
        let shared = shared.clone();
        let logs = config.logs.clone();
        tokio::task::spawn_blocking(move || initial_plan(&shared, &logs, follower)).await??
    };
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        "state opened and planned"
    );

    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let address = listener.local_addr()?;
    if !config.requires_tokens() {
        tracing::warn!(%address, "no tokens configured: listening on loopback only, every caller is an admin");
    } else if config.tls.is_none() && !address.ip().is_loopback() {
        tracing::warn!(%address, "tokens travel in plaintext to a non-loopback address: set tls_cert and tls_key");
    }
    let limits = &config.connections;
    let mut builder = Server::builder()
        .accept_http1(true)
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .max_concurrent_streams(limits.max_streams_per_connection);
    if let Some(tls) = &config.tls {
        let cert = std::fs::read(&tls.cert)
            .with_context(|| format!("TLS certificate {}", tls.cert.display()))?;
        let key =
            std::fs::read(&tls.key).with_context(|| format!("TLS key {}", tls.key.display()))?;
        builder = builder
            .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
            .context("TLS configuration")?;
    }
    let routes = routes(&shared, &config)?;
    let background = spawn_background(&shared, &config, follower);
    on_listening(address);
    let stop = {
        let shared = shared.clone();
        async move {
            tokio::select! {
                () = shutdown => {}
                problem = shared.scheduler.storage_failed() => {
                    tracing::error!(%problem, "the state can no longer be stored; stopping");
                }
            }
            // Long polls would hold the shutdown for up to a minute each.
            shared.stopping.store(true, Ordering::SeqCst);
            shared.work.notify_waiters();
        }
    };
    let result = builder
        .add_routes(routes)
        .serve_with_incoming_shutdown(connections::Incoming::new(listener, limits), stop)
        .await;
    for task in background {
        task.abort();
    }
    shared.scheduler.stop().await;
    result.context("serving")?;
    if let Some(problem) = shared.scheduler.storage_failure() {
        anyhow::bail!("stopped: the state could not be stored ({problem}); restart to reload it");
    }
    tracing::info!("stopped; every accepted call is stored");
    Ok(())
}

/// Applies the logs not seen yet, then plans from all of them; gives the
/// follower back for the follow task.
fn initial_plan(
    shared: &Shared,
    logs: &std::path::Path,
    mut follower: LogFollower,
) -> Result<LogFollower> {
    follow_once(shared, &mut follower)?;
    let mut planner = shared.planner();
    if planner.refresh_features()? {
        shared.replan(&planner)?;
    } else {
        tracing::warn!(logs = %logs.display(), "no access logs yet: keys arrive as writes are reported and logs appear");
    }
    Ok(follower)
}

/// Scans new log files here, one at a time, and has the scheduler's owner
/// apply each.
fn follow_once(shared: &Shared, follower: &mut LogFollower) -> Result<()> {
    let mut report = IngestReport::default();
    for scanned in follower.scan() {
        let file = match scanned {
            Ok(file) => file,
            Err((path, problem)) => {
                tracing::error!(path = %path.display(), %problem, "log file skipped; retried when it changes");
                continue;
            }
        };
        let applied = follower.applied_with(&file);
        let (file, done) = shared
            .runtime
            .block_on(shared.scheduler.run_durable(move |scheduler| {
                let done = scheduler.apply_log_file(&file, applied, now_us())?;
                Ok((file, done))
            }))
            .map_err(|status| anyhow::anyhow!("applying log files: {}", status.message()))?;
        follower.applied(&file);
        report.add(done);
    }
    if report.files == 0 {
        return Ok(());
    }
    shared
        .events_since_plan
        .fetch_add(report.events, Ordering::Relaxed);
    tracing::info!(
        files = report.files,
        events = report.events,
        new_keys = report.new_keys,
        made_stale = report.made_stale,
        "followed the logs"
    );
    shared.work.notify_waiters();
    Ok(())
}

fn routes(shared: &Arc<Shared>, config: &ServeConfig) -> Result<tonic::service::Routes> {
    let auth = auth::Auth::new(&config.executor_tokens, &config.admin_tokens);
    let (health, health_service) = tonic_health::server::health_reporter();
    let described = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection = described()
        .build_v1()
        .context("building the reflection service")?;
    // v1alpha too: the reflection clients of several languages still speak only it.
    let reflection_v1alpha = described()
        .build_v1alpha()
        .context("building the v1alpha reflection service")?;
    let executor = wire::executor_server::ExecutorServer::with_interceptor(
        executor::ExecutorApi::new(shared.clone()),
        auth.clone(),
    );
    let routing = proto::routing_server::RoutingServer::with_interceptor(
        routing::RoutingApi::new(shared.clone()),
        auth.clone(),
    );
    let management = proto::management_server::ManagementServer::with_interceptor(
        management::ManagementApi::new(shared.clone()),
        auth.clone(),
    );
    tokio::spawn(async move {
        use proto::management_server::ManagementServer;
        use proto::routing_server::RoutingServer;
        use wire::executor_server::ExecutorServer;
        health
            .set_serving::<ExecutorServer<executor::ExecutorApi>>()
            .await;
        health
            .set_serving::<RoutingServer<routing::RoutingApi>>()
            .await;
        health
            .set_serving::<ManagementServer<management::ManagementApi>>()
            .await;
    });
    let mut routes = tonic::service::Routes::new(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(executor)
        .add_service(routing)
        .add_service(management);
    metrics::mount(routes.axum_router_mut(), shared.clone(), auth);
    Ok(routes)
}

/// The ticker (one `advance` step: phases move on, expired leases return,
/// confidence is measured; then waiting lease calls wake) and the log
/// follower.
fn spawn_background(
    shared: &Arc<Shared>,
    config: &ServeConfig,
    mut follower: LogFollower,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let ticker = shared.clone();
    tasks.push(tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(500));
        loop {
            every.tick().await;
            if let Err(error) = ticker.scheduler.run(|s| s.advance(now_us())).await {
                tracing::error!(%error, "scheduler advance failed");
            }
            ticker.work.notify_waiters();
        }
    }));
    if config.replan != Replan::Never {
        tasks.push(tokio::spawn(replan_while_serving(
            shared.clone(),
            config.replan,
        )));
    }
    if let Some(period) = config.follow_every {
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let mut every = tokio::time::interval(period);
            every.tick().await;
            loop {
                every.tick().await;
                let shared = shared.clone();
                let followed = tokio::task::spawn_blocking(move || {
                    let result = follow_once(&shared, &mut follower);
                    (follower, result)
                })
                .await;
                match followed {
                    Ok((back, result)) => {
                        follower = back;
                        if let Err(error) = result {
                            tracing::error!(%error, "following the logs failed; will retry");
                        }
                    }
                    Err(error) => {
                        tracing::error!(%error, "log follower failed");
                        break;
                    }
                }
            }
        }));
    }
    tasks
}

/// Puts the calling thread in the idle scheduling class (`SCHED_IDLE`), so
/// that a re-plan runs on the CPU time serving leaves idle and any serving
/// thread that wakes takes the CPU from it at once. Threads it starts (a
/// log scan's workers) inherit it. At nice 10, the way before, a re-plan
/// took 40–80% of a core while 8 executors were served, and they lost
/// about 30% of their throughput. Where the system refuses the class,
/// the thread is niced to 10 instead.
fn yield_to_serving() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions; sched_setscheduler and
        // setpriority with a thread id change that one thread's scheduling
        // and read only the parameter passed by reference, which lives
        // across the call.
        let refused = unsafe {
            let thread = libc::gettid();
            let idle = libc::sched_param { sched_priority: 0 };
            libc::sched_setscheduler(thread, libc::SCHED_IDLE, &idle) != 0
                && libc::setpriority(libc::PRIO_PROCESS, thread as libc::id_t, 10) != 0
        };
        if refused {
            tracing::debug!("could not lower the planning thread's priority");
        }
    }
}

/// Shortest wait before a failed re-plan is tried again.
const REPLAN_RETRY: Duration = Duration::from_secs(30);

/// Keeps the plan fresh: makes it again from features recomputed from the
/// logs every `replan` period, or sooner once the followed logs hold a
/// quarter as many events as the serving plan saw (keys first seen since
/// are scored too). Runs on a blocking thread beside the scheduler.
async fn replan_while_serving(shared: Arc<Shared>, replan: Replan) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    let mut last_attempt: Option<std::time::Instant> = None;
    // Features refreshed but not planned from (the plan failed): the next
    // attempt plans from them even if the logs stayed the same.
    let mut unplanned = false;
    loop {
        every.tick().await;
        let serving = shared.serving();
        let period = match replan {
            Replan::Every(period) => period,
            Replan::QuarterHorizon => {
                Duration::from_secs((serving.horizon_seconds / 4).max(60) as u64)
            }
            Replan::Never => return,
        };
        let age = Duration::from_micros((now_us() - serving.made_at_us).max(0) as u64);
        let fresh_events = shared.events_since_plan.load(Ordering::Relaxed);
        let enough_new_logs = fresh_events > 0 && fresh_events.saturating_mul(4) >= serving.events;
        let backing_off = last_attempt.is_some_and(|at| at.elapsed() < REPLAN_RETRY.min(period));
        if backing_off || !(age >= period || enough_new_logs) {
            continue;
        }
        last_attempt = Some(std::time::Instant::now());
        let planning = shared.clone();
        let planned = tokio::task::spawn_blocking(move || {
            // The planner first, then the planning threads, as every caller
            // takes them: a job in the pool waiting for the planner would
            // deadlock with a holder of the planner waiting for the pool.
            let mut planner = planning.planner();
            let held: &mut planning::Planner = &mut planner;
            let refreshed = planning.planning_pool.install(|| held.refresh_features());
            if refreshed? {
                planning
                    .events_since_plan
                    .fetch_sub(fresh_events, Ordering::Relaxed);
            } else if !unplanned {
                return Ok(());
            }
            planning.replan(&planner)
        })
        .await;
        unplanned = !matches!(planned, Ok(Ok(())));
        match planned {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::error!(%error, "re-planning failed; the previous plan stays")
            }
            Err(error) => tracing::error!(%error, "re-planning failed; the previous plan stays"),
        }
    }
}

/// Maps a scheduler error to the gRPC status a caller should see.
fn scheduler_status(error: crate::scheduler::SchedulerError) -> tonic::Status {
    use crate::scheduler::SchedulerError;
    match error {
        SchedulerError::UnknownLease(_) | SchedulerError::LeaseVoidedByRestart { .. } => {
            tonic::Status::not_found(error.to_string())
        }
        SchedulerError::LeaseHeldByAnother(_) => {
            tonic::Status::permission_denied(error.to_string())
        }
        SchedulerError::InvalidRequest(_) | SchedulerError::InvalidConfig { .. } => {
            tonic::Status::invalid_argument(error.to_string())
        }
        SchedulerError::MismatchedDecisions { .. }
        | SchedulerError::State(_)
        | SchedulerError::CorruptSetting { .. } => {
            tracing::error!(%error, "scheduler error");
            tonic::Status::unavailable(error.to_string())
        }
    }
}

/// An INVALID_ARGUMENT naming `field`.
fn invalid(field: impl std::fmt::Display, problem: impl std::fmt::Display) -> tonic::Status {
    tonic::Status::invalid_argument(format!("{field}: {problem}"))
}

#[cfg(test)]
mod tests {
    /// A planning thread asks for the idle class; one it starts inherits
    /// it. (A system that refuses the class is not this test's machine.)
    #[cfg(target_os = "linux")]
    #[test]
    fn planning_threads_run_in_the_idle_class() {
        // SAFETY: sched_getscheduler(0) reads the calling thread's policy
        // and touches no memory of ours.
        let policy_of_this_thread = || unsafe { libc::sched_getscheduler(0) };
        let (planner, started_by_it) = std::thread::spawn(move || {
            super::yield_to_serving();
            let started = std::thread::spawn(policy_of_this_thread).join().unwrap();
            (policy_of_this_thread(), started)
        })
        .join()
        .unwrap();
        assert_eq!(
            (planner, started_by_it),
            (libc::SCHED_IDLE, libc::SCHED_IDLE)
        );
        assert_eq!(policy_of_this_thread(), libc::SCHED_OTHER);
    }
}
