//! Migration confidence: how well the keys already current in the
//! destination represent the whole source — allowing for how few keys the
//! comparison may rest on — and how much of the predicted workload they
//! already serve, discounted by how fast the source is changing.
//!
//! ```text
//! margin_d          = sqrt((k_d · ln 2 + ln(1/risk)) / (2 n)) · sqrt((N − n) / (N − 1))
//! similarity_d      = max(0, 1 − TV(histogram_d(source), histogram_d(destination)) − margin_d)
//!                     for d in {size, table, access frequency, write rate}
//! predicted_share   = predicted accesses of the current keys / of all keys
//! representativeness = (Σ_d weight_d · similarity_d + weight_p · predicted_share)
//!                      / (Σ_d weight_d + weight_p)
//! change_share      = bytes written in the last hour (decayed) / source bytes
//! change_factor     = 1 / (1 + change_share / change_half_share)
//! confidence        = representativeness · change_factor
//! ```
//!
//! TV is the total variation distance (half the L1 distance between the two
//! normalised histograms), 0 for identical shapes and 1 for disjoint ones.
//! Histograms count keys: sizes in powers of two, tables by id, access
//! frequency and write rate (per day) in powers of two of (1 + value).
//!
//! The margin is how far the histogram of n keys drawn at random from N
//! (over k_d non-empty bins) can stray from the source's by chance alone:
//! with probability at least 1 − risk the true distance is within it (the
//! L1 deviation bound of Weissman et al., 2003, with the finite-population
//! correction, so it is 0 once every key is current). A destination
//! holding a handful of keys therefore cannot look representative however
//! well its few keys happen to match: at the defaults (risk 5%, about 10
//! bins), similarity 0.9 needs several hundred keys.
//!
//! An empty destination has confidence 0. With the defaults (equal weights
//! for the four distributions and the predicted share, `change_half_share`
//! 1%), a source rewriting 1% of its bytes an hour halves the confidence a
//! perfectly representative destination would have.

use crate::time::HOUR_US;

/// Weights of the four distributions compared and of the predicted share.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DimensionWeights {
    pub size: f64,
    pub table: f64,
    pub frequency: f64,
    pub write_rate: f64,
    /// The share of predicted accesses already current.
    pub predicted: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConfidenceConfig {
    /// Confidence at which SHADOWING moves on to BACKGROUND by itself.
    pub threshold: f64,
    pub weights: DimensionWeights,
    /// Share of the source's bytes rewritten per hour that halves confidence.
    pub change_half_share: f64,
    /// Chance allowed that a sample's histogram is further from the
    /// source's than the margin says (sets the margin's width).
    pub risk: f64,
}

impl Default for ConfidenceConfig {
    fn default() -> Self {
        ConfidenceConfig {
            threshold: 0.9,
            weights: DimensionWeights {
                size: 1.0,
                table: 1.0,
                frequency: 1.0,
                write_rate: 1.0,
                predicted: 1.0,
            },
            change_half_share: 0.01,
            risk: 0.05,
        }
    }
}

impl ConfidenceConfig {
    pub fn check(self) -> Result<Self, String> {
        if !(self.threshold >= 0.0 && self.threshold <= 1.0) {
            return Err(format!(
                "confidence.threshold must be in [0, 1], got {}",
                self.threshold
            ));
        }
        let w = self.weights;
        for (name, weight) in [
            ("size", w.size),
            ("table", w.table),
            ("frequency", w.frequency),
            ("write_rate", w.write_rate),
            ("predicted", w.predicted),
        ] {
            if !(weight.is_finite() && weight >= 0.0) {
                return Err(format!(
                    "confidence.weights.{name} must be ≥ 0, got {weight}"
                ));
            }
        }
        if w.size + w.table + w.frequency + w.write_rate + w.predicted <= 0.0 {
            return Err("confidence.weights must not all be 0".into());
        }
        if !(self.risk > 0.0 && self.risk < 1.0) {
            return Err(format!(
                "confidence.risk must be strictly between 0 and 1, got {}",
                self.risk
            ));
        }
        if !(self.change_half_share.is_finite() && self.change_half_share > 0.0) {
            return Err(format!(
                "confidence.change_half_share must be > 0, got {}",
                self.change_half_share
            ));
        }
        Ok(self)
    }
}

/// The four similarities, each in [0, 1].
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Similarities {
    pub size: f64,
    pub table: f64,
    pub frequency: f64,
    pub write_rate: f64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Confidence {
    pub value: f64,
    pub representativeness: f64,
    pub similarity: Similarities,
    /// Keys the destination's histograms rest on.
    pub keys_compared: u64,
    pub predicted_share: f64,
    pub change_share: f64,
    pub change_factor: f64,
}

/// One key as the confidence sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KeyProfile {
    pub table: u32,
    pub size_bytes: u64,
    /// Accesses observed.
    pub frequency: f64,
    /// Writes per hour.
    pub write_rate: f64,
    /// Predicted accesses in the horizon.
    pub predicted: f64,
}

/// ⌊log2(1 + value)⌋, at most 63: the exponent of 1 + value, read from
/// its bits (exact where `log2()` rounds up just below a power of two, and
/// no library call for every key the census moves).
fn log2_bucket(value: f64) -> usize {
    if value > 0.0 {
        let exponent = ((1.0 + value).to_bits() >> 52) & 0x7ff;
        (exponent as usize - 1023).min(63)
    } else {
        0
    }
}

/// Source and destination histograms of one distribution.
#[derive(Clone, Debug, Default, PartialEq)]
struct Pair {
    source: Vec<u64>,
    destination: Vec<u64>,
}

/// Counts one more key in `bucket` of `histogram`, growing it to reach.
fn count_in(histogram: &mut Vec<u64>, bucket: usize) {
    if histogram.len() <= bucket {
        histogram.resize(bucket + 1, 0);
    }
    histogram[bucket] += 1;
}

impl Pair {
    fn add(&mut self, bucket: usize, in_destination: bool) {
        count_in(&mut self.source, bucket);
        if in_destination {
            count_in(&mut self.destination, bucket);
        }
    }

    /// Moves a key of `bucket`, counted already, into the destination
    /// (`false`: out of it).
    fn shift(&mut self, bucket: usize, into_destination: bool) {
        if into_destination {
            count_in(&mut self.destination, bucket);
        } else {
            self.destination[bucket] -= 1;
        }
    }

    /// Takes back an [`add`](Self::add) of the same bucket and side.
    fn remove(&mut self, bucket: usize, in_destination: bool) {
        self.source[bucket] -= 1;
        if in_destination {
            self.destination[bucket] -= 1;
        }
    }

    /// 1 − total variation distance − the sampling margin; 0 when either
    /// side is empty.
    fn similarity(&self, risk: f64) -> f64 {
        let (s, d) = (
            self.source.iter().sum::<u64>() as f64,
            self.destination.iter().sum::<u64>() as f64,
        );
        if s == 0.0 || d == 0.0 {
            return 0.0;
        }
        let bins = self.source.len().max(self.destination.len());
        let at = |h: &[u64], i: usize| h.get(i).copied().unwrap_or(0) as f64;
        let distance: f64 = (0..bins)
            .map(|i| (at(&self.source, i) / s - at(&self.destination, i) / d).abs())
            .sum::<f64>()
            / 2.0;
        let occupied = self.source.iter().filter(|&&count| count > 0).count() as f64;
        (1.0 - distance - sampling_margin(occupied, d, s, risk)).clamp(0.0, 1.0)
    }
}

/// How far the histogram of `sampled` keys out of `population`, over `bins`
/// non-empty bins, may stray from the population's by chance, in total
/// variation, with probability at least 1 − `risk`.
pub fn sampling_margin(bins: f64, sampled: f64, population: f64, risk: f64) -> f64 {
    if sampled <= 0.0 {
        return 1.0;
    }
    let finite_population = if population > 1.0 {
        ((population - sampled).max(0.0) / (population - 1.0)).sqrt()
    } else {
        0.0
    };
    ((bins * std::f64::consts::LN_2 + (1.0 / risk).ln()) / (2.0 * sampled)).sqrt()
        * finite_population
}

/// Predicted accesses in units of 2^-16, so that sums taken apart again key
/// by key come back exactly (floating-point sums would drift).
fn fixed_point(predicted: f64) -> u128 {
    // Rounded half up through u64 (which holds 2^48 accesses): converting
    // a float to u128 and rounding are library calls.
    u128::from((predicted.max(0.0) * 65_536.0 + 0.5) as u64)
}

/// Everything the confidence is computed from, as counts that keys can be
/// added to and taken from one at a time: a running total kept as the
/// destination fills never needs to look at every key again.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histograms {
    size: Pair,
    table: Pair,
    frequency: Pair,
    write_rate: Pair,
    source_keys: u64,
    source_bytes: u64,
    keys_compared: u64,
    predicted: u128,
    predicted_current: u128,
}

impl Histograms {
    pub fn add(&mut self, key: &KeyProfile, in_destination: bool) {
        self.source_keys += 1;
        self.source_bytes += key.size_bytes;
        let predicted = fixed_point(key.predicted);
        self.predicted += predicted;
        if in_destination {
            self.keys_compared += 1;
            self.predicted_current += predicted;
        }
        for (pair, bucket) in self.pairs(key) {
            pair.add(bucket, in_destination);
        }
    }

    /// Each distribution's histograms, with the bucket `key` falls in.
    fn pairs(&mut self, key: &KeyProfile) -> [(&mut Pair, usize); 4] {
        let [size, table, frequency, write_rate] = buckets(key);
        [
            (&mut self.size, size),
            (&mut self.table, table),
            (&mut self.frequency, frequency),
            (&mut self.write_rate, write_rate),
        ]
    }

    /// [`remove`](Self::remove) then [`add`](Self::add) of one key whose
    /// profile did not change: only the destination side can.
    pub fn shift(&mut self, key: &KeyProfile, was_in_destination: bool, in_destination: bool) {
        if was_in_destination == in_destination {
            return;
        }
        let predicted = fixed_point(key.predicted);
        if in_destination {
            self.keys_compared += 1;
            self.predicted_current += predicted;
        } else {
            self.keys_compared -= 1;
            self.predicted_current -= predicted;
        }
        for (pair, bucket) in self.pairs(key) {
            pair.shift(bucket, in_destination);
        }
    }

    /// Takes back an [`add`](Self::add) of the same key and side.
    pub fn remove(&mut self, key: &KeyProfile, in_destination: bool) {
        self.source_keys -= 1;
        self.source_bytes -= key.size_bytes;
        let predicted = fixed_point(key.predicted);
        self.predicted -= predicted;
        if in_destination {
            self.keys_compared -= 1;
            self.predicted_current -= predicted;
        }
        for (pair, bucket) in self.pairs(key) {
            pair.remove(bucket, in_destination);
        }
    }

    /// Share of the predicted accesses on keys in the destination (0 when
    /// nothing is predicted).
    pub fn predicted_accesses_share(&self) -> f64 {
        if self.predicted > 0 {
            self.predicted_current as f64 / self.predicted as f64
        } else {
            0.0
        }
    }

    /// Share of the predicted accesses on keys in the destination, or of
    /// the keys when nothing is predicted.
    fn predicted_share(&self) -> f64 {
        if self.predicted > 0 {
            self.predicted_accesses_share()
        } else if self.keys_compared > 0 {
            self.keys_compared as f64 / self.source_keys as f64
        } else {
            0.0
        }
    }

    /// The confidence, given the bytes written recently (decayed over an
    /// hour).
    pub fn confidence(&self, recent_written_bytes: f64, config: &ConfidenceConfig) -> Confidence {
        let similarity = Similarities {
            size: self.size.similarity(config.risk),
            table: self.table.similarity(config.risk),
            frequency: self.frequency.similarity(config.risk),
            write_rate: self.write_rate.similarity(config.risk),
        };
        let predicted_share = self.predicted_share();
        let w = config.weights;
        let representativeness = (w.size * similarity.size
            + w.table * similarity.table
            + w.frequency * similarity.frequency
            + w.write_rate * similarity.write_rate
            + w.predicted * predicted_share)
            / (w.size + w.table + w.frequency + w.write_rate + w.predicted);
        let change_share = if self.source_bytes > 0 {
            recent_written_bytes / self.source_bytes as f64
        } else {
            0.0
        };
        let change_factor = 1.0 / (1.0 + change_share / config.change_half_share);
        Confidence {
            value: representativeness * change_factor,
            representativeness,
            similarity,
            keys_compared: self.keys_compared,
            predicted_share,
            change_share,
            change_factor,
        }
    }
}

/// A key's bucket in each of the four histograms.
fn buckets(key: &KeyProfile) -> [usize; 4] {
    [
        (u64::BITS - key.size_bytes.leading_zeros()) as usize,
        key.table as usize,
        log2_bucket(key.frequency),
        log2_bucket(key.write_rate * 24.0),
    ]
}

/// Confidence of a destination holding the keys flagged `true` (of all the
/// source's keys), given the bytes written recently (decayed over an hour).
pub fn measure(
    keys: impl Iterator<Item = (KeyProfile, bool)>,
    recent_written_bytes: f64,
    config: &ConfidenceConfig,
) -> Confidence {
    let mut histograms = Histograms::default();
    for (key, in_destination) in keys {
        histograms.add(&key, in_destination);
    }
    histograms.confidence(recent_written_bytes, config)
}

/// Bytes written, decayed with a one-hour mean life: approximately the
/// bytes written in the last hour.
#[derive(Clone, Copy, Debug, Default)]
pub struct RecentWrites {
    bytes: f64,
    at_us: i64,
}

impl RecentWrites {
    /// Adds `bytes` written at `written_us` (which may be earlier than
    /// writes added before: log files arrive out of order).
    pub fn add(&mut self, bytes: u64, written_us: i64) {
        if written_us >= self.at_us {
            self.bytes = self.at(written_us) + bytes as f64;
            self.at_us = written_us;
        } else {
            let age = (self.at_us - written_us) as f64 / HOUR_US as f64;
            self.bytes += bytes as f64 * (-age).exp();
        }
    }

    pub fn at(&self, now_us: i64) -> f64 {
        let elapsed = (now_us - self.at_us).max(0) as f64 / HOUR_US as f64;
        self.bytes * (-elapsed).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ⌊log2(1 + x)⌋ worked out by hand, including just below a power of
    /// two, where the float `log2` rounds up to the next bucket.
    #[test]
    fn log2_buckets_are_exact() {
        let just_below_2_pow_53 = 9_007_199_254_740_990.0; // 2^53 − 2
        for (value, bucket) in [
            (-1.0, 0),
            (0.0, 0),
            (0.5, 0),
            (1.0, 1),
            (2.9, 1),
            (3.0, 2),
            (1023.0, 10),
            (just_below_2_pow_53, 52),
            (1e300, 63),
            (f64::INFINITY, 63),
            (f64::NAN, 0),
        ] {
            assert_eq!(log2_bucket(value), bucket, "{value}");
        }
    }

    fn profile(table: u32, size_bytes: u64) -> KeyProfile {
        KeyProfile {
            table,
            size_bytes,
            frequency: 1.0,
            write_rate: 0.0,
            predicted: 1.0,
        }
    }

    /// Only the four distributions (no predicted share).
    fn shapes_only() -> ConfidenceConfig {
        let mut config = ConfidenceConfig::default();
        config.weights.predicted = 0.0;
        config
    }

    #[test]
    fn identical_shapes_score_one_disjoint_ones_less_and_change_discounts() {
        let config = shapes_only();
        let keys: Vec<KeyProfile> = (0..100).map(|i| profile(i % 2, 100 + i as u64)).collect();
        // Every key current: no sampling margin, identical shapes.
        let all = measure(keys.iter().map(|k| (*k, true)), 0.0, &config);
        assert_eq!(all.value, 1.0);
        assert_eq!(all.keys_compared, 100);
        // Half the keys, same tables and size buckets: close, less the margin.
        let even = measure(
            keys.iter().enumerate().map(|(i, k)| (*k, i % 4 < 2)),
            0.0,
            &config,
        );
        assert!(even.value > 0.6 && even.value < 1.0, "{even:?}");
        // Only table 0: the table distribution is half off, and more.
        let one_table = measure(keys.iter().map(|k| (*k, k.table == 0)), 0.0, &config);
        assert!(one_table.similarity.table < 0.5, "{one_table:?}");
        assert!(one_table.value < even.value);
        let empty = measure(keys.iter().map(|k| (*k, false)), 0.0, &config);
        assert_eq!(empty.value, 0.0);
        // 1% of the bytes rewritten in the last hour halves it.
        let source_bytes: u64 = keys.iter().map(|k| k.size_bytes).sum();
        let churning = measure(
            keys.iter().enumerate().map(|(i, k)| (*k, i % 4 < 2)),
            source_bytes as f64 / 100.0,
            &config,
        );
        assert!((churning.change_factor - 0.5).abs() < 1e-9);
        assert!((churning.value - even.value / 2.0).abs() < 1e-9);
    }

    #[test]
    fn the_margin_matches_the_bound_worked_by_hand() {
        // k = 10 bins, n = 100 of N = 10 000, risk 5%:
        // sqrt((10 ln 2 + ln 20) / 200) = sqrt((6.931 + 2.996) / 200) = 0.2228,
        // times sqrt(9 900 / 9 999) = 0.99504: 0.2217.
        let margin = sampling_margin(10.0, 100.0, 10_000.0, 0.05);
        assert!((margin - 0.2217).abs() < 1e-3, "{margin}");
        assert_eq!(sampling_margin(10.0, 500.0, 500.0, 0.05), 0.0, "census");
        assert_eq!(sampling_margin(10.0, 0.0, 500.0, 0.05), 1.0, "nothing");
    }

    /// 20 000 keys over 4 tables, 8 size buckets and 6 frequency buckets;
    /// a random sample of 30 keys matches the shapes about as well as
    /// chance allows but rests on too few keys, while 4 000 (a fifth, holding
    /// a fifth of the predicted accesses plus the predicted-hot keys)
    /// reaches the threshold.
    #[test]
    fn a_small_sample_cannot_reach_the_threshold_and_a_representative_one_does() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(3);
        let keys: Vec<KeyProfile> = (0..20_000)
            .map(|i| KeyProfile {
                table: i % 4,
                size_bytes: 1 << rng.random_range(4..12),
                frequency: f64::from(1u32 << rng.random_range(0..6)),
                write_rate: 0.0,
                predicted: if i < 1000 { 100.0 } else { 1.0 },
            })
            .collect();
        let config = ConfidenceConfig::default();
        let mut order: Vec<usize> = (0..keys.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        let sample = |n: usize, hot_too: bool| {
            let mut chosen = vec![false; keys.len()];
            for &i in &order[..n] {
                chosen[i] = true;
            }
            if hot_too {
                chosen[..1000].iter_mut().for_each(|c| *c = true);
            }
            measure(keys.iter().zip(chosen).map(|(k, c)| (*k, c)), 0.0, &config)
        };
        let small = sample(30, false);
        assert!(small.value < 0.6, "30 keys: {small:?}");
        let large = sample(4000, true);
        assert!(large.value >= config.threshold, "{large:?}");
    }

    #[test]
    fn recent_writes_fade_over_hours() {
        let mut recent = RecentWrites::default();
        recent.add(1000, 0);
        assert_eq!(recent.at(0), 1000.0);
        assert!((recent.at(HOUR_US) - 1000.0 / std::f64::consts::E).abs() < 1e-6);
    }
}
