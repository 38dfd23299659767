//! Stage 1 — access logs.
//!
//! Takes: a Parquet file, a directory of them, or a Hive-partitioned tree
//! (`dt=YYYY-MM-DD/hour=HH/part-*.parquet`) in the schema of [`schema`].
//!
//! Gives: a [`ScanPlan`] that streams typed [`AccessBatch`]es to one worker
//! per core, and writers ([`writer`], [`import`]) that produce the layout.
//!
//! Guarantees: every file is checked against the schema before any row is
//! handed out; files and row groups outside the requested [`TimeRange`] are
//! skipped without being decoded, and rows outside it are never handed out;
//! memory stays bounded by one record batch per worker. Every error names the
//! file, and where it applies the column and row, that is wrong.

pub mod activity;
pub mod batch;
pub mod import;
pub mod reader;
pub mod schema;
pub mod writer;

use std::path::PathBuf;

pub use batch::{AccessBatch, NO_TENANT};
pub use reader::{LogSource, PlanStats, ScanPlan};
pub use schema::Op;

use crate::time::format_instant;

/// An inclusive range of event times in microseconds; open ends are `None`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub start: Option<i64>,
    pub end: Option<i64>,
}

impl TimeRange {
    pub const ALL: TimeRange = TimeRange {
        start: None,
        end: None,
    };

    /// Everything at or before `end`.
    pub fn until(end: i64) -> Self {
        TimeRange {
            start: None,
            end: Some(end),
        }
    }

    pub fn contains(&self, ts: i64) -> bool {
        self.start.is_none_or(|start| ts >= start) && self.end.is_none_or(|end| ts <= end)
    }

    /// Whether any instant in `[min, max]` lies in the range.
    pub fn overlaps(&self, min: i64, max: i64) -> bool {
        self.start.is_none_or(|start| max >= start) && self.end.is_none_or(|end| min <= end)
    }

    /// Whether every instant in `[min, max]` lies in the range.
    pub fn covers(&self, min: i64, max: i64) -> bool {
        self.contains(min) && self.contains(max)
    }
}

impl std::fmt::Display for TimeRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bound = |b: Option<i64>| b.map_or_else(|| "…".to_string(), format_instant);
        write!(f, "[{}, {}]", bound(self.start), bound(self.end))
    }
}

/// Everything that can be wrong with access logs, each naming where.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{path}: no such file or directory")]
    NotFound { path: PathBuf },

    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: empty directory: no .parquet access-log files under it")]
    NoFiles { path: PathBuf },

    #[error("{path}: bad partition directory `{component}`: {problem}")]
    BadPartition {
        path: PathBuf,
        component: String,
        problem: String,
    },

    #[error("{path}: not a readable Parquet file (corrupt or truncated?): {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },

    #[error(
        "{path}: missing required column `{column}` (expected {expected}); the file has: {present}"
    )]
    MissingColumn {
        path: PathBuf,
        column: &'static str,
        expected: &'static str,
        present: String,
    },

    #[error("{path}: column `{column}` has type {found}, expected {expected}")]
    WrongType {
        path: PathBuf,
        column: String,
        found: String,
        expected: &'static str,
    },

    #[error("{path}: row {row}, column `{column}`: {problem}")]
    BadValue {
        path: PathBuf,
        column: &'static str,
        row: u64,
        problem: String,
    },

    #[error(
        "{path}: holds events from {first} to {last}, outside its partition {partition}; \
         move the file to the partition of its events (pruning by partition would skip them)"
    )]
    PartitionMismatch {
        path: PathBuf,
        partition: String,
        first: String,
        last: String,
    },

    #[error("{path}: no events in the requested range {range}; {span}")]
    NothingInRange {
        path: PathBuf,
        range: TimeRange,
        span: String,
    },
}

impl LogError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::NotFound {
            LogError::NotFound { path }
        } else {
            LogError::Io { path, source }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_inclusive_and_open_ended() {
        let range = TimeRange {
            start: Some(10),
            end: Some(20),
        };
        assert!(range.contains(10) && range.contains(20));
        assert!(!range.contains(9) && !range.contains(21));
        assert!(range.overlaps(0, 10) && range.overlaps(20, 30));
        assert!(!range.overlaps(21, 30));
        assert!(range.covers(10, 20) && !range.covers(9, 20));
        assert!(TimeRange::ALL.covers(i64::MIN, i64::MAX));
        assert!(TimeRange::until(5).contains(i64::MIN));
    }
}
