//! The `Management` service: status, top predictions, models, policies and
//! migration control. Calls that change something need an admin token;
//! a model or policy change re-plans before it answers.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::auth::require_admin;
use super::planning::model_label;
use super::proto::{self, load_policy_request, management_server::Management};
use super::{Shared, blocking, invalid};
use crate::model::ModelError;
use crate::policy::{PolicyError, PolicyInfo};
use crate::scheduler::{LocationCounts, Phase};
use crate::state::Location;
use crate::time::{format_instant, now_us};

pub struct ManagementApi {
    shared: Arc<Shared>,
}

impl ManagementApi {
    pub fn new(shared: Arc<Shared>) -> Self {
        ManagementApi { shared }
    }

    async fn status(&self) -> Result<Response<proto::Status>, Status> {
        let status = self
            .shared
            .scheduler
            .run(|scheduler| scheduler.status(now_us()))
            .await?;
        Ok(Response::new(status_message(&self.shared, status)))
    }
}

fn counts(counts: LocationCounts) -> Option<proto::KeysAndBytes> {
    Some(proto::KeysAndBytes {
        keys: counts.keys,
        bytes: counts.bytes,
    })
}

fn phase_message(phase: Phase) -> proto::Phase {
    match phase {
        Phase::Shadowing => proto::Phase::Shadowing,
        Phase::Background => proto::Phase::Background,
        Phase::CutoverReady => proto::Phase::CutoverReady,
        Phase::Done => proto::Phase::Done,
    }
}

fn status_message(shared: &Shared, status: crate::scheduler::Status) -> proto::Status {
    let serving = shared.serving();
    proto::Status {
        generated_at_us: status.generated_at_us,
        phase: phase_message(status.phase) as i32,
        paused: status.paused,
        bandwidth_bytes_per_s: status.bandwidth_bytes_per_s,
        total: counts(status.total),
        source_only: counts(status.source_only),
        leased: counts(status.leased),
        current: counts(status.current),
        stale: counts(status.stale),
        sample: counts(status.sample),
        sample_current: counts(status.sample_current),
        predicted_access_share_in_destination: status.predicted_access_share_in_destination,
        confidence: status.confidence.value,
        confidence_threshold: status.confidence_threshold,
        throughput_bytes_per_s: status.throughput_bytes_per_s,
        throughput_keys_per_s: status.throughput_keys_per_s,
        eta_seconds: status.eta_seconds,
        live_leases: status.live_leases,
        keys_leased_total: status.counters.leased,
        acks_accepted_total: status.counters.accepted,
        acks_duplicate_total: status.counters.duplicates,
        acks_stale_total: status.counters.stale_acks,
        copy_failures_total: status.counters.failures,
        keys_redelivered_total: status.counters.redelivered,
        model: serving.model,
        policy: serving.policy,
        json: status.to_json(),
        plan_made_at_us: serving.made_at_us,
        plan_as_of_us: serving.as_of_us,
        plan_logs: serving.logs,
        plan_events: serving.events,
        plans_made: shared.plans_made.load(std::sync::atomic::Ordering::Relaxed),
        shard_index: shared.shard.index,
        shard_count: shared.shard.count,
        versions: status.versions.name().to_string(),
        retrying_keys: status.retrying_keys,
        parked: counts(status.parked),
        failing_keys: status
            .failing_keys
            .into_iter()
            .map(|failing| proto::FailingKey {
                table: failing.table,
                key: failing.key,
                failures: failing.failures,
                last_reason: failing.last_reason,
                parked: failing.parked,
            })
            .collect(),
        tables: status
            .tables
            .into_iter()
            .map(|table| proto::TableStatus {
                table: table.table,
                total: counts(table.total),
                source_only: counts(table.source_only),
                current: counts(table.current),
                stale: counts(table.stale),
                sample: counts(table.sample),
                sample_current: counts(table.sample_current),
            })
            .collect(),
    }
}

fn model_status(error: ModelError) -> Status {
    match &error {
        ModelError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            Status::not_found(error.to_string())
        }
        _ => Status::failed_precondition(error.to_string()),
    }
}

fn policy_status(error: PolicyError) -> Status {
    match error {
        PolicyError::NotLoaded(_) => Status::not_found(error.to_string()),
        _ => Status::invalid_argument(error.to_string()),
    }
}

fn plan_status(error: super::planning::PlanError) -> Status {
    tracing::error!(%error, "re-planning failed; the previous plan stays");
    Status::failed_precondition(format!(
        "re-planning failed (the previous plan stays): {error}"
    ))
}

fn policy_message(info: PolicyInfo) -> proto::PolicyInfo {
    proto::PolicyInfo {
        name: info.name,
        sha256: info.sha256,
        active: info.active,
        loaded_at: info.loaded_at,
        config_bytes: info.config_bytes as u64,
    }
}

fn required(field: &str, value: &str) -> Result<(), Status> {
    if value.trim().is_empty() {
        return Err(invalid(field, "is empty"));
    }
    Ok(())
}

impl ManagementApi {
    /// Runs a model registry change, re-plans if it touched the serving
    /// model, and describes the version now active.
    async fn change_model(
        &self,
        name: String,
        change: impl FnOnce(&crate::model::registry::Registry) -> Result<(), ModelError>
        + Send
        + 'static,
    ) -> Result<Response<proto::ModelInfo>, Status> {
        let shared = self.shared.clone();
        blocking(move || {
            let planner = shared.planner();
            change(planner.models()).map_err(model_status)?;
            let serving = name == planner.model_name();
            if serving {
                shared.replan(&planner).map_err(plan_status)?;
            }
            let loaded = planner.models().load_active(&name).map_err(model_status)?;
            Ok(proto::ModelInfo {
                name: loaded.manifest.name.clone(),
                version: loaded.manifest.version.clone(),
                kind: loaded.manifest.kind.to_string(),
                active: true,
                serving,
                trained_as_of: loaded.manifest.window.as_of.clone(),
            })
        })
        .await
        .map(Response::new)
    }
}

#[tonic::async_trait]
impl Management for ManagementApi {
    async fn get_status(
        &self,
        _request: Request<proto::GetStatusRequest>,
    ) -> Result<Response<proto::Status>, Status> {
        self.status().await
    }

    async fn top_predictions(
        &self,
        request: Request<proto::TopPredictionsRequest>,
    ) -> Result<Response<proto::TopPredictionsResponse>, Status> {
        let request = request.into_inner();
        let limit = request.limit as usize;
        if !(1..=super::planning::KEPT_PREDICTIONS).contains(&limit) {
            return Err(invalid(
                "limit",
                format!(
                    "must be 1 to {}, got {limit}",
                    super::planning::KEPT_PREDICTIONS
                ),
            ));
        }
        let chosen: Vec<_> = self
            .shared
            .predictions()
            .iter()
            .filter(|p| request.table.is_empty() || p.table == request.table)
            .take(limit)
            .cloned()
            .collect();
        let predictions = self
            .shared
            .scheduler
            .run(move |scheduler| {
                chosen
                    .into_iter()
                    .map(|p| {
                        let location = match scheduler.location(&p.table, &p.key) {
                            Some(Location::SourceOnly) | None => "SOURCE_ONLY",
                            Some(Location::Current) => "CURRENT",
                            Some(Location::Stale) => "STALE",
                        };
                        proto::Prediction {
                            table: p.table,
                            key: p.key.into(),
                            expected_accesses: p.expected_accesses,
                            p_hot: p.p_hot,
                            p_churn: p.p_churn,
                            weight: p.weight,
                            priority: p.priority,
                            destination: p.destination,
                            not_before_us: p.not_before_us,
                            size_bytes: p.size_bytes,
                            location: location.into(),
                        }
                    })
                    .collect()
            })
            .await?;
        Ok(Response::new(proto::TopPredictionsResponse { predictions }))
    }

    async fn list_models(
        &self,
        _request: Request<proto::ListModelsRequest>,
    ) -> Result<Response<proto::ListModelsResponse>, Status> {
        let shared = self.shared.clone();
        blocking(move || {
            let planner = shared.planner();
            let registry = planner.models();
            let mut models = Vec::new();
            for name in registry.names().map_err(model_status)? {
                let active = registry.active(&name).map_err(model_status)?;
                for version in registry.versions(&name).map_err(model_status)? {
                    let manifest = registry.manifest(&name, &version).map_err(model_status)?;
                    let is_active = active.as_deref() == Some(version.as_str());
                    models.push(proto::ModelInfo {
                        serving: is_active && name == planner.model_name(),
                        name: name.clone(),
                        version,
                        kind: manifest.kind.to_string(),
                        active: is_active,
                        trained_as_of: manifest.window.as_of.clone(),
                    });
                }
            }
            Ok(proto::ListModelsResponse { models })
        })
        .await
        .map(Response::new)
    }

    async fn promote_model(
        &self,
        request: Request<proto::PromoteModelRequest>,
    ) -> Result<Response<proto::ModelInfo>, Status> {
        require_admin(&request, "PromoteModel")?;
        let request = request.into_inner();
        required("name", &request.name)?;
        required("version", &request.version)?;
        let (name, version) = (request.name.clone(), request.version);
        self.change_model(request.name, move |registry| {
            registry.promote(&name, &version).map(|loaded| {
                tracing::info!(model = %model_label(&loaded.manifest), "model promoted");
            })
        })
        .await
    }

    async fn rollback_model(
        &self,
        request: Request<proto::RollbackModelRequest>,
    ) -> Result<Response<proto::ModelInfo>, Status> {
        require_admin(&request, "RollbackModel")?;
        let request = request.into_inner();
        required("name", &request.name)?;
        let name = request.name.clone();
        self.change_model(request.name, move |registry| {
            registry.rollback(&name).map(|loaded| {
                tracing::info!(model = %model_label(&loaded.manifest), "model rolled back");
            })
        })
        .await
    }

    async fn list_policies(
        &self,
        _request: Request<proto::ListPoliciesRequest>,
    ) -> Result<Response<proto::ListPoliciesResponse>, Status> {
        let policies = self.shared.planner().policies().list();
        Ok(Response::new(proto::ListPoliciesResponse {
            policies: policies.into_iter().map(policy_message).collect(),
        }))
    }

    async fn load_policy(
        &self,
        request: Request<proto::LoadPolicyRequest>,
    ) -> Result<Response<proto::PolicyInfo>, Status> {
        require_admin(&request, "LoadPolicy")?;
        let request = request.into_inner();
        required("name", &request.name)?;
        let bytes = match request.module {
            Some(load_policy_request::Module::Wasm(bytes)) if !bytes.is_empty() => bytes.to_vec(),
            Some(load_policy_request::Module::Wasm(_)) => return Err(invalid("wasm", "is empty")),
            Some(load_policy_request::Module::Path(path)) => {
                let dir = self.shared.policy_dir.clone();
                blocking(move || read_policy_file(&dir, &path)).await?
            }
            None => return Err(invalid("module", "is missing: set wasm or path")),
        };
        let shared = self.shared.clone();
        blocking(move || {
            let planner = shared.planner();
            let info = planner
                .policies()
                .load(&request.name, &bytes, &request.config)
                .map_err(policy_status)?;
            shared.replan(&planner).map_err(plan_status)?;
            Ok(policy_message(info))
        })
        .await
        .map(Response::new)
    }

    async fn unload_policy(
        &self,
        request: Request<proto::UnloadPolicyRequest>,
    ) -> Result<Response<proto::ListPoliciesResponse>, Status> {
        require_admin(&request, "UnloadPolicy")?;
        let request = request.into_inner();
        required("name", &request.name)?;
        let shared = self.shared.clone();
        blocking(move || {
            let planner = shared.planner();
            planner
                .policies()
                .unload(&request.name)
                .map_err(policy_status)?;
            shared.replan(&planner).map_err(plan_status)?;
            Ok(proto::ListPoliciesResponse {
                policies: planner
                    .policies()
                    .list()
                    .into_iter()
                    .map(policy_message)
                    .collect(),
            })
        })
        .await
        .map(Response::new)
    }

    async fn pause(
        &self,
        request: Request<proto::PauseRequest>,
    ) -> Result<Response<proto::Status>, Status> {
        require_admin(&request, "Pause")?;
        self.shared
            .scheduler
            .run_durable(|scheduler| scheduler.pause())
            .await?;
        tracing::info!("migration paused");
        self.status().await
    }

    async fn resume(
        &self,
        request: Request<proto::ResumeRequest>,
    ) -> Result<Response<proto::Status>, Status> {
        require_admin(&request, "Resume")?;
        self.shared
            .scheduler
            .run_durable(|scheduler| scheduler.resume())
            .await?;
        self.shared.work.notify_waiters();
        tracing::info!("migration resumed");
        self.status().await
    }

    async fn set_bandwidth(
        &self,
        request: Request<proto::SetBandwidthRequest>,
    ) -> Result<Response<proto::Status>, Status> {
        require_admin(&request, "SetBandwidth")?;
        let rate = request.get_ref().bytes_per_s;
        if rate == Some(0) {
            return Err(invalid(
                "bytes_per_s",
                "must be at least 1 (leave it unset for unlimited; Pause stops copying)",
            ));
        }
        self.shared
            .scheduler
            .run_durable(move |scheduler| scheduler.set_bandwidth(rate, now_us()))
            .await?;
        self.shared.work.notify_waiters();
        tracing::info!(bytes_per_s = ?rate, "bandwidth budget set");
        self.status().await
    }

    async fn force_phase(
        &self,
        request: Request<proto::ForcePhaseRequest>,
    ) -> Result<Response<proto::Status>, Status> {
        require_admin(&request, "ForcePhase")?;
        let phase = match proto::Phase::try_from(request.get_ref().phase) {
            Ok(proto::Phase::Shadowing) => Phase::Shadowing,
            Ok(proto::Phase::Background) => Phase::Background,
            Ok(proto::Phase::CutoverReady) => Phase::CutoverReady,
            Ok(proto::Phase::Done) => Phase::Done,
            Ok(proto::Phase::Unspecified) | Err(_) => {
                return Err(invalid(
                    "phase",
                    format!(
                        "must be SHADOWING, BACKGROUND, CUTOVER_READY or DONE (got {})",
                        request.get_ref().phase
                    ),
                ));
            }
        };
        self.shared
            .scheduler
            .run_durable(move |scheduler| scheduler.force_phase(phase))
            .await?;
        self.shared.work.notify_waiters();
        tracing::info!(%phase, at = %format_instant(now_us()), "phase forced by the operator");
        self.status().await
    }

    async fn retry_parked(
        &self,
        request: Request<proto::RetryParkedRequest>,
    ) -> Result<Response<proto::RetryParkedResponse>, Status> {
        require_admin(&request, "RetryParked")?;
        let keys = self
            .shared
            .scheduler
            .run(|scheduler| scheduler.retry_parked())
            .await?;
        self.shared.work.notify_waiters();
        let status = self.status().await?.into_inner();
        Ok(Response::new(proto::RetryParkedResponse {
            keys,
            status: Some(status),
        }))
    }
}

/// The largest policy module read by path.
const MAX_POLICY_FILE_BYTES: u64 = 16 << 20;

/// Reads a policy module named by path: a regular file under the policy
/// directory (after resolving links and `..`), of at most
/// [`MAX_POLICY_FILE_BYTES`]; errors name the path, never its contents.
fn read_policy_file(dir: &std::path::Path, path: &str) -> Result<Vec<u8>, Status> {
    use std::io::Read;

    let root = dir.canonicalize().map_err(|error| {
        invalid(
            "path",
            format!(
                "the policy directory {} cannot be read ({error}): set policy_dir to load modules by path",
                dir.display()
            ),
        )
    })?;
    let resolved = root
        .join(path)
        .canonicalize()
        .map_err(|error| invalid("path", format!("{path}: {error}")))?;
    if !resolved.starts_with(&root) {
        return Err(invalid(
            "path",
            format!("{path} is outside the policy directory {}", root.display()),
        ));
    }
    let metadata = std::fs::metadata(&resolved)
        .map_err(|error| invalid("path", format!("{path}: {error}")))?;
    if !metadata.is_file() {
        return Err(invalid("path", format!("{path} is not a regular file")));
    }
    if metadata.len() > MAX_POLICY_FILE_BYTES {
        return Err(invalid(
            "path",
            format!(
                "{path} is {} bytes, more than {MAX_POLICY_FILE_BYTES}",
                metadata.len()
            ),
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(&resolved)
        .and_then(|file| file.take(MAX_POLICY_FILE_BYTES).read_to_end(&mut bytes))
        .map_err(|error| invalid("path", format!("{path}: {error}")))?;
    Ok(bytes)
}
