//! Operator settings that survive a restart: phase, pause, bandwidth
//! budget, whether the sample was drawn, the lease epoch of the last
//! opening, and the shard the state belongs to.

use super::{Phase, Scheduler, SchedulerError};
use crate::state::LocationMap;

pub(super) const PHASE: &str = "phase";
const PAUSED: &str = "paused";
const BANDWIDTH: &str = "bandwidth_bytes_per_s";
pub(super) const SAMPLE_DRAWN: &str = "sample_drawn";
pub(super) const LEASE_EPOCH: &str = "lease_epoch";
const SHARD: &str = "shard";

/// What an earlier run stored; `None`/defaults where nothing was stored.
pub(super) struct StoredSettings {
    pub phase: Phase,
    pub paused: bool,
    /// `Some(rate)` when an operator set the budget (`Some(None)`: unlimited).
    pub bandwidth: Option<Option<u64>>,
    pub sample_drawn: bool,
    pub lease_epoch: Option<u64>,
}

impl StoredSettings {
    /// Reads the stored settings; a value that does not parse is an error
    /// naming the setting, never silently replaced by a default.
    pub fn read(map: &LocationMap) -> Result<Self, SchedulerError> {
        fn parse<T: serde::de::DeserializeOwned>(
            map: &LocationMap,
            name: &'static str,
        ) -> Result<Option<T>, SchedulerError> {
            let Some(value) = map.setting(name)? else {
                return Ok(None);
            };
            serde_json::from_str(&value)
                .map(Some)
                .map_err(|error| SchedulerError::CorruptSetting {
                    name,
                    value,
                    problem: error.to_string(),
                })
        }
        Ok(StoredSettings {
            phase: parse(map, PHASE)?.unwrap_or(Phase::Shadowing),
            paused: parse(map, PAUSED)?.unwrap_or(false),
            bandwidth: parse(map, BANDWIDTH)?,
            sample_drawn: parse(map, SAMPLE_DRAWN)?.unwrap_or(false),
            lease_epoch: parse(map, LEASE_EPOCH)?,
        })
    }
}

impl Scheduler {
    /// Records that this state holds the keys of `shard`, or checks that
    /// it does: a state opened as another shard (or with another shard
    /// count) would serve keys it does not own and miss its own.
    pub fn claim_shard(&mut self, shard: crate::shard::Shard) -> Result<(), SchedulerError> {
        let wanted = shard.to_string();
        match self.map.setting(SHARD)? {
            None => {
                self.map.set_settings(&[(SHARD, wanted)])?;
                Ok(())
            }
            Some(stored) if stored == wanted => Ok(()),
            Some(stored) => Err(SchedulerError::InvalidConfig {
                field: "shard",
                problem: format!(
                    "this state belongs to shard {stored}, not {wanted}: start it as {stored}, or give shard {wanted} a state directory of its own"
                ),
            }),
        }
    }

    pub fn pause(&mut self) -> Result<(), SchedulerError> {
        self.map.set_settings(&[(PAUSED, "true".into())])?;
        self.paused = true;
        Ok(())
    }

    pub fn resume(&mut self) -> Result<(), SchedulerError> {
        self.map.set_settings(&[(PAUSED, "false".into())])?;
        self.paused = false;
        Ok(())
    }

    /// Changes the global budget (bytes per second; `None` unlimited).
    pub fn set_bandwidth(
        &mut self,
        bytes_per_s: Option<u64>,
        now_us: i64,
    ) -> Result<(), SchedulerError> {
        let json = bytes_per_s.map_or("null".to_string(), |b| b.to_string());
        self.map.set_settings(&[(BANDWIDTH, json)])?;
        self.bandwidth.set_rate(bytes_per_s, now_us);
        Ok(())
    }
}
