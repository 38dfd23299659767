//! Following the log directory: files that appeared (or changed) since the
//! last call are scanned, each on its own, and what they say about keys —
//! new keys, sizes, accesses, writes with their versions — is applied to
//! the location map without rescanning older files. A file that cannot be
//! read is reported with its error and retried when it changes; it never
//! stops the others.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::writes::Observed;
use super::{Scheduler, SchedulerError};
use crate::export::{FileStamp, file_stamp};
use crate::logs::LogSource;
use crate::logs::activity::KeyActivity;
use crate::shard::Shard;

const INGESTED: &str = "ingested_files";

/// What applying log files did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IngestReport {
    pub files: usize,
    pub events: u64,
    pub new_keys: usize,
    pub made_stale: usize,
    /// Files that could not be read, with the reason.
    pub rejected: Vec<(PathBuf, String)>,
}

impl IngestReport {
    /// Adds what applying another file did.
    pub fn add(&mut self, other: IngestReport) {
        self.files += other.files;
        self.events += other.events;
        self.new_keys += other.new_keys;
        self.made_stale += other.made_stale;
        self.rejected.extend(other.rejected);
    }
}

/// One new or changed log file, scanned.
pub struct ScannedFile {
    path: PathBuf,
    stamp: FileStamp,
    keys: KeyActivity,
}

/// A file that could not be read, and why.
pub type Unreadable = (PathBuf, String);

/// The log files new or changed since they were applied, scanned one at a
/// time as they are asked for, so only one file's keys are held at once.
pub struct Scan {
    source: Option<LogSource>,
    shard: Shard,
    pending: std::vec::IntoIter<(PathBuf, FileStamp)>,
    /// The log directory itself could not be read.
    unreadable_root: Option<Unreadable>,
}

impl Iterator for Scan {
    type Item = Result<ScannedFile, Unreadable>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(root) = self.unreadable_root.take() {
            return Some(Err(root));
        }
        let source = self.source.as_ref()?;
        let (path, stamp) = self.pending.next()?;
        let one = source
            .only(|p| p == path)
            .expect("the file is in the source");
        Some(match KeyActivity::scan(&one) {
            Ok(mut keys) => {
                if self.shard != Shard::WHOLE {
                    keys.retain(|table, key| self.shard.owns(table, key));
                }
                Ok(ScannedFile { path, stamp, keys })
            }
            Err(problem) => {
                tracing::warn!(file = %path.display(), %problem, "log file skipped");
                Err((path, problem))
            }
        })
    }
}

/// Finds and scans the log files not applied yet. It needs no scheduler
/// while it scans (a service runs it beside the scheduler's owner); the
/// scheduler applies each file with [`Scheduler::apply_log_file`], which
/// stores the list of applied files with its effects.
pub struct LogFollower {
    root: PathBuf,
    /// Only this shard's keys are applied.
    shard: Shard,
    /// Applied files and their stamps, as stored.
    applied: BTreeMap<String, FileStamp>,
}

impl LogFollower {
    /// A follower of `root` that knows which files `scheduler` applied
    /// before (a stored list that does not parse is an error naming it).
    pub fn new(root: &Path, scheduler: &Scheduler) -> Result<Self, SchedulerError> {
        let applied = match scheduler.map.setting(INGESTED)? {
            None => BTreeMap::new(),
            Some(json) => {
                serde_json::from_str(&json).map_err(|error| SchedulerError::CorruptSetting {
                    name: INGESTED,
                    value: json.chars().take(200).collect(),
                    problem: error.to_string(),
                })?
            }
        };
        Ok(LogFollower {
            root: root.to_path_buf(),
            shard: Shard::WHOLE,
            applied,
        })
    }

    /// The same follower applying only the keys `shard` owns (the others
    /// are other services' to track).
    pub fn owning(self, shard: Shard) -> Self {
        LogFollower { shard, ..self }
    }

    /// The `.parquet` files under the root that are new or changed since
    /// they were last applied, to scan one by one. A missing root or an
    /// empty one is nothing to follow yet.
    pub fn scan(&self) -> Scan {
        let mut scan = Scan {
            source: None,
            shard: self.shard,
            pending: Vec::new().into_iter(),
            unreadable_root: None,
        };
        if !self.root.exists() {
            return scan;
        }
        let source = match LogSource::open(&self.root) {
            Ok(source) => source,
            Err(crate::logs::LogError::NoFiles { .. }) => return scan,
            Err(error) => {
                scan.unreadable_root = Some((self.root.clone(), error.to_string()));
                return scan;
            }
        };
        let pending: Vec<(PathBuf, FileStamp)> = source
            .paths()
            .filter_map(|path| {
                let stamp = file_stamp(path)?;
                (self.applied.get(&*path.to_string_lossy()) != Some(&stamp))
                    .then(|| (path.to_path_buf(), stamp))
            })
            .collect();
        scan.pending = pending.into_iter();
        scan.source = Some(source);
        scan
    }

    /// The stored list of applied files (JSON) once `file` is applied too.
    pub fn applied_with(&self, file: &ScannedFile) -> String {
        let mut applied = self.applied.clone();
        applied.insert(file.path.to_string_lossy().into_owned(), file.stamp);
        serde_json::to_string(&applied).expect("file stamps serialize")
    }

    /// Records that `file` was applied (after
    /// [`Scheduler::apply_log_file`] succeeded).
    pub fn applied(&mut self, file: &ScannedFile) {
        self.applied
            .insert(file.path.to_string_lossy().into_owned(), file.stamp);
    }
}

impl Scheduler {
    /// Applies one scanned log file in one commit with `applied`, the list
    /// of applied files it belongs to ([`LogFollower::applied_with`]): new
    /// keys are tracked, sizes and access counts updated, and writes raise
    /// each key's latest version (the write's time in microseconds),
    /// making copied keys stale; when versions are log sequence numbers
    /// the writes only count towards write rates (their LSN comes from
    /// reported writes).
    pub fn apply_log_file(
        &mut self,
        file: &ScannedFile,
        applied: String,
        now_us: i64,
    ) -> Result<IngestReport, SchedulerError> {
        let mut report = IngestReport {
            files: 1,
            ..IngestReport::default()
        };
        let mut observed = Vec::new();
        let versions_are_times = self.config().versions == super::Versions::Time;
        for (table, keys) in file.keys.tables() {
            for (key, activity) in keys {
                report.events += activity.accesses;
                observed.push(Observed {
                    table,
                    key,
                    size_bytes: Some(activity.last_size.max(0) as u64),
                    write_version: (activity.writes > 0 && versions_are_times)
                        .then_some(activity.last_write_ts.max(0) as u64),
                    written: (activity.writes > 0).then_some((
                        activity.writes * activity.last_size.max(1) as u64,
                        activity.last_write_ts,
                    )),
                    accesses: activity.accesses,
                });
            }
        }
        let done = self.apply_observed(&observed, &[(INGESTED, applied)], now_us)?;
        report.new_keys = done.new_keys;
        report.made_stale = done.made_stale;
        Ok(report)
    }

    /// Scans and applies, file by file, the log files under `root` that
    /// are new or changed since the last call (a service scans beside the
    /// scheduler instead: see [`LogFollower`]).
    pub fn ingest_logs(
        &mut self,
        root: &Path,
        now_us: i64,
    ) -> Result<IngestReport, SchedulerError> {
        let mut follower = LogFollower::new(root, self)?;
        let mut report = IngestReport::default();
        for scanned in follower.scan() {
            match scanned {
                Ok(file) => {
                    let applied = follower.applied_with(&file);
                    report.add(self.apply_log_file(&file, applied, now_us)?);
                    follower.applied(&file);
                }
                Err(unreadable) => report.rejected.push(unreadable),
            }
        }
        Ok(report)
    }
}
