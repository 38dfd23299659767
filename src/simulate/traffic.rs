//! The application's traffic during the simulated migration: every event
//! of the logs in a time range, in time order, keys interned.

use std::cmp::Ordering;

use crate::keys::KeyArena;
use crate::logs::{AccessBatch, LogError, LogSource, Op, TimeRange};

/// One access, its key an index into [`Traffic`]'s keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub ts: i64,
    pub key: u32,
    pub op: Op,
    pub size_bytes: u64,
}

/// Events in time order (ties broken by table, key, operation and size, so
/// every run replays the same order) and the keys they touch.
#[derive(Default)]
pub struct Traffic {
    tables: Vec<String>,
    keys: KeyArena,
    pub events: Vec<Event>,
}

impl Traffic {
    /// Reads every event in `range` of `source`.
    pub fn load(source: &LogSource, range: TimeRange) -> Result<Traffic, LogError> {
        let parts = source
            .plan(range)?
            .fold(Traffic::default, Traffic::add_batch, &|_| {})?;
        let mut traffic = Traffic::default();
        for part in parts {
            let keys: Vec<u32> = (0..part.keys.len())
                .map(|slot| {
                    let table = traffic.table_id(&part.tables[part.keys.table(slot) as usize]);
                    traffic.intern(table, part.keys.key(slot))
                })
                .collect();
            traffic
                .events
                .extend(part.events.into_iter().map(|event| Event {
                    key: keys[event.key as usize],
                    ..event
                }));
        }
        let mut events = std::mem::take(&mut traffic.events);
        events.sort_unstable_by(|a, b| traffic.replay_order(a, b));
        traffic.events = events;
        Ok(traffic)
    }

    /// Gathers one batch (a scan worker numbers its own keys; `load`
    /// renumbers them when merging).
    fn add_batch(&mut self, batch: &AccessBatch) {
        let tables: Vec<u32> = batch
            .table_names()
            .iter()
            .map(|name| self.table_id(name))
            .collect();
        for row in 0..batch.len() {
            let key = self.intern(tables[batch.table_index()[row] as usize], batch.key(row));
            self.events.push(Event {
                ts: batch.ts()[row],
                key,
                op: batch.ops()[row],
                size_bytes: batch.sizes()[row].max(0) as u64,
            });
        }
    }

    fn replay_order(&self, a: &Event, b: &Event) -> Ordering {
        a.ts.cmp(&b.ts)
            .then_with(|| self.table_name(a.key).cmp(self.table_name(b.key)))
            .then_with(|| self.key(a.key).cmp(self.key(b.key)))
            .then_with(|| (a.op as u8).cmp(&(b.op as u8)))
            .then_with(|| a.size_bytes.cmp(&b.size_bytes))
    }

    fn table_id(&mut self, name: &str) -> u32 {
        match self.tables.iter().position(|t| t == name) {
            Some(id) => id as u32,
            None => {
                self.tables.push(name.to_string());
                (self.tables.len() - 1) as u32
            }
        }
    }

    fn intern(&mut self, table: u32, key: &[u8]) -> u32 {
        let hash = self.keys.hash(table, key);
        match self.keys.find(hash, table, key) {
            Some(slot) => slot as u32,
            None => self
                .keys
                .insert(hash, table, key)
                .expect("a simulation's keys fit an arena") as u32,
        }
    }

    /// The index of (`table`, `key`), if the traffic touches it.
    pub fn find(&self, table: &str, key: &[u8]) -> Option<u32> {
        let table = self.tables.iter().position(|t| t == table)? as u32;
        let hash = self.keys.hash(table, key);
        self.keys.find(hash, table, key).map(|slot| slot as u32)
    }

    /// How many distinct keys the traffic touches.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    pub fn table_name(&self, key: u32) -> &str {
        &self.tables[self.keys.table(key as usize) as usize]
    }

    pub fn key(&self, key: u32) -> &[u8] {
        self.keys.key(key as usize)
    }
}
