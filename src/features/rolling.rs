//! Features kept up to date as logs arrive: the key states of the files
//! already read are moved to the new cut-off, and only the new files are
//! read, instead of scanning every file again for each plan.
//!
//! Takes: the followed logs, a cut-off that moves on (or stays), the horizon.
//! Gives: the [`KeyStates`] as of the cut-off, or nothing when neither the
//! files nor the cut-off changed.
//! Guarantees: the states equal those of a full scan at the new cut-off:
//! counts exactly, decayed counters up to floating-point rounding. The
//! events the states lack are read: the new files' up to the cut-off, and
//! those of files read before that lie between the old cut-off and the new
//! (found by the files' statistics, so a folder that only grows costs
//! nothing here). Where rolling forward cannot be exact (a file read before
//! changed or went away, the cut-off moved back, another horizon), every
//! file is read again, and so when the history kept for rolling would pass
//! [`HISTORY_EVENT_LIMIT`].
//!
//! How each feature moves from cut-off T to T' > T without the old events:
//! sums, counts, extremes and the latest times do not depend on the
//! cut-off; a decayed counter is multiplied by `exp(-ln 2 * (T' - T) / h)`;
//! window counts are counted again from the events young enough to be in
//! any window ([`CutOff::window_span`], kept per shard); the count of
//! events whose time of day falls in the 6 hours after the cut-off's loses
//! the events in the stretch of day the window left and gains those in
//! the stretch it entered (every event's time of day is kept, by quarter
//! hour).

use std::collections::HashMap;
use std::path::PathBuf;

use rayon::prelude::*;

use super::compute::{KeyStates, Scanned};
use super::state::{CutOff, DecayShift, KeyState, TOD_BUCKET_US, time_of_day};
use crate::export::{FileStamp, file_stamp};
use crate::logs::{LogError, LogSource, Op, ScanPlan, TimeRange};
use crate::time::{DAY_US, MINUTE_US};

/// Events whose history is kept for rolling forward (24 bytes each at
/// most: 8 for the time of day, 16 while young enough for a window).
/// Past it, every plan reads every file again.
pub const HISTORY_EVENT_LIMIT: u64 = 64_000_000;

const QUARTER_US: i64 = 15 * MINUTE_US;
const QUARTERS: usize = (DAY_US / QUARTER_US) as usize;

/// What moving a shard's states to a later cut-off needs beyond the
/// states themselves.
pub(crate) struct History {
    /// Events still young enough to count in a window.
    recent: Vec<RecentEvent>,
    /// Every event's key and time of day, by quarter hour of the day.
    by_quarter: Vec<Vec<TimeOfDay>>,
}

#[derive(Clone, Copy)]
struct RecentEvent {
    ts: i64,
    slot: u32,
    write: bool,
}

#[derive(Clone, Copy)]
struct TimeOfDay {
    slot: u32,
    /// Microseconds into its quarter hour.
    into_quarter: u32,
}

impl History {
    pub fn new() -> Self {
        History {
            recent: Vec::new(),
            by_quarter: vec![Vec::new(); QUARTERS],
        }
    }

    /// Events recorded.
    fn events(&self) -> u64 {
        self.by_quarter
            .iter()
            .map(|quarter| quarter.len() as u64)
            .sum()
    }

    /// Keeps what the event at `ts` of the key in `slot` (added to its
    /// state at `cut`) will count for at later cut-offs.
    #[inline]
    pub fn record(&mut self, cut: &CutOff, slot: u32, ts: i64, op: Op) {
        if cut.as_of - ts < cut.window_span {
            self.recent.push(RecentEvent {
                ts,
                slot,
                write: op != Op::Read,
            });
        }
        let tod = time_of_day(ts);
        self.by_quarter[(tod / QUARTER_US) as usize].push(TimeOfDay {
            slot,
            into_quarter: (tod % QUARTER_US) as u32,
        });
    }

    /// Moves `states` (by slot) from cut-off `from` to the later `to`, on
    /// the same horizon.
    pub fn roll(&mut self, states: &mut [KeyState], from: &CutOff, to: &CutOff) {
        debug_assert!(to.as_of >= from.as_of && to.horizon == from.horizon);
        let shift = DecayShift::new(to.horizon, to.as_of - from.as_of);
        for state in states.iter_mut() {
            state.decay_by(&shift);
            state.clear_windows();
        }
        self.recent
            .retain(|event| to.as_of - event.ts < to.window_span);
        for event in &self.recent {
            states[event.slot as usize].count_in_windows(to, to.as_of - event.ts, event.write);
        }
        let moved = (to.as_of_tod - from.as_of_tod).rem_euclid(DAY_US);
        if moved < TOD_BUCKET_US {
            // The window [c, c + 6h) becomes [c + moved, c + 6h + moved).
            self.for_each_between(from.as_of_tod, moved, |slot| {
                states[slot].tod_next_6h -= 1;
            });
            self.for_each_between(from.as_of_tod + TOD_BUCKET_US, moved, |slot| {
                states[slot].tod_next_6h += 1;
            });
        } else {
            for state in states.iter_mut() {
                state.tod_next_6h = 0;
            }
            self.for_each_between(to.as_of_tod, TOD_BUCKET_US, |slot| {
                states[slot].tod_next_6h += 1;
            });
        }
    }

    /// Calls `each` with the slot of every event whose time of day is in
    /// `[start, start + length)`, around midnight if need be (`length`
    /// under a day).
    fn for_each_between(&self, start: i64, length: i64, mut each: impl FnMut(usize)) {
        let start = time_of_day(start);
        let end = start + length;
        self.for_each_within(start, end.min(DAY_US), &mut each);
        if end > DAY_US {
            self.for_each_within(0, end - DAY_US, &mut each);
        }
    }

    /// `for_each_between` within one day: `0 <= start <= end <= DAY_US`.
    fn for_each_within(&self, start: i64, end: i64, each: &mut impl FnMut(usize)) {
        if start >= end {
            return;
        }
        let (first, last) = (
            (start / QUARTER_US) as usize,
            ((end - 1) / QUARTER_US) as usize,
        );
        for quarter in first..=last {
            let base = quarter as i64 * QUARTER_US;
            for entry in &self.by_quarter[quarter] {
                let tod = base + i64::from(entry.into_quarter);
                if (start..end).contains(&tod) {
                    each(entry.slot as usize);
                }
            }
        }
    }
}

/// The key states of a log folder, kept between plans to be rolled forward.
#[derive(Default)]
pub struct RollingFeatures {
    kept: Option<Kept>,
}

struct Kept {
    scanned: Scanned,
    /// The files whose events up to the cut-off are in the states, as they
    /// looked before they were read.
    absorbed: HashMap<PathBuf, Option<FileStamp>>,
    /// The latest event in those files, by their statistics (`i64::MAX`
    /// when unknown).
    absorbed_through: i64,
}

/// Fresh key states, and whether they were rolled forward (`false`: every
/// file was read).
pub struct Refresh {
    pub states: KeyStates,
    pub rolled: bool,
}

impl RollingFeatures {
    /// The key states of `source` as of `as_of` on the horizon `horizon`;
    /// `None` when nothing changed since the last call.
    pub fn advance(
        &mut self,
        source: &LogSource,
        as_of: i64,
        horizon: i64,
    ) -> Result<Option<Refresh>, LogError> {
        let stamps: Vec<(PathBuf, Option<FileStamp>)> = source
            .paths()
            .map(|path| (path.to_path_buf(), file_stamp(path)))
            .collect();
        let cut = CutOff::new(as_of, horizon);
        if let Some(kept) = &mut self.kept {
            match kept.why_not_roll(&cut, &stamps) {
                None => return self.roll(source, cut, stamps),
                Some(reason) => {
                    tracing::info!(reason, "reading every log file again");
                    self.kept = None;
                }
            }
        }
        let plan = source.plan(TimeRange {
            start: None,
            end: Some(as_of),
        })?;
        let keep_history = plan.stats().rows_planned <= HISTORY_EVENT_LIMIT;
        let mut scanned = Scanned::empty(cut, keep_history);
        scanned.add(&plan, &|_| {})?;
        if !keep_history {
            return Ok(Some(Refresh {
                states: KeyStates::sort(scanned),
                rolled: false,
            }));
        }
        let states = KeyStates::sorted_copy(&scanned);
        self.kept = Some(Kept {
            scanned,
            absorbed: stamps.into_iter().collect(),
            absorbed_through: latest_event(&plan),
        });
        Ok(Some(Refresh {
            states,
            rolled: false,
        }))
    }

    /// Moves the kept states to `cut` and adds the events they lack: the
    /// files not read yet, and the events of those read before that the
    /// cut-off moved past. Returns `None` when there is nothing new.
    fn roll(
        &mut self,
        source: &LogSource,
        cut: CutOff,
        stamps: Vec<(PathBuf, Option<FileStamp>)>,
    ) -> Result<Option<Refresh>, LogError> {
        let kept = self.kept.as_mut().expect("rolling kept states");
        let fresh: HashMap<PathBuf, Option<FileStamp>> = stamps
            .into_iter()
            .filter(|(path, _)| !kept.absorbed.contains_key(path))
            .collect();
        if fresh.is_empty() && cut.as_of == kept.scanned.scan.cut.as_of {
            return Ok(None);
        }
        if let Err(error) = kept.read_on(source, cut, fresh) {
            // Part of the events may be in the states: start again next time.
            self.kept = None;
            return Err(error);
        }
        let states = KeyStates::sorted_copy(&kept.scanned);
        let kept_events: u64 = kept
            .scanned
            .shards
            .iter()
            .filter_map(|shard| shard.history.as_ref())
            .map(History::events)
            .sum();
        if kept_events > HISTORY_EVENT_LIMIT {
            tracing::info!(
                events = kept_events,
                "the history kept for rolling features forward passed its limit; every plan reads every file from now on"
            );
            self.kept = None;
        }
        Ok(Some(Refresh {
            states,
            rolled: true,
        }))
    }
}

impl Kept {
    /// See [`RollingFeatures::roll`].
    fn read_on(
        &mut self,
        source: &LogSource,
        cut: CutOff,
        fresh: HashMap<PathBuf, Option<FileStamp>>,
    ) -> Result<(), LogError> {
        let from = self.scanned.scan.cut;
        self.scanned.shards.par_iter_mut().for_each(|shard| {
            if let Some(history) = &mut shard.history {
                history.roll(&mut shard.states, &from, &cut);
            }
        });
        self.scanned.scan.cut = cut;
        if cut.as_of > from.as_of
            && self.absorbed_through > from.as_of
            && let Some(read) = source.only(|path| self.absorbed.contains_key(path))
        {
            let passed = TimeRange {
                start: Some(from.as_of + 1),
                end: Some(cut.as_of),
            };
            self.add(&read, passed)?;
        }
        if let Some(arrived) = source.only(|path| fresh.contains_key(path)) {
            if !self.add(&arrived, TimeRange::until(cut.as_of))? {
                // Every event of the new files is after the cut-off: read
                // when the cut-off moves past them.
                self.absorbed_through = i64::MAX;
            }
            self.absorbed.extend(fresh);
        }
        Ok(())
    }

    /// Adds the events of `files` in `range` to the states; `false` when
    /// there were none.
    fn add(&mut self, files: &LogSource, range: TimeRange) -> Result<bool, LogError> {
        let plan = match files.plan(range) {
            Ok(plan) => plan,
            Err(LogError::NothingInRange { .. }) => return Ok(false),
            Err(error) => return Err(error),
        };
        self.scanned.add(&plan, &|_| {})?;
        self.absorbed_through = self.absorbed_through.max(latest_event(&plan));
        Ok(true)
    }

    /// Why the kept states cannot be rolled forward to `cut` over the
    /// files of `stamps`; `None` when they can.
    fn why_not_roll(
        &self,
        cut: &CutOff,
        stamps: &[(PathBuf, Option<FileStamp>)],
    ) -> Option<&'static str> {
        let kept_cut = self.scanned.scan.cut;
        if cut.horizon != kept_cut.horizon {
            return Some("the horizon changed");
        }
        if cut.as_of < kept_cut.as_of {
            return Some("the cut-off moved back");
        }
        let now: HashMap<&PathBuf, &Option<FileStamp>> =
            stamps.iter().map(|(path, stamp)| (path, stamp)).collect();
        let unchanged = self
            .absorbed
            .iter()
            .all(|(path, stamp)| stamp.is_some() && now.get(path).is_some_and(|now| *now == stamp));
        if !unchanged {
            return Some("a log file read before changed or went away");
        }
        None
    }
}

/// The latest event in the files of `plan`, by their statistics; without
/// statistics, any of them may hold events as late as can be.
fn latest_event(plan: &ScanPlan) -> i64 {
    plan.stats().data_span.map_or(i64::MAX, |(_, last)| last)
}
