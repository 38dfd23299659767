//! Executors for the service benchmarks: clients that lease 1,000-key
//! batches and acknowledge every key copied at the version leased, as fast
//! as the service answers.

use std::time::{Duration, Instant};

use shadowcast::service::client::{Clients, connect};
use shadowcast::service::proto::{self, key_ack};

/// Keys asked for per lease.
pub const BATCH: u32 = 1_000;

/// How executors acknowledge: a result per key, or the compact form (the
/// lease's keys all copied at the versions leased).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AckForm {
    PerKey,
    Compact,
}

/// One run of `executors` clients against `endpoint` for `run`: keys/s,
/// lease p50 and p99, keys copied.
pub async fn drive(
    endpoint: &str,
    executors: usize,
    form: AckForm,
    run: Duration,
) -> (f64, Duration, Duration, u64) {
    let mut clients = Vec::new();
    for _ in 0..executors {
        clients.push(connect(endpoint, None, None).await.unwrap());
    }
    let started = Instant::now();
    let deadline = started + run;
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|c| tokio::spawn(executor(c, deadline, form)))
        .collect();
    let (mut copied, mut latencies) = (0, Vec::new());
    for task in tasks {
        let (n, l) = task.await.unwrap();
        copied += n;
        latencies.extend(l);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    (
        copied as f64 / elapsed,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        copied,
    )
}

/// Leases and acknowledges until `deadline` or no keys are left; returns
/// keys copied and each lease call's latency.
async fn executor(mut clients: Clients, deadline: Instant, form: AckForm) -> (u64, Vec<Duration>) {
    let mut copied = 0;
    let mut latencies = Vec::new();
    while Instant::now() < deadline {
        let asked = Instant::now();
        let lease = clients
            .executor
            .lease(proto::LeaseRequest {
                executor_id: "bench".into(),
                max_keys: BATCH,
                max_bytes: 1 << 40,
                tables: vec![],
                wait_ms: 0,
            })
            .await
            .expect("lease")
            .into_inner();
        latencies.push(asked.elapsed());
        if lease.keys.is_empty() {
            break;
        }
        copied += lease.keys.len() as u64;
        let acks = match form {
            AckForm::PerKey => lease
                .keys
                .into_iter()
                .map(|key| proto::KeyAck {
                    result: Some(key_ack::Result::CopiedVersion(key.min_version)),
                    table: key.table,
                    key: key.key,
                })
                .collect::<Vec<_>>(),
            AckForm::Compact => Vec::new(),
        };
        clients
            .executor
            .acknowledge(proto::AcknowledgeRequest {
                lease_id: lease.lease_id,
                acks,
                others_copied_at_leased_version: form == AckForm::Compact,
            })
            .await
            .expect("acknowledge");
    }
    (copied, latencies)
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}
