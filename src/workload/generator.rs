//! Deterministic generation of access logs, one hour partition at a time.
//!
//! Every hour is generated from `(seed, hour)` alone, so hours are built in
//! parallel and the output does not depend on the thread count. Per table, an
//! access picks its key from a mixture:
//! * a static Zipf popularity over the initial keys (scattered over the id
//!   space by a fixed permutation);
//! * trending cohorts: every [`COHORT_HOURS`] a new cohort of recent keys
//!   starts; it warms up for one period, stays hot for one, cools down for
//!   one; within a cohort popularity is Zipf too;
//! * a uniform pick over all existing keys (the cold tail, one-hit wonders);
//! * a short burst on one key in some hours.
//!
//! Inserts create new keys with increasing ids, so keys appear over time;
//! deletes pick keys from the cooling cohort or the cold tail. Some reads
//! are range scans over consecutive ids. The event rate follows a daily cycle
//! with a per-table peak hour. Row sizes are fixed per key (exponential around
//! the cluster's mean value size) and drift on update.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use rand_pcg::Pcg64Mcg;
use rayon::prelude::*;

use super::profile::{DAILY_AMPLITUDE, Profile, TableProfile};
use crate::logs::writer::{AccessEvent, LogBatchBuilder, partition_dir, write_log_file};
use crate::logs::{LogError, Op};
use crate::time::{HOUR_US, hour_floor};

/// Length of a trending cohort's warm-up, plateau and cool-down, each.
pub const COHORT_HOURS: i64 = 6;
const COHORT_KEYS: u64 = 256;
const TENANTS: u64 = 16;
/// Share of reads that start a range scan, and the scan lengths.
const SCAN_SHARE: f64 = 0.01;
const SCAN_LENGTH: std::ops::RangeInclusive<u64> = 4..=32;
/// Chance that a table has a burst in a given hour, and the share of that
/// hour's events the burst takes.
const BURST_CHANCE: f64 = 0.25;
const BURST_SHARE: f64 = 0.03;
const BURST_MINUTES: i64 = 10;

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub profile: Profile,
    pub seed: u64,
    pub events: u64,
    /// Start of the first hour (rounded down to the hour).
    pub start: i64,
    pub hours: u32,
}

/// What was written.
#[derive(Debug)]
pub struct GenerateReport {
    pub events: u64,
    pub files: Vec<PathBuf>,
    pub keys_created: u64,
}

/// Per-table, per-hour numbers fixed before any hour is generated.
struct TablePlan {
    profile: TableProfile,
    initial_keys: u64,
    /// Events in each hour.
    counts: Vec<u64>,
    /// Keys existing at the start of each hour (index `hours` = at the end).
    keys_at: Vec<u64>,
    base_zipf: Zipf<f64>,
    /// Multiplier coprime to `initial_keys` that scatters popularity ranks over ids.
    scatter: u64,
}

pub struct Generator {
    options: GenerateOptions,
    start_hour: i64,
    tables: Vec<TablePlan>,
}

impl Generator {
    pub fn new(options: GenerateOptions) -> Self {
        let start_hour = hour_floor(options.start);
        let hours = options.hours.max(1) as usize;
        let tables = options
            .profile
            .tables
            .iter()
            .map(|table| {
                let table_events = options.events as f64 * table.share;
                let weights: Vec<f64> = (0..hours)
                    .map(|h| daily_weight(start_hour + h as i64 * HOUR_US, table.peak_hour))
                    .collect();
                let total_weight: f64 = weights.iter().sum();
                let mut counts = Vec::with_capacity(hours);
                let mut cumulative = 0.0;
                let mut emitted = 0u64;
                for weight in &weights {
                    cumulative += table_events * weight / total_weight;
                    let target = cumulative.round() as u64;
                    counts.push(target - emitted);
                    emitted = target;
                }
                let initial_keys = ((table_events / table.mean_accesses_per_key) as u64).max(100);
                let mut keys_at = vec![initial_keys];
                for count in &counts {
                    let inserts =
                        (*count as f64 * table.op_mix[Op::Insert as usize]).round() as u64;
                    keys_at.push(keys_at.last().expect("seeded") + inserts);
                }
                let scatter = coprime_multiplier(initial_keys);
                TablePlan {
                    profile: table.clone(),
                    initial_keys,
                    counts,
                    keys_at,
                    base_zipf: Zipf::new(initial_keys as f64, table.zipf_alpha)
                        .expect("alpha >= 0 and n >= 1"),
                    scatter,
                }
            })
            .collect();
        Generator {
            options,
            start_hour,
            tables,
        }
    }

    pub fn hours(&self) -> usize {
        self.tables.first().map_or(0, |table| table.counts.len())
    }

    /// Writes every hour to `root/dt=…/hour=…/part-0.parquet`, in parallel.
    pub fn write(
        &self,
        root: &Path,
        on_events: &(dyn Fn(u64) + Sync),
    ) -> Result<GenerateReport, LogError> {
        let files = (0..self.hours())
            .into_par_iter()
            .map(|hour| {
                let mut builder = LogBatchBuilder::new();
                let events = self.generate_hour(hour, &mut builder);
                let hour_start = self.start_hour + hour as i64 * HOUR_US;
                let path = partition_dir(root, hour_start).join("part-0.parquet");
                let written = if events == 0 {
                    None
                } else {
                    Some(write_log_file(path, &builder.finish())?)
                };
                on_events(events);
                Ok(written)
            })
            .collect::<Result<Vec<_>, LogError>>()?;
        Ok(GenerateReport {
            events: self.tables.iter().flat_map(|t| &t.counts).sum(),
            files: files.into_iter().flatten().collect(),
            keys_created: self
                .tables
                .iter()
                .map(|t| t.keys_at.last().expect("seeded") - t.initial_keys)
                .sum(),
        })
    }

    /// Pushes hour `hour`'s events, sorted by time, into `builder`; returns how many.
    pub fn generate_hour(&self, hour: usize, builder: &mut LogBatchBuilder) -> u64 {
        let hour_start = self.start_hour + hour as i64 * HOUR_US;
        let mut rng = Pcg64Mcg::seed_from_u64(mix(self.options.seed, hour as u64));
        let mut events: Vec<Event> = Vec::new();
        for (table_index, table) in self.tables.iter().enumerate() {
            table.generate(table_index as u8, hour, hour_start, &mut rng, &mut events);
        }
        events.sort_unstable_by_key(|event| (event.ts, event.table, event.id));

        let mut key = String::new();
        for event in &events {
            let table = &self.tables[event.table as usize].profile;
            key.clear();
            write!(key, "{}:{:010}", table.key_prefix, event.id).expect("writing to a String");
            let tenant_id = tenant_of(event.id);
            let tenant = TENANT_NAMES[tenant_id as usize];
            builder.push(&AccessEvent {
                ts: event.ts,
                key: &key,
                table: table.name,
                op: event.op,
                size: event.size as i64,
                tenant: Some(tenant),
                latency_us: Some(event.latency_us as i64),
            });
        }
        events.len() as u64
    }
}

const TENANT_NAMES: [&str; TENANTS as usize] = [
    "t00", "t01", "t02", "t03", "t04", "t05", "t06", "t07", "t08", "t09", "t10", "t11", "t12",
    "t13", "t14", "t15",
];

#[derive(Clone, Copy)]
struct Event {
    ts: i64,
    id: u64,
    size: u32,
    latency_us: u32,
    table: u8,
    op: Op,
}

/// Where an access's key comes from.
enum Pick {
    Base,
    Trending,
    Uniform,
}

impl TablePlan {
    fn generate(
        &self,
        table: u8,
        hour: usize,
        hour_start: i64,
        rng: &mut Pcg64Mcg,
        out: &mut Vec<Event>,
    ) {
        let count = self.counts[hour];
        let keys_now = self.keys_at[hour];
        let inserts = self.keys_at[hour + 1] - keys_now;
        let profile = &self.profile;
        let event = |ts: i64, id: u64, op: Op, rng: &mut Pcg64Mcg| {
            let base = self.base_size(id);
            let size = if op == Op::Update {
                base * rng.random_range(0.8..1.25)
            } else {
                base
            };
            let latency = if op.is_write() {
                500.0 + exponential(rng, 1000.0)
            } else {
                150.0 + exponential(rng, 300.0)
            };
            Event {
                ts,
                id,
                size: size as u32,
                latency_us: latency as u32,
                table,
                op,
            }
        };

        let mut insert_times: Vec<i64> = (0..inserts)
            .map(|_| hour_start + rng.random_range(0..HOUR_US))
            .collect();
        insert_times.sort_unstable();
        for (offset, ts) in insert_times.into_iter().enumerate() {
            out.push(event(ts, keys_now + offset as u64, Op::Insert, rng));
        }

        let burst = rng.random_bool(BURST_CHANCE).then(|| {
            let id = rng.random_range(0..keys_now);
            let start = hour_start + rng.random_range(0..(60 - BURST_MINUTES)) * 60_000_000;
            (id, start)
        });
        let cohorts = self.active_cohorts(hour);
        let cohort_total: f64 = cohorts.iter().map(|(_, weight)| weight).sum();
        let other_ops = [Op::Read, Op::Update, Op::Delete];
        let other_weights = other_ops.map(|op| profile.op_mix[op as usize]);
        let other_total: f64 = other_weights.iter().sum();
        let mut remaining = count - inserts;
        while remaining > 0 {
            let mut ts = hour_start + rng.random_range(0..HOUR_US);
            let op = if other_total > 0.0 {
                let mut draw = rng.random::<f64>() * other_total;
                let mut chosen = Op::Read;
                for (op, weight) in other_ops.iter().zip(other_weights) {
                    chosen = *op;
                    if draw < weight {
                        break;
                    }
                    draw -= weight;
                }
                chosen
            } else {
                Op::Read
            };
            let id = match burst {
                Some((id, start)) if rng.random_bool(BURST_SHARE) => {
                    ts = start + rng.random_range(0..BURST_MINUTES * 60_000_000);
                    id
                }
                _ => {
                    let draw = rng.random::<f64>();
                    let pick = if op == Op::Delete {
                        if draw < 0.5 {
                            Pick::Trending
                        } else {
                            Pick::Uniform
                        }
                    } else if draw < profile.uniform_share {
                        Pick::Uniform
                    } else if draw < profile.uniform_share + profile.trending_share {
                        Pick::Trending
                    } else {
                        Pick::Base
                    };
                    match pick {
                        Pick::Uniform => rng.random_range(0..keys_now),
                        Pick::Base => self.base_key(rng),
                        Pick::Trending if cohort_total > 0.0 => {
                            let cohort = if op == Op::Delete {
                                cohorts[0].0
                            } else {
                                let mut draw = rng.random::<f64>() * cohort_total;
                                let mut chosen = cohorts[0].0;
                                for &(cohort, weight) in &cohorts {
                                    chosen = cohort;
                                    if draw < weight {
                                        break;
                                    }
                                    draw -= weight;
                                }
                                chosen
                            };
                            self.cohort_key(cohort, rng)
                        }
                        Pick::Trending => self.base_key(rng),
                    }
                }
            };
            if op == Op::Read && rng.random_bool(SCAN_SHARE) {
                let length = rng.random_range(SCAN_LENGTH).min(remaining);
                for step in 0..length {
                    let scanned = (id + step).min(keys_now - 1);
                    out.push(event(ts + step as i64, scanned, Op::Read, rng));
                }
                remaining -= length;
            } else {
                out.push(event(ts, id, op, rng));
                remaining -= 1;
            }
        }
    }

    fn base_key(&self, rng: &mut Pcg64Mcg) -> u64 {
        let rank = self.base_zipf.sample(rng) as u64 - 1;
        (rank.wrapping_mul(self.scatter) + self.initial_keys / 3) % self.initial_keys
    }

    /// Cohorts active in `hour`, oldest (cooling) first, with their intensity.
    fn active_cohorts(&self, hour: usize) -> Vec<(i64, f64)> {
        let middle = hour as f64 + 0.5;
        let newest = hour as i64 / COHORT_HOURS;
        (newest - 2..=newest)
            .map(|cohort| {
                let phase = (middle - (cohort * COHORT_HOURS) as f64) / COHORT_HOURS as f64;
                let intensity = if phase < 1.0 {
                    phase
                } else if phase < 2.0 {
                    1.0
                } else {
                    3.0 - phase
                };
                (cohort, intensity.max(0.0))
            })
            .filter(|(_, intensity)| *intensity > 0.0)
            .collect()
    }

    /// A key of `cohort`: drawn by Zipf rank from the keys that were recent
    /// when the cohort started (new content is what tends to trend).
    fn cohort_key(&self, cohort: i64, rng: &mut Pcg64Mcg) -> u64 {
        let start_hour = (cohort.max(0) * COHORT_HOURS) as usize;
        let keys_then = self.keys_at[start_hour.min(self.keys_at.len() - 1)];
        let recent = (keys_then / 10).max(COHORT_KEYS.min(keys_then)).max(1);
        let rank = zipf_rank(rng, COHORT_KEYS).min(COHORT_KEYS - 1);
        keys_then - 1 - mix(cohort as u64 ^ 0xC0_4017, rank) % recent
    }

    fn base_size(&self, id: u64) -> f64 {
        let unit = (mix(id, 0x5123) >> 11) as f64 / (1u64 << 53) as f64;
        16.0 + self.profile.mean_value_bytes * -(1.0 - unit).ln()
    }
}

/// A Zipf(1) rank in `0..n` by inverse transform of the continuous approximation.
fn zipf_rank(rng: &mut Pcg64Mcg, n: u64) -> u64 {
    let u: f64 = rng.random();
    ((n as f64 + 1.0).powf(u) - 1.0) as u64
}

fn exponential(rng: &mut Pcg64Mcg, mean: f64) -> f64 {
    -mean * (1.0 - rng.random::<f64>()).ln()
}

fn tenant_of(id: u64) -> u64 {
    let unit = (mix(id, 0x7e4a47) >> 11) as f64 / (1u64 << 53) as f64;
    ((unit * unit) * TENANTS as f64) as u64
}

fn daily_weight(hour_start: i64, peak_hour: f64) -> f64 {
    let hour_of_day = (hour_start.rem_euclid(24 * HOUR_US) / HOUR_US) as f64 + 0.5;
    1.0 + DAILY_AMPLITUDE * (std::f64::consts::TAU * (hour_of_day - peak_hour) / 24.0).cos()
}

fn coprime_multiplier(n: u64) -> u64 {
    let mut candidate = 2_654_435_761 % n.max(2);
    while gcd(candidate, n) != 1 {
        candidate += 1;
    }
    candidate.max(1)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// SplitMix64 of two words: a fast, well-mixed deterministic hash.
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::profile;

    fn small(profile: &str, seed: u64) -> Generator {
        Generator::new(GenerateOptions {
            profile: profile::named(profile).expect("profile exists"),
            seed,
            events: 20_000,
            start: 0,
            hours: 6,
        })
    }

    #[test]
    fn the_same_seed_gives_the_same_hour() {
        let batch = |seed| {
            let mut builder = LogBatchBuilder::new();
            small("oltp", seed).generate_hour(3, &mut builder);
            builder.finish()
        };
        assert_eq!(batch(1), batch(1));
        assert_ne!(batch(1), batch(2));
    }

    #[test]
    fn hours_sum_to_the_requested_events_and_follow_the_daily_cycle() {
        let generator = small("read-heavy", 9);
        let counts = &generator.tables[0].counts;
        assert_eq!(counts.iter().sum::<u64>(), 20_000);
        let long = Generator::new(GenerateOptions {
            hours: 24,
            ..generator.options.clone()
        });
        let counts = &long.tables[0].counts;
        // users peak at 14:00 UTC and trough twelve hours away.
        assert!(counts[14] > 2 * counts[2], "{counts:?}");
    }

    #[test]
    fn gcd_and_coprime_multiplier() {
        assert_eq!(gcd(12, 18), 6);
        for n in [2, 100, 1024, 999_983] {
            assert_eq!(gcd(coprime_multiplier(n), n), 1);
        }
    }
}
