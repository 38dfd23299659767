//! Models end to end: train, list, promote, roll back and evaluate through
//! the binary on generated logs; load refusals and atomic swaps through the
//! library on the real model files.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use shadowcast::features::{FeatureOptions, compute};
use shadowcast::logs::LogSource;
use shadowcast::model::ModelError;
use shadowcast::model::handle::ModelHandle;
use shadowcast::model::input::raw_inputs;
use shadowcast::model::registry::Registry;
use shadowcast::time::parse_instant;

/// 36 hours of the oltp profile, shared by the tests of this file.
fn logs(dir: &Path) -> std::path::PathBuf {
    let logs = dir.join("logs");
    shadowcast_ok(&[
        "generate",
        "--out",
        path_str(&logs),
        "--events",
        "60000",
        "--hours",
        "36",
        "--seed",
        "4",
    ]);
    logs
}

/// A model of `kind` ranking by the learner alone (`--no-guard`), so each
/// draws its own curve in the evaluation chart (a guarded model may rank
/// exactly as a counter does).
fn train(logs: &Path, out: &Path, kind: &str, promote: bool) -> String {
    let mut args = vec![
        "train",
        "--logs",
        path_str(logs),
        "--as-of",
        "2026-11-02T06:00:00Z",
        "--horizon",
        "3h",
        "--cutoffs",
        "3",
        "--out",
        path_str(out),
        "--kind",
        kind,
        "--max-rows",
        "4000",
        "--trees",
        "4",
        "--no-guard",
    ];
    if promote {
        args.push("--promote");
    }
    stdout(&shadowcast_ok(&args)).trim().to_string()
}

#[test]
fn train_list_promote_rollback_and_evaluate_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    let registry = dir.path().join("models");
    let model = registry.join("oltp");

    let v1 = train(&logs, &model, "logistic", true);
    assert!(v1.ends_with("oltp/v1"), "{v1}");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(&v1).join("manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["feature_set"], "shadowcast.access");
    assert_eq!(manifest["feature_set_version"], 2);
    assert_eq!(manifest["kind"], "logistic");
    assert_eq!(manifest["window"]["as_of"], "2026-11-02T06:00:00Z");
    assert_eq!(manifest["window"]["cutoffs"].as_array().unwrap().len(), 3);
    assert_eq!(manifest["model_sha256"].as_str().unwrap().len(), 64);
    assert!(manifest["metrics"]["in_sample_auc_hot"].as_f64().unwrap() > 0.5);

    let v2 = train(&logs, &model, "tree", false);
    assert!(v2.ends_with("oltp/v2"), "{v2}");
    let list = stdout(&shadowcast_ok(&[
        "models",
        "--registry",
        path_str(&registry),
        "list",
    ]));
    assert!(list.contains("* oltp             v1"), "{list}");
    assert!(list.contains("  oltp             v2    tree"), "{list}");
    let v3 = train(&logs, &model, "gbdt", false);
    assert!(v3.ends_with("oltp/v3"), "{v3}");

    shadowcast_ok(&[
        "models",
        "--registry",
        path_str(&registry),
        "promote",
        "oltp",
        "v2",
    ]);
    let shown = stdout(&shadowcast_ok(&[
        "models",
        "--registry",
        path_str(&registry),
        "show",
        "oltp",
    ]));
    assert!(shown.contains("\"version\": \"v2\""), "{shown}");
    let rolled = stdout(&shadowcast_ok(&[
        "models",
        "--registry",
        path_str(&registry),
        "rollback",
        "oltp",
    ]));
    assert!(rolled.contains("rolled back to v1"), "{rolled}");
    let error = shadowcast_err(&[
        "models",
        "--registry",
        path_str(&registry),
        "rollback",
        "oltp",
    ]);
    assert!(error.contains("no earlier promotion"), "{error}");

    let report = dir.path().join("eval.parquet");
    let chart = dir.path().join("charts/eval.png");
    let output = shadowcast_ok(&[
        "evaluate",
        "--logs",
        path_str(&logs),
        "--as-of",
        "2026-11-02T09:00:00Z",
        "--horizon",
        "3h",
        "--model",
        &v1,
        "--model",
        &v2,
        "--model",
        &v3,
        "--out",
        path_str(&report),
        "--chart",
        path_str(&chart),
    ]);
    let table = stdout(&output);
    for method in [
        "random",
        "most-recent",
        "most-frequent",
        "decayed-",
        "oltp-v1",
        "oltp-v2",
        "oltp-v3",
        "oracle",
    ] {
        assert!(table.contains(method), "{method} missing from:\n{table}");
    }
    // Capture at a 10% key budget: boosted trees rank the horizon's
    // accesses far better than chance.
    let capture_at_10 = |method: &str| -> f64 {
        let line = table
            .lines()
            .find(|line| line.starts_with(method))
            .unwrap_or_else(|| panic!("{method} in:\n{table}"));
        line.split_whitespace().nth(8).unwrap().parse().unwrap()
    };
    assert!(
        capture_at_10("oltp-v3") > 2.0 * capture_at_10("random"),
        "gbdt against random:\n{table}"
    );
    assert!(
        table.contains("the best heuristic"),
        "a verdict per model:\n{table}"
    );
    let rows = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&report).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap()
    .map(|b| b.unwrap().num_rows())
    .sum::<usize>();
    assert_eq!(
        rows,
        8 * (4 + 2 * 20),
        "8 methods x (4 scores + 2 captures x 20 budgets)"
    );
    let methods = [
        "random",
        "most-recent",
        "most-frequent",
        "decayed",
        "oltp-v1",
        "oltp-v2",
        "oltp-v3",
        "oracle",
    ];
    assert_chart_draws(&chart, &methods);

    // A model trained on data after the evaluation cut-off is refused.
    let error = shadowcast_err(&[
        "evaluate",
        "--logs",
        path_str(&logs),
        "--as-of",
        "2026-11-02T03:00:00Z",
        "--horizon",
        "3h",
        "--model",
        &v1,
    ]);
    assert!(
        error.contains("trained with data up to 2026-11-02T06:00:00Z"),
        "{error}"
    );
}

#[test]
fn the_handle_swaps_atomically_and_refuses_broken_models() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    let root = dir.path().join("models");
    train(&logs, &root.join("m"), "logistic", true);
    train(&logs, &root.join("m"), "tree", false);
    let registry = Registry::new(&root);

    let source = LogSource::open(&logs).unwrap();
    let features = compute(
        &source,
        FeatureOptions {
            as_of: parse_instant("2026-11-02T09:00:00Z").unwrap(),
            horizon: 6 * 3_600_000_000,
            since: None,
        },
        &|_| {},
    )
    .unwrap();
    let raw = raw_inputs(&features);
    let expected_v1 = registry
        .load("m", "v1")
        .unwrap()
        .predictor
        .score(raw.view());
    let expected_v2 = registry
        .load("m", "v2")
        .unwrap()
        .predictor
        .score(raw.view());
    assert_ne!(expected_v1, expected_v2);

    // Scoring threads see one whole model per request while the main thread swaps.
    let handle = ModelHandle::new(registry.load("m", "v1").unwrap());
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                let mut seen = 0;
                while !done.load(Ordering::Relaxed) || seen == 0 {
                    let model = handle.current();
                    let scores = model.predictor.score(raw.view());
                    let expected = if model.manifest.version == "v1" {
                        &expected_v1
                    } else {
                        &expected_v2
                    };
                    assert_eq!(&scores, expected, "a request saw a mixed model");
                    seen += 1;
                }
            });
        }
        for round in 0..20 {
            let version = if round % 2 == 0 { "v2" } else { "v1" };
            handle.load_and_swap(&registry, "m", version).unwrap();
        }
        done.store(true, Ordering::Relaxed);
    });
    let serving = handle.current().manifest.version.clone();

    // Truncated model file: refused by the checksum, the serving model stays.
    let model_file = root.join("m/v2/model.json");
    let bytes = std::fs::read(&model_file).unwrap();
    std::fs::write(&model_file, &bytes[..bytes.len() / 2]).unwrap();
    let error = handle
        .load_and_swap(&registry, "m", "v2")
        .err()
        .expect("refused");
    assert!(matches!(error, ModelError::Checksum { .. }), "{error}");
    assert!(error.to_string().contains("m/v2/model.json"), "{error}");
    assert_eq!(
        handle.current().manifest.version,
        serving,
        "the current model keeps serving"
    );

    // A model of the earlier feature set version.
    let manifest_file = root.join("m/v1/manifest.json");
    let text = std::fs::read_to_string(&manifest_file).unwrap();
    std::fs::write(
        &manifest_file,
        text.replace("\"feature_set_version\": 2", "\"feature_set_version\": 1"),
    )
    .unwrap();
    let error = handle
        .load_and_swap(&registry, "m", "v1")
        .err()
        .expect("refused");
    assert!(
        error
            .to_string()
            .contains("trained on feature set shadowcast.access v1"),
        "{error}"
    );
    assert_eq!(handle.current().manifest.version, serving);

    // A manifest that is not JSON at all.
    std::fs::write(&manifest_file, "{ not json").unwrap();
    let error = handle
        .load_and_swap(&registry, "m", "v1")
        .err()
        .expect("refused");
    assert!(
        error.to_string().contains("corrupt or truncated model"),
        "{error}"
    );

    // Promotion checks the model loads first, so a broken one never becomes active.
    let error = shadowcast_err(&[
        "models",
        "--registry",
        path_str(&root),
        "promote",
        "m",
        "v2",
    ]);
    assert!(error.contains("checksum mismatch"), "{error}");
    assert_eq!(registry.active("m").unwrap().as_deref(), Some("v1"));
}

#[test]
fn train_and_evaluate_on_imported_logs() {
    let dir = tempfile::tempdir().unwrap();
    // Two hours of a read-only trace in the shared layout (like most of the
    // public traces): a hot set that drifts every 20 minutes.
    let mut csv = String::from("ts_ms,key,op,size_bytes,table\n");
    // What the oracle must capture, counted here: the accesses in the
    // evaluated horizon (01:30, 01:40] of each key seen by 01:30.
    let (cutoff_ms, end_ms) = (90 * 60_000, 100 * 60_000);
    let mut seen = std::collections::HashSet::new();
    let mut future: std::collections::HashMap<u64, u64> = Default::default();
    let mut horizon_accesses = 0u64;
    for i in 0..30_000u64 {
        let ts_ms = i * 240;
        let phase = ts_ms / 1_200_000;
        let key = if i % 3 == 0 {
            (i * 7919) % 5000
        } else {
            phase * 50 + (i * 31) % 50
        };
        csv.push_str(&format!("{ts_ms},blk:{key:06},read,4096,vol\n"));
        if ts_ms <= cutoff_ms {
            seen.insert(key);
        } else if ts_ms <= end_ms {
            *future.entry(key).or_default() += 1;
            horizon_accesses += 1;
        }
    }
    let mut by_future: Vec<u64> = seen
        .iter()
        .map(|key| future.get(key).copied().unwrap_or(0))
        .collect();
    by_future.sort_unstable_by(|a, b| b.cmp(a));
    let oracle_capture = |share: f64| {
        let keys = (by_future.len() as f64 * share).round() as usize;
        by_future[..keys].iter().sum::<u64>() as f64 / horizon_accesses as f64
    };
    let input = dir.path().join("trace.csv");
    std::fs::write(&input, csv).unwrap();
    let logs = dir.path().join("logs");
    import_trace(&input, &logs, "2026-11-01T00:00:00Z", &[]);
    let out = dir.path().join("models/trace");
    let version = stdout(&shadowcast_ok(&[
        "train",
        "--logs",
        path_str(&logs),
        "--as-of",
        "2026-11-01T01:20:00Z",
        "--horizon",
        "10m",
        "--cutoffs",
        "3",
        "--out",
        path_str(&out),
        "--max-rows",
        "2000",
    ]))
    .trim()
    .to_string();
    // The model judged at 01:30 on the next 10 minutes, with `extra` options.
    let evaluate = |extra: &[&str]| {
        let mut args = vec![
            "evaluate",
            "--logs",
            path_str(&logs),
            "--as-of",
            "2026-11-01T01:30:00Z",
            "--horizon",
            "10m",
            "--model",
            &version,
        ];
        args.extend_from_slice(extra);
        stdout(&shadowcast_ok(&args))
    };
    let table = evaluate(&[]);
    assert!(
        table.contains("judged on the next 10m"),
        "a 10-minute horizon reads as such: {table}"
    );
    assert!(
        table.contains("trace-v1") && table.contains("oracle"),
        "{table}"
    );
    let oracle_line = table.lines().find(|l| l.starts_with("oracle")).unwrap();
    let captures: Vec<f64> = oracle_line
        .split('|')
        .nth(1)
        .unwrap()
        .split_whitespace()
        .map(|value| value.parse().unwrap())
        .collect();
    for (column, share) in [0.01, 0.05, 0.10, 0.20].into_iter().enumerate() {
        assert!(
            (captures[column] - oracle_capture(share)).abs() < 0.0006,
            "the oracle captures {} at {share}, counted here {:.4}: {oracle_line}",
            captures[column],
            oracle_capture(share)
        );
    }
    // The guard says what ranks; when a counter ranks alone, the model's
    // captures are that counter's.
    let guard_line = table
        .lines()
        .find(|l| l.starts_with("trace-v1 ranks by "))
        .unwrap_or_else(|| panic!("the guard's choice is stated: {table}"));
    assert!(
        guard_line.contains("held-out cut-off 2026-11-01T01:10:00Z"),
        "{guard_line}"
    );
    let captures_of = |method: &str| -> Vec<String> {
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("{method} ")) && l.contains(" | "))
            .unwrap_or_else(|| panic!("{method} judged: {table}"));
        row.split_whitespace()
            .skip(6)
            .take(4)
            .map(String::from)
            .collect()
    };
    if guard_line.starts_with("trace-v1 ranks by most-frequent:") {
        assert_eq!(captures_of("trace-v1"), captures_of("most-frequent"));
    }

    // Two successive cut-offs: each judged, then the mean and spread,
    // checked here from the two tables' own 10% captures.
    let both = evaluate(&["--cutoffs", "2"]);
    assert!(
        both.contains("at 2026-11-01T01:30:00Z, judged on the next 10m"),
        "{both}"
    );
    assert!(
        both.contains("at 2026-11-01T01:40:00Z, judged on the next 10m"),
        "{both}"
    );
    let captures: Vec<f64> = both
        .lines()
        .filter(|l| l.starts_with("trace-v1 ") && l.contains(" | "))
        .map(|l| l.split_whitespace().nth(8).unwrap().parse::<f64>().unwrap())
        .collect();
    assert_eq!(captures.len(), 2, "{both}");
    let summary: Vec<&str> = both
        .lines()
        .skip_while(|l| !l.starts_with("over 2 cut-offs"))
        .find(|l| l.starts_with("trace-v1 ") && l.contains('±'))
        .expect("a summary row for the model")
        .split_whitespace()
        .collect();
    let percent = |text: &str| text.trim_end_matches('%').parse::<f64>().unwrap();
    let mean = 100.0 * (captures[0] + captures[1]) / 2.0;
    let spread = 100.0 * (captures[0] - captures[1]).abs() / 2f64.sqrt();
    assert!(
        (percent(summary[1]) - mean).abs() < 0.1,
        "{summary:?} vs {mean}"
    );
    assert!(
        (percent(summary[3]) - spread).abs() < 0.1,
        "{summary:?} vs {spread}"
    );
}

/// Worked by hand, with the horizon's events split over two files and
/// one-row row groups so the tallies are merged from several workers:
/// `a` is read twice, updated, read again: 2 reads before its first write;
/// `b` is only read: both reads; `c` is inserted then read: none; `d` is
/// read at 2 s in one file and updated at 3 s in the other, then read at
/// 5 s: 1; `e` is read at the very instant of its first write, which
/// counts as after it: none. 5 in all.
#[test]
fn reads_before_the_first_write_are_counted_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let event = |ts_ms: i64, key: &str, op: &'static str| Event {
        ts_ms,
        table: "t",
        key: key.to_string(),
        op,
        size: 10,
        tenant: None,
    };
    let history: Vec<Event> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|key| event(0, key, "read"))
        .collect();
    write_events(&dir.path().join("history.parquet"), &history, 1);
    let first = [
        event(2000, "a", "read"),
        event(3000, "a", "read"),
        event(4000, "a", "update"),
        event(2000, "b", "read"),
        event(2000, "c", "insert"),
        event(3000, "c", "read"),
        event(3000, "d", "update"),
        event(4000, "e", "update"),
    ];
    write_events(&dir.path().join("first.parquet"), &first, 1);
    let second = [
        event(5000, "a", "read"),
        event(6000, "b", "read"),
        event(2000, "d", "read"),
        event(5000, "d", "read"),
        event(4000, "e", "read"),
    ];
    write_events(&dir.path().join("second.parquet"), &second, 1);
    let source = LogSource::open(dir.path()).unwrap();
    let after = 1_000_000;
    let features = shadowcast::features::FeatureRows::OnDemand(
        shadowcast::features::scan(
            &source,
            FeatureOptions {
                as_of: after,
                horizon: 3_600_000_000,
                since: None,
            },
            &|_| {},
        )
        .unwrap(),
    );
    let horizon =
        shadowcast::model::labels::Horizon::observe(&source, after, 3_600_000_000).unwrap();
    let outcomes = horizon.outcomes_of(&features);
    let keys: Vec<Vec<u8>> = features.rows().map(|row| row.key).collect();
    assert_eq!(keys, [b"a", b"b", b"c", b"d", b"e"].map(|k| k.to_vec()));
    let before: Vec<u64> = outcomes.iter().map(|o| o.reads_before_write).collect();
    assert_eq!(before, [2, 2, 0, 1, 0]);
    assert_eq!(horizon.total.reads_before_write, 5);
    assert_eq!(
        outcomes.iter().map(|o| o.accesses).collect::<Vec<_>>(),
        [4, 2, 2, 3, 2]
    );
}

/// Boosted trees score the same whatever vector instructions walk them:
/// `evaluate` of a gbdt model gives the same table and report with the
/// processor's widest vectors, with `SHADOWCAST_SIMD=avx2` and with
/// `SHADOWCAST_SIMD=none` (the plain walk); a value it does not know is
/// named in a warning and changes nothing.
#[test]
fn boosted_trees_evaluate_the_same_with_every_vector_width() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    let model = train(&logs, &dir.path().join("models/oltp"), "gbdt", false);
    let report = dir.path().join("eval.parquet");
    let evaluate = |simd: Option<&str>| {
        let variables: Vec<(&str, &str)> = simd
            .map(|simd| ("SHADOWCAST_SIMD", simd))
            .into_iter()
            .collect();
        let output = shadowcast_ok_with_env(
            &[
                "evaluate",
                "--logs",
                path_str(&logs),
                "--as-of",
                "2026-11-02T09:00:00Z",
                "--horizon",
                "3h",
                "--model",
                &model,
                "--out",
                path_str(&report),
            ],
            &variables,
        );
        let rows: Vec<arrow_array::RecordBatch> =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                std::fs::File::open(&report).unwrap(),
            )
            .unwrap()
            .build()
            .unwrap()
            .map(|batch| batch.unwrap())
            .collect();
        (stdout(&output), rows, stderr(&output))
    };
    let (table, rows, _) = evaluate(None);
    assert!(table.contains("oltp-v1"), "{table}");
    for simd in ["avx2", "none", "sse9"] {
        let (other_table, other_rows, warnings) = evaluate(Some(simd));
        assert_eq!(other_table, table, "SHADOWCAST_SIMD={simd}");
        assert_eq!(other_rows, rows, "SHADOWCAST_SIMD={simd}");
        assert_eq!(
            warnings.contains("SHADOWCAST_SIMD=\"sse9\" is none of avx512, avx2 and none"),
            simd == "sse9",
            "{warnings}"
        );
    }
}
