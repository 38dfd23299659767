//! Stage 4 — policies.
//!
//! Takes: [`Candidates`] — keys with their metadata, model scores and
//! features, as columns. Gives: [`Decisions`] — per key a weight (0
//! excludes it) and scheduling hints (priority class, earliest move time,
//! preferred destination) — from the active WebAssembly policy, or the
//! built-in neutral default when none is loaded.
//!
//! Guarantees: a policy runs in a sandbox (no imports, a time bound per
//! call through epoch interruption, a memory bound per instance); a module
//! is checked (exports, ABI version, configuration, a canary batch) before
//! it can serve; a policy that traps, times out, runs out of memory or
//! returns bad outputs is unloaded with an error naming it and the cause,
//! and the batch is decided again by the policy that served before it, so
//! no batch goes undecided. The ABI is `policies/ABI.md`; its constants
//! live in the SDK crate (`shadowcast-policy`), shared with guests.

pub mod candidates;
pub mod host;
pub mod registry;

use std::time::Duration;

pub use candidates::{Candidates, Decisions, scheduling_order};
pub use host::{PolicyHost, PolicyLimits};
pub use registry::{PolicyInfo, PolicyRegistry};

/// Reads a policy's `what` ("module" or "configuration") from `path`.
fn read_file(what: &'static str, path: &std::path::Path) -> Result<Vec<u8>, PolicyError> {
    std::fs::read(path).map_err(|error| PolicyError::Read {
        what,
        path: path.to_path_buf(),
        error,
    })
}

/// The configuration blob at `path`, or an empty one without a path.
pub fn read_config(path: Option<&std::path::Path>) -> Result<Vec<u8>, PolicyError> {
    path.map_or(Ok(Vec::new()), |path| read_file("configuration", path))
}

/// The name a policy loaded from `path` goes by: the file's stem.
pub fn name_from_path(path: &std::path::Path) -> String {
    path.file_stem()
        .map_or_else(|| "policy".into(), |s| s.to_string_lossy().into_owned())
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy limit `{field}` {problem}")]
    InvalidLimit {
        field: &'static str,
        problem: String,
    },

    #[error("creating the WebAssembly engine failed: {0}")]
    Engine(String),

    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The cause is in the message (not a source), so it reads once.
    #[error("reading policy {what} {path}: {error}")]
    Read {
        what: &'static str,
        path: std::path::PathBuf,
        error: std::io::Error,
    },

    #[error("policy {policy}: not a valid WebAssembly module: {problem}")]
    Compile { policy: String, problem: String },

    #[error(
        "policy {policy}: imports {import}, but policies get no host functions (build for wasm32-unknown-unknown without WASI)"
    )]
    Import { policy: String, import: String },

    #[error("policy {policy}: missing export `{export}` ({expected})")]
    MissingExport {
        policy: String,
        export: String,
        expected: String,
    },

    #[error("policy {policy}: export `{export}` should be {expected}, found {found}")]
    ExportSignature {
        policy: String,
        export: String,
        expected: String,
        found: String,
    },

    #[error(
        "policy {policy}: speaks ABI version {found}; this shadowcast speaks version {supported}"
    )]
    AbiVersion {
        policy: String,
        found: i32,
        supported: u32,
    },

    #[error("policy {policy}: refused its configuration: {message}")]
    Config { policy: String, message: String },

    #[error("policy {policy}: {during} ran past the {limit:?} time limit (stopped)")]
    Timeout {
        policy: String,
        during: String,
        limit: Duration,
    },

    #[error("policy {policy}: {during} exceeded the memory limit of {limit_bytes} bytes")]
    MemoryLimit {
        policy: String,
        during: String,
        limit_bytes: usize,
    },

    #[error("policy {policy}: trapped in {during}: {trap}{guest_message}")]
    Trap {
        policy: String,
        during: String,
        trap: String,
        guest_message: String,
    },

    #[error("policy {policy}: decide returned error code {code}: {message}")]
    ErrorCode {
        policy: String,
        code: i32,
        message: String,
    },

    #[error("policy {policy}: decided {found} keys of a batch of {expected}")]
    WrongCount {
        policy: String,
        expected: usize,
        found: i64,
    },

    #[error(
        "policy {policy}: bad {field} {value} for key {key} (batch row {index}); expected {expected}"
    )]
    BadOutput {
        policy: String,
        key: String,
        index: usize,
        field: &'static str,
        value: String,
        expected: &'static str,
    },

    #[error("policy {policy}: {problem}")]
    BadRegion { policy: String, problem: String },

    #[error("no policy named {0} is loaded")]
    NotLoaded(String),
}
