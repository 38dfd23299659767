//! The policy host with real WebAssembly modules: the WAT example, and
//! hostile modules (endless loops, traps, memory hogs, bad outputs, wrong
//! interfaces) that must each be stopped with an error naming the policy
//! and the cause while the policy before them keeps serving.

mod common;

use std::time::Duration;

use common::{example_wat, policy_wat, weights_body};
use shadowcast::policy::registry::BUILTIN;
use shadowcast::policy::{Candidates, PolicyError, PolicyHost, PolicyLimits, PolicyRegistry};

fn registry() -> PolicyRegistry {
    let limits = PolicyLimits {
        call_timeout: Duration::from_millis(200),
        memory_bytes: 8 << 20,
        batch_keys: 100,
    };
    PolicyRegistry::new(PolicyHost::new(limits).unwrap())
}

/// 256 canary-like keys (so batches split in three at 100 keys per call).
fn candidates() -> Candidates {
    let mut candidates = Candidates::canary(1_800_000_000_000_000);
    while candidates.len() < 250 {
        let more = Candidates::canary(candidates.now_us);
        let base = candidates.key_bytes.len();
        candidates.table_ids.extend(&more.table_ids);
        candidates.tenant_ids.extend(&more.tenant_ids);
        candidates.key_bytes.extend(&more.key_bytes);
        candidates
            .key_offsets
            .extend(more.key_offsets[1..].iter().map(|o| o + base));
        candidates.size_bytes.extend(&more.size_bytes);
        candidates.hot.extend(&more.hot);
        candidates.churn.extend(&more.churn);
        candidates.expected_accesses.extend(&more.expected_accesses);
        for (column, extra) in candidates.features.iter_mut().zip(&more.features) {
            column.extend(extra);
        }
    }
    candidates
}

fn constant(weight: f64) -> String {
    policy_wat(0, &weights_body(&format!("(f64.const {weight})")), "", 1)
}

#[test]
fn the_wat_example_weights_by_size() {
    let registry = registry();
    let wat = std::fs::read(example_wat()).unwrap();
    let info = registry.load("small-rows", &wat, b"").unwrap();
    assert!(info.active);
    assert_eq!(info.sha256.len(), 64);
    let candidates = candidates();
    let decided = registry.decide(&candidates);
    assert_eq!(decided.policy, "small-rows");
    assert!(decided.failures.is_empty());
    for (i, size) in candidates.size_bytes.iter().enumerate() {
        let expected = 1.0 / (1.0 + *size as f64 / 4096.0);
        assert_eq!(decided.decisions.weight[i], expected, "key {i}");
        assert_eq!(decided.decisions.priority[i], 1);
    }
}

/// Loads a good policy (weight 2), then `hostile`; returns the error.
fn hostile_is_contained(hostile: &str, config: &[u8]) -> PolicyError {
    let registry = registry();
    registry
        .load("steady", constant(2.0).as_bytes(), b"")
        .unwrap();
    let error = registry
        .load("hostile", hostile.as_bytes(), config)
        .expect_err("the hostile module must be refused");
    assert!(error.to_string().contains("policy hostile"), "{error}");
    assert_eq!(registry.active(), "steady");
    let decided = registry.decide(&candidates());
    assert_eq!(decided.policy, "steady");
    assert!(decided.decisions.weight.iter().all(|w| *w == 2.0));
    error
}

#[test]
fn an_endless_loop_is_stopped_by_the_time_limit() {
    let body = "(loop $forever (br $forever)) i32.const 0";
    let error = hostile_is_contained(&policy_wat(0, body, "", 1), b"");
    assert!(matches!(error, PolicyError::Timeout { .. }), "{error}");
    assert!(error.to_string().contains("time limit"), "{error}");
}

#[test]
fn a_trap_is_reported_with_its_cause() {
    let error = hostile_is_contained(&policy_wat(0, "unreachable", "", 1), b"");
    assert!(matches!(error, PolicyError::Trap { .. }), "{error}");
    assert!(error.to_string().contains("unreachable"), "{error}");
}

#[test]
fn exhausting_memory_hits_the_memory_limit() {
    let body = "(drop (memory.grow (i32.const 1000))) unreachable";
    let error = hostile_is_contained(&policy_wat(0, body, "", 1), b"");
    assert!(matches!(error, PolicyError::MemoryLimit { .. }), "{error}");
    assert!(error.to_string().contains("8388608 bytes"), "{error}");
}

#[test]
fn nan_negative_and_unset_weights_are_refused() {
    for (expr, shown) in [("(f64.const nan)", "NaN"), ("(f64.const -1)", "-1")] {
        let error = hostile_is_contained(&policy_wat(0, &weights_body(expr), "", 1), b"");
        assert!(matches!(error, PolicyError::BadOutput { .. }), "{error}");
        let message = error.to_string();
        assert!(
            message.contains(&format!("bad weight {shown}")),
            "{message}"
        );
        assert!(
            message.contains("users/users:0000"),
            "names the key: {message}"
        );
    }
    let error = hostile_is_contained(&policy_wat(0, "local.get $count", "", 1), b"");
    assert!(error.to_string().contains("bad weight NaN"), "{error}");
}

#[test]
fn a_wrong_number_of_outputs_is_refused() {
    let body = format!(
        "{} i32.const 1 i32.sub",
        weights_body("(f64.const 1)").trim_end()
    );
    let error = hostile_is_contained(&policy_wat(0, &body, "", 1), b"");
    assert!(
        error
            .to_string()
            .contains("decided 63 keys of a batch of 64"),
        "{error}"
    );
}

#[test]
fn interface_mismatches_are_refused_at_load() {
    let error = hostile_is_contained(&policy_wat(0, "local.get $count", "", 2), b"");
    assert!(
        error
            .to_string()
            .contains("ABI version 2; this shadowcast speaks version 1"),
        "{error}"
    );
    let no_decide = constant(1.0).replace("\"shadowcast_decide\"", "\"decide\"");
    let error = hostile_is_contained(&no_decide, b"");
    assert!(
        error
            .to_string()
            .contains("missing export `shadowcast_decide`"),
        "{error}"
    );
    let wasi = constant(1.0).replacen(
        "(module",
        r#"(module (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))"#,
        1,
    );
    let error = hostile_is_contained(&wasi, b"");
    assert!(
        error
            .to_string()
            .contains("wasi_snapshot_preview1::proc_exit"),
        "{error}"
    );
    let error = hostile_is_contained("(module (garbage", b"");
    assert!(matches!(error, PolicyError::Compile { .. }), "{error}");
    let error = hostile_is_contained(&constant(1.0), b"tenant = 7");
    assert!(
        error.to_string().contains("takes no configuration"),
        "{error}"
    );
}

#[test]
fn a_policy_failing_while_serving_is_unloaded_and_the_batch_decided_again() {
    let registry = registry();
    registry
        .load("steady", constant(2.0).as_bytes(), b"")
        .unwrap();
    // Passes the 64-key canary, traps on a full 100-key call.
    let body = format!(
        "(if (i32.gt_u (local.get $count) (i32.const 64)) (then unreachable)) {}",
        weights_body("(f64.const 5)")
    );
    registry
        .load("fragile", policy_wat(0, &body, "", 1).as_bytes(), b"")
        .unwrap();
    assert_eq!(registry.active(), "fragile");
    let decided = registry.decide(&candidates());
    assert_eq!(decided.policy, "steady");
    assert_eq!(decided.decisions.len(), 256);
    assert!(decided.decisions.weight.iter().all(|w| *w == 2.0));
    assert_eq!(decided.failures.len(), 1);
    assert!(
        decided.failures[0]
            .to_string()
            .contains("policy fragile: trapped"),
        "{}",
        decided.failures[0]
    );
    let names: Vec<String> = registry.list().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["steady"]);
    registry.unload("steady").unwrap();
    assert_eq!(registry.decide(&candidates()).policy, BUILTIN);
    assert!(matches!(
        registry.unload("steady"),
        Err(PolicyError::NotLoaded(_))
    ));
}

#[test]
fn swapping_while_deciding_never_mixes_policies() {
    let registry = registry();
    registry.load("a", constant(2.0).as_bytes(), b"").unwrap();
    let candidates = candidates();
    std::thread::scope(|scope| {
        let deciders: Vec<_> = (0..3)
            .map(|_| {
                scope.spawn(|| {
                    for _ in 0..40 {
                        let decided = registry.decide(&candidates);
                        let expected = match decided.policy.as_str() {
                            "a" => 2.0,
                            "b" => 3.0,
                            other => panic!("unexpected policy {other}"),
                        };
                        assert!(decided.decisions.weight.iter().all(|w| *w == expected));
                    }
                })
            })
            .collect();
        for round in 0..10 {
            let (name, weight) = if round % 2 == 0 {
                ("b", 3.0)
            } else {
                ("a", 2.0)
            };
            registry
                .load(name, constant(weight).as_bytes(), b"")
                .unwrap();
        }
        for decider in deciders {
            decider.join().unwrap();
        }
    });
    let listed = registry.list();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed.iter().filter(|p| p.active).count(), 1);
}

#[test]
fn keys_reach_the_policy_rebased_per_call() {
    let registry = registry();
    // weight = 1000 x the key's offset within its call + its first byte,
    // read through the key offsets and bytes (column bit 6).
    let offset = "(i32.load (i32.add (i32.load offset=88 (local.get $batch)) (i32.shl (local.get $i) (i32.const 2))))";
    let first_byte =
        format!("(i32.load8_u (i32.add (i32.load offset=92 (local.get $batch)) {offset}))");
    let weight =
        format!("(f64.convert_i32_u (i32.add (i32.mul {offset} (i32.const 1000)) {first_byte}))");
    registry
        .load(
            "keys",
            policy_wat(1 << 6, &weights_body(&weight), "", 1).as_bytes(),
            b"",
        )
        .unwrap();
    let candidates = candidates();
    let decided = registry.decide(&candidates);
    assert!(decided.failures.is_empty(), "{:?}", decided.failures);
    for i in 0..candidates.len() {
        let call_start = candidates.key_offsets[i / 100 * 100];
        let expected =
            (candidates.key_offsets[i] - call_start) * 1000 + candidates.key(i)[0] as usize;
        assert_eq!(decided.decisions.weight[i], expected as f64, "key {i}");
    }
}
