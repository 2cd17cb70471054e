//! Opening a volume, its gate held: a local restart from its SCOs and TLogs when it has local
//! state, a restore from the backend when it has none, or a new volume.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;

use super::backlog::Backlog;
use super::deletion::delete_all;
use super::open_volume::OpenVolume;
use super::pipeline::pipeline;
use super::{volume_id, VolumeRegistry};
use crate::error::{io_err, Error, Result};
use crate::types::Ino;
use crate::volume::Volume;

impl VolumeRegistry {
    /// [`VolumeRegistry::open_or_create`] with the volume's gate held.
    pub(super) fn open_gated(
        &self,
        ino: Ino,
        size_hint: u64,
        fresh: bool,
    ) -> Result<Arc<OpenVolume>> {
        if !fresh && self.is_deleted(ino)? {
            // Deleted (perhaps right now, by another thread): never opened, restored from the
            // backend or created again.
            return Err(Error::Stale);
        }
        let dir = self.local_dir(ino);
        let store = self.store_of(ino)?;
        let id = volume_id(self.fsid, ino);
        let fs = self.fs.clone();
        let tlog_dir = crate::volume::layout::tlog_dir(&dir);
        let has_local = match fs.list(&tlog_dir) {
            Ok(names) => !names.is_empty(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(io_err(tlog_dir.display(), e)),
        };
        // A backend restart cut short (a crash, or the backend failed half-way): its files are
        // only a partial copy of the backend; throw them away and restore again below.
        let has_local = has_local && {
            let interrupted = crate::volume::restore_interrupted(&*fs, &dir)?;
            if interrupted {
                tracing::warn!(ino, "an interrupted backend restart is started again");
            }
            !interrupted
        };
        let vol = if fresh {
            self.remove_local(&dir)?;
            match self.rt.block_on(store.list("", None, 1)) {
                Ok(stale) if !stale.objects.is_empty() => {
                    tracing::warn!(
                        ino,
                        "removing another namespace's volume objects from the backend"
                    );
                    self.rt.block_on(delete_all(&*store))?;
                }
                Ok(_) => {}
                // A VM disk can be created while the backend is down. Should another
                // namespace's objects be there, the pipeline refuses to upload over them (the
                // manifest names another volume) and says so: nothing is overwritten.
                Err(e) => tracing::warn!(
                    ino,
                    error = %e,
                    "backend unreachable: creating the volume without checking its namespace for stale objects"
                ),
            }
            Volume::create(fs, &dir, id, self.cfg.opts, size_hint)?
        } else if has_local {
            Volume::open(fs, &dir, id, self.cfg.opts)?
        } else {
            // No TLog: nothing here was ever durable (a crash during create); start clean.
            self.remove_local(&dir)?;
            let restored = self.rt.block_on(Volume::restore(
                &*store,
                fs.clone(),
                &dir,
                id,
                self.cfg.opts,
            ));
            match restored {
                Ok(v) => {
                    tracing::info!(ino, volume = %id, "volume restored from the backend");
                    v
                }
                Err(Error::NotFound) => {
                    // A clone's map is its own: never replaced by an empty volume.
                    let ns = self.namespace.lock().clone();
                    if let Some(ns) = ns {
                        if ns.reads_ancestors(ino)? {
                            return Err(Error::Io(format!(
                                "clone {ino}: its local state is gone and it was never uploaded \
                                 (it had no manifest yet): its map is lost"
                            )));
                        }
                    }
                    Volume::create(fs, &dir, id, self.cfg.opts, size_hint)?
                }
                Err(e) => return Err(e),
            }
        };
        vol.set_backend(store.clone(), self.rt.clone(), self.cfg.epoch);
        vol.set_cluster_cache(self.clusters.clone());
        if let Some(maps) = &self.maps {
            vol.set_map_cache(maps.clone());
        }
        vol.set_zero_detect(self.cfg.zero_detect);
        vol.set_ancestor_stores(self.ancestor_stores());
        let vol = Arc::new(vol);
        self.cache.vols.lock().insert(ino, Arc::downgrade(&vol));
        let (stop, stopped) = watch::channel(false);
        // Unknown until the first pass measured it: no throttling meanwhile.
        let backlog = Arc::new(Backlog::new(
            self.fs.clone(),
            dir.clone(),
            super::pacing::soft_mark(self.cfg.write_buffer, self.cfg.throttle_start),
        ));
        let task = self.rt.spawn(pipeline(
            vol.clone(),
            store.clone(),
            self.uploads.clone(),
            backlog.clone(),
            self.cache.clone(),
            self.cfg.max_age,
            stopped,
        ));
        let uploaded = vol.uploaded_bytes();
        let data = Arc::new(OpenVolume {
            ino,
            vol,
            store,
            dir,
            stop,
            task: Mutex::new(Some(task)),
            pacer: super::pacing::Pacer::new(
                self.cfg.write_buffer,
                self.cfg.throttle_start,
                self.cfg.stall_timeout,
                uploaded,
            ),
            backlog,
        });
        self.open.lock().insert(ino, data.clone());
        Ok(data)
    }
}
