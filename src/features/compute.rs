//! Building the feature table from a scan: every worker's events go into
//! one set of key states split into shards by hash, each shard behind its
//! own lock, so that every key has one state whatever the number of workers
//! (memory does not grow with the cores), and sorting and building the
//! output run shard by shard on all cores.

use std::collections::BinaryHeap;
use std::collections::binary_heap::PeekMut;
use std::sync::{Arc, Mutex, TryLockError};
use std::time::Instant;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{RecordBatch, StringArray};
use rayon::prelude::*;

use super::FeatureTable;
use super::definition::{KeyFeatures, neighbourhood};
use super::state::{CutOff, KeyState};
use super::table::{BATCH_ROWS, BatchBuilder, KeyColumn, with_neighbourhood};
use crate::keys::{KeyArena, key_hasher};
use crate::logs::{AccessBatch, LogError, LogSource, TimeRange};

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

/// The key states of one shard: keys in a flat arena, states by slot.
#[derive(Default)]
struct Shard {
    keys: KeyArena,
    states: Vec<KeyState>,
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
        Shard { keys, states }
    }
}

/// Names (of tables, of tenants) seen by any worker, with ids shared by
/// all of them.
#[derive(Clone, Default)]
struct NameRegistry {
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
        let mut records: Vec<(Coarse, u32)> = (0..shard.len())
            .map(|slot| (self.coarse(&shard, slot), slot as u32))
            .collect();
        records.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| shard.key(a.1 as usize).cmp(shard.key(b.1 as usize)))
        });
        let slots: Vec<u32> = records.into_iter().map(|(_, slot)| slot).collect();
        shard.into_reordered(&slots)
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

/// Merges the workers' states and turns them into the sorted feature table.
fn finish(
    shards: Vec<Shard>,
    keys_are_utf8: bool,
    events: u64,
    cut: CutOff,
    tables: &NameRegistry,
    tenants: &NameRegistry,
) -> FeatureTable {
    let tenant_names = tenants.names();
    let started = Instant::now();
    let names = tables.names();
    let key_order = KeyOrder::new(&names);
    let shards: Vec<Shard> = shards
        .into_par_iter()
        .map(|shard| key_order.sort(shard))
        .collect();
    let shard_sequence = key_order.merge(&shards);
    tracing::debug!(seconds = started.elapsed().as_secs_f64(), "sorted keys");

    // Each batch reads every sorted shard front to back from where the
    // previous batch stopped.
    let mut chunk_starts = Vec::with_capacity(shard_sequence.len() / BATCH_ROWS + 1);
    let mut cursor = [0u32; SHARDS];
    for (row, &shard) in shard_sequence.iter().enumerate() {
        if row % BATCH_ROWS == 0 {
            chunk_starts.push(cursor);
        }
        cursor[shard as usize] += 1;
    }
    let batches: Vec<RecordBatch> = shard_sequence
        .par_chunks(BATCH_ROWS)
        .zip(chunk_starts.par_iter())
        .map(|(sequence, start)| {
            let mut cursor = *start;
            let mut builder = BatchBuilder::new(keys_are_utf8, sequence.len());
            for &index in sequence {
                let position = &mut cursor[index as usize];
                let slot = *position as usize;
                *position += 1;
                let shard = &shards[index as usize];
                let state = &shard.states[slot];
                builder.push(&KeyFeatures::from_state(
                    names[shard.table(slot) as usize].clone(),
                    shard.key(slot).to_vec(),
                    tenant_names.get(state.tenant as usize).cloned(),
                    state,
                    &cut,
                ));
            }
            builder.finish()
        })
        .collect();
    drop(shards);
    tracing::debug!(
        seconds = started.elapsed().as_secs_f64(),
        "built feature batches"
    );
    let batches = fill_neighbourhood(batches);
    let table = FeatureTable::from_batches(cut.as_of, cut.horizon, keys_are_utf8, events, batches);
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        keys = table.len(),
        "finished features"
    );
    table
}

/// Computes the neighbourhood columns from the batches' own key and
/// `events_24h` columns, read in order.
fn fill_neighbourhood(batches: Vec<RecordBatch>) -> Vec<RecordBatch> {
    let column = |batch: &RecordBatch, name: &str| {
        batch
            .column_by_name(name)
            .expect("canonical column")
            .clone()
    };
    let tables: Vec<_> = batches.iter().map(|b| column(b, "table_name")).collect();
    let keys: Vec<_> = batches.iter().map(|b| column(b, "key")).collect();
    let tables: Vec<&StringArray> = tables.iter().map(|a| a.as_string::<i32>()).collect();
    let key_arrays: Vec<KeyColumn> = keys.iter().map(KeyColumn::of).collect();
    let events_24h: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            column(b, "events_24h")
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .collect();
    let locate = |row: usize| (row / BATCH_ROWS, row % BATCH_ROWS);
    let (prefix_events, range_events) = neighbourhood(
        |row| {
            let (batch, offset) = locate(row);
            tables[batch].value(offset)
        },
        |row| {
            let (batch, offset) = locate(row);
            key_arrays[batch].value(offset)
        },
        &events_24h,
    );
    batches
        .iter()
        .enumerate()
        .map(|(index, batch)| {
            let rows = index * BATCH_ROWS..index * BATCH_ROWS + batch.num_rows();
            with_neighbourhood(batch, &prefix_events[rows.clone()], &range_events[rows])
        })
        .collect()
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
    let cut = CutOff::new(options.as_of, options.horizon);
    let (tables, tenants) = (NameRegistry::default(), NameRegistry::default());
    let started = Instant::now();
    let shards: Vec<Mutex<Shard>> = (0..SHARDS).map(|_| Mutex::default()).collect();
    let workers = plan.fold(
        || Accumulator::new(cut, tables.clone(), tenants.clone(), &shards),
        |accumulator, batch| accumulator.add_batch(batch),
        on_rows,
    )?;
    tracing::info!(seconds = started.elapsed().as_secs_f64(), "scanned");
    let keys_are_utf8 = workers.iter().all(|w| w.keys_are_utf8);
    let events = workers.iter().map(|w| w.events).sum();
    drop(workers);
    let shards = shards
        .into_iter()
        .map(|shard| shard.into_inner().expect("a feature worker panicked"))
        .collect();
    Ok(finish(
        shards,
        keys_are_utf8,
        events,
        cut,
        &tables,
        &tenants,
    ))
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
