//! Writes and other observations of keys: versions rise, copies go stale,
//! new keys are tracked.

use std::collections::HashMap;

use super::{Phase, Scheduler, SchedulerError, WriteEvent, WriteReport};
use crate::state::{KeyId, KeyRecord, Location};

/// What was seen of one key: from a log file, an executor or the shadowing
/// module.
pub(super) struct Observed<'a> {
    pub table: &'a str,
    pub key: &'a [u8],
    pub size_bytes: Option<u64>,
    pub write_version: Option<u64>,
    /// Bytes written and when (the logs know; reported writes happen now).
    pub written: Option<(u64, i64)>,
    pub accesses: u64,
}

impl Scheduler {
    /// Records writes: the latest version per key rises, keys current in
    /// the destination become stale and go back in line ahead of new work,
    /// unknown keys are tracked. Durable when this returns.
    pub fn record_writes(
        &mut self,
        writes: &[WriteEvent],
        now_us: i64,
    ) -> Result<WriteReport, SchedulerError> {
        let observed: Vec<Observed> = writes
            .iter()
            .map(|write| Observed {
                table: &write.table,
                key: &write.key,
                size_bytes: write.size_bytes,
                write_version: Some(write.version),
                written: None,
                accesses: 0,
            })
            .collect();
        self.apply_observed(&observed, &[], now_us)
    }

    /// Applies what was seen of keys, and `settings`, in one commit.
    pub(super) fn apply_observed(
        &mut self,
        observed: &[Observed],
        settings: &[(&str, String)],
        now_us: i64,
    ) -> Result<WriteReport, SchedulerError> {
        let mut report = WriteReport::default();
        let mut changes: HashMap<KeyId, KeyRecord> = HashMap::new();
        for seen in observed {
            let (id, new) = self.track(seen.table, seen.key, seen.size_bytes.unwrap_or(0))?;
            report.new_keys += usize::from(new);
            let before = self.map.record(id);
            let record = changes.entry(id).or_insert(before);
            if let Some(size) = seen.size_bytes {
                record.size_bytes = size;
            }
            if let Some(version) = seen.write_version {
                record.latest_write = record.latest_write.max(version);
            }
            if seen.write_version.is_some() || seen.written.is_some() {
                let (bytes, at_us) = seen.written.unwrap_or((record.size_bytes.max(1), now_us));
                self.recent_writes.add(bytes, at_us);
            }
            self.update_plan(id, |plan| plan.frequency += seen.accesses as f32);
            if !new && *record == before {
                changes.remove(&id);
            }
        }
        let changes: Vec<(KeyId, KeyRecord)> = changes.into_iter().collect();
        report.made_stale = self.commit_writes(&changes, settings)?;
        Ok(report)
    }

    /// Records that each table was emptied at its version (a TRUNCATE in
    /// the source): every key of it tracked so far counts as written then,
    /// so one current in the destination goes stale and each is copied
    /// again (the copy finds the row gone and deletes it). A table with no
    /// tracked key changes nothing. Durable when this returns.
    pub fn record_truncations(
        &mut self,
        truncations: &[(String, u64)],
        now_us: i64,
    ) -> Result<WriteReport, SchedulerError> {
        let mut emptied: HashMap<u32, u64> = HashMap::new();
        for (table, version) in truncations {
            if let Some(table) = self.map.find_table(table) {
                let latest = emptied.entry(table).or_default();
                *latest = (*latest).max(*version);
            }
        }
        if emptied.is_empty() {
            return Ok(WriteReport::default());
        }
        let mut changes = Vec::new();
        let mut bytes = 0;
        for id in self.map.ids() {
            let Some(&version) = emptied.get(&self.map.table_of(id)) else {
                continue;
            };
            let mut record = self.map.record(id);
            bytes += record.size_bytes;
            if record.latest_write < version {
                record.latest_write = version;
                changes.push((id, record));
            }
        }
        self.recent_writes.add(bytes.max(1), now_us);
        Ok(WriteReport {
            new_keys: 0,
            made_stale: self.commit_writes(&changes, &[])?,
        })
    }

    /// Commits records whose versions or sizes changed, and `settings`;
    /// puts back in line the keys made stale (how many) and those whose
    /// failed copies a new write makes moot.
    fn commit_writes(
        &mut self,
        changes: &[(KeyId, KeyRecord)],
        settings: &[(&str, String)],
    ) -> Result<usize, SchedulerError> {
        let before: Vec<KeyRecord> = changes.iter().map(|(id, _)| self.map.record(*id)).collect();
        self.commit(changes, settings)?;
        let mut made_stale = 0;
        for ((id, record), before) in changes.iter().zip(before) {
            let stale =
                before.location() == Location::Current && record.location() == Location::Stale;
            made_stale += usize::from(stale);
            // A new write replaces the value whose copies failed: the key
            // is offered at once, parked or waiting out a retry delay.
            let failures_forgotten =
                record.latest_write > before.latest_write && self.failing.forget(*id);
            if (stale || failures_forgotten) && !self.plans.leased(*id) {
                self.requeue(*id);
            }
        }
        // A key made stale, or a new one not copied yet: not every key is
        // current any more.
        if self.phase == Phase::CutoverReady && !self.all_current() {
            self.set_phase(Phase::Background)?;
        }
        Ok(made_stale)
    }
}
