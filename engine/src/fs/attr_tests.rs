//! Tests of when a volume's attributes reach the namespace: a client's COMMIT leaves them to
//! the uploader's next round (`live.rs`, `Filesystem::commit_for_client`; `upload.rs`).

use super::config::EngineConfig;
use super::Filesystem;
use crate::types::{CreateMode, Cred, Handle, Kind};

const ME: Cred = Cred { uid: 0, gid: 0 };

fn volume(fs: &Filesystem) -> Handle {
    let a = fs
        .create(fs.root(), b"disk.raw", 0o644, ME, CreateMode::Guarded)
        .expect("create")
        .attr;
    assert_eq!(a.kind, Kind::Volume);
    a.handle
}

#[test]
fn the_round_after_a_commit_records_what_getattr_shows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = Filesystem::open(EngineConfig::new(dir.path())).expect("open");
    let h = volume(&fs);
    fs.write(h, 0, &[7u8; 4096], false).expect("write");
    fs.commit(h).expect("commit");
    let shown = fs.getattr(h).expect("getattr");
    fs.side.round(false).expect("round");
    let rec = fs.ns.get_ino(h.ino).expect("get").expect("inode");
    assert_eq!((rec.mtime, rec.change), (shown.mtime, shown.change));
    let live = fs.peek_live(h.ino).expect("loaded");
    assert!(live.pending.lock().is_none(), "nothing left pending");
    assert_eq!(fs.getattr(h).expect("getattr").change, shown.change);
}

#[test]
fn a_round_leaves_the_attributes_of_uncommitted_writes_pending() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = Filesystem::open(EngineConfig::new(dir.path())).expect("open");
    let h = volume(&fs);
    let before = fs.ns.get_ino(h.ino).expect("get").expect("inode");
    fs.write(h, 0, &[7u8; 4096], false).expect("write");
    fs.side.round(false).expect("round");
    let rec = fs.ns.get_ino(h.ino).expect("get").expect("inode");
    assert_eq!(rec.change, before.change, "recorded before its COMMIT");
    let shown = fs.getattr(h).expect("getattr");
    assert!(shown.change > before.change, "getattr shows the write");
    // A sync of everything (shutdown, `strata sync`) records them at once.
    fs.sync_all().expect("sync_all");
    let rec = fs.ns.get_ino(h.ino).expect("get").expect("inode");
    assert_eq!((rec.mtime, rec.change), (shown.mtime, shown.change));
}
