use std::process::ExitCode;

use clap::Parser;
use shadowcast::cli::{Cli, run};
use shadowcast::logs::reader::worker_count;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    shadowcast::allocator::give_back_freed_memory_at_once();
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
