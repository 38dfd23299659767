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
        let before: Vec<KeyRecord> = changes.iter().map(|(id, _)| self.map.record(*id)).collect();
        self.commit(&changes, settings)?;
        for ((id, record), before) in changes.iter().zip(before) {
            let made_stale =
                before.location() == Location::Current && record.location() == Location::Stale;
            report.made_stale += usize::from(made_stale);
            // A new write replaces the value whose copies failed: the key
            // is offered at once, parked or waiting out a retry delay.
            let failures_forgotten =
                record.latest_write > before.latest_write && self.failing.forget(*id);
            if (made_stale || failures_forgotten) && !self.plans.leased(*id) {
                self.requeue(*id);
            }
        }
        // A key made stale, or a new one not copied yet: not every key is
        // current any more.
        if self.phase == Phase::CutoverReady && !self.all_current() {
            self.set_phase(Phase::Background)?;
        }
        Ok(report)
    }
}
