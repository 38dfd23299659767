//! Parquet files shared with notebooks and other engines: reports
//! (evaluation and simulation) written as named Arrow columns, output
//! folders created on the way, tables read back whether one engine wrote
//! one file or a cluster wrote a folder of part files, and the stamp that
//! says whether a file changed since it was read.

use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Writes `columns` (all the same length) as one Parquet file at `path`,
/// creating its folder. The error names the file and the cause.
pub fn write_columns(path: &Path, columns: Vec<(&str, ArrayRef)>) -> std::io::Result<()> {
    let batch = RecordBatch::try_from_iter(columns).map_err(std::io::Error::other)?;
    create_parent_dir(path)?;
    let file = std::fs::File::create(path)?;
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None)
        .map_err(std::io::Error::other)?;
    writer.write(&batch).map_err(std::io::Error::other)?;
    writer.close().map_err(std::io::Error::other)?;
    Ok(())
}

/// Creates the folder an output file at `path` goes into.
pub fn create_parent_dir(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => std::fs::create_dir_all(parent),
        None => Ok(()),
    }
}

/// A file's identity for "has it changed" (log files followed, feature
/// tables re-read): length and modification time in nanoseconds.
pub type FileStamp = (u64, u128);

/// The stamp of the file at `path`; `None` when it cannot be read.
pub fn file_stamp(path: &Path) -> Option<FileStamp> {
    let metadata = std::fs::metadata(path).ok()?;
    let modified = metadata
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some((metadata.len(), modified))
}

/// The Parquet files that make up the table at `path`: the file itself, or
/// the `*.parquet` files of a folder in name order (how Spark and other
/// cluster engines write one table: `part-00000-….parquet`, … beside
/// `_SUCCESS` and checksum files, which are skipped).
pub fn table_parts(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut parts = Vec::new();
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".parquet") && !name.starts_with(['.', '_']) {
            parts.push(entry.path());
        }
    }
    parts.sort();
    if parts.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "a folder with no .parquet files",
        ));
    }
    Ok(parts)
}

/// The values of the integer columns `names` in the first row of the table
/// at `path` (a file or a folder of part files), without reading the rest;
/// `None` when a column is missing or the table has no rows.
pub fn first_row_integers(path: &Path, names: &[&str]) -> Result<Option<Vec<i64>>, String> {
    let parts = table_parts(path).map_err(|e| format!("{}: {e}", path.display()))?;
    for part in parts {
        let problem = |e: &dyn std::fmt::Display| format!("{}: {e}", part.display());
        let file = std::fs::File::open(&part).map_err(|e| problem(&e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| problem(&e))?;
        let schema = builder.schema().clone();
        let Some(indices) = names
            .iter()
            .map(|name| schema.index_of(name).ok())
            .collect::<Option<Vec<usize>>>()
        else {
            return Ok(None);
        };
        let mask = ProjectionMask::roots(builder.parquet_schema(), indices.iter().copied());
        let mut reader = builder
            .with_projection(mask)
            .with_batch_size(1)
            .with_limit(1)
            .build()
            .map_err(|e| problem(&e))?;
        let Some(batch) = reader.next().transpose().map_err(|e| problem(&e))? else {
            continue;
        };
        if batch.num_rows() == 0 {
            continue;
        }
        let mut values = Vec::with_capacity(names.len());
        for name in names {
            let column = batch.column_by_name(name).expect("projected");
            let column = arrow_cast::cast(column, &DataType::Int64)
                .map_err(|e| problem(&format!("column `{name}`: {e}")))?;
            if column.is_null(0) {
                return Err(problem(&format!(
                    "column `{name}` is null in the first row"
                )));
            }
            values.push(column.as_primitive::<Int64Type>().value(0));
        }
        return Ok(Some(values));
    }
    Ok(None)
}

/// The one integer every row of `column` holds (a table's cut-off or
/// horizon, repeated in each row), which must equal `known` (what the
/// metadata or earlier rows said) when that is set; `known` for a batch
/// without rows.
pub fn constant_integer(
    column: &ArrayRef,
    name: &str,
    known: Option<i64>,
) -> Result<Option<i64>, String> {
    let values =
        arrow_cast::cast(column, &DataType::Int64).map_err(|e| format!("column `{name}`: {e}"))?;
    let values = values.as_primitive::<Int64Type>();
    let mut agreed = known;
    for row in 0..values.len() {
        if values.is_null(row) {
            return Err(format!("column `{name}` is null in row {row} of a batch"));
        }
        let value = values.value(row);
        match agreed {
            Some(expected) if expected != value => {
                return Err(format!(
                    "column `{name}` holds {value} in row {row} of a batch where {expected} was recorded before: one table is one cut-off"
                ));
            }
            _ => agreed = Some(value),
        }
    }
    Ok(agreed)
}
