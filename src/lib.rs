//! shadowcast: predicts which keys of a database under migration will be hot
//! or high-churn, and hands executors prioritized batches to copy early.
//!
//! Modules follow the data flow: [`logs`] → [`features`] → [`model`] →
//! [`policy`] → [`scheduler`] (over the durable [`state`]) → [`service`]
//! (the gRPC API, configured by [`config`]). [`workload`] generates realistic access
//! logs for development, tests and benchmarks; [`simulate`] replays logs
//! through the real stages to measure what each pre-migration strategy buys.
//! [`shard`] says which of N services owns a key when one migration runs
//! as several.

pub mod capture;
pub mod chart;
pub mod cli;
pub mod config;
pub mod executor;
pub mod export;
pub mod features;
pub mod keys;
pub mod logs;
pub mod model;
pub mod pg;
pub mod policy;
pub mod prefetch;
pub mod scheduler;
pub mod service;
pub mod shard;
pub mod simulate;
pub mod state;
pub mod time;
pub mod verify;
pub mod wait;
pub mod workload;
