//! The scheduler's settings and their checks.

use super::{ConfidenceConfig, SampleConfig, SchedulerError};
use crate::time::SECOND_US;

/// What the versions in acknowledgements and writes are.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Deserialize,
    serde::Serialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Versions {
    /// The source's write times in microseconds, as the access logs give
    /// them: a log file's write raises the key's latest version.
    #[default]
    Time,
    /// PostgreSQL log sequence numbers: a write's version is its commit
    /// record's LSN, a copy's the LSN its snapshot is current to. Log files
    /// say which keys were written but not at which LSN, so only reported
    /// writes (`shadowcast capture`) raise versions.
    Lsn,
}

impl Versions {
    /// `time` or `lsn`, as the flag and the status spell it.
    pub fn name(self) -> &'static str {
        match self {
            Versions::Time => "time",
            Versions::Lsn => "lsn",
        }
    }
}

/// Scheduler settings; [`check`](Self::check) before use.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SchedulerConfig {
    /// Most keys in one batch, whatever an executor asks for.
    pub max_batch_keys: usize,
    /// Most bytes in one batch (a single larger key still goes out alone).
    pub max_batch_bytes: u64,
    /// Global budget in bytes per second; `None` is unlimited.
    pub bandwidth_bytes_per_s: Option<u64>,
    /// How long a lease lasts unless extended.
    pub lease_duration_us: i64,
    /// How much predicted churn lowers a key's benefit, in [0, 1].
    pub churn_penalty: f64,
    /// Share of keys, by predicted accesses, that SHADOWING moves besides
    /// the sample.
    pub predicted_hot_share: f64,
    /// Move on to BACKGROUND once SHADOWING has nothing left to copy (the
    /// sample and the predicted-hot keys are current), even below the
    /// confidence threshold. `false` holds SHADOWING until the threshold
    /// (or the operator).
    pub background_when_shadow_copied: bool,
    /// What a version is, and so whether log files' writes carry one.
    pub versions: Versions,
    pub sample: SampleConfig,
    pub confidence: ConfidenceConfig,
    /// How often [`advance`](super::Scheduler::advance) measures the
    /// confidence in SHADOWING (a measure reads running tallies, so this
    /// is how quickly the phase reacts, not a cost).
    pub confidence_every_us: i64,
    /// How long a key whose copy failed waits before it is offered again;
    /// doubled with each failure in a row (see `scheduler/failures.rs`).
    pub copy_retry_us: i64,
    /// Failures in a row after which a key is parked while other keys are
    /// copied; 0 never parks.
    pub max_copy_failures: u32,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            max_batch_keys: 10_000,
            max_batch_bytes: 256 << 20,
            bandwidth_bytes_per_s: None,
            lease_duration_us: 30 * SECOND_US,
            churn_penalty: 0.5,
            predicted_hot_share: 0.05,
            background_when_shadow_copied: true,
            versions: Versions::Time,
            sample: SampleConfig::default(),
            confidence: ConfidenceConfig::default(),
            confidence_every_us: SECOND_US,
            copy_retry_us: SECOND_US,
            max_copy_failures: 5,
        }
    }
}

impl SchedulerConfig {
    pub fn check(self) -> Result<Self, SchedulerError> {
        let invalid = |field: &'static str, problem: String| {
            Err(SchedulerError::InvalidConfig { field, problem })
        };
        if self.max_batch_keys == 0 {
            return invalid("max_batch_keys", "must be at least 1".into());
        }
        if self.max_batch_bytes == 0 {
            return invalid("max_batch_bytes", "must be at least 1".into());
        }
        if self.confidence_every_us < 0 {
            return invalid("confidence_every", "must not be negative".into());
        }
        if !(0..=super::failures::MAX_COPY_RETRY_US).contains(&self.copy_retry_us) {
            return invalid(
                "copy_retry_seconds",
                format!(
                    "must be between 0 and {}, got {}",
                    super::failures::MAX_COPY_RETRY_US / SECOND_US,
                    self.copy_retry_us as f64 / SECOND_US as f64
                ),
            );
        }
        if self.lease_duration_us < SECOND_US / 10 {
            return invalid("lease_duration", "must be at least 100 ms".into());
        }
        if !(0.0..=1.0).contains(&self.churn_penalty) {
            return invalid(
                "churn_penalty",
                format!("must be in [0, 1], got {}", self.churn_penalty),
            );
        }
        if !(0.0..=1.0).contains(&self.predicted_hot_share) {
            return invalid(
                "predicted_hot_share",
                format!("must be in [0, 1], got {}", self.predicted_hot_share),
            );
        }
        if let Err(problem) = self.sample.check() {
            return invalid("sample", problem);
        }
        if let Err(problem) = self.confidence.check() {
            return invalid("confidence", problem);
        }
        Ok(self)
    }
}
