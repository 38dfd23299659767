//! Stage 5 — the scheduler.
//!
//! Takes: the policy stage's [`Candidates`](crate::policy::Candidates)
//! and [`Decisions`](crate::policy::Decisions) (keys with
//! model scores, weights and hints) through [`Scheduler::plan`]; executors'
//! lease requests and acknowledgements; writes seen in new log files
//! ([`Scheduler::ingest_logs`]) or reported by executors and the shadowing
//! module ([`Scheduler::record_writes`]), and tables truncated
//! ([`Scheduler::record_truncations`]); operator commands (pause, resume,
//! bandwidth budget, force a phase, offer parked keys again).
//!
//! Gives: [`Lease`]s — batches of keys to copy, highest expected benefit
//! per byte first, within per-batch key and byte limits and a global
//! bandwidth budget; per-key [`AckOutcome`]s; a [`Status`] record.
//!
//! Guarantees:
//! - Order: priority classes first (FIRST, EARLY, NORMAL, LAST); within a
//!   class, keys to re-sync (stale, or back from an expired lease or a
//!   failed copy) before new work, then new work by
//!   `weight · predicted accesses · (1 − churn_penalty · P(churn)) / (size + 64 B)`.
//!   Keys the policy excludes (weight 0) never go out; "not before" times
//!   hold. A key whose copy failed waits a delay that doubles with each
//!   failure in a row, and after `max_copy_failures` of them, while other
//!   keys are copied, it is parked: listed in the status and not offered
//!   until [`Scheduler::retry_parked`] or a new write to it.
//! - Phases: SHADOWING leases only the shadow sample and the predicted-hot
//!   keys; BACKGROUND (when confidence reaches the threshold, when SHADOWING
//!   has copied all it may unless configured to hold, or by the operator)
//!   everything else; CUTOVER_READY when every key is current
//!   (a later write, or a key first seen then, sends it back to
//!   BACKGROUND); DONE (operator) leases
//!   nothing.
//! - Versions are the source's write versions: the logs give the write's
//!   time in microseconds, executors report what they copied. An
//!   acknowledgement counts only if its version is at least the latest
//!   write seen for the key; otherwise the key stays stale and is offered
//!   again. Acknowledgements are idempotent and accepted whichever lease
//!   (if any, e.g. after a restart) the key was under.
//! - Phases move on in one step, [`Scheduler::advance`], which its owner
//!   runs on a timer (a simulation, on its clock), not as a side effect of
//!   other calls.
//! - Planning can be done in stages ([`Scheduler::score`] in slices,
//!   [`Scheduler::begin_ranking_input`] and
//!   [`Scheduler::extend_ranking_input`] in slices, [`RankingInput::rank`]
//!   anywhere (it also finds the predicted-hot keys),
//!   [`Scheduler::install_ranking`]) so that leasing goes on meanwhile;
//!   [`Scheduler::plan`] runs them in one call.
//! - Nothing accepted is lost: every accepted ack and every write seen is
//!   committed to the [`LocationMap`] before the call returns (with a
//!   pipelined map, see [`Scheduler::pipeline`], the commit is durable when
//!   its [`DurableWatch`](crate::state::DurableWatch) says so, and the
//!   caller answers only then); a lease that expires, or is voided by a
//!   restart, puts its keys back in line.

mod acks;
mod api;
mod budget;
mod census;
pub mod confidence;
mod config;
mod failures;
mod follow;
mod leasing;
mod phases;
mod queues;
mod ranking;
pub mod sample;
mod settings;
mod status;
mod writes;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::path::Path;

pub use crate::state::LocationCounts;
pub use api::{
    Ack, AckCall, AckCallOutcome, AckOutcome, AckResult, Idle, Lease, LeaseRequest, LeasedBatch,
    LeasedKey, LeasedKeyRef, WriteEvent, WriteReport,
};
pub use budget::Bandwidth;
pub use confidence::{Confidence, ConfidenceConfig};
pub use config::{SchedulerConfig, Versions};
pub use failures::{FAILING_KEYS_LISTED, FailingKey};
pub use follow::{IngestReport, LogFollower, Scan, ScannedFile, Unreadable};
pub use phases::Phase;
pub use queues::{Ranking, RankingInput, ReplacedLines};
pub use sample::{SampleConfig, SampleOf, SampleShares};
pub use status::{Counters, Gauges, Status, StatusExportError, TableStatus};

use crate::state::{KeyId, KeyRecord, Location, LocationMap, StateError};
pub use leasing::ANY_HOLDER;
use leasing::LiveLease;
use queues::{Plan, Plans, TableQueues, class_slot};
use settings::StoredSettings;

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("scheduler option `{field}` {problem}")]
    InvalidConfig {
        field: &'static str,
        problem: String,
    },

    #[error(transparent)]
    State(#[from] StateError),

    #[error(
        "candidates and decisions differ in length ({candidates} candidates, {decisions} decisions)"
    )]
    MismatchedDecisions { candidates: usize, decisions: usize },

    #[error("no lease {0} (it expired or was completed)")]
    UnknownLease(u64),

    #[error(
        "lease {lease} was taken before the service restarted at {}: a restart voids every lease; its keys not acknowledged are in line again, and copies acknowledged under it still count",
        crate::time::format_instant(*restarted_at_us)
    )]
    LeaseVoidedByRestart { lease: u64, restarted_at_us: i64 },

    #[error(
        "lease {0} was taken with another executor token: only its holder (or an admin) may extend or acknowledge it"
    )]
    LeaseHeldByAnother(u64),

    #[error("lease request: {0}")]
    InvalidRequest(String),

    #[error("stored setting `{name}` is unreadable ({value:?}): {problem}")]
    CorruptSetting {
        name: &'static str,
        value: String,
        problem: String,
    },
}

/// Bits of a lease id that say which opening of the scheduler took it.
const LEASE_EPOCH_BITS: u32 = 16;

/// The scheduler over a durable [`LocationMap`]. Not internally
/// synchronised: it has one owner (the service runs it on one thread driven
/// by messages; a simulation calls it directly).
pub struct Scheduler {
    config: SchedulerConfig,
    map: LocationMap,
    plans: Plans,
    queues: Vec<TableQueues>,
    /// Keys held back by a "not before" time or a failed copy's retry
    /// delay, earliest first.
    deferred: BinaryHeap<Reverse<(i64, KeyId)>>,
    /// Keys whose copies failed and are not copied since.
    failing: failures::FailingKeys,
    leases: HashMap<u64, LiveLease>,
    /// Lease expiry times with the order the leases were taken in (which
    /// breaks ties, so expiries replay alike) and their ids, earliest first
    /// (entries of finished leases are skipped when they come up).
    expiries: BinaryHeap<Reverse<(i64, u64, u64)>>,
    leases_taken: u64,
    /// Lease ids are drawn at random so that no caller can guess another's;
    /// their top [`LEASE_EPOCH_BITS`] are this opening's epoch (one more
    /// than the last opening's, stored), so that a lease from before a
    /// restart is told apart from one that ended.
    lease_ids: rand::rngs::StdRng,
    lease_epoch: u64,
    opened_at_us: i64,
    phase: Phase,
    paused: bool,
    bandwidth: Bandwidth,
    sample_drawn: bool,
    recent_writes: confidence::RecentWrites,
    /// (time, bytes, keys) of accepted copies in the last minute.
    copied: VecDeque<(i64, u64, u64)>,
    counters: status::Counters,
    /// Tallies over every key for the status and the confidence.
    census: census::Census,
    /// The confidence last measured, and when ([`advance`](Scheduler::advance)
    /// measures it at most once per `confidence.measure_every_us`).
    last_confidence: Option<(i64, f64)>,
    /// The key of each position of the candidates last scored, so that
    /// scoring the same candidates again (a new model or policy) skips the
    /// look-ups ([`KeyId::NONE`]: not known).
    candidate_ids: Vec<KeyId>,
    /// Which keys the last ranking predicted hot (see [`Ranking`]).
    hot_cut: Option<u64>,
    /// Counts rankings taken, so that an older one is never installed.
    ranking_generation: u64,
}

impl Scheduler {
    /// Opens (or creates) the location map at `path` and restores the
    /// phase, pause and budget stored there. Leases do not survive: every
    /// key not current is in line again.
    pub fn open(
        path: impl AsRef<Path>,
        config: SchedulerConfig,
        now_us: i64,
    ) -> Result<Self, SchedulerError> {
        Self::over(LocationMap::open(path)?, config, now_us)
    }

    /// A scheduler over a map held in memory only: what a simulation
    /// replays, with every rule of the durable one and none of its fsyncs.
    pub fn in_memory(config: SchedulerConfig, now_us: i64) -> Result<Self, SchedulerError> {
        Self::over(LocationMap::in_memory()?, config, now_us)
    }

    fn over(
        map: LocationMap,
        config: SchedulerConfig,
        now_us: i64,
    ) -> Result<Self, SchedulerError> {
        let config = config.check()?;
        let stored = StoredSettings::read(&map)?;
        let bandwidth = match stored.bandwidth {
            Some(stored_rate) => {
                if stored_rate != config.bandwidth_bytes_per_s {
                    tracing::warn!(
                        stored = ?stored_rate,
                        configured = ?config.bandwidth_bytes_per_s,
                        "the bandwidth budget stored by an operator's SetBandwidth differs from the configured one; the stored one applies (SetBandwidth changes it)"
                    );
                }
                stored_rate
            }
            None => config.bandwidth_bytes_per_s,
        };
        let mut scheduler = Scheduler {
            plans: Plans::unscored(map.len()),
            queues: Vec::new(),
            deferred: BinaryHeap::new(),
            failing: Default::default(),
            leases: HashMap::new(),
            expiries: BinaryHeap::new(),
            leases_taken: 0,
            lease_ids: rand::SeedableRng::from_os_rng(),
            lease_epoch: stored.lease_epoch.unwrap_or(0) % ((1 << LEASE_EPOCH_BITS) - 1) + 1,
            opened_at_us: now_us,
            phase: stored.phase,
            paused: stored.paused,
            bandwidth: Bandwidth::new(bandwidth, now_us),
            sample_drawn: stored.sample_drawn,
            recent_writes: Default::default(),
            copied: VecDeque::new(),
            counters: Default::default(),
            census: Default::default(),
            last_confidence: None,
            candidate_ids: Vec::new(),
            hot_cut: None,
            ranking_generation: 0,
            config,
            map,
        };
        scheduler
            .map
            .set_settings(&[(settings::LEASE_EPOCH, scheduler.lease_epoch.to_string())])?;
        scheduler.census = scheduler.count_every_key();
        scheduler.rebuild_queues();
        Ok(scheduler)
    }

    /// Hands commits to a writer thread from now on (see
    /// [`LocationMap::pipeline`]); the watch says when each is durable.
    pub fn pipeline(&mut self) -> crate::state::DurableWatch {
        self.map.pipeline()
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    pub fn map(&self) -> &LocationMap {
        &self.map
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Where (`table`, `key`) is, if tracked.
    pub fn location(&self, table: &str, key: &[u8]) -> Option<Location> {
        self.find(table, key)
            .map(|id| self.map.record(id).location())
    }

    /// Whether (`table`, `key`) is under a lease now.
    pub fn is_leased(&self, table: &str, key: &[u8]) -> bool {
        self.find(table, key)
            .is_some_and(|id| self.plans.leased(id))
    }

    fn find(&self, table: &str, key: &[u8]) -> Option<KeyId> {
        self.map.find(self.map.find_table(table)?, key)
    }

    /// Tracks (`table`, `key`) in memory (stored by the caller's next commit).
    fn track(&mut self, table: &str, key: &[u8], size: u64) -> Result<(KeyId, bool), StateError> {
        let table = self.map.table_id(table)?;
        self.track_in(table, key, size)
    }

    /// [`track`](Self::track) by table id.
    fn track_in(&mut self, table: u32, key: &[u8], size: u64) -> Result<(KeyId, bool), StateError> {
        let (id, new) = self.map.track(table, key, KeyRecord::new(size))?;
        if new {
            self.plans.push(Plan::UNSCORED);
            self.census.count(census::Standing::of(
                table,
                &self.map.record(id),
                &Plan::UNSCORED,
                false,
            ));
            while self.queues.len() <= table as usize {
                self.queues.push(TableQueues::default());
            }
            // Unscored, so last in its class until the next plan ranks it.
            self.queues[table as usize].fresh[class_slot(Plan::UNSCORED.class)]
                .order
                .push(id);
        }
        Ok((id, new))
    }
}
