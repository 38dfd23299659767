//! Converting CSV or JSON-lines access logs into the Parquet layout.
//!
//! Rows stream through: they are staged per hour partition and flushed in
//! sorted chunks, so memory is bounded by the chunk size times the number of
//! hours the input touches, never by the input's size.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::LogError;
use super::schema::{self, Op};
use super::writer::{AccessEvent, LogBatchBuilder, LogFileWriter, partition_dir};
use crate::time::{hour_floor, parse_instant};

/// Rows staged per partition before they are sorted and written.
const FLUSH_ROWS: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// Comma-separated with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl InputFormat {
    /// Guesses from the file name (`.csv`, `.jsonl`, `.ndjson`, `.json`, optionally `.gz`).
    pub fn from_path(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_string_lossy().to_lowercase();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        if name.ends_with(".csv") {
            Some(InputFormat::Csv)
        } else if [".jsonl", ".ndjson", ".json"]
            .iter()
            .any(|s| name.ends_with(s))
        {
            Some(InputFormat::Jsonl)
        } else {
            None
        }
    }
}

/// How the input's time column is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TsFormat {
    /// Seconds since the epoch (fractions allowed).
    S,
    /// Milliseconds since the epoch.
    Ms,
    /// Microseconds since the epoch.
    Us,
    /// Nanoseconds since the epoch.
    Ns,
    /// RFC 3339 text such as 2026-11-20T13:00:00Z.
    Rfc3339,
}

/// Which input column feeds each access-log column.
#[derive(Clone, Debug)]
pub struct ColumnMapping {
    pub ts: String,
    pub key: String,
    /// `None`: every row goes to [`ImportOptions::default_table`].
    pub table: Option<String>,
    pub op: String,
    /// `None`: every row gets size 0.
    pub size: Option<String>,
    pub tenant: Option<String>,
    pub latency: Option<String>,
}

impl Default for ColumnMapping {
    fn default() -> Self {
        ColumnMapping {
            ts: schema::TS.into(),
            key: schema::KEY.into(),
            table: Some(schema::TABLE.into()),
            op: schema::OP.into(),
            size: Some(schema::SIZE.into()),
            tenant: None,
            latency: None,
        }
    }
}

impl ColumnMapping {
    /// Applies `field=source` overrides; `field` is an access-log column name
    /// (`table` may stand for `table_name`, `size` for `size_bytes`); an
    /// empty source drops an optional column.
    pub fn apply(&mut self, assignment: &str) -> Result<(), String> {
        let (field, source) = assignment
            .split_once('=')
            .ok_or_else(|| format!("`{assignment}`: write the mapping as FIELD=SOURCE_COLUMN"))?;
        let source = source.trim().to_string();
        let optional = (!source.is_empty()).then(|| source.clone());
        match field.trim() {
            schema::TS => self.ts = source,
            schema::KEY => self.key = source,
            schema::OP => self.op = source,
            schema::TABLE | "table" => self.table = optional,
            schema::SIZE | "size" => self.size = optional,
            schema::TENANT => self.tenant = optional,
            schema::LATENCY | "latency" => self.latency = optional,
            other => {
                return Err(format!(
                    "`{other}` is not an access-log column (use ts, key, table_name, op, size_bytes, tenant or latency_us)"
                ));
            }
        }
        if self.ts.is_empty() || self.key.is_empty() || self.op.is_empty() {
            return Err(format!(
                "`{assignment}`: ts, key and op cannot be left unmapped"
            ));
        }
        Ok(())
    }
}

/// Everything `import` needs, checked.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    pub format: InputFormat,
    pub mapping: ColumnMapping,
    pub ts_format: TsFormat,
    /// Input spelling (lower case) to operation; see [`default_op_names`].
    pub op_names: HashMap<String, Op>,
    /// Table for rows when no table column is mapped.
    pub default_table: String,
    /// Shift all times so that the first row lands here (for traces whose
    /// timestamps are request indices or otherwise not wall-clock).
    pub rebase_to: Option<i64>,
    /// Multiplies each time's distance from the first row's (to stretch or
    /// shrink a trace to another time scale); 1.0 keeps times as they are.
    pub time_scale: f64,
}

/// Spellings understood without configuration: SQL verbs, cache verbs, and
/// the shared traces' `read`/`write`/`delete`.
pub fn default_op_names() -> HashMap<String, Op> {
    let table: [(&str, Op); 17] = [
        ("read", Op::Read),
        ("get", Op::Read),
        ("gets", Op::Read),
        ("select", Op::Read),
        ("insert", Op::Insert),
        ("add", Op::Insert),
        ("create", Op::Insert),
        ("update", Op::Update),
        ("write", Op::Update),
        ("set", Op::Update),
        ("put", Op::Update),
        ("upsert", Op::Update),
        ("cas", Op::Update),
        ("delete", Op::Delete),
        ("del", Op::Delete),
        ("remove", Op::Delete),
        ("incr", Op::Update),
    ];
    table
        .into_iter()
        .map(|(name, op)| (name.to_string(), op))
        .collect()
}

/// Parses `name=op` overrides such as `w=update`.
pub fn apply_op_name(names: &mut HashMap<String, Op>, assignment: &str) -> Result<(), String> {
    let (name, op) = assignment.split_once('=').ok_or_else(|| {
        format!("`{assignment}`: write the op mapping as INPUT=read|insert|update|delete")
    })?;
    let op = Op::parse(op.trim()).ok_or_else(|| {
        format!("`{assignment}`: `{op}` is not one of read, insert, update, delete")
    })?;
    names.insert(name.trim().to_lowercase(), op);
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: the input has no column `{column}` (mapped to `{field}`); it has: {present}")]
    MissingColumn {
        path: PathBuf,
        column: String,
        field: &'static str,
        present: String,
    },
    #[error("{path}: line {line}, column `{column}`: {problem}")]
    BadValue {
        path: PathBuf,
        line: u64,
        column: String,
        problem: String,
    },
    #[error(transparent)]
    Write(#[from] LogError),
}

/// What an import wrote.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub rows: u64,
    pub files: Vec<PathBuf>,
    pub first_ts: Option<i64>,
    pub last_ts: Option<i64>,
}

struct StagedEvent {
    ts: i64,
    key: String,
    table: String,
    op: Op,
    size: i64,
    tenant: Option<String>,
    latency_us: Option<i64>,
}

/// One partition being written: its file and the rows not yet flushed.
struct OpenPartition {
    writer: LogFileWriter,
    staged: Vec<StagedEvent>,
}

struct PartitionedSink<'a> {
    root: &'a Path,
    file_name: String,
    open: BTreeMap<i64, OpenPartition>,
    builder: LogBatchBuilder,
}

impl PartitionedSink<'_> {
    fn push(&mut self, event: StagedEvent) -> Result<(), LogError> {
        let hour = hour_floor(event.ts);
        let partition = match self.open.entry(hour) {
            std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::btree_map::Entry::Vacant(entry) => {
                let path = partition_dir(self.root, hour).join(&self.file_name);
                entry.insert(OpenPartition {
                    writer: LogFileWriter::create(path)?,
                    staged: Vec::new(),
                })
            }
        };
        partition.staged.push(event);
        if partition.staged.len() >= FLUSH_ROWS {
            flush(partition, &mut self.builder)?;
        }
        Ok(())
    }

    fn close(mut self) -> Result<Vec<PathBuf>, LogError> {
        let mut files = Vec::with_capacity(self.open.len());
        for (_, mut partition) in std::mem::take(&mut self.open) {
            flush(&mut partition, &mut self.builder)?;
            files.push(partition.writer.close()?);
        }
        Ok(files)
    }
}

fn flush(partition: &mut OpenPartition, builder: &mut LogBatchBuilder) -> Result<(), LogError> {
    if partition.staged.is_empty() {
        return Ok(());
    }
    partition.staged.sort_by_key(|event| event.ts);
    for event in partition.staged.drain(..) {
        builder.push(&AccessEvent {
            ts: event.ts,
            key: &event.key,
            table: &event.table,
            op: event.op,
            size: event.size,
            tenant: event.tenant.as_deref(),
            latency_us: event.latency_us,
        });
    }
    partition.writer.write(&builder.finish())
}

/// Reads `input` (optionally gzip-compressed) and writes it under `out` in
/// hour partitions, one file per partition named after the input.
pub fn import(
    input: &Path,
    out: &Path,
    options: &ImportOptions,
    on_rows: &dyn Fn(u64),
) -> Result<ImportReport, ImportError> {
    let read_error = |source| ImportError::Read {
        path: input.to_path_buf(),
        source,
    };
    let file = File::open(input).map_err(read_error)?;
    let reader: Box<dyn Read> = if input.extension().is_some_and(|ext| ext == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let stem = input
        .file_name()
        .map(|name| name.to_string_lossy().to_string())
        .unwrap_or_default();
    let stem = stem.split('.').next().unwrap_or("import");
    let mut sink = PartitionedSink {
        root: out,
        file_name: format!("part-{stem}.parquet"),
        open: BTreeMap::new(),
        builder: LogBatchBuilder::new(),
    };
    let mut report = ImportReport::default();
    let mut converter = RowConverter {
        path: input,
        options,
        first_ts: None,
    };
    let mut accept = |event: StagedEvent, sink: &mut PartitionedSink| -> Result<(), ImportError> {
        report.rows += 1;
        report.first_ts = Some(report.first_ts.map_or(event.ts, |t: i64| t.min(event.ts)));
        report.last_ts = Some(report.last_ts.map_or(event.ts, |t: i64| t.max(event.ts)));
        if report.rows % 65_536 == 0 {
            on_rows(65_536);
        }
        sink.push(event)?;
        Ok(())
    };

    match options.format {
        InputFormat::Csv => {
            let mut csv = csv::ReaderBuilder::new()
                .has_headers(true)
                .from_reader(reader);
            let headers = csv
                .headers()
                .map_err(|e| read_error(std::io::Error::other(e)))?
                .clone();
            let index_of = |column: &str, field: &'static str| {
                headers
                    .iter()
                    .position(|h| h.trim() == column)
                    .ok_or_else(|| ImportError::MissingColumn {
                        path: input.to_path_buf(),
                        column: column.to_string(),
                        field,
                        present: headers.iter().collect::<Vec<_>>().join(", "),
                    })
            };
            let mapping = &options.mapping;
            let optional = |column: &Option<String>, field| {
                column.as_deref().map(|c| index_of(c, field)).transpose()
            };
            let columns = SourceColumns {
                ts: index_of(&mapping.ts, schema::TS)?,
                key: index_of(&mapping.key, schema::KEY)?,
                table: optional(&mapping.table, schema::TABLE)?,
                op: index_of(&mapping.op, schema::OP)?,
                size: optional(&mapping.size, schema::SIZE)?,
                tenant: optional(&mapping.tenant, schema::TENANT)?,
                latency: optional(&mapping.latency, schema::LATENCY)?,
            };
            let mut record = csv::StringRecord::new();
            let mut line = 1u64;
            loop {
                match csv.read_record(&mut record) {
                    Ok(false) => break,
                    Ok(true) => {}
                    Err(error) => {
                        return Err(ImportError::BadValue {
                            path: input.to_path_buf(),
                            line: error.position().map_or(line + 1, |p| p.line()),
                            column: "(row)".into(),
                            problem: error.to_string(),
                        });
                    }
                }
                line = record.position().map_or(line + 1, |p| p.line());
                let field = |index: usize| record.get(index).map(str::trim);
                let event = converter.convert(line, |role| match role {
                    Role::Ts => field(columns.ts),
                    Role::Key => field(columns.key),
                    Role::Table => columns.table.and_then(field),
                    Role::Op => field(columns.op),
                    Role::Size => columns.size.and_then(field),
                    Role::Tenant => columns.tenant.and_then(field),
                    Role::Latency => columns.latency.and_then(field),
                })?;
                accept(event, &mut sink)?;
            }
        }
        InputFormat::Jsonl => {
            let mapping = options.mapping.clone();
            for (index, text) in BufReader::new(reader).lines().enumerate() {
                let line = index as u64 + 1;
                let text = text.map_err(read_error)?;
                if text.trim().is_empty() {
                    continue;
                }
                let object: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(&text).map_err(|error| ImportError::BadValue {
                        path: input.to_path_buf(),
                        line,
                        column: "(row)".into(),
                        problem: format!("not a JSON object: {error}"),
                    })?;
                let text_of = |column: Option<&str>| -> Option<String> {
                    match object.get(column?)? {
                        serde_json::Value::Null => None,
                        serde_json::Value::String(s) => Some(s.clone()),
                        other => Some(other.to_string()),
                    }
                };
                let values: [Option<String>; 7] = [
                    text_of(Some(&mapping.ts)),
                    text_of(Some(&mapping.key)),
                    text_of(mapping.table.as_deref()),
                    text_of(Some(&mapping.op)),
                    text_of(mapping.size.as_deref()),
                    text_of(mapping.tenant.as_deref()),
                    text_of(mapping.latency.as_deref()),
                ];
                let event = converter.convert(line, |role| values[role as usize].as_deref())?;
                accept(event, &mut sink)?;
            }
        }
    }
    on_rows(report.rows % 65_536);
    report.files = sink.close()?;
    Ok(report)
}

struct SourceColumns {
    ts: usize,
    key: usize,
    table: Option<usize>,
    op: usize,
    size: Option<usize>,
    tenant: Option<usize>,
    latency: Option<usize>,
}

/// The access-log column a raw value is for; the order matches the JSON path's array.
#[derive(Clone, Copy)]
enum Role {
    Ts = 0,
    Key = 1,
    Table = 2,
    Op = 3,
    Size = 4,
    Tenant = 5,
    Latency = 6,
}

struct RowConverter<'a> {
    path: &'a Path,
    options: &'a ImportOptions,
    /// The first row's time as read and as written, which rebasing and
    /// scaling measure from.
    first_ts: Option<(i64, i64)>,
}

impl RowConverter<'_> {
    fn convert<'v>(
        &mut self,
        line: u64,
        value: impl Fn(Role) -> Option<&'v str>,
    ) -> Result<StagedEvent, ImportError> {
        let mapping = &self.options.mapping;
        let bad = |column: &str, problem: String| ImportError::BadValue {
            path: self.path.to_path_buf(),
            line,
            column: column.to_string(),
            problem,
        };
        let required = |role: Role, column: &str| {
            value(role)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| bad(column, "is empty, but it is required".into()))
        };

        let ts_text = required(Role::Ts, &mapping.ts)?;
        let raw_ts = parse_ts(ts_text, self.options.ts_format).map_err(|p| bad(&mapping.ts, p))?;
        let (raw_first, first) = *self
            .first_ts
            .get_or_insert((raw_ts, self.options.rebase_to.unwrap_or(raw_ts)));
        let scaled = (raw_ts as f64 - raw_first as f64) * self.options.time_scale;
        let ts = Some(scaled.round())
            .filter(|offset| offset.abs() < 9.0e18)
            .and_then(|offset| first.checked_add(offset as i64))
            .ok_or_else(|| bad(&mapping.ts, format!("`{ts_text}` is out of range")))?;
        if chrono::DateTime::from_timestamp_micros(crate::time::hour_floor(ts)).is_none() {
            return Err(bad(
                &mapping.ts,
                format!("`{ts_text}` is outside the calendar (years -262143 to 262142)"),
            ));
        }

        let key = required(Role::Key, &mapping.key)?.to_string();
        let table = match &mapping.table {
            Some(column) => required(Role::Table, column)?.to_string(),
            None => self.options.default_table.clone(),
        };
        let op_text = required(Role::Op, &mapping.op)?;
        let op = *self
            .options
            .op_names
            .get(&op_text.to_lowercase())
            .ok_or_else(|| {
                bad(
                    &mapping.op,
                    format!("unknown operation `{op_text}`; map it with --op-map {op_text}=read|insert|update|delete"),
                )
            })?;
        let size = match &mapping.size {
            Some(column) => {
                parse_size(required(Role::Size, column)?).map_err(|p| bad(column, p))?
            }
            None => 0,
        };
        let tenant = value(Role::Tenant)
            .filter(|v| !v.is_empty())
            .map(str::to_string);
        let latency_us = match (
            &mapping.latency,
            value(Role::Latency).filter(|v| !v.is_empty()),
        ) {
            (Some(column), Some(text)) => Some(parse_count(text).map_err(|p| bad(column, p))?),
            _ => None,
        };
        Ok(StagedEvent {
            ts,
            key,
            table,
            op,
            size,
            tenant,
            latency_us,
        })
    }
}

fn parse_ts(text: &str, format: TsFormat) -> Result<i64, String> {
    let scale = match format {
        TsFormat::Rfc3339 => return parse_instant(text),
        TsFormat::S => 1_000_000.0,
        TsFormat::Ms => 1_000.0,
        TsFormat::Us => 1.0,
        TsFormat::Ns => 0.001,
    };
    if let Ok(whole) = text.parse::<i64>() {
        let micros = match format {
            TsFormat::Ns => Some(whole.div_euclid(1_000)),
            _ => whole.checked_mul(scale as i64),
        };
        return micros.ok_or_else(|| format!("`{text}` is out of range"));
    }
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .map(|v| (v * scale).round() as i64)
        .ok_or_else(|| format!("`{text}` is not a number (the time format is {format:?})"))
}

/// A size; `-1`, the usual spelling of "unknown" in published traces,
/// becomes 0 like an unmapped size column.
fn parse_size(text: &str) -> Result<i64, String> {
    match text.parse::<i64>() {
        Ok(-1) => Ok(0),
        Ok(value) if value < 0 => Err(format!(
            "`{value}` is negative (only -1, meaning unknown, is accepted)"
        )),
        _ => parse_count(text),
    }
}

fn parse_count(text: &str) -> Result<i64, String> {
    match text.parse::<i64>() {
        Ok(value) if value >= 0 => Ok(value),
        Ok(value) => Err(format!("`{value}` is negative")),
        Err(_) => Err(format!("`{text}` is not a whole number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_every_unit_become_microseconds() {
        assert_eq!(parse_ts("1500", TsFormat::Ms), Ok(1_500_000));
        assert_eq!(parse_ts("1.5", TsFormat::S), Ok(1_500_000));
        assert_eq!(parse_ts("1500", TsFormat::Ns), Ok(1));
        assert_eq!(
            parse_ts("1970-01-01T00:00:01Z", TsFormat::Rfc3339),
            Ok(1_000_000)
        );
        assert!(parse_ts("soon", TsFormat::Us).unwrap_err().contains("soon"));
    }

    #[test]
    fn mapping_overrides_name_the_bad_field() {
        let mut mapping = ColumnMapping::default();
        mapping.apply("ts=ts_ms").unwrap();
        mapping.apply("table=").unwrap();
        assert_eq!(mapping.ts, "ts_ms");
        assert_eq!(mapping.table, None);
        assert!(mapping.apply("colour=x").unwrap_err().contains("colour"));
        assert!(mapping.apply("key=").is_err());
    }

    #[test]
    fn op_names_can_be_extended() {
        let mut names = default_op_names();
        assert_eq!(names.get("write"), Some(&Op::Update));
        apply_op_name(&mut names, "W=insert").unwrap();
        assert_eq!(names.get("w"), Some(&Op::Insert));
        assert!(apply_op_name(&mut names, "w=copy").is_err());
    }
}
