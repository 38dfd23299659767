//! Labels from the logs themselves: what each key did in the horizon (T, T+H].

use std::collections::HashMap;

use crate::features::FeatureRows;
use crate::logs::{AccessBatch, LogError, LogSource, Op, ScanPlan, TimeRange};

/// What one key did in the horizon.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub accesses: u64,
    pub bytes_read: u64,
    pub writes: u64,
    /// Reads before the key's first write in the horizon (all its reads
    /// when it was not written): the reads only a copy made before the
    /// horizon can serve, since a write lands in the destination anyway.
    pub reads_before_write: u64,
}

impl Outcome {
    pub fn add(&mut self, other: Outcome) {
        self.accesses += other.accesses;
        self.bytes_read += other.bytes_read;
        self.writes += other.writes;
        self.reads_before_write += other.reads_before_write;
    }
}

/// One key's outcome, and when it was first written in the horizon
/// (`i64::MAX` if never): a minimum, so partial tallies merge exactly.
#[derive(Clone, Copy, Debug)]
struct KeyHorizon {
    outcome: Outcome,
    first_write: i64,
}

impl Default for KeyHorizon {
    fn default() -> Self {
        KeyHorizon {
            outcome: Outcome::default(),
            first_write: i64::MAX,
        }
    }
}

impl KeyHorizon {
    fn add(&mut self, other: KeyHorizon) {
        self.outcome.add(other.outcome);
        self.first_write = self.first_write.min(other.first_write);
    }
}

type KeyOutcomes = ahash::AHashMap<Box<[u8]>, KeyHorizon>;

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
                for (key, tally) in keys {
                    mine.entry(key).or_default().add(tally);
                }
            }
        }
        if merged.total.writes > 0 {
            merged.take_back_reads_after_first_writes(&plan)?;
        }
        Ok(merged)
    }

    /// Every read was first counted as coming before a write; once each
    /// key's first write is known, a second pass takes back the reads at or
    /// after it.
    fn take_back_reads_after_first_writes(&mut self, plan: &ScanPlan) -> Result<(), LogError> {
        let horizon = &*self;
        let parts = plan.fold(
            ahash::AHashMap::<(usize, Box<[u8]>), u64>::default,
            |late, batch| {
                let ids: Vec<Option<usize>> = batch
                    .table_names()
                    .iter()
                    .map(|name| horizon.table_ids.get(name).copied())
                    .collect();
                for row in 0..batch.len() {
                    if batch.ops()[row] != Op::Read {
                        continue;
                    }
                    let Some(id) = ids[batch.table_index()[row] as usize] else {
                        continue;
                    };
                    let key = batch.key(row);
                    let written_before = horizon.keys[id]
                        .get(key)
                        .is_some_and(|tally| tally.first_write <= batch.ts()[row]);
                    if written_before {
                        *late.entry((id, key.into())).or_default() += 1;
                    }
                }
            },
            &|_| {},
        )?;
        for part in parts {
            for ((id, key), reads) in part {
                let tally = self.keys[id]
                    .get_mut(&key)
                    .expect("counted in the first pass");
                tally.outcome.reads_before_write -= reads;
                self.total.reads_before_write -= reads;
            }
        }
        Ok(())
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
            let tally = KeyHorizon {
                outcome: Outcome {
                    accesses: 1,
                    bytes_read: if read { batch.sizes()[row] as u64 } else { 0 },
                    writes: u64::from(!read),
                    reads_before_write: u64::from(read),
                },
                first_write: if read { i64::MAX } else { batch.ts()[row] },
            };
            self.total.add(tally.outcome);
            match keys.get_mut(batch.key(row)) {
                Some(existing) => existing.add(tally),
                None => {
                    keys.insert(batch.key(row).into(), tally);
                }
            }
        }
    }

    /// Adds `outcome` to the key's (as a label table read back records it).
    pub(crate) fn record(&mut self, table: &str, key: &[u8], outcome: Outcome) {
        let id = self.table_id(table);
        self.total.add(outcome);
        self.keys[id]
            .entry(key.into())
            .or_default()
            .outcome
            .add(outcome);
    }

    /// The keys the horizon touched that `features` does not hold (first
    /// seen after the cut-off), with their outcomes, in no particular order.
    pub fn keys_not_in<'a>(&'a self, features: &FeatureRows) -> Vec<(&'a str, &'a [u8], Outcome)> {
        let mut held: Vec<ahash::AHashSet<&'a [u8]>> = vec![Default::default(); self.keys.len()];
        features.for_each_key(|table, key, _| {
            if let Some(&id) = self.table_ids.get(table)
                && let Some((stored, _)) = self.keys[id].get_key_value(key)
            {
                held[id].insert(stored);
            }
        });
        let mut names = vec![""; self.keys.len()];
        for (name, &id) in &self.table_ids {
            names[id] = name;
        }
        self.keys
            .iter()
            .enumerate()
            .flat_map(|(id, keys)| {
                let held = &held[id];
                let name = names[id];
                keys.iter()
                    .filter(move |(key, _)| !held.contains(&key[..]))
                    .map(move |(key, tally)| (name, &**key, tally.outcome))
            })
            .collect()
    }

    /// The outcome of every row of `features`, in row order (zero for keys
    /// the horizon did not touch).
    pub fn outcomes_of(&self, features: &FeatureRows) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(features.len());
        features.for_each_key(|table, key, _| {
            outcomes.push(
                self.table_ids
                    .get(table)
                    .and_then(|&id| self.keys[id].get(key))
                    .map(|tally| tally.outcome)
                    .unwrap_or_default(),
            )
        });
        outcomes
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
            reads_before_write: 0,
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
