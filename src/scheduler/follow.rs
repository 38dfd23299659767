//! Following the log directory: files that appeared (or changed) since the
//! last call are scanned, each on its own, and what they say about keys —
//! new keys, sizes, accesses, writes with their versions — is applied to
//! the location map without rescanning older files. A file that cannot be
//! read is reported with its error and retried when it changes; it never
//! stops the others.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ahash::AHashMap;

use super::{Observed, Scheduler, SchedulerError};
use crate::logs::{AccessBatch, LogSource, Op, TimeRange};

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

/// Per key of one file: accesses, writes, and the latest event.
#[derive(Clone, Copy)]
struct Delta {
    accesses: u64,
    writes: u64,
    last_ts: i64,
    last_size: i64,
    last_write_ts: i64,
}

#[derive(Default)]
struct FileKeys {
    tables: Vec<String>,
    keys: Vec<AHashMap<Box<[u8]>, Delta>>,
}

impl FileKeys {
    /// The slot of `table`, added when new.
    fn slot_of(&mut self, table: &str) -> usize {
        match self.tables.iter().position(|t| t == table) {
            Some(slot) => slot,
            None => {
                self.tables.push(table.to_string());
                self.keys.push(AHashMap::new());
                self.tables.len() - 1
            }
        }
    }

    fn add(&mut self, batch: &AccessBatch) {
        let slots: Vec<usize> = batch
            .table_names()
            .iter()
            .map(|name| self.slot_of(name))
            .collect();
        for row in 0..batch.len() {
            let keys = &mut self.keys[slots[batch.table_index()[row] as usize]];
            let (ts, op, size) = (batch.ts()[row], batch.ops()[row], batch.sizes()[row]);
            let key = batch.key(row);
            let delta = match keys.get_mut(key) {
                Some(delta) => delta,
                None => keys.entry(key.into()).or_insert(Delta {
                    accesses: 0,
                    writes: 0,
                    last_ts: i64::MIN,
                    last_size: 0,
                    last_write_ts: i64::MIN,
                }),
            };
            delta.accesses += 1;
            if ts >= delta.last_ts {
                delta.last_ts = ts;
                delta.last_size = size;
            }
            if op != Op::Read {
                delta.writes += 1;
                delta.last_write_ts = delta.last_write_ts.max(ts);
            }
        }
    }

    fn merge(mut self, other: FileKeys) -> FileKeys {
        for (table, keys) in other.tables.into_iter().zip(other.keys) {
            let slot = self.slot_of(&table);
            for (key, theirs) in keys {
                self.keys[slot]
                    .entry(key)
                    .and_modify(|mine| {
                        mine.accesses += theirs.accesses;
                        mine.writes += theirs.writes;
                        if theirs.last_ts >= mine.last_ts {
                            mine.last_ts = theirs.last_ts;
                            mine.last_size = theirs.last_size;
                        }
                        mine.last_write_ts = mine.last_write_ts.max(theirs.last_write_ts);
                    })
                    .or_insert(theirs);
            }
        }
        self
    }
}

fn scan(source: &LogSource) -> Result<FileKeys, String> {
    let plan = source.plan(TimeRange::ALL).map_err(|e| e.to_string())?;
    let parts = plan
        .fold(FileKeys::default, |keys, batch| keys.add(batch), &|_| {})
        .map_err(|e| e.to_string())?;
    Ok(parts.into_iter().fold(FileKeys::default(), FileKeys::merge))
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
            let keys = match scan(&one) {
                Ok(keys) => keys,
                Err(problem) => {
                    tracing::warn!(file = %path.display(), %problem, "log file skipped");
                    report.rejected.push((path, problem));
                    continue;
                }
            };
            let mut observed = Vec::new();
            for (table, keys) in keys.tables.iter().zip(&keys.keys) {
                for (key, delta) in keys {
                    report.events += delta.accesses;
                    observed.push(Observed {
                        table,
                        key,
                        size_bytes: Some(delta.last_size.max(0) as u64),
                        write_version: (delta.writes > 0)
                            .then_some(delta.last_write_ts.max(0) as u64),
                        accesses: delta.accesses,
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
