//! Waiting for the next message on a thread that serves others (the
//! scheduler's owner, the state writer): a short while awake before going
//! to sleep.
//!
//! Between a reply and the next request such a thread is idle for tens of
//! microseconds. Asleep, it needs a wake-up to go on: a futex call from
//! the sender, a pass through the kernel's scheduler and, where its CPU
//! went idle in a virtual machine, through the hypervisor, on every
//! message. Checking the queue for a while first, and yielding the CPU
//! between checks so that the threads it waits for run, keeps it awake
//! across those gaps (8 executors acknowledging in the compact form got
//! about 16% more keys through, BENCHMARKS.md); a thread with nothing to
//! do still sleeps after [`AWAKE_FOR`].

use std::sync::mpsc::{Receiver, RecvError, TryRecvError};
use std::time::{Duration, Instant};

/// How long a thread stays awake for its next message.
pub const AWAKE_FOR: Duration = Duration::from_micros(50);

/// The next message of `queue`: [`Receiver::recv`], after [`AWAKE_FOR`]
/// of checking.
pub fn receive<T>(queue: &Receiver<T>) -> Result<T, RecvError> {
    let started = Instant::now();
    loop {
        match queue.try_recv() {
            Ok(message) => return Ok(message),
            Err(TryRecvError::Disconnected) => return Err(RecvError),
            Err(TryRecvError::Empty) if started.elapsed() < AWAKE_FOR => {
                std::thread::yield_now();
            }
            Err(TryRecvError::Empty) => return queue.recv(),
        }
    }
}
