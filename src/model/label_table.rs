//! The label table: what each key did in the horizon (T, T+H] after a
//! cut-off T, as Parquet. Written by `shadowcast labels` or by
//! `sql/labels.sql` on another engine (one file, or a folder of part
//! files); read by `train --labels` and `evaluate --labels`, beside the
//! feature table of the same cut-off.
//!
//! | column               | type              | meaning                                                        |
//! |----------------------|-------------------|----------------------------------------------------------------|
//! | `table_name`         | string            | the key's table                                                |
//! | `key`                | string or binary  | the key                                                        |
//! | `seen_before`        | boolean           | the key has an event at or before T (the feature table holds it) |
//! | `accesses`           | integer           | events in the horizon                                          |
//! | `bytes_read`         | integer           | sum of `size_bytes` of its reads in the horizon                |
//! | `writes`             | integer           | inserts, updates and deletes in the horizon                    |
//! | `reads_before_write` | integer           | reads before its first write in the horizon (all, if none)     |
//! | `hot`                | boolean, nullable | in the top share by accesses or bytes read (null when not seen before) |
//! | `churn`              | boolean, nullable | written at least the churn minimum (null when not seen before) |
//! | `as_of_us`           | integer           | T, microseconds since the epoch, the same in every row         |
//! | `horizon_us`         | integer           | H, microseconds, the same in every row                         |
//!
//! One row per key seen before T or touched in the horizon, ordered by
//! (`table_name`, `key`). Keys first seen in the horizon count in the
//! totals (a prediction at T cannot name them, yet they are accesses a
//! migration serves). Readers take the counts and classify them with
//! their own rules ([`super::labels::classify`]); `hot` and `churn` are
//! there for whoever reads the table elsewhere.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, BooleanBuilder, Int64Builder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::ModelError;
use super::labels::{Horizon, LabelRules, Outcome, classify};
use crate::features::FeatureRows;

const ROWS_PER_BATCH: usize = 65_536;

/// A label table read back: the outcomes of every key it lists.
#[derive(Debug)]
pub struct LabelTable {
    pub as_of: i64,
    pub horizon: i64,
    /// Rows with `seen_before` set: as many as the feature table of the
    /// same cut-off has keys, when both come from the same logs.
    pub keys_seen_before: usize,
    pub future: Horizon,
}

/// One row to write.
struct LabelRow<'a> {
    table: &'a str,
    key: &'a [u8],
    seen_before: bool,
    outcome: Outcome,
    classes: Option<(bool, bool)>,
}

/// Writes the label table of `features`' cut-off from what `future`
/// observed over its horizon, classified by `rules`.
pub fn write(
    path: &Path,
    features: &FeatureRows,
    future: &Horizon,
    rules: &LabelRules,
) -> Result<(), ModelError> {
    let outcomes = future.outcomes_of(features);
    let (hot, churn) = classify(&outcomes, rules);
    let mut seen = Vec::with_capacity(features.len());
    features.for_each_key(|table, key, _| seen.push((Arc::<str>::from(table), key.to_vec())));
    let mut rows: Vec<LabelRow> = seen
        .iter()
        .enumerate()
        .map(|(row, (table, key))| LabelRow {
            table,
            key,
            seen_before: true,
            outcome: outcomes[row],
            classes: Some((hot[row], churn[row])),
        })
        .collect();
    let unseen = future.keys_not_in(features);
    let keys_are_utf8 = features.keys_are_utf8()
        && unseen
            .iter()
            .all(|(_, key, _)| std::str::from_utf8(key).is_ok());
    rows.extend(unseen.into_iter().map(|(table, key, outcome)| LabelRow {
        table,
        key,
        seen_before: false,
        outcome,
        classes: None,
    }));
    rows.sort_unstable_by(|a, b| (a.table, a.key).cmp(&(b.table, b.key)));

    let io_error = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    crate::export::create_parent_dir(path).map_err(io_error)?;
    let file = File::create(path).map_err(io_error)?;
    let schema = Arc::new(Schema::new(vec![
        Field::new("table_name", DataType::Utf8, false),
        Field::new(
            "key",
            if keys_are_utf8 {
                DataType::Utf8
            } else {
                DataType::Binary
            },
            false,
        ),
        Field::new("seen_before", DataType::Boolean, false),
        Field::new("accesses", DataType::Int64, false),
        Field::new("bytes_read", DataType::Int64, false),
        Field::new("writes", DataType::Int64, false),
        Field::new("reads_before_write", DataType::Int64, false),
        Field::new("hot", DataType::Boolean, true),
        Field::new("churn", DataType::Boolean, true),
        Field::new("as_of_us", DataType::Int64, false),
        Field::new("horizon_us", DataType::Int64, false),
    ]));
    let table_error = |problem: String| ModelError::Table {
        path: path.to_path_buf(),
        problem,
    };
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(properties))
        .map_err(|e| table_error(e.to_string()))?;
    for chunk in rows.chunks(ROWS_PER_BATCH) {
        let mut tables = StringBuilder::new();
        let mut keys = BinaryBuilder::new();
        let mut seen_before = BooleanBuilder::with_capacity(chunk.len());
        let mut counts: [Int64Builder; 4] = Default::default();
        let mut hot = BooleanBuilder::with_capacity(chunk.len());
        let mut churn = BooleanBuilder::with_capacity(chunk.len());
        for row in chunk {
            tables.append_value(row.table);
            keys.append_value(row.key);
            seen_before.append_value(row.seen_before);
            let outcome = row.outcome;
            for (builder, count) in counts.iter_mut().zip([
                outcome.accesses,
                outcome.bytes_read,
                outcome.writes,
                outcome.reads_before_write,
            ]) {
                builder.append_value(i64::try_from(count).unwrap_or(i64::MAX));
            }
            hot.append_option(row.classes.map(|(hot, _)| hot));
            churn.append_option(row.classes.map(|(_, churn)| churn));
        }
        let constant = |value: i64| -> ArrayRef {
            Arc::new(arrow_array::Int64Array::from(vec![value; chunk.len()]))
        };
        let [accesses, bytes_read, writes, reads_before_write] = counts.map(|mut b| b.finish());
        let keys: ArrayRef = Arc::new(keys.finish());
        let keys = if keys_are_utf8 {
            arrow_cast::cast(&keys, &DataType::Utf8).map_err(|e| table_error(e.to_string()))?
        } else {
            keys
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(tables.finish()),
            keys,
            Arc::new(seen_before.finish()),
            Arc::new(accesses),
            Arc::new(bytes_read),
            Arc::new(writes),
            Arc::new(reads_before_write),
            Arc::new(hot.finish()),
            Arc::new(churn.finish()),
            constant(features.cutoff().0),
            constant(features.cutoff().1),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns)
            .map_err(|e| table_error(e.to_string()))?;
        writer
            .write(&batch)
            .map_err(|e| table_error(e.to_string()))?;
    }
    writer.close().map_err(|e| table_error(e.to_string()))?;
    Ok(())
}

impl LabelTable {
    /// The cut-off and horizon the label table at `path` records in its
    /// first row, read without loading the table.
    pub fn recorded_cutoff(path: &Path) -> Result<(i64, i64), ModelError> {
        let problem = |problem: String| ModelError::Table {
            path: path.to_path_buf(),
            problem,
        };
        match crate::export::first_row_integers(path, &["as_of_us", "horizon_us"])
            .map_err(problem)?
        {
            Some(values) => Ok((values[0], values[1])),
            None => Err(problem(
                "not a label table: no `as_of_us` and `horizon_us` columns, or no rows".into(),
            )),
        }
    }

    /// Reads a label table (a file or a folder of part files); every
    /// problem names the file, and the column or key.
    pub fn read(path: &Path) -> Result<Self, ModelError> {
        let parts = crate::export::table_parts(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut future = Horizon::default();
        let mut keys_seen_before = 0;
        let mut recorded: [Option<i64>; 2] = [None, None];
        for part in &parts {
            let problem = |problem: String| ModelError::Table {
                path: part.clone(),
                problem,
            };
            let file = File::open(part).map_err(|source| ModelError::Io {
                path: part.clone(),
                source,
            })?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .and_then(|builder| builder.with_batch_size(ROWS_PER_BATCH).build())
                .map_err(|e| problem(e.to_string()))?;
            for batch in reader {
                let batch = batch.map_err(|e| problem(e.to_string()))?;
                let column = |name: &str, data_type: &DataType| -> Result<ArrayRef, ModelError> {
                    let column = batch
                        .column_by_name(name)
                        .ok_or_else(|| problem(format!("missing column `{name}`")))?;
                    let cast = arrow_cast::cast(column, data_type)
                        .map_err(|e| problem(format!("column `{name}`: {e}")))?;
                    if let Some(row) = (0..cast.len()).find(|&row| cast.is_null(row)) {
                        return Err(problem(format!("column `{name}` is null in row {row}")));
                    }
                    Ok(cast)
                };
                let tables = column("table_name", &DataType::Utf8)?;
                let tables = tables.as_string::<i32>();
                let keys = column("key", &DataType::Binary)?;
                let keys = keys.as_binary::<i32>();
                let seen = column("seen_before", &DataType::Boolean)?;
                let seen = seen.as_boolean();
                let names = ["accesses", "bytes_read", "writes", "reads_before_write"];
                let mut counts = Vec::with_capacity(names.len());
                for name in names {
                    counts.push(column(name, &DataType::Int64)?);
                }
                let counts: Vec<&[i64]> = counts
                    .iter()
                    .map(|c| c.as_primitive::<Int64Type>().values().as_ref())
                    .collect();
                for (slot, name) in recorded.iter_mut().zip(["as_of_us", "horizon_us"]) {
                    let values = column(name, &DataType::Int64)?;
                    *slot =
                        crate::export::constant_integer(&values, name, *slot).map_err(problem)?;
                }
                let rows = counts[0]
                    .iter()
                    .zip(counts[1])
                    .zip(counts[2].iter().zip(counts[3]));
                for (row, ((&accesses, &bytes_read), (&writes, &reads_before_write))) in
                    rows.enumerate()
                {
                    let count = |column: usize, value: i64| {
                        u64::try_from(value).map_err(|_| {
                            problem(format!(
                                "column `{}` is negative ({value}) for key {} of table `{}`",
                                names[column],
                                crate::keys::display_key(keys.value(row)),
                                tables.value(row)
                            ))
                        })
                    };
                    let outcome = Outcome {
                        accesses: count(0, accesses)?,
                        bytes_read: count(1, bytes_read)?,
                        writes: count(2, writes)?,
                        reads_before_write: count(3, reads_before_write)?,
                    };
                    keys_seen_before += usize::from(seen.value(row));
                    future.record(tables.value(row), keys.value(row), outcome);
                }
            }
        }
        let missing = |what: &str| ModelError::Table {
            path: path.to_path_buf(),
            problem: format!("no {what} recorded: the table has no rows"),
        };
        let as_of = recorded[0].ok_or_else(|| missing("cut-off"))?;
        let horizon = recorded[1].ok_or_else(|| missing("horizon"))?;
        if horizon <= 0 {
            return Err(ModelError::Table {
                path: path.to_path_buf(),
                problem: format!("column `horizon_us` is {horizon}, not positive"),
            });
        }
        Ok(LabelTable {
            as_of,
            horizon,
            keys_seen_before,
            future,
        })
    }
}
