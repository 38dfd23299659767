//! The feature table and its Parquet form (the hand-off to models, policies
//! and notebooks, and what `sql/features.sql` produces too).

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, BooleanBuilder, Float64Builder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{
    Array, ArrayRef, BinaryArray, Float64Array, Int64Array, RecordBatch, StringArray,
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
    FEATURE_SET_NAME, FEATURE_SET_VERSION, GAPS, HORIZON_HALF_LIVES, HORIZON_WINDOWS, KeyFeatures,
};
use crate::time::{format_instant, parse_instant};

const META_SET: &str = "shadowcast.feature_set";
const META_VERSION: &str = "shadowcast.feature_set_version";
const META_AS_OF: &str = "shadowcast.as_of";
const META_HORIZON: &str = "shadowcast.horizon_us";
const META_HORIZON_SCALE: &str = "shadowcast.horizon_scale";

/// Features of every key as of one cut-off, sorted by (table, key bytes),
/// held column by column in record batches of the schema of [`column_names`]
/// (at most [`BATCH_ROWS`] rows each); [`FeatureTable::rows`] gives typed rows.
#[derive(Clone, Debug)]
pub struct FeatureTable {
    pub as_of: i64,
    /// The horizon H the features on its time scale are measured in.
    pub horizon: i64,
    /// Keys are written as UTF-8 strings when every log file had string keys.
    pub keys_are_utf8: bool,
    /// Events that went into the table.
    pub events_scanned: u64,
    batches: Vec<RecordBatch>,
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

/// Which (table, key) rows to keep while reading a table.
pub type KeyFilter<'a> = &'a dyn Fn(&str, &[u8]) -> bool;

/// The columns before the numeric features: who the key is.
pub const KEY_COLUMNS: [&str; 3] = ["table_name", "key", "tenant"];

/// Column names in file order: the table, the key, its tenant (null when
/// the logs name none; see [`KeyFeatures::tenant`]), then every numeric
/// feature: first the policy ABI's list (policies see the same features
/// under the same names), then those on the horizon's time scale. A test
/// checks that they follow [`super::definition::WINDOWS`] and
/// [`super::definition::DECAY_HALF_LIVES`].
pub fn column_names() -> Vec<String> {
    KEY_COLUMNS
        .into_iter()
        .chain(shadowcast_policy::abi::FEATURE_NAMES)
        .map(String::from)
        .chain(horizon_feature_names())
        .collect()
}

/// The names of the features on the horizon's time scale, in file order.
pub fn horizon_feature_names() -> Vec<String> {
    let windows = HORIZON_WINDOWS
        .iter()
        .map(|(suffix, _, _)| format!("events_{suffix}"));
    let decays = HORIZON_HALF_LIVES
        .iter()
        .map(|(suffix, _)| format!("decay_{suffix}"));
    let gaps = (1..=GAPS).map(|gap| format!("gap{gap}_h"));
    windows
        .chain(decays)
        .chain(gaps)
        .chain(std::iter::once("age_h".to_string()))
        .collect()
}

/// The multiples of H behind the horizon features, for the file metadata.
fn horizon_scale() -> String {
    let windows: Vec<String> = HORIZON_WINDOWS
        .iter()
        .map(|(suffix, numerator, denominator)| {
            format!("events_{suffix}={numerator}/{denominator}")
        })
        .collect();
    let decays: Vec<String> = HORIZON_HALF_LIVES
        .iter()
        .map(|(suffix, multiple)| format!("decay_{suffix}={multiple}"))
        .collect();
    format!(
        "windows (of H) {}; half-lives (of H) {}",
        windows.join(","),
        decays.join(",")
    )
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
                "tenant" => (DataType::Utf8, true),
                "is_deleted" => (DataType::Boolean, false),
                "secs_since_last_read" | "secs_since_last_write" => (DataType::Float64, true),
                n if n.starts_with("gap") => (DataType::Float64, true),
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

/// Rows per batch in memory and per row group on disk.
pub const BATCH_ROWS: usize = 256 * 1024;

/// How one numeric column reads its value from a row.
#[derive(Clone, Copy)]
enum Numeric {
    Int(fn(&KeyFeatures) -> i64),
    Float(fn(&KeyFeatures) -> f64),
    OptionalFloat(fn(&KeyFeatures) -> Option<f64>),
    Bool(fn(&KeyFeatures) -> bool),
}

impl Numeric {
    /// The value as a model input reads the column: numbers as they are,
    /// booleans as 0 or 1, a missing value as NaN.
    fn input(self, row: &KeyFeatures) -> f64 {
        match self {
            Numeric::Int(value) => value(row) as f64,
            Numeric::Float(value) => value(row),
            Numeric::OptionalFloat(value) => value(row).unwrap_or(f64::NAN),
            Numeric::Bool(value) => f64::from(u8::from(value(row))),
        }
    }

    /// An empty column of this kind, with room for `capacity` values.
    fn values(self, capacity: usize) -> ColumnValues {
        match self {
            Numeric::Int(_) => ColumnValues::Int(Vec::with_capacity(capacity)),
            Numeric::Float(_) => ColumnValues::Float(Vec::with_capacity(capacity)),
            Numeric::OptionalFloat(_) => {
                ColumnValues::OptionalFloat(Float64Builder::with_capacity(capacity))
            }
            Numeric::Bool(_) => ColumnValues::Bool(BooleanBuilder::with_capacity(capacity)),
        }
    }
}

/// The values of one numeric column so far.
enum ColumnValues {
    Int(Vec<i64>),
    Float(Vec<f64>),
    OptionalFloat(Float64Builder),
    Bool(BooleanBuilder),
}

/// The numeric columns after [`KEY_COLUMNS`], in [`column_names`] order.
const NUMERIC_COLUMNS: [Numeric; 40] = {
    use Numeric::{Bool, Float, Int, OptionalFloat};
    [
        Float(|r| r.first_seen_age_s),
        Int(|r| r.events[0]),
        Int(|r| r.events[1]),
        Int(|r| r.events[2]),
        Int(|r| r.events[3]),
        Int(|r| r.reads_total),
        Int(|r| r.writes_total),
        Float(|r| r.reads_decay[0]),
        Float(|r| r.reads_decay[1]),
        Float(|r| r.reads_decay[2]),
        Float(|r| r.writes_decay[0]),
        Float(|r| r.writes_decay[1]),
        Float(|r| r.writes_decay[2]),
        OptionalFloat(|r| r.secs_since_last_read),
        OptionalFloat(|r| r.secs_since_last_write),
        Float(|r| r.read_share),
        Float(|r| r.change_rate_per_h),
        Int(|r| r.size_last),
        Int(|r| r.size_max),
        Bool(|r| r.is_deleted),
        Float(|r| r.tod_share[0]),
        Float(|r| r.tod_share[1]),
        Float(|r| r.tod_share[2]),
        Float(|r| r.tod_share[3]),
        Float(|r| r.tod_share_next_6h),
        Int(|r| r.prefix_events_24h),
        Int(|r| r.range_events_24h),
        Int(|r| r.horizon_events[0]),
        Int(|r| r.horizon_events[1]),
        Int(|r| r.horizon_events[2]),
        Int(|r| r.horizon_events[3]),
        Int(|r| r.horizon_events[4]),
        Float(|r| r.horizon_decay[0]),
        Float(|r| r.horizon_decay[1]),
        Float(|r| r.horizon_decay[2]),
        OptionalFloat(|r| r.gaps_h[0]),
        OptionalFloat(|r| r.gaps_h[1]),
        OptionalFloat(|r| r.gaps_h[2]),
        OptionalFloat(|r| r.gaps_h[3]),
        Float(|r| r.age_h),
    ]
};

/// A row's numeric columns as model inputs read them (see
/// `model::input::raw_inputs`), in column order, without building a batch.
pub(crate) fn input_values(row: &KeyFeatures) -> impl Iterator<Item = f64> + '_ {
    NUMERIC_COLUMNS.iter().map(move |column| column.input(row))
}

/// Builds one record batch row by row: each row is pushed into every column
/// at once, so a batch is built in a single pass over its rows.
pub(crate) struct BatchBuilder {
    keys_are_utf8: bool,
    tables: StringBuilder,
    tenants: StringBuilder,
    utf8_keys: StringBuilder,
    binary_keys: BinaryBuilder,
    values: Vec<ColumnValues>,
}

impl BatchBuilder {
    pub fn new(keys_are_utf8: bool, capacity: usize) -> Self {
        BatchBuilder {
            keys_are_utf8,
            tables: StringBuilder::with_capacity(capacity, capacity * 8),
            tenants: StringBuilder::with_capacity(capacity, capacity * 8),
            utf8_keys: StringBuilder::new(),
            binary_keys: BinaryBuilder::new(),
            values: NUMERIC_COLUMNS
                .iter()
                .map(|column| column.values(capacity))
                .collect(),
        }
    }

    pub fn push(&mut self, row: &KeyFeatures) {
        self.tables.append_value(&row.table);
        self.tenants.append_option(row.tenant.as_deref());
        if self.keys_are_utf8 {
            self.utf8_keys
                .append_value(std::str::from_utf8(&row.key).expect("UTF-8 keys"));
        } else {
            self.binary_keys.append_value(&row.key);
        }
        for (column, values) in NUMERIC_COLUMNS.iter().zip(&mut self.values) {
            match (column, values) {
                (Numeric::Int(value), ColumnValues::Int(out)) => out.push(value(row)),
                (Numeric::Float(value), ColumnValues::Float(out)) => out.push(value(row)),
                (Numeric::OptionalFloat(value), ColumnValues::OptionalFloat(out)) => {
                    out.append_option(value(row))
                }
                (Numeric::Bool(value), ColumnValues::Bool(out)) => out.append_value(value(row)),
                _ => unreachable!("each column's values are of its kind"),
            }
        }
    }

    pub fn finish(mut self) -> RecordBatch {
        let keys: ArrayRef = if self.keys_are_utf8 {
            Arc::new(self.utf8_keys.finish())
        } else {
            Arc::new(self.binary_keys.finish())
        };
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.tables.finish()),
            keys,
            Arc::new(self.tenants.finish()),
        ];
        columns.extend(self.values.into_iter().map(|column| -> ArrayRef {
            match column {
                ColumnValues::Int(values) => Arc::new(Int64Array::from(values)),
                ColumnValues::Float(values) => Arc::new(Float64Array::from(values)),
                ColumnValues::OptionalFloat(mut values) => Arc::new(values.finish()),
                ColumnValues::Bool(mut values) => Arc::new(values.finish()),
            }
        }));
        RecordBatch::try_new(schema(self.keys_are_utf8), columns).expect("columns match schema")
    }
}

fn record_batch_of(rows: &[KeyFeatures], keys_are_utf8: bool) -> RecordBatch {
    let mut builder = BatchBuilder::new(keys_are_utf8, rows.len());
    for row in rows {
        builder.push(row);
    }
    builder.finish()
}

/// A key column of either accepted type, read as bytes.
pub(crate) enum KeyColumn<'a> {
    Utf8(&'a StringArray),
    Binary(&'a BinaryArray),
}

impl<'a> KeyColumn<'a> {
    pub(crate) fn of(array: &'a ArrayRef) -> Self {
        match array.as_string_opt::<i32>() {
            Some(strings) => KeyColumn::Utf8(strings),
            None => KeyColumn::Binary(array.as_binary::<i32>()),
        }
    }

    pub(crate) fn value(&self, row: usize) -> &'a [u8] {
        match self {
            KeyColumn::Utf8(strings) => strings.value(row).as_bytes(),
            KeyColumn::Binary(bytes) => bytes.value(row),
        }
    }
}

/// Reads row `row` of a batch in the schema of [`column_names`]; the
/// indices follow that order (a round-trip test holds them to it).
fn row_of(batch: &RecordBatch, row: usize) -> KeyFeatures {
    let column = |index: usize| batch.column(index);
    let int = |index: usize| column(index).as_primitive::<Int64Type>().value(row);
    let float = |index: usize| column(index).as_primitive::<Float64Type>().value(row);
    let optional = |index: usize| {
        let values = column(index).as_primitive::<Float64Type>();
        values.is_valid(row).then(|| values.value(row))
    };
    let key = KeyColumn::of(column(1)).value(row).to_vec();
    KeyFeatures {
        table: column(0).as_string::<i32>().value(row).into(),
        key,
        tenant: {
            let tenants = column(2).as_string::<i32>();
            tenants.is_valid(row).then(|| tenants.value(row).into())
        },
        first_seen_age_s: float(3),
        events: [int(4), int(5), int(6), int(7)],
        reads_total: int(8),
        writes_total: int(9),
        reads_decay: [float(10), float(11), float(12)],
        writes_decay: [float(13), float(14), float(15)],
        secs_since_last_read: optional(16),
        secs_since_last_write: optional(17),
        read_share: float(18),
        change_rate_per_h: float(19),
        size_last: int(20),
        size_max: int(21),
        is_deleted: column(22).as_boolean().value(row),
        tod_share: [float(23), float(24), float(25), float(26)],
        tod_share_next_6h: float(27),
        prefix_events_24h: int(28),
        range_events_24h: int(29),
        horizon_events: [int(30), int(31), int(32), int(33), int(34)],
        horizon_decay: [float(35), float(36), float(37)],
        gaps_h: [optional(38), optional(39), optional(40), optional(41)],
        age_h: float(42),
    }
}

impl FeatureTable {
    /// A table from rows already in (table, key) order.
    pub fn from_rows(
        as_of: i64,
        horizon: i64,
        keys_are_utf8: bool,
        events_scanned: u64,
        rows: &[KeyFeatures],
    ) -> Self {
        let batches = rows
            .par_chunks(BATCH_ROWS)
            .map(|chunk| record_batch_of(chunk, keys_are_utf8))
            .collect();
        Self::from_batches(as_of, horizon, keys_are_utf8, events_scanned, batches)
    }

    pub(crate) fn from_batches(
        as_of: i64,
        horizon: i64,
        keys_are_utf8: bool,
        events_scanned: u64,
        batches: Vec<RecordBatch>,
    ) -> Self {
        FeatureTable {
            as_of,
            horizon,
            keys_are_utf8,
            events_scanned,
            batches,
        }
    }

    /// The given rows only (ascending indices into the table), in the same
    /// order and with the same feature values.
    pub fn take(&self, rows: &[usize]) -> FeatureTable {
        let mut batches = Vec::new();
        let (mut next, mut first) = (0, 0);
        for batch in &self.batches {
            let end = first + batch.num_rows();
            let taken = rows[next..].partition_point(|&row| row < end);
            let local = arrow_array::UInt32Array::from_iter_values(
                rows[next..next + taken]
                    .iter()
                    .map(|&row| (row - first) as u32),
            );
            if !local.is_empty() {
                batches.push(
                    arrow_select::take::take_record_batch(batch, &local)
                        .expect("row indices within the batch"),
                );
            }
            next += taken;
            first = end;
        }
        Self::from_batches(
            self.as_of,
            self.horizon,
            self.keys_are_utf8,
            self.events_scanned,
            batches,
        )
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The columns, batch by batch, in the schema of [`column_names`].
    pub fn batches(&self) -> &[RecordBatch] {
        &self.batches
    }

    pub fn into_batches(self) -> Vec<RecordBatch> {
        self.batches
    }

    /// A table of no keys, of the cut-off `as_of` and horizon `horizon`.
    pub fn empty(as_of: i64, horizon: i64) -> FeatureTable {
        Self::from_batches(as_of, horizon, true, 0, Vec::new())
    }

    /// Who each key is — table, key bytes, tenant — in (table, key) order,
    /// read from the columns without decoding the features.
    pub fn for_each_key(&self, mut each: impl FnMut(&str, &[u8], Option<&str>)) {
        for batch in &self.batches {
            let tables = batch.column(0).as_string::<i32>();
            let tenants = batch.column(2).as_string::<i32>();
            let keys = KeyColumn::of(batch.column(1));
            for row in 0..batch.num_rows() {
                let tenant = tenants.is_valid(row).then(|| tenants.value(row));
                each(tables.value(row), keys.value(row), tenant);
            }
        }
    }

    /// Every row, typed, in (table, key) order.
    pub fn rows(&self) -> impl Iterator<Item = KeyFeatures> + '_ {
        self.batches
            .iter()
            .flat_map(|batch| (0..batch.num_rows()).map(move |row| row_of(batch, row)))
    }

    /// Every row of one of a table's batches, typed.
    pub fn rows_of(batch: RecordBatch) -> impl Iterator<Item = KeyFeatures> {
        (0..batch.num_rows()).map(move |row| row_of(&batch, row))
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
            KeyValue::new(META_HORIZON.into(), self.horizon.to_string()),
            KeyValue::new(META_HORIZON_SCALE.into(), horizon_scale()),
        ];
        // Most feature values are distinct: dictionary pages would be built
        // and then abandoned for them, so only low-cardinality columns get one.
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_key_value_metadata(Some(metadata))
            .set_dictionary_enabled(false)
            .set_column_dictionary_enabled("table_name".into(), true)
            .set_column_dictionary_enabled("tenant".into(), true)
            .build();
        let schema = schema(self.keys_are_utf8);
        let writer =
            ArrowWriter::try_new(file, schema.clone(), Some(properties)).map_err(parquet_error)?;
        let (mut file_writer, factory) = writer.into_serialized_writer().map_err(parquet_error)?;
        let fields: Vec<_> = schema.fields().iter().cloned().collect();
        for (index, batch) in self.batches.iter().enumerate() {
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

    /// Reads a feature table written by shadowcast (one file, the cut-off
    /// and horizon in its metadata) or by `sql/features.sql` on another
    /// engine (a file or a folder of part files, the cut-off and horizon in
    /// its `as_of_us` and `horizon_us` columns).
    pub fn read_parquet(path: &Path) -> Result<Self, FeatureFileError> {
        Self::read_parquet_where(path, None)
    }

    /// [`read_parquet`](Self::read_parquet), keeping only the rows whose
    /// (table, key) `keep` accepts, batch by batch as they are read: a
    /// shard of a sharded service holds its share of a table, never the
    /// whole of it.
    pub fn read_parquet_where(
        path: &Path,
        keep: Option<KeyFilter>,
    ) -> Result<Self, FeatureFileError> {
        let parts = crate::export::table_parts(path).map_err(|source| FeatureFileError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let mut read = Vec::with_capacity(parts.len());
        for part in &parts {
            read.push(TablePart::read(part, keep)?);
        }
        let mismatch = |problem: String| FeatureFileError::Mismatch {
            path: path.display().to_string(),
            problem,
        };
        let first = &read[0];
        let agreed = |what: &str, value: fn(&TablePart) -> Option<i64>| {
            let mut seen = read
                .iter()
                .zip(&parts)
                .filter_map(|(part, file)| Some((value(part)?, file)));
            let Some((agreed, first_file)) = seen.next() else {
                return Err(mismatch(format!(
                    "no {what} recorded (neither in the file metadata nor in a column of any row; this release's sql/features.sql writes both)"
                )));
            };
            match seen.find(|(other, _)| *other != agreed) {
                Some((other, file)) => Err(mismatch(format!(
                    "parts disagree on the {what}: {} says {agreed}, {} says {other}",
                    first_file.display(),
                    file.display()
                ))),
                None => Ok(agreed),
            }
        };
        let as_of = agreed("cut-off", |part| part.as_of)?;
        let horizon = agreed("horizon", |part| part.horizon)?;
        if let Some((part, file)) = read
            .iter()
            .zip(&parts)
            .find(|(part, _)| part.keys_are_utf8 != first.keys_are_utf8)
        {
            return Err(mismatch(format!(
                "{} holds {} keys, {} {} keys",
                parts[0].display(),
                if first.keys_are_utf8 {
                    "string"
                } else {
                    "binary"
                },
                file.display(),
                if part.keys_are_utf8 {
                    "string"
                } else {
                    "binary"
                },
            )));
        }
        let keys_are_utf8 = first.keys_are_utf8;
        let events_scanned = read.iter().map(|part| part.events_scanned).sum();
        let batches = read.into_iter().flat_map(|part| part.batches).collect();
        Ok(FeatureTable::from_batches(
            as_of,
            horizon,
            keys_are_utf8,
            events_scanned,
            batches,
        ))
    }

    /// The cut-off and horizon a feature table at `path` records (its
    /// metadata, else the `as_of_us` and `horizon_us` of its first row),
    /// read without loading the table.
    pub fn recorded_cutoff(path: &Path) -> Result<(i64, i64), FeatureFileError> {
        let mismatch = |problem: String| FeatureFileError::Mismatch {
            path: path.display().to_string(),
            problem,
        };
        let parts = crate::export::table_parts(path).map_err(|source| FeatureFileError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let file = File::open(&parts[0]).map_err(|source| FeatureFileError::Io {
            path: parts[0].display().to_string(),
            source,
        })?;
        let reader = parquet::file::reader::SerializedFileReader::new(file).map_err(|source| {
            FeatureFileError::Parquet {
                path: parts[0].display().to_string(),
                source,
            }
        })?;
        let recorded = {
            use parquet::file::reader::FileReader;
            metadata_cutoff(reader.metadata().file_metadata().key_value_metadata())
                .map_err(mismatch)?
        };
        if let (Some(as_of), Some(horizon)) = recorded {
            return Ok((as_of, horizon));
        }
        match crate::export::first_row_integers(path, &["as_of_us", "horizon_us"]).map_err(mismatch)? {
            Some(values) => Ok((values[0], values[1])),
            None => Err(mismatch(
                "no cut-off recorded (neither in the file metadata nor in `as_of_us` and `horizon_us` columns; this release's sql/features.sql writes them)".into(),
            )),
        }
    }

    /// The `n` rows with the highest `score`, best first (ties by table, key).
    pub fn top_by(&self, n: usize, score: impl Fn(&KeyFeatures) -> f64) -> Vec<KeyFeatures> {
        // Positions are in (table, key) order, so ties go to the earlier one.
        let mut ranked: Vec<(f64, usize, usize)> = self
            .batches
            .iter()
            .enumerate()
            .flat_map(|(b, batch)| (0..batch.num_rows()).map(move |row| (b, row)))
            .map(|(b, row)| (score(&row_of(&self.batches[b], row)), b, row))
            .collect();
        let n = n.min(ranked.len());
        if n == 0 {
            return Vec::new();
        }
        let by_score = |a: &(f64, usize, usize), b: &(f64, usize, usize)| {
            b.0.total_cmp(&a.0)
                .then_with(|| (a.1, a.2).cmp(&(b.1, b.2)))
        };
        ranked.select_nth_unstable_by(n - 1, by_score);
        ranked.truncate(n);
        ranked.sort_by(by_score);
        ranked
            .into_iter()
            .map(|(_, b, row)| row_of(&self.batches[b], row))
            .collect()
    }
}

/// The cut-off and horizon a feature table's file metadata records, each
/// `None` when absent (a table written by SQL records them in columns).
fn metadata_cutoff(metadata: Option<&Vec<KeyValue>>) -> Result<(Option<i64>, Option<i64>), String> {
    let lookup = |name: &str| {
        metadata
            .into_iter()
            .flatten()
            .find(|kv| kv.key == name)
            .and_then(|kv| kv.value.clone())
    };
    let as_of = lookup(META_AS_OF)
        .map(|text| parse_instant(&text))
        .transpose()?;
    let horizon = lookup(META_HORIZON)
        .map(|text| {
            text.parse::<i64>()
                .ok()
                .filter(|horizon| *horizon > 0)
                .ok_or_else(|| format!("`{META_HORIZON}` is `{text}`, not a positive number"))
        })
        .transpose()?;
    Ok((as_of, horizon))
}

/// One Parquet file of a feature table, its columns cast to the canonical
/// schema; the cut-off and horizon as the file records them, if it does.
struct TablePart {
    as_of: Option<i64>,
    horizon: Option<i64>,
    keys_are_utf8: bool,
    events_scanned: u64,
    batches: Vec<RecordBatch>,
}

impl TablePart {
    fn read(path: &Path, keep: Option<KeyFilter>) -> Result<Self, FeatureFileError> {
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
        let (mut as_of, mut horizon) = metadata_cutoff(metadata.as_ref()).map_err(mismatch)?;
        let file_schema = builder.schema().clone();
        let key_type = file_schema
            .field_with_name("key")
            .map(|field| field.data_type().clone())
            .map_err(|_| mismatch("missing column `key`".into()))?;
        let keys_are_utf8 = !matches!(
            key_type,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView
        );
        let canonical = schema(keys_are_utf8);
        for field in canonical.fields() {
            let name = field.name();
            if name != "tenant" && file_schema.field_with_name(name).is_err() {
                let hint = if horizon_feature_names().contains(name) {
                    format!(
                        "; the table predates feature set version {FEATURE_SET_VERSION} (no features on the horizon's time scale): compute it again with this release"
                    )
                } else {
                    String::new()
                };
                return Err(mismatch(format!("missing column `{name}`{hint}")));
            }
        }
        let reader = builder
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(parquet_error)?;
        let mut batches = Vec::new();
        let mut events_scanned = 0u64;
        for batch in reader {
            let batch = batch.map_err(|e| parquet_error(e.into()))?;
            for (name, recorded) in [("as_of_us", &mut as_of), ("horizon_us", &mut horizon)] {
                if let Some(column) = batch.column_by_name(name) {
                    *recorded = crate::export::constant_integer(column, name, *recorded)
                        .map_err(&mismatch)?;
                }
            }
            let columns = canonical
                .fields()
                .iter()
                .map(|field| {
                    let name = field.name();
                    let column = match batch.column_by_name(name) {
                        Some(column) => column.clone(),
                        // Written before tenants were kept, or by SQL that
                        // leaves them out: no key has one.
                        None => arrow_array::new_null_array(&DataType::Utf8, batch.num_rows()),
                    };
                    arrow_cast::cast(&column, field.data_type())
                        .map_err(|e| mismatch(format!("column `{name}`: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut batch = RecordBatch::try_new(canonical.clone(), columns)
                .map_err(|e| mismatch(e.to_string()))?;
            if let Some(keep) = keep {
                let tables = batch.column(0).as_string::<i32>();
                let keys = KeyColumn::of(batch.column(1));
                let kept: arrow_array::BooleanArray = (0..batch.num_rows())
                    .map(|row| Some(keep(tables.value(row), keys.value(row))))
                    .collect();
                batch = arrow_select::filter::filter_record_batch(&batch, &kept)
                    .map_err(|e| mismatch(e.to_string()))?;
                if batch.num_rows() == 0 {
                    continue;
                }
            }
            for name in ["reads_total", "writes_total"] {
                let counts = batch.column_by_name(name).expect("canonical column");
                events_scanned += counts
                    .as_primitive::<Int64Type>()
                    .values()
                    .iter()
                    .sum::<i64>() as u64;
            }
            batches.push(batch);
        }
        if horizon.is_some_and(|horizon| horizon <= 0) {
            return Err(mismatch("column `horizon_us` is not positive".into()));
        }
        Ok(TablePart {
            as_of,
            horizon,
            keys_are_utf8,
            events_scanned,
            batches,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::definition::{DECAY_HALF_LIVES, WINDOWS};

    #[test]
    fn feature_names_follow_the_windows_and_half_lives() {
        let names = column_names();
        for (suffix, _) in WINDOWS {
            assert!(
                names.contains(&format!("events_{suffix}")),
                "events_{suffix}"
            );
        }
        for (suffix, _) in DECAY_HALF_LIVES {
            assert!(names.contains(&format!("reads_decay_{suffix}")));
            assert!(names.contains(&format!("writes_decay_{suffix}")));
        }
        let counted = 3 + 1 + WINDOWS.len() + 2 + 2 * DECAY_HALF_LIVES.len() + 14;
        let on_horizon = HORIZON_WINDOWS.len() + HORIZON_HALF_LIVES.len() + GAPS + 1;
        assert_eq!(names.len(), counted + on_horizon);
    }

    fn sample_row(index: i64) -> KeyFeatures {
        let f = index as f64;
        KeyFeatures {
            table: "t".into(),
            key: format!("k:{index:03}").into_bytes(),
            tenant: (index % 3 != 0).then(|| format!("tenant-{}", index % 2).into()),
            first_seen_age_s: f + 0.5,
            events: [index, index + 1, index + 2, index + 3],
            reads_total: index + 4,
            writes_total: index + 5,
            reads_decay: [f + 0.1, f + 0.2, f + 0.3],
            writes_decay: [f + 0.4, f + 0.6, f + 0.7],
            secs_since_last_read: (index % 2 == 0).then_some(f + 0.8),
            secs_since_last_write: (index % 3 == 0).then_some(f + 0.9),
            read_share: 0.25,
            change_rate_per_h: f + 1.1,
            size_last: index + 6,
            size_max: index + 7,
            is_deleted: index % 5 == 0,
            tod_share: [0.1, 0.2, 0.3, 0.4],
            tod_share_next_6h: 0.6,
            prefix_events_24h: index + 8,
            range_events_24h: index + 9,
            horizon_events: [index + 10, index + 11, index + 12, index + 13, index + 14],
            horizon_decay: [f + 1.2, f + 1.3, f + 1.4],
            gaps_h: [
                Some(f + 1.5),
                (index % 2 == 0).then_some(f + 1.6),
                None,
                None,
            ],
            age_h: f + 1.7,
        }
    }

    #[test]
    fn a_filtered_read_keeps_exactly_the_accepted_keys() {
        let rows: Vec<KeyFeatures> = (0..50).map(sample_row).collect();
        let table = FeatureTable::from_rows(7, 11, true, 0, &rows);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.parquet");
        table.write_parquet(&path).unwrap();
        let wanted: Vec<KeyFeatures> = rows
            .iter()
            .filter(|r| r.key.ends_with(b"7"))
            .cloned()
            .collect();
        assert_eq!(wanted.len(), 5);
        let keep = |_: &str, key: &[u8]| key.ends_with(b"7");
        let read = FeatureTable::read_parquet_where(&path, Some(&keep)).unwrap();
        assert_eq!(read.rows().collect::<Vec<_>>(), wanted);
        assert_eq!((read.as_of, read.horizon), (7, 11));
        let none =
            FeatureTable::read_parquet_where(&path, Some(&|_: &str, _: &[u8]| false)).unwrap();
        assert!(none.is_empty() && none.batches().is_empty());
    }

    #[test]
    fn rows_round_trip_through_columns_and_parquet() {
        let rows: Vec<KeyFeatures> = (0..50).map(sample_row).collect();
        let table = FeatureTable::from_rows(7, 11, true, 0, &rows);
        assert_eq!(table.rows().collect::<Vec<_>>(), rows);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.parquet");
        table.write_parquet(&path).unwrap();
        let read = FeatureTable::read_parquet(&path).unwrap();
        assert_eq!((read.as_of, read.horizon), (7, 11));
        assert_eq!(read.rows().collect::<Vec<_>>(), rows);
        assert_eq!(
            table
                .top_by(2, |r| r.reads_decay[0])
                .iter()
                .map(|r| r.reads_total)
                .collect::<Vec<_>>(),
            [53, 52]
        );
    }
}
