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
/// [`key_hasher`] hash of `(table, key)`. Each slot's bytes are its table
/// id (LEB128: one byte below 128 tables) followed by the key, so a key
/// costs its bytes, one or two more and a 4-byte end.
pub struct KeyArena {
    hasher: ahash::RandomState,
    /// Slots only (5 bytes a bucket with hashbrown's control byte, where
    /// (hash, slot) took 17): growing the index hashes the keys again.
    index: HashTable<u32>,
    /// End of each slot's bytes in `bytes` (its start is the previous end).
    ends: Vec<u32>,
    bytes: Vec<u8>,
}

impl Default for KeyArena {
    fn default() -> Self {
        KeyArena {
            hasher: key_hasher(),
            index: HashTable::new(),
            ends: Vec::new(),
            bytes: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("more than 4 GiB of key bytes or 4 billion keys in one arena")]
pub struct ArenaFull;

/// Appends `table` as LEB128.
fn push_table(out: &mut Vec<u8>, mut table: u32) {
    while table >= 0x80 {
        out.push((table as u8) | 0x80);
        table >>= 7;
    }
    out.push(table as u8);
}

/// The table and key of a slot's bytes.
fn split_slot(stored: &[u8]) -> (u32, &[u8]) {
    if let Some((&first, key)) = stored.split_first()
        && first < 0x80
    {
        return (u32::from(first), key);
    }
    let mut table = 0u32;
    for (position, &byte) in stored.iter().enumerate() {
        table |= u32::from(byte & 0x7f) << (7 * position);
        if byte & 0x80 == 0 {
            return (table, &stored[position + 1..]);
        }
    }
    unreachable!("every slot starts with a whole table id")
}

/// The bytes of `slot` (borrowed apart from the index).
fn slot_in<'a>(ends: &[u32], bytes: &'a [u8], slot: usize) -> &'a [u8] {
    let start = if slot == 0 {
        0
    } else {
        ends[slot - 1] as usize
    };
    &bytes[start..ends[slot] as usize]
}

impl KeyArena {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The hash [`find`](Self::find) and [`insert`](Self::insert) take.
    pub fn hash(&self, table: u32, key: &[u8]) -> u64 {
        self.hasher.hash_one((table, key))
    }

    fn split(&self, slot: usize) -> (u32, &[u8]) {
        split_slot(slot_in(&self.ends, &self.bytes, slot))
    }

    pub fn key(&self, slot: usize) -> &[u8] {
        self.split(slot).1
    }

    /// Asks for where `slot`'s bytes end (and so where they start).
    pub fn prefetch_end(&self, slot: usize) {
        crate::prefetch::element(&self.ends, slot);
    }

    /// Asks for the first bytes of `slot` (reads its end: ask for that
    /// first, with [`prefetch_end`](Self::prefetch_end)).
    pub fn prefetch_bytes(&self, slot: usize) {
        let start = match slot {
            0 => 0,
            _ => self.ends.get(slot - 1).map_or(0, |&end| end as usize),
        };
        crate::prefetch::element(&self.bytes, start);
    }

    pub fn table(&self, slot: usize) -> u32 {
        self.split(slot).0
    }

    pub fn find(&self, hash: u64, table: u32, key: &[u8]) -> Option<usize> {
        self.index
            .find(hash, |&slot| self.split(slot as usize) == (table, key))
            .map(|&slot| slot as usize)
    }

    /// The index, and the hash of a slot for growing it (borrowing the
    /// keys beside the index).
    fn index_and_rehash(&mut self) -> (&mut HashTable<u32>, impl Fn(&u32) -> u64 + '_) {
        let KeyArena {
            hasher,
            index,
            ends,
            bytes,
        } = self;
        let rehash = |&slot: &u32| hasher.hash_one(split_slot(slot_in(ends, bytes, slot as usize)));
        (index, rehash)
    }

    /// Adds a key known not to be present; returns its slot. `hash` is
    /// [`hash`](Self::hash) of `(table, key)`.
    pub fn insert(&mut self, hash: u64, table: u32, key: &[u8]) -> Result<usize, ArenaFull> {
        // u32::MAX stays free, so that callers may use it for "no key".
        let slot = u32::try_from(self.ends.len())
            .ok()
            .filter(|&slot| slot < u32::MAX)
            .ok_or(ArenaFull)?;
        let start = self.bytes.len();
        let (ends_capacity, bytes_capacity) = (self.ends.capacity(), self.bytes.capacity());
        push_table(&mut self.bytes, table);
        self.bytes.extend_from_slice(key);
        let Ok(end) = u32::try_from(self.bytes.len()) else {
            self.bytes.truncate(start);
            return Err(ArenaFull);
        };
        self.ends.push(end);
        crate::prefetch::huge_pages_if_grown(&self.ends, ends_capacity);
        crate::prefetch::huge_pages_if_grown(&self.bytes, bytes_capacity);
        let (index, rehash) = self.index_and_rehash();
        index.insert_unique(hash, slot, rehash);
        Ok(slot as usize)
    }

    /// Makes room for `additional` more keys of `key_bytes` bytes in all.
    pub fn reserve(&mut self, additional: usize, key_bytes: usize) {
        let (index, rehash) = self.index_and_rehash();
        index.reserve(additional, rehash);
        let (ends_capacity, bytes_capacity) = (self.ends.capacity(), self.bytes.capacity());
        self.ends.reserve(additional);
        // One byte of table id each, for fewer than 128 tables.
        self.bytes.reserve(key_bytes + additional);
        crate::prefetch::huge_pages_if_grown(&self.ends, ends_capacity);
        crate::prefetch::huge_pages_if_grown(&self.bytes, bytes_capacity);
    }

    /// The keys of `slots`, in that order, without an index (for sorted output).
    pub fn reordered(&self, slots: &[u32]) -> KeyArena {
        let mut out = KeyArena {
            hasher: self.hasher.clone(),
            index: HashTable::new(),
            ends: Vec::with_capacity(slots.len()),
            bytes: Vec::with_capacity(self.bytes.len()),
        };
        crate::prefetch::huge_pages(&out.ends);
        crate::prefetch::huge_pages(&out.bytes);
        for &slot in slots {
            out.bytes
                .extend_from_slice(slot_in(&self.ends, &self.bytes, slot as usize));
            out.ends.push(out.bytes.len() as u32);
        }
        out
    }

    /// Bytes held, index included.
    pub fn memory_bytes(&self) -> usize {
        self.index.capacity() * (std::mem::size_of::<u32>() + 1)
            + self.ends.capacity() * 4
            + self.bytes.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys of tables on both sides of each LEB128 length, empty keys and
    /// keys that begin like a table id come back as they went in, through
    /// many growths of the index, and a key is not found under a table
    /// that holds none.
    #[test]
    fn keys_come_back_with_their_tables_across_growth() {
        let tables = [0u32, 1, 127, 128, 300, 16_383, 16_384, 70_000, u32::MAX];
        let mut arena = KeyArena::default();
        let mut inserted = Vec::new();
        for i in 0..20_000u32 {
            let table = tables[i as usize % tables.len()];
            let key: Vec<u8> = match i % 4 {
                0 => Vec::new(),
                1 => vec![0x80, 0xff, (i % 251) as u8],
                _ => format!("key:{i}").into_bytes(),
            };
            let hash = arena.hash(table, &key);
            if arena.find(hash, table, &key).is_none() {
                let slot = arena.insert(hash, table, &key).unwrap();
                inserted.push((slot, table, key));
            }
        }
        assert_eq!(arena.len(), inserted.len());
        for (slot, table, key) in &inserted {
            assert_eq!((arena.table(*slot), arena.key(*slot)), (*table, &key[..]));
            assert_eq!(
                arena.find(arena.hash(*table, key), *table, key),
                Some(*slot)
            );
            let unused = 5;
            assert_eq!(arena.find(arena.hash(unused, key), unused, key), None);
        }
        let backwards: Vec<u32> = (0..arena.len() as u32).rev().collect();
        let reordered = arena.reordered(&backwards);
        for (position, &slot) in backwards.iter().enumerate() {
            let slot = slot as usize;
            assert_eq!(reordered.table(position), arena.table(slot));
            assert_eq!(reordered.key(position), arena.key(slot));
        }
    }
}
