//! Deleting a volume everywhere, in an order a crash can resume: a durable marker first, then
//! its local files, then (in the background) its backend objects, then the marker.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_backend::ObjectStore;

use super::{ino_name, VolumeRegistry};
use crate::error::{io_err, Error, Result};
use crate::types::Ino;
use crate::volume::LocalFs;

impl VolumeRegistry {
    /// Deletes volume `ino` everywhere: stops its pipeline, removes its local directory and
    /// every object of its backend namespace. Works whether or not it is open. Holds the
    /// volume's gate throughout, so no other thread opens (or restores) it meanwhile.
    ///
    /// 1. A durable marker, first: from here on the volume is deleted. Nothing opens, restores
    ///    or re-creates it ([`VolumeRegistry::open_or_create`] refuses it), and a crash resumes the
    ///    deletion at the next start.
    /// 2. Out of the registry; its pipeline is stopped and a pass in flight waited for.
    /// 3. Its local files go (the volume is halted: no later call uploads anything), and a
    ///    flush in flight (`strata sync --wait`) is waited for, so that nothing reaches the
    ///    backend after step 4 starts.
    /// 4. Once the namespace image on the backend no longer names it (a restore must never
    ///    show a volume whose objects are gone), its backend objects go in the background (a large volume has thousands: deleting
    ///    them inside the client's REMOVE would take minutes); the marker goes last.
    pub(crate) fn delete(&self, ino: Ino) -> Result<()> {
        self.gated(ino, || self.delete_gated(ino))
    }

    /// [`VolumeRegistry::delete`] with the volume's gate held. A volume that clones still
    /// read is hidden instead: recorded as such (durably, first), its local files removed, its
    /// backend objects kept until the last clone reading them is deleted or flattened. Either
    /// way a deleted clone reads its ancestors no more: a hidden one nobody reads now is
    /// deleted.
    fn delete_gated(&self, ino: Ino) -> Result<()> {
        let ns = self.namespace.lock().clone();
        let lineage = self.get(ino).map(|v| v.volume().lineage());
        let hide = match &ns {
            Some(ns) => !ns.clone_readers(ino)?.is_empty(),
            None => false,
        };
        if hide {
            if let Some(ns) = &ns {
                ns.hide_volume(ino)?;
            }
            tracing::info!(
                ino,
                "volume removed while clones read it: its data stays, hidden"
            );
        } else {
            self.mark_deleted(ino)?;
        }
        self.remove_everywhere(ino, !hide)?;
        if let Some(l) = &lineage {
            self.unpin_ancestors(l);
        }
        if let Some(ns) = &ns {
            for a in ns.drop_reader(ino)? {
                self.delete_hidden(a)?;
            }
        }
        Ok(())
    }

    /// Deletes hidden volume `ino`, which no clone reads any more: its deletion marker first
    /// (durably), then it is no longer hidden, then its backend objects go in the background.
    pub(crate) fn delete_hidden(&self, ino: Ino) -> Result<()> {
        tracing::info!(ino, "a hidden volume no clone reads any more is deleted");
        self.mark_deleted(ino)?;
        if let Some(ns) = self.namespace.lock().clone() {
            ns.unhide(ino)?;
        }
        let store = self.store_of(ino)?;
        self.spawn_backend_delete(ino, store);
        Ok(())
    }

    /// Step 1: the durable deletion marker.
    fn mark_deleted(&self, ino: Ino) -> Result<()> {
        let marker = self.deleting_marker(ino);
        self.fs
            .create_dir_all(&self.cfg.dir)
            .map_err(|e| io_err(self.cfg.dir.display(), e))?;
        match self.fs.create_new(&marker) {
            Ok(f) => f.sync_data().map_err(|e| io_err(marker.display(), e))?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(marker.display(), e)),
        }
        self.fs
            .sync_dir(&self.cfg.dir)
            .map_err(|e| io_err(self.cfg.dir.display(), e))
    }

    /// Steps 2 to 4 (the backend's part only with `backend`).
    fn remove_everywhere(&self, ino: Ino, backend: bool) -> Result<()> {
        // Deleted from here on (not before: a failed marker leaves the volume as it was).
        self.deleted.lock().insert(ino);
        let data = self.open.lock().remove(&ino);
        self.cache.vols.lock().remove(&ino);
        if let Some(d) = &data {
            d.stop.send_replace(true);
            let task = d.task.lock().take();
            if let Some(t) = task {
                // Wait for a pass in flight: it must not upload after the deletion below.
                let _ = self.rt.block_on(t);
            }
            d.vol.destroy()?;
            self.rt.block_on(d.vol.backend_idle());
        }
        let dir = data
            .as_ref()
            .map_or_else(|| self.local_dir(ino), |d| d.dir.clone());
        let store = match &data {
            Some(d) => d.store.clone(),
            None => self.store_of(ino)?,
        };
        self.remove_local(&dir)?;
        if backend {
            self.spawn_backend_delete(ino, store);
        }
        Ok(())
    }

    /// `<volumes dir>/<ino>.deleting`: the volume is deleted, its backend objects not all yet.
    pub(super) fn deleting_marker(&self, ino: Ino) -> PathBuf {
        self.cfg
            .dir
            .join(format!("{}{DELETING_SUFFIX}", ino_name(ino)))
    }

    /// Deletes every object of a deleted volume's namespace on the runtime, then its marker.
    /// A failure is logged and left to [`VolumeRegistry::finish_deletions`] or the next start.
    fn spawn_backend_delete(&self, ino: Ino, store: Arc<dyn ObjectStore>) {
        let fs = self.fs.clone();
        let images = self.images.lock().clone();
        let covering = images.as_ref().map(|i| i.want_image());
        let marker = self.deleting_marker(ino);
        // A job of its own, so that `strata job list` shows it (objects deleted so far).
        let job = self
            .jobs
            .register("delete", format!("volume {}", ino_name(ino)));
        let task = self.rt.spawn(async move {
            if let (Some(i), Some(c)) = (&images, covering) {
                if !i.wait_for_image(c).await {
                    tracing::warn!(ino, "the volume's backend objects stay: another gateway took the backend over");
                    return;
                }
            }
            let r = match delete_all_with(&*store, &*job).await {
                Err(e) => {
                    tracing::warn!(ino, error = %e, "deleting a volume's backend objects failed; retried at the next sync or start");
                    Err(e)
                }
                Ok(()) => tokio::task::spawn_blocking(move || remove_marker(&*fs, &marker))
                    .await
                    .map_err(|e| Error::Io(e.to_string()))
                    .and_then(|r| r)
                    .inspect_err(|e| {
                        tracing::warn!(ino, error = %e, "removing a volume's deletion marker failed")
                    }),
            };
            let r = r.map_err(|e| crate::mgmt::ErrorBody {
                kind: crate::mgmt::error_kind(&e),
                message: format!("deleting volume {}: {e}", ino_name(ino)),
            });
            // Recording the report commits to the namespace: off the runtime's workers.
            let _ = tokio::task::spawn_blocking(move || job.finish(r)).await;
        });
        self.deletions.lock().push(task);
    }

    /// Inos of deleted volumes whose backend objects are not all deleted yet (their markers).
    pub(crate) fn pending_deletions(&self) -> Result<Vec<Ino>> {
        self.marked(DELETING_SUFFIX)
    }

    /// Inos of the markers `<ino><suffix>` in the volumes directory.
    pub(super) fn marked(&self, suffix: &str) -> Result<Vec<Ino>> {
        let names = match self.fs.list(&self.cfg.dir) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(self.cfg.dir.display(), e)),
        };
        Ok(names
            .iter()
            .filter_map(|n| n.strip_suffix(suffix))
            .filter_map(|h| u64::from_str_radix(h, 16).ok())
            .collect())
    }

    /// At start: resumes, in the background, the deletions an earlier run left unfinished.
    pub(crate) fn resume_deletions(&self) -> Result<()> {
        for ino in self.pending_deletions()? {
            tracing::info!(ino, "resuming the deletion of a volume's backend objects");
            let store = self.store_of(ino)?;
            self.spawn_backend_delete(ino, store);
        }
        Ok(())
    }

    /// Returns once every deleted volume's backend objects are gone: waits for the background
    /// deletions, then deletes (here, synchronously) whatever a failed one left.
    pub(crate) fn finish_deletions(&self) -> Result<()> {
        // What is running or pending now (a volume removed after this waits for its own
        // image), then an image of the namespace as it is now: those wait for no later one (a
        // backend that fails it leaves them all for later).
        let running = std::mem::take(&mut *self.deletions.lock());
        let pending = self.pending_deletions()?;
        let images = self.images.lock().clone();
        if let Some(i) = &images {
            i.want_image();
            if let Err(e) = i.step(true) {
                self.deletions.lock().extend(running);
                return Err(e);
            }
        }
        for t in running {
            // A failed task leaves its marker: handled below.
            let _ = self.rt.block_on(t);
        }
        for ino in pending {
            if !self.pending_deletions()?.contains(&ino) {
                continue;
            }
            let store = self.store_of(ino)?;
            self.rt.block_on(delete_all(&*store))?;
            remove_marker(&*self.fs, &self.deleting_marker(ino))?;
        }
        Ok(())
    }
}

/// Suffix of the marker of a volume deleted from the namespace whose backend objects are not
/// all deleted yet.
const DELETING_SUFFIX: &str = ".deleting";

/// Removes a deletion marker (durably); a marker already gone is fine.
pub(super) fn remove_marker(fs: &dyn LocalFs, marker: &Path) -> Result<()> {
    crate::volume::files::remove_durably(fs, marker)
}

/// Deletes every object of a store (a volume's namespace).
pub(super) async fn delete_all(store: &dyn ObjectStore) -> Result<()> {
    delete_all_with(store, &crate::progress::NoProgress).await
}

/// [`delete_all`], reporting the objects deleted so far to `p`.
async fn delete_all_with(store: &dyn ObjectStore, p: &dyn crate::progress::Progress) -> Result<()> {
    let mut last: Option<Vec<String>> = None;
    let mut deleted = 0u64;
    loop {
        // Deleting as we go: every page starts at the beginning again.
        let page = store.list("", None, 1000).await?;
        if page.objects.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = page.objects.into_iter().map(|o| o.key).collect();
        // A store that answers deletes without deleting must not keep us here for ever.
        if last.as_ref() == Some(&keys) {
            return Err(crate::Error::Io(format!(
                "the backend still lists {} after deleting it",
                keys[0]
            )));
        }
        store.delete_many(&keys).await?;
        deleted += keys.len() as u64;
        p.step(deleted, deleted);
        last = Some(keys);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use strata_backend::{ListPage, MemStore, ObjectMeta, PutMode};

    /// A store that answers deletes without deleting anything.
    #[derive(Debug, Default)]
    struct DeletesNothing(MemStore);

    #[async_trait::async_trait]
    impl ObjectStore for DeletesNothing {
        async fn put_opts(
            &self,
            key: &str,
            data: Bytes,
            mode: PutMode,
        ) -> strata_backend::Result<ObjectMeta> {
            self.0.put_opts(key, data, mode).await
        }
        async fn get(&self, key: &str) -> strata_backend::Result<(Bytes, ObjectMeta)> {
            self.0.get(key).await
        }
        async fn get_range(
            &self,
            key: &str,
            range: std::ops::Range<u64>,
        ) -> strata_backend::Result<Bytes> {
            self.0.get_range(key, range).await
        }
        async fn head(&self, key: &str) -> strata_backend::Result<ObjectMeta> {
            self.0.head(key).await
        }
        async fn delete(&self, _key: &str) -> strata_backend::Result<()> {
            Ok(())
        }
        async fn list(
            &self,
            prefix: &str,
            token: Option<&str>,
            max: usize,
        ) -> strata_backend::Result<ListPage> {
            self.0.list(prefix, token, max).await
        }
    }

    #[test]
    fn deleting_everything_from_a_store_that_deletes_nothing_ends_in_an_error() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let store = DeletesNothing::default();
        let err = rt.block_on(async {
            store
                .put("sco/0001", Bytes::from_static(b"x"))
                .await
                .expect("put");
            delete_all(&store).await.expect_err("no progress")
        });
        assert!(err.to_string().contains("still lists sco/0001"), "{err}");
        let mem = MemStore::new();
        rt.block_on(async {
            for i in 0..3 {
                mem.put(&format!("k{i}"), Bytes::new()).await.expect("put");
            }
            delete_all(&mem).await.expect("a store that deletes");
        });
        assert!(mem.is_empty());
    }
}
