//! Building the feature table from a scan: every worker's events go into
//! one set of key states split into shards by hash, each shard behind its
//! own lock, so that every key has one state whatever the number of workers
//! (memory does not grow with the cores), and sorting and building the
//! output run shard by shard on all cores.

use std::collections::BinaryHeap;
use std::collections::binary_heap::PeekMut;
use std::sync::{Arc, Mutex, TryLockError};
use std::time::Instant;

use arrow_array::RecordBatch;
use rayon::prelude::*;

use super::FeatureTable;
use super::definition::{KeyFeatures, neighbourhood};
use super::rolling::History;
use super::state::{CutOff, KeyState};
use super::table::{BATCH_ROWS, BatchBuilder};
use crate::keys::{KeyArena, key_hasher};
use crate::logs::{AccessBatch, LogError, LogSource, ScanPlan, TimeRange};

/// Shards of the key states: enough that workers seldom want the same one
/// at once and for parallel sorting on many cores, few enough that empty
/// shards cost nothing.
const SHARDS: usize = 64;
// The merge records each row's shard in a byte.
const _: () = assert!(SHARDS <= 256);

fn shard_of(hash: u64) -> usize {
    // hashbrown indexes buckets by the low bits and tags by the top seven:
    // take the shard from bits in between so shards do not skew either.
    (hash >> 32) as usize % SHARDS
}

/// The key states of one shard: keys in a flat arena, states by slot,
/// and, when the states are to be rolled forward, what that needs.
#[derive(Default)]
pub(super) struct Shard {
    keys: KeyArena,
    pub(super) states: Vec<KeyState>,
    pub(super) history: Option<History>,
}

impl Shard {
    fn len(&self) -> usize {
        self.states.len()
    }

    fn key(&self, slot: usize) -> &[u8] {
        self.keys.key(slot)
    }

    fn table(&self, slot: usize) -> u32 {
        self.keys.table(slot)
    }

    fn find(&self, hash: u64, table: u32, key: &[u8]) -> Option<usize> {
        self.keys.find(hash, table, key)
    }

    fn insert(&mut self, hash: u64, table: u32, key: &[u8], state: KeyState) {
        self.keys
            .insert(hash, table, key)
            .expect("a shard holds under 4 GiB of keys");
        self.states.push(state);
    }

    /// A copy of the shard's keys and states in the order of `slots`,
    /// without an index or history.
    fn reordered_copy(&self, slots: &[u32]) -> Shard {
        Shard {
            keys: self.keys.reordered(slots),
            states: slots
                .iter()
                .map(|&slot| self.states[slot as usize].clone())
                .collect(),
            history: None,
        }
    }

    /// The shard's keys and states in the order of `slots`, without an
    /// index: the states are permuted in place (they are most of a shard's
    /// memory), only the keys are copied.
    fn into_reordered(self, slots: &[u32]) -> Shard {
        let keys = self.keys.reordered(slots);
        drop(self.keys);
        let mut states = self.states;
        // Following each cycle of the permutation: position i takes what
        // was at slots[i].
        let mut placed = vec![false; states.len()];
        for start in 0..states.len() {
            let mut at = start;
            while !placed[at] {
                placed[at] = true;
                let from = slots[at] as usize;
                if from == start {
                    break;
                }
                states.swap(at, from);
                at = from;
            }
        }
        Shard {
            keys,
            states,
            history: None,
        }
    }
}

/// Names (of tables, of tenants) seen by any worker, with ids shared by
/// all of them.
#[derive(Clone, Default)]
pub(super) struct NameRegistry {
    // A std Mutex: taken once per batch, never across an await or a long step.
    names: Arc<Mutex<Vec<Arc<str>>>>,
}

impl NameRegistry {
    fn ids_of(&self, names: &[String]) -> Vec<u32> {
        let mut known = self.names.lock().expect("name registry poisoned");
        names
            .iter()
            .map(|name| {
                let position = known.iter().position(|known| **known == **name);
                position.unwrap_or_else(|| {
                    known.push(name.as_str().into());
                    known.len() - 1
                }) as u32
            })
            .collect()
    }

    fn names(&self) -> Vec<Arc<str>> {
        self.names.lock().expect("name registry poisoned").clone()
    }
}

/// One worker's view of the scan: the shared key states, and what it
/// reuses from batch to batch.
struct Accumulator<'a> {
    cut: CutOff,
    hasher: ahash::RandomState,
    tables: NameRegistry,
    tenants: NameRegistry,
    shards: &'a [Mutex<Shard>],
    keys_are_utf8: bool,
    events: u64,
    /// Each row of the current batch by the shard of its key.
    rows_by_shard: Vec<Vec<u32>>,
    hashes: Vec<u64>,
}

impl<'a> Accumulator<'a> {
    fn new(
        cut: CutOff,
        tables: NameRegistry,
        tenants: NameRegistry,
        shards: &'a [Mutex<Shard>],
    ) -> Self {
        Accumulator {
            cut,
            hasher: key_hasher(),
            tables,
            tenants,
            shards,
            keys_are_utf8: true,
            events: 0,
            rows_by_shard: vec![Vec::new(); SHARDS],
            hashes: Vec::new(),
        }
    }

    fn add_batch(&mut self, batch: &AccessBatch) {
        let ids = self.tables.ids_of(batch.table_names());
        self.keys_are_utf8 &= batch.keys_are_utf8();
        self.events += batch.len() as u64;
        self.hashes.clear();
        for rows in &mut self.rows_by_shard {
            rows.clear();
        }
        for (row, &table_index) in batch.table_index().iter().enumerate() {
            let hash = self
                .hasher
                .hash_one((ids[table_index as usize], batch.key(row)));
            self.hashes.push(hash);
            self.rows_by_shard[shard_of(hash)].push(row as u32);
        }
        let tenants = batch.tenant_index().map(|index| {
            let ids = self.tenants.ids_of(batch.tenant_names());
            (index, ids, self.tenants.names())
        });
        let rows = BatchRows {
            batch,
            table_ids: &ids,
            hashes: &self.hashes,
            tenants: tenants.as_ref().map(|(of_row, ids, names)| BatchTenants {
                of_row,
                ids,
                names,
            }),
            cut: self.cut,
        };
        // A shard another worker holds is left for later in the round; only
        // when every remaining one is busy does the worker wait for one.
        let mut pending: Vec<usize> = (0..SHARDS)
            .filter(|&shard| !self.rows_by_shard[shard].is_empty())
            .collect();
        while !pending.is_empty() {
            let mut busy = Vec::new();
            for &shard in &pending {
                match self.shards[shard].try_lock() {
                    Ok(mut states) => rows.apply(&mut states, &self.rows_by_shard[shard]),
                    Err(TryLockError::WouldBlock) => busy.push(shard),
                    Err(TryLockError::Poisoned(_)) => panic!("a feature worker panicked"),
                }
            }
            if busy.len() == pending.len() {
                let shard = busy.remove(0);
                let mut states = self.shards[shard]
                    .lock()
                    .expect("a feature worker panicked");
                rows.apply(&mut states, &self.rows_by_shard[shard]);
            }
            pending = busy;
        }
    }
}

/// What applying a batch's rows to a shard needs.
struct BatchRows<'b> {
    batch: &'b AccessBatch,
    table_ids: &'b [u32],
    hashes: &'b [u64],
    tenants: Option<BatchTenants<'b>>,
    cut: CutOff,
}

/// The tenants of a batch that names them.
struct BatchTenants<'b> {
    /// Each row's index into `ids`.
    of_row: &'b [u32],
    /// The batch's tenant names as the scan's ids.
    ids: &'b [u32],
    /// Every tenant name seen so far, by id.
    names: &'b [Arc<str>],
}

impl BatchRows<'_> {
    fn apply(&self, shard: &mut Shard, rows: &[u32]) {
        let (ts, ops, sizes) = (self.batch.ts(), self.batch.ops(), self.batch.sizes());
        let table_index = self.batch.table_index();
        for &row in rows {
            let row = row as usize;
            let table = self.table_ids[table_index[row] as usize];
            let key = self.batch.key(row);
            let hash = self.hashes[row];
            let slot = match shard.find(hash, table, key) {
                Some(slot) => slot,
                None => {
                    shard.insert(hash, table, key, KeyState::empty());
                    shard.len() - 1
                }
            };
            let state = &mut shard.states[slot];
            state.add(&self.cut, ts[row], ops[row], sizes[row]);
            if let Some(history) = &mut shard.history {
                history.record(&self.cut, slot as u32, ts[row], ops[row]);
            }
            if let Some(tenants) = &self.tenants
                && let Some(&id) = tenants.ids.get(tenants.of_row[row] as usize)
            {
                state.name_tenant(ts[row], id, tenants.names);
            }
        }
    }
}

/// Table rank and leading key bytes: see [`KeyOrder::coarse`].
type Coarse = (u32, u128, u64);

/// The output order of keys: table name, then key bytes.
struct KeyOrder {
    rank_of_table: Vec<u32>,
}

impl KeyOrder {
    fn new(names: &[Arc<str>]) -> Self {
        let mut by_name: Vec<usize> = (0..names.len()).collect();
        by_name.sort_by(|&a, &b| names[a].cmp(&names[b]));
        let mut rank_of_table = vec![0u32; names.len()];
        for (rank, &id) in by_name.iter().enumerate() {
            rank_of_table[id] = rank as u32;
        }
        KeyOrder { rank_of_table }
    }

    /// Table rank and the first 24 key bytes (zero-padded, big-endian):
    /// ordering by it agrees with the full order wherever two differ, so
    /// most comparisons never touch the keys.
    fn coarse(&self, shard: &Shard, slot: usize) -> Coarse {
        let key = shard.key(slot);
        let mut bytes = [0u8; 24];
        let len = key.len().min(24);
        bytes[..len].copy_from_slice(&key[..len]);
        let (high, low) = bytes.split_at(16);
        (
            self.rank_of_table[shard.table(slot) as usize],
            u128::from_be_bytes(high.try_into().expect("16 bytes")),
            u64::from_be_bytes(low.try_into().expect("8 bytes")),
        )
    }

    /// The shard's keys and states in output order.
    fn sort(&self, shard: Shard) -> Shard {
        let slots = self.order(&shard);
        shard.into_reordered(&slots)
    }

    /// The shard's slots in output order.
    fn order(&self, shard: &Shard) -> Vec<u32> {
        let mut records: Vec<(Coarse, u32)> = (0..shard.len())
            .map(|slot| (self.coarse(shard, slot), slot as u32))
            .collect();
        records.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| shard.key(a.1 as usize).cmp(shard.key(b.1 as usize)))
        });
        records.into_iter().map(|(_, slot)| slot).collect()
    }

    /// Merges sorted shards: the shard of each row, in output order.
    fn merge(&self, sorted: &[Shard]) -> Vec<u8> {
        let mut sequence = Vec::with_capacity(sorted.iter().map(Shard::len).sum());
        let head = |shard: usize, position: usize| {
            (position < sorted[shard].len()).then(|| MergeHead {
                coarse: self.coarse(&sorted[shard], position),
                key: sorted[shard].key(position),
                shard: shard as u8,
                position,
            })
        };
        let mut heap: BinaryHeap<MergeHead> = (0..sorted.len())
            .filter_map(|shard| head(shard, 0))
            .collect();
        while let Some(mut top) = heap.peek_mut() {
            sequence.push(top.shard);
            match head(top.shard as usize, top.position + 1) {
                Some(next) => *top = next,
                None => {
                    PeekMut::pop(top);
                }
            }
        }
        sequence
    }
}

/// The smallest unmerged key of one shard; ordered so that the max-heap
/// pops the smallest key first.
struct MergeHead<'a> {
    coarse: Coarse,
    key: &'a [u8],
    shard: u8,
    position: usize,
}

impl Ord for MergeHead<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.coarse, other.key).cmp(&(self.coarse, self.key))
    }
}

impl PartialOrd for MergeHead<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for MergeHead<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for MergeHead<'_> {}

/// Every key's state as of one cut-off, in output order, with the
/// neighbourhood columns worked out: the feature table before its rows are
/// built. Rows are built on demand (a batch at a time, or only the ones
/// asked for), so a caller that needs a sample, or one pass over every key,
/// never holds every row's features beside the states.
pub struct KeyStates {
    shards: Vec<Shard>,
    /// Each row's shard, and its slot in that shard, in output order.
    shard_of_row: Vec<u8>,
    slot_of_row: Vec<u32>,
    context: RowContext,
    events: u64,
}

/// What turns a key's state into its row besides the state: names by id,
/// the neighbourhood columns by row, the cut-off.
struct RowContext {
    prefix_events: Vec<i64>,
    range_events: Vec<i64>,
    names: Vec<Arc<str>>,
    tenant_names: Vec<Arc<str>>,
    keys_are_utf8: bool,
    cut: CutOff,
}

impl RowContext {
    /// The table name of `slot` of `shard`.
    fn table(&self, shard: &Shard, slot: usize) -> &Arc<str> {
        &self.names[shard.table(slot) as usize]
    }

    /// The tenant kept in `state`, if any.
    fn tenant(&self, state: &KeyState) -> Option<&Arc<str>> {
        self.tenant_names.get(state.tenant as usize)
    }

    /// The features of row `row`, whose state is `slot` of `shard`.
    fn features(&self, shard: &Shard, slot: usize, row: usize) -> KeyFeatures {
        let state = &shard.states[slot];
        let mut features = KeyFeatures::from_state(
            self.table(shard, slot).clone(),
            shard.key(slot).to_vec(),
            self.tenant(state).cloned(),
            state,
            &self.cut,
        );
        features.prefix_events_24h = self.prefix_events[row];
        features.range_events_24h = self.range_events[row];
        features
    }

    /// A batch of the given rows, each as (shard, slot, row).
    fn batch<'s>(
        &self,
        rows: impl ExactSizeIterator<Item = (&'s Shard, usize, usize)>,
    ) -> RecordBatch {
        let mut builder = BatchBuilder::new(self.keys_are_utf8, rows.len());
        for (shard, slot, row) in rows {
            builder.push(&self.features(shard, slot, row));
        }
        builder.finish()
    }
}

impl KeyStates {
    /// Sorts the scan's shards into output order and computes the
    /// neighbourhood columns from the states.
    pub(super) fn sort(scanned: Scanned) -> KeyStates {
        let started = Instant::now();
        let names = scanned.scan.tables.names();
        let key_order = KeyOrder::new(&names);
        let shards: Vec<Shard> = scanned
            .shards
            .into_par_iter()
            .map(|shard| key_order.sort(shard))
            .collect();
        Self::from_sorted(shards, &key_order, names, &scanned.scan, started)
    }

    /// The states of `scanned` in output order, left in place (copied).
    pub(super) fn sorted_copy(scanned: &Scanned) -> KeyStates {
        let started = Instant::now();
        let names = scanned.scan.tables.names();
        let key_order = KeyOrder::new(&names);
        let shards: Vec<Shard> = scanned
            .shards
            .par_iter()
            .map(|shard| shard.reordered_copy(&key_order.order(shard)))
            .collect();
        Self::from_sorted(shards, &key_order, names, &scanned.scan, started)
    }

    /// Merges shards each in output order, and works out the
    /// neighbourhood columns.
    fn from_sorted(
        shards: Vec<Shard>,
        key_order: &KeyOrder,
        names: Vec<Arc<str>>,
        scan: &ScanTotals,
        started: Instant,
    ) -> KeyStates {
        let shard_of_row = key_order.merge(&shards);
        let mut cursor = [0u32; SHARDS];
        let slot_of_row: Vec<u32> = shard_of_row
            .iter()
            .map(|&shard| {
                let slot = cursor[shard as usize];
                cursor[shard as usize] += 1;
                slot
            })
            .collect();
        tracing::debug!(seconds = started.elapsed().as_secs_f64(), "sorted keys");
        let mut states = KeyStates {
            shards,
            shard_of_row,
            slot_of_row,
            context: RowContext {
                prefix_events: Vec::new(),
                range_events: Vec::new(),
                names,
                tenant_names: scan.tenants.names(),
                keys_are_utf8: scan.keys_are_utf8,
                cut: scan.cut,
            },
            events: scan.events,
        };
        let events_24h: Vec<i64> = (0..states.len())
            .map(|row| {
                let (shard, slot, _) = states.locate(row);
                KeyFeatures::events_24h_of(&shard.states[slot])
            })
            .collect();
        let (prefix_events, range_events) = neighbourhood(
            |row| {
                let (shard, slot, _) = states.locate(row);
                &**states.context.table(shard, slot)
            },
            |row| {
                let (shard, slot, _) = states.locate(row);
                shard.key(slot)
            },
            &events_24h,
        );
        states.context.prefix_events = prefix_events;
        states.context.range_events = range_events;
        tracing::info!(
            seconds = started.elapsed().as_secs_f64(),
            keys = states.len(),
            "key states sorted"
        );
        states
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.shard_of_row.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cut-off the states are as of, and the horizon H they measure in.
    pub fn cutoff(&self) -> (i64, i64) {
        (self.context.cut.as_of, self.context.cut.horizon)
    }

    /// Whether every key is UTF-8 text.
    pub fn keys_are_utf8(&self) -> bool {
        self.context.keys_are_utf8
    }

    /// Events the states were computed from.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Row `row` as (shard, slot, row).
    fn locate(&self, row: usize) -> (&Shard, usize, usize) {
        (
            &self.shards[self.shard_of_row[row] as usize],
            self.slot_of_row[row] as usize,
            row,
        )
    }

    /// Row `row`'s features.
    pub fn row(&self, row: usize) -> KeyFeatures {
        let (shard, slot, row) = self.locate(row);
        self.context.features(shard, slot, row)
    }

    /// The batch of at most [`BATCH_ROWS`] rows from row `first` on.
    fn batch_from(&self, first: usize) -> RecordBatch {
        let rows = first..(first + BATCH_ROWS).min(self.len());
        self.context.batch(rows.map(|row| self.locate(row)))
    }

    /// Every row, one batch of at most [`BATCH_ROWS`] at a time, built
    /// when asked for.
    pub fn batches(&self) -> impl Iterator<Item = RecordBatch> + '_ {
        (0..self.len())
            .step_by(BATCH_ROWS)
            .map(|first| self.batch_from(first))
    }

    /// The given rows only (ascending indices), as [`FeatureTable::take`]
    /// takes them from the whole table.
    pub fn take(&self, rows: &[usize]) -> FeatureTable {
        let batches = rows
            .par_chunks(BATCH_ROWS)
            .map(|chunk| {
                self.context
                    .batch(chunk.iter().map(|&row| self.locate(row)))
            })
            .collect();
        self.table_of(batches)
    }

    /// Who each key is — table, key bytes, tenant — in output order,
    /// without building its features.
    pub fn for_each_key(&self, mut each: impl FnMut(&str, &[u8], Option<&str>)) {
        for row in 0..self.len() {
            let (shard, slot, _) = self.locate(row);
            each(
                self.context.table(shard, slot),
                shard.key(slot),
                self.context.tenant(&shard.states[slot]).map(|name| &**name),
            );
        }
    }

    /// Every row once, shard by shard rather than in key order: each batch
    /// with the row number of each of its rows. A shard's states are freed
    /// once its rows are built, so the memory they held falls as the
    /// caller's per-row results grow.
    pub fn drain(self) -> impl Iterator<Item = (Vec<usize>, RecordBatch)> {
        let mut rows_of_shard = vec![Vec::new(); self.shards.len()];
        for (row, &shard) in self.shard_of_row.iter().enumerate() {
            rows_of_shard[shard as usize].push(row);
        }
        let KeyStates {
            shards, context, ..
        } = self;
        shards
            .into_iter()
            .zip(rows_of_shard)
            .flat_map(move |(shard, rows)| {
                // A shard's slots are in output order: its slot i is the
                // i-th of its rows.
                let batches: Vec<_> = rows
                    .chunks(BATCH_ROWS)
                    .enumerate()
                    .map(|(chunk, rows)| {
                        let first_slot = chunk * BATCH_ROWS;
                        let located = rows
                            .iter()
                            .enumerate()
                            .map(|(offset, &row)| (&shard, first_slot + offset, row));
                        (rows.to_vec(), context.batch(located))
                    })
                    .collect();
                drop(shard);
                batches
            })
    }

    /// The whole feature table, its batches built on all cores.
    pub fn into_table(self) -> FeatureTable {
        let started = Instant::now();
        let batches = (0..self.len())
            .into_par_iter()
            .step_by(BATCH_ROWS)
            .map(|first| self.batch_from(first))
            .collect();
        let table = self.table_of(batches);
        tracing::debug!(
            seconds = started.elapsed().as_secs_f64(),
            "built feature batches"
        );
        table
    }

    fn table_of(&self, batches: Vec<RecordBatch>) -> FeatureTable {
        FeatureTable::from_batches(
            self.context.cut.as_of,
            self.context.cut.horizon,
            self.context.keys_are_utf8,
            self.events,
            batches,
        )
    }
}

/// Options of one feature computation.
#[derive(Clone, Copy, Debug)]
pub struct FeatureOptions {
    /// The cut-off T: events after it are not read.
    pub as_of: i64,
    /// The horizon H the features on its time scale are measured in (the
    /// horizon of the model that will read them).
    pub horizon: i64,
    /// Ignore events before this (all history when `None`).
    pub since: Option<i64>,
}

/// Computes the feature table of every key seen in `source` up to the cut-off.
pub fn compute(
    source: &LogSource,
    options: FeatureOptions,
    on_rows: &(dyn Fn(u64) + Sync),
) -> Result<FeatureTable, LogError> {
    let states = scan(source, options, on_rows)?;
    let table = states.into_table();
    tracing::info!(keys = table.len(), "finished features");
    Ok(table)
}

/// Every key seen in `source` up to the cut-off, with its state: the
/// feature table's rows to be built on demand.
pub fn scan(
    source: &LogSource,
    options: FeatureOptions,
    on_rows: &(dyn Fn(u64) + Sync),
) -> Result<KeyStates, LogError> {
    let plan = source.plan(TimeRange {
        start: options.since,
        end: Some(options.as_of),
    })?;
    let stats = plan.stats();
    tracing::info!(
        files = stats.files_total,
        files_pruned = stats.files_pruned,
        row_groups_pruned = stats.row_groups_pruned,
        rows = stats.rows_planned,
        "scanning access logs"
    );
    let mut scanned = Scanned::empty(CutOff::new(options.as_of, options.horizon), false);
    scanned.add(&plan, on_rows)?;
    Ok(KeyStates::sort(scanned))
}

/// Key states being scanned into, and what the scans so far saw.
pub(super) struct Scanned {
    pub(super) shards: Vec<Shard>,
    pub(super) scan: ScanTotals,
}

/// What every scan into a [`Scanned`] adds to: the cut-off its states are
/// as of, names by id, whether every key was text, events read.
pub(super) struct ScanTotals {
    pub(super) cut: CutOff,
    tables: NameRegistry,
    tenants: NameRegistry,
    keys_are_utf8: bool,
    events: u64,
}

impl Scanned {
    /// No keys yet; `with_history` keeps what rolling the states forward
    /// needs ([`History`]).
    pub(super) fn empty(cut: CutOff, with_history: bool) -> Self {
        Scanned {
            shards: (0..SHARDS)
                .map(|_| Shard {
                    history: with_history.then(History::new),
                    ..Shard::default()
                })
                .collect(),
            scan: ScanTotals {
                cut,
                tables: NameRegistry::default(),
                tenants: NameRegistry::default(),
                keys_are_utf8: true,
                events: 0,
            },
        }
    }

    /// Adds the events `plan` reads, on every core, at the states' cut-off.
    pub(super) fn add(
        &mut self,
        plan: &ScanPlan,
        on_rows: &(dyn Fn(u64) + Sync),
    ) -> Result<(), LogError> {
        let started = Instant::now();
        let shards: Vec<Mutex<Shard>> = std::mem::take(&mut self.shards)
            .into_iter()
            .map(Mutex::new)
            .collect();
        let scan = &self.scan;
        let folded = plan
            .fold(
                || Accumulator::new(scan.cut, scan.tables.clone(), scan.tenants.clone(), &shards),
                |accumulator, batch| accumulator.add_batch(batch),
                on_rows,
            )
            .map(|workers| {
                (
                    workers.iter().all(|w| w.keys_are_utf8),
                    workers.iter().map(|w| w.events).sum::<u64>(),
                )
            });
        // The shards come back whatever the scan gave: a caller rolling
        // them forward sees what was added, and may start again.
        self.shards = shards
            .into_iter()
            .map(|shard| shard.into_inner().expect("a feature worker panicked"))
            .collect();
        let (keys_are_utf8, events) = folded?;
        self.scan.keys_are_utf8 &= keys_are_utf8;
        self.scan.events += events;
        tracing::info!(seconds = started.elapsed().as_secs_f64(), "scanned");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_reordered_in_place_keeps_each_key_with_its_state() {
        let mut shard = Shard::default();
        let hasher = key_hasher();
        for (i, key) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            let mut state = KeyState::empty();
            state.reads = i as u64;
            shard.insert(
                hasher.hash_one((0u32, key.as_bytes())),
                0,
                key.as_bytes(),
                state,
            );
        }
        // Two cycles (0 → 3 → 1 → 0 and 2 → 4 → 2), worked out by hand:
        // position i takes what was at slots[i].
        let reordered = shard.into_reordered(&[3, 0, 4, 1, 2]);
        let keys: Vec<&[u8]> = (0..5).map(|slot| reordered.key(slot)).collect();
        assert_eq!(keys, [b"d", b"a", b"e", b"b", b"c"]);
        let reads: Vec<u64> = reordered.states.iter().map(|s| s.reads).collect();
        assert_eq!(reads, [3, 0, 4, 1, 2]);
    }
}
