//! The jobs table: the last jobs' reports (`crate::jobs`), so that `strata job list` and
//! `job show` still tell after a restart how the jobs of the run before ended.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::Namespace;
use crate::error::Result;

/// Job id -> its report (the management protocol's `JobReport`, JSON).
const JOBS: TableDefinition<u64, &[u8]> = TableDefinition::new("jobs");

impl Namespace {
    /// Records job `id`'s report and forgets the jobs `forget`, in one durable transaction.
    pub(crate) fn job_record(&self, id: u64, report: &[u8], forget: &[u64]) -> Result<()> {
        let txn = self.begin()?;
        {
            let mut t = txn.open_table(JOBS)?;
            t.insert(id, report)?;
            for f in forget {
                t.remove(*f)?;
            }
        }
        self.commit_local(txn)
    }

    /// Every job report recorded, by id.
    pub(crate) fn jobs_recorded(&self) -> Result<Vec<(u64, Vec<u8>)>> {
        let txn = self.db.begin_read()?;
        let t = match txn.open_table(JOBS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for r in t.iter()? {
            let (k, v) = r?;
            out.push((k.value(), v.value().to_vec()));
        }
        Ok(out)
    }
}
