//! Deleting a volume's garbage, last and safely: only the kinds the scrubber marks (SCO
//! objects, metadata checkpoint objects), only once marked for `GC_Grace`, and only if a check
//! just before the delete still finds them garbage (not the SCO's current object; not an
//! object of the checkpoint the manifest and the MetaDataStore name). A crash anywhere leaves marks (or objects) that
//! the next pass deletes; a deleted object is never one a reader can be sent to.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::volume::format::{compacted_key, parse_sco_key};
use crate::volume::state::{Remote, Volume};

use super::sweep::MDS_PREFIX;
use super::unix_now;

/// Keys deleted per backend call.
const BATCH: usize = 256;

impl Volume {
    /// Step 1 of a pass: compactions a crash cut short have the object they may have put
    /// marked garbage (unless it became the SCO's object after all).
    pub(super) fn gc_mark_inflight(&self, _remote: &Remote) -> Result<()> {
        for (counter, (sco, writer, epoch)) in self.mds.compactions_in_flight()? {
            let key = compacted_key(sco, epoch, writer, counter);
            tracing::info!(volume = %self.id, %key, "scrub: a compaction was cut short; its object is garbage");
            self.mds.abandon_compaction(counter, &key, unix_now())?;
        }
        Ok(())
    }

    /// Step 4 of a pass: deletes the objects marked at least `grace` ago that are still
    /// garbage; returns how many were deleted. Checkpoint objects are checked and deleted with
    /// the pipeline held off (a checkpoint being written may reuse a directory's name).
    pub(super) fn gc_delete(&self, remote: &Remote, grace: Duration) -> Result<u64> {
        let now = unix_now();
        let due: Vec<String> = self
            .mds
            .gc_pending()?
            .into_iter()
            .filter(|(_, at)| now.saturating_sub(*at) >= grace.as_secs())
            .map(|(k, _)| k)
            .collect();
        let (mds, scos): (Vec<String>, Vec<String>) =
            due.into_iter().partition(|k| k.starts_with(MDS_PREFIX));
        let mut deleted = self.gc_delete_checked(remote, &scos, |k| self.still_garbage(k))?;
        if !mds.is_empty() {
            let g = self.hold_uploads();
            if let Some(refs) = self.checkpoint_refs(&g)? {
                deleted += self.gc_delete_checked(remote, &mds, |k| Ok(!refs.contains(k)))?;
            }
        }
        Ok(deleted)
    }

    /// Deletes the keys of `due` that `garbage` still says are garbage, unmarks the others.
    fn gc_delete_checked(
        &self,
        remote: &Remote,
        due: &[String],
        garbage: impl Fn(&str) -> Result<bool>,
    ) -> Result<u64> {
        let mut del = Vec::new();
        let mut keep = Vec::new();
        for key in due {
            if garbage(key)? {
                del.push(key.clone());
            } else {
                tracing::warn!(volume = %self.id, %key, "scrub: an object marked garbage is in use; unmarked");
                keep.push(key.clone());
            }
        }
        self.mds.gc_unmark(&keep)?;
        let mut deleted = 0;
        for chunk in del.chunks(BATCH) {
            let what = format!("scrub: delete {} objects", chunk.len());
            remote
                .block_on(&what, remote.store.delete_many(chunk))?
                .map_err(|e| Error::Backend {
                    what: what.clone(),
                    source: e,
                })?;
            self.mds.gc_done(chunk)?;
            deleted += chunk.len() as u64;
        }
        Ok(deleted)
    }

    /// The check just before a delete: `key` is a SCO object that is not the SCO's current
    /// one (an original replaced by a compacted object, a compacted object replaced again,
    /// or one never recorded).
    fn still_garbage(&self, key: &str) -> Result<bool> {
        let Some((sco, _, gen)) = parse_sco_key(key) else {
            return Ok(false);
        };
        Ok(match (self.mds.compacted(sco)?, gen) {
            (None, None) => false,
            (None, Some(_)) => true,
            (Some(_), None) => true,
            (Some(c), Some((w, n))) => c.kept == 0 || (c.writer, c.counter) != (w, n),
        })
    }
}
