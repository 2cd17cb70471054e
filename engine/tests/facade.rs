//! Facade operations and their errors, on a real redb file and a real local backend.

use strata_engine::*;

fn open() -> (tempfile::TempDir, Filesystem) {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = Filesystem::open(EngineConfig::new(dir.path())).expect("open");
    (dir, fs)
}

const ME: Cred = Cred {
    uid: 1000,
    gid: 100,
};

fn mkfile(fs: &Filesystem, dir: Handle, name: &str) -> Attr {
    fs.create(dir, name.as_bytes(), 0o644, ME, CreateMode::Guarded)
        .expect("create")
        .attr
}

fn names(fs: &Filesystem, dir: Handle) -> Vec<String> {
    let mut out = Vec::new();
    let mut cookie = 0;
    loop {
        let page = fs.readdir(dir, cookie, 2).expect("readdir");
        for e in &page.entries {
            assert!(e.cookie > 2, "cookie {} is reserved", e.cookie);
            out.push(String::from_utf8_lossy(&e.name).into_owned());
            cookie = e.cookie;
        }
        if page.eof {
            return out;
        }
    }
}

fn read_all(fs: &Filesystem, h: Handle) -> Vec<u8> {
    let size = fs.getattr(h).expect("getattr").size as usize;
    let mut buf = vec![0u8; size + 10];
    let (n, eof) = fs.read(h, 0, &mut buf).expect("read");
    assert!(eof);
    buf.truncate(n);
    buf
}

#[test]
fn root_lookup_dot_and_dotdot() {
    let (_d, fs) = open();
    let root = fs.root();
    let a = fs.getattr(root).expect("root attr");
    assert_eq!(a.kind, Kind::Directory);
    assert_eq!(a.nlink, 2);
    assert_eq!(fs.lookup(root, b".").expect(".").handle, root);
    assert_eq!(fs.lookup(root, b"..").expect("..").handle, root);
    let sub = fs.mkdir(root, b"sub", 0o755, ME).expect("mkdir");
    assert_eq!(fs.lookup(sub.handle, b"..").expect("..").handle, root);
    assert_eq!(fs.getattr(root).expect("root").nlink, 3);
    assert_eq!(fs.lookup_path("/sub").expect("path").handle, sub.handle);
    assert_eq!(fs.lookup_path("/").expect("path").handle, root);
    assert!(matches!(fs.lookup(root, b"nope"), Err(Error::NotFound)));
    assert!(matches!(fs.lookup_path("/sub/nope"), Err(Error::NotFound)));
    let f = mkfile(&fs, root, "f");
    assert!(matches!(fs.lookup(f.handle, b"x"), Err(Error::NotDir)));
}

#[test]
fn create_modes() {
    let (_d, fs) = open();
    let root = fs.root();
    let c = fs
        .create(root, b"f", 0o640, ME, CreateMode::Guarded)
        .expect("create");
    assert!(c.created);
    assert_eq!(
        (c.attr.mode, c.attr.uid, c.attr.gid, c.attr.size),
        (0o640, 1000, 100, 0)
    );
    assert!(matches!(
        fs.create(root, b"f", 0o600, ME, CreateMode::Guarded),
        Err(Error::Exists)
    ));
    let again = fs
        .create(root, b"f", 0o600, ME, CreateMode::Unchecked)
        .expect("unchecked");
    assert!(!again.created);
    assert_eq!(again.attr.handle, c.attr.handle);
    let v = *b"verifier";
    let e = fs
        .create(root, b"x", 0o600, ME, CreateMode::Exclusive(v))
        .expect("exclusive");
    assert!(e.created);
    let replay = fs
        .create(root, b"x", 0o600, ME, CreateMode::Exclusive(v))
        .expect("replay");
    assert!(!replay.created);
    assert_eq!(replay.attr.handle, e.attr.handle);
    assert!(matches!(
        fs.create(root, b"x", 0o600, ME, CreateMode::Exclusive(*b"otherver")),
        Err(Error::Exists)
    ));
    assert!(matches!(
        fs.create(root, b"f", 0o600, ME, CreateMode::Exclusive(v)),
        Err(Error::Exists)
    ));
    fs.mkdir(root, b"d", 0o755, ME).expect("mkdir");
    assert!(matches!(
        fs.create(root, b"d", 0o600, ME, CreateMode::Unchecked),
        Err(Error::Exists)
    ));
}

#[test]
fn names_are_validated() {
    let (_d, fs) = open();
    let root = fs.root();
    let long = vec![b'a'; 256];
    assert!(matches!(
        fs.create(root, &long, 0o644, ME, CreateMode::Guarded),
        Err(Error::NameTooLong)
    ));
    assert!(fs
        .create(root, &long[..255], 0o644, ME, CreateMode::Guarded)
        .is_ok());
    for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b"] {
        assert!(
            matches!(
                fs.create(root, bad, 0o644, ME, CreateMode::Guarded),
                Err(Error::Invalid(_))
            ),
            "{bad:?}"
        );
        assert!(
            matches!(fs.mkdir(root, bad, 0o755, ME), Err(Error::Invalid(_))),
            "{bad:?}"
        );
        assert!(
            matches!(fs.symlink(root, bad, b"t", ME), Err(Error::Invalid(_))),
            "{bad:?}"
        );
    }
    let f = mkfile(&fs, root, "f");
    assert!(matches!(
        fs.link(f.handle, root, b".."),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        fs.rename(root, b"f", root, b"."),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        fs.rename(root, b"..", root, b"g"),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn volume_suffix_makes_a_volume() {
    let (_d, fs) = open();
    let root = fs.root();
    assert_eq!(mkfile(&fs, root, "vm-flat.vmdk").kind, Kind::Volume);
    assert_eq!(mkfile(&fs, root, "disk.qcow2").kind, Kind::Volume);
    assert_eq!(mkfile(&fs, root, "vm.vmx").kind, Kind::File);
    let v = fs.lookup(root, b"disk.qcow2").expect("lookup");
    fs.write(v.handle, 0, b"volume data", true).expect("write");
    assert_eq!(read_all(&fs, v.handle), b"volume data");
}

#[test]
fn write_read_truncate_and_space_used() {
    let (_d, fs) = open();
    let root = fs.root();
    let f = mkfile(&fs, root, "f").handle;
    assert_eq!(
        fs.write(f, 0, b"hello", false).expect("w"),
        (5, Stability::Unstable)
    );
    assert_eq!(fs.getattr(f).expect("a").size, 5);
    assert_eq!(read_all(&fs, f), b"hello");
    fs.write(f, 10, b"world", true).expect("w2");
    assert_eq!(read_all(&fs, f), b"hello\0\0\0\0\0world");
    let mut buf = [0u8; 4];
    assert_eq!(fs.read(f, 13, &mut buf).expect("tail"), (2, true));
    assert_eq!(fs.read(f, 100, &mut buf).expect("past"), (0, true));
    assert_eq!(fs.read(f, 0, &mut buf).expect("head"), (4, false));
    let a = fs.getattr(f).expect("attr");
    assert!(a.space_used >= 15, "space_used {}", a.space_used);
    let a = fs
        .setattr(
            f,
            &SetAttr {
                size: Some(3),
                ..Default::default()
            },
        )
        .expect("shrink");
    assert_eq!(a.size, 3);
    assert_eq!(read_all(&fs, f), b"hel");
    fs.setattr(
        f,
        &SetAttr {
            size: Some(3 << 20),
            ..Default::default()
        },
    )
    .expect("grow");
    let all = read_all(&fs, f);
    assert_eq!(all.len(), 3 << 20);
    assert_eq!(&all[..3], b"hel");
    assert!(
        all[3..].iter().all(|&b| b == 0),
        "grown part reads as zeros"
    );
    let d = fs.mkdir(root, b"d", 0o755, ME).expect("mkdir").handle;
    assert!(matches!(fs.write(d, 0, b"x", false), Err(Error::IsDir)));
    assert!(matches!(
        fs.setattr(
            d,
            &SetAttr {
                size: Some(0),
                ..Default::default()
            }
        ),
        Err(Error::IsDir)
    ));
}

#[test]
fn setattr_fields_bump_ctime_and_change() {
    let (_d, fs) = open();
    let root = fs.root();
    let f = mkfile(&fs, root, "f");
    let at = Timestamp {
        secs: 1_000_000,
        nsecs: 5,
    };
    let set = SetAttr {
        mode: Some(0o600),
        uid: Some(1),
        gid: Some(2),
        atime: Some(SetTime::At(at)),
        mtime: Some(SetTime::At(at)),
        size: None,
    };
    let a = fs.setattr(f.handle, &set).expect("setattr");
    assert_eq!(
        (a.mode, a.uid, a.gid, a.atime, a.mtime),
        (0o600, 1, 2, at, at)
    );
    assert!(a.change > f.change);
    assert!(a.ctime >= f.ctime);
    let b = fs
        .setattr(
            f.handle,
            &SetAttr {
                mtime: Some(SetTime::Now),
                ..Default::default()
            },
        )
        .expect("now");
    assert!(b.mtime > at);
    assert!(b.change > a.change);
    // Unstable writes show in getattr at once, and change keeps growing.
    fs.write(f.handle, 0, b"abc", false).expect("write");
    let c = fs.getattr(f.handle).expect("attr");
    assert_eq!(c.size, 3);
    assert!(c.change > b.change);
    let d = fs
        .setattr(
            f.handle,
            &SetAttr {
                mode: Some(0o644),
                ..Default::default()
            },
        )
        .expect("chmod");
    assert!(d.change > c.change);
    fs.commit(f.handle).expect("commit");
    let e = fs.getattr(f.handle).expect("attr");
    assert!(e.change >= d.change);
    assert_eq!(e.size, 3);
}

#[test]
fn unlink_rmdir_and_errors() {
    let (_d, fs) = open();
    let root = fs.root();
    let f = mkfile(&fs, root, "f").handle;
    let d = fs.mkdir(root, b"d", 0o755, ME).expect("mkdir").handle;
    mkfile(&fs, d, "inner");
    assert!(matches!(fs.unlink(root, b"d"), Err(Error::IsDir)));
    assert!(matches!(fs.rmdir(root, b"f"), Err(Error::NotDir)));
    assert!(matches!(fs.rmdir(root, b"d"), Err(Error::NotEmpty)));
    assert!(matches!(fs.unlink(root, b"nope"), Err(Error::NotFound)));
    fs.unlink(d, b"inner").expect("unlink inner");
    fs.rmdir(root, b"d").expect("rmdir");
    assert!(matches!(fs.getattr(d), Err(Error::Stale)));
    fs.unlink(root, b"f").expect("unlink");
    assert!(matches!(fs.getattr(f), Err(Error::Stale)));
    assert!(matches!(fs.read(f, 0, &mut [0u8; 4]), Err(Error::Stale)));
    assert_eq!(fs.getattr(root).expect("root").nlink, 2);
    assert!(names(&fs, root).is_empty());
    // A handle from another filesystem is stale even with a valid inode number.
    let other = Handle {
        ino: root.ino,
        generation: root.generation ^ 1,
    };
    assert!(matches!(fs.getattr(other), Err(Error::Stale)));
}

#[test]
fn links_and_symlinks() {
    let (_d, fs) = open();
    let root = fs.root();
    let f = mkfile(&fs, root, "f").handle;
    fs.write(f, 0, b"data", true).expect("write");
    let a = fs.link(f, root, b"g").expect("link");
    assert_eq!(a.nlink, 2);
    assert!(matches!(fs.link(f, root, b"g"), Err(Error::Exists)));
    let d = fs.mkdir(root, b"d", 0o755, ME).expect("mkdir").handle;
    assert!(matches!(fs.link(d, root, b"dd"), Err(Error::IsDir)));
    fs.unlink(root, b"f").expect("unlink");
    assert_eq!(fs.getattr(f).expect("still linked").nlink, 1);
    assert_eq!(read_all(&fs, f), b"data");
    let s = fs.symlink(root, b"s", b"/some/where", ME).expect("symlink");
    assert_eq!(s.kind, Kind::Symlink);
    assert_eq!(s.size, 11);
    assert_eq!(fs.readlink(s.handle).expect("readlink"), b"/some/where");
    assert!(matches!(fs.readlink(f), Err(Error::Invalid(_))));
    assert!(matches!(
        fs.symlink(root, b"s", b"x", ME),
        Err(Error::Exists)
    ));
    fs.unlink(root, b"s").expect("unlink symlink");
    assert!(matches!(fs.readlink(s.handle), Err(Error::Stale)));
}

#[test]
fn rename_rules() {
    let (_d, fs) = open();
    let root = fs.root();
    let a = fs.mkdir(root, b"a", 0o755, ME).expect("a").handle;
    let b = fs.mkdir(a, b"b", 0o755, ME).expect("b").handle;
    let f = mkfile(&fs, root, "f").handle;
    let g = mkfile(&fs, root, "g").handle;
    fs.write(g, 0, b"g", true).expect("write g");
    let e = fs.mkdir(root, b"e", 0o755, ME).expect("e").handle;
    // Into its own subtree.
    assert!(matches!(
        fs.rename(root, b"a", b, b"x"),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        fs.rename(root, b"a", a, b"x"),
        Err(Error::Invalid(_))
    ));
    // Kind conflicts.
    assert!(matches!(
        fs.rename(root, b"f", root, b"a"),
        Err(Error::IsDir)
    ));
    assert!(matches!(
        fs.rename(root, b"a", root, b"f"),
        Err(Error::NotDir)
    ));
    mkfile(&fs, e, "busy");
    assert!(matches!(
        fs.rename(a, b"b", root, b"e"),
        Err(Error::NotEmpty)
    ));
    assert!(matches!(
        fs.rename(root, b"nope", root, b"x"),
        Err(Error::NotFound)
    ));
    // Same name, and two links of one file: no-ops.
    fs.rename(root, b"f", root, b"f").expect("same name");
    fs.link(f, root, b"f2").expect("link");
    fs.rename(root, b"f", root, b"f2").expect("same object");
    assert_eq!(names(&fs, root), vec!["a", "f", "g", "e", "f2"]);
    // File over file: the target's object goes.
    fs.rename(root, b"f", root, b"g").expect("over g");
    assert!(matches!(fs.getattr(g), Err(Error::Stale)));
    assert_eq!(fs.lookup(root, b"g").expect("g").handle, f);
    // Directory over empty directory, across directories.
    fs.unlink(e, b"busy").expect("unlink busy");
    fs.rename(a, b"b", root, b"e").expect("b over e");
    assert!(matches!(fs.getattr(e), Err(Error::Stale)));
    assert_eq!(fs.lookup(root, b"e").expect("e").handle, b);
    assert_eq!(fs.lookup(b, b"..").expect("..").handle, root);
    assert_eq!(fs.getattr(a).expect("a").nlink, 2);
    assert_eq!(fs.getattr(root).expect("root").nlink, 4);
    // Across directories for a file.
    fs.rename(root, b"f2", a, b"moved").expect("move");
    assert_eq!(fs.lookup(a, b"moved").expect("moved").handle, f);
}

#[test]
fn open_unlinked_file_keeps_data_until_last_close() {
    let (_d, fs) = open();
    let root = fs.root();
    let f = mkfile(&fs, root, "f").handle;
    fs.write(f, 0, b"keep me", true).expect("write");
    fs.open_file(f).expect("open 1");
    fs.open_file(f).expect("open 2");
    fs.unlink(root, b"f").expect("unlink");
    assert_eq!(fs.getattr(f).expect("attr of open").nlink, 0);
    assert_eq!(read_all(&fs, f), b"keep me");
    fs.write(f, 7, b"!", false)
        .expect("write to unlinked open file");
    assert_eq!(read_all(&fs, f), b"keep me!");
    fs.close_file(f).expect("close 1");
    assert_eq!(read_all(&fs, f), b"keep me!");
    fs.close_file(f).expect("close 2");
    assert!(matches!(fs.getattr(f), Err(Error::Stale)));
    assert!(matches!(fs.open_file(f), Err(Error::Stale)));
    // Renamed over while open: same rule.
    let g = mkfile(&fs, root, "g").handle;
    fs.write(g, 0, b"old", true).expect("write g");
    mkfile(&fs, root, "h");
    fs.open_file(g).expect("open g");
    fs.rename(root, b"h", root, b"g").expect("rename over g");
    assert_eq!(read_all(&fs, g), b"old");
    fs.close_file(g).expect("close g");
    assert!(matches!(fs.read(g, 0, &mut [0u8; 3]), Err(Error::Stale)));
}

#[test]
fn readdir_pages_and_cookies_are_stable() {
    let (_d, fs) = open();
    let root = fs.root();
    for i in 0..10 {
        mkfile(&fs, root, &format!("f{i}"));
    }
    let page = fs.readdir(root, 0, 4).expect("page 1");
    assert_eq!(page.entries.len(), 4);
    assert!(!page.eof);
    let resume = page.entries[3].cookie;
    // Removing entries already returned and adding new ones does not disturb the resume point.
    fs.unlink(root, b"f0").expect("unlink");
    fs.unlink(root, b"f3").expect("unlink");
    mkfile(&fs, root, "new");
    let mut rest = Vec::new();
    let mut cookie = resume;
    loop {
        let p = fs.readdir(root, cookie, 3).expect("page");
        for e in &p.entries {
            rest.push(String::from_utf8_lossy(&e.name).into_owned());
            cookie = e.cookie;
        }
        if p.eof {
            break;
        }
    }
    assert_eq!(rest, vec!["f4", "f5", "f6", "f7", "f8", "f9", "new"]);
    let f = mkfile(&fs, root, "x");
    assert!(matches!(fs.readdir(f.handle, 0, 10), Err(Error::NotDir)));
}

#[test]
fn statfs_reports_the_data_dir() {
    let (_d, fs) = open();
    let s = fs.statfs().expect("statfs");
    assert!(s.total_bytes > 0);
    assert!(s.free_bytes <= s.total_bytes);
    assert!(s.avail_bytes <= s.free_bytes);
}

#[test]
fn reopen_keeps_handles_and_committed_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (h, root) = {
        let fs = Filesystem::open(EngineConfig::new(dir.path())).expect("open");
        let root = fs.root();
        let d = fs.mkdir(root, b"d", 0o755, ME).expect("mkdir").handle;
        let h = mkfile(&fs, d, "f").handle;
        fs.write(h, 0, &vec![7u8; 3 << 20], false).expect("write");
        fs.commit(h).expect("commit");
        fs.create(d, b"excl", 0o600, ME, CreateMode::Exclusive(*b"12345678"))
            .expect("exclusive create");
        (h, root)
    };
    let fs = Filesystem::open(EngineConfig::new(dir.path())).expect("reopen");
    assert_eq!(fs.root(), root);
    assert_eq!(fs.lookup_path("/d/f").expect("path").handle, h);
    let data = read_all(&fs, h);
    assert_eq!(data.len(), 3 << 20);
    assert!(data.iter().all(|&b| b == 7));
    // An exclusive create replayed after a restart still finds its verifier.
    let d = fs.lookup_path("/d").expect("d").handle;
    let replay = fs
        .create(d, b"excl", 0o600, ME, CreateMode::Exclusive(*b"12345678"))
        .expect("replay after restart");
    assert!(!replay.created);
}

/// The extent objects of file `ino` in the store (names under `files/`).
fn extent_objects(mem: &strata_backend::MemStore, ino: u64) -> Vec<String> {
    use strata_backend::ObjectStore;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let page = rt
        .block_on(mem.list(&format!("files/{ino:016x}."), None, 10_000))
        .expect("list");
    page.objects.into_iter().map(|o| o.key).collect()
}

/// The engine in `dir` on `store`.
fn open_on(
    dir: &std::path::Path,
    store: std::sync::Arc<strata_backend::FaultyStore>,
) -> Filesystem {
    let opts = OpenOptions {
        store: Some(store as std::sync::Arc<dyn strata_backend::ObjectStore>),
        metadata_backend: None,
        volume_fs: None,
    };
    Filesystem::open_with(EngineConfig::new(dir), opts).expect("open")
}

/// With the backend down, COMMITs and stable writes of regular files still succeed (durable in
/// the file journal); `flush_to_backend` reports the outage; after a crash the committed data
/// is replayed and goes up once the backend is back.
#[test]
fn backend_outage_commits_locally_then_catches_up() {
    use std::sync::Arc;
    use strata_backend::{FaultyStore, MemStore};
    let dir = tempfile::tempdir().expect("tempdir");
    let mem = Arc::new(MemStore::new());
    let open = |faulty: Arc<FaultyStore>| open_on(dir.path(), faulty);
    let faulty = Arc::new(FaultyStore::new(mem.clone()));
    let fs = open(faulty.clone());
    let f = mkfile(&fs, fs.root(), "f").handle;
    fs.write(f, 0, &vec![3u8; 2 << 20], false)
        .expect("unstable write");
    faulty.set_failing(true);
    fs.commit(f).expect("commit while the backend is down");
    fs.write(f, 0, b"x", true)
        .expect("stable write while the backend is down");
    assert!(
        matches!(fs.flush_to_backend(), Err(ref e) if e.is_transient()),
        "flush_to_backend reports the outage"
    );
    assert!(
        extent_objects(&mem, f.ino).is_empty(),
        "nothing reached the backend"
    );
    fs.crash();
    let fs = open(Arc::new(FaultyStore::new(mem.clone())));
    let data = read_all(&fs, f);
    assert_eq!(data.len(), 2 << 20);
    assert_eq!(data[0], b'x');
    assert!(data[1..].iter().all(|&b| b == 3));
    fs.flush_to_backend()
        .expect("flush once the backend is back");
    assert_eq!(
        extent_objects(&mem, f.ino).len(),
        2,
        "both extents uploaded"
    );
}

/// Removing a file does not wait for the backend: its extent objects become garbage rows in
/// the same transaction as the removal, and the uploader deletes them (batched) later; with
/// the backend down meanwhile, and across a crash, they go once it is back.
#[test]
fn a_removed_files_objects_are_left_to_the_collector() {
    use std::sync::Arc;
    use strata_backend::{FaultyStore, MemStore};
    let dir = tempfile::tempdir().expect("tempdir");
    let mem = Arc::new(MemStore::new());
    let open = |faulty: Arc<FaultyStore>| open_on(dir.path(), faulty);
    let faulty = Arc::new(FaultyStore::new(mem.clone()));
    let fs = open(faulty.clone());
    let mut inos = Vec::new();
    for name in ["a", "b"] {
        let f = mkfile(&fs, fs.root(), name).handle;
        fs.write(f, 0, &vec![5u8; 2 << 20], true).expect("write");
        inos.push(f.ino);
    }
    fs.flush_to_backend().expect("flush");
    assert!(inos.iter().all(|i| extent_objects(&mem, *i).len() == 2));
    faulty.set_failing(true);
    fs.unlink(fs.root(), b"a")
        .expect("a remove while the backend is down");
    faulty.set_failing(false);
    fs.flush_to_backend().expect("flush");
    assert!(
        extent_objects(&mem, inos[0]).is_empty(),
        "a's objects deleted by the collector"
    );
    faulty.set_failing(true);
    fs.unlink(fs.root(), b"b")
        .expect("a remove while the backend is down");
    fs.crash();
    let fs = open(Arc::new(FaultyStore::new(mem.clone())));
    fs.flush_to_backend().expect("flush");
    assert!(
        extent_objects(&mem, inos[1]).is_empty(),
        "b's objects deleted after the crash"
    );
}

#[test]
fn clean_drop_commits_unstable_writes_and_a_crash_may_keep_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = {
        let fs = Filesystem::open(EngineConfig::new(dir.path())).expect("open");
        let f = mkfile(&fs, fs.root(), "f").handle;
        fs.write(f, 0, b"kept by a clean shutdown", false)
            .expect("write");
        f
    };
    let fs = Filesystem::open(EngineConfig::new(dir.path())).expect("reopen");
    assert_eq!(read_all(&fs, f), b"kept by a clean shutdown");
    let g = mkfile(&fs, fs.root(), "g").handle;
    fs.write(g, 0, b"maybe", false).expect("write");
    fs.crash();
    // A process crash keeps what the journal wrote, synced or not: the unstable write is
    // either there whole or not at all.
    let fs = Filesystem::open(EngineConfig::new(dir.path())).expect("reopen after crash");
    let data = read_all(&fs, g);
    assert!(data.is_empty() || data == b"maybe", "{data:?}");
}

#[test]
fn handles_of_another_namespace_are_stale() {
    let (_d1, a) = open();
    let (_d2, b) = open();
    assert_ne!(a.fsid(), b.fsid());
    let f = mkfile(&a, a.root(), "f").handle;
    mkfile(&b, b.root(), "f");
    // Same inode number in both, but the generation tells them apart.
    assert_eq!(b.lookup(b.root(), b"f").expect("lookup").handle.ino, f.ino);
    assert!(matches!(b.getattr(f), Err(Error::Stale)));
    assert!(matches!(b.read(f, 0, &mut [0u8; 1]), Err(Error::Stale)));
    assert!(matches!(b.lookup(a.root(), b"f"), Err(Error::Stale)));
}

/// A shrinking truncate that fails half-way (backend down while the zeroed tail goes up) must
/// leave a file that reads as the old one or the truncated one, never a mix (the old size over
/// cut extents, which a later commit would make durable), in memory and after a crash.
#[test]
fn failed_truncate_never_shows_cut_data_under_the_old_size() {
    use std::sync::Arc;
    use strata_backend::{FaultyStore, MemStore};
    let dir = tempfile::tempdir().expect("tempdir");
    let mem = Arc::new(MemStore::new());
    let open = |faulty: Arc<FaultyStore>| open_on(dir.path(), faulty);
    let faulty = Arc::new(FaultyStore::new(mem.clone()));
    let fs = open(faulty.clone());
    let f = mkfile(&fs, fs.root(), "f").handle;
    let old = vec![7u8; 3 << 20];
    fs.write(f, 0, &old, true).expect("stable write");
    let cut = (3 << 20) / 2;
    let consistent = |data: &[u8], when: &str| {
        assert!(
            data == &old[..] || data == &old[..cut],
            "{when}: {} bytes, {} of them zero: neither the old file nor the truncated one",
            data.len(),
            data.iter().filter(|&&b| b == 0).count()
        );
    };
    faulty.set_failing(true);
    let r = fs.setattr(
        f,
        &SetAttr {
            size: Some(cut as u64),
            ..Default::default()
        },
    );
    assert!(r.is_err(), "the truncate needs the backend");
    faulty.set_failing(false);
    consistent(&read_all(&fs, f), "after the failed truncate");
    fs.write(f, 0, b"\x07", false).expect("write");
    fs.commit(f).expect("commit");
    consistent(&read_all(&fs, f), "after a commit");
    fs.crash();
    let fs = open(Arc::new(FaultyStore::new(mem.clone())));
    consistent(&read_all(&fs, f), "after a crash");
    // The failed truncate may be gone with the crash: cut now (the backend is up).
    fs.setattr(
        f,
        &SetAttr {
            size: Some(cut as u64),
            ..Default::default()
        },
    )
    .expect("truncate");
    // Growing again shows zeros past the cut, never the cut bytes.
    fs.setattr(
        f,
        &SetAttr {
            size: Some(3 << 20),
            ..Default::default()
        },
    )
    .expect("grow");
    let data = read_all(&fs, f);
    assert!(data[..cut].iter().all(|&b| b == 7));
    assert!(data[cut..].iter().all(|&b| b == 0), "cut bytes came back");
}

/// A size change alone (SETATTR of the size, no pending writes) changes the NFSv4 change
/// attribute, in memory and as recorded.
#[test]
fn size_change_alone_bumps_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = Filesystem::open(EngineConfig::new(dir.path())).expect("open");
    let f = mkfile(&fs, fs.root(), "f");
    let mut last = f.change;
    for size in [10u64, 3, 3 << 20] {
        let a = fs
            .setattr(
                f.handle,
                &SetAttr {
                    size: Some(size),
                    ..Default::default()
                },
            )
            .expect("setattr size");
        assert_eq!(a.size, size);
        assert!(
            a.change > last,
            "size {size}: change {} <= {last}",
            a.change
        );
        last = a.change;
    }
    drop(fs);
    let fs = Filesystem::open(EngineConfig::new(dir.path())).expect("reopen");
    assert!(fs.getattr(f.handle).expect("getattr").change >= last);
}

/// A zero-length WRITE past the end (legal in NFS) writes nothing: the size, the data and
/// the change attribute stay as they were, for files and volumes.
#[test]
fn empty_write_past_the_end_changes_nothing() {
    let (_d, fs) = open();
    for name in ["f", "disk.raw"] {
        let h = mkfile(&fs, fs.root(), name).handle;
        fs.write(h, 0, b"abc", true).expect("write");
        let before = fs.getattr(h).expect("getattr");
        for stable in [false, true] {
            let (n, _) = fs.write(h, 1 << 20, b"", stable).expect("empty write");
            assert_eq!(n, 0);
            let a = fs.getattr(h).expect("getattr");
            assert_eq!(a.size, 3, "{name}: an empty write grew the file");
            assert_eq!(a.change, before.change, "{name}: nothing changed");
        }
        assert_eq!(read_all(&fs, h), b"abc");
    }
}
