//! The feature set `shadowcast.access`, version 2: names, windows and exact
//! formulas. `sql/features.sql` implements the same definitions; change both
//! together and bump [`FEATURE_SET_VERSION`].
//!
//! Version 2 adds features on the horizon's time scale: a table is computed
//! for a cut-off T and a horizon H (the model's), and windows, half-lives
//! and gaps are multiples of H, so that the same model reads a trace of
//! five minutes and one of three days alike. The fixed-length features of
//! version 1 are kept (policies see them under their names).
//!
//! Conventions, all relative to the cut-off T (events after T are ignored):
//! * a window of length w holds events with `T - w < ts <= T`;
//! * a decayed counter with half-life h sums `exp(-ln 2 * (T - ts) / h)`;
//! * "writes" are inserts, updates and deletes;
//! * ties at the latest time are broken by the larger op code (delete wins)
//!   for `is_deleted`, and by the larger size for `size_last`;
//! * sizes saturate at [`SIZE_CAP`] bytes (1 TiB - 1);
//! * time of day is UTC;
//! * a key's prefix is everything before its last `:` or `/`; keys with no
//!   such prefix have `prefix_events_24h = 0`.

use std::sync::Arc;

use super::state::{CutOff, KeyState};
use crate::time::{DAY_US, HOUR_US, SECOND_US};

pub const FEATURE_SET_NAME: &str = "shadowcast.access";
pub const FEATURE_SET_VERSION: u32 = 2;

/// Count windows, by suffix and length.
pub const WINDOWS: [(&str, i64); 4] = [
    ("1h", HOUR_US),
    ("6h", 6 * HOUR_US),
    ("24h", DAY_US),
    ("7d", 7 * DAY_US),
];

/// The 24-hour window among [`WINDOWS`], which the neighbourhood counts.
const WINDOW_24H: usize = 2;
const _: () = assert!(WINDOWS[WINDOW_24H].1 == DAY_US);

/// Half-lives of the decayed read and write counters.
pub const DECAY_HALF_LIVES: [(&str, i64); 3] =
    [("1h", HOUR_US), ("6h", 6 * HOUR_US), ("24h", DAY_US)];

/// Count windows on the horizon's scale, by suffix and length as a
/// fraction `numerator / denominator` of H: an event is in the window when
/// `(T - ts) * denominator < H * numerator`.
pub const HORIZON_WINDOWS: [(&str, i64, i64); 5] = [
    ("hdiv16", 1, 16),
    ("hdiv4", 1, 4),
    ("h", 1, 1),
    ("hx4", 4, 1),
    ("hx16", 16, 1),
];

/// Half-lives of the decayed counters of every event, as multiples of H.
pub const HORIZON_HALF_LIVES: [(&str, f64); 3] = [("hdiv4", 0.25), ("h", 1.0), ("hx4", 4.0)];

/// Gaps kept: from T back to the latest event, and between each of the
/// latest events and the one before it.
pub const GAPS: usize = 4;

/// Keys on each side, in key order within a table, that make up a key's range neighbourhood.
pub const RANGE_NEIGHBOURS: usize = 8;

pub const SIZE_CAP: i64 = (1 << 40) - 1;

/// Characters that end a key's prefix.
pub const PREFIX_DELIMITERS: [u8; 2] = [b':', b'/'];

/// The features of one key as of the cut-off.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyFeatures {
    pub table: Arc<str>,
    pub key: Vec<u8>,
    /// The tenant named by the key's latest access that names one (at
    /// equal times, the greatest name); `None` when no access names one.
    pub tenant: Option<Arc<str>>,
    pub first_seen_age_s: f64,
    /// Events in each of [`WINDOWS`].
    pub events: [i64; 4],
    pub reads_total: i64,
    pub writes_total: i64,
    /// Decayed reads at each of [`DECAY_HALF_LIVES`].
    pub reads_decay: [f64; 3],
    pub writes_decay: [f64; 3],
    pub secs_since_last_read: Option<f64>,
    pub secs_since_last_write: Option<f64>,
    pub read_share: f64,
    /// Writes in the last 7 days per hour the key has existed in them (at least one hour).
    pub change_rate_per_h: f64,
    pub size_last: i64,
    pub size_max: i64,
    pub is_deleted: bool,
    /// Share of all events in UTC hours [0,6), [6,12), [12,18), [18,24).
    pub tod_share: [f64; 4],
    /// Share of all events whose time of day falls in the 6 hours after T's.
    pub tod_share_next_6h: f64,
    /// Events in the last 24h to other keys of the same table and prefix.
    pub prefix_events_24h: i64,
    /// Events in the last 24h to the [`RANGE_NEIGHBOURS`] keys on each side.
    pub range_events_24h: i64,
    /// Events in each of [`HORIZON_WINDOWS`].
    pub horizon_events: [i64; 5],
    /// Every event decayed at each of [`HORIZON_HALF_LIVES`].
    pub horizon_decay: [f64; 3],
    /// In units of H: T minus the latest event, then the gap between each
    /// of the latest events and the one before; `None` past the first event.
    pub gaps_h: [Option<f64>; GAPS],
    /// T minus the first event, in units of H.
    pub age_h: f64,
}

impl KeyFeatures {
    /// Turns a finished aggregate into features; neighbourhood features are
    /// filled in later, when all keys are known.
    pub(crate) fn from_state(
        table: Arc<str>,
        key: Vec<u8>,
        tenant: Option<Arc<str>>,
        state: &KeyState,
        cut: &CutOff,
    ) -> Self {
        let seconds = |us: i64| us as f64 / SECOND_US as f64;
        let since = |last: i64| (last != i64::MIN).then(|| seconds(cut.as_of - last));
        let total = state.reads + state.writes;
        let share = |count: u32| count as f64 / total as f64;
        let observed_hours =
            ((cut.as_of - state.first_ts) as f64 / HOUR_US as f64).clamp(1.0, 168.0);
        let in_h = |us: i64| us as f64 / cut.horizon as f64;
        let mut gaps_h = [None; GAPS];
        let mut later = cut.as_of;
        for (gap, &ts) in gaps_h.iter_mut().zip(&state.latest) {
            if ts == i64::MIN {
                break;
            }
            *gap = Some(in_h(later - ts));
            later = ts;
        }
        KeyFeatures {
            table,
            key,
            tenant,
            first_seen_age_s: seconds(cut.as_of - state.first_ts),
            events: state.events.map(i64::from),
            reads_total: state.reads as i64,
            writes_total: state.writes as i64,
            reads_decay: state.read_decay,
            writes_decay: state.write_decay,
            secs_since_last_read: since(state.last_read_ts),
            secs_since_last_write: since(state.last_write_ts),
            read_share: state.reads as f64 / total as f64,
            change_rate_per_h: f64::from(state.writes_7d) / observed_hours,
            size_last: state.last_size,
            size_max: state.size_max,
            is_deleted: state.last_event_code.rem_euclid(4) == 3,
            tod_share: state.tod.map(share),
            tod_share_next_6h: share(state.tod_next_6h),
            prefix_events_24h: 0,
            range_events_24h: 0,
            horizon_events: state.horizon_events.map(i64::from),
            horizon_decay: state.horizon_decay,
            gaps_h,
            age_h: in_h(cut.as_of - state.first_ts),
        }
    }

    pub fn events_24h(&self) -> i64 {
        self.events[WINDOW_24H]
    }

    /// [`KeyFeatures::events_24h`] of the features `state` will give.
    pub(crate) fn events_24h_of(state: &KeyState) -> i64 {
        i64::from(state.events[WINDOW_24H])
    }

    /// The key's prefix (before its last delimiter), if it has a non-empty one.
    pub fn prefix(&self) -> Option<&[u8]> {
        let end = self
            .key
            .iter()
            .rposition(|b| PREFIX_DELIMITERS.contains(b))?;
        (end > 0).then(|| &self.key[..end])
    }

    /// The key for display: as text when it is UTF-8, else hex.
    pub fn key_display(&self) -> String {
        crate::keys::display_key(&self.key)
    }
}

/// A key's prefix (before its last delimiter), if it has a non-empty one.
pub fn key_prefix(key: &[u8]) -> Option<&[u8]> {
    let end = key.iter().rposition(|b| PREFIX_DELIMITERS.contains(b))?;
    (end > 0).then(|| &key[..end])
}

/// `prefix_events_24h` and `range_events_24h` of every row, for rows given
/// in (table, key byte) order by `table_of`, `key_of` and `events_24h`.
pub(crate) fn neighbourhood<'k>(
    table_of: impl Fn(usize) -> &'k str,
    key_of: impl Fn(usize) -> &'k [u8],
    events_24h: &[i64],
) -> (Vec<i64>, Vec<i64>) {
    let rows = events_24h.len();
    let mut prefix_events = vec![0i64; rows];
    let mut range_events = vec![0i64; rows];
    let mut start = 0;
    while start < rows {
        let table = table_of(start);
        let end = (start..rows)
            .find(|&row| table_of(row) != table)
            .unwrap_or(rows);
        let events = &events_24h[start..end];

        let mut running = Vec::with_capacity(events.len() + 1);
        running.push(0i64);
        for count in events {
            running.push(running.last().expect("seeded") + count);
        }
        for (index, range) in range_events[start..end].iter_mut().enumerate() {
            let low = index.saturating_sub(RANGE_NEIGHBOURS);
            let high = (index + RANGE_NEIGHBOURS + 1).min(events.len());
            *range = running[high] - running[low] - events[index];
        }

        // Sorted keys keep a prefix's keys mostly together: total each run of
        // equal prefixes, then add the runs up per prefix.
        let mut runs: Vec<(&[u8], usize, usize, i64)> = Vec::new();
        for (row, &count) in events_24h.iter().enumerate().take(end).skip(start) {
            let Some(prefix) = key_prefix(key_of(row)) else {
                continue;
            };
            match runs.last_mut() {
                Some((last, _, run_end, sum)) if *last == prefix && *run_end == row => {
                    *run_end = row + 1;
                    *sum += count;
                }
                _ => runs.push((prefix, row, row + 1, count)),
            }
        }
        let mut totals: ahash::AHashMap<&[u8], i64> = ahash::AHashMap::new();
        for &(prefix, _, _, sum) in &runs {
            *totals.entry(prefix).or_default() += sum;
        }
        for &(prefix, run_start, run_end, _) in &runs {
            let total = totals[prefix];
            for (prefix_total, count) in prefix_events[run_start..run_end]
                .iter_mut()
                .zip(&events_24h[run_start..run_end])
            {
                *prefix_total = total - count;
            }
        }
        start = end;
    }
    (prefix_events, range_events)
}
