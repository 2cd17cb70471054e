//! The namespace against a real redb file: every operation, its errors and what it leaves.

use super::names::check_new_name;
use super::*;
use crate::types::{CreateMode, DeviceId, XattrMode};

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
        rdev: crate::types::DeviceId::default(),
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

/// How many attribute rows `ino` has in redb.
fn xattr_rows(ns: &Namespace, ino: Ino) -> usize {
    let txn = ns.db.begin_read().expect("read");
    let t = txn.open_table(super::xattrs::XATTRS).expect("table");
    t.range((ino, &[][..])..=(ino, &[0xffu8; 256][..]))
        .expect("range")
        .count()
}

#[test]
fn extended_attributes_their_modes_limits_and_kinds() {
    let (_d, ns) = ns();
    let (root, h, i) = one_file(&ns);
    let ino = h.ino;
    assert!(matches!(ns.xattr_get(h, b"a"), Err(Error::NoXattr)));
    assert!(matches!(
        ns.xattr_set(h, b"a", b"1", XattrMode::Replace),
        Err(Error::NoXattr)
    ));
    let after = ns
        .xattr_set(h, b"a", b"1", XattrMode::Create)
        .expect("create");
    assert!(after.change > i.change, "a change bumps the change counter");
    assert!(matches!(
        ns.xattr_set(h, b"a", b"2", XattrMode::Create),
        Err(Error::Exists)
    ));
    ns.xattr_set(h, b"a", b"2", XattrMode::Replace)
        .expect("replace");
    ns.xattr_set(h, b"Z", b"", XattrMode::Either)
        .expect("either");
    assert_eq!(ns.xattr_get(h, b"a").expect("get"), b"2");
    assert_eq!(ns.xattr_get(h, b"Z").expect("get"), b"");
    assert_eq!(
        ns.xattr_list(h).expect("list"),
        vec![b"Z".to_vec(), b"a".to_vec()]
    );
    // Limits: the name, the value, an object's total; nothing changes on a refusal.
    let change_before = ns.get(h).expect("get").change;
    let long = [b'n'; XATTR_NAME_MAX + 1];
    assert!(matches!(
        ns.xattr_set(h, &long, b"", XattrMode::Either),
        Err(Error::NameTooLong)
    ));
    for bad in [&b""[..], b"a\0b"] {
        assert!(matches!(
            ns.xattr_set(h, bad, b"", XattrMode::Either),
            Err(Error::Invalid(_))
        ));
    }
    let big = vec![7u8; XATTR_VALUE_MAX + 1];
    assert!(matches!(
        ns.xattr_set(h, b"big", &big, XattrMode::Either),
        Err(Error::XattrTooBig)
    ));
    assert_eq!(
        ns.get(h).expect("get").change,
        change_before,
        "a refused change changes nothing"
    );
    assert_eq!(ns.xattr_list(h).expect("list").len(), 2);
    let max = vec![7u8; XATTR_VALUE_MAX];
    let mut n = 0;
    let full = loop {
        match ns.xattr_set(h, format!("v{n}").as_bytes(), &max, XattrMode::Create) {
            Ok(_) => n += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(full, Error::NoSpace), "{full:?}");
    assert_eq!(
        n,
        XATTR_OBJECT_MAX / XATTR_VALUE_MAX - 1,
        "the total is bounded"
    );
    // Replacing one in place still fits.
    ns.xattr_set(h, b"v0", &max, XattrMode::Replace)
        .expect("same size");
    assert_eq!(ns.xattr_list(h).expect("list").len(), 2 + n);
    ns.xattr_remove(h, b"a").expect("remove");
    assert!(matches!(ns.xattr_remove(h, b"a"), Err(Error::NoXattr)));
    // Symlinks and special files carry none.
    let mut sym = file(0o777);
    sym.kind = Kind::Symlink;
    sym.target = b"f".to_vec();
    let (s, si, _) = ns
        .create(root, b"s", sym, CreateMode::Guarded)
        .expect("symlink");
    let sh = Handle {
        ino: s,
        generation: si.generation,
    };
    assert!(matches!(
        ns.xattr_set(sh, b"a", b"", XattrMode::Either),
        Err(Error::NotSupported(_))
    ));
    assert!(matches!(
        ns.xattr_remove(sh, b"a"),
        Err(Error::NotSupported(_))
    ));
    // ... and read as having none (as Linux answers for `user.` attributes there).
    assert!(matches!(ns.xattr_get(sh, b"a"), Err(Error::NoXattr)));
    assert!(ns.xattr_list(sh).expect("list").is_empty());
    // They go with the inode: a file purged, a directory removed.
    let orphan = ns.remove(root, b"f", false).expect("unlink");
    assert!(orphan.is_some());
    assert!(xattr_rows(&ns, ino) > 0, "kept while the orphan is");
    ns.purge(ino, &[]).expect("purge");
    assert_eq!(xattr_rows(&ns, ino), 0);
    let mut dir = file(0o755);
    dir.kind = Kind::Directory;
    let (d, di, _) = ns
        .create(root, b"d", dir, CreateMode::Guarded)
        .expect("mkdir");
    let dh = Handle {
        ino: d,
        generation: di.generation,
    };
    ns.xattr_set(dh, b"x", b"y", XattrMode::Either)
        .expect("on a dir");
    ns.remove(root, b"d", true).expect("rmdir");
    assert_eq!(xattr_rows(&ns, d), 0);
}

#[test]
fn special_files_keep_their_kind_and_numbers_and_go_with_their_last_link() {
    let (_d, ns) = ns();
    let root = Handle {
        ino: ROOT,
        generation: ns.fsid(),
    };
    for (name, kind) in [
        (&b"fifo"[..], Kind::Fifo),
        (b"sock", Kind::Socket),
        (b"chr", Kind::CharDevice),
        (b"blk", Kind::BlockDevice),
    ] {
        let mut node = file(0o640);
        node.kind = kind;
        node.rdev = DeviceId { major: 9, minor: 3 };
        let (ino, i, _) = ns
            .create(root, name, node, CreateMode::Guarded)
            .expect("mknod");
        let (back, bi) = ns.lookup(root, name).expect("lookup");
        assert_eq!((back, bi.kind, bi.mode), (ino, kind, 0o640));
        let want = if kind.is_device() {
            DeviceId { major: 9, minor: 3 }
        } else {
            DeviceId::default()
        };
        assert_eq!(bi.rdev, want, "{kind:?}");
        assert_eq!(Inode::decode(&i.encode()).expect("decode"), i);
        // A record with bytes after its fields is refused (devices carry exactly 8).
        let mut longer = i.encode();
        longer.push(0);
        assert!(Inode::decode(&longer).is_err(), "{kind:?}");
        let h = Handle {
            ino,
            generation: i.generation,
        };
        ns.link(h, root, b"again").expect("link");
        assert!(ns.remove(root, name, false).expect("unlink").is_none());
        assert!(ns.remove(root, b"again", false).expect("unlink").is_none());
        assert!(matches!(ns.lookup(root, b"again"), Err(Error::NotFound)));
        let txn = ns.db.begin_read().expect("read");
        let gone = txn
            .open_table(INODES)
            .expect("inodes")
            .get(ino)
            .expect("get");
        assert!(
            gone.is_none(),
            "{kind:?}: metadata only, gone with its last link"
        );
    }
}

/// The root's handle, and file `f` made in it (its handle and inode).
fn one_file(ns: &Namespace) -> (Handle, Handle, Inode) {
    let root = Handle {
        ino: ROOT,
        generation: ns.fsid(),
    };
    let (ino, i, _) = ns
        .create(root, b"f", file(0o644), CreateMode::Guarded)
        .expect("f");
    let h = Handle {
        ino,
        generation: i.generation,
    };
    (root, h, i)
}

#[test]
fn a_read_inode_shows_every_change_committed_after_it() {
    let (_d, ns) = ns();
    let (root, h, i) = one_file(&ns);
    let ino = h.ino;
    // Read twice: the second answer may come from the inode cache.
    assert_eq!(ns.get(h).expect("get").mode, 0o644);
    assert_eq!(ns.get(h).expect("get again").mode, 0o644);
    let set = crate::types::SetAttr {
        mode: Some(0o600),
        ..Default::default()
    };
    ns.setattr(h, &set).expect("setattr");
    assert_eq!(ns.get(h).expect("get after").mode, 0o600, "a stale inode");
    // Removed: what redb holds now, not what was read before.
    ns.remove(root, b"f", false).expect("rm");
    let direct = |h: Handle| -> Result<Inode> {
        let txn = ns.db.begin_read()?;
        load(&txn.open_table(INODES)?, h)
    };
    let (got, want) = (ns.get(h), direct(h));
    match (&got, &want) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(Error::Stale), Err(Error::Stale)) => {}
        _ => panic!("after the remove: {got:?}, redb: {want:?}"),
    }
    // Another generation of the same number is stale.
    let other = Handle {
        ino,
        generation: i.generation + 1,
    };
    assert!(matches!(ns.get(other), Err(Error::Stale)));
}

#[test]
fn a_reader_never_sees_an_inode_older_than_a_change_that_returned() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let (_d, ns) = ns();
    let (_, h, i) = one_file(&ns);
    let returned = AtomicU32::new(i.uid);
    std::thread::scope(|s| {
        s.spawn(|| {
            for uid in 100..400u32 {
                let set = crate::types::SetAttr {
                    uid: Some(uid),
                    ..Default::default()
                };
                ns.setattr(h, &set).expect("setattr");
                returned.store(uid, Ordering::Release);
            }
        });
        for _ in 0..2 {
            s.spawn(|| loop {
                let floor = returned.load(Ordering::Acquire);
                let got = ns.get(h).expect("get").uid;
                assert!(got >= floor, "read uid {got} after uid {floor} was set");
                if floor == 399 {
                    break;
                }
            });
        }
    });
}
