//! Issue 19 through the facade: DEALLOCATE, ALLOCATE and SEEK on a regular file and on a
//! volume, across a restart of the engine (the file journal replayed, the volume's TLogs
//! replayed): a hole stays a hole, the file's dropped extents are garbage (their space comes
//! back), SEEK finds exactly the data written.

use std::path::Path;
use std::sync::Arc;

use strata_backend::{MemStore, ObjectStore};
use strata_engine::*;

const ME: Cred = Cred { uid: 0, gid: 0 };
const MIB: u64 = 1 << 20;

fn open(dir: &Path, store: Arc<dyn ObjectStore>) -> Filesystem {
    Filesystem::open_with(
        EngineConfig::new(dir),
        OpenOptions {
            store: Some(store),
            ..OpenOptions::default()
        },
    )
    .expect("open engine")
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn read(fs: &Filesystem, h: Handle, off: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    let (n, _) = fs.read(h, off, &mut b).expect("read");
    b.truncate(n);
    b
}

fn seek(fs: &Filesystem, h: Handle, off: u64, what: SeekWhat) -> Option<SeekFound> {
    fs.seek(h, off, what).expect("seek")
}

#[test]
fn a_regular_file_drops_whole_extents_and_keeps_the_hole_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn ObjectStore> = Arc::new(MemStore::new());
    let data = pattern((4 * MIB) as usize, 1);
    let h = {
        let fs = open(dir.path(), store.clone());
        let h = fs
            .create(fs.root(), b"notes.bin", 0o644, ME, CreateMode::Guarded)
            .expect("create")
            .attr
            .handle;
        fs.write(h, 0, &data, true).expect("write");
        // Uploaded: extents 0..4 on the backend.
        fs.flush_to_backend().expect("flush");
        let used = fs.getattr(h).expect("getattr").space_used;
        assert_eq!(used, 4 * MIB);
        // A hole from the middle of extent 0 to the end of extent 2: extents 1 and 2 go,
        // extent 0's second half is zeroed.
        fs.deallocate(h, MIB / 2, 2 * MIB + MIB / 2)
            .expect("deallocate");
        assert_eq!(fs.getattr(h).expect("getattr").size, 4 * MIB, "size kept");
        assert!(read(&fs, h, MIB / 2, (3 * MIB - MIB / 2) as usize)
            .iter()
            .all(|b| *b == 0));
        assert!(read(&fs, h, 0, (MIB / 2) as usize) == data[..(MIB / 2) as usize]);
        assert!(read(&fs, h, 3 * MIB, 4096) == data[(3 * MIB) as usize..(3 * MIB + 4096) as usize]);
        assert_eq!(fs.getattr(h).expect("getattr").space_used, 2 * MIB);
        // SEEK at the extents' granularity: extent 0 still holds data, 1 and 2 are gone.
        let found = seek(&fs, h, MIB / 2, SeekWhat::Hole).expect("hole");
        assert_eq!(found.offset, MIB);
        h
    };
    // A restart replays the journal: the hole stays.
    let fs = open(dir.path(), store);
    let mut want = data.clone();
    want[(MIB / 2) as usize..(3 * MIB) as usize].fill(0);
    assert!(read(&fs, h, 0, (4 * MIB) as usize) == want);
    assert_eq!(seek(&fs, h, 0, SeekWhat::Hole).map(|f| f.offset), Some(MIB));
    assert_eq!(
        seek(&fs, h, MIB, SeekWhat::Data).map(|f| f.offset),
        Some(3 * MIB)
    );
    assert_eq!(
        seek(&fs, h, 4 * MIB, SeekWhat::Data),
        None,
        "at the end: NXIO"
    );
}

#[test]
fn a_volume_keeps_holes_and_reservations_across_a_restart_and_seek_finds_its_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn ObjectStore> = Arc::new(MemStore::new());
    let h = {
        let fs = open(dir.path(), store.clone());
        let h = fs
            .create(fs.root(), b"vm.raw", 0o644, ME, CreateMode::Guarded)
            .expect("create")
            .attr
            .handle;
        fs.write(h, 0, &pattern(65_536, 2), false).expect("write");
        fs.write(h, MIB, &pattern(65_536, 3), false).expect("write");
        fs.allocate(h, 0, 4 * MIB).expect("allocate");
        assert_eq!(fs.getattr(h).expect("getattr").size, 4 * MIB);
        fs.deallocate(h, 0, 32_768).expect("deallocate");
        let a = fs.getattr(h).expect("getattr");
        assert_eq!(a.space_used, 65_536 + 32_768);
        let found = seek(&fs, h, 0, SeekWhat::Data).expect("data");
        assert_eq!((found.offset, found.eof), (32_768, false));
        let found = seek(&fs, h, MIB + 65_536, SeekWhat::Data).expect("answer");
        assert_eq!(
            (found.offset, found.eof),
            (4 * MIB, true),
            "no data after: the end"
        );
        h
    };
    let fs = open(dir.path(), store);
    assert!(read(&fs, h, 0, 32_768).iter().all(|b| *b == 0));
    assert!(read(&fs, h, 32_768, 32_768) == pattern(65_536, 2)[32_768..]);
    assert!(read(&fs, h, MIB, 65_536) == pattern(65_536, 3));
    assert_eq!(fs.getattr(h).expect("getattr").space_used, 65_536 + 32_768);
    assert_eq!(seek(&fs, h, 0, SeekWhat::Hole).map(|f| f.offset), Some(0));
    assert_eq!(
        seek(&fs, h, 32_768, SeekWhat::Hole).map(|f| f.offset),
        Some(65_536)
    );
}

#[test]
fn a_small_hole_in_a_sparse_file_allocates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn ObjectStore> = Arc::new(MemStore::new());
    let fs = open(dir.path(), store);
    let h = fs
        .create(fs.root(), b"sparse.bin", 0o644, ME, CreateMode::Guarded)
        .expect("create")
        .attr
        .handle;
    fs.write(h, 0, &pattern(4096, 5), true).expect("write");
    let grow = SetAttr {
        size: Some(8 * MIB),
        ..SetAttr::default()
    };
    fs.setattr(h, &grow).expect("grow");
    let used = fs.getattr(h).expect("getattr").space_used;
    // Inside the hole, and across the end of the written extent into the hole.
    fs.deallocate(h, 5 * MIB, 4096)
        .expect("deallocate in the hole");
    fs.deallocate(h, 2048, 2 * MIB).expect("deallocate across");
    assert_eq!(fs.getattr(h).expect("getattr").space_used, used);
    assert_eq!(fs.getattr(h).expect("getattr").size, 8 * MIB);
    assert_eq!(seek(&fs, h, MIB, SeekWhat::Data).map(|f| f.eof), Some(true));
    assert!(read(&fs, h, 0, 2048) == pattern(4096, 5)[..2048]);
    assert!(read(&fs, h, 2048, 2048).iter().all(|b| *b == 0));
}
