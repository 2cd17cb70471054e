//! Sealed SCOs of the open TLog at restart: is each whole, and can a torn header or footer be
//! rewritten from data that verifies.

use std::path::Path;

use crate::error::Result;
use crate::volume::files::{io_err, open_if_exists};
use crate::volume::format::{
    sco_name, ScoFooter, ScoHeader, VolumeId, CLUSTER_SIZE_U64, MAX_SCO_CLUSTERS, SCO_FOOTER_LEN,
    SCO_HEADER_LEN,
};
use crate::volume::int::usize_of;
use crate::volume::localfs::LocalFs;

/// Whether sealed SCO `seq` is whole on local disk: exact length, header and footer matching
/// its ScoSealed entry (its clusters are checked one by one against their hashes elsewhere). A
/// missing file is not whole; other I/O errors are errors.
pub(in crate::volume) fn sealed_sco_is_whole(
    fs: &dyn LocalFs,
    sco_dir: &Path,
    id: VolumeId,
    seq: u64,
    clusters: u32,
    crc: u32,
) -> Result<bool> {
    let what = format!("SCO {}", sco_name(seq));
    let Some(f) = open_if_exists(fs, &sco_dir.join(sco_name(seq)), &what)? else {
        return Ok(false);
    };
    let want = ScoFooter::offset(clusters) + SCO_FOOTER_LEN as u64;
    if f.file_len().map_err(|e| io_err(&what, e))? != want {
        return Ok(false);
    }
    let mut hb = vec![0u8; usize_of(SCO_HEADER_LEN)];
    let mut fb = [0u8; SCO_FOOTER_LEN];
    f.read_at(&mut hb, 0).map_err(|e| io_err(&what, e))?;
    f.read_at(&mut fb, ScoFooter::offset(clusters))
        .map_err(|e| io_err(&what, e))?;
    let header_ok = ScoHeader::decode(&what, &hb).is_ok_and(|h| h.volume == id && h.seq == seq);
    let footer_ok = ScoFooter::decode(&what, &fb).is_ok_and(|foot| {
        foot == ScoFooter {
            seq,
            clusters,
            data_crc: crc,
        }
    });
    Ok(header_ok && footer_ok)
}

/// Bytes of SCO data [`repair_sealed_sco`] reads at a time.
const REPAIR_CHUNK: usize = 1 << 20;

/// A sealed SCO of the open TLog whose header or footer did not survive (a crash before the
/// seal was durable, or damage): when its clusters are all there with the data CRC its
/// ScoSealed entry names (each was also checked against its hash), the header and footer are
/// written again, durably, and the seal stands. False when the data does not match: the caller
/// cuts the TLog there.
pub(in crate::volume) fn repair_sealed_sco(
    fs: &dyn LocalFs,
    sco_dir: &Path,
    id: VolumeId,
    seq: u64,
    clusters: u32,
    crc: u32,
) -> Result<bool> {
    let what = format!("SCO {}", sco_name(seq));
    if clusters > MAX_SCO_CLUSTERS {
        // Entry::decode refuses such a count; never trust it to size a read.
        return Ok(false);
    }
    let Some(f) = open_if_exists(fs, &sco_dir.join(sco_name(seq)), &what)? else {
        return Ok(false);
    };
    let data_len = u64::from(clusters) * CLUSTER_SIZE_U64;
    if f.file_len().map_err(|e| io_err(&what, e))? < SCO_HEADER_LEN + data_len {
        return Ok(false);
    }
    // The data CRC over a bounded buffer, whatever the count says.
    let mut buf = vec![0u8; REPAIR_CHUNK];
    let (mut done, mut computed) = (0u64, 0u32);
    while done < data_len {
        let chunk = &mut buf[..usize_of((data_len - done).min(REPAIR_CHUNK as u64))];
        let n = f
            .read_at(chunk, SCO_HEADER_LEN + done)
            .map_err(|e| io_err(&what, e))?;
        if n != chunk.len() {
            return Ok(false);
        }
        computed = crc32c::crc32c_append(computed, chunk);
        done += n as u64;
    }
    if computed != crc {
        return Ok(false);
    }
    tracing::warn!(sco = %what, "rewriting the header and footer of a sealed SCO whose data verifies");
    let footer = ScoFooter {
        seq,
        clusters,
        data_crc: crc,
    };
    f.write_at(&ScoHeader { volume: id, seq }.encode(), 0)
        .map_err(|e| io_err(&what, e))?;
    f.write_at(&footer.encode(), ScoFooter::offset(clusters))
        .map_err(|e| io_err(&what, e))?;
    f.set_len(ScoFooter::offset(clusters) + SCO_FOOTER_LEN as u64)
        .map_err(|e| io_err(&what, e))?;
    f.sync_data().map_err(|e| io_err(&what, e))?;
    Ok(true)
}
