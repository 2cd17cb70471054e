//! Jobs: the long operations of the management API (a sync, a rollback), each on a thread of
//! its own, with an id, what it works on, its progress (done / total), its state (running,
//! done, failed, cancelled), why it ended badly, and a cancel flag the operation looks at where
//! stopping leaves everything consistent. Jobs live in memory: a restart forgets them, and
//! each operation is atomic or leaves a marker that the restart finishes or cleans up.
//!
//! 1. [`Jobs::start`] registers the job (running, 0 of 0) and spawns its thread, counted as
//!    active so that the server's stop waits for it (bounded).
//! 2. The operation reports through [`Progress`] and returns its result; a panic is caught.
//! 3. The job ends `done`, `failed` (with the error) or `cancelled` (a cancel was asked and
//!    the operation stopped), and wakes whoever waits on it.
//! 4. The last [`KEEP_FINISHED`] finished jobs are kept for `job list` and `job show`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use super::{ActiveGuard, ErrorBody, ErrorKind, JobReport, Shared, MAX_CONNECTIONS};
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
pub(super) struct Job {
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
    pub(super) fn report(&self) -> JobReport {
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

    /// Waits until it ended; its error if it did not end `done`.
    pub(super) fn wait(&self) -> Result<(), ErrorBody> {
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
pub(super) struct Jobs {
    next: AtomicU64,
    all: Mutex<BTreeMap<u64, Arc<Job>>>,
}

impl Jobs {
    /// Starts `op` as a job of `kind` on `target` (steps 1-3 of the module doc).
    pub(super) fn start(
        &self,
        shared: &Arc<Shared>,
        kind: &'static str,
        target: String,
        op: impl FnOnce(&Job) -> Result<(), ErrorBody> + Send + 'static,
    ) -> Result<Arc<Job>, ErrorBody> {
        // One more than the connection limit: the connection asking holds a slot already.
        let guard = ActiveGuard::enter(shared, MAX_CONNECTIONS + 1).ok_or_else(|| ErrorBody {
            kind: ErrorKind::Busy,
            message: "too many management requests in progress; try again".into(),
        })?;
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
        let j = job.clone();
        std::thread::Builder::new()
            .name(format!("strata-job-{}", job.id))
            .spawn(move || {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| op(&j)))
                    .unwrap_or_else(|_| {
                        Err(ErrorBody {
                            kind: ErrorKind::Internal,
                            message: format!("{} job panicked; see the gateway log", j.kind),
                        })
                    });
                let mut s = j.status.lock();
                s.state = match (&r, j.cancelled()) {
                    (Ok(()), _) => "done",
                    (Err(_), true) => "cancelled",
                    (Err(_), false) => "failed",
                };
                match &r {
                    Ok(()) => tracing::info!(job = j.id, kind = j.kind, "job done"),
                    Err(e) => tracing::warn!(job = j.id, kind = j.kind, error = %e.message, "job ended: {}", s.state),
                }
                s.error = r.err();
                s.finished = Some(crate::namespace::now());
                drop(s);
                j.ended.notify_all();
                drop(guard);
            })
            .map_err(|e| ErrorBody {
                kind: ErrorKind::Io,
                message: format!("cannot start the {kind} job: {e}"),
            })?;
        self.trim();
        Ok(job)
    }

    /// Step 4: forgets the oldest finished jobs beyond [`KEEP_FINISHED`].
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
    pub(super) fn list(&self) -> Vec<JobReport> {
        self.all.lock().values().map(|j| j.report()).collect()
    }

    /// Job `id` (`not_found` if none is kept).
    pub(super) fn get(&self, id: u64) -> Result<Arc<Job>, ErrorBody> {
        self.all.lock().get(&id).cloned().ok_or_else(|| ErrorBody {
            kind: ErrorKind::NotFound,
            message: format!("no job {id} (a restart forgets jobs)"),
        })
    }

    /// Asks job `id` to stop; its report.
    pub(super) fn cancel(&self, id: u64) -> Result<JobReport, ErrorBody> {
        let j = self.get(id)?;
        j.cancel.store(true, Ordering::Relaxed);
        Ok(j.report())
    }
}
