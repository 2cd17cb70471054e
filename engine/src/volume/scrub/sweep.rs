//! Metadata checkpoint objects nothing references: the pages of a checkpoint whose manifest
//! PUT failed or never came (a crash), and superseded copies whose deletion a crash cut short.
//! With the upload pipeline held off (no checkpoint is being written), and only when the
//! manifest on the backend names the very checkpoint the MetaDataStore records (a crash after
//! the manifest PUT and before its local record leaves them apart until the next backup), every
//! object under `mds/` other than that checkpoint's index, SCO table and the pages its index
//! names is garbage.

use std::collections::{HashMap, HashSet};

use crate::error::Result;
use crate::volume::backend::BackendState;
use crate::volume::format::{parse_sco_key, parse_tlog_key, Generation};
use crate::volume::mds::checkpoint::{checkpoint_id, index_key, page_key, scos_key};
use crate::volume::state::{Remote, Volume};

use super::gc::{list_keys, sco_garbage};
use super::unix_now;

/// Where checkpoint objects are, in a volume's namespace.
pub(super) const MDS_PREFIX: &str = "mds/";

impl Volume {
    /// The checkpoint objects in use, if the manifest and the MetaDataStore agree on the
    /// newest checkpoint (`None`: they do not, or the manifest was not read yet this run). The
    /// caller holds the pipeline off (`g`).
    pub(super) fn checkpoint_refs(&self, g: &BackendState) -> Result<Option<HashSet<String>>> {
        let Some(m) = g.manifest.as_ref() else {
            return Ok(None);
        };
        let snap = self.mds.begin_snapshot()?;
        let local = snap.prev_checkpoint()?;
        let named = match m.checkpoint {
            None => 0,
            Some((n, epoch)) => checkpoint_id(n, epoch).unwrap_or(u64::MAX),
        };
        if named != local {
            return Ok(None);
        }
        let mut refs = HashSet::new();
        if local != 0 {
            refs.insert(index_key(local));
            refs.insert(scos_key(local));
            for (page, id) in snap.old_pages()? {
                refs.insert(page_key(id, page));
            }
        }
        Ok(Some(refs))
    }

    /// Marks the checkpoint objects nothing references as garbage (see the module doc).
    pub(super) fn sweep_checkpoints(&self, remote: &Remote) -> Result<()> {
        let g = self.hold_uploads();
        let Some(refs) = self.checkpoint_refs(&g)? else {
            return Ok(());
        };
        let stray: Vec<String> = list_keys(remote, MDS_PREFIX)?
            .into_iter()
            .filter(|k| !refs.contains(k))
            .collect();
        drop(g);
        if !stray.is_empty() {
            tracing::info!(volume = %self.id, objects = stray.len(), "scrub: checkpoint objects nothing references are garbage");
        }
        self.mds.gc_mark(&stray, unix_now())
    }
}

impl Volume {
    /// Once per run (the first pass): SCO and TLog objects a crash left behind are marked
    /// garbage (see `gc.rs`, [`sco_garbage`]): copies a crashed upload put under an epoch the
    /// manifest does not give their TLog, originals and older compacted generations a backend
    /// restart forgot. With the pipeline held off; only SCOs of the SCO table and TLogs
    /// applied are looked at (anything newer may be on its way up).
    pub(super) fn sweep_uploads(&self, remote: &Remote) -> Result<()> {
        if self.swept.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        let g = self.hold_uploads();
        let base = self.lineage.read().base_tlog();
        let marked = self.marked()?;
        let scos = list_keys(remote, "sco/")?;
        let mut gens: HashMap<(u64, u64), Vec<Generation>> = HashMap::new();
        // A marked object never counts as the newest compacted one (see `still_garbage`).
        for k in scos.iter().filter(|k| !marked.contains(*k)) {
            if let Some((s, e, Some(gen))) = parse_sco_key(k) {
                gens.entry((s, e)).or_default().push(gen);
            }
        }
        let mut stray = Vec::new();
        for k in scos {
            let Some((s, e, gen)) = parse_sco_key(&k) else {
                continue;
            };
            let Some((t, _, _)) = self.mds.sco_row(s)? else {
                continue;
            };
            if t <= base {
                continue;
            }
            let epoch = self.epochs.read().of(t);
            let row = self.mds.compacted(s)?;
            let listed = gens.get(&(s, epoch)).map_or(&[][..], Vec::as_slice);
            if sco_garbage(e, gen, epoch, row, listed) {
                stray.push(k);
            }
        }
        let tlogs = list_keys(remote, "tlog/")?;
        let mut tgens: HashMap<(u64, u64), Vec<Generation>> = HashMap::new();
        for k in tlogs.iter().filter(|k| !marked.contains(*k)) {
            if let Some((t, e, Some(gen))) = parse_tlog_key(k) {
                tgens.entry((t, e)).or_default().push(gen);
            }
        }
        for k in tlogs {
            let Some((t, e, gen)) = parse_tlog_key(&k) else {
                continue;
            };
            let listed = |epoch| Ok(tgens.get(&(t, epoch)).cloned().unwrap_or_default());
            if self.tlog_rule(t, e, gen, listed)? {
                stray.push(k);
            }
        }
        drop(g);
        if !stray.is_empty() {
            tracing::info!(volume = %self.id, objects = stray.len(), "scrub: SCO and TLog objects nothing references are garbage");
        }
        self.mds.gc_mark(&stray, unix_now())?;
        self.swept.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}
