//! Migration confidence: how well the keys already current in the
//! destination represent the whole source, discounted by how fast the
//! source is changing.
//!
//! ```text
//! similarity_d      = 1 − TV(histogram_d(source), histogram_d(destination))
//!                     for d in {size, table, access frequency, write rate}
//! representativeness = Σ_d weight_d · similarity_d / Σ_d weight_d
//! change_share      = bytes written in the last hour (decayed) / source bytes
//! change_factor     = 1 / (1 + change_share / change_half_share)
//! confidence        = representativeness · change_factor
//! ```
//!
//! TV is the total variation distance (half the L1 distance between the two
//! normalised histograms), 0 for identical shapes and 1 for disjoint ones.
//! Histograms count keys: sizes in powers of two, tables by id, access
//! frequency and write rate (per day) in powers of two of (1 + value). An
//! empty destination has confidence 0. With the defaults (equal weights,
//! `change_half_share` 1%), a source rewriting 1% of its bytes an hour
//! halves the confidence a perfectly representative destination would have.

use crate::time::HOUR_US;

/// Weights of the four distributions compared.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DimensionWeights {
    pub size: f64,
    pub table: f64,
    pub frequency: f64,
    pub write_rate: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConfidenceConfig {
    /// Confidence at which SHADOWING moves on to BACKGROUND by itself.
    pub threshold: f64,
    pub weights: DimensionWeights,
    /// Share of the source's bytes rewritten per hour that halves confidence.
    pub change_half_share: f64,
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
            },
            change_half_share: 0.01,
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
        ] {
            if !(weight.is_finite() && weight >= 0.0) {
                return Err(format!(
                    "confidence.weights.{name} must be ≥ 0, got {weight}"
                ));
            }
        }
        if w.size + w.table + w.frequency + w.write_rate <= 0.0 {
            return Err("confidence.weights must not all be 0".into());
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
    pub change_share: f64,
    pub change_factor: f64,
}

/// One key as the confidence sees it.
#[derive(Clone, Copy, Debug)]
pub struct KeyProfile {
    pub table: u32,
    pub size_bytes: u64,
    /// Accesses observed.
    pub frequency: f64,
    /// Writes per hour.
    pub write_rate: f64,
}

fn log2_bucket(value: f64) -> usize {
    if value > 0.0 {
        ((1.0 + value).log2() as usize).min(63)
    } else {
        0
    }
}

/// Source and destination histograms of one distribution.
#[derive(Default)]
struct Pair {
    source: Vec<u64>,
    destination: Vec<u64>,
}

impl Pair {
    fn add(&mut self, bucket: usize, in_destination: bool) {
        for (histogram, counts) in [
            (&mut self.source, true),
            (&mut self.destination, in_destination),
        ] {
            if counts {
                if histogram.len() <= bucket {
                    histogram.resize(bucket + 1, 0);
                }
                histogram[bucket] += 1;
            }
        }
    }

    /// 1 − total variation distance; 0 when either side is empty.
    fn similarity(&self) -> f64 {
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
        (1.0 - distance).clamp(0.0, 1.0)
    }
}

/// Confidence of a destination holding the keys flagged `true` (of all the
/// source's keys), given the bytes written recently (decayed over an hour).
pub fn measure(
    keys: impl Iterator<Item = (KeyProfile, bool)>,
    recent_written_bytes: f64,
    config: &ConfidenceConfig,
) -> Confidence {
    let [mut size, mut table, mut frequency, mut write_rate] = [(); 4].map(|_| Pair::default());
    let mut source_bytes = 0u64;
    for (key, in_destination) in keys {
        source_bytes += key.size_bytes;
        size.add(
            (u64::BITS - key.size_bytes.leading_zeros()) as usize,
            in_destination,
        );
        table.add(key.table as usize, in_destination);
        frequency.add(log2_bucket(key.frequency), in_destination);
        write_rate.add(log2_bucket(key.write_rate * 24.0), in_destination);
    }
    let similarity = Similarities {
        size: size.similarity(),
        table: table.similarity(),
        frequency: frequency.similarity(),
        write_rate: write_rate.similarity(),
    };
    let w = config.weights;
    let representativeness = (w.size * similarity.size
        + w.table * similarity.table
        + w.frequency * similarity.frequency
        + w.write_rate * similarity.write_rate)
        / (w.size + w.table + w.frequency + w.write_rate);
    let change_share = if source_bytes > 0 {
        recent_written_bytes / source_bytes as f64
    } else {
        0.0
    };
    let change_factor = 1.0 / (1.0 + change_share / config.change_half_share);
    Confidence {
        value: representativeness * change_factor,
        representativeness,
        similarity,
        change_share,
        change_factor,
    }
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

    fn profile(table: u32, size_bytes: u64) -> KeyProfile {
        KeyProfile {
            table,
            size_bytes,
            frequency: 1.0,
            write_rate: 0.0,
        }
    }

    #[test]
    fn identical_shapes_score_one_disjoint_ones_less_and_change_discounts() {
        let config = ConfidenceConfig::default();
        let keys: Vec<KeyProfile> = (0..100).map(|i| profile(i % 2, 100 + i as u64)).collect();
        // Every other pair of keys: same tables, same sizes buckets.
        let even = measure(
            keys.iter().enumerate().map(|(i, k)| (*k, i % 4 < 2)),
            0.0,
            &config,
        );
        assert!(even.value > 0.95, "{even:?}");
        // Only table 0: the table distribution is half off.
        let one_table = measure(keys.iter().map(|k| (*k, k.table == 0)), 0.0, &config);
        assert!(
            (one_table.similarity.table - 0.5).abs() < 1e-9,
            "{one_table:?}"
        );
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
    fn recent_writes_fade_over_hours() {
        let mut recent = RecentWrites::default();
        recent.add(1000, 0);
        assert_eq!(recent.at(0), 1000.0);
        assert!((recent.at(HOUR_US) - 1000.0 / std::f64::consts::E).abs() < 1e-6);
    }
}
