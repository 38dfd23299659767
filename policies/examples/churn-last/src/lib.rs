//! Move churning keys last: a key the model expects to churn (probability
//! at least `threshold`, default 0.5) would be copied again after every
//! write, so it goes in the last priority class and its weight is scaled by
//! `weight` (default 0.5); the rest are left alone.

use shadowcast_policy::{Batch, Column, Config, Decisions, Policy, export_policy, priority};

pub struct ChurnLast {
    threshold: f64,
    weight: f64,
}

impl Policy for ChurnLast {
    const COLUMNS: &'static [Column] = &[Column::CHURN];

    fn configure(config: &Config) -> Result<Self, String> {
        let threshold: f64 = config.parse_or("threshold", 0.5)?;
        let weight: f64 = config.parse_or("weight", 0.5)?;
        if !(0.0..=1.0).contains(&threshold) {
            return Err(format!("threshold must be in [0, 1], got {threshold}"));
        }
        if !(weight >= 0.0 && weight.is_finite()) {
            return Err(format!("weight must be finite and >= 0, got {weight}"));
        }
        Ok(ChurnLast { threshold, weight })
    }

    fn decide(&mut self, batch: &Batch, out: &mut Decisions) {
        for (i, churn) in batch.churn().iter().enumerate() {
            if *churn >= self.threshold {
                out.weight[i] = self.weight;
                out.priority[i] = priority::LAST;
            } else {
                out.weight[i] = 1.0;
            }
        }
    }
}

export_policy!(ChurnLast);
