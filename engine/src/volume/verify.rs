//! An online check of everything a volume keeps locally (SCO headers, footers and CRCs, every
//! live cluster's hash).

use std::collections::BTreeSet;

use crate::error::Result;
use crate::volume::files::read_all;
use crate::volume::format::{
    sco_name, FormatError, ScoFooter, ScoHeader, CLUSTER_SIZE, CLUSTER_SIZE_U64, SCO_FOOTER_LEN,
    SCO_HEADER_LEN,
};
use crate::volume::int::usize_of;
use crate::volume::state::Volume;

impl Volume {
    /// Checks the integrity of everything the volume keeps locally (an online fsck): every
    /// sealed SCO's header, footer and data CRC32C, and the hash of every live cluster against
    /// its TLog entry. Reads everything: meant for tests, scrubbing and repair tools. Returns
    /// the problems found (empty when all verifies); I/O errors are errors. (Only the tests
    /// call it today; scrubbing will.)
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn verify(&self) -> Result<Vec<String>> {
        self.check_halted()?;
        let st = self.state.read();
        let mut problems = Vec::new();
        let all = self.lookup_range(&st, 0, st.size.div_ceil(CLUSTER_SIZE_U64))?;
        if all.len() as u64 != st.mapped {
            problems.push(format!(
                "the mapped-cluster count {} disagrees with the MetaDataStore ({})",
                st.mapped,
                all.len()
            ));
        }
        let mut scos: BTreeSet<u64> = all.values().map(|l| l.sco).collect();
        if let Some(s) = &st.sco {
            scos.remove(&s.seq);
        }
        scos.retain(|s| !st.scos.get(s).is_some_and(|e| e.evicted));
        for seq in scos {
            let what = format!("SCO {}", sco_name(seq));
            let f = self.sco_handle(seq)?;
            let b = read_all(&*f, &what)?;
            let check = (|| -> std::result::Result<(), FormatError> {
                let h = ScoHeader::decode(&what, &b)?;
                let fo = b
                    .len()
                    .checked_sub(SCO_FOOTER_LEN)
                    .filter(|o| *o >= usize_of(SCO_HEADER_LEN))
                    .ok_or_else(|| FormatError::Truncated {
                        what: what.clone(),
                        len: b.len() as u64,
                        need: SCO_HEADER_LEN + SCO_FOOTER_LEN as u64,
                    })?;
                let foot = ScoFooter::decode(&what, &b[fo..])?;
                let computed = crc32c::crc32c(&b[usize_of(SCO_HEADER_LEN)..fo]);
                if h.volume != self.id
                    || h.seq != seq
                    || foot.seq != seq
                    || ScoFooter::offset(foot.clusters) != fo as u64
                {
                    return Err(FormatError::Inconsistent {
                        what: what.clone(),
                        reason: "header or footer disagree with the file".into(),
                    });
                }
                if computed != foot.data_crc {
                    return Err(FormatError::Crc {
                        what: format!("{what} data"),
                        stored: foot.data_crc,
                        computed,
                    });
                }
                Ok(())
            })();
            if let Err(e) = check {
                problems.push(e.to_string());
            }
        }
        let mut c = vec![0u8; CLUSTER_SIZE];
        for (ca, loc) in &all {
            match self.read_loc(&st, loc, &mut c, 0) {
                Ok(()) if loc.hash.matches(&c) => {}
                Ok(()) => problems.push(format!(
                    "cluster {ca} (SCO {} cluster {}): hash mismatch",
                    sco_name(loc.sco),
                    loc.offset
                )),
                Err(e) => problems.push(format!("cluster {ca}: {e}")),
            }
        }
        Ok(problems)
    }

    /// Test helper: the content of cluster `ca` as the MetaDataStore maps it, ignoring the size.
    #[cfg(test)]
    pub(crate) fn raw_cluster(&self, ca: u64) -> Result<Vec<u8>> {
        let st = self.state.read();
        let mut c = vec![0u8; CLUSTER_SIZE];
        if let Some(loc) = self.lookup(&st, ca)? {
            self.read_loc(&st, &loc, &mut c, 0)?;
        }
        Ok(c)
    }
}
