//! `sql/features.sql` (portable) and `sql/features_duckdb.sql` (written for
//! DuckDB), each run by DuckDB over the same Parquet logs, give the same
//! feature table as the native engine. Needs Python with `duckdb`
//! (installed by `scripts/test.sh`).

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use shadowcast::features::FeatureTable;

fn run_duckdb(sql_file: &str, logs: &Path, as_of_us: i64, horizon_us: i64, out: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/run_duckdb.py");
    let output = Command::new("python3")
        .arg(script)
        .args(["--sql", sql_file])
        .arg(logs)
        .arg(as_of_us.to_string())
        .arg(horizon_us.to_string())
        .arg(out)
        .output()
        .expect("python3 runs (scripts/test.sh installs what this test needs)");
    assert!(
        output.status.success(),
        "DuckDB run of {sql_file} failed (is the duckdb Python package installed? scripts/test.sh installs it):\n{}",
        stderr(&output)
    );
}

#[test]
fn duckdb_running_the_sql_file_equals_the_native_features() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    shadowcast_ok(&[
        "generate",
        "--out",
        path_str(&logs),
        "--profile",
        "oltp",
        "--events",
        "60000",
        "--hours",
        "30",
        "--seed",
        "11",
        "--start",
        "2026-11-19T20:00:00Z",
    ]);
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
    let native = FeatureTable::read_parquet(&native, None, None).unwrap();

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
        let sql = FeatureTable::read_parquet(&out, Some(native.as_of), Some(native.horizon))
            .unwrap_or_else(|e| panic!("{sql_file}: {e}"));
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
