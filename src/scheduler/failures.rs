//! Keys whose copies fail. A failed key is offered again after a delay
//! that doubles with each failure in a row (from `copy_retry_us`, at most
//! [`MAX_DOUBLINGS`] times), so that a failing key does not take every
//! batch's first place. After `max_copy_failures` failures in a row that
//! were its own it is parked, set aside until an operator's
//! [`Scheduler::retry_parked`] or a new write to it. A failure is the
//! key's own when the executor copied other keys of the same lease in the
//! same acknowledgement, or the lease held the key alone: when a whole
//! batch fails, nothing says which of its keys is at fault (the reference
//! executor then copies the batch in halves to find out). And a key is
//! parked only if other copies were accepted since its first failure: when
//! nothing is accepted (the destination is down, or every executor fails
//! alike) no key is to blame and every one is retried, at the longest
//! delay, until copies go through again.
//!
//! Failures are kept in memory for the keys that failed (none in a healthy
//! migration), not in the location map: a restart forgets them and gives
//! every parked key another round.

use std::collections::HashMap;

use super::queues::EXCLUDED;
use super::{AckOutcome, Scheduler};
use crate::state::{KeyId, Location, LocationCounts};

/// Doublings of the first retry delay at most (64 times it).
pub const MAX_DOUBLINGS: u32 = 6;

/// Longest first retry delay: an hour.
pub const MAX_COPY_RETRY_US: i64 = 3600 * crate::time::SECOND_US;

/// Longest failure reason kept per key, in bytes.
const MAX_REASON_BYTES: usize = 1024;

/// How many failing keys a status lists by name.
pub const FAILING_KEYS_LISTED: usize = 20;

/// A key whose copy failed, as the status lists it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FailingKey {
    pub table: String,
    /// The key as text (UTF-8, or its bytes in hex).
    pub key: String,
    /// Failures in a row.
    pub failures: u32,
    /// What the executor said the last time.
    pub last_reason: String,
    /// Parked, or waiting out a retry delay.
    pub parked: bool,
}

#[derive(Debug)]
struct Failing {
    /// Failures in a row, and those of them that were the key's own.
    failures: u32,
    own_failures: u32,
    /// Copies accepted (all keys) when this key first failed.
    accepted_before: u64,
    /// When the key may be offered again ([`i64::MAX`] once parked).
    retry_at_us: i64,
    reason: String,
}

impl Failing {
    fn parked(&self) -> bool {
        self.retry_at_us == i64::MAX
    }
}

/// Whether a key may be offered, as far as its failures go.
pub(super) enum Hold {
    Free,
    Until(i64),
    Parked,
}

/// The keys that failed and are not copied since.
#[derive(Debug, Default)]
pub(super) struct FailingKeys {
    keys: HashMap<KeyId, Failing>,
}

impl FailingKeys {
    pub fn hold(&self, id: KeyId, now_us: i64) -> Hold {
        if self.keys.is_empty() {
            return Hold::Free;
        }
        match self.keys.get(&id) {
            Some(failing) if failing.parked() => Hold::Parked,
            Some(failing) if failing.retry_at_us > now_us => Hold::Until(failing.retry_at_us),
            _ => Hold::Free,
        }
    }

    /// Forgets `id`'s failures when a copy of it was `judged` to leave it
    /// current (accepted, or current already).
    pub fn copy_judged(&mut self, id: KeyId, judged: &AckOutcome) {
        if matches!(judged, AckOutcome::Accepted | AckOutcome::AlreadyCurrent) {
            self.forget(id);
        }
    }

    /// Forgets `id`'s failures (it was copied, or written again); whether
    /// it had any.
    pub fn forget(&mut self, id: KeyId) -> bool {
        if self.keys.is_empty() {
            return false;
        }
        self.keys.remove(&id).is_some()
    }
}

impl Scheduler {
    /// Counts a failed copy of a leased key (`own`: see the module's
    /// documentation): the key waits before it is offered again, or is
    /// parked.
    pub(super) fn copy_failed(&mut self, id: KeyId, reason: &str, own: bool, now_us: i64) {
        // Another call of the same batch may have copied it since.
        if self.map.record(id).location() == Location::Current {
            return;
        }
        let accepted = self.counters.accepted;
        let failing = self.failing.keys.entry(id).or_insert(Failing {
            failures: 0,
            own_failures: 0,
            accepted_before: accepted,
            retry_at_us: now_us,
            reason: String::new(),
        });
        failing.failures += 1;
        failing.own_failures += u32::from(own);
        failing.reason.clear();
        failing.reason.push_str(truncated(reason, MAX_REASON_BYTES));
        let limit = self.config.max_copy_failures;
        if limit > 0 && failing.own_failures >= limit && accepted > failing.accepted_before {
            failing.retry_at_us = i64::MAX;
            tracing::warn!(
                key = %self.map.describe(id),
                failures = failing.failures,
                reason = %failing.reason,
                "copy failed {limit} times in a row while other keys were copied; the key is parked until RetryParked or a new write to it"
            );
        } else {
            let doublings = (failing.failures - 1).min(MAX_DOUBLINGS);
            failing.retry_at_us = now_us.saturating_add(self.config.copy_retry_us << doublings);
        }
    }

    /// Offers every parked key again, with its failures forgotten; how
    /// many there were.
    pub fn retry_parked(&mut self) -> u64 {
        let parked: Vec<KeyId> = self
            .failing
            .keys
            .extract_if(|_, failing| failing.parked())
            .map(|(id, _)| id)
            .collect();
        for &id in &parked {
            if self.map.record(id).location() != Location::Current && !self.plans.leased(id) {
                self.requeue(id);
            }
        }
        if !parked.is_empty() {
            tracing::info!(keys = parked.len(), "parked keys offered again");
        }
        parked.len() as u64
    }

    /// The failing keys the status counts: a key the plan excludes is
    /// never offered, whatever its failures.
    fn counted_failures(&self) -> impl Iterator<Item = (KeyId, &Failing)> {
        self.failing
            .keys
            .iter()
            .filter(|&(&id, _)| self.plans.class(id) != EXCLUDED)
            .map(|(&id, failing)| (id, failing))
    }

    /// Keys waiting out a retry delay, and keys parked.
    pub(super) fn failure_counts(&self) -> (u64, u64) {
        self.counted_failures()
            .fold((0, 0), |(retrying, parked), (_, failing)| {
                if failing.parked() {
                    (retrying, parked + 1)
                } else {
                    (retrying + 1, parked)
                }
            })
    }

    /// Keys waiting out a retry delay, the parked keys' count and bytes,
    /// and the first [`FAILING_KEYS_LISTED`] failing keys, parked ones
    /// first, each in key order.
    pub(super) fn failing_keys(&self) -> (u64, LocationCounts, Vec<FailingKey>) {
        let mut failing: Vec<(KeyId, &Failing)> = self.counted_failures().collect();
        failing.sort_unstable_by_key(|&(id, failing)| (!failing.parked(), id));
        let parked = failing.iter().filter(|(_, failing)| failing.parked());
        let counts = LocationCounts {
            keys: parked.clone().count() as u64,
            bytes: parked.map(|&(id, _)| self.map.record(id).size_bytes).sum(),
        };
        let retrying = failing.len() as u64 - counts.keys;
        let listed = failing
            .iter()
            .take(FAILING_KEYS_LISTED)
            .map(|&(id, failing)| FailingKey {
                table: self.map.table_name(id).to_string(),
                key: crate::keys::display_key(self.map.key(id)),
                failures: failing.failures,
                last_reason: failing.reason.clone(),
                parked: failing.parked(),
            })
            .collect();
        (retrying, counts, listed)
    }
}

fn truncated(text: &str, max_bytes: usize) -> &str {
    let mut end = text.len().min(max_bytes);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_cut_at_a_character_boundary() {
        assert_eq!(truncated("abc", 2), "ab");
        assert_eq!(truncated("aé", 2), "a");
        assert_eq!(truncated("aé", 3), "aé");
    }
}
