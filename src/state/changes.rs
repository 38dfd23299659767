//! What commits hand to the store: keys new to it (in id order), changed
//! records by id, new table names and settings. One commit, a group of
//! them in one journal record, and everything a checkpoint moves into the
//! files are all a [`Changes`]: absorbing a later one keeps commit order.

use super::{KeyId, KeyRecord, Records};

/// Keys the store does not hold yet: ids `first..first + len()`, each with
/// its table, their bytes side by side.
#[derive(Default, Debug, PartialEq, Eq)]
pub(super) struct NewKeys {
    pub first: u32,
    tables: Vec<u32>,
    /// Below 4 GiB, as a [`crate::keys::KeyArena`]'s bytes are.
    ends: Vec<u32>,
    bytes: Vec<u8>,
}

impl NewKeys {
    pub fn starting_at(first: u32) -> NewKeys {
        NewKeys {
            first,
            ..Default::default()
        }
    }

    pub fn len(&self) -> usize {
        self.tables.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// The id the next key pushed gets.
    pub fn next_id(&self) -> u32 {
        self.first + self.len() as u32
    }

    pub fn push(&mut self, table: u32, key: &[u8]) {
        self.tables.push(table);
        self.bytes.extend_from_slice(key);
        self.ends.push(self.bytes.len() as u32);
    }

    /// (id, table, key) in id order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32, &[u8])> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        self.tables
            .iter()
            .zip(starts.zip(&self.ends))
            .enumerate()
            .map(|(index, (&table, (start, &end)))| {
                let key = &self.bytes[start as usize..end as usize];
                (self.first + index as u32, table, key)
            })
    }
}

/// One or more commits' changes, in commit order.
#[derive(Default, Debug)]
pub(super) struct Changes {
    pub tables: Vec<(u32, String)>,
    pub new_keys: NewKeys,
    /// Changed records, a key possibly several times (the later wins); every
    /// new key has one.
    pub records: RecordChanges,
    pub settings: Vec<(String, String)>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
            && self.new_keys.is_empty()
            && self.records.is_empty()
            && self.settings.is_empty()
    }

    /// Appends `later`, whose new keys must follow these.
    pub fn absorb(&mut self, later: Changes) -> Result<(), String> {
        if self.is_empty() {
            *self = later;
            return Ok(());
        }
        if !later.new_keys.is_empty() {
            if self.new_keys.is_empty() {
                self.new_keys.first = later.new_keys.first;
            } else if later.new_keys.first != self.new_keys.next_id() {
                return Err(format!(
                    "new keys from id {} do not follow those up to id {}",
                    later.new_keys.first,
                    self.new_keys.next_id()
                ));
            }
            for (_, table, key) in later.new_keys.iter() {
                self.new_keys.push(table, key);
            }
        }
        self.tables.extend(later.tables);
        self.records.extend(&later.records);
        self.settings.extend(later.settings);
        Ok(())
    }

    /// Puts the records in id order, each key once with its latest record.
    pub fn keep_latest_records(&mut self) {
        // Sorting (id, position) pairs moves 8 bytes an entry instead of a
        // whole record; among one key's records the last position wins.
        let mut order: Vec<u64> = self
            .records
            .ids()
            .iter()
            .enumerate()
            .map(|(position, id)| (u64::from(id.0) << 32) | position as u64)
            .collect();
        order.sort_unstable();
        let mut latest = RecordChanges::with_capacity(order.len());
        for (index, &entry) in order.iter().enumerate() {
            let last_of_its_key = order
                .get(index + 1)
                .is_none_or(|&next| next >> 32 != entry >> 32);
            if last_of_its_key {
                let (id, record) = self.records.get((entry & u64::from(u32::MAX)) as usize);
                latest.push(id, &record);
            }
        }
        self.records = latest;
    }
}

/// Changed records by key id, in the order given. Each takes 25 bytes, as
/// the location map holds records, where a `(KeyId, KeyRecord)` takes 48:
/// a journal's worth of them (a million and more) waits here for its
/// checkpoint.
#[derive(Default)]
pub(super) struct RecordChanges {
    ids: Vec<KeyId>,
    records: Records,
}

impl RecordChanges {
    pub fn with_capacity(records: usize) -> RecordChanges {
        let mut changes = RecordChanges::default();
        changes.reserve(records);
        changes
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn push(&mut self, id: KeyId, record: &KeyRecord) {
        self.ids.push(id);
        self.records.push(record);
    }

    pub fn reserve(&mut self, more: usize) {
        self.ids.reserve(more);
        self.records.reserve(more);
    }

    /// The `index`th record given, with its key.
    pub fn get(&self, index: usize) -> (KeyId, KeyRecord) {
        (self.ids[index], self.records.get(index))
    }

    pub fn ids(&self) -> &[KeyId] {
        &self.ids
    }

    pub fn iter(&self) -> impl Iterator<Item = (KeyId, KeyRecord)> + '_ {
        (0..self.len()).map(|index| self.get(index))
    }

    pub fn extend(&mut self, later: &RecordChanges) {
        self.ids.extend_from_slice(&later.ids);
        self.records.append(&later.records);
    }
}

impl std::fmt::Debug for RecordChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> FromIterator<(KeyId, &'a KeyRecord)> for RecordChanges {
    fn from_iter<I: IntoIterator<Item = (KeyId, &'a KeyRecord)>>(records: I) -> Self {
        let mut changes = RecordChanges::default();
        for (id, record) in records {
            changes.push(id, record);
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absorbing_keeps_commit_order_and_refuses_a_gap_in_new_keys() {
        let mut first = Changes {
            new_keys: NewKeys::starting_at(4),
            ..Default::default()
        };
        first.new_keys.push(0, b"a");
        first.new_keys.push(1, b"bb");
        first.records = [
            (KeyId(4), &KeyRecord::new(1)),
            (KeyId(5), &KeyRecord::new(2)),
        ]
        .into_iter()
        .collect();
        let mut second = Changes {
            new_keys: NewKeys::starting_at(6),
            ..Default::default()
        };
        second.new_keys.push(0, b"");
        second.records = [
            (KeyId(4), &KeyRecord::new(9)),
            (KeyId(6), &KeyRecord::new(3)),
        ]
        .into_iter()
        .collect();
        first.absorb(second).unwrap();
        let keys: Vec<(u32, u32, &[u8])> = first.new_keys.iter().collect();
        assert_eq!(keys, [(4, 0, &b"a"[..]), (5, 1, b"bb"), (6, 0, b"")]);
        first.keep_latest_records();
        assert_eq!(
            first.records.iter().collect::<Vec<_>>(),
            [
                (KeyId(4), KeyRecord::new(9)),
                (KeyId(5), KeyRecord::new(2)),
                (KeyId(6), KeyRecord::new(3))
            ]
        );

        let mut gap = Changes {
            new_keys: NewKeys::starting_at(9),
            ..Default::default()
        };
        gap.new_keys.push(0, b"z");
        assert!(
            first
                .absorb(gap)
                .unwrap_err()
                .contains("from id 9 do not follow those up to id 7")
        );
    }

    /// Every field of a record survives its compact form, a size of 4 GiB
    /// or more included, through absorbing and reordering.
    #[test]
    fn records_come_back_whole_from_their_compact_form() {
        let large = KeyRecord {
            size_bytes: 5 << 30,
            copied_version: Some(7),
            latest_write: 9,
            in_sample: true,
        };
        let small = KeyRecord {
            size_bytes: 12,
            copied_version: None,
            latest_write: u64::MAX,
            in_sample: false,
        };
        let copied_at_zero = KeyRecord {
            copied_version: Some(0),
            ..small
        };
        let mut changes = Changes {
            records: [(KeyId(9), &large), (KeyId(3), &small)]
                .into_iter()
                .collect(),
            ..Default::default()
        };
        let later = Changes {
            records: [
                (KeyId(9), &small),
                (KeyId(1), &large),
                (KeyId(3), &copied_at_zero),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        changes.absorb(later).unwrap();
        changes.keep_latest_records();
        assert_eq!(
            changes.records.iter().collect::<Vec<_>>(),
            [
                (KeyId(1), large),
                (KeyId(3), copied_at_zero),
                (KeyId(9), small)
            ]
        );
    }
}
