//! Labels from the logs themselves: what each key did in the horizon (T, T+H].

use std::collections::HashMap;

use crate::features::FeatureTable;
use crate::logs::{AccessBatch, LogError, LogSource, Op, TimeRange};

/// What one key did in the horizon.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub accesses: u64,
    pub bytes_read: u64,
    pub writes: u64,
}

impl Outcome {
    fn add(&mut self, other: Outcome) {
        self.accesses += other.accesses;
        self.bytes_read += other.bytes_read;
        self.writes += other.writes;
    }
}

type KeyOutcomes = ahash::AHashMap<Box<[u8]>, Outcome>;

/// Per table, per key outcomes over the horizon, and the totals over every
/// key (including keys first seen in the horizon, which no prediction made
/// at T can name but which still count against capture).
#[derive(Debug, Default)]
pub struct Horizon {
    table_ids: HashMap<String, usize>,
    /// Per table id, the outcome of each key.
    keys: Vec<KeyOutcomes>,
    pub total: Outcome,
}

impl Horizon {
    /// Reads the events in `(after, after + length]`.
    pub fn observe(source: &LogSource, after: i64, length: i64) -> Result<Self, LogError> {
        let plan = source.plan(TimeRange {
            start: Some(after + 1),
            end: Some(after + length),
        })?;
        let parts = plan.fold(Horizon::default, Horizon::add_batch, &|_| {})?;
        let mut parts = parts.into_iter();
        let mut merged = parts.next().unwrap_or_default();
        for part in parts {
            merged.total.add(part.total);
            let mut names: Vec<(&String, usize)> =
                part.table_ids.iter().map(|(n, &id)| (n, id)).collect();
            names.sort_by_key(|&(_, id)| id);
            let ids: Vec<usize> = names
                .into_iter()
                .map(|(name, _)| merged.table_id(name))
                .collect();
            for (id, keys) in part.keys.into_iter().enumerate() {
                let mine = &mut merged.keys[ids[id]];
                for (key, outcome) in keys {
                    mine.entry(key).or_default().add(outcome);
                }
            }
        }
        Ok(merged)
    }

    fn table_id(&mut self, name: &str) -> usize {
        if let Some(&id) = self.table_ids.get(name) {
            return id;
        }
        self.keys.push(KeyOutcomes::default());
        self.table_ids.insert(name.to_string(), self.keys.len() - 1);
        self.keys.len() - 1
    }

    fn add_batch(&mut self, batch: &AccessBatch) {
        let ids: Vec<usize> = batch
            .table_names()
            .iter()
            .map(|name| self.table_id(name))
            .collect();
        for row in 0..batch.len() {
            let keys = &mut self.keys[ids[batch.table_index()[row] as usize]];
            let read = batch.ops()[row] == Op::Read;
            let outcome = Outcome {
                accesses: 1,
                bytes_read: if read { batch.sizes()[row] as u64 } else { 0 },
                writes: u64::from(!read),
            };
            self.total.add(outcome);
            match keys.get_mut(batch.key(row)) {
                Some(existing) => existing.add(outcome),
                None => {
                    keys.insert(batch.key(row).into(), outcome);
                }
            }
        }
    }

    /// The outcome of every row of `features`, in row order (zero for keys
    /// the horizon did not touch).
    pub fn outcomes_of(&self, features: &FeatureTable) -> Vec<Outcome> {
        features
            .rows()
            .map(|row| {
                self.table_ids
                    .get(&*row.table)
                    .and_then(|&id| self.keys[id].get(row.key.as_slice()))
                    .copied()
                    .unwrap_or_default()
            })
            .collect()
    }
}

/// How outcomes become classes.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LabelRules {
    /// A key is hot when it is in this top share of keys by accesses, or by
    /// bytes read, in the horizon (and was accessed at all).
    pub hot_share: f64,
    /// A key is high-churn when written at least this many times in the horizon.
    pub churn_min_writes: u64,
}

impl Default for LabelRules {
    fn default() -> Self {
        LabelRules {
            hot_share: 0.05,
            churn_min_writes: 2,
        }
    }
}

/// Hot and high-churn classes of each outcome.
pub fn classify(outcomes: &[Outcome], rules: &LabelRules) -> (Vec<bool>, Vec<bool>) {
    let top = ((outcomes.len() as f64 * rules.hot_share).ceil() as usize).max(1);
    let threshold = |value: fn(&Outcome) -> u64| {
        let mut values: Vec<u64> = outcomes.iter().map(value).collect();
        if values.is_empty() {
            return u64::MAX;
        }
        let cut = top.min(values.len()) - 1;
        values.select_nth_unstable_by(cut, |a, b| b.cmp(a));
        values[cut].max(1)
    };
    let by_count = threshold(|o| o.accesses);
    let by_bytes = threshold(|o| o.bytes_read);
    let hot = outcomes
        .iter()
        .map(|o| o.accesses >= by_count || (o.bytes_read >= by_bytes && o.bytes_read > 0))
        .collect();
    let churn = outcomes
        .iter()
        .map(|o| o.writes >= rules.churn_min_writes)
        .collect();
    (hot, churn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(accesses: u64, bytes_read: u64, writes: u64) -> Outcome {
        Outcome {
            accesses,
            bytes_read,
            writes,
        }
    }

    #[test]
    fn hot_is_the_top_share_by_count_or_by_bytes() {
        let mut outcomes: Vec<Outcome> = (0..18).map(|i| outcome(i % 3, 10, 0)).collect();
        outcomes.push(outcome(50, 10, 3)); // most accessed
        outcomes.push(outcome(1, 9_000, 1)); // most bytes read
        let rules = LabelRules {
            hot_share: 0.05,
            churn_min_writes: 2,
        };
        let (hot, churn) = classify(&outcomes, &rules);
        assert_eq!(hot.iter().filter(|h| **h).count(), 2);
        assert!(hot[18] && hot[19]);
        assert_eq!(churn.iter().filter(|c| **c).count(), 1);
        assert!(churn[18]);
    }

    #[test]
    fn untouched_keys_are_never_hot() {
        let outcomes = vec![Outcome::default(); 10];
        let (hot, _) = classify(&outcomes, &LabelRules::default());
        assert!(hot.iter().all(|h| !h));
    }
}
