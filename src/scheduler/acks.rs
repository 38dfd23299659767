//! Acknowledgements: a copy counts only if its version is current.

use std::collections::HashMap;

use super::{Ack, AckOutcome, AckResult, Scheduler, SchedulerError};
use crate::state::{KeyId, KeyRecord, Location};

impl Scheduler {
    /// Applies an executor's acknowledgements for keys of `lease` (which
    /// may have expired or been voided by a restart: copies are judged by
    /// their version alone). Accepted copies are durable when this returns.
    pub fn acknowledge(
        &mut self,
        lease: u64,
        acks: &[Ack],
        now_us: i64,
    ) -> Result<Vec<AckOutcome>, SchedulerError> {
        let mut outcomes = self.acknowledge_all(&[(lease, acks)], now_us)?;
        Ok(outcomes.pop().expect("one call, one answer"))
    }

    /// [`acknowledge`](Self::acknowledge) for several calls (lease, acks)
    /// in one durable commit, in order (a later call sees the earlier
    /// ones' copies): a service gathers the calls that arrive while a
    /// commit is under way. On error none of them is applied.
    pub fn acknowledge_all(
        &mut self,
        calls: &[(u64, &[Ack])],
        now_us: i64,
    ) -> Result<Vec<Vec<AckOutcome>>, SchedulerError> {
        self.release_due(now_us);
        let mut all_outcomes = Vec::with_capacity(calls.len());
        let mut changes: HashMap<KeyId, KeyRecord> = HashMap::new();
        let mut released = Vec::new();
        let mut accepted_bytes = 0u64;
        for &(lease, acks) in calls {
            let mut outcomes = Vec::with_capacity(acks.len());
            for ack in acks {
                let Some(id) = self.find(&ack.table, &ack.key) else {
                    outcomes.push(AckOutcome::UnknownKey);
                    continue;
                };
                let held_here = lease != 0 && self.plans[id.index()].lease == lease;
                let record = changes
                    .get(&id)
                    .copied()
                    .unwrap_or_else(|| self.map.record(id));
                let outcome = match &ack.result {
                    AckResult::Copied { version } => {
                        if *version < record.latest_write {
                            AckOutcome::Stale {
                                copied: *version,
                                latest_write: record.latest_write,
                            }
                        } else if record.copied_version.is_some_and(|c| c >= *version) {
                            AckOutcome::AlreadyCurrent
                        } else {
                            changes.insert(
                                id,
                                KeyRecord {
                                    copied_version: Some(*version),
                                    ..record
                                },
                            );
                            accepted_bytes += record.size_bytes;
                            AckOutcome::Accepted
                        }
                    }
                    AckResult::Failed { reason } => {
                        if held_here {
                            tracing::debug!(key = %self.map.describe(id), %reason, "copy failed; key back in line");
                            AckOutcome::Requeued
                        } else {
                            AckOutcome::NotLeased
                        }
                    }
                };
                if held_here {
                    released.push((id, lease));
                }
                outcomes.push(outcome);
            }
            all_outcomes.push(outcomes);
        }
        let changes: Vec<(KeyId, KeyRecord)> = changes.into_iter().collect();
        self.map.commit(&changes, &[])?;
        for (id, lease) in released {
            if self.plans[id.index()].lease != lease {
                continue;
            }
            self.plans[id.index()].lease = 0;
            if self.map.record(id).location() != Location::Current {
                self.requeue(id);
            }
        }
        for &(lease, _) in calls {
            if let Some(live) = self.leases.get_mut(&lease) {
                let plans = &self.plans;
                live.keys.retain(|id| plans[id.index()].lease == lease);
                if live.keys.is_empty() {
                    self.leases.remove(&lease);
                }
            }
        }
        for outcome in all_outcomes.iter().flatten() {
            match outcome {
                AckOutcome::Accepted => self.counters.accepted += 1,
                AckOutcome::AlreadyCurrent => self.counters.duplicates += 1,
                AckOutcome::Stale { .. } => self.counters.stale_acks += 1,
                AckOutcome::Requeued => self.counters.failures += 1,
                AckOutcome::NotLeased | AckOutcome::UnknownKey => {}
            }
        }
        if !changes.is_empty() {
            self.copied
                .push_back((now_us, accepted_bytes, changes.len() as u64));
        }
        Ok(all_outcomes)
    }
}
