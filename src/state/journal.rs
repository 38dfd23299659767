//! The state's write-ahead journal: each group of commits appended to one
//! file and fsynced, instead of written into the key files record by
//! record.
//!
//! A group of acknowledgements names keys in ranked order, which is random
//! in id order. Appending it is one sequential write; the records pile up
//! in memory and a checkpoint (on its own thread) puts them into the
//! record file in id order, a few writes per 64 KiB of it, then deletes
//! the journal they came from.
//!
//! Files: `STATE.journal` takes appends; when it grows past
//! [`CHECKPOINT_BYTES`] it is renamed `STATE.journal.checkpoint` while its
//! records are checkpointed, and a new `STATE.journal` goes on. Opening
//! the state replays both, older first, and deletes them, so a crash at any
//! point loses nothing that was reported durable. A checkpointed journal is
//! kept as `STATE.journal.spare` and overwritten by the next one
//! ([`Journal::reuse`]): its blocks are allocated and its size does not
//! change, so the fsync of an append commits no metadata (about a sixth
//! less time per append; BENCHMARKS.md). A spare is never replayed.
//!
//! A journal starts with [`MAGIC`] and its generation, a random number
//! drawn when the file is started or reused; then each record is its
//! payload's length (8 bytes), the generation and a CRC-32, then the
//! payload: new table names, the keys new to the store (the first one's
//! id, then table and bytes of each, in id order), changed records by key
//! id, settings. A record of another generation is what a reused file held
//! before, and ends the journal. A record cut short or failing its CRC
//! ends it too (a crash mid-append: its group was never reported durable);
//! what is dropped is logged with the file and offset. A journal starting
//! with [`MAGIC_UNREUSED`] has no generations (the format before reuse);
//! one without a magic was written by a version that named every key by
//! its table and bytes (4-byte lengths, no ids): it is replayed by looking
//! the keys up.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use super::changes::{Changes, NewKeys, RecordChanges};
use super::store::{RECORD_LEN, decode, encode};
use super::{KeyId, KeyRecord};

/// Journal size that starts a checkpoint (about a million acknowledged
/// keys; the unit tests go through many checkpoints with a small one).
pub(super) const CHECKPOINT_BYTES: u64 = if cfg!(test) { 16 << 10 } else { 32 << 20 };

/// Most bytes of record buffer a journal keeps between appends.
const KEPT_BUFFER_BYTES: usize = 1 << 20;

/// Encoded bytes a record writes out at a time (a smaller record is one
/// write); small in the unit tests so that they write records in pieces.
const FLUSH_BYTES: usize = if cfg!(test) { 256 } else { 4 << 20 };

/// A record's length (8 bytes), generation (8 bytes) and CRC-32.
const HEADER_BYTES: usize = 20;

/// The first bytes of a journal in this format, before its generation.
const MAGIC: &[u8; 8] = b"SCJRNL03";

/// The magic of the format before journals were reused: no generations.
const MAGIC_UNREUSED: &[u8; 8] = b"SCJRNL02";

/// The magic and the generation.
const FILE_HEADER_BYTES: u64 = 16;

/// The file that takes appends.
pub(super) fn current_path(state: &Path) -> PathBuf {
    with_suffix(state, ".journal")
}

/// The file being checkpointed.
pub(super) fn checkpoint_path(state: &Path) -> PathBuf {
    with_suffix(state, ".journal.checkpoint")
}

/// A checkpointed journal kept for the next one to overwrite.
pub(super) fn spare_path(state: &Path) -> PathBuf {
    with_suffix(state, ".journal.spare")
}

pub(super) fn with_suffix(state: &Path, suffix: &str) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The open journal file.
pub(super) struct Journal {
    file: File,
    bytes: u64,
    buffer: Vec<u8>,
    generation: u64,
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
        Journal::start(file)
    }

    /// Starts an empty journal at `path` in the file at `spare` (a
    /// checkpointed journal): its first bytes take a new generation, which
    /// is durable before the file is renamed to `path`, so what it held
    /// is never replayed.
    pub fn reuse(spare: &Path, path: &Path) -> std::io::Result<Journal> {
        let file = OpenOptions::new().write(true).open(spare)?;
        let journal = Journal::start(file)?;
        journal.file.sync_data()?;
        std::fs::rename(spare, path)?;
        Ok(journal)
    }

    /// Writes the magic and a new generation at the start of `file` and
    /// leaves it positioned after them.
    fn start(mut file: File) -> std::io::Result<Journal> {
        let generation = rand::random::<u64>();
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&generation.to_le_bytes());
        file.write_all(&header)?;
        Ok(Journal {
            file,
            bytes: FILE_HEADER_BYTES,
            buffer: Vec::new(),
            generation,
        })
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends `changes` as one record and returns once it is on disk. A
    /// record larger than [`FLUSH_BYTES`] (a first plan's) is written as it
    /// is encoded, behind a header that says "cut short" until the whole
    /// payload is written and its length and CRC replace it.
    pub fn append(&mut self, changes: &Changes) -> std::io::Result<()> {
        let start = self.bytes;
        let mut record = RecordWriter {
            file: &mut self.file,
            buffer: &mut self.buffer,
            crc: crc32fast::Hasher::new(),
            flushed: 0,
            generation: self.generation,
        };
        record.buffer.clear();
        record.buffer.extend_from_slice(&u64::MAX.to_le_bytes());
        record
            .buffer
            .extend_from_slice(&self.generation.to_le_bytes());
        record.buffer.extend_from_slice(&[0; 4]);
        record.put_u32(changes.tables.len())?;
        for (id, name) in &changes.tables {
            record.put(&id.to_le_bytes())?;
            record.put_bytes(name.as_bytes())?;
        }
        record.put(&changes.new_keys.first.to_le_bytes())?;
        record.put_u32(changes.new_keys.len())?;
        for (_, table, key) in changes.new_keys.iter() {
            record.put(&table.to_le_bytes())?;
            record.put_bytes(key)?;
        }
        record.put_u32(changes.records.len())?;
        for (id, key_record) in changes.records.iter() {
            record.put(&id.0.to_le_bytes())?;
            record.put(&encode(&key_record))?;
        }
        record.put_u32(changes.settings.len())?;
        for (name, value) in &changes.settings {
            record.put_bytes(name.as_bytes())?;
            record.put_bytes(value.as_bytes())?;
        }
        let written = record.finish(start)?;
        self.file.sync_data()?;
        self.bytes += written;
        // A first plan's record can be large: its buffer is not kept for
        // the acknowledgements' small ones.
        if self.buffer.capacity() > KEPT_BUFFER_BYTES {
            self.buffer = Vec::new();
        }
        Ok(())
    }
}

/// One record on its way into the journal: encoded into a buffer that is
/// written out whenever it passes [`FLUSH_BYTES`]; the first
/// [`HEADER_BYTES`] written are the header, which
/// [`finish`](Self::finish) fills in.
struct RecordWriter<'a> {
    file: &'a mut File,
    buffer: &'a mut Vec<u8>,
    crc: crc32fast::Hasher,
    generation: u64,
    /// Bytes written to the file so far, the header included.
    flushed: u64,
}

impl RecordWriter<'_> {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= FLUSH_BYTES {
            let header = if self.flushed == 0 { HEADER_BYTES } else { 0 };
            self.crc.update(&self.buffer[header..]);
            self.file.write_all(self.buffer)?;
            self.flushed += self.buffer.len() as u64;
            self.buffer.clear();
        }
        Ok(())
    }

    fn put_u32(&mut self, value: usize) -> std::io::Result<()> {
        self.put(&(value as u32).to_le_bytes())
    }

    fn put_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.put_u32(bytes.len())?;
        self.put(bytes)
    }

    /// Writes what is left and the header of the record that starts at
    /// `start`; gives the record's length.
    fn finish(mut self, start: u64) -> std::io::Result<u64> {
        let header = if self.flushed == 0 { HEADER_BYTES } else { 0 };
        self.crc.update(&self.buffer[header..]);
        let length = self.flushed + self.buffer.len() as u64;
        let mut header = [0u8; HEADER_BYTES];
        header[..8].copy_from_slice(&(length - HEADER_BYTES as u64).to_le_bytes());
        header[8..16].copy_from_slice(&self.generation.to_le_bytes());
        header[16..].copy_from_slice(&self.crc.finalize().to_le_bytes());
        if self.flushed == 0 {
            self.buffer[..HEADER_BYTES].copy_from_slice(&header);
            self.file.write_all(self.buffer)?;
        } else {
            self.file.write_all(self.buffer)?;
            std::os::unix::fs::FileExt::write_all_at(&*self.file, &header, start)?;
        }
        Ok(length)
    }
}

/// What a journal left by an earlier run holds.
pub(super) enum Replayed {
    /// Changes by key id, every record's in order.
    ById(Changes),
    /// A journal of the format before ids: keys by table and bytes.
    ByKey(KeyedChanges),
}

/// A journal of the format before key ids, in order.
#[derive(Default)]
pub(super) struct KeyedChanges {
    pub tables: Vec<(u32, String)>,
    pub records: Vec<(u32, Vec<u8>, KeyRecord)>,
    pub settings: Vec<(String, String)>,
}

/// Reads the journal at `path` (`None` when there is none). A torn or
/// failing record ends it (see the module's doc); a record whose CRC holds
/// but whose payload does not parse is an error naming the file and
/// offset.
pub(super) fn replay(path: &Path) -> Result<Option<Replayed>, String> {
    let failed = |error: std::io::Error| format!("{}: {error}", path.display());
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(failed(error)),
    };
    let length = file.metadata().map_err(failed)?.len();
    let mut reader = BufReader::new(file);
    let mut start = [0u8; 8];
    let read = read_up_to(&mut reader, &mut start).map_err(failed)?;
    if read < start.len() {
        return Ok(Some(Replayed::ById(Changes::default())));
    }
    // Where the records start, and the generation they must carry.
    let by_id = if &start == MAGIC {
        let mut generation = [0u8; 8];
        if read_up_to(&mut reader, &mut generation).map_err(failed)? < generation.len() {
            return Ok(Some(Replayed::ById(Changes::default())));
        }
        Some((FILE_HEADER_BYTES, Some(u64::from_le_bytes(generation))))
    } else if &start == MAGIC_UNREUSED {
        Some((MAGIC_UNREUSED.len() as u64, None))
    } else {
        None
    };
    if let Some((offset, generation)) = by_id {
        let mut changes = Changes::default();
        let layout = Layout {
            length_bytes: 8,
            generation,
        };
        read_records(&mut reader, path, offset, length, layout, |payload| {
            changes.absorb(parse(payload)?)
        })?;
        return Ok(Some(Replayed::ById(changes)));
    }
    // The oldest format has no magic: its first record starts at byte 0.
    let mut reader = std::io::Cursor::new(start).chain(reader);
    let mut changes = KeyedChanges::default();
    let layout = Layout {
        length_bytes: 4,
        generation: None,
    };
    read_records(&mut reader, path, 0, length, layout, |payload| {
        parse_keyed(payload, &mut changes)
    })?;
    Ok(Some(Replayed::ByKey(changes)))
}

/// Reads until `buffer` is full or the input ends; gives how much was read.
pub(super) fn read_up_to(reader: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut read = 0;
    while read < buffer.len() {
        match reader.read(&mut buffer[read..])? {
            0 => break,
            n => read += n,
        }
    }
    Ok(read)
}

/// How a journal's record headers are laid out.
#[derive(Clone, Copy)]
struct Layout {
    /// How wide the length field is.
    length_bytes: usize,
    /// The journal's generation, which each record repeats after its
    /// length (formats before reuse have none).
    generation: Option<u64>,
}

/// Calls `take` with each whole record's payload from `offset` on.
fn read_records(
    reader: &mut impl Read,
    path: &Path,
    mut offset: u64,
    length: u64,
    layout: Layout,
    mut take: impl FnMut(&[u8]) -> Result<(), String>,
) -> Result<(), String> {
    let length_bytes = layout.length_bytes;
    let generation_bytes = if layout.generation.is_some() { 8 } else { 0 };
    let header_bytes = (length_bytes + generation_bytes + 4) as u64;
    let mut payload = Vec::new();
    loop {
        let mut header = [0u8; HEADER_BYTES];
        let header = &mut header[..header_bytes as usize];
        let read = read_up_to(reader, header).map_err(|e| format!("{}: {e}", path.display()))?;
        if read < header.len() {
            if offset < length {
                torn(path, offset, length, "a record header cut short");
            }
            return Ok(());
        }
        let mut size = [0u8; 8];
        size[..length_bytes].copy_from_slice(&header[..length_bytes]);
        let size = u64::from_le_bytes(size);
        let (generation, crc) = header[length_bytes..].split_at(generation_bytes);
        if let Some(expected) = layout.generation
            && generation != expected.to_le_bytes()
        {
            // What the reused file held before: nothing of this journal.
            return Ok(());
        }
        let crc = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
        if size > length.saturating_sub(offset + header_bytes) {
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
        take(&payload)
            .map_err(|problem| format!("{} at byte {offset}: {problem}", path.display()))?;
        offset += header_bytes + size;
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

/// A record's new table names and settings, which frame its keys.
type TablesAndSettings = (Vec<(u32, String)>, Vec<(String, String)>);

/// Takes a record's fields from the front (a key chunk's too: the same
/// little-endian numbers and length-prefixed bytes).
pub(super) struct Fields<'a> {
    pub rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.rest.len() < n {
            return Err("a record's contents end early".into());
        }
        let (taken, left) = self.rest.split_at(n);
        self.rest = left;
        Ok(taken)
    }

    pub fn number(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], String> {
        let length = self.number()? as usize;
        self.take(length)
    }

    fn text(&mut self) -> Result<String, String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| "a name that is not UTF-8".into())
    }

    fn tables_and_settings_around(
        &mut self,
        middle: impl FnOnce(&mut Self) -> Result<(), String>,
    ) -> Result<TablesAndSettings, String> {
        let mut tables = Vec::new();
        for _ in 0..self.number()? {
            let id = self.number()?;
            tables.push((id, self.text()?));
        }
        middle(self)?;
        let mut settings = Vec::new();
        for _ in 0..self.number()? {
            let name = self.text()?;
            settings.push((name, self.text()?));
        }
        if !self.rest.is_empty() {
            return Err(format!(
                "{} bytes after a record's contents",
                self.rest.len()
            ));
        }
        Ok((tables, settings))
    }
}

fn parse(payload: &[u8]) -> Result<Changes, String> {
    let mut fields = Fields { rest: payload };
    let mut new_keys = NewKeys::default();
    let mut records = RecordChanges::default();
    let (tables, settings) = fields.tables_and_settings_around(|fields| {
        new_keys = NewKeys::starting_at(fields.number()?);
        for _ in 0..fields.number()? {
            let table = fields.number()?;
            new_keys.push(table, fields.bytes()?);
        }
        let count = fields.number()? as usize;
        records.reserve(count.min(fields.rest.len() / (4 + RECORD_LEN)));
        for _ in 0..count {
            let id = KeyId(fields.number()?);
            records.push(id, &decode(fields.take(RECORD_LEN)?)?);
        }
        Ok(())
    })?;
    Ok(Changes {
        tables,
        new_keys,
        records,
        settings,
    })
}

fn parse_keyed(payload: &[u8], changes: &mut KeyedChanges) -> Result<(), String> {
    let mut fields = Fields { rest: payload };
    let records = &mut changes.records;
    let (tables, settings) = fields.tables_and_settings_around(|fields| {
        for _ in 0..fields.number()? {
            let table = fields.number()?;
            let key = fields.bytes()?.to_vec();
            records.push((table, key, decode(fields.take(RECORD_LEN)?)?));
        }
        Ok(())
    })?;
    changes.tables.extend(tables);
    changes.settings.extend(settings);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::copied;
    use crate::state::{Location, LocationMap};

    fn changes(
        tables: &[(u32, &str)],
        first_new: u32,
        new_keys: &[(u32, &[u8])],
        records: &[(u32, KeyRecord)],
        settings: &[(&str, &str)],
    ) -> Changes {
        let mut keys = NewKeys::starting_at(first_new);
        for (table, key) in new_keys {
            keys.push(*table, key);
        }
        Changes {
            tables: tables.iter().map(|(id, n)| (*id, n.to_string())).collect(),
            new_keys: keys,
            records: records.iter().map(|(id, r)| (KeyId(*id), r)).collect(),
            settings: settings
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// A state holding key `a` of table `users` (id 0), copied at 1.
    fn state_with_a(dir: &Path) -> PathBuf {
        let path = dir.join("locations.redb");
        let mut map = LocationMap::open(&path).unwrap();
        let users = map.table_id("users").unwrap();
        let (a, _) = map.track(users, b"a", KeyRecord::new(10)).unwrap();
        map.commit(&[(a, copied(1))], &[]).unwrap();
        path
    }

    /// What a crash leaves: an older journal being checkpointed and a newer
    /// one whose last append was cut off. Opening replays both in order,
    /// drops the torn append, and removes them.
    #[test]
    fn journals_left_by_a_crash_are_replayed_in_order_and_a_torn_append_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = state_with_a(dir.path());
        let mut older = Journal::create(&checkpoint_path(&path)).unwrap();
        older
            .append(&changes(
                &[(1, "orders")],
                1,
                &[(1, b"b")],
                &[(0, copied(3)), (1, copied(2))],
                &[("phase", "\"BACKGROUND\"")],
            ))
            .unwrap();
        let mut newer = Journal::create(&current_path(&path)).unwrap();
        newer
            .append(&changes(
                &[],
                2,
                &[(0, b"c")],
                &[(0, copied(7)), (2, copied(4))],
                &[],
            ))
            .unwrap();
        newer
            .append(&changes(&[], 3, &[], &[(0, copied(99))], &[]))
            .unwrap();
        let whole = std::fs::metadata(current_path(&path)).unwrap().len();
        let file = OpenOptions::new()
            .write(true)
            .open(current_path(&path))
            .unwrap();
        file.set_len(whole - 5).unwrap();

        let check = |map: &LocationMap| {
            assert_eq!(map.tables(), ["users", "orders"]);
            let a = map.find(0, b"a").unwrap();
            assert_eq!(
                map.record(a).copied_version,
                Some(7),
                "the torn append is dropped"
            );
            let b = map.find(1, b"b").unwrap();
            assert_eq!(map.record(b).copied_version, Some(2));
            let c = map.find(0, b"c").unwrap();
            assert_eq!((c, map.record(c).copied_version), (KeyId(2), Some(4)));
            assert_eq!(
                map.setting("phase").unwrap().as_deref(),
                Some("\"BACKGROUND\"")
            );
            assert_eq!(map.totals(Location::Current).keys, 3);
        };
        let map = LocationMap::open(&path).unwrap();
        check(&map);
        assert!(!current_path(&path).exists() && !checkpoint_path(&path).exists());
        drop(map);
        // What was replayed was checkpointed into the key files.
        check(&LocationMap::open(&path).unwrap());
    }

    /// A journal written by the version before key ids (no magic, keys by
    /// table and bytes, 4-byte lengths) is replayed by looking keys up.
    #[test]
    fn a_journal_of_the_format_before_key_ids_is_replayed_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = state_with_a(dir.path());
        let mut payload = Vec::new();
        let u32le = |out: &mut Vec<u8>, n: u32| out.extend_from_slice(&n.to_le_bytes());
        u32le(&mut payload, 0); // no new tables
        u32le(&mut payload, 2); // two key records
        for (key, version) in [(&b"c"[..], 6u64), (b"a", 8)] {
            u32le(&mut payload, 0);
            u32le(&mut payload, key.len() as u32);
            payload.extend_from_slice(key);
            payload.push(1); // copied
            payload.extend_from_slice(&10u64.to_le_bytes());
            payload.extend_from_slice(&version.to_le_bytes());
            payload.extend_from_slice(&0u64.to_le_bytes());
        }
        u32le(&mut payload, 1);
        for text in ["paused", "true"] {
            u32le(&mut payload, text.len() as u32);
            payload.extend_from_slice(text.as_bytes());
        }
        let mut bytes = (payload.len() as u32).to_le_bytes().to_vec();
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
        std::fs::write(current_path(&path), &bytes).unwrap();

        let map = LocationMap::open(&path).unwrap();
        let a = map.find(0, b"a").unwrap();
        let c = map.find(0, b"c").unwrap();
        assert_eq!(map.record(a).copied_version, Some(8));
        assert_eq!((c, map.record(c).copied_version), (KeyId(1), Some(6)));
        assert_eq!(map.setting("paused").unwrap().as_deref(), Some("true"));
        drop(map);
        let map = LocationMap::open(&path).unwrap();
        assert_eq!(
            map.record(map.find(0, b"c").unwrap()).copied_version,
            Some(6)
        );
    }

    /// A record written in pieces (larger than the test's flush size) is
    /// replayed whole; with its header still the placeholder (a crash before
    /// the header was written) it is dropped as cut short.
    #[test]
    fn a_record_written_in_pieces_is_whole_or_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = state_with_a(dir.path());
        let keys: Vec<Vec<u8>> = (0..200).map(|i| format!("k-{i:03}").into_bytes()).collect();
        let new_keys: Vec<(u32, &[u8])> = keys.iter().map(|k| (0, &k[..])).collect();
        let records: Vec<(u32, KeyRecord)> =
            (1..=200).map(|id| (id, copied(u64::from(id)))).collect();
        let mut journal = Journal::create(&current_path(&path)).unwrap();
        journal
            .append(&changes(&[], 1, &new_keys, &records, &[]))
            .unwrap();
        assert!(journal.bytes() as usize > 8 * FLUSH_BYTES);
        let written = std::fs::read(current_path(&path)).unwrap();
        let map = LocationMap::open(&path).unwrap();
        assert_eq!(map.len(), 201);
        let last = map.find(0, b"k-199").unwrap();
        assert_eq!(
            (last, map.record(last).copied_version),
            (KeyId(200), Some(200))
        );
        drop(map);

        let mut placeholder = written.clone();
        let record = FILE_HEADER_BYTES as usize;
        placeholder[record..record + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        placeholder[record + 16..record + HEADER_BYTES].fill(0);
        let dir = tempfile::tempdir().unwrap();
        let path = state_with_a(dir.path());
        std::fs::write(current_path(&path), &placeholder).unwrap();
        let map = LocationMap::open(&path).unwrap();
        assert_eq!(map.len(), 1, "the record cut short is dropped");
    }

    #[test]
    fn an_append_failing_its_checksum_ends_the_journal_and_a_bad_record_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = state_with_a(dir.path());
        let mut journal = Journal::create(&current_path(&path)).unwrap();
        journal
            .append(&changes(&[], 1, &[], &[(0, copied(5))], &[]))
            .unwrap();
        journal
            .append(&changes(&[], 1, &[], &[(0, copied(6))], &[]))
            .unwrap();
        let mut bytes = std::fs::read(current_path(&path)).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0xff;
        std::fs::write(current_path(&path), &bytes).unwrap();
        let map = LocationMap::open(&path).unwrap();
        let a = map.find(0, b"a").unwrap();
        assert_eq!(map.record(a).copied_version, Some(5));
        drop(map);

        // A record whose checksum holds but whose contents do not parse is
        // not a torn append: opening fails and names the journal (written
        // in the format before reuse, which is still replayed).
        let payload = [1u8, 0, 0, 0];
        let mut bytes = MAGIC_UNREUSED.to_vec();
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
        std::fs::write(current_path(&path), &bytes).unwrap();
        let error = LocationMap::open(&path).err().unwrap().to_string();
        assert!(
            error.contains("locations.redb.journal at byte 8: a record's contents end early"),
            "{error}"
        );

        // A journal naming a key id for another key than the state holds.
        let mut journal = Journal::create(&current_path(&path)).unwrap();
        journal
            .append(&changes(&[], 0, &[(0, b"z")], &[(0, copied(1))], &[]))
            .unwrap();
        let error = LocationMap::open(&path).err().unwrap().to_string();
        assert!(
            error.contains("key id 0 is z in the journal but the state has users/a"),
            "{error}"
        );
    }

    /// A journal started in a spare file replays only what was appended
    /// to it since: the longer journal the file held before, newer
    /// versions included, is of another generation.
    #[test]
    fn a_reused_journal_replays_only_its_own_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = state_with_a(dir.path());
        let mut before = Journal::create(&spare_path(&path)).unwrap();
        for version in 50..60 {
            before
                .append(&changes(&[], 1, &[], &[(0, copied(version))], &[]))
                .unwrap();
        }
        let held = std::fs::metadata(spare_path(&path)).unwrap().len();
        let mut journal = Journal::reuse(&spare_path(&path), &current_path(&path)).unwrap();
        journal
            .append(&changes(&[], 1, &[], &[(0, copied(7))], &[]))
            .unwrap();
        assert!(!spare_path(&path).exists());
        assert_eq!(
            std::fs::metadata(current_path(&path)).unwrap().len(),
            held,
            "the file keeps its size: the old records are still in it"
        );
        let map = LocationMap::open(&path).unwrap();
        let a = map.find(0, b"a").unwrap();
        assert_eq!(map.record(a).copied_version, Some(7));
    }

    /// A spare that cannot be reused (here a folder in its place) is
    /// passed over: checkpointed journals are removed as before, new ones
    /// are started, and nothing is lost.
    #[test]
    fn a_spare_that_cannot_be_reused_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = state_with_a(dir.path());
        std::fs::create_dir(spare_path(&path)).unwrap();
        let mut map = LocationMap::open(&path).unwrap();
        let users = map.table_id("users").unwrap();
        let keys: Vec<Vec<u8>> = (0..2_000).map(|i| format!("k-{i}").into_bytes()).collect();
        for (round, chunk) in keys.chunks(100).enumerate() {
            let changes: Vec<_> = chunk
                .iter()
                .map(|key| {
                    let (id, _) = map.track(users, key, KeyRecord::new(10)).unwrap();
                    (id, copied(round as u64 + 1))
                })
                .collect();
            map.commit(&changes, &[]).unwrap();
        }
        drop(map);
        assert!(spare_path(&path).is_dir());
        assert!(!current_path(&path).exists() && !checkpoint_path(&path).exists());
        let map = LocationMap::open(&path).unwrap();
        for (index, key) in keys.iter().enumerate() {
            let id = map.find(users, key).unwrap();
            assert_eq!(map.record(id).copied_version, Some(index as u64 / 100 + 1));
        }
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
        assert!(
            spare_path(&path).exists(),
            "the last checkpointed journal is kept for the next"
        );
        let image = dir.path().join("image");
        std::fs::create_dir(&image).unwrap();
        for from in [
            path.clone(),
            current_path(&path),
            crate::state::store::keys_path(&path),
            crate::state::store::records_path(&path),
        ] {
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
        for gone in [
            current_path(&path),
            checkpoint_path(&path),
            spare_path(&path),
        ] {
            assert!(!gone.exists(), "{}", gone.display());
        }
        expect_all(&LocationMap::open(&path).unwrap());
    }
}
