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
use parquet::arrow::arrow_writer::compute_leaves;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use rayon::prelude::*;

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

/// Rows per row group of a written feature table.
const WRITE_ROW_GROUP_ROWS: usize = 256 * 1024;

type ColumnBuilder = Box<dyn Fn(&[KeyFeatures]) -> ArrayRef + Send + Sync>;

fn ints(value: impl Fn(&KeyFeatures) -> i64 + Send + Sync + 'static) -> ColumnBuilder {
    Box::new(move |rows| Arc::new(Int64Array::from_iter_values(rows.iter().map(&value))))
}

fn floats(value: impl Fn(&KeyFeatures) -> f64 + Send + Sync + 'static) -> ColumnBuilder {
    Box::new(move |rows| Arc::new(Float64Array::from_iter_values(rows.iter().map(&value))))
}

fn optional_floats(
    value: impl Fn(&KeyFeatures) -> Option<f64> + Send + Sync + 'static,
) -> ColumnBuilder {
    Box::new(move |rows| Arc::new(rows.iter().map(&value).collect::<Float64Array>()))
}

/// One builder per column, in [`column_names`] order.
fn column_builders(keys_are_utf8: bool) -> Vec<ColumnBuilder> {
    let mut builders: Vec<ColumnBuilder> = vec![
        Box::new(|rows| {
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| &*r.table),
            ))
        }),
        if keys_are_utf8 {
            Box::new(|rows| {
                Arc::new(StringArray::from_iter_values(
                    rows.iter()
                        .map(|r| std::str::from_utf8(&r.key).expect("UTF-8 keys")),
                ))
            })
        } else {
            Box::new(|rows| {
                Arc::new(BinaryArray::from_iter_values(
                    rows.iter().map(|r| r.key.as_slice()),
                ))
            })
        },
        floats(|r| r.first_seen_age_s),
    ];
    builders.extend((0..WINDOWS.len()).map(|w| ints(move |r| r.events[w])));
    builders.push(ints(|r| r.reads_total));
    builders.push(ints(|r| r.writes_total));
    builders.extend((0..DECAY_HALF_LIVES.len()).map(|h| floats(move |r| r.reads_decay[h])));
    builders.extend((0..DECAY_HALF_LIVES.len()).map(|h| floats(move |r| r.writes_decay[h])));
    builders.push(optional_floats(|r| r.secs_since_last_read));
    builders.push(optional_floats(|r| r.secs_since_last_write));
    builders.push(floats(|r| r.read_share));
    builders.push(floats(|r| r.change_rate_per_h));
    builders.push(ints(|r| r.size_last));
    builders.push(ints(|r| r.size_max));
    builders.push(Box::new(|rows| {
        Arc::new(
            rows.iter()
                .map(|r| Some(r.is_deleted))
                .collect::<BooleanArray>(),
        )
    }));
    builders.extend((0..4).map(|b| floats(move |r| r.tod_share[b])));
    builders.push(floats(|r| r.tod_share_next_6h));
    builders.push(ints(|r| r.prefix_events_24h));
    builders.push(ints(|r| r.range_events_24h));
    builders
}

fn record_batch_of(rows: &[KeyFeatures], keys_are_utf8: bool) -> RecordBatch {
    let columns: Vec<ArrayRef> = column_builders(keys_are_utf8)
        .par_iter()
        .map(|build| build(rows))
        .collect();
    RecordBatch::try_new(schema(keys_are_utf8), columns).expect("columns match schema")
}

impl FeatureTable {
    /// All rows as one record batch.
    pub fn to_record_batch(&self) -> RecordBatch {
        record_batch_of(&self.rows, self.keys_are_utf8)
    }

    /// Writes the table with its feature-set name, version and cut-off in the
    /// file metadata. Row groups are built and their columns encoded in
    /// parallel.
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
        // Most feature values are distinct: dictionary pages would be built
        // and then abandoned for them, so only low-cardinality columns get one.
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_key_value_metadata(Some(metadata))
            .set_dictionary_enabled(false)
            .set_column_dictionary_enabled("table_name".into(), true)
            .build();
        let schema = schema(self.keys_are_utf8);
        let writer =
            ArrowWriter::try_new(file, schema.clone(), Some(properties)).map_err(parquet_error)?;
        let (mut file_writer, factory) = writer.into_serialized_writer().map_err(parquet_error)?;
        let fields: Vec<_> = schema.fields().iter().cloned().collect();
        for (index, rows) in self.rows.chunks(WRITE_ROW_GROUP_ROWS).enumerate() {
            let batch = record_batch_of(rows, self.keys_are_utf8);
            let writers = factory
                .create_column_writers(index)
                .map_err(parquet_error)?;
            let chunks = writers
                .into_par_iter()
                .zip(batch.columns().par_iter())
                .zip(fields.par_iter())
                .map(|((mut writer, array), field)| {
                    for leaf in compute_leaves(field, array)? {
                        writer.write(&leaf)?;
                    }
                    writer.close()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(parquet_error)?;
            let mut row_group = file_writer.next_row_group().map_err(parquet_error)?;
            for chunk in chunks {
                chunk
                    .append_to_row_group(&mut row_group)
                    .map_err(parquet_error)?;
            }
            row_group.close().map_err(parquet_error)?;
        }
        file_writer.close().map_err(parquet_error)?;
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
                    table: tables.value(i).into(),
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
