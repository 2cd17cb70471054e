//! Metadata checkpoint objects nothing references: the pages of a checkpoint whose manifest
//! PUT failed or never came (a crash), and superseded copies whose deletion a crash cut short.
//! With the upload pipeline held off (no checkpoint is being written), and only when the
//! manifest on the backend names the very checkpoint the MetaDataStore records (a crash after
//! the manifest PUT and before its local record leaves them apart until the next backup), every
//! object under `mds/` other than that checkpoint's index, SCO table and the pages its index
//! names is garbage.

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::volume::backend::BackendState;
use crate::volume::mds::checkpoint::{checkpoint_id, index_key, page_key, scos_key};
use crate::volume::state::{Remote, Volume};

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
        let mut stray = Vec::new();
        let mut token: Option<String> = None;
        let what = "scrub: list mds/";
        loop {
            let page = remote
                .block_on(what, remote.store.list(MDS_PREFIX, token.as_deref(), 1000))?
                .map_err(|e| Error::Backend {
                    what: what.into(),
                    source: e,
                })?;
            stray.extend(
                page.objects
                    .into_iter()
                    .map(|o| o.key)
                    .filter(|k| !refs.contains(k)),
            );
            match page.next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        drop(g);
        if !stray.is_empty() {
            tracing::info!(volume = %self.id, objects = stray.len(), "scrub: checkpoint objects nothing references are garbage");
        }
        self.mds.gc_mark(&stray, unix_now())
    }
}
