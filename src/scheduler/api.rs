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

/// A lease as the scheduler hands it out: its keys side by side (table
/// ids, key bytes one after another), so taking one costs no allocation
/// per key; whoever answers turns it into messages ([`iter`](Self::iter))
/// or a [`Lease`] ([`into_lease`](Self::into_lease)).
#[derive(Clone, Debug, Default)]
pub struct LeasedBatch {
    pub id: u64,
    pub expires_us: i64,
    /// Names of the tables `table_of` points into.
    pub tables: Vec<String>,
    pub(super) table_of: Vec<u32>,
    pub(super) key_ends: Vec<usize>,
    /// Every key's bytes, one after another (a caller may take them).
    pub key_bytes: Vec<u8>,
    pub(super) size_bytes: Vec<u64>,
    pub(super) priority: Vec<u32>,
    pub(super) destination: Vec<u32>,
    pub(super) min_version: Vec<u64>,
}

/// One key of a [`LeasedBatch`].
#[derive(Clone, Debug, PartialEq)]
pub struct LeasedKeyRef<'a> {
    pub table: &'a str,
    /// Where the key's bytes are in [`LeasedBatch::key_bytes`].
    pub key_range: std::ops::Range<usize>,
    pub size_bytes: u64,
    pub priority: u32,
    pub destination: u32,
    pub min_version: u64,
}

impl LeasedBatch {
    /// A lease with no keys yet; [`push`](Self::push) adds them.
    pub fn new(id: u64, expires_us: i64, tables: Vec<String>) -> Self {
        LeasedBatch {
            id,
            expires_us,
            tables,
            ..Default::default()
        }
    }

    pub fn len(&self) -> usize {
        self.table_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table_of.is_empty()
    }

    /// Adds a key; `table` indexes [`tables`](Self::tables).
    pub fn push(
        &mut self,
        table: u32,
        key: &[u8],
        size_bytes: u64,
        priority: u32,
        destination: u32,
        min_version: u64,
    ) {
        self.table_of.push(table);
        self.key_bytes.extend_from_slice(key);
        self.key_ends.push(self.key_bytes.len());
        self.size_bytes.push(size_bytes);
        self.priority.push(priority);
        self.destination.push(destination);
        self.min_version.push(min_version);
    }

    /// The version each key was leased at, in order.
    pub fn min_versions(&self) -> &[u64] {
        &self.min_version
    }

    pub fn iter(&self) -> impl Iterator<Item = LeasedKeyRef<'_>> {
        (0..self.len()).map(|index| {
            let start = if index == 0 {
                0
            } else {
                self.key_ends[index - 1]
            };
            let key_range = start..self.key_ends[index];
            LeasedKeyRef {
                table: &self.tables[self.table_of[index] as usize],
                key_range,
                size_bytes: self.size_bytes[index],
                priority: self.priority[index],
                destination: self.destination[index],
                min_version: self.min_version[index],
            }
        })
    }

    pub fn into_lease(self) -> Lease {
        Lease {
            id: self.id,
            expires_us: self.expires_us,
            keys: self
                .iter()
                .map(|key| LeasedKey {
                    table: key.table.to_string(),
                    key: self.key_bytes[key.key_range].to_vec(),
                    size_bytes: key.size_bytes,
                    priority: key.priority,
                    destination: key.destination,
                    min_version: key.min_version,
                })
                .collect(),
        }
    }
}

/// Why a lease request got no keys.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Idle {
    Paused,
    /// The bandwidth budget is spent; some returns after this long.
    OverBudget {
        retry_after_us: i64,
    },
    /// Nothing eligible now; a "not before" time or a failed copy's retry
    /// delay frees keys at this time.
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
    /// Shared by the keys of one table that came together (no copy per
    /// key).
    pub table: std::sync::Arc<str>,
    /// Shared with the request it came in (no copy per key).
    pub key: prost::bytes::Bytes,
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
