//! What the logs say of each key, summed over a set of files: how often it
//! was touched and written, its latest size, when it was last written and
//! whether that write deleted it. Used to follow new log files and to seed
//! a database in the state the logs describe.

use ahash::AHashMap;

use super::{AccessBatch, LogSource, Op, TimeRange};

/// One key's activity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Activity {
    pub accesses: u64,
    pub writes: u64,
    /// Time of the latest event (µs) and the size it saw.
    pub last_ts: i64,
    pub last_size: i64,
    /// Time of the latest write (µs); `i64::MIN` when never written.
    pub last_write_ts: i64,
    /// The latest write was a delete.
    pub deleted: bool,
}

/// Activity per key, table by table.
#[derive(Default)]
pub struct KeyActivity {
    tables: Vec<String>,
    keys: Vec<AHashMap<Box<[u8]>, Activity>>,
}

impl KeyActivity {
    /// Scans every event of `source`.
    pub fn scan(source: &LogSource) -> Result<KeyActivity, String> {
        let plan = source.plan(TimeRange::ALL).map_err(|e| e.to_string())?;
        let parts = plan
            .fold(KeyActivity::default, |keys, batch| keys.add(batch), &|_| {})
            .map_err(|e| e.to_string())?;
        Ok(parts
            .into_iter()
            .fold(KeyActivity::default(), KeyActivity::merge))
    }

    /// Each table's name and keys.
    pub fn tables(&self) -> impl Iterator<Item = (&str, &AHashMap<Box<[u8]>, Activity>)> {
        self.tables.iter().map(String::as_str).zip(&self.keys)
    }

    /// Keeps the keys for which `keep(table, key)` holds.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &[u8]) -> bool) {
        for (table, keys) in self.tables.iter().zip(&mut self.keys) {
            keys.retain(|key, _| keep(table, key));
        }
    }

    /// The slot of `table`, added when new.
    fn slot_of(&mut self, table: &str) -> usize {
        match self.tables.iter().position(|t| t == table) {
            Some(slot) => slot,
            None => {
                self.tables.push(table.to_string());
                self.keys.push(AHashMap::new());
                self.tables.len() - 1
            }
        }
    }

    fn add(&mut self, batch: &AccessBatch) {
        let slots: Vec<usize> = batch
            .table_names()
            .iter()
            .map(|name| self.slot_of(name))
            .collect();
        for row in 0..batch.len() {
            let keys = &mut self.keys[slots[batch.table_index()[row] as usize]];
            let (ts, op, size) = (batch.ts()[row], batch.ops()[row], batch.sizes()[row]);
            let key = batch.key(row);
            let activity = match keys.get_mut(key) {
                Some(activity) => activity,
                None => keys.entry(key.into()).or_insert(Activity {
                    accesses: 0,
                    writes: 0,
                    last_ts: i64::MIN,
                    last_size: 0,
                    last_write_ts: i64::MIN,
                    deleted: false,
                }),
            };
            activity.accesses += 1;
            if ts >= activity.last_ts {
                activity.last_ts = ts;
                activity.last_size = size;
            }
            if op != Op::Read {
                activity.writes += 1;
                if ts >= activity.last_write_ts {
                    activity.last_write_ts = ts;
                    activity.deleted = op == Op::Delete;
                }
            }
        }
    }

    fn merge(mut self, other: KeyActivity) -> KeyActivity {
        for (table, keys) in other.tables.into_iter().zip(other.keys) {
            let slot = self.slot_of(&table);
            for (key, theirs) in keys {
                self.keys[slot]
                    .entry(key)
                    .and_modify(|mine| {
                        mine.accesses += theirs.accesses;
                        mine.writes += theirs.writes;
                        if theirs.last_ts >= mine.last_ts {
                            mine.last_ts = theirs.last_ts;
                            mine.last_size = theirs.last_size;
                        }
                        if theirs.last_write_ts >= mine.last_write_ts {
                            mine.last_write_ts = theirs.last_write_ts;
                            mine.deleted = theirs.deleted;
                        }
                    })
                    .or_insert(theirs);
            }
        }
        self
    }
}
