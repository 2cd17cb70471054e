//! Making a volume a template: read-only from then on, cloned without naming a snapshot.

use std::sync::atomic::Ordering;

use super::FREEZING;
use crate::error::{Error, Result};
use crate::volume::snapshot::SnapshotInfo;
use crate::volume::state::Volume;

impl Volume {
    /// Makes the volume a template: writes and resizes are refused (`ReadOnly`) from the
    /// moment this starts; the open TLog is closed (the last change), then one durable
    /// transaction adds snapshot `name` of it and the template mark. A crash before that
    /// transaction leaves the volume as it was (writable, no snapshot); after it, a template.
    /// Clones of a template are made at that snapshot. A template stays one.
    pub(crate) fn make_template(&self, name: &str) -> Result<SnapshotInfo> {
        crate::volume::snapshot::record::check_name(name).map_err(Error::Invalid)?;
        // No rollback runs meanwhile (it would change the volume after the template's
        // snapshot); one that starts later is refused.
        let _one = self.rollback_lock.lock();
        {
            // Under the volume lock: every write checks the mark under it too, so none lands
            // after the snapshot's boundary.
            let _st = self.state.write();
            match self.template.load(Ordering::Acquire) {
                0 => self.template.store(FREEZING, Ordering::Release),
                FREEZING => {
                    return Err(Error::Invalid(
                        "the volume is being made a template already".into(),
                    ))
                }
                _ => return Err(Error::Invalid("the volume is a template already".into())),
            }
        }
        let r = self.add_snapshot(name, vec![("strata.template".into(), "1".into())], true);
        match r {
            Ok(id) => {
                self.template.store(id, Ordering::Release);
                self.snapshot_info(name)
            }
            Err(e) => {
                self.template.store(0, Ordering::Release);
                Err(e)
            }
        }
    }
}
