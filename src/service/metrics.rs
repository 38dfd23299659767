//! Prometheus metrics at `/metrics` (text format 0.0.4): the scheduler's
//! counters and gauges, read without scanning keys, the service's own
//! request counters, and where calls spend their time (waiting for the
//! scheduler's owner, run by it, waiting for a tokio worker to take its
//! answer, waiting for their commit's fsync).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Shared;
use super::auth::Auth;
use super::owner::CallKind;
use crate::scheduler::{Gauges, LocationCounts, Phase};
use crate::time::DurationTotal;

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What the service counts itself.
#[derive(Default)]
pub struct Requests {
    pub lease_calls: Counter,
    pub idle_answers: Counter,
    pub keys_leased: Counter,
    pub ack_calls: Counter,
    pub lookups: Counter,
}

pub fn mount(router: &mut axum::Router, shared: Arc<Shared>, auth: Auth) {
    let route = axum::routing::get(move |headers: axum::http::HeaderMap| {
        let shared = shared.clone();
        let role = auth.role_from(headers.get("authorization").map(|value| value.as_bytes()));
        async move {
            if let Err(problem) = role {
                return (
                    axum::http::StatusCode::UNAUTHORIZED,
                    [("content-type", "text/plain; charset=utf-8")],
                    format!("/metrics: {problem} (an executor or admin token)"),
                );
            }
            match shared.scheduler.run(|scheduler| scheduler.gauges()).await {
                Ok(gauges) => (
                    axum::http::StatusCode::OK,
                    [("content-type", "text/plain; version=0.0.4")],
                    render(&shared, gauges),
                ),
                Err(status) => (
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    [("content-type", "text/plain; charset=utf-8")],
                    status.message().to_string(),
                ),
            }
        }
    });
    *router = std::mem::take(router).route("/metrics", route);
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn render(shared: &Shared, gauges: Gauges) -> String {
    let serving = shared.serving();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP shadowcast_{name} {help}");
        let _ = writeln!(out, "# TYPE shadowcast_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "shadowcast_{name}{labels} {value}");
        }
    };
    let one = |value: f64| vec![(String::new(), value)];
    let counters = gauges.counters;
    let requests = &shared.metrics;
    metric(
        "lease_calls_total",
        "counter",
        "Lease calls answered.",
        &one(requests.lease_calls.get() as f64),
    );
    metric(
        "lease_idle_total",
        "counter",
        "Lease calls answered without keys.",
        &one(requests.idle_answers.get() as f64),
    );
    metric(
        "keys_leased_total",
        "counter",
        "Keys handed out in leases.",
        &one(counters.leased as f64),
    );
    metric(
        "ack_calls_total",
        "counter",
        "Acknowledge calls answered.",
        &one(requests.ack_calls.get() as f64),
    );
    metric(
        "acks_total",
        "counter",
        "Acknowledged keys by outcome.",
        &[
            ("{outcome=\"accepted\"}".into(), counters.accepted as f64),
            (
                "{outcome=\"already_current\"}".into(),
                counters.duplicates as f64,
            ),
            ("{outcome=\"stale\"}".into(), counters.stale_acks as f64),
            ("{outcome=\"failed\"}".into(), counters.failures as f64),
        ],
    );
    metric(
        "keys_redelivered_total",
        "counter",
        "Keys put back in line by an expired lease.",
        &one(counters.redelivered as f64),
    );
    metric(
        "keys_retrying",
        "gauge",
        "Keys waiting to be offered again after failed copies.",
        &one(gauges.retrying_keys as f64),
    );
    metric(
        "keys_parked",
        "gauge",
        "Keys parked after max_copy_failures failures in a row.",
        &one(gauges.parked_keys as f64),
    );
    metric(
        "lookups_total",
        "counter",
        "Keys located for routing.",
        &one(requests.lookups.get() as f64),
    );
    let classes = ["first", "early", "normal", "last"];
    let queued: Vec<(String, f64)> = classes
        .iter()
        .zip(gauges.queued)
        .map(|(class, n)| (format!("{{priority=\"{class}\"}}"), n as f64))
        .collect();
    metric(
        "queue_depth",
        "gauge",
        "Keys waiting in line per priority class.",
        &queued,
    );
    metric(
        "live_leases",
        "gauge",
        "Leases not yet finished or expired.",
        &one(gauges.live_leases as f64),
    );
    let locations = [
        ("source_only", gauges.source_only),
        ("current", gauges.current),
        ("stale", gauges.stale),
    ];
    let by_location = |value: fn(&LocationCounts) -> u64| -> Vec<(String, f64)> {
        locations
            .iter()
            .map(|(l, c)| (format!("{{location=\"{l}\"}}"), value(c) as f64))
            .collect()
    };
    metric(
        "keys",
        "gauge",
        "Tracked keys by location.",
        &by_location(|c| c.keys),
    );
    metric(
        "bytes",
        "gauge",
        "Bytes of tracked keys by location.",
        &by_location(|c| c.bytes),
    );
    if let Some(confidence) = gauges.confidence {
        metric(
            "confidence",
            "gauge",
            "The confidence last measured (0..1).",
            &one(confidence),
        );
    }
    let phases = [
        Phase::Shadowing,
        Phase::Background,
        Phase::CutoverReady,
        Phase::Done,
    ];
    metric(
        "phase",
        "gauge",
        "1 for the migration's phase.",
        &phases
            .iter()
            .map(|p| {
                (
                    format!("{{phase=\"{p}\"}}"),
                    f64::from(u8::from(*p == gauges.phase)),
                )
            })
            .collect::<Vec<_>>(),
    );
    metric(
        "paused",
        "gauge",
        "1 when the operator paused the migration.",
        &one(f64::from(u8::from(gauges.paused))),
    );
    if let Some(rate) = gauges.bandwidth_bytes_per_s {
        metric(
            "bandwidth_bytes_per_second",
            "gauge",
            "The copy budget.",
            &one(rate as f64),
        );
    }
    metric(
        "plan_info",
        "gauge",
        "The model, policy and logs of the current plan.",
        &[(
            format!(
                "{{model=\"{}\",policy=\"{}\",logs=\"{}\"}}",
                escape(&serving.model),
                escape(&serving.policy),
                escape(&serving.logs)
            ),
            1.0,
        )],
    );
    metric(
        "plan_made_at_seconds",
        "gauge",
        "When the current plan was made (Unix time).",
        &one(serving.made_at_us as f64 / 1e6),
    );
    metric(
        "plan_as_of_seconds",
        "gauge",
        "Cut-off of the current plan's features (Unix time).",
        &one(serving.as_of_us as f64 / 1e6),
    );
    metric(
        "plans_total",
        "counter",
        "Plans made since the service started.",
        &one(shared.plans_made.load(std::sync::atomic::Ordering::Relaxed) as f64),
    );
    metric(
        "planned_keys",
        "gauge",
        "Keys in the current plan.",
        &one(serving.keys as f64),
    );
    let journal = shared.scheduler.journal_totals();
    metric(
        "journal_records_total",
        "counter",
        "Journal records appended, one fsync each.",
        &one(journal.appends.count() as f64),
    );
    metric(
        "journal_commits_total",
        "counter",
        "Commits the journal records held.",
        &one(journal.commits() as f64),
    );
    metric(
        "journal_append_seconds_total",
        "counter",
        "Time spent appending journal records and waiting for their fsyncs.",
        &one(journal.appends.seconds()),
    );
    metric(
        "shard_info",
        "gauge",
        "The shard this service owns (1, labelled with its index and the shard count).",
        &[(
            format!(
                "{{index=\"{}\",count=\"{}\"}}",
                shared.shard.index, shared.shard.count
            ),
            1.0,
        )],
    );
    let times = shared.scheduler.times();
    let mut summary = |name: &str, help: &str, samples: &[(String, &DurationTotal)]| {
        let _ = writeln!(out, "# HELP shadowcast_{name} {help}");
        let _ = writeln!(out, "# TYPE shadowcast_{name} summary");
        for (labels, timing) in samples {
            let _ = writeln!(out, "shadowcast_{name}_sum{labels} {}", timing.seconds());
            let _ = writeln!(out, "shadowcast_{name}_count{labels} {}", timing.count());
        }
    };
    fn by_call(stage: &[DurationTotal; 3]) -> Vec<(String, &DurationTotal)> {
        CallKind::ALL
            .iter()
            .map(|&kind| (format!("{{call=\"{kind}\"}}"), &stage[kind as usize]))
            .collect()
    }
    summary(
        "scheduler_queued_seconds",
        "Time calls waited for the scheduler's owner to take them up.",
        &by_call(&times.queued),
    );
    summary(
        "scheduler_running_seconds",
        "Time the scheduler's owner spent on calls (acknowledgements applied together each count the group's time).",
        &by_call(&times.running),
    );
    summary(
        "scheduler_answer_wait_seconds",
        "Time from the owner's answer until the call went on with it (waiting for a tokio worker).",
        &by_call(&times.answer_wait),
    );
    summary(
        "durable_wait_seconds",
        "Time calls that changed something waited for their commit to be durable.",
        &[(String::new(), &times.durable)],
    );
    out
}
