//! Property tests of every VolumeDriver decoder of bytes from disk or the backend (SCO header
//! and footer, TLog header and entries, whole TLogs, checkpoint objects, the manifest,
//! MetaDataStore values): random bytes and mutated valid encodings never panic, give an error
//! (or, where no checksum covers the bytes, a value that re-encodes to itself), and never
//! allocate more than `decoder_bound` of their input.

use proptest::prelude::*;

use super::backend::keys::Epochs;
use super::backend::manifest::Manifest;
use super::format::parse_tlog;
use super::format::{
    parse_seq_name, sco_name, ClusterHash, Entry, HashAlg, ScoFooter, ScoHeader, TlogHeader,
    VolumeId, MAX_SCO_CLUSTERS, SCO_FOOTER_LEN, SCO_HEADER_LEN, TLOG_ENTRY_LEN, TLOG_HEADER_LEN,
};
use super::mds::checkpoint as ck;
use super::mds::store::Loc;
use crate::alloc_probe::{decoder_bound, largest_allocation};

/// One change to a valid encoding.
#[derive(Debug, Clone)]
pub(crate) enum Mutation {
    /// Flip bit `.1` of the byte at `.0` (modulo the length).
    Flip(usize, u8),
    /// Set the byte at `.0` (modulo the length) to `.1`.
    Set(usize, u8),
    /// Keep the first `.0` bytes (modulo the length).
    Truncate(usize),
    /// Append bytes.
    Extend(Vec<u8>),
}

pub(crate) fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::Set(i, v)),
        any::<usize>().prop_map(Mutation::Truncate),
        prop::collection::vec(any::<u8>(), 1..80).prop_map(Mutation::Extend),
    ]
}

pub(crate) fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..4)
}

/// `b` with `ms` applied in order.
pub(crate) fn mutate(b: &[u8], ms: &[Mutation]) -> Vec<u8> {
    let mut out = b.to_vec();
    for m in ms {
        let len = out.len();
        match m {
            Mutation::Flip(i, bit) if len > 0 => out[i % len] ^= 1 << bit,
            Mutation::Set(i, v) if len > 0 => out[i % len] = *v,
            Mutation::Truncate(n) => out.truncate(n % (len + 1)),
            Mutation::Extend(x) => out.extend_from_slice(x),
            _ => {}
        }
    }
    out
}

/// Runs a decoder on `input` and checks its largest allocation.
pub(crate) fn bounded<T>(input: &[u8], f: impl FnOnce() -> T) -> T {
    let (out, largest) = largest_allocation(f);
    assert!(
        largest <= decoder_bound(input.len()),
        "decoding {} bytes allocated {largest} bytes at once",
        input.len()
    );
    out
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn volume_id() -> impl Strategy<Value = VolumeId> {
    any::<[u8; 16]>().prop_map(VolumeId)
}

/// Any entry but TLogClosed, with fields inside the format's limits.
fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        (
            any::<u64>(),
            any::<u64>(),
            0..MAX_SCO_CLUSTERS,
            cluster_hash()
        )
            .prop_map(|(address, sco, offset, hash)| Entry::Cluster {
                address,
                sco,
                offset,
                hash
            }),
        (any::<u64>(), 0..=MAX_SCO_CLUSTERS, any::<u32>())
            .prop_map(|(sco, clusters, crc)| Entry::ScoSealed { sco, clusters, crc }),
        any::<u64>().prop_map(|size| Entry::Resize { size }),
        (
            any::<u64>(),
            any::<u64>(),
            0..MAX_SCO_CLUSTERS,
            cluster_hash()
        )
            .prop_map(|(address, sco, offset, hash)| Entry::Remap {
                address,
                sco,
                offset,
                hash
            }),
    ]
}

/// A fixed-size decoder given a mutated encoding: the same value when its `n` bytes are
/// unchanged (bytes after them are not its business), else an error.
fn fixed_size<T: PartialEq + std::fmt::Debug, E>(
    orig: &[u8],
    n: usize,
    value: &T,
    ms: &[Mutation],
    decode: impl Fn(&[u8]) -> Result<T, E>,
) -> Result<(), TestCaseError> {
    let m = mutate(orig, ms);
    let got = bounded(&m, || decode(&m));
    if m.len() >= n && m[..n] == orig[..n] {
        let got = got.ok();
        prop_assert_eq!(got.as_ref(), Some(value));
    } else {
        prop_assert!(got.is_err(), "a changed encoding decoded: {:?}", got.ok());
    }
    Ok(())
}

/// A whole TLog: header, `entries`, and TLogClosed when `closed`.
fn tlog(id: VolumeId, seq: u64, entries: &[Entry], closed: bool) -> Vec<u8> {
    let mut b = TlogHeader { volume: id, seq }.encode().to_vec();
    for e in entries {
        b.extend_from_slice(&e.encode());
    }
    if closed {
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&Entry::TlogClosed { crc }.encode());
    }
    b
}

/// Re-seals a checkpoint object whose body was patched (its trailing CRC32C).
fn reseal(mut b: Vec<u8>) -> Vec<u8> {
    let n = b.len() - 4;
    let crc = crc32c::crc32c(&b[..n]);
    b[n..].copy_from_slice(&crc.to_le_bytes());
    b
}

fn loc() -> impl Strategy<Value = Loc> {
    (any::<u64>(), 0..MAX_SCO_CLUSTERS, cluster_hash()).prop_map(|(sco, offset, hash)| Loc {
        sco,
        offset,
        hash,
    })
}

/// A stored hash of either algorithm.
fn cluster_hash() -> impl Strategy<Value = ClusterHash> {
    (
        prop_oneof![Just(HashAlg::Md5), Just(HashAlg::Blake3)],
        any::<[u8; 16]>(),
    )
        .prop_map(|(alg, digest)| ClusterHash::from_parts(alg, digest))
}

proptest! {
    #[test]
    fn sco_and_tlog_parts_refuse_random_bytes(b in bytes(5000)) {
        prop_assert!(bounded(&b, || ScoHeader::decode("s", &b)).is_err());
        prop_assert!(bounded(&b, || ScoFooter::decode("s", &b)).is_err());
        prop_assert!(bounded(&b, || TlogHeader::decode("t", &b)).is_err());
        prop_assert!(bounded(&b, || Entry::decode("e", &b)).is_err());
    }

    #[test]
    fn sco_header_detects_every_change(
        volume in volume_id(), seq in any::<u64>(), ms in mutations()
    ) {
        let h = ScoHeader { volume, seq };
        let enc = h.encode();
        fixed_size(&enc, SCO_HEADER_LEN as usize, &h, &ms, |b| ScoHeader::decode("s", b))?;
    }

    #[test]
    fn sco_footer_detects_every_change(
        seq in any::<u64>(), clusters in 0..=MAX_SCO_CLUSTERS, data_crc in any::<u32>(),
        ms in mutations()
    ) {
        let f = ScoFooter { seq, clusters, data_crc };
        fixed_size(&f.encode(), SCO_FOOTER_LEN, &f, &ms, |b| ScoFooter::decode("s", b))?;
    }

    #[test]
    fn tlog_header_detects_every_change(
        volume in volume_id(), seq in any::<u64>(), ms in mutations()
    ) {
        let h = TlogHeader { volume, seq };
        fixed_size(&h.encode(), TLOG_HEADER_LEN, &h, &ms, |b| TlogHeader::decode("t", b))?;
    }

    #[test]
    fn tlog_entries_detect_every_change(e in entry(), ms in mutations()) {
        fixed_size(&e.encode(), TLOG_ENTRY_LEN, &e, &ms, |b| Entry::decode("e", b))?;
    }

    #[test]
    fn whole_tlogs_refuse_random_bytes(b in bytes(2000), tear in any::<bool>()) {
        let r = bounded(&b, || parse_tlog("t", &b, VolumeId([1; 16]), 1, tear));
        prop_assert!(r.is_err());
    }

    /// A closed TLog with any change is refused, except a cut at an entry boundary, which
    /// reads as a shorter, open TLog; with a torn tail allowed, what parses is always a
    /// prefix of what was written.
    #[test]
    fn whole_tlogs_detect_changes_or_give_a_prefix(
        id in volume_id(), seq in any::<u64>(),
        entries in prop::collection::vec(entry(), 0..24), closed in any::<bool>(),
        ms in mutations(), tear in any::<bool>()
    ) {
        let enc = tlog(id, seq, &entries, closed);
        let mut written = entries.clone();
        if closed {
            let crc = crc32c::crc32c(&enc[..enc.len() - TLOG_ENTRY_LEN]);
            written.push(Entry::TlogClosed { crc });
        }
        let m = mutate(&enc, &ms);
        let got = bounded(&m, || parse_tlog("t", &m, id, seq, tear));
        let Ok(p) = got else { return Ok(()) };
        let parsed: Vec<Entry> = p.entries.iter().map(|(_, e)| *e).collect();
        prop_assert!(parsed.len() <= written.len() && parsed[..] == written[..parsed.len()],
            "parsed entries {:?} are not a prefix of {:?}", parsed, written);
        if !tear && closed && m != enc {
            prop_assert!(m.len() < enc.len() && parsed.len() < written.len(),
                "a changed closed TLog parsed whole");
        }
    }

    #[test]
    fn checkpoint_objects_refuse_random_bytes(
        b in bytes(3000), id in volume_id(), n in any::<u64>(), page in any::<u64>()
    ) {
        prop_assert!(bounded(&b, || ck::decode_page("p", &b, id, n, page)).is_err());
        prop_assert!(bounded(&b, || ck::decode_scos("s", &b, id, n)).is_err());
        prop_assert!(bounded(&b, || ck::decode_index("i", &b, id, n)).is_err());
    }

    #[test]
    fn checkpoint_objects_detect_every_change(
        id in volume_id(), t in 1u64..1 << 40, e in 0u64..1 << 24, page in 0u64..1 << 40,
        locs in prop::collection::btree_map(0u64..ck::PAGE_CLUSTERS, loc(), 0..20),
        scos in prop::collection::vec(
            (any::<u64>(), (any::<u64>(), 0..=MAX_SCO_CLUSTERS, any::<u32>())), 0..20),
        size in any::<u64>(), mapped in any::<u64>(),
        pages in prop::collection::btree_map(any::<u64>(), any::<(u64, u64)>(), 0..20),
        ms in mutations()
    ) {
        // Checkpoint t of epoch e, whose index names pages of checkpoints up to t, of epochs
        // up to e.
        let n = ck::checkpoint_id(t, e).expect("fits");
        let entries: Vec<(u64, Loc)> =
            locs.into_iter().map(|(a, l)| (page * ck::PAGE_CLUSTERS + a, l)).collect();
        let pages: Vec<(u64, u64)> = pages
            .into_iter()
            .map(|(p, (c, ce))| {
                let ct = 1 + c % t;
                let id = if ct == t { n } else { ck::checkpoint_id(ct, ce % (e + 1)).expect("fits") };
                (p, id)
            })
            .collect();
        let ix = ck::Index { size, mapped, pages };
        let objects = [
            ck::encode_page(id, n, page, &entries),
            ck::encode_scos(id, n, &scos),
            ck::encode_index(id, n, &ix),
        ];
        prop_assert_eq!(ck::decode_page("p", &objects[0], id, n, page), Ok(entries));
        prop_assert_eq!(ck::decode_scos("s", &objects[1], id, n), Ok(scos));
        prop_assert_eq!(ck::decode_index("i", &objects[2], id, n), Ok(ix));
        for (k, o) in objects.iter().enumerate() {
            let m = mutate(o, &ms);
            if m == *o {
                continue;
            }
            let refused = bounded(&m, || match k {
                0 => ck::decode_page("p", &m, id, n, page).is_err(),
                1 => ck::decode_scos("s", &m, id, n).is_err(),
                _ => ck::decode_index("i", &m, id, n).is_err(),
            });
            prop_assert!(refused, "object {} decoded after a change", k);
        }
    }

    /// A count field that lies, under a valid CRC (a writer's bug, not damage), is refused
    /// before it sizes anything.
    #[test]
    fn checkpoint_counts_that_lie_are_refused_without_allocating(
        id in volume_id(), n in 1u64.., page in 0u64..1 << 40,
        real in 0usize..8, count in any::<u64>()
    ) {
        let l = Loc { sco: 1, offset: 0, hash: ClusterHash::of(b"") };
        let entries: Vec<(u64, Loc)> =
            (0..real as u64).map(|a| (page * ck::PAGE_CLUSTERS + a, l)).collect();
        let mut p = ck::encode_page(id, n, page, &entries);
        p[44..48].copy_from_slice(&(count as u32).to_le_bytes());
        let p = reseal(p);
        let r = bounded(&p, || ck::decode_page("p", &p, id, n, page));
        prop_assert_eq!(r.is_ok(), count as u32 as usize == real);
        let mut s = ck::encode_scos(id, n, &vec![(1, (1, 1, 1)); real]);
        s[36..44].copy_from_slice(&count.to_le_bytes());
        let s = reseal(s);
        let r = bounded(&s, || ck::decode_scos("s", &s, id, n));
        prop_assert_eq!(r.is_ok(), count == real as u64);
        let ix = ck::Index { size: 0, mapped: 0, pages: (0..real as u64).map(|p| (p, 1)).collect() };
        let mut i = ck::encode_index(id, n, &ix);
        i[52..60].copy_from_slice(&count.to_le_bytes());
        let i = reseal(i);
        let r = bounded(&i, || ck::decode_index("i", &i, id, n));
        prop_assert_eq!(r.is_ok(), count == real as u64);
    }

    #[test]
    fn manifests_refuse_random_bytes(b in bytes(2000)) {
        prop_assert!(bounded(&b, || Manifest::from_xml("m", &b)).is_err());
    }

    /// The manifest has no checksum: a changed one is refused or reads as a manifest that
    /// writes and reads back as itself.
    #[test]
    fn changed_manifests_are_refused_or_consistent(
        volume in volume_id(), generation in any::<u64>(),
        tlogs in prop::option::of((1u64..1 << 62, 0u64..1 << 60)),
        ck_at in any::<u64>(), with_ck in any::<bool>(), ms in mutations(),
        epoch in 1u64..1 << 24, second in any::<u64>(), parent in any::<bool>(),
        template in any::<u64>()
    ) {
        let tlogs = tlogs.map(|(f, extra)| (f, f + extra));
        let mut checkpoint = tlogs.filter(|_| with_ck).map(|(_, l)| (1 + ck_at % l, epoch));
        // Two epoch ranges within the TLogs named: the first from their first TLog.
        let ranges = tlogs.map_or(Vec::new(), |(f, l)| {
            let at = f + second % (l - f + 1);
            if at > f { vec![(f, epoch), (at, epoch + 1)] } else { vec![(f, epoch)] }
        });
        let epochs = Epochs::new(ranges).expect("ranges");
        // A clone's: a parent up to the TLog before the first, and a checkpoint of it.
        let lineage = match tlogs {
            Some((f, _)) if parent && f > 1 => {
                checkpoint = Some((f - 1, epoch));
                let a = crate::volume::clone::Ancestor {
                    volume,
                    last_tlog: f - 1,
                    epochs: Epochs::new(vec![(1, epoch)]).expect("ranges"),
                };
                crate::volume::clone::Lineage::new(vec![a]).expect("lineage")
            }
            _ => Default::default(),
        };
        let m = Manifest { volume, generation, tlogs, checkpoint, epochs, lineage, template };
        let xml = m.to_xml();
        prop_assert_eq!(Manifest::from_xml("m", &xml), Ok(m));
        let x = mutate(&xml, &ms);
        if let Ok(got) = bounded(&x, || Manifest::from_xml("m", &x)) {
            prop_assert_eq!(Manifest::from_xml("m", &got.to_xml()), Ok(got));
        }
    }

    #[test]
    fn mds_locations_round_trip_every_value(b in any::<[u8; 28]>(), l in loc()) {
        // Byte 11 (the cluster index's top byte) names the hash's algorithm: 0 or 1.
        match Loc::decode(&b) {
            Ok(d) => prop_assert_eq!(d.encode(), b),
            Err(_) => prop_assert!(b[11] > 1),
        }
        prop_assert_eq!(Loc::decode(&l.encode()), Ok(l));
    }

    #[test]
    fn sequence_names_parse_only_their_own_form(s in "[0-9a-fA-F+-]{0,18}", n in any::<u64>()) {
        if let Some(seq) = parse_seq_name(&s) {
            prop_assert_eq!(sco_name(seq), s);
        }
        prop_assert_eq!(parse_seq_name(&sco_name(n)), Some(n));
    }
}

mod bounded_reads {
    use std::path::Path;
    use std::sync::Arc;

    use super::super::files::read_all;
    use super::super::format::{CLUSTER_SIZE, MAX_SCO_LEN, MAX_TLOG_LEN};
    use super::super::restart::repair::repair_sealed_sco;
    use super::super::{LocalFs, SimFs, StdFs, Volume, VolumeOptions};
    use super::*;

    /// What a reader may allocate at once while it reads a SCO in chunks (1 MiB) or decodes
    /// fixed-size parts: far below the lengths the hostile counts below claim.
    const CHUNKED: usize = 2 << 20;

    #[test]
    fn a_local_file_longer_than_any_sco_is_refused_not_allocated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = StdFs.create_new(&dir.path().join("huge")).expect("create");
        f.set_len(MAX_SCO_LEN.max(MAX_TLOG_LEN) + 1)
            .expect("sparse");
        let (r, largest) = largest_allocation(|| read_all(&*f, "TLog 0000000000000001"));
        // (Never print what was read: it could be a gigabyte.)
        let msg = r.map(|b| b.len()).expect_err("refused").to_string();
        assert!(msg.contains("more than any SCO or TLog"), "{msg}");
        assert!(largest < 64 << 10, "allocated {largest} bytes");
        f.set_len(100).expect("shrink");
        assert_eq!(read_all(&*f, "small").expect("read").len(), 100);
    }

    /// The SCO repair after a torn seal takes its cluster count from a TLog entry: it checks
    /// it against the SCO's length and reads the data in bounded chunks.
    #[test]
    fn the_sco_repair_reads_in_bounded_chunks_whatever_the_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sco_dir = dir.path();
        let id = VolumeId([3; 16]);
        let (seq, clusters) = (7u64, 16_384u32); // 64 MiB of data, sparse
        let path = sco_dir.join(sco_name(seq));
        let f = StdFs.create_new(&path).expect("create");
        f.write_at(&ScoHeader { volume: id, seq }.encode(), 0)
            .expect("header");
        let data_len = u64::from(clusters) * CLUSTER_SIZE as u64;
        f.set_len(SCO_HEADER_LEN + data_len).expect("sparse data");
        let zeros = vec![0u8; 1 << 20];
        let crc = (0..data_len >> 20).fold(0, |c, _| crc32c::crc32c_append(c, &zeros));
        let repair = |clusters: u32, crc: u32| {
            largest_allocation(|| repair_sealed_sco(&StdFs, sco_dir, id, seq, clusters, crc))
        };
        for lie in [
            clusters + 1,
            MAX_SCO_CLUSTERS,
            MAX_SCO_CLUSTERS + 1,
            u32::MAX,
        ] {
            let (r, largest) = repair(lie, crc);
            assert!(
                !r.expect("no I/O error"),
                "{lie} clusters is longer than the SCO"
            );
            assert!(
                largest < 64 << 10,
                "{lie} clusters: allocated {largest} bytes"
            );
        }
        let (r, largest) = repair(clusters, crc ^ 1);
        assert!(
            !r.expect("no I/O error"),
            "a wrong data CRC is not repaired"
        );
        assert!(largest <= CHUNKED, "allocated {largest} bytes");
        assert_eq!(
            f.file_len().expect("len"),
            SCO_HEADER_LEN + data_len,
            "untouched"
        );
        let (r, largest) = repair(clusters, crc);
        assert!(r.expect("no I/O error"), "matching data is repaired");
        assert!(largest <= CHUNKED, "allocated {largest} bytes");
        let mut foot = [0u8; SCO_FOOTER_LEN];
        f.read_at(&mut foot, SCO_HEADER_LEN + data_len)
            .expect("footer");
        assert_eq!(
            ScoFooter::decode("s", &foot),
            Ok(ScoFooter {
                seq,
                clusters,
                data_crc: crc
            })
        );
    }

    /// The defect of issue #10 end to end: the open TLog seals the open SCO with a count far
    /// beyond its data (a torn seal, or damage under a valid CRC). The restart cuts the TLog
    /// there without allocating what the count claims (1 GiB) and keeps every cluster.
    #[test]
    fn a_restart_does_not_allocate_what_a_torn_seal_claims() {
        let opts = VolumeOptions {
            sco_clusters: 16,
            tlog_scos: 2,
            checkpoint_tlogs: 64,
        };
        let fs = SimFs::new();
        let lfs: Arc<dyn LocalFs> = Arc::new(fs.clone());
        let vdir = Path::new("/vol");
        let id = VolumeId([0x5a; 16]);
        let vol = Volume::create(lfs.clone(), vdir, id, opts, 0).expect("create");
        let data: Vec<u8> = (0..3 * CLUSTER_SIZE).map(|i| (i % 253) as u8).collect();
        vol.write(0, &data, true).expect("write");
        drop(vol);
        let tpath = vdir.join("tlog").join(super::super::format::tlog_name(1));
        let mut t = fs.read_file(&tpath).expect("tlog");
        let claim = Entry::ScoSealed {
            sco: 1,
            clusters: MAX_SCO_CLUSTERS,
            crc: 0,
        };
        t.extend_from_slice(&claim.encode());
        fs.overwrite_durably(&tpath, &t).expect("append");
        let (vol, largest) = largest_allocation(|| Volume::open(lfs.clone(), vdir, id, opts));
        let vol = vol.expect("the restart cuts the bogus seal");
        assert!(
            largest < 32 << 20,
            "the restart allocated {largest} bytes at once"
        );
        let mut back = vec![0u8; data.len()];
        assert_eq!(vol.read(0, &mut back).expect("read"), data.len());
        assert!(back == data, "committed clusters survive the cut");
        assert!(vol.verify().expect("verify").is_empty());
    }

    /// A backend object far larger than its kind may be (a 64 MiB manifest) is refused from
    /// its size, never read into memory.
    #[test]
    fn a_backend_object_larger_than_its_format_allows_is_not_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = strata_backend::LocalStore::open(dir.path().join("backend")).expect("store");
        let store: &dyn strata_backend::ObjectStore = &store;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let id = VolumeId([9; 16]);
        let xml = Manifest::new(id).to_xml();
        rt.block_on(store.put(super::super::backend::manifest::MANIFEST_NAME, xml.into()))
            .expect("put");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("backend").join("manifest.xml"))
            .expect("manifest file");
        file.set_len(64 << 20).expect("sparse manifest");
        let lfs: Arc<dyn LocalFs> = Arc::new(SimFs::new());
        let opts = VolumeOptions::default();
        let (r, largest) = largest_allocation(|| {
            rt.block_on(Volume::restore(store, lfs, Path::new("/vol"), id, opts))
        });
        let msg = r.map(|_| ()).expect_err("refused").to_string();
        assert!(msg.contains("more than"), "{msg}");
        assert!(largest < 1 << 20, "allocated {largest} bytes at once");
    }
}
