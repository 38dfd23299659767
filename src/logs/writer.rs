//! Writing access logs in the canonical schema and Hive layout
//! (`ROOT/dt=YYYY-MM-DD/hour=HH/part-N.parquet`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{Int64Builder, StringBuilder, StringDictionaryBuilder};
use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, Int64Array, RecordBatch, TimestampMicrosecondArray};
use chrono::DateTime;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::LogError;
use super::schema::{Op, canonical_schema};

/// Rows per row group: small enough that time pruning skips most of a file
/// when a scan needs only part of an hour, large enough to compress well.
const ROW_GROUP_ROWS: usize = 128 * 1024;

/// One access, borrowed, as the writers take it.
#[derive(Clone, Copy, Debug)]
pub struct AccessEvent<'a> {
    pub ts: i64,
    pub key: &'a str,
    pub table: &'a str,
    pub op: Op,
    pub size: i64,
    pub tenant: Option<&'a str>,
    pub latency_us: Option<i64>,
}

/// Accumulates events into one record batch of the canonical schema.
pub struct LogBatchBuilder {
    ts: Vec<i64>,
    keys: StringBuilder,
    tables: StringDictionaryBuilder<Int32Type>,
    ops: StringDictionaryBuilder<Int32Type>,
    sizes: Vec<i64>,
    tenants: StringDictionaryBuilder<Int32Type>,
    latencies: Int64Builder,
}

impl Default for LogBatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl LogBatchBuilder {
    pub fn new() -> Self {
        LogBatchBuilder {
            ts: Vec::new(),
            keys: StringBuilder::new(),
            tables: StringDictionaryBuilder::new(),
            ops: StringDictionaryBuilder::new(),
            sizes: Vec::new(),
            tenants: StringDictionaryBuilder::new(),
            latencies: Int64Builder::new(),
        }
    }

    pub fn push(&mut self, event: &AccessEvent<'_>) {
        self.ts.push(event.ts);
        self.keys.append_value(event.key);
        self.tables.append_value(event.table);
        self.ops.append_value(event.op.as_str());
        self.sizes.push(event.size);
        self.tenants.append_option(event.tenant);
        self.latencies.append_option(event.latency_us);
    }

    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// Takes the rows pushed so far as a batch and starts a new one.
    pub fn finish(&mut self) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(
                TimestampMicrosecondArray::from(std::mem::take(&mut self.ts)).with_timezone("UTC"),
            ),
            Arc::new(self.keys.finish()),
            Arc::new(self.tables.finish()),
            Arc::new(self.ops.finish()),
            Arc::new(Int64Array::from(std::mem::take(&mut self.sizes))),
            Arc::new(self.tenants.finish()),
            Arc::new(self.latencies.finish()),
        ];
        RecordBatch::try_new(canonical_schema(), columns)
            .expect("builder columns match the canonical schema")
    }
}

/// The directory of the hour partition that holds `hour_start`.
pub fn partition_dir(root: &Path, hour_start: i64) -> PathBuf {
    let instant = DateTime::from_timestamp_micros(hour_start).expect("event time within calendar");
    root.join(format!("dt={}", instant.format("%Y-%m-%d")))
        .join(format!("hour={}", instant.format("%H")))
}

/// A Parquet file of access logs being written; refuses to overwrite.
pub struct LogFileWriter {
    path: PathBuf,
    writer: ArrowWriter<File>,
}

impl LogFileWriter {
    pub fn create(path: impl Into<PathBuf>) -> Result<Self, LogError> {
        let path = path.into();
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| LogError::io(parent, e))?;
        }
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| LogError::io(&path, e))?;
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_created_by(format!("shadowcast {}", env!("CARGO_PKG_VERSION")))
            .build();
        let writer =
            ArrowWriter::try_new(file, canonical_schema(), Some(properties)).map_err(|source| {
                LogError::Corrupt {
                    path: path.clone(),
                    source,
                }
            })?;
        Ok(LogFileWriter { path, writer })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), LogError> {
        self.writer
            .write(batch)
            .map_err(|source| self.write_error(source))
    }

    pub fn close(mut self) -> Result<PathBuf, LogError> {
        self.writer
            .finish()
            .map_err(|source| self.write_error(source))?;
        Ok(self.path)
    }

    fn write_error(&self, source: parquet::errors::ParquetError) -> LogError {
        match source {
            parquet::errors::ParquetError::External(inner) => {
                match inner.downcast::<std::io::Error>() {
                    Ok(io) => LogError::io(&self.path, *io),
                    Err(other) => LogError::Io {
                        path: self.path.clone(),
                        source: std::io::Error::other(other),
                    },
                }
            }
            other => LogError::Io {
                path: self.path.clone(),
                source: std::io::Error::other(other),
            },
        }
    }
}

/// Writes one batch as a complete file.
pub fn write_log_file(path: impl Into<PathBuf>, batch: &RecordBatch) -> Result<PathBuf, LogError> {
    let mut writer = LogFileWriter::create(path)?;
    writer.write(batch)?;
    writer.close()
}
