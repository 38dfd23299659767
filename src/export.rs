//! Report files for notebooks (evaluation and simulation): named Arrow
//! columns in, one Parquet file out; output folders created on the way.

use std::path::Path;

use arrow_array::{ArrayRef, RecordBatch};

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
