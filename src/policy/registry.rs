//! Loaded policies by name, the active one, and deciding with fallback.
//!
//! A handle (cheap to clone) over shared state. The list of loaded policies
//! sits behind a std `RwLock`: decisions take a read lock just long enough
//! to clone the active policy's `Arc`, and loads and unloads take the write
//! lock only to swap entries, after compiling and the canary run are done,
//! so a load never blocks scoring and no caller sees a half-loaded policy.

use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use super::PolicyError;
use super::candidates::{Candidates, Decisions};
use super::host::{CompiledPolicy, PolicyHost, PolicyInstance};

/// The name decisions carry when no policy is loaded.
pub const BUILTIN: &str = "builtin-default";

/// What `list` shows of a loaded policy.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyInfo {
    pub name: String,
    pub sha256: String,
    /// RFC 3339, UTC.
    pub loaded_at: String,
    pub active: bool,
    pub config_bytes: usize,
}

struct LoadedPolicy {
    compiled: CompiledPolicy,
    config: Vec<u8>,
    loaded_at: String,
    /// Idle instances; a call takes one (or makes one) and gives it back
    /// only if the call succeeded, so a trapped instance is never reused.
    idle: Mutex<Vec<PolicyInstance>>,
}

impl LoadedPolicy {
    fn run(
        &self,
        host: &PolicyHost,
        candidates: &Candidates,
        mut out: Decisions,
    ) -> Result<Decisions, PolicyError> {
        let idle = self.idle.lock().expect("instance pool").pop();
        let mut instance = match idle {
            Some(instance) => instance,
            None => host.instantiate(&self.compiled, &self.config)?,
        };
        out.clear();
        let step = host.limits().batch_keys;
        for start in (0..candidates.len()).step_by(step) {
            let end = (start + step).min(candidates.len());
            instance.decide(candidates, start..end, &mut out)?;
        }
        self.idle.lock().expect("instance pool").push(instance);
        Ok(out)
    }
}

/// Decisions and who made them.
#[derive(Debug)]
pub struct Decided {
    pub decisions: Decisions,
    /// The policy that decided, or [`BUILTIN`].
    pub policy: String,
    /// Policies that failed on this batch and were unloaded, in order.
    pub failures: Vec<PolicyError>,
}

/// The policy registry handle.
#[derive(Clone)]
pub struct PolicyRegistry {
    host: PolicyHost,
    /// Load order; the last one is active.
    loaded: Arc<RwLock<Vec<Arc<LoadedPolicy>>>>,
}

fn now_rfc3339() -> String {
    chrono::DateTime::<chrono::Utc>::from(SystemTime::now())
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl PolicyRegistry {
    pub fn new(host: PolicyHost) -> Self {
        PolicyRegistry {
            host,
            loaded: Arc::default(),
        }
    }

    /// Compiles, validates (exports, ABI version, configuration, a canary
    /// batch) and activates `bytes` as `name`, replacing a policy of that
    /// name. On any error nothing changes.
    pub fn load(&self, name: &str, bytes: &[u8], config: &[u8]) -> Result<PolicyInfo, PolicyError> {
        let compiled = self.host.compile(name, bytes)?;
        let policy = Arc::new(LoadedPolicy {
            compiled,
            config: config.to_vec(),
            loaded_at: now_rfc3339(),
            idle: Mutex::new(Vec::new()),
        });
        canary(&self.host, &policy)?;
        let mut loaded = self.loaded.write().expect("policy list");
        loaded.retain(|p| p.compiled.name != name);
        loaded.push(policy);
        drop(loaded);
        tracing::info!(policy = name, "policy loaded and active");
        Ok(self
            .list()
            .into_iter()
            .find(|p| p.name == name)
            .expect("just loaded"))
    }

    /// [`load`](Self::load)s the module at `module` (named after its file,
    /// [`super::name_from_path`]) with the configuration at `config`, if any.
    pub fn load_file(
        &self,
        module: &std::path::Path,
        config: Option<&std::path::Path>,
    ) -> Result<PolicyInfo, PolicyError> {
        let bytes = super::read_file("module", module)?;
        let config = super::read_config(config)?;
        self.load(&super::name_from_path(module), &bytes, &config)
    }

    /// Removes `name`; if it was active, the one loaded before it serves.
    pub fn unload(&self, name: &str) -> Result<(), PolicyError> {
        let mut loaded = self.loaded.write().expect("policy list");
        let before = loaded.len();
        loaded.retain(|p| p.compiled.name != name);
        if loaded.len() == before {
            return Err(PolicyError::NotLoaded(name.to_string()));
        }
        Ok(())
    }

    pub fn list(&self) -> Vec<PolicyInfo> {
        let loaded = self.loaded.read().expect("policy list");
        loaded
            .iter()
            .enumerate()
            .map(|(i, p)| PolicyInfo {
                name: p.compiled.name.clone(),
                sha256: p.compiled.sha256.clone(),
                loaded_at: p.loaded_at.clone(),
                active: i + 1 == loaded.len(),
                config_bytes: p.config.len(),
            })
            .collect()
    }

    /// The name of the policy that decides now.
    pub fn active(&self) -> String {
        self.loaded
            .read()
            .expect("policy list")
            .last()
            .map_or_else(|| BUILTIN.to_string(), |p| p.compiled.name.clone())
    }

    /// Decides `candidates` with the active policy. A policy that fails is
    /// unloaded and the batch goes to the one before it, down to the
    /// built-in default, so every batch gets decisions.
    pub fn decide(&self, candidates: &Candidates) -> Decided {
        self.decide_reusing(candidates, Decisions::with_capacity(candidates.len()))
    }

    /// [`PolicyRegistry::decide`], writing into `buffer` (the decisions of
    /// an earlier call): callers deciding batch after batch skip allocating
    /// and faulting in fresh output memory each time.
    pub fn decide_reusing(&self, candidates: &Candidates, mut buffer: Decisions) -> Decided {
        let mut failures = Vec::new();
        loop {
            let active = self.loaded.read().expect("policy list").last().cloned();
            let Some(policy) = active else {
                buffer.clear();
                buffer.extend_neutral(candidates.len());
                return Decided {
                    decisions: buffer,
                    policy: BUILTIN.to_string(),
                    failures,
                };
            };
            match policy.run(&self.host, candidates, std::mem::take(&mut buffer)) {
                Ok(decisions) => {
                    return Decided {
                        decisions,
                        policy: policy.compiled.name.clone(),
                        failures,
                    };
                }
                Err(error) => {
                    tracing::error!(%error, "policy failed; unloading it");
                    self.loaded
                        .write()
                        .expect("policy list")
                        .retain(|p| !Arc::ptr_eq(p, &policy));
                    failures.push(error);
                }
            }
        }
    }
}

/// The canary: the policy must decide a varied sample batch; every call
/// checks its outputs, so running it is the check.
fn canary(host: &PolicyHost, policy: &LoadedPolicy) -> Result<(), PolicyError> {
    let sample = Candidates::canary(chrono::Utc::now().timestamp_micros());
    policy.run(host, &sample, Decisions::with_capacity(sample.len()))?;
    Ok(())
}
