//! The migration's phases and the one step that moves them on.

use super::settings::PHASE;
use super::{Confidence, Scheduler, SchedulerError};
use crate::state::Location;
use crate::time::SECOND_US;

/// The migration's phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Phase {
    Shadowing,
    Background,
    CutoverReady,
    Done,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Phase::Shadowing => "SHADOWING",
            Phase::Background => "BACKGROUND",
            Phase::CutoverReady => "CUTOVER_READY",
            Phase::Done => "DONE",
        };
        f.write_str(name)
    }
}

impl Scheduler {
    /// The one step that moves the migration on by itself, run on a timer
    /// by the service and once per simulated step by `simulate`; nothing
    /// waits for an acknowledgement to happen to come. It returns the keys
    /// of expired leases to the line, forgets copy rates older than a
    /// minute, measures the confidence in SHADOWING (at most once per
    /// `confidence_every_us`), and moves the phase on:
    /// - SHADOWING to BACKGROUND when the confidence reaches the threshold,
    ///   or (unless configured to hold) when SHADOWING has nothing left to
    ///   copy: no lease is live, no key is held back by a "not before"
    ///   time, and no key the phase admits is waiting;
    /// - BACKGROUND to CUTOVER_READY when every key is current.
    ///
    /// Returns the phase it leaves the migration in.
    pub fn advance(&mut self, now_us: i64) -> Phase {
        self.release_due(now_us);
        self.copied
            .retain(|&(at, _, _)| at > now_us - 60 * SECOND_US);
        let next = match self.phase {
            Phase::Shadowing => {
                let due = self.last_confidence.is_none_or(|(measured_at, _)| {
                    now_us - measured_at >= self.config.confidence_every_us
                });
                if due {
                    self.confidence(now_us);
                }
                let confident = self
                    .last_confidence
                    .is_some_and(|(_, value)| value >= self.config.confidence.threshold);
                let copied = self.config.background_when_shadow_copied
                    && self.leases.is_empty()
                    && self.deferred.is_empty()
                    && !self.has_work(now_us);
                (confident || copied).then_some(Phase::Background)
            }
            Phase::Background => self.all_current().then_some(Phase::CutoverReady),
            _ => None,
        };
        if let Some(phase) = next
            && let Err(error) = self.set_phase(phase)
        {
            tracing::error!(%error, "could not store the phase change; will retry");
        }
        self.phase
    }

    /// Whether every tracked key is current in the destination (no scan).
    pub fn all_current(&self) -> bool {
        self.map.totals(Location::Current).keys == self.map.len() as u64
    }

    pub(super) fn set_phase(&mut self, phase: Phase) -> Result<(), SchedulerError> {
        if phase == self.phase {
            return Ok(());
        }
        self.map
            .set_settings(&[(PHASE, serde_json::to_string(&phase).expect("phase"))])?;
        tracing::info!(from = %self.phase, to = %phase, "migration phase");
        self.phase = phase;
        for queues in &mut self.queues {
            for queue in &mut queues.fresh {
                queue.cursor = 0;
            }
        }
        Ok(())
    }

    /// The operator's override: any phase, any time.
    pub fn force_phase(&mut self, phase: Phase) -> Result<(), SchedulerError> {
        self.set_phase(phase)
    }

    /// Measures the migration confidence now (from the census: no scan).
    pub fn confidence(&mut self, now_us: i64) -> Confidence {
        let confidence = self
            .census
            .histograms
            .confidence(self.recent_writes.at(now_us), &self.config.confidence);
        self.last_confidence = Some((now_us, confidence.value));
        confidence
    }

    /// The confidence last measured and when, if it was.
    pub fn last_confidence(&self) -> Option<(i64, f64)> {
        self.last_confidence
    }
}
