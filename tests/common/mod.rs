//! Fixtures shared by the integration tests: running the real binary and
//! writing small Parquet logs with any schema (including wrong ones).
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use shadowcast::features::KeyFeatures;

/// Runs the `shadowcast` binary with `args`, output captured (so stderr is not a terminal).
pub fn shadowcast(args: &[&str]) -> Output {
    shadowcast_with_env(args, &[])
}

/// [`shadowcast`] with these environment variables set too.
pub fn shadowcast_with_env(args: &[&str], variables: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shadowcast"))
        .args(args)
        .env("RUST_LOG", "warn")
        .envs(variables.iter().copied())
        .output()
        .expect("the shadowcast binary runs")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs the binary and panics with its stderr unless it succeeds.
pub fn shadowcast_ok(args: &[&str]) -> Output {
    shadowcast_ok_with_env(args, &[])
}

/// [`shadowcast_ok`] with these environment variables set too.
pub fn shadowcast_ok_with_env(args: &[&str], variables: &[(&str, &str)]) -> Output {
    let output = shadowcast_with_env(args, variables);
    assert!(
        output.status.success(),
        "shadowcast {args:?} with {variables:?} failed:\n{}",
        stderr(&output)
    );
    output
}

/// Runs the binary, expects failure, and returns stderr.
pub fn shadowcast_err(args: &[&str]) -> String {
    let output = shadowcast(args);
    assert!(
        !output.status.success(),
        "shadowcast {args:?} should have failed"
    );
    stderr(&output)
}

/// Imports a CSV trace in the layout of ../shared/data/traces
/// (`ts_ms,key,op,size_bytes,table`) with its first row at `start`, plus
/// `extra` flags.
pub fn import_trace(input: &Path, out: &Path, start: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "import",
        path_str(input),
        "--out",
        path_str(out),
        "--map",
        "ts=ts_ms",
        "--map",
        "table=table",
        "--ts-format",
        "ms",
        "--rebase-to",
        start,
    ];
    args.extend_from_slice(extra);
    shadowcast_ok(&args)
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp paths")
}

/// One access for hand-built logs.
#[derive(Clone, Debug)]
pub struct Event {
    pub ts_ms: i64,
    pub table: &'static str,
    pub key: String,
    pub op: &'static str,
    pub size: i64,
    /// Written as a `tenant` column when any event of a file names one.
    pub tenant: Option<&'static str>,
}

/// Writes events as a Parquet file with plain (non-dictionary) string
/// columns and millisecond timestamps: a layout shadowcast's own writer does
/// not produce, as a team's log shipper might.
pub fn write_events(path: &Path, events: &[Event], row_group_rows: usize) -> PathBuf {
    let mut columns: Vec<(&str, ArrayRef)> = vec![
        (
            "ts",
            Arc::new(
                TimestampMillisecondArray::from_iter_values(events.iter().map(|e| e.ts_ms))
                    .with_timezone("UTC"),
            ),
        ),
        (
            "key",
            Arc::new(StringArray::from_iter_values(
                events.iter().map(|e| e.key.as_str()),
            )),
        ),
        (
            "table_name",
            Arc::new(StringArray::from_iter_values(
                events.iter().map(|e| e.table),
            )),
        ),
        (
            "op",
            Arc::new(StringArray::from_iter_values(events.iter().map(|e| e.op))),
        ),
        (
            "size_bytes",
            Arc::new(Int64Array::from_iter_values(events.iter().map(|e| e.size))),
        ),
    ];
    if events.iter().any(|e| e.tenant.is_some()) {
        columns.push((
            "tenant",
            Arc::new(StringArray::from_iter(events.iter().map(|e| e.tenant))),
        ));
    }
    write_columns(path, columns, row_group_rows)
}

/// Writes arbitrary columns to a Parquet file.
pub fn write_columns(
    path: &Path,
    columns: Vec<(&str, ArrayRef)>,
    row_group_rows: usize,
) -> PathBuf {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create fixture dir");
    }
    let batch = RecordBatch::try_from_iter(columns).expect("fixture columns line up");
    let properties = WriterProperties::builder()
        .set_max_row_group_row_count(Some(row_group_rows))
        .build();
    let mut writer = ArrowWriter::try_new(
        File::create(path).expect("create fixture"),
        batch.schema(),
        Some(properties),
    )
    .expect("parquet writer");
    writer.write(&batch).expect("write fixture");
    writer.close().expect("close fixture");
    path.to_path_buf()
}

/// A few valid events in one table.
pub fn few_events(start_ms: i64) -> Vec<Event> {
    (0..10)
        .map(|i| Event {
            ts_ms: start_ms + i * 60_000,
            table: "users",
            key: format!("user:{}", i % 3),
            op: if i % 4 == 0 { "update" } else { "read" },
            size: 100 + i,
            tenant: None,
        })
        .collect()
}

/// Milliseconds of 2026-11-20T00:00:00Z.
pub const DAY_2026_11_20_MS: i64 = 1_795_132_800_000;

/// Asserts two feature rows agree: exactly on keys, counts, sizes and
/// neighbourhoods; within `relative` on floating-point values (sums of
/// exponentials differ in the last bits when added in another order).
pub fn assert_features_match(actual: &KeyFeatures, wanted: &KeyFeatures, relative: f64) {
    let what = format!("{} {}", wanted.table, wanted.key_display());
    assert_eq!(
        (&actual.table, &actual.key),
        (&wanted.table, &wanted.key),
        "same key"
    );
    assert_eq!(actual.tenant, wanted.tenant, "tenant of {what}");
    assert_eq!(actual.events, wanted.events, "events of {what}");
    assert_eq!(
        (actual.reads_total, actual.writes_total),
        (wanted.reads_total, wanted.writes_total),
        "totals of {what}"
    );
    assert_eq!(
        (actual.size_last, actual.size_max, actual.is_deleted),
        (wanted.size_last, wanted.size_max, wanted.is_deleted),
        "last event of {what}"
    );
    assert_eq!(
        (actual.prefix_events_24h, actual.range_events_24h),
        (wanted.prefix_events_24h, wanted.range_events_24h),
        "neighbourhood of {what}"
    );
    assert_eq!(
        actual.horizon_events, wanted.horizon_events,
        "events on the horizon's scale of {what}"
    );
    let close = |a: f64, b: f64| (a - b).abs() <= relative * a.abs().max(b.abs()).max(1.0);
    let floats = |f: &KeyFeatures| {
        let mut values = vec![
            f.first_seen_age_s,
            f.read_share,
            f.change_rate_per_h,
            f.tod_share_next_6h,
        ];
        values.extend(f.reads_decay);
        values.extend(f.writes_decay);
        values.extend(f.tod_share);
        values.extend(f.horizon_decay);
        values.push(f.age_h);
        values
    };
    for (index, (a, b)) in floats(actual).into_iter().zip(floats(wanted)).enumerate() {
        assert!(close(a, b), "float #{index} of {what}: {a} vs {b}");
    }
    let optional = [
        (actual.secs_since_last_read, wanted.secs_since_last_read),
        (actual.secs_since_last_write, wanted.secs_since_last_write),
    ]
    .into_iter()
    .chain(actual.gaps_h.into_iter().zip(wanted.gaps_h));
    for (index, (a, b)) in optional.enumerate() {
        assert!(
            a.is_some() == b.is_some() && close(a.unwrap_or(0.0), b.unwrap_or(0.0)),
            "recency or gap #{index} of {what}: {a:?} vs {b:?}"
        );
    }
}

/// A policy module in WAT that speaks ABI v1, asks for `columns` (a bit
/// mask) and runs `decide_body` as `shadowcast_decide` (locals `$count`,
/// `$i`, `$weights`, `$sizes` are set before it; it must leave an i32).
/// `extra` adds or overrides exports (with `abi_version` standing for the
/// version export's body). Hostile variants are built from it.
pub fn policy_wat(columns: u64, decide_body: &str, extra: &str, abi_version: i32) -> String {
    format!(
        r#"(module
  (memory (export "memory") 1)
  (func (export "shadowcast_abi_version") (result i32) i32.const {abi_version})
  (func (export "shadowcast_columns") (result i64) i64.const {columns})
  (func (export "shadowcast_alloc") (param $size i32) (result i32)
    (local $missing i32)
    (local.set $missing
      (i32.sub
        (i32.shr_u (i32.add (local.get $size) (i32.const 131071)) (i32.const 16))
        (memory.size)))
    (if (i32.gt_s (local.get $missing) (i32.const 0))
      (then (if (i32.eq (memory.grow (local.get $missing)) (i32.const -1)) (then unreachable))))
    i32.const 65536)
  (func (export "shadowcast_decide") (param $batch i32) (result i32)
    (local $count i32) (local $i i32) (local $weights i32) (local $sizes i32)
    (local.set $count (i32.load offset=4 (local.get $batch)))
    (local.set $weights (i32.load offset=24 (local.get $batch)))
    (local.set $sizes (i32.load offset=40 (local.get $batch)))
    {decide_body})
  {extra}
)"#
    )
}

/// A `decide_body` writing `weight_expr` (an f64 expression that may use
/// `$i`) as every key's weight and returning the count.
pub fn weights_body(weight_expr: &str) -> String {
    format!(
        r#"(block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
        (f64.store (i32.add (local.get $weights) (i32.shl (local.get $i) (i32.const 3))) {weight_expr})
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    local.get $count"#
    )
}

/// The repository's hand-written WAT example.
pub fn example_wat() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/examples/wat/favour-small-rows.wat")
}

/// Builds the SDK example policies (policies/examples) to
/// wasm32-unknown-unknown once per test binary and returns the folder
/// holding the `.wasm` files.
pub fn example_policies() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target"))
                .join("policy-examples");
            let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(["build", "--release", "--offline", "--target", "wasm32-unknown-unknown"])
                .arg("--manifest-path")
                .arg(root.join("policies/examples/Cargo.toml"))
                .env("CARGO_TARGET_DIR", &target)
                .status()
                .expect("cargo runs");
            assert!(
                status.success(),
                "building the example policies failed (is the target installed? `rustup target add wasm32-unknown-unknown`)"
            );
            target.join("wasm32-unknown-unknown/release")
        })
        .clone()
}

/// The chart is a PNG of the documented size in which every series' curve
/// colour covers a line's worth of pixels.
pub fn assert_chart_draws(path: &Path, methods: &[&str]) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!(
        (info.width, info.height),
        (shadowcast::chart::WIDTH, shadowcast::chart::HEIGHT)
    );
    let channels = info.color_type.samples();
    let colours = shadowcast::chart::series_colours(methods);
    for (method, (red, green, blue)) in methods.iter().zip(colours) {
        let count = pixels[..info.buffer_size()]
            .chunks(channels)
            .filter(|p| (p[0], p[1], p[2]) == (red, green, blue))
            .count();
        assert!(
            count > 500,
            "{method}'s curve colour covers only {count} pixels"
        );
    }
}

/// Acknowledgements of every key of `lease` as copied at the version it
/// was leased with.
pub fn copied_as_leased(lease: &shadowcast::scheduler::Lease) -> Vec<shadowcast::scheduler::Ack> {
    lease
        .keys
        .iter()
        .map(|k| shadowcast::scheduler::Ack {
            table: k.table.as_str().into(),
            key: k.key.clone().into(),
            result: shadowcast::scheduler::AckResult::Copied {
                version: k.min_version,
            },
        })
        .collect()
}

/// One row of a label table, every column as read.
pub type LabelRow = (
    String,
    Vec<u8>,
    bool,
    [i64; 4],
    Option<bool>,
    Option<bool>,
    [i64; 2],
);

/// Every row of the label table at `path` (a file, or a folder of part
/// files as Spark writes them), in file order, read with plain Arrow
/// rather than shadowcast's own reader.
pub fn label_rows(path: &Path) -> Vec<LabelRow> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_schema::DataType;

    let files: Vec<PathBuf> = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|file| file.extension().is_some_and(|ext| ext == "parquet"))
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut rows = Vec::new();
    for file in files {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            File::open(&file).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let column = |name: &str, data_type: &DataType| {
                arrow_cast::cast(batch.column_by_name(name).unwrap(), data_type).unwrap()
            };
            let tables = column("table_name", &DataType::Utf8);
            let keys = column("key", &DataType::Binary);
            let seen = column("seen_before", &DataType::Boolean);
            let counts: Vec<_> = [
                "accesses",
                "bytes_read",
                "writes",
                "reads_before_write",
                "as_of_us",
                "horizon_us",
            ]
            .map(|name| column(name, &DataType::Int64))
            .into_iter()
            .collect();
            let hot = column("hot", &DataType::Boolean);
            let churn = column("churn", &DataType::Boolean);
            let int = |c: usize, row: usize| {
                counts[c]
                    .as_primitive::<arrow_array::types::Int64Type>()
                    .value(row)
            };
            let flag = |array: &ArrayRef, row: usize| {
                array.is_valid(row).then(|| array.as_boolean().value(row))
            };
            for row in 0..batch.num_rows() {
                rows.push((
                    tables.as_string::<i32>().value(row).to_string(),
                    keys.as_binary::<i32>().value(row).to_vec(),
                    seen.as_boolean().value(row),
                    [int(0, row), int(1, row), int(2, row), int(3, row)],
                    flag(&hot, row),
                    flag(&churn, row),
                    [int(4, row), int(5, row)],
                ));
            }
        }
    }
    rows
}

/// The label table at `actual` (from SQL) holds exactly the rows of the
/// one at `native`, which has what makes that mean something
/// ([`assert_labels_are_rich`]).
pub fn assert_label_tables_equal(actual: &Path, native: &Path) {
    let native = label_rows(native);
    assert_labels_are_rich(&native);
    let actual = label_rows(actual);
    assert_eq!(actual.len(), native.len(), "same keys");
    for (a, n) in actual.iter().zip(&native) {
        assert_eq!(a, n);
    }
}

/// Checks that a label table has what makes an equality test mean
/// something: hot and high-churn keys, keys first seen in the horizon, and
/// keys read after a write in it.
pub fn assert_labels_are_rich(rows: &[LabelRow]) {
    let hot = rows.iter().filter(|row| row.4 == Some(true)).count();
    let churn = rows.iter().filter(|row| row.5 == Some(true)).count();
    let unseen = rows.iter().filter(|row| !row.2).count();
    let read_after_write = rows
        .iter()
        .filter(|row| row.3[3] < row.3[0] - row.3[2])
        .count();
    assert!(
        hot > 10 && churn > 10 && unseen > 10 && read_after_write > 10,
        "hot {hot}, churn {churn}, first seen in the horizon {unseen}, read after a write {read_after_write}"
    );
}

/// Runs `sql/RUNNER` (run_duckdb.py or run_spark.py) on `sql_file` over
/// `logs` for the cut-off and horizon given in µs, writing `out`.
pub fn run_sql(
    runner: &str,
    sql_file: &str,
    options: &[&str],
    logs: &Path,
    as_of_us: i64,
    horizon_us: i64,
    out: &Path,
) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sql")
        .join(runner);
    let output = Command::new("python3")
        .arg(script)
        .args(["--sql", sql_file])
        .args(options)
        .arg(logs)
        .arg(as_of_us.to_string())
        .arg(horizon_us.to_string())
        .arg(out)
        .output()
        .expect("python3 runs (scripts/test.sh installs what this test needs)");
    assert!(
        output.status.success(),
        "{runner} on {sql_file} failed (scripts/test.sh installs DuckDB, pyspark and Java):\n{}",
        stderr(&output)
    );
}

/// Generated logs of an online shop over 30 hours from
/// 2026-11-19T20:00Z (reads, inserts, updates, deletes, tenants).
pub fn generate_shop_logs(logs: &Path, seed: &str) {
    shadowcast_ok(&[
        "generate",
        "--out",
        path_str(logs),
        "--profile",
        "oltp",
        "--events",
        "60000",
        "--hours",
        "30",
        "--seed",
        seed,
        "--start",
        "2026-11-19T20:00:00Z",
    ]);
}

/// `shadowcast labels` over `logs` at `as_of` for `horizon`, with the
/// label rules in `rules`, into `out`.
pub fn native_labels(logs: &Path, as_of: &str, horizon: &str, rules: &[&str], out: &Path) {
    let mut args = vec![
        "labels",
        "--logs",
        path_str(logs),
        "--as-of",
        as_of,
        "--horizon",
        horizon,
        "--out",
        path_str(out),
    ];
    args.extend(rules);
    shadowcast_ok(&args);
}
pub mod service;
