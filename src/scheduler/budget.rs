//! The global bandwidth budget: a token bucket in bytes, refilled at the
//! budget's rate and holding at most one second of it, so a pause in
//! leasing does not turn into a burst on the source.

use crate::time::SECOND_US;

#[derive(Clone, Debug)]
pub struct Bandwidth {
    /// Bytes per second; `None` is unlimited.
    rate: Option<u64>,
    /// Bytes that may be leased now; negative after a key larger than what
    /// was left (the debt is paid before the next lease).
    tokens: f64,
    refilled_at_us: i64,
}

impl Bandwidth {
    pub fn new(rate: Option<u64>, now_us: i64) -> Self {
        Bandwidth {
            rate,
            tokens: rate.map_or(0.0, |r| r as f64),
            refilled_at_us: now_us,
        }
    }

    pub fn rate(&self) -> Option<u64> {
        self.rate
    }

    /// A new rate; from unlimited, the bucket starts full.
    pub fn set_rate(&mut self, rate: Option<u64>, now_us: i64) {
        self.refill(now_us);
        if let Some(new) = rate {
            self.tokens = match self.rate {
                None => new as f64,
                Some(_) => self.tokens.min(new as f64),
            };
        }
        self.rate = rate;
    }

    fn refill(&mut self, now_us: i64) {
        if let Some(rate) = self.rate {
            let elapsed = (now_us - self.refilled_at_us).max(0) as f64 / SECOND_US as f64;
            self.tokens = (self.tokens + elapsed * rate as f64).min(rate as f64);
        }
        self.refilled_at_us = self.refilled_at_us.max(now_us);
    }

    /// Bytes a batch may take now (`u64::MAX` when unlimited), or `Err`
    /// with the microseconds until some will be available.
    pub fn available(&mut self, now_us: i64) -> Result<u64, i64> {
        self.refill(now_us);
        match self.rate {
            None => Ok(u64::MAX),
            Some(0) => Err(SECOND_US),
            Some(_) if self.tokens >= 1.0 => Ok(self.tokens as u64),
            Some(rate) => Err(((1.0 - self.tokens) / rate as f64 * SECOND_US as f64).ceil() as i64),
        }
    }

    /// Takes `bytes` leased now.
    pub fn spend(&mut self, bytes: u64) {
        if self.rate.is_some() {
            self.tokens -= bytes as f64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refills_at_the_rate_up_to_one_second_and_pays_debts_first() {
        let mut budget = Bandwidth::new(Some(1000), 0);
        assert_eq!(budget.available(0), Ok(1000));
        budget.spend(1500);
        let wait = budget.available(0).unwrap_err();
        assert_eq!(wait, 501_000, "501 bytes of debt at 1000 B/s");
        assert_eq!(budget.available(SECOND_US), Ok(500));
        assert_eq!(budget.available(60 * SECOND_US), Ok(1000), "capped at 1 s");
        budget.set_rate(None, 60 * SECOND_US);
        assert_eq!(budget.available(60 * SECOND_US), Ok(u64::MAX));
        budget.set_rate(Some(300), 60 * SECOND_US);
        assert_eq!(budget.available(60 * SECOND_US), Ok(300), "starts full");
        budget.set_rate(Some(0), 60 * SECOND_US);
        assert!(
            budget.available(61 * SECOND_US).is_err(),
            "a zero budget leases nothing"
        );
    }
}
