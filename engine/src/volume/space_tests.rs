//! Holes, zeros and SEEK at the volume level (issue 19): a punched range or a write of zero
//! clusters reads as zeros and frees its space at once (on the backend after a scrub); on a
//! clone it never falls through to the parent's data; a snapshot taken before keeps its view;
//! SEEK finds exactly the clusters written. (The crash model covers both in
//! `tests.rs`'s random workload.)

use std::sync::Arc;
use std::time::Duration;

use super::clone_tests::{ns, World};
use super::scrub::ScrubOptions;
use super::tests::{fill, small_opts, whole};
use super::*;
use crate::progress::NoProgress;
use crate::types::SeekWhat;

const P: VolumeId = VolumeId([1; 16]);
const C1: VolumeId = VolumeId([2; 16]);

fn backend_bytes(w: &World, id: VolumeId) -> u64 {
    w.rt.block_on(ns(&w.root, id).list("", None, 1_000_000))
        .expect("list")
        .objects
        .iter()
        .map(|o| o.size)
        .sum()
}

#[test]
fn seek_finds_exactly_the_clusters_written_and_the_holes_between() {
    let w = World::new();
    let v = w.create(P);
    v.write(8192, &[1u8; 4096], false).expect("write");
    v.write(65_536, &[2u8; 8192], false).expect("write");
    v.resize(1 << 20).expect("resize");
    let data = |off| v.seek(off, SeekWhat::Data).expect("seek");
    let hole = |off| v.seek(off, SeekWhat::Hole).expect("seek");
    assert_eq!(data(0), Some(8192));
    assert_eq!(data(9000), Some(9000), "inside data: the offset itself");
    assert_eq!(data(12_288), Some(65_536));
    assert_eq!(data(73_728), None, "no data after the last cluster written");
    assert_eq!(hole(0), Some(0));
    assert_eq!(hole(8192), Some(12_288));
    assert_eq!(hole(65_536), Some(73_728));
    assert_eq!(hole(1 << 20), None, "at the end: NXIO");
    v.resize(73_728).expect("shrink");
    assert_eq!(hole(65_536), Some(73_728), "the end is a hole");
    // A punched cluster and a cluster of zeros are holes.
    v.punch(65_536, 4096).expect("punch");
    assert_eq!(data(12_288), Some(69_632));
    v.write(69_632, &[0u8; 4096], false).expect("zeros");
    assert_eq!(data(12_288), None);
    assert_eq!(hole(8192), Some(12_288));
}

#[test]
fn holes_and_zeros_free_space_at_once_and_on_the_backend_after_a_scrub() {
    let w = World::new();
    let v = w.create(P);
    let mut want = fill(&v, 2 << 20, 7);
    assert_eq!(v.space_used(), 2 << 20);
    w.backup(&v);
    let before = backend_bytes(&w, P);
    // A punch with partial clusters at both ends: those are zeroed, the whole ones unmapped.
    v.punch(1000, (1 << 20) - 1000 + 100).expect("punch");
    want[1000..(1 << 20) + 100].fill(0);
    assert!(whole(&v) == want, "the hole reads as zeros");
    // Clusters 1..256 unmapped; 0 and 256 partly zeroed, kept.
    assert_eq!(v.space_used(), (1 << 20) + 4096);
    // Zeros written over mapped clusters unmap them.
    v.write(1 << 20, &vec![0u8; 512 << 10], true)
        .expect("zeros");
    want[1 << 20..(1 << 20) + (512 << 10)].fill(0);
    assert!(whole(&v) == want);
    assert_eq!(v.space_used(), (512 << 10) + 4096);
    assert_eq!(v.stats().clusters_unmapped, 255 + 128);
    // With zero detection off, zeros are stored like any data.
    v.set_zero_detect(false);
    v.write((3 << 20) / 2, &vec![0u8; 64 << 10], true)
        .expect("zeros stored");
    assert_eq!(
        v.space_used(),
        (512 << 10) + 4096,
        "mapped clusters stay mapped"
    );
    v.write(0, &vec![0u8; 64 << 10], true)
        .expect("zeros stored");
    // Cluster 0 was mapped; 1..16 are mapped now.
    assert_eq!(v.space_used(), (512 << 10) + (64 << 10));
    v.set_zero_detect(true);
    want[(3 << 20) / 2..(3 << 20) / 2 + (64 << 10)].fill(0);
    want[..64 << 10].fill(0);
    assert!(whole(&v) == want);
    assert!(v.verify().expect("verify").is_empty());
    // On the backend: after an upload and a scrub, the freed clusters' SCOs are compacted.
    w.backup(&v);
    let opts = ScrubOptions {
        threshold: 0.75,
        grace: Duration::ZERO,
        bandwidth: 0,
    };
    v.scrub(&opts, &NoProgress).expect("scrub");
    v.scrub(&opts, &NoProgress).expect("second pass deletes");
    let after = backend_bytes(&w, P);
    assert!(
        after < before / 2,
        "backend bytes {before} -> {after}: the space did not come back"
    );
    assert!(whole(&v) == want, "reads unchanged by the scrub");
    // A local and a backend restart keep the holes.
    drop(v);
    let v = w.open(P);
    assert!(whole(&v) == want);
    // Cluster 0 was mapped; 1..16 are mapped now.
    assert_eq!(v.space_used(), (512 << 10) + (64 << 10));
    drop(v);
    let v = w.restore(P);
    assert!(whole(&v) == want);
    assert!(v.verify().expect("verify").is_empty());
}

#[test]
fn on_a_clone_holes_read_as_zeros_and_snapshots_keep_their_view() {
    let w = World::new();
    let p = w.create(P);
    let base = fill(&p, 256 << 10, 3);
    p.snapshot_create("s", Vec::new()).expect("snapshot");
    let c = w.clone_of(&p, "s", C1);
    // The clone's holes and zeros read as zeros, not as the parent's data.
    c.punch(0, 65_536).expect("punch");
    c.write(65_536, &vec![0u8; 65_536], true).expect("zeros");
    let mut want_c = base.clone();
    want_c[..131_072].fill(0);
    assert!(whole(&c) == want_c);
    assert!(whole(&p) == base, "the parent keeps its data");
    // The parent punches after a snapshot: the snapshot (as a clone and a rollback see it)
    // still has the data.
    p.snapshot_create("before", Vec::new()).expect("snapshot");
    p.punch(0, 131_072).expect("punch");
    p.write(131_072, &vec![0u8; 65_536], true).expect("zeros");
    let mut want_p = base.clone();
    want_p[..196_608].fill(0);
    assert!(whole(&p) == want_p);
    let n = p.snapshot_info("before").expect("snapshot").record.tlog;
    w.backup(&p);
    let lfs: Arc<dyn LocalFs> = Arc::new(SimFs::new());
    let view =
        w.rt.block_on(Volume::restore_at(
            &*ns(&w.root, P),
            lfs,
            std::path::Path::new("/view"),
            P,
            small_opts(),
            Some(n),
        ))
        .expect("the volume as of the snapshot");
    w.attach(&view);
    assert!(
        whole(&view) == base,
        "the earlier snapshot's view keeps its data"
    );
    w.backup(&c);
    drop(c);
    assert!(
        whole(&w.open(C1)) == want_c,
        "the clone after a local restart"
    );
    assert!(
        whole(&w.restore(C1)) == want_c,
        "the clone after a backend restart"
    );
    p.snapshot_rollback("before", &NoProgress)
        .expect("rollback");
    assert!(whole(&p) == base, "a rollback to the earlier snapshot");
}

#[test]
fn allocate_grows_the_volume_and_reserves_what_is_not_written_yet() {
    let w = World::new();
    let v = w.create(P);
    v.write(0, &[5u8; 8192], false).expect("write");
    v.allocate(0, 1 << 20).expect("allocate");
    assert_eq!(v.size(), 1 << 20, "grown over the range");
    assert_eq!(v.reserved_bytes().expect("reserved"), (1 << 20) - 8192);
    v.allocate(4096, 4096).expect("allocate inside");
    assert_eq!(v.size(), 1 << 20, "never shrunk");
    v.write(65_536, &[6u8; 65_536], false).expect("write");
    assert_eq!(
        v.reserved_bytes().expect("reserved"),
        (1 << 20) - 8192 - 65_536,
        "written clusters are allocated, no longer reserved"
    );
    // A hole gives the reservation back; so does a shrink.
    v.punch(0, 262_144).expect("punch");
    assert_eq!(v.reserved_bytes().expect("reserved"), (1 << 20) - 262_144);
    v.resize(524_288).expect("shrink");
    v.sync()
        .expect("commit the shrink, as the facade's truncate does");
    assert_eq!(v.reserved_bytes().expect("reserved"), 262_144);
    // Kept across a machine crash (the reservations and the size were made durable): the
    // volume is not closed (a close would commit redb once more), the machine just dies.
    std::mem::forget(v);
    w.sim.crash(CrashMode::DropAll);
    let v = w.open(P);
    assert_eq!(v.reserved_bytes().expect("reserved"), 262_144);
    assert_eq!(v.size(), 524_288);
}

#[test]
fn a_punch_racing_a_shrink_never_grows_the_volume() {
    // The review's race: a punch whose partial end is past a shrink that lands meanwhile must
    // not write it back (it used to grow the volume again in most runs).
    let w = World::new();
    let v = Arc::new(w.create(P));
    let big = 64 * 4096 + 100;
    let mut grew = 0;
    for i in 0..300u64 {
        v.resize(0).expect("reset");
        v.write(0, &vec![7u8; big as usize], false).expect("fill");
        let b = Arc::new(std::sync::Barrier::new(2));
        let (v2, b2) = (v.clone(), b.clone());
        let t = std::thread::spawn(move || {
            b2.wait();
            v2.punch(100, big).expect("punch");
        });
        b.wait();
        for _ in 0..(i % 64) {
            std::hint::spin_loop();
        }
        v.resize(4096).expect("shrink");
        t.join().expect("join");
        if v.size() != 4096 {
            grew += 1;
        }
    }
    assert_eq!(
        grew, 0,
        "the punch grew the volume back in {grew} of 300 runs"
    );
}

#[test]
fn unmaps_go_only_into_tlogs_whose_header_older_builds_refuse() {
    use super::format::{parse_tlog, Entry, TlogHeader, TLOG_HEADER_LEN};
    let w = World::new();
    let v = w.create(P);
    // The open TLog as an older build wrote it: MD5 hashes, under a header without the Unmap
    // flag (nor the hashes flag).
    format::hash_as_older_build(true);
    v.write(0, &[3u8; 65_536], true).expect("write");
    format::hash_as_older_build(false);
    drop(v);
    let path = layout::tlog_dir(std::path::Path::new("/v").join(P.to_string()).as_path())
        .join(format::tlog_name(1));
    let f = w.lfs.open(&path).expect("open TLog");
    let old = TlogHeader { volume: P, seq: 1 }.encode_flags(0);
    f.write_at(&old, 0).expect("header");
    f.sync_data().expect("sync");
    let v = w.open(P);
    v.punch(0, 8192).expect("punch");
    // The open TLog's entries may wait in memory (`deferred.rs`): into the file first.
    v.write_deferred().expect("write what waits");
    let tlogs = |seq: u64| {
        let p = layout::tlog_dir(std::path::Path::new("/v").join(P.to_string()).as_path())
            .join(format::tlog_name(seq));
        let f = w.lfs.open(&p).expect("open");
        let mut b = vec![0u8; f.file_len().expect("len") as usize];
        f.read_at(&mut b, 0).expect("read");
        parse_tlog("t", &b, P, seq, true).expect("parse")
    };
    let first = tlogs(1);
    assert!(!first.unmap_ok);
    assert!(
        !first
            .entries
            .iter()
            .any(|(_, e)| matches!(e, Entry::Unmap { .. })),
        "an Unmap went into the older build's TLog"
    );
    assert!(
        matches!(first.entries.last(), Some((_, Entry::TlogClosed { .. }))),
        "closed first"
    );
    let second = tlogs(2);
    assert!(second.unmap_ok);
    assert!(second
        .entries
        .iter()
        .any(|(_, e)| matches!(e, Entry::Unmap { .. })));
    assert!(second
        .entries
        .first()
        .is_some_and(|(p, _)| *p == TLOG_HEADER_LEN as u64));
    drop(v);
    let v = w.open(P);
    assert!(read_zeros(&v, 0, 8192));
}

fn read_zeros(v: &Volume, off: u64, len: usize) -> bool {
    let mut b = vec![1u8; len];
    v.read(off, &mut b).expect("read") == len && b.iter().all(|x| *x == 0)
}

#[test]
fn zeros_are_found_wherever_a_nonzero_byte_hides_and_hash_like_any_cluster() {
    use super::space::{is_zeros, new_cluster_hash};
    let mut c = vec![0u8; 4096];
    assert!(is_zeros(&c) && is_zeros(&[]) && is_zeros(&c[..10]));
    for at in [0, 1, 63, 64, 65, 511, 575, 576, 2048, 4095] {
        c[at] = 0x80;
        assert!(!is_zeros(&c), "byte {at}");
        assert!(!is_zeros(&c[..=at]), "short, byte {at}");
        assert_eq!(new_cluster_hash(&c), format::ClusterHash::of(&c));
        c[at] = 0;
    }
    assert_eq!(new_cluster_hash(&c), format::ClusterHash::of(&c));
}

/// An uncork recomputes which redb entries the changes still corked hide: a hole punched
/// (and a shrink) in the open TLog must keep hiding the data redb holds for that range after
/// an earlier TLog is applied.
#[test]
fn holes_and_shrinks_still_corked_hide_the_data_an_uncork_left_in_redb() {
    let (rt, store, _fs, v) = super::tests::fresh_backed(small_opts());
    let old = vec![7u8; 8 * 4096];
    v.write(0, &old, false).expect("write");
    v.write(64 * 4096, &old, false).expect("write");
    rt.block_on(v.backup(&*store, true)).expect("backup");
    assert!(v.stats().applied_tlog > 0, "the data is in redb");
    // Enough to close at least one more TLog, then a hole and a shrink in the open one.
    v.write(128 * 4096, &vec![9u8; 64 * 4096], false)
        .expect("write");
    v.punch(0, 8 * 4096).expect("punch");
    v.resize(64 * 4096).expect("shrink");
    v.resize(128 * 4096).expect("grow back");
    let applied = v.stats().applied_tlog;
    rt.block_on(v.backup(&*store, false)).expect("backup");
    assert!(v.stats().applied_tlog > applied, "a later TLog was applied");
    assert_eq!(
        whole(&v),
        vec![0u8; 128 * 4096],
        "corked hole or shrink lost"
    );
}
