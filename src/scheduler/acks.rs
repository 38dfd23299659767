//! Acknowledgements: a copy counts only if its version is current. Keys
//! are named one by one, or, in the compact form, a live lease's keys not
//! named are all taken as copied at the version they were leased at.

use super::queues::Plans;
use super::{Ack, AckCall, AckCallOutcome, AckOutcome, AckResult, Scheduler, SchedulerError};
use crate::prefetch::AHEAD;
use crate::state::{Change, KeyId, KeyRecord, Location, LocationMap};

/// Per-key changes an acknowledgement batch is building, before its
/// commit, in the order first made. A key changed here carries the
/// changed mark in the scheduler's plans, so that judging a key the batch
/// has not touched (nearly all of them) looks nothing up; the positions of
/// the changes are indexed only once a key is judged a second time.
#[derive(Default)]
struct Pending {
    changes: Vec<Change>,
    positions: Option<ahash::AHashMap<KeyId, usize>>,
    accepted_bytes: u64,
}

impl Pending {
    /// Where the batch holds a change of `id` (a key `plans` marks).
    fn position(&mut self, id: KeyId) -> Option<usize> {
        let changes = &self.changes;
        self.positions
            .get_or_insert_with(|| {
                changes
                    .iter()
                    .enumerate()
                    .map(|(at, &(id, _))| (id, at))
                    .collect()
            })
            .get(&id)
            .copied()
    }

    /// `id`'s record as this batch leaves it so far.
    fn record(&mut self, plans: &Plans, map: &LocationMap, id: KeyId) -> KeyRecord {
        if plans.changed(id)
            && let Some(at) = self.position(id)
        {
            return self.changes[at].1;
        }
        map.record(id)
    }

    fn set(&mut self, plans: &mut Plans, id: KeyId, record: KeyRecord) {
        if plans.changed(id)
            && let Some(at) = self.position(id)
        {
            self.changes[at].1 = record;
            return;
        }
        plans.mark_changed(id, true);
        if let Some(positions) = &mut self.positions {
            positions.insert(id, self.changes.len());
        }
        self.changes.push((id, record));
    }

    /// Judges a copy of `id` at `version` against what is known, counting
    /// the batch's earlier copies: accepted copies join the batch.
    fn judge_copy(
        &mut self,
        plans: &mut Plans,
        map: &LocationMap,
        id: KeyId,
        version: u64,
    ) -> AckOutcome {
        let record = self.record(plans, map, id);
        if version < record.latest_write {
            AckOutcome::Stale {
                copied: version,
                latest_write: record.latest_write,
            }
        } else if record.copied_version.is_some_and(|c| c >= version) {
            AckOutcome::AlreadyCurrent
        } else {
            self.set(
                plans,
                id,
                KeyRecord {
                    copied_version: Some(version),
                    ..record
                },
            );
            self.accepted_bytes += record.size_bytes;
            AckOutcome::Accepted
        }
    }

    /// The changes to commit, every mark they set cleared.
    fn finish(self, plans: &mut Plans) -> Vec<Change> {
        for &(id, _) in &self.changes {
            plans.mark_changed(id, false);
        }
        self.changes
    }
}

impl Scheduler {
    /// Applies an executor's acknowledgements for keys of `lease` (which
    /// may have expired or been voided by a restart: copies are judged by
    /// their version alone). Accepted copies are committed when this
    /// returns.
    pub fn acknowledge(
        &mut self,
        lease: u64,
        acks: &[Ack],
        now_us: i64,
    ) -> Result<Vec<AckOutcome>, SchedulerError> {
        let call = AckCall {
            lease,
            acks,
            others_copied_at_leased_version: false,
        };
        let mut outcomes = self.acknowledge_all(&[call], now_us)?;
        Ok(outcomes.pop().expect("one call, one answer")?.acks)
    }

    /// [`acknowledge`](Self::acknowledge) for several calls in one commit,
    /// in order (a later call sees the earlier ones' copies): a service
    /// gathers the calls that arrive while a commit is under way. The
    /// compact form (`others_copied_at_leased_version`) needs the lease to
    /// be live: a call naming an unknown one gets [`UnknownLease`] and
    /// nothing of it is applied, whatever the others do. On a storage
    /// error none of them is applied.
    ///
    /// [`UnknownLease`]: SchedulerError::UnknownLease
    pub fn acknowledge_all(
        &mut self,
        calls: &[AckCall],
        now_us: i64,
    ) -> Result<Vec<Result<AckCallOutcome, SchedulerError>>, SchedulerError> {
        self.release_due(now_us);
        let mut results = Vec::with_capacity(calls.len());
        let named: usize = calls.iter().map(|call| call.acks.len()).sum();
        let others: usize = calls
            .iter()
            .filter(|call| call.others_copied_at_leased_version)
            .filter_map(|call| self.leases.get(&call.lease))
            .map(|live| live.keys.len())
            .sum();
        let mut pending = Pending {
            changes: Vec::with_capacity(named + others),
            ..Default::default()
        };
        let mut released = Vec::new();
        // Failed copies: key, reason, and whether the failure is the key's
        // own (see `copy_failed`).
        let mut failed: Vec<(KeyId, &str, bool)> = Vec::new();
        for call in calls {
            if call.others_copied_at_leased_version && !self.leases.contains_key(&call.lease) {
                results.push(Err(self.unknown_lease(call.lease)));
                continue;
            }
            let mut outcome = AckCallOutcome::default();
            let leased = self.leases.get(&call.lease);
            // A failure is the key's own when the executor copied other
            // keys of the lease in the same call, or the lease held it alone;
            // a whole lease failing says nothing of its keys.
            let failures_are_own = call.others_copied_at_leased_version
                || leased.is_some_and(|live| live.keys.len() == 1)
                || call
                    .acks
                    .iter()
                    .any(|ack| matches!(ack.result, AckResult::Copied { .. }));
            // The places in the lease of the keys the call names (only the
            // compact form needs them).
            let mut named = match leased {
                Some(live) if call.others_copied_at_leased_version => vec![false; live.keys.len()],
                _ => Vec::new(),
            };
            // Where each of the lease's keys is, built once a key is named
            // out of its place.
            let mut places: Option<ahash::AHashMap<KeyId, usize>> = None;
            let mut table_cache: Option<(&str, Option<u32>)> = None;
            for (position, ack) in call.acks.iter().enumerate() {
                if let Some(live) = leased {
                    self.prefetch_ahead(&live.keys, position);
                }
                let table = match table_cache {
                    Some((name, id)) if name == &*ack.table => id,
                    _ => {
                        let id = self.map.find_table(&ack.table);
                        table_cache = Some((&ack.table, id));
                        id
                    }
                };
                // Executors name a lease's keys in the order they got
                // them: the key at the same place in the lease is tried
                // before the index.
                let in_place = leased
                    .and_then(|live| live.keys.get(position))
                    .copied()
                    .filter(|&id| {
                        table == Some(self.map.table_of(id)) && self.map.key(id) == &ack.key[..]
                    });
                let found =
                    in_place.or_else(|| table.and_then(|table| self.map.find(table, &ack.key)));
                let Some(id) = found else {
                    outcome.acks.push(AckOutcome::UnknownKey);
                    continue;
                };
                let place = match (in_place, leased) {
                    (Some(_), _) => Some(position),
                    (None, Some(live)) => places
                        .get_or_insert_with(|| {
                            live.keys
                                .iter()
                                .enumerate()
                                .map(|(at, &id)| (id, at))
                                .collect()
                        })
                        .get(&id)
                        .copied(),
                    (None, None) => None,
                };
                if let Some(place) = place
                    && let Some(named) = named.get_mut(place)
                {
                    *named = true;
                }
                // Where the call's lease still holds the key.
                let held_at = place.filter(|&place| {
                    call.lease != 0 && leased.is_some_and(|live| live.holds(place))
                });
                let judged = match &ack.result {
                    AckResult::Copied { version } => {
                        let judged = pending.judge_copy(&mut self.plans, &self.map, id, *version);
                        self.failing.copy_judged(id, &judged);
                        judged
                    }
                    AckResult::Failed { reason } if held_at.is_some() => {
                        tracing::debug!(key = %self.map.describe(id), %reason, "copy failed; key back in line");
                        failed.push((id, reason, failures_are_own));
                        AckOutcome::Requeued
                    }
                    AckResult::Failed { .. } => AckOutcome::NotLeased,
                };
                if let Some(place) = held_at {
                    released.push((id, call.lease, place));
                }
                outcome.acks.push(judged);
            }
            if let Some(live) = leased
                && call.others_copied_at_leased_version
            {
                let others: Vec<(usize, KeyId, u64)> = (0..live.keys.len())
                    .filter(|&place| live.holds(place) && !named[place])
                    .map(|place| (place, live.keys[place], live.versions[place]))
                    .collect();
                for (at, &(place, id, version)) in others.iter().enumerate() {
                    if let Some(&(_, ahead, _)) = others.get(at + AHEAD) {
                        self.map.prefetch_record(ahead);
                    }
                    let judged = pending.judge_copy(&mut self.plans, &self.map, id, version);
                    self.failing.copy_judged(id, &judged);
                    match judged {
                        AckOutcome::Accepted => outcome.others_accepted += 1,
                        other => outcome.others_not_accepted.push((place as u32, other)),
                    }
                    released.push((id, call.lease, place));
                }
            }
            results.push(Ok(outcome));
        }
        let accepted_bytes = pending.accepted_bytes;
        let changes = pending.finish(&mut self.plans);
        self.commit(&changes, &[])?;
        // Each call's keys are together: its lease is looked up once, and
        // put back only while it holds keys.
        for run in released.chunk_by(|a, b| a.1 == b.1) {
            let Some(mut live) = self.leases.remove(&run[0].1) else {
                continue;
            };
            for (at, &(_, _, place)) in run.iter().enumerate() {
                if let Some(&(ahead, _, _)) = run.get(at + AHEAD) {
                    self.map.prefetch_record(ahead);
                }
                let Some(id) = live.let_go(place) else {
                    continue;
                };
                self.no_longer_leased(id);
                if self.map.record(id).location() != Location::Current {
                    self.requeue(id);
                }
            }
            if !live.holds_none() {
                self.leases.insert(run[0].1, live);
            }
        }
        for outcome in results.iter().flatten() {
            self.counters.accepted += outcome.others_accepted;
            let others = outcome.others_not_accepted.iter().map(|(_, o)| o);
            for judged in outcome.acks.iter().chain(others) {
                match judged {
                    AckOutcome::Accepted => self.counters.accepted += 1,
                    AckOutcome::AlreadyCurrent => self.counters.duplicates += 1,
                    AckOutcome::Stale { .. } => self.counters.stale_acks += 1,
                    AckOutcome::Requeued => self.counters.failures += 1,
                    AckOutcome::NotLeased | AckOutcome::UnknownKey => {}
                }
            }
        }
        // After the tallies: a failure parks a key only if other copies
        // were accepted since its first, these calls' included.
        for (id, reason, own) in failed {
            self.copy_failed(id, reason, own, now_us);
        }
        if !changes.is_empty() {
            self.copied
                .push_back((now_us, accepted_bytes, changes.len() as u64));
        }
        Ok(results)
    }
}
