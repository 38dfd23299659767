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

/// What one run of executors measured.
pub struct Run {
    pub keys_per_second: f64,
    pub lease_p50: Duration,
    pub lease_p99: Duration,
    /// From sending an acknowledgement to its answer (for the service:
    /// applied and durable).
    pub ack_p50: Duration,
    pub copied: u64,
}

/// One run of `executors` clients against `endpoint` for `run`.
pub async fn drive(endpoint: &str, executors: usize, form: AckForm, run: Duration) -> Run {
    let mut measured = Measured::default();
    measured.drive(endpoint, executors, form, run).await;
    measured.summary()
}

/// Runs against one endpoint, pooled (for windows taken in turn with a
/// peer's).
#[derive(Default)]
pub struct Measured {
    copied: u64,
    elapsed: Duration,
    leases: Vec<Duration>,
    acks: Vec<Duration>,
}

impl Measured {
    /// One window of `executors` clients against `endpoint` for `run`,
    /// added to the pool; gives the window's keys/s.
    pub async fn drive(
        &mut self,
        endpoint: &str,
        executors: usize,
        form: AckForm,
        run: Duration,
    ) -> f64 {
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
        let mut copied = 0;
        for task in tasks {
            let calls = task.await.unwrap();
            copied += calls.copied;
            self.leases.extend(calls.leases);
            self.acks.extend(calls.acks);
        }
        let elapsed = started.elapsed();
        self.copied += copied;
        self.elapsed += elapsed;
        copied as f64 / elapsed.as_secs_f64()
    }

    /// Keys/s and latencies over every window.
    pub fn summary(mut self) -> Run {
        self.leases.sort();
        self.acks.sort();
        Run {
            keys_per_second: self.copied as f64 / self.elapsed.as_secs_f64(),
            lease_p50: percentile(&self.leases, 0.5),
            lease_p99: percentile(&self.leases, 0.99),
            ack_p50: percentile(&self.acks, 0.5),
            copied: self.copied,
        }
    }
}

/// What one executor did: keys copied, and each call's latency.
#[derive(Default)]
struct Calls {
    copied: u64,
    leases: Vec<Duration>,
    acks: Vec<Duration>,
}

/// Leases and acknowledges until `deadline` or no keys are left.
async fn executor(mut clients: Clients, deadline: Instant, form: AckForm) -> Calls {
    let mut calls = Calls::default();
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
        calls.leases.push(asked.elapsed());
        if lease.keys.is_empty() {
            break;
        }
        calls.copied += lease.keys.len() as u64;
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
        let acknowledged = Instant::now();
        clients
            .executor
            .acknowledge(proto::AcknowledgeRequest {
                lease_id: lease.lease_id,
                acks,
                others_copied_at_leased_version: form == AckForm::Compact,
            })
            .await
            .expect("acknowledge");
        calls.acks.push(acknowledged.elapsed());
    }
    calls
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}
