//! A cut-off's feature rows as training and evaluation read them: a built
//! [`FeatureTable`] (read from a file, or computed whole), or the
//! [`KeyStates`] of a scan, which build rows only when asked, so that
//! sampling a few rows, or one pass over every key, never holds every
//! row's features.

use std::borrow::Cow;

use arrow_array::RecordBatch;

use super::{FeatureTable, KeyFeatures, KeyStates};

pub enum FeatureRows {
    /// Every row held, as columns.
    Built(FeatureTable),
    /// The states rows are built from.
    OnDemand(KeyStates),
}

impl FeatureRows {
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.borrowed().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cut-off T the rows are as of, and the horizon H they measure in.
    pub fn cutoff(&self) -> (i64, i64) {
        match self {
            FeatureRows::Built(table) => (table.as_of, table.horizon),
            FeatureRows::OnDemand(states) => states.cutoff(),
        }
    }

    /// Whether every key is UTF-8 text.
    pub fn keys_are_utf8(&self) -> bool {
        match self {
            FeatureRows::Built(table) => table.keys_are_utf8,
            FeatureRows::OnDemand(states) => states.keys_are_utf8(),
        }
    }

    /// The given rows only (ascending indices), as a table.
    pub fn take(&self, rows: &[usize]) -> FeatureTable {
        match self {
            FeatureRows::Built(table) => table.take(rows),
            FeatureRows::OnDemand(states) => states.take(rows),
        }
    }

    /// Every row, batch by batch, in (table, key) order; on demand, each
    /// batch is built when the iteration reaches it.
    pub fn batches(&self) -> Box<dyn Iterator<Item = Cow<'_, RecordBatch>> + '_> {
        match self {
            FeatureRows::Built(table) => Box::new(table.batches().iter().map(Cow::Borrowed)),
            FeatureRows::OnDemand(states) => Box::new(states.batches().map(Cow::Owned)),
        }
    }

    /// Every row once, in batches of any order, each with the row number of
    /// each of its rows; on demand, the states behind each batch are freed
    /// once it is built.
    pub fn drain(self) -> Box<dyn Iterator<Item = (Vec<usize>, RecordBatch)>> {
        match self {
            FeatureRows::Built(table) => {
                let mut first = 0;
                Box::new(table.into_batches().into_iter().map(move |batch| {
                    let rows = (first..first + batch.num_rows()).collect();
                    first += batch.num_rows();
                    (rows, batch)
                }))
            }
            FeatureRows::OnDemand(states) => Box::new(states.drain()),
        }
    }

    /// Who each key is — table, key bytes, tenant — in (table, key) order.
    pub fn for_each_key(&self, each: impl FnMut(&str, &[u8], Option<&str>)) {
        self.borrowed().for_each_key(each)
    }

    /// The rows borrowed.
    pub fn borrowed(&self) -> FeatureRowsRef<'_> {
        match self {
            FeatureRows::Built(table) => FeatureRowsRef::Built(table),
            FeatureRows::OnDemand(states) => FeatureRowsRef::OnDemand(states),
        }
    }

    /// Events the rows were computed from.
    pub fn events(&self) -> u64 {
        match self {
            FeatureRows::Built(table) => table.events_scanned,
            FeatureRows::OnDemand(states) => states.events(),
        }
    }

    /// The whole table: built once, for callers that read it many times.
    pub fn built(self) -> FeatureRows {
        match self {
            FeatureRows::OnDemand(states) => FeatureRows::Built(states.into_table()),
            built => built,
        }
    }

    /// Every row, typed, in (table, key) order.
    pub fn rows(&self) -> impl Iterator<Item = KeyFeatures> + '_ {
        self.batches()
            .flat_map(|batch| FeatureTable::rows_of(batch.into_owned()))
    }
}

/// A cut-off's rows borrowed, however they are held.
#[derive(Clone, Copy)]
pub enum FeatureRowsRef<'a> {
    Built(&'a FeatureTable),
    OnDemand(&'a KeyStates),
}

impl FeatureRowsRef<'_> {
    /// Number of keys.
    pub fn len(&self) -> usize {
        match self {
            FeatureRowsRef::Built(table) => table.len(),
            FeatureRowsRef::OnDemand(states) => states.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Who each key is — table, key bytes, tenant — in (table, key) order.
    pub fn for_each_key(&self, each: impl FnMut(&str, &[u8], Option<&str>)) {
        match self {
            FeatureRowsRef::Built(table) => table.for_each_key(each),
            FeatureRowsRef::OnDemand(states) => states.for_each_key(each),
        }
    }
}

impl<'a> From<&'a FeatureTable> for FeatureRowsRef<'a> {
    fn from(table: &'a FeatureTable) -> Self {
        FeatureRowsRef::Built(table)
    }
}
