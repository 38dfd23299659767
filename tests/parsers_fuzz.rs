//! Every input parser on mangled input (proptest, so it runs on stable
//! under `cargo test`): Parquet access logs with bytes changed or cut off
//! (footer and pages alike), CSV and JSON lines for `import`, TOML service
//! settings and policy modules. None may panic; what fails gets an error
//! that names the file it read.

mod common;

use std::path::Path;

use common::{DAY_2026_11_20_MS, few_events, write_events};
use proptest::prelude::*;
use shadowcast::config::{ServeArgs, ServeConfig};
use shadowcast::features::{FeatureOptions, compute};
use shadowcast::logs::LogSource;
use shadowcast::logs::import::{
    ColumnMapping, ImportOptions, InputFormat, TsFormat, default_op_names, import,
};
use shadowcast::policy::{PolicyHost, PolicyLimits};

const HOUR_US: i64 = 3_600_000_000;

/// A valid access-log file's bytes (several row groups).
fn valid_log() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.parquet");
    let mut events = few_events(DAY_2026_11_20_MS);
    events.extend(few_events(DAY_2026_11_20_MS + 3_600_000));
    write_events(&path, &events, 4);
    std::fs::read(path).unwrap()
}

#[derive(Clone, Debug)]
enum Mangle {
    /// Keep only this many bytes (by thousandths of the file).
    Truncate(u16),
    /// Set bytes at these positions (by thousandths of the file; the second
    /// of each pair is the new value).
    Overwrite(Vec<(u16, u8)>),
    /// The same, within the last 64 bytes (the footer and its length).
    OverwriteFooter(Vec<(u8, u8)>),
}

fn mangle() -> impl Strategy<Value = Mangle> {
    prop_oneof![
        (0u16..1000).prop_map(Mangle::Truncate),
        prop::collection::vec((0u16..1000, any::<u8>()), 1..12).prop_map(Mangle::Overwrite),
        prop::collection::vec((0u8..64, any::<u8>()), 1..6).prop_map(Mangle::OverwriteFooter),
    ]
}

fn apply(mangle: &Mangle, bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let at =
        |thousandths: u16| (bytes.len() * usize::from(thousandths) / 1000).min(bytes.len() - 1);
    match mangle {
        Mangle::Truncate(keep) => out.truncate(bytes.len() * usize::from(*keep) / 1000),
        Mangle::Overwrite(changes) => {
            for &(position, value) in changes {
                out[at(position)] = value;
            }
        }
        Mangle::OverwriteFooter(changes) => {
            for &(back, value) in changes {
                let position = bytes.len() - 1 - usize::from(back).min(bytes.len() - 1);
                out[position] = value;
            }
        }
    }
    out
}

/// Features over the logs under `dir`: the error's text, if any.
fn features_of(dir: &Path) -> Result<usize, String> {
    let source = LogSource::open(dir).map_err(|error| error.to_string())?;
    let table = compute(
        &source,
        FeatureOptions {
            as_of: (DAY_2026_11_20_MS + 24 * 3_600_000) * 1000,
            horizon: HOUR_US,
            since: None,
        },
        &|_| {},
    )
    .map_err(|error| error.to_string())?;
    Ok(table.len())
}

fn import_lines(name: &str, format: InputFormat, text: &[u8]) -> Result<u64, String> {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join(name);
    std::fs::write(&input, text).unwrap();
    let options = ImportOptions {
        format,
        mapping: ColumnMapping::default(),
        ts_format: TsFormat::Ms,
        op_names: default_op_names(),
        default_table: "t".into(),
        rebase_to: None,
        time_scale: 1.0,
    };
    import(&input, &dir.path().join("out"), &options, &|_| {})
        .map(|report| report.rows)
        .map_err(|error| error.to_string())
}

/// Lines drawn from pieces of valid and invalid rows.
fn lines(pieces: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(pieces).prop_map(|piece| piece.as_bytes().to_vec()),
            1 => prop::collection::vec(any::<u8>(), 0..40),
        ],
        0..12,
    )
    .prop_map(|lines| lines.join(&b'\n'))
}

const CSV_PIECES: &[&str] = &[
    "ts,key,table_name,op,size_bytes",
    "1795132800000,k1,users,read,10",
    "1795132800000,k1,users,write,-1",
    "99999999999999999999,k1,users,read,10",
    "-9223372036854775808,k,users,read,1",
    "9223372036854775807,k,users,read,1",
    "1.5e300,k,users,read,1",
    "NaN,k,users,read,1",
    "1795132800000,,users,read,10",
    "1795132800000,k2,users,frobnicate,10",
    "1795132800000,k2,users,read",
    "1795132800000,\"k,3\",users,read,1",
    "\"unterminated,k,users,read,1",
    "1795132800000,k4,users,read,1e99",
];

const JSON_PIECES: &[&str] = &[
    r#"{"ts":1795132800000,"key":"k1","table_name":"users","op":"read","size_bytes":10}"#,
    r#"{"ts":"1795132800000","key":"k1","table_name":"users","op":"write","size_bytes":1}"#,
    r#"{"ts":1e400,"key":"k","table_name":"users","op":"read","size_bytes":1}"#,
    r#"{"ts":-9223372036854775808,"key":"k","table_name":"users","op":"read"}"#,
    r#"{"ts":1795132800000,"key":null,"table_name":"users","op":"read"}"#,
    r#"{"ts":1795132800000,"key":["k"],"op":"read"}"#,
    r#"{"ts":1795132800000,"key":"k","op":"read","size_bytes":"big"}"#,
    r#"{"key":"k","op":"read"}"#,
    r#"[1,2,3]"#,
    r#"{"ts":1795132800000,"key":"k""#,
    "",
];

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mangled_parquet_logs_never_panic_and_errors_name_the_file(how in mangle()) {
        let valid = valid_log();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.parquet");
        std::fs::write(&path, apply(&how, &valid)).unwrap();
        if let Err(message) = features_of(dir.path()) {
            prop_assert!(
                message.contains("events.parquet"),
                "the error does not name the file: {message}"
            );
        }
    }

    #[test]
    fn csv_rows_never_panic_the_import(text in lines(CSV_PIECES)) {
        if let Err(message) = import_lines("trace.csv", InputFormat::Csv, &text) {
            prop_assert!(message.contains("trace.csv"), "{message}");
        }
    }

    #[test]
    fn json_lines_never_panic_the_import(text in lines(JSON_PIECES)) {
        if let Err(message) = import_lines("trace.jsonl", InputFormat::Jsonl, &text) {
            prop_assert!(message.contains("trace.jsonl"), "{message}");
        }
    }

    #[test]
    fn service_settings_files_never_panic(
        text in prop::collection::vec(
            prop_oneof![
                Just("lease_seconds = 5".to_string()),
                Just("lease_seconds = -1".to_string()),
                Just("lease_seconds = \"x\"".to_string()),
                Just("max_connections = 0".to_string()),
                Just("max_connections = 18446744073709551615".to_string()),
                Just("handshake_timeout = \"99999999999999d\"".to_string()),
                Just("keepalive_interval = \"\"".to_string()),
                Just("max_version_skew = \"off\"".to_string()),
                Just("replan_every = \"0s\"".to_string()),
                Just("confidence_threshold = nan".to_string()),
                Just("churn_penalty = inf".to_string()),
                Just("policies = [\"a.wasm:\", \":\"]".to_string()),
                Just("listen = \"not an address\"".to_string()),
                Just("[table]".to_string()),
                "[ -~]{0,30}",
            ],
            0..8,
        )
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.toml");
        std::fs::write(&path, text.join("\n")).unwrap();
        let resolved = ServeConfig::resolve(ServeArgs {
            config: Some(path),
            ..Default::default()
        });
        if let Err(error) = resolved {
            prop_assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn policy_modules_of_any_bytes_are_refused_without_panic(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..200),
            prop::collection::vec(any::<u8>(), 0..200).prop_map(|mut tail| {
                let mut module = b"\0asm\x01\0\0\0".to_vec();
                module.append(&mut tail);
                module
            }),
        ]
    ) {
        let host = PolicyHost::new(PolicyLimits::default()).unwrap();
        let compiled = host.compile("fuzzed", &bytes);
        prop_assert!(compiled.is_err(), "random bytes compiled as a policy");
        let message = compiled.err().unwrap().to_string();
        prop_assert!(message.contains("fuzzed"), "the error does not name the policy: {message}");
    }
}
