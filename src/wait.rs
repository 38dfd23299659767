//! Waiting for the next message on a thread that serves others (the
//! scheduler's owner, the state writer): a short while awake before going
//! to sleep.
//!
//! Between a reply and the next request such a thread is idle for tens of
//! microseconds. Asleep, it needs a wake-up to go on, and in a virtual
//! machine waking an idle CPU is a round trip through the hypervisor that
//! costs about as long again, on every message. Checking the queue for a
//! while first, and yielding the CPU between checks so that the threads it
//! waits for run, keeps it awake across those gaps; a thread with nothing
//! to do still sleeps after [`AWAKE_FOR`].

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
