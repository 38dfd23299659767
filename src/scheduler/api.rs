//! What callers exchange with the scheduler: lease requests and the leases
//! they get, acknowledgements and their outcomes, writes and what they did.

/// What an executor asks for.
#[derive(Clone, Debug, Default)]
pub struct LeaseRequest {
    pub max_keys: usize,
    pub max_bytes: u64,
    /// Only keys of these tables; all tables when empty.
    pub tables: Vec<String>,
}

/// One key handed out.
#[derive(Clone, Debug, PartialEq)]
pub struct LeasedKey {
    pub table: String,
    pub key: Vec<u8>,
    pub size_bytes: u64,
    pub priority: u32,
    /// The policy's preferred destination partition or tier (0: none).
    pub destination: u32,
    /// The copy must be at least this version to count.
    pub min_version: u64,
}

/// A batch of keys leased to one executor until `expires_us`.
#[derive(Clone, Debug, PartialEq)]
pub struct Lease {
    pub id: u64,
    pub expires_us: i64,
    pub keys: Vec<LeasedKey>,
}

/// Why a lease request got no keys.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Idle {
    Paused,
    /// The bandwidth budget is spent; some returns after this long.
    OverBudget {
        retry_after_us: i64,
    },
    /// Nothing eligible now; a "not before" time frees keys at this time.
    NothingDue {
        next_due_us: Option<i64>,
    },
    Done,
}

/// What an executor reports for one key.
#[derive(Clone, Debug, PartialEq)]
pub enum AckResult {
    Copied { version: u64 },
    Failed { reason: String },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Ack {
    pub table: String,
    pub key: Vec<u8>,
    pub result: AckResult,
}

/// The scheduler's answer for one acknowledged key.
#[derive(Clone, Debug, PartialEq)]
pub enum AckOutcome {
    /// The copy counts: the key is current in the destination.
    Accepted,
    /// The destination already held this version or a newer one.
    AlreadyCurrent,
    /// The copy is older than the latest write seen; the key stays stale
    /// and will be offered again.
    Stale {
        copied: u64,
        latest_write: u64,
    },
    /// The failure is recorded; the key is back in line.
    Requeued,
    /// A failure for a key this lease does not hold (ignored).
    NotLeased,
    UnknownKey,
}

/// A write to a key, from the logs, an executor or the shadowing module.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteEvent {
    pub table: String,
    pub key: Vec<u8>,
    pub version: u64,
    /// The row's size after the write, when known.
    pub size_bytes: Option<u64>,
}

/// What [`Scheduler::record_writes`](super::Scheduler::record_writes) did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WriteReport {
    pub new_keys: usize,
    /// Keys that were current in the destination and are now stale.
    pub made_stale: usize,
}

/// One acknowledge call: per-key acknowledgements, and optionally the
/// compact form for the rest of the lease.
#[derive(Clone, Copy, Debug)]
pub struct AckCall<'a> {
    pub lease: u64,
    pub acks: &'a [Ack],
    /// Every key of the (live) lease not named in `acks` was copied at the
    /// version it was leased at.
    pub others_copied_at_leased_version: bool,
}

/// What one [`AckCall`] got.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AckCallOutcome {
    /// One per entry of `acks`, in order.
    pub acks: Vec<AckOutcome>,
    /// For the compact form: how many of the lease's other keys were
    /// accepted, and the others' outcomes by position in the lease.
    pub others_accepted: u64,
    pub others_not_accepted: Vec<(u32, AckOutcome)>,
}
