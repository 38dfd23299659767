//! `sql/features.sql` run by DuckDB over the same Parquet logs gives the
//! same feature table as the native engine. Needs Python with `duckdb`
//! (installed by `scripts/test.sh`).

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use shadowcast::features::FeatureTable;

fn run_duckdb(logs: &Path, as_of_us: i64, horizon_us: i64, out: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/run_duckdb.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(logs)
        .arg(as_of_us.to_string())
        .arg(horizon_us.to_string())
        .arg(out)
        .output()
        .expect("python3 runs (scripts/test.sh installs what this test needs)");
    assert!(
        output.status.success(),
        "DuckDB run failed (is the duckdb Python package installed? scripts/test.sh installs it):\n{}",
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

    let sql = dir.path().join("sql.parquet");
    run_duckdb(&logs, native.as_of, native.horizon, &sql);
    let sql = FeatureTable::read_parquet(&sql, Some(native.as_of), Some(native.horizon)).unwrap();

    assert!(
        native.len() > 5_000,
        "a real workload: {} keys",
        native.len()
    );
    assert_eq!(sql.len(), native.len(), "same number of keys");
    let with_tenant = native.rows().filter(|row| row.tenant.is_some()).count();
    assert!(
        with_tenant > native.len() / 2,
        "the generated logs name tenants: {with_tenant} of {} keys have one",
        native.len()
    );
    let mut neighbourhoods_seen = 0;
    let (sql_rows, native_rows): (Vec<_>, Vec<_>) = (sql.rows().collect(), native.rows().collect());
    for (s, n) in sql_rows.iter().zip(&native_rows) {
        assert_features_match(s, n, 1e-9);
        neighbourhoods_seen += usize::from(n.range_events_24h > 0);
    }
    assert!(
        neighbourhoods_seen > 100,
        "neighbourhood features are exercised"
    );
}
