//! `strata fsck`: the backend checked against the namespace, online.
//!
//! 1. Everything committed goes up first (`flush_to_backend`), so that uploads in flight are
//!    not taken for orphans; a failure is noted and the check goes on.
//! 2. The backend is listed once.
//! 3. Every extent a regular file's map names must be there (missing: damage).
//! 4. Every volume and hidden volume with a manifest is restored into a scratch directory under
//!    `Data_Dir` (`registry/fsck.rs`): its manifest, metadata checkpoint and TLogs are read and
//!    verified (a truncated or damaged one: damage); `deep` reads every byte back, each cluster
//!    checked against its hash (a damaged or missing SCO: damage).
//! 5. Orphans: keys outside the known prefixes, objects of a volume the namespace does not
//!    have (and is not deleting or building as a clone), extents no map names and the namespace does not already list
//!    as garbage, namespace images other than the head's.
//! 6. `repair` moves each orphan to `quarantine/<key>` (a copy, then the original deleted), after
//!    a fenced write of the namespace head; damage is only reported. An extent or namespace
//!    image uploaded by this run is never moved: it may be an upload whose record (the map, the
//!    head) lands after the listing.

use std::collections::{BTreeMap, HashSet};

use super::Filesystem;
use crate::error::{Error, Result};
use crate::mgmt::{FsckFinding, FsckReport};
use crate::progress::Progress;
use crate::types::Ino;

/// Where a repair moves orphans.
pub const QUARANTINE_PREFIX: &str = "quarantine/";

/// Keys per listing page.
const PAGE: usize = 1000;

/// How `strata fsck` runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct FsckOptions {
    /// Read every cluster of every volume back.
    pub deep: bool,
    /// Move orphans to `quarantine/`.
    pub repair: bool,
}

fn finding(key: impl Into<String>, what: impl Into<String>) -> FsckFinding {
    FsckFinding {
        key: key.into(),
        what: what.into(),
    }
}

impl Filesystem {
    /// Steps 1 to 6; `p` counts volumes.
    pub fn fsck_with(&self, opts: FsckOptions, p: &dyn Progress) -> Result<FsckReport> {
        let mut rep = FsckReport {
            deep: opts.deep,
            ..FsckReport::default()
        };
        if let Err(e) = self.flush_to_backend() {
            rep.notes.push(format!(
                "the sync before the check failed ({e}): objects uploaded meanwhile may show \
                 as orphans"
            ));
        }
        let store = self.side.images.store().clone();
        let rt = self.runtime()?;
        let mut keys: BTreeMap<String, u64> = BTreeMap::new();
        let mut token = None;
        loop {
            let page = rt.block_on(store.list("", token.as_deref(), PAGE))?;
            keys.extend(page.objects.into_iter().map(|o| (o.key, o.size)));
            match page.next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        rep.objects = keys.len() as u64;
        // Volumes being deleted or cloned, read before the namespace: a clone linked after
        // this read is in the view, one linked after the view still had its marker here.
        let mut unlisted: HashSet<Ino> = self.volumes.pending_deletions()?.into_iter().collect();
        unlisted.extend(self.volumes.clones_building()?);
        let view = self.ns.fsck_view()?;
        // Step 3.
        rep.files = view.files.len() as u64;
        let named: HashSet<(Ino, u64, u64)> = view.extents.iter().copied().collect();
        for &(ino, idx, gen) in &view.extents {
            let key = format!(
                "{}{}",
                super::FILES_PREFIX,
                strata_filedriver::extent_key(ino, idx, gen)
            );
            if !keys.contains_key(&key) {
                rep.damage
                    .push(finding(key, format!("missing: extent {idx} of file {ino}")));
            }
        }
        // Step 4.
        let volumes: HashSet<Ino> = view.volumes.iter().copied().collect();
        let scratch = self.config.data_dir.join("fsck-scratch");
        let total = view.volumes.len() as u64;
        for (i, &ino) in view.volumes.iter().enumerate() {
            p.step(i as u64, total);
            if p.cancelled() {
                return Err(crate::progress::cancelled_error());
            }
            let prefix = format!("{}{ino:016x}/", crate::registry::VOLUMES_PREFIX);
            match self
                .volumes
                .check_volume(ino, opts.deep, &scratch.join(format!("{ino:016x}")), p)
            {
                Ok(Some(bytes)) => {
                    rep.volumes += 1;
                    rep.bytes_read += bytes;
                }
                Ok(None) => rep.notes.push(format!(
                    "volume {ino}: no manifest on the backend yet (nothing uploaded)"
                )),
                Err(e) if p.cancelled() => return Err(e),
                Err(e) => {
                    rep.volumes += 1;
                    rep.damage.push(finding(prefix, e.to_string()));
                }
            }
        }
        p.step(total, total);
        let _ = std::fs::remove_dir_all(&scratch);
        // Step 5.
        let head_image: HashSet<String> = self.side.images.named_keys().into_iter().collect();
        let mut movable = Vec::new();
        for key in keys.keys() {
            if let Some(why) = orphan(key, &volumes, &unlisted, &view, &named, &head_image) {
                // An extent or image of this run may be an upload whose record is on its way
                // (after the listing): reported, never moved.
                let ours = key_epoch(key).is_some_and(|e| e >= self.owner.epoch);
                if ours {
                    rep.orphans.push(finding(
                        key.clone(),
                        format!("{why} (uploaded by this run: perhaps in flight; left in place)"),
                    ));
                } else {
                    movable.push(key.clone());
                    rep.orphans.push(finding(key.clone(), why));
                }
            }
        }
        // Step 6.
        if opts.repair && !movable.is_empty() {
            self.side.images.fence()?;
            for key in &movable {
                let moved = rt.block_on(async {
                    let (bytes, _) = store.get(key).await?;
                    store
                        .put(&format!("{QUARANTINE_PREFIX}{key}"), bytes)
                        .await?;
                    store.delete(key).await
                });
                match moved {
                    Ok(()) => rep.quarantined += 1,
                    Err(e) => rep.notes.push(format!("{key}: not quarantined: {e}")),
                }
            }
        }
        Ok(rep)
    }

    fn runtime(&self) -> Result<&tokio::runtime::Runtime> {
        self.rt
            .as_ref()
            .ok_or_else(|| Error::Io("the engine is closing".into()))
    }
}

/// The owner epoch of the run that uploaded `key`, for the kinds a run uploads while fsck
/// looks (file extents, namespace images).
fn key_epoch(key: &str) -> Option<u64> {
    if let Some(e) = crate::ns_backend::image_key_epoch(key) {
        return Some(e);
    }
    let name = key.strip_prefix(super::FILES_PREFIX)?;
    let (_, _, gen) = strata_filedriver::parse_extent_key(name)?;
    Some(gen >> super::GEN_EPOCH_SHIFT)
}

/// Why `key` is an orphan, if it is one (step 5).
fn orphan(
    key: &str,
    volumes: &HashSet<Ino>,
    unlisted: &HashSet<Ino>,
    view: &crate::namespace::FsckView,
    named: &HashSet<(Ino, u64, u64)>,
    head_image: &HashSet<String>,
) -> Option<String> {
    if key == crate::owner::OWNER_KEY
        || key == crate::ns_backend::HEAD_KEY
        || key.starts_with(strata_backend::probe::PROBE_PREFIX)
        || key.starts_with(QUARANTINE_PREFIX)
    {
        return None;
    }
    if crate::ns_backend::image_key_epoch(key).is_some() {
        return (!head_image.contains(key))
            .then(|| "a namespace image or log the head does not name".to_string());
    }
    if let Some(name) = key.strip_prefix(super::FILES_PREFIX) {
        let Some((ino, idx, gen)) = strata_filedriver::parse_extent_key(name) else {
            return Some("not a file extent's name".into());
        };
        if named.contains(&(ino, idx, gen)) || view.known_garbage.contains(&(ino, idx, gen)) {
            return None;
        }
        return Some(if view.files.contains(&ino) {
            format!("extent {idx} of file {ino}, generation {gen:#x}: no map names it")
        } else {
            format!("an extent of {ino}, which is not a file")
        });
    }
    if let Some(rest) = key.strip_prefix(crate::registry::VOLUMES_PREFIX) {
        let ino = rest
            .split_once('/')
            .and_then(|(i, _)| (i.len() == 16).then(|| u64::from_str_radix(i, 16).ok()))
            .flatten();
        return match ino {
            Some(i) if volumes.contains(&i) || unlisted.contains(&i) => None,
            Some(i) => Some(format!("an object of {i}, which is not a volume")),
            None => Some("not in a volume's namespace".into()),
        };
    }
    Some("outside every prefix the gateway writes".into())
}
