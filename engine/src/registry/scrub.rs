//! Scrub and GC passes over the volumes (`volume/scrub/`): on demand (`strata scrub`, a job)
//! and in the background every `Scrub_Interval` ([`Scrubber`]). A pass over every volume
//! opens those with local state (a volume opens lazily otherwise); hidden volumes (removed,
//! still read by clones) have no local state and are not scrubbed.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::VolumeRegistry;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::types::Ino;
use crate::volume::scrub::{Readers, ScrubReport};

impl VolumeRegistry {
    /// One pass over volume `ino` (opened if it has local state).
    pub(crate) fn scrub_volume(&self, ino: Ino, p: &dyn Progress) -> Result<ScrubReport> {
        let v = match self.get(ino) {
            Some(v) => v,
            None if self.local_inos()?.contains(&ino) && !self.is_deleted(ino)? => {
                self.open_or_create(ino, 0, false)?
            }
            None => return Err(Error::Stale),
        };
        let readers = self.readers_of(ino, v.volume().id())?;
        // Its clients are waiting while their writes are paced for the upload.
        let vol = v.volume();
        let waiting = || v.backlog.above_soft(vol.uploaded_bytes());
        let r = vol.scrub_with(&self.cfg.scrub, &readers, p, &waiting)?;
        if r.scos_compacted > 0 || r.objects_deleted > 0 {
            tracing::info!(
                ino,
                scos = r.scos_compacted,
                reclaimed = r.bytes_reclaimed,
                deleted = r.objects_deleted,
                "scrub pass"
            );
        }
        Ok(r)
    }

    /// The clones reading volume `ino` (id `id`), by the namespace, with the TLog each reads
    /// it up to (from the clone's lineage); `Unknown` when a reader has no local state to
    /// read its lineage from.
    fn readers_of(&self, ino: Ino, id: crate::volume::format::VolumeId) -> Result<Readers> {
        let Some(ns) = self.namespace.lock().clone() else {
            return Ok(Readers::Recorded);
        };
        let mut points = std::collections::BTreeMap::new();
        let local = self.local_inos()?;
        for r in ns.clone_readers(ino)? {
            let v = match self.get(r) {
                Some(v) => v,
                None if local.contains(&r) && !self.is_deleted(r)? => {
                    self.open_or_create(r, 0, false)?
                }
                None => return Ok(Readers::Unknown),
            };
            let lineage = v.volume().lineage();
            if let Some(a) = lineage.ancestors().iter().find(|a| a.volume == id) {
                *points.entry(a.last_tlog).or_insert(0) += 1;
            }
        }
        Ok(Readers::Known(points))
    }

    /// One pass over every volume with local state; `p` counts volumes. A volume whose pass
    /// fails is logged and the others go on; the first error is returned at the end.
    pub(crate) fn scrub_all(&self, p: &dyn Progress) -> Result<ScrubReport> {
        let inos = self.local_inos()?;
        let mut total = ScrubReport::default();
        let mut first_err = None;
        for (i, ino) in inos.iter().enumerate() {
            if p.cancelled() {
                return Err(crate::progress::cancelled_error());
            }
            p.step(i as u64, inos.len() as u64);
            if self.is_deleted(*ino)? {
                continue;
            }
            match self.scrub_volume(*ino, &CancelOnly(p)) {
                Ok(r) => {
                    total.scos_compacted += r.scos_compacted;
                    total.bytes_reclaimed += r.bytes_reclaimed;
                    total.objects_deleted += r.objects_deleted;
                    total.bytes_moved += r.bytes_moved;
                }
                Err(e) => {
                    tracing::warn!(ino, error = %e, "scrub pass failed");
                    first_err.get_or_insert(e);
                }
            }
        }
        p.step(inos.len() as u64, inos.len() as u64);
        match first_err {
            Some(e) => Err(e),
            None => Ok(total),
        }
    }
}

/// Passes a cancel on, not the steps (the outer progress counts volumes).
struct CancelOnly<'a>(&'a dyn Progress);

impl Progress for CancelOnly<'_> {
    fn step(&self, _: u64, _: u64) {}
    fn cancelled(&self) -> bool {
        self.0.cancelled()
    }
}

/// Cancelled once the scrubber is told to stop.
struct Stopping<'a>(&'a Mutex<bool>);

impl Progress for Stopping<'_> {
    fn step(&self, _: u64, _: u64) {}
    fn cancelled(&self) -> bool {
        *self.0.lock()
    }
}

/// The background scrubber: a pass over every volume every `Scrub_Interval`; stopped (and
/// joined) on drop.
#[derive(Debug)]
pub(crate) struct Scrubber {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Scrubber {
    /// Starts the thread (none when `Scrub_Interval` is zero).
    /// `extra` runs after each pass over the volumes (the sweep of regular files' extents).
    pub(crate) fn start(
        volumes: Arc<VolumeRegistry>,
        extra: ExtraPass,
    ) -> Result<Option<Scrubber>> {
        let every = volumes.cfg.scrub_interval;
        if every.is_zero() {
            return Ok(None);
        }
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("strata-scrub".into())
            .spawn(move || run(&volumes, &*extra, &flag, every))
            .map_err(|e| crate::error::io_err("starting the scrubber", e))?;
        Ok(Some(Scrubber {
            stop,
            thread: Some(thread),
        }))
    }
}

impl Drop for Scrubber {
    fn drop(&mut self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("the scrubber thread panicked");
            }
        }
    }
}

/// More work for each background pass, after the volumes (cancelled as they are).
pub(crate) type ExtraPass = Box<dyn Fn(&dyn Progress) -> Result<()> + Send>;

fn run(
    volumes: &VolumeRegistry,
    extra: &dyn Fn(&dyn Progress) -> Result<()>,
    stop: &(Mutex<bool>, Condvar),
    every: Duration,
) {
    loop {
        {
            let mut stopped = stop.0.lock();
            if !*stopped {
                stop.1.wait_for(&mut stopped, every);
            }
            if *stopped {
                return;
            }
        }
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let r = volumes.scrub_all(&Stopping(&stop.0));
            extra(&Stopping(&stop.0)).and(r)
        }));
        match r {
            Ok(Ok(_)) => {}
            Ok(Err(_)) if *stop.0.lock() => return,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "background scrub pass failed; next in Scrub_Interval")
            }
            Err(_) => tracing::error!("background scrub pass panicked"),
        }
    }
}
