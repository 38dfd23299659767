//! The location map's redb file: keys with their records, table names, and
//! settings. Every write is one transaction with redb's default immediate
//! durability (fsync before `commit` returns). Opening the file first
//! replays and removes any journal left beside it (see [`super::journal`]).

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::journal::{self, Pending};
use super::{KeyRecord, StateError};

/// (table id, big-endian) ++ key bytes -> encoded [`KeyRecord`].
const KEYS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("keys");
const TABLES: TableDefinition<u32, &str> = TableDefinition::new("tables");
/// Setting name -> JSON.
const SETTINGS: TableDefinition<&str, &str> = TableDefinition::new("settings");

pub(super) const RECORD_LEN: usize = 25;
/// redb's page cache. The map is read whole once at start and then only
/// written, so a large cache would only hold pages nobody reads again.
const CACHE_BYTES: usize = 32 << 20;
const COPIED: u8 = 1;
const IN_SAMPLE: u8 = 2;

pub(super) struct Store {
    path: PathBuf,
    db: Database,
    /// Whether the store is a file, which journals may sit beside.
    on_disk: bool,
}

pub(super) fn encode(record: &KeyRecord) -> [u8; RECORD_LEN] {
    let mut out = [0u8; RECORD_LEN];
    out[0] = if record.copied_version.is_some() {
        COPIED
    } else {
        0
    } | if record.in_sample { IN_SAMPLE } else { 0 };
    out[1..9].copy_from_slice(&record.size_bytes.to_le_bytes());
    out[9..17].copy_from_slice(&record.copied_version.unwrap_or(0).to_le_bytes());
    out[17..25].copy_from_slice(&record.latest_write.to_le_bytes());
    out
}

pub(super) fn decode(bytes: &[u8]) -> Result<KeyRecord, String> {
    if bytes.len() != RECORD_LEN {
        return Err(format!(
            "record is {} bytes, expected {RECORD_LEN}",
            bytes.len()
        ));
    }
    let flags = bytes[0];
    if flags & !(COPIED | IN_SAMPLE) != 0 {
        return Err(format!("unknown flags {flags:#04x}"));
    }
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    Ok(KeyRecord {
        size_bytes: word(1),
        copied_version: (flags & COPIED != 0).then(|| word(9)),
        latest_write: word(17),
        in_sample: flags & IN_SAMPLE != 0,
    })
}

fn stored_key(table: u32, key: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&table.to_be_bytes());
    out.extend_from_slice(key);
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, StateError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| StateError::Store {
                path: path.to_path_buf(),
                problem: format!("creating its folder: {e}"),
            })?;
        }
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| StateError::Store {
                path: path.to_path_buf(),
                problem: format!("cannot open: {e}"),
            })?;
        let store = Self::with_tables(Store {
            path: path.to_path_buf(),
            db,
            on_disk: true,
        })?;
        store.recover_journals()?;
        Ok(store)
    }

    /// Puts what journals left beside the file hold into it (the older
    /// first), then removes them.
    fn recover_journals(&self) -> Result<(), StateError> {
        let older = journal::checkpoint_path(&self.path);
        let newer = journal::current_path(&self.path);
        let mut pending = Pending::default();
        for path in [&older, &newer] {
            journal::replay(path, &mut pending).map_err(|problem| self.failed(problem))?;
        }
        if !pending.is_empty() {
            tracing::info!(
                keys = pending.entries.len(),
                "replaying the journal of the last run into the state"
            );
            self.put_pending(&pending)?;
        }
        for path in [older, newer] {
            match std::fs::remove_file(&path) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    return Err(self.failed(format!("removing {}: {error}", path.display())));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Where this store's journals go; none for a store in memory.
    pub fn journal_base(&self) -> Option<&Path> {
        self.on_disk.then_some(self.path.as_path())
    }

    /// [`put`](Self::put) of everything `pending` holds.
    pub fn put_pending(&self, pending: &Pending) -> Result<(), StateError> {
        self.put(
            &pending.tables,
            pending.sorted_entries().into_iter(),
            &pending.settings,
        )
    }

    /// A store held in memory only, for simulations: same transactions,
    /// nothing survives the process. `label` names it in errors.
    pub fn in_memory(label: &str) -> Result<Self, StateError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| StateError::Store {
                path: PathBuf::from(label),
                problem: format!("cannot create: {e}"),
            })?;
        Self::with_tables(Store {
            path: PathBuf::from(label),
            db,
            on_disk: false,
        })
    }

    fn with_tables(store: Store) -> Result<Self, StateError> {
        store.write(|txn| {
            txn.open_table(KEYS)?;
            txn.open_table(TABLES)?;
            txn.open_table(SETTINGS)?;
            Ok(())
        })?;
        Ok(store)
    }

    fn failed(&self, error: impl std::fmt::Display) -> StateError {
        StateError::Store {
            path: self.path.clone(),
            problem: error.to_string(),
        }
    }

    /// Runs `body` in one write transaction and commits it.
    fn write(
        &self,
        body: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), StateError> {
        let txn = self.db.begin_write().map_err(|e| self.failed(e))?;
        body(&txn).map_err(|e| self.failed(e))?;
        txn.commit().map_err(|e| self.failed(e))
    }

    pub fn tables(&self) -> Result<Vec<String>, StateError> {
        let txn = self.db.begin_read().map_err(|e| self.failed(e))?;
        let table = txn.open_table(TABLES).map_err(|e| self.failed(e))?;
        let mut names = Vec::new();
        for (expected, entry) in table.iter().map_err(|e| self.failed(e))?.enumerate() {
            let (id, name) = entry.map_err(|e| self.failed(e))?;
            if id.value() as usize != expected {
                return Err(self.failed(format!(
                    "table ids are not dense: found {} where {expected} was expected",
                    id.value()
                )));
            }
            names.push(name.value().to_string());
        }
        Ok(names)
    }

    /// Calls `visit` with every stored key, in stored order.
    pub fn for_each_key(
        &self,
        mut visit: impl FnMut(u32, &[u8], KeyRecord) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        let txn = self.db.begin_read().map_err(|e| self.failed(e))?;
        let table = txn.open_table(KEYS).map_err(|e| self.failed(e))?;
        for entry in table.iter().map_err(|e| self.failed(e))? {
            let (key, value) = entry.map_err(|e| self.failed(e))?;
            let stored = key.value();
            let corrupt = |problem: String| StateError::Corrupt {
                path: self.path.clone(),
                key: stored.iter().map(|b| format!("{b:02x}")).collect(),
                problem,
            };
            if stored.len() < 4 {
                return Err(corrupt("key shorter than its table id".into()));
            }
            let table_id = u32::from_be_bytes(stored[..4].try_into().expect("4 bytes"));
            let record = decode(value.value()).map_err(corrupt)?;
            visit(table_id, &stored[4..], record)?;
        }
        Ok(())
    }

    /// Stores new table names, key records and settings in one
    /// transaction (durable when this returns).
    pub fn put<'k>(
        &self,
        tables: &[(u32, String)],
        entries: impl Iterator<Item = (u32, &'k [u8], KeyRecord)>,
        settings: &[(String, String)],
    ) -> Result<(), StateError> {
        self.write(|txn| {
            let mut names = txn.open_table(TABLES)?;
            for (id, name) in tables {
                names.insert(*id, name.as_str())?;
            }
            let mut table = txn.open_table(KEYS)?;
            let mut stored = Vec::new();
            for (table_id, key, record) in entries {
                stored_key(table_id, key, &mut stored);
                table.insert(stored.as_slice(), encode(&record).as_slice())?;
            }
            let mut table = txn.open_table(SETTINGS)?;
            for (name, value) in settings {
                table.insert(name.as_str(), value.as_str())?;
            }
            Ok(())
        })
    }

    pub fn setting(&self, name: &str) -> Result<Option<String>, StateError> {
        let txn = self.db.begin_read().map_err(|e| self.failed(e))?;
        let table = txn.open_table(SETTINGS).map_err(|e| self.failed(e))?;
        let value = table.get(name).map_err(|e| self.failed(e))?;
        Ok(value.map(|v| v.value().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bad_ones_are_named() {
        for record in [
            KeyRecord::new(0),
            KeyRecord {
                size_bytes: u64::MAX,
                copied_version: Some(0),
                latest_write: 7,
                in_sample: true,
            },
        ] {
            assert_eq!(decode(&encode(&record)), Ok(record));
        }
        assert!(decode(&[0; 3]).unwrap_err().contains("3 bytes"));
        let mut bad = encode(&KeyRecord::new(1));
        bad[0] = 0x80;
        assert!(decode(&bad).unwrap_err().contains("flags"));
    }
}
