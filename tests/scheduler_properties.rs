//! The scheduler against a small reference model, on random sequences of
//! plans, leases, extensions, acknowledgements (current, stale, duplicate,
//! late, failed, compact), writes, expiries, pauses, phase changes and
//! restarts. The model follows the rules the proto and the scheduler's
//! documentation state, key by key, with none of the scheduler's queues.
//! After every step:
//! - a key is in one live lease at a time, and only a key that needs a
//!   copy is leased, at the latest write seen;
//! - each acknowledgement gets the outcome the rules give;
//! - every key's location is the model's: an accepted copy is never lost,
//!   a key written after its copy is never CURRENT;
//! - the status counts agree with the model;
//! - a failed key waits its retry delay (doubling with each failure in a
//!   row) and is parked after `max_copy_failures` of them that were its
//!   own (other keys of the lease copied in the same call, or a lease of
//!   one key) if copies were accepted since its first, until a new write
//!   or a restart;
//! - in BACKGROUND, "nothing due" means no key is waiting.
//!
//! And once writes stop and the parked keys are offered again, leasing and
//! copying until nothing is due leaves every key CURRENT and the migration
//! CUTOVER_READY.

mod common;

use std::collections::HashMap;

use proptest::prelude::*;
use shadowcast::policy::{Candidates, Decisions};
use shadowcast::scheduler::{
    Ack, AckCall, AckOutcome, AckResult, Idle, LeaseRequest, Phase, Scheduler, SchedulerConfig,
    SchedulerError, WriteEvent,
};
use shadowcast::state::Location;
use shadowcast_policy::abi::{FEATURE_NAMES, NO_TENANT};

const SECOND: i64 = 1_000_000;
const T0: i64 = 1_800_000_000 * SECOND;
/// Half a second off the whole seconds the clock moves by, so that no step
/// lands exactly on an expiry.
const LEASE_US: i64 = 10 * SECOND + SECOND / 2;
const TABLES: [&str; 2] = ["orders", "users"];
/// Keys a write may create beyond the planned ones.
const UNPLANNED: usize = 3;

#[derive(Clone, Debug)]
enum Version {
    AsLeased,
    Above(u8),
    Below(u8),
    Exactly(u16),
}

#[derive(Clone, Debug)]
enum Step {
    Lease {
        max_keys: u8,
        table: Option<u8>,
    },
    Acknowledge {
        lease: u8,
        keys: u8,
        version: Version,
        fail: u8,
    },
    Compact {
        lease: u8,
        named: u8,
    },
    AcknowledgeUnknownKey {
        lease: u8,
    },
    Extend {
        lease: u8,
    },
    Write {
        key: u8,
        version: u16,
        size: Option<u16>,
    },
    Wait {
        seconds: u8,
    },
    Pause,
    Resume,
    ForcePhase {
        shadowing: bool,
    },
    Advance,
    Restart,
}

fn version() -> impl Strategy<Value = Version> {
    prop_oneof![
        3 => Just(Version::AsLeased),
        1 => (1u8..20).prop_map(Version::Above),
        1 => (1u8..20).prop_map(Version::Below),
        1 => any::<u16>().prop_map(Version::Exactly),
    ]
}

fn step(restarts: bool) -> BoxedStrategy<Step> {
    let others = prop_oneof![
        6 => (1u8..6, prop::option::weighted(0.3, 0u8..2))
            .prop_map(|(max_keys, table)| Step::Lease { max_keys, table }),
        5 => (any::<u8>(), any::<u8>(), version(), any::<u8>())
            .prop_map(|(lease, keys, version, fail)| Step::Acknowledge { lease, keys, version, fail }),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(lease, named)| Step::Compact { lease, named }),
        1 => any::<u8>().prop_map(|lease| Step::AcknowledgeUnknownKey { lease }),
        1 => any::<u8>().prop_map(|lease| Step::Extend { lease }),
        4 => (any::<u8>(), 1u16..400, prop::option::of(1u16..5000))
            .prop_map(|(key, version, size)| Step::Write { key, version, size }),
        3 => (1u8..15).prop_map(|seconds| Step::Wait { seconds }),
        1 => Just(Step::Pause),
        1 => Just(Step::Resume),
        1 => any::<bool>().prop_map(|shadowing| Step::ForcePhase { shadowing }),
        1 => Just(Step::Advance),
    ];
    if restarts {
        prop_oneof![30 => others, 1 => Just(Step::Restart)].boxed()
    } else {
        others.boxed()
    }
}

/// One key as the rules see it.
#[derive(Clone, Debug)]
struct Key {
    table: &'static str,
    key: Vec<u8>,
    latest_write: u64,
    copied: Option<u64>,
    /// The live lease holding it (0: none).
    holder: u64,
    /// Failed copies in a row and those of them that were its own,
    /// copies accepted (all keys) when the first of them came, and when it
    /// may be leased again.
    failures: u32,
    own_failures: u32,
    accepted_before: u64,
    retry_at: i64,
    parked: bool,
}

impl Key {
    fn new(table: &'static str, key: Vec<u8>, latest_write: u64) -> Key {
        Key {
            table,
            key,
            latest_write,
            copied: None,
            holder: 0,
            failures: 0,
            own_failures: 0,
            accepted_before: 0,
            retry_at: 0,
            parked: false,
        }
    }

    fn forget_failures(&mut self) {
        self.failures = 0;
        self.own_failures = 0;
        self.parked = false;
        self.retry_at = 0;
    }

    /// A failed copy under its lease at `now`, `accepted` copies accepted
    /// so far (this call's included); nothing for a key copied meanwhile.
    fn failed(&mut self, own: bool, accepted: u64, now: i64) {
        if self.location() == Location::Current {
            return;
        }
        if self.failures == 0 {
            self.accepted_before = accepted;
        }
        self.failures += 1;
        self.own_failures += u32::from(own);
        if self.own_failures >= MAX_COPY_FAILURES && accepted > self.accepted_before {
            self.parked = true;
        } else {
            self.retry_at = now + (RETRY_US << (self.failures - 1).min(6));
        }
    }

    fn location(&self) -> Location {
        match self.copied {
            None => Location::SourceOnly,
            Some(copied) if copied >= self.latest_write => Location::Current,
            Some(_) => Location::Stale,
        }
    }

    /// The outcome of a copy at `version`, applied; `accepted` counts the
    /// copies accepted.
    fn copy(&mut self, version: u64, accepted: &mut u64) -> AckOutcome {
        if version < self.latest_write {
            AckOutcome::Stale {
                copied: version,
                latest_write: self.latest_write,
            }
        } else if self.copied.is_some_and(|copied| copied >= version) {
            self.forget_failures();
            AckOutcome::AlreadyCurrent
        } else {
            self.copied = Some(version);
            self.forget_failures();
            *accepted += 1;
            AckOutcome::Accepted
        }
    }
}

#[derive(Clone, Debug)]
struct LeaseModel {
    id: u64,
    /// (key index, version leased at), in the lease's order.
    keys: Vec<(usize, u64)>,
    expires_us: i64,
    live: bool,
    /// Restarts before it was taken.
    opening: usize,
}

struct Model {
    keys: Vec<Key>,
    index: HashMap<(&'static str, Vec<u8>), usize>,
    leases: Vec<LeaseModel>,
    paused: bool,
    restarts: usize,
    /// Copies accepted, all keys.
    accepted: u64,
}

impl Model {
    fn expire(&mut self, now_us: i64) {
        for lease in &mut self.leases {
            if lease.live && lease.expires_us <= now_us {
                lease.live = false;
                for key in &mut self.keys {
                    if key.holder == lease.id {
                        key.holder = 0;
                    }
                }
            }
        }
    }

    /// A restart: leases void, failures forgotten.
    fn restart(&mut self) {
        self.restarts += 1;
        for lease in &mut self.leases {
            lease.live = false;
        }
        for key in &mut self.keys {
            key.holder = 0;
            key.forget_failures();
        }
    }

    /// Ends `lease` if it no longer holds any key.
    fn settle(&mut self, lease: usize) {
        let id = self.leases[lease].id;
        if self.keys.iter().all(|key| key.holder != id) {
            self.leases[lease].live = false;
        }
    }

    /// Whether `error` says why lease number `lease` is not live: taken
    /// before a restart, or expired or completed since.
    fn unknown_lease_is(&self, lease: usize, error: &SchedulerError) -> bool {
        let model = &self.leases[lease];
        match error {
            SchedulerError::LeaseVoidedByRestart { lease, .. } => {
                *lease == model.id && model.opening < self.restarts
            }
            SchedulerError::UnknownLease(lease) => {
                *lease == model.id && model.opening == self.restarts
            }
            _ => false,
        }
    }

    fn waiting(&self, table: Option<&str>, now: i64) -> usize {
        self.keys
            .iter()
            .filter(|key| table.is_none_or(|t| t == key.table))
            .filter(|key| key.holder == 0 && key.location() != Location::Current)
            .filter(|key| !key.parked && key.retry_at <= now)
            .count()
    }
}

/// The planned keys: `n` across both tables, benefit and size varying.
fn planned_keys(n: usize, sizes: &[u16]) -> Candidates {
    let mut candidates = Candidates {
        now_us: T0,
        key_offsets: vec![0],
        ..Candidates::default()
    };
    for i in 0..n {
        let table = candidates.tables.intern(TABLES[i % 2]);
        candidates.table_ids.push(table);
        candidates.tenant_ids.push(NO_TENANT);
        candidates
            .key_bytes
            .extend_from_slice(format!("k{i}").as_bytes());
        candidates.key_offsets.push(candidates.key_bytes.len());
        candidates
            .size_bytes
            .push(u64::from(sizes[i % sizes.len()]));
        candidates.hot.push(0.5);
        candidates.churn.push(0.1);
        candidates.expected_accesses.push((n - i) as f64);
    }
    candidates.features = vec![vec![1.0; n]; FEATURE_NAMES.len()];
    candidates
}

/// A failed key's first retry delay, and the failures that park it.
const RETRY_US: i64 = SECOND;
const MAX_COPY_FAILURES: u32 = 2;

fn config() -> SchedulerConfig {
    let mut config = SchedulerConfig {
        lease_duration_us: LEASE_US,
        copy_retry_us: RETRY_US,
        max_copy_failures: MAX_COPY_FAILURES,
        ..SchedulerConfig::default()
    };
    config.sample.fraction = 0.3;
    config
}

/// Where the scheduler lives: in memory, or in a file it can be reopened from.
struct Subject {
    scheduler: Option<Scheduler>,
    path: Option<tempfile::TempDir>,
    candidates: Candidates,
}

impl Subject {
    fn open(&self, now_us: i64) -> Scheduler {
        let mut scheduler = match &self.path {
            Some(dir) => Scheduler::open(dir.path().join("state.redb"), config(), now_us),
            None => Scheduler::in_memory(config(), now_us),
        }
        .unwrap();
        scheduler
            .plan(&self.candidates, &Decisions::neutral(self.candidates.len()))
            .unwrap();
        scheduler
    }

    fn get(&mut self) -> &mut Scheduler {
        self.scheduler.as_mut().expect("open")
    }

    fn restart(&mut self, now_us: i64) {
        drop(self.scheduler.take());
        self.scheduler = Some(self.open(now_us));
    }
}

fn run(planned: usize, sizes: &[u16], steps: &[Step], durable: bool) -> Result<(), TestCaseError> {
    let candidates = planned_keys(planned, sizes);
    let mut subject = Subject {
        scheduler: None,
        path: durable.then(|| tempfile::tempdir().unwrap()),
        candidates,
    };
    let mut now = T0;
    subject.scheduler = Some(subject.open(now));
    subject.get().force_phase(Phase::Background).unwrap();
    let mut model = Model {
        keys: Vec::new(),
        index: HashMap::new(),
        leases: Vec::new(),
        paused: false,
        restarts: 0,
        accepted: 0,
    };
    for i in 0..planned + UNPLANNED {
        let key = Key::new(TABLES[i % 2], format!("k{i}").into_bytes(), 0);
        if i < planned {
            model.index.insert((key.table, key.key.clone()), i);
            model.keys.push(key);
        }
    }
    let universe = planned + UNPLANNED;

    for (n, step) in steps.iter().enumerate() {
        model.expire(now);
        let pick_lease = |lease: u8, model: &Model| {
            (!model.leases.is_empty()).then(|| lease as usize % model.leases.len())
        };
        match step {
            Step::Lease { max_keys, table } => {
                let table = table.map(|t| TABLES[t as usize]);
                let request = LeaseRequest {
                    max_keys: *max_keys as usize,
                    max_bytes: u64::MAX,
                    tables: table.iter().map(|t| t.to_string()).collect(),
                };
                let phase = subject.get().phase();
                match subject.get().lease(&request, now) {
                    Ok(lease) => {
                        prop_assert!(!model.paused, "step {n}: leased while paused");
                        prop_assert!(lease.id != 0);
                        prop_assert!(
                            !model.leases.iter().any(|l| l.live && l.id == lease.id),
                            "step {n}: lease id {} reused while live",
                            lease.id
                        );
                        prop_assert!(
                            !lease.keys.is_empty() && lease.keys.len() <= *max_keys as usize
                        );
                        prop_assert_eq!(lease.expires_us, now + LEASE_US);
                        let mut keys = Vec::new();
                        for leased in &lease.keys {
                            let table_name = TABLES
                                .iter()
                                .find(|t| **t == leased.table)
                                .expect("a known table");
                            let index = model.index[&(*table_name, leased.key.clone())];
                            let key = &mut model.keys[index];
                            prop_assert_eq!(
                                key.holder,
                                0,
                                "step {}: {:?} leased while lease {} holds it",
                                n,
                                leased.key,
                                key.holder
                            );
                            prop_assert!(
                                key.location() != Location::Current,
                                "step {n}: a current key was leased"
                            );
                            prop_assert!(!key.parked, "step {n}: a parked key was leased");
                            prop_assert!(
                                key.retry_at <= now,
                                "step {n}: a failed key was leased inside its retry delay"
                            );
                            prop_assert!(table.is_none_or(|t| t == key.table));
                            prop_assert_eq!(leased.min_version, key.latest_write);
                            key.holder = lease.id;
                            keys.push((index, leased.min_version));
                        }
                        model.leases.push(LeaseModel {
                            id: lease.id,
                            keys,
                            expires_us: lease.expires_us,
                            live: true,
                            opening: model.restarts,
                        });
                    }
                    Err(Idle::Paused) => prop_assert!(model.paused, "step {n}: paused?"),
                    Err(Idle::NothingDue { .. }) => {
                        prop_assert!(!model.paused);
                        if phase == Phase::Background {
                            prop_assert_eq!(
                                model.waiting(table, now),
                                0,
                                "step {}: nothing due in BACKGROUND with keys waiting",
                                n
                            );
                        }
                    }
                    Err(other) => prop_assert!(false, "step {n}: unexpected {other:?}"),
                }
            }
            Step::Acknowledge {
                lease,
                keys,
                version,
                fail,
            } => {
                let Some(lease) = pick_lease(*lease, &model) else {
                    continue;
                };
                let id = model.leases[lease].id;
                let mut acks = Vec::new();
                let mut expected = Vec::new();
                let mut named = Vec::new();
                let mut failed = Vec::new();
                for (position, &(index, leased_at)) in
                    model.leases[lease].keys.clone().iter().enumerate()
                {
                    if keys & (1 << (position % 8)) == 0 || named.contains(&index) {
                        continue;
                    }
                    named.push(index);
                    let key = &mut model.keys[index];
                    let result = if fail & (1 << (position % 8)) != 0 {
                        expected.push(if key.holder == id {
                            failed.push(index);
                            AckOutcome::Requeued
                        } else {
                            AckOutcome::NotLeased
                        });
                        AckResult::Failed {
                            reason: "test".into(),
                        }
                    } else {
                        let version = match version {
                            Version::AsLeased => leased_at,
                            Version::Above(d) => leased_at + u64::from(*d),
                            Version::Below(d) => leased_at.saturating_sub(u64::from(*d)),
                            Version::Exactly(v) => u64::from(*v),
                        };
                        expected.push(key.copy(version, &mut model.accepted));
                        AckResult::Copied { version }
                    };
                    acks.push(Ack {
                        table: key.table.into(),
                        key: key.key.clone().into(),
                        result,
                    });
                }
                let outcomes = subject.get().acknowledge(id, &acks, now).unwrap();
                prop_assert_eq!(&outcomes, &expected, "step {}: {:?}", n, step);
                for index in named {
                    if model.keys[index].holder == id {
                        model.keys[index].holder = 0;
                    }
                }
                let own = model.leases[lease].keys.len() == 1
                    || acks
                        .iter()
                        .any(|ack| matches!(ack.result, AckResult::Copied { .. }));
                for index in failed {
                    model.keys[index].failed(own, model.accepted, now);
                }
                model.settle(lease);
            }
            Step::Compact { lease, named } => {
                let Some(lease) = pick_lease(*lease, &model) else {
                    continue;
                };
                let id = model.leases[lease].id;
                let leased = model.leases[lease].keys.clone();
                let mut acks = Vec::new();
                let mut expected_named = Vec::new();
                let live = model.leases[lease].live;
                let mut named_keys = Vec::new();
                for (position, &(index, leased_at)) in leased.iter().enumerate() {
                    if named & (1 << (position % 8)) == 0 || named_keys.contains(&index) {
                        continue;
                    }
                    named_keys.push(index);
                    let key = &mut model.keys[index];
                    if live {
                        expected_named.push(key.copy(leased_at + 1, &mut model.accepted));
                    }
                    acks.push(Ack {
                        table: key.table.into(),
                        key: key.key.clone().into(),
                        result: AckResult::Copied {
                            version: leased_at + 1,
                        },
                    });
                }
                let call = AckCall {
                    lease: id,
                    acks: &acks,
                    others_copied_at_leased_version: true,
                };
                let mut results = subject.get().acknowledge_all(&[call], now).unwrap();
                let result = results.pop().unwrap();
                if !live {
                    let error = result.expect_err("the compact form on a finished lease");
                    prop_assert!(
                        model.unknown_lease_is(lease, &error),
                        "step {n}: the compact form on a finished lease: {error:?}"
                    );
                    continue;
                }
                let outcome = result.unwrap();
                prop_assert_eq!(&outcome.acks, &expected_named, "step {}", n);
                let (mut accepted, mut others) = (0, Vec::new());
                for (position, &(index, leased_at)) in leased.iter().enumerate() {
                    let key = &mut model.keys[index];
                    if key.holder != id || named_keys.contains(&index) {
                        continue;
                    }
                    match key.copy(leased_at, &mut model.accepted) {
                        AckOutcome::Accepted => accepted += 1,
                        other => others.push((position as u32, other)),
                    }
                    key.holder = 0;
                }
                for index in named_keys {
                    if model.keys[index].holder == id {
                        model.keys[index].holder = 0;
                    }
                }
                prop_assert_eq!(outcome.others_accepted, accepted, "step {}", n);
                prop_assert_eq!(&outcome.others_not_accepted, &others, "step {}", n);
                model.settle(lease);
                prop_assert!(!model.leases[lease].live, "the compact form ends the lease");
            }
            Step::AcknowledgeUnknownKey { lease } => {
                let id = pick_lease(*lease, &model).map_or(0, |l| model.leases[l].id);
                let ack = Ack {
                    table: "nowhere".into(),
                    key: b"k0".to_vec().into(),
                    result: AckResult::Copied { version: 1 },
                };
                let outcomes = subject.get().acknowledge(id, &[ack], now).unwrap();
                prop_assert_eq!(outcomes, vec![AckOutcome::UnknownKey]);
            }
            Step::Extend { lease } => {
                let Some(lease) = pick_lease(*lease, &model) else {
                    continue;
                };
                let id = model.leases[lease].id;
                match subject.get().extend(id, now) {
                    Ok(expires) => {
                        prop_assert!(
                            model.leases[lease].live,
                            "step {n}: extended a finished lease"
                        );
                        prop_assert_eq!(expires, now + LEASE_US);
                        model.leases[lease].expires_us = expires;
                    }
                    Err(error) => {
                        prop_assert!(!model.leases[lease].live, "step {n}: a live lease unknown");
                        prop_assert!(model.unknown_lease_is(lease, &error), "step {n}: {error:?}");
                    }
                }
            }
            Step::Write { key, version, size } => {
                let i = *key as usize % universe;
                let table = TABLES[i % 2];
                let name = format!("k{i}").into_bytes();
                let version = u64::from(*version);
                let report = subject
                    .get()
                    .record_writes(
                        &[WriteEvent {
                            table: table.to_string(),
                            key: name.clone(),
                            version,
                            size_bytes: size.map(u64::from),
                        }],
                        now,
                    )
                    .unwrap();
                let (new, made_stale) = match model.index.get(&(table, name.clone())) {
                    Some(&index) => {
                        let key = &mut model.keys[index];
                        let was_current = key.location() == Location::Current;
                        if version > key.latest_write {
                            key.forget_failures();
                        }
                        key.latest_write = key.latest_write.max(version);
                        (
                            0,
                            usize::from(was_current && key.location() != Location::Current),
                        )
                    }
                    None => {
                        model.index.insert((table, name.clone()), model.keys.len());
                        model.keys.push(Key::new(table, name, version));
                        (1, 0)
                    }
                };
                prop_assert_eq!(
                    (report.new_keys, report.made_stale),
                    (new, made_stale),
                    "step {}",
                    n
                );
            }
            Step::Wait { seconds } => now += i64::from(*seconds) * SECOND,
            Step::Pause => {
                subject.get().pause().unwrap();
                model.paused = true;
            }
            Step::Resume => {
                subject.get().resume().unwrap();
                model.paused = false;
            }
            Step::ForcePhase { shadowing } => {
                let phase = if *shadowing {
                    Phase::Shadowing
                } else {
                    Phase::Background
                };
                subject.get().force_phase(phase).unwrap();
            }
            Step::Advance => {
                if subject.get().advance(now) == Phase::CutoverReady {
                    prop_assert!(
                        model.keys.iter().all(|k| k.location() == Location::Current),
                        "step {n}: CUTOVER_READY with keys not current"
                    );
                }
            }
            Step::Restart => {
                subject.restart(now);
                model.restart();
            }
        }
        model.expire(now);
        agree(subject.get(), &model, now, n)?;
    }

    // Writes stop, parked keys are offered again: copy until nothing is
    // due, the clock moved on to each retry delay's end.
    now += LEASE_US + SECOND;
    model.expire(now);
    subject.get().resume().unwrap();
    subject.get().force_phase(Phase::Background).unwrap();
    let parked = model.keys.iter().filter(|key| key.parked).count() as u64;
    prop_assert_eq!(subject.get().retry_parked(), parked);
    for _ in 0..=2 * model.keys.len() {
        let request = LeaseRequest {
            max_keys: 4,
            max_bytes: u64::MAX,
            tables: Vec::new(),
        };
        let lease = match subject.get().lease(&request, now) {
            Ok(lease) => lease,
            Err(Idle::NothingDue {
                next_due_us: Some(due),
            }) => {
                now = now.max(due);
                continue;
            }
            Err(_) => break,
        };
        let acks = common::copied_as_leased(&lease);
        let outcomes = subject.get().acknowledge(lease.id, &acks, now).unwrap();
        prop_assert!(
            outcomes.iter().all(|o| *o == AckOutcome::Accepted),
            "{outcomes:?}"
        );
    }
    for key in &model.keys {
        prop_assert_eq!(
            subject.get().location(key.table, &key.key),
            Some(Location::Current),
            "{:?} is not current once writes stopped",
            key
        );
    }
    prop_assert_eq!(subject.get().advance(now), Phase::CutoverReady);
    Ok(())
}

/// Every key where the model has it, and the status counts alike.
fn agree(
    scheduler: &mut Scheduler,
    model: &Model,
    now: i64,
    step: usize,
) -> Result<(), TestCaseError> {
    let status = scheduler.status(now);
    for key in &model.keys {
        prop_assert_eq!(
            scheduler.location(key.table, &key.key),
            Some(key.location()),
            "after step {}: {:?}",
            step,
            key
        );
        prop_assert_eq!(
            scheduler.is_leased(key.table, &key.key),
            key.holder != 0,
            "after step {}: {:?}",
            step,
            key
        );
    }
    let count = |f: &dyn Fn(&Key) -> bool| model.keys.iter().filter(|k| f(k)).count() as u64;
    prop_assert_eq!(status.total.keys, model.keys.len() as u64);
    prop_assert_eq!(
        status.current.keys,
        count(&|k| k.location() == Location::Current)
    );
    prop_assert_eq!(status.leased.keys, count(&|k| k.holder != 0));
    prop_assert_eq!(
        status.stale.keys,
        count(&|k| k.holder == 0 && k.location() == Location::Stale)
    );
    prop_assert_eq!(
        status.source_only.keys,
        count(&|k| k.holder == 0 && k.location() == Location::SourceOnly)
    );
    prop_assert_eq!(
        status.live_leases,
        model.leases.iter().filter(|l| l.live).count() as u64,
        "after step {}",
        step
    );
    prop_assert_eq!(status.paused, model.paused);
    prop_assert_eq!(
        (status.retrying_keys, status.parked.keys),
        (
            count(&|k| k.failures > 0 && !k.parked),
            count(&|k| k.parked)
        ),
        "after step {}",
        step
    );
    // The status's running tallies against a walk over the stored records.
    let map = scheduler.map();
    let (mut sample, mut sample_current, mut bytes) = (0, 0, 0);
    for id in map.ids() {
        let record = map.record(id);
        bytes += record.size_bytes;
        if record.in_sample {
            sample += 1;
            sample_current += u64::from(record.location() == Location::Current);
        }
    }
    prop_assert_eq!(status.total.bytes, bytes);
    prop_assert_eq!(status.sample.keys, sample);
    prop_assert_eq!(status.sample_current.keys, sample_current);
    prop_assert_eq!(status.confidence.keys_compared, status.current.keys);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn the_scheduler_keeps_the_rules_in_memory(
        planned in 1usize..10,
        sizes in prop::collection::vec(1u16..4000, 1..4),
        steps in prop::collection::vec(step(false), 1..60),
    ) {
        run(planned, &sizes, &steps, false)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    #[test]
    fn the_scheduler_keeps_the_rules_across_restarts(
        planned in 1usize..10,
        sizes in prop::collection::vec(1u16..4000, 1..4),
        steps in prop::collection::vec(step(true), 1..40),
    ) {
        run(planned, &sizes, &steps, true)?;
    }
}
