//! The typed batch the reader hands downstream, and the one place where Arrow
//! arrays of any accepted type are converted and checked.

use std::collections::HashMap;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, TimeUnit};

use super::LogError;
use super::schema::{KEY, OP, Op, SIZE, TABLE, TENANT, TS};

/// A batch of accesses, all within the scan's time range, all values checked.
///
/// Tables are given as a batch-local dictionary (`table_names` indexed by
/// `table_index`), so consumers map each distinct name once per batch.
#[derive(Debug)]
pub struct AccessBatch {
    ts: ScalarBuffer<i64>,
    key_offsets: OffsetBuffer<i32>,
    key_bytes: Buffer,
    keys_are_utf8: bool,
    table_names: Vec<String>,
    table_index: Vec<u32>,
    ops: Vec<Op>,
    sizes: ScalarBuffer<i64>,
    tenant_names: Vec<String>,
    /// Per row, an index into `tenant_names` or [`NO_TENANT`]; `None` when
    /// the file has no tenant column.
    tenant_index: Option<Vec<u32>>,
}

/// In [`AccessBatch::tenant_index`]: the row names no tenant.
pub const NO_TENANT: u32 = u32::MAX;

impl AccessBatch {
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// Event times, microseconds since the epoch (UTC).
    pub fn ts(&self) -> &[i64] {
        &self.ts
    }

    pub fn key(&self, row: usize) -> &[u8] {
        let start = self.key_offsets[row] as usize;
        let end = self.key_offsets[row + 1] as usize;
        &self.key_bytes[start..end]
    }

    /// True when the file stored keys as UTF-8 strings (not binary).
    pub fn keys_are_utf8(&self) -> bool {
        self.keys_are_utf8
    }

    pub fn table_names(&self) -> &[String] {
        &self.table_names
    }

    /// Per row, an index into [`Self::table_names`].
    pub fn table_index(&self) -> &[u32] {
        &self.table_index
    }

    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    pub fn sizes(&self) -> &[i64] {
        &self.sizes
    }

    /// Tenants named in this batch (see [`Self::tenant_index`]).
    pub fn tenant_names(&self) -> &[String] {
        &self.tenant_names
    }

    /// Per row, an index into [`Self::tenant_names`] or [`NO_TENANT`] (a
    /// null tenant); `None` when the log has no tenant column.
    pub fn tenant_index(&self) -> Option<&[u32]> {
        self.tenant_index.as_deref()
    }

    /// Converts a record batch holding (at least) the required columns.
    /// `first_row` is the file row number of the batch's first row, so errors
    /// can point at the offending row.
    pub(crate) fn from_record_batch(
        batch: &RecordBatch,
        path: &Path,
        first_row: u64,
    ) -> Result<Self, LogError> {
        let column = |name: &'static str| -> Result<&ArrayRef, LogError> {
            let array = batch
                .column_by_name(name)
                .expect("the reader projects every required column");
            if array.null_count() > 0 {
                let null_row = (0..array.len())
                    .find(|&row| array.is_null(row))
                    .unwrap_or_default();
                return Err(LogError::BadValue {
                    path: path.to_path_buf(),
                    column: name,
                    row: first_row + null_row as u64,
                    problem: "is null, but the column is required".into(),
                });
            }
            Ok(array)
        };
        let cast_failure =
            |name: &'static str, error: arrow_schema::ArrowError| LogError::BadValue {
                path: path.to_path_buf(),
                column: name,
                row: first_row,
                problem: format!("cannot be converted: {error}"),
            };

        let ts_array = column(TS)?;
        let ts_micros = match ts_array.data_type() {
            DataType::Timestamp(TimeUnit::Microsecond, _) => ts_array.clone(),
            DataType::Timestamp(_, tz) => arrow_cast::cast(
                ts_array,
                &DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
            )
            .map_err(|e| cast_failure(TS, e))?,
            other => unreachable!("schema check admits only timestamps, got {other}"),
        };
        let ts = ts_micros
            .as_primitive::<TimestampMicrosecondType>()
            .values()
            .clone();
        if let Some(row) = ts.iter().position(|&t| !crate::time::is_calendar_time(t)) {
            return Err(LogError::BadValue {
                path: path.to_path_buf(),
                column: TS,
                row: first_row + row as u64,
                problem: format!("{} µs since 1970 is outside the years 1 to 9999", ts[row]),
            });
        }

        let key_array = column(KEY)?;
        let (keys_are_utf8, key_offsets, key_bytes) = match key_array.data_type() {
            DataType::Utf8 => {
                let keys = key_array.as_string::<i32>();
                (true, keys.offsets().clone(), keys.values().clone())
            }
            DataType::Binary => {
                let keys = key_array.as_binary::<i32>();
                (false, keys.offsets().clone(), keys.values().clone())
            }
            DataType::LargeBinary | DataType::BinaryView => {
                let cast = arrow_cast::cast(key_array, &DataType::Binary)
                    .map_err(|e| cast_failure(KEY, e))?;
                let keys = cast.as_binary::<i32>();
                (false, keys.offsets().clone(), keys.values().clone())
            }
            _ => {
                let cast = arrow_cast::cast(key_array, &DataType::Utf8)
                    .map_err(|e| cast_failure(KEY, e))?;
                let keys = cast.as_string::<i32>();
                (true, keys.offsets().clone(), keys.values().clone())
            }
        };

        let (table_names, table_index) = dictionary_of(column(TABLE)?, TABLE, path, first_row)?;
        let (op_names, op_index) = dictionary_of(column(OP)?, OP, path, first_row)?;
        let op_of_name = op_names
            .iter()
            .map(|name| Op::parse(name).ok_or(name))
            .collect::<Vec<_>>();
        let ops = op_index
            .iter()
            .enumerate()
            .map(|(row, &index)| {
                op_of_name[index as usize].map_err(|name| LogError::BadValue {
                    path: path.to_path_buf(),
                    column: OP,
                    row: first_row + row as u64,
                    problem: format!(
                        "unknown operation `{name}` (expected read, insert, update or delete)"
                    ),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let size_array = column(SIZE)?;
        let size_i64 = if size_array.data_type() == &DataType::Int64 {
            size_array.clone()
        } else {
            arrow_cast::cast(size_array, &DataType::Int64).map_err(|e| cast_failure(SIZE, e))?
        };
        if let Some(row) = (0..size_i64.len()).find(|&row| size_i64.is_null(row)) {
            return Err(LogError::BadValue {
                path: path.to_path_buf(),
                column: SIZE,
                row: first_row + row as u64,
                problem: "does not fit a 64-bit signed integer".into(),
            });
        }
        let sizes = size_i64.as_primitive::<Int64Type>().values().clone();
        if let Some(row) = sizes.iter().position(|&size| size < 0) {
            return Err(LogError::BadValue {
                path: path.to_path_buf(),
                column: SIZE,
                row: first_row + row as u64,
                problem: format!("is negative ({})", sizes[row]),
            });
        }

        let (tenant_names, tenant_index) = match batch.column_by_name(TENANT) {
            Some(array) => {
                let (names, mut index) = dictionary_of(array, TENANT, path, first_row)?;
                for (row, slot) in index.iter_mut().enumerate() {
                    if array.is_null(row) {
                        *slot = NO_TENANT;
                    }
                }
                (names, Some(index))
            }
            None => (Vec::new(), None),
        };

        Ok(AccessBatch {
            tenant_names,
            tenant_index,
            ts,
            key_offsets,
            key_bytes,
            keys_are_utf8,
            table_names,
            table_index,
            ops,
            sizes,
        })
    }
}

/// Turns a string column (plain or dictionary) into distinct values and a
/// per-row index into them.
fn dictionary_of(
    array: &ArrayRef,
    column: &'static str,
    path: &Path,
    first_row: u64,
) -> Result<(Vec<String>, Vec<u32>), LogError> {
    let wanted = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    match array.data_type() {
        data_type if *data_type == wanted => {
            let dictionary = array.as_dictionary::<Int32Type>();
            let names = dictionary
                .values()
                .as_string::<i32>()
                .iter()
                .map(|name| name.unwrap_or_default().to_string())
                .collect();
            let index = dictionary
                .keys()
                .values()
                .iter()
                .map(|&k| k as u32)
                .collect();
            Ok((names, index))
        }
        DataType::Utf8 => {
            let strings = array.as_string::<i32>();
            let mut seen: HashMap<&str, u32> = HashMap::new();
            let mut names = Vec::new();
            let index = strings
                .iter()
                .map(|value| {
                    let value = value.unwrap_or_default();
                    *seen.entry(value).or_insert_with(|| {
                        names.push(value.to_string());
                        (names.len() - 1) as u32
                    })
                })
                .collect();
            Ok((names, index))
        }
        _ => {
            let cast = arrow_cast::cast(array, &wanted).map_err(|error| LogError::BadValue {
                path: path.to_path_buf(),
                column,
                row: first_row,
                problem: format!("cannot be read as strings: {error}"),
            })?;
            dictionary_of(&cast, column, path, first_row)
        }
    }
}
