//! The sweep of regular files' extent objects that no map names and the collector's list
//! (`garbage`) does not hold either: what a lost file journal, a crash in a window the journal
//! does not cover, or an older build left on the backend (issue 17).
//!
//! Every scrub pass over all volumes (on demand, or the background one each `Scrub_Interval`)
//! ends with one sweep:
//! 1. the files' namespace on the backend is listed page by page; each extent object of an
//!    **earlier run** (its generation below this run's first, see `first_generation`) that no
//!    map names and `garbage` does not list is marked, with the time a pass first found it
//!    (`namespace/extent_sweep.rs`; a mark is not durable, a lost one is found again);
//! 2. marks at least `GC_Grace` old are checked against the maps once more and moved to
//!    `garbage` in one durable transaction (a mark whose version a map names is dropped);
//! 3. the collector (the uploader's step 3) deletes them from the backend, then forgets them.
//!
//! Objects of this run are never marked: an upload may be between its PUT and the record
//! that names it. A map never gains a version of an earlier run once the journal is
//! replayed at open, so a version of an earlier run that no map names stays unnamed: the
//! grace is a defence in depth, not the argument. Names that are not extent names are left
//! alone (and counted).

use super::upload::FileSide;
use crate::error::Result;
use crate::progress::{cancelled_error, Progress};
use crate::volume::scrub::unix_now;
use std::time::Duration;

/// Keys listed per backend request.
const LIST_PAGE: usize = 1000;

/// What one sweep found and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ExtentSweep {
    /// Extent objects listed.
    pub(crate) listed: u64,
    /// Objects of an earlier run no map names, newly marked.
    pub(crate) marked: u64,
    /// Marks past their grace handed to the collector.
    pub(crate) condemned: u64,
    /// Objects the collector deleted (these and any it had already).
    pub(crate) deleted: u64,
    /// Keys in the files' namespace that are not extent names (left alone).
    pub(crate) foreign: u64,
}

impl FileSide {
    /// One sweep (steps 1 to 3); `grace` is `GC_Grace`. Cancelling stops between two pages.
    pub(super) fn sweep_extents(&self, grace: Duration, p: &dyn Progress) -> Result<ExtentSweep> {
        let driver = &self.files.driver;
        let first_gen = driver.first_gen();
        let mut out = ExtentSweep::default();
        let mut token: Option<String> = None;
        loop {
            if p.cancelled() {
                return Err(cancelled_error());
            }
            let page = driver.list_versions(token.as_deref(), LIST_PAGE)?;
            out.listed += page.versions.len() as u64;
            out.foreign += page.foreign;
            let earlier: Vec<_> = page
                .versions
                .into_iter()
                .filter(|&(_, _, gen)| gen < first_gen)
                .collect();
            out.marked += self.ns.mark_unnamed_extents(&earlier, unix_now())?;
            token = page.next;
            if token.is_none() {
                break;
            }
        }
        let cutoff = unix_now().saturating_sub(grace.as_secs());
        out.condemned = self.ns.condemn_unnamed_extents(cutoff)?.len() as u64;
        out.deleted = self.collect_all_garbage(p)?;
        if out.foreign > 0 {
            tracing::warn!(
                keys = out.foreign,
                "the files' namespace on the backend holds keys that are not extent names; left alone"
            );
        }
        if out.marked > 0 || out.condemned > 0 {
            tracing::info!(
                marked = out.marked,
                condemned = out.condemned,
                deleted = out.deleted,
                "swept regular files' extent objects that no map names"
            );
        }
        Ok(out)
    }
}
