//! PostgreSQL migrations of real tables through the real binary: the
//! tables executor, `capture` following the write-ahead log, `verify`, the
//! status table, a transformed destination schema, and bad input. Needs the
//! servers `scripts/test.sh` starts.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::service::Service;
use common::{Event, write_events};
use shadowcast::service::client::Clients;
use shadowcast::service::proto;

const BIN: &str = env!("CARGO_BIN_EXE_shadowcast");

fn admin_url() -> String {
    std::env::var("SHADOWCAST_TEST_POSTGRES").expect(
        "SHADOWCAST_TEST_POSTGRES is not set: run the tests with `bash scripts/test.sh`, which starts PostgreSQL",
    )
}

fn client(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap()
}

/// A fresh source and destination database for `test`.
fn databases(test: &str) -> (String, String) {
    let admin = admin_url();
    let mut admin_client = client(&admin);
    let base = admin.rsplit_once('/').unwrap().0.to_string();
    let mut urls = Vec::new();
    for role in ["source", "destination"] {
        let name = format!("{test}_{role}_{}", std::process::id());
        // A slot left by an earlier failed run would keep the database busy.
        for statement in [
            format!(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '{name}'"
            ),
            format!("DROP DATABASE IF EXISTS {name}"),
            format!("CREATE DATABASE {name}"),
        ] {
            admin_client.batch_execute(&statement).unwrap();
        }
        urls.push(format!("{base}/{name}"));
    }
    (urls[0].clone(), urls[1].clone())
}

fn strings(url: &str, sql: &str) -> Vec<String> {
    client(url)
        .query(sql, &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

fn one(url: &str, sql: &str) -> String {
    let found = strings(url, sql);
    assert_eq!(found.len(), 1, "{sql}");
    found[0].clone()
}

/// Every row of `table` as JSON text, in key order, hashed: a second way,
/// beside `verify`, to tell the two sides apart.
fn digest(url: &str, table: &str, key: &str) -> String {
    one(
        url,
        &format!(
            "SELECT coalesce(md5(string_agg(row_to_json(t)::text, '|' ORDER BY {key})), 'empty') FROM {table} t"
        ),
    )
}

const SHOP: &str = r"
CREATE TABLE customers (id uuid PRIMARY KEY, name text NOT NULL, email text, profile json,
                        balance numeric(12,2), joined timestamptz);
CREATE TABLE orders (region text, id integer, customer uuid, total numeric(10,2), note jsonb,
                     tags text[], PRIMARY KEY (region, id));
CREATE TABLE order_lines (region text, order_id integer, line smallint, sku text NOT NULL,
                          qty integer, raw bytea, PRIMARY KEY (region, order_id, line));
INSERT INTO customers
SELECT md5(i::text)::uuid, 'customer ' || i || CASE WHEN i % 7 = 0 THEN ', O''Brien' ELSE '' END,
       CASE WHEN i % 3 = 0 THEN NULL ELSE 'c' || i || '@example.org' END,
       CASE WHEN i % 5 = 0 THEN NULL ELSE json_build_object('tier', i % 4, 'tags', json_build_array('a,b', i)) END,
       i * 1.25, '2026-01-01 00:00:00+00'::timestamptz + i * interval '1 hour'
FROM generate_series(1, 400) i;
INSERT INTO orders
SELECT (ARRAY['eu', 'us,west', E'ap\\south'])[1 + i % 3], i, md5((1 + i % 400)::text)::uuid,
       CASE WHEN i % 11 = 0 THEN NULL ELSE i * 3.5 END,
       CASE WHEN i % 4 = 0 THEN NULL ELSE jsonb_build_object('n', i, 'gift', i % 2 = 0) END,
       ARRAY['t' || i, E'x\\y', NULL]
FROM generate_series(1, 800) i;
INSERT INTO order_lines
SELECT o.region, o.id, l, 'sku-' || (o.id * 7 + l) % 97, l * 2, decode(lpad(to_hex(o.id), 8, '0'), 'hex')
FROM orders o, generate_series(1, 2) l WHERE o.id <= 600;
";

/// Each table's canonical keys, written in SQL from the README's rule (a
/// second method beside the Rust encoder): text forms, and for composite
/// keys `\` → `\\`, `,` → `\,`, joined by `,`.
const SHOP_KEYS: &str = r"
SELECT 'customers', id::text FROM customers
UNION ALL SELECT 'orders', replace(replace(region, E'\\', E'\\\\'), ',', E'\\,') || ',' || id FROM orders
UNION ALL SELECT 'order_lines', replace(replace(region, E'\\', E'\\\\'), ',', E'\\,') || ',' || order_id || ',' || line
FROM order_lines";

/// Access logs naming every row of the source: each key read one to four
/// times, the way a log shipper in front of the application would write them.
fn shop_logs(dir: &Path, source: &str) -> PathBuf {
    let rows = client(source).query(SHOP_KEYS, &[]).unwrap();
    let start_ms = 1_795_000_000_000;
    let mut events = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let table: String = row.get(0);
        let table: &'static str = match table.as_str() {
            "customers" => "customers",
            "orders" => "orders",
            _ => "order_lines",
        };
        for repeat in 0..=(i % 4) {
            events.push(Event {
                ts_ms: start_ms + (i * 4 + repeat) as i64 * 100,
                table,
                key: row.get(1),
                op: "read",
                size: 120,
                tenant: None,
            });
        }
    }
    events.sort_by_key(|e| e.ts_ms);
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    write_events(&logs.join("part-0.parquet"), &events, 10_000);
    logs
}

/// A child process of the binary, its stderr kept in a file.
struct Process {
    child: Child,
    stderr: PathBuf,
}

impl Process {
    fn start(args: &[&str], stderr: PathBuf) -> Process {
        let child = Command::new(BIN)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Process { child, stderr }
    }

    fn stderr(&self) -> String {
        let mut text = String::new();
        std::fs::File::open(&self.stderr)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text
    }

    /// SIGKILL: no chance to clean up.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running after {limit:?}: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn slot_exists(source: &str, slot: &str) -> bool {
    one(
        source,
        &format!("SELECT count(*)::text FROM pg_replication_slots WHERE slot_name = '{slot}'"),
    ) == "1"
}

/// The application: updates, inserts, deletes and a key change, in small
/// transactions, `transactions` of them.
fn application_writes(source: &str, transactions: u64) {
    let mut db = client(source);
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |modulo: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % modulo
    };
    for n in 0..transactions {
        let customer = 1 + next(400);
        let order = 1 + next(800);
        let mut txn = db.transaction().unwrap();
        match n % 6 {
            0 | 1 => txn
                .batch_execute(&format!(
                    "UPDATE customers SET balance = balance + 1, profile = json_build_object('v', {n}) \
                     WHERE id = md5('{customer}')::uuid"
                ))
                .unwrap(),
            2 => txn
                .batch_execute(&format!(
                    "UPDATE orders SET total = coalesce(total, 0) + 0.5, note = NULL WHERE id = {order}; \
                     INSERT INTO order_lines SELECT region, id, 100 + {n} % 50, 'late', 1, NULL \
                     FROM orders WHERE id = {order} ON CONFLICT DO NOTHING"
                ))
                .unwrap(),
            3 => txn
                .batch_execute(&format!(
                    "DELETE FROM order_lines WHERE order_id = {order}; \
                     INSERT INTO customers (id, name) VALUES (md5('new {n}')::uuid, 'new {n}')"
                ))
                .unwrap(),
            4 => txn
                .batch_execute(&format!(
                    "UPDATE orders SET id = id + 100000 WHERE id = {order} \
                     AND NOT EXISTS (SELECT 1 FROM order_lines WHERE order_id = {order})"
                ))
                .unwrap(),
            _ => txn
                .batch_execute(&format!(
                    "DELETE FROM customers WHERE id = md5('{customer}')::uuid AND {n} % 4 = 0"
                ))
                .unwrap(),
        }
        txn.commit().unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn status(runtime: &tokio::runtime::Runtime, clients: &mut Clients) -> proto::Status {
    runtime
        .block_on(clients.management.get_status(proto::GetStatusRequest {}))
        .unwrap()
        .into_inner()
}

#[test]
fn a_live_migration_survives_killed_capture_and_executor_and_verifies_clean() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (source, destination) = databases("live");
    client(&source).batch_execute(SHOP).unwrap();
    let logs = shop_logs(dir.path(), &source);
    let service = Service::start(
        dir.path(),
        &logs,
        &["--versions", "lsn", "--lease-seconds", "3"],
    );
    let mut clients = runtime.block_on(service.clients(None));
    let endpoint = service.endpoint.clone();
    // Slot names are the server's, not a database's: one per test run.
    let slot = format!("live_{}", std::process::id());
    let capture_args = [
        "capture",
        "--source",
        &source,
        "--destination",
        &destination,
        "--endpoint",
        &endpoint,
        "--slot",
        &slot,
        "--poll",
        "50ms",
        "--status-every",
        "500ms",
    ];
    let executor_args = [
        "executor",
        "--source",
        &source,
        "--destination",
        &destination,
        "--endpoint",
        &endpoint,
        "--layout",
        "tables",
        "--max-keys",
        "40",
        "--slot",
        &slot,
        "--until-ready",
    ];
    let mut capture = Process::start(&capture_args, dir.path().join("capture-1.log"));
    wait_until("the capture's slot", Duration::from_secs(30), || {
        slot_exists(&source, &slot)
    });
    let writer = {
        let source = source.clone();
        std::thread::spawn(move || application_writes(&source, 600))
    };
    let mut executor = Process::start(&executor_args, dir.path().join("executor-1.log"));
    let total = 2_400;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = status(&runtime, &mut clients);
        if status.current.unwrap_or_default().keys >= total / 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no progress: {}",
            executor.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    capture.kill();
    executor.kill();
    assert!(!writer.is_finished(), "the writes go on across the kills");
    let mut capture = Process::start(&capture_args, dir.path().join("capture-2.log"));
    let mut executor = Process::start(&executor_args, dir.path().join("executor-2.log"));
    writer.join().unwrap();

    // Every write committed, then captured and accepted: the slot is
    // confirmed past the last one.
    let written = one(&source, "SELECT pg_current_wal_lsn()::text");
    let caught_up = format!(
        "SELECT (confirmed_flush_lsn >= '{written}')::text FROM pg_replication_slots WHERE slot_name = '{slot}'"
    );
    wait_until(
        "the capture to confirm every write",
        Duration::from_secs(60),
        || one(&source, &caught_up) == "true",
    );
    let finished = executor.wait(Duration::from_secs(240));
    assert!(finished.success(), "{}", executor.stderr());
    assert!(
        capture
            .stderr()
            .contains("resuming the replication slot this capture made"),
        "{}",
        capture.stderr()
    );

    let status = status(&runtime, &mut clients);
    assert_eq!(
        status.phase,
        proto::Phase::CutoverReady as i32,
        "{}",
        status.json
    );
    assert!(
        status.total.unwrap().keys > total,
        "keys inserted by the application were captured and tracked"
    );
    let verified = Command::new(BIN)
        .args([
            "verify",
            "--source",
            &source,
            "--destination",
            &destination,
            "--chunk",
            "100",
        ])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(
        report.contains("0 keys differ with no later write"),
        "{report}"
    );
    for (table, key) in [
        ("customers", "id"),
        ("orders", "region, id"),
        ("order_lines", "region, order_id, line"),
    ] {
        assert_eq!(
            digest(&source, table, key),
            digest(&destination, table, key),
            "table {table}"
        );
    }
    wait_until(
        "the status table to show CUTOVER_READY",
        Duration::from_secs(10),
        || {
            strings(
                &destination,
                "SELECT phase FROM shadowcast_status WHERE scope = 'migration'",
            ) == ["CUTOVER_READY"]
        },
    );
    let counts = strings(
        &destination,
        &format!(
            "SELECT (keys_total = keys_current AND keys_total > 2400 AND capture_slot = '{slot}')::text \
             FROM shadowcast_status"
        ),
    );
    assert_eq!(counts, ["true"]);

    // The operator ends the migration: the capture drops its slot and stops.
    runtime
        .block_on(clients.management.force_phase(proto::ForcePhaseRequest {
            phase: proto::Phase::Done as i32,
        }))
        .unwrap();
    let ended = capture.wait(Duration::from_secs(30));
    assert!(ended.success(), "{}", capture.stderr());
    assert!(
        capture.stderr().contains("replication slot dropped"),
        "{}",
        capture.stderr()
    );
    assert!(!slot_exists(&source, &slot));
    assert_eq!(
        one(&source, "SELECT count(*)::text FROM pg_publication"),
        "0"
    );
}
