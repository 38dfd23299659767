//! Workload generator — stands in for the shadowing module or log shipper.
//!
//! Takes: a named [`profile`] (tables calibrated on Twitter's production
//! cache clusters), a seed, an event count and a time span.
//!
//! Gives: access logs in the canonical schema and Hive layout, written by
//! [`generator::Generator::write`].
//!
//! Guarantees: the output depends only on the options (seed included), not
//! on the number of threads; hours are generated and written in parallel with
//! memory bounded by one hour of events per thread.

pub mod generator;
pub mod profile;

pub use generator::{GenerateOptions, GenerateReport, Generator};
pub use profile::Profile;
