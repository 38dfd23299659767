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

impl Scheduler {
    /// Scans the `.parquet` files under `root` that are new or changed
    /// since the last call and applies them: new keys are tracked, sizes
    /// and access counts updated, and writes raise each key's latest
    /// version (the write's time in microseconds), making copied keys
    /// stale. Which files were applied is stored with their effects, in
    /// the same transaction.
    pub fn ingest_logs(
        &mut self,
        root: &Path,
        now_us: i64,
    ) -> Result<IngestReport, SchedulerError> {
        let mut report = IngestReport::default();
        if !root.exists() {
            // Not written yet: nothing to follow.
            return Ok(report);
        }
        let source = match LogSource::open(root) {
            Ok(source) => source,
            Err(crate::logs::LogError::NoFiles { .. }) => return Ok(report),
            Err(error) => {
                report
                    .rejected
                    .push((root.to_path_buf(), error.to_string()));
                return Ok(report);
            }
        };
        let mut ingested: BTreeMap<String, Stamp> = self
            .map
            .setting(INGESTED)?
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default();
        let fresh: Vec<(PathBuf, Stamp)> = source
            .paths()
            .filter_map(|path| {
                let stamp = stamp(path)?;
                let name = path.to_string_lossy().into_owned();
                (ingested.get(&name) != Some(&stamp)).then(|| (path.to_path_buf(), stamp))
            })
            .collect();
        for (path, file_stamp) in fresh {
            let one = source
                .only(|p| p == path)
                .expect("the file is in the source");
            let keys = match KeyActivity::scan(&one) {
                Ok(keys) => keys,
                Err(problem) => {
                    tracing::warn!(file = %path.display(), %problem, "log file skipped");
                    report.rejected.push((path, problem));
                    continue;
                }
            };
            let mut observed = Vec::new();
            for (table, keys) in keys.tables() {
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
            ingested.insert(path.to_string_lossy().into_owned(), file_stamp);
            let settings = [(
                INGESTED,
                serde_json::to_string(&ingested).expect("file stamps serialize"),
            )];
            let applied = self.apply_observed(&observed, &settings, now_us)?;
            report.files += 1;
            report.new_keys += applied.new_keys;
            report.made_stale += applied.made_stale;
        }
        Ok(report)
    }
}
