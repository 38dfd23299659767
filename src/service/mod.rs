//! Stage 6 — the gRPC API (`proto/shadowcast/v1/`).
//!
//! Takes: a checked [`ServeConfig`]; requests from executors, routing
//! layers and operators. Gives: the `Executor`, `Routing` and `Management`
//! services, the standard health and reflection services, and Prometheus
//! metrics at `/metrics`, on one port (HTTP/2 for gRPC, HTTP/1.1 too).
//!
//! Guarantees:
//! - Everything a call accepts is durable when it answers (the scheduler
//!   commits before returning); shutdown (SIGTERM, Ctrl-C) stops taking
//!   calls and lets those under way finish.
//! - A malformed request gets INVALID_ARGUMENT naming the field; no
//!   request can take the service down.
//! - With tokens configured, every call needs one: executor tokens reach
//!   the executor and routing services and the read-only management calls,
//!   admin tokens everything. Without tokens the service only listens on
//!   loopback (the configuration refuses anything else).

mod auth;
pub mod client;
mod executor;
mod management;
mod metrics;
pub mod planning;
mod routing;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use crate::config::ServeConfig;
use crate::model::registry::Registry;
use crate::policy::{PolicyHost, PolicyLimits, PolicyRegistry};
use crate::scheduler::Scheduler;
use crate::time::now_us;
use planning::{PlanSummary, Planner};

/// The generated API types, clients and servers.
pub mod proto {
    tonic::include_proto!("shadowcast.v1");

    /// The API's file descriptors, for the reflection service.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("shadowcast_descriptor");
}

/// What every handler shares.
struct Shared {
    scheduler: Mutex<Scheduler>,
    planner: Mutex<Planner>,
    /// What the current plan was made with (readable while a re-plan runs).
    serving: Mutex<PlanSummary>,
    /// Woken when keys may have become available to lease.
    work: Notify,
    /// Acknowledge calls, to the committer that groups them.
    acks: tokio::sync::mpsc::UnboundedSender<executor::AckCall>,
    metrics: metrics::Requests,
}

impl Shared {
    fn scheduler(&self) -> std::sync::MutexGuard<'_, Scheduler> {
        // A panic while holding the lock cannot leave the scheduler half
        // changed in a way that matters: every change is committed first.
        self.scheduler
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn planner(&self) -> std::sync::MutexGuard<'_, Planner> {
        self.planner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn serving(&self) -> PlanSummary {
        self.serving
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Plans again from the kept features (after a model or policy change).
    fn replan(&self, planner: &mut Planner) -> Result<(), planning::PlanError> {
        if let Some(summary) = planner.plan(&self.scheduler)? {
            *self
                .serving
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = summary;
            self.work.notify_waiters();
        }
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
    let scheduler = Scheduler::open(config.state_file(), config.scheduler, now_us())?;
    let policies = PolicyRegistry::new(PolicyHost::new(PolicyLimits::default())?);
    for policy in &config.policies {
        policies.load_file(&policy.module, policy.config.as_deref())?;
    }
    let planner = Planner::new(
        config.logs.clone(),
        config.as_of.clone(),
        Registry::new(&config.models),
        config.model.clone(),
        policies,
    );
    let (acks, ack_calls) = tokio::sync::mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        scheduler: Mutex::new(scheduler),
        planner: Mutex::new(planner),
        serving: Mutex::new(PlanSummary::default()),
        work: Notify::new(),
        acks,
        metrics: Default::default(),
    });
    executor::spawn_committer(Arc::downgrade(&shared), ack_calls);
    let started = std::time::Instant::now();
    {
        let shared = shared.clone();
        let logs = config.logs.clone();
        tokio::task::spawn_blocking(move || initial_plan(&shared, &logs)).await??;
    }
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
    }
    let mut builder = Server::builder().accept_http1(true);
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
    let background = spawn_background(&shared, &config);
    on_listening(address);
    let result = builder
        .add_routes(routes)
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await;
    for task in background {
        task.abort();
    }
    result.context("serving")?;
    tracing::info!("stopped; every accepted call is stored");
    Ok(())
}

/// Applies the logs not seen yet, then plans from all of them.
fn initial_plan(shared: &Shared, logs: &std::path::Path) -> Result<()> {
    let report = shared.scheduler().ingest_logs(logs, now_us())?;
    for (path, problem) in &report.rejected {
        tracing::error!(path = %path.display(), %problem, "log file skipped");
    }
    let mut planner = shared.planner();
    if planner.refresh_features()? {
        shared.replan(&mut planner)?;
    } else {
        tracing::warn!(logs = %logs.display(), "no access logs yet: keys arrive as writes are reported and logs appear");
    }
    Ok(())
}

fn routes(shared: &Arc<Shared>, config: &ServeConfig) -> Result<tonic::service::Routes> {
    let auth = auth::Auth::new(&config.executor_tokens, &config.admin_tokens);
    let (health, health_service) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection service")?;
    let executor = proto::executor_server::ExecutorServer::with_interceptor(
        executor::ExecutorApi::new(shared.clone()),
        auth.clone(),
    );
    let routing = proto::routing_server::RoutingServer::with_interceptor(
        routing::RoutingApi::new(shared.clone()),
        auth.clone(),
    );
    let management = proto::management_server::ManagementServer::with_interceptor(
        management::ManagementApi::new(shared.clone()),
        auth,
    );
    tokio::spawn(async move {
        use proto::executor_server::ExecutorServer;
        use proto::management_server::ManagementServer;
        use proto::routing_server::RoutingServer;
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
        .add_service(executor)
        .add_service(routing)
        .add_service(management);
    metrics::mount(routes.axum_router_mut(), shared.clone());
    Ok(routes)
}

/// The ticker (phases move on, expired leases return, waiting lease calls
/// wake) and the log follower.
fn spawn_background(
    shared: &Arc<Shared>,
    config: &ServeConfig,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let ticker = shared.clone();
    tasks.push(tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(500));
        loop {
            every.tick().await;
            let shared = ticker.clone();
            let ticked = tokio::task::spawn_blocking(move || {
                shared.scheduler().advance(now_us());
                shared.work.notify_waiters();
            })
            .await;
            if let Err(error) = ticked {
                tracing::error!(%error, "scheduler tick failed");
            }
        }
    }));
    if let Some(period) = config.follow_every {
        let follower = shared.clone();
        let logs = config.logs.clone();
        tasks.push(tokio::spawn(async move {
            let mut every = tokio::time::interval(period);
            every.tick().await;
            loop {
                every.tick().await;
                let shared = follower.clone();
                let logs = logs.clone();
                let followed = tokio::task::spawn_blocking(move || {
                    let report = shared.scheduler().ingest_logs(&logs, now_us());
                    match report {
                        Ok(report) => {
                            for (path, problem) in &report.rejected {
                                tracing::error!(path = %path.display(), %problem, "log file skipped; retried when it changes");
                            }
                            if report.files > 0 {
                                tracing::info!(files = report.files, events = report.events, new_keys = report.new_keys, made_stale = report.made_stale, "followed the logs");
                                shared.work.notify_waiters();
                            }
                        }
                        Err(error) => tracing::error!(%error, "following the logs failed; will retry"),
                    }
                })
                .await;
                if let Err(error) = followed {
                    tracing::error!(%error, "log follower failed");
                }
            }
        }));
    }
    tasks
}

/// Maps a scheduler error to the gRPC status a caller should see.
fn scheduler_status(error: crate::scheduler::SchedulerError) -> tonic::Status {
    use crate::scheduler::SchedulerError;
    match error {
        SchedulerError::UnknownLease(_) => tonic::Status::not_found(error.to_string()),
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
