//! Keeping features fresh as logs arrive: the key states rolled forward
//! with only the new file read ([`RollingFeatures`], what the service does
//! on each re-plan) against every file read again ([`features::compute`],
//! what it did before), side by side on the same files and cut-offs.
//!
//! `cargo bench --bench feature_refresh [-- EVENTS]` (default 4 million).
//! Generates EVENTS events of the `oltp` profile over 96 hours, one log
//! file an hour; the service starts on the first 88 hours, then each of
//! the last 8 hourly files arrives in turn and both ways bring the
//! features to the newest event (horizon 6 h), timed with the feature
//! table built. Reports each step's times, the medians and their ratio,
//! and checks that both ways give the same keys and counts.

use std::path::Path;
use std::time::{Duration, Instant};

use shadowcast::features::{self, FeatureOptions, FeatureTable, RollingFeatures};
use shadowcast::logs::LogSource;
use shadowcast::time::HOUR_US;
use shadowcast::workload::generator::{GenerateOptions, Generator};

const HOURS: u32 = 96;
const ARRIVING: usize = 8;
const HORIZON_US: i64 = 6 * HOUR_US;

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

/// Copies `file` of the generated logs at `all` to the same place under `logs`.
fn arrive(all: &Path, logs: &Path, file: &Path) {
    let to = logs.join(file.strip_prefix(all).expect("a generated file"));
    std::fs::create_dir_all(to.parent().expect("a partition folder")).unwrap();
    std::fs::copy(file, &to).unwrap();
}

/// Keys and their whole-history counts, for checking the two ways agree.
fn fingerprint(table: &FeatureTable) -> Vec<(Vec<u8>, i64, i64, [i64; 4])> {
    table
        .rows()
        .map(|row| (row.key, row.reads_total, row.writes_total, row.events))
        .collect()
}

fn main() {
    let events: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(4_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let all = dir.path().join("generated");
    let generator = Generator::new(GenerateOptions {
        profile: shadowcast::workload::profile::named("oltp").expect("the oltp profile"),
        seed: 1,
        events,
        start: shadowcast::time::parse_instant("2026-11-01T00:00:00Z").unwrap(),
        hours: HOURS,
    });
    let mut files = generator
        .write(&all, &|_| {})
        .expect("generated logs")
        .files;
    files.sort();
    let logs = dir.path().join("logs");
    let (history, arriving) = files.split_at(files.len() - ARRIVING);
    for file in history {
        arrive(&all, &logs, file);
    }
    let latest = |source: &LogSource| source.resolve_as_of("latest").expect("a latest event");

    let mut rolling = RollingFeatures::default();
    let source = LogSource::open(&logs).unwrap();
    let started = Instant::now();
    let first = rolling
        .advance(&source, latest(&source), HORIZON_US)
        .unwrap()
        .expect("features");
    let keys = first.states.len();
    drop(first);
    println!(
        "feature refresh: {events} events over {HOURS} h, {} files; first {} files read in {:.2} s ({keys} keys)",
        files.len(),
        history.len(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "{:>4} {:>10} {:>12} {:>12} {:>8}",
        "step", "keys", "rolled", "every file", "ratio"
    );
    let (mut rolled_times, mut full_times) = (Vec::new(), Vec::new());
    for (step, file) in arriving.iter().enumerate() {
        arrive(&all, &logs, file);
        let source = LogSource::open(&logs).unwrap();
        let as_of = latest(&source);
        let started = Instant::now();
        let refresh = rolling
            .advance(&source, as_of, HORIZON_US)
            .unwrap()
            .expect("a new file");
        assert!(refresh.rolled, "step {step} rolled forward");
        let rolled_table = refresh.states.into_table();
        let rolled = started.elapsed();
        let started = Instant::now();
        let options = FeatureOptions {
            as_of,
            horizon: HORIZON_US,
            since: None,
        };
        let full_table = features::compute(&source, options, &|_| {}).unwrap();
        let full = started.elapsed();
        assert!(
            fingerprint(&rolled_table) == fingerprint(&full_table),
            "step {step}: both ways give the same keys and counts"
        );
        println!(
            "{:>4} {:>10} {:>10.3} s {:>10.3} s {:>7.1}x",
            step + 1,
            rolled_table.len(),
            rolled.as_secs_f64(),
            full.as_secs_f64(),
            full.as_secs_f64() / rolled.as_secs_f64()
        );
        rolled_times.push(rolled);
        full_times.push(full);
    }
    let (rolled, full) = (median(&rolled_times), median(&full_times));
    println!(
        "median per new file: rolled forward {:.3} s, every file read {:.3} s: {:.1}x faster",
        rolled.as_secs_f64(),
        full.as_secs_f64(),
        full.as_secs_f64() / rolled.as_secs_f64()
    );
}
