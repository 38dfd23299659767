//! The gRPC service through the real binary and a real gRPC client: leases,
//! expiry and redelivery, duplicate and stale acknowledgements, writes
//! after copies, restarts, tokens, malformed requests, metrics, and full
//! migrations with the reference executor on SQLite and PostgreSQL.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::service::{Service, copy_tree, models};
use common::{example_wat, path_str};
use shadowcast::executor;
use shadowcast::service::client::{Clients, ShardedClients, connect};
use shadowcast::service::proto::{self, key_ack};
use tonic::Code;

const BIN: &str = env!("CARGO_BIN_EXE_shadowcast");

/// Small logs, written once per test directory.
fn logs(dir: &Path) -> PathBuf {
    let logs = dir.join("logs");
    let status = Command::new(BIN)
        .args([
            "generate", "--events", "20000", "--hours", "12", "--seed", "7", "--out",
        ])
        .arg(&logs)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    logs
}

fn seed(logs: &Path, database: &str) {
    let output = Command::new(BIN)
        .args(["seed", "--database", database, "--logs"])
        .arg(logs)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A new log file under `logs`: 50 reads of a key nobody saw before
/// (`late_arrivals`, `first-seen-late`), a millisecond apart from `at_ms`.
fn write_late_key(logs: &Path, at_ms: i64) {
    let events: Vec<common::Event> = (0..50)
        .map(|i| common::Event {
            ts_ms: at_ms + i,
            table: "late_arrivals",
            key: "first-seen-late".into(),
            op: "read",
            size: 100,
            tenant: None,
        })
        .collect();
    common::write_events(&logs.join("late").join("part-late.parquet"), &events, 1000);
}

/// The plan's top `limit` predictions, of `table` (every table when empty).
async fn predictions(clients: &mut Clients, table: &str, limit: u32) -> Vec<proto::Prediction> {
    clients
        .management
        .top_predictions(proto::TopPredictionsRequest {
            limit,
            table: table.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .predictions
}

/// `GET /metrics` over plain HTTP/1.1 on the service's port: the page.
fn metrics_page(address: &str) -> String {
    let page = metrics_answer(address, None);
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    page
}

/// The whole HTTP answer to `GET /metrics`, with a bearer token if given.
fn metrics_answer(address: &str, token: Option<&str>) -> String {
    let mut http = std::net::TcpStream::connect(address).unwrap();
    let authorization = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        http,
        "GET /metrics HTTP/1.1\r\nHost: x\r\n{authorization}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut page = String::new();
    http.read_to_string(&mut page).unwrap();
    page
}

fn lease_request(max_keys: u32) -> proto::LeaseRequest {
    proto::LeaseRequest {
        executor_id: "test".into(),
        max_keys,
        max_bytes: 1 << 30,
        tables: vec![],
        wait_ms: 0,
    }
}

fn copied(key: &proto::LeasedKey, version: u64) -> proto::KeyAck {
    proto::KeyAck {
        table: key.table.clone(),
        key: key.key.clone(),
        result: Some(key_ack::Result::CopiedVersion(version)),
    }
}

fn failure(key: &proto::LeasedKey, reason: &str) -> proto::KeyAck {
    proto::KeyAck {
        table: key.table.clone(),
        key: key.key.clone(),
        result: Some(key_ack::Result::Failure(reason.into())),
    }
}

async fn status(clients: &mut Clients) -> proto::Status {
    clients
        .management
        .get_status(proto::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

async fn force(clients: &mut Clients, phase: proto::Phase) {
    clients
        .management
        .force_phase(proto::ForcePhaseRequest {
            phase: phase as i32,
        })
        .await
        .unwrap();
}

/// A reference executor in a thread, until `until` or `stop`; the copies
/// the service accepted from it.
fn executor_thread(
    endpoint: &str,
    source: &str,
    destination: &str,
    id: usize,
    until: executor::Until,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    let (endpoint, source, destination) = (
        endpoint.to_string(),
        source.to_string(),
        destination.to_string(),
    );
    std::thread::spawn(move || {
        let options = executor::ExecutorOptions {
            endpoint,
            token: None,
            tls_ca: None,
            id: format!("executor-{id}"),
            max_keys: 500,
            max_bytes: 64 << 20,
            tables: vec![],
            until,
            patience: Duration::from_secs(60),
        };
        let mut copier = executor::VersionedRows::open(&source, &destination).unwrap();
        executor::run(&options, &mut copier, &stop)
            .unwrap()
            .accepted
    })
}

/// Runs reference executors in threads until every key is current.
fn run_executors(endpoint: &str, source: &str, destination: &str, count: usize) -> u64 {
    let handles: Vec<_> = (0..count)
        .map(|i| {
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let until = executor::Until::CutoverReady;
            executor_thread(endpoint, source, destination, i, until, stop)
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).sum()
}

fn assert_same(source: &str, destination: &str) -> usize {
    let (_, rows) = executor::compare(source, destination).unwrap();
    assert!(rows > 0);
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_leases_are_offered_again_and_acks_are_judged_by_version() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    let service = Service::start(dir.path(), &logs, &["--lease-seconds", "0.5"]);
    let mut clients = service.clients(None).await;
    force(&mut clients, proto::Phase::Background).await;

    // An executor that leases and dies: after expiry the same keys come back.
    let first = clients
        .executor
        .lease(lease_request(20))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.keys.len(), 20);
    assert!(
        first
            .keys
            .iter()
            .all(|k| k.priority != 0 && !k.table.is_empty())
    );
    let second = clients
        .executor
        .lease(lease_request(20))
        .await
        .unwrap()
        .into_inner();
    assert!(
        second.keys.iter().all(|k| !first.keys.contains(k)),
        "leased twice while live"
    );
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let mut again = clients
        .executor
        .lease(lease_request(40))
        .await
        .unwrap()
        .into_inner();
    for key in &first.keys {
        assert!(
            again
                .keys
                .iter()
                .any(|k| k.key == key.key && k.table == key.table),
            "an expired key was not offered again"
        );
    }
    let extended = clients
        .executor
        .extend_lease(proto::ExtendLeaseRequest {
            lease_id: again.lease_id,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(extended.expires_at_us >= again.expires_at_us);
    let gone = clients
        .executor
        .extend_lease(proto::ExtendLeaseRequest {
            lease_id: first.lease_id,
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);

    // Accepted, then a duplicate, then a write makes the copy stale.
    let key = again.keys.remove(0);
    let version = key.min_version;
    let ack = |version| proto::AcknowledgeRequest {
        lease_id: again.lease_id,
        acks: vec![copied(&key, version)],
        others_copied_at_leased_version: false,
    };
    let outcome = |r: proto::AcknowledgeResponse| r.results[0].outcome;
    let accepted = clients
        .executor
        .acknowledge(ack(version))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(outcome(accepted), proto::AckOutcome::Accepted as i32);
    let duplicate = clients
        .executor
        .acknowledge(ack(version))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(outcome(duplicate), proto::AckOutcome::AlreadyCurrent as i32);
    let lookup = |clients: &mut Clients| {
        let mut routing = clients.routing.clone();
        let request = proto::LookupRequest {
            tables: vec![proto::TableKeys {
                table: key.table.clone(),
                keys: vec![key.key.clone(), b"no-such-key".to_vec().into()],
            }],
        };
        async move {
            routing
                .lookup(request)
                .await
                .unwrap()
                .into_inner()
                .locations
        }
    };
    assert_eq!(
        lookup(&mut clients).await,
        vec![
            proto::KeyLocation::Current as i32,
            proto::KeyLocation::Unknown as i32
        ]
    );
    let report = clients
        .executor
        .report_writes(proto::ReportWritesRequest {
            writes: vec![proto::Write {
                table: key.table.clone(),
                key: key.key.clone(),
                version: version + 10,
                size_bytes: Some(100),
            }],
            truncations: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.made_stale, 1);
    assert_eq!(
        lookup(&mut clients).await[0],
        proto::KeyLocation::Stale as i32
    );
    let stale = clients
        .executor
        .acknowledge(ack(version))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stale.results[0].outcome, proto::AckOutcome::Stale as i32);
    assert_eq!(stale.results[0].latest_write, version + 10);
    // The re-sync goes out first, asking for the new version.
    let resync = clients
        .executor
        .lease(lease_request(1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resync.keys[0].key, key.key);
    assert_eq!(resync.keys[0].min_version, version + 10);
    let current = clients
        .executor
        .acknowledge(proto::AcknowledgeRequest {
            lease_id: resync.lease_id,
            acks: vec![copied(&resync.keys[0], version + 10)],
            others_copied_at_leased_version: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(outcome(current), proto::AckOutcome::Accepted as i32);
    assert_eq!(
        lookup(&mut clients).await[0],
        proto::KeyLocation::Current as i32
    );

    let status = status(&mut clients).await;
    assert!(status.keys_redelivered_total >= 20);
    assert_eq!(status.acks_stale_total, 1);
    assert_eq!(status.acks_duplicate_total, 1);
    assert_eq!(status.model, "default/v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_named_and_the_service_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    let service = Service::start(dir.path(), &logs, &[]);
    let mut clients = service.clients(None).await;
    let invalid = |status: tonic::Status, field: &str| {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains(field),
            "{} should name {field}",
            status.message()
        );
    };
    invalid(
        clients.executor.lease(lease_request(0)).await.unwrap_err(),
        "max_keys",
    );
    let mut request = lease_request(1);
    request.wait_ms = 3_600_000;
    invalid(
        clients.executor.lease(request).await.unwrap_err(),
        "wait_ms",
    );
    request = lease_request(1);
    request.tables = vec!["users".into(), String::new()];
    invalid(
        clients.executor.lease(request).await.unwrap_err(),
        "tables[1]",
    );
    let no_result = proto::AcknowledgeRequest {
        lease_id: 1,
        others_copied_at_leased_version: false,
        acks: vec![proto::KeyAck {
            table: "users".into(),
            key: b"k".to_vec().into(),
            result: None,
        }],
    };
    invalid(
        clients.executor.acknowledge(no_result).await.unwrap_err(),
        "acks[0].result",
    );
    let empty_key = proto::ReportWritesRequest {
        writes: vec![proto::Write {
            table: "users".into(),
            key: Default::default(),
            version: 1,
            size_bytes: None,
        }],
        truncations: vec![],
    };
    invalid(
        clients.executor.report_writes(empty_key).await.unwrap_err(),
        "writes[0].key",
    );
    let phase = proto::ForcePhaseRequest { phase: 42 };
    invalid(
        clients.management.force_phase(phase).await.unwrap_err(),
        "phase",
    );
    let limit = proto::TopPredictionsRequest {
        limit: 0,
        table: String::new(),
    };
    invalid(
        clients.management.top_predictions(limit).await.unwrap_err(),
        "limit",
    );
    let garbage = proto::LoadPolicyRequest {
        name: "garbage".into(),
        module: Some(proto::load_policy_request::Module::Wasm(
            b"not wasm".to_vec().into(),
        )),
        config: Default::default(),
    };
    let refused = clients.management.load_policy(garbage).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    let lookup = proto::LookupRequest {
        tables: vec![proto::TableKeys {
            table: String::new(),
            keys: vec![],
        }],
    };
    invalid(
        clients.routing.lookup(lookup).await.unwrap_err(),
        "tables[0].table",
    );

    // Still serving, and it says so over the standard health service.
    let top = clients
        .management
        .top_predictions(proto::TopPredictionsRequest {
            limit: 5,
            table: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(top.predictions.len(), 5);
    assert!(
        top.predictions[0].expected_accesses >= top.predictions[4].expected_accesses
            || top.predictions[0].priority > top.predictions[4].priority
    );
    let channel = tonic::transport::Endpoint::from_shared(service.endpoint.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    // Reflection in both versions clients speak: v1 and the older v1alpha.
    {
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
        let mut reflection = ServerReflectionClient::new(channel.clone());
        let ask = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = reflection
            .server_reflection_info(tokio_stream::iter(vec![ask]))
            .await
            .unwrap()
            .into_inner();
        let answer = answers.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
            panic!("not a service list: {answer:?}");
        };
        let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
        assert!(names.contains(&"shadowcast.v1.Executor"), "{names:?}");
    }
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "shadowcast.v1.Executor".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        serving.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // Prometheus metrics over plain HTTP/1.1 on the same port.
    let page = metrics_page(&service.address);
    for metric in [
        "shadowcast_keys_leased_total",
        "shadowcast_acks_total{outcome=\"stale\"}",
        "shadowcast_keys_redelivered_total",
        "shadowcast_queue_depth{priority=\"normal\"}",
        "shadowcast_phase{phase=\"SHADOWING\"} 1",
        "shadowcast_plan_info{model=\"default/v1\",policy=\"builtin-default\",logs=",
        "shadowcast_confidence",
    ] {
        assert!(page.contains(metric), "no {metric} in\n{page}");
    }
}

/// The limits of one call, each refused with the limit named and nothing
/// stored: a write at version 2^64 - 1 (it would keep the key stale for
/// good) and an acknowledgement at it (current for good), a key longer than
/// `--max-key-bytes 16`, a call naming a fourth table under
/// `--max-tables-per-call 3`, and more keys than `--max-keys-per-call 5`.
/// The same key reported afterwards at a plausible version is new to the
/// service, so the refused calls stored nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implausible_versions_and_oversized_calls_are_refused_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    let limits = [
        "--max-key-bytes",
        "16",
        "--max-tables-per-call",
        "3",
        "--max-keys-per-call",
        "5",
    ];
    let service = Service::start(dir.path(), &logs, &limits);
    let mut clients = service.clients(None).await;
    let write = |table: &str, key: &[u8], version: u64| proto::Write {
        table: table.into(),
        key: key.to_vec().into(),
        version,
        size_bytes: None,
    };
    let report = |writes: Vec<proto::Write>| proto::ReportWritesRequest {
        writes,
        truncations: vec![],
    };
    let refused = |status: tonic::Status, code: Code, words: &[&str]| {
        assert_eq!(status.code(), code, "{status:?}");
        for word in words {
            assert!(
                status.message().contains(word),
                "{} should name {word}",
                status.message()
            );
        }
    };

    let forever = report(vec![
        write("fresh", b"never-seen", 5),
        write("fresh", b"never-seen", u64::MAX),
    ]);
    refused(
        clients.executor.report_writes(forever).await.unwrap_err(),
        Code::InvalidArgument,
        &["writes[1].version", "max_version_skew"],
    );
    let ack = proto::AcknowledgeRequest {
        lease_id: 0,
        others_copied_at_leased_version: false,
        acks: vec![proto::KeyAck {
            table: "fresh".into(),
            key: b"never-seen".to_vec().into(),
            result: Some(key_ack::Result::CopiedVersion(u64::MAX)),
        }],
    };
    refused(
        clients.executor.acknowledge(ack).await.unwrap_err(),
        Code::InvalidArgument,
        &["acks[0].copied_version", "max_version_skew"],
    );
    let long_key = report(vec![write("fresh", &[b'k'; 17], 5)]);
    refused(
        clients.executor.report_writes(long_key).await.unwrap_err(),
        Code::InvalidArgument,
        &["writes[0].key", "17 bytes", "max_key_bytes (16)"],
    );
    let four_tables = report(
        ["a", "b", "c", "d"]
            .iter()
            .map(|table| write(table, b"never-seen", 5))
            .collect(),
    );
    refused(
        clients
            .executor
            .report_writes(four_tables)
            .await
            .unwrap_err(),
        Code::ResourceExhausted,
        &["writes[3].table", "max_tables_per_call (3)"],
    );
    let six_keys = report((0..6u8).map(|i| write("fresh", &[b'k', i], 5)).collect());
    refused(
        clients.executor.report_writes(six_keys).await.unwrap_err(),
        Code::ResourceExhausted,
        &["6 keys", "max_keys_per_call (5)"],
    );

    let plausible = report(vec![write("fresh", b"never-seen", 5)]);
    let answer = clients
        .executor
        .report_writes(plausible)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.new_keys, 1, "the refused calls stored nothing");
}

/// Lease ids are drawn at random: a second executor that guesses the id
/// next to its own (as it could when ids were sequential) cannot fail the
/// first executor's keys back into line and lease them itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_ids_cannot_be_guessed_to_take_another_executors_keys() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    let service = Service::start(dir.path(), &logs, &[]);
    let mut clients = service.clients(None).await;
    let first = clients
        .executor
        .lease(lease_request(50))
        .await
        .unwrap()
        .into_inner();
    let second = clients
        .executor
        .lease(lease_request(50))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((first.keys.len(), second.keys.len()), (50, 50));
    assert!(
        second.lease_id.abs_diff(first.lease_id) > 1_000_000,
        "ids {} and {} are not neighbours",
        first.lease_id,
        second.lease_id
    );
    // With sequential ids the first guess was the first executor's lease.
    for guess in [
        second.lease_id.wrapping_sub(1),
        second.lease_id.wrapping_add(1),
        1,
        2,
    ] {
        let hostile = proto::AcknowledgeRequest {
            lease_id: guess,
            others_copied_at_leased_version: false,
            acks: first
                .keys
                .iter()
                .map(|key| failure(key, "guessed"))
                .collect(),
        };
        let answer = clients
            .executor
            .acknowledge(hostile)
            .await
            .unwrap()
            .into_inner();
        assert!(
            answer
                .results
                .iter()
                .all(|r| r.outcome == proto::AckOutcome::NotLeased as i32),
            "a guessed lease id requeued nothing: {:?}",
            answer.results.first()
        );
    }
    let third = clients
        .executor
        .lease(lease_request(10_000))
        .await
        .unwrap()
        .into_inner();
    let held: std::collections::HashSet<(String, Vec<u8>)> = first
        .keys
        .iter()
        .map(|k| (k.table.clone(), k.key.to_vec()))
        .collect();
    assert!(
        third
            .keys
            .iter()
            .all(|k| !held.contains(&(k.table.clone(), k.key.to_vec()))),
        "the first executor's keys stay with it"
    );
}

/// A lease is bound to the executor token that took it: another executor
/// token can neither extend it nor acknowledge under it (per key or
/// compact), and its keys stay with their holder; an admin may extend it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_answers_only_to_the_token_that_took_it() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    let service = Service::start(
        dir.path(),
        &logs,
        &[
            "--executor-token",
            "alpha-secret",
            "--executor-token",
            "beta-secret",
            "--admin-token",
            "admin-secret",
        ],
    );
    let mut alpha = service.clients(Some("alpha-secret")).await;
    let mut beta = service.clients(Some("beta-secret")).await;
    let mut admin = service.clients(Some("admin-secret")).await;
    let taken = alpha
        .executor
        .lease(lease_request(20))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(taken.keys.len(), 20);
    let lease_id = taken.lease_id;

    let refused = beta
        .executor
        .extend_lease(proto::ExtendLeaseRequest { lease_id })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("another executor token"),
        "{refused:?}"
    );
    let failures = proto::AcknowledgeRequest {
        lease_id,
        others_copied_at_leased_version: false,
        acks: taken
            .keys
            .iter()
            .map(|key| failure(key, "not mine"))
            .collect(),
    };
    let refused = beta.executor.acknowledge(failures).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let compact = proto::AcknowledgeRequest {
        lease_id,
        others_copied_at_leased_version: true,
        acks: Vec::new(),
    };
    let refused = beta
        .executor
        .acknowledge(compact.clone())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    // None of alpha's keys went back in line: beta's own lease holds none.
    let held: std::collections::HashSet<(String, Vec<u8>)> = taken
        .keys
        .iter()
        .map(|k| (k.table.clone(), k.key.to_vec()))
        .collect();
    let other = beta
        .executor
        .lease(lease_request(10_000))
        .await
        .unwrap()
        .into_inner();
    assert!(!other.keys.is_empty());
    assert!(
        other
            .keys
            .iter()
            .all(|k| !held.contains(&(k.table.clone(), k.key.to_vec()))),
        "alpha's keys stay with alpha"
    );
    admin
        .executor
        .extend_lease(proto::ExtendLeaseRequest { lease_id })
        .await
        .expect("an admin may extend any lease");
    let answer = alpha
        .executor
        .acknowledge(compact)
        .await
        .expect("the holder acknowledges")
        .into_inner();
    assert_eq!(answer.others_accepted, 20);
}

/// LoadPolicy by path reads only regular files under `--policy-dir`: a
/// module there loads; a file outside it (absolute, or reached with `..`)
/// and a FIFO inside it are refused at once, naming the path, and the
/// service keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_load_by_path_only_from_the_policy_directory() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::copy(example_wat(), policies.join("small.wat")).unwrap();
    let fifo = policies.join("pipe");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    std::fs::write(dir.path().join("secret.wat"), "(module) ;; not a policy").unwrap();
    let service = Service::start(dir.path(), &logs, &["--policy-dir", path_str(&policies)]);
    let mut clients = service.clients(None).await;
    let load = |path: String| proto::LoadPolicyRequest {
        name: "by-path".into(),
        module: Some(proto::load_policy_request::Module::Path(path)),
        config: Default::default(),
    };
    let loaded = clients
        .management
        .load_policy(load("small.wat".into()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(loaded.name, "by-path");
    for (path, words) in [
        (
            path_str(&example_wat()).to_string(),
            "outside the policy directory",
        ),
        ("../secret.wat".to_string(), "outside the policy directory"),
        ("pipe".to_string(), "not a regular file"),
        ("missing.wasm".to_string(), "missing.wasm"),
    ] {
        let refused = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            clients.management.load_policy(load(path.clone())),
        )
        .await
        .expect("answered at once")
        .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{path}: {refused:?}");
        assert!(
            refused.message().contains(words),
            "{path}: {}",
            refused.message()
        );
        assert!(
            !refused.message().contains("not a policy"),
            "{}",
            refused.message()
        );
    }
    status(&mut clients).await;
}

/// SIGTERM with lease calls waiting in a long poll (the migration paused,
/// each asking to wait a minute): they are answered at once with
/// UNAVAILABLE, and the process exits cleanly within seconds instead of
/// after the longest poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_answers_waiting_long_polls_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    let mut service = Service::start(dir.path(), &logs, &[]);
    let mut clients = service.clients(None).await;
    clients
        .management
        .pause(proto::PauseRequest {})
        .await
        .unwrap();
    let mut waiting = Vec::new();
    for _ in 0..4 {
        let mut executor = clients.executor.clone();
        waiting.push(tokio::spawn(async move {
            let mut request = lease_request(10);
            request.wait_ms = 60_000;
            executor.lease(request).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let exit = tokio::task::spawn_blocking(move || service.terminate())
        .await
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    for call in waiting {
        let answer = call.await.unwrap();
        let status = answer.expect_err("no keys while paused, and the service stopped");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "stopped in {:?}, not after the minute-long polls",
        started.elapsed()
    );
}

/// The HTTP/2 client preface and an empty SETTINGS frame: all a peer says
/// before it goes silent.
const HTTP2_PREFACE_AND_SETTINGS: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

/// Whether the server closed `connection` (end of stream or reset) before
/// `within` ran out; everything it sent is appended to `received`.
fn closed_by_server(
    connection: &mut std::net::TcpStream,
    within: Duration,
    received: &mut Vec<u8>,
) -> bool {
    let deadline = Instant::now() + within;
    let mut buffer = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        connection.set_read_timeout(Some(left)).unwrap();
        match connection.read(&mut buffer) {
            Ok(0) => return true,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// The settings in the HTTP/2 SETTINGS frames at the start of `frames`.
fn http2_settings(mut frames: &[u8]) -> Vec<(u16, u32)> {
    let mut settings = Vec::new();
    while frames.len() >= 9 {
        let length = u32::from_be_bytes([0, frames[0], frames[1], frames[2]]) as usize;
        let (kind, flags) = (frames[3], frames[4]);
        let payload = &frames[9..(9 + length).min(frames.len())];
        if kind == 0x4 && flags & 0x1 == 0 {
            settings.extend(payload.chunks_exact(6).map(|entry| {
                (
                    u16::from_be_bytes([entry[0], entry[1]]),
                    u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]),
                )
            }));
        }
        frames = &frames[(9 + length).min(frames.len())..];
    }
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_and_cannot_lock_out_callers() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    // 200 descriptors: room for 72 connections beside the 128 kept for files.
    let service = Service::start_with_open_files(
        dir.path(),
        &logs,
        &[
            "--handshake-timeout",
            "2s",
            "--keepalive-interval",
            "1s",
            "--keepalive-timeout",
            "1s",
            "--max-streams-per-connection",
            "7",
        ],
        200,
    );
    let opened = Instant::now();
    let mut silent: Vec<_> = (0..300)
        .map(|_| std::net::TcpStream::connect(&service.address).unwrap())
        .collect();

    let answered = tokio::time::timeout(Duration::from_secs(10), async {
        let mut clients = service.clients(None).await;
        status(&mut clients).await
    })
    .await;
    assert!(
        answered.is_ok(),
        "a caller got no answer behind 300 silent connections"
    );

    for (n, connection) in silent.iter_mut().enumerate() {
        let mut received = Vec::new();
        assert!(
            closed_by_server(connection, Duration::from_secs(8), &mut received),
            "silent connection {n} still open {:?} after it opened (handshake timeout 2s)",
            opened.elapsed()
        );
    }

    let mut greeted_only = std::net::TcpStream::connect(&service.address).unwrap();
    greeted_only.write_all(HTTP2_PREFACE_AND_SETTINGS).unwrap();
    let greeted = Instant::now();
    let mut received = Vec::new();
    assert!(
        closed_by_server(&mut greeted_only, Duration::from_secs(10), &mut received),
        "a peer that greets and then ignores pings is still connected after 10 s"
    );
    assert!(
        greeted.elapsed() >= Duration::from_secs(1),
        "closed after {:?}, before a ping could go unanswered",
        greeted.elapsed()
    );
    assert!(
        http2_settings(&received).contains(&(0x3, 7)),
        "the server's SETTINGS do not cap streams at 7: {:?}",
        http2_settings(&received)
    );

    let mut clients = service.clients(None).await;
    status(&mut clients).await;
}

/// Sends `bytes` as the body of a unary call to `path` and returns the status.
async fn raw_call(endpoint: &str, path: &'static str, bytes: Vec<u8>) -> tonic::Status {
    raw_unary(endpoint, path, bytes)
        .await
        .expect_err("not a valid request")
}

/// Sends `bytes` as the body of a unary call to `path`: whether it was
/// answered with a message (not decoded) or an error status.
async fn raw_unary(
    endpoint: &str,
    path: &'static str,
    bytes: Vec<u8>,
) -> Result<(), tonic::Status> {
    /// Sends bytes as they are; decodes nothing.
    #[derive(Default)]
    struct Raw;
    struct RawEncoder;
    struct RawDecoder;
    impl tonic::codec::Encoder for RawEncoder {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn encode(
            &mut self,
            item: Vec<u8>,
            buf: &mut tonic::codec::EncodeBuf<'_>,
        ) -> Result<(), tonic::Status> {
            use bytes::BufMut;
            buf.put_slice(&item);
            Ok(())
        }
    }
    impl tonic::codec::Decoder for RawDecoder {
        type Item = ();
        type Error = tonic::Status;
        fn decode(
            &mut self,
            buf: &mut tonic::codec::DecodeBuf<'_>,
        ) -> Result<Option<()>, tonic::Status> {
            use bytes::Buf;
            buf.advance(buf.remaining());
            Ok(Some(()))
        }
    }
    impl tonic::codec::Codec for Raw {
        type Encode = Vec<u8>;
        type Decode = ();
        type Encoder = RawEncoder;
        type Decoder = RawDecoder;
        fn encoder(&mut self) -> RawEncoder {
            RawEncoder
        }
        fn decoder(&mut self) -> RawDecoder {
            RawDecoder
        }
    }
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    grpc.unary(
        tonic::Request::new(bytes),
        http::uri::PathAndQuery::from_static(path),
        Raw,
    )
    .await
    .map(|_| ())
}

/// Every method on random bytes and on valid requests with bytes changed:
/// no call is answered INTERNAL or UNKNOWN (which would blame the service),
/// and the service keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_and_mangled_requests_never_blame_the_service() {
    use prost::Message;
    use rand::{Rng, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    let service = Service::start(dir.path(), &logs, &[]);
    let valid: Vec<(&'static str, Vec<u8>)> = vec![
        (
            "/shadowcast.v1.Executor/Lease",
            lease_request(5).encode_to_vec(),
        ),
        (
            "/shadowcast.v1.Executor/ExtendLease",
            proto::ExtendLeaseRequest { lease_id: 7 }.encode_to_vec(),
        ),
        (
            "/shadowcast.v1.Executor/Acknowledge",
            proto::AcknowledgeRequest {
                lease_id: 3,
                acks: vec![proto::KeyAck {
                    table: "users".into(),
                    key: bytes::Bytes::from_static(b"user:1"),
                    result: Some(key_ack::Result::CopiedVersion(5)),
                }],
                others_copied_at_leased_version: false,
            }
            .encode_to_vec(),
        ),
        (
            "/shadowcast.v1.Executor/ReportWrites",
            proto::ReportWritesRequest {
                writes: vec![proto::Write {
                    table: "users".into(),
                    key: bytes::Bytes::from_static(b"user:1"),
                    version: 5,
                    size_bytes: Some(10),
                }],
                truncations: vec![],
            }
            .encode_to_vec(),
        ),
        (
            "/shadowcast.v1.Routing/Lookup",
            proto::LookupRequest {
                tables: vec![proto::TableKeys {
                    table: "users".into(),
                    keys: vec![bytes::Bytes::from_static(b"user:1")],
                }],
            }
            .encode_to_vec(),
        ),
        (
            "/shadowcast.v1.Management/TopPredictions",
            proto::TopPredictionsRequest {
                limit: 5,
                table: "users".into(),
            }
            .encode_to_vec(),
        ),
        (
            "/shadowcast.v1.Management/SetBandwidth",
            proto::SetBandwidthRequest {
                bytes_per_s: Some(1 << 30),
            }
            .encode_to_vec(),
        ),
        (
            "/shadowcast.v1.Management/LoadPolicy",
            proto::LoadPolicyRequest {
                name: "p".into(),
                module: Some(proto::load_policy_request::Module::Wasm(
                    bytes::Bytes::from_static(b"\0asm\x01\0\0\0"),
                )),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "/shadowcast.v1.Management/PromoteModel",
            proto::PromoteModelRequest {
                name: "default".into(),
                version: "1".into(),
            }
            .encode_to_vec(),
        ),
    ];
    let mut random = rand::rngs::StdRng::seed_from_u64(11);
    for round in 0..300 {
        let (path, request) = &valid[round % valid.len()];
        let mut bytes = request.clone();
        if round % 3 == 0 {
            bytes = (0..random.random_range(0..64))
                .map(|_| random.random())
                .collect();
        } else {
            for _ in 0..random.random_range(1..4) {
                if bytes.is_empty() {
                    break;
                }
                let at = random.random_range(0..bytes.len());
                match random.random_range(0..3) {
                    0 => bytes[at] = random.random(),
                    1 => bytes.truncate(at),
                    _ => bytes.insert(at, random.random()),
                }
            }
        }
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            raw_unary(&service.endpoint, path, bytes.clone()),
        )
        .await;
        let Ok(answer) = answer else {
            assert_eq!(*path, "/shadowcast.v1.Executor/Lease", "{bytes:?}");
            continue; // a long poll, waiting as asked
        };
        if let Err(status) = answer {
            assert!(
                !matches!(status.code(), Code::Internal | Code::Unknown),
                "{path} on {bytes:?}: {status:?}"
            );
        }
    }
    let mut clients = service.clients(None).await;
    status(&mut clients).await;
}

/// Bytes that are not a valid message (a string field holding bytes that
/// are not UTF-8, a truncated field) are the caller's error:
/// INVALID_ARGUMENT, not INTERNAL, and the service keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_messages_are_invalid_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    let service = Service::start(dir.path(), &logs, &[]);
    // Field 1 (executor_id, a string), length 2, bytes 0xff 0xfe.
    let not_utf8 = vec![0x0a, 0x02, 0xff, 0xfe];
    // Field 1, length 10, but only 2 bytes follow.
    let truncated = vec![0x0a, 0x0a, b'a', b'b'];
    // Acknowledgements are read by the service's own code (service::wire):
    // field 2 (a KeyAck, length 4) whose table (field 1, length 2) is
    // 0xff 0xfe; then one whose key (field 2) comes as a varint.
    let ack_table_not_utf8 = vec![0x12, 0x04, 0x0a, 0x02, 0xff, 0xfe];
    let ack_key_a_number = vec![0x12, 0x02, 0x10, 0x01];
    for (path, bytes) in [
        ("/shadowcast.v1.Executor/Lease", not_utf8),
        ("/shadowcast.v1.Executor/ReportWrites", truncated),
        ("/shadowcast.v1.Executor/Acknowledge", ack_table_not_utf8),
        ("/shadowcast.v1.Executor/Acknowledge", ack_key_a_number),
    ] {
        let status = raw_call(&service.endpoint, path, bytes).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{path}: {status:?}");
        assert!(
            status.message().contains("does not decode"),
            "{}",
            status.message()
        );
    }
    let mut clients = service.clients(None).await;
    status(&mut clients).await;
}

/// A certificate authority and a certificate it signed for localhost and
/// 127.0.0.1, written as PEM files under `dir`: (authority, certificate, key).
fn certificates(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let authority_key = rcgen::KeyPair::generate().unwrap();
    let mut authority = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    authority.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    authority
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} test authority"));
    let authority = rcgen::CertifiedIssuer::self_signed(authority, authority_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .signed_by(&server_key, &authority)
        .unwrap();
    let paths = (
        dir.join(format!("{name}-ca.pem")),
        dir.join(format!("{name}-cert.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    std::fs::write(&paths.0, authority.pem()).unwrap();
    std::fs::write(&paths.1, server.pem()).unwrap();
    std::fs::write(&paths.2, server_key.serialize_pem()).unwrap();
    paths
}

/// GetStatus with the admin token at `endpoint` (trusting `tls_ca`): the
/// answer or why there was none, or `None` if nothing came in 10 s.
async fn admin_status_within_10s(
    endpoint: &str,
    tls_ca: Option<&Path>,
) -> Option<Result<proto::Status, String>> {
    let call = async {
        let mut clients = connect(endpoint, Some("admin-secret"), tls_ca)
            .await
            .map_err(|error| error.to_string())?;
        clients
            .management
            .get_status(proto::GetStatusRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| status.to_string())
    };
    tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_travel_over_tls_and_plaintext_to_a_tls_port_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    let (authority, certificate, key) = certificates(dir.path(), "service");
    let (stranger, _, _) = certificates(dir.path(), "stranger");
    let service = Service::start(
        dir.path(),
        &logs,
        &[
            "--tls-cert",
            path_str(&certificate),
            "--tls-key",
            path_str(&key),
            "--executor-token",
            "exec-secret",
            "--admin-token",
            "admin-secret",
        ],
    );
    let port = service.address.rsplit(':').next().unwrap();
    let secure = format!("https://localhost:{port}");

    let mut admin = connect(&secure, Some("admin-secret"), Some(&authority))
        .await
        .unwrap();
    let answered = status(&mut admin).await;
    assert!(
        answered.total.is_some_and(|total| total.keys > 0),
        "{answered:?}"
    );
    let mut executor = connect(&secure, Some("exec-secret"), Some(&authority))
        .await
        .unwrap();
    let leased = executor
        .executor
        .lease(lease_request(5))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(leased.keys.len(), 5, "an executor leases over TLS");
    let mut anonymous = connect(&secure, None, Some(&authority)).await.unwrap();
    let denied = anonymous
        .executor
        .lease(lease_request(1))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::Unauthenticated, "{denied:?}");

    let untrusted = admin_status_within_10s(&secure, Some(&stranger))
        .await
        .expect("a client that does not trust the certificate got no answer in 10 s");
    assert!(
        untrusted.is_err(),
        "a certificate from an authority the client does not trust was accepted"
    );
    let plaintext = admin_status_within_10s(&service.endpoint, None)
        .await
        .expect("a plaintext call to the TLS port got no answer in 10 s");
    assert!(
        plaintext.is_err(),
        "a plaintext call (with its token in the clear) was served on the TLS port"
    );
    status(&mut admin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_keep_executors_and_admins_apart() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    let service = Service::start(
        dir.path(),
        &logs,
        &[
            "--executor-token",
            "exec-secret",
            "--admin-token",
            "admin-secret",
        ],
    );
    // Metrics need a token too once tokens are configured.
    let refused = metrics_answer(&service.address, None);
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert!(refused.contains("missing `authorization"), "{refused}");
    let scraped = metrics_answer(&service.address, Some("exec-secret"));
    assert!(scraped.starts_with("HTTP/1.1 200"), "{scraped}");
    let mut anonymous = service.clients(None).await;
    let denied = anonymous
        .executor
        .lease(lease_request(1))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::Unauthenticated);
    let mut wrong = service.clients(Some("guess")).await;
    assert_eq!(
        wrong
            .management
            .get_status(proto::GetStatusRequest {})
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );

    let mut executor = service.clients(Some("exec-secret")).await;
    executor.executor.lease(lease_request(1)).await.unwrap();
    status(&mut executor).await;
    let promote = proto::PromoteModelRequest {
        name: "default".into(),
        version: "v1".into(),
    };
    assert_eq!(
        executor
            .management
            .promote_model(promote.clone())
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let policy = proto::LoadPolicyRequest {
        name: "p".into(),
        module: Some(proto::load_policy_request::Module::Path(
            "/nonexistent.wasm".into(),
        )),
        config: Default::default(),
    };
    assert_eq!(
        executor
            .management
            .load_policy(policy)
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        executor
            .management
            .pause(proto::PauseRequest {})
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );

    let mut admin = service.clients(Some("admin-secret")).await;
    let paused = admin
        .management
        .pause(proto::PauseRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(paused.paused);
    let idle = executor
        .executor
        .lease(lease_request(1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(idle.idle_reason, proto::IdleReason::Paused as i32);
    let model = admin
        .management
        .promote_model(promote)
        .await
        .unwrap()
        .into_inner();
    assert!(model.serving && model.version == "v1");

    // Without tokens, only loopback.
    let refused = Command::new(BIN)
        .args(["serve", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("listen"));
}

/// The compact acknowledgement: one named failure, the rest of the lease
/// taken as copied at the versions leased, a key written since the lease
/// judged STALE by its position; a second compact call for the finished
/// lease is NOT_FOUND and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compact_acknowledgement_judges_each_key_of_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    let service = Service::start(dir.path(), &logs, &[]);
    let mut clients = service.clients(None).await;
    force(&mut clients, proto::Phase::Background).await;
    let before = status(&mut clients).await;
    let lease = clients
        .executor
        .lease(lease_request(10))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(lease.keys.len(), 10);
    let written = &lease.keys[3];
    clients
        .executor
        .report_writes(proto::ReportWritesRequest {
            writes: vec![proto::Write {
                table: written.table.clone(),
                key: written.key.clone(),
                version: written.min_version + 5,
                size_bytes: None,
            }],
            truncations: vec![],
        })
        .await
        .unwrap();
    let failed = &lease.keys[7];
    let compact = proto::AcknowledgeRequest {
        lease_id: lease.lease_id,
        acks: vec![failure(failed, "disk full")],
        others_copied_at_leased_version: true,
    };
    let answer = clients
        .executor
        .acknowledge(compact.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.results.len(), 1);
    assert_eq!(
        answer.results[0].outcome,
        proto::AckOutcome::Requeued as i32
    );
    assert_eq!(answer.others_accepted, 8, "10 keys, one failed, one stale");
    assert_eq!(answer.others_not_accepted.len(), 1);
    let stale = &answer.others_not_accepted[0];
    assert_eq!(stale.position, 3);
    let result = stale.result.as_ref().unwrap();
    assert_eq!(result.outcome, proto::AckOutcome::Stale as i32);
    assert_eq!(result.latest_write, written.min_version + 5);
    let after = status(&mut clients).await;
    assert_eq!(
        after.current.unwrap().keys,
        before.current.unwrap().keys + 8
    );

    let again = clients.executor.acknowledge(compact).await.unwrap_err();
    assert_eq!(again.code(), Code::NotFound, "{again:?}");
    assert_eq!(
        status(&mut clients).await.acks_accepted_total,
        after.acks_accepted_total
    );
    let without_lease = clients
        .executor
        .acknowledge(proto::AcknowledgeRequest {
            lease_id: 0,
            acks: vec![],
            others_copied_at_leased_version: true,
        })
        .await
        .unwrap_err();
    assert_eq!(without_lease.code(), Code::InvalidArgument);
    assert!(without_lease.message().contains("lease_id"));
}

/// A key whose copy keeps failing while others are copied is parked after
/// --max-copy-failures failures: GetStatus, /metrics and `shadowcast status`
/// name it with the executor's reason, it is not leased again, and
/// RetryParked offers it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_keeps_failing_is_parked_named_and_offered_again_by_the_operator() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    let service = Service::start(
        dir.path(),
        &logs,
        &["--max-copy-failures", "2", "--copy-retry-seconds", "0"],
    );
    let mut clients = service.clients(None).await;
    force(&mut clients, proto::Phase::Background).await;
    let reason = "null value in column \"email\" violates not-null constraint";
    let mut poison: Option<proto::LeasedKey> = None;
    for round in 1..=2 {
        let lease = clients
            .executor
            .lease(lease_request(10))
            .await
            .unwrap()
            .into_inner();
        let failing = poison.get_or_insert_with(|| lease.keys[0].clone()).clone();
        assert_eq!(
            (&lease.keys[0].table, &lease.keys[0].key),
            (&failing.table, &failing.key),
            "with no retry delay the failed key comes back first"
        );
        let mut acks: Vec<proto::KeyAck> = lease.keys[1..]
            .iter()
            .map(|key| copied(key, key.min_version))
            .collect();
        acks.push(failure(&failing, reason));
        clients
            .executor
            .acknowledge(proto::AcknowledgeRequest {
                lease_id: lease.lease_id,
                acks,
                others_copied_at_leased_version: false,
            })
            .await
            .unwrap();
        let now = status(&mut clients).await;
        let parked = now.parked.unwrap_or_default().keys;
        assert_eq!(
            (now.retrying_keys, parked),
            if round == 1 { (1, 0) } else { (0, 1) }
        );
    }
    let poison = poison.unwrap();
    let now = status(&mut clients).await;
    assert_eq!(now.parked.unwrap().bytes, poison.size_bytes);
    assert_eq!(now.copy_failures_total, 2);
    let listed = &now.failing_keys[..];
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].table, poison.table);
    assert_eq!(listed[0].key.as_bytes(), &poison.key[..]);
    assert_eq!(
        (
            listed[0].failures,
            listed[0].last_reason.as_str(),
            listed[0].parked
        ),
        (2, reason, true)
    );
    let page = metrics_page(&service.address);
    assert_eq!(sample(&page, "shadowcast_keys_parked"), 1.0);
    assert_eq!(sample(&page, "shadowcast_keys_retrying"), 0.0);
    let printed = Command::new(BIN)
        .args(["status", "--endpoints", &service.endpoint])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&printed.stdout);
    let key = String::from_utf8_lossy(&poison.key);
    let line = format!("parked {}/{key} after 2 failures: {reason}", poison.table);
    assert!(printed.contains(&line), "no {line:?} in\n{printed}");

    let next = clients
        .executor
        .lease(lease_request(500))
        .await
        .unwrap()
        .into_inner();
    assert!(
        !next
            .keys
            .iter()
            .any(|k| k.key == poison.key && k.table == poison.table)
    );

    let retried = clients
        .management
        .retry_parked(proto::RetryParkedRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried.keys, 1);
    assert_eq!(retried.status.unwrap().parked.unwrap().keys, 0);
    let again = clients
        .executor
        .lease(lease_request(1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (&again.keys[0].table, &again.keys[0].key),
        (&poison.table, &poison.key)
    );
}

/// One row the destination refuses, copied by the reference executor: its
/// batches fail, the executor copies them in halves until that key fails
/// alone, and the scheduler parks it, and it only, naming the database's
/// reason; everything else is copied. Once the cause is mended,
/// RetryParked lets the migration complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_the_destination_refuses_is_parked_alone_and_the_rest_is_copied() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    let source = format!("sqlite:{}", dir.path().join("source.db").display());
    let destination_path = dir.path().join("destination.db");
    let destination = format!("sqlite:{}", destination_path.display());
    seed(&logs, &source);
    let service = Service::start(
        dir.path(),
        &logs,
        &["--max-copy-failures", "3", "--copy-retry-seconds", "0"],
    );
    let mut clients = service.clients(None).await;
    force(&mut clients, proto::Phase::Background).await;
    let refused = predictions(&mut clients, "", 1).await.remove(0);
    let hex: String = refused.key.iter().map(|b| format!("{b:02x}")).collect();
    let table = refused.table.replace('"', "\"\"");
    rusqlite::Connection::open(&destination_path)
        .unwrap()
        .execute_batch(&format!(
            "CREATE TABLE \"{table}\" (key BLOB PRIMARY KEY, version INTEGER NOT NULL, value BLOB NOT NULL); \
             CREATE TRIGGER refuse BEFORE INSERT ON \"{table}\" WHEN NEW.key = X'{hex}' \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;"
        ))
        .unwrap();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let until = executor::Until::Done;
    let worker = executor_thread(
        &service.endpoint,
        &source,
        &destination,
        0,
        until,
        stop.clone(),
    );
    let started = Instant::now();
    let parked = loop {
        let now = status(&mut clients).await;
        let (total, current) = (now.total.unwrap().keys, now.current.unwrap().keys);
        if now.parked.unwrap_or_default().keys > 0 && current + 1 == total {
            break now;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no key parked with the rest copied: {}",
            now.json
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    tokio::task::spawn_blocking(move || worker.join().unwrap())
        .await
        .unwrap();
    assert_eq!(parked.parked.unwrap().keys, 1);
    let listed = &parked.failing_keys[0];
    assert_eq!(
        (&listed.table, listed.key.as_bytes()),
        (&refused.table, &refused.key[..])
    );
    assert_eq!(listed.failures, 3);
    assert!(
        listed.last_reason.contains("refused by the test"),
        "{listed:?}"
    );
    assert_eq!(parked.phase, proto::Phase::Background as i32);

    rusqlite::Connection::open(&destination_path)
        .unwrap()
        .execute_batch("DROP TRIGGER refuse")
        .unwrap();
    let retried = clients
        .management
        .retry_parked(proto::RetryParkedRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried.keys, 1);
    let endpoint = service.endpoint.clone();
    let (s, d) = (source.clone(), destination.clone());
    let migration = tokio::task::spawn_blocking(move || run_executors(&endpoint, &s, &d, 1));
    let copied = tokio::time::timeout(Duration::from_secs(120), migration)
        .await
        .expect("the migration finishes")
        .unwrap();
    assert_eq!(copied, 1, "only the parked key was left");
    let done = status(&mut clients).await;
    assert_eq!(done.phase, proto::Phase::CutoverReady as i32);
    assert_same(&source, &destination);
}

/// A truncation reported with ReportWrites sends every key of its table
/// that was current back to be copied; a bad one is refused whole, naming
/// the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reported_truncation_sends_its_tables_keys_back_and_bad_ones_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    let service = Service::start(dir.path(), &logs, &[]);
    let mut clients = service.clients(None).await;
    force(&mut clients, proto::Phase::Background).await;
    let lease = clients
        .executor
        .lease(lease_request(50))
        .await
        .unwrap()
        .into_inner();
    clients
        .executor
        .acknowledge(proto::AcknowledgeRequest {
            lease_id: lease.lease_id,
            acks: lease
                .keys
                .iter()
                .map(|k| copied(k, k.min_version))
                .collect(),
            others_copied_at_leased_version: false,
        })
        .await
        .unwrap();
    let table = lease.keys[0].table.clone();
    let in_table = lease.keys.iter().filter(|k| k.table == table).count() as u64;
    let version = lease.keys.iter().map(|k| k.min_version).max().unwrap() + 1;
    let truncation = |table: &str, version: u64| proto::Truncation {
        table: table.into(),
        version,
    };
    let before = status(&mut clients).await;

    for (truncations, field) in [
        (vec![truncation("", version)], "truncations[0].table"),
        (
            vec![
                truncation(&table, version),
                truncation(&table, u64::MAX / 2),
            ],
            "truncations[1].version",
        ),
    ] {
        let refused = clients
            .executor
            .report_writes(proto::ReportWritesRequest {
                writes: vec![],
                truncations,
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert!(refused.message().contains(field), "{refused:?}");
    }
    assert_eq!(
        status(&mut clients).await.current.unwrap().keys,
        before.current.unwrap().keys,
        "a refused call changes nothing"
    );

    let answer = clients
        .executor
        .report_writes(proto::ReportWritesRequest {
            writes: vec![],
            truncations: vec![
                truncation(&table, version),
                truncation("no_such_table", version),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((answer.made_stale, answer.new_keys), (in_table, 0));
    let after = status(&mut clients).await;
    assert_eq!(
        after.current.unwrap().keys,
        before.current.unwrap().keys - in_table
    );
}

/// The value of the sample `name` (labels included) on a /metrics page.
fn sample(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{page}"))
        .parse()
        .unwrap()
}

/// /metrics says where calls spent their time: each lease and each
/// acknowledgement is counted once in every stage, acknowledgements and
/// reported writes once each waiting for their commit, and no lease's
/// stages add up to more than the client waited for its answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_say_where_calls_spend_their_time() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    // No re-plan (it waits for a commit of its own) during the count.
    let service = Service::start(dir.path(), &logs, &["--replan-every", "off"]);
    let mut clients = service.clients(None).await;
    force(&mut clients, proto::Phase::Background).await;
    let before = metrics_page(&service.address);
    let (leases, acknowledgements) = (3, 2);
    let mut leased = Vec::new();
    let mut waited = Duration::ZERO;
    for _ in 0..leases {
        let asked = Instant::now();
        let lease = clients
            .executor
            .lease(lease_request(20))
            .await
            .unwrap()
            .into_inner();
        waited += asked.elapsed();
        assert_eq!(lease.keys.len(), 20);
        leased.push(lease);
    }
    for lease in &leased[..acknowledgements] {
        clients
            .executor
            .acknowledge(proto::AcknowledgeRequest {
                lease_id: lease.lease_id,
                acks: vec![],
                others_copied_at_leased_version: true,
            })
            .await
            .unwrap();
    }
    let written = &leased[2].keys[0];
    clients
        .executor
        .report_writes(proto::ReportWritesRequest {
            writes: vec![proto::Write {
                table: written.table.clone(),
                key: written.key.clone(),
                version: written.min_version + 1,
                size_bytes: None,
            }],
            truncations: vec![],
        })
        .await
        .unwrap();
    let after = metrics_page(&service.address);
    let grown = |name: &str| sample(&after, name) - sample(&before, name);

    for stage in ["queued", "running", "answer_wait"] {
        let name = format!("shadowcast_scheduler_{stage}_seconds");
        let lease = "{call=\"lease\"}";
        let acknowledge = "{call=\"acknowledge\"}";
        assert_eq!(
            grown(&format!("{name}_count{lease}")),
            leases as f64,
            "{stage}"
        );
        assert_eq!(
            grown(&format!("{name}_count{acknowledge}")),
            acknowledgements as f64,
            "{stage}"
        );
        assert!(grown(&format!("{name}_sum{acknowledge}")) > 0.0, "{stage}");
    }
    let lease_stages: f64 = ["queued", "running", "answer_wait"]
        .iter()
        .map(|stage| {
            grown(&format!(
                "shadowcast_scheduler_{stage}_seconds_sum{{call=\"lease\"}}"
            ))
        })
        .sum();
    assert!(lease_stages > 0.0);
    assert!(
        lease_stages <= waited.as_secs_f64(),
        "the leases' stages took {lease_stages} s, the client waited {} s in all",
        waited.as_secs_f64()
    );
    assert_eq!(
        grown("shadowcast_durable_wait_seconds_count"),
        (acknowledgements + 1) as f64
    );
    let records = grown("shadowcast_journal_records_total");
    let commits = grown("shadowcast_journal_commits_total");
    assert!(records >= 1.0, "{after}");
    assert!(commits >= records, "{commits} commits in {records} records");
    assert!(grown("shadowcast_journal_append_seconds_total") > 0.0);
}

/// The service plans again while serving: on its own schedule, from
/// features recomputed from the logs it follows, so a key first seen after
/// the start is scored and a lease goes on meanwhile; status and /metrics
/// say when and from what the serving plan was made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_is_made_again_while_serving_from_the_logs_that_arrived() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    let service = Service::start(
        dir.path(),
        &logs,
        &["--follow-seconds", "0.2", "--replan-every", "2s"],
    );
    let mut clients = service.clients(None).await;
    let first = status(&mut clients).await;
    assert!(first.plans_made >= 1);
    assert!(first.plan_made_at_us > 0 && first.plan_as_of_us > 0);
    assert_eq!(first.plan_logs, logs.display().to_string());
    assert!(first.plan_events >= 20_000, "{}", first.plan_events);

    // A new file with a key nobody saw before, a minute after the last event.
    let later_ms = first.plan_as_of_us / 1000 + 60_000;
    write_late_key(&logs, later_ms);

    let deadline = Instant::now() + Duration::from_secs(60);
    let fresh = loop {
        let now = status(&mut clients).await;
        if now.plan_as_of_us > first.plan_as_of_us {
            break now;
        }
        assert!(Instant::now() < deadline, "no new plan: {now:?}");
        // Executors keep leasing while plans are made.
        clients.executor.lease(lease_request(5)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(fresh.plans_made > first.plans_made);
    assert_eq!(
        fresh.plan_as_of_us,
        (later_ms + 49) * 1000,
        "cut-off at the newest event"
    );
    assert_eq!(fresh.plan_events, first.plan_events + 50);
    let predictions = predictions(&mut clients, "late_arrivals", 10_000).await;
    assert_eq!(predictions.len(), 1, "the late key is planned");
    assert_eq!(&predictions[0].key[..], b"first-seen-late");

    let metrics = metrics_page(&service.address);
    let plans_total = sample(&metrics, "shadowcast_plans_total");
    assert!(plans_total >= 2.0, "{plans_total}");
    assert!(
        metrics.contains("shadowcast_plan_made_at_seconds "),
        "{metrics}"
    );
}

/// Reports the copy of `key` as failed under `lease_id`: its outcome.
async fn fail_under(
    clients: &mut Clients,
    lease_id: u64,
    key: &proto::LeasedKey,
) -> proto::AckOutcome {
    let answer = clients
        .executor
        .acknowledge(proto::AcknowledgeRequest {
            lease_id,
            acks: vec![failure(key, "gave up")],
            others_copied_at_leased_version: false,
        })
        .await
        .unwrap()
        .into_inner();
    proto::AckOutcome::try_from(answer.results[0].outcome).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_executor_and_a_killed_service_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    let source = format!("sqlite:{}", dir.path().join("source.db").display());
    let destination = format!("sqlite:{}", dir.path().join("destination.db").display());
    seed(&logs, &source);
    let lease_seconds = ["--lease-seconds", "1"];
    let mut service = Service::start(dir.path(), &logs, &lease_seconds);
    let mut clients = service.clients(None).await;
    force(&mut clients, proto::Phase::Background).await;

    // A real executor process, killed while it works.
    let mut worker = Command::new(BIN)
        .args([
            "executor",
            "--max-keys",
            "50",
            "--endpoint",
            &service.endpoint,
        ])
        .args(["--source", &source, "--destination", &destination])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while status(&mut clients).await.current.unwrap().keys < 200 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the executor made no progress"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.kill().unwrap();
    worker.wait().unwrap();

    // And the service, killed mid-migration with a lease out, restarted on
    // the same state.
    let held = clients
        .executor
        .lease(lease_request(3))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(held.keys.len(), 3);
    // The killed worker's last acknowledgement may be applied in memory
    // and not yet on disk (it was never answered): an operator command is
    // answered once durable, and commits are durable in order, so after
    // one every change the status counts is on disk.
    clients
        .management
        .pause(proto::PauseRequest {})
        .await
        .unwrap();
    clients
        .management
        .resume(proto::ResumeRequest {})
        .await
        .unwrap();
    let before = status(&mut clients).await;
    service.kill();
    let mut service = Service::start(dir.path(), &logs, &lease_seconds);
    let mut clients = service.clients(None).await;
    let after = status(&mut clients).await;
    assert_eq!(after.phase, proto::Phase::Background as i32);
    assert!(after.current.unwrap().keys >= before.current.unwrap().keys);
    assert_eq!(after.total.unwrap().keys, before.total.unwrap().keys);

    // The old lease is void, and every answer about it says so.
    let voided = "before the service restarted";
    let extended = clients
        .executor
        .extend_lease(proto::ExtendLeaseRequest {
            lease_id: held.lease_id,
        })
        .await
        .unwrap_err();
    assert_eq!(extended.code(), Code::NotFound, "{extended:?}");
    assert!(extended.message().contains(voided), "{extended:?}");
    let compact = clients
        .executor
        .acknowledge(proto::AcknowledgeRequest {
            lease_id: held.lease_id,
            acks: vec![],
            others_copied_at_leased_version: true,
        })
        .await
        .unwrap_err();
    assert_eq!(compact.code(), Code::NotFound, "{compact:?}");
    assert!(compact.message().contains(voided), "{compact:?}");
    // It holds none of its keys any more: a failure reported under it is
    // not taken for a live one.
    assert_eq!(
        fail_under(&mut clients, held.lease_id, &held.keys[0]).await,
        proto::AckOutcome::NotLeased
    );
    // A lease of this run that was completed is only unknown.
    let fresh = clients
        .executor
        .lease(lease_request(1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        fail_under(&mut clients, fresh.lease_id, &fresh.keys[0]).await,
        proto::AckOutcome::Requeued
    );
    let completed = clients
        .executor
        .extend_lease(proto::ExtendLeaseRequest {
            lease_id: fresh.lease_id,
        })
        .await
        .unwrap_err();
    assert_eq!(completed.code(), Code::NotFound, "{completed:?}");
    assert!(
        completed.message().contains("expired or was completed")
            && !completed.message().contains(voided),
        "{completed:?}"
    );

    let endpoint = service.endpoint.clone();
    let (s, d) = (source.clone(), destination.clone());
    let migration = tokio::task::spawn_blocking(move || run_executors(&endpoint, &s, &d, 2));
    tokio::time::timeout(Duration::from_secs(300), migration)
        .await
        .expect("the migration finishes within 5 minutes")
        .unwrap();
    let done = status(&mut clients).await;
    assert_eq!(done.phase, proto::Phase::CutoverReady as i32);
    assert_eq!(done.current.unwrap().keys, done.total.unwrap().keys);
    assert_same(&source, &destination);
    // SIGTERM: a clean exit.
    assert!(service.terminate().success());
}

/// An executor process keeps its work across a restart of the service: it
/// waits while nothing answers, acknowledges what it copied once the
/// service is back, and the migration completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_waits_out_a_restart_of_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    let source = format!("sqlite:{}", dir.path().join("source.db").display());
    let destination = format!("sqlite:{}", dir.path().join("destination.db").display());
    seed(&logs, &source);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let extra = ["--listen", listen.as_str(), "--lease-seconds", "2"];
    let mut service = Service::start(dir.path(), &logs, &extra);
    let mut clients = service.clients(None).await;
    force(&mut clients, proto::Phase::Background).await;
    let total = status(&mut clients).await.total.unwrap().keys;

    let worker = Command::new(BIN)
        .args([
            "executor",
            "--max-keys",
            "20",
            "--until-ready",
            "--retry-for",
            "60s",
        ])
        .args(["--endpoint", &service.endpoint])
        .args(["--source", &source, "--destination", &destination])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while status(&mut clients).await.current.unwrap().keys < total / 4 {
        assert!(started.elapsed() < Duration::from_secs(60), "no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    service.kill();
    // Down for a while: the executor's calls fail meanwhile.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let service = Service::start(dir.path(), &logs, &extra);
    let mut clients = service.clients(None).await;

    let finished = tokio::task::spawn_blocking(move || worker.wait_with_output().unwrap());
    let output = tokio::time::timeout(Duration::from_secs(120), finished)
        .await
        .expect("the executor finishes within 2 minutes of the restart")
        .unwrap();
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{report}");
    assert!(
        report.contains("the service is unavailable; retrying")
            || report.contains("the service does not answer; retrying"),
        "the executor saw the restart: {report}"
    );
    let done = status(&mut clients).await;
    assert_eq!(done.phase, proto::Phase::CutoverReady as i32);
    assert_eq!(done.current.unwrap().keys, total);
    assert_same(&source, &destination);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_migration_on_postgresql_ends_with_equal_databases() {
    let Ok(admin_url) = std::env::var("SHADOWCAST_TEST_POSTGRES") else {
        panic!(
            "SHADOWCAST_TEST_POSTGRES is not set: run the tests with `bash scripts/test.sh`, which starts PostgreSQL"
        );
    };
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    let suffix = std::process::id();
    let (source, destination) = tokio::task::spawn_blocking(move || {
        let mut admin = postgres::Client::connect(&admin_url, postgres::NoTls).unwrap();
        let base = admin_url.rsplit_once('/').unwrap().0.to_string();
        let mut urls = Vec::new();
        for role in ["source", "destination"] {
            let name = format!("shadowcast_{role}_{suffix}");
            admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
                .unwrap();
            admin
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .unwrap();
            urls.push(format!("{base}/{name}"));
        }
        (urls[0].clone(), urls[1].clone())
    })
    .await
    .unwrap();
    seed(&logs, &source);
    let service = Service::start(dir.path(), &logs, &["--confidence-threshold", "0.5"]);
    let mut clients = service.clients(None).await;
    let endpoint = service.endpoint.clone();
    let (s, d) = (source.clone(), destination.clone());
    let migration = tokio::task::spawn_blocking(move || run_executors(&endpoint, &s, &d, 2));
    let accepted = tokio::time::timeout(Duration::from_secs(300), migration)
        .await
        .expect("the migration finishes within 5 minutes")
        .unwrap();
    let done = status(&mut clients).await;
    assert_eq!(
        done.phase,
        proto::Phase::CutoverReady as i32,
        "{}",
        done.json
    );
    assert!(accepted > 0);
    let rows = tokio::task::spawn_blocking(move || assert_same(&source, &destination))
        .await
        .unwrap();
    assert!(rows > 1_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_plans_from_a_feature_table_and_again_when_it_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    // The tables as a cluster job would hand them over: the features of the
    // logs, then of the logs and a later file with a key never seen before.
    let table = dir.path().join("features.parquet");
    let features_of = |logs: &Path, out: &Path, horizon: &str| {
        let status = Command::new(BIN)
            .args([
                "features",
                "--as-of",
                "latest",
                "--horizon",
                horizon,
                "--logs",
            ])
            .arg(logs)
            .arg("--out")
            .arg(out)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    };
    features_of(&logs, &table, "6h");
    // The service follows no logs: the plan can only come from the table.
    let service = Service::start(
        dir.path(),
        &dir.path().join("no-logs"),
        &["--features", path_str(&table), "--replan-every", "1s"],
    );
    let mut clients = service.clients(None).await;
    let first = status(&mut clients).await;
    assert_eq!(first.plan_logs, format!("features {}", table.display()));
    assert_eq!(first.plan_events, 20_000, "every generated event");
    assert!(first.plans_made >= 1);
    let planned = predictions(&mut clients, "", 10_000).await;
    assert!(planned.len() > 1_000, "{} keys planned", planned.len());

    let more = dir.path().join("more-logs");
    copy_tree(&logs, &more);
    let later_ms = first.plan_as_of_us / 1000 + 60_000;
    write_late_key(&more, later_ms);
    let replacement = dir.path().join("features.parquet.new");
    features_of(&more, &replacement, "6h");
    std::fs::rename(&replacement, &table).unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    let fresh = loop {
        let now = status(&mut clients).await;
        if now.plan_as_of_us > first.plan_as_of_us {
            break now;
        }
        assert!(Instant::now() < deadline, "no new plan: {now:?}");
        clients.executor.lease(lease_request(5)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(fresh.plan_as_of_us, (later_ms + 49) * 1000);
    assert_eq!(fresh.plan_events, 20_050);
    let late = predictions(&mut clients, "late_arrivals", 10).await;
    assert_eq!(late.len(), 1, "the key of the new table is planned");
    // An unchanged table is not planned again.
    let settled = status(&mut clients).await.plans_made;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(status(&mut clients).await.plans_made, settled);
    drop(service);

    // A shard of two serving from the same table plans its half of it.
    let half_dir = dir.path().join("half");
    std::fs::create_dir_all(&half_dir).unwrap();
    let half = Service::start(
        &half_dir,
        &dir.path().join("no-logs"),
        &["--features", path_str(&table), "--shard", "1/2"],
    );
    let mut half_clients = half.clients(None).await;
    let mut owned = 0;
    shadowcast::features::FeatureTable::read_parquet(&table)
        .unwrap()
        .for_each_key(|name, key, _| {
            owned += usize::from(shadowcast::shard::shard_of(name, key, 2) == 1)
        });
    assert_eq!(
        status(&mut half_clients).await.total.unwrap().keys,
        owned as u64
    );
    let planned = predictions(&mut half_clients, "", 10_000).await;
    assert!(
        planned
            .iter()
            .all(|p| shadowcast::shard::shard_of(&p.table, &p.key, 2) == 1)
    );
    drop(half);

    // A table on another time scale than the serving model's is refused at start.
    let wrong = dir.path().join("one-hour.parquet");
    features_of(&logs, &wrong, "1h");
    let output = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--features"])
        .arg(&wrong)
        .arg("--logs")
        .arg(dir.path().join("no-logs"))
        .arg("--models")
        .arg(models(dir.path()))
        .arg("--state-dir")
        .arg(dir.path().join("other-state"))
        .output()
        .unwrap();
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        error.contains("one-hour.parquet")
            && error.contains("1.0h horizon")
            && error.contains("6.0h"),
        "{error}"
    );
}

/// A free port on the loopback, for a service that must come back at the
/// same address after a restart.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_across_three_shards_survives_a_killed_shard() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    let source = format!("sqlite:{}", dir.path().join("source.db").display());
    let destination = format!("sqlite:{}", dir.path().join("destination.db").display());
    seed(&logs, &source);
    let shard_dirs: Vec<PathBuf> = (0..3)
        .map(|i| dir.path().join(format!("shard-{i}")))
        .collect();
    let addresses: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let start = |i: usize| {
        std::fs::create_dir_all(&shard_dirs[i]).unwrap();
        Service::start(
            &shard_dirs[i],
            &logs,
            &[
                "--shard",
                &format!("{i}/3"),
                "--listen",
                &addresses[i],
                "--lease-seconds",
                "2",
            ],
        )
    };
    let mut shards: Vec<Service> = (0..3).map(start).collect();
    let mut clients = Vec::new();
    for shard in &shards {
        clients.push(shard.clients(None).await);
    }

    // Each shard planned only the keys its hash picks, and together every key.
    let mut planned = std::collections::HashSet::new();
    for (i, client) in clients.iter_mut().enumerate() {
        let status = status(client).await;
        assert_eq!((status.shard_index, status.shard_count), (i as u32, 3));
        let predictions = predictions(client, "", 10_000).await;
        assert_eq!(predictions.len() as u64, status.total.unwrap().keys);
        for prediction in predictions {
            assert_eq!(
                shadowcast::shard::shard_of(&prediction.table, &prediction.key, 3),
                i as u32,
                "{prediction:?} planned by shard {i}"
            );
            assert!(planned.insert((prediction.table, prediction.key)));
        }
    }
    let seeded: usize = executor::open(&source)
        .unwrap()
        .dump()
        .unwrap()
        .iter()
        .map(|(_, rows)| rows.len())
        .sum();
    assert!(
        planned.len() >= seeded,
        "{} keys planned, {seeded} rows in the source",
        planned.len()
    );

    // A write reported to a shard that does not own its key is refused by name.
    let (table, key) = planned
        .iter()
        .filter(|(t, k)| shadowcast::shard::shard_of(t, k, 3) == 2)
        .min()
        .unwrap()
        .clone();
    let misrouted = clients[0]
        .executor
        .report_writes(proto::ReportWritesRequest {
            writes: vec![proto::Write {
                table: table.clone(),
                key: key.clone(),
                version: 1,
                size_bytes: Some(10),
            }],
            truncations: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(misrouted.code(), Code::InvalidArgument);
    assert!(
        misrouted.message().contains("belongs to shard 2/3"),
        "{misrouted:?}"
    );

    // The routing client sends each key to its shard: every planned key is
    // found (not yet copied), and a write goes to the shard that owns it.
    let endpoint_list: Vec<String> = shards.iter().map(|s| s.endpoint.clone()).collect();
    let mut routed = ShardedClients::connect(&endpoint_list, None, None)
        .await
        .unwrap();
    let every_key = || proto::LookupRequest {
        tables: planned
            .iter()
            .map(|(table, key)| proto::TableKeys {
                table: table.clone(),
                keys: vec![key.clone()],
            })
            .collect(),
    };
    let locations = routed.lookup(every_key()).await.unwrap();
    assert_eq!(locations.len(), planned.len());
    assert!(
        locations
            .iter()
            .all(|l| *l == proto::KeyLocation::SourceOnly as i32)
    );
    // At the version the source holds (a write already seen): a newer one
    // would make the key stale for good, since the source has no such row.
    let seeded_version = executor::open(&source)
        .unwrap()
        .read(&table, &[&key[..]])
        .unwrap()[0]
        .as_ref()
        .map_or(0, |row| row.version);
    let routed_write = routed
        .report_writes(
            vec![proto::Write {
                table: table.clone(),
                key: key.clone(),
                version: seeded_version,
                size_bytes: Some(10),
            }],
            &[],
        )
        .await
        .unwrap();
    assert_eq!((routed_write.new_keys, routed_write.made_stale), (0, 0));

    for client in &mut clients {
        force(client, proto::Phase::Background).await;
    }
    let endpoints = shards
        .iter()
        .map(|s| s.endpoint.clone())
        .collect::<Vec<_>>()
        .join(",");
    let mut worker = Command::new(BIN)
        .args([
            "executor",
            "--until-ready",
            "--max-keys",
            "20",
            "--endpoint",
            &endpoints,
        ])
        .args(["--source", &source, "--destination", &destination])
        .stderr(std::fs::File::create(dir.path().join("worker.log")).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while status(&mut clients[1]).await.current.unwrap().keys < 100 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no progress on shard 1"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Shard 1 killed mid-way, and started again on its state and address.
    let before = status(&mut clients[1]).await;
    assert!(
        before.current.unwrap().keys < before.total.unwrap().keys,
        "killed mid-way: {before:?}"
    );
    shards[1].kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    shards[1] = start(1);
    clients[1] = shards[1].clients(None).await;

    let finished = tokio::task::spawn_blocking(move || worker.wait().unwrap());
    let exit = tokio::time::timeout(Duration::from_secs(300), finished)
        .await
        .expect("the migration finishes within 5 minutes")
        .unwrap();
    assert!(
        exit.success(),
        "{}",
        std::fs::read_to_string(dir.path().join("worker.log")).unwrap()
    );
    assert_same(&source, &destination);
    // Shard 1 restarted on another process: the routing client reconnects.
    let mut routed = ShardedClients::connect(&endpoint_list, None, None)
        .await
        .unwrap();
    let locations = routed.lookup(every_key()).await.unwrap();
    assert!(
        locations
            .iter()
            .all(|l| *l == proto::KeyLocation::Current as i32)
    );

    let whole = std::process::Command::new(BIN)
        .args(["status", "--endpoints", &endpoints])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&whole.stdout);
    assert!(whole.status.success(), "{table}");
    let all = table.lines().find(|line| line.starts_with("all")).unwrap();
    let fields: Vec<&str> = all.split_whitespace().collect();
    assert_eq!(fields[1], "CUTOVER_READY", "{table}");
    assert_eq!(
        fields[2],
        planned.len().to_string(),
        "every key counted once: {table}"
    );
    assert_eq!(fields[3], fields[2], "every key current: {table}");
    let by_table: Vec<u64> = table
        .lines()
        .skip_while(|line| !line.starts_with("table "))
        .skip(1)
        .take_while(|line| !line.starts_with("eta"))
        .map(|line| line.split_whitespace().nth(1).unwrap().parse().unwrap())
        .collect();
    assert!(by_table.len() > 1, "{table}");
    assert_eq!(
        by_table.iter().sum::<u64>().to_string(),
        fields[2],
        "each table summed over the shards adds up to the whole: {table}"
    );
    let metrics = std::process::Command::new(BIN)
        .args([
            "status",
            "--format",
            "prometheus",
            "--endpoints",
            &endpoints,
        ])
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    for sample in [
        "shadowcast_shards 3".to_string(),
        format!("shadowcast_phase {}", proto::Phase::CutoverReady as i32),
        format!("shadowcast_keys_total {}", planned.len()),
        format!("shadowcast_keys_current {}", planned.len()),
        "shadowcast_live_leases 0".to_string(),
    ] {
        assert!(
            metrics.lines().any(|line| line == sample),
            "{sample} in\n{metrics}"
        );
    }

    // A shard's state refuses to serve as another shard.
    shards[1].kill();
    let wrong = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--shard",
            "2/3",
            "--follow-seconds",
            "0",
        ])
        .arg("--logs")
        .arg(&logs)
        .arg("--models")
        .arg(models(&shard_dirs[1]))
        .arg("--state-dir")
        .arg(shard_dirs[1].join("state"))
        .output()
        .unwrap();
    let error = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success());
    assert!(
        error.contains("this state belongs to shard 1/3, not 2/3"),
        "{error}"
    );
}
