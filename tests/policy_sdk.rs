//! The SDK's example policies, built from source to wasm32 by the test,
//! run through the host and the `policy` commands.

mod common;

use common::{
    DAY_2026_11_20_MS, Event, example_policies, example_wat, path_str, policy_wat, shadowcast_err,
    shadowcast_ok, stdout, weights_body, write_events,
};
use shadowcast::policy::{Candidates, PolicyError, PolicyHost, PolicyLimits, PolicyRegistry};
use shadowcast_policy::priority;

fn module(name: &str) -> Vec<u8> {
    std::fs::read(example_policies().join(format!("{name}.wasm"))).unwrap()
}

fn registry() -> PolicyRegistry {
    PolicyRegistry::new(PolicyHost::new(PolicyLimits::default()).unwrap())
}

/// 2026-11-23 at `hour`:00 UTC, in µs.
fn at_hour(hour: i64) -> i64 {
    1_763_856_000_000_000 + hour * 3_600_000_000
}

#[test]
fn favour_small_rows_scales_by_size() {
    let registry = registry();
    registry
        .load(
            "small",
            &module("favour_small_rows"),
            b"half_weight_bytes = 1024",
        )
        .unwrap();
    let candidates = Candidates::canary(at_hour(12));
    let decided = registry.decide(&candidates);
    assert_eq!(decided.policy, "small");
    for (i, size) in candidates.size_bytes.iter().enumerate() {
        let expected = 1.0 / (1.0 + *size as f64 / 1024.0);
        assert!(
            (decided.decisions.weight[i] - expected).abs() < 1e-12,
            "key {i}"
        );
    }
    let error = registry
        .load(
            "small-bad",
            &module("favour_small_rows"),
            b"half_weight_bytes = -3",
        )
        .unwrap_err();
    assert!(matches!(error, PolicyError::Config { .. }), "{error}");
    assert!(
        error.to_string().contains("half_weight_bytes must be > 0"),
        "{error}"
    );
}

#[test]
fn business_hours_freeze_holds_tables_until_closing() {
    let registry = registry();
    registry
        .load(
            "freeze",
            &module("business_hours_freeze"),
            b"tables = orders\nstart_hour = 9\nend_hour = 17",
        )
        .unwrap();
    let during = Candidates::canary(at_hour(10));
    let decided = registry.decide(&during);
    for i in 0..during.len() {
        let table = during.tables.name(during.table_ids[i]);
        let expected = if table == "orders" { at_hour(17) } else { 0 };
        assert_eq!(
            decided.decisions.not_before_us[i], expected,
            "{table} key {i}"
        );
        assert_eq!(decided.decisions.weight[i], 1.0);
    }
    let after = registry.decide(&Candidates::canary(at_hour(20)));
    assert!(after.decisions.not_before_us.iter().all(|t| *t == 0));
    let error = registry
        .load(
            "freeze-bad",
            &module("business_hours_freeze"),
            b"start_hour = 9",
        )
        .unwrap_err();
    assert!(error.to_string().contains("needs `tables"), "{error}");
}

#[test]
fn tenant_priority_follows_its_configuration() {
    let registry = registry();
    registry
        .load(
            "tenants",
            &module("tenant_priority"),
            b"tenant.tenant-1 = first\nweight.tenant-1 = 2\ntenant.tenant-2 = exclude",
        )
        .unwrap();
    let candidates = Candidates::canary(at_hour(12));
    let decided = registry.decide(&candidates);
    for i in 0..candidates.len() {
        let (weight, class) = match candidates.tenant(i) {
            Some("tenant-1") => (2.0, priority::FIRST),
            Some("tenant-2") => (0.0, priority::NORMAL),
            _ => (1.0, priority::NORMAL),
        };
        assert_eq!(decided.decisions.weight[i], weight, "key {i}");
        assert_eq!(decided.decisions.priority[i], class, "key {i}");
    }
    let error = registry
        .load(
            "tenants-bad",
            &module("tenant_priority"),
            b"tenant.t9 = sometimes",
        )
        .unwrap_err();
    assert!(
        error.to_string().contains("unknown priority `sometimes`"),
        "{error}"
    );
}

#[test]
fn churn_last_moves_churning_keys_last() {
    let registry = registry();
    registry
        .load("churn", &module("churn_last"), b"threshold = 0.7")
        .unwrap();
    let candidates = Candidates::canary(at_hour(12));
    let decided = registry.decide(&candidates);
    for (i, churn) in candidates.churn.iter().enumerate() {
        let (weight, class) = if *churn >= 0.7 {
            (0.5, priority::LAST)
        } else {
            (1.0, priority::NORMAL)
        };
        assert_eq!(decided.decisions.weight[i], weight, "key {i}");
        assert_eq!(decided.decisions.priority[i], class, "key {i}");
    }
}

#[test]
fn policy_check_and_test_through_the_binary() {
    let wasm = example_policies().join("churn_last.wasm");
    let checked = stdout(&shadowcast_ok(&["policy", "check", path_str(&wasm)]));
    assert!(checked.contains("valid"), "{checked}");
    let checked = stdout(&shadowcast_ok(&[
        "policy",
        "check",
        path_str(&example_wat()),
    ]));
    assert!(checked.contains("favour-small-rows"), "{checked}");

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("churn.conf");
    std::fs::write(&config, "threshold = 0.2\nweight = 0\n").unwrap();
    let features = root.join("notebooks-data/sample-features.parquet");
    let model = root.join("models/default");
    let report = stdout(&shadowcast_ok(&[
        "policy",
        "test",
        path_str(&wasm),
        "--config",
        path_str(&config),
        "--features",
        path_str(&features),
        "--model",
        path_str(&model),
        "--top",
        "3",
    ]));
    for expected in [
        "top 3 by the default",
        "top 3 under churn_last",
        "weights: min 0.000",
        "priority classes:",
    ] {
        assert!(report.contains(expected), "{expected} missing:\n{report}");
    }
    let excluded: usize = report
        .lines()
        .find_map(|l| l.strip_prefix("excluded (weight 0): "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("an excluded count");
    assert!(excluded > 0, "{report}");

    let hostile = dir.path().join("spin.wat");
    std::fs::write(
        &hostile,
        policy_wat(0, "(loop $l (br $l)) i32.const 0", "", 1),
    )
    .unwrap();
    let error = shadowcast_err(&["policy", "check", path_str(&hostile), "--timeout-ms", "50"]);
    assert!(
        error.contains("policy spin") && error.contains("time limit"),
        "{error}"
    );
    let nan = dir.path().join("nan.wat");
    std::fs::write(&nan, policy_wat(0, &weights_body("(f64.const nan)"), "", 1)).unwrap();
    let error = shadowcast_err(&["policy", "check", path_str(&nan)]);
    assert!(error.contains("policy nan: bad weight NaN"), "{error}");
}

/// The tenant named in the access logs reaches a policy: features keep each
/// key's tenant, candidates carry it, and `tenant-priority` ranks by it.
#[test]
fn tenant_priority_ranks_by_the_tenants_named_in_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let start_ms = DAY_2026_11_20_MS;
    let mut events = Vec::new();
    // zeta's keys are read ten times as often as acme's; some keys name no
    // tenant at all, and one key's tenant changes hands (its latest access
    // names acme).
    for i in 0..20 {
        for (tenant, prefix, reads) in [
            (Some("acme"), "a", 2),
            (Some("zeta"), "z", 20),
            (None, "n", 40),
        ] {
            for r in 0..reads {
                events.push(Event {
                    ts_ms: start_ms + (i * 60 + r) * 60_000,
                    table: "orders",
                    key: format!("{prefix}:{i:02}"),
                    op: "read",
                    size: 100,
                    tenant,
                });
            }
        }
    }
    events.push(Event {
        ts_ms: start_ms + 30 * 3_600_000,
        table: "orders",
        key: "z:07".into(),
        op: "read",
        size: 100,
        tenant: Some("acme"),
    });
    events.sort_by_key(|e| e.ts_ms);
    write_events(&dir.path().join("logs/part-0.parquet"), &events, 1000);
    let features = dir.path().join("features.parquet");
    shadowcast_ok(&[
        "features",
        "--logs",
        path_str(&dir.path().join("logs")),
        "--as-of",
        "2026-11-21T12:00:00Z",
        "--horizon",
        "6h",
        "--out",
        path_str(&features),
    ]);
    let config = dir.path().join("tenants.conf");
    std::fs::write(&config, "tenant.acme = first\n").unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let report = stdout(&shadowcast_ok(&[
        "policy",
        "test",
        path_str(&example_policies().join("tenant_priority.wasm")),
        "--config",
        path_str(&config),
        "--features",
        path_str(&features),
        "--model",
        path_str(&root.join("models/default")),
        "--top",
        "21",
    ]));
    let under_policy: Vec<&str> = report
        .lines()
        .skip_while(|line| !line.starts_with("top 21 under tenant_priority"))
        .skip(1)
        .take(21)
        .filter_map(|line| line.split_whitespace().nth(1))
        .collect();
    // acme's 20 keys and z:07, which moved to acme, are all in class
    // FIRST: the 21 first places, whatever the model thinks of them.
    let mut expected: Vec<String> = (0..20).map(|i| format!("orders/a:{i:02}")).collect();
    expected.push("orders/z:07".into());
    let mut got: Vec<String> = under_policy.iter().map(|s| s.to_string()).collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "{report}");
}
