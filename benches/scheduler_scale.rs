//! Scheduler scale: tracking and ranking many keys.
//!
//! `cargo bench --bench scheduler_scale [-- KEYS]` (default 10 million).
//! Registers KEYS candidates in a fresh location map (one redb
//! transaction), ranks them by benefit per byte, leases and acknowledges a
//! first batch, truncates a table, and takes status records; reports time
//! per step, resident
//! memory per tracked key, and the ranking beside a plain `sort_unstable`
//! of the same number of `f32` scores in the same run.

mod common;

use std::time::{Duration, Instant};

use common::candidates;
use shadowcast::policy::Decisions;
use shadowcast::scheduler::{
    ANY_HOLDER, Ack, AckCall, AckResult, LeaseRequest, Phase, Scheduler, SchedulerConfig,
};

fn resident_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with(field))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Re-plans and bare sorts timed for the ratio between them.
const ROUNDS: usize = 3;

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn main() {
    let keys: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let candidates = candidates(keys);
    let decisions = Decisions::neutral(keys);
    let key_bytes = candidates.key_bytes.len() as f64 / keys as f64;
    let before = resident_bytes("VmRSS:");

    let started = Instant::now();
    let mut scheduler =
        Scheduler::open(dir.path().join("state.redb"), SchedulerConfig::default(), 0)
            .expect("open");
    scheduler.plan(&candidates, &decisions).expect("plan");
    let first_plan = started.elapsed();
    let tracked = resident_bytes("VmRSS:").saturating_sub(before);

    // Re-plans and bare sorts taken in turn, ROUNDS of each, compared by
    // their medians: on a shared machine one sort's time moves by a third
    // within minutes.
    let scores: Vec<f32> = candidates
        .expected_accesses
        .iter()
        .zip(&candidates.size_bytes)
        .map(|(e, s)| (*e / *s as f64) as f32)
        .collect();
    let mut replans = Vec::new();
    let mut plain_sorts = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        scheduler.plan(&candidates, &decisions).expect("re-plan");
        replans.push(started.elapsed());
        let mut unsorted = scores.clone();
        let started = Instant::now();
        unsorted.sort_unstable_by(|a, b| b.total_cmp(a));
        plain_sorts.push(started.elapsed());
    }
    let (replan, plain_sort) = (median(&replans), median(&plain_sorts));

    // The same re-plan stage by stage, as the service runs it.
    let started = Instant::now();
    scheduler
        .score(&candidates, &decisions, 0..keys)
        .expect("score");
    let scoring = started.elapsed();
    let started = Instant::now();
    let input = scheduler.ranking_input().expect("ranking input");
    let taking = started.elapsed();
    let started = Instant::now();
    let ranking = input.rank();
    let ranking_sort = started.elapsed();
    let started = Instant::now();
    drop(scheduler.install_ranking(ranking));
    let installing = started.elapsed();

    scheduler.force_phase(Phase::Background).expect("phase");
    let started = Instant::now();
    let request = LeaseRequest {
        max_keys: 1000,
        max_bytes: u64::MAX,
        tables: Vec::new(),
    };
    let lease = scheduler.lease(&request, 1).expect("lease");
    let acks: Vec<Ack> = lease
        .keys
        .iter()
        .map(|k| Ack {
            table: k.table.as_str().into(),
            key: k.key.clone().into(),
            result: AckResult::Copied { version: 1 },
        })
        .collect();
    scheduler.acknowledge(lease.id, &acks, 1).expect("ack");
    let lease_ack = started.elapsed();

    // What the scheduler's owner does for 8 executors, without gRPC: take
    // 8 leases of 1,000 keys (best first: keys scattered over the map),
    // then acknowledge them in one message in the compact form, commits
    // handed to the state writer as the service does.
    let _durable = scheduler.pipeline();
    let started = Instant::now();
    let mut drained = 0usize;
    while started.elapsed() < Duration::from_secs(2) {
        let leases: Vec<u64> = (0..8)
            .filter_map(|_| scheduler.lease_batch_as(&request, ANY_HOLDER, 1).ok())
            .map(|batch| {
                drained += batch.len();
                batch.id
            })
            .collect();
        if leases.is_empty() {
            break;
        }
        let calls: Vec<AckCall> = leases
            .iter()
            .map(|&lease| AckCall {
                lease,
                acks: &[],
                others_copied_at_leased_version: true,
            })
            .collect();
        scheduler.acknowledge_all(&calls, 1).expect("acknowledge");
    }
    let owner_rate = drained as f64 / started.elapsed().as_secs_f64();

    // A TRUNCATE of one table of four: every tracked key is looked at on
    // the owner, those of the table made stale in one commit.
    let started = Instant::now();
    let truncated = scheduler
        .record_truncations(&[("orders".to_string(), 2)], 2)
        .expect("truncate");
    let truncating = started.elapsed();

    // A status record reads running tallies: its cost must not grow with
    // the number of keys (it used to walk every one).
    let started = Instant::now();
    let mut status_calls = 0u32;
    while started.elapsed().as_secs_f64() < 0.5 {
        std::hint::black_box(scheduler.status(2));
        status_calls += 1;
    }
    let status_each = started.elapsed() / status_calls;
    let map_bytes = scheduler.map().memory_bytes();

    // A restart: every key loaded back into memory from the state files.
    drop(scheduler);
    let started = Instant::now();
    let reopened = Scheduler::open(dir.path().join("state.redb"), SchedulerConfig::default(), 0)
        .expect("reopen");
    let reopening = started.elapsed();
    drop(reopened);

    println!("scheduler scale, {keys} keys (keys average {key_bytes:.1} bytes):");
    println!(
        "  register + rank + draw sample (first plan, one journal record and checkpoint): {:.2} s",
        first_plan.as_secs_f64()
    );
    println!(
        "  re-rank all keys (plan again), median of {ROUNDS}:               {:.2} s",
        replan.as_secs_f64()
    );
    println!(
        "  plain sort_unstable of {keys} f32 scores (baseline), median of {ROUNDS}: {:.2} s  -> re-rank is {:.1}x a bare sort",
        plain_sort.as_secs_f64(),
        replan.as_secs_f64() / plain_sort.as_secs_f64()
    );
    println!(
        "    each round (re-rank / bare sort): {}",
        replans
            .iter()
            .zip(&plain_sorts)
            .map(|(r, s)| format!("{:.2} / {:.2} s", r.as_secs_f64(), s.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  of which, by stage: score {:.2} s (same candidates: no look-ups), ranking input {:.2} s, rank (sort, beside the scheduler) {:.2} s = {:.1}x a bare sort, install {:.3} s",
        scoring.as_secs_f64(),
        taking.as_secs_f64(),
        ranking_sort.as_secs_f64(),
        ranking_sort.as_secs_f64() / plain_sort.as_secs_f64(),
        installing.as_secs_f64()
    );
    println!(
        "  first lease + ack of 1000 keys:                             {:.1} ms",
        lease_ack.as_secs_f64() * 1e3
    );
    println!(
        "  lease + compact ack on the scheduler alone (8 leases of 1000 keys, then one ack message): {:.0} keys/s",
        owner_rate
    );
    println!(
        "  truncate one table of four on the owner ({} keys made stale): {:.2} s",
        truncated.made_stale,
        truncating.as_secs_f64()
    );
    println!(
        "  reopen (every key loaded back from the state files):       {:.2} s",
        reopening.as_secs_f64()
    );
    println!(
        "  status record (phase, counts, confidence):                 {:.1} µs",
        status_each.as_secs_f64() * 1e6
    );
    let per_key = tracked as f64 / keys as f64;
    println!(
        "  resident memory for the tracked keys: {:.0} MiB = {per_key:.1} bytes per key = {:.1} + the key's {key_bytes:.1} (location map alone: {:.1} bytes per key)",
        tracked as f64 / (1 << 20) as f64,
        per_key - key_bytes,
        map_bytes as f64 / keys as f64
    );
    println!(
        "  peak resident memory of the whole run (candidates included): {:.0} MiB",
        resident_bytes("VmHWM:") as f64 / (1 << 20) as f64
    );
}
