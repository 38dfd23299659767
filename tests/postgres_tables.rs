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
    let captured = dir.path().join("captured-logs");
    let capture_args = between(
        "capture",
        &source,
        &destination,
        &[
            "--endpoint",
            &endpoint,
            "--slot",
            &slot,
            "--logs",
            captured.to_str().unwrap(),
            "--logs-every",
            "1s",
            "--poll",
            "50ms",
            "--status-every",
            "500ms",
        ],
    );
    let executor_args = between(
        "executor",
        &source,
        &destination,
        &[
            "--endpoint",
            &endpoint,
            "--layout",
            "tables",
            "--max-keys",
            "40",
            "--slot",
            &slot,
            "--until-ready",
        ],
    );
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

    let ready = status(&runtime, &mut clients);
    assert_eq!(
        ready.phase,
        proto::Phase::CutoverReady as i32,
        "{}",
        ready.json
    );
    assert!(
        ready.total.unwrap().keys > total,
        "keys inserted by the application were captured and tracked"
    );
    let verified = Command::new(BIN)
        .args(between(
            "verify",
            &source,
            &destination,
            &["--chunk", "100"],
        ))
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
             FROM shadowcast_status WHERE scope = 'migration'"
        ),
    );
    assert_eq!(counts, ["true"]);
    // One row per table, adding up to the whole; every table current.
    assert_eq!(
        strings(
            &destination,
            "SELECT table_name || ' ' || (keys_total = keys_current AND keys_total >= 400 \
                    AND confidence IS NULL)::text \
             FROM shadowcast_status WHERE scope = 'table' ORDER BY table_name"
        ),
        ["customers true", "order_lines true", "orders true"]
    );
    assert_eq!(
        one(
            &destination,
            "SELECT (sum(keys_total) FILTER (WHERE scope = 'table') \
                     = sum(keys_total) FILTER (WHERE scope = 'migration'))::text FROM shadowcast_status"
        ),
        "true"
    );

    // A TRUNCATE in the source: the capture reports the table, every key of
    // it is copied again (each copy deletes the row), and the migration
    // comes back to CUTOVER_READY with the table empty on both sides.
    let lines = status(&runtime, &mut clients)
        .tables
        .iter()
        .find(|t| t.table == "order_lines")
        .map(|t| t.total.unwrap().keys)
        .unwrap();
    client(&source)
        .batch_execute("TRUNCATE order_lines")
        .unwrap();
    wait_until(
        "the truncation to send order_lines back to BACKGROUND",
        Duration::from_secs(30),
        || {
            let now = status(&runtime, &mut clients);
            let table = now
                .tables
                .iter()
                .find(|t| t.table == "order_lines")
                .unwrap();
            now.phase == proto::Phase::Background as i32
                && table.current.unwrap_or_default().keys == 0
        },
    );
    assert!(
        capture.stderr().contains("table truncated in the source"),
        "{}",
        capture.stderr()
    );
    let mut executor = Process::start(&executor_args, dir.path().join("executor-3.log"));
    let finished = executor.wait(Duration::from_secs(120));
    assert!(finished.success(), "{}", executor.stderr());
    let after = status(&runtime, &mut clients);
    assert_eq!(after.phase, proto::Phase::CutoverReady as i32);
    let table = after
        .tables
        .iter()
        .find(|t| t.table == "order_lines")
        .unwrap();
    assert_eq!(
        (table.total.unwrap().keys, table.current.unwrap().keys),
        (lines, lines)
    );
    assert_eq!(
        one(&destination, "SELECT count(*)::text FROM order_lines"),
        "0"
    );
    assert_eq!(
        digest(&source, "orders", "region, id"),
        digest(&destination, "orders", "region, id"),
        "the other tables are untouched"
    );

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

    // The writes are in the access logs too: every customer the
    // application added is there as an insert, deletes as deletes.
    let logged = shadowcast::logs::activity::KeyActivity::scan(
        &shadowcast::logs::LogSource::open(&captured).unwrap(),
    )
    .unwrap();
    let mut written: std::collections::BTreeMap<&str, Vec<(String, bool)>> = Default::default();
    for (table, keys) in logged.tables() {
        for (key, activity) in keys {
            assert!(activity.writes >= 1);
            written
                .entry(table)
                .or_default()
                .push((String::from_utf8_lossy(key).into_owned(), activity.deleted));
        }
    }
    assert_eq!(
        written.keys().copied().collect::<Vec<_>>(),
        ["customers", "order_lines", "orders"]
    );
    for added in strings(
        &source,
        "SELECT id::text FROM customers WHERE name LIKE 'new %'",
    ) {
        assert!(
            written["customers"].contains(&(added.clone(), false)),
            "{added} is logged"
        );
    }
    let deleted_lines = written["order_lines"]
        .iter()
        .filter(|(_, gone)| *gone)
        .count();
    assert!(deleted_lines > 0, "deletes are logged as deletes");
}

/// `COMMAND --source S --destination D EXTRA…`: the shape of executor,
/// capture and verify.
fn between<'a>(
    command: &'a str,
    source: &'a str,
    destination: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![command, "--source", source, "--destination", destination];
    args.extend_from_slice(extra);
    args
}

/// The tables executor with `mapping`, without capture, until every key
/// is current.
fn copy_mapped(
    source: &str,
    destination: &str,
    endpoint: &str,
    mapping: &str,
) -> (bool, String, String) {
    run(&between(
        "executor",
        source,
        destination,
        &[
            "--endpoint",
            endpoint,
            "--mapping",
            mapping,
            "--without-capture",
            "--until-ready",
        ],
    ))
}

/// Runs the binary to its end; its status and stderr.
fn run(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(BIN).args(args).output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Logs naming `keys` of `table`, one read each.
fn logs_of(dir: &Path, keys: &[(&'static str, String)]) -> PathBuf {
    let events: Vec<Event> = keys
        .iter()
        .enumerate()
        .map(|(i, (table, key))| Event {
            ts_ms: 1_795_000_000_000 + i as i64,
            table,
            key: key.clone(),
            op: "read",
            size: 64,
            tenant: None,
        })
        .collect();
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    write_events(&logs.join("part-0.parquet"), &events, 10_000);
    logs
}

#[test]
fn a_destination_in_a_new_format_is_migrated_and_verified() {
    let (source, destination) = databases("reshaped");
    // A source whose sessions default to another time zone: keys and
    // checksums must not depend on it.
    let source_name = source.rsplit_once('/').unwrap().1;
    client(&admin_url())
        .batch_execute(&format!(
            "ALTER DATABASE {source_name} SET TimeZone = 'Asia/Kolkata'"
        ))
        .unwrap();
    client(&source)
        .batch_execute(
            "CREATE TABLE readings (device integer, at timestamptz, value float8, PRIMARY KEY (device, at));
             INSERT INTO readings SELECT i % 4, '2026-01-01 00:00:00+00'::timestamptz + i * interval '1 hour',
                    i * 0.1 FROM generate_series(0, 47) i;
             CREATE TABLE products (sku text PRIMARY KEY, title text, price numeric(10,2), stock integer);
             INSERT INTO products SELECT 'sku-' || i, CASE WHEN i % 9 = 0 THEN NULL ELSE 'Product ' || i END,
                    i * 0.99, i % 13 FROM generate_series(1, 300) i;
             CREATE TABLE accounts (id bigint PRIMARY KEY, full_name text NOT NULL, born date);
             INSERT INTO accounts SELECT i, 'Person ' || i, DATE '1970-01-01' + i * 37 FROM generate_series(1, 200) i;",
        )
        .unwrap();
    // The new format: a renamed column, a computed one, a dropped one, and
    // a column the destination fills itself.
    client(&destination)
        .batch_execute(
            "CREATE TABLE catalog_items (sku text PRIMARY KEY, name text, price_cents bigint NOT NULL);
             CREATE TABLE accounts (id bigint PRIMARY KEY, display_name text NOT NULL, born date,
                                    migrated_at timestamptz NOT NULL DEFAULT now());",
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mapping = dir.path().join("executor.toml");
    std::fs::write(
        &mapping,
        r#"
[tables.products]
destination = "catalog_items"
query = "SELECT sku, title AS name, (price * 100)::bigint AS price_cents FROM products"

[tables.accounts]
columns = { display_name = "full_name" }
"#,
    )
    .unwrap();
    let mut keys: Vec<(&'static str, String)> = (1..=300)
        .map(|i| ("products", format!("sku-{i}")))
        .collect();
    keys.extend((1..=200).map(|i| ("accounts", i.to_string())));
    // By the README's rule, in UTC: reading i is device i % 4 at hour i.
    keys.extend((0..48).map(|i| {
        (
            "readings",
            format!("{},2026-01-{:02} {:02}:00:00+00", i % 4, 1 + i / 24, i % 24),
        )
    }));
    let logs = logs_of(dir.path(), &keys);
    let service = Service::start(dir.path(), &logs, &["--versions", "lsn"]);
    let mapping = mapping.to_str().unwrap();
    let copy = || copy_mapped(&source, &destination, &service.endpoint, mapping);
    let (copied, _, report) = copy();
    assert!(copied, "{report}");
    assert!(
        report.contains("548 accepted, 0 stale, 0 failed"),
        "{report}"
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut clients = runtime.block_on(service.clients(None));
    let tables: Vec<(String, u64, u64)> = status(&runtime, &mut clients)
        .tables
        .iter()
        .map(|t| {
            (
                t.table.clone(),
                t.total.unwrap().keys,
                t.current.unwrap().keys,
            )
        })
        .collect();
    assert_eq!(
        tables,
        [
            ("products".into(), 300, 300),
            ("accounts".into(), 200, 200),
            ("readings".into(), 48, 48)
        ],
        "each table's keys, in the order the logs first name them"
    );
    // Every reading found by its key and copied (an hour off would have
    // found none and deleted nothing).
    assert_eq!(
        one(&destination, "SELECT count(*)::text FROM readings"),
        "48"
    );
    assert_eq!(
        one(
            &destination,
            "SELECT value::text FROM readings WHERE device = 1 AND at = '2026-01-02 01:00:00+00'"
        ),
        "2.5"
    );
    let (ok, printed, _) = run(&["status", "--endpoints", &service.endpoint]);
    assert!(ok);
    let rows: Vec<Vec<&str>> = printed
        .lines()
        .skip_while(|line| !line.starts_with("table "))
        .skip(1)
        .take(2)
        .map(|line| line.split_whitespace().take(3).collect())
        .collect();
    assert_eq!(
        rows,
        [["products", "300", "300"], ["accounts", "200", "200"]],
        "{printed}"
    );
    let (same, stdout, stderr) = run(&between(
        "verify",
        &source,
        &destination,
        &["--mapping", mapping],
    ));
    assert!(same, "{stdout}{stderr}");
    assert!(stdout.contains("table products: 300 rows"), "{stdout}");
    // Worked out by hand: sku-7 costs 7 × 0.99 = 6.93, so 693 cents; sku-9
    // has no title; person 3 was born 111 days after 1970-01-01.
    assert_eq!(
        strings(
            &destination,
            "SELECT concat_ws('|', sku, coalesce(name, 'NULL'), price_cents) FROM catalog_items \
             WHERE sku IN ('sku-7', 'sku-9') ORDER BY sku"
        ),
        ["sku-7|Product 7|693", "sku-9|NULL|891"]
    );
    assert_eq!(
        one(
            &destination,
            "SELECT concat_ws('|', display_name, born, migrated_at IS NOT NULL) FROM accounts WHERE id = 3"
        ),
        "Person 3|1970-04-22|t"
    );
    assert_eq!(
        one(
            &destination,
            "SELECT sum(price_cents)::text FROM catalog_items"
        ),
        one(
            &source,
            "SELECT (sum(price) * 100)::bigint::text FROM products"
        )
    );

    // A destination row copied after verify's snapshot (its recorded
    // version beyond any LSN the source has reached) is a difference a
    // later write explains, not a failure.
    client(&destination)
        .batch_execute(
            "UPDATE accounts SET display_name = 'Renamed later' WHERE id = 5;
             UPDATE shadowcast_row_versions SET version = 9223372036854775000
             WHERE table_name = 'accounts' AND key = '5'::bytea",
        )
        .unwrap();
    let (same, stdout, _) = run(&between(
        "verify",
        &source,
        &destination,
        &["--mapping", mapping, "--tables", "accounts"],
    ));
    assert!(same, "{stdout}");
    assert!(
        stdout.contains("different                    5 (explained: copied at 7FFFFFFF/FFFFFCD8 after the snapshot)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 keys differ, 1 of them explained"),
        "{stdout}"
    );

    // A later change in the source shows as a difference until copied again.
    client(&source)
        .batch_execute("UPDATE products SET price = 1.00 WHERE sku = 'sku-7'")
        .unwrap();
    let (same, stdout, _) = run(&between(
        "verify",
        &source,
        &destination,
        &[
            "--mapping",
            mapping,
            "--requeue",
            "--endpoint",
            &service.endpoint,
        ],
    ));
    assert!(!same);
    assert!(
        stdout.contains("different                    sku-7"),
        "{stdout}"
    );
    assert!(stdout.contains("requeued 1 keys"), "{stdout}");
    let (copied, _, report) = copy();
    assert!(copied && report.contains("1 accepted"), "{report}");
    assert_eq!(
        one(
            &destination,
            "SELECT price_cents::text FROM catalog_items WHERE sku = 'sku-7'"
        ),
        "100"
    );
}

#[test]
fn bad_tables_mappings_and_sources_are_refused_with_what_is_wrong() {
    let (source, destination) = databases("refused");
    client(&source)
        .batch_execute(
            "CREATE TABLE events (id integer, body text);
             INSERT INTO events VALUES (1, 'no key');
             CREATE TABLE people (id integer PRIMARY KEY, name text);
             INSERT INTO people VALUES (1, 'Ada');",
        )
        .unwrap();
    client(&destination)
        .batch_execute("CREATE TABLE people (id integer PRIMARY KEY, name text)")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let logs = logs_of(
        dir.path(),
        &[("people", "1".into()), ("events", "1".into())],
    );
    let service = Service::start(dir.path(), &logs, &["--versions", "lsn"]);
    let executor = |mapping: &str| {
        let path = dir.path().join("executor.toml");
        std::fs::write(&path, mapping).unwrap();
        copy_mapped(
            &source,
            &destination,
            &service.endpoint,
            path.to_str().unwrap(),
        )
    };

    let (ok, _, error) = executor("[tables.people]\ncolumns = { name = \"nickname\" }\n");
    assert!(!ok);
    assert!(
        error.contains(
            "destination column name takes source column nickname, which table people does not have"
        ),
        "{error}"
    );
    let (ok, _, error) = executor("[tables.people]\ncolumns = { surname = \"name\" }\n");
    assert!(!ok);
    assert!(
        error.contains("destination table people has no column surname"),
        "{error}"
    );
    let (ok, _, error) = executor("[tables.events]\n");
    assert!(!ok);
    assert!(
        error.contains("source table events has no primary key"),
        "{error}"
    );
    assert_eq!(
        one(&destination, "SELECT count(*)::text FROM people"),
        "0",
        "nothing copied"
    );

    // Without a mapping, the table without a key fails its own keys only
    // (again and again: they stay in line until someone adds a key).
    let mut copying = Process::start(
        &between(
            "executor",
            &source,
            &destination,
            &[
                "--endpoint",
                &service.endpoint,
                "--layout",
                "tables",
                "--without-capture",
                "--max-keys",
                "1",
            ],
        ),
        dir.path().join("executor.log"),
    );
    wait_until(
        "the keyless table's failure",
        Duration::from_secs(60),
        || {
            copying
                .stderr()
                .contains("source table events has no primary key")
                && one(&destination, "SELECT count(*)::text FROM people") == "1"
        },
    );
    copying.kill();
    assert_eq!(one(&destination, "SELECT name FROM people"), "Ada");
    assert_eq!(
        one(
            &destination,
            "SELECT count(*)::text FROM pg_tables WHERE tablename = 'events'"
        ),
        "0"
    );

    // A service that counts versions as times is refused before anything
    // is copied: LSNs would be stale against it for good.
    let times_dir = dir.path().join("times");
    std::fs::create_dir_all(&times_dir).unwrap();
    let times = Service::start(&times_dir, &logs, &[]);
    let (ok, _, error) = run(&between(
        "executor",
        &source,
        &destination,
        &[
            "--endpoint",
            &times.endpoint,
            "--layout",
            "tables",
            "--without-capture",
        ],
    ));
    assert!(!ok);
    assert!(
        error.contains("counts versions as `time`, but this copies at `lsn` versions: serve it with --versions lsn"),
        "{error}"
    );
    drop(times);

    // An executor refuses to copy before the capture's slot exists.
    let (ok, _, error) = run(&between(
        "executor",
        &source,
        &destination,
        &[
            "--endpoint",
            &service.endpoint,
            "--layout",
            "tables",
            "--slot",
            "no_such_slot",
        ],
    ));
    assert!(!ok);
    assert!(
        error.contains("there is no replication slot no_such_slot"),
        "{error}"
    );

    // A slot someone else made is not taken over.
    let foreign = format!("foreign_{}", std::process::id());
    client(&source)
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'test_decoding')",
            &[&foreign],
        )
        .unwrap();
    let capture = |source: &str, slot: &str, tables: &str| {
        run(&between(
            "capture",
            source,
            &destination,
            &[
                "--endpoint",
                &service.endpoint,
                "--slot",
                slot,
                "--tables",
                tables,
                "--retry-for",
                "1s",
            ],
        ))
    };
    let (ok, _, error) = capture(&source, &foreign, "people");
    assert!(!ok);
    assert!(
        error.contains(&format!(
            "a replication slot named {foreign} (plugin test_decoding) already exists"
        )),
        "{error}"
    );
    assert!(slot_exists(&source, &foreign), "left alone");
    client(&source)
        .execute("SELECT pg_drop_replication_slot($1)", &[&foreign])
        .unwrap();

    let (ok, _, error) = capture(&source, "never_made", "events");
    assert!(!ok);
    assert!(error.contains("table events has no primary key"), "{error}");
    assert!(!slot_exists(&source, "never_made"));

    let without_logical = std::env::var("SHADOWCAST_TEST_POSTGRES_WITHOUT_LOGICAL").expect(
        "SHADOWCAST_TEST_POSTGRES_WITHOUT_LOGICAL is not set: run the tests with `bash scripts/test.sh`",
    );
    let (ok, _, error) = capture(&without_logical, "never_made", "people");
    assert!(!ok);
    assert!(
        error.contains("wal_level is replica; capturing writes needs logical"),
        "{error}"
    );
}
