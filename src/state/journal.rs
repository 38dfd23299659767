//! The state's write-ahead journal: each group of commits appended to one
//! file and fsynced, instead of written into the B-tree key by key.
//!
//! A group of acknowledgements names keys in ranked order, which is random
//! in key order, so writing it into the B-tree rewrites about one page per
//! key. Appending it is one sequential write. The records pile up in
//! memory and go into the B-tree together, sorted (a checkpoint, on its own
//! thread), many to a page; then the journal they came from is deleted.
//!
//! Files: `STATE.journal` takes appends; when it grows past
//! [`CHECKPOINT_BYTES`] it is renamed `STATE.journal.checkpoint` while its
//! records are checkpointed, and a fresh `STATE.journal` goes on. Opening
//! the state replays both, older first, into the B-tree and deletes them,
//! so a crash at any point loses nothing that was reported durable.
//!
//! A record is its payload's length and CRC-32, then the payload: new table
//! names, key records, settings. A record cut short or failing its CRC
//! ends the journal (a crash mid-append: its group was never reported
//! durable); what is dropped is logged with the file and offset.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use super::KeyRecord;
use super::store::{RECORD_LEN, decode, encode};

/// Journal size that starts a checkpoint (about 700,000 key records; the
/// unit tests go through many checkpoints with a small one).
pub(super) const CHECKPOINT_BYTES: u64 = if cfg!(test) { 16 << 10 } else { 32 << 20 };

/// The file that takes appends.
pub(super) fn current_path(state: &Path) -> PathBuf {
    with_suffix(state, ".journal")
}

/// The file being checkpointed.
pub(super) fn checkpoint_path(state: &Path) -> PathBuf {
    with_suffix(state, ".journal.checkpoint")
}

fn with_suffix(state: &Path, suffix: &str) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// What commits changed and the B-tree does not have yet: each key's latest
/// record, new table names, settings in order.
#[derive(Default)]
pub(super) struct Pending {
    pub tables: Vec<(u32, String)>,
    pub entries: HashMap<(u32, Box<[u8]>), KeyRecord>,
    pub settings: Vec<(String, String)>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty() && self.entries.is_empty() && self.settings.is_empty()
    }

    /// The key records in stored-key order, for one walk of the B-tree.
    pub fn sorted_entries(&self) -> Vec<(u32, &[u8], KeyRecord)> {
        let mut entries: Vec<(u32, &[u8], KeyRecord)> = self
            .entries
            .iter()
            .map(|((table, key), record)| (*table, &key[..], *record))
            .collect();
        entries.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        entries
    }
}

/// The open journal file.
pub(super) struct Journal {
    file: File,
    bytes: u64,
    buffer: Vec<u8>,
}

impl Journal {
    /// Starts an empty journal at `path` (one left there was replayed when
    /// the state was opened).
    pub fn create(path: &Path) -> std::io::Result<Journal> {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)?;
        Ok(Journal {
            file,
            bytes: 0,
            buffer: Vec::new(),
        })
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends one record and returns once it is on disk.
    pub fn append(
        &mut self,
        tables: &[(u32, String)],
        entries: &[(u32, &[u8], KeyRecord)],
        settings: &[(String, String)],
    ) -> std::io::Result<()> {
        let buffer = &mut self.buffer;
        buffer.clear();
        buffer.extend_from_slice(&[0; 8]);
        put_u32(buffer, tables.len());
        for (id, name) in tables {
            buffer.extend_from_slice(&id.to_le_bytes());
            put_bytes(buffer, name.as_bytes());
        }
        put_u32(buffer, entries.len());
        for (table, key, record) in entries {
            buffer.extend_from_slice(&table.to_le_bytes());
            put_bytes(buffer, key);
            buffer.extend_from_slice(&encode(record));
        }
        put_u32(buffer, settings.len());
        for (name, value) in settings {
            put_bytes(buffer, name.as_bytes());
            put_bytes(buffer, value.as_bytes());
        }
        let payload = (buffer.len() - 8) as u32;
        let crc = crc32fast::hash(&buffer[8..]);
        buffer[..4].copy_from_slice(&payload.to_le_bytes());
        buffer[4..8].copy_from_slice(&crc.to_le_bytes());
        self.file.write_all(buffer)?;
        self.file.sync_data()?;
        self.bytes += buffer.len() as u64;
        Ok(())
    }
}

fn put_u32(buffer: &mut Vec<u8>, value: usize) {
    buffer.extend_from_slice(&(value as u32).to_le_bytes());
}

fn put_bytes(buffer: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(buffer, bytes.len());
    buffer.extend_from_slice(bytes);
}

/// Reads the journal at `path` (nothing when there is none) into `pending`,
/// later records over earlier ones. A torn or failing record ends it (see
/// the module's doc); a record whose CRC holds but whose payload does not
/// parse is an error naming the file and offset.
pub(super) fn replay(path: &Path, pending: &mut Pending) -> Result<(), String> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(format!("{}: {error}", path.display())),
    };
    let length = file
        .metadata()
        .map_err(|error| format!("{}: {error}", path.display()))?
        .len();
    let mut reader = BufReader::new(file);
    let mut offset = 0u64;
    let mut payload = Vec::new();
    loop {
        let mut header = [0u8; 8];
        match reader.read_exact(&mut header) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
                if offset < length {
                    torn(path, offset, length, "a record header cut short");
                }
                return Ok(());
            }
            Err(error) => return Err(format!("{}: {error}", path.display())),
        }
        let size = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as u64;
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        if offset + 8 + size > length {
            torn(path, offset, length, "a record cut short");
            return Ok(());
        }
        payload.resize(size as usize, 0);
        reader
            .read_exact(&mut payload)
            .map_err(|error| format!("{}: {error}", path.display()))?;
        if crc32fast::hash(&payload) != crc {
            torn(path, offset, length, "a record failing its checksum");
            return Ok(());
        }
        parse(&payload, pending)
            .map_err(|problem| format!("{} at byte {offset}: {problem}", path.display()))?;
        offset += 8 + size;
    }
}

fn torn(path: &Path, offset: u64, length: u64, what: &str) {
    tracing::warn!(
        journal = %path.display(),
        offset,
        dropped_bytes = length - offset,
        "the journal ends in {what} (a write cut off by a crash, never reported durable); replayed up to it"
    );
}

fn parse(payload: &[u8], pending: &mut Pending) -> Result<(), String> {
    let mut rest = payload;
    let mut take = |n: usize| -> Result<&[u8], String> {
        if rest.len() < n {
            return Err("a record's contents end early".into());
        }
        let (taken, left) = rest.split_at(n);
        rest = left;
        Ok(taken)
    };
    fn number(bytes: &[u8]) -> u32 {
        u32::from_le_bytes(bytes.try_into().expect("4 bytes"))
    }
    let text = |bytes: &[u8]| {
        String::from_utf8(bytes.to_vec()).map_err(|_| "a name that is not UTF-8".to_string())
    };
    for _ in 0..number(take(4)?) {
        let id = number(take(4)?);
        let length = number(take(4)?) as usize;
        pending.tables.push((id, text(take(length)?)?));
    }
    for _ in 0..number(take(4)?) {
        let table = number(take(4)?);
        let length = number(take(4)?) as usize;
        let key: Box<[u8]> = take(length)?.into();
        let record = decode(take(RECORD_LEN)?)?;
        pending.entries.insert((table, key), record);
    }
    for _ in 0..number(take(4)?) {
        let length = number(take(4)?) as usize;
        let name = text(take(length)?)?;
        let length = number(take(4)?) as usize;
        let value = text(take(length)?)?;
        pending.settings.push((name, value));
    }
    if !rest.is_empty() {
        return Err(format!("{} bytes after a record's contents", rest.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::copied;
    use crate::state::{Location, LocationMap};

    /// What a crash leaves: an older journal being checkpointed and a newer
    /// one whose last append was cut off. Opening replays both in order,
    /// drops the torn append, and removes them.
    #[test]
    fn journals_left_by_a_crash_are_replayed_in_order_and_a_torn_append_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locations.redb");
        {
            let mut map = LocationMap::open(&path).unwrap();
            let users = map.table_id("users").unwrap();
            let (a, _) = map.track(users, b"a", KeyRecord::new(10)).unwrap();
            map.commit(&[(a, KeyRecord::new(10))], &[]).unwrap();
        }
        let mut older = Journal::create(&checkpoint_path(&path)).unwrap();
        older
            .append(
                &[(1, "orders".into())],
                &[(0, b"a", copied(3)), (1, b"b", copied(2))],
                &[("phase".into(), "\"BACKGROUND\"".into())],
            )
            .unwrap();
        let mut newer = Journal::create(&current_path(&path)).unwrap();
        newer.append(&[], &[(0, b"a", copied(7))], &[]).unwrap();
        newer.append(&[], &[(0, b"a", copied(99))], &[]).unwrap();
        let whole = std::fs::metadata(current_path(&path)).unwrap().len();
        let file = OpenOptions::new()
            .write(true)
            .open(current_path(&path))
            .unwrap();
        file.set_len(whole - 5).unwrap();

        let map = LocationMap::open(&path).unwrap();
        assert_eq!(map.tables(), ["users", "orders"]);
        let a = map.find(0, b"a").unwrap();
        assert_eq!(
            map.record(a).copied_version,
            Some(7),
            "the torn append is dropped"
        );
        let b = map.find(1, b"b").unwrap();
        assert_eq!(map.record(b).copied_version, Some(2));
        assert_eq!(
            map.setting("phase").unwrap().as_deref(),
            Some("\"BACKGROUND\"")
        );
        assert_eq!(map.totals(Location::Current).keys, 2);
        assert!(!current_path(&path).exists() && !checkpoint_path(&path).exists());
    }

    #[test]
    fn an_append_failing_its_checksum_ends_the_journal_and_a_bad_record_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locations.redb");
        drop(LocationMap::open(&path).unwrap());
        let mut journal = Journal::create(&current_path(&path)).unwrap();
        journal
            .append(&[(0, "users".into())], &[(0, b"a", copied(1))], &[])
            .unwrap();
        journal.append(&[], &[(0, b"a", copied(2))], &[]).unwrap();
        let mut bytes = std::fs::read(current_path(&path)).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0xff;
        std::fs::write(current_path(&path), &bytes).unwrap();
        let map = LocationMap::open(&path).unwrap();
        let a = map.find(0, b"a").unwrap();
        assert_eq!(map.record(a).copied_version, Some(1));
        drop(map);

        // A record whose checksum holds but whose contents do not parse is
        // not a torn append: opening fails and names the journal.
        let mut journal = Journal::create(&current_path(&path)).unwrap();
        journal.append(&[], &[], &[]).unwrap();
        let mut bytes = std::fs::read(current_path(&path)).unwrap();
        let mut payload = vec![1, 0, 0, 0];
        payload.extend_from_slice(&bytes[12..]);
        bytes.truncate(0);
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
        std::fs::write(current_path(&path), &bytes).unwrap();
        let error = LocationMap::open(&path).err().unwrap().to_string();
        assert!(
            error.contains("locations.redb.journal at byte 0: a record's contents end early"),
            "{error}"
        );
    }

    /// Thousands of pipelined changes go through many checkpoints. A copy
    /// of the files taken while the writer lives (what a crash would leave
    /// once the running checkpoint is done) opens with every durable
    /// change, and so does the state after a clean stop, with no journal.
    #[test]
    fn pipelined_changes_survive_checkpoints_a_crash_image_and_a_clean_stop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locations.redb");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let keys: Vec<Vec<u8>> = (0..3_000u32)
            .map(|i| format!("key-{}", (i * 7919) % 3_000).into_bytes())
            .collect();
        let mut map = LocationMap::open(&path).unwrap();
        let mut watch = map.pipeline();
        let users = map.table_id("users").unwrap();
        for (round, chunk) in keys.chunks(100).enumerate() {
            let changes: Vec<_> = chunk
                .iter()
                .map(|key| {
                    let (id, _) = map.track(users, key, KeyRecord::new(10)).unwrap();
                    (id, copied(round as u64))
                })
                .collect();
            map.commit(&changes, &[]).unwrap();
        }
        // Every key copied again, at a version that says which commit won.
        for chunk in keys.chunks(250) {
            let changes: Vec<_> = chunk
                .iter()
                .map(|key| (map.find(users, key).unwrap(), copied(1_000)))
                .collect();
            map.commit(&changes, &[]).unwrap();
        }
        runtime.block_on(watch.durable(map.committed())).unwrap();
        while checkpoint_path(&path).exists() {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let image = dir.path().join("image");
        std::fs::create_dir(&image).unwrap();
        for from in [path.clone(), current_path(&path)] {
            std::fs::copy(&from, image.join(from.file_name().unwrap())).unwrap();
        }
        let expect_all = |map: &LocationMap| {
            for key in &keys {
                let id = map.find(0, key).unwrap();
                assert_eq!(map.record(id).copied_version, Some(1_000));
            }
            assert_eq!(map.totals(Location::Current).keys, 3_000);
        };
        let crashed = LocationMap::open(image.join("locations.redb")).unwrap();
        expect_all(&crashed);
        drop(map);
        assert!(!current_path(&path).exists() && !checkpoint_path(&path).exists());
        expect_all(&LocationMap::open(&path).unwrap());
    }
}
