use std::process::ExitCode;

use clap::Parser;
use shadowcast::cli::{Cli, run};
use shadowcast::logs::reader::worker_count;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    map_large_allocations();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    // One thread budget for scans and for the rayon pool (generation,
    // merging, writing), so SHADOWCAST_THREADS caps the whole process.
    rayon::ThreadPoolBuilder::new()
        .num_threads(worker_count())
        .build_global()
        .expect("the global thread pool is configured once, at start-up");
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Key states, feature batches and Parquet pages come and go by the
/// gigabyte. By default glibc raises the size above which it maps an
/// allocation on its own each time such a one is freed (up to 32 MiB), and
/// carves everything below from per-thread heaps that keep what they free:
/// training on 10M keys peaked at 4.0–4.4 GiB that way, 3.2 GiB with the
/// threshold held at 1 MiB (benches/train_cost.sh), at the same speed.
fn map_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes an allocator setting, before any thread
    // other than this one exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
