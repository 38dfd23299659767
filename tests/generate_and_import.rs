//! The workload generator and the importer through the real binary, and the
//! reader's pruning on what they write.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;

use common::*;
use shadowcast::logs::{LogSource, Op, TimeRange};
use shadowcast::time::parse_instant;

fn files_under(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let relative = path.strip_prefix(root).unwrap().display().to_string();
                files.push((relative, std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

#[derive(Default)]
struct Tally {
    ops: HashMap<(String, Op), u64>,
    reads_per_key: HashMap<(String, Vec<u8>), u64>,
    keys: HashSet<(String, Vec<u8>)>,
    events: u64,
}

fn tally(logs: &Path, range: TimeRange) -> Tally {
    let plan = LogSource::open(logs).unwrap().plan(range).unwrap();
    let parts = plan
        .fold(
            Tally::default,
            |tally, batch| {
                for row in 0..batch.len() {
                    let table = batch.table_names()[batch.table_index()[row] as usize].clone();
                    let op = batch.ops()[row];
                    *tally.ops.entry((table.clone(), op)).or_default() += 1;
                    let key = (table, batch.key(row).to_vec());
                    if op == Op::Read {
                        *tally.reads_per_key.entry(key.clone()).or_default() += 1;
                    }
                    tally.keys.insert(key);
                    tally.events += 1;
                }
            },
            &|_| {},
        )
        .unwrap();
    let mut total = Tally::default();
    for part in parts {
        for (k, v) in part.ops {
            *total.ops.entry(k).or_default() += v;
        }
        for (k, v) in part.reads_per_key {
            *total.reads_per_key.entry(k).or_default() += v;
        }
        total.keys.extend(part.keys);
        total.events += part.events;
    }
    total
}

#[test]
fn generation_is_deterministic_by_seed() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, seed: &str| {
        let out = dir.path().join(name);
        shadowcast_ok(&[
            "generate",
            "--out",
            path_str(&out),
            "--events",
            "20000",
            "--hours",
            "5",
            "--seed",
            seed,
        ]);
        files_under(&out)
    };
    let first = run("a", "5");
    assert_eq!(first.len(), 5, "one file per hour partition");
    assert!(
        first[0].0.starts_with("dt=2026-11-01/hour=00/"),
        "{}",
        first[0].0
    );
    assert_eq!(first, run("b", "5"), "same seed, same bytes");
    assert_ne!(first, run("c", "6"), "another seed, other logs");
}

#[test]
fn generated_oltp_workload_has_the_calibrated_shape() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    shadowcast_ok(&[
        "generate",
        "--out",
        path_str(&logs),
        "--events",
        "200000",
        "--hours",
        "24",
        "--seed",
        "3",
    ]);
    let tally = tally(&logs, TimeRange::ALL);
    assert_eq!(tally.events, 200_000);

    let share = |table: &str, op: Op| {
        let table_total: u64 = tally
            .ops
            .iter()
            .filter(|((t, _), _)| t == table)
            .map(|(_, n)| n)
            .sum();
        tally
            .ops
            .get(&(table.to_string(), op))
            .copied()
            .unwrap_or(0) as f64
            / table_total as f64
    };
    // op mixes follow the Twitter clusters the tables are calibrated on
    assert!(
        (share("users", Op::Read) - 0.93).abs() < 0.03,
        "users reads {}",
        share("users", Op::Read)
    );
    assert!(
        (share("sessions", Op::Update) - 0.50).abs() < 0.03,
        "sessions updates"
    );
    assert!(
        (share("carts", Op::Delete) - 0.22).abs() < 0.03,
        "carts deletes {}",
        share("carts", Op::Delete)
    );
    assert!(
        share("products", Op::Insert) == 0.0,
        "the catalogue gets no inserts"
    );

    // Zipf-like skew: the top 1% of read keys take a large share of reads
    let mut reads: Vec<u64> = tally
        .reads_per_key
        .iter()
        .filter(|((table, _), _)| table == "products")
        .map(|(_, n)| *n)
        .collect();
    reads.sort_unstable_by(|a, b| b.cmp(a));
    let top = reads.len().div_ceil(100);
    let top_share = reads[..top].iter().sum::<u64>() as f64 / reads.iter().sum::<u64>() as f64;
    assert!(
        top_share > 0.3,
        "top 1% of product keys take {top_share:.2} of reads"
    );

    // new keys appear: ids beyond the initial key space are inserted
    let sessions = tally.keys.iter().filter(|(t, _)| t == "sessions").count();
    assert!(sessions > 10_000, "session keys keep appearing: {sessions}");
}

#[test]
fn the_reader_prunes_partitions_and_row_groups_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    shadowcast_ok(&[
        "generate",
        "--out",
        path_str(&logs),
        "--events",
        "400000",
        "--hours",
        "12",
        "--seed",
        "2",
    ]);
    let start = parse_instant("2026-11-01T05:00:00Z").unwrap();
    let source = LogSource::open(&logs).unwrap();
    let range = TimeRange {
        start: Some(start + 10 * 60_000_000),
        end: Some(start + 20 * 60_000_000),
    };
    let plan = source.plan(range).unwrap();
    let stats = plan.stats();
    assert_eq!(stats.files_total, 12);
    assert_eq!(stats.files_pruned, 11, "only hour 05 is read");
    let handed_out = tally(&logs, range).events;
    assert_eq!(
        handed_out,
        tally_count_in(&logs, range),
        "exactly the events in the range are handed out"
    );
    assert!(handed_out > 0 && handed_out < 400_000 / 12);

    // Row groups: a time-sorted file with small row groups is read only where the range falls.
    let mut events = few_events(DAY_2026_11_20_MS);
    events.extend(few_events(DAY_2026_11_20_MS + 3_600_000));
    let file = write_events(&dir.path().join("small-groups.parquet"), &events, 4);
    let from = DAY_2026_11_20_MS * 1000 + 3_600_000_000;
    let range = TimeRange {
        start: Some(from),
        end: Some(from + 2 * 60_000_000),
    };
    let stats = LogSource::open(&file).unwrap().plan(range).unwrap().stats();
    assert_eq!(
        (stats.row_groups_total, stats.row_groups_pruned),
        (5, 3),
        "groups 2 and 3 hold the range: {stats:?}"
    );
    assert_eq!(
        tally(&file, range).events,
        3,
        "minutes 0, 1 and 2 of the second hour"
    );
}

/// Counts in-range events by reading every row without pruning.
fn tally_count_in(logs: &Path, range: TimeRange) -> u64 {
    let plan = LogSource::open(logs).unwrap().plan(TimeRange::ALL).unwrap();
    plan.fold(
        || 0u64,
        |count, batch| *count += batch.ts().iter().filter(|ts| range.contains(**ts)).count() as u64,
        &|_| {},
    )
    .unwrap()
    .into_iter()
    .sum()
}

fn write_gz(path: &Path, text: &str) {
    let mut encoder = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::fast(),
    );
    encoder.write_all(text.as_bytes()).unwrap();
    encoder.finish().unwrap();
}

#[test]
fn importing_a_trace_csv_gz_with_a_mapping_gives_readable_logs() {
    let dir = tempfile::tempdir().unwrap();
    // the layout of ../shared/data/traces: ts_ms,key,op,size_bytes,table
    let mut csv = String::from("ts_ms,key,op,size_bytes,table\n");
    for i in 0..5000u64 {
        let op = ["read", "write", "delete"][(i % 7 % 3) as usize];
        csv.push_str(&format!(
            "{},{},{op},{},vol{}\n",
            i * 1000,
            i % 97,
            512 + i % 5,
            i % 2
        ));
    }
    let input = dir.path().join("trace.csv.gz");
    write_gz(&input, &csv);
    let out = dir.path().join("logs");
    import_trace(&input, &out, "2026-11-20T10:30:00Z", &[]);
    let files = files_under(&out);
    assert_eq!(
        files.len(),
        2,
        "5000 s of events span two hour partitions: {:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    assert!(
        files[0]
            .0
            .starts_with("dt=2026-11-20/hour=10/part-trace.parquet")
    );

    let tally = tally(&out, TimeRange::ALL);
    assert_eq!(tally.events, 5000);
    assert_eq!(tally.keys.len(), 2 * 97, "keys are per table");
    let writes: u64 = tally
        .ops
        .iter()
        .filter(|((_, op), _)| *op == Op::Update)
        .map(|(_, n)| n)
        .sum();
    assert!(writes > 0, "`write` maps to update");

    // the imported tree feeds features directly
    let features = dir.path().join("f.parquet");
    shadowcast_ok(&[
        "features",
        "--logs",
        path_str(&out),
        "--as-of",
        "latest",
        "--out",
        path_str(&features),
    ]);
    assert!(features.exists());
}

/// Three rows 1 s apart stretched by 3600 land an hour apart from the
/// rebased start; a size of -1 (unknown, in published traces) reads as 0.
#[test]
fn importing_with_a_time_scale_stretches_times_from_the_first_row() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("trace.csv");
    std::fs::write(
        &input,
        "ts_ms,key,op,size_bytes,table\n5000,a,read,-1,t\n6000,b,read,10,t\n7000,a,write,20,t\n",
    )
    .unwrap();
    let out = dir.path().join("logs");
    import_trace(
        &input,
        &out,
        "2026-11-20T10:00:00Z",
        &["--time-scale", "3600"],
    );
    let start = shadowcast::time::parse_instant("2026-11-20T10:00:00Z").unwrap();
    let plan = LogSource::open(&out).unwrap().plan(TimeRange::ALL).unwrap();
    let parts = plan
        .fold(
            Vec::new,
            |rows, batch| {
                for row in 0..batch.len() {
                    rows.push((batch.ts()[row], batch.sizes()[row]));
                }
            },
            &|_| {},
        )
        .unwrap();
    let mut rows: Vec<(i64, i64)> = parts.into_iter().flatten().collect();
    rows.sort();
    let hour = 3_600_000_000;
    assert_eq!(
        rows,
        vec![(start, 0), (start + hour, 10), (start + 2 * hour, 20)]
    );
    let refused = shadowcast_err(&[
        "import",
        path_str(&input),
        "--out",
        path_str(&dir.path().join("refused")),
        "--time-scale",
        "0",
    ]);
    assert!(refused.contains("--time-scale"), "{refused}");
}

#[test]
fn importing_json_lines_with_renamed_fields_and_custom_ops() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("audit.jsonl");
    std::fs::write(
        &input,
        "{\"when\":\"2026-11-20T10:00:00Z\",\"pk\":\"a\",\"verb\":\"SEL\",\"bytes\":10,\"tenant\":\"t1\"}\n\
         \n\
         {\"when\":\"2026-11-20T11:00:00.5Z\",\"pk\":42,\"verb\":\"upd\",\"bytes\":20,\"tenant\":null}\n",
    )
    .unwrap();
    let out = dir.path().join("logs");
    shadowcast_ok(&[
        "import",
        path_str(&input),
        "--out",
        path_str(&out),
        "--map",
        "ts=when",
        "--map",
        "key=pk",
        "--map",
        "op=verb",
        "--map",
        "size=bytes",
        "--map",
        "table=",
        "--map",
        "tenant=tenant",
        "--table",
        "audit",
        "--op-map",
        "sel=read",
        "--op-map",
        "upd=update",
    ]);
    let tally = tally(&out, TimeRange::ALL);
    assert_eq!(tally.events, 2);
    assert!(
        tally.keys.contains(&("audit".to_string(), b"42".to_vec())),
        "numbers become key text"
    );
    assert_eq!(tally.ops.get(&("audit".to_string(), Op::Update)), Some(&1));
}

#[test]
fn import_errors_name_the_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.csv");
    std::fs::write(&input, "ts,key,op,size_bytes,table_name\n2026-11-20T10:00:00Z,a,read,1,t\n2026-11-20T10:00:01Z,b,read,lots,t\n").unwrap();
    let message = shadowcast_err(&[
        "import",
        path_str(&input),
        "--out",
        path_str(&dir.path().join("o1")),
    ]);
    assert!(
        message.contains("bad.csv: line 3, column `size_bytes`: `lots` is not a whole number"),
        "{message}"
    );

    // A time past chrono's calendar: refused, not a panic while partitioning.
    let far = dir.path().join("far.csv");
    std::fs::write(
        &far,
        "ts_ms,key,op,size_bytes,table\n9000000000000000,a,read,1,t\n",
    )
    .unwrap();
    let message = shadowcast_err(&[
        "import",
        path_str(&far),
        "--out",
        path_str(&dir.path().join("o0")),
        "--map",
        "ts=ts_ms",
        "--map",
        "table=table",
        "--ts-format",
        "ms",
    ]);
    assert!(
        message.contains(
            "far.csv: line 2, column `ts_ms`: `9000000000000000` is outside the calendar"
        ),
        "{message}"
    );

    std::fs::write(
        &input,
        "ts,key,op,size_bytes,table_name\n2026-11-20T10:00:00Z,a,merge,1,t\n",
    )
    .unwrap();
    let message = shadowcast_err(&[
        "import",
        path_str(&input),
        "--out",
        path_str(&dir.path().join("o2")),
    ]);
    assert!(
        message.contains(
            "line 2, column `op`: unknown operation `merge`; map it with --op-map merge="
        ),
        "{message}"
    );

    std::fs::write(&input, "time,key,op\n1,a,read\n").unwrap();
    let message = shadowcast_err(&[
        "import",
        path_str(&input),
        "--out",
        path_str(&dir.path().join("o3")),
    ]);
    assert!(
        message.contains("the input has no column `ts` (mapped to `ts`); it has: time, key, op"),
        "{message}"
    );
}

#[test]
fn help_explains_every_command_and_piped_runs_draw_no_progress_bar() {
    let commands = [
        "demo", "generate", "import", "features", "labels", "train", "evaluate", "simulate",
        "models", "policy", "serve", "executor", "status", "capture", "verify", "seed",
    ];
    let top = stdout(&shadowcast_ok(&["--help"]));
    let listed: Vec<&str> = top
        .lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .collect();
    assert_eq!(listed, commands, "{top}");
    for command in commands {
        let help = stdout(&shadowcast_ok(&[command, "--help"]));
        assert!(
            help.contains(&format!("Usage: shadowcast {command}")),
            "{help}"
        );
        let described = top
            .lines()
            .find(|line| line.split_whitespace().next() == Some(command))
            .unwrap();
        assert!(
            described.split_whitespace().count() > 2,
            "`{command}` has no description in --help: {described:?}"
        );
    }
    let features_help = stdout(&shadowcast_ok(&["features", "--help"]));
    assert!(
        features_help.contains("--as-of") && features_help.contains("latest"),
        "{features_help}"
    );

    // Run from a folder with no model registry: the demo plans with the
    // default model built into the binary.
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_shadowcast"))
        .current_dir(dir.path())
        .args(["demo", "--dir", "demo", "--events", "30000", "--top", "3"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let err = stderr(&output);
    assert!(output.status.success(), "demo failed:\n{err}");
    assert!(
        dir.path()
            .join("demo/models/default/v1/model.json")
            .exists(),
        "the shipped model is written beside the demo's data: {err}"
    );
    assert!(
        !err.contains('\r') && !err.contains("=>"),
        "no progress bar when piped: {err:?}"
    );
    let out = stdout(&output);
    assert!(
        out.contains("hottest keys") && out.contains("highest-churn keys"),
        "{out}"
    );
    assert!(dir.path().join("demo/features.parquet").exists());
}
