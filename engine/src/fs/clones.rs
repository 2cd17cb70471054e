//! Clones, templates and flatten of volumes (the work is the volume's, `volume/clone/`, and
//! the registry's, `registry/clone.rs`; the namespace keeps which volume reads which).

use super::Filesystem;
use crate::error::{Error, Result};
use crate::progress::{NoProgress, Progress};
use crate::registry::ino_of;
use crate::types::{Attr, Cred, Handle, Ino, Snapshot, VolumeSharing};

/// What a volume is in a chain of clones (for listings).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloneInfo {
    /// The name of the snapshot a template was made at (`None`: not a template).
    pub template: Option<String>,
    /// The volumes whose data it reads, oldest first, as (ino, their last TLog it reads);
    /// empty for a volume that is no clone (or was flattened).
    pub ancestors: Vec<(Ino, u64)>,
}

/// A volume removed from the namespace whose data stays because clones read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HiddenVolume {
    /// Its inode number (its backend namespace is `volumes/<ino as 16 hex>/`).
    pub ino: Ino,
    /// When it was removed, in seconds since the Unix epoch.
    pub removed_secs: i64,
    /// The volumes reading it.
    pub readers: Vec<Ino>,
}

impl Filesystem {
    /// Clones volume `src` as `dir/name` (the name must make it a volume) at its snapshot
    /// `snapshot`, or, without one, at a template's snapshot, or at a snapshot taken now for
    /// the purpose (named `clone-<seconds>.<nanoseconds>`). Nothing is copied: the clone reads
    /// its parent's data as of the snapshot and writes into its own backend namespace. The
    /// parent's data up to the snapshot is uploaded first (the clone reads it from the
    /// backend). A crash at any step leaves no clone, or the whole one. Returns the clone's
    /// attributes and the snapshot it was made at.
    pub fn volume_clone(
        &self,
        src: Handle,
        snapshot: Option<&str>,
        dir: Handle,
        name: &[u8],
    ) -> Result<(Attr, Snapshot)> {
        if !self.is_volume_name(name) {
            return Err(Error::Invalid(format!(
                "{}: not a volume name: it must end in one of {}",
                String::from_utf8_lossy(name),
                self.config.volume_suffixes.join(", ")
            )));
        }
        match self.ns.lookup(dir, name) {
            Ok(_) => return Err(Error::Exists),
            Err(Error::NotFound) => {}
            Err(e) => return Err(e),
        }
        let v = self.snapshot_volume(src)?;
        let vol = v.volume();
        let snap = match (snapshot, vol.template_snapshot()) {
            (Some(s), _) => vol.snapshot_info(s)?,
            (None, Some(id)) => vol
                .snapshot_list()?
                .into_iter()
                .find(|s| s.record.id == id)
                .ok_or_else(|| Error::Io(format!("the template's snapshot {id} is gone")))?,
            (None, None) => {
                let t = crate::namespace::now();
                vol.snapshot_create(&format!("clone-{}.{:09}", t.secs, t.nsecs), Vec::new())?
            }
        };
        let ino = self.ns.reserve_ino()?;
        let (lineage, size) = self.volumes.build_clone(src.ino, snap.record.tlog, ino)?;
        let ancestors: Vec<Ino> = lineage
            .ancestors()
            .iter()
            .map(|a| ino_of(a.volume))
            .collect();
        let linked = self.volumes.link_under_parent(src.ino, || {
            self.ns
                .link_clone(dir, name, ino, (0o644, Cred::default(), size), &ancestors)
        });
        let inode = match linked {
            Ok(i) => i,
            Err(e) => {
                if let Err(e2) = self.volumes.clone_abandoned(ino) {
                    tracing::warn!(ino, error = %e2, "a clone that could not be linked was not removed; the next start removes it");
                }
                return Err(e);
            }
        };
        if let Err(e) = self.volumes.clone_linked(ino) {
            tracing::warn!(ino, error = %e, "a clone's marker was not removed; the next start removes it");
        }
        // Opened now: its pipeline uploads its first checkpoint and manifest.
        self.open_volume(ino, &inode)?;
        self.changed(dir);
        let attr = self.attr_of(ino, &inode);
        Ok((attr, super::snapshots::report(snap)))
    }

    /// Makes volume `h` a template: from now on writes and size changes are refused with the
    /// read-only error, and clones are made at its snapshot `template` (taken now). A template
    /// stays one. `Exists` when a snapshot of that name exists.
    pub fn volume_template(&self, h: Handle) -> Result<Snapshot> {
        let v = self.snapshot_volume(h)?;
        let s = v.volume().make_template("template")?;
        // Everything up to the template's snapshot goes to the backend at once, so clones
        // are made without waiting for it.
        self.volumes.flush(&v)?;
        self.changed(h);
        Ok(super::snapshots::report(s))
    }

    /// Makes clone `h` independent: what it reads from its ancestors is copied into its own
    /// data and uploaded; then it reads nothing of them (their data becomes garbage once no
    /// clone reads it). Returns the clusters copied.
    pub fn volume_flatten(&self, h: Handle) -> Result<u64> {
        self.volume_flatten_with(h, &NoProgress)
    }

    /// [`Filesystem::volume_flatten`], reporting the clusters looked at to `p`; a cancel
    /// leaves a clone that reads the same (what was copied stays copied).
    pub fn volume_flatten_with(&self, h: Handle, p: &dyn Progress) -> Result<u64> {
        let v = self.snapshot_volume(h)?;
        let before = v.volume().lineage();
        let done = v.volume().flatten(p)?;
        if v.volume().lineage().is_empty() {
            if !before.is_empty() {
                self.volumes.unpin_ancestors(&before);
            }
            for a in self.ns.drop_reader(h.ino)? {
                self.volumes.delete_hidden(a)?;
            }
        }
        Ok(done.clusters)
    }

    /// What volume `h` is in a chain of clones.
    pub fn volume_clone_info(&self, h: Handle) -> Result<CloneInfo> {
        let v = self.snapshot_volume(h)?;
        let vol = v.volume();
        let template = match vol.template_snapshot() {
            Some(id) => vol
                .snapshot_list()?
                .into_iter()
                .find(|s| s.record.id == id)
                .map(|s| s.record.name),
            None => None,
        };
        Ok(CloneInfo {
            template,
            ancestors: vol
                .lineage()
                .ancestors()
                .iter()
                .map(|a| (ino_of(a.volume), a.last_tlog))
                .collect(),
        })
    }

    /// What volume `h` shares with the volumes it was cloned from: its mapped bytes, and of
    /// them those in its own SCOs (counted over its whole map, a window at a time).
    pub fn volume_sharing(&self, h: Handle) -> Result<VolumeSharing> {
        let v = self.snapshot_volume(h)?;
        let s = v.volume().sharing()?;
        let cluster = crate::volume::format::CLUSTER_SIZE_U64;
        Ok(VolumeSharing {
            used_bytes: s.mapped * cluster,
            unshared_bytes: s.own * cluster,
        })
    }

    /// Volumes removed from the namespace whose data stays because clones read it.
    pub fn hidden_volumes(&self) -> Result<Vec<HiddenVolume>> {
        Ok(self
            .ns
            .hidden_volumes()?
            .into_iter()
            .map(|(ino, removed_secs, readers)| HiddenVolume {
                ino,
                removed_secs,
                readers,
            })
            .collect())
    }

    /// Tells the NFS server that `h` changed other than through an NFS operation.
    pub(super) fn changed(&self, h: Handle) {
        let hook = self.change_hook.0.lock().clone();
        if let Some(hook) = hook {
            hook(h);
        }
    }
}
