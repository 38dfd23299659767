//! One migration served by N shards on this machine: KEYS keys in total
//! (short keys, `key:NNNNNNNNNN` over four tables), each shard planned with
//! the keys its hash picks ([`shadowcast::shard`]) and served in this
//! process. Reports the memory each tracked key costs (resident memory
//! after the shards opened their states, over the keys), then lease +
//! acknowledge keys/s in total with two executors per shard (1,000-key
//! batches, compact acknowledgements), beside one shard alone with its two
//! executors: on separate machines each shard runs at about that rate.
//!
//! `cargo bench --bench sharded_service [-- KEYS [SHARDS]]` (default 100
//! million keys, 4 shards).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::executors::{AckForm, drive};
use shadowcast::config::{ServeArgs, ServeConfig};
use shadowcast::policy::Decisions;
use shadowcast::scheduler::{Scheduler, SchedulerConfig};
use shadowcast::service::client::connect;
use shadowcast::service::proto;
use shadowcast::shard::{Shard, shard_of};

const RUN: Duration = Duration::from_secs(6);
const EXECUTORS_PER_SHARD: usize = 2;

/// Resident memory of this process, in bytes.
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

/// Starts shard `shard` over its planned `state` in this process and
/// moves it to BACKGROUND: its endpoint and stop signal.
async fn start(state: PathBuf, shard: Shard) -> (String, common::Stop) {
    let config = ServeConfig::resolve(ServeArgs {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        logs: Some(state.join("no-logs")),
        state_dir: Some(state),
        shard: Some(shard.to_string()),
        follow_seconds: Some(0.0),
        replan_every: Some("off".into()),
        models: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("models")),
        ..Default::default()
    })
    .expect("config");
    let (address, stop) = common::serve_in_process(config).await;
    let endpoint = format!("http://{address}");
    connect(&endpoint, None, None)
        .await
        .unwrap()
        .management
        .force_phase(proto::ForcePhaseRequest {
            phase: proto::Phase::Background as i32,
        })
        .await
        .unwrap();
    (endpoint, stop)
}

/// Every shard's executors at once for [`RUN`]: keys/s in total, the
/// slowest shard's lease p99, and keys copied.
async fn drive_all(endpoints: &[String]) -> (f64, Duration, u64) {
    let runs: Vec<_> = endpoints
        .iter()
        .map(|endpoint| {
            let endpoint = endpoint.clone();
            tokio::spawn(async move {
                drive(&endpoint, EXECUTORS_PER_SHARD, AckForm::Compact, RUN).await
            })
        })
        .collect();
    let (mut rate, mut p99, mut copied) = (0.0, Duration::ZERO, 0);
    for run in runs {
        let shard = run.await.unwrap();
        rate += shard.keys_per_second;
        p99 = p99.max(shard.lease_p99);
        copied += shard.copied;
    }
    (rate, p99, copied)
}

fn main() {
    let mut numbers = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse::<u64>().ok());
    let keys = numbers.next().unwrap_or(100_000_000) as usize;
    let count = numbers.next().unwrap_or(4) as u32;
    let dir = tempfile::tempdir().expect("temp dir");
    let states: Vec<PathBuf> = (0..count)
        .map(|index| dir.path().join(format!("shard-{index}")))
        .collect();
    println!("sharded service: {keys} keys over {count} shards on one machine");
    for (index, state) in states.iter().enumerate() {
        let started = Instant::now();
        let candidates = common::candidates_where(keys, |table, key| {
            shard_of(table, key, count) == index as u32
        });
        std::fs::create_dir_all(state).unwrap();
        let mut scheduler =
            Scheduler::open(state.join("locations.redb"), SchedulerConfig::default(), 0)
                .expect("open");
        scheduler
            .plan(&candidates, &Decisions::neutral(candidates.len()))
            .expect("plan");
        println!(
            "  shard {index}/{count}: {} keys planned in {:.1} s",
            candidates.len(),
            started.elapsed().as_secs_f64()
        );
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let before = resident_bytes();
    let started = Instant::now();
    let shards: Vec<(String, common::Stop)> = runtime.block_on(async {
        let mut shards = Vec::new();
        for (index, state) in states.iter().enumerate() {
            let shard = Shard {
                index: index as u32,
                count,
            };
            shards.push(start(state.clone(), shard).await);
        }
        shards
    });
    // The growth while opening may reuse memory the planning freed; the
    // whole process's resident memory after opening bounds it from above.
    let after = resident_bytes();
    let gib = |bytes: u64| bytes as f64 / (1u64 << 30) as f64;
    println!(
        "  {count} shards opened in {:.1} s: resident {:.2} GiB = {:.0} bytes per tracked key (grew by {:.2} GiB = {:.0} bytes per key while opening)",
        started.elapsed().as_secs_f64(),
        gib(after),
        after as f64 / keys as f64,
        gib(after.saturating_sub(before)),
        after.saturating_sub(before) as f64 / keys as f64
    );
    let endpoints: Vec<String> = shards
        .iter()
        .map(|(endpoint, _)| endpoint.clone())
        .collect();
    // Shard 0 keeps most of its keys for the second run (a run ends early
    // only when a shard has none left to lease).
    let (alone, alone_p99, alone_copied) = runtime.block_on(drive_all(&endpoints[..1]));
    let (together, together_p99, together_copied) = runtime.block_on(drive_all(&endpoints));
    println!(
        "{:>28} | {:>12} {:>10} {:>12}",
        "lease + ack (compact)", "keys/s", "lease p99", "keys copied"
    );
    println!(
        "{:>28} | {:>12.0} {:>8.2}ms {:>12}",
        format!("shard 0 alone, {EXECUTORS_PER_SHARD} executors"),
        alone,
        alone_p99.as_secs_f64() * 1e3,
        alone_copied
    );
    println!(
        "{:>28} | {:>12.0} {:>8.2}ms {:>12}",
        format!(
            "{count} shards, {} executors",
            EXECUTORS_PER_SHARD * count as usize
        ),
        together,
        together_p99.as_secs_f64() * 1e3,
        together_copied
    );
    println!(
        "  all {count} shards on this machine's cores: {:.2}x one shard alone",
        together / alone
    );
    runtime.block_on(async {
        for (_, stop) in shards {
            stop.stop().await;
        }
    });
}
