//! Jobs: the gateway's long operations (a sync, a rollback, a deleted volume's backend
//! objects), each with an id, what it works on, its progress (done / total), its state
//! (running, done, failed, cancelled), why it ended badly, and a cancel flag the operation
//! looks at where stopping leaves everything consistent. Jobs live in memory: a restart
//! forgets them, and each operation is atomic or leaves a marker that the restart finishes or
//! cleans up (a deletion's marker, a rollback's).
//!
//! 1. [`Jobs::register`] records the job (running, 0 of 0); whoever runs it (a management
//!    thread, the volume registry's deletion task) reports through [`Progress`].
//! 2. [`Job::finish`] ends it `done`, `failed` (with the error) or `cancelled` (a cancel was
//!    asked and the operation stopped), and wakes whoever waits on it.
//! 3. The last [`KEEP_FINISHED`] finished jobs are kept for `job list` and `job show`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use crate::mgmt::{ErrorBody, ErrorKind, JobReport};
use crate::progress::Progress;
use crate::types::Timestamp;

/// Finished jobs kept for `job list` / `job show`.
const KEEP_FINISHED: usize = 64;

/// A job's state and progress.
#[derive(Debug, Clone)]
struct Status {
    done: u64,
    total: u64,
    state: &'static str,
    /// Why it failed or was cancelled, as the answer to its request would have said.
    error: Option<ErrorBody>,
    finished: Option<Timestamp>,
}

/// One job.
#[derive(Debug)]
pub(crate) struct Job {
    id: u64,
    kind: &'static str,
    target: String,
    started: Timestamp,
    status: Mutex<Status>,
    ended: Condvar,
    cancel: AtomicBool,
}

impl Progress for Job {
    fn step(&self, done: u64, total: u64) {
        let mut s = self.status.lock();
        s.total = total.max(done);
        s.done = done;
    }
    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

impl Job {
    /// Its report.
    pub(crate) fn report(&self) -> JobReport {
        let s = self.status.lock();
        JobReport {
            id: self.id,
            kind: self.kind.to_string(),
            target: self.target.clone(),
            state: s.state.to_string(),
            done: s.done,
            total: s.total,
            reason: s.error.as_ref().map(|e| e.message.clone()),
            started_secs: self.started.secs,
            finished_secs: s.finished.map(|t| t.secs),
        }
    }

    /// Step 2: ends the job with the operation's result.
    pub(crate) fn finish(&self, r: Result<(), ErrorBody>) {
        let mut s = self.status.lock();
        s.state = match (&r, self.cancelled()) {
            (Ok(()), _) => "done",
            (Err(_), true) => "cancelled",
            (Err(_), false) => "failed",
        };
        match &r {
            Ok(()) => tracing::info!(job = self.id, kind = self.kind, "job done"),
            Err(e) => {
                tracing::warn!(job = self.id, kind = self.kind, error = %e.message, "job ended: {}", s.state)
            }
        }
        s.error = r.err();
        s.finished = Some(crate::namespace::now());
        drop(s);
        self.ended.notify_all();
    }

    /// Waits until it ended; its error if it did not end `done`.
    pub(crate) fn wait(&self) -> Result<(), ErrorBody> {
        let mut s = self.status.lock();
        while s.finished.is_none() {
            self.ended.wait(&mut s);
        }
        match &s.error {
            None => Ok(()),
            Some(e) => Err(e.clone()),
        }
    }
}

/// Every job of this server.
#[derive(Debug, Default)]
pub(crate) struct Jobs {
    next: AtomicU64,
    all: Mutex<BTreeMap<u64, Arc<Job>>>,
}

impl Jobs {
    /// Step 1: records a running job of `kind` on `target`.
    pub(crate) fn register(&self, kind: &'static str, target: String) -> Arc<Job> {
        let job = Arc::new(Job {
            id: self.next.fetch_add(1, Ordering::Relaxed) + 1,
            kind,
            target,
            started: crate::namespace::now(),
            status: Mutex::new(Status {
                done: 0,
                total: 0,
                state: "running",
                error: None,
                finished: None,
            }),
            ended: Condvar::new(),
            cancel: AtomicBool::new(false),
        });
        self.all.lock().insert(job.id, job.clone());
        self.trim();
        job
    }

    /// Step 3: forgets the oldest finished jobs beyond [`KEEP_FINISHED`].
    fn trim(&self) {
        let mut all = self.all.lock();
        let finished: Vec<u64> = all
            .iter()
            .filter(|(_, j)| j.status.lock().finished.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in finished
            .iter()
            .take(finished.len().saturating_sub(KEEP_FINISHED))
        {
            all.remove(id);
        }
    }

    /// Every job kept, by id.
    pub(crate) fn list(&self) -> Vec<JobReport> {
        self.all.lock().values().map(|j| j.report()).collect()
    }

    /// Job `id` (`not_found` if none is kept).
    pub(crate) fn get(&self, id: u64) -> Result<Arc<Job>, ErrorBody> {
        self.all.lock().get(&id).cloned().ok_or_else(|| ErrorBody {
            kind: ErrorKind::NotFound,
            message: format!("no job {id} (a restart forgets jobs)"),
        })
    }

    /// Asks job `id` to stop; its report.
    pub(crate) fn cancel(&self, id: u64) -> Result<JobReport, ErrorBody> {
        let j = self.get(id)?;
        j.cancel.store(true, Ordering::Relaxed);
        Ok(j.report())
    }
}
