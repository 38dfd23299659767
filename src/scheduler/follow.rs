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
use crate::logs::LogSource;
use crate::logs::activity::KeyActivity;

const INGESTED: &str = "ingested_files";

/// What one [`Scheduler::ingest_logs`] call did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IngestReport {
    pub files: usize,
    pub events: u64,
    pub new_keys: usize,
    pub made_stale: usize,
    /// Files that could not be read, with the reason.
    pub rejected: Vec<(PathBuf, String)>,
    /// Files applied, with their stamps.
    applied: Vec<(String, Stamp)>,
}

/// A file's identity for "has it changed": length and modification time.
type Stamp = (u64, u128);

fn stamp(path: &Path) -> Option<Stamp> {
    let metadata = std::fs::metadata(path).ok()?;
    let modified = metadata
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some((metadata.len(), modified))
}

/// One new or changed log file, scanned.
pub struct ScannedFile {
    path: PathBuf,
    stamp: Stamp,
    keys: KeyActivity,
}

/// What a [`LogFollower::scan`] found: files to apply, in order, and files
/// that could not be read.
#[derive(Default)]
pub struct ScannedLogs {
    files: Vec<ScannedFile>,
    rejected: Vec<(PathBuf, String)>,
}

impl ScannedLogs {
    /// How many files were scanned and are ready to apply.
    pub fn files(&self) -> usize {
        self.files.len()
    }

    /// Files that could not be read, with the reason.
    pub fn rejected(&self) -> &[(PathBuf, String)] {
        &self.rejected
    }
}

/// Finds and scans the log files not applied yet. It needs no scheduler
/// while it scans (a service runs it beside the scheduler's owner); the
/// scheduler applies what it found with [`Scheduler::apply_logs`], which
/// stores the list of applied files with their effects.
#[derive(Clone)]
pub struct LogFollower {
    root: PathBuf,
    /// Applied files and their stamps, as stored.
    applied: BTreeMap<String, Stamp>,
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
            applied,
        })
    }

    /// Scans the `.parquet` files under the root that are new or changed
    /// since they were last applied. A missing root or an empty one is
    /// nothing to follow yet.
    pub fn scan(&self) -> ScannedLogs {
        let mut scanned = ScannedLogs::default();
        if !self.root.exists() {
            return scanned;
        }
        let source = match LogSource::open(&self.root) {
            Ok(source) => source,
            Err(crate::logs::LogError::NoFiles { .. }) => return scanned,
            Err(error) => {
                scanned
                    .rejected
                    .push((self.root.clone(), error.to_string()));
                return scanned;
            }
        };
        for path in source.paths() {
            let Some(stamp) = stamp(path) else { continue };
            if self.applied.get(&*path.to_string_lossy()) == Some(&stamp) {
                continue;
            }
            let one = source
                .only(|p| p == path)
                .expect("the file is in the source");
            match KeyActivity::scan(&one) {
                Ok(keys) => scanned.files.push(ScannedFile {
                    path: path.to_path_buf(),
                    stamp,
                    keys,
                }),
                Err(problem) => {
                    tracing::warn!(file = %path.display(), %problem, "log file skipped");
                    scanned.rejected.push((path.to_path_buf(), problem));
                }
            }
        }
        scanned
    }

    /// Records that `report`'s files were applied (call after
    /// [`Scheduler::apply_logs`] succeeded).
    pub fn applied(&mut self, report: &IngestReport) {
        self.applied
            .extend(report.applied.iter().map(|(n, s)| (n.clone(), *s)));
    }
}

impl Scheduler {
    /// Applies scanned log files, each in its own commit with the list of
    /// applied files: new keys are tracked, sizes and access counts
    /// updated, and writes raise each key's latest version (the write's
    /// time in microseconds), making copied keys stale.
    pub fn apply_logs(
        &mut self,
        follower: &LogFollower,
        scanned: &ScannedLogs,
        now_us: i64,
    ) -> Result<IngestReport, SchedulerError> {
        let mut report = IngestReport {
            rejected: scanned.rejected.clone(),
            ..IngestReport::default()
        };
        let mut applied = follower.applied.clone();
        for file in &scanned.files {
            let mut observed = Vec::new();
            for (table, keys) in file.keys.tables() {
                for (key, activity) in keys {
                    report.events += activity.accesses;
                    observed.push(Observed {
                        table,
                        key,
                        size_bytes: Some(activity.last_size.max(0) as u64),
                        write_version: (activity.writes > 0)
                            .then_some(activity.last_write_ts.max(0) as u64),
                        written: (activity.writes > 0).then_some((
                            activity.writes * activity.last_size.max(1) as u64,
                            activity.last_write_ts,
                        )),
                        accesses: activity.accesses,
                    });
                }
            }
            let name = file.path.to_string_lossy().into_owned();
            applied.insert(name.clone(), file.stamp);
            let settings = [(
                INGESTED,
                serde_json::to_string(&applied).expect("file stamps serialize"),
            )];
            let done = self.apply_observed(&observed, &settings, now_us)?;
            report.files += 1;
            report.new_keys += done.new_keys;
            report.made_stale += done.made_stale;
            report.applied.push((name, file.stamp));
        }
        Ok(report)
    }

    /// Scans and applies the log files under `root` that are new or
    /// changed since the last call, in one go (a service scans beside the
    /// scheduler instead: see [`LogFollower`]).
    pub fn ingest_logs(
        &mut self,
        root: &Path,
        now_us: i64,
    ) -> Result<IngestReport, SchedulerError> {
        let follower = LogFollower::new(root, self)?;
        let scanned = follower.scan();
        self.apply_logs(&follower, &scanned, now_us)
    }
}
