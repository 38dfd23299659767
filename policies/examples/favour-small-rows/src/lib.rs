//! Favour small rows: a row's weight halves at `half_weight_bytes` (default
//! 4096) and keeps falling with size, so small hot rows move before big
//! ones of the same score.

use shadowcast_policy::{Batch, Column, Config, Decisions, Policy, export_policy};

pub struct FavourSmallRows {
    half_weight_bytes: f64,
}

impl Policy for FavourSmallRows {
    const COLUMNS: &'static [Column] = &[Column::SIZE_BYTES];

    fn configure(config: &Config) -> Result<Self, String> {
        let half_weight_bytes: f64 = config.parse_or("half_weight_bytes", 4096.0)?;
        if half_weight_bytes.is_nan() || half_weight_bytes <= 0.0 {
            return Err(format!(
                "half_weight_bytes must be > 0, got {half_weight_bytes}"
            ));
        }
        Ok(FavourSmallRows { half_weight_bytes })
    }

    fn decide(&mut self, batch: &Batch, out: &mut Decisions) {
        let scale = 1.0 / self.half_weight_bytes;
        for (weight, size) in out.weight.iter_mut().zip(batch.size_bytes()) {
            *weight = 1.0 / (1.0 + *size as f64 * scale);
        }
    }
}

export_policy!(FavourSmallRows);
