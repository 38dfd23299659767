//! Captured writes appended to the Parquet access logs, so the features
//! (and a service following the logs) see every write the source
//! committed, not only the ones a log shipper saw.
//!
//! Writes are buffered and written every `every` as one file per hour
//! partition (`ROOT/dt=…/hour=…/capture-FIRST-LAST.parquet`, named by the
//! first and last commit LSN it holds), first under a hidden name and then
//! renamed, so a reader never sees half a file. The slot is confirmed only
//! once the file is written: a crash re-sends what was not yet in a file,
//! so an event may appear twice (at least once, never lost).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::pgoutput::Committed;
use crate::logs::writer::{AccessEvent, LogBatchBuilder, partition_dir, write_log_file};
use crate::time::HOUR_US;

/// One captured write as the logs will hold it.
struct LoggedWrite {
    committed_at_us: i64,
    table: String,
    key: String,
    op: crate::logs::Op,
    size_bytes: u64,
}

pub struct LogAppender {
    root: PathBuf,
    every: Duration,
    since: Instant,
    /// By hour start.
    pending: BTreeMap<i64, Vec<LoggedWrite>>,
    first_lsn: Option<u64>,
    last_lsn: u64,
    /// Where the slot may be confirmed once the pending events are written.
    end_lsn: Option<u64>,
}

impl LogAppender {
    pub fn new(root: &Path, every: Duration) -> LogAppender {
        LogAppender {
            root: root.to_path_buf(),
            every,
            since: Instant::now(),
            pending: BTreeMap::new(),
            first_lsn: None,
            last_lsn: 0,
            end_lsn: None,
        }
    }

    pub fn add(&mut self, committed: &[Committed]) {
        for txn in committed {
            let hour = txn.committed_at_us.div_euclid(HOUR_US) * HOUR_US;
            let events = self.pending.entry(hour).or_default();
            for write in &txn.writes {
                events.push(LoggedWrite {
                    committed_at_us: txn.committed_at_us,
                    table: write.table.clone(),
                    key: String::from_utf8_lossy(&write.key).into_owned(),
                    op: write.op,
                    size_bytes: write.size_bytes,
                });
            }
            self.first_lsn.get_or_insert(txn.commit_lsn);
            self.last_lsn = txn.commit_lsn;
            self.end_lsn = Some(txn.end_lsn);
        }
    }

    /// Whether events wait to be written.
    pub fn holds_events(&self) -> bool {
        self.end_lsn.is_some()
    }

    pub fn due(&self) -> bool {
        self.holds_events() && self.since.elapsed() >= self.every
    }

    /// Writes the pending events; gives how far the slot may now be
    /// confirmed.
    pub fn flush(&mut self) -> anyhow::Result<Option<u64>> {
        self.since = Instant::now();
        let Some(end_lsn) = self.end_lsn.take() else {
            return Ok(None);
        };
        let name = format!(
            "capture-{:016X}-{:016X}.parquet",
            self.first_lsn.take().unwrap_or(0),
            self.last_lsn
        );
        for (hour, events) in std::mem::take(&mut self.pending) {
            let directory = partition_dir(&self.root, hour);
            let path = directory.join(&name);
            if path.exists() {
                // Written before a crash that kept the slot unconfirmed.
                continue;
            }
            let mut builder = LogBatchBuilder::new();
            for event in &events {
                builder.push(&AccessEvent {
                    ts: event.committed_at_us,
                    key: &event.key,
                    table: &event.table,
                    op: event.op,
                    size: event.size_bytes as i64,
                    tenant: None,
                    latency_us: None,
                });
            }
            let hidden = directory.join(format!(".{name}.partial"));
            let _ = std::fs::remove_file(&hidden);
            write_log_file(&hidden, &builder.finish())?;
            std::fs::rename(&hidden, &path)?;
        }
        Ok(Some(end_lsn))
    }
}
