//! Every program built on this crate allocates with mimalloc.
//!
//! The service passes a lease's thousand keys from the scheduler's owner
//! thread to tokio's workers, which free them, and tonic allocates and
//! frees every message's buffers: with glibc's allocator, threads queued
//! on its heap locks (a tenth of the tokio workers' switches away from the
//! CPU), and a bare tonic server answering the service's messages went
//! from 4.6–4.9M to 6.5–7.5M keys/s with mimalloc (BENCHMARKS.md,
//! "Service: lease + acknowledge over loopback"). Scoring 10M keys for a
//! re-plan took half the time.

use std::os::raw::{c_int, c_long};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_t` (mimalloc.h);
/// the binding names no constant for it.
const PURGE_DELAY: c_int = 15;

/// Has memory freed in whole pages go back to the system at once, rather
/// than a second later and only once the thread that freed it allocates
/// again (mimalloc's default): a plan's temporaries, freed by planning
/// threads that then sit idle, otherwise stayed resident, 166 bytes per
/// key at 10M keys instead of 65 (`cargo bench --bench scheduler_scale`).
/// Called first thing by each program that holds millions of keys.
pub fn give_back_freed_memory_at_once() {
    // SAFETY: sets one of mimalloc's options; any thread may, at any time.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 0 as c_long) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // SAFETY: reads and sets mimalloc's options.
        unsafe {
            assert_eq!(
                libmimalloc_sys::mi_option_get(PURGE_DELAY),
                1_000,
                "mimalloc 3 documents a purge delay of 1000 ms by default"
            );
            give_back_freed_memory_at_once();
            assert_eq!(libmimalloc_sys::mi_option_get(PURGE_DELAY), 0);
        }
    }
}
