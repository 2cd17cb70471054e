//! The test clients' creation of special files (FIFOs, sockets, character and block devices),
//! directories and symbolic links, against Ganesha's own VFS FSAL (a reference server that
//! runs as root, so it can make devices): NFSv4 CREATE with `strata-nfs42-client` (`mknod`,
//! `mkdir`, `symlink`, `lookup`, `readlink`, `remove`) and NFSv3 MKNOD with `strata-nfs-client`
//! (`mknod`, `stat`). What each client reports is checked against the exported directory
//! itself (`std::fs` on the server's side), so a client that misreports is caught too.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use strata_tests::*;

/// Runs the NFSv4.2 client on the export's root directory (`dir` first) with `cmds`.
fn nfs4_dir(tg: &TestGateway, cmds: &str) -> Run {
    let mut args: Vec<&str> = vec!["/", "dir"];
    args.extend(cmds.split_whitespace());
    tg.nfs42(&args)
}

/// `key=` of line `n`.
fn at(r: &Run, n: usize, key: &str) -> String {
    r.op_lines()
        .get(n)
        .and_then(|l| l.get(key).cloned())
        .unwrap_or_else(|| panic!("no {key}= in line {n}: {r}"))
}

/// What the server's filesystem has at `name` in the export: type, permission bits, device
/// numbers (not following a symbolic link).
fn on_disk(tg: &TestGateway, name: &str) -> (&'static str, u32, (u64, u64)) {
    let m = std::fs::symlink_metadata(tg.data_dir.join(name))
        .unwrap_or_else(|e| panic!("{name} on the exported filesystem: {e}"));
    let t = m.file_type();
    let kind = if t.is_fifo() {
        "fifo"
    } else if t.is_socket() {
        "sock"
    } else if t.is_char_device() {
        "chr"
    } else if t.is_block_device() {
        "blk"
    } else if t.is_dir() {
        "dir"
    } else if t.is_symlink() {
        "lnk"
    } else {
        "reg"
    };
    let rdev = m.rdev();
    (
        kind,
        m.permissions().mode() & 0o7777,
        (libc::major(rdev).into(), libc::minor(rdev).into()),
    )
}

fn exists(tg: &TestGateway, name: &str) -> bool {
    tg.data_dir.join(name).symlink_metadata().is_ok()
}

#[test]
fn nfs4_create_of_each_kind_on_the_vfs_fsal() {
    let Some(tg) = TestGateway::vfs() else {
        return;
    };
    let r = nfs4_dir(
        &tg,
        "mknod fifo p mode=640 mknod sock s mode=600 mknod chr c 1 3 mode=620 \
         mknod blk b 7 200 mkdir d mode=750 symlink l ../target/x mode=777 \
         lookup p lookup c lookup b lookup l readlink l getattr",
    )
    .expect_ok("create each kind");
    assert_eq!(at(&r, 0, "op"), "dir", "{r}");
    // What CREATE's GETATTR said, what LOOKUP + GETATTR says later, what the disk has.
    for (n, name, kind, mode, rdev) in [
        (1, "p", "fifo", "640", None),
        (2, "s", "sock", "600", None),
        (3, "c", "chr", "620", Some((1, 3))),
        (4, "b", "blk", "644", Some((7, 200))),
        (5, "d", "dir", "750", None),
    ] {
        assert_eq!(
            at(&r, n, "op"),
            if kind == "dir" { "mkdir" } else { "mknod" }
        );
        assert_eq!(at(&r, n, "status"), "OK", "{r}");
        assert_eq!(at(&r, n, "type"), kind, "{name}: {r}");
        assert_eq!(at(&r, n, "mode"), mode, "{name}: {r}");
        assert_eq!(at(&r, n, "mode_set"), "1", "{name}: {r}");
        assert!(
            at(&r, n, "fileid").parse::<u64>().is_ok_and(|f| f > 0),
            "{r}"
        );
        let want_nlink = if kind == "dir" { "2" } else { "1" };
        assert_eq!(at(&r, n, "nlink"), want_nlink, "{name}: {r}");
        match rdev {
            Some((ma, mi)) => assert_eq!(at(&r, n, "rdev"), format!("{ma},{mi}"), "{r}"),
            None => assert!(!r.op_lines()[n].contains_key("rdev"), "{name}: {r}"),
        }
        let disk = on_disk(&tg, name);
        assert_eq!(disk.0, kind, "{name} on disk");
        assert_eq!(format!("{:o}", disk.1), mode, "{name} on disk");
        if let Some((ma, mi)) = rdev {
            assert_eq!(disk.2, (ma, mi), "{name}'s device numbers on disk");
        }
    }
    // The symbolic link: its target as given, on disk too.
    assert_eq!(at(&r, 6, "op"), "symlink", "{r}");
    assert_eq!(at(&r, 6, "type"), "lnk", "{r}");
    assert_eq!(on_disk(&tg, "l").0, "lnk");
    let target = std::fs::read_link(tg.data_dir.join("l")).expect("readlink on disk");
    assert_eq!(target, Path::new("../target/x"));
    // LOOKUP + GETATTR of the entries again (a LOOKUP does not follow the link).
    assert_eq!(at(&r, 7, "type"), "fifo", "{r}");
    assert_eq!(at(&r, 7, "fileid"), at(&r, 1, "fileid"), "{r}");
    assert_eq!(
        (at(&r, 8, "type"), at(&r, 8, "rdev")),
        ("chr".into(), "1,3".into())
    );
    assert_eq!(
        (at(&r, 9, "type"), at(&r, 9, "rdev")),
        ("blk".into(), "7,200".into())
    );
    assert_eq!(at(&r, 10, "type"), "lnk", "{r}");
    assert_eq!(at(&r, 11, "target"), "../target/x", "{r}");
    // The directory itself (`getattr` after `dir`): a directory holding the new one.
    assert_eq!(at(&r, 12, "type"), "dir", "{r}");
    assert!(
        at(&r, 12, "nlink").parse::<u32>().is_ok_and(|n| n >= 3),
        "{r}"
    );
}

#[test]
fn nfs4_create_exist_remove_and_errors_on_the_vfs_fsal() {
    let Some(tg) = TestGateway::vfs() else {
        return;
    };
    // An existing name of any kind is EXIST, whatever is asked for; the entry is unchanged.
    let r = nfs4_dir(
        &tg,
        "mknod fifo p expect=NFS4ERR_EXIST mknod fifo p expect=NFS4ERR_EXIST mknod chr p 1 3 \
         expect=NFS4ERR_EXIST mkdir p expect=NFS4ERR_EXIST symlink p t lookup p",
    )
    .expect_ok("EXIST");
    for n in 2..=5 {
        assert_eq!(at(&r, n, "status"), "NFS4ERR_EXIST", "{r}");
    }
    assert_eq!(at(&r, 6, "type"), "fifo", "{r}");
    assert_eq!(on_disk(&tg, "p").0, "fifo");
    // REMOVE of each kind, then LOOKUP and REMOVE again are NOENT; gone on disk too. A
    // directory with an entry is NOTEMPTY until the entry is removed (in the directory's
    // own session: `dir` on d).
    nfs4_dir(
        &tg,
        "mknod sock s mknod blk b 8 1 mkdir d symlink l p mkdir e",
    )
    .expect_ok("more kinds");
    tg.nfs42(&["/d", "dir", "mknod", "fifo", "inner"])
        .expect_ok("an entry in d");
    assert!(exists(&tg, "d/inner"));
    let r = nfs4_dir(
        &tg,
        "expect=NFS4ERR_NOTEMPTY remove d remove p remove s remove b remove l remove e \
         expect=NFS4ERR_NOENT lookup p expect=NFS4ERR_NOENT remove p",
    )
    .expect_ok("remove");
    assert_eq!(at(&r, 1, "status"), "NFS4ERR_NOTEMPTY", "{r}");
    for name in ["p", "s", "b", "l", "e"] {
        assert!(!exists(&tg, name), "{name} is still on disk");
    }
    assert!(exists(&tg, "d"));
    tg.nfs42(&["/d", "dir", "remove", "inner"])
        .expect_ok("remove inner");
    nfs4_dir(&tg, "remove d expect=NFS4ERR_NOENT lookup d").expect_ok("remove d");
    assert!(!exists(&tg, "d"));
    // In a file's directory (PATH's parent, after `create`): the same commands.
    let r = tg
        .nfs42(&[
            "/f.bin", "create", "mknod", "fifo", "q", "lookup", "q", "remove", "q", "getattr",
        ])
        .expect_ok("beside a file");
    assert_eq!(at(&r, 2, "type"), "fifo", "{r}");
    assert_eq!(at(&r, 4, "type"), "reg", "{r}");
    assert!(!exists(&tg, "q"));
    // Failures the server decides: an entry in a missing directory, a readlink of what is no
    // link, a mknod in a FIFO (not a directory).
    let r = tg.nfs42(&["/nodir", "dir", "mknod", "fifo", "x"]);
    assert_eq!(
        (r.code(), at(&r, 0, "status")),
        (1, "NFS4ERR_NOENT".into()),
        "{r}"
    );
    nfs4_dir(&tg, "mknod fifo p expect=NFS4ERR_INVAL readlink p").expect_ok("readlink");
    tg.nfs42(&["/p", "dir", "expect=NFS4ERR_NOTDIR", "mknod", "fifo", "x"])
        .expect_ok("mknod in a FIFO");
    // Usage errors (exit 2, nothing sent): a file command after `dir`, a bad kind or mode,
    // a device without its numbers.
    for cmds in [
        "write 0 1 1",
        "close",
        "mknod pipe x",
        "mknod chr x 1",
        "mknod fifo x mode=9",
        "mkdir",
        "symlink x",
        "dir",
    ] {
        let r = nfs4_dir(&tg, cmds);
        assert_eq!((r.code(), r.op_lines().len()), (2, 0), "{cmds}: {r}");
    }
}

#[test]
fn nfs3_mknod_of_each_kind_on_the_vfs_fsal() {
    let Some(tg) = TestGateway::vfs() else {
        return;
    };
    for (name, args, kind, mode, rdev) in [
        ("p", vec!["fifo", "640"], "fifo", 0o640, None),
        ("s", vec!["sock"], "sock", 0o644, None),
        (
            "c",
            vec!["chr", "1", "5", "620"],
            "chr",
            0o620,
            Some((1, 5)),
        ),
        (
            "b",
            vec!["blk", "259", "70000", "600"],
            "blk",
            0o600,
            Some((259, 70000)),
        ),
    ] {
        let path = format!("/{name}");
        let mut all = vec!["mknod", path.as_str()];
        all.extend(&args);
        tg.client(3, &all).expect_ok(&format!("mknod {all:?}"));
        let r = tg.client(3, &["stat", &path]).expect_ok("stat");
        assert_eq!(r.get("type").as_deref(), Some(kind), "{r}");
        assert_eq!(r.get("mode"), Some(format!("{mode:o}")), "{r}");
        assert_eq!(r.num("nlink"), 1, "{r}");
        match rdev {
            Some((ma, mi)) => assert_eq!(r.get("rdev"), Some(format!("{ma},{mi}")), "{r}"),
            None => assert_eq!(r.get("rdev"), None, "{r}"),
        }
        let disk = on_disk(&tg, name);
        assert_eq!((disk.0, disk.1), (kind, mode), "{name} on disk");
        if let Some(d) = rdev {
            assert_eq!(disk.2, d, "{name}'s device numbers on disk");
        }
    }
    // What NFSv3 made, NFSv4 reads the same (and the other way round).
    let r = nfs4_dir(&tg, "lookup b mknod chr c4 4 64 mode=600").expect_ok("v4 view");
    assert_eq!(
        (at(&r, 1, "type"), at(&r, 1, "rdev")),
        ("blk".into(), "259,70000".into())
    );
    let r = tg.client(3, &["stat", "/c4"]).expect_ok("v3 view");
    assert_eq!(r.get("type").as_deref(), Some("chr"), "{r}");
    assert_eq!(r.get("rdev").as_deref(), Some("4,64"), "{r}");
    // An existing name: EEXIST; a regular file and a directory keep their old type names.
    let r = tg.client(3, &["mknod", "/p", "fifo"]);
    assert_eq!(
        (r.code(), r.get("errno").as_deref()),
        (1, Some("17")),
        "{r}"
    );
    tg.client(3, &["put", "/f", "x"]).expect_ok("put");
    let r = tg.client(3, &["stat", "/f"]).expect_ok("stat f");
    assert_eq!(r.get("type").as_deref(), Some("file"), "{r}");
    assert_eq!(r.get("rdev"), None, "{r}");
    // Usage errors: exit 2.
    for args in [
        &["mknod", "/x"][..],
        &["mknod", "/x", "pipe"],
        &["mknod", "/x", "chr", "1"],
        &["mknod", "/x", "fifo", "9"],
        &["mknod", "/x", "blk", "4096", "0"],
    ] {
        assert_eq!(tg.client(3, args).code(), 2, "{args:?}");
    }
    assert!(!exists(&tg, "x"));
}
