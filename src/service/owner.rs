//! The scheduler's one owner: a thread that holds the [`Scheduler`] and
//! runs what the handlers send it, one message at a time, so no handler
//! ever takes a lock or blocks a tokio worker.
//!
//! - A handler sends a job (a closure over the scheduler) and awaits its
//!   answer. Jobs are short: a lease, an extension, a look-up, applying
//!   writes or scanned log files, swapping in a plan computed elsewhere.
//! - Acknowledgements that queue up while the owner is busy are applied
//!   together, in one commit.
//! - Commits are pipelined (see [`crate::state::DurableWatch`]): the owner
//!   applies a change in memory and goes on to the next message while the
//!   state writer fsyncs; a call that changed something answers only once
//!   its commit is durable. So a lease never waits behind an fsync.
//! - A job that panics is reported and the owner goes on with the next one.
//! - Where each call's time goes (waiting for the owner, run by it, waiting
//!   for a tokio worker to take the answer, waiting for the commit) is
//!   summed in [`CallTimes`], for /metrics.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, mpsc};
use std::time::Instant;

use tokio::sync::oneshot;
use tonic::Status;

use super::scheduler_status;
use crate::scheduler::{Ack, AckCall, AckCallOutcome, Scheduler, SchedulerError};
use crate::state::{DurableWatch, JournalTotals};
use crate::time::{DurationTotal, now_us};

/// Most acknowledge calls one commit takes: each is up to a lease's keys
/// (1,000 by default), and a lease call queued behind the group waits for
/// all of them, so the group stays a few milliseconds long. (The state
/// writer groups commits again for its fsync.)
const MOST_CALLS_PER_COMMIT: usize = 16;

type Job = Box<dyn FnOnce(&mut Scheduler) + Send>;

/// What a call to the owner is, for [`CallTimes`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CallKind {
    Lease,
    Acknowledge,
    /// Everything else: extensions, look-ups, writes, status, operator
    /// commands, planning and log files.
    Other,
}

impl CallKind {
    pub const ALL: [CallKind; 3] = [CallKind::Lease, CallKind::Acknowledge, CallKind::Other];
}

impl std::fmt::Display for CallKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CallKind::Lease => "lease",
            CallKind::Acknowledge => "acknowledge",
            CallKind::Other => "other",
        })
    }
}

/// Where calls to the owner spend their time, by [`CallKind`].
#[derive(Default)]
pub struct CallTimes {
    /// In the owner's inbox, before it took the call up.
    pub queued: [DurationTotal; 3],
    /// Run by the owner (each call of a group of acknowledgements counts
    /// the whole group's time: it waited for all of it).
    pub running: [DurationTotal; 3],
    /// From the owner's answer until the handler went on with it: the
    /// wait for a tokio worker.
    pub answer_wait: [DurationTotal; 3],
    /// Calls that changed something, waiting for their commit's fsync.
    pub durable: DurationTotal,
}

/// A job on its way to the owner.
struct Call {
    job: Job,
    kind: CallKind,
    sent: Instant,
}

enum Message {
    Run(Call),
    Acknowledge(WaitingAck),
    /// Drop the scheduler (its queued writes are flushed) and end.
    Stop,
}

/// One acknowledge call waiting for the owner.
struct WaitingAck {
    lease: u64,
    /// Who calls (see [`Scheduler::check_holder`]).
    caller: u32,
    acks: Vec<Ack>,
    others_copied_at_leased_version: bool,
    sent: Instant,
    reply: oneshot::Sender<AckAnswer>,
}

/// The owner's answer to an acknowledge call: the outcome and the commit
/// to wait for, and the call's acknowledgements handed back to be freed on
/// the caller's thread (a thousand keys' buffers freed on the owner took
/// a few percent of its time).
struct AckAnswer {
    outcome: Result<(AckCallOutcome, u64), Status>,
    acks: Vec<Ack>,
    answered: Instant,
}

impl WaitingAck {
    fn answer(self, outcome: Result<(AckCallOutcome, u64), Status>) {
        let _ = self.reply.send(AckAnswer {
            outcome,
            acks: self.acks,
            answered: Instant::now(),
        });
    }
}

/// The way to the owner thread; cheap to share.
pub struct SchedulerOwner {
    messages: mpsc::Sender<Message>,
    durable: DurableWatch,
    times: Arc<CallTimes>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn gone() -> Status {
    Status::unavailable("the service is shutting down")
}

fn not_durable(problem: String) -> Status {
    Status::unavailable(format!(
        "the change could not be stored ({problem}); the service must restart"
    ))
}

impl SchedulerOwner {
    /// Moves `scheduler` onto its own thread, with pipelined commits. The
    /// thread ends, and the scheduler's queued writes are flushed, on
    /// [`stop`](Self::stop) or when the last [`SchedulerOwner`] is dropped.
    pub fn start(mut scheduler: Scheduler) -> SchedulerOwner {
        let durable = scheduler.pipeline();
        let (messages, inbox) = mpsc::channel();
        let times = Arc::new(CallTimes::default());
        let timed = times.clone();
        let thread = std::thread::Builder::new()
            .name("scheduler".into())
            .spawn(move || own(scheduler, &inbox, &timed))
            .expect("starting the scheduler's owner");
        SchedulerOwner {
            messages,
            durable,
            times,
            thread: std::sync::Mutex::new(Some(thread)),
        }
    }

    /// Ends the owner after the messages already sent, and returns once
    /// every queued write is on disk (so the state file is free for the
    /// next start).
    pub async fn stop(&self) {
        let _ = self.messages.send(Message::Stop);
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    /// Runs `job` on the scheduler and returns what it returns.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Scheduler) -> T + Send + 'static,
    ) -> Result<T, Status> {
        self.run_as(CallKind::Other, job).await
    }

    /// [`run`](Self::run), its times counted as `kind`'s.
    pub async fn run_as<T: Send + 'static>(
        &self,
        kind: CallKind,
        job: impl FnOnce(&mut Scheduler) -> T + Send + 'static,
    ) -> Result<T, Status> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |scheduler| {
            let _ = reply.send((job(scheduler), Instant::now()));
        });
        self.messages
            .send(Message::Run(Call {
                job,
                kind,
                sent: Instant::now(),
            }))
            .map_err(|_| gone())?;
        let (value, answered) = answer
            .await
            .map_err(|_| Status::internal("the scheduler failed while handling the call"))?;
        self.times.answer_wait[kind as usize].since(answered);
        Ok(value)
    }

    /// Runs `job`, which may commit changes, and answers once they are
    /// durable.
    pub async fn run_durable<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Scheduler) -> Result<T, SchedulerError> + Send + 'static,
    ) -> Result<T, Status> {
        let (result, commit) = self
            .run(move |scheduler| {
                let result = job(scheduler);
                (result, scheduler.map().committed())
            })
            .await?;
        let value = result.map_err(scheduler_status)?;
        self.durable(commit).await?;
        Ok(value)
    }

    /// Applies acknowledgements for `lease` (grouped with whatever other
    /// calls are waiting) and answers once the accepted copies are durable.
    /// A call naming a live lease that another caller holds is refused.
    pub async fn acknowledge(
        &self,
        lease: u64,
        caller: u32,
        acks: Vec<Ack>,
        others_copied_at_leased_version: bool,
    ) -> Result<AckCallOutcome, Status> {
        let (reply, answer) = oneshot::channel();
        self.messages
            .send(Message::Acknowledge(WaitingAck {
                lease,
                caller,
                acks,
                others_copied_at_leased_version,
                sent: Instant::now(),
                reply,
            }))
            .map_err(|_| gone())?;
        let AckAnswer {
            outcome,
            acks,
            answered,
        } = answer.await.map_err(|_| gone())?;
        self.times.answer_wait[CallKind::Acknowledge as usize].since(answered);
        drop(acks);
        let (outcomes, commit) = outcome?;
        self.durable(commit).await?;
        Ok(outcomes)
    }

    async fn durable(&self, commit: u64) -> Result<(), Status> {
        let started = Instant::now();
        let durable = self.durable.clone().durable(commit).await;
        self.times.durable.since(started);
        durable.map_err(not_durable)
    }

    /// Where calls have spent their time so far.
    pub fn times(&self) -> &CallTimes {
        &self.times
    }

    /// What the state writer has appended to the journal so far.
    pub fn journal_totals(&self) -> &JournalTotals {
        self.durable.journal_totals()
    }

    /// Resolves if storing changes ever fails (the service must then stop).
    pub async fn storage_failed(&self) -> String {
        self.durable.clone().failed().await
    }

    /// Why storing changes failed, if it has.
    pub fn storage_failure(&self) -> Option<String> {
        self.durable.failure()
    }
}

fn own(mut scheduler: Scheduler, inbox: &mpsc::Receiver<Message>, times: &CallTimes) {
    let mut next = None;
    loop {
        let message = match next.take() {
            Some(message) => message,
            None => match crate::wait::receive(inbox) {
                Ok(message) => message,
                Err(_) => break,
            },
        };
        match message {
            Message::Run(Call { job, kind, sent }) => {
                times.queued[kind as usize].since(sent);
                let started = Instant::now();
                let ran = std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut scheduler)));
                times.running[kind as usize].since(started);
                if ran.is_err() {
                    tracing::error!(
                        "a scheduler call panicked; the call failed, the service goes on"
                    );
                }
            }
            Message::Stop => break,
            Message::Acknowledge(first) => {
                let mut group = vec![first];
                while group.len() < MOST_CALLS_PER_COMMIT {
                    match inbox.try_recv() {
                        Ok(Message::Acknowledge(call)) => group.push(call),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let started = Instant::now();
                let acknowledge = CallKind::Acknowledge as usize;
                for call in &group {
                    times.queued[acknowledge].since(call.sent);
                }
                let calls = group.len() as u64;
                acknowledge_group(&mut scheduler, group);
                times.running[acknowledge].add(started.elapsed(), calls);
            }
        }
    }
}

fn acknowledge_group(scheduler: &mut Scheduler, group: Vec<WaitingAck>) {
    let (group, refused): (Vec<WaitingAck>, Vec<WaitingAck>) = group
        .into_iter()
        .partition(|call| scheduler.check_holder(call.lease, call.caller).is_ok());
    for call in refused {
        let refusal = scheduler
            .check_holder(call.lease, call.caller)
            .expect_err("refused above");
        call.answer(Err(scheduler_status(refusal)));
    }
    let batch: Vec<AckCall> = group
        .iter()
        .map(|c| AckCall {
            lease: c.lease,
            acks: &c.acks,
            others_copied_at_leased_version: c.others_copied_at_leased_version,
        })
        .collect();
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        scheduler.acknowledge_all(&batch, now_us())
    }));
    let commit = scheduler.map().committed();
    match result {
        Ok(Ok(outcomes)) => {
            for (call, outcome) in group.into_iter().zip(outcomes) {
                call.answer(
                    outcome
                        .map(|outcome| (outcome, commit))
                        .map_err(scheduler_status),
                );
            }
        }
        Ok(Err(error)) => {
            let status = scheduler_status(error);
            for call in group {
                call.answer(Err(status.clone()));
            }
        }
        Err(_) => {
            tracing::error!("acknowledging panicked; the calls failed, the service goes on");
            for call in group {
                call.answer(Err(Status::internal(
                    "acknowledging failed in the scheduler",
                )));
            }
        }
    }
}
