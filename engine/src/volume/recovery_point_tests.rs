//! The recovery point (issue 18): when the oldest change a volume logged that the backend does
//! not have yet was logged — what losing the local disk would lose reaches back to it.

use std::sync::Arc;
use std::time::SystemTime;

use super::clone_tests::{ns, World};
use super::tests::{mt_rt, small_opts};
use super::*;

const V: VolumeId = VolumeId([0x21; 16]);

#[test]
fn the_recovery_point_is_the_oldest_change_not_on_the_backend() {
    let w = World::new();
    let v = w.create(V);
    v.resize(1 << 20).expect("resize");
    w.backup(&v);
    assert_eq!(v.not_on_backend_since(), None, "everything is up");

    let before = SystemTime::now();
    v.write(0, &[7u8; 4096], true).expect("write");
    let after = SystemTime::now();
    let since = v
        .not_on_backend_since()
        .expect("a change not on the backend");
    assert!(before <= since && since <= after, "{since:?}");
    // Later changes, in this TLog or the next ones, leave it where it is.
    for i in 1..64u64 {
        v.write(i * 4096, &[9u8; 4096], true).expect("write");
    }
    assert_eq!(v.not_on_backend_since(), Some(since));

    w.backup(&v);
    assert_eq!(v.not_on_backend_since(), None, "up again");

    // Changes a crash left un-uploaded are still dated after a local restart.
    v.write(0, &[3u8; 4096], true).expect("write");
    drop(v);
    let v = w.open(V);
    let since = v
        .not_on_backend_since()
        .expect("the restart found un-uploaded changes");
    assert!(since <= SystemTime::now());
    w.backup(&v);
    assert_eq!(v.not_on_backend_since(), None);
}

#[test]
fn after_a_restart_what_the_last_run_left_dates_from_its_tlog_files() {
    // Real files: their creation time is what the restart has.
    let dir = tempfile::tempdir().expect("tempdir");
    let fs: Arc<dyn LocalFs> = Arc::new(StdFs);
    let root = Arc::new(strata_backend::MemStore::new());
    let rt = mt_rt();
    let vdir = dir.path().join("v");
    let v = Volume::create(fs.clone(), &vdir, V, small_opts(), 0).expect("create");
    v.set_backend(ns(&root, V), rt.handle().clone(), 1);
    v.resize(1 << 20).expect("resize");
    for i in 0..40u64 {
        v.write(i * 4096, &[5u8; 4096], true).expect("write");
    }
    let written = SystemTime::now();
    drop(v);
    let v = Volume::open(fs, &vdir, V, small_opts()).expect("open");
    let since = v.not_on_backend_since().expect("un-uploaded changes");
    assert!(
        since <= written,
        "dated {since:?}, after the writes ended ({written:?}): the restart's time, not the files'"
    );
}
