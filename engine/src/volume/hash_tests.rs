//! Cluster hashes across an upgrade: a volume an older build wrote (MD5 hashes, its open
//! TLog's header without the hashes flag) goes on with BLAKE3 and checks every cluster with its
//! own algorithm: local reads after a restart, the online verify, a backup and a restore from
//! the backend alone (whose reads check every cluster).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::format::{hash_as_older_build, parse_tlog, tlog_name, Entry, HashAlg, TlogHeader};
use super::tests::{dir, fail_puts, fill, fresh, restore_from, rt, small_opts, whole, VOL};
use super::*;

/// The algorithm of every mapped cluster's hash, counted.
fn algs(vol: &Volume) -> BTreeMap<&'static str, u64> {
    let st = vol.state.read();
    let mut out = BTreeMap::new();
    for ca in 0..vol.size() / 4096 {
        if let Some(l) = vol.lookup(&st, ca).expect("lookup") {
            let name = match l.hash.alg() {
                HashAlg::Md5 => "md5",
                HashAlg::Blake3 => "blake3",
            };
            *out.entry(name).or_default() += 1;
        }
    }
    out
}

/// The hash algorithms of TLog `seq`'s cluster entries, and whether its header allows others
/// than MD5.
fn tlog_algs(lfs: &Arc<dyn LocalFs>, seq: u64) -> (Vec<HashAlg>, bool) {
    let f = lfs
        .open(&dir().join("tlog").join(tlog_name(seq)))
        .expect("open TLog");
    let mut b = vec![0u8; usize::try_from(f.file_len().expect("len")).expect("size")];
    f.read_at(&mut b, 0).expect("read");
    let p = parse_tlog("t", &b, VOL, seq, true).expect("parse");
    let algs = p
        .entries
        .iter()
        .filter_map(|(_, e)| match e {
            Entry::Cluster { hash, .. } => Some(hash.alg()),
            _ => None,
        })
        .collect();
    (algs, p.hashes_ok)
}

#[test]
fn a_volume_an_older_build_wrote_goes_on_in_blake3_and_checks_each_cluster_by_its_own_hash() {
    let rt = rt();
    let store = Arc::new(fail_puts());
    let opts = small_opts();
    // The older build: 40 clusters with MD5 hashes (two whole TLogs of 32, and 8 in the open
    // one), whose header it wrote without the hashes flag.
    let (_fs, lfs, vol) = fresh(opts);
    hash_as_older_build(true);
    let mut expect = fill(&vol, 40 * 4096, 1);
    hash_as_older_build(false);
    vol.sync().expect("commit");
    let open_seq = vol.state.read().tlog.seq;
    drop(vol);
    let f = lfs
        .open(&dir().join("tlog").join(tlog_name(open_seq)))
        .expect("open TLog");
    let old = TlogHeader {
        volume: VOL,
        seq: open_seq,
    }
    .encode_flags(super::format::TLOG_FLAG_UNMAP);
    f.write_at(&old, 0).expect("header");
    f.sync_data().expect("sync");

    // This build: it reopens, overwrites half of it and writes past it, all in BLAKE3.
    let vol = Volume::open(lfs.clone(), &dir(), VOL, opts).expect("open");
    assert_eq!(whole(&vol), expect);
    assert_eq!(algs(&vol), BTreeMap::from([("md5", 40)]));
    let newer = fill(&vol, 20 * 4096, 2);
    expect[..newer.len()].copy_from_slice(&newer);
    let past: Vec<u8> = (0..8 * 4096).map(|i| (i % 251) as u8).collect();
    vol.write(40 * 4096, &past, false).expect("write past");
    expect.extend_from_slice(&past);
    vol.sync().expect("commit");
    assert_eq!(algs(&vol), BTreeMap::from([("blake3", 28), ("md5", 20)]));
    // The older build's open TLog was closed before the first BLAKE3 hash: it holds MD5 only;
    // the next one, flagged, the rest.
    let (first, first_flagged) = tlog_algs(&lfs, open_seq);
    assert!(!first_flagged && !first.is_empty());
    assert!(first.iter().all(|a| *a == HashAlg::Md5), "{first:?}");
    let (next, next_flagged) = tlog_algs(&lfs, open_seq + 1);
    assert!(next_flagged && next.contains(&HashAlg::Blake3), "{next:?}");
    assert!(vol.verify().expect("verify").is_empty());

    // A restart replays TLogs of both kinds.
    drop(vol);
    let vol = Volume::open(lfs.clone(), &dir(), VOL, opts).expect("reopen");
    assert_eq!(whole(&vol), expect);
    assert!(vol.verify().expect("verify").is_empty());

    // From the backend alone: every cluster fetched is checked against its hash.
    rt.block_on(vol.backup(&*store, true)).expect("backup");
    let fs2: Arc<dyn LocalFs> = Arc::new(SimFs::new());
    let vol2 = restore_from(&rt, &store, fs2, opts).expect("restore");
    assert_eq!(algs(&vol2), BTreeMap::from([("blake3", 28), ("md5", 20)]));
    assert_eq!(whole(&vol2), expect);
    assert!(vol2.verify().expect("verify").is_empty());
}
