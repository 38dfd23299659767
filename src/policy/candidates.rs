//! The typed hand-off into and out of the policy stage: candidate keys as
//! columns (metadata, model scores, features) and one decision per key.

use shadowcast_policy::abi::{ANY_DESTINATION, FEATURE_NAMES, NO_TENANT, priority};
use shadowcast_policy::{Batch, Strings};

use ndarray::ArrayView2;

use crate::features::FeatureRowsRef;
use crate::model::input::input_column;
use crate::model::predictor::Scores;

/// Candidate keys, column by column. Tables and tenants are dictionaries:
/// `table_ids[i]` indexes `tables`.
#[derive(Clone, Debug, Default)]
pub struct Candidates {
    /// Microseconds since the Unix epoch (UTC) the policy sees as "now".
    pub now_us: i64,
    pub tables: Dictionary,
    pub table_ids: Vec<u32>,
    pub tenants: Dictionary,
    /// [`NO_TENANT`] for keys without one.
    pub tenant_ids: Vec<u32>,
    /// `key_offsets[i]..key_offsets[i + 1]` are key `i`'s bytes.
    pub key_offsets: Vec<usize>,
    pub key_bytes: Vec<u8>,
    pub size_bytes: Vec<u64>,
    pub hot: Vec<f64>,
    pub churn: Vec<f64>,
    pub expected_accesses: Vec<f64>,
    /// One column per name of [`FEATURE_NAMES`].
    pub features: Vec<Vec<f64>>,
}

impl Candidates {
    /// Every key of a cut-off's rows with its `scores` (one per row, in
    /// row order): `rows` is a feature table or the key states behind one;
    /// `raw` its [`raw_inputs`](crate::model::input::raw_inputs), as the
    /// scores were computed from.
    pub fn from_features(
        rows: FeatureRowsRef<'_>,
        raw: ArrayView2<f64>,
        scores: &Scores,
        now_us: i64,
    ) -> Candidates {
        let mut candidates = Candidates::starting(now_us, rows.len());
        candidates.extend_scored(raw, scores);
        candidates.name_keys(rows);
        candidates
    }

    /// No candidates yet, as of `now_us`, with room for `keys`: filled by
    /// [`extend_scored`](Self::extend_scored) a block of keys at a time,
    /// then [`name_keys`](Self::name_keys).
    pub fn starting(now_us: i64, keys: usize) -> Candidates {
        Candidates {
            now_us,
            key_offsets: Vec::with_capacity(keys + 1),
            features: (0..FEATURE_NAMES.len())
                .map(|_| Vec::with_capacity(keys))
                .collect(),
            size_bytes: Vec::with_capacity(keys),
            hot: Vec::with_capacity(keys),
            churn: Vec::with_capacity(keys),
            expected_accesses: Vec::with_capacity(keys),
            ..Candidates::default()
        }
    }

    /// Adds the next keys' inputs (rows of `raw`) and their scores, in one
    /// pass over the rows.
    pub fn extend_scored(&mut self, raw: ArrayView2<f64>, scores: &Scores) {
        let size_column = input_column("size_last");
        for row in raw.rows() {
            // The policy ABI's features lead the inputs, in its order.
            for (column, values) in self.features.iter_mut().enumerate() {
                values.push(row[column]);
            }
            self.size_bytes.push(row[size_column].max(0.0) as u64);
        }
        self.hot.extend_from_slice(&scores.hot);
        self.churn.extend_from_slice(&scores.churn);
        self.expected_accesses.extend_from_slice(&scores.accesses);
    }

    /// Names every key of `rows`, in row order (the order their inputs
    /// were added in).
    pub fn name_keys(&mut self, rows: FeatureRowsRef<'_>) {
        self.key_offsets.push(0);
        rows.for_each_key(|table_name, key, tenant| {
            let table_id = self.tables.intern(table_name);
            self.table_ids.push(table_id);
            let tenant_id = match tenant {
                Some(tenant) => self.tenants.intern(tenant),
                None => NO_TENANT,
            };
            self.tenant_ids.push(tenant_id);
            self.key_bytes.extend_from_slice(key);
            self.key_offsets.push(self.key_bytes.len());
        });
    }

    /// A small, varied batch for checking a policy before it serves: two
    /// tables, two tenants and keys without one, sizes from 0 to 1 MiB,
    /// scores across [0, 1], and missing (NaN) recency features.
    pub fn canary(now_us: i64) -> Candidates {
        let keys = 64;
        let mut candidates = Candidates {
            now_us,
            key_offsets: vec![0],
            ..Candidates::default()
        };
        for i in 0..keys {
            let table = if i % 2 == 0 { "users" } else { "orders" };
            let table_id = candidates.tables.intern(table);
            candidates.table_ids.push(table_id);
            let tenant = match i % 3 {
                0 => NO_TENANT,
                1 => candidates.tenants.intern("tenant-1"),
                _ => candidates.tenants.intern("tenant-2"),
            };
            candidates.tenant_ids.push(tenant);
            candidates
                .key_bytes
                .extend_from_slice(format!("{table}:{i:04}").as_bytes());
            candidates.key_offsets.push(candidates.key_bytes.len());
            candidates
                .size_bytes
                .push(if i == 0 { 0 } else { 1 << (i % 21) });
            let share = i as f64 / (keys - 1) as f64;
            candidates.hot.push(share);
            candidates.churn.push(1.0 - share);
            candidates.expected_accesses.push(share * 100.0);
        }
        candidates.features = FEATURE_NAMES
            .iter()
            .map(|name| {
                (0..keys)
                    .map(|i| {
                        if name.starts_with("secs_since") && i % 4 == 0 {
                            f64::NAN
                        } else {
                            (i * 7 % 50) as f64
                        }
                    })
                    .collect()
            })
            .collect();
        candidates
    }

    pub fn len(&self) -> usize {
        self.table_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn key(&self, index: usize) -> &[u8] {
        &self.key_bytes[self.key_offsets[index]..self.key_offsets[index + 1]]
    }

    /// `table/key` for messages: the key as text when it is UTF-8, else hex.
    pub fn describe(&self, index: usize) -> String {
        format!(
            "{}/{}",
            self.tables.name(self.table_ids[index]),
            crate::keys::display_key(self.key(index))
        )
    }

    pub fn tenant(&self, index: usize) -> Option<&str> {
        match self.tenant_ids[index] {
            NO_TENANT => None,
            id => Some(self.tenants.name(id)),
        }
    }
}

/// Names laid end to end; a name's id is its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Dictionary {
    /// One more than there are names, starting at 0.
    pub offsets: Vec<u32>,
    pub bytes: Vec<u8>,
}

impl Default for Dictionary {
    fn default() -> Self {
        Dictionary {
            offsets: vec![0],
            bytes: Vec::new(),
        }
    }
}

impl Dictionary {
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn name(&self, id: u32) -> &str {
        self.strings().text(id as usize)
    }

    /// The id of `name`, added if new. Batches hold few distinct tables
    /// and tenants, so a scan is cheaper than hashing.
    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(id) = self.strings().position(name) {
            return id;
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.offsets.push(self.bytes.len() as u32);
        (self.len() - 1) as u32
    }

    pub fn strings(&self) -> Strings<'_> {
        Strings {
            offsets: &self.offsets,
            bytes: &self.bytes,
        }
    }
}

/// A view of keys `range` as the SDK's [`Batch`], for running a policy
/// natively; `key_offsets` is scratch space for the rebased key offsets.
pub fn native_batch<'a>(
    candidates: &'a Candidates,
    range: std::ops::Range<usize>,
    key_offsets: &'a mut Vec<u32>,
) -> Batch<'a> {
    let base = candidates.key_offsets[range.start];
    key_offsets.clear();
    key_offsets.extend(
        candidates.key_offsets[range.start..=range.end]
            .iter()
            .map(|o| (o - base) as u32),
    );
    let mut features = [None; FEATURE_NAMES.len()];
    for (slot, column) in features.iter_mut().zip(&candidates.features) {
        *slot = Some(&column[range.clone()]);
    }
    Batch {
        len: range.len(),
        now_us: candidates.now_us,
        size_bytes: Some(&candidates.size_bytes[range.clone()]),
        hot: Some(&candidates.hot[range.clone()]),
        churn: Some(&candidates.churn[range.clone()]),
        expected_accesses: Some(&candidates.expected_accesses[range.clone()]),
        table_ids: Some(&candidates.table_ids[range.clone()]),
        table_names: candidates.tables.strings(),
        tenant_ids: Some(&candidates.tenant_ids[range.clone()]),
        tenant_names: candidates.tenants.strings(),
        keys: Some(Strings {
            offsets: key_offsets,
            bytes: &candidates.key_bytes[base..candidates.key_offsets[range.end]],
        }),
        features,
    }
}

/// One decision per candidate key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decisions {
    pub weight: Vec<f64>,
    pub priority: Vec<u32>,
    pub not_before_us: Vec<i64>,
    pub destination: Vec<u32>,
}

impl Decisions {
    /// The built-in default: every key weight 1, normal priority, any time,
    /// any destination — the model's ranking unchanged.
    pub fn neutral(len: usize) -> Decisions {
        let mut decisions = Decisions::with_capacity(len);
        decisions.extend_neutral(len);
        decisions
    }

    /// Appends `len` neutral decisions.
    pub fn extend_neutral(&mut self, len: usize) {
        self.weight.extend(std::iter::repeat_n(1.0, len));
        self.priority
            .extend(std::iter::repeat_n(priority::NORMAL, len));
        self.not_before_us.extend(std::iter::repeat_n(0, len));
        self.destination
            .extend(std::iter::repeat_n(ANY_DESTINATION, len));
    }

    /// Empties every column, keeping their memory.
    pub fn clear(&mut self) {
        self.weight.clear();
        self.priority.clear();
        self.not_before_us.clear();
        self.destination.clear();
    }

    /// Empty, with room for `len` keys.
    pub fn with_capacity(len: usize) -> Decisions {
        Decisions {
            weight: Vec::with_capacity(len),
            priority: Vec::with_capacity(len),
            not_before_us: Vec::with_capacity(len),
            destination: Vec::with_capacity(len),
        }
    }

    pub fn len(&self) -> usize {
        self.weight.len()
    }

    pub fn is_empty(&self) -> bool {
        self.weight.is_empty()
    }
}

/// Keys in scheduling order: priority class first, then benefit (expected
/// accesses times weight); excluded keys (weight 0) are left out.
pub fn scheduling_order(candidates: &Candidates, decisions: &Decisions) -> Vec<usize> {
    let mut order: Vec<usize> = (0..candidates.len())
        .filter(|&i| decisions.weight[i] > 0.0)
        .collect();
    let benefit = |i: usize| candidates.expected_accesses[i] * decisions.weight[i];
    order.sort_by(|&a, &b| {
        decisions.priority[b]
            .cmp(&decisions.priority[a])
            .then(benefit(b).total_cmp(&benefit(a)))
    });
    order
}
