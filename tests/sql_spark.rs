//! `sql/features.sql` and `sql/labels.sql` run on Apache Spark (local mode,
//! through `sql/run_spark.py`) give the same feature and label tables as the
//! native engine, read back from the folders of part files Spark writes.
//! Needs a Java runtime and `pyspark` (installed by `scripts/test.sh`).

mod common;

use std::path::Path;

use common::*;
use shadowcast::features::FeatureTable;

fn run_spark(
    sql_file: &str,
    options: &[&str],
    logs: &Path,
    as_of_us: i64,
    horizon_us: i64,
    out: &Path,
) {
    let mut options = options.to_vec();
    options.extend(["--master", "local[2]"]);
    run_sql(
        "run_spark.py",
        sql_file,
        &options,
        logs,
        as_of_us,
        horizon_us,
        out,
    )
}

#[test]
fn spark_running_the_sql_files_equals_the_native_features_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    generate_shop_logs(&logs, "12");
    let as_of = "2026-11-20T21:30:00Z";
    let as_of_us = shadowcast::time::parse_instant(as_of).unwrap();
    let horizon_us = 3 * 3_600_000_000;
    let native_features = dir.path().join("features.parquet");
    shadowcast_ok(&[
        "features",
        "--logs",
        path_str(&logs),
        "--as-of",
        as_of,
        "--horizon",
        "3h",
        "--out",
        path_str(&native_features),
    ]);
    let rules = ["--hot-share", "0.1", "--churn-min-writes", "2"];
    let labels = dir.path().join("labels.parquet");
    native_labels(&logs, as_of, "3h", &rules, &labels);

    let spark_features = dir.path().join("spark-features");
    run_spark(
        "features.sql",
        &[],
        &logs,
        as_of_us,
        horizon_us,
        &spark_features,
    );
    let native = FeatureTable::read_parquet(&native_features).unwrap();
    let spark = FeatureTable::read_parquet(&spark_features).unwrap();
    assert!(
        native.len() > 5_000,
        "a real workload: {} keys",
        native.len()
    );
    assert_eq!(
        (spark.as_of, spark.horizon),
        (as_of_us, horizon_us),
        "the cut-off and horizon recorded in the rows"
    );
    assert_eq!(spark.len(), native.len(), "same number of keys");
    let mut deleted = 0;
    for (s, n) in spark.rows().zip(native.rows()) {
        assert_features_match(&s, &n, 1e-9);
        deleted += usize::from(n.is_deleted);
    }
    assert!(deleted > 0, "the generated logs delete keys");

    let spark_labels = dir.path().join("spark-labels");
    run_spark(
        "labels.sql",
        &rules,
        &logs,
        as_of_us,
        horizon_us,
        &spark_labels,
    );
    assert_label_tables_equal(&spark_labels, &labels);
}
