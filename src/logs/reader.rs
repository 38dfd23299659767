//! Finding, checking, pruning and scanning access-log files.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use arrow_array::{BooleanArray, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use chrono::NaiveDate;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::file::statistics::Statistics;

use super::batch::AccessBatch;
use super::schema::{self, REQUIRED_COLUMNS, TS};
use super::{LogError, TimeRange};
use crate::time::{DAY_US, HOUR_US, format_instant};

/// Rows per record batch handed to a worker; bounds memory per worker.
const BATCH_ROWS: usize = 64 * 1024;

/// The access-log files found under a path, not yet opened.
#[derive(Debug)]
pub struct LogSource {
    root: PathBuf,
    files: Vec<LogFile>,
}

#[derive(Clone, Debug)]
struct LogFile {
    path: PathBuf,
    /// `[start, end)` of the Hive partition the file sits in, if any.
    partition: Option<(i64, i64)>,
}

impl LogSource {
    /// Finds the `.parquet` files at `path`: the file itself, or every file
    /// below the directory (names starting with `.` or `_` are skipped, as
    /// Spark and Hive use them for bookkeeping).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, LogError> {
        let root = path.as_ref().to_path_buf();
        let metadata = std::fs::metadata(&root).map_err(|e| LogError::io(&root, e))?;
        let mut paths = Vec::new();
        if metadata.is_dir() {
            collect_parquet_files(&root, &mut paths)?;
            if paths.is_empty() {
                return Err(LogError::NoFiles { path: root });
            }
            paths.sort();
        } else {
            paths.push(root.clone());
        }
        let files = paths
            .into_iter()
            .map(|path| {
                let relative = path.strip_prefix(&root).unwrap_or(&path).to_path_buf();
                let partition = partition_of(&relative, &path)?;
                Ok(LogFile { path, partition })
            })
            .collect::<Result<Vec<_>, LogError>>()?;
        Ok(LogSource { root, files })
    }

    /// The instant `text` names: `latest` (the last event in the logs, from
    /// the files' time statistics) or a time [`parse_instant`] reads.
    ///
    /// [`parse_instant`]: crate::time::parse_instant
    pub fn resolve_as_of(&self, text: &str) -> Result<i64, String> {
        if text != "latest" {
            return crate::time::parse_instant(text);
        }
        let plan = self.plan(TimeRange::ALL).map_err(|e| e.to_string())?;
        plan.stats().data_span.map(|(_, last)| last).ok_or_else(|| {
            "`latest`: the logs carry no time statistics; give an explicit time".to_string()
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// The files found, in path order.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|file| file.path.as_path())
    }

    /// The same source restricted to the files `keep` accepts (their
    /// partitions still checked), or `None` when it accepts none.
    pub fn only(&self, keep: impl Fn(&Path) -> bool) -> Option<LogSource> {
        let files: Vec<LogFile> = self
            .files
            .iter()
            .filter(|file| keep(&file.path))
            .cloned()
            .collect();
        (!files.is_empty()).then(|| LogSource {
            root: self.root.clone(),
            files,
        })
    }

    /// Reads the footers of the files that may hold events in `range`,
    /// checks their schema and partition, and keeps the row groups to scan.
    pub fn plan(&self, range: TimeRange) -> Result<ScanPlan, LogError> {
        let candidates: Vec<&LogFile> = self
            .files
            .iter()
            .filter(|file| {
                file.partition
                    .is_none_or(|(start, end)| range.overlaps(start, end - 1))
            })
            .collect();
        let opened = parallel_map(&candidates, |file| open_file(file))?;

        let mut stats = PlanStats {
            files_total: self.files.len(),
            files_pruned: self.files.len() - candidates.len(),
            ..PlanStats::default()
        };
        let mut units = Vec::new();
        let mut files = Vec::new();
        for opened_file in opened {
            stats.row_groups_total += opened_file.row_groups.len();
            for group in &opened_file.row_groups {
                if let Some((min, max)) = group.ts_span {
                    stats.data_span = Some(
                        stats
                            .data_span
                            .map_or((min, max), |(lo, hi)| (lo.min(min), hi.max(max))),
                    );
                }
            }
            let file_index = files.len();
            let mut kept_any = false;
            for (group_index, group) in opened_file.row_groups.iter().enumerate() {
                let keep = group.rows > 0
                    && group
                        .ts_span
                        .is_none_or(|(min, max)| range.overlaps(min, max));
                if keep {
                    kept_any = true;
                    stats.rows_planned += group.rows;
                    units.push(ScanUnit {
                        file: file_index,
                        row_group: group_index,
                        first_row: group.first_row,
                        fully_in_range: group
                            .ts_span
                            .is_some_and(|(min, max)| range.covers(min, max)),
                    });
                } else {
                    stats.row_groups_pruned += 1;
                }
            }
            if !kept_any {
                stats.files_pruned += 1;
            }
            files.push(opened_file);
        }
        for file in &self.files {
            if let Some((start, end)) = file.partition
                && !range.overlaps(start, end - 1)
            {
                stats.data_span = Some(stats.data_span.map_or((start, end - 1), |(lo, hi)| {
                    (lo.min(start), hi.max(end - 1))
                }));
            }
        }
        if units.is_empty() {
            let span = match stats.data_span {
                Some((first, last)) => format!(
                    "the logs hold events from {} to {}",
                    format_instant(first),
                    format_instant(last)
                ),
                None => "the logs hold no events at all".to_string(),
            };
            return Err(LogError::NothingInRange {
                path: self.root.clone(),
                range,
                span,
            });
        }
        Ok(ScanPlan {
            range,
            files,
            units,
            stats,
        })
    }
}

/// What planning found and skipped, for progress bars and logs.
#[derive(Clone, Copy, Debug, Default)]
pub struct PlanStats {
    pub files_total: usize,
    pub files_pruned: usize,
    pub row_groups_total: usize,
    pub row_groups_pruned: usize,
    pub rows_planned: u64,
    /// First and last event time over all row groups seen (pruned or not).
    pub data_span: Option<(i64, i64)>,
}

/// Checked files and the row groups to read from them.
pub struct ScanPlan {
    range: TimeRange,
    files: Vec<OpenedFile>,
    units: Vec<ScanUnit>,
    stats: PlanStats,
}

struct OpenedFile {
    path: PathBuf,
    metadata: ArrowReaderMetadata,
    projection: ProjectionMask,
    row_groups: Vec<RowGroupInfo>,
}

struct RowGroupInfo {
    rows: u64,
    first_row: u64,
    /// Min and max event time from the footer statistics, if written.
    ts_span: Option<(i64, i64)>,
}

/// One row group of one file: the unit of parallel work.
struct ScanUnit {
    file: usize,
    row_group: usize,
    first_row: u64,
    fully_in_range: bool,
}

impl ScanPlan {
    pub fn stats(&self) -> PlanStats {
        self.stats
    }

    /// Streams every in-range batch through `fold` on one worker per core,
    /// each with its own accumulator from `init`, and returns the
    /// accumulators (one per worker) for the caller to merge. `on_rows` is
    /// called with each batch's row count (for progress). The first error
    /// stops all workers.
    pub fn fold<A, Init, Fold>(
        &self,
        init: Init,
        fold: Fold,
        on_rows: &(dyn Fn(u64) + Sync),
    ) -> Result<Vec<A>, LogError>
    where
        A: Send,
        Init: Fn() -> A + Sync,
        Fold: Fn(&mut A, &AccessBatch) + Sync,
    {
        let next_unit = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let workers = scan_threads().min(self.units.len()).max(1);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        let mut accumulator = init();
                        loop {
                            if failed.load(Ordering::Relaxed) {
                                break;
                            }
                            let index = next_unit.fetch_add(1, Ordering::Relaxed);
                            let Some(unit) = self.units.get(index) else {
                                break;
                            };
                            let result = self.scan_unit(unit, |batch| {
                                on_rows(batch.len() as u64);
                                fold(&mut accumulator, batch);
                            });
                            if let Err(error) = result {
                                failed.store(true, Ordering::Relaxed);
                                return Err(error);
                            }
                        }
                        Ok(accumulator)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().expect("scan worker panicked"))
                .collect()
        })
    }

    /// Reads one row group of one file, `visit`ing its batches in range.
    fn scan_unit(
        &self,
        unit: &ScanUnit,
        mut visit: impl FnMut(&AccessBatch),
    ) -> Result<(), LogError> {
        let file = &self.files[unit.file];
        let corrupt = |source| LogError::Corrupt {
            path: file.path.clone(),
            source,
        };
        let handle = File::open(&file.path).map_err(|e| LogError::io(&file.path, e))?;
        let mut reader = unpanicked(&file.path, || {
            ParquetRecordBatchReaderBuilder::new_with_metadata(handle, file.metadata.clone())
                .with_row_groups(vec![unit.row_group])
                .with_projection(file.projection.clone())
                .with_batch_size(BATCH_ROWS)
                .build()
        })?
        .map_err(corrupt)?;
        let mut first_row = unit.first_row;
        while let Some(batch) = unpanicked(&file.path, || reader.next())? {
            let batch = batch.map_err(|e| corrupt(e.into()))?;
            let rows = batch.num_rows() as u64;
            let checked = AccessBatch::from_record_batch(&batch, &file.path, first_row)?;
            first_row += rows;
            if unit.fully_in_range {
                visit(&checked);
            } else if let Some(in_range) = self.keep_in_range(&batch, checked, &file.path)? {
                visit(&in_range);
            }
        }
        Ok(())
    }

    /// Drops rows outside the plan's range; `None` when none are left.
    /// `checked` is `batch` already converted: kept as is when every row is in range.
    fn keep_in_range(
        &self,
        batch: &RecordBatch,
        checked: AccessBatch,
        path: &Path,
    ) -> Result<Option<AccessBatch>, LogError> {
        let mask: BooleanArray = checked
            .ts()
            .iter()
            .map(|&ts| Some(self.range.contains(ts)))
            .collect();
        match mask.true_count() {
            0 => Ok(None),
            n if n == checked.len() => Ok(Some(checked)),
            _ => {
                let filtered = arrow_select::filter::filter_record_batch(batch, &mask)
                    .expect("mask length equals batch length");
                Ok(Some(AccessBatch::from_record_batch(&filtered, path, 0)?))
            }
        }
    }
}

/// Worker threads for parallel work: all cores unless `SHADOWCAST_THREADS` says otherwise.
pub fn worker_count() -> usize {
    std::env::var("SHADOWCAST_THREADS")
        .ok()
        .and_then(|value| value.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Threads a scan uses: as many as the rayon pool it runs in has (the
/// global pool, which the binary sizes by [`worker_count`], or a smaller
/// one, such as the service's planning pool, which leaves cores to serving).
fn scan_threads() -> usize {
    rayon::current_num_threads()
}

fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    map: impl Fn(&T) -> Result<R, LogError> + Sync,
) -> Result<Vec<R>, LogError> {
    let next = AtomicUsize::new(0);
    let workers = scan_threads().min(items.len()).max(1);
    let mut results: Vec<(usize, R)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(index) else {
                            return Ok(done);
                        };
                        done.push((index, map(item)?));
                    }
                })
            })
            .collect();
        let mut all = Vec::new();
        for handle in handles {
            all.extend(handle.join().expect("footer worker panicked")?);
        }
        Ok::<_, LogError>(all)
    })?;
    results.sort_by_key(|(index, _)| *index);
    Ok(results.into_iter().map(|(_, result)| result).collect())
}

fn collect_parquet_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), LogError> {
    let entries = std::fs::read_dir(dir).map_err(|e| LogError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let path = entry.path();
        let file_type = entry.file_type().map_err(|e| LogError::io(&path, e))?;
        if file_type.is_dir() {
            collect_parquet_files(&path, out)?;
        } else if name.ends_with(".parquet") {
            out.push(path);
        }
    }
    Ok(())
}

/// The time span of the Hive partition a file sits in (`dt=` and optional
/// `hour=` directory levels), or `None` when it is not partitioned by time.
fn partition_of(relative: &Path, full: &Path) -> Result<Option<(i64, i64)>, LogError> {
    let mut day: Option<i64> = None;
    let mut hour: Option<i64> = None;
    let bad = |component: &str, problem: &str| LogError::BadPartition {
        path: full.to_path_buf(),
        component: component.to_string(),
        problem: problem.to_string(),
    };
    for component in relative.parent().into_iter().flat_map(Path::components) {
        let component = component.as_os_str().to_string_lossy();
        if let Some(value) = component.strip_prefix("dt=") {
            let date = NaiveDate::parse_from_str(value, "%Y-%m-%d")
                .map_err(|_| bad(&component, "expected a date like dt=2026-11-20"))?;
            day = Some(
                date.and_hms_opt(0, 0, 0)
                    .expect("midnight exists")
                    .and_utc()
                    .timestamp_micros(),
            );
        } else if let Some(value) = component.strip_prefix("hour=") {
            let parsed: i64 = value
                .parse()
                .ok()
                .filter(|h| (0..24).contains(h))
                .ok_or_else(|| bad(&component, "expected an hour 00 to 23 like hour=13"))?;
            hour = Some(parsed);
        }
    }
    match (day, hour) {
        (Some(day), Some(hour)) => {
            let start = day + hour * HOUR_US;
            Ok(Some((start, start + HOUR_US)))
        }
        (Some(day), None) => Ok(Some((day, day + DAY_US))),
        (None, Some(_)) => Err(bad(
            &relative.display().to_string(),
            "an hour= directory needs a dt= directory above it",
        )),
        (None, None) => Ok(None),
    }
}

fn open_file(file: &LogFile) -> Result<OpenedFile, LogError> {
    let path = &file.path;
    let corrupt = |source| LogError::Corrupt {
        path: path.clone(),
        source,
    };
    let handle = File::open(path).map_err(|e| LogError::io(path, e))?;
    let metadata =
        ArrowReaderMetadata::load(&handle, ArrowReaderOptions::new()).map_err(corrupt)?;
    let file_schema = metadata.schema().clone();

    let check_type = |column: &'static str, field: &Field| {
        if schema::accepts(column, field.data_type()) {
            Ok(())
        } else {
            Err(LogError::WrongType {
                path: path.clone(),
                column: column.to_string(),
                found: field.data_type().to_string(),
                expected: schema::expected_type(column),
            })
        }
    };
    let mut projected = Vec::with_capacity(REQUIRED_COLUMNS.len() + 1);
    for column in REQUIRED_COLUMNS {
        let Some((index, field)) = file_schema.column_with_name(column) else {
            return Err(LogError::MissingColumn {
                path: path.clone(),
                column,
                expected: schema::expected_type(column),
                present: file_schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        check_type(column, field)?;
        projected.push(index);
    }
    for column in [schema::TENANT, schema::LATENCY] {
        if let Some((index, field)) = file_schema.column_with_name(column) {
            check_type(column, field)?;
            if column == schema::TENANT {
                projected.push(index);
            }
        }
    }

    // Ask for plain string table/op/tenant columns as dictionaries: the reader then
    // decodes each distinct name once instead of once per row.
    let hinted = Schema::new(
        file_schema
            .fields()
            .iter()
            .map(|field| {
                let dictionary = [schema::TABLE, schema::OP, schema::TENANT]
                    .contains(&field.name().as_str())
                    && field.data_type() == &DataType::Utf8;
                if dictionary {
                    Arc::new(Field::new(
                        field.name(),
                        DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                        field.is_nullable(),
                    ))
                } else {
                    field.clone()
                }
            })
            .collect::<Vec<_>>(),
    );
    let metadata = if hinted.fields() == file_schema.fields() {
        metadata
    } else {
        // Same parsed footer, new schema: no second read of the file.
        ArrowReaderMetadata::try_new(
            metadata.metadata().clone(),
            ArrowReaderOptions::new().with_schema(Arc::new(hinted)),
        )
        .map_err(corrupt)?
    };

    let ts_unit = match file_schema.field_with_name(TS).map(Field::data_type) {
        Ok(DataType::Timestamp(unit, _)) => *unit,
        _ => unreachable!("checked above"),
    };
    let parquet_meta = metadata.metadata();
    let ts_leaf = parquet_meta
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|column| column.path().parts() == [TS]);
    let mut row_groups = Vec::with_capacity(parquet_meta.num_row_groups());
    let mut first_row = 0u64;
    for group in parquet_meta.row_groups() {
        let rows = group.num_rows().max(0) as u64;
        let ts_span = ts_leaf
            .and_then(|leaf| group.column(leaf).statistics())
            .and_then(|stats| match stats {
                Statistics::Int64(values) => Some((*values.min_opt()?, *values.max_opt()?)),
                _ => None,
            })
            .map(|(min, max)| (to_micros(min, ts_unit), to_micros(max, ts_unit)));
        if let (Some((start, end)), Some((min, max))) = (file.partition, ts_span)
            && (min < start || max >= end)
        {
            return Err(LogError::PartitionMismatch {
                path: path.clone(),
                partition: format!("[{}, {})", format_instant(start), format_instant(end)),
                first: format_instant(min),
                last: format_instant(max),
            });
        }
        row_groups.push(RowGroupInfo {
            rows,
            first_row,
            ts_span,
        });
        first_row += rows;
    }
    let projection = ProjectionMask::roots(parquet_meta.file_metadata().schema_descr(), projected);
    Ok(OpenedFile {
        path: path.clone(),
        metadata,
        projection,
        row_groups,
    })
}

fn to_micros(value: i64, unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => value.saturating_mul(1_000_000),
        TimeUnit::Millisecond => value.saturating_mul(1_000),
        TimeUnit::Microsecond => value,
        TimeUnit::Nanosecond => value.div_euclid(1_000),
    }
}

/// Runs `read`, a call into the Parquet reader on `path`. The reader
/// asserts some of what a malformed file's metadata claims (a negative
/// column offset, say) instead of returning an error; such a file is the
/// input's fault, so it gets an error naming it, not a crash.
fn unpanicked<T>(path: &Path, read: impl FnOnce() -> T) -> Result<T, LogError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).map_err(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|m| m.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        LogError::Corrupt {
            path: path.to_path_buf(),
            source: parquet::errors::ParquetError::General(format!(
                "the Parquet reader gave up on it: {message}"
            )),
        }
    })
}
