//! Keys of many tables in one flat arena with a hash index, shared by the
//! stages that hold a value per key (the feature accumulators, the location
//! map). Keys are not separate allocations, and the index holds only
//! (hash, slot), so growing and probing it moves 12 bytes per key.

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

/// (table, key) pairs by slot, in insertion order. Callers hash the key
/// bytes with [`key_hasher`] (or any hasher, used consistently).
#[derive(Default)]
pub struct KeyArena {
    index: HashTable<(u64, u32)>,
    tables: Vec<u32>,
    /// End of each slot's key in `key_bytes` (its start is the previous end).
    key_ends: Vec<u32>,
    key_bytes: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
#[error("more than 4 GiB of key bytes or 4 billion keys in one arena")]
pub struct ArenaFull;

impl KeyArena {
    pub fn len(&self) -> usize {
        self.tables.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    pub fn key(&self, slot: usize) -> &[u8] {
        let start = if slot == 0 {
            0
        } else {
            self.key_ends[slot - 1] as usize
        };
        &self.key_bytes[start..self.key_ends[slot] as usize]
    }

    pub fn table(&self, slot: usize) -> u32 {
        self.tables[slot]
    }

    pub fn find(&self, hash: u64, table: u32, key: &[u8]) -> Option<usize> {
        self.index
            .find(hash, |&(stored, slot)| {
                stored == hash
                    && self.tables[slot as usize] == table
                    && self.key(slot as usize) == key
            })
            .map(|&(_, slot)| slot as usize)
    }

    /// Adds a key known not to be present; returns its slot.
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
        self.index
            .insert_unique(hash, (hash, slot), |&(stored, _)| stored);
        Ok(slot as usize)
    }

    /// Makes room for `additional` more keys of `bytes` bytes in all.
    pub fn reserve(&mut self, additional: usize, bytes: usize) {
        self.index.reserve(additional, |&(stored, _)| stored);
        self.tables.reserve(additional);
        self.key_ends.reserve(additional);
        self.key_bytes.reserve(bytes);
    }

    /// Every (hash, slot), in index order.
    pub fn hashed_slots(&self) -> impl Iterator<Item = (u64, usize)> + '_ {
        self.index.iter().map(|&(hash, slot)| (hash, slot as usize))
    }

    /// The keys of `slots`, in that order, without an index (for sorted output).
    pub fn reordered(&self, slots: &[u32]) -> KeyArena {
        let mut out = KeyArena {
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
        self.index.capacity() * (std::mem::size_of::<(u64, u32)>() + 1)
            + self.tables.capacity() * 4
            + self.key_ends.capacity() * 4
            + self.key_bytes.capacity()
    }
}
