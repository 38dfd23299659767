//! The feature table and its Parquet form (the hand-off to models, policies
//! and notebooks, and what `sql/features.sql` produces too).

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use super::definition::{
    DECAY_HALF_LIVES, FEATURE_SET_NAME, FEATURE_SET_VERSION, KeyFeatures, WINDOWS,
};
use crate::time::{format_instant, parse_instant};

const META_SET: &str = "shadowcast.feature_set";
const META_VERSION: &str = "shadowcast.feature_set_version";
const META_AS_OF: &str = "shadowcast.as_of";

/// Features of every key as of one cut-off, sorted by (table, key bytes).
#[derive(Clone, Debug)]
pub struct FeatureTable {
    pub as_of: i64,
    /// Keys are written as UTF-8 strings when every log file had string keys.
    pub keys_are_utf8: bool,
    /// Events that went into the table.
    pub events_scanned: u64,
    pub rows: Vec<KeyFeatures>,
}

#[derive(Debug, thiserror::Error)]
pub enum FeatureFileError {
    #[error("{path}: {source}")]
    Parquet {
        path: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a {FEATURE_SET_NAME} v{FEATURE_SET_VERSION} feature table: {problem}")]
    Mismatch { path: String, problem: String },
}

/// Column names in file order.
pub fn column_names() -> Vec<String> {
    let mut names: Vec<String> = vec!["table_name".into(), "key".into(), "first_seen_age_s".into()];
    names.extend(WINDOWS.iter().map(|(suffix, _)| format!("events_{suffix}")));
    names.extend(["reads_total".into(), "writes_total".into()]);
    names.extend(
        DECAY_HALF_LIVES
            .iter()
            .map(|(suffix, _)| format!("reads_decay_{suffix}")),
    );
    names.extend(
        DECAY_HALF_LIVES
            .iter()
            .map(|(suffix, _)| format!("writes_decay_{suffix}")),
    );
    names.extend(
        [
            "secs_since_last_read",
            "secs_since_last_write",
            "read_share",
            "change_rate_per_h",
            "size_last",
            "size_max",
            "is_deleted",
            "tod_share_00_06",
            "tod_share_06_12",
            "tod_share_12_18",
            "tod_share_18_24",
            "tod_share_next_6h",
            "prefix_events_24h",
            "range_events_24h",
        ]
        .map(String::from),
    );
    names
}

fn schema(keys_are_utf8: bool) -> SchemaRef {
    let key_type = if keys_are_utf8 {
        DataType::Utf8
    } else {
        DataType::Binary
    };
    let fields = column_names()
        .into_iter()
        .map(|name| {
            let (data_type, nullable) = match name.as_str() {
                "table_name" => (DataType::Utf8, false),
                "key" => (key_type.clone(), false),
                "is_deleted" => (DataType::Boolean, false),
                "secs_since_last_read" | "secs_since_last_write" => (DataType::Float64, true),
                n if n.starts_with("events_")
                    || n.ends_with("_total")
                    || n.starts_with("size_")
                    || n.ends_with("_events_24h") =>
                {
                    (DataType::Int64, false)
                }
                _ => (DataType::Float64, false),
            };
            Field::new(name, data_type, nullable)
        })
        .collect::<Vec<_>>();
    Arc::new(Schema::new(fields))
}

impl FeatureTable {
    pub fn to_record_batch(&self) -> RecordBatch {
        let rows = &self.rows;
        let ints = |f: &dyn Fn(&KeyFeatures) -> i64| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values(rows.iter().map(f)))
        };
        let floats = |f: &dyn Fn(&KeyFeatures) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter_values(rows.iter().map(f)))
        };
        let key: ArrayRef = if self.keys_are_utf8 {
            Arc::new(StringArray::from_iter_values(
                rows.iter()
                    .map(|r| std::str::from_utf8(&r.key).expect("UTF-8 keys")),
            ))
        } else {
            Arc::new(BinaryArray::from_iter_values(
                rows.iter().map(|r| r.key.as_slice()),
            ))
        };
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.table.as_str()),
            )),
            key,
            floats(&|r| r.first_seen_age_s),
        ];
        for window in 0..WINDOWS.len() {
            columns.push(ints(&|r| r.events[window]));
        }
        columns.push(ints(&|r| r.reads_total));
        columns.push(ints(&|r| r.writes_total));
        for half_life in 0..DECAY_HALF_LIVES.len() {
            columns.push(floats(&|r| r.reads_decay[half_life]));
        }
        for half_life in 0..DECAY_HALF_LIVES.len() {
            columns.push(floats(&|r| r.writes_decay[half_life]));
        }
        columns.push(Arc::new(
            rows.iter()
                .map(|r| r.secs_since_last_read)
                .collect::<Float64Array>(),
        ));
        columns.push(Arc::new(
            rows.iter()
                .map(|r| r.secs_since_last_write)
                .collect::<Float64Array>(),
        ));
        columns.push(floats(&|r| r.read_share));
        columns.push(floats(&|r| r.change_rate_per_h));
        columns.push(ints(&|r| r.size_last));
        columns.push(ints(&|r| r.size_max));
        columns.push(Arc::new(
            rows.iter()
                .map(|r| Some(r.is_deleted))
                .collect::<BooleanArray>(),
        ));
        for bucket in 0..4 {
            columns.push(floats(&|r| r.tod_share[bucket]));
        }
        columns.push(floats(&|r| r.tod_share_next_6h));
        columns.push(ints(&|r| r.prefix_events_24h));
        columns.push(ints(&|r| r.range_events_24h));
        RecordBatch::try_new(schema(self.keys_are_utf8), columns).expect("columns match schema")
    }

    /// Writes the table with its feature-set name, version and cut-off in the file metadata.
    pub fn write_parquet(&self, path: &Path) -> Result<(), FeatureFileError> {
        let display = path.display().to_string();
        let parquet_error = |source| FeatureFileError::Parquet {
            path: display.clone(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| FeatureFileError::Io {
                path: parent.display().to_string(),
                source,
            })?;
        }
        let file = File::create(path).map_err(|source| FeatureFileError::Io {
            path: display.clone(),
            source,
        })?;
        let metadata = vec![
            KeyValue::new(META_SET.into(), FEATURE_SET_NAME.to_string()),
            KeyValue::new(META_VERSION.into(), FEATURE_SET_VERSION.to_string()),
            KeyValue::new(META_AS_OF.into(), format_instant(self.as_of)),
        ];
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_key_value_metadata(Some(metadata))
            .build();
        let batch = self.to_record_batch();
        let mut writer =
            ArrowWriter::try_new(file, batch.schema(), Some(properties)).map_err(parquet_error)?;
        writer.write(&batch).map_err(parquet_error)?;
        writer.close().map_err(parquet_error)?;
        Ok(())
    }

    /// Reads a feature table written by shadowcast or by `sql/features.sql`
    /// (which carries no metadata; pass the cut-off it was run with).
    pub fn read_parquet(
        path: &Path,
        as_of_if_missing: Option<i64>,
    ) -> Result<Self, FeatureFileError> {
        let display = path.display().to_string();
        let mismatch = |problem: String| FeatureFileError::Mismatch {
            path: display.clone(),
            problem,
        };
        let parquet_error = |source| FeatureFileError::Parquet {
            path: display.clone(),
            source,
        };
        let file = File::open(path).map_err(|source| FeatureFileError::Io {
            path: display.clone(),
            source,
        })?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet_error)?;
        let metadata = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .cloned();
        let lookup = |name: &str| {
            metadata
                .iter()
                .flatten()
                .find(|kv| kv.key == name)
                .and_then(|kv| kv.value.clone())
        };
        if let Some(version) = lookup(META_VERSION)
            && (lookup(META_SET).as_deref() != Some(FEATURE_SET_NAME)
                || version != FEATURE_SET_VERSION.to_string())
        {
            return Err(mismatch(format!(
                "it holds {} v{version}",
                lookup(META_SET).unwrap_or_default()
            )));
        }
        let as_of = match lookup(META_AS_OF) {
            Some(text) => parse_instant(&text).map_err(mismatch)?,
            None => as_of_if_missing
                .ok_or_else(|| mismatch("no cut-off recorded in the file".into()))?,
        };
        let reader = builder.build().map_err(parquet_error)?;
        let mut rows = Vec::new();
        let mut keys_are_utf8 = true;
        for batch in reader {
            let batch = batch.map_err(|e| parquet_error(e.into()))?;
            let column = |name: &str| {
                batch
                    .column_by_name(name)
                    .cloned()
                    .ok_or_else(|| mismatch(format!("missing column `{name}`")))
            };
            let ints = |name: &str| -> Result<Vec<i64>, FeatureFileError> {
                let array = arrow_cast::cast(&column(name)?, &DataType::Int64)
                    .map_err(|e| mismatch(format!("column `{name}`: {e}")))?;
                Ok(array.as_primitive::<Int64Type>().values().to_vec())
            };
            let floats = |name: &str| -> Result<Vec<Option<f64>>, FeatureFileError> {
                let array = arrow_cast::cast(&column(name)?, &DataType::Float64)
                    .map_err(|e| mismatch(format!("column `{name}`: {e}")))?;
                Ok(array.as_primitive::<Float64Type>().iter().collect())
            };
            let required = |name: &str| -> Result<Vec<f64>, FeatureFileError> {
                floats(name)?
                    .into_iter()
                    .map(|v| v.ok_or_else(|| mismatch(format!("column `{name}` has a null"))))
                    .collect()
            };
            let tables = arrow_cast::cast(&column("table_name")?, &DataType::Utf8)
                .map_err(|e| mismatch(format!("column `table_name`: {e}")))?;
            let key_column = column("key")?;
            keys_are_utf8 &= matches!(
                key_column.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            );
            let keys = arrow_cast::cast(&key_column, &DataType::Binary)
                .map_err(|e| mismatch(format!("column `key`: {e}")))?;
            let deleted = arrow_cast::cast(&column("is_deleted")?, &DataType::Boolean)
                .map_err(|e| mismatch(format!("column `is_deleted`: {e}")))?;
            let names = column_names();
            let events: Vec<Vec<i64>> = names[3..7]
                .iter()
                .map(|n| ints(n))
                .collect::<Result<_, _>>()?;
            let reads_decay: Vec<Vec<f64>> = names[9..12]
                .iter()
                .map(|n| required(n))
                .collect::<Result<_, _>>()?;
            let writes_decay: Vec<Vec<f64>> = names[12..15]
                .iter()
                .map(|n| required(n))
                .collect::<Result<_, _>>()?;
            let tod: Vec<Vec<f64>> = names[22..26]
                .iter()
                .map(|n| required(n))
                .collect::<Result<_, _>>()?;
            let (first_seen, reads, writes) = (
                required("first_seen_age_s")?,
                ints("reads_total")?,
                ints("writes_total")?,
            );
            let (since_read, since_write) = (
                floats("secs_since_last_read")?,
                floats("secs_since_last_write")?,
            );
            let (read_share, change_rate) =
                (required("read_share")?, required("change_rate_per_h")?);
            let (size_last, size_max) = (ints("size_last")?, ints("size_max")?);
            let next_6h = required("tod_share_next_6h")?;
            let (prefix, range) = (ints("prefix_events_24h")?, ints("range_events_24h")?);
            let tables = tables.as_string::<i32>();
            let keys = keys.as_binary::<i32>();
            let deleted = deleted.as_boolean();
            for i in 0..batch.num_rows() {
                rows.push(KeyFeatures {
                    table: tables.value(i).to_string(),
                    key: keys.value(i).to_vec(),
                    first_seen_age_s: first_seen[i],
                    events: [events[0][i], events[1][i], events[2][i], events[3][i]],
                    reads_total: reads[i],
                    writes_total: writes[i],
                    reads_decay: [reads_decay[0][i], reads_decay[1][i], reads_decay[2][i]],
                    writes_decay: [writes_decay[0][i], writes_decay[1][i], writes_decay[2][i]],
                    secs_since_last_read: since_read[i],
                    secs_since_last_write: since_write[i],
                    read_share: read_share[i],
                    change_rate_per_h: change_rate[i],
                    size_last: size_last[i],
                    size_max: size_max[i],
                    is_deleted: deleted.is_valid(i) && deleted.value(i),
                    tod_share: [tod[0][i], tod[1][i], tod[2][i], tod[3][i]],
                    tod_share_next_6h: next_6h[i],
                    prefix_events_24h: prefix[i],
                    range_events_24h: range[i],
                });
            }
        }
        let events_scanned = rows
            .iter()
            .map(|r| (r.reads_total + r.writes_total) as u64)
            .sum();
        Ok(FeatureTable {
            as_of,
            keys_are_utf8,
            events_scanned,
            rows,
        })
    }

    /// The `n` rows with the highest `score`, best first (ties by table, key).
    pub fn top_by(&self, n: usize, score: impl Fn(&KeyFeatures) -> f64) -> Vec<&KeyFeatures> {
        let mut ranked: Vec<(f64, &KeyFeatures)> =
            self.rows.iter().map(|r| (score(r), r)).collect();
        let n = n.min(ranked.len());
        if n == 0 {
            return Vec::new();
        }
        let by_score = |a: &(f64, &KeyFeatures), b: &(f64, &KeyFeatures)| {
            b.0.total_cmp(&a.0)
                .then_with(|| a.1.table.cmp(&b.1.table))
                .then_with(|| a.1.key.cmp(&b.1.key))
        };
        ranked.select_nth_unstable_by(n - 1, by_score);
        ranked.truncate(n);
        ranked.sort_by(by_score);
        ranked.into_iter().map(|(_, row)| row).collect()
    }
}
