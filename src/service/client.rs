//! Connecting to a shadowcast service: the channel (plain or TLS) and the
//! bearer token every call carries; for a sharded service, clients of every
//! shard that send each key to the shard owning it ([`ShardedClients`]).
//! Used by the reference executor, the demo, `status`, the tests and the
//! benchmarks.

use std::path::Path;

use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::proto::executor_client::ExecutorClient;
use super::proto::management_client::ManagementClient;
use super::proto::routing_client::RoutingClient;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("endpoint {endpoint}: {problem}")]
    Endpoint { endpoint: String, problem: String },
    #[error("the token is not valid header text")]
    Token,
}

/// Adds `authorization: Bearer TOKEN` to every call (nothing without a token).
#[derive(Clone)]
pub struct Bearer(Option<AsciiMetadataValue>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub type Authed = InterceptedService<Channel, Bearer>;

/// Clients of the three services over one connection.
#[derive(Clone)]
pub struct Clients {
    pub executor: ExecutorClient<Authed>,
    pub routing: RoutingClient<Authed>,
    pub management: ManagementClient<Authed>,
}

/// Connects to `endpoint` (`http://host:port`, or `https://` with
/// `tls_ca`, the PEM certificate that signed the service's).
pub async fn connect(
    endpoint: &str,
    token: Option<&str>,
    tls_ca: Option<&Path>,
) -> Result<Clients, ConnectError> {
    let failed = |problem: String| ConnectError::Endpoint {
        endpoint: endpoint.to_string(),
        problem,
    };
    let mut builder = Endpoint::from_shared(endpoint.to_string())
        .map_err(|e| failed(e.to_string()))?
        .tcp_nodelay(true);
    if let Some(ca) = tls_ca {
        let pem = std::fs::read(ca).map_err(|e| failed(format!("{}: {e}", ca.display())))?;
        builder = builder
            .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))
            .map_err(|e| failed(e.to_string()))?;
    }
    let channel = builder
        .connect()
        .await
        .map_err(|e| failed(format!("cannot connect: {e}")))?;
    let bearer = Bearer(
        token
            .map(|t| format!("Bearer {t}").parse())
            .transpose()
            .map_err(|_| ConnectError::Token)?,
    );
    let limit = 64 << 20;
    Ok(Clients {
        executor: ExecutorClient::with_interceptor(channel.clone(), bearer.clone())
            .max_decoding_message_size(limit),
        routing: RoutingClient::with_interceptor(channel.clone(), bearer.clone())
            .max_decoding_message_size(limit),
        management: ManagementClient::with_interceptor(channel, bearer)
            .max_decoding_message_size(limit),
    })
}

/// Clients of every shard of a sharded service, in shard order: calls about
/// keys go to the shard that owns each key ([`crate::shard::shard_of`]).
pub struct ShardedClients {
    shards: Vec<Clients>,
}

impl ShardedClients {
    /// Connects to every endpoint and orders them by the shard each says
    /// it is; refuses a set that is not every shard exactly once.
    pub async fn connect(
        endpoints: &[String],
        token: Option<&str>,
        tls_ca: Option<&Path>,
    ) -> Result<Self, ConnectError> {
        let mut shards = Vec::with_capacity(endpoints.len());
        let mut statuses = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            let mut clients = connect(endpoint, token, tls_ca).await?;
            let status = clients
                .management
                .get_status(super::proto::GetStatusRequest {})
                .await
                .map_err(|status| ConnectError::Endpoint {
                    endpoint: endpoint.clone(),
                    problem: format!("asking which shard it is: {}", status.message()),
                })?
                .into_inner();
            shards.push((status.shard_index, clients));
            statuses.push(status);
        }
        combine(&statuses).map_err(|problem| ConnectError::Endpoint {
            endpoint: endpoints.join(","),
            problem,
        })?;
        shards.sort_by_key(|(index, _)| *index);
        Ok(ShardedClients {
            shards: shards.into_iter().map(|(_, clients)| clients).collect(),
        })
    }

    /// Every shard's status, in shard order.
    pub async fn statuses(&mut self) -> Result<Vec<super::proto::Status>, tonic::Status> {
        let mut statuses = Vec::with_capacity(self.shards.len());
        for clients in &mut self.shards {
            let status = clients
                .management
                .get_status(super::proto::GetStatusRequest {})
                .await?;
            statuses.push(status.into_inner());
        }
        Ok(statuses)
    }

    /// The clients of shard `index`.
    pub fn shard(&mut self, index: usize) -> &mut Clients {
        &mut self.shards[index]
    }

    fn shard_of(&self, table: &str, key: &[u8]) -> usize {
        crate::shard::shard_of(table, key, self.shards.len() as u32) as usize
    }

    /// Where each key is, in request order (table by table, key by key),
    /// asking each shard about its own keys.
    pub async fn lookup(
        &mut self,
        request: super::proto::LookupRequest,
    ) -> Result<Vec<i32>, tonic::Status> {
        use super::proto::{LookupRequest, TableKeys};
        let mut parts: Vec<LookupRequest> = vec![LookupRequest::default(); self.shards.len()];
        // For each key of the request: its shard and its place in that shard's answer.
        let mut places = Vec::new();
        let mut next = vec![0usize; self.shards.len()];
        for group in request.tables {
            for key in group.keys {
                let shard = self.shard_of(&group.table, &key);
                let part = &mut parts[shard];
                if part
                    .tables
                    .last()
                    .is_none_or(|last| last.table != group.table)
                {
                    part.tables.push(TableKeys {
                        table: group.table.clone(),
                        keys: Vec::new(),
                    });
                }
                part.tables.last_mut().expect("just pushed").keys.push(key);
                places.push((shard, next[shard]));
                next[shard] += 1;
            }
        }
        let mut answers = Vec::with_capacity(parts.len());
        for (clients, part) in self.shards.iter_mut().zip(parts) {
            answers.push(if part.tables.is_empty() {
                Vec::new()
            } else {
                clients.routing.lookup(part).await?.into_inner().locations
            });
        }
        Ok(places
            .into_iter()
            .map(|(shard, place)| answers[shard][place])
            .collect())
    }

    /// Reports writes, each to the shard owning its key, and truncations,
    /// to every shard (a table's keys are spread over them); the answers
    /// added up. A failure after some shards took theirs leaves those
    /// taken: writes are judged by version, so sending them all again is
    /// safe.
    pub async fn report_writes(
        &mut self,
        writes: Vec<super::proto::Write>,
        truncations: &[super::proto::Truncation],
    ) -> Result<super::proto::ReportWritesResponse, tonic::Status> {
        let mut parts = vec![Vec::new(); self.shards.len()];
        for write in writes {
            let shard = self.shard_of(&write.table, &write.key);
            parts[shard].push(write);
        }
        let mut total = super::proto::ReportWritesResponse::default();
        for (clients, writes) in self.shards.iter_mut().zip(parts) {
            if writes.is_empty() && truncations.is_empty() {
                continue;
            }
            let answer = clients
                .executor
                .report_writes(super::proto::ReportWritesRequest {
                    writes,
                    truncations: truncations.to_vec(),
                })
                .await?
                .into_inner();
            total.new_keys += answer.new_keys;
            total.made_stale += answer.made_stale;
        }
        Ok(total)
    }
}

/// The status of a migration served by several shards, from each shard's
/// own: keys, bytes, counters and throughput add up (and budgets: unlimited
/// if any shard's is); the phase is the slowest shard's, the confidence
/// and the share of predicted accesses in the destination the lowest, the
/// ETA the longest; `paused` if any shard is. Refuses a set that is not every shard of one count exactly once,
/// naming what is missing or repeated.
pub fn combine(shards: &[super::proto::Status]) -> Result<super::proto::Status, String> {
    use super::proto::{KeysAndBytes, Status};

    let Some(first) = shards.first() else {
        return Err("no shard answered".into());
    };
    let count = first.shard_count.max(1);
    if shards.len() != count as usize {
        return Err(format!(
            "{} endpoints given, but the services are shards of {count}",
            shards.len()
        ));
    }
    let mut seen = vec![false; count as usize];
    for status in shards {
        if status.shard_count.max(1) != count {
            return Err(format!(
                "shard {} says it is one of {}, shard {} one of {count}",
                status.shard_index, status.shard_count, first.shard_index
            ));
        }
        let index = status.shard_index as usize;
        if index >= seen.len() || std::mem::replace(&mut seen[index], true) {
            return Err(format!("shard {index}/{count} is given twice"));
        }
    }
    if let Some(other) = shards.iter().find(|s| s.versions != first.versions) {
        return Err(format!(
            "shard {} counts versions as {:?}, shard {} as {:?}",
            first.shard_index, first.versions, other.shard_index, other.versions
        ));
    }
    let sum = |part: fn(&Status) -> Option<KeysAndBytes>| {
        let mut total = KeysAndBytes::default();
        for status in shards {
            let counts = part(status).unwrap_or_default();
            total.keys += counts.keys;
            total.bytes += counts.bytes;
        }
        Some(total)
    };
    let add = |field: fn(&Status) -> u64| shards.iter().map(field).sum::<u64>();
    let lowest = |field: fn(&Status) -> f64| shards.iter().map(field).fold(f64::INFINITY, f64::min);
    let names = |field: fn(&Status) -> &str| {
        let mut names: Vec<&str> = shards.iter().map(field).collect();
        names.dedup();
        names.join(" | ")
    };
    Ok(Status {
        generated_at_us: shards.iter().map(|s| s.generated_at_us).min().unwrap_or(0),
        phase: shards.iter().map(|s| s.phase).min().unwrap_or(0),
        paused: shards.iter().any(|s| s.paused),
        bandwidth_bytes_per_s: shards
            .iter()
            .map(|s| s.bandwidth_bytes_per_s)
            .sum::<Option<u64>>(),
        total: sum(|s| s.total),
        source_only: sum(|s| s.source_only),
        leased: sum(|s| s.leased),
        current: sum(|s| s.current),
        stale: sum(|s| s.stale),
        sample: sum(|s| s.sample),
        sample_current: sum(|s| s.sample_current),
        predicted_access_share_in_destination: lowest(|s| s.predicted_access_share_in_destination),
        confidence: lowest(|s| s.confidence),
        confidence_threshold: first.confidence_threshold,
        throughput_bytes_per_s: shards.iter().map(|s| s.throughput_bytes_per_s).sum(),
        throughput_keys_per_s: shards.iter().map(|s| s.throughput_keys_per_s).sum(),
        // Unknown for the whole while unknown for any shard.
        eta_seconds: shards
            .iter()
            .map(|s| s.eta_seconds)
            .collect::<Option<Vec<f64>>>()
            .map(|etas| etas.into_iter().fold(0.0, f64::max)),
        live_leases: add(|s| s.live_leases),
        keys_leased_total: add(|s| s.keys_leased_total),
        acks_accepted_total: add(|s| s.acks_accepted_total),
        acks_duplicate_total: add(|s| s.acks_duplicate_total),
        acks_stale_total: add(|s| s.acks_stale_total),
        copy_failures_total: add(|s| s.copy_failures_total),
        keys_redelivered_total: add(|s| s.keys_redelivered_total),
        model: names(|s| &s.model),
        policy: names(|s| &s.policy),
        json: String::new(),
        plan_made_at_us: shards.iter().map(|s| s.plan_made_at_us).min().unwrap_or(0),
        plan_as_of_us: shards.iter().map(|s| s.plan_as_of_us).min().unwrap_or(0),
        plan_logs: names(|s| &s.plan_logs),
        plan_events: add(|s| s.plan_events),
        plans_made: add(|s| s.plans_made),
        shard_index: 0,
        shard_count: count,
        versions: first.versions.clone(),
        tables: combine_tables(shards),
        retrying_keys: add(|s| s.retrying_keys),
        parked: sum(|s| s.parked),
        failing_keys: {
            // The shards' lists one after another, parked keys first, as
            // many as one shard lists.
            let mut failing: Vec<_> = shards.iter().flat_map(|s| s.failing_keys.clone()).collect();
            failing.sort_by_key(|key| !key.parked);
            failing.truncate(crate::scheduler::FAILING_KEYS_LISTED);
            failing
        },
    })
}

/// Each table's figures summed over the shards, in the order first seen.
fn combine_tables(shards: &[super::proto::Status]) -> Vec<super::proto::TableStatus> {
    use super::proto::{KeysAndBytes, TableStatus};

    let plus = |a: Option<KeysAndBytes>, b: Option<KeysAndBytes>| {
        let (a, b) = (a.unwrap_or_default(), b.unwrap_or_default());
        Some(KeysAndBytes {
            keys: a.keys + b.keys,
            bytes: a.bytes + b.bytes,
        })
    };
    let mut tables: Vec<TableStatus> = Vec::new();
    for table in shards.iter().flat_map(|s| &s.tables) {
        match tables.iter_mut().find(|t| t.table == table.table) {
            None => tables.push(table.clone()),
            Some(sum) => {
                sum.total = plus(sum.total, table.total);
                sum.source_only = plus(sum.source_only, table.source_only);
                sum.current = plus(sum.current, table.current);
                sum.stale = plus(sum.stale, table.stale);
                sum.sample = plus(sum.sample, table.sample);
                sum.sample_current = plus(sum.sample_current, table.sample_current);
            }
        }
    }
    tables
}

#[cfg(test)]
mod tests {
    use super::super::proto::{KeysAndBytes, Phase, Status};
    use super::*;

    fn shard(index: u32, phase: Phase, current: u64, confidence: f64, eta: Option<f64>) -> Status {
        Status {
            shard_index: index,
            shard_count: 3,
            phase: phase as i32,
            total: Some(KeysAndBytes {
                keys: 100,
                bytes: 1_000,
            }),
            current: Some(KeysAndBytes {
                keys: current,
                bytes: current * 10,
            }),
            confidence,
            eta_seconds: eta,
            live_leases: 2,
            bandwidth_bytes_per_s: Some(5),
            model: "default/v1".into(),
            ..Status::default()
        }
    }

    #[test]
    fn shards_add_up_and_the_slowest_sets_the_phase() {
        let shards = [
            shard(2, Phase::CutoverReady, 100, 1.0, Some(0.0)),
            shard(0, Phase::Background, 40, 0.95, Some(30.0)),
            shard(1, Phase::Shadowing, 10, 0.5, Some(90.0)),
        ];
        let whole = combine(&shards).unwrap();
        assert_eq!(whole.phase, Phase::Shadowing as i32);
        assert_eq!(
            whole.total,
            Some(KeysAndBytes {
                keys: 300,
                bytes: 3_000
            })
        );
        assert_eq!(
            whole.current,
            Some(KeysAndBytes {
                keys: 150,
                bytes: 1_500
            })
        );
        assert_eq!(whole.confidence, 0.5);
        assert_eq!(whole.eta_seconds, Some(90.0));
        assert_eq!(whole.live_leases, 6);
        assert_eq!(whole.bandwidth_bytes_per_s, Some(15));
        assert_eq!(whole.model, "default/v1");
        assert_eq!(whole.shard_count, 3);

        let mut unknown = shards.clone();
        unknown[0].eta_seconds = None;
        unknown[1].bandwidth_bytes_per_s = None;
        let whole = combine(&unknown).unwrap();
        assert_eq!(whole.eta_seconds, None, "unknown while one shard's is");
        assert_eq!(
            whole.bandwidth_bytes_per_s, None,
            "unlimited while one shard's is"
        );
    }

    #[test]
    fn a_set_that_is_not_every_shard_once_is_refused() {
        let twice = [
            shard(0, Phase::Background, 1, 1.0, None),
            shard(0, Phase::Background, 1, 1.0, None),
            shard(1, Phase::Background, 1, 1.0, None),
        ];
        assert!(
            combine(&twice)
                .unwrap_err()
                .contains("shard 0/3 is given twice")
        );
        let missing = [
            shard(0, Phase::Background, 1, 1.0, None),
            shard(1, Phase::Background, 1, 1.0, None),
        ];
        assert!(
            combine(&missing)
                .unwrap_err()
                .contains("2 endpoints given, but the services are shards of 3")
        );
    }
}
