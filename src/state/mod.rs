//! State — the durable location map.
//!
//! Takes: changes from the scheduler, in batches: keys registered (table,
//! key, size), copies acknowledged (the version copied), writes seen (the
//! latest version), shadow-sample membership, and the migration's settings
//! (phase, pause, budget, which log files were ingested).
//!
//! Gives: a [`LocationMap`] that answers, for every tracked key, where it is
//! ([`Location`]: only in the source, in the destination and current, or in
//! the destination but stale) and its versions, from memory; and the same
//! map back after a restart.
//!
//! Guarantees: [`LocationMap::commit`] appends the change to a journal and
//! fsyncs it before it changes the map in memory, so when it returns the
//! change survives `kill -9` or a power cut, and a crash during it leaves
//! the map as it was. Once [`LocationMap::pipeline`] starts the writer
//! thread, a commit is durable when its [`DurableWatch`] says so, with the
//! same guarantees. Checkpoints move the journal into files addressed by
//! key id (see `state/store.rs`); opening the map replays what journals
//! hold. A key's location is derived from its two versions, never stored
//! beside them, so the two cannot disagree. Leases are the scheduler's and
//! are not stored: a restart voids them and their keys are offered again.

mod changes;
mod journal;
mod pipeline;
mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use changes::{Changes, NewKeys, RecordChanges};
use journal::Replayed;
pub use pipeline::{DurableWatch, JournalTotals};
use pipeline::{Journaled, Write, Writer};
use store::Store;

use crate::keys::KeyArena;

/// A tracked key's position in the map, stable for the life of the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub u32);

impl KeyId {
    /// No key: past the end of any map (which holds fewer than 2^32 − 1 keys).
    pub const NONE: KeyId = KeyId(u32::MAX);

    pub fn index(self) -> usize {
        self.0 as usize
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state store {path}: {problem}")]
    Store { path: PathBuf, problem: String },

    #[error("state store {path}: corrupt record for key {key}: {problem}")]
    Corrupt {
        path: PathBuf,
        key: String,
        problem: String,
    },

    #[error("state store {path}: {}", crate::keys::ArenaFull)]
    Full { path: PathBuf },
}

impl StateError {
    /// A failure of the store at `path` (the redb file, a key file or a
    /// journal).
    fn store(path: &Path, problem: impl std::fmt::Display) -> StateError {
        StateError::Store {
            path: path.to_path_buf(),
            problem: problem.to_string(),
        }
    }
}

/// Where a key's data is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    /// Not copied yet.
    SourceOnly,
    /// Copied at a version at least as new as the latest write seen.
    Current,
    /// Copied, then written again: the destination's copy is out of date.
    Stale,
}

impl Location {
    pub const ALL: [Location; 3] = [Location::SourceOnly, Location::Current, Location::Stale];

    /// Position in [`Location::ALL`], for tallies kept per location.
    pub fn index(self) -> usize {
        match self {
            Location::SourceOnly => 0,
            Location::Current => 1,
            Location::Stale => 2,
        }
    }
}

/// What the map keeps for one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    pub size_bytes: u64,
    /// The version the destination holds, if the key was ever copied.
    pub copied_version: Option<u64>,
    /// The newest write version seen (0 when no write was seen).
    pub latest_write: u64,
    /// Drawn into the shadow sample.
    pub in_sample: bool,
}

impl KeyRecord {
    pub fn new(size_bytes: u64) -> Self {
        KeyRecord {
            size_bytes,
            copied_version: None,
            latest_write: 0,
            in_sample: false,
        }
    }

    pub fn location(&self) -> Location {
        match self.copied_version {
            None => Location::SourceOnly,
            Some(copied) if copied >= self.latest_write => Location::Current,
            Some(_) => Location::Stale,
        }
    }
}

/// Key records in 21 bytes each instead of [`KeyRecord`]'s 40 (an
/// `Option<u64>` and a `bool` pad it out): the two versions side by side,
/// the size in 32 bits (the rare size of 4 GiB or more kept aside, by
/// index), and the two flags in a byte of their own.
#[derive(Default)]
struct Records {
    versions: Vec<[u64; 2]>,
    sizes: Vec<u32>,
    /// Sizes that do not fit `sizes` (which then hold [`LARGE`]).
    large_sizes: hashbrown::HashMap<usize, u64>,
    flags: Vec<u8>,
}

const COPIED: u8 = 1;
const IN_SAMPLE: u8 = 2;
const LARGE: u32 = u32::MAX;

impl Records {
    fn len(&self) -> usize {
        self.flags.len()
    }

    fn prefetch(&self, index: usize) {
        crate::prefetch::element(&self.versions, index);
        crate::prefetch::element(&self.sizes, index);
        crate::prefetch::element(&self.flags, index);
    }

    fn get(&self, index: usize) -> KeyRecord {
        let [copied, latest_write] = self.versions[index];
        let flags = self.flags[index];
        let size_bytes = match self.sizes[index] {
            LARGE => self.large_sizes[&index],
            size => u64::from(size),
        };
        KeyRecord {
            size_bytes,
            copied_version: (flags & COPIED != 0).then_some(copied),
            latest_write,
            in_sample: flags & IN_SAMPLE != 0,
        }
    }

    fn packed(record: &KeyRecord) -> ([u64; 2], u8) {
        let versions = [record.copied_version.unwrap_or(0), record.latest_write];
        let flags = if record.copied_version.is_some() {
            COPIED
        } else {
            0
        } | if record.in_sample { IN_SAMPLE } else { 0 };
        (versions, flags)
    }

    /// Sets the size of record `index` (which exists in `sizes`).
    fn set_size(&mut self, index: usize, size_bytes: u64) {
        match u32::try_from(size_bytes) {
            Ok(size) if size != LARGE => {
                self.sizes[index] = size;
                if !self.large_sizes.is_empty() {
                    self.large_sizes.remove(&index);
                }
            }
            _ => {
                self.sizes[index] = LARGE;
                self.large_sizes.insert(index, size_bytes);
            }
        }
    }

    fn push(&mut self, record: &KeyRecord) {
        let capacities = self.capacities();
        let (versions, flags) = Self::packed(record);
        self.versions.push(versions);
        self.flags.push(flags);
        self.sizes.push(0);
        self.set_size(self.sizes.len() - 1, record.size_bytes);
        self.huge_pages_if_grown(capacities);
    }

    fn capacities(&self) -> [usize; 3] {
        [
            self.versions.capacity(),
            self.sizes.capacity(),
            self.flags.capacity(),
        ]
    }

    /// See [`crate::prefetch::huge_pages`]: records are read in ranked
    /// order. Each array is asked for apart: growing one push at a time,
    /// they move at different lengths.
    fn huge_pages_if_grown(&self, [versions, sizes, flags]: [usize; 3]) {
        crate::prefetch::huge_pages_if_grown(&self.versions, versions);
        crate::prefetch::huge_pages_if_grown(&self.sizes, sizes);
        crate::prefetch::huge_pages_if_grown(&self.flags, flags);
    }

    /// Replaces record `index`; gives the one it held.
    fn replace(&mut self, index: usize, record: &KeyRecord) -> KeyRecord {
        let before = self.get(index);
        (self.versions[index], self.flags[index]) = Self::packed(record);
        self.set_size(index, record.size_bytes);
        before
    }

    /// Appends `later`'s records after these.
    fn append(&mut self, later: &Records) {
        let (capacities, offset) = (self.capacities(), self.len());
        self.versions.extend_from_slice(&later.versions);
        self.sizes.extend_from_slice(&later.sizes);
        self.flags.extend_from_slice(&later.flags);
        self.large_sizes.extend(
            later
                .large_sizes
                .iter()
                .map(|(index, size)| (offset + index, *size)),
        );
        self.huge_pages_if_grown(capacities);
    }

    fn reserve(&mut self, keys: usize) {
        let capacities = self.capacities();
        self.versions.reserve(keys);
        self.sizes.reserve(keys);
        self.flags.reserve(keys);
        self.huge_pages_if_grown(capacities);
    }

    fn memory_bytes(&self) -> usize {
        self.versions.capacity() * std::mem::size_of::<[u64; 2]>()
            + self.sizes.capacity() * 4
            + self.flags.capacity()
            + self.large_sizes.capacity() * 2 * 8
    }
}

/// Every tracked key, its table and record, kept in memory and mirrored in
/// files (see `state/store.rs`).
pub struct LocationMap {
    path: PathBuf,
    store: Arc<Store>,
    /// How commits reach the disk.
    durability: Durability,
    /// Sequence number of the last commit (0: none yet).
    committed: u64,
    /// Keys with an id below this were handed to the store: the next
    /// commit hands it every key tracked since, in id order.
    stored_keys: u32,
    tables: Vec<String>,
    /// Tables registered since the last commit, stored with the next one.
    unstored_tables: Vec<u32>,
    /// Settings committed since the map was opened: the store has them
    /// only once a journal checkpoint has put them there.
    settings_written: std::collections::HashMap<String, String>,
    keys: KeyArena,
    records: Records,
    /// Keys and bytes per [`Location`], kept as records change so nobody
    /// has to scan every key for them.
    totals: [LocationCounts; 3],
}

/// How a map's commits reach the disk.
enum Durability {
    /// Nothing is kept.
    InMemory,
    /// Each commit appends to the journal before it returns (the journal
    /// is created by the first commit).
    Direct(Option<Box<Journaled>>),
    /// Commits go to the writer thread (see [`LocationMap::pipeline`]).
    Pipelined(Writer),
}

/// A number of keys and their bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LocationCounts {
    pub keys: u64,
    pub bytes: u64,
}

impl LocationCounts {
    pub fn add(&mut self, bytes: u64) {
        self.keys += 1;
        self.bytes += bytes;
    }

    pub fn remove(&mut self, bytes: u64) {
        self.keys -= 1;
        self.bytes -= bytes;
    }
}

fn slot_of(record: &KeyRecord) -> usize {
    record.location().index()
}

/// One change to commit: a key (new or known) and its new record.
pub type Change = (KeyId, KeyRecord);

impl LocationMap {
    /// Opens the map stored at `path` (created when missing), loads every
    /// key into memory and replays the journals a crash left.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StateError> {
        let path = path.as_ref().to_path_buf();
        let mut keys = KeyArena::default();
        let mut records = Records::default();
        // Room for every stored key at once: growing the key index as keys
        // load hashes them all again at each doubling.
        let (stored, key_bytes) = Store::stored_keys_hint(&path);
        keys.reserve(stored, key_bytes);
        records.reserve(stored);
        let mut totals: [LocationCounts; 3] = Default::default();
        let store = Store::open(&path, |table, key, record| {
            keys.insert(keys.hash(table, key), table, key)
                .map_err(|_| StateError::Full { path: path.clone() })?;
            totals[slot_of(&record)].add(record.size_bytes);
            records.push(&record);
            Ok(())
        })?;
        let mut map = LocationMap {
            tables: store.tables()?,
            path,
            store: Arc::new(store),
            durability: Durability::Direct(None),
            committed: 0,
            stored_keys: records.len() as u32,
            unstored_tables: Vec::new(),
            settings_written: Default::default(),
            keys,
            records,
            totals,
        };
        map.replay_journals()?;
        Ok(map)
    }

    /// An empty map kept in memory only (nothing is durable): for
    /// simulations, which replay a migration many times over.
    pub fn in_memory() -> Result<Self, StateError> {
        let label = PathBuf::from("<in memory>");
        let store = Store::in_memory(&label.to_string_lossy())?;
        Ok(LocationMap {
            tables: Vec::new(),
            path: label,
            store: Arc::new(store),
            durability: Durability::InMemory,
            committed: 0,
            stored_keys: 0,
            unstored_tables: Vec::new(),
            settings_written: Default::default(),
            keys: KeyArena::default(),
            records: Records::default(),
            totals: Default::default(),
        })
    }

    /// Applies what the journals left beside the store hold (the older
    /// first), checkpoints it and removes them.
    fn replay_journals(&mut self) -> Result<(), StateError> {
        let older = journal::checkpoint_path(&self.path);
        let newer = journal::current_path(&self.path);
        let mut recovered = Changes {
            new_keys: NewKeys::starting_at(self.stored_keys),
            ..Default::default()
        };
        for path in [&older, &newer] {
            let replayed = journal::replay(path).map_err(|problem| self.failed(problem))?;
            let applied = match replayed {
                None => continue,
                Some(Replayed::ById(changes)) => self.apply_replayed(changes, &mut recovered),
                Some(Replayed::ByKey(changes)) => self.apply_keyed(changes, &mut recovered),
            };
            applied.map_err(|problem| self.failed(format!("{}: {problem}", path.display())))?;
        }
        if !recovered.is_empty() {
            tracing::info!(
                keys = recovered.records.len(),
                new_keys = recovered.new_keys.len(),
                "replaying the journal of the last run into the state"
            );
            self.store.checkpoint(recovered)?;
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

    fn failed(&self, problem: impl std::fmt::Display) -> StateError {
        StateError::store(&self.path, problem)
    }

    fn replay_table(&mut self, id: u32, name: String) -> Result<(), String> {
        match self.tables.get(id as usize) {
            Some(known) if *known == name => Ok(()),
            None if id as usize == self.tables.len() => {
                self.tables.push(name);
                Ok(())
            }
            _ => Err(format!(
                "table id {id} is {name:?} in the journal but the state has {:?}",
                self.tables.get(id as usize)
            )),
        }
    }

    /// Sets the record of `id` in memory, keeping the totals.
    fn set_record(&mut self, id: KeyId, record: &KeyRecord) -> KeyRecord {
        let before = self.records.replace(id.index(), record);
        self.totals[slot_of(&before)].remove(before.size_bytes);
        self.totals[slot_of(record)].add(record.size_bytes);
        before
    }

    fn apply_replayed(&mut self, changes: Changes, recovered: &mut Changes) -> Result<(), String> {
        for (id, name) in changes.tables {
            self.replay_table(id, name.clone())?;
            recovered.tables.push((id, name));
        }
        for (id, table, key) in changes.new_keys.iter() {
            if (id as usize) < self.len() {
                let id = KeyId(id);
                if self.table_of(id) != table || self.key(id) != key {
                    return Err(format!(
                        "key id {} is {} in the journal but the state has {}",
                        id.0,
                        crate::keys::display_key(key),
                        self.describe(id)
                    ));
                }
            } else if id as usize == self.len() {
                let (tracked, _) = self
                    .track(table, key, KeyRecord::new(0))
                    .map_err(|error| error.to_string())?;
                recovered.new_keys.push(table, key);
                debug_assert_eq!(tracked.0, id);
            } else {
                return Err(format!("new key id {id} after only {} keys", self.len()));
            }
        }
        for (id, record) in changes.records.iter() {
            if id.index() >= self.len() {
                return Err(format!(
                    "a record for key id {} of {} keys",
                    id.0,
                    self.len()
                ));
            }
            self.set_record(id, &record);
            recovered.records.push(id, &record);
        }
        recovered.settings.extend(changes.settings);
        Ok(())
    }

    fn apply_keyed(
        &mut self,
        changes: journal::KeyedChanges,
        recovered: &mut Changes,
    ) -> Result<(), String> {
        for (id, name) in changes.tables {
            self.replay_table(id, name.clone())?;
            recovered.tables.push((id, name));
        }
        for (table, key, record) in changes.records {
            let (id, new) = self
                .track(table, &key, record)
                .map_err(|error| error.to_string())?;
            if new {
                recovered.new_keys.push(table, &key);
            }
            self.set_record(id, &record);
            recovered.records.push(id, &record);
        }
        recovered.settings.extend(changes.settings);
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.len() == 0
    }

    /// Every key id, in the order keys were first tracked.
    pub fn ids(&self) -> impl Iterator<Item = KeyId> + use<> {
        (0..self.records.len() as u32).map(KeyId)
    }

    pub fn tables(&self) -> &[String] {
        &self.tables
    }

    /// The id of `table`, if any key of it is tracked.
    pub fn find_table(&self, table: &str) -> Option<u32> {
        self.tables
            .iter()
            .position(|t| t == table)
            .map(|id| id as u32)
    }

    /// The id of `table`, registering it when new (stored by the next
    /// [`commit`](Self::commit)).
    pub fn table_id(&mut self, table: &str) -> Result<u32, StateError> {
        if let Some(id) = self.find_table(table) {
            return Ok(id);
        }
        let id = self.tables.len() as u32;
        self.tables.push(table.to_string());
        self.unstored_tables.push(id);
        Ok(id)
    }

    pub fn find(&self, table: u32, key: &[u8]) -> Option<KeyId> {
        let hash = self.keys.hash(table, key);
        self.keys
            .find(hash, table, key)
            .map(|slot| KeyId(slot as u32))
    }

    /// The id of (`table`, `key`), tracking it in memory with `record` when
    /// new. A new key is stored by the next [`commit`](Self::commit) that
    /// names it; `true` says it was new.
    pub fn track(
        &mut self,
        table: u32,
        key: &[u8],
        record: KeyRecord,
    ) -> Result<(KeyId, bool), StateError> {
        let hash = self.keys.hash(table, key);
        if let Some(slot) = self.keys.find(hash, table, key) {
            return Ok((KeyId(slot as u32), false));
        }
        let slot = self
            .keys
            .insert(hash, table, key)
            .map_err(|_| StateError::Full {
                path: self.path.clone(),
            })?;
        self.totals[slot_of(&record)].add(record.size_bytes);
        self.records.push(&record);
        Ok((KeyId(slot as u32), true))
    }

    /// Makes room for `keys` more keys of `key_bytes` bytes in all, so
    /// that tracking many at once (a first plan) allocates what they need
    /// rather than the next power of two.
    pub fn reserve(&mut self, keys: usize, key_bytes: usize) {
        self.keys.reserve(keys, key_bytes);
        self.records.reserve(keys);
    }

    pub fn key(&self, id: KeyId) -> &[u8] {
        self.keys.key(id.index())
    }

    pub fn table_of(&self, id: KeyId) -> u32 {
        self.keys.table(id.index())
    }

    pub fn table_name(&self, id: KeyId) -> &str {
        &self.tables[self.table_of(id) as usize]
    }

    /// Asks for `id`'s record and where its bytes end, to be read soon
    /// (see [`crate::prefetch`]); [`prefetch_ahead`](Self::prefetch_ahead)
    /// also asks for the bytes themselves.
    pub fn prefetch_record(&self, id: KeyId) {
        self.records.prefetch(id.index());
        self.keys.prefetch_end(id.index());
    }

    /// Asks for `id`'s table and key bytes.
    fn prefetch_key(&self, id: KeyId) {
        self.keys.prefetch_bytes(id.index());
    }

    /// Asks for what a walk over keys reads a little past position `at`
    /// (`id_at` gives the walk's key at a position): the record and where
    /// the bytes end [`AHEAD`](crate::prefetch::AHEAD) keys on, the bytes
    /// half as far (their place is read from the end asked for earlier).
    pub fn prefetch_ahead(&self, id_at: impl Fn(usize) -> Option<KeyId>, at: usize) {
        if let Some(id) = id_at(at + crate::prefetch::AHEAD) {
            self.prefetch_record(id);
        }
        if let Some(id) = id_at(at + crate::prefetch::AHEAD / 2) {
            self.prefetch_key(id);
        }
    }

    pub fn record(&self, id: KeyId) -> KeyRecord {
        self.records.get(id.index())
    }

    /// `table/key` for messages: the key as text when it is UTF-8, else hex.
    pub fn describe(&self, id: KeyId) -> String {
        format!(
            "{}/{}",
            self.table_name(id),
            crate::keys::display_key(self.key(id))
        )
    }

    /// Stores `changes`, `settings` (name, JSON) and any new table names in
    /// one transaction, and applies the changes in memory.
    ///
    /// By default the transaction is durable before this returns and on
    /// error nothing changes. Once [`pipeline`](Self::pipeline)d, the write
    /// goes to the writer thread and the changes apply at once: the commit
    /// is durable when [`DurableWatch::durable`] resolves for
    /// [`committed`](Self::committed), and an error here means an earlier
    /// write failed (see [`pipeline`](Self::pipeline)).
    pub fn commit(
        &mut self,
        changes: &[Change],
        settings: &[(&str, String)],
    ) -> Result<(), StateError> {
        self.commit_observed(changes, settings, |_, _, _, _| {})
    }

    /// [`commit`](Self::commit), telling `observe` of each change applied
    /// in memory, in order: the key, its table, its record before and after.
    pub fn commit_observed(
        &mut self,
        changes: &[Change],
        settings: &[(&str, String)],
        mut observe: impl FnMut(KeyId, u32, &KeyRecord, &KeyRecord),
    ) -> Result<(), StateError> {
        if changes.is_empty()
            && settings.is_empty()
            && self.unstored_tables.is_empty()
            && self.stored_keys as usize == self.records.len()
        {
            return Ok(());
        }
        let settings: Vec<(String, String)> = settings
            .iter()
            .map(|(name, value)| (name.to_string(), value.clone()))
            .collect();
        if !matches!(self.durability, Durability::InMemory) {
            let changes = self.changes_to_store(changes, settings.clone());
            match &mut self.durability {
                Durability::InMemory => {}
                Durability::Direct(journaled) => {
                    if journaled.is_none() {
                        *journaled = Journaled::start(&self.store, false)
                            .map_err(|problem| StateError::store(&self.path, problem))?
                            .map(Box::new);
                    }
                    if let Some(journaled) = journaled {
                        journaled
                            .append(&self.store, changes)
                            .map_err(|problem| StateError::store(&self.path, problem))?;
                    }
                }
                Durability::Pipelined(writer) => writer
                    .send(Write {
                        seq: self.committed + 1,
                        changes,
                    })
                    .map_err(|problem| StateError::store(&self.path, problem))?,
            }
        }
        self.committed += 1;
        self.stored_keys = self.records.len() as u32;
        self.unstored_tables.clear();
        self.settings_written.extend(settings);
        for (at, &(id, record)) in changes.iter().enumerate() {
            self.prefetch_ahead(|i| changes.get(i).map(|&(id, _)| id), at);
            let before = self.set_record(id, &record);
            observe(id, self.keys.table(id.index()), &before, &record);
        }
        Ok(())
    }

    /// A commit's changes as the store takes them: the tables and keys
    /// tracked since the last commit (a new key `changes` does not name
    /// with its record as tracked) and `changes`.
    fn changes_to_store(&self, changes: &[Change], settings: Vec<(String, String)>) -> Changes {
        let mut new_keys = NewKeys::starting_at(self.stored_keys);
        let new_count = self.records.len() - self.stored_keys as usize;
        // New keys `changes` names need no record of their own (a first
        // plan names all of them: ten million records not copied twice).
        let mut named = vec![false; new_count];
        for (id, _) in changes {
            if let Some(offset) = id.0.checked_sub(self.stored_keys) {
                named[offset as usize] = true;
            }
        }
        let unnamed = named.iter().filter(|named| !**named).count();
        let mut records = RecordChanges::with_capacity(changes.len() + unnamed);
        for (offset, named) in named.into_iter().enumerate() {
            let id = KeyId(self.stored_keys + offset as u32);
            new_keys.push(self.table_of(id), self.key(id));
            if !named {
                records.push(id, &self.record(id));
            }
        }
        for (id, record) in changes {
            records.push(*id, record);
        }
        Changes {
            tables: self
                .unstored_tables
                .iter()
                .map(|&id| (id, self.tables[id as usize].clone()))
                .collect(),
            new_keys,
            records,
            settings,
        }
    }

    /// From now on, commits are written by a writer thread that groups
    /// them (see [`commit`](Self::commit)); the returned watch says when
    /// each is durable. Dropping the map waits for the queued writes.
    pub fn pipeline(&mut self) -> DurableWatch {
        let durability = std::mem::replace(&mut self.durability, Durability::InMemory);
        let writer = match durability {
            Durability::Pipelined(writer) => writer,
            Durability::InMemory => Writer::start(self.store.clone(), Ok(None), self.committed),
            Durability::Direct(Some(journaled)) => {
                Writer::start(self.store.clone(), Ok(Some(*journaled)), self.committed)
            }
            Durability::Direct(None) => Writer::start(
                self.store.clone(),
                Journaled::start(&self.store, true),
                self.committed,
            ),
        };
        let watch = writer.watch();
        self.durability = Durability::Pipelined(writer);
        watch
    }

    /// The sequence number of the last commit, to wait for with a
    /// [`DurableWatch`].
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// A stored setting (JSON), if set.
    pub fn setting(&self, name: &str) -> Result<Option<String>, StateError> {
        match self.settings_written.get(name) {
            Some(value) => Ok(Some(value.clone())),
            None => self.store.setting(name),
        }
    }

    /// Stores `settings` (name, JSON) in one durable transaction.
    pub fn set_settings(&mut self, settings: &[(&str, String)]) -> Result<(), StateError> {
        self.commit(&[], settings)
    }

    /// Keys and bytes at `location`, without a scan.
    pub fn totals(&self, location: Location) -> LocationCounts {
        self.totals[location.index()]
    }

    /// Bytes of memory the map holds: keys, index and records.
    pub fn memory_bytes(&self) -> usize {
        self.keys.memory_bytes() + self.records.memory_bytes()
    }
}

impl Drop for LocationMap {
    /// A map that committed directly checkpoints its journal and removes
    /// it (a pipelined one's writer does the same when it ends).
    fn drop(&mut self) {
        if let Durability::Direct(journaled) = &mut self.durability
            && let Some(journaled) = journaled.take()
            && let Err(problem) = journaled.finish(&self.store)
        {
            tracing::error!(%problem, state = %self.path.display(), "checkpointing the journal on close failed; the next opening replays it");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record of 10 bytes copied at `version`.
    pub(super) fn copied(version: u64) -> KeyRecord {
        KeyRecord {
            copied_version: Some(version),
            ..KeyRecord::new(10)
        }
    }

    /// Every combination of the optional copy and the sample flag comes
    /// back as it went in, a copy of version 0 included, and sizes of 4 GiB
    /// and more.
    #[test]
    fn packed_records_keep_every_field() {
        let mut records = Records::default();
        let mut wanted = Vec::new();
        for copied_version in [None, Some(0), Some(7), Some(u64::MAX)] {
            for in_sample in [false, true] {
                // Sizes on both sides of what 32 bits hold.
                let size_bytes =
                    [10, u64::from(u32::MAX) - 1, u64::from(u32::MAX), u64::MAX][wanted.len() % 4];
                let record = KeyRecord {
                    size_bytes,
                    copied_version,
                    latest_write: 3 * wanted.len() as u64,
                    in_sample,
                };
                records.push(&record);
                wanted.push(record);
            }
        }
        for (index, record) in wanted.iter().enumerate() {
            assert_eq!(records.get(index), *record, "record {index}");
        }
        let before = records.replace(1, &wanted[6]);
        assert_eq!(before, wanted[1]);
        assert_eq!(records.get(1), wanted[6]);
        assert_eq!(records.len(), wanted.len());
        // A large size replaced by a small one leaves nothing aside.
        let before = records.replace(2, &wanted[0]);
        assert_eq!(before, wanted[2]);
        assert_eq!(records.get(2), wanted[0]);
        assert!(!records.large_sizes.contains_key(&2));
    }

    #[test]
    fn pipelined_commits_are_durable_in_order_and_flushed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locations.redb");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        {
            let mut map = LocationMap::open(&path).unwrap();
            let mut watch = map.pipeline();
            let users = map.table_id("users").unwrap();
            let (a, _) = map.track(users, b"a", KeyRecord::new(10)).unwrap();
            map.commit(&[(a, KeyRecord::new(10))], &[]).unwrap();
            assert_eq!(map.committed(), 1);
            // Applied in memory at once, before the writer is done.
            map.commit(&[(a, copied(5))], &[("phase", "\"BACKGROUND\"".into())])
                .unwrap();
            assert_eq!(map.record(a).location(), Location::Current);
            runtime.block_on(watch.durable(2)).unwrap();
            let orders = map.table_id("orders").unwrap();
            let (b, _) = map.track(orders, b"b", KeyRecord::new(7)).unwrap();
            map.commit(&[(b, copied(1)), (a, copied(9))], &[]).unwrap();
            assert!(watch.failure().is_none());
            // Dropped without waiting: the writer finishes what was queued.
        }
        let mut map = LocationMap::open(&path).unwrap();
        assert_eq!(map.tables(), ["users", "orders"]);
        // Commits written directly before the pipeline starts are durable
        // already: its watch counts on from them.
        map.set_settings(&[("paused", "false".into())]).unwrap();
        let mut watch = map.pipeline();
        runtime.block_on(watch.durable(map.committed())).unwrap();
        let a = map.find(0, b"a").unwrap();
        let b = map.find(1, b"b").unwrap();
        assert_eq!(
            map.record(a).copied_version,
            Some(9),
            "the later commit wins"
        );
        assert_eq!(map.record(b).copied_version, Some(1));
        assert_eq!(
            map.setting("phase").unwrap().as_deref(),
            Some("\"BACKGROUND\"")
        );
        assert_eq!(map.totals(Location::Current).keys, 2);
    }
}
