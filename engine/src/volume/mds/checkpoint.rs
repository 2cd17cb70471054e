//! Metadata checkpoints on the backend (byte layout in `FORMATS.md`, "Metadata checkpoints"):
//! the MetaDataStore as of TLog N, cut into pages of [`PAGE_CLUSTERS`] cluster addresses. Only
//! pages changed since the previous checkpoint are written; the index names, for every
//! non-empty page, the checkpoint holding its newest copy.
//!
//! A checkpoint is named by its id, `epoch << 40 | N` ([`checkpoint_id`]): TLog N and the
//! owner epoch of the run that wrote it, so that its keys (`mds/<N>.<epoch>/...`) are unique
//! per writer like every data key. Checkpoints from before epochs have epoch 0 (id N, keys
//! `mds/<N>/...`).

use super::store::{pack_index, unpack_index, Loc};
use crate::volume::backend::keys::epoch_suffix;
use crate::volume::format::{ClusterHash, FormatError, VolumeId, MAX_SCO_CLUSTERS};
use crate::volume::int::u32_of;

/// Cluster addresses per checkpoint page.
pub(in crate::volume) const PAGE_CLUSTERS: u64 = 65_536;
/// Format version of every checkpoint object.
pub(in crate::volume) const CHECKPOINT_VERSION: u16 = 1;

const PAGE_MAGIC: &[u8; 8] = b"STRMDSPG";
const SCOS_MAGIC: &[u8; 8] = b"STRMDSSC";
const INDEX_MAGIC: &[u8; 8] = b"STRMDSIX";
/// magic (8) | version u16 | reserved u16 | volume (16) | checkpoint u64.
const COMMON_LEN: usize = 36;
/// Bytes of one entry in a page object.
pub(in crate::volume) const PAGE_ENTRY_LEN: usize = 36;
const SCO_ENTRY_LEN: usize = 24;
const INDEX_ENTRY_LEN: usize = 16;

/// The page holding cluster address `a`.
pub(in crate::volume) fn page_of(a: u64) -> u64 {
    a / PAGE_CLUSTERS
}

/// Bits of a checkpoint id below the epoch: the TLog N.
const ID_EPOCH_SHIFT: u32 = 40;

/// The id of the checkpoint of TLog `n` written in `epoch`: `epoch << 40 | n`; `None` when
/// either does not fit (a TLog number from 2^40 on, an epoch from 2^24 on).
pub(in crate::volume) fn checkpoint_id(n: u64, epoch: u64) -> Option<u64> {
    (n >> ID_EPOCH_SHIFT == 0 && epoch >> (64 - ID_EPOCH_SHIFT) == 0)
        .then_some(epoch << ID_EPOCH_SHIFT | n)
}

/// The TLog of checkpoint `id`.
pub(in crate::volume) fn id_tlog(id: u64) -> u64 {
    id & ((1 << ID_EPOCH_SHIFT) - 1)
}

/// `mds/<N as 16 hex>[.<epoch as 16 hex>]/` of checkpoint `id`.
fn dir_of(id: u64) -> String {
    format!(
        "mds/{:016x}{}/",
        id_tlog(id),
        epoch_suffix(id >> ID_EPOCH_SHIFT)
    )
}

/// Backend key of page `page` written by checkpoint `id`.
pub(in crate::volume) fn page_key(id: u64, page: u64) -> String {
    format!("{}page-{page:08x}", dir_of(id))
}

/// Backend key of checkpoint `id`'s SCO table.
pub(in crate::volume) fn scos_key(id: u64) -> String {
    format!("{}scos", dir_of(id))
}

/// Backend key of checkpoint `id`'s index.
pub(in crate::volume) fn index_key(id: u64) -> String {
    format!("{}index", dir_of(id))
}

/// A checkpoint's index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::volume) struct Index {
    /// The volume size after TLog N.
    pub size: u64,
    /// Mapped clusters.
    pub mapped: u64,
    /// Every non-empty page -> the checkpoint holding its newest copy (ascending pages).
    pub pages: Vec<(u64, u64)>,
}

fn common(magic: &[u8; 8], id: VolumeId, n: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(COMMON_LEN);
    b.extend_from_slice(magic);
    b.extend_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&id.0);
    b.extend_from_slice(&n.to_le_bytes());
    b
}

fn seal(mut b: Vec<u8>) -> Vec<u8> {
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

/// Checks length, CRC32C, magic, version, volume and checkpoint; returns the body after the
/// common header (without the CRC).
fn open<'a>(
    what: &str,
    b: &'a [u8],
    magic: &[u8; 8],
    id: VolumeId,
    n: u64,
    fixed: usize,
) -> Result<&'a [u8], FormatError> {
    let bad = |reason: String| FormatError::Inconsistent {
        what: what.to_string(),
        reason,
    };
    if b.len() < COMMON_LEN + fixed + 4 {
        return Err(FormatError::Truncated {
            what: what.to_string(),
            len: b.len() as u64,
            need: (COMMON_LEN + fixed + 4) as u64,
        });
    }
    let body = &b[..b.len() - 4];
    let stored = u32_at(b, b.len() - 4);
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(FormatError::Crc {
            what: what.to_string(),
            stored,
            computed,
        });
    }
    if &b[..8] != magic {
        return Err(bad("bad magic".into()));
    }
    let version = u16::from_le_bytes([b[8], b[9]]);
    if version != CHECKPOINT_VERSION {
        return Err(FormatError::BadVersion {
            what: what.to_string(),
            found: version,
        });
    }
    let mut vid = [0u8; 16];
    vid.copy_from_slice(&b[12..28]);
    if VolumeId(vid) != id {
        return Err(bad(format!(
            "names volume {}, expected {id}",
            VolumeId(vid)
        )));
    }
    let got = u64_at(b, 28);
    if got != n {
        return Err(bad(format!("names checkpoint {got}, expected {n}")));
    }
    Ok(&body[COMMON_LEN..])
}

/// Encodes page `page` of checkpoint `n`: its entries, ascending addresses.
pub(in crate::volume) fn encode_page(
    id: VolumeId,
    n: u64,
    page: u64,
    entries: &[(u64, Loc)],
) -> Vec<u8> {
    let mut b = common(PAGE_MAGIC, id, n);
    b.extend_from_slice(&page.to_le_bytes());
    b.extend_from_slice(&u32_of(entries.len()).to_le_bytes());
    for (a, l) in entries {
        b.extend_from_slice(&a.to_le_bytes());
        b.extend_from_slice(&l.sco.to_le_bytes());
        b.extend_from_slice(&pack_index(l.offset, l.hash.alg()).to_le_bytes());
        b.extend_from_slice(l.hash.digest());
    }
    seal(b)
}

/// Decodes and verifies a page object.
pub(in crate::volume) fn decode_page(
    what: &str,
    b: &[u8],
    id: VolumeId,
    n: u64,
    page: u64,
) -> Result<Vec<(u64, Loc)>, FormatError> {
    let body = open(what, b, PAGE_MAGIC, id, n, 12)?;
    let bad = |reason: String| FormatError::Inconsistent {
        what: what.to_string(),
        reason,
    };
    if u64_at(body, 0) != page {
        return Err(bad(format!(
            "holds page {}, expected {page}",
            u64_at(body, 0)
        )));
    }
    let count = u32_at(body, 8);
    if u64::from(count) > PAGE_CLUSTERS {
        return Err(bad(format!(
            "{count} entries, a page holds at most {PAGE_CLUSTERS}"
        )));
    }
    let count = count as usize;
    let rest = &body[12..];
    if rest.len() != count * PAGE_ENTRY_LEN {
        return Err(bad(format!("{count} entries, {} bytes", rest.len())));
    }
    let mut out = Vec::with_capacity(count);
    let mut prev: Option<u64> = None;
    for e in rest.chunks_exact(PAGE_ENTRY_LEN) {
        let a = u64_at(e, 0);
        if page_of(a) != page || prev.is_some_and(|p| p >= a) {
            return Err(bad(format!("address {a} out of order or outside the page")));
        }
        prev = Some(a);
        let packed = u32_at(e, 16);
        let Some((offset, alg)) = unpack_index(packed) else {
            return Err(bad(format!(
                "address {a}: unknown hash algorithm {}",
                packed >> 24
            )));
        };
        if offset >= MAX_SCO_CLUSTERS {
            return Err(bad(format!(
                "address {a}: cluster index {offset} beyond any SCO"
            )));
        }
        let mut digest = [0u8; 16];
        digest.copy_from_slice(&e[20..36]);
        out.push((
            a,
            Loc {
                sco: u64_at(e, 8),
                offset,
                hash: ClusterHash::from_parts(alg, digest),
            },
        ));
    }
    Ok(out)
}

/// Encodes checkpoint `n`'s SCO table: sco -> (sealing TLog, clusters, CRC32C).
pub(in crate::volume) fn encode_scos(
    id: VolumeId,
    n: u64,
    scos: &[(u64, (u64, u32, u32))],
) -> Vec<u8> {
    let mut b = common(SCOS_MAGIC, id, n);
    b.extend_from_slice(&(scos.len() as u64).to_le_bytes());
    for (s, (t, c, crc)) in scos {
        b.extend_from_slice(&s.to_le_bytes());
        b.extend_from_slice(&t.to_le_bytes());
        b.extend_from_slice(&c.to_le_bytes());
        b.extend_from_slice(&crc.to_le_bytes());
    }
    seal(b)
}

/// A decoded SCO table entry: sco -> (sealing TLog, clusters, CRC32C).
pub(in crate::volume) type ScoRow = (u64, (u64, u32, u32));

/// Decodes and verifies a SCO table object.
pub(in crate::volume) fn decode_scos(
    what: &str,
    b: &[u8],
    id: VolumeId,
    n: u64,
) -> Result<Vec<ScoRow>, FormatError> {
    let body = open(what, b, SCOS_MAGIC, id, n, 8)?;
    let count = u64_at(body, 0);
    let rest = &body[8..];
    if rest.len() as u64 != count.saturating_mul(SCO_ENTRY_LEN as u64) {
        return Err(FormatError::Inconsistent {
            what: what.to_string(),
            reason: format!("{count} entries, {} bytes", rest.len()),
        });
    }
    let mut out = Vec::with_capacity(rest.len() / SCO_ENTRY_LEN);
    for e in rest.chunks_exact(SCO_ENTRY_LEN) {
        let (sco, clusters) = (u64_at(e, 0), u32_at(e, 16));
        if clusters > MAX_SCO_CLUSTERS {
            return Err(FormatError::Inconsistent {
                what: what.to_string(),
                reason: format!("SCO {sco} of {clusters} clusters, at most {MAX_SCO_CLUSTERS}"),
            });
        }
        out.push((sco, (u64_at(e, 8), clusters, u32_at(e, 20))));
    }
    Ok(out)
}

/// Encodes checkpoint `n`'s index.
pub(in crate::volume) fn encode_index(id: VolumeId, n: u64, ix: &Index) -> Vec<u8> {
    let mut b = common(INDEX_MAGIC, id, n);
    b.extend_from_slice(&ix.size.to_le_bytes());
    b.extend_from_slice(&ix.mapped.to_le_bytes());
    b.extend_from_slice(&(ix.pages.len() as u64).to_le_bytes());
    for (p, c) in &ix.pages {
        b.extend_from_slice(&p.to_le_bytes());
        b.extend_from_slice(&c.to_le_bytes());
    }
    seal(b)
}

/// Decodes and verifies an index object (pages ascending, each held by a checkpoint <= `n`).
pub(in crate::volume) fn decode_index(
    what: &str,
    b: &[u8],
    id: VolumeId,
    n: u64,
) -> Result<Index, FormatError> {
    let body = open(what, b, INDEX_MAGIC, id, n, 24)?;
    let bad = |reason: String| FormatError::Inconsistent {
        what: what.to_string(),
        reason,
    };
    let count = u64_at(body, 16);
    let rest = &body[24..];
    if rest.len() as u64 != count.saturating_mul(INDEX_ENTRY_LEN as u64) {
        return Err(bad(format!("{count} pages, {} bytes", rest.len())));
    }
    let mut pages = Vec::with_capacity(rest.len() / INDEX_ENTRY_LEN);
    for e in rest.chunks_exact(INDEX_ENTRY_LEN) {
        let (p, c) = (u64_at(e, 0), u64_at(e, 8));
        // This checkpoint, or one of an earlier TLog (of any epoch up to its own).
        let older =
            c == n || (id_tlog(c) < id_tlog(n) && c >> ID_EPOCH_SHIFT <= n >> ID_EPOCH_SHIFT);
        if id_tlog(c) == 0 || !older || pages.last().is_some_and(|(q, _)| *q >= p) {
            return Err(bad(format!("page {p} -> checkpoint {c} out of order")));
        }
        pages.push((p, c));
    }
    Ok(Index {
        size: u64_at(body, 0),
        mapped: u64_at(body, 8),
        pages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_objects_round_trip_and_reject_damage() {
        let id = VolumeId([7; 16]);
        let l = Loc {
            sco: 3,
            offset: 9,
            hash: ClusterHash::of(b"x"),
        };
        let entries = vec![(65_536 * 2 + 1, l), (65_536 * 2 + 7, l)];
        let b = encode_page(id, 5, 2, &entries);
        assert_eq!(decode_page("p", &b, id, 5, 2), Ok(entries));
        assert!(decode_page("p", &b, id, 5, 3).is_err(), "other page");
        assert!(decode_page("p", &b, id, 6, 2).is_err(), "other checkpoint");
        assert!(
            decode_page("p", &b, VolumeId([8; 16]), 5, 2).is_err(),
            "other volume"
        );
        let mut flipped = b.clone();
        flipped[40] ^= 1;
        assert!(matches!(
            decode_page("p", &flipped, id, 5, 2),
            Err(FormatError::Crc { .. })
        ));
        let ix = Index {
            size: 1 << 30,
            mapped: 2,
            pages: vec![(2, 5), (9, 3)],
        };
        assert_eq!(decode_index("i", &encode_index(id, 5, &ix), id, 5), Ok(ix));
        let scos = vec![(1, (1, 16, 0xdead)), (2, (2, 4, 0xbeef))];
        assert_eq!(
            decode_scos("s", &encode_scos(id, 5, &scos), id, 5),
            Ok(scos)
        );
        assert!(
            decode_scos("s", &b, id, 5).is_err(),
            "a page is not a SCO table"
        );
    }

    #[test]
    fn checkpoint_ids_name_the_tlog_and_the_epoch() {
        let c = checkpoint_id(0x12, 3).expect("fits");
        assert_eq!(id_tlog(c), 0x12);
        assert_eq!(index_key(c), "mds/0000000000000012.0000000000000003/index");
        assert_eq!(
            page_key(c, 2),
            "mds/0000000000000012.0000000000000003/page-00000002"
        );
        // Before epochs: the id is N and the keys have no epoch.
        assert_eq!(checkpoint_id(7, 0), Some(7));
        assert_eq!(scos_key(7), "mds/0000000000000007/scos");
        assert_eq!(checkpoint_id(1 << 40, 1), None);
        assert_eq!(checkpoint_id(1, 1 << 24), None);
        // An index may name pages of older checkpoints of lower epochs, never of later TLogs.
        let id = VolumeId([7; 16]);
        let ix = Index {
            size: 0,
            mapped: 0,
            pages: vec![(0, 5), (1, checkpoint_id(9, 2).expect("fits"))],
        };
        let b = encode_index(id, c, &ix);
        assert_eq!(decode_index("i", &b, id, c), Ok(ix));
        let later = Index {
            size: 0,
            mapped: 0,
            pages: vec![(0, checkpoint_id(0x13, 1).expect("fits"))],
        };
        assert!(decode_index("i", &encode_index(id, c, &later), id, c).is_err());
    }
}
