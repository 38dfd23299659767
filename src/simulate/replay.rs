//! One migration replayed through the real scheduler: the application's
//! traffic on one side, an executor that copies what it is leased within
//! the bandwidth budget on the other, the location map in between.
//!
//! The rules, step by step (each step is `Timeline::step_us` long, and
//! cutover falls on a step boundary):
//! 1. The step's events, in time order. Before cutover the application
//!    writes to the source: each write is reported to the scheduler (as a
//!    shadowing module would), and a write to a key current in the
//!    destination wastes that copy. After cutover it reads and writes the
//!    destination: a read of a key not current there is a miss (served by
//!    the source); a write lands in the destination, which then holds the
//!    key at that version (acknowledged as such).
//! 2. The executor leases batches from the scheduler as the budget allows
//!    (waiting out `OverBudget`), copies each key at the version it was
//!    leased at, and acknowledges them all at the end of the step: a copy
//!    takes effect for reads from the next step on.
//! 3. At the end of every step the scheduler's own `advance` runs on the
//!    simulated clock, as the service's timer runs it: phases move on
//!    (SHADOWING to BACKGROUND once its keys are copied or the confidence
//!    reaches the threshold), expired leases return, confidence is measured.
//! 4. At cutover the budget changes to the background rate and the
//!    migration is moved to BACKGROUND (everything else moves).

use std::collections::{HashMap, HashSet};

use crate::logs::Op;
use crate::policy::{Candidates, Decisions};
use crate::scheduler::{
    Ack, AckCall, AckOutcome, AckResult, Idle, LeaseRequest, LocationCounts, Phase, Scheduler,
    SchedulerConfig, SchedulerError, WriteEvent,
};
use crate::state::Location;

use super::Timeline;
use super::traffic::Traffic;

/// Once the traffic is over only copying goes on, in steps this many
/// times longer.
const IDLE_STEP_FACTOR: i64 = 10;

/// How many times the confidence is measured over the window (it scans
/// every key), which sets how precisely the time it reached the threshold
/// is known.
const CONFIDENCE_CHECKS: i64 = 60;

/// Reads after cutover, and how many the destination served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Reads {
    pub reads: u64,
    pub served: u64,
    pub bytes: u64,
    pub bytes_served: u64,
}

impl Reads {
    fn add(&mut self, bytes: u64, served: bool) {
        self.reads += 1;
        self.bytes += bytes;
        if served {
            self.served += 1;
            self.bytes_served += bytes;
        }
    }

    /// Share of reads the destination served (`NaN` without reads).
    pub fn share(&self) -> f64 {
        self.served as f64 / self.reads as f64
    }

    /// Share of bytes read that the destination served.
    pub fn bytes_share(&self) -> f64 {
        self.bytes_served as f64 / self.bytes as f64
    }
}

/// What one replay measured. Times are microseconds after the window's
/// start.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figures {
    /// Reads in (cutover, end].
    pub after_cutover: Reads,
    /// The same, per [`Timeline::bucket_us`] after cutover.
    pub over_time: Vec<Reads>,
    /// Accepted copies before cutover (re-syncs included).
    pub copied_before_cutover: LocationCounts,
    /// All accepted copies, until the migration completed or gave up.
    pub copied: LocationCounts,
    /// Copies made obsolete by a write to the source before cutover.
    pub wasted: LocationCounts,
    /// Keys not current in the destination at cutover.
    pub left_at_cutover: LocationCounts,
    pub confidence_reached_us: Option<i64>,
    pub complete_us: Option<i64>,
}

/// How the migration is run, apart from what is planned.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    pub timeline: Timeline,
    pub scheduler: SchedulerConfig,
    /// Budget before cutover, bytes/s; 0 moves nothing.
    pub rate_before: u64,
    /// Budget from cutover on, bytes/s (at least 1).
    pub rate_after: u64,
    /// Start in BACKGROUND: the order alone decides (no shadow phase).
    pub plain_order: bool,
    /// Stop waiting for the migration to complete here.
    pub give_up_us: i64,
}

/// Replays `traffic` through a fresh in-memory scheduler planned with
/// `planned` (candidates and decisions); at each of `replans` (times) the
/// scheduler is planned again with `replan(index)`, at the first step
/// boundary at or after it, as a service re-planning while serving.
pub fn replay(
    traffic: &Traffic,
    run: &Run,
    planned: (&Candidates, &Decisions),
    replans: &[i64],
    replan: &dyn Fn(usize) -> (Candidates, Decisions),
) -> Result<Figures, SchedulerError> {
    let (candidates, decisions) = planned;
    let timeline = run.timeline;
    let config = SchedulerConfig {
        // Copies are acknowledged at the end of their step: leases outlive
        // the longest one.
        lease_duration_us: run
            .scheduler
            .lease_duration_us
            .max(2 * IDLE_STEP_FACTOR * timeline.step_us),
        confidence_every_us: (timeline.window_us() / CONFIDENCE_CHECKS).max(1),
        ..run.scheduler
    };
    let mut scheduler = Scheduler::in_memory(config, timeline.start_us)?;
    scheduler.plan(candidates, decisions)?;
    if run.plain_order {
        scheduler.force_phase(Phase::Background)?;
    }
    set_rate(&mut scheduler, run.rate_before, timeline.start_us)?;
    let mut replay = Replayer {
        traffic,
        timeline,
        scheduler,
        threshold: config.confidence.threshold,
        figures: Figures {
            over_time: vec![Reads::default(); timeline.buckets()],
            ..Figures::default()
        },
        next_event: 0,
    };
    let mut t = timeline.start_us;
    let mut next_replan = 0;
    while t < run.give_up_us {
        while replans.get(next_replan).is_some_and(|&at| at <= t) {
            let (candidates, decisions) = replan(next_replan);
            replay.scheduler.plan(&candidates, &decisions)?;
            next_replan += 1;
        }
        if t == timeline.cutover_us {
            replay.cut_over(run.rate_after)?;
        }
        let step = if t >= timeline.end_us {
            IDLE_STEP_FACTOR * timeline.step_us
        } else {
            timeline.step_us
        };
        let next = if t < timeline.cutover_us {
            (t + step).min(timeline.cutover_us)
        } else {
            t + step
        };
        replay.apply_traffic(next)?;
        replay.copy_until(t, next)?;
        replay.scheduler.advance(next);
        if replay.figures.complete_us.is_none()
            && !replay.scheduler.map().is_empty()
            && replay.scheduler.all_current()
        {
            replay.figures.complete_us = Some(next - timeline.start_us);
        }
        if replay.figures.confidence_reached_us.is_none()
            && replay.confidence_now(next) >= replay.threshold
        {
            replay.figures.confidence_reached_us = Some(next - timeline.start_us);
        }
        t = next;
        let figures = &replay.figures;
        if t >= timeline.end_us
            && figures.complete_us.is_some()
            && figures.confidence_reached_us.is_some()
        {
            break;
        }
    }
    Ok(replay.figures)
}

fn set_rate(scheduler: &mut Scheduler, rate: u64, now_us: i64) -> Result<(), SchedulerError> {
    if rate == 0 {
        scheduler.pause()
    } else {
        scheduler.resume()?;
        scheduler.set_bandwidth(Some(rate), now_us)
    }
}

/// The size of (`table`, `key`) when it is current in the destination.
fn current_size(scheduler: &Scheduler, table: &str, key: &[u8]) -> Option<u64> {
    let map = scheduler.map();
    let record = map.record(map.find(map.find_table(table)?, key)?);
    (record.location() == Location::Current).then_some(record.size_bytes)
}

struct Replayer<'a> {
    traffic: &'a Traffic,
    timeline: Timeline,
    scheduler: Scheduler,
    threshold: f64,
    figures: Figures,
    next_event: usize,
}

impl Replayer<'_> {
    /// The confidence as last measured: by `advance` in SHADOWING, and
    /// here after it ([`CONFIDENCE_CHECKS`] times over the window before
    /// cutover, ten times less often after), so the report says when the
    /// threshold was reached whatever the phase.
    fn confidence_now(&mut self, now_us: i64) -> f64 {
        let interval = self.timeline.window_us() / CONFIDENCE_CHECKS;
        let every = if now_us <= self.timeline.cutover_us {
            interval
        } else {
            10 * interval
        };
        match self.scheduler.last_confidence() {
            Some((at, value)) if now_us - at < every => value,
            _ => self.scheduler.confidence(now_us).value,
        }
    }

    fn cut_over(&mut self, rate_after: u64) -> Result<(), SchedulerError> {
        let gauges = self.scheduler.gauges();
        self.figures.left_at_cutover = LocationCounts {
            keys: gauges.source_only.keys + gauges.stale.keys,
            bytes: gauges.source_only.bytes + gauges.stale.bytes,
        };
        self.figures.copied_before_cutover = self.figures.copied;
        set_rate(
            &mut self.scheduler,
            rate_after.max(1),
            self.timeline.cutover_us,
        )?;
        if self.scheduler.phase() == Phase::Shadowing {
            self.scheduler.force_phase(Phase::Background)?;
        }
        Ok(())
    }

    /// The application's events up to `until`.
    fn apply_traffic(&mut self, until: i64) -> Result<(), SchedulerError> {
        let timeline = self.timeline;
        let mut writes = Vec::new();
        let mut landed: Vec<Option<Ack>> = Vec::new();
        let mut landed_at: HashMap<u32, usize> = HashMap::new();
        let mut wasted_keys = HashSet::new();
        let events = &self.traffic.events;
        while let Some(event) = events.get(self.next_event).filter(|e| e.ts <= until) {
            self.next_event += 1;
            let table = self.traffic.table_name(event.key);
            let key = self.traffic.key(event.key);
            let after_cutover = event.ts > timeline.cutover_us;
            if event.op == Op::Read {
                if after_cutover && event.ts <= timeline.end_us {
                    let served = current_size(&self.scheduler, table, key).is_some();
                    self.figures.after_cutover.add(event.size_bytes, served);
                    self.figures.over_time[timeline.bucket_of(event.ts)]
                        .add(event.size_bytes, served);
                }
                continue;
            }
            let version = event.ts as u64;
            if after_cutover {
                // Only the key's last write of the step needs acknowledging.
                if let Some(earlier) = landed_at.insert(event.key, landed.len()) {
                    landed[earlier] = None;
                }
                landed.push(Some(Ack {
                    table: table.into(),
                    key: prost::bytes::Bytes::copy_from_slice(key),
                    result: AckResult::Copied { version },
                }));
            } else if let Some(size) = current_size(&self.scheduler, table, key)
                && wasted_keys.insert(event.key)
            {
                self.figures.wasted.add(size);
            }
            writes.push(WriteEvent {
                table: table.to_string(),
                key: key.to_vec(),
                version,
                size_bytes: Some(event.size_bytes),
            });
        }
        self.scheduler.record_writes(&writes, until)?;
        let landed: Vec<Ack> = landed.into_iter().flatten().collect();
        if !landed.is_empty() {
            self.scheduler.acknowledge(0, &landed, until)?;
        }
        Ok(())
    }

    /// Leases and copies from `from` to `until` within the budget, and
    /// acknowledges every copy at `until`.
    fn copy_until(&mut self, from: i64, until: i64) -> Result<(), SchedulerError> {
        let request = LeaseRequest {
            max_keys: usize::MAX,
            max_bytes: u64::MAX,
            tables: Vec::new(),
        };
        let mut leases: Vec<(u64, Vec<Ack>, Vec<u64>)> = Vec::new();
        let mut now = from;
        while now < until {
            match self.scheduler.lease(&request, now) {
                Ok(lease) => {
                    let sizes = lease.keys.iter().map(|k| k.size_bytes).collect();
                    let acks = lease
                        .keys
                        .into_iter()
                        .map(|k| Ack {
                            table: k.table.into(),
                            key: k.key.into(),
                            result: AckResult::Copied {
                                version: k.min_version,
                            },
                        })
                        .collect();
                    leases.push((lease.id, acks, sizes));
                }
                Err(Idle::OverBudget { retry_after_us }) => now += retry_after_us.max(1),
                Err(_) => break,
            }
        }
        if leases.is_empty() {
            return Ok(());
        }
        let calls: Vec<AckCall> = leases
            .iter()
            .map(|(id, acks, _)| AckCall {
                lease: *id,
                acks,
                others_copied_at_leased_version: false,
            })
            .collect();
        let outcomes = self.scheduler.acknowledge_all(&calls, until)?;
        for ((_, _, sizes), outcome) in leases.iter().zip(outcomes) {
            for (size, judged) in sizes.iter().zip(outcome?.acks) {
                if judged == AckOutcome::Accepted {
                    self.figures.copied.add(*size);
                }
            }
        }
        Ok(())
    }
}
