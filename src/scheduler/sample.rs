//! The shadow sample: a weighted sample of the key space, without
//! replacement, that is migrated first and kept in sync so the destination
//! holds a faithful miniature of the source early.
//!
//! Each key's weight mixes four normalised components with configurable
//! shares: uniform (every key alike), access frequency, change rate and the
//! model's predicted accesses. Keys are drawn by Efraimidis–Spirakis
//! exponential keys: key `i` gets `-ln(u_i) / w_i` and the smallest keys
//! win, which is weighted sampling without replacement in one sort. `u_i`
//! comes from a hash of (seed, table, key), so the same seed draws the same
//! sample whatever order keys were registered in.

use crate::keys::key_hasher;

/// How much of the key space the sample covers.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleOf {
    /// A share of the keys.
    Keys,
    /// A share of the bytes.
    Bytes,
}

/// Shares of the four weight components; they need not sum to 1.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SampleShares {
    pub random: f64,
    pub frequency: f64,
    pub change_rate: f64,
    pub predicted: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SampleConfig {
    /// Share of keys or bytes, in (0, 1].
    pub fraction: f64,
    pub of: SampleOf,
    pub shares: SampleShares,
    pub seed: u64,
}

impl Default for SampleConfig {
    /// 10% of the keys; a quarter of the weight from each component.
    fn default() -> Self {
        SampleConfig {
            fraction: 0.10,
            of: SampleOf::Keys,
            shares: SampleShares {
                random: 0.25,
                frequency: 0.25,
                change_rate: 0.25,
                predicted: 0.25,
            },
            seed: 0x5eed,
        }
    }
}

impl SampleConfig {
    pub fn check(self) -> Result<Self, String> {
        if !(self.fraction > 0.0 && self.fraction <= 1.0) {
            return Err(format!(
                "sample.fraction must be in (0, 1], got {}",
                self.fraction
            ));
        }
        let SampleShares {
            random,
            frequency,
            change_rate,
            predicted,
        } = self.shares;
        for (name, share) in [
            ("random", random),
            ("frequency", frequency),
            ("change_rate", change_rate),
            ("predicted", predicted),
        ] {
            if !(share.is_finite() && share >= 0.0) {
                return Err(format!("sample.shares.{name} must be ≥ 0, got {share}"));
            }
        }
        if random + frequency + change_rate + predicted <= 0.0 {
            return Err("sample.shares must not all be 0".into());
        }
        Ok(self)
    }
}

/// What the sample needs to know of one key.
#[derive(Clone, Copy, Debug)]
pub struct SampleItem<'a> {
    pub table: &'a str,
    pub key: &'a [u8],
    pub size_bytes: u64,
    pub frequency: f64,
    pub change_rate: f64,
    pub predicted: f64,
}

/// A uniform draw in (0, 1) fixed by the seed and the key.
fn uniform(seed: u64, table: &str, key: &[u8]) -> f64 {
    let hash = key_hasher().hash_one((seed, table, key));
    ((hash >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// Positions in `items` of the keys drawn, in draw order.
pub fn draw(items: &[SampleItem], config: &SampleConfig) -> Vec<usize> {
    if items.is_empty() {
        return Vec::new();
    }
    let total = |f: fn(&SampleItem) -> f64| items.iter().map(f).filter(|v| *v > 0.0).sum::<f64>();
    let normaliser = |sum: f64, share: f64| if sum > 0.0 { share / sum } else { 0.0 };
    let shares = config.shares;
    let random = shares.random / items.len() as f64;
    let frequency = normaliser(total(|i| i.frequency), shares.frequency);
    let change = normaliser(total(|i| i.change_rate), shares.change_rate);
    let predicted = normaliser(total(|i| i.predicted), shares.predicted);
    let positive = |v: f64| if v > 0.0 { v } else { 0.0 };
    let mut keyed: Vec<(f64, usize)> = items
        .iter()
        .enumerate()
        .filter_map(|(position, item)| {
            let weight = random
                + frequency * positive(item.frequency)
                + change * positive(item.change_rate)
                + predicted * positive(item.predicted);
            (weight > 0.0).then(|| {
                let u = uniform(config.seed, item.table, item.key);
                (-u.ln() / weight, position)
            })
        })
        .collect();
    keyed.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let chosen = match config.of {
        SampleOf::Keys => {
            let wanted = (config.fraction * items.len() as f64).ceil() as usize;
            keyed.len().min(wanted.max(1))
        }
        SampleOf::Bytes => {
            let all: u64 = items.iter().map(|i| i.size_bytes).sum();
            let wanted = config.fraction * all as f64;
            let mut bytes = 0u64;
            keyed
                .iter()
                .take_while(|(_, position)| {
                    let take = (bytes as f64) < wanted;
                    bytes += items[*position].size_bytes;
                    take
                })
                .count()
                .max(1)
        }
    };
    keyed.truncate(chosen);
    keyed.into_iter().map(|(_, position)| position).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(keys: &[Vec<u8>], frequency: impl Fn(usize) -> f64) -> Vec<SampleItem<'_>> {
        keys.iter()
            .enumerate()
            .map(|(i, key)| SampleItem {
                table: "t",
                key,
                size_bytes: 100,
                frequency: frequency(i),
                change_rate: 0.0,
                predicted: 0.0,
            })
            .collect()
    }

    #[test]
    fn draws_the_configured_share_reproducibly_and_follows_weights() {
        let keys: Vec<Vec<u8>> = (0..10_000).map(|i| format!("k{i}").into_bytes()).collect();
        let config = SampleConfig {
            shares: SampleShares {
                random: 0.0,
                frequency: 1.0,
                change_rate: 0.0,
                predicted: 0.0,
            },
            ..SampleConfig::default()
        };
        // Keys below 1000 are 20 times as frequent as the rest.
        let list = items(&keys, |i| if i < 1000 { 20.0 } else { 1.0 });
        let drawn = draw(&list, &config);
        assert_eq!(drawn.len(), 1000);
        let frequent = drawn.iter().filter(|&&p| p < 1000).count();
        // Expected well above the 10% a uniform draw would give.
        assert!(
            frequent > 500,
            "{frequent} of 1000 drawn from the frequent tenth"
        );

        let mut reversed = list.clone();
        reversed.reverse();
        let mut again: Vec<&[u8]> = draw(&reversed, &config)
            .into_iter()
            .map(|p| reversed[p].key)
            .collect();
        let mut first: Vec<&[u8]> = drawn.iter().map(|&p| list[p].key).collect();
        again.sort();
        first.sort();
        assert_eq!(first, again, "same seed, same sample, whatever the order");

        let other = draw(&list, &SampleConfig { seed: 1, ..config });
        assert_ne!(drawn, other, "another seed draws another sample");
    }

    #[test]
    fn a_byte_share_counts_bytes() {
        let keys: Vec<Vec<u8>> = (0..1000).map(|i| format!("k{i}").into_bytes()).collect();
        let mut list = items(&keys, |_| 1.0);
        for (i, item) in list.iter_mut().enumerate() {
            item.size_bytes = if i % 2 == 0 { 1000 } else { 10 };
        }
        let config = SampleConfig {
            fraction: 0.2,
            of: SampleOf::Bytes,
            ..SampleConfig::default()
        };
        let bytes: u64 = draw(&list, &config)
            .iter()
            .map(|&p| list[p].size_bytes)
            .sum();
        let all: u64 = list.iter().map(|i| i.size_bytes).sum();
        assert!(bytes as f64 >= 0.2 * all as f64 && (bytes as f64) < 0.2 * all as f64 + 1000.0);
    }

    #[test]
    fn shares_are_checked() {
        let bad = SampleConfig {
            fraction: 0.0,
            ..SampleConfig::default()
        };
        assert!(bad.check().unwrap_err().contains("fraction"));
        let mut negative = SampleConfig::default();
        negative.shares.frequency = -1.0;
        assert!(negative.check().unwrap_err().contains("frequency"));
    }
}
