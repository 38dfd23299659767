//! Every kind of bad access-log input, through the real binary: the command
//! fails, and the message names the file and (where it applies) the column.

mod common;

use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use common::*;

const AS_OF: &str = "2026-11-21T00:00:00Z";

fn features_error(logs: &std::path::Path) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("features.parquet");
    let message = shadowcast_err(&[
        "features",
        "--logs",
        path_str(logs),
        "--as-of",
        AS_OF,
        "--out",
        path_str(&out),
    ]);
    assert!(!out.exists(), "no output may be written on error");
    message
}

fn valid_columns(rows: usize) -> Vec<(&'static str, ArrayRef)> {
    let start_us = DAY_2026_11_20_MS * 1000;
    vec![
        (
            "ts",
            Arc::new(
                TimestampMicrosecondArray::from_iter_values((0..rows as i64).map(|i| start_us + i))
                    .with_timezone("UTC"),
            ),
        ),
        (
            "key",
            Arc::new(StringArray::from_iter_values(
                (0..rows).map(|i| format!("k{i}")),
            )),
        ),
        (
            "table_name",
            Arc::new(StringArray::from_iter_values((0..rows).map(|_| "t"))),
        ),
        (
            "op",
            Arc::new(StringArray::from_iter_values((0..rows).map(|_| "read"))),
        ),
        (
            "size_bytes",
            Arc::new(Int64Array::from_iter_values(
                (0..rows as i64).map(|i| i * 10),
            )),
        ),
    ]
}

#[test]
fn wrong_type_names_file_column_and_expected_type() {
    let dir = tempfile::tempdir().unwrap();
    let mut columns = valid_columns(5);
    columns[4] = (
        "size_bytes",
        Arc::new(StringArray::from_iter_values(["1", "2", "3", "4", "5"])),
    );
    let file = write_columns(&dir.path().join("logs.parquet"), columns, 1024);
    let message = features_error(&file);
    assert!(message.contains("logs.parquet"), "{message}");
    assert!(
        message.contains("column `size_bytes` has type Utf8, expected an integer"),
        "{message}"
    );
}

#[test]
fn integer_time_column_is_refused_with_the_expected_type() {
    let dir = tempfile::tempdir().unwrap();
    let mut columns = valid_columns(5);
    columns[0] = ("ts", Arc::new(Int64Array::from_iter_values(0..5)));
    let file = write_columns(&dir.path().join("int-ts.parquet"), columns, 1024);
    let message = features_error(&file);
    assert!(
        message.contains("int-ts.parquet") && message.contains("column `ts` has type Int64"),
        "{message}"
    );
    assert!(message.contains("expected a timestamp"), "{message}");
}

#[test]
fn missing_required_column_is_named_with_what_the_file_has() {
    let dir = tempfile::tempdir().unwrap();
    let columns: Vec<_> = valid_columns(5)
        .into_iter()
        .filter(|(name, _)| *name != "op")
        .collect();
    let file = write_columns(&dir.path().join("no-op.parquet"), columns, 1024);
    let message = features_error(&file);
    assert!(
        message.contains("no-op.parquet: missing required column `op`"),
        "{message}"
    );
    assert!(
        message.contains("the file has: ts, key, table_name, size_bytes"),
        "{message}"
    );
}

#[test]
fn corrupt_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("garbage.parquet");
    std::fs::write(
        &file,
        b"this is not parquet at all, just some bytes that pretend",
    )
    .unwrap();
    let message = features_error(&file);
    assert!(
        message.contains("garbage.parquet: not a readable Parquet file"),
        "{message}"
    );
}

#[test]
fn truncated_file_is_named_even_inside_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_columns(&dir.path().join("a-good.parquet"), valid_columns(2000), 500);
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.path().join("b-truncated.parquet");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let message = features_error(dir.path());
    assert!(
        message.contains("b-truncated.parquet: not a readable Parquet file"),
        "{message}"
    );
}

#[test]
fn empty_directory_says_so() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("dt=2026-11-20")).unwrap();
    std::fs::write(dir.path().join("README.txt"), "not a log").unwrap();
    let message = features_error(dir.path());
    assert!(
        message.contains("empty directory: no .parquet access-log files"),
        "{message}"
    );
    assert!(message.contains(path_str(dir.path())), "{message}");
}

#[test]
fn missing_path_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let message = features_error(&dir.path().join("nope"));
    assert!(
        message.contains("nope: no such file or directory"),
        "{message}"
    );
}

#[test]
fn cut_off_before_all_events_reports_the_span_of_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_events(
        &dir.path().join("day.parquet"),
        &few_events(DAY_2026_11_20_MS),
        1024,
    );
    let out = dir.path().join("f.parquet");
    let message = shadowcast_err(&[
        "features",
        "--logs",
        path_str(&file),
        "--as-of",
        "2026-11-19T00:00:00Z",
        "--out",
        path_str(&out),
    ]);
    assert!(
        message.contains("no events in the requested range"),
        "{message}"
    );
    assert!(
        message.contains("the logs hold events from 2026-11-20T00:00:00Z to 2026-11-20T00:09:00Z"),
        "{message}"
    );
}

#[test]
fn events_outside_their_hive_partition_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Events of 2026-11-20 00:00 filed under hour 05.
    let misplaced = dir.path().join("dt=2026-11-20/hour=05/part-0.parquet");
    write_events(&misplaced, &few_events(DAY_2026_11_20_MS), 1024);
    let message = features_error(dir.path());
    assert!(message.contains("hour=05/part-0.parquet"), "{message}");
    assert!(message.contains("outside its partition"), "{message}");
}

#[test]
fn malformed_partition_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_events(
        &dir.path().join("dt=2026-13-45/part-0.parquet"),
        &few_events(DAY_2026_11_20_MS),
        1024,
    );
    let message = features_error(dir.path());
    assert!(
        message.contains("bad partition directory `dt=2026-13-45`"),
        "{message}"
    );
}

#[test]
fn unknown_operation_names_row_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let mut events = few_events(DAY_2026_11_20_MS);
    events[7].op = "upsert";
    let file = write_events(&dir.path().join("ops.parquet"), &events, 1024);
    let message = features_error(&file);
    assert!(
        message.contains("ops.parquet: row 7, column `op`: unknown operation `upsert`"),
        "{message}"
    );
}

#[test]
fn null_key_names_row_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let mut columns = valid_columns(5);
    columns[1] = (
        "key",
        Arc::new(StringArray::from(vec![
            Some("a"),
            Some("b"),
            None,
            Some("d"),
            Some("e"),
        ])),
    );
    let file = write_columns(&dir.path().join("nulls.parquet"), columns, 1024);
    let message = features_error(&file);
    assert!(
        message.contains("nulls.parquet: row 2, column `key`: is null"),
        "{message}"
    );
}

#[test]
fn a_time_outside_the_calendar_names_row_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let mut columns = valid_columns(6);
    let start_us = DAY_2026_11_20_MS * 1000;
    columns[0].1 = Arc::new(
        TimestampMicrosecondArray::from_iter_values(
            (0..6i64).map(|i| if i == 4 { i64::MIN / 2 } else { start_us + i }),
        )
        .with_timezone("UTC"),
    );
    let file = write_columns(&dir.path().join("times.parquet"), columns, 3);
    let message = features_error(&file);
    assert!(
        message.contains("times.parquet: row 4, column `ts`:")
            && message.contains("outside the years 1 to 9999"),
        "{message}"
    );
}

#[test]
fn negative_size_names_row_in_a_later_row_group() {
    let dir = tempfile::tempdir().unwrap();
    let mut events = few_events(DAY_2026_11_20_MS);
    events[8].size = -5;
    let file = write_events(&dir.path().join("sizes.parquet"), &events, 3);
    let message = features_error(&file);
    assert!(
        message.contains("sizes.parquet: row 8, column `size_bytes`: is negative (-5)"),
        "{message}"
    );
}

#[test]
fn bad_time_arguments_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_events(
        &dir.path().join("day.parquet"),
        &few_events(DAY_2026_11_20_MS),
        1024,
    );
    let message = shadowcast_err(&[
        "features",
        "--logs",
        path_str(&file),
        "--as-of",
        "noon",
        "--out",
        "x.parquet",
    ]);
    assert!(
        message.contains("--as-of") && message.contains("`noon` is not a time"),
        "{message}"
    );
}
