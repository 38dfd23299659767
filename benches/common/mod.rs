//! Shared by the benchmarks: synthetic candidate keys, and executors that
//! drive a service ([`executors`]). Each benchmark uses some of them.
#![allow(dead_code)]

pub mod executors;

use rand::{Rng, SeedableRng};
use shadowcast::policy::Candidates;
use shadowcast_policy::abi::{FEATURE_NAMES, NO_TENANT};

/// `keys` keys over four tables, `key:NNNNNNNNNN`, with random sizes
/// (16 B to 4 KiB) and scores; deterministic.
pub fn candidates(keys: usize) -> Candidates {
    candidates_where(keys, |_, _| true)
}

/// Those of the `keys` keys of [`candidates`] for which `keep(table, key)`
/// holds, with the same sizes and scores.
pub fn candidates_where(keys: usize, keep: impl Fn(&str, &[u8]) -> bool) -> Candidates {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(11);
    let mut candidates = Candidates {
        now_us: 0,
        key_offsets: Vec::with_capacity(keys + 1),
        ..Candidates::default()
    };
    candidates.key_offsets.push(0);
    let names = ["users", "orders", "sessions", "carts"];
    let tables = names.map(|t| candidates.tables.intern(t));
    let mut key = String::new();
    for i in 0..keys {
        let (size, hot, churn, expected) = (
            rng.random_range(16..4096),
            rng.random(),
            rng.random(),
            rng.random::<f64>() * 100.0,
        );
        key.clear();
        std::fmt::Write::write_fmt(&mut key, format_args!("key:{i:010}")).expect("to a string");
        if !keep(names[i % 4], key.as_bytes()) {
            continue;
        }
        candidates.table_ids.push(tables[i % 4]);
        candidates.tenant_ids.push(NO_TENANT);
        candidates.key_bytes.extend_from_slice(key.as_bytes());
        candidates.key_offsets.push(candidates.key_bytes.len());
        candidates.size_bytes.push(size);
        candidates.hot.push(hot);
        candidates.churn.push(churn);
        candidates.expected_accesses.push(expected);
    }
    candidates.features = FEATURE_NAMES.iter().map(|_| Vec::new()).collect();
    candidates
}

/// Serves `config` in this process: the address it listens on, and the
/// signal that stops it.
pub async fn serve_in_process(
    config: shadowcast::config::ServeConfig,
) -> (std::net::SocketAddr, Stop) {
    let (address_tx, address_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(async move {
        shadowcast::service::serve(
            config,
            move |address| {
                let _ = address_tx.send(address);
            },
            async move {
                let _ = stop_rx.await;
            },
        )
        .await
        .expect("serve");
    });
    (
        address_rx.await.expect("listening"),
        Stop {
            signal: stop_tx,
            served,
        },
    )
}

/// Stops a service [`serve_in_process`] started.
pub struct Stop {
    signal: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<()>,
}

impl Stop {
    /// Asks the service to stop and waits until it has (its state written
    /// and its files closed).
    pub async fn stop(self) {
        let _ = self.signal.send(());
        self.served.await.expect("the service ended cleanly");
    }
}
