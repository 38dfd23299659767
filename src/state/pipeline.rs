//! Pipelined durability: the map's owner applies a commit in memory and
//! hands the write to a writer thread, which puts every write that queued
//! up meanwhile into one record of the journal and one fsync (a store in
//! memory takes it in one redb transaction); checkpoints move the journal
//! into redb in the background (see [`super::journal`]). Whoever must not
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

use super::journal::{self, CHECKPOINT_BYTES, Journal, Pending};
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

fn write_in_groups(
    store: &Arc<Store>,
    queue: &mpsc::Receiver<Write>,
    report: &watch::Sender<Progress>,
) {
    let fail = |problem: String| {
        tracing::error!(%problem, "storing the location map failed; no further change is stored and the service must restart");
        report.send_modify(|progress| progress.failed = Some(problem));
    };
    let mut journaled = match store.journal_base().map(Journaled::start).transpose() {
        Ok(journaled) => journaled,
        Err(problem) => {
            fail(problem);
            None
        }
    };
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
        let last = group.last().expect("a group has a write").seq;
        let stored = match &mut journaled {
            Some(journaled) => journaled.append(store, tables, &entries, settings),
            None => store
                .put(&tables, entries.into_iter(), &settings)
                .map_err(|error| error.to_string()),
        };
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

/// The writer's journal, what it holds that the B-tree does not, and the
/// checkpoint running on its own thread, if one is.
struct Journaled {
    base: std::path::PathBuf,
    journal: Journal,
    pending: Pending,
    checkpoint: Option<JoinHandle<Result<(), String>>>,
}

impl Journaled {
    fn start(base: &std::path::Path) -> Result<Journaled, String> {
        let journal = create_journal(base)?;
        Ok(Journaled {
            base: base.to_path_buf(),
            journal,
            pending: Pending::default(),
            checkpoint: None,
        })
    }

    /// Appends a group (durable when this returns) and starts a checkpoint
    /// when the journal has grown past [`CHECKPOINT_BYTES`] and none runs.
    fn append(
        &mut self,
        store: &Arc<Store>,
        tables: Vec<(u32, String)>,
        entries: &[(u32, &[u8], KeyRecord)],
        settings: Vec<(String, String)>,
    ) -> Result<(), String> {
        let current = journal::current_path(&self.base);
        self.journal
            .append(&tables, entries, &settings)
            .map_err(|error| format!("appending to {}: {error}", current.display()))?;
        let pending = &mut self.pending;
        pending.tables.extend(tables);
        pending.settings.extend(settings);
        for &(table, key, record) in entries {
            pending.entries.insert((table, key.into()), record);
        }
        let running = self
            .checkpoint
            .as_ref()
            .is_some_and(|checkpoint| !checkpoint.is_finished());
        if self.journal.bytes() < CHECKPOINT_BYTES || running {
            return Ok(());
        }
        self.wait_for_checkpoint()?;
        let checkpointed = journal::checkpoint_path(&self.base);
        std::fs::rename(&current, &checkpointed)
            .map_err(|error| format!("renaming {}: {error}", current.display()))?;
        self.journal = create_journal(&self.base)?;
        let pending = std::mem::take(&mut self.pending);
        let store = store.clone();
        self.checkpoint = Some(
            std::thread::Builder::new()
                .name("state-checkpoint".into())
                .spawn(move || {
                    store
                        .put_pending(&pending)
                        .map_err(|error| error.to_string())?;
                    std::fs::remove_file(&checkpointed)
                        .map_err(|error| format!("removing {}: {error}", checkpointed.display()))
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

    /// Checkpoints everything and removes the journal: the B-tree alone
    /// then holds the state.
    fn finish(mut self, store: &Store) -> Result<(), String> {
        self.wait_for_checkpoint()?;
        store
            .put_pending(&self.pending)
            .map_err(|error| error.to_string())?;
        let current = journal::current_path(&self.base);
        std::fs::remove_file(&current)
            .map_err(|error| format!("removing {}: {error}", current.display()))
    }
}

/// A fresh journal beside `base`, its name durable in the folder before
/// anything is appended to it.
fn create_journal(base: &std::path::Path) -> Result<Journal, String> {
    let path = journal::current_path(base);
    let journal =
        Journal::create(&path).map_err(|error| format!("creating {}: {error}", path.display()))?;
    let folder = base
        .parent()
        .filter(|folder| !folder.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    std::fs::File::open(folder)
        .and_then(|folder| folder.sync_all())
        .map_err(|error| format!("syncing {}: {error}", folder.display()))?;
    Ok(journal)
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
