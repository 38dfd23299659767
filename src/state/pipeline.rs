//! Pipelined durability: the map's owner applies a commit in memory and
//! hands the write to a writer thread, which puts every write that queued
//! up meanwhile into one redb transaction and one fsync. Whoever must not
//! answer before the change is durable waits for its commit's sequence
//! number on a [`DurableWatch`]; everybody else goes on at once, so nobody
//! waits behind an fsync that is not theirs.
//!
//! Writes reach the disk in commit order. If one fails, the map is
//! poisoned: that write and every later one fail, every waiter hears why,
//! and the owner's next commit returns the error. Memory may then hold
//! changes the disk does not, which is why nothing was answered for them:
//! the process must stop, and a restart reloads what is on disk.

use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio::sync::watch;

use super::store::Store;
use super::{KeyRecord, StateError};

/// Most commits one transaction takes.
const MOST_COMMITS_PER_TRANSACTION: usize = 1024;

/// One commit, owned, on its way to the writer.
pub(super) struct Write {
    pub seq: u64,
    pub tables: Vec<(u32, String)>,
    pub entries: Vec<(u32, Box<[u8]>, KeyRecord)>,
    pub settings: Vec<(String, String)>,
}

/// How far the writer got.
#[derive(Clone, Debug, Default)]
struct Progress {
    /// Every commit up to this sequence number is durable.
    durable: u64,
    /// Why writing stopped, if it did.
    failed: Option<String>,
}

/// The writer thread and the way to it.
pub(super) struct Writer {
    writes: Option<mpsc::Sender<Write>>,
    progress: watch::Receiver<Progress>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// A writer for commits after `already_durable` (those before it were
    /// written directly).
    pub fn start(store: Arc<Store>, already_durable: u64) -> Writer {
        let (writes, queue) = mpsc::channel::<Write>();
        let (report, progress) = watch::channel(Progress {
            durable: already_durable,
            failed: None,
        });
        let thread = std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || write_in_groups(&store, &queue, &report))
            .expect("starting the state writer");
        Writer {
            writes: Some(writes),
            progress,
            thread: Some(thread),
        }
    }

    /// Queues `write`; an error when an earlier write failed.
    pub fn send(&self, write: Write) -> Result<(), String> {
        if let Some(problem) = &self.progress.borrow().failed {
            return Err(problem.clone());
        }
        self.writes
            .as_ref()
            .expect("the sender lives until drop")
            .send(write)
            .map_err(|_| "the state writer stopped".to_string())
    }

    pub fn watch(&self) -> DurableWatch {
        DurableWatch {
            progress: self.progress.clone(),
        }
    }
}

impl Drop for Writer {
    /// Lets the writer finish what was queued before the map goes away.
    fn drop(&mut self) {
        self.writes.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn write_in_groups(store: &Store, queue: &mpsc::Receiver<Write>, report: &watch::Sender<Progress>) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MOST_COMMITS_PER_TRANSACTION {
            match queue.try_recv() {
                Ok(write) => group.push(write),
                Err(_) => break,
            }
        }
        if report.borrow().failed.is_some() {
            continue;
        }
        let tables: Vec<(u32, String)> = group.iter().flat_map(|w| w.tables.clone()).collect();
        let settings: Vec<(String, String)> =
            group.iter().flat_map(|w| w.settings.clone()).collect();
        // In stored-key order, each key once with its latest record: the
        // B-tree is then walked front to back, and a key several commits
        // changed is written once.
        let mut entries: Vec<(u32, &[u8], KeyRecord)> = group
            .iter()
            .flat_map(|w| {
                w.entries
                    .iter()
                    .map(|(table, key, record)| (*table, &key[..], *record))
            })
            .collect();
        entries.reverse();
        entries.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        entries.dedup_by(|later, kept| (later.0, later.1) == (kept.0, kept.1));
        let entries = entries.into_iter();
        let last = group.last().expect("a group has a write").seq;
        match store.put(&tables, entries, &settings) {
            Ok(()) => report.send_modify(|progress| progress.durable = last),
            Err(error) => {
                tracing::error!(%error, "writing the location map failed; no further change is stored and the service must restart");
                report.send_modify(|progress| progress.failed = Some(error.to_string()));
            }
        }
    }
}

/// Waits for commits to become durable. Cheap to clone; any thread or task
/// may hold one.
#[derive(Clone)]
pub struct DurableWatch {
    progress: watch::Receiver<Progress>,
}

impl DurableWatch {
    /// Resolves when commit `seq` (and every one before it) is durable, or
    /// with the reason it never will be.
    pub async fn durable(&mut self, seq: u64) -> Result<(), String> {
        let progress = self
            .progress
            .wait_for(|p| p.durable >= seq || p.failed.is_some())
            .await
            .map_err(|_| "the state writer stopped".to_string())?;
        match &progress.failed {
            Some(problem) if progress.durable < seq => Err(problem.clone()),
            _ => Ok(()),
        }
    }

    /// Why writing stopped, once it has.
    pub fn failure(&self) -> Option<String> {
        self.progress.borrow().failed.clone()
    }

    /// Resolves when writing has failed; never while it works (nor after
    /// the writer ended with its map).
    pub async fn failed(&mut self) -> String {
        let failed = self
            .progress
            .wait_for(|p| p.failed.is_some())
            .await
            .map(|progress| progress.failed.clone().unwrap_or_default());
        match failed {
            Ok(problem) => problem,
            Err(_) => std::future::pending().await,
        }
    }
}

pub(super) fn store_error(path: &std::path::Path, problem: String) -> StateError {
    StateError::Store {
        path: path.to_path_buf(),
        problem,
    }
}
