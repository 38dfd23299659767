//! Feature values through the real binary, checked against a naive,
//! independent computation written here from the definitions (one key at a
//! time, calendar arithmetic from chrono, no shared code with the engine).

mod common;

use std::collections::BTreeMap;

use chrono::{DateTime, Timelike};
use common::*;
use rand::{Rng, SeedableRng};
use shadowcast::features::{FeatureTable, KeyFeatures, KeyStates, RollingFeatures};
use shadowcast::logs::LogSource;

const HOUR_MS: i64 = 3_600_000;
const AS_OF_MS: i64 = DAY_2026_11_20_MS + 10 * 24 * HOUR_MS + 13 * HOUR_MS + 17 * 60_000;
/// The horizon the features on its time scale are measured in: 90 minutes.
const HORIZON_MS: i64 = 90 * 60_000;

fn reference_events() -> Vec<Event> {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(7);
    let keys: Vec<(&'static str, String)> = (0..40)
        .map(|i| ("orders", format!("order:{i:03}")))
        .chain((0..12).map(|i| ("users", format!("u/{}/{i}", i % 3))))
        .chain(
            ["plain", ":lead", "tail:", "x:y:z"]
                .into_iter()
                .map(|k| ("users", k.to_string())),
        )
        .collect();
    let ops = ["read", "read", "read", "insert", "update", "delete"];
    // Most accesses name no tenant; a key's may change hands.
    let tenants = [None, None, None, Some("acme"), Some("zeta"), Some("beta")];
    let mut events: Vec<Event> = (0..3000)
        .map(|_| {
            let (table, key) = keys[rng.random_range(0..keys.len())].clone();
            Event {
                // ten days before the cut-off up to two hours after it
                ts_ms: AS_OF_MS - rng.random_range(-2 * HOUR_MS..240 * HOUR_MS),
                table,
                key,
                op: ops[rng.random_range(0..ops.len())],
                size: rng.random_range(0..5000),
                tenant: tenants[rng.random_range(0..tenants.len())],
            }
        })
        .collect();
    let at = |ts_ms, key: &str, op, size| Event {
        ts_ms,
        table: "orders",
        key: key.to_string(),
        op,
        size,
        tenant: None,
    };
    // exactly on window edges: age 1h is outside the 1h window, age 0 inside
    events.push(at(AS_OF_MS - HOUR_MS, "order:001", "read", 10));
    events.push(at(AS_OF_MS, "order:002", "read", 11));
    // ties at the latest instant: delete wins the op, the larger size wins the size
    let tie = AS_OF_MS - 5 * 60_000;
    events.push(at(tie, "order:900", "update", 700));
    events.push(at(tie, "order:900", "delete", 20));
    events.push(at(tie, "order:900", "read", 300));
    events.push(at(tie - 1, "order:900", "insert", 9000));
    // tenants named at the same latest instant: the greatest name is kept,
    // and a later access naming none changes nothing
    let named = |ts_ms, tenant| Event {
        tenant: Some(tenant),
        ..at(ts_ms, "order:901", "read", 1)
    };
    events.push(named(tie, "beta"));
    events.push(named(tie, "zeta"));
    events.push(named(tie, "acme"));
    events.push(named(tie - 60_000, "zzz"));
    events.push(at(tie + 60_000, "order:901", "read", 1));
    // a tenant named only after the cut-off does not count
    events.push(named(AS_OF_MS + 1, "late"));
    // a key that only exists after the cut-off
    events.push(at(AS_OF_MS + 1, "order:999", "insert", 5));
    events
}

/// The features of `events` as of `as_of_ms`, one key at a time.
fn expected(events: &[Event], as_of_ms: i64) -> Vec<KeyFeatures> {
    let as_of_us = as_of_ms * 1000;
    let mut per_key: BTreeMap<(String, Vec<u8>), Vec<&Event>> = BTreeMap::new();
    for event in events.iter().filter(|e| e.ts_ms <= as_of_ms) {
        per_key
            .entry((event.table.to_string(), event.key.as_bytes().to_vec()))
            .or_default()
            .push(event);
    }
    let time_of_day_us = |ms: i64| {
        let t = DateTime::from_timestamp_millis(ms).unwrap();
        i64::from(t.num_seconds_from_midnight()) * 1_000_000 + i64::from(t.nanosecond() / 1000)
    };
    let mut rows: Vec<KeyFeatures> = per_key
        .iter()
        .map(|((table, key), evs)| {
            let age_us = |e: &Event| as_of_us - e.ts_ms * 1000;
            let count =
                |pred: &dyn Fn(&Event) -> bool| evs.iter().filter(|e| pred(e)).count() as i64;
            let decay = |read: bool, hours: f64| -> f64 {
                evs.iter()
                    .filter(|e| (e.op == "read") == read)
                    .map(|e| (-std::f64::consts::LN_2 * age_us(e) as f64 / (hours * 3.6e9)).exp())
                    .sum()
            };
            let total = evs.len() as f64;
            let first = evs.iter().map(|e| e.ts_ms).min().unwrap();
            let last = evs.iter().map(|e| e.ts_ms).max().unwrap();
            let at_last: Vec<&&Event> = evs.iter().filter(|e| e.ts_ms == last).collect();
            let last_of = |read: bool| {
                evs.iter()
                    .filter(|e| (e.op == "read") == read)
                    .map(|e| e.ts_ms)
                    .max()
            };
            let hour_of = |e: &Event| DateTime::from_timestamp_millis(e.ts_ms).unwrap().hour();
            let horizon_us = (HORIZON_MS * 1000) as f64;
            let mut newest_first: Vec<i64> = evs.iter().map(|e| e.ts_ms).collect();
            newest_first.sort_unstable_by(|a, b| b.cmp(a));
            let mut gaps_h = [None; 4];
            for (gap, slot) in gaps_h.iter_mut().enumerate() {
                let Some(&ts) = newest_first.get(gap) else {
                    break;
                };
                let later = if gap == 0 {
                    as_of_ms
                } else {
                    newest_first[gap - 1]
                };
                *slot = Some((later - ts) as f64 * 1000.0 / horizon_us);
            }
            let writes_7d = count(&|e| e.op != "read" && age_us(e) < 7 * 24 * 3_600_000_000);
            // The latest access naming a tenant; at equal times the greatest name.
            let tenant = evs
                .iter()
                .filter_map(|e| e.tenant.map(|t| (e.ts_ms, t)))
                .max()
                .map(|(_, t)| t.into());
            KeyFeatures {
                table: table.as_str().into(),
                key: key.clone(),
                tenant,
                first_seen_age_s: (as_of_ms - first) as f64 / 1000.0,
                events: [1, 6, 24, 168].map(|h| count(&|e| age_us(e) < h * 3_600_000_000)),
                reads_total: count(&|e| e.op == "read"),
                writes_total: count(&|e| e.op != "read"),
                reads_decay: [1.0, 6.0, 24.0].map(|h| decay(true, h)),
                writes_decay: [1.0, 6.0, 24.0].map(|h| decay(false, h)),
                secs_since_last_read: last_of(true).map(|t| (as_of_ms - t) as f64 / 1000.0),
                secs_since_last_write: last_of(false).map(|t| (as_of_ms - t) as f64 / 1000.0),
                read_share: count(&|e| e.op == "read") as f64 / total,
                change_rate_per_h: writes_7d as f64
                    / ((as_of_ms - first) as f64 / HOUR_MS as f64).clamp(1.0, 168.0),
                size_last: at_last.iter().map(|e| e.size).max().unwrap(),
                size_max: evs.iter().map(|e| e.size).max().unwrap(),
                is_deleted: at_last.iter().any(|e| e.op == "delete"),
                tod_share: [0, 6, 12, 18]
                    .map(|h| count(&|e| (h..h + 6).contains(&hour_of(e))) as f64 / total),
                tod_share_next_6h: count(&|e| {
                    (time_of_day_us(e.ts_ms) - time_of_day_us(as_of_ms)).rem_euclid(86_400_000_000)
                        < 21_600_000_000
                }) as f64
                    / total,
                prefix_events_24h: 0,
                range_events_24h: 0,
                horizon_events: [1.0 / 16.0, 0.25, 1.0, 4.0, 16.0]
                    .map(|multiple| count(&|e| (age_us(e) as f64) < multiple * horizon_us)),
                horizon_decay: [0.25, 1.0, 4.0].map(|multiple| {
                    evs.iter()
                        .map(|e| {
                            (-std::f64::consts::LN_2 * age_us(e) as f64 / (multiple * horizon_us))
                                .exp()
                        })
                        .sum()
                }),
                gaps_h,
                age_h: (as_of_ms - first) as f64 * 1000.0 / horizon_us,
            }
        })
        .collect();
    // neighbourhoods, by brute force over all pairs
    let snapshot = rows.clone();
    let prefix = |key: &[u8]| -> Option<Vec<u8>> {
        let text = std::str::from_utf8(key).unwrap();
        let (before, _) = text.rsplit_once([':', '/'])?;
        (!before.is_empty()).then(|| before.as_bytes().to_vec())
    };
    for (i, row) in rows.iter_mut().enumerate() {
        let same_table: Vec<(usize, &KeyFeatures)> = snapshot
            .iter()
            .enumerate()
            .filter(|(_, other)| other.table == row.table)
            .collect();
        let position = same_table.iter().position(|(j, _)| *j == i).unwrap();
        row.range_events_24h = same_table
            .iter()
            .enumerate()
            .filter(|(p, _)| *p != position && p.abs_diff(position) <= 8)
            .map(|(_, (_, other))| other.events[2])
            .sum();
        row.prefix_events_24h = match prefix(&row.key) {
            None => 0,
            Some(mine) => same_table
                .iter()
                .filter(|(j, other)| *j != i && prefix(&other.key).as_ref() == Some(&mine))
                .map(|(_, other)| other.events[2])
                .sum(),
        };
    }
    rows
}

#[test]
fn features_match_an_independent_computation() {
    let dir = tempfile::tempdir().unwrap();
    let events = reference_events();
    // three files, small row groups, so the scan splits, prunes and merges
    let third = events.len() / 3;
    for (index, chunk) in [
        &events[..third],
        &events[third..2 * third],
        &events[2 * third..],
    ]
    .iter()
    .enumerate()
    {
        let mut sorted = chunk.to_vec();
        sorted.sort_by_key(|e| e.ts_ms);
        write_events(
            &dir.path().join(format!("logs/part-{index}.parquet")),
            &sorted,
            97,
        );
    }
    let out = dir.path().join("features.parquet");
    let as_of = shadowcast::time::format_instant(AS_OF_MS * 1000);
    shadowcast_ok(&[
        "features",
        "--logs",
        path_str(&dir.path().join("logs")),
        "--as-of",
        &as_of,
        "--horizon",
        "90m",
        "--out",
        path_str(&out),
    ]);

    let table = FeatureTable::read_parquet(&out).expect("readable feature table");
    assert_eq!(table.as_of, AS_OF_MS * 1000);
    assert_eq!(table.horizon, HORIZON_MS * 1000);
    let wanted = expected(&events, AS_OF_MS);
    let actual_keys: Vec<_> = table
        .rows()
        .map(|r| (r.table.clone(), r.key_display()))
        .collect();
    let wanted_keys: Vec<_> = wanted
        .iter()
        .map(|r| (r.table.clone(), r.key_display()))
        .collect();
    assert_eq!(
        actual_keys, wanted_keys,
        "same keys in the same (table, key) order"
    );
    assert!(
        !actual_keys.iter().any(|(_, k)| k == "order:999"),
        "events after the cut-off are ignored"
    );
    let rows: Vec<_> = table.rows().collect();
    for (actual, wanted) in rows.iter().zip(&wanted) {
        assert_features_match(actual, wanted, 1e-12);
    }
    let named = rows.iter().find(|r| r.key == b"order:901").unwrap();
    assert_eq!(named.tenant.as_deref(), Some("zeta"), "tenant tie-break");
    assert!(
        rows.iter().filter(|r| r.tenant.is_some()).count() > 40,
        "most keys have a tenant"
    );
    let tie = rows.iter().find(|r| r.key == b"order:900").unwrap();
    assert!(
        tie.is_deleted && tie.size_last == 700,
        "tie-breaks: {tie:?}"
    );
}

#[test]
fn threads_do_not_change_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let mut events = reference_events();
    events.sort_by_key(|e| e.ts_ms);
    write_events(&dir.path().join("logs/all.parquet"), &events, 50);
    let as_of = shadowcast::time::format_instant(AS_OF_MS * 1000);
    let run = |threads: &str, name: &str| {
        let out = dir.path().join(name);
        shadowcast_ok_with_env(
            &[
                "features",
                "--logs",
                path_str(&dir.path().join("logs")),
                "--as-of",
                &as_of,
                "--out",
                path_str(&out),
            ],
            &[("SHADOWCAST_THREADS", threads)],
        );
        FeatureTable::read_parquet(&out)
            .unwrap()
            .rows()
            .collect::<Vec<_>>()
    };
    let one = run("1", "one.parquet");
    let four = run("4", "four.parquet");
    assert_eq!(one.len(), four.len());
    for (a, b) in one.iter().zip(&four) {
        assert_features_match(a, b, 1e-12);
    }
}

/// Key states rolled forward hold the features of `events` as of
/// `as_of_ms`, by the independent computation (decayed counters were
/// scaled rather than summed again: equal up to rounding).
fn assert_rolled_match(states: KeyStates, events: &[Event], as_of_ms: i64) {
    let rows: Vec<KeyFeatures> = states.into_table().rows().collect();
    let wanted = expected(events, as_of_ms);
    assert_eq!(rows.len(), wanted.len(), "keys as of {as_of_ms}");
    for (actual, wanted) in rows.iter().zip(&wanted) {
        assert_features_match(actual, wanted, 1e-10);
    }
}

/// The service keeps its features fresh by rolling the key states of the
/// files it read forward to each new cut-off and reading only new files:
/// at every step the features equal the independent computation over
/// every file so far, through cut-off moves of minutes, of more than the
/// 6 hours the time-of-day feature looks ahead, past midnight, and of more
/// than a day, with late events arriving in later files.
#[test]
fn features_rolled_forward_file_by_file_match_an_independent_computation() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let mut events = reference_events();
    events.sort_by_key(|e| e.ts_ms);
    let minute = 60_000;
    // The ends of the files' stretches of time, each step named by how
    // far the cut-off moves.
    let start = AS_OF_MS - 100 * HOUR_MS;
    // The cut-off's time of day at each end: 09:17, 09:24, 12:17, 17:32,
    // 18:17 (the window gains 23:32 to 00:17), 21:22, 00:30 (it loses
    // 21:22 to 00:30), 07:17 (6h47 on: a window of its own), 11:17 (28
    // hours on), 15:17 (52 hours on).
    let ends = [
        start,
        start + 7 * minute,
        start + 3 * HOUR_MS,
        start + 8 * HOUR_MS + 15 * minute,
        start + 9 * HOUR_MS,
        start + 12 * HOUR_MS + 5 * minute,
        start + 15 * HOUR_MS + 13 * minute,
        start + 22 * HOUR_MS,
        start + 50 * HOUR_MS,
        AS_OF_MS + 2 * HOUR_MS + 1,
    ];
    let mut rolling = RollingFeatures::default();
    let mut files: Vec<Vec<Event>> = Vec::new();
    let mut late: Vec<Event> = Vec::new();
    let mut from = i64::MIN;
    for (index, &end) in ends.iter().enumerate() {
        // Every seventh event of a stretch arrives with the next file.
        let mut file = std::mem::take(&mut late);
        for (position, event) in events
            .iter()
            .filter(|e| (from..end).contains(&e.ts_ms))
            .enumerate()
        {
            if position % 7 == 3 && index + 1 < ends.len() {
                late.push(event.clone());
            } else {
                file.push(event.clone());
            }
        }
        from = end;
        file.sort_by_key(|e| e.ts_ms);
        write_events(&logs.join(format!("part-{index}.parquet")), &file, 61);
        files.push(file);
        let written = files.concat();
        let as_of_ms = written.iter().map(|e| e.ts_ms).max().unwrap();
        let refresh = rolling
            .advance(
                &LogSource::open(&logs).unwrap(),
                as_of_ms * 1000,
                HORIZON_MS * 1000,
            )
            .unwrap()
            .expect("a new file is something new");
        assert_eq!(refresh.rolled, index > 0, "step {index}");
        assert_rolled_match(refresh.states, &written, as_of_ms);
    }
    let source = || LogSource::open(&logs).unwrap();
    let as_of_us = files.concat().iter().map(|e| e.ts_ms).max().unwrap() * 1000;
    let horizon_us = HORIZON_MS * 1000;
    assert!(
        rolling
            .advance(&source(), as_of_us, horizon_us)
            .unwrap()
            .is_none(),
        "the same files and cut-off: nothing new"
    );

    // A file read before is gone: every file is read again.
    std::fs::remove_file(logs.join("part-2.parquet")).unwrap();
    let refresh = rolling
        .advance(&source(), as_of_us, horizon_us)
        .unwrap()
        .expect("a file went away");
    assert!(!refresh.rolled);
    files.remove(2);
    let remaining = files.concat();
    assert_rolled_match(refresh.states, &remaining, as_of_us / 1000);
}

/// A replay (`simulate --replan-every`) moves the cut-off through files
/// that already hold later events: each step reads only the events the
/// cut-off moved past, and equals the independent computation.
#[test]
fn features_rolled_through_files_that_hold_later_events_match_an_independent_computation() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let mut events = reference_events();
    events.sort_by_key(|e| e.ts_ms);
    let half = events.len() / 2;
    write_events(&logs.join("early.parquet"), &events[..half], 83);
    write_events(&logs.join("late.parquet"), &events[half..], 83);
    let mut rolling = RollingFeatures::default();
    let source = LogSource::open(&logs).unwrap();
    let cutoffs = [
        AS_OF_MS - 50 * HOUR_MS,
        AS_OF_MS - 50 * HOUR_MS + 1,
        AS_OF_MS - 49 * HOUR_MS,
        AS_OF_MS - 30 * HOUR_MS + 17,
        AS_OF_MS,
    ];
    for (step, &as_of_ms) in cutoffs.iter().enumerate() {
        let refresh = rolling
            .advance(&source, as_of_ms * 1000, HORIZON_MS * 1000)
            .unwrap()
            .expect("the cut-off moved");
        assert_eq!(refresh.rolled, step > 0, "step {step}");
        assert_rolled_match(refresh.states, &events, as_of_ms);
    }
}
