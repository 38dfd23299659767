//! Shared by the benchmarks: synthetic candidate keys.

use rand::{Rng, SeedableRng};
use shadowcast::policy::Candidates;
use shadowcast_policy::abi::{FEATURE_NAMES, NO_TENANT};

/// `keys` keys over four tables, `key:NNNNNNNNNN`, with random sizes
/// (16 B to 4 KiB) and scores; deterministic.
pub fn candidates(keys: usize) -> Candidates {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(11);
    let mut candidates = Candidates {
        now_us: 0,
        key_offsets: Vec::with_capacity(keys + 1),
        ..Candidates::default()
    };
    candidates.key_offsets.push(0);
    let tables = ["users", "orders", "sessions", "carts"].map(|t| candidates.tables.intern(t));
    for i in 0..keys {
        candidates.table_ids.push(tables[i % 4]);
        candidates.tenant_ids.push(NO_TENANT);
        candidates
            .key_bytes
            .extend_from_slice(format!("key:{i:010}").as_bytes());
        candidates.key_offsets.push(candidates.key_bytes.len());
        candidates.size_bytes.push(rng.random_range(16..4096));
        candidates.hot.push(rng.random());
        candidates.churn.push(rng.random());
        candidates
            .expected_accesses
            .push(rng.random::<f64>() * 100.0);
    }
    candidates.features = FEATURE_NAMES.iter().map(|_| Vec::new()).collect();
    candidates
}
