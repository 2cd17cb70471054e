//! The namespace against a real redb file: every operation, its errors and what it leaves.

use super::names::check_new_name;
use super::*;
use crate::types::CreateMode;

fn ns() -> (tempfile::TempDir, Namespace) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::create(dir.path().join("t.redb")).expect("db");
    (dir, Namespace::open(db).expect("open"))
}

fn file(mode: u32) -> NewNode {
    NewNode {
        kind: Kind::File,
        mode,
        cred: Cred { uid: 7, gid: 8 },
        target: vec![],
    }
}

#[test]
fn inode_roundtrip() {
    let mut i = Inode::new(Kind::Symlink, 0o777, Cred { uid: 1, gid: 2 }, 42);
    i.target = b"/x/y".to_vec();
    i.verifier = Some(*b"abcdefgh");
    assert_eq!(Inode::decode(&i.encode()).expect("decode"), i);
    assert!(Inode::decode(&i.encode()[..20]).is_err());
}

#[test]
fn names_are_checked() {
    assert!(matches!(
        check_new_name(&[b'a'; 256]),
        Err(Error::NameTooLong)
    ));
    assert!(check_new_name(&[b'a'; 255]).is_ok());
    for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b"] {
        assert!(
            matches!(check_new_name(bad), Err(Error::Invalid(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn cookies_start_at_three_and_are_never_reused() {
    let (_d, ns) = ns();
    let root = Handle {
        ino: ROOT,
        generation: ns.fsid(),
    };
    ns.create(root, b"a", file(0o644), CreateMode::Guarded)
        .expect("a");
    ns.create(root, b"b", file(0o644), CreateMode::Guarded)
        .expect("b");
    ns.remove(root, b"b", false).expect("rm b");
    ns.create(root, b"b", file(0o644), CreateMode::Guarded)
        .expect("b again");
    let (rows, eof) = ns.readdir(root, 0, 10).expect("readdir");
    assert!(eof);
    let cookies: Vec<u64> = rows.iter().map(|r| r.cookie).collect();
    assert_eq!(cookies, vec![3, 5]);
}

#[test]
fn reopen_keeps_fsid_and_counter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.redb");
    let (fsid, ino) = {
        let ns = Namespace::open(Database::create(&path).expect("db")).expect("open");
        let root = Handle {
            ino: ROOT,
            generation: ns.fsid(),
        };
        let (ino, _, _) = ns
            .create(root, b"a", file(0o600), CreateMode::Guarded)
            .expect("create");
        (ns.fsid(), ino)
    };
    let ns = Namespace::open(Database::create(&path).expect("db")).expect("reopen");
    assert_eq!(ns.fsid(), fsid);
    let root = Handle {
        ino: ROOT,
        generation: fsid,
    };
    let (ino2, _, _) = ns
        .create(root, b"b", file(0o600), CreateMode::Guarded)
        .expect("create");
    assert!(ino2 > ino);
    assert_eq!(ns.lookup(root, b"a").expect("lookup").0, ino);
}
