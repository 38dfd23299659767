//! Per-key aggregate state. Every field is a sum, a count, a min or a max
//! (or a lexicographic max of a pair, or the top of a multiset), so a key's
//! state is the same whatever order its events arrive in: the scan reads
//! files and row groups in any order, on every core, into one state per
//! key, and the SQL in `sql/` computes the same with GROUP BY.

use super::definition::{
    DECAY_HALF_LIVES, GAPS, HORIZON_HALF_LIVES, HORIZON_WINDOWS, SIZE_CAP, WINDOWS,
};
use std::sync::Arc;

use crate::logs::{NO_TENANT, Op};
use crate::time::{DAY_US, HOUR_US};

const LN_2: f64 = std::f64::consts::LN_2;
const WEEK_US: i64 = 7 * DAY_US;
pub(crate) const TOD_BUCKET_US: i64 = 6 * HOUR_US;

/// Quantities that depend only on the cut-off, computed once per scan.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CutOff {
    pub as_of: i64,
    /// The horizon H the features on its time scale are measured in.
    pub horizon: i64,
    /// Time of day of the cut-off, to find events in the 6 hours after it.
    pub as_of_tod: i64,
    /// How long before the cut-off an event may be and still count in a
    /// window (fixed, or on the horizon's scale): an event older than this
    /// counts in none, at this cut-off or any later one.
    pub window_span: i64,
}

impl CutOff {
    pub fn new(as_of: i64, horizon: i64) -> Self {
        assert!(horizon > 0, "a horizon is positive");
        CutOff {
            as_of,
            horizon,
            as_of_tod: time_of_day(as_of),
            window_span: window_span(horizon),
        }
    }

    /// Whether a time of day is in the 6 hours after the cut-off's.
    #[inline]
    pub fn in_next_6h(&self, tod: i64) -> bool {
        (tod - self.as_of_tod).rem_euclid(DAY_US) < TOD_BUCKET_US
    }
}

/// See [`CutOff::window_span`].
fn window_span(horizon: i64) -> i64 {
    let fixed = WINDOWS
        .iter()
        .map(|&(_, window)| window)
        .chain([WEEK_US])
        .max()
        .unwrap_or(WEEK_US);
    HORIZON_WINDOWS
        .iter()
        .map(|&(_, numerator, denominator)| {
            let (product, denominator) = (
                i128::from(horizon) * i128::from(numerator),
                i128::from(denominator),
            );
            let span = (product + denominator - 1) / denominator;
            i64::try_from(span).unwrap_or(i64::MAX)
        })
        .fold(fixed, i64::max)
}

/// The factors that move decayed counters `shift` microseconds on.
pub(crate) struct DecayShift {
    fixed: [f64; DECAY_HALF_LIVES.len()],
    horizon: [f64; HORIZON_HALF_LIVES.len()],
}

impl DecayShift {
    pub fn new(horizon: i64, shift: i64) -> Self {
        DecayShift {
            fixed: DECAY_HALF_LIVES.map(|(_, half_life)| decay_weight(shift, half_life as f64)),
            horizon: HORIZON_HALF_LIVES
                .map(|(_, multiple)| decay_weight(shift, horizon as f64 * multiple)),
        }
    }
}

/// What an event `age` microseconds old adds to a counter decaying with
/// `half_life`: also the factor that moves such a counter `age` on.
#[inline]
fn decay_weight(age: i64, half_life: f64) -> f64 {
    (-LN_2 * age as f64 / half_life).exp()
}

/// Microseconds since midnight UTC.
pub(crate) fn time_of_day(ts: i64) -> i64 {
    ts.rem_euclid(DAY_US)
}

#[derive(Clone, Debug)]
pub(crate) struct KeyState {
    pub first_ts: i64,
    /// `i64::MIN` when never read / written.
    pub last_read_ts: i64,
    pub last_write_ts: i64,
    /// max of `ts * 4 + op code`: its op decides `is_deleted`.
    pub last_event_code: i64,
    /// Lexicographic max of (ts, capped size): the latest size, ties to the larger.
    pub last_ts: i64,
    pub last_size: i64,
    pub size_max: i64,
    pub reads: u64,
    pub writes: u64,
    pub writes_7d: u32,
    pub events: [u32; WINDOWS.len()],
    pub read_decay: [f64; DECAY_HALF_LIVES.len()],
    pub write_decay: [f64; DECAY_HALF_LIVES.len()],
    pub tod: [u32; 4],
    pub tod_next_6h: u32,
    pub horizon_events: [u32; HORIZON_WINDOWS.len()],
    pub horizon_decay: [f64; HORIZON_HALF_LIVES.len()],
    /// The latest event times, newest first (`i64::MIN` fills the rest):
    /// the top of a multiset, so it merges exactly.
    pub latest: [i64; GAPS],
    /// The tenant kept (see [`KeyState::name_tenant`]): a name's id in the
    /// scan's tenant list, or [`NO_TENANT`]; and when it was named.
    pub tenant: u32,
    pub tenant_ts: i64,
}

impl KeyState {
    pub fn empty() -> Self {
        KeyState {
            first_ts: i64::MAX,
            last_read_ts: i64::MIN,
            last_write_ts: i64::MIN,
            last_event_code: i64::MIN,
            last_ts: i64::MIN,
            last_size: i64::MIN,
            size_max: i64::MIN,
            reads: 0,
            writes: 0,
            writes_7d: 0,
            events: [0; WINDOWS.len()],
            read_decay: [0.0; DECAY_HALF_LIVES.len()],
            write_decay: [0.0; DECAY_HALF_LIVES.len()],
            tod: [0; 4],
            tod_next_6h: 0,
            horizon_events: [0; HORIZON_WINDOWS.len()],
            horizon_decay: [0.0; HORIZON_HALF_LIVES.len()],
            latest: [i64::MIN; GAPS],
            tenant: NO_TENANT,
            tenant_ts: i64::MIN,
        }
    }

    /// Keeps `tenant`, named by an access at `ts`, if that access is later
    /// than the one behind the tenant kept, or as late with a greater name
    /// (`names` by id): the lexicographic max of (time, name), so it
    /// merges exactly.
    pub fn name_tenant(&mut self, ts: i64, tenant: u32, names: &[Arc<str>]) {
        if tenant == NO_TENANT {
            return;
        }
        let later = self.tenant == NO_TENANT
            || ts > self.tenant_ts
            || (ts == self.tenant_ts && names[tenant as usize] > names[self.tenant as usize]);
        if later {
            self.tenant = tenant;
            self.tenant_ts = ts;
        }
    }

    /// Keeps `ts` among the latest event times if it is one of them.
    fn keep_latest(&mut self, mut ts: i64) {
        for slot in &mut self.latest {
            if ts > *slot {
                std::mem::swap(slot, &mut ts);
            }
        }
    }

    /// Adds one event at or before the cut-off.
    #[inline]
    pub fn add(&mut self, cut: &CutOff, ts: i64, op: Op, size: i64) {
        let age = cut.as_of - ts;
        self.count_in_windows(cut, age, op != Op::Read);
        let decay = if op == Op::Read {
            self.reads += 1;
            self.last_read_ts = self.last_read_ts.max(ts);
            &mut self.read_decay
        } else {
            self.writes += 1;
            self.last_write_ts = self.last_write_ts.max(ts);
            &mut self.write_decay
        };
        for (value, (_, half_life)) in decay.iter_mut().zip(DECAY_HALF_LIVES) {
            *value += decay_weight(age, half_life as f64);
        }
        self.first_ts = self.first_ts.min(ts);
        self.last_event_code = self.last_event_code.max(ts * 4 + i64::from(op.code()));
        let size = size.min(SIZE_CAP);
        if (ts, size) > (self.last_ts, self.last_size) {
            self.last_ts = ts;
            self.last_size = size;
        }
        self.size_max = self.size_max.max(size);
        let tod = time_of_day(ts);
        self.tod[(tod / TOD_BUCKET_US) as usize] += 1;
        self.tod_next_6h += u32::from(cut.in_next_6h(tod));
        for (value, (_, multiple)) in self.horizon_decay.iter_mut().zip(HORIZON_HALF_LIVES) {
            *value += decay_weight(age, cut.horizon as f64 * multiple);
        }
        self.keep_latest(ts);
    }

    /// Counts an event `age` before the cut-off in every window that holds
    /// it: the only counts that change as the cut-off moves on without the
    /// event (see [`CutOff::window_span`]).
    #[inline]
    pub fn count_in_windows(&mut self, cut: &CutOff, age: i64, write: bool) {
        for (count, (_, window)) in self.events.iter_mut().zip(WINDOWS) {
            *count += u32::from(age < window);
        }
        self.writes_7d += u32::from(write && age < WEEK_US);
        let age_wide = i128::from(age);
        let horizon_wide = i128::from(cut.horizon);
        for (count, (_, numerator, denominator)) in
            self.horizon_events.iter_mut().zip(HORIZON_WINDOWS)
        {
            *count += u32::from(
                age_wide * i128::from(denominator) < horizon_wide * i128::from(numerator),
            );
        }
    }

    /// Forgets every window count, to count them again from the events
    /// still young enough (see [`count_in_windows`](Self::count_in_windows)).
    pub fn clear_windows(&mut self) {
        self.events = [0; WINDOWS.len()];
        self.writes_7d = 0;
        self.horizon_events = [0; HORIZON_WINDOWS.len()];
    }

    /// Moves every decayed counter to a cut-off `factors` later: a sum of
    /// `exp(-ln 2 * age / h)` scales by `exp(-ln 2 * shift / h)` when every
    /// age grows by `shift`.
    pub fn decay_by(&mut self, factors: &DecayShift) {
        for (value, factor) in self.read_decay.iter_mut().zip(factors.fixed) {
            *value *= factor;
        }
        for (value, factor) in self.write_decay.iter_mut().zip(factors.fixed) {
            *value *= factor;
        }
        for (value, factor) in self.horizon_decay.iter_mut().zip(factors.horizon) {
            *value *= factor;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_in_any_order_give_the_same_state() {
        let cut = CutOff::new(10 * DAY_US, 6 * HOUR_US);
        let events: Vec<(i64, Op, i64)> = (0..200)
            .map(|i| {
                let op = Op::ALL[(i * 7 % 4) as usize];
                (cut.as_of - i * 97 * 60_000_000, op, (i * 31) % 500)
            })
            .collect();
        let mut whole = KeyState::empty();
        for &(ts, op, size) in &events {
            whole.add(&cut, ts, op, size);
        }
        // Every third event first, then the rest backwards: two workers'
        // batches interleaved.
        let mut right = KeyState::empty();
        let (first, rest): (Vec<_>, Vec<_>) =
            events.iter().enumerate().partition(|(i, _)| i % 3 == 0);
        for (_, &(ts, op, size)) in first.into_iter().chain(rest.into_iter().rev()) {
            right.add(&cut, ts, op, size);
        }
        assert_eq!(right.reads, whole.reads);
        assert_eq!(right.events, whole.events);
        assert_eq!(right.tod, whole.tod);
        assert_eq!(
            (right.last_ts, right.last_size),
            (whole.last_ts, whole.last_size)
        );
        assert_eq!(right.last_event_code, whole.last_event_code);
        assert_eq!(right.horizon_events, whole.horizon_events);
        assert_eq!(right.latest, whole.latest);
        assert_eq!(
            whole.latest,
            [0, 1, 2, 3].map(|i| cut.as_of - i * 97 * 60_000_000)
        );
        for (a, b) in right.read_decay.iter().zip(whole.read_decay) {
            assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0));
        }
    }
}
