//! shadowcast: predicts which keys of a database under migration will be hot
//! or high-churn, and hands executors prioritized batches to copy early.
//!
//! Modules follow the data flow: [`logs`] → [`features`] → (models, policies,
//! scheduler, API: later stages). [`workload`] generates realistic access
//! logs for development, tests and benchmarks.

pub mod cli;
pub mod features;
pub mod logs;
pub mod model;
pub mod policy;
pub mod time;
pub mod workload;
