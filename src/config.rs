//! The service's settings: embedded defaults, overridden by a TOML file,
//! overridden by environment variables and flags (`shadowcast serve
//! --help` lists every one with its variable).
//!
//! Takes: [`ServeArgs`] (flags and `SHADOWCAST_*` variables, parsed by
//! clap) and the TOML file they name. Gives: a checked [`ServeConfig`].
//! Guarantees: every setting has one name in all three places (the TOML
//! key is the flag without `--`, with `_` for `-`); an unknown TOML key or
//! a bad value is an error naming the file, the key and the problem.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;

use crate::scheduler::SchedulerConfig;
use crate::time::SECOND_US;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    Parse { path: PathBuf, problem: String },
    #[error("setting `{setting}`: {problem}")]
    Invalid {
        setting: &'static str,
        problem: String,
    },
}

/// Flags of `shadowcast serve`; each also reads an environment variable
/// and a key of the `--config` file.
#[derive(Args, Debug, Default, Clone)]
pub struct ServeArgs {
    /// TOML file of settings (keys as the flags below, without `--`, `_` for `-`).
    #[arg(long, env = "SHADOWCAST_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:50051].
    #[arg(long, env = "SHADOWCAST_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory of the durable state (location map, phase, settings) [default: shadowcast-state].
    #[arg(long, env = "SHADOWCAST_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Access logs to plan from and follow (Parquet file, directory or Hive tree) [default: shadowcast-demo/logs].
    #[arg(long, env = "SHADOWCAST_LOGS")]
    pub logs: Option<PathBuf>,
    /// Cut-off of the features the plan is made from: `latest` or a time [default: latest].
    #[arg(long, env = "SHADOWCAST_AS_OF")]
    pub as_of: Option<String>,
    /// Own only the keys of shard I of N (for example 2/4): one migration
    /// served by N instances, each planning, leasing and tracking its keys
    /// (see `shadowcast::shard` for the hash) [default: 0/1, every key].
    #[arg(long, env = "SHADOWCAST_SHARD")]
    pub shard: Option<String>,
    /// Plan from this feature table instead of computing features from the
    /// logs: a file or a folder of part files, from `shadowcast features` or
    /// sql/features.sql run elsewhere, for the serving model's horizon. The
    /// plan is made again when the table is replaced (the logs are still
    /// followed for writes).
    #[arg(long, env = "SHADOWCAST_FEATURES")]
    pub features: Option<PathBuf>,
    /// Model registry directory [default: models].
    #[arg(long, env = "SHADOWCAST_MODELS")]
    pub models: Option<PathBuf>,
    /// Model name in the registry; its active version plans [default: default].
    #[arg(long, env = "SHADOWCAST_MODEL")]
    pub model: Option<String>,
    /// Policy modules to load at start, in order (the last is active); `PATH` or `PATH=CONFIG_FILE`.
    #[arg(long = "policy", env = "SHADOWCAST_POLICIES", value_delimiter = ',')]
    pub policies: Vec<String>,
    /// Seconds between scans of the logs for new files (0: off) [default: 10].
    #[arg(long, env = "SHADOWCAST_FOLLOW_SECONDS")]
    pub follow_seconds: Option<f64>,
    /// How often the plan is made again from fresh features while serving
    /// (e.g. 15m; `off` never), besides as soon as new logs hold a quarter as
    /// many events as the plan saw [default: a quarter of the serving model's horizon].
    #[arg(long, env = "SHADOWCAST_REPLAN_EVERY")]
    pub replan_every: Option<String>,
    /// Seconds a lease lasts unless extended [default: 30].
    #[arg(long, env = "SHADOWCAST_LEASE_SECONDS")]
    pub lease_seconds: Option<f64>,
    /// Seconds a key whose copy failed waits before it is offered again, doubled with each failure in a row up to 64 times [default: 1].
    #[arg(long, env = "SHADOWCAST_COPY_RETRY_SECONDS")]
    pub copy_retry_seconds: Option<f64>,
    /// Failures in a row after which a key is parked (listed in the status, offered again by RetryParked or a new write), counted only while other keys are copied; 0 never parks [default: 5].
    #[arg(long, env = "SHADOWCAST_MAX_COPY_FAILURES")]
    pub max_copy_failures: Option<u32>,
    /// Most keys in one batch [default: 10000].
    #[arg(long, env = "SHADOWCAST_MAX_BATCH_KEYS")]
    pub max_batch_keys: Option<usize>,
    /// Most bytes in one batch [default: 268435456].
    #[arg(long, env = "SHADOWCAST_MAX_BATCH_BYTES")]
    pub max_batch_bytes: Option<u64>,
    /// Global copy budget in bytes per second (0: unlimited) [default: 0].
    #[arg(long, env = "SHADOWCAST_BANDWIDTH_BYTES_PER_S")]
    pub bandwidth_bytes_per_s: Option<u64>,
    /// Confidence at which SHADOWING moves on to BACKGROUND [default: 0.9].
    #[arg(long, env = "SHADOWCAST_CONFIDENCE_THRESHOLD")]
    pub confidence_threshold: Option<f64>,
    /// Weight of the size distribution in the confidence [default: 1].
    #[arg(long, env = "SHADOWCAST_CONFIDENCE_WEIGHT_SIZE")]
    pub confidence_weight_size: Option<f64>,
    /// Weight of the table distribution in the confidence [default: 1].
    #[arg(long, env = "SHADOWCAST_CONFIDENCE_WEIGHT_TABLE")]
    pub confidence_weight_table: Option<f64>,
    /// Weight of the access-frequency distribution in the confidence [default: 1].
    #[arg(long, env = "SHADOWCAST_CONFIDENCE_WEIGHT_FREQUENCY")]
    pub confidence_weight_frequency: Option<f64>,
    /// Weight of the write-rate distribution in the confidence [default: 1].
    #[arg(long, env = "SHADOWCAST_CONFIDENCE_WEIGHT_WRITE_RATE")]
    pub confidence_weight_write_rate: Option<f64>,
    /// Weight of the share of predicted accesses already current in the confidence [default: 1].
    #[arg(long, env = "SHADOWCAST_CONFIDENCE_WEIGHT_PREDICTED")]
    pub confidence_weight_predicted: Option<f64>,
    /// Chance allowed that a sample looks more representative than it is (sets the sampling margin) [default: 0.05].
    #[arg(long, env = "SHADOWCAST_CONFIDENCE_RISK")]
    pub confidence_risk: Option<f64>,
    /// Share of the source's bytes rewritten per hour that halves the confidence [default: 0.01].
    #[arg(long, env = "SHADOWCAST_CONFIDENCE_CHANGE_HALF_SHARE")]
    pub confidence_change_half_share: Option<f64>,
    /// How much predicted churn lowers a key's benefit, in [0, 1] [default: 0.5].
    #[arg(long, env = "SHADOWCAST_CHURN_PENALTY")]
    pub churn_penalty: Option<f64>,
    /// Weight of the uniform component of the shadow sample [default: 0.25].
    #[arg(long, env = "SHADOWCAST_SAMPLE_SHARE_RANDOM")]
    pub sample_share_random: Option<f64>,
    /// Weight of the access-frequency component of the shadow sample [default: 0.25].
    #[arg(long, env = "SHADOWCAST_SAMPLE_SHARE_FREQUENCY")]
    pub sample_share_frequency: Option<f64>,
    /// Weight of the change-rate component of the shadow sample [default: 0.25].
    #[arg(long, env = "SHADOWCAST_SAMPLE_SHARE_CHANGE_RATE")]
    pub sample_share_change_rate: Option<f64>,
    /// Weight of the predicted-access component of the shadow sample [default: 0.25].
    #[arg(long, env = "SHADOWCAST_SAMPLE_SHARE_PREDICTED")]
    pub sample_share_predicted: Option<f64>,
    /// Share of keys in the shadow sample [default: 0.1].
    #[arg(long, env = "SHADOWCAST_SAMPLE_FRACTION")]
    pub sample_fraction: Option<f64>,
    /// Share of keys, by predicted accesses, that SHADOWING copies besides the sample [default: 0.05].
    #[arg(long, env = "SHADOWCAST_PREDICTED_HOT_SHARE")]
    pub predicted_hot_share: Option<f64>,
    /// Stay in SHADOWING until the confidence threshold even when the sample and predicted-hot keys are all copied.
    #[arg(long, env = "SHADOWCAST_HOLD_SHADOWING")]
    pub hold_shadowing: Option<bool>,
    /// The only directory LoadPolicy may read modules from by path [default: policies].
    #[arg(long, env = "SHADOWCAST_POLICY_DIR")]
    pub policy_dir: Option<PathBuf>,
    /// What versions are: `time` (the source's write times in microseconds,
    /// as the access logs give them) or `lsn` (PostgreSQL log sequence
    /// numbers, from `shadowcast capture` and the tables executor; log
    /// files then say which keys are written, not at which version) [default: time].
    #[arg(long, env = "SHADOWCAST_VERSIONS")]
    pub versions: Option<crate::scheduler::Versions>,
    /// Versions are microsecond times: refuse one later than now plus this
    /// (e.g. 1h; `off` accepts any) [default: 1h; not with --versions lsn].
    #[arg(long, env = "SHADOWCAST_MAX_VERSION_SKEW")]
    pub max_version_skew: Option<String>,
    /// Longest key accepted in a request, in bytes [default: 4096].
    #[arg(long, env = "SHADOWCAST_MAX_KEY_BYTES")]
    pub max_key_bytes: Option<usize>,
    /// Most keys in one acknowledge or report-writes call [default: 100000].
    #[arg(long, env = "SHADOWCAST_MAX_KEYS_PER_CALL")]
    pub max_keys_per_call: Option<usize>,
    /// Most distinct tables in one acknowledge or report-writes call [default: 100].
    #[arg(long, env = "SHADOWCAST_MAX_TABLES_PER_CALL")]
    pub max_tables_per_call: Option<usize>,
    /// Most open client connections; beyond it, the oldest connection that
    /// has not yet sent its greeting makes room, or the new one is closed
    /// [default: 1024, and at most the open-file limit less 128].
    #[arg(long, env = "SHADOWCAST_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// A connection that has not sent its greeting (the HTTP/2 preface, a
    /// TLS hello or an HTTP/1.1 request line) this long after it opened is
    /// closed (e.g. 10s) [default: 10s].
    #[arg(long, env = "SHADOWCAST_HANDSHAKE_TIMEOUT")]
    pub handshake_timeout: Option<String>,
    /// How often an idle HTTP/2 connection is pinged [default: 30s].
    #[arg(long, env = "SHADOWCAST_KEEPALIVE_INTERVAL")]
    pub keepalive_interval: Option<String>,
    /// A connection whose peer does not answer a ping this long is closed [default: 10s].
    #[arg(long, env = "SHADOWCAST_KEEPALIVE_TIMEOUT")]
    pub keepalive_timeout: Option<String>,
    /// Most calls under way at once on one connection [default: 256].
    #[arg(long, env = "SHADOWCAST_MAX_STREAMS_PER_CONNECTION")]
    pub max_streams_per_connection: Option<u32>,
    /// PEM certificate chain; with --tls-key, serve over TLS.
    #[arg(long, env = "SHADOWCAST_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "SHADOWCAST_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Bearer tokens executors present (lease, acknowledge, report writes, look up, read status); each is an identity: a lease answers only to the token that took it.
    #[arg(
        long = "executor-token",
        env = "SHADOWCAST_EXECUTOR_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub executor_tokens: Vec<String>,
    /// Bearer tokens operators present (everything, including models, policies and migration control).
    #[arg(
        long = "admin-token",
        env = "SHADOWCAST_ADMIN_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub admin_tokens: Vec<String>,
}

/// The TOML file: the same settings as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listen: Option<SocketAddr>,
    state_dir: Option<PathBuf>,
    logs: Option<PathBuf>,
    as_of: Option<String>,
    shard: Option<String>,
    features: Option<PathBuf>,
    models: Option<PathBuf>,
    model: Option<String>,
    policies: Option<Vec<String>>,
    follow_seconds: Option<f64>,
    replan_every: Option<String>,
    lease_seconds: Option<f64>,
    copy_retry_seconds: Option<f64>,
    max_copy_failures: Option<u32>,
    max_batch_keys: Option<usize>,
    max_batch_bytes: Option<u64>,
    bandwidth_bytes_per_s: Option<u64>,
    confidence_threshold: Option<f64>,
    confidence_weight_size: Option<f64>,
    confidence_weight_table: Option<f64>,
    confidence_weight_frequency: Option<f64>,
    confidence_weight_write_rate: Option<f64>,
    confidence_weight_predicted: Option<f64>,
    confidence_risk: Option<f64>,
    confidence_change_half_share: Option<f64>,
    churn_penalty: Option<f64>,
    sample_share_random: Option<f64>,
    sample_share_frequency: Option<f64>,
    sample_share_change_rate: Option<f64>,
    sample_share_predicted: Option<f64>,
    sample_fraction: Option<f64>,
    predicted_hot_share: Option<f64>,
    hold_shadowing: Option<bool>,
    policy_dir: Option<PathBuf>,
    versions: Option<crate::scheduler::Versions>,
    max_version_skew: Option<String>,
    max_key_bytes: Option<usize>,
    max_keys_per_call: Option<usize>,
    max_tables_per_call: Option<usize>,
    max_connections: Option<usize>,
    handshake_timeout: Option<String>,
    keepalive_interval: Option<String>,
    keepalive_timeout: Option<String>,
    max_streams_per_connection: Option<u32>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    executor_tokens: Option<Vec<String>>,
    admin_tokens: Option<Vec<String>>,
}

/// What one request may carry: a hostile or broken client gets a clear
/// refusal naming the limit, not a stall of every other caller.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RequestLimits {
    /// Versions later than now plus this are refused (`None`: any version).
    pub max_version_skew_us: Option<i64>,
    pub max_key_bytes: usize,
    pub max_keys_per_call: usize,
    pub max_tables_per_call: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_version_skew_us: Some(crate::time::HOUR_US),
            max_key_bytes: 4096,
            max_keys_per_call: 100_000,
            max_tables_per_call: 100,
        }
    }
}

impl RequestLimits {
    fn resolve(
        args: &ServeArgs,
        file: &FileSettings,
        versions: crate::scheduler::Versions,
    ) -> Result<Self, ConfigError> {
        let defaults = RequestLimits::default();
        let skew = args
            .max_version_skew
            .as_deref()
            .or(file.max_version_skew.as_deref());
        let max_version_skew_us = match skew {
            Some(_) if versions == crate::scheduler::Versions::Lsn => {
                return Err(ConfigError::Invalid {
                        setting: "max_version_skew",
                        problem: "applies to versions that are times; with versions = lsn a version is a log position and any is accepted".into(),
                    });
            }
            None if versions == crate::scheduler::Versions::Lsn => None,
            None => defaults.max_version_skew_us,
            Some("off") => None,
            Some(text) => {
                Some(
                    crate::time::parse_duration(text).map_err(|problem| ConfigError::Invalid {
                        setting: "max_version_skew",
                        problem,
                    })?,
                )
            }
        };
        Ok(RequestLimits {
            max_version_skew_us,
            max_key_bytes: at_least_one(
                "max_key_bytes",
                args.max_key_bytes.or(file.max_key_bytes),
                defaults.max_key_bytes,
            )?,
            max_keys_per_call: at_least_one(
                "max_keys_per_call",
                args.max_keys_per_call.or(file.max_keys_per_call),
                defaults.max_keys_per_call,
            )?,
            max_tables_per_call: at_least_one(
                "max_tables_per_call",
                args.max_tables_per_call.or(file.max_tables_per_call),
                defaults.max_tables_per_call,
            )?,
        })
    }
}

/// `value` (or `default` when not set), refused when it is zero.
fn at_least_one<T: Default + PartialEq>(
    setting: &'static str,
    value: Option<T>,
    default: T,
) -> Result<T, ConfigError> {
    let value = value.unwrap_or(default);
    if value == T::default() {
        return Err(ConfigError::Invalid {
            setting,
            problem: "must be at least 1".into(),
        });
    }
    Ok(value)
}

/// What one client connection may hold: a flood of silent or half-open
/// connections is closed before it can use up the open-file limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub handshake_timeout: std::time::Duration,
    pub keepalive_interval: std::time::Duration,
    pub keepalive_timeout: std::time::Duration,
    pub max_streams_per_connection: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 1024,
            handshake_timeout: std::time::Duration::from_secs(10),
            keepalive_interval: std::time::Duration::from_secs(30),
            keepalive_timeout: std::time::Duration::from_secs(10),
            max_streams_per_connection: 256,
        }
    }
}

impl ConnectionLimits {
    fn resolve(args: &ServeArgs, file: &FileSettings) -> Result<Self, ConfigError> {
        let defaults = ConnectionLimits::default();
        let duration = |setting: &'static str,
                        flag: &Option<String>,
                        stored: &Option<String>,
                        default: std::time::Duration| {
            match flag.as_deref().or(stored.as_deref()) {
                None => Ok(default),
                Some(text) => crate::time::parse_std_duration(text)
                    .map_err(|problem| ConfigError::Invalid { setting, problem }),
            }
        };
        Ok(ConnectionLimits {
            max_connections: at_least_one(
                "max_connections",
                args.max_connections.or(file.max_connections),
                defaults.max_connections,
            )?,
            handshake_timeout: duration(
                "handshake_timeout",
                &args.handshake_timeout,
                &file.handshake_timeout,
                defaults.handshake_timeout,
            )?,
            keepalive_interval: duration(
                "keepalive_interval",
                &args.keepalive_interval,
                &file.keepalive_interval,
                defaults.keepalive_interval,
            )?,
            keepalive_timeout: duration(
                "keepalive_timeout",
                &args.keepalive_timeout,
                &file.keepalive_timeout,
                defaults.keepalive_timeout,
            )?,
            max_streams_per_connection: at_least_one(
                "max_streams_per_connection",
                args.max_streams_per_connection
                    .or(file.max_streams_per_connection),
                defaults.max_streams_per_connection,
            )?,
        })
    }
}

/// A policy module to load at start.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyFile {
    pub module: PathBuf,
    pub config: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// When the service plans again while serving.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Replan {
    /// Every quarter of the serving model's horizon.
    QuarterHorizon,
    Every(std::time::Duration),
    Never,
}

/// Every setting of the service, checked.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub state_dir: PathBuf,
    pub logs: PathBuf,
    pub as_of: String,
    /// The keys this instance owns.
    pub shard: crate::shard::Shard,
    /// A feature table to plan from instead of the logs.
    pub features: Option<PathBuf>,
    pub models: PathBuf,
    pub model: String,
    pub policies: Vec<PolicyFile>,
    /// Where LoadPolicy may read modules by path.
    pub policy_dir: PathBuf,
    /// `None`: do not follow the logs.
    pub follow_every: Option<std::time::Duration>,
    pub replan: Replan,
    pub scheduler: SchedulerConfig,
    pub limits: RequestLimits,
    pub connections: ConnectionLimits,
    pub tls: Option<Tls>,
    pub executor_tokens: Vec<String>,
    pub admin_tokens: Vec<String>,
}

impl ServeConfig {
    /// Defaults, then the file named by `args.config`, then `args`.
    pub fn resolve(args: ServeArgs) -> Result<ServeConfig, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        let versions = args.versions.or(file.versions).unwrap_or_default();
        let limits = RequestLimits::resolve(&args, &file, versions)?;
        let connections = ConnectionLimits::resolve(&args, &file)?;
        let list = |flag: Vec<String>, file: Option<Vec<String>>| {
            if flag.is_empty() {
                file.unwrap_or_default()
            } else {
                flag
            }
        };
        let positive = |setting: &'static str, seconds: f64| {
            if seconds.is_finite() && seconds >= 0.0 {
                Ok(seconds)
            } else {
                Err(ConfigError::Invalid {
                    setting,
                    problem: format!("must be a number of seconds ≥ 0, got {seconds}"),
                })
            }
        };
        let defaults = SchedulerConfig::default();
        let mut scheduler = SchedulerConfig {
            max_batch_keys: args
                .max_batch_keys
                .or(file.max_batch_keys)
                .unwrap_or(defaults.max_batch_keys),
            max_batch_bytes: args
                .max_batch_bytes
                .or(file.max_batch_bytes)
                .unwrap_or(defaults.max_batch_bytes),
            bandwidth_bytes_per_s: args
                .bandwidth_bytes_per_s
                .or(file.bandwidth_bytes_per_s)
                .filter(|&rate| rate > 0),
            lease_duration_us: (positive(
                "lease_seconds",
                args.lease_seconds.or(file.lease_seconds).unwrap_or(30.0),
            )? * SECOND_US as f64) as i64,
            copy_retry_us: match args.copy_retry_seconds.or(file.copy_retry_seconds) {
                Some(seconds) => {
                    (positive("copy_retry_seconds", seconds)? * SECOND_US as f64) as i64
                }
                None => defaults.copy_retry_us,
            },
            max_copy_failures: args
                .max_copy_failures
                .or(file.max_copy_failures)
                .unwrap_or(defaults.max_copy_failures),
            predicted_hot_share: args
                .predicted_hot_share
                .or(file.predicted_hot_share)
                .unwrap_or(defaults.predicted_hot_share),
            background_when_shadow_copied: !args
                .hold_shadowing
                .or(file.hold_shadowing)
                .unwrap_or(false),
            versions,
            ..defaults
        };
        if let Some(threshold) = args.confidence_threshold.or(file.confidence_threshold) {
            scheduler.confidence.threshold = threshold;
        }
        if let Some(fraction) = args.sample_fraction.or(file.sample_fraction) {
            scheduler.sample.fraction = fraction;
        }
        let settings: [(Option<f64>, Option<f64>, &mut f64); 12] = [
            (
                args.confidence_weight_size,
                file.confidence_weight_size,
                &mut scheduler.confidence.weights.size,
            ),
            (
                args.confidence_weight_table,
                file.confidence_weight_table,
                &mut scheduler.confidence.weights.table,
            ),
            (
                args.confidence_weight_frequency,
                file.confidence_weight_frequency,
                &mut scheduler.confidence.weights.frequency,
            ),
            (
                args.confidence_weight_write_rate,
                file.confidence_weight_write_rate,
                &mut scheduler.confidence.weights.write_rate,
            ),
            (
                args.confidence_weight_predicted,
                file.confidence_weight_predicted,
                &mut scheduler.confidence.weights.predicted,
            ),
            (
                args.confidence_risk,
                file.confidence_risk,
                &mut scheduler.confidence.risk,
            ),
            (
                args.confidence_change_half_share,
                file.confidence_change_half_share,
                &mut scheduler.confidence.change_half_share,
            ),
            (
                args.churn_penalty,
                file.churn_penalty,
                &mut scheduler.churn_penalty,
            ),
            (
                args.sample_share_random,
                file.sample_share_random,
                &mut scheduler.sample.shares.random,
            ),
            (
                args.sample_share_frequency,
                file.sample_share_frequency,
                &mut scheduler.sample.shares.frequency,
            ),
            (
                args.sample_share_change_rate,
                file.sample_share_change_rate,
                &mut scheduler.sample.shares.change_rate,
            ),
            (
                args.sample_share_predicted,
                file.sample_share_predicted,
                &mut scheduler.sample.shares.predicted,
            ),
        ];
        for (flag, from_file, value) in settings {
            if let Some(set) = flag.or(from_file) {
                *value = set;
            }
        }
        let scheduler = scheduler.check().map_err(|error| ConfigError::Invalid {
            setting: "scheduler",
            problem: error.to_string(),
        })?;
        let follow = positive(
            "follow_seconds",
            args.follow_seconds.or(file.follow_seconds).unwrap_or(10.0),
        )?;
        let replan = match args.replan_every.or(file.replan_every).as_deref() {
            None => Replan::QuarterHorizon,
            Some("off" | "never" | "0") => Replan::Never,
            Some(text) => crate::time::parse_std_duration(text)
                .map(Replan::Every)
                .map_err(|problem| ConfigError::Invalid {
                    setting: "replan_every",
                    problem,
                })?,
        };
        let shard = match args.shard.or(file.shard) {
            None => crate::shard::Shard::WHOLE,
            Some(text) => text.parse().map_err(|problem| ConfigError::Invalid {
                setting: "shard",
                problem,
            })?,
        };
        let tls = match (
            args.tls_cert.or(file.tls_cert),
            args.tls_key.or(file.tls_key),
        ) {
            (Some(cert), Some(key)) => Some(Tls { cert, key }),
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => {
                return Err(ConfigError::Invalid {
                    setting: "tls_cert / tls_key",
                    problem: "set both or neither".into(),
                });
            }
        };
        let executor_tokens = list(args.executor_tokens, file.executor_tokens);
        let admin_tokens = list(args.admin_tokens, file.admin_tokens);
        for (setting, tokens) in [
            ("executor_tokens", &executor_tokens),
            ("admin_tokens", &admin_tokens),
        ] {
            if tokens.iter().any(|t| t.trim().is_empty()) {
                return Err(ConfigError::Invalid {
                    setting,
                    problem: "a token is empty".into(),
                });
            }
        }
        if executor_tokens.iter().any(|t| admin_tokens.contains(t)) {
            return Err(ConfigError::Invalid {
                setting: "executor_tokens",
                problem: "a token is both an executor and an admin token; keep them apart".into(),
            });
        }
        let listen = args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 50051)));
        if executor_tokens.is_empty() && admin_tokens.is_empty() && !listen.ip().is_loopback() {
            return Err(ConfigError::Invalid {
                setting: "listen",
                problem: format!(
                    "{listen} is not a loopback address, and no tokens are configured: \
                     set admin_tokens and executor_tokens to listen beyond this machine"
                ),
            });
        }
        Ok(ServeConfig {
            listen,
            state_dir: args
                .state_dir
                .or(file.state_dir)
                .unwrap_or_else(|| "shadowcast-state".into()),
            logs: args
                .logs
                .or(file.logs)
                .unwrap_or_else(|| "shadowcast-demo/logs".into()),
            as_of: args.as_of.or(file.as_of).unwrap_or_else(|| "latest".into()),
            shard,
            features: args.features.or(file.features),
            models: args
                .models
                .or(file.models)
                .unwrap_or_else(|| "models".into()),
            model: args
                .model
                .or(file.model)
                .unwrap_or_else(|| "default".into()),
            policies: list(args.policies, file.policies)
                .iter()
                .map(|spec| parse_policy(spec))
                .collect(),
            policy_dir: args
                .policy_dir
                .or(file.policy_dir)
                .unwrap_or_else(|| "policies".into()),
            follow_every: (follow > 0.0).then(|| std::time::Duration::from_secs_f64(follow)),
            replan,
            scheduler,
            limits,
            connections,
            tls,
            executor_tokens,
            admin_tokens,
        })
    }

    /// Whether callers must present a token.
    pub fn requires_tokens(&self) -> bool {
        !(self.executor_tokens.is_empty() && self.admin_tokens.is_empty())
    }

    /// The location map's file.
    pub fn state_file(&self) -> PathBuf {
        self.state_dir.join("locations.redb")
    }
}

fn read_file(path: &Path) -> Result<FileSettings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|error| ConfigError::Parse {
        path: path.to_path_buf(),
        problem: error.to_string(),
    })
}

fn parse_policy(spec: &str) -> PolicyFile {
    match spec.split_once('=') {
        Some((module, config)) => PolicyFile {
            module: module.into(),
            config: Some(config.into()),
        },
        None => PolicyFile {
            module: spec.into(),
            config: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let file = write("lease_seconds = 5\nmax_batch_keys = 100\nlogs = \"from-file\"\n");
        let config = ServeConfig::resolve(ServeArgs {
            config: Some(file.path().into()),
            max_batch_keys: Some(7),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(config.scheduler.max_batch_keys, 7);
        assert_eq!(config.scheduler.lease_duration_us, 5 * SECOND_US);
        assert_eq!(config.logs, PathBuf::from("from-file"));
        assert_eq!(config.listen.to_string(), "127.0.0.1:50051");
        assert!(!config.requires_tokens());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let file = write("lease_secs = 5\n");
        let error = ServeConfig::resolve(ServeArgs {
            config: Some(file.path().into()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(error.contains("lease_secs"), "{error}");
        let error = ServeConfig::resolve(ServeArgs {
            confidence_threshold: Some(1.5),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(error.contains("threshold"), "{error}");
        let error = ServeConfig::resolve(ServeArgs {
            replan_every: Some("5 parsecs".into()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(error.contains("replan_every"), "{error}");
    }

    #[test]
    fn confidence_churn_and_sample_settings_come_from_file_flag_or_default() {
        let file = write(
            "confidence_weight_predicted = 0.0\nchurn_penalty = 0.25\nsample_share_random = 0.5\nconfidence_risk = 0.01\n",
        );
        let config = ServeConfig::resolve(ServeArgs {
            config: Some(file.path().into()),
            sample_share_random: Some(0.75),
            ..Default::default()
        })
        .unwrap();
        let scheduler = config.scheduler;
        assert_eq!(scheduler.confidence.weights.predicted, 0.0);
        assert_eq!(scheduler.confidence.weights.size, 1.0, "default");
        assert_eq!(scheduler.confidence.risk, 0.01);
        assert_eq!(scheduler.churn_penalty, 0.25);
        assert_eq!(scheduler.sample.shares.random, 0.75, "the flag wins");
        let error = ServeConfig::resolve(ServeArgs {
            churn_penalty: Some(2.0),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(error.contains("churn_penalty"), "{error}");
        let error = ServeConfig::resolve(ServeArgs {
            confidence_risk: Some(0.0),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(error.contains("risk"), "{error}");
    }

    #[test]
    fn replanning_defaults_to_a_quarter_horizon_and_takes_a_period_or_off() {
        let replan = |every: Option<&str>| {
            ServeConfig::resolve(ServeArgs {
                replan_every: every.map(String::from),
                ..Default::default()
            })
            .unwrap()
            .replan
        };
        assert_eq!(replan(None), Replan::QuarterHorizon);
        assert_eq!(
            replan(Some("15m")),
            Replan::Every(std::time::Duration::from_secs(900))
        );
        assert_eq!(replan(Some("off")), Replan::Never);
    }

    #[test]
    fn request_limits_default_and_take_a_skew_or_off() {
        let limits = |args: ServeArgs| ServeConfig::resolve(args).map(|c| c.limits);
        let defaults = limits(ServeArgs::default()).unwrap();
        assert_eq!(defaults.max_version_skew_us, Some(crate::time::HOUR_US));
        assert_eq!(defaults.max_key_bytes, 4096);
        let off = limits(ServeArgs {
            max_version_skew: Some("off".into()),
            max_keys_per_call: Some(7),
            ..Default::default()
        })
        .unwrap();
        assert_eq!((off.max_version_skew_us, off.max_keys_per_call), (None, 7));
        let error = limits(ServeArgs {
            max_tables_per_call: Some(0),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(error.contains("max_tables_per_call"), "{error}");
        let error = limits(ServeArgs {
            max_version_skew: Some("soon".into()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(error.contains("max_version_skew"), "{error}");
    }

    #[test]
    fn connection_limits_come_from_file_flag_or_default() {
        let file = write("handshake_timeout = \"3s\"\nmax_connections = 40\n");
        let config = ServeConfig::resolve(ServeArgs {
            config: Some(file.path().into()),
            max_connections: Some(50),
            keepalive_interval: Some("2m".into()),
            ..Default::default()
        })
        .unwrap();
        let limits = config.connections;
        assert_eq!(limits.max_connections, 50, "the flag wins");
        assert_eq!(limits.handshake_timeout, std::time::Duration::from_secs(3));
        assert_eq!(
            limits.keepalive_interval,
            std::time::Duration::from_secs(120)
        );
        assert_eq!(
            limits.keepalive_timeout,
            std::time::Duration::from_secs(10),
            "default"
        );
        assert_eq!(limits.max_streams_per_connection, 256, "default");
        for args in [
            ServeArgs {
                max_streams_per_connection: Some(0),
                ..Default::default()
            },
            ServeArgs {
                keepalive_timeout: Some("10".into()),
                ..Default::default()
            },
        ] {
            let error = ServeConfig::resolve(args).unwrap_err().to_string();
            assert!(
                error.contains("max_streams_per_connection") || error.contains("keepalive_timeout"),
                "{error}"
            );
        }
    }

    #[test]
    fn open_listening_needs_tokens_and_tokens_stay_apart() {
        let open = ServeArgs {
            listen: Some("0.0.0.0:50051".parse().unwrap()),
            ..Default::default()
        };
        let error = ServeConfig::resolve(open.clone()).unwrap_err().to_string();
        assert!(error.contains("loopback"), "{error}");
        let shared = ServeArgs {
            executor_tokens: vec!["same".into()],
            admin_tokens: vec!["same".into()],
            ..open.clone()
        };
        assert!(ServeConfig::resolve(shared).is_err());
        let tokens = ServeArgs {
            executor_tokens: vec!["e".into()],
            admin_tokens: vec!["a".into()],
            ..open
        };
        assert!(ServeConfig::resolve(tokens).unwrap().requires_tokens());
    }
}
