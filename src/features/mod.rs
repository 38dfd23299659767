//! Stage 2 — per-key features.
//!
//! Takes: a [`LogSource`](crate::logs::LogSource) and a cut-off time T.
//!
//! Gives: a [`FeatureTable`] with one row of [`KeyFeatures`] per (table, key)
//! seen at or before T, in the named, versioned feature set of
//! [`definition`], sorted by table then key bytes; written to and read from
//! Parquet by [`table`]. Or, from [`scan`], the [`KeyStates`] behind that
//! table, which build its rows only when asked ([`FeatureRows`] holds
//! either), for callers that need a sample of the rows or one pass over them.
//! Or, from [`RollingFeatures`], the states of a folder of logs kept and
//! rolled forward to each new cut-off as files arrive, reading only the new
//! ones (what the service plans from while serving).
//!
//! Guarantees: every feature is a mergeable aggregate (sum, count, min, max),
//! so the scan reads files in any order on every core into one state per
//! key (one, whatever the number of cores) and a cluster's GROUP BY gives
//! the same; memory grows with distinct keys, not events; events after T
//! are never read.
//! `sql/features.sql` computes the same table in DuckDB or Spark SQL.

mod compute;
pub mod definition;
mod rolling;
pub mod rows;
mod state;
pub mod table;

pub use compute::{FeatureOptions, KeyStates, compute, scan};
pub use definition::{FEATURE_SET_NAME, FEATURE_SET_VERSION, KeyFeatures};
pub use rolling::{HISTORY_EVENT_LIMIT, Refresh, RollingFeatures};
pub use rows::{FeatureRows, FeatureRowsRef};
pub use table::{FeatureFileError, FeatureTable};
