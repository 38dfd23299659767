//! Pipelined durability: the map's owner applies a commit in memory and
//! hands the write to a writer thread, which puts every write that queued
//! up meanwhile into one record of the journal and one fsync (a store in
//! memory keeps nothing); checkpoints move the journal into the key files
//! in the background (see [`super::journal`]). A map that commits directly
//! appends to the same journal itself. Whoever must not
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::watch;

use crate::time::DurationTotal;

use super::changes::Changes;
use super::journal::{self, CHECKPOINT_BYTES, Journal};
use super::store::{Store, sync_folder};

/// Most commits one journal record takes.
const MOST_COMMITS_PER_RECORD: usize = 1024;

/// One commit, owned, on its way to the writer.
pub(super) struct Write {
    pub seq: u64,
    pub changes: Changes,
}

/// How far the writer got.
#[derive(Clone, Debug, Default)]
struct Progress {
    /// Every commit up to this sequence number is durable.
    durable: u64,
    /// Why writing stopped, if it did.
    failed: Option<String>,
}

/// What the writer has appended so far, for the service's metrics.
#[derive(Default)]
pub struct JournalTotals {
    /// Journal records appended (each one fsync), and the time spent
    /// appending them and waiting for their fsyncs.
    pub appends: DurationTotal,
    /// Commits those records held (a record takes every commit that
    /// queued while the one before it was written).
    commits: AtomicU64,
}

impl JournalTotals {
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
}

/// The writer thread and the way to it.
pub(super) struct Writer {
    writes: Option<mpsc::Sender<Write>>,
    progress: watch::Receiver<Progress>,
    totals: Arc<JournalTotals>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// A writer for commits after `already_durable`, appending to
    /// `journaled` (`None`: a store in memory, where a commit is durable as
    /// soon as the writer sees it; an error: every write fails with it).
    pub fn start(
        store: Arc<Store>,
        journaled: Result<Option<Journaled>, String>,
        already_durable: u64,
    ) -> Writer {
        let (writes, queue) = mpsc::channel::<Write>();
        let (report, progress) = watch::channel(Progress {
            durable: already_durable,
            failed: None,
        });
        let totals = Arc::new(JournalTotals::default());
        let counted = totals.clone();
        let thread = std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || write_in_groups(&store, journaled, &queue, &report, &counted))
            .expect("starting the state writer");
        Writer {
            writes: Some(writes),
            progress,
            totals,
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
            totals: self.totals.clone(),
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

fn write_in_groups(
    store: &Arc<Store>,
    journaled: Result<Option<Journaled>, String>,
    queue: &mpsc::Receiver<Write>,
    report: &watch::Sender<Progress>,
    totals: &JournalTotals,
) {
    let fail = |problem: String| {
        tracing::error!(%problem, "storing the location map failed; no further change is stored and the service must restart");
        report.send_modify(|progress| progress.failed = Some(problem));
    };
    let mut journaled = journaled.unwrap_or_else(|problem| {
        fail(problem);
        None
    });
    if let Some(journaled) = &mut journaled {
        journaled.in_background = true;
    }
    while let Ok(first) = crate::wait::receive(queue) {
        let mut last = first.seq;
        let mut group = first.changes;
        let mut grouped = Ok(());
        let mut commits = 1;
        for _ in 1..MOST_COMMITS_PER_RECORD {
            let Ok(write) = queue.try_recv() else { break };
            last = write.seq;
            commits += 1;
            grouped = grouped.and(group.absorb(write.changes));
        }
        if report.borrow().failed.is_some() {
            continue;
        }
        let started = Instant::now();
        let stored = grouped.and_then(|()| match &mut journaled {
            Some(journaled) => {
                let appended = journaled.append(store, group);
                totals.appends.since(started);
                totals.commits.fetch_add(commits, Ordering::Relaxed);
                appended
            }
            None => Ok(()),
        });
        match stored {
            Ok(()) => report.send_modify(|progress| progress.durable = last),
            Err(problem) => fail(problem),
        }
    }
    if let Some(journaled) = journaled
        && report.borrow().failed.is_none()
        && let Err(problem) = journaled.finish(store)
    {
        fail(problem);
    }
}

/// The journal, what it holds that the key files do not, and the
/// checkpoint running on its own thread, if one is. A map that commits
/// directly holds one; a pipelined map's writer thread does.
pub(super) struct Journaled {
    base: std::path::PathBuf,
    journal: Journal,
    pending: Changes,
    checkpoint: Option<JoinHandle<Result<(), String>>>,
    /// Why starting the last checkpoint failed (its commit was durable):
    /// the next append reports it.
    failure: Option<String>,
    /// Whether an append returns while its checkpoint runs (the writer
    /// thread's) or after it (a map committing directly, whose caller
    /// then finds the memory the checkpoint held freed).
    in_background: bool,
}

impl Journaled {
    /// A fresh journal beside the store's file; `None` for a store in
    /// memory.
    pub fn start(store: &Store, in_background: bool) -> Result<Option<Journaled>, String> {
        let Some(base) = store.journal_base() else {
            return Ok(None);
        };
        let journal = create_journal(base)?;
        Ok(Some(Journaled {
            base: base.to_path_buf(),
            journal,
            pending: Changes::default(),
            checkpoint: None,
            failure: None,
            in_background,
        }))
    }

    /// Appends `changes` (durable when this returns Ok) and starts a
    /// checkpoint when the journal has grown past [`CHECKPOINT_BYTES`] and
    /// none runs. An error means `changes` were not stored, or an earlier
    /// checkpoint failed.
    pub fn append(&mut self, store: &Arc<Store>, changes: Changes) -> Result<(), String> {
        if let Some(problem) = self.failure.take() {
            return Err(problem);
        }
        if self
            .checkpoint
            .as_ref()
            .is_some_and(JoinHandle::is_finished)
        {
            self.wait_for_checkpoint()?;
        }
        let current = journal::current_path(&self.base);
        self.journal
            .append(&changes)
            .map_err(|error| format!("appending to {}: {error}", current.display()))?;
        if let Err(problem) = self.pending.absorb(changes) {
            self.failure = Some(problem);
            return Ok(());
        }
        if self.journal.bytes() >= CHECKPOINT_BYTES && self.checkpoint.is_none() {
            self.failure = self.start_checkpoint(store).err();
            if !self.in_background {
                self.failure = self.failure.take().or(self.wait_for_checkpoint().err());
            }
        }
        Ok(())
    }

    fn start_checkpoint(&mut self, store: &Arc<Store>) -> Result<(), String> {
        let current = journal::current_path(&self.base);
        let checkpointed = journal::checkpoint_path(&self.base);
        std::fs::rename(&current, &checkpointed)
            .map_err(|error| format!("renaming {}: {error}", current.display()))?;
        self.journal = create_journal(&self.base)?;
        let pending = std::mem::take(&mut self.pending);
        let store = store.clone();
        let spare = journal::spare_path(&self.base);
        self.checkpoint = Some(
            std::thread::Builder::new()
                .name("state-checkpoint".into())
                .spawn(move || {
                    store
                        .checkpoint(pending)
                        .map_err(|error| error.to_string())?;
                    keep_as_spare(&checkpointed, &spare)
                })
                .map_err(|error| format!("starting a checkpoint: {error}"))?,
        );
        Ok(())
    }

    fn wait_for_checkpoint(&mut self) -> Result<(), String> {
        match self.checkpoint.take().map(JoinHandle::join) {
            None => Ok(()),
            Some(Ok(result)) => result,
            Some(Err(_)) => Err("a checkpoint of the journal panicked".into()),
        }
    }

    /// Checkpoints everything and removes the journal and its spare: the
    /// key files alone then hold the state.
    pub fn finish(mut self, store: &Store) -> Result<(), String> {
        self.wait_for_checkpoint()?;
        if let Some(problem) = self.failure.take() {
            return Err(problem);
        }
        store
            .checkpoint(std::mem::take(&mut self.pending))
            .map_err(|error| error.to_string())?;
        let current = journal::current_path(&self.base);
        std::fs::remove_file(&current)
            .map_err(|error| format!("removing {}: {error}", current.display()))?;
        let spare = journal::spare_path(&self.base);
        match std::fs::remove_file(&spare) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                // Never replayed: left behind, it costs only its space.
                tracing::warn!(spare = %spare.display(), %error, "the journal's spare could not be removed");
            }
            _ => {}
        }
        Ok(())
    }
}

/// Keeps a checkpointed journal as the spare the next journal reuses; if
/// it cannot be kept, it is removed, as a journal was before reuse.
fn keep_as_spare(checkpointed: &std::path::Path, spare: &std::path::Path) -> Result<(), String> {
    let Err(error) = std::fs::rename(checkpointed, spare) else {
        return Ok(());
    };
    tracing::warn!(journal = %checkpointed.display(), %error, "a checkpointed journal cannot be kept for reuse; removing it");
    std::fs::remove_file(checkpointed)
        .map_err(|error| format!("removing {}: {error}", checkpointed.display()))
}

/// An empty journal beside `base`, in the spare file if there is one (a
/// new file if the spare cannot be reused), its name durable in the
/// folder before anything is appended to it.
fn create_journal(base: &std::path::Path) -> Result<Journal, String> {
    let path = journal::current_path(base);
    let spare = journal::spare_path(base);
    let reused = if spare.exists() {
        Journal::reuse(&spare, &path)
            .inspect_err(|error| {
                tracing::warn!(spare = %spare.display(), %error, "the journal's spare cannot be reused; starting a new journal");
            })
            .ok()
    } else {
        None
    };
    let journal = match reused {
        Some(journal) => journal,
        None => Journal::create(&path)
            .map_err(|error| format!("creating {}: {error}", path.display()))?,
    };
    sync_folder(base)
        .map_err(|error| format!("syncing the folder of {}: {error}", base.display()))?;
    Ok(journal)
}

/// Waits for commits to become durable. Cheap to clone; any thread or task
/// may hold one.
#[derive(Clone)]
pub struct DurableWatch {
    progress: watch::Receiver<Progress>,
    totals: Arc<JournalTotals>,
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

    /// What the writer has appended to the journal so far.
    pub fn journal_totals(&self) -> &JournalTotals {
        &self.totals
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
