//! Keys of many tables in one flat arena with a hash index, shared by the
//! stages that hold a value per key (the feature accumulators, the location
//! map). Keys are not separate allocations, and the index holds only each
//! key's slot (4 bytes), its hash computed again from the key bytes when
//! the index grows.

use hashbrown::HashTable;

/// A key for messages: as text when it is UTF-8, else hex.
pub fn display_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(text) => text.to_string(),
        Err(_) => key.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// Seeds are fixed so that a key hashes the same in every worker and run.
pub fn key_hasher() -> ahash::RandomState {
    ahash::RandomState::with_seeds(0x5ad0, 0xca57, 0xfea7, 0x0de5)
}

/// (table, key) pairs by slot, in insertion order, found by their
/// [`key_hasher`] hash of `(table, key)`.
pub struct KeyArena {
    hasher: ahash::RandomState,
    /// Slots only (5 bytes a bucket with hashbrown's control byte, where
    /// (hash, slot) took 17): growing the index hashes the keys again.
    index: HashTable<u32>,
    tables: Vec<u32>,
    /// End of each slot's key in `key_bytes` (its start is the previous end).
    key_ends: Vec<u32>,
    key_bytes: Vec<u8>,
}

impl Default for KeyArena {
    fn default() -> Self {
        KeyArena {
            hasher: key_hasher(),
            index: HashTable::new(),
            tables: Vec::new(),
            key_ends: Vec::new(),
            key_bytes: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("more than 4 GiB of key bytes or 4 billion keys in one arena")]
pub struct ArenaFull;

/// The key of `slot` in the arena's parts (borrowed apart from the index).
fn key_in<'a>(key_ends: &[u32], key_bytes: &'a [u8], slot: usize) -> &'a [u8] {
    let start = if slot == 0 {
        0
    } else {
        key_ends[slot - 1] as usize
    };
    &key_bytes[start..key_ends[slot] as usize]
}

impl KeyArena {
    pub fn len(&self) -> usize {
        self.tables.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// The hash [`find`](Self::find) and [`insert`](Self::insert) take.
    pub fn hash(&self, table: u32, key: &[u8]) -> u64 {
        self.hasher.hash_one((table, key))
    }

    /// The hash of the key in `slot`.
    pub fn slot_hash(&self, slot: usize) -> u64 {
        self.hash(self.tables[slot], self.key(slot))
    }

    pub fn key(&self, slot: usize) -> &[u8] {
        key_in(&self.key_ends, &self.key_bytes, slot)
    }

    pub fn table(&self, slot: usize) -> u32 {
        self.tables[slot]
    }

    pub fn find(&self, hash: u64, table: u32, key: &[u8]) -> Option<usize> {
        self.index
            .find(hash, |&slot| {
                self.tables[slot as usize] == table && self.key(slot as usize) == key
            })
            .map(|&slot| slot as usize)
    }

    /// The index, and the hash of a slot for growing it (borrowing the
    /// keys beside the index).
    fn index_and_rehash(&mut self) -> (&mut HashTable<u32>, impl Fn(&u32) -> u64 + '_) {
        let KeyArena {
            hasher,
            index,
            tables,
            key_ends,
            key_bytes,
        } = self;
        let rehash = |&slot: &u32| {
            let slot = slot as usize;
            hasher.hash_one((tables[slot], key_in(key_ends, key_bytes, slot)))
        };
        (index, rehash)
    }

    /// Adds a key known not to be present; returns its slot. `hash` is
    /// [`hash`](Self::hash) of `(table, key)`.
    pub fn insert(&mut self, hash: u64, table: u32, key: &[u8]) -> Result<usize, ArenaFull> {
        // u32::MAX stays free, so that callers may use it for "no key".
        let slot = u32::try_from(self.tables.len())
            .ok()
            .filter(|&slot| slot < u32::MAX)
            .ok_or(ArenaFull)?;
        let end = u32::try_from(self.key_bytes.len() + key.len()).map_err(|_| ArenaFull)?;
        self.key_bytes.extend_from_slice(key);
        self.key_ends.push(end);
        self.tables.push(table);
        let (index, rehash) = self.index_and_rehash();
        index.insert_unique(hash, slot, rehash);
        Ok(slot as usize)
    }

    /// Makes room for `additional` more keys of `bytes` bytes in all.
    pub fn reserve(&mut self, additional: usize, bytes: usize) {
        let (index, rehash) = self.index_and_rehash();
        index.reserve(additional, rehash);
        self.tables.reserve(additional);
        self.key_ends.reserve(additional);
        self.key_bytes.reserve(bytes);
    }

    /// The keys of `slots`, in that order, without an index (for sorted output).
    pub fn reordered(&self, slots: &[u32]) -> KeyArena {
        let mut out = KeyArena {
            hasher: self.hasher.clone(),
            index: HashTable::new(),
            tables: Vec::with_capacity(slots.len()),
            key_ends: Vec::with_capacity(slots.len()),
            key_bytes: Vec::with_capacity(self.key_bytes.len()),
        };
        for &slot in slots {
            let slot = slot as usize;
            out.tables.push(self.tables[slot]);
            out.key_bytes.extend_from_slice(self.key(slot));
            out.key_ends.push(out.key_bytes.len() as u32);
        }
        out
    }

    /// Bytes held, index included.
    pub fn memory_bytes(&self) -> usize {
        self.index.capacity() * (std::mem::size_of::<u32>() + 1)
            + self.tables.capacity() * 4
            + self.key_ends.capacity() * 4
            + self.key_bytes.capacity()
    }
}
