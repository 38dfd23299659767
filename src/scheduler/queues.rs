//! The lines keys wait in: per table and priority class, keys to re-sync
//! first, then new work ranked by benefit per byte; and what the scheduler
//! knows of each key besides its location.

use std::cmp::Reverse;
use std::collections::VecDeque;

use hashbrown::HashMap;

use rayon::prelude::*;
use shadowcast_policy::abi::{ANY_DESTINATION, priority};

use super::failures::Hold;
use super::{Phase, Scheduler};
use crate::prefetch::AHEAD;
use crate::state::{KeyId, Location};

/// Priority classes, highest first.
pub(super) const CLASSES: [u32; 4] = [
    priority::FIRST,
    priority::EARLY,
    priority::NORMAL,
    priority::LAST,
];

/// The class marking a key the policy excluded.
pub(super) const EXCLUDED: u8 = u8::MAX;

/// The scheduler's view of one key, beside the location map's record.
#[derive(Clone, Copy, Debug)]
pub(super) struct Plan {
    /// Expected benefit per byte (0 until scored).
    pub benefit: f32,
    /// Predicted accesses in the horizon.
    pub expected: f32,
    /// Accesses observed (for the sample and the confidence).
    pub frequency: f32,
    /// Writes per hour.
    pub write_rate: f32,
    /// Priority class, or [`EXCLUDED`].
    pub class: u8,
    pub destination: u32,
}

impl Plan {
    pub const UNSCORED: Plan = Plan {
        benefit: 0.0,
        expected: 0.0,
        frequency: 0.0,
        write_rate: 0.0,
        class: priority::NORMAL as u8,
        destination: 0,
    };
}

/// Every key's [`Plan`] by key id, stored in parts: the four scores side by
/// side (16 bytes) and one byte of class and marks for every key, and what
/// only a few keys have at a time kept aside: a destination other than
/// [`ANY_DESTINATION`] and a policy's "not before". (As one struct per key,
/// with the lease and the time, they took 40 bytes, mostly zeros.) The
/// marks say whether a lease holds the key (which one is known only to
/// the lease, by the key's place in it) and whether the acknowledgements
/// being judged changed it.
#[derive(Default)]
pub(super) struct Plans {
    scores: Vec<[f32; 4]>,
    classes: Vec<u8>,
    destinations: HashMap<KeyId, u32>,
    not_before_us: HashMap<KeyId, i64>,
}

/// The bits of a key's byte in [`Plans::classes`] that hold its class
/// ([`EXCLUDED`] is stored as all of them).
const CLASS_BITS: u8 = 0b0011_1111;
/// Set while a live lease holds the key.
const LEASED: u8 = 0b1000_0000;
/// Set while an acknowledgement batch holds a change of the key's record
/// not yet committed (see [`Plans::mark_changed`]).
const CHANGED: u8 = 0b0100_0000;

/// Sets `id`'s entry in a map that holds only values other than `none`
/// (without hashing when the map is empty and the value is `none`, the
/// common case).
fn set_sparse<V: PartialEq>(map: &mut HashMap<KeyId, V>, id: KeyId, value: V, none: V) {
    if value != none {
        map.insert(id, value);
    } else if !map.is_empty() {
        map.remove(&id);
    }
}

impl Plans {
    pub fn unscored(keys: usize) -> Self {
        let mut plans = Plans::default();
        plans.reserve(keys);
        for _ in 0..keys {
            plans.push(Plan::UNSCORED);
        }
        plans
    }

    pub fn len(&self) -> usize {
        self.classes.len()
    }

    /// Adds the plan of the next key id.
    pub fn push(&mut self, plan: Plan) {
        let capacities = self.capacities();
        self.scores.push([0.0; 4]);
        self.classes.push(0);
        self.set(KeyId((self.classes.len() - 1) as u32), plan);
        self.huge_pages_if_grown(capacities);
    }

    pub fn reserve(&mut self, keys: usize) {
        let capacities = self.capacities();
        self.scores.reserve(keys);
        self.classes.reserve(keys);
        self.huge_pages_if_grown(capacities);
    }

    fn capacities(&self) -> [usize; 2] {
        [self.scores.capacity(), self.classes.capacity()]
    }

    /// See [`crate::prefetch::huge_pages`]: plans are read in ranked order.
    /// Each array is asked for apart: growing one push at a time, they move
    /// at different lengths.
    fn huge_pages_if_grown(&self, [scores, classes]: [usize; 2]) {
        crate::prefetch::huge_pages_if_grown(&self.scores, scores);
        crate::prefetch::huge_pages_if_grown(&self.classes, classes);
    }

    pub fn get(&self, id: KeyId) -> Plan {
        let [benefit, expected, frequency, write_rate] = self.scores[id.index()];
        Plan {
            benefit,
            expected,
            frequency,
            write_rate,
            class: self.class(id),
            destination: self
                .destinations
                .get(&id)
                .copied()
                .unwrap_or(ANY_DESTINATION),
        }
    }

    /// Replaces the plan of `id`. The scheduler goes through
    /// `Scheduler::update_plan`, which keeps the census.
    pub fn set(&mut self, id: KeyId, plan: Plan) {
        self.scores[id.index()] = [plan.benefit, plan.expected, plan.frequency, plan.write_rate];
        let byte = &mut self.classes[id.index()];
        *byte = (*byte & !CLASS_BITS) | (plan.class & CLASS_BITS);
        set_sparse(
            &mut self.destinations,
            id,
            plan.destination,
            ANY_DESTINATION,
        );
    }

    pub fn class(&self, id: KeyId) -> u8 {
        match self.classes[id.index()] & CLASS_BITS {
            CLASS_BITS => EXCLUDED,
            class => class,
        }
    }

    /// Asks for `id`'s scores and class (see [`crate::prefetch`]).
    pub fn prefetch(&self, id: KeyId) {
        crate::prefetch::element(&self.scores, id.index());
        crate::prefetch::element(&self.classes, id.index());
    }

    pub fn benefit(&self, id: KeyId) -> f32 {
        self.scores[id.index()][0]
    }

    pub fn expected(&self, id: KeyId) -> f32 {
        self.scores[id.index()][1]
    }

    /// Whether a lease holds `id`.
    pub fn leased(&self, id: KeyId) -> bool {
        self.classes[id.index()] & LEASED != 0
    }

    /// Marks `id` as held by a lease (`false`: by none). The scheduler
    /// goes through `Scheduler::hold` or `Scheduler::no_longer_leased`,
    /// which keep the census; the lease itself records what it holds.
    pub fn set_leased(&mut self, id: KeyId, leased: bool) {
        self.set_mark(id, LEASED, leased);
    }

    /// Whether `id` carries the mark of [`mark_changed`](Self::mark_changed).
    pub fn changed(&self, id: KeyId) -> bool {
        self.classes[id.index()] & CHANGED != 0
    }

    /// Marks `id` as changed by the batch being judged (`false`: clears the
    /// mark). The batch clears every mark it set before it ends.
    pub fn mark_changed(&mut self, id: KeyId, changed: bool) {
        self.set_mark(id, CHANGED, changed);
    }

    fn set_mark(&mut self, id: KeyId, mark: u8, on: bool) {
        let byte = &mut self.classes[id.index()];
        *byte = if on { *byte | mark } else { *byte & !mark };
    }

    /// The time before which `id` must not be leased (0: any time).
    pub fn not_before_us(&self, id: KeyId) -> i64 {
        self.not_before_us.get(&id).copied().unwrap_or(0)
    }

    pub fn set_not_before_us(&mut self, id: KeyId, not_before_us: i64) {
        set_sparse(&mut self.not_before_us, id, not_before_us, 0);
    }
}

/// New work of one class and table, best first, and how far leasing got.
#[derive(Default)]
pub(super) struct RankedQueue {
    pub order: Vec<KeyId>,
    pub cursor: usize,
}

/// Per table: keys to re-sync and new work, per class.
#[derive(Default)]
pub(super) struct TableQueues {
    pub resync: [VecDeque<KeyId>; 4],
    pub fresh: [RankedQueue; 4],
}

pub(super) fn class_slot(class: u8) -> usize {
    CLASSES
        .iter()
        .position(|&c| c as u8 == class)
        .expect("a known class")
}

/// What ranking needs of every key, taken from the scheduler (whole, or a
/// slice per message so leasing goes on between them) so that the sorts
/// run beside it.
pub struct RankingInput {
    /// Which ranking this is: an older one is not installed over a newer.
    generation: u64,
    tables: usize,
    /// Share of the keys predicted hot (see `Ranking::hot_cut`).
    hot_share: f64,
    /// Per key id: table, class slot ([`EXCLUDED`] for none), benefit and
    /// predicted accesses.
    keys: Vec<(u32, u8, f32, f32)>,
}

/// New work per table and class, best first, ready to install.
pub struct Ranking {
    generation: u64,
    /// Keys that existed when the input was taken.
    keys: usize,
    orders: Vec<[Vec<KeyId>; 4]>,
    /// The predicted-hot keys are those with predicted accesses above 0
    /// whose [`rank_key`] of (predicted accesses, id) is at most this: the
    /// top `hot_share` of the keys, ties to the lower id. `None`: none.
    hot_cut: Option<u64>,
}

/// The lines of new work a [`Ranking`] replaced (or the ranking's own,
/// when a newer one was taken since). Dropping it frees them (tens of
/// megabytes at millions of keys): an owner that serves meanwhile hands it
/// to another thread to drop.
#[must_use = "dropping the replaced lines frees them here"]
pub struct ReplacedLines {
    _lines: Vec<Vec<KeyId>>,
}

/// A sort key ordering by benefit, highest first, then by key id: the
/// benefit's bits mapped so that unsigned order is `f32::total_cmp` order,
/// inverted, above the id.
fn rank_key(benefit: f32, id: u32) -> u64 {
    let bits = benefit.to_bits();
    let ascending = if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    };
    (u64::from(!ascending) << 32) | u64::from(id)
}

impl RankingInput {
    /// Buckets keys by table and class and sorts each bucket by benefit
    /// per byte (ties: key order). Needs no scheduler.
    pub fn rank(self) -> Ranking {
        let mut buckets: Vec<[Vec<u64>; 4]> =
            (0..self.tables).map(|_| Default::default()).collect();
        let mut by_expected = Vec::new();
        for (id, &(table, slot, benefit, expected)) in self.keys.iter().enumerate() {
            if slot != EXCLUDED {
                buckets[table as usize][slot as usize].push(rank_key(benefit, id as u32));
            }
            if expected > 0.0 {
                by_expected.push(rank_key(expected, id as u32));
            }
        }
        let wanted =
            ((self.hot_share * self.keys.len() as f64).ceil() as usize).min(by_expected.len());
        let hot_cut = (wanted > 0).then(|| *by_expected.select_nth_unstable(wanted - 1).1);
        let orders = buckets
            .into_iter()
            .map(|lists| {
                lists.map(|mut sorted| {
                    sorted.par_sort_unstable();
                    sorted.into_iter().map(|k| KeyId(k as u32)).collect()
                })
            })
            .collect();
        Ranking {
            generation: self.generation,
            keys: self.keys.len(),
            orders,
            hot_cut,
        }
    }
}

impl Scheduler {
    /// Ranks all new work per (table, class), best benefit per byte first.
    /// Keys to re-sync keep their place in line.
    pub(super) fn rebuild_queues(&mut self) {
        let mut input = self.begin_snapshot();
        self.extend_ranking_input(&mut input, usize::MAX);
        drop(self.install_ranking(input.rank()));
    }

    /// An empty ranking input, newer than any taken before.
    pub(super) fn begin_snapshot(&mut self) -> RankingInput {
        self.ranking_generation += 1;
        RankingInput {
            generation: self.ranking_generation,
            tables: self.map.tables().len(),
            hot_share: self.config.predicted_hot_share,
            keys: Vec::with_capacity(self.map.len()),
        }
    }

    /// Adds the keys after those `input` holds, up to `more` of them;
    /// `true` when it then holds every key tracked.
    pub fn extend_ranking_input(&mut self, input: &mut RankingInput, more: usize) -> bool {
        let first = input.keys.len();
        let last = first.saturating_add(more).min(self.map.len());
        input.keys.extend((first..last).map(|index| {
            let id = KeyId(index as u32);
            let class = self.plans.class(id);
            let slot = if class == EXCLUDED {
                EXCLUDED
            } else {
                class_slot(class) as u8
            };
            let (benefit, expected) = (self.plans.benefit(id), self.plans.expected(id));
            (self.map.table_of(id), slot, benefit, expected)
        }));
        input.tables = self.map.tables().len();
        last == self.map.len()
    }

    /// Whether the last ranking counted `id` among the predicted-hot keys.
    pub(super) fn predicted_hot(&self, id: KeyId) -> bool {
        let expected = self.plans.expected(id);
        self.hot_cut
            .is_some_and(|cut| expected > 0.0 && rank_key(expected, id.0) <= cut)
    }

    /// Planning stage 3: puts a ranking in place of the lines of new work
    /// (cursors back to the start), unless a newer ranking was taken since.
    /// Keys tracked after its input was taken go last in their class, as
    /// unscored keys do. Keys to re-sync keep their place.
    pub fn install_ranking(&mut self, ranking: Ranking) -> ReplacedLines {
        if ranking.generation != self.ranking_generation {
            return ReplacedLines {
                _lines: ranking.orders.into_iter().flatten().collect(),
            };
        }
        let mut replaced = Vec::new();
        self.hot_cut = ranking.hot_cut;
        let tables = self.map.tables().len();
        self.queues.resize_with(tables, TableQueues::default);
        for (queues, orders) in self.queues.iter_mut().zip(ranking.orders) {
            for (queue, order) in queues.fresh.iter_mut().zip(orders) {
                replaced.push(std::mem::replace(queue, RankedQueue { order, cursor: 0 }).order);
            }
        }
        for index in ranking.keys..self.plans.len() {
            let id = KeyId(index as u32);
            let class = self.plans.class(id);
            if class != EXCLUDED {
                self.queues[self.map.table_of(id) as usize].fresh[class_slot(class)]
                    .order
                    .push(id);
            }
        }
        ReplacedLines { _lines: replaced }
    }

    /// Whether new work may go out in the current phase.
    pub(super) fn phase_admits(&self, id: KeyId) -> bool {
        match self.phase {
            Phase::Shadowing => self.map.record(id).in_sample || self.predicted_hot(id),
            Phase::Background => true,
            Phase::CutoverReady => self.map.record(id).location() == Location::Stale,
            Phase::Done => false,
        }
    }

    /// Whether `id` may be leased now; a key held by "not before" or a
    /// failed copy's retry delay goes to the deferred heap, a parked key
    /// nowhere.
    pub(super) fn ready(&mut self, id: KeyId, now_us: i64) -> bool {
        if self.plans.leased(id)
            || self.plans.class(id) == EXCLUDED
            || self.map.record(id).location() == Location::Current
        {
            return false;
        }
        let not_before_us = self.plans.not_before_us(id);
        if not_before_us > now_us {
            self.deferred.push(Reverse((not_before_us, id)));
            return false;
        }
        match self.failing.hold(id, now_us) {
            Hold::Free => true,
            Hold::Until(retry_at_us) => {
                self.deferred.push(Reverse((retry_at_us, id)));
                false
            }
            Hold::Parked => false,
        }
    }

    /// Puts a key that needs copying (again) at the front of its line.
    pub(super) fn requeue(&mut self, id: KeyId) {
        let plan = self.plans.get(id);
        if plan.class != EXCLUDED {
            self.queues[self.map.table_of(id) as usize].resync[class_slot(plan.class)]
                .push_back(id);
        }
    }

    /// The first key of `table`'s re-sync line in class `slot` that may
    /// be leased now; keys that may not (leased, excluded, current, held
    /// back) leave the line.
    fn front_resync(&mut self, table: usize, slot: usize, now_us: i64) -> Option<KeyId> {
        while let Some(&id) = self.queues[table].resync[slot].front() {
            if self.ready(id, now_us) {
                return Some(id);
            }
            self.queues[table].resync[slot].pop_front();
        }
        None
    }

    /// The best new work of `table` in class `slot` that the phase admits
    /// and that may be leased now; the cursor moves past what may not.
    fn front_fresh(&mut self, table: usize, slot: usize, now_us: i64) -> Option<KeyId> {
        while let Some(&id) = {
            let queue = &self.queues[table].fresh[slot];
            self.prefetch_ahead(&queue.order, queue.cursor);
            queue.order.get(queue.cursor)
        } {
            if self.phase_admits(id) && self.ready(id, now_us) {
                return Some(id);
            }
            self.queues[table].fresh[slot].cursor += 1;
        }
        None
    }

    /// Asks for what leasing and acknowledging read of the keys a little
    /// past `at` in `order` (see [`LocationMap::prefetch_ahead`]), plans
    /// included.
    ///
    /// [`LocationMap::prefetch_ahead`]: crate::state::LocationMap::prefetch_ahead
    pub(super) fn prefetch_ahead(&self, order: &[KeyId], at: usize) {
        self.map.prefetch_ahead(|i| order.get(i).copied(), at);
        if let Some(&id) = order.get(at + AHEAD) {
            self.plans.prefetch(id);
        }
    }

    /// The next key for `tables` in class slot `slot`, taken from its line:
    /// re-syncs first, then the best new work across tables. `heads` keeps
    /// each table's best new work between calls of one lease (`None` before
    /// the first), so that a key taken looks again at its own table only.
    pub(super) fn next_in_class(
        &mut self,
        slot: usize,
        tables: &[usize],
        now_us: i64,
        heads: &mut Option<Vec<Option<KeyId>>>,
    ) -> Option<KeyId> {
        for &table in tables {
            if let Some(id) = self.front_resync(table, slot, now_us) {
                self.queues[table].resync[slot].pop_front();
                return Some(id);
            }
        }
        let heads = match heads {
            Some(heads) => heads,
            None => heads.insert(
                tables
                    .iter()
                    .map(|&table| self.front_fresh(table, slot, now_us))
                    .collect(),
            ),
        };
        loop {
            let (at, id) = heads
                .iter()
                .enumerate()
                .filter_map(|(at, head)| head.map(|id| (at, id)))
                .reduce(|best, next| {
                    if self.plans.benefit(next.1) > self.plans.benefit(best.1) {
                        next
                    } else {
                        best
                    }
                })?;
            let table = tables[at];
            // A head kept from an earlier call may have been leased since
            // (a re-sync hands out keys that wait in the new work too).
            let still_ready = self.ready(id, now_us);
            self.queues[table].fresh[slot].cursor += 1;
            heads[at] = self.front_fresh(table, slot, now_us);
            if still_ready {
                return Some(id);
            }
        }
    }

    /// Whether any key of any table and class may be leased now in this
    /// phase (nothing is taken from the lines).
    pub(super) fn has_work(&mut self, now_us: i64) -> bool {
        (0..CLASSES.len()).any(|slot| {
            (0..self.queues.len()).any(|table| {
                self.front_resync(table, slot, now_us).is_some()
                    || self.front_fresh(table, slot, now_us).is_some()
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_keys_sort_like_benefit_descending_then_key_order() {
        let benefits = [
            0.5f32,
            -0.0,
            0.0,
            f32::INFINITY,
            1e-30,
            -3.0,
            0.5,
            f32::MIN_POSITIVE,
            7.25,
            -f32::INFINITY,
        ];
        let mut by_comparator: Vec<u32> = (0..benefits.len() as u32).collect();
        by_comparator.sort_by(|&a, &b| {
            benefits[b as usize]
                .total_cmp(&benefits[a as usize])
                .then(a.cmp(&b))
        });
        let mut by_key: Vec<u64> = benefits
            .iter()
            .enumerate()
            .map(|(id, &b)| rank_key(b, id as u32))
            .collect();
        by_key.sort_unstable();
        let by_key: Vec<u32> = by_key.into_iter().map(|k| k as u32).collect();
        assert_eq!(by_key, by_comparator);
        assert_eq!(by_key[0], 3, "infinity first");
        assert_eq!(
            &by_key[1..4],
            [8, 0, 6],
            "7.25, then the tied 0.5s in key order"
        );
    }
}
