//! Issue 20's namespace objects end to end through Ganesha and our FSAL: special files (FIFOs,
//! sockets, character and block devices with their numbers) made by NFSv4 CREATE
//! (`strata-nfs42-client`) and NFSv3 MKNOD (`strata-nfs-client`, libnfs), and RFC 8276
//! extended attributes (NFSv4.2 GETXATTR, SETXATTR, LISTXATTRS, REMOVEXATTR) on a regular
//! file, a volume and a directory: their create/replace semantics, limits and errors, a value
//! past Ganesha's first 1 KiB buffer, and both kept across a SIGKILL of Ganesha (each change
//! is durable when answered).

use strata_tests::*;

/// Runs the NFSv4.2 client on `path` (`dir` and `create` are among `cmds`) and panics unless
/// every command met its expectation.
fn nfs4(tg: &TestGateway, path: &str, cmds: &str) -> Run {
    let mut args: Vec<&str> = vec![path];
    args.extend(cmds.split_whitespace());
    tg.nfs42(&args).expect_ok(&format!("nfs4 {path} {cmds}"))
}

/// `key=` of output line `n`.
fn at(r: &Run, n: usize, key: &str) -> String {
    r.op_lines()
        .get(n)
        .and_then(|l| l.get(key).cloned())
        .unwrap_or_else(|| panic!("no {key}= in line {n}: {r}"))
}

/// What `lookup NAME` in the root reports: type, mode, rdev (if any), fileid.
fn looked_up(tg: &TestGateway, name: &str) -> (String, String, Option<String>, String) {
    let r = nfs4(tg, "/", &format!("dir lookup {name}"));
    let l = r.op_lines().get(1).cloned().unwrap_or_default();
    (
        at(&r, 1, "type"),
        at(&r, 1, "mode"),
        l.get("rdev").cloned(),
        at(&r, 1, "fileid"),
    )
}

#[test]
fn special_files_by_nfs4_create_and_nfs3_mknod_survive_a_sigkill() {
    let Some(mut tg) = TestGateway::strata() else {
        return;
    };
    let r = nfs4(
        &tg,
        "/",
        "dir mknod fifo p mode=640 mknod sock s mode=600 mknod chr c 1 3 mode=620 \
         mknod blk b 8 17 expect=NFS4ERR_EXIST mknod fifo c",
    );
    for (n, kind, mode) in [(1, "fifo", "640"), (2, "sock", "600"), (3, "chr", "620")] {
        assert_eq!(
            (at(&r, n, "type"), at(&r, n, "mode")),
            (kind.into(), mode.into()),
            "{r}"
        );
    }
    assert_eq!(at(&r, 3, "rdev"), "1,3", "{r}");
    assert_eq!(at(&r, 4, "rdev"), "8,17", "{r}");
    assert_eq!(at(&r, 5, "status"), "NFS4ERR_EXIST", "{r}");
    // NFSv3 MKNOD (libnfs), and each protocol reads what the other made.
    for args in [
        &["mknod", "/v3fifo", "fifo"][..],
        &["mknod", "/v3blk", "blk", "259", "4", "660"],
    ] {
        tg.client(3, args).expect_ok("mknod v3");
    }
    let st = tg.client(3, &["stat", "/c"]).expect_ok("stat v3");
    assert!(
        st.stdout.contains("type=chr") && st.stdout.contains("rdev=1,3"),
        "{st}"
    );
    let e = tg.client(3, &["mknod", "/p", "fifo"]);
    assert_ne!(e.code(), 0, "MKNOD over an existing name: {e}");
    assert_eq!(looked_up(&tg, "v3blk").2.as_deref(), Some("259,4"));
    let before: Vec<_> = ["p", "s", "c", "b", "v3fifo", "v3blk"]
        .iter()
        .map(|n| looked_up(&tg, n))
        .collect();
    assert_eq!(before[4].0, "fifo");
    assert_eq!((before[5].0.as_str(), before[5].1.as_str()), ("blk", "660"));

    // Answered means durable: the same objects, numbers and fileids after a SIGKILL.
    tg.gw_mut().kill_ganesha().expect("SIGKILL ganesha");
    tg.gw_mut().restart_ganesha().expect("restart");
    let after: Vec<_> = ["p", "s", "c", "b", "v3fifo", "v3blk"]
        .iter()
        .map(|n| looked_up(&tg, n))
        .collect();
    assert_eq!(after, before);
    // Only root makes device nodes (a user's would reach a client's disks); a FIFO is
    // anyone's with write permission on the directory.
    tg.client(3, &["mkdir", "/shared"]).expect_ok("mkdir");
    tg.client(3, &["chmod", "/shared", "777"])
        .expect_ok("chmod");
    let url = format!("{}&uid=1000&gid=1000", tg.url(3, ""));
    let as_user = |args: &[&str]| {
        let mut all: Vec<&str> = vec![&url];
        all.extend_from_slice(args);
        tg.run_timeout(client_bin(), all, CMD_TIMEOUT)
    };
    let dev = as_user(&["mknod", "/shared/sda", "blk", "8", "0"]);
    assert_eq!(dev.num("errno"), 1, "EPERM for a user's device: {dev}");
    as_user(&["mknod", "/shared/fifo", "fifo"]).expect_ok("a user's FIFO");
    assert_eq!(
        tg.client(3, &["stat", "/shared/fifo"])
            .expect_ok("stat")
            .num("uid"),
        1000
    );
    // REMOVE works on special files, and the name is free again.
    nfs4(
        &tg,
        "/",
        "dir remove p remove c expect=NFS4ERR_NOENT lookup p mknod fifo c",
    );
    assert_eq!(looked_up(&tg, "c").0, "fifo");
}

#[test]
fn extended_attributes_on_a_file_a_volume_and_a_directory_survive_a_sigkill() {
    let Some(mut tg) = TestGateway::strata() else {
        return;
    };
    // Longer than Ganesha's first GETXATTR buffer (1 KiB): it asks again with the length.
    let long = "x".repeat(5000);
    let r = nfs4(
        &tg,
        "/notes.txt",
        &format!(
            "create expect=NFS4ERR_NOXATTR getxattr color \
             expect=NFS4ERR_NOXATTR setxattr color red replace setxattr color red create \
             expect=NFS4ERR_EXIST setxattr color blue create setxattr color blue replace \
             setxattr long {long} setxattr empty-ok z either getxattr color getxattr long \
             listxattrs removexattr empty-ok expect=NFS4ERR_NOXATTR removexattr empty-ok \
             listxattrs"
        ),
    );
    assert_eq!(at(&r, 8, "value"), "blue", "{r}");
    assert_eq!(at(&r, 9, "value").len(), 5000, "{r}");
    assert_eq!(at(&r, 10, "names"), "color,empty-ok,long", "{r}");
    assert_eq!(at(&r, 13, "names"), "color,long", "{r}");
    // Each change moves the change attribute at once (MDCACHE is told), also of a directory.
    for (path, first) in [("/notes.txt", "open"), ("/", "dir")] {
        let r = nfs4(
            &tg,
            path,
            &format!("{first} getattr setxattr moved 1 getattr removexattr moved getattr"),
        );
        let change = |n| at(&r, n, "change").parse::<u64>().expect("change");
        assert!(
            change(1) < change(3) && change(3) < change(5),
            "{path}: {r}"
        );
    }
    // LISTXATTRS in pages: 20 names of 3 bytes (8 bytes each in the reply) with a budget of
    // 64 bytes (52 after Ganesha's cookie and eof, 48 after the array's length word: 6 a
    // page) come back exactly once each, in byte order, over 4 pages; a budget too small for
    // one name is TOOSMALL (Ganesha's own check below 20 bytes, the FSAL's above).
    let mut cmds = String::from("create");
    let names: Vec<String> = (0..20).map(|i| format!("n{i:02}")).collect();
    for n in &names {
        cmds.push_str(&format!(" setxattr {n} v"));
    }
    cmds.push_str(
        " listxattrs maxcount=64 expect=NFS4ERR_TOOSMALL listxattrs maxcount=19 \
         expect=NFS4ERR_TOOSMALL listxattrs maxcount=20 listxattrs maxcount=24",
    );
    let r = nfs4(&tg, "/paged.txt", &cmds);
    assert_eq!(at(&r, 21, "names"), names.join(","), "{r}");
    assert_eq!(at(&r, 21, "pages"), "4", "{r}");
    assert_eq!(at(&r, 24, "pages"), "20", "one name a page: {r}");
    // A volume (by its suffix) and a directory carry them too.
    nfs4(
        &tg,
        "/disk.raw",
        "create write 0 4096 7 setxattr vm.uuid 42",
    );
    nfs4(&tg, "/", "dir setxattr tag datastore-1");
    // Limits: Ganesha 4.3's XDR takes names and values shorter than 8 KiB (8191 bytes; longer is refused
    // as garbage arguments before the FSAL sees it); a name past 255 bytes is NAMETOOLONG.
    // Nothing is kept of either.
    let max = "m".repeat(8191);
    nfs4(
        &tg,
        "/notes.txt",
        &format!("open setxattr max {max} getxattr max removexattr max"),
    );
    let e = tg.nfs42(&["/notes.txt", "open", "setxattr", "big", &"v".repeat(8192)]);
    assert_ne!(e.code(), 0, "{e}");
    let name = "n".repeat(256);
    let r = nfs4(
        &tg,
        "/notes.txt",
        &format!("open expect=NFS4ERR_NAMETOOLONG setxattr {name} v listxattrs"),
    );
    assert_eq!(at(&r, 2, "names"), "color,long", "{r}");

    // Answered means durable.
    tg.gw_mut().kill_ganesha().expect("SIGKILL ganesha");
    tg.gw_mut().restart_ganesha().expect("restart");
    let r = nfs4(
        &tg,
        "/notes.txt",
        "open listxattrs getxattr color getxattr long",
    );
    assert_eq!(at(&r, 1, "names"), "color,long", "{r}");
    assert_eq!(at(&r, 2, "value"), "blue", "{r}");
    assert_eq!(at(&r, 3, "value"), long, "{r}");
    let r = nfs4(&tg, "/disk.raw", "open getxattr vm.uuid read 0 4096 7");
    assert_eq!(at(&r, 1, "value"), "42", "{r}");
    let r = nfs4(&tg, "/", "dir listxattrs getxattr tag");
    assert_eq!(at(&r, 2, "value"), "datastore-1", "{r}");
    // Special files carry none (as Linux keeps `user.` attributes).
    nfs4(&tg, "/", "dir mknod fifo p");
    nfs4(&tg, "/p", "dir expect=NFS4ERR_NOTSUPP setxattr a b");
}
