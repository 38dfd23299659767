//! Policy cost per key: the favour-small-rows policy run natively (the SDK
//! example's own Rust code over a slice-backed batch) beside the same code
//! built to wasm32 and run through the host's batch ABI, and beside the
//! hand-written WAT version; plus module load and swap times.
//!
//! `cargo bench --bench policy_cost` (builds the examples to wasm32 first:
//! `rustup target add wasm32-unknown-unknown`). One thread; 1M keys.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use favour_small_rows::FavourSmallRows;
use rand::{Rng, SeedableRng};
use shadowcast::policy::candidates::native_batch;
use shadowcast::policy::{Candidates, Decisions, PolicyHost, PolicyLimits, PolicyRegistry};
use shadowcast_policy::abi::FEATURE_NAMES;
use shadowcast_policy::{Config, Policy};

const KEYS: usize = 1_000_000;
const ROUNDS: usize = 7;

fn candidates() -> Candidates {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(3);
    let mut candidates = Candidates {
        now_us: 1_800_000_000_000_000,
        key_offsets: vec![0],
        ..Candidates::default()
    };
    let table = candidates.tables.intern("users");
    for i in 0..KEYS {
        candidates.table_ids.push(table);
        candidates
            .tenant_ids
            .push(shadowcast_policy::abi::NO_TENANT);
        candidates
            .key_bytes
            .extend_from_slice(format!("user:{i:08}").as_bytes());
        candidates.key_offsets.push(candidates.key_bytes.len());
        candidates.size_bytes.push(rng.random_range(0..1u64 << 20));
        candidates.hot.push(rng.random());
        candidates.churn.push(rng.random());
        candidates
            .expected_accesses
            .push(rng.random::<f64>() * 100.0);
    }
    candidates.features = vec![vec![0.0; KEYS]; FEATURE_NAMES.len()];
    candidates
}

/// Best of [`ROUNDS`] runs of `run`, in ns per key.
fn best(mut run: impl FnMut()) -> f64 {
    (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed()
        })
        .min()
        .expect("rounds")
        .as_nanos() as f64
        / KEYS as f64
}

fn millis(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let sdk_module = std::fs::read(common::example_policies().join("favour_small_rows.wasm"))
        .expect("built module");
    let wat_module = std::fs::read(common::example_wat()).expect("wat");
    let candidates = candidates();

    let mut native = FavourSmallRows::configure(&Config::default()).expect("config");
    let mut offsets = Vec::new();
    let mut out = Decisions::neutral(KEYS);
    let native_ns = best(|| {
        let batch = native_batch(&candidates, 0..KEYS, &mut offsets);
        let mut view = shadowcast_policy::Decisions {
            weight: &mut out.weight,
            priority: &mut out.priority,
            not_before_us: &mut out.not_before_us,
            destination: &mut out.destination,
        };
        native.decide(&batch, &mut view);
    });
    let native_weights = out.weight.clone();

    let host = PolicyHost::new(PolicyLimits::default()).expect("host");
    let registry = PolicyRegistry::new(host);
    let started = Instant::now();
    registry.load("sdk", &sdk_module, b"").expect("load");
    let cold_load = started.elapsed();
    let started = Instant::now();
    registry.load("sdk", &sdk_module, b"").expect("reload");
    let warm_swap = started.elapsed();
    let mut buffer = Decisions::default();
    let sdk_ns = best(|| {
        buffer = registry
            .decide_reusing(&candidates, std::mem::take(&mut buffer))
            .decisions
    });
    assert_eq!(buffer.weight, native_weights, "wasm and native agree");

    let started = Instant::now();
    registry.load("wat", &wat_module, b"").expect("load wat");
    let wat_load = started.elapsed();
    let wat_ns = best(|| {
        buffer = registry
            .decide_reusing(&candidates, std::mem::take(&mut buffer))
            .decisions
    });

    println!("favour-small-rows over {KEYS} keys, one thread, best of {ROUNDS}:");
    println!(
        "  native Rust (SDK code, no copy)   {native_ns:>6.2} ns/key  {:>7.1} M keys/s",
        1e3 / native_ns
    );
    println!(
        "  wasm, SDK build, via the host      {sdk_ns:>6.2} ns/key  {:>7.1} M keys/s  {:.2}x native",
        1e3 / sdk_ns,
        sdk_ns / native_ns
    );
    println!(
        "  wasm, hand-written WAT, via host   {wat_ns:>6.2} ns/key  {:>7.1} M keys/s  {:.2}x native",
        1e3 / wat_ns,
        wat_ns / native_ns
    );
    println!(
        "load (compile + validate + canary): SDK module {} cold; WAT {}; swap of an already compiled module {}",
        millis(cold_load),
        millis(wat_load),
        millis(warm_swap)
    );
}
