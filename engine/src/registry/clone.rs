//! Clones in the registry: building a clone's local state from its parent, the reader rows
//! that keep a parent's data while clones read it, and hidden parents.
//!
//! 1. The parent's TLogs up to the snapshot go to the backend (the clone reads the parent's
//!    SCOs from there only).
//! 2. The parent's map as of the snapshot: its own MetaDataStore when that is exactly there
//!    (the pipeline held off meanwhile), else rebuilt from the backend into
//!    `<volumes dir>/<ino>.clone-source/`.
//! 3. The marker `<volumes dir>/<clone ino>.cloning` is made durable, then the clone's
//!    directory is built (`Volume::create_clone`).
//! 4. The caller links the clone into the namespace (inode, name and reader rows in one
//!    transaction) and removes the marker. A start that finds a marker removes the clone's
//!    directory when the namespace has no such inode (the crash came before the link), and
//!    only the marker when it has.

use std::path::PathBuf;
use std::sync::Arc;

use super::{ino_name, volume_id, OpenVolume, VolumeRegistry};
use crate::error::{io_err, Error, Result};
use crate::types::Ino;
use crate::volume::clone::Lineage;
use crate::volume::Volume;

/// Suffix of the marker of a clone being built.
const CLONING_SUFFIX: &str = ".cloning";

/// The inode number inside a volume id (the id is the namespace's fsid, then the ino).
pub(crate) fn ino_of(id: crate::volume::VolumeId) -> Ino {
    let mut b = [0u8; 8];
    b.copy_from_slice(&id.0[8..]);
    u64::from_le_bytes(b)
}

impl VolumeRegistry {
    /// Clones being built (their markers): their objects are on the backend before their
    /// names are in the namespace.
    pub(crate) fn clones_building(&self) -> Result<Vec<Ino>> {
        self.marked(CLONING_SUFFIX)
    }

    fn cloning_marker(&self, ino: Ino) -> PathBuf {
        self.cfg
            .dir
            .join(format!("{}{CLONING_SUFFIX}", ino_name(ino)))
    }

    /// Steps 1 to 3 of the module doc: builds clone `ino` of the open volume `src` at the end
    /// of its TLog `n` (a snapshot's). Returns the clone's lineage and size; the caller links it (step
    /// 4) and calls [`VolumeRegistry::clone_linked`].
    pub(crate) fn build_clone(&self, src: Ino, n: u64, ino: Ino) -> Result<(Lineage, u64)> {
        let parent = self.get(src).ok_or(Error::Stale)?;
        let vol = parent.volume().clone();
        // 1.
        let t0 = std::time::Instant::now();
        self.rt.block_on(vol.backup(&*parent.store, false))?;
        let uploaded = t0.elapsed();
        let lineage = vol.clone_lineage(n)?;
        self.pin_ancestors(&lineage)?;
        let r = self.build_clone_pinned(&vol, &parent, &lineage, n, ino, t0, uploaded);
        if r.is_err() {
            self.unpin_ancestors(&lineage);
        }
        r
    }

    /// Every open ancestor in `lineage` records that a clone reads it up to its last TLog
    /// there (`volume/scrub/readers.rs`): the parent only while a snapshot stands there.
    pub(crate) fn pin_ancestors(&self, lineage: &Lineage) -> Result<()> {
        let all = lineage.ancestors();
        for (i, a) in all.iter().enumerate() {
            if let Some(v) = self.get(ino_of(a.volume)) {
                if let Err(e) = v.volume().pin_reader(a.last_tlog, i + 1 == all.len()) {
                    for b in &all[..i] {
                        if let Some(v) = self.get(ino_of(b.volume)) {
                            let _ = v.volume().unpin_reader(b.last_tlog);
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// A clone with `lineage` reads its ancestors no more (deleted, flattened, or never
    /// built): their reader points go. A failure leaves a point behind, which only keeps
    /// data longer (logged).
    pub(crate) fn unpin_ancestors(&self, lineage: &Lineage) {
        for a in lineage.ancestors() {
            if let Some(v) = self.get(ino_of(a.volume)) {
                if let Err(e) = v.volume().unpin_reader(a.last_tlog) {
                    tracing::warn!(volume = %a.volume, error = %e, "a reader point was not removed");
                }
            }
        }
    }

    /// [`VolumeRegistry::build_clone`] once the ancestors are pinned.
    #[allow(clippy::too_many_arguments)]
    fn build_clone_pinned(
        &self,
        vol: &Arc<Volume>,
        parent: &Arc<OpenVolume>,
        lineage: &Lineage,
        n: u64,
        ino: Ino,
        t0: std::time::Instant,
        uploaded: std::time::Duration,
    ) -> Result<(Lineage, u64)> {
        self.fs
            .create_dir_all(&self.cfg.dir)
            .map_err(|e| io_err(self.cfg.dir.display(), e))?;
        let marker = self.cloning_marker(ino);
        let f = self
            .fs
            .create_new(&marker)
            .map_err(|e| io_err(marker.display(), e))?;
        f.sync_data().map_err(|e| io_err(marker.display(), e))?;
        self.fs
            .sync_dir(&self.cfg.dir)
            .map_err(|e| io_err(self.cfg.dir.display(), e))?;
        let dir = self.local_dir(ino);
        let id = volume_id(self.fsid, ino);
        // 2 and 3: any failure from here on removes the clone's directory and its marker.
        let r = (|| {
            let held = vol.hold_uploads();
            let at = vol.map_at(n)?;
            drop(held);
            if let Some(tx) = at {
                return Volume::create_clone(
                    self.fs.clone(),
                    &dir,
                    id,
                    self.cfg.opts,
                    &tx,
                    lineage,
                );
            }
            let tmp = self.cfg.dir.join(format!("{}.clone-source", ino_name(ino)));
            self.remove_local(&tmp)?;
            let rebuilt = self.rt.block_on(Volume::restore_at(
                &*parent.store,
                self.fs.clone(),
                &tmp,
                vol.id(),
                self.cfg.opts,
                Some(n),
            ));
            let r = rebuilt.and_then(|src| {
                let tx = src.map_at(n)?.ok_or_else(|| {
                    Error::Io(format!("the parent rebuilt as of TLog {n} is not there"))
                })?;
                Volume::create_clone(self.fs.clone(), &dir, id, self.cfg.opts, &tx, lineage)
            });
            if let Err(e) = self.remove_local(&tmp) {
                tracing::warn!(error = %e, "the parent rebuilt for a clone was not removed");
            }
            r
        })();
        match r {
            // Opened again through the registry once linked.
            Ok(v) => {
                tracing::info!(
                    ino,
                    parent = ino_of(vol.id()),
                    upload_ms = uploaded.as_millis() as u64,
                    build_ms = (t0.elapsed() - uploaded).as_millis() as u64,
                    mapped = v.space_used() / crate::volume::format::CLUSTER_SIZE_U64,
                    "clone built"
                );
                Ok((lineage.clone(), v.size()))
            }
            Err(e) => {
                if let Err(e2) = self.clone_abandoned(ino) {
                    tracing::warn!(ino, error = %e2, "a failed clone's directory was not removed");
                }
                Err(e)
            }
        }
    }

    /// Runs `link` (step 4) with the parent's gate held, unless the parent is being deleted
    /// (`Stale`): a deletion of the parent then either comes first and the clone is not linked,
    /// or comes after and finds the clone among the parent's readers (it hides the parent).
    pub(crate) fn link_under_parent<T>(
        &self,
        parent: Ino,
        link: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        self.gated(parent, || {
            if self.is_deleted(parent)? {
                return Err(Error::Stale);
            }
            link()
        })
    }

    /// Step 4's end: the clone is linked; its marker goes.
    pub(crate) fn clone_linked(&self, ino: Ino) -> Result<()> {
        crate::volume::files::remove_durably(&*self.fs, &self.cloning_marker(ino))
    }

    /// A clone that could not be linked: its directory and marker go.
    pub(crate) fn clone_abandoned(&self, ino: Ino) -> Result<()> {
        self.remove_local(&self.local_dir(ino))?;
        self.clone_linked(ino)
    }

    /// At start: clones whose build a crash cut short. `linked` tells whether the namespace
    /// has the inode.
    pub(crate) fn finish_clones(&self, linked: impl Fn(Ino) -> Result<bool>) -> Result<()> {
        let names = match self.fs.list(&self.cfg.dir) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(self.cfg.dir.display(), e)),
        };
        for ino in names
            .iter()
            .filter_map(|n| n.strip_suffix(CLONING_SUFFIX))
            .filter_map(|h| u64::from_str_radix(h, 16).ok())
        {
            if linked(ino)? {
                self.clone_linked(ino)?;
            } else {
                tracing::info!(ino, "removing a clone whose creation a crash cut short");
                self.clone_abandoned(ino)?;
            }
        }
        for d in self.fs.list_dirs(&self.cfg.dir).unwrap_or_default() {
            if d.ends_with(".clone-source") {
                self.remove_local(&self.cfg.dir.join(d))?;
            }
        }
        Ok(())
    }

    /// Where other volumes' backend namespaces and local directories are, for a clone's
    /// reads.
    pub(super) fn ancestor_stores(&self) -> crate::volume::clone::AncestorStores {
        let base = self.base.clone();
        let dir = self.cfg.dir.clone();
        crate::volume::clone::AncestorStores {
            store: Arc::new(move |id| {
                let ns = strata_backend::Namespaced::new(
                    base.clone(),
                    format!("{}{}/", super::VOLUMES_PREFIX, ino_name(ino_of(id))),
                )?;
                Ok(Arc::new(ns) as Arc<dyn strata_backend::ObjectStore>)
            }),
            local_dir: Arc::new(move |id| dir.join(ino_name(ino_of(id)))),
        }
    }
}
