//! The status record: where the keys are, how far the migration got, how
//! fast it moves. Exported as JSON and as a one-row Parquet file whose
//! columns are the JSON's fields flattened with `.`.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;

use super::{Confidence, Phase, Scheduler};
use crate::state::{Location, LocationCounts};
use crate::time::SECOND_US;

/// Running totals since the service started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    pub leased: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub stale_acks: u64,
    pub failures: u64,
    pub redelivered: u64,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Status {
    pub generated_at_us: i64,
    pub phase: Phase,
    pub paused: bool,
    pub bandwidth_bytes_per_s: Option<u64>,
    pub total: LocationCounts,
    pub source_only: LocationCounts,
    pub leased: LocationCounts,
    /// In the destination at a version at least the latest write seen.
    pub current: LocationCounts,
    /// In the destination, written since it was copied.
    pub stale: LocationCounts,
    pub sample: LocationCounts,
    pub sample_current: LocationCounts,
    /// Share of the model's predicted accesses on keys already current.
    pub predicted_access_share_in_destination: f64,
    pub confidence: Confidence,
    pub confidence_threshold: f64,
    /// Over the last minute.
    pub throughput_bytes_per_s: f64,
    pub throughput_keys_per_s: f64,
    /// Seconds until every key is current at the current throughput.
    pub eta_seconds: Option<f64>,
    pub live_leases: u64,
    pub counters: Counters,
    /// Keys whose last copies failed, waiting to be offered again.
    pub retrying_keys: u64,
    /// Keys set aside after `max_copy_failures` failures in a row (counted
    /// in `source_only` or `stale` too).
    pub parked: LocationCounts,
    /// The first [`FAILING_KEYS_LISTED`](super::FAILING_KEYS_LISTED)
    /// failing keys, parked ones first.
    pub failing_keys: Vec<super::FailingKey>,
    /// What versions are (`serve --versions`).
    pub versions: super::Versions,
    /// Each table's keys by where they are (leased or not) and its part
    /// of the sample, in the order tables were first seen.
    pub tables: Vec<TableStatus>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TableStatus {
    pub table: String,
    pub total: LocationCounts,
    pub source_only: LocationCounts,
    pub current: LocationCounts,
    pub stale: LocationCounts,
    pub sample: LocationCounts,
    pub sample_current: LocationCounts,
}

#[derive(Debug, thiserror::Error)]
#[error("writing the status to {path}: {problem}")]
pub struct StatusExportError {
    path: std::path::PathBuf,
    problem: String,
}

impl Status {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a status serializes")
    }

    /// Writes the record as one Parquet row.
    pub fn write_parquet(&self, path: &Path) -> Result<(), StatusExportError> {
        let failed = |problem: String| StatusExportError {
            path: path.to_path_buf(),
            problem,
        };
        let mut columns = Vec::new();
        flatten(
            "",
            &serde_json::to_value(self).expect("serializes"),
            &mut columns,
        );
        let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = columns
            .into_iter()
            .map(|(name, value)| match value {
                serde_json::Value::Bool(b) => (
                    Field::new(name, DataType::Boolean, false),
                    Arc::new(BooleanArray::from(vec![b])) as ArrayRef,
                ),
                serde_json::Value::Number(n) => (
                    Field::new(name, DataType::Float64, false),
                    Arc::new(Float64Array::from(vec![n.as_f64()])) as ArrayRef,
                ),
                serde_json::Value::Null => (
                    Field::new(name, DataType::Float64, true),
                    Arc::new(Float64Array::from(vec![None::<f64>])) as ArrayRef,
                ),
                other => (
                    Field::new(name, DataType::Utf8, false),
                    Arc::new(StringArray::from(vec![
                        other.as_str().map_or(other.to_string(), str::to_string),
                    ])) as ArrayRef,
                ),
            })
            .unzip();
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
            .map_err(|e| failed(e.to_string()))?;
        let file = std::fs::File::create(path).map_err(|e| failed(e.to_string()))?;
        let mut writer =
            ArrowWriter::try_new(file, batch.schema(), None).map_err(|e| failed(e.to_string()))?;
        writer.write(&batch).map_err(|e| failed(e.to_string()))?;
        writer.close().map_err(|e| failed(e.to_string()))?;
        Ok(())
    }
}

fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
    match value {
        serde_json::Value::Object(fields) => {
            for (name, field) in fields {
                let name = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                flatten(&name, field, out);
            }
        }
        leaf => out.push((prefix.to_string(), leaf.clone())),
    }
}

impl Scheduler {
    /// The status record as of `now_us` (moves the phase on first, as
    /// [`advance`](Scheduler::advance) does).
    pub fn status(&mut self, now_us: i64) -> Status {
        self.advance(now_us);
        let mut status = Status {
            generated_at_us: now_us,
            phase: self.phase,
            paused: self.paused,
            bandwidth_bytes_per_s: self.bandwidth.rate(),
            total: LocationCounts::default(),
            source_only: LocationCounts::default(),
            leased: LocationCounts::default(),
            current: LocationCounts::default(),
            stale: LocationCounts::default(),
            sample: LocationCounts::default(),
            sample_current: LocationCounts::default(),
            predicted_access_share_in_destination: 0.0,
            confidence: self.confidence(now_us),
            confidence_threshold: self.config.confidence.threshold,
            throughput_bytes_per_s: 0.0,
            throughput_keys_per_s: 0.0,
            eta_seconds: None,
            live_leases: self.leases.len() as u64,
            counters: self.counters,
            retrying_keys: 0,
            parked: LocationCounts::default(),
            failing_keys: Vec::new(),
            versions: self.config.versions,
            tables: self
                .census
                .tables
                .iter()
                .zip(self.map.tables())
                .map(|(tally, name)| {
                    let [source_only, current, stale] = tally.locations;
                    TableStatus {
                        table: name.clone(),
                        total: LocationCounts {
                            keys: source_only.keys + current.keys + stale.keys,
                            bytes: source_only.bytes + current.bytes + stale.bytes,
                        },
                        source_only,
                        current,
                        stale,
                        sample: tally.sample,
                        sample_current: tally.sample_current,
                    }
                })
                .collect(),
        };
        let mut leased = LocationCounts::default();
        for location in Location::ALL {
            let (all, under_lease) = (self.map.totals(location), self.census.leased_at(location));
            status.total.keys += all.keys;
            status.total.bytes += all.bytes;
            leased.keys += under_lease.keys;
            leased.bytes += under_lease.bytes;
            let waiting = LocationCounts {
                keys: all.keys - under_lease.keys,
                bytes: all.bytes - under_lease.bytes,
            };
            match location {
                Location::SourceOnly => status.source_only = waiting,
                Location::Current => status.current = all,
                Location::Stale => status.stale = waiting,
            }
        }
        status.leased = leased;
        (status.retrying_keys, status.parked, status.failing_keys) = self.failing_keys();
        status.sample = self.census.sample;
        status.sample_current = self.census.sample_current;
        status.predicted_access_share_in_destination =
            self.census.histograms.predicted_accesses_share();
        if let Some(&(oldest, _, _)) = self.copied.front() {
            let span = ((now_us - oldest) as f64 / SECOND_US as f64).max(1.0);
            let (bytes, keys) = self
                .copied
                .iter()
                .fold((0u64, 0u64), |(b, k), &(_, bytes, keys)| {
                    (b + bytes, k + keys)
                });
            status.throughput_bytes_per_s = bytes as f64 / span;
            status.throughput_keys_per_s = keys as f64 / span;
        }
        let remaining = status.total.bytes - status.current.bytes;
        if remaining == 0 {
            status.eta_seconds = Some(0.0);
        } else if status.throughput_bytes_per_s > 0.0 {
            status.eta_seconds = Some(remaining as f64 / status.throughput_bytes_per_s);
        }
        status
    }
}

/// The figures a metrics scrape shows, read without scanning every key.
#[derive(Clone, Debug, PartialEq)]
pub struct Gauges {
    pub phase: Phase,
    pub paused: bool,
    pub bandwidth_bytes_per_s: Option<u64>,
    pub source_only: LocationCounts,
    pub current: LocationCounts,
    pub stale: LocationCounts,
    /// Keys waiting in line per priority class, highest class first
    /// (keys skipped later for their phase or location included).
    pub queued: [u64; 4],
    pub live_leases: u64,
    /// The confidence last measured, if any.
    pub confidence: Option<f64>,
    pub counters: Counters,
    /// Keys waiting to be offered again after failed copies, and keys parked.
    pub retrying_keys: u64,
    pub parked_keys: u64,
}

impl Scheduler {
    pub fn gauges(&self) -> Gauges {
        let (retrying_keys, parked_keys) = self.failure_counts();
        let mut queued = [0u64; 4];
        for table in &self.queues {
            for (slot, count) in queued.iter_mut().enumerate() {
                let fresh = &table.fresh[slot];
                *count += (table.resync[slot].len() + fresh.order.len() - fresh.cursor) as u64;
            }
        }
        Gauges {
            phase: self.phase,
            paused: self.paused,
            bandwidth_bytes_per_s: self.bandwidth.rate(),
            source_only: self.map.totals(Location::SourceOnly),
            current: self.map.totals(Location::Current),
            stale: self.map.totals(Location::Stale),
            queued,
            live_leases: self.leases.len() as u64,
            confidence: self.last_confidence.map(|(_, value)| value),
            counters: self.counters,
            retrying_keys,
            parked_keys,
        }
    }
}
