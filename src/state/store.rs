//! Where the location map rests between checkpoints: table names and
//! settings in a redb file, every key and its record in two files beside
//! it, both addressed by key id (the order keys were first tracked):
//!
//! - `STATE.keys`: each key's table and bytes, appended in id order, in
//!   chunks that carry their own CRC-32. A chunk cut short or failing its
//!   CRC ends the file (a crash mid-checkpoint, whose journal still holds
//!   those keys) and is cut off when the state is opened.
//! - `STATE.records`: one 25-byte record per key id, at a fixed place, so a
//!   checkpoint writes a changed record where it is, in id order (a read
//!   and a write per 64 KiB touched) instead of inserting into a B-tree.
//!
//! A checkpoint stores tables and settings (one redb transaction), then
//! the records (fsync), then appends the new keys (fsync): every key in
//! the key file has its record, and a crash at any point leaves what the
//! journal it came from (deleted only afterwards) replays again. Writing
//! a record in place relies on the disk writing a sector whole, old or new
//! (as SQLite's "powersafe overwrite" does).
//!
//! A state written before the key files existed holds its keys in redb:
//! opening it moves them into the files once (files written aside, synced
//! and renamed into place, then the redb table dropped).

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableError,
};

use super::changes::{Changes, RecordChanges};
use super::journal::{Fields, read_up_to, with_suffix};
use super::{KeyRecord, StateError};

/// Keys of a state from before the key files: (table id, big-endian) ++
/// key bytes -> encoded [`KeyRecord`]. Only read, to move them.
const LEGACY_KEYS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("keys");
const TABLES: TableDefinition<u32, &str> = TableDefinition::new("tables");
/// Setting name -> JSON.
const SETTINGS: TableDefinition<&str, &str> = TableDefinition::new("settings");

pub(super) const RECORD_LEN: usize = 25;
const COPIED: u8 = 1;
const IN_SAMPLE: u8 = 2;

const KEYS_MAGIC: &[u8; 8] = b"SCKEYS01";
const RECORDS_MAGIC: &[u8; 8] = b"SCRECS01";
/// A key chunk's header: key count, payload bytes, CRC-32 of both and the
/// payload.
const CHUNK_HEADER: usize = 16;
/// Most payload bytes a checkpoint puts in one key chunk.
const CHUNK_BYTES: usize = 1 << 20;
/// Records read and written together by a checkpoint (about 64 KiB).
const RECORDS_PER_BLOCK: u64 = 2_621;

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

pub(super) fn keys_path(state: &Path) -> PathBuf {
    with_suffix(state, ".keys")
}

pub(super) fn records_path(state: &Path) -> PathBuf {
    with_suffix(state, ".records")
}

/// The key and record files and how far they go.
struct KeyFiles {
    keys: File,
    records: File,
    /// Keys in the key file: the next new key's id.
    stored_keys: u32,
    /// Where the next key chunk goes.
    keys_end: u64,
}

pub(super) struct Store {
    path: PathBuf,
    db: Database,
    /// `None` for a store in memory, which keeps no keys.
    files: Option<Mutex<KeyFiles>>,
}

impl Store {
    /// Opens the state at `path` (created when missing) and calls `visit`
    /// with every stored key in id order.
    pub fn open(
        path: &Path,
        visit: impl FnMut(u32, &[u8], KeyRecord) -> Result<(), StateError>,
    ) -> Result<Self, StateError> {
        let failed = |problem: String| StateError::store(path, problem);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| failed(format!("creating its folder: {e}")))?;
        }
        let db = Database::create(path).map_err(|e| failed(format!("cannot open: {e}")))?;
        let mut store = Store {
            path: path.to_path_buf(),
            db,
            files: None,
        };
        store.create_tables()?;
        store.move_legacy_keys()?;
        let files = store.load_key_files(visit)?;
        store.files = Some(Mutex::new(files));
        Ok(store)
    }

    /// How many keys the state at `path` holds and how many bytes their
    /// file takes, from the files' lengths (without reading them): room
    /// to make before [`open`](Self::open) loads them. Zero when missing.
    pub fn stored_keys_hint(path: &Path) -> (usize, usize) {
        let length = |file: PathBuf| std::fs::metadata(file).map_or(0, |m| m.len() as usize);
        let records = length(records_path(path)).saturating_sub(RECORDS_MAGIC.len()) / RECORD_LEN;
        (records, length(keys_path(path)))
    }

    /// A store held in memory only, for simulations: tables and settings in
    /// redb's memory backend, keys nowhere (nothing reads them back).
    /// `label` names it in errors.
    pub fn in_memory(label: &str) -> Result<Self, StateError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| StateError::store(Path::new(label), format!("cannot create: {e}")))?;
        let store = Store {
            path: PathBuf::from(label),
            db,
            files: None,
        };
        store.create_tables()?;
        Ok(store)
    }

    /// Where this store's journals go; none for a store in memory.
    pub fn journal_base(&self) -> Option<&Path> {
        self.files.is_some().then_some(self.path.as_path())
    }

    fn create_tables(&self) -> Result<(), StateError> {
        self.write(|txn| {
            txn.open_table(TABLES)?;
            txn.open_table(SETTINGS)?;
            Ok(())
        })
    }

    fn failed(&self, error: impl std::fmt::Display) -> StateError {
        StateError::store(&self.path, error)
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

    pub fn setting(&self, name: &str) -> Result<Option<String>, StateError> {
        let txn = self.db.begin_read().map_err(|e| self.failed(e))?;
        let table = txn.open_table(SETTINGS).map_err(|e| self.failed(e))?;
        let value = table.get(name).map_err(|e| self.failed(e))?;
        Ok(value.map(|v| v.value().to_string()))
    }

    /// Puts `changes` where they rest (see the module's doc for the order);
    /// durable when this returns. New keys the files hold already (a
    /// checkpoint a crash cut off after their chunk) are skipped.
    pub fn checkpoint(&self, mut changes: Changes) -> Result<(), StateError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.write(|txn| {
            let mut names = txn.open_table(TABLES)?;
            for (id, name) in &changes.tables {
                names.insert(*id, name.as_str())?;
            }
            let mut table = txn.open_table(SETTINGS)?;
            for (name, value) in &changes.settings {
                table.insert(name.as_str(), value.as_str())?;
            }
            Ok(())
        })?;
        let Some(files) = &self.files else {
            return Ok(());
        };
        let mut files = files.lock().expect("one checkpoint at a time");
        changes.keep_latest_records();
        let new_keys = &changes.new_keys;
        if !new_keys.is_empty() && new_keys.first > files.stored_keys {
            return Err(self.failed(format!(
                "new keys start at id {} but the key file ends at id {}",
                new_keys.first, files.stored_keys
            )));
        }
        let known = files.stored_keys.max(new_keys.next_id());
        let records = &changes.records;
        if let Some(id) = records.ids().iter().find(|id| id.0 >= known) {
            return Err(self.failed(format!(
                "a record for key id {} beyond the {known} keys stored",
                id.0
            )));
        }
        let records_file = records_path(&self.path);
        write_records(&files.records, records)
            .and_then(|()| files.records.sync_data())
            .map_err(|e| StateError::store(&records_file, e))?;
        let keys_file = keys_path(&self.path);
        let skip = (files.stored_keys - new_keys.first.min(files.stored_keys)) as usize;
        let mut chunk = KeyChunk::new();
        let mut appended = 0u32;
        let mut end = files.keys_end;
        let mut write = |chunk: &mut KeyChunk| {
            appended += chunk.flush(|bytes| {
                files.keys.write_all_at(bytes, end)?;
                end += bytes.len() as u64;
                Ok(())
            })?;
            std::io::Result::Ok(())
        };
        for (_, table, key) in new_keys.iter().skip(skip) {
            if chunk.push(table, key) {
                write(&mut chunk).map_err(|e| StateError::store(&keys_file, e))?;
            }
        }
        write(&mut chunk).map_err(|e| StateError::store(&keys_file, e))?;
        if appended > 0 {
            files
                .keys
                .sync_data()
                .map_err(|e| StateError::store(&keys_file, e))?;
            files.stored_keys += appended;
            files.keys_end = end;
        }
        Ok(())
    }

    /// Reads the key files (created when missing), calling `visit` with
    /// each key, and cuts off a torn last chunk.
    fn load_key_files(
        &self,
        mut visit: impl FnMut(u32, &[u8], KeyRecord) -> Result<(), StateError>,
    ) -> Result<KeyFiles, StateError> {
        let keys_file = keys_path(&self.path);
        let records_file = records_path(&self.path);
        if !keys_file.exists() {
            create_key_files(&self.path, |_| Ok(()))
                .map_err(|e| StateError::store(&keys_file, e))?;
        }
        let open = |path: &Path| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|e| StateError::store(path, e))
        };
        let (keys, records) = (open(&keys_file)?, open(&records_file)?);
        let keys_length = keys
            .metadata()
            .map_err(|e| StateError::store(&keys_file, e))?
            .len();
        let mut key_reader = BufReader::with_capacity(1 << 20, &keys);
        let mut record_reader = BufReader::with_capacity(1 << 20, &records);
        for (reader, magic, path) in [
            (&mut key_reader, KEYS_MAGIC, &keys_file),
            (&mut record_reader, RECORDS_MAGIC, &records_file),
        ] {
            let mut start = [0u8; 8];
            reader
                .read_exact(&mut start)
                .map_err(|e| StateError::store(path, format!("reading its header: {e}")))?;
            if &start != magic {
                return Err(StateError::store(
                    path,
                    "not a shadowcast key file (wrong header)",
                ));
            }
        }
        let mut stored_keys = 0u32;
        let mut end = KEYS_MAGIC.len() as u64;
        let mut chunk = Vec::new();
        let mut record = [0u8; RECORD_LEN];
        loop {
            let mut header = [0u8; CHUNK_HEADER];
            let read = read_up_to(&mut key_reader, &mut header)
                .map_err(|e| StateError::store(&keys_file, e))?;
            if read == 0 {
                break;
            }
            let count = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
            let bytes = u64::from_le_bytes(header[4..12].try_into().expect("8 bytes"));
            let whole = read == CHUNK_HEADER && end + (CHUNK_HEADER as u64) + bytes <= keys_length;
            if whole {
                chunk.resize(bytes as usize, 0);
                key_reader
                    .read_exact(&mut chunk)
                    .map_err(|e| StateError::store(&keys_file, e))?;
            }
            if !whole || chunk_header(count, &chunk) != header {
                tracing::warn!(
                    file = %keys_file.display(),
                    offset = end,
                    dropped_bytes = keys_length - end,
                    "the key file ends in a chunk a crash cut off; its keys come back from the journal"
                );
                keys.set_len(end)
                    .and_then(|()| keys.sync_all())
                    .map_err(|e| StateError::store(&keys_file, e))?;
                break;
            }
            let mut fields = Fields { rest: &chunk };
            for _ in 0..count {
                let corrupt = |problem: &str| {
                    StateError::store(
                        &keys_file,
                        format!("key id {stored_keys} in the chunk at byte {end}: {problem}"),
                    )
                };
                let (table, key) = fields
                    .number()
                    .and_then(|table| Ok((table, fields.bytes()?)))
                    .map_err(|_| corrupt("the chunk ends early"))?;
                let corrupt_record = |problem: String| StateError::Corrupt {
                    path: records_file.clone(),
                    key: format!("{} (id {stored_keys})", crate::keys::display_key(key)),
                    problem,
                };
                record_reader
                    .read_exact(&mut record)
                    .map_err(|e| corrupt_record(format!("no record: {e}")))?;
                visit(table, key, decode(&record).map_err(corrupt_record)?)?;
                stored_keys = stored_keys
                    .checked_add(1)
                    .ok_or_else(|| corrupt("more than 4 billion keys"))?;
            }
            end += (CHUNK_HEADER + chunk.len()) as u64;
        }
        Ok(KeyFiles {
            keys,
            records,
            stored_keys,
            keys_end: end,
        })
    }

    /// Moves the keys of a state from before the key files out of redb.
    fn move_legacy_keys(&self) -> Result<(), StateError> {
        let txn = self.db.begin_read().map_err(|e| self.failed(e))?;
        let legacy = match txn.open_table(LEGACY_KEYS) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(error) => return Err(self.failed(error)),
        };
        // Key files in place mean the move was done and only the drop of
        // the redb table was cut off.
        if !keys_path(&self.path).exists() {
            let keys = legacy.len().map_err(|e| self.failed(e))?;
            tracing::info!(
                keys,
                "moving the keys of a state written by an earlier version into key files"
            );
            let mut entries = legacy.iter().map_err(|e| self.failed(e))?;
            create_key_files(&self.path, |out| {
                for entry in entries.by_ref() {
                    let (key, value) = entry.map_err(std::io::Error::other)?;
                    let stored = key.value();
                    if stored.len() < 4 {
                        return Err(std::io::Error::other(format!(
                            "a key shorter than its table id: {}",
                            crate::keys::display_key(stored)
                        )));
                    }
                    let table = u32::from_be_bytes(stored[..4].try_into().expect("4 bytes"));
                    let record = decode(value.value()).map_err(|problem| {
                        std::io::Error::other(format!(
                            "key {}: {problem}",
                            crate::keys::display_key(&stored[4..])
                        ))
                    })?;
                    out(table, &stored[4..], &record)?;
                }
                Ok(())
            })
            .map_err(|e| self.failed(format!("moving its keys into key files: {e}")))?;
        }
        drop(legacy);
        drop(txn);
        self.write(|txn| {
            txn.delete_table(LEGACY_KEYS)?;
            Ok(())
        })
    }
}

/// Writes `records` (in id order) into the record file: each 64 KiB block
/// they touch read, patched and written back once.
fn write_records(file: &File, records: &RecordChanges) -> std::io::Result<()> {
    let offset = |id: u64| RECORDS_MAGIC.len() as u64 + id * RECORD_LEN as u64;
    let ids = records.ids();
    let mut block = Vec::new();
    let mut at = 0;
    while at < ids.len() {
        let first = u64::from(ids[at].0) / RECORDS_PER_BLOCK * RECORDS_PER_BLOCK;
        let mut last = at;
        while last + 1 < ids.len() && u64::from(ids[last + 1].0) < first + RECORDS_PER_BLOCK {
            last += 1;
        }
        let start = offset(first);
        let end = offset(u64::from(ids[last].0) + 1);
        block.clear();
        block.resize((end - start) as usize, 0);
        let read = read_at_up_to(file, &mut block, start)?;
        block[read..].fill(0);
        for index in at..=last {
            let (id, record) = records.get(index);
            let place = (offset(u64::from(id.0)) - start) as usize;
            block[place..place + RECORD_LEN].copy_from_slice(&encode(&record));
        }
        file.write_all_at(&block, start)?;
        at = last + 1;
    }
    Ok(())
}

fn read_at_up_to(file: &File, buffer: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut read = 0;
    while read < buffer.len() {
        match file.read_at(&mut buffer[read..], offset + read as u64)? {
            0 => break,
            n => read += n,
        }
    }
    Ok(read)
}

/// Keys on their way into the key file, one chunk at a time.
struct KeyChunk {
    /// The header's room, then each key's table, length and bytes.
    bytes: Vec<u8>,
    count: u32,
}

impl KeyChunk {
    fn new() -> KeyChunk {
        KeyChunk {
            bytes: vec![0; CHUNK_HEADER],
            count: 0,
        }
    }

    /// Adds a key; `true` once the chunk is full enough to write.
    fn push(&mut self, table: u32, key: &[u8]) -> bool {
        self.bytes.extend_from_slice(&table.to_le_bytes());
        self.bytes
            .extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(key);
        self.count += 1;
        self.bytes.len() >= CHUNK_BYTES
    }

    /// Hands the chunk, header filled in, to `write` (nothing when it has
    /// no key) and starts the next; gives how many keys it held.
    fn flush(&mut self, write: impl FnOnce(&[u8]) -> std::io::Result<()>) -> std::io::Result<u32> {
        let count = self.count;
        if count == 0 {
            return Ok(0);
        }
        let header = chunk_header(count, &self.bytes[CHUNK_HEADER..]);
        self.bytes[..CHUNK_HEADER].copy_from_slice(&header);
        write(&self.bytes)?;
        self.bytes.truncate(CHUNK_HEADER);
        self.count = 0;
        Ok(count)
    }
}

fn chunk_header(count: u32, payload: &[u8]) -> [u8; CHUNK_HEADER] {
    let mut header = [0u8; CHUNK_HEADER];
    header[..4].copy_from_slice(&count.to_le_bytes());
    header[4..12].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header[..12]);
    crc.update(payload);
    header[12..].copy_from_slice(&crc.finalize().to_le_bytes());
    header
}

/// Writes fresh key files for `state` aside, with the keys `fill` gives
/// (in id order), syncs them and renames them into place, the key file
/// last: a key file in place is always whole.
fn create_key_files(
    state: &Path,
    fill: impl FnOnce(
        &mut dyn FnMut(u32, &[u8], &KeyRecord) -> std::io::Result<()>,
    ) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let aside = |path: PathBuf| with_suffix(&path, ".new");
    let (keys_final, records_final) = (keys_path(state), records_path(state));
    let (keys_aside, records_aside) = (aside(keys_final.clone()), aside(records_final.clone()));
    let mut keys = BufWriter::with_capacity(1 << 20, File::create(&keys_aside)?);
    let mut records = BufWriter::with_capacity(1 << 20, File::create(&records_aside)?);
    keys.write_all(KEYS_MAGIC)?;
    records.write_all(RECORDS_MAGIC)?;
    let mut chunk = KeyChunk::new();
    fill(&mut |table, key, record| {
        records.write_all(&encode(record))?;
        if chunk.push(table, key) {
            chunk.flush(|bytes| keys.write_all(bytes))?;
        }
        Ok(())
    })?;
    chunk.flush(|bytes| keys.write_all(bytes))?;
    for (writer, aside, final_path) in [
        (records, &records_aside, &records_final),
        (keys, &keys_aside, &keys_final),
    ] {
        writer
            .into_inner()
            .map_err(|e| e.into_error())?
            .sync_all()?;
        std::fs::rename(aside, final_path)?;
    }
    sync_folder(state)
}

/// Makes the names of files created or renamed beside `state` durable.
pub(super) fn sync_folder(state: &Path) -> std::io::Result<()> {
    let folder = state
        .parent()
        .filter(|folder| !folder.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(folder)?.sync_all()
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

    use crate::state::tests::copied;
    use crate::state::{KeyId, Location, LocationMap};

    /// A checkpoint a crash cut off while it appended keys leaves a torn
    /// chunk (here: a whole one with a byte flipped) and the journal it
    /// came from: opening cuts the chunk off and the journal brings the
    /// keys back.
    #[test]
    fn a_torn_key_chunk_is_cut_off_and_its_keys_come_back_from_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locations.redb");
        let mut map = LocationMap::open(&path).unwrap();
        let users = map.table_id("users").unwrap();
        let (a, _) = map.track(users, b"a", KeyRecord::new(10)).unwrap();
        map.commit(&[(a, copied(1))], &[]).unwrap();
        drop(map);
        let whole = std::fs::metadata(keys_path(&path)).unwrap().len();
        let mut map = LocationMap::open(&path).unwrap();
        let (b, _) = map.track(users, b"b", KeyRecord::new(20)).unwrap();
        map.commit(&[(b, copied(2))], &[]).unwrap();
        let journal = std::fs::read(crate::state::journal::current_path(&path)).unwrap();
        drop(map);
        let mut keys = std::fs::read(keys_path(&path)).unwrap();
        assert!(keys.len() as u64 > whole, "b's chunk was appended");
        let last = keys.len() - 1;
        keys[last] ^= 0xff;
        std::fs::write(keys_path(&path), &keys).unwrap();
        std::fs::write(crate::state::journal::current_path(&path), &journal).unwrap();

        let map = LocationMap::open(&path).unwrap();
        assert_eq!(map.find(users, b"b"), Some(KeyId(1)));
        assert_eq!(map.record(KeyId(1)), copied(2));
        drop(map);
        assert_eq!(std::fs::read(keys_path(&path)).unwrap().len(), keys.len());
        let map = LocationMap::open(&path).unwrap();
        assert_eq!(map.len(), 2);
        assert_eq!(map.record(map.find(users, b"a").unwrap()), copied(1));
    }

    /// A state written before the key files (keys in redb, by table id and
    /// key bytes) opens with every key, and its redb table is dropped.
    #[test]
    fn a_state_with_its_keys_in_redb_moves_them_into_key_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locations.redb");
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut tables = txn.open_table(TABLES).unwrap();
                tables.insert(0, "users").unwrap();
                tables.insert(1, "orders").unwrap();
                let mut keys = txn.open_table(LEGACY_KEYS).unwrap();
                for (table, key, record) in [
                    (1u32, &b"o-1"[..], copied(4)),
                    (0, b"u-2", KeyRecord::new(7)),
                    (0, b"u-1", copied(3)),
                ] {
                    let mut stored = table.to_be_bytes().to_vec();
                    stored.extend_from_slice(key);
                    keys.insert(stored.as_slice(), encode(&record).as_slice())
                        .unwrap();
                }
                let mut settings = txn.open_table(SETTINGS).unwrap();
                settings.insert("phase", "\"SHADOWING\"").unwrap();
            }
            txn.commit().unwrap();
        }
        for _ in 0..2 {
            let map = LocationMap::open(&path).unwrap();
            assert_eq!(map.tables(), ["users", "orders"]);
            assert_eq!(map.len(), 3);
            assert_eq!(map.record(map.find(0, b"u-1").unwrap()), copied(3));
            assert_eq!(map.record(map.find(0, b"u-2").unwrap()), KeyRecord::new(7));
            assert_eq!(map.record(map.find(1, b"o-1").unwrap()), copied(4));
            assert_eq!(map.totals(Location::Current).keys, 2);
            assert_eq!(
                map.setting("phase").unwrap().as_deref(),
                Some("\"SHADOWING\"")
            );
        }
        let db = Database::create(&path).unwrap();
        let txn = db.begin_read().unwrap();
        assert!(matches!(
            txn.open_table(LEGACY_KEYS),
            Err(TableError::TableDoesNotExist(_))
        ));
    }
}
