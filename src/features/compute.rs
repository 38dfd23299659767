//! Building the feature table from a scan: one accumulator per worker,
//! merged exactly at the end.

use std::collections::HashMap;

use super::FeatureTable;
use super::definition::{KeyFeatures, fill_neighbourhood};
use super::state::{CutOff, KeyState};
use crate::logs::{AccessBatch, LogError, LogSource, TimeRange};

type KeyMap = HashMap<Box<[u8]>, KeyState, ahash::RandomState>;

/// Per-key states of the events one worker has seen.
pub(crate) struct Accumulator {
    cut: CutOff,
    table_names: Vec<String>,
    table_ids: HashMap<String, usize>,
    /// One map per table id: looking a key up needs no allocation.
    keys: Vec<KeyMap>,
    keys_are_utf8: bool,
    events: u64,
}

impl Accumulator {
    pub fn new(cut: CutOff) -> Self {
        Accumulator {
            cut,
            table_names: Vec::new(),
            table_ids: HashMap::new(),
            keys: Vec::new(),
            keys_are_utf8: true,
            events: 0,
        }
    }

    fn table_id(&mut self, name: &str) -> usize {
        if let Some(&id) = self.table_ids.get(name) {
            return id;
        }
        let id = self.table_names.len();
        self.table_names.push(name.to_string());
        self.table_ids.insert(name.to_string(), id);
        self.keys.push(KeyMap::default());
        id
    }

    pub fn add_batch(&mut self, batch: &AccessBatch) {
        let ids: Vec<usize> = batch
            .table_names()
            .iter()
            .map(|name| self.table_id(name))
            .collect();
        self.keys_are_utf8 &= batch.keys_are_utf8();
        self.events += batch.len() as u64;
        let cut = self.cut;
        let rows = batch
            .ts()
            .iter()
            .zip(batch.table_index())
            .zip(batch.ops())
            .zip(batch.sizes());
        for (row, (((&ts, &table), &op), &size)) in rows.enumerate() {
            let map = &mut self.keys[ids[table as usize]];
            let key = batch.key(row);
            match map.get_mut(key) {
                Some(state) => state.add(&cut, ts, op, size),
                None => {
                    let mut state = KeyState::empty();
                    state.add(&cut, ts, op, size);
                    map.insert(key.into(), state);
                }
            }
        }
    }

    /// Folds `other` into `self`; the result is the same whatever the order.
    pub fn merge(&mut self, other: Accumulator) {
        self.keys_are_utf8 &= other.keys_are_utf8;
        self.events += other.events;
        for (name, map) in other.table_names.into_iter().zip(other.keys) {
            let id = self.table_id(&name);
            let mine = &mut self.keys[id];
            if mine.is_empty() {
                *mine = map;
                continue;
            }
            mine.reserve(map.len());
            for (key, state) in map {
                match mine.get_mut(&key) {
                    Some(existing) => existing.merge(&state),
                    None => {
                        mine.insert(key, state);
                    }
                }
            }
        }
    }

    pub fn finish(self) -> FeatureTable {
        let cut = self.cut;
        let mut tables: Vec<(String, KeyMap)> =
            self.table_names.into_iter().zip(self.keys).collect();
        tables.sort_by(|a, b| a.0.cmp(&b.0));
        let mut rows = Vec::with_capacity(tables.iter().map(|(_, map)| map.len()).sum());
        for (table, map) in tables {
            let mut entries: Vec<(Box<[u8]>, KeyState)> = map.into_iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            rows.extend(entries.into_iter().map(|(key, state)| {
                KeyFeatures::from_state(table.clone(), key.into_vec(), &state, &cut)
            }));
        }
        fill_neighbourhood(&mut rows);
        FeatureTable {
            as_of: cut.as_of,
            keys_are_utf8: self.keys_are_utf8,
            events_scanned: self.events,
            rows,
        }
    }
}

/// Options of one feature computation.
#[derive(Clone, Copy, Debug)]
pub struct FeatureOptions {
    /// The cut-off T: events after it are not read.
    pub as_of: i64,
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
    let cut = CutOff::new(options.as_of);
    let partials = plan.fold(
        || Accumulator::new(cut),
        |accumulator, batch| accumulator.add_batch(batch),
        on_rows,
    )?;
    let mut partials = partials.into_iter();
    let mut merged = partials.next().unwrap_or_else(|| Accumulator::new(cut));
    for partial in partials {
        merged.merge(partial);
    }
    Ok(merged.finish())
}
