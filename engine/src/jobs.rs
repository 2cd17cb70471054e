//! Jobs: the gateway's long operations (a sync, a rollback, a deleted volume's backend
//! objects), each with an id, what it works on, its progress (done / total), its state
//! (running, done, failed, cancelled), why it ended badly, and a cancel flag the operation
//! looks at where stopping leaves everything consistent. A job lives in memory while it runs;
//! its report is recorded in the namespace when it starts and when it ends, so the last ones
//! are still listed after a restart (one the restart finds running is `interrupted`). Each
//! operation is atomic or leaves a marker that the restart finishes or cleans up (a
//! deletion's marker, a rollback's).
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
use crate::namespace::Namespace;
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
    /// What it found (an fsck's report), set before it ends.
    result: Option<serde_json::Value>,
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
    /// Where its report is recorded when it ends.
    jobs: std::sync::Weak<Jobs>,
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
            result: s.result.clone(),
        }
    }

    /// Records what the job found (shown with its report).
    pub(crate) fn set_result(&self, v: serde_json::Value) {
        self.status.lock().result = Some(v);
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
        if let Some(jobs) = self.jobs.upgrade() {
            jobs.record(&self.report());
        }
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

/// Every job of this gateway: those of this run, and the reports of the last ones of the runs
/// before (recorded in the namespace).
#[derive(Debug, Default)]
pub(crate) struct Jobs {
    next: AtomicU64,
    live: Mutex<BTreeMap<u64, Arc<Job>>>,
    /// Reports of jobs of earlier runs (those still running then say `interrupted`).
    past: Mutex<BTreeMap<u64, JobReport>>,
    ns: Option<Arc<Namespace>>,
}

fn not_found(id: u64) -> ErrorBody {
    ErrorBody {
        kind: ErrorKind::NotFound,
        message: format!("no job {id} (only the last {KEEP_FINISHED} are kept)"),
    }
}

impl Jobs {
    /// The jobs of a gateway whose namespace is `ns`: the reports recorded there are read
    /// (a job the last run did not finish is `interrupted`: what it was doing is atomic or
    /// marked, and the restart finished or undid it), and new ids continue after theirs.
    pub(crate) fn open(ns: Arc<Namespace>) -> crate::error::Result<Jobs> {
        let mut past = BTreeMap::new();
        for (id, b) in ns.jobs_recorded()? {
            let Ok(mut r) = serde_json::from_slice::<JobReport>(&b) else {
                tracing::warn!(job = id, "a recorded job report does not parse; ignored");
                continue;
            };
            if r.state == "running" {
                r.state = "interrupted".into();
                r.reason = Some(
                    "the gateway stopped while it ran (a rollback cut short is undone at the \
                     restart; a deletion goes on by itself; a sync is simply not finished)"
                        .into(),
                );
            }
            past.insert(id, r);
        }
        let next = past.keys().next_back().copied().unwrap_or(0);
        Ok(Jobs {
            next: AtomicU64::new(next),
            live: Mutex::new(BTreeMap::new()),
            past: Mutex::new(past),
            ns: Some(ns),
        })
    }

    /// Step 1: registers (and records) a running job of `kind` on `target`.
    pub(crate) fn register(self: &Arc<Self>, kind: &'static str, target: String) -> Arc<Job> {
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
                result: None,
            }),
            ended: Condvar::new(),
            cancel: AtomicBool::new(false),
            jobs: Arc::downgrade(self),
        });
        self.live.lock().insert(job.id, job.clone());
        self.record(&job.report());
        job
    }

    /// Records a report in the namespace, forgetting the oldest finished jobs beyond
    /// [`KEEP_FINISHED`] (step 3); a failure is only logged (jobs are for people to look at).
    fn record(&self, r: &JobReport) {
        let forget = self.trim();
        let Some(ns) = &self.ns else {
            return;
        };
        let b = match serde_json::to_vec(r) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(job = r.id, error = %e, "a job report cannot be encoded");
                return;
            }
        };
        if let Err(e) = ns.job_record(r.id, &b, &forget) {
            tracing::warn!(job = r.id, error = %e, "a job report cannot be recorded");
        }
    }

    /// Step 3: forgets the oldest finished jobs beyond [`KEEP_FINISHED`]; their ids.
    fn trim(&self) -> Vec<u64> {
        let mut live = self.live.lock();
        let mut past = self.past.lock();
        let mut finished: Vec<u64> = past.keys().copied().collect();
        finished.extend(
            live.iter()
                .filter(|(_, j)| j.status.lock().finished.is_some())
                .map(|(id, _)| *id),
        );
        finished.sort_unstable();
        let n = finished.len().saturating_sub(KEEP_FINISHED);
        let forget: Vec<u64> = finished.into_iter().take(n).collect();
        for id in &forget {
            live.remove(id);
            past.remove(id);
        }
        forget
    }

    /// Every job kept, by id.
    pub(crate) fn list(&self) -> Vec<JobReport> {
        let mut all: BTreeMap<u64, JobReport> = self.past.lock().clone();
        for (id, j) in self.live.lock().iter() {
            all.insert(*id, j.report());
        }
        all.into_values().collect()
    }

    /// Job `id` of this run (`not_found` if none is kept).
    pub(crate) fn get(&self, id: u64) -> Result<Arc<Job>, ErrorBody> {
        self.live
            .lock()
            .get(&id)
            .cloned()
            .ok_or_else(|| not_found(id))
    }

    /// Job `id`'s report, of this run or an earlier one.
    pub(crate) fn show(&self, id: u64) -> Result<JobReport, ErrorBody> {
        if let Ok(j) = self.get(id) {
            return Ok(j.report());
        }
        self.past
            .lock()
            .get(&id)
            .cloned()
            .ok_or_else(|| not_found(id))
    }

    /// Asks job `id` to stop; its report (a job that ended stays as it ended).
    pub(crate) fn cancel(&self, id: u64) -> Result<JobReport, ErrorBody> {
        match self.get(id) {
            Ok(j) => {
                j.cancel.store(true, Ordering::Relaxed);
                Ok(j.report())
            }
            Err(_) => self.show(id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(path: &std::path::Path) -> Arc<Namespace> {
        let db = redb::Database::create(path).expect("db");
        Arc::new(Namespace::open(db).expect("namespace"))
    }

    /// Reports are recorded when a job starts and ends; the next run lists them, a job that
    /// was running then as `interrupted`, and its own ids go on after them; only the last
    /// [`KEEP_FINISHED`] are kept.
    #[test]
    fn the_last_jobs_are_listed_after_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("strata.redb");
        {
            let jobs = Arc::new(Jobs::open(ns(&path)).expect("jobs"));
            let done = jobs.register("sync", "/".into());
            done.step(3, 3);
            done.finish(Ok(()));
            let _running = jobs.register("rollback", "/v-flat.vmdk@s".into());
        }
        let jobs = Arc::new(Jobs::open(ns(&path)).expect("jobs"));
        let listed = jobs.list();
        let states: Vec<(u64, &str, &str)> = listed
            .iter()
            .map(|r| (r.id, r.kind.as_str(), r.state.as_str()))
            .collect();
        assert_eq!(
            states,
            [(1, "sync", "done"), (2, "rollback", "interrupted")]
        );
        assert_eq!((listed[0].done, listed[0].total), (3, 3));
        assert!(listed[1]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("stopped")));
        assert_eq!(jobs.show(2).expect("show").state, "interrupted");
        assert_eq!(jobs.cancel(1).expect("cancel").state, "done");
        assert!(jobs.show(99).is_err());
        let third = jobs.register("sync", "/".into());
        assert_eq!(third.report().id, 3);
        for _ in 0..KEEP_FINISHED {
            jobs.register("sync", "/".into()).finish(Ok(()));
        }
        third.finish(Ok(()));
        let kept = jobs.list();
        assert_eq!(kept.len(), KEEP_FINISHED);
        assert!(kept.iter().all(|r| r.id > 3), "the oldest went first");
        drop(jobs);
        let jobs = Jobs::open(ns(&path)).expect("jobs");
        assert_eq!(jobs.list(), kept, "as recorded");
    }
}
