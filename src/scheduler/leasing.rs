//! Handing out leases, extending them, and taking back the keys of leases
//! that expired.

use std::cmp::Reverse;

use super::queues::{CLASSES, class_slot};
use super::{
    Idle, LEASE_EPOCH_BITS, Lease, LeaseRequest, LeasedBatch, Phase, Scheduler, SchedulerError,
};
use crate::state::KeyId;

pub(super) struct LiveLease {
    /// The keys as leased, in order.
    pub keys: Vec<KeyId>,
    /// The version each key was leased at (its `min_version`).
    pub versions: Vec<u64>,
    /// Whether the lease still holds the key at the same place in `keys`.
    /// Which lease holds a key is known only here, so that a hold is
    /// found by the key's place in its lease (where executors name it)
    /// rather than looked up by key id, a cache miss in a map as large as
    /// every lease out.
    held: Vec<bool>,
    /// How many keys it still holds: none, and the lease is over.
    holding: usize,
    pub expires_us: i64,
    /// How many leases were taken before it, this one included.
    pub taken: u64,
    /// Who took it ([`ANY_HOLDER`]: anyone may extend or acknowledge it).
    pub holder: u32,
}

impl LiveLease {
    /// Whether it still holds the key at `place`.
    pub fn holds(&self, place: usize) -> bool {
        self.held.get(place).copied().unwrap_or(false)
    }

    pub fn holds_none(&self) -> bool {
        self.holding == 0
    }

    /// Ends its hold on the key at `place` and gives the key (`None`: it
    /// did not hold one there).
    pub fn let_go(&mut self, place: usize) -> Option<KeyId> {
        if !std::mem::take(self.held.get_mut(place)?) {
            return None;
        }
        self.holding -= 1;
        Some(self.keys[place])
    }

    /// The keys it still holds.
    pub fn held_keys(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.keys
            .iter()
            .zip(&self.held)
            .filter(|(_, held)| **held)
            .map(|(&id, _)| id)
    }
}

/// A lease holder that binds nothing.
pub const ANY_HOLDER: u32 = 0;

impl Scheduler {
    /// Returns the keys of leases that expired by `now_us` to the line and
    /// releases keys whose "not before" time has come.
    pub(super) fn release_due(&mut self, now_us: i64) {
        while let Some(&Reverse((expires, _, lease))) = self.expiries.peek() {
            if expires > now_us {
                break;
            }
            self.expiries.pop();
            let Some(live) = self.leases.get(&lease) else {
                continue;
            };
            if live.expires_us > now_us {
                // Extended since this entry was pushed.
                continue;
            }
            let live = self.leases.remove(&lease).expect("present");
            for id in live.held_keys() {
                self.no_longer_leased(id);
                self.counters.redelivered += 1;
                self.requeue(id);
            }
        }
        while let Some(&Reverse((due, id))) = self.deferred.peek() {
            if due > now_us {
                break;
            }
            self.deferred.pop();
            self.requeue(id);
        }
    }

    /// Leases up to the request's (and the configuration's) key and byte
    /// limits, within the bandwidth budget, or says why it cannot.
    pub fn lease(&mut self, request: &LeaseRequest, now_us: i64) -> Result<Lease, Idle> {
        self.lease_as(request, ANY_HOLDER, now_us)
    }

    /// [`lease`](Self::lease), bound to `holder` (an opaque caller id):
    /// while it is live, only `holder` (or a caller naming
    /// [`ANY_HOLDER`]) passes [`check_holder`](Self::check_holder).
    pub fn lease_as(
        &mut self,
        request: &LeaseRequest,
        holder: u32,
        now_us: i64,
    ) -> Result<Lease, Idle> {
        self.lease_batch_as(request, holder, now_us)
            .map(LeasedBatch::into_lease)
    }

    /// [`lease_as`](Self::lease_as), the keys side by side (no allocation
    /// per key: the service builds its messages off the scheduler's
    /// thread).
    pub fn lease_batch_as(
        &mut self,
        request: &LeaseRequest,
        holder: u32,
        now_us: i64,
    ) -> Result<LeasedBatch, Idle> {
        self.release_due(now_us);
        if self.phase == Phase::Done {
            return Err(Idle::Done);
        }
        if self.paused {
            return Err(Idle::Paused);
        }
        let budget = self
            .bandwidth
            .available(now_us)
            .map_err(|retry_after_us| Idle::OverBudget { retry_after_us })?;
        let max_keys = request.max_keys.min(self.config.max_batch_keys).max(1);
        let max_bytes = request
            .max_bytes
            .min(self.config.max_batch_bytes)
            .min(budget)
            .max(1);
        let tables: Vec<usize> = if request.tables.is_empty() {
            (0..self.queues.len()).collect()
        } else {
            request
                .tables
                .iter()
                .filter_map(|name| self.map.find_table(name))
                .map(|id| id as usize)
                .collect()
        };
        let id = self.new_lease_id();
        let expires_us = now_us + self.config.lease_duration_us;
        let mut keys = Vec::new();
        let mut bytes = 0u64;
        'classes: for slot in 0..CLASSES.len() {
            let mut heads = None;
            while keys.len() < max_keys {
                let Some(key) = self.next_in_class(slot, &tables, now_us, &mut heads) else {
                    continue 'classes;
                };
                let size = self.map.record(key).size_bytes;
                if !keys.is_empty() && bytes + size > max_bytes {
                    // Too big for what is left of this batch: first in the next one.
                    self.queues[self.map.table_of(key) as usize].resync[slot].push_front(key);
                    break 'classes;
                }
                bytes += size;
                self.hold(key);
                keys.push(key);
            }
            break;
        }
        if keys.is_empty() {
            let next_due_us = self.deferred.peek().map(|Reverse((due, _))| *due);
            return Err(Idle::NothingDue { next_due_us });
        }
        self.leases_taken += 1;
        self.bandwidth.spend(bytes);
        self.counters.leased += keys.len() as u64;
        let mut batch = LeasedBatch::new(id, expires_us, Vec::new());
        // Table ids of the map, and where each is in the batch's names.
        let mut batch_tables: Vec<(u32, u32)> = Vec::new();
        for &key in &keys {
            let plan = self.plans.get(key);
            let record = self.map.record(key);
            let table = self.map.table_of(key);
            let in_batch = match batch_tables.iter().find(|(map_id, _)| *map_id == table) {
                Some(&(_, in_batch)) => in_batch,
                None => {
                    let in_batch = batch.tables.len() as u32;
                    batch.tables.push(self.map.tables()[table as usize].clone());
                    batch_tables.push((table, in_batch));
                    in_batch
                }
            };
            batch.push(
                in_batch,
                self.map.key(key),
                record.size_bytes,
                CLASSES[class_slot(plan.class)],
                plan.destination,
                record.latest_write,
            );
        }
        self.leases.insert(
            id,
            LiveLease {
                held: vec![true; keys.len()],
                holding: keys.len(),
                keys,
                versions: batch.min_versions().to_vec(),
                expires_us,
                taken: self.leases_taken,
                holder,
            },
        );
        self.expiries
            .push(Reverse((expires_us, self.leases_taken, id)));
        Ok(batch)
    }

    /// Extends a live lease by the lease duration from `now_us`.
    pub fn extend(&mut self, lease: u64, now_us: i64) -> Result<i64, SchedulerError> {
        self.release_due(now_us);
        if !self.leases.contains_key(&lease) {
            return Err(self.unknown_lease(lease));
        }
        let live = self.leases.get_mut(&lease).expect("present");
        live.expires_us = now_us + self.config.lease_duration_us;
        let expires = live.expires_us;
        self.expiries.push(Reverse((expires, live.taken, lease)));
        Ok(expires)
    }

    /// Refuses `caller` on a live `lease` someone else holds. A lease that
    /// is not live passes (acknowledgements are then judged by version,
    /// and an extension fails on its own).
    pub fn check_holder(&self, lease: u64, caller: u32) -> Result<(), SchedulerError> {
        match self.leases.get(&lease) {
            Some(live)
                if live.holder != ANY_HOLDER && caller != ANY_HOLDER && live.holder != caller =>
            {
                Err(SchedulerError::LeaseHeldByAnother(lease))
            }
            _ => Ok(()),
        }
    }

    /// A random lease id under this opening's epoch, never one that is live.
    fn new_lease_id(&mut self) -> u64 {
        let random_bits = 64 - LEASE_EPOCH_BITS;
        loop {
            let random: u64 = rand::Rng::random(&mut self.lease_ids);
            let id = (self.lease_epoch << random_bits) | (random >> LEASE_EPOCH_BITS);
            if !self.leases.contains_key(&id) {
                return id;
            }
        }
    }

    /// Why `lease` is not live: taken before this opening (a restart), or
    /// expired or completed since.
    pub(super) fn unknown_lease(&self, lease: u64) -> SchedulerError {
        if lease != 0 && lease >> (64 - LEASE_EPOCH_BITS) != self.lease_epoch {
            SchedulerError::LeaseVoidedByRestart {
                lease,
                restarted_at_us: self.opened_at_us,
            }
        } else {
            SchedulerError::UnknownLease(lease)
        }
    }
}
