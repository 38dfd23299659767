//! `sql/features.sql` (portable) and `sql/features_duckdb.sql` (written for
//! DuckDB), each run by DuckDB over the same Parquet logs, give the same
//! feature table as the native engine; `sql/labels.sql` gives the same label
//! table; and a model trained from the tables DuckDB wrote scores as the
//! one trained from the logs. Needs Python with `duckdb` (installed by
//! `scripts/test.sh`).

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use shadowcast::features::FeatureTable;

fn run_duckdb(sql_file: &str, logs: &Path, as_of_us: i64, horizon_us: i64, out: &Path) {
    run_sql(
        "run_duckdb.py",
        sql_file,
        &[],
        logs,
        as_of_us,
        horizon_us,
        out,
    )
}

#[test]
fn duckdb_running_the_sql_file_equals_the_native_features() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    generate_shop_logs(&logs, "11");
    // A cut-off inside the data: later events exist and must be ignored by both.
    let as_of = "2026-11-20T21:30:00Z";
    let native = dir.path().join("native.parquet");
    shadowcast_ok(&[
        "features",
        "--logs",
        path_str(&logs),
        "--as-of",
        as_of,
        "--horizon",
        "2h",
        "--out",
        path_str(&native),
    ]);
    let native = FeatureTable::read_parquet(&native).unwrap();

    assert!(
        native.len() > 5_000,
        "a real workload: {} keys",
        native.len()
    );
    let with_tenant = native.rows().filter(|row| row.tenant.is_some()).count();
    assert!(
        with_tenant > native.len() / 2,
        "the generated logs name tenants: {with_tenant} of {} keys have one",
        native.len()
    );
    let native_rows: Vec<_> = native.rows().collect();
    let deleted = native_rows.iter().filter(|row| row.is_deleted).count();
    assert!(deleted > 0, "the generated logs delete keys");
    for sql_file in ["features.sql", "features_duckdb.sql"] {
        let out = dir.path().join(format!("{sql_file}.parquet"));
        run_duckdb(sql_file, &logs, native.as_of, native.horizon, &out);
        let sql = FeatureTable::read_parquet(&out).unwrap_or_else(|e| panic!("{sql_file}: {e}"));
        assert_eq!(sql.len(), native.len(), "{sql_file}: same number of keys");
        let mut neighbourhoods_seen = 0;
        for (s, n) in sql.rows().zip(&native_rows) {
            assert_features_match(&s, n, 1e-9);
            neighbourhoods_seen += usize::from(n.range_events_24h > 0);
        }
        assert!(
            neighbourhoods_seen > 100,
            "{sql_file}: neighbourhood features are exercised"
        );
    }
}

#[test]
fn duckdb_running_labels_sql_equals_the_native_labels() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    generate_shop_logs(&logs, "11");
    let as_of = "2026-11-20T21:30:00Z";
    // Rules other than the defaults, so that the parameters are used.
    let rules = ["--hot-share", "0.08", "--churn-min-writes", "1"];
    let native = dir.path().join("native.parquet");
    native_labels(&logs, as_of, "2h", &rules, &native);
    let sql = dir.path().join("sql.parquet");
    let as_of_us = shadowcast::time::parse_instant(as_of).unwrap();
    run_sql(
        "run_duckdb.py",
        "labels.sql",
        &rules,
        &logs,
        as_of_us,
        2 * 3_600_000_000,
        &sql,
    );
    assert_label_tables_equal(&sql, &native);
}

/// Cut-offs 2026-11-20 T-2h, T-4h, T-6h before T = 22:00, as the training
/// from the logs takes them with `--cutoffs 3 --horizon 2h`.
const TRAINING_AS_OF: &str = "2026-11-20T22:00:00Z";
const HORIZON_US: i64 = 2 * 3_600_000_000;

fn duckdb_tables(logs: &Path, dir: &Path) -> (Vec<String>, Vec<String>) {
    let as_of = shadowcast::time::parse_instant(TRAINING_AS_OF).unwrap();
    let (mut features, mut labels) = (Vec::new(), Vec::new());
    for step in 1..=3 {
        let cutoff = as_of - step * HORIZON_US;
        let f = dir.join(format!("features-{step}.parquet"));
        let l = dir.join(format!("labels-{step}.parquet"));
        run_duckdb("features.sql", logs, cutoff, HORIZON_US, &f);
        run_duckdb("labels.sql", logs, cutoff, HORIZON_US, &l);
        features.push(path_str(&f).to_string());
        labels.push(path_str(&l).to_string());
    }
    (features, labels)
}

#[test]
fn a_model_trained_from_duckdb_tables_scores_as_the_one_trained_from_the_logs() {
    use shadowcast::model::registry::Registry;

    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    generate_shop_logs(&logs, "11");
    let registry = dir.path().join("models");
    let common = ["--kind", "logistic", "--max-rows", "3000"];
    let mut from_logs = vec![
        "train",
        "--logs",
        path_str(&logs),
        "--as-of",
        TRAINING_AS_OF,
        "--horizon",
        "2h",
        "--cutoffs",
        "3",
    ];
    let logs_out = registry.join("from-logs");
    from_logs.extend(["--out", path_str(&logs_out)]);
    from_logs.extend(common);
    shadowcast_ok(&from_logs);

    let (features, labels) = duckdb_tables(&logs, dir.path());
    // Listed in another order than the cut-offs, and the two lists unlike
    // each other: pairs are matched by the cut-off each table records.
    let features_arg = [&features[1], &features[0], &features[2]]
        .map(|s| s.as_str())
        .join(",");
    let labels_arg = [&labels[2], &labels[1], &labels[0]]
        .map(|s| s.as_str())
        .join(",");
    let tables_out = registry.join("from-tables");
    let mut from_tables = vec![
        "train",
        "--features",
        &features_arg,
        "--labels",
        &labels_arg,
        "--out",
        path_str(&tables_out),
    ];
    from_tables.extend(common);
    shadowcast_ok(&from_tables);

    let registry = Registry::new(&registry);
    let load = |name: &str| {
        let version = registry.versions(name).unwrap().pop().unwrap();
        registry.load(name, &version).unwrap()
    };
    let (a, b) = (load("from-logs"), load("from-tables"));
    assert_eq!(
        a.manifest.window, b.manifest.window,
        "the same cut-offs and rows"
    );
    assert!(a.manifest.window.rows_used > 1_000);

    // Both score the keys as of T alike.
    let at_t = dir.path().join("at-t.parquet");
    shadowcast_ok(&[
        "features",
        "--logs",
        path_str(&logs),
        "--as-of",
        TRAINING_AS_OF,
        "--horizon",
        "2h",
        "--out",
        path_str(&at_t),
    ]);
    let table = shadowcast::features::FeatureTable::read_parquet(&at_t).unwrap();
    let raw = shadowcast::model::input::raw_inputs(&table);
    let (sa, sb) = (a.predictor.score(raw.view()), b.predictor.score(raw.view()));
    let mut differing = 0;
    for (x, y) in sa
        .accesses
        .iter()
        .zip(&sb.accesses)
        .chain(sa.hot.iter().zip(&sb.hot))
    {
        assert!(
            (x - y).abs() <= 1e-6 * x.abs().max(1.0),
            "scores {x} and {y} differ"
        );
        differing += usize::from(x != y);
    }
    assert!(
        sa.accesses.iter().any(|s| *s > 0.0),
        "the model scores something"
    );
    eprintln!("{differing} scores differ in the last bits");

    // Evaluated from tables: the pair at T is judged (the model trained up
    // to T), its decayed counter tuned on the pair before it.
    let as_of = shadowcast::time::parse_instant(TRAINING_AS_OF).unwrap();
    let (f_t, l_t) = (
        dir.path().join("features-t.parquet"),
        dir.path().join("labels-t.parquet"),
    );
    run_duckdb("features.sql", &logs, as_of, HORIZON_US, &f_t);
    run_duckdb("labels.sql", &logs, as_of, HORIZON_US, &l_t);
    let out = stdout(&shadowcast_ok(&[
        "evaluate",
        "--features",
        &format!("{},{}", features[0], path_str(&f_t)),
        "--labels",
        &format!("{},{}", path_str(&l_t), labels[0]),
        "--model",
        path_str(&dir.path().join("models/from-tables")),
    ]));
    let from_logs = stdout(&shadowcast_ok(&[
        "evaluate",
        "--logs",
        path_str(&logs),
        "--as-of",
        TRAINING_AS_OF,
        "--horizon",
        "2h",
        "--model",
        path_str(&dir.path().join("models/from-tables")),
    ]));
    // The same keys judged, the same figures (to the printed digits).
    assert_eq!(out, from_logs);
    assert!(out.contains("oracle"), "{out}");
}

#[test]
fn tables_that_do_not_belong_together_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    generate_shop_logs(&logs, "11");
    let (features, labels) = duckdb_tables(&logs, dir.path());
    let out = path_str(&dir.path().join("models/m")).to_string();

    let error = shadowcast_err(&[
        "train",
        "--features",
        &features[0],
        "--labels",
        &labels[1],
        "--out",
        &out,
    ]);
    assert!(
        error.contains("no label table has the cut-off of") && error.contains(&features[0]),
        "{error}"
    );

    let error = shadowcast_err(&[
        "train",
        "--features",
        &format!("{},{}", features[0], features[1]),
        "--labels",
        &labels[0],
        "--out",
        &out,
    ]);
    assert!(
        error.contains("1 label tables for 2 feature tables"),
        "{error}"
    );

    // A feature table from before version 2: no features on the horizon's scale.
    let old = dir.path().join("v1.parquet");
    let script = format!(
        "import duckdb; duckdb.sql(\"COPY (SELECT * EXCLUDE (events_hdiv16, events_hdiv4, events_h, events_hx4, events_hx16, decay_hdiv4, decay_h, decay_hx4, gap1_h, gap2_h, gap3_h, gap4_h, age_h) FROM '{}') TO '{}' (FORMAT parquet)\")",
        features[0],
        path_str(&old)
    );
    let status = Command::new("python3")
        .args(["-c", &script])
        .status()
        .unwrap();
    assert!(status.success());
    let error = shadowcast_err(&[
        "train",
        "--features",
        path_str(&old),
        "--labels",
        &labels[0],
        "--out",
        &out,
    ]);
    assert!(
        error.contains("v1.parquet")
            && error.contains("missing column `events_hdiv16`")
            && error.contains("predates feature set version 2"),
        "{error}"
    );

    // Labels with the rows of another cut-off's keys.
    let error = shadowcast_err(&[
        "train",
        "--logs",
        path_str(&logs),
        "--features",
        &features[0],
        "--labels",
        &labels[0],
        "--out",
        &out,
    ]);
    assert!(
        error.contains("--logs") && error.contains("--features"),
        "{error}"
    );
}
