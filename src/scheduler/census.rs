//! Running tallies over every tracked key — what the status record and the
//! confidence are made of — kept as each key changes, so that a status call
//! or a confidence measurement never walks ten million keys on the owner.
//!
//! Every change to a key's record, plan or lease goes through
//! [`Scheduler::commit`], [`Scheduler::update_plan`] or
//! [`Scheduler::track`], which take the key's old standing out of the
//! census and put the new one in.

use super::Scheduler;
use super::confidence::{Histograms, KeyProfile};
use super::queues::Plan;
use crate::state::{Change, KeyId, KeyRecord, Location, LocationCounts, StateError};

/// What the census counts of one key.
#[derive(Clone, Copy, Debug)]
pub(super) struct Standing {
    profile: KeyProfile,
    location: Location,
    in_sample: bool,
    leased: bool,
}

impl Standing {
    pub fn of(table: u32, record: &KeyRecord, plan: &Plan, leased: bool) -> Standing {
        Standing {
            profile: KeyProfile {
                table,
                size_bytes: record.size_bytes,
                frequency: f64::from(plan.frequency),
                write_rate: f64::from(plan.write_rate),
                predicted: f64::from(plan.expected),
            },
            location: record.location(),
            in_sample: record.in_sample,
            leased,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Census {
    pub histograms: Histograms,
    /// Keys under a live lease, by where they are ([`Location::index`]).
    pub leased: [LocationCounts; 3],
    pub sample: LocationCounts,
    pub sample_current: LocationCounts,
    /// Per table (by table id), what the status reports of each table.
    pub tables: Vec<TableTally>,
}

/// One table's keys by where they are, and its part of the sample.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct TableTally {
    /// By [`Location::index`].
    pub locations: [LocationCounts; 3],
    pub sample: LocationCounts,
    pub sample_current: LocationCounts,
}

impl Census {
    /// Keys under a live lease at `location`.
    pub fn leased_at(&self, location: Location) -> LocationCounts {
        self.leased[location.index()]
    }

    pub fn count(&mut self, key: Standing) {
        self.histograms
            .add(&key.profile, key.location == Location::Current);
        self.tally(&key, LocationCounts::add);
    }

    /// Takes back a [`count`](Self::count) of the same standing.
    pub fn uncount(&mut self, key: Standing) {
        self.histograms
            .remove(&key.profile, key.location == Location::Current);
        self.tally(&key, LocationCounts::remove);
    }

    /// [`uncount`](Self::uncount) of one key's standing `before`, then
    /// [`count`](Self::count) of `after`: where its profile is unchanged
    /// (a copy, a lease), its histogram buckets are worked out once.
    pub fn recount(&mut self, before: Standing, after: Standing) {
        if before.profile != after.profile {
            self.uncount(before);
            self.count(after);
            return;
        }
        self.histograms.shift(
            &after.profile,
            before.location == Location::Current,
            after.location == Location::Current,
        );
        self.tally(&before, LocationCounts::remove);
        self.tally(&after, LocationCounts::add);
    }

    /// Adds `key`'s bytes to (or takes them from, by `change`) every tally
    /// but the histograms.
    fn tally(&mut self, key: &Standing, change: fn(&mut LocationCounts, u64)) {
        let current = key.location == Location::Current;
        let bytes = key.profile.size_bytes;
        if key.leased {
            change(&mut self.leased[key.location.index()], bytes);
        }
        let table = self.table(key.profile.table);
        change(&mut table.locations[key.location.index()], bytes);
        if key.in_sample {
            change(&mut table.sample, bytes);
            if current {
                change(&mut table.sample_current, bytes);
            }
            change(&mut self.sample, bytes);
            if current {
                change(&mut self.sample_current, bytes);
            }
        }
    }

    fn table(&mut self, table: u32) -> &mut TableTally {
        let index = table as usize;
        if self.tables.len() <= index {
            self.tables.resize(index + 1, TableTally::default());
        }
        &mut self.tables[index]
    }
}

impl Scheduler {
    /// The census of every tracked key, counted from scratch (at opening).
    pub(super) fn count_every_key(&self) -> Census {
        let mut census = Census::default();
        for id in self.map.ids() {
            census.count(self.standing(id));
        }
        census
    }

    fn standing(&self, id: KeyId) -> Standing {
        Standing::of(
            self.map.table_of(id),
            &self.map.record(id),
            &self.plans.get(id),
            self.plans.leased(id),
        )
    }

    /// Commits `changes` and `settings` to the location map (see
    /// [`LocationMap::commit`](crate::state::LocationMap::commit)), keeping
    /// the census.
    pub(super) fn commit(
        &mut self,
        changes: &[Change],
        settings: &[(&str, String)],
    ) -> Result<(), StateError> {
        let (census, plans) = (&mut self.census, &self.plans);
        let mut ahead = changes.iter().skip(crate::prefetch::AHEAD);
        self.map
            .commit_observed(changes, settings, |id, table, before, after| {
                if let Some(&(next, _)) = ahead.next() {
                    plans.prefetch(next);
                }
                let (plan, leased) = (&plans.get(id), plans.leased(id));
                census.recount(
                    Standing::of(table, before, plan, leased),
                    Standing::of(table, after, plan, leased),
                );
            })
    }

    /// Changes what the scheduler knows of `id` (its scores), keeping the
    /// census.
    pub(super) fn update_plan(&mut self, id: KeyId, change: impl FnOnce(&mut Plan)) {
        let before = self.standing(id);
        let mut plan = self.plans.get(id);
        change(&mut plan);
        self.plans.set(id, plan);
        self.census.recount(before, self.standing(id));
    }

    /// Puts `id` under a lease (which records it, by its place), keeping
    /// the census.
    pub(super) fn hold(&mut self, id: KeyId) {
        let was_leased = self.plans.leased(id);
        self.plans.set_leased(id, true);
        self.count_lease_change(id, was_leased, true);
    }

    /// Takes off `id` the mark of a lease that let go of it, keeping the
    /// census.
    pub(super) fn no_longer_leased(&mut self, id: KeyId) {
        self.plans.set_leased(id, false);
        self.count_lease_change(id, true, false);
    }

    /// A lease changes only the leased tallies of a key's standing: the
    /// rest (table, histograms, sample) stays as counted.
    fn count_lease_change(&mut self, id: KeyId, was_leased: bool, leased: bool) {
        if was_leased == leased {
            return;
        }
        let record = self.map.record(id);
        let tally = &mut self.census.leased[record.location().index()];
        if leased {
            tally.add(record.size_bytes);
        } else {
            tally.remove(record.size_bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::confidence::{ConfidenceConfig, measure};
    use super::*;

    /// Keys counted, changed and taken back one at a time end with the
    /// same census, and the same confidence, as the keys left counted
    /// once from scratch.
    #[test]
    fn counts_taken_back_leave_what_a_fresh_count_gives() {
        let profile = |i: u64| KeyProfile {
            table: (i % 3) as u32,
            size_bytes: 10 + i * 7,
            frequency: (i % 11) as f64,
            write_rate: (i % 5) as f64 * 0.3,
            predicted: i as f64 / 7.0,
        };
        let standing = |i: u64, current: bool| Standing {
            profile: profile(i),
            location: if current {
                Location::Current
            } else {
                Location::SourceOnly
            },
            in_sample: i.is_multiple_of(4),
            leased: i.is_multiple_of(6),
        };
        let mut running = Census::default();
        for i in 0..200 {
            running.count(standing(i, false));
        }
        // Copy every third key, then take every tenth key away.
        for i in (0..200).step_by(3) {
            running.recount(standing(i, false), standing(i, true));
        }
        for i in (0..200).step_by(10) {
            running.uncount(standing(i, i % 3 == 0));
        }
        let kept = (0..200u64).filter(|i| i % 10 != 0);
        let mut fresh = Census::default();
        for i in kept.clone() {
            fresh.count(standing(i, i % 3 == 0));
        }
        assert_eq!(running, fresh);
        let config = ConfidenceConfig::default();
        let scanned = measure(kept.map(|i| (profile(i), i % 3 == 0)), 0.0, &config);
        assert_eq!(running.histograms.confidence(0.0, &config), scanned);
        // By hand: 180 keys kept, 60 of them current (multiples of 3 but
        // not of 10: 67 − 7), 40 in the sample (multiples of 4 but not of
        // 10: 50 − 10).
        assert_eq!(scanned.keys_compared, 60);
        assert_eq!(fresh.sample.keys, 40);
    }

    /// Re-counting a key whose profile changed (a new plan's scores) while
    /// it moved gives what taking it back and counting it again gives,
    /// and so does one whose profile stayed (a copy, a copy taken back).
    #[test]
    fn a_recount_is_a_count_taken_back_and_made_again() {
        let standing = |predicted: f64, frequency: f64, current: bool| Standing {
            profile: KeyProfile {
                table: 1,
                size_bytes: 300,
                frequency,
                write_rate: 0.5,
                predicted,
            },
            location: if current {
                Location::Current
            } else {
                Location::Stale
            },
            in_sample: true,
            leased: !current,
        };
        let moves = [
            (standing(2.5, 3.0, false), standing(2.5, 3.0, true)),
            (standing(2.5, 3.0, true), standing(2.5, 3.0, false)),
            (standing(2.5, 3.0, true), standing(9.0, 1000.0, true)),
            (standing(2.5, 3.0, false), standing(0.0, 0.0, true)),
            (standing(2.5, 3.0, true), standing(2.5, 3.0, true)),
        ];
        for (before, after) in moves {
            let mut by_recount = Census::default();
            let mut by_hand = Census::default();
            for census in [&mut by_recount, &mut by_hand] {
                census.count(standing(1.0, 7.0, true));
                census.count(before);
            }
            by_recount.recount(before, after);
            by_hand.uncount(before);
            by_hand.count(after);
            assert_eq!(by_recount, by_hand, "{before:?} -> {after:?}");
        }
    }
}
