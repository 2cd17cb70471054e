//! One open volume: the [`Volume`], its backend namespace, its pipeline and its pacing state.

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use strata_backend::ObjectStore;
use tokio::sync::watch;

use super::backlog::Backlog;
use super::pacing::Pacer;
use crate::types::Ino;
use crate::volume::Volume;

/// One open volume with its backend namespace and pipeline.
#[derive(Debug)]
pub(crate) struct OpenVolume {
    pub(super) ino: Ino,
    pub(super) vol: Arc<Volume>,
    pub(super) store: Arc<dyn ObjectStore>,
    pub(super) dir: PathBuf,
    pub(super) stop: watch::Sender<bool>,
    pub(super) task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    pub(super) backlog: Arc<Backlog>,
    /// Paces writes between the soft and the hard mark of the backlog.
    pub(super) pacer: Pacer,
}

impl OpenVolume {
    /// The volume.
    pub(crate) fn volume(&self) -> &Arc<Volume> {
        &self.vol
    }
}
