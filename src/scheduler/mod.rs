//! Stage 5 — the scheduler.
//!
//! Takes: the policy stage's [`Candidates`] and [`Decisions`] (keys with
//! model scores, weights and hints) through [`Scheduler::plan`]; executors'
//! lease requests and acknowledgements; writes seen in new log files
//! ([`Scheduler::ingest_logs`]) or reported by executors and the shadowing
//! module ([`Scheduler::record_writes`]); operator commands (pause, resume,
//! bandwidth budget, force a phase).
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
//!   hold.
//! - Phases: SHADOWING leases only the shadow sample and the predicted-hot
//!   keys; BACKGROUND (when confidence reaches the threshold, when SHADOWING
//!   has copied all it may unless configured to hold, or by the operator)
//!   everything else; CUTOVER_READY when every key is current
//!   (a later write sends it back to BACKGROUND); DONE (operator) leases
//!   nothing.
//! - Versions are the source's write versions: the logs give the write's
//!   time in microseconds, executors report what they copied. An
//!   acknowledgement counts only if its version is at least the latest
//!   write seen for the key; otherwise the key stays stale and is offered
//!   again. Acknowledgements are idempotent and accepted whichever lease
//!   (if any, e.g. after a restart) the key was under.
//! - Nothing accepted is lost: every accepted ack and every write seen is
//!   committed to the [`LocationMap`] before the call returns; a lease that
//!   expires, or is voided by a restart, puts its keys back in line.

mod budget;
pub mod confidence;
mod follow;
pub mod sample;
mod status;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::path::Path;

use rayon::prelude::*;
use shadowcast_policy::abi::{FEATURE_NAMES, priority};

pub use crate::state::LocationCounts;
pub use budget::Bandwidth;
pub use confidence::{Confidence, ConfidenceConfig};
pub use follow::IngestReport;
pub use sample::{SampleConfig, SampleOf, SampleShares};
pub use status::{Counters, Gauges, Status, StatusExportError};

use crate::policy::{Candidates, Decisions};
use crate::state::{KeyId, KeyRecord, Location, LocationMap, StateError};
use crate::time::SECOND_US;

/// Bytes added to every key's size when ranking by benefit per byte: the
/// fixed cost of moving a row, so empty rows do not rank infinitely high.
const PER_KEY_OVERHEAD_BYTES: f64 = 64.0;

/// Priority classes, highest first.
const CLASSES: [u32; 4] = [
    priority::FIRST,
    priority::EARLY,
    priority::NORMAL,
    priority::LAST,
];

/// The class marking a key the policy excluded.
const EXCLUDED: u8 = u8::MAX;

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

    #[error("no lease {0} (it expired, was completed, or was voided by a restart)")]
    UnknownLease(u64),

    #[error("lease request: {0}")]
    InvalidRequest(String),
}

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
    pub sample: SampleConfig,
    pub confidence: ConfidenceConfig,
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
            sample: SampleConfig::default(),
            confidence: ConfidenceConfig::default(),
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

/// What an executor asks for.
#[derive(Clone, Debug, Default)]
pub struct LeaseRequest {
    pub max_keys: usize,
    pub max_bytes: u64,
    /// Only keys of these tables; all tables when empty.
    pub tables: Vec<String>,
}

/// One key handed out.
#[derive(Clone, Debug, PartialEq)]
pub struct LeasedKey {
    pub table: String,
    pub key: Vec<u8>,
    pub size_bytes: u64,
    pub priority: u32,
    /// The policy's preferred destination partition or tier (0: none).
    pub destination: u32,
    /// The copy must be at least this version to count.
    pub min_version: u64,
}

/// A batch of keys leased to one executor until `expires_us`.
#[derive(Clone, Debug, PartialEq)]
pub struct Lease {
    pub id: u64,
    pub expires_us: i64,
    pub keys: Vec<LeasedKey>,
}

/// Why a lease request got no keys.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Idle {
    Paused,
    /// The bandwidth budget is spent; some returns after this long.
    OverBudget {
        retry_after_us: i64,
    },
    /// Nothing eligible now; a "not before" time frees keys at this time.
    NothingDue {
        next_due_us: Option<i64>,
    },
    Done,
}

/// What an executor reports for one key.
#[derive(Clone, Debug, PartialEq)]
pub enum AckResult {
    Copied { version: u64 },
    Failed { reason: String },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Ack {
    pub table: String,
    pub key: Vec<u8>,
    pub result: AckResult,
}

/// The scheduler's answer for one acknowledged key.
#[derive(Clone, Debug, PartialEq)]
pub enum AckOutcome {
    /// The copy counts: the key is current in the destination.
    Accepted,
    /// The destination already held this version or a newer one.
    AlreadyCurrent,
    /// The copy is older than the latest write seen; the key stays stale
    /// and will be offered again.
    Stale {
        copied: u64,
        latest_write: u64,
    },
    /// The failure is recorded; the key is back in line.
    Requeued,
    /// A failure for a key this lease does not hold (ignored).
    NotLeased,
    UnknownKey,
}

/// A write to a key, from the logs, an executor or the shadowing module.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteEvent {
    pub table: String,
    pub key: Vec<u8>,
    pub version: u64,
    /// The row's size after the write, when known.
    pub size_bytes: Option<u64>,
}

/// What was seen of one key: from a log file, an executor or the shadowing
/// module.
struct Observed<'a> {
    table: &'a str,
    key: &'a [u8],
    size_bytes: Option<u64>,
    write_version: Option<u64>,
    /// Bytes written and when (the logs know; reported writes happen now).
    written: Option<(u64, i64)>,
    accesses: u64,
}

/// What [`Scheduler::record_writes`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WriteReport {
    pub new_keys: usize,
    /// Keys that were current in the destination and are now stale.
    pub made_stale: usize,
}

/// The scheduler's view of one key, beside the location map's record.
#[derive(Clone, Copy, Debug)]
struct Plan {
    /// Expected benefit per byte (0 until scored).
    benefit: f32,
    /// Predicted accesses in the horizon.
    expected: f32,
    /// Accesses observed (for the sample and the confidence).
    frequency: f32,
    /// Writes per hour.
    write_rate: f32,
    /// Priority class, or [`EXCLUDED`].
    class: u8,
    predicted_hot: bool,
    destination: u32,
    not_before_us: i64,
    /// The lease holding the key, 0 for none.
    lease: u64,
}

impl Plan {
    const UNSCORED: Plan = Plan {
        benefit: 0.0,
        expected: 0.0,
        frequency: 0.0,
        write_rate: 0.0,
        class: priority::NORMAL as u8,
        predicted_hot: false,
        destination: 0,
        not_before_us: 0,
        lease: 0,
    };
}

/// New work of one class and table, best first, and how far leasing got.
#[derive(Default)]
struct RankedQueue {
    order: Vec<KeyId>,
    cursor: usize,
}

/// Per table: keys to re-sync and new work, per class.
#[derive(Default)]
struct TableQueues {
    resync: [VecDeque<KeyId>; 4],
    fresh: [RankedQueue; 4],
}

struct LiveLease {
    keys: Vec<KeyId>,
    expires_us: i64,
}

const PHASE: &str = "phase";
const PAUSED: &str = "paused";
const BANDWIDTH: &str = "bandwidth_bytes_per_s";
const SAMPLE_DRAWN: &str = "sample_drawn";

/// The scheduler over a durable [`LocationMap`]. Not internally
/// synchronised: a service wraps it in a mutex (every method is short and
/// never waits on a client).
pub struct Scheduler {
    config: SchedulerConfig,
    map: LocationMap,
    plans: Vec<Plan>,
    queues: Vec<TableQueues>,
    /// Keys held back by a "not before" time, earliest first.
    deferred: BinaryHeap<Reverse<(i64, KeyId)>>,
    leases: HashMap<u64, LiveLease>,
    /// Lease expiry times, earliest first (entries of finished leases are
    /// skipped when they come up).
    expiries: BinaryHeap<Reverse<(i64, u64)>>,
    next_lease: u64,
    phase: Phase,
    paused: bool,
    bandwidth: Bandwidth,
    sample_drawn: bool,
    recent_writes: confidence::RecentWrites,
    /// (time, bytes, keys) of accepted copies in the last minute.
    copied: VecDeque<(i64, u64, u64)>,
    counters: status::Counters,
    /// The confidence last measured (by a tick in SHADOWING or a status).
    last_confidence: Option<f64>,
    /// SHADOWING found nothing left to lease and nothing under lease.
    shadow_copied: bool,
    /// When [`Scheduler::tick`] last ran (acknowledgements run it at most
    /// once a second: it scans every key).
    ticked_at_us: i64,
}

fn class_slot(class: u8) -> usize {
    CLASSES
        .iter()
        .position(|&c| c as u8 == class)
        .expect("a known class")
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
        let setting = |name: &str| -> Result<Option<serde_json::Value>, SchedulerError> {
            Ok(map
                .setting(name)?
                .and_then(|json| serde_json::from_str(&json).ok()))
        };
        let phase = setting(PHASE)?
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or(Phase::Shadowing);
        let paused = setting(PAUSED)?.and_then(|v| v.as_bool()).unwrap_or(false);
        let bandwidth = match setting(BANDWIDTH)? {
            Some(v) => v.as_u64(),
            None => config.bandwidth_bytes_per_s,
        };
        let sample_drawn = setting(SAMPLE_DRAWN)?
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let mut scheduler = Scheduler {
            plans: vec![Plan::UNSCORED; map.len()],
            queues: Vec::new(),
            deferred: BinaryHeap::new(),
            leases: HashMap::new(),
            expiries: BinaryHeap::new(),
            next_lease: 1,
            phase,
            paused,
            bandwidth: Bandwidth::new(bandwidth, now_us),
            sample_drawn,
            recent_writes: Default::default(),
            copied: VecDeque::new(),
            counters: Default::default(),
            ticked_at_us: now_us,
            last_confidence: None,
            shadow_copied: false,
            config,
            map,
        };
        scheduler.rebuild_queues();
        Ok(scheduler)
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
            .is_some_and(|id| self.plans[id.index()].lease != 0)
    }

    fn find(&self, table: &str, key: &[u8]) -> Option<KeyId> {
        self.map.find(self.map.find_table(table)?, key)
    }

    /// Tracks (`table`, `key`) in memory (stored by the caller's next commit).
    fn track(&mut self, table: &str, key: &[u8], size: u64) -> Result<(KeyId, bool), StateError> {
        let table = self.map.table_id(table)?;
        let (id, new) = self.map.track(table, key, KeyRecord::new(size))?;
        if new {
            self.plans.push(Plan::UNSCORED);
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

    /// Scores every candidate with the policy's decisions, registers new
    /// keys, draws the shadow sample (once), and re-ranks all work.
    pub fn plan(
        &mut self,
        candidates: &Candidates,
        decisions: &Decisions,
    ) -> Result<(), SchedulerError> {
        if candidates.len() != decisions.len() {
            return Err(SchedulerError::MismatchedDecisions {
                candidates: candidates.len(),
                decisions: decisions.len(),
            });
        }
        let feature = |name: &str| {
            FEATURE_NAMES
                .iter()
                .position(|f| *f == name)
                .and_then(|i| candidates.features.get(i))
                .filter(|column| column.len() == candidates.len())
        };
        let (frequency, write_rate) = (feature("events_7d"), feature("change_rate_per_h"));
        let mut new_keys = Vec::new();
        for i in 0..candidates.len() {
            let table = candidates.tables.name(candidates.table_ids[i]);
            let size = candidates.size_bytes[i];
            let (id, new) = self.track(table, candidates.key(i), size)?;
            if new {
                new_keys.push((id, self.map.record(id)));
            }
            let weight = decisions.weight[i];
            let expected = candidates.expected_accesses[i].max(0.0);
            let churn = candidates.churn[i].clamp(0.0, 1.0);
            let benefit = weight * expected * (1.0 - self.config.churn_penalty * churn)
                / (size as f64 + PER_KEY_OVERHEAD_BYTES);
            let plan = &mut self.plans[id.index()];
            plan.benefit = benefit as f32;
            plan.expected = expected as f32;
            if let Some(column) = frequency {
                plan.frequency = column[i].max(0.0) as f32;
            }
            if let Some(column) = write_rate {
                plan.write_rate = column[i].max(0.0) as f32;
            }
            plan.class = if weight > 0.0 {
                decisions.priority[i].min(priority::FIRST) as u8
            } else {
                EXCLUDED
            };
            plan.destination = decisions.destination[i];
            plan.not_before_us = decisions.not_before_us[i];
        }
        self.map.commit(&new_keys, &[])?;
        self.mark_predicted_hot();
        if !self.sample_drawn {
            self.draw_sample()?;
        }
        self.rebuild_queues();
        Ok(())
    }

    fn mark_predicted_hot(&mut self) {
        let wanted = (self.config.predicted_hot_share * self.plans.len() as f64).ceil() as usize;
        let mut by_expected: Vec<(f32, u32)> = self
            .plans
            .iter()
            .enumerate()
            .filter(|(_, p)| p.expected > 0.0)
            .map(|(i, p)| (p.expected, i as u32))
            .collect();
        let wanted = wanted.min(by_expected.len());
        if wanted > 0 && wanted < by_expected.len() {
            by_expected.select_nth_unstable_by(wanted - 1, |a, b| b.0.total_cmp(&a.0));
        }
        for plan in &mut self.plans {
            plan.predicted_hot = false;
        }
        for &(_, i) in &by_expected[..wanted] {
            self.plans[i as usize].predicted_hot = true;
        }
    }

    fn draw_sample(&mut self) -> Result<(), SchedulerError> {
        let ids: Vec<KeyId> = self.map.ids().collect();
        let items: Vec<sample::SampleItem> = ids
            .iter()
            .map(|&id| {
                let plan = &self.plans[id.index()];
                sample::SampleItem {
                    table: self.map.table_name(id),
                    key: self.map.key(id),
                    size_bytes: self.map.record(id).size_bytes,
                    frequency: plan.frequency as f64,
                    change_rate: plan.write_rate as f64,
                    predicted: plan.expected as f64,
                }
            })
            .collect();
        let drawn = sample::draw(&items, &self.config.sample);
        let changes: Vec<(KeyId, KeyRecord)> = drawn
            .into_iter()
            .map(|position| {
                let id = ids[position];
                let record = KeyRecord {
                    in_sample: true,
                    ..self.map.record(id)
                };
                (id, record)
            })
            .collect();
        self.map
            .commit(&changes, &[(SAMPLE_DRAWN, "true".to_string())])?;
        self.sample_drawn = true;
        Ok(())
    }

    /// Ranks all new work per (table, class), best benefit per byte first.
    /// Keys to re-sync keep their place in line.
    fn rebuild_queues(&mut self) {
        let tables = self.map.tables().len();
        self.queues.resize_with(tables, TableQueues::default);
        let mut buckets: Vec<[Vec<KeyId>; 4]> = (0..tables).map(|_| Default::default()).collect();
        for id in self.map.ids() {
            let plan = &self.plans[id.index()];
            if plan.class != EXCLUDED {
                buckets[self.map.table_of(id) as usize][class_slot(plan.class)].push(id);
            }
        }
        let plans = &self.plans;
        for (queues, lists) in self.queues.iter_mut().zip(buckets) {
            for (queue, mut order) in queues.fresh.iter_mut().zip(lists) {
                order.par_sort_unstable_by(|a, b| {
                    plans[b.index()]
                        .benefit
                        .total_cmp(&plans[a.index()].benefit)
                        .then(a.cmp(b))
                });
                *queue = RankedQueue { order, cursor: 0 };
            }
        }
    }

    /// Whether new work may go out in the current phase.
    fn phase_admits(&self, id: KeyId) -> bool {
        match self.phase {
            Phase::Shadowing => {
                self.map.record(id).in_sample || self.plans[id.index()].predicted_hot
            }
            Phase::Background => true,
            Phase::CutoverReady => self.map.record(id).location() == Location::Stale,
            Phase::Done => false,
        }
    }

    /// Whether `id` may be leased now; a key held by "not before" goes to
    /// the deferred heap.
    fn ready(&mut self, id: KeyId, now_us: i64) -> bool {
        let plan = self.plans[id.index()];
        if plan.lease != 0
            || plan.class == EXCLUDED
            || self.map.record(id).location() == Location::Current
        {
            return false;
        }
        if plan.not_before_us > now_us {
            self.deferred.push(Reverse((plan.not_before_us, id)));
            return false;
        }
        true
    }

    /// Puts a key that needs copying (again) at the front of its line.
    fn requeue(&mut self, id: KeyId) {
        let plan = self.plans[id.index()];
        if plan.class != EXCLUDED {
            self.queues[self.map.table_of(id) as usize].resync[class_slot(plan.class)]
                .push_back(id);
        }
    }

    /// Returns the keys of leases that expired by `now_us` to the line and
    /// releases keys whose "not before" time has come.
    fn release_due(&mut self, now_us: i64) {
        while let Some(&Reverse((expires, lease))) = self.expiries.peek() {
            if expires > now_us {
                break;
            }
            self.expiries.pop();
            let Some(live) = self.leases.get(&lease) else {
                continue;
            };
            if live.expires_us > now_us {
                // Extended since this entry was pushed.
                continue;
            }
            let live = self.leases.remove(&lease).expect("present");
            self.counters.redelivered += live.keys.len() as u64;
            for id in live.keys {
                if self.plans[id.index()].lease == lease {
                    self.plans[id.index()].lease = 0;
                    self.requeue(id);
                }
            }
        }
        while let Some(&Reverse((due, id))) = self.deferred.peek() {
            if due > now_us {
                break;
            }
            self.deferred.pop();
            self.requeue(id);
        }
    }

    /// The next key for `tables` in class slot `slot`: re-syncs first, then
    /// the best new work across tables.
    fn next_in_class(&mut self, slot: usize, tables: &[usize], now_us: i64) -> Option<KeyId> {
        for &table in tables {
            while let Some(id) = self.queues[table].resync[slot].pop_front() {
                if self.ready(id, now_us) {
                    return Some(id);
                }
            }
        }
        let mut best: Option<(f32, usize)> = None;
        for &table in tables {
            while let Some(&id) = {
                let queue = &self.queues[table].fresh[slot];
                queue.order.get(queue.cursor)
            } {
                if self.phase_admits(id) && self.ready(id, now_us) {
                    let benefit = self.plans[id.index()].benefit;
                    if best.is_none_or(|(b, _)| benefit > b) {
                        best = Some((benefit, table));
                    }
                    break;
                }
                self.queues[table].fresh[slot].cursor += 1;
            }
        }
        let (_, table) = best?;
        let queue = &mut self.queues[table].fresh[slot];
        let id = queue.order[queue.cursor];
        queue.cursor += 1;
        Some(id)
    }

    /// Leases up to the request's (and the configuration's) key and byte
    /// limits, within the bandwidth budget, or says why it cannot.
    pub fn lease(&mut self, request: &LeaseRequest, now_us: i64) -> Result<Lease, Idle> {
        self.release_due(now_us);
        if self.phase == Phase::Done {
            return Err(Idle::Done);
        }
        if self.paused {
            return Err(Idle::Paused);
        }
        let budget = self
            .bandwidth
            .available(now_us)
            .map_err(|retry_after_us| Idle::OverBudget { retry_after_us })?;
        let max_keys = request.max_keys.min(self.config.max_batch_keys).max(1);
        let max_bytes = request
            .max_bytes
            .min(self.config.max_batch_bytes)
            .min(budget)
            .max(1);
        let tables: Vec<usize> = if request.tables.is_empty() {
            (0..self.queues.len()).collect()
        } else {
            request
                .tables
                .iter()
                .filter_map(|name| self.map.find_table(name))
                .map(|id| id as usize)
                .collect()
        };
        let id = self.next_lease;
        let expires_us = now_us + self.config.lease_duration_us;
        let mut keys = Vec::new();
        let mut bytes = 0u64;
        'classes: for slot in 0..CLASSES.len() {
            while keys.len() < max_keys {
                let Some(key) = self.next_in_class(slot, &tables, now_us) else {
                    continue 'classes;
                };
                let size = self.map.record(key).size_bytes;
                if !keys.is_empty() && bytes + size > max_bytes {
                    // Too big for what is left of this batch: first in the next one.
                    self.queues[self.map.table_of(key) as usize].resync[slot].push_front(key);
                    break 'classes;
                }
                bytes += size;
                self.plans[key.index()].lease = id;
                keys.push(key);
            }
            break;
        }
        if keys.is_empty() {
            if self.phase == Phase::Shadowing && self.leases.is_empty() && self.deferred.is_empty()
            {
                self.shadow_copied = true;
            }
            let next_due_us = self.deferred.peek().map(|Reverse((due, _))| *due);
            return Err(Idle::NothingDue { next_due_us });
        }
        self.next_lease += 1;
        self.bandwidth.spend(bytes);
        self.counters.leased += keys.len() as u64;
        let leased = keys
            .iter()
            .map(|&key| {
                let plan = &self.plans[key.index()];
                let record = self.map.record(key);
                LeasedKey {
                    table: self.map.table_name(key).to_string(),
                    key: self.map.key(key).to_vec(),
                    size_bytes: record.size_bytes,
                    priority: CLASSES[class_slot(plan.class)],
                    destination: plan.destination,
                    min_version: record.latest_write,
                }
            })
            .collect();
        self.leases.insert(id, LiveLease { keys, expires_us });
        self.expiries.push(Reverse((expires_us, id)));
        Ok(Lease {
            id,
            expires_us,
            keys: leased,
        })
    }

    /// Extends a live lease by the lease duration from `now_us`.
    pub fn extend(&mut self, lease: u64, now_us: i64) -> Result<i64, SchedulerError> {
        self.release_due(now_us);
        let live = self
            .leases
            .get_mut(&lease)
            .ok_or(SchedulerError::UnknownLease(lease))?;
        live.expires_us = now_us + self.config.lease_duration_us;
        let expires = live.expires_us;
        self.expiries.push(Reverse((expires, lease)));
        Ok(expires)
    }

    /// Applies an executor's acknowledgements for keys of `lease` (which
    /// may have expired or been voided by a restart: copies are judged by
    /// their version alone). Accepted copies are durable when this returns.
    pub fn acknowledge(
        &mut self,
        lease: u64,
        acks: &[Ack],
        now_us: i64,
    ) -> Result<Vec<AckOutcome>, SchedulerError> {
        let mut outcomes = self.acknowledge_all(&[(lease, acks)], now_us)?;
        Ok(outcomes.pop().expect("one call, one answer"))
    }

    /// [`acknowledge`](Self::acknowledge) for several calls (lease, acks)
    /// in one durable commit, in order (a later call sees the earlier
    /// ones' copies): a service gathers the calls that arrive while a
    /// commit is under way. On error none of them is applied.
    pub fn acknowledge_all(
        &mut self,
        calls: &[(u64, &[Ack])],
        now_us: i64,
    ) -> Result<Vec<Vec<AckOutcome>>, SchedulerError> {
        self.release_due(now_us);
        let mut all_outcomes = Vec::with_capacity(calls.len());
        let mut changes: HashMap<KeyId, KeyRecord> = HashMap::new();
        let mut released = Vec::new();
        let mut accepted_bytes = 0u64;
        for &(lease, acks) in calls {
            let mut outcomes = Vec::with_capacity(acks.len());
            for ack in acks {
                let Some(id) = self.find(&ack.table, &ack.key) else {
                    outcomes.push(AckOutcome::UnknownKey);
                    continue;
                };
                let held_here = lease != 0 && self.plans[id.index()].lease == lease;
                let record = changes
                    .get(&id)
                    .copied()
                    .unwrap_or_else(|| self.map.record(id));
                let outcome = match &ack.result {
                    AckResult::Copied { version } => {
                        if *version < record.latest_write {
                            AckOutcome::Stale {
                                copied: *version,
                                latest_write: record.latest_write,
                            }
                        } else if record.copied_version.is_some_and(|c| c >= *version) {
                            AckOutcome::AlreadyCurrent
                        } else {
                            changes.insert(
                                id,
                                KeyRecord {
                                    copied_version: Some(*version),
                                    ..record
                                },
                            );
                            accepted_bytes += record.size_bytes;
                            AckOutcome::Accepted
                        }
                    }
                    AckResult::Failed { reason } => {
                        if held_here {
                            tracing::debug!(key = %self.map.describe(id), %reason, "copy failed; key back in line");
                            AckOutcome::Requeued
                        } else {
                            AckOutcome::NotLeased
                        }
                    }
                };
                if held_here {
                    released.push((id, lease));
                }
                outcomes.push(outcome);
            }
            all_outcomes.push(outcomes);
        }
        let changes: Vec<(KeyId, KeyRecord)> = changes.into_iter().collect();
        self.map.commit(&changes, &[])?;
        for (id, lease) in released {
            if self.plans[id.index()].lease != lease {
                continue;
            }
            self.plans[id.index()].lease = 0;
            if self.map.record(id).location() != Location::Current {
                self.requeue(id);
            }
        }
        for &(lease, _) in calls {
            if let Some(live) = self.leases.get_mut(&lease) {
                let plans = &self.plans;
                live.keys.retain(|id| plans[id.index()].lease == lease);
                if live.keys.is_empty() {
                    self.leases.remove(&lease);
                }
            }
        }
        for outcome in all_outcomes.iter().flatten() {
            match outcome {
                AckOutcome::Accepted => self.counters.accepted += 1,
                AckOutcome::AlreadyCurrent => self.counters.duplicates += 1,
                AckOutcome::Stale { .. } => self.counters.stale_acks += 1,
                AckOutcome::Requeued => self.counters.failures += 1,
                AckOutcome::NotLeased | AckOutcome::UnknownKey => {}
            }
        }
        if !changes.is_empty() {
            self.copied
                .push_back((now_us, accepted_bytes, changes.len() as u64));
        }
        if now_us - self.ticked_at_us >= SECOND_US {
            self.tick(now_us);
        }
        Ok(all_outcomes)
    }

    /// Records writes: the latest version per key rises, keys current in
    /// the destination become stale and go back in line ahead of new work,
    /// unknown keys are tracked. Durable when this returns.
    pub fn record_writes(
        &mut self,
        writes: &[WriteEvent],
        now_us: i64,
    ) -> Result<WriteReport, SchedulerError> {
        let observed: Vec<Observed> = writes
            .iter()
            .map(|write| Observed {
                table: &write.table,
                key: &write.key,
                size_bytes: write.size_bytes,
                write_version: Some(write.version),
                written: None,
                accesses: 0,
            })
            .collect();
        self.apply_observed(&observed, &[], now_us)
    }

    /// Applies what was seen of keys, and `settings`, in one commit.
    fn apply_observed(
        &mut self,
        observed: &[Observed],
        settings: &[(&str, String)],
        now_us: i64,
    ) -> Result<WriteReport, SchedulerError> {
        let mut report = WriteReport::default();
        let mut changes: HashMap<KeyId, KeyRecord> = HashMap::new();
        for seen in observed {
            let (id, new) = self.track(seen.table, seen.key, seen.size_bytes.unwrap_or(0))?;
            report.new_keys += usize::from(new);
            let before = self.map.record(id);
            let record = changes.entry(id).or_insert(before);
            if let Some(size) = seen.size_bytes {
                record.size_bytes = size;
            }
            if let Some(version) = seen.write_version {
                record.latest_write = record.latest_write.max(version);
                let (bytes, at_us) = seen.written.unwrap_or((record.size_bytes.max(1), now_us));
                self.recent_writes.add(bytes, at_us);
            }
            self.plans[id.index()].frequency += seen.accesses as f32;
            if !new && *record == before {
                changes.remove(&id);
            }
        }
        let changes: Vec<(KeyId, KeyRecord)> = changes.into_iter().collect();
        let was_current: Vec<bool> = changes
            .iter()
            .map(|(id, _)| self.map.record(*id).location() == Location::Current)
            .collect();
        self.map.commit(&changes, settings)?;
        for ((id, record), was_current) in changes.iter().zip(was_current) {
            if was_current && record.location() == Location::Stale {
                report.made_stale += 1;
                if self.plans[id.index()].lease == 0 {
                    self.requeue(*id);
                }
            }
        }
        if report.made_stale > 0 && self.phase == Phase::CutoverReady {
            self.set_phase(Phase::Background)?;
        }
        Ok(report)
    }

    /// Moves the phase on when its condition holds: SHADOWING to
    /// BACKGROUND at the confidence threshold, BACKGROUND to CUTOVER_READY
    /// when every key is current.
    pub fn tick(&mut self, now_us: i64) {
        self.ticked_at_us = now_us;
        self.release_due(now_us);
        self.copied
            .retain(|&(at, _, _)| at > now_us - 60 * SECOND_US);
        let next = match self.phase {
            Phase::Shadowing => {
                let confident = self.confidence(now_us).value >= self.config.confidence.threshold;
                let copied = self.shadow_copied && self.config.background_when_shadow_copied;
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
    }

    /// Whether every tracked key is current in the destination (no scan).
    pub fn all_current(&self) -> bool {
        self.map.totals(Location::Current).keys == self.map.len() as u64
    }

    fn set_phase(&mut self, phase: Phase) -> Result<(), SchedulerError> {
        if phase == self.phase {
            return Ok(());
        }
        self.map
            .set_settings(&[(PHASE, serde_json::to_string(&phase).expect("phase"))])?;
        tracing::info!(from = %self.phase, to = %phase, "migration phase");
        self.phase = phase;
        self.shadow_copied = false;
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

    /// Measures the migration confidence now (scans every key).
    pub fn confidence(&mut self, now_us: i64) -> Confidence {
        let confidence = confidence::measure(
            self.map.ids().map(|id| {
                let plan = &self.plans[id.index()];
                let record = self.map.record(id);
                (
                    confidence::KeyProfile {
                        table: self.map.table_of(id),
                        size_bytes: record.size_bytes,
                        frequency: plan.frequency as f64,
                        write_rate: plan.write_rate as f64,
                    },
                    record.location() == Location::Current,
                )
            }),
            self.recent_writes.at(now_us),
            &self.config.confidence,
        );
        self.last_confidence = Some(confidence.value);
        confidence
    }
}
