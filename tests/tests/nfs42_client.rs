//! The project's NFSv4.2 client (`strata-nfs42-client`) against Ganesha's own VFS FSAL, a
//! server that implements ALLOCATE, DEALLOCATE, SEEK and extended attributes on a real
//! filesystem: what the client sends and decodes is checked against a reference before the
//! space tests (`space.rs`) rely on it against Strata.

use strata_tests::*;

#[test]
fn the_client_speaks_nfsv42_to_the_vfs_fsal() {
    let Some(tg) = TestGateway::vfs() else {
        return;
    };
    let r = tg
        .nfs42(&[
            "/f.bin",
            "create",
            "write",
            "0",
            "65536",
            "1",
            "write",
            "4194304",
            "65536",
            "2",
            "getattr",
            "seek",
            "data",
            "0",
            "read",
            "0",
            "65536",
            "1",
            "read",
            "4194304",
            "65536",
            "2",
            "deallocate",
            "0",
            "65536",
            "readz",
            "0",
            "65536",
            "allocate",
            "0",
            "8388608",
            "getattr",
            "commit",
        ])
        .expect_ok("v4.2 sequence on VFS");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 12, "{r}");
    let size = |i: usize| {
        kv_line(lines[i])
            .get("size")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("line {i}: {r}"))
    };
    assert_eq!(size(3), 4_259_840, "{r}");
    assert_eq!(size(10), 8 << 20, "ALLOCATE grew the file: {r}");
    assert!(lines[4].contains("offset=0"), "{r}");
    // An expected failure is a success; an unexpected status is a failure (exit 1).
    tg.nfs42(&[
        "/f.bin",
        "open",
        "expect=NFS4ERR_NXIO",
        "seek",
        "data",
        "9999999",
    ])
    .expect_ok("expected NXIO");
    let r = tg.nfs42(&["/f.bin", "open", "seek", "data", "9999999"]);
    assert_eq!(r.code(), 1, "{r}");
    assert!(r.stdout.contains("status=NFS4ERR_NXIO"), "{r}");
    let r = tg.nfs42(&["/missing.bin", "open"]);
    assert_eq!(r.code(), 1, "{r}");
    assert!(r.stdout.contains("status=NFS4ERR_NOENT"), "{r}");
    // Extended attributes (RFC 8276), as far as the VFS FSAL and the temp filesystem have them.
    let r = tg.nfs42(&[
        "/f.bin",
        "open",
        "setxattr",
        "user.colour",
        "blue",
        "create",
        "getxattr",
        "user.colour",
        "listxattrs",
        "expect=NFS4ERR_EXIST",
        "setxattr",
        "user.colour",
        "red",
        "create",
        "removexattr",
        "user.colour",
        "expect=NFS4ERR_NOXATTR",
        "getxattr",
        "user.colour",
    ]);
    if r.ok() {
        assert!(r.stdout.contains("value=blue"), "{r}");
        assert!(r.stdout.contains("names=user.colour"), "{r}");
    } else {
        // Say what the server answered: xattrs depend on the FSAL's build and the filesystem.
        eprintln!("note: xattrs on VFS: {r}");
        assert!(r.stdout.contains("op=setxattr status=NFS4ERR_"), "{r}");
    }
}
