//! The `Executor` service: lease (long-poll), extend, acknowledge, report
//! writes. Requests are checked field by field, then handed to the
//! scheduler as its own typed values.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};

use super::auth::Caller;
use super::owner::CallKind;
use super::proto;
use super::wire::{AckRequest, LeaseAnswer, executor_server::Executor};
use super::{Shared, invalid};
use crate::config::RequestLimits;
use crate::scheduler::{Ack, AckOutcome, AckResult, Idle, LeaseRequest, WriteEvent};
use crate::time::now_us;

/// The longest long poll a client may ask for.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// How often a waiting lease call looks again without being woken.
const RECHECK: Duration = Duration::from_millis(250);

pub struct ExecutorApi {
    shared: Arc<Shared>,
}

impl ExecutorApi {
    pub fn new(shared: Arc<Shared>) -> Self {
        ExecutorApi { shared }
    }
}

/// Item `index` of the request's list `list`, named only when an error
/// needs it (formatting every item's name would cost more than checking it).
#[derive(Clone, Copy)]
struct Item<'a> {
    list: &'a str,
    index: usize,
}

impl std::fmt::Display for Item<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]", self.list, self.index)
    }
}

/// Checks the keys and versions of one acknowledge or report-writes call
/// against the service's [`RequestLimits`], item by item, before anything
/// is handed to the scheduler: a refused call changes nothing.
struct CallCheck<'a> {
    limits: &'a RequestLimits,
    now_us: i64,
    /// Hashed with ahash: every key's table name is looked up.
    tables: ahash::AHashSet<String>,
}

impl<'a> CallCheck<'a> {
    fn new(limits: &'a RequestLimits, field: &str, items: usize) -> Result<Self, Status> {
        if items > limits.max_keys_per_call {
            return Err(Status::resource_exhausted(format!(
                "{field}: {items} keys in one call, more than max_keys_per_call ({}): split the call",
                limits.max_keys_per_call
            )));
        }
        Ok(CallCheck {
            limits,
            now_us: now_us(),
            tables: ahash::AHashSet::new(),
        })
    }

    fn key(&mut self, field: Item, table: &str, key: &[u8]) -> Result<(), Status> {
        self.table(field, table)?;
        if key.is_empty() {
            return Err(invalid(format!("{field}.key"), "is empty"));
        }
        if key.len() > self.limits.max_key_bytes {
            return Err(invalid(
                format!("{field}.key"),
                format!(
                    "is {} bytes, more than max_key_bytes ({})",
                    key.len(),
                    self.limits.max_key_bytes
                ),
            ));
        }
        Ok(())
    }

    fn table(&mut self, field: Item, table: &str) -> Result<(), Status> {
        if table.is_empty() {
            return Err(invalid(format!("{field}.table"), "is empty"));
        }
        if !self.tables.contains(table) {
            if self.tables.len() == self.limits.max_tables_per_call {
                return Err(Status::resource_exhausted(format!(
                    "{field}.table: `{table}` is one table more than max_tables_per_call ({}) in one call",
                    self.limits.max_tables_per_call
                )));
            }
            self.tables.insert(table.to_string());
        }
        Ok(())
    }

    /// Versions are microsecond times: one beyond now plus the allowed skew
    /// would make the key stale (or current) for good.
    fn version(&self, field: impl std::fmt::Display, version: u64) -> Result<(), Status> {
        let Some(skew) = self.limits.max_version_skew_us else {
            return Ok(());
        };
        let latest = self.now_us.saturating_add(skew);
        if version > latest as u64 {
            return Err(invalid(
                field,
                format!(
                    "{version} is later than now ({}) plus max_version_skew ({}): versions are the source's write times in microseconds",
                    self.now_us,
                    crate::time::format_duration(skew)
                ),
            ));
        }
        Ok(())
    }
}

fn lease_request(request: &proto::LeaseRequest) -> Result<(LeaseRequest, Duration), Status> {
    if request.max_keys == 0 {
        return Err(invalid("max_keys", "must be at least 1"));
    }
    if request.max_bytes == 0 {
        return Err(invalid("max_bytes", "must be at least 1"));
    }
    let wait = Duration::from_millis(request.wait_ms.into());
    if wait > MAX_WAIT {
        return Err(invalid(
            "wait_ms",
            format!(
                "must be at most {} (got {})",
                MAX_WAIT.as_millis(),
                request.wait_ms
            ),
        ));
    }
    if let Some(i) = request.tables.iter().position(String::is_empty) {
        return Err(invalid(format!("tables[{i}]"), "is empty"));
    }
    Ok((
        LeaseRequest {
            max_keys: request.max_keys as usize,
            max_bytes: request.max_bytes,
            tables: request.tables.clone(),
        },
        wait,
    ))
}

fn idle_response(idle: Idle, now: i64) -> proto::LeaseResponse {
    let (reason, retry_after_ms) = match idle {
        Idle::Paused => (proto::IdleReason::Paused, 1_000),
        Idle::OverBudget { retry_after_us } => (
            proto::IdleReason::OverBudget,
            (retry_after_us.max(0) as u64).div_ceil(1_000),
        ),
        Idle::NothingDue { next_due_us } => (
            proto::IdleReason::NothingDue,
            next_due_us.map_or(0, |due| ((due - now).max(0) as u64).div_ceil(1_000)),
        ),
        Idle::Done => (proto::IdleReason::Done, 0),
    };
    proto::LeaseResponse {
        idle_reason: reason as i32,
        retry_after_ms,
        ..Default::default()
    }
}

fn outcome_message(outcome: &AckOutcome) -> proto::KeyAckResult {
    use proto::AckOutcome as Wire;
    let (outcome, latest_write, reason) = match outcome {
        AckOutcome::Accepted => (Wire::Accepted, 0, String::new()),
        AckOutcome::AlreadyCurrent => (
            Wire::AlreadyCurrent,
            0,
            "the destination already holds this version or a newer one".into(),
        ),
        AckOutcome::Stale {
            copied,
            latest_write,
        } => (
            Wire::Stale,
            *latest_write,
            format!(
                "copied version {copied} is older than the latest write {latest_write}; the key will be offered again"
            ),
        ),
        AckOutcome::Requeued => (Wire::Requeued, 0, "back in line".into()),
        AckOutcome::NotLeased => (
            Wire::NotLeased,
            0,
            "this lease does not hold the key; the failure is ignored".into(),
        ),
        AckOutcome::UnknownKey => (
            Wire::UnknownKey,
            0,
            "shadowcast does not track this key".into(),
        ),
    };
    proto::KeyAckResult {
        outcome: outcome as i32,
        latest_write,
        reason,
    }
}

#[tonic::async_trait]
impl Executor for ExecutorApi {
    async fn lease(
        &self,
        request: Request<proto::LeaseRequest>,
    ) -> Result<Response<LeaseAnswer>, Status> {
        let (wanted, wait) = lease_request(request.get_ref())?;
        let caller = Caller::of(&request).0;
        let deadline = Instant::now() + wait;
        let metrics = &self.shared.metrics;
        metrics.lease_calls.inc();
        loop {
            // Registered before looking, so a wake-up between the look and
            // the wait is not missed.
            let woken = self.shared.work.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if self
                .shared
                .stopping
                .load(std::sync::atomic::Ordering::SeqCst)
            {
                return Err(Status::unavailable(
                    "the service is stopping: ask again once it is back",
                ));
            }
            let now = now_us();
            let asked = wanted.clone();
            let leased = self
                .shared
                .scheduler
                .run_as(CallKind::Lease, move |scheduler| {
                    scheduler.lease_batch_as(&asked, caller, now)
                })
                .await?;
            match leased {
                Ok(lease) => {
                    metrics.keys_leased.add(lease.len() as u64);
                    return Ok(Response::new(LeaseAnswer::Leased(lease)));
                }
                Err(idle) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() || matches!(idle, Idle::Done) {
                        metrics.idle_answers.inc();
                        return Ok(Response::new(LeaseAnswer::Idle(idle_response(idle, now))));
                    }
                    let mut pause = left.min(RECHECK);
                    if let Idle::OverBudget { retry_after_us } = idle {
                        pause = pause.min(Duration::from_micros(retry_after_us.max(1) as u64));
                    }
                    let _ = tokio::time::timeout(pause, woken).await;
                }
            }
        }
    }

    async fn extend_lease(
        &self,
        request: Request<proto::ExtendLeaseRequest>,
    ) -> Result<Response<proto::ExtendLeaseResponse>, Status> {
        let lease = request.get_ref().lease_id;
        if lease == 0 {
            return Err(invalid("lease_id", "must be a lease's id (not 0)"));
        }
        let caller = Caller::of(&request).0;
        let expires_at_us = self
            .shared
            .scheduler
            .run(move |scheduler| {
                scheduler.check_holder(lease, caller)?;
                scheduler.extend(lease, now_us())
            })
            .await?
            .map_err(super::scheduler_status)?;
        Ok(Response::new(proto::ExtendLeaseResponse { expires_at_us }))
    }

    async fn acknowledge(
        &self,
        request: Request<AckRequest>,
    ) -> Result<Response<proto::AcknowledgeResponse>, Status> {
        let caller = Caller::of(&request).0;
        let request = request.into_inner();
        let compact = request.others_copied_at_leased_version;
        if request.acks.is_empty() && !compact {
            return Err(invalid(
                "acks",
                "is empty (name keys, or set others_copied_at_leased_version)",
            ));
        }
        if compact && request.lease_id == 0 {
            return Err(invalid(
                "others_copied_at_leased_version",
                "needs a lease_id (the lease whose other keys were copied)",
            ));
        }
        let mut check = CallCheck::new(&self.shared.limits, "acks", request.acks.len())?;
        let mut acks = Vec::with_capacity(request.acks.len());
        for (i, ack) in request.acks.into_iter().enumerate() {
            let item = Item {
                list: "acks",
                index: i,
            };
            check.key(item, &ack.table, &ack.key)?;
            let Some(result) = ack.result else {
                return Err(invalid(
                    format!("acks[{i}].result"),
                    "is missing: set copied_version or failure",
                ));
            };
            if let AckResult::Copied { version } = result {
                check.version(format_args!("{item}.copied_version"), version)?;
            }
            acks.push(Ack {
                table: ack.table,
                key: ack.key,
                result,
            });
        }
        let outcome = self
            .shared
            .scheduler
            .acknowledge(request.lease_id, caller, acks, compact)
            .await?;
        let metrics = &self.shared.metrics;
        metrics.ack_calls.inc();
        let others = outcome.others_not_accepted.iter().map(|(_, o)| o);
        if outcome
            .acks
            .iter()
            .chain(others)
            .any(|o| matches!(o, AckOutcome::Stale { .. } | AckOutcome::Requeued))
        {
            self.shared.work.notify_waiters();
        }
        Ok(Response::new(proto::AcknowledgeResponse {
            results: outcome.acks.iter().map(outcome_message).collect(),
            others_accepted: outcome.others_accepted,
            others_not_accepted: outcome
                .others_not_accepted
                .iter()
                .map(|(position, judged)| proto::LeasePositionResult {
                    position: *position,
                    result: Some(outcome_message(judged)),
                })
                .collect(),
        }))
    }

    async fn report_writes(
        &self,
        request: Request<proto::ReportWritesRequest>,
    ) -> Result<Response<proto::ReportWritesResponse>, Status> {
        let request = request.into_inner();
        let mut check = CallCheck::new(&self.shared.limits, "writes", request.writes.len())?;
        let mut truncations = Vec::with_capacity(request.truncations.len());
        for (i, truncation) in request.truncations.into_iter().enumerate() {
            let item = Item {
                list: "truncations",
                index: i,
            };
            check.table(item, &truncation.table)?;
            check.version(format_args!("{item}.version"), truncation.version)?;
            truncations.push((truncation.table, truncation.version));
        }
        let mut writes = Vec::with_capacity(request.writes.len());
        for (i, write) in request.writes.into_iter().enumerate() {
            let item = Item {
                list: "writes",
                index: i,
            };
            check.key(item, &write.table, &write.key)?;
            self.shared
                .check_owned(format_args!("{item}.key"), &write.table, &write.key)?;
            check.version(format_args!("{item}.version"), write.version)?;
            writes.push(WriteEvent {
                table: write.table,
                key: write.key.into(),
                version: write.version,
                size_bytes: write.size_bytes,
            });
        }
        let report = self
            .shared
            .scheduler
            .run_durable(move |scheduler| {
                let now = now_us();
                let mut report = scheduler.record_writes(&writes, now)?;
                report.made_stale += scheduler.record_truncations(&truncations, now)?.made_stale;
                Ok(report)
            })
            .await?;
        if report.made_stale > 0 || report.new_keys > 0 {
            self.shared.work.notify_waiters();
        }
        Ok(Response::new(proto::ReportWritesResponse {
            new_keys: report.new_keys as u64,
            made_stale: report.made_stale as u64,
        }))
    }
}
