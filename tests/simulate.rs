//! `shadowcast simulate` on a log small enough to work out by hand.
//!
//! Ten keys `k0`…`k9` of table `t`, 1000 B each, exist before the start;
//! `k7` was read most (5 times), then `k3` (3), the rest once. The window
//! is 100 s with a 5% budget: 5% of 10 000 B over 100 s is 5 B/s, so the
//! first key leased (1000 B, it goes out alone) leaves a debt that lasts
//! past cutover: every pre-migrating strategy copies exactly one key.
//! After cutover the background budget is 1000 times larger, so the rest is
//! copied within two seconds.
//!
//! - start + 50 s: `k0` is updated (wasting key order's copy of it).
//! - cutover + 0.5 s: `k5` read 4 times, `k7` twice, `k0` once. Only the
//!   key copied before cutover can serve them.
//! - cutover + 30 s: `k10` is inserted (it lands in the destination).
//! - cutover + 60 s: `k1` read 3 times, `k10` once; end (cutover + 100 s):
//!   `k9` read once. By then everything is copied: 5 hits for everyone.
//!
//! So, of 12 reads after cutover: none 5 (copies nothing before), key
//! order 5 (its `k0` went stale), most frequent and decayed 7 (`k7`),
//! oracle 9 (`k5`, the key read most after cutover).

mod common;

use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, UInt64Type};
use common::*;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use shadowcast::logs::LogSource;
use shadowcast::scheduler::SchedulerConfig;
use shadowcast::simulate::{self, Inputs, SimulationOptions, Strategy, Timeline};

const SECOND_US: i64 = 1_000_000;
/// The window opens an hour into the day.
const START_MS: i64 = DAY_2026_11_20_MS + 3_600_000;
const START: &str = "2026-11-20T01:00:00Z";

/// `simulate` with `--logs LOG`, the hand-worked timeline and `extra`.
fn simulate_args<'a>(log: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "simulate", "--logs", log, "--start", START, "--window", "100s", "--after", "100s",
        "--step", "1s",
    ];
    args.extend_from_slice(extra);
    args
}

fn event(at_ms: i64, key: &str, op: &'static str) -> Event {
    Event {
        ts_ms: at_ms,
        table: "t",
        key: key.to_string(),
        op,
        size: 1000,
        tenant: None,
    }
}

fn hand_checked_log(dir: &Path) -> std::path::PathBuf {
    let history = |minute: i64| DAY_2026_11_20_MS + minute * 60_000;
    let mut events = Vec::new();
    for (i, key) in ["k0", "k1", "k2", "k4", "k5", "k6", "k8", "k9"]
        .iter()
        .enumerate()
    {
        events.push(event(history(20 + i as i64), key, "insert"));
    }
    for minute in 30..35 {
        events.push(event(history(minute), "k7", "read"));
    }
    for minute in 35..38 {
        events.push(event(history(minute), "k3", "read"));
    }
    let cutover = START_MS + 100_000;
    events.push(event(START_MS + 50_000, "k0", "update"));
    for key in ["k5", "k5", "k5", "k5", "k7", "k7", "k0"] {
        events.push(event(cutover + 500, key, "read"));
    }
    events.push(event(cutover + 30_000, "k10", "insert"));
    for key in ["k1", "k1", "k1", "k10"] {
        events.push(event(cutover + 60_000, key, "read"));
    }
    events.push(event(cutover + 100_000, "k9", "read"));
    events.sort_by_key(|e| e.ts_ms);
    write_events(&dir.join("log.parquet"), &events, 1000)
}

/// Most-frequent alone on the hand-worked timeline (100 s window, 100 s
/// after, 1 s steps) at `budget`, with a background budget 10 times the
/// window's.
fn most_frequent_at(
    budget: f64,
    scheduler: SchedulerConfig,
    replan_every_us: Option<i64>,
) -> SimulationOptions {
    SimulationOptions {
        timeline: Timeline::new(START_MS * 1000, 100 * SECOND_US, 100 * SECOND_US, SECOND_US)
            .unwrap(),
        budgets: vec![budget],
        background_factor: 10.0,
        strategies: vec![Strategy::MostFrequent],
        scheduler,
        seed: 1,
        replan_every_us,
        feature_horizon_us: 200 * SECOND_US,
    }
}

const STRATEGIES: [Strategy; 5] = [
    Strategy::Nothing,
    Strategy::KeyOrder,
    Strategy::MostFrequent,
    Strategy::Decayed,
    Strategy::Oracle,
];

#[test]
fn accounting_matches_the_hand_computed_migration() {
    let dir = tempfile::tempdir().unwrap();
    let source = LogSource::open(hand_checked_log(dir.path())).unwrap();
    let start_us = START_MS * 1000;
    let options = SimulationOptions {
        timeline: Timeline::new(start_us, 100 * SECOND_US, 100 * SECOND_US, SECOND_US).unwrap(),
        budgets: vec![0.05],
        background_factor: 1000.0,
        strategies: STRATEGIES.to_vec(),
        scheduler: SchedulerConfig::default(),
        seed: 1,
        replan_every_us: None,
        feature_horizon_us: 200 * SECOND_US,
    };
    let simulation = simulate::simulate(&source, &options, &Inputs::default(), &|_| {}).unwrap();
    assert_eq!((simulation.keys, simulation.bytes), (10, 10_000));
    // (strategy, reads served, copied before cutover, copied in all, wasted, left at cutover)
    let expected = [
        (Strategy::Nothing, 5, 0, 10_000, 0, 10_000),
        (Strategy::KeyOrder, 5, 1000, 11_000, 1000, 10_000),
        (Strategy::MostFrequent, 7, 1000, 10_000, 0, 9000),
        (Strategy::Decayed, 7, 1000, 10_000, 0, 9000),
        (Strategy::Oracle, 9, 1000, 10_000, 0, 9000),
    ];
    for (strategy, served, before, copied, wasted, left) in expected {
        let run = simulation.run(strategy, 0.05).unwrap();
        let figures = &run.figures;
        assert_eq!(run.rate_after, 5000, "{strategy}");
        assert_eq!(
            run.rate_before,
            if strategy == Strategy::Nothing { 0 } else { 5 },
            "{strategy}"
        );
        assert_eq!(figures.after_cutover.reads, 12, "{strategy}");
        assert_eq!(figures.after_cutover.served, served, "{strategy}");
        assert_eq!(
            (
                figures.after_cutover.bytes,
                figures.after_cutover.bytes_served
            ),
            (12_000, served * 1000),
            "{strategy}"
        );
        assert_eq!(figures.copied_before_cutover.bytes, before, "{strategy}");
        assert_eq!(figures.copied.bytes, copied, "{strategy}");
        assert_eq!(figures.wasted.bytes, wasted, "{strategy}");
        assert_eq!(figures.left_at_cutover.bytes, left, "{strategy}");
        assert_eq!(figures.left_at_cutover.keys, left / 1000, "{strategy}");
        // The first bucket after cutover holds the 7 early reads.
        assert_eq!(figures.over_time[0].reads, 7, "{strategy}");
        assert_eq!(figures.over_time[0].served, served - 5, "{strategy}");
        let total: u64 = figures.over_time.iter().map(|b| b.reads).sum();
        assert_eq!(total, 12, "{strategy}");
        let complete = figures.complete_us.expect("the background copy finishes");
        assert!(
            (101 * SECOND_US..=103 * SECOND_US).contains(&complete),
            "{strategy} completed {complete} µs after the start"
        );
    }
    let headline = simulate::report::headline(&simulation, 0.05);
    assert!(headline.is_none(), "no model ran, so no headline");
}

/// At a 50% budget (50 B/s over the 100 s window) the bucket lets one
/// 1000 B key out about every 20 s: at 0, 19.02, 39.04, 59.06, 79.08 and
/// 99.1 s, six keys before cutover. SHADOWING admits only the shadow
/// sample (10% of 10 keys: one key) and the predicted-hot keys (5%: one
/// key), at most two; once they are copied the scheduler's timer step
/// moves on to BACKGROUND by itself, so the budget is not left unused. A
/// migration configured to hold SHADOWING copies at most those two.
#[test]
fn shadowing_moves_on_once_its_keys_are_copied_so_the_budget_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let source = LogSource::open(hand_checked_log(dir.path())).unwrap();
    let copied_before_cutover = |background_when_shadow_copied: bool| {
        let scheduler = SchedulerConfig {
            background_when_shadow_copied,
            ..SchedulerConfig::default()
        };
        let options = most_frequent_at(0.5, scheduler, None);
        let simulation =
            simulate::simulate(&source, &options, &Inputs::default(), &|_| {}).unwrap();
        let run = simulation.run(Strategy::MostFrequent, 0.5).unwrap();
        assert_eq!(run.rate_before, 50);
        run.figures.copied_before_cutover.bytes
    };
    assert_eq!(copied_before_cutover(true), 6000);
    let held = copied_before_cutover(false);
    assert!(
        (1000..=2000).contains(&held),
        "held in SHADOWING: only the shadow keys move ({held} B)"
    );
}

/// Re-planning during the window catches a key that turns hot after the
/// start. The hand-worked log plus 20 reads of `k9` between start + 10 s
/// and start + 30 s, and 6 more just after cutover (18 reads after cutover
/// in all). At a 20% budget (20 B/s) keys go out at 0, 49.05 and 99.05 s
/// (each 1000 B debt takes 50 s to repay). The whole key space is the
/// shadow sample, so only the ranking decides.
/// - Planned once (as of the start): `k7` (5 reads), `k3` (3), then the
///   first of the one-event keys, `k0`. Served after cutover: `k7` twice,
///   `k0` once, then the 4 reads at +60 s and `k9`'s at the end, copied by
///   then: 8.
/// - Re-planned every 40 s: at 40 s `k9` has 21 events and goes out at
///   49.05 s, `k3` at 99.05 s. Served: `k7` twice, `k9` six times, then
///   the same 5 later reads: 13.
#[test]
fn replanning_during_the_window_catches_a_key_that_turns_hot() {
    let dir = tempfile::tempdir().unwrap();
    hand_checked_log(dir.path());
    let mut events: Vec<Event> = (0..20)
        .map(|i| event(START_MS + 10_000 + i * 1000, "k9", "read"))
        .collect();
    events.extend((0..6).map(|_| event(START_MS + 100_500, "k9", "read")));
    events.sort_by_key(|e| e.ts_ms);
    write_events(&dir.path().join("hot-k9.parquet"), &events, 1000);
    let source = LogSource::open(dir.path()).unwrap();
    let served = |replan_every_us: Option<i64>| {
        let mut scheduler = SchedulerConfig::default();
        scheduler.sample.fraction = 1.0;
        let options = most_frequent_at(0.2, scheduler, replan_every_us);
        let simulation =
            simulate::simulate(&source, &options, &Inputs::default(), &|_| {}).unwrap();
        let figures = &simulation.run(Strategy::MostFrequent, 0.2).unwrap().figures;
        assert_eq!(figures.after_cutover.reads, 18);
        assert_eq!(figures.copied_before_cutover.bytes, 3000);
        figures.after_cutover.served
    };
    assert_eq!(served(None), 8, "planned once");
    assert_eq!(served(Some(40 * SECOND_US)), 13, "re-planned every 40 s");
}

#[test]
fn the_command_prints_the_table_and_writes_parquet_and_charts() {
    let dir = tempfile::tempdir().unwrap();
    let log = hand_checked_log(dir.path());
    let out = dir.path().join("report");
    let output = shadowcast_ok(&simulate_args(
        path_str(&log),
        &[
            "--budget",
            "0.05",
            "--budgets",
            "0.02,0.5",
            "--background-factor",
            "1000",
            "--strategies",
            "none,key-order,most-frequent,oracle",
            "--out",
            path_str(&out),
        ],
    ));
    let table = stdout(&output);
    for strategy in ["none", "key-order", "most-frequent", "oracle"] {
        assert!(table.contains(strategy), "{strategy} missing:\n{table}");
    }
    assert!(table.contains("12 reads after cutover"), "{table}");
    let oracle_row = table
        .lines()
        .find(|l| l.starts_with("oracle"))
        .expect("an oracle row");
    assert!(oracle_row.contains("75.0%"), "9 of 12 reads: {oracle_row}");

    let file = std::fs::File::open(out.join("runs.parquet")).unwrap();
    let batches: Vec<_> = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let runs = &batches[0];
    assert_eq!(runs.num_rows(), 4 * 3, "4 strategies × 3 budgets");
    let strategies = runs.column_by_name("strategy").unwrap().as_string::<i32>();
    let budgets = runs
        .column_by_name("budget_share")
        .unwrap()
        .as_primitive::<Float64Type>();
    let served = runs
        .column_by_name("reads_served")
        .unwrap()
        .as_primitive::<UInt64Type>();
    let oracle_at_5 = (0..runs.num_rows())
        .find(|&i| strategies.value(i) == "oracle" && budgets.value(i) == 0.05)
        .unwrap();
    assert_eq!(served.value(oracle_at_5), 9);
    assert!(out.join("timeline.parquet").exists());
    for chart in ["hit-share-over-time.png", "hit-share-vs-budget.png"] {
        assert_chart_draws(&out.join(chart), &["oracle"]);
    }
}

#[test]
fn bad_timelines_strategies_budgets_and_unsized_logs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = hand_checked_log(dir.path());
    let error = shadowcast_err(&[
        "simulate",
        "--logs",
        path_str(&log),
        "--start",
        START,
        "--window",
        "1h",
        "--strategies",
        "none,oracle",
    ]);
    assert!(
        error.contains("after the last event") && error.contains("--window"),
        "{error}"
    );
    let error = shadowcast_err(&[
        "simulate",
        "--logs",
        path_str(&log),
        "--strategies",
        "none,psychic",
    ]);
    assert!(error.contains("unknown strategy `psychic`"), "{error}");
    let error = shadowcast_err(&simulate_args(
        path_str(&log),
        &["--budgets", "0.1,0", "--strategies", "none"],
    ));
    assert!(error.contains("must be positive shares, got 0"), "{error}");

    let unsized_events: Vec<Event> = (0..40)
        .map(|i| Event {
            size: 0,
            tenant: None,
            ..event(
                DAY_2026_11_20_MS + i * 60_000,
                &format!("k{}", i % 4),
                "read",
            )
        })
        .collect();
    let unsized_log = write_events(&dir.path().join("unsized.parquet"), &unsized_events, 100);
    let error = shadowcast_err(&[
        "simulate",
        "--logs",
        path_str(&unsized_log),
        "--window",
        "10m",
        "--after",
        "10m",
        "--strategies",
        "none,oracle",
    ]);
    assert!(error.contains("a size of 0 bytes"), "{error}");
}
