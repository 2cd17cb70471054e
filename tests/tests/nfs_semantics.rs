//! Issue 4's NFS semantics, through real clients (libnfs-utils, qemu, our libnfs client).
//!
//! Every check runs twice: against Ganesha with our FSAL (`strata`), and against Ganesha's own
//! VFS FSAL on a local directory (`vfs`), the reference that shows the check itself is right.

use std::collections::BTreeSet;
use std::thread;

use strata_tests::*;

const ENOENT: u64 = 2;
const EEXIST: u64 = 17;
const EPERM: u64 = 1;
const EACCES: u64 = 13;
const NFS3ERR_STALE: u64 = 70;
const MIB: u64 = 1 << 20;

/// Generates `mod $check { fn strata(); fn vfs(); }` running `$check(&TestGateway)` on both.
macro_rules! on_both {
    ($($check:ident),* $(,)?) => {$(
        mod $check {
            #[test]
            fn strata() {
                if let Some(tg) = strata_tests::TestGateway::strata() {
                    super::$check(&tg);
                }
            }
            #[test]
            fn vfs() {
                if let Some(tg) = strata_tests::TestGateway::vfs() {
                    super::$check(&tg);
                }
            }
        }
    )*};
}

on_both!(
    nfs_utils_v3_and_v4,
    directory_of_3000_entries_listed_exactly_once,
    rename_replaces_atomically_and_keeps_fileid,
    hard_links,
    symlinks,
    truncate_shrinks_and_grows,
    unlink_while_open_v4_reads_until_close,
    unlink_while_open_v3_is_stale,
    guarded_create_twice_is_eexist,
    exclusive_create_verifier,
    file_of_256_mib_round_trips,
    parallel_writers,
    qemu_img_and_qemu_io,
    random_io_at_queue_depth,
    capacity_and_transfer_limits,
    parallel_v4_clients,
    nfsv4_writes,
    a_non_root_caller_is_held_to_directory_permissions,
);

fn nfs_utils_v3_and_v4(tg: &TestGateway) {
    if !require_tools(&["nfs-ls", "nfs-cp", "nfs-cat"]) {
        return;
    }
    let local = tg.dir().join("local");
    std::fs::create_dir_all(&local).expect("mkdir");
    // v3: a 300 KB file; v4: 3000 bytes (libnfs 4.0's v4 nfs-cp fails from 4000 bytes on any
    // server, see ganesha-fsal.md §5).
    let big = pattern(300_000, 1);
    let small: Vec<u8> = (0..3000).map(|i| b"strata\n"[i % 7]).collect();
    std::fs::write(local.join("big.bin"), &big).expect("write");
    std::fs::write(local.join("small.txt"), &small).expect("write");
    let src_big = local.join("big.bin").display().to_string();
    let src_small = local.join("small.txt").display().to_string();
    tg.run("nfs-cp", [src_big.as_str(), &tg.url(3, "/big.bin")])
        .expect_ok("nfs-cp v3");
    tg.run("nfs-cp", [src_small.as_str(), &tg.url(4, "/small.txt")])
        .expect_ok("nfs-cp v4");

    let back = local.join("big.back").display().to_string();
    tg.run("nfs-cp", [tg.url(3, "/big.bin").as_str(), &back])
        .expect_ok("nfs-cp v3 read");
    assert!(
        std::fs::read(&back).expect("read") == big,
        "v3 round trip differs"
    );
    for v in [3, 4] {
        let r = tg
            .run("nfs-cat", [tg.url(v, "/small.txt")])
            .expect_ok("nfs-cat");
        assert_eq!(r.stdout.as_bytes(), &small[..], "nfs-cat v{v}");
        let r = tg.run("nfs-ls", [tg.url(v, "/")]).expect_ok("nfs-ls");
        assert!(
            r.stdout.contains("big.bin") && r.stdout.contains("small.txt"),
            "v{v}: {r}"
        );
        assert!(
            r.stdout.contains("300000"),
            "size of big.bin in v{v} listing: {r}"
        );
    }
}

fn directory_of_3000_entries_listed_exactly_once(tg: &TestGateway) {
    if !require_tool("nfs-ls") {
        return;
    }
    const N: usize = 3000;
    tg.client(3, &["mkdir", "/many"]).expect_ok("mkdir");
    let r = tg.client(3, &["mkfiles", "/many", &N.to_string()]);
    assert_eq!(r.expect_ok("mkfiles").num("created"), N as u64);
    let expected: BTreeSet<String> = (0..N).map(|i| format!("f{i:05}")).collect();

    // Our client (READDIRPLUS, v3) and nfs-ls over v3 and v4: every name exactly once.
    let r = tg.client(3, &["ls", "/many"]).expect_ok("ls");
    let names: Vec<String> = r
        .stdout
        .lines()
        .filter_map(|l| kv_line(l).remove("name"))
        .collect();
    assert_exactly_once(&names, &expected, "client ls v3");
    let fileids: BTreeSet<String> = r
        .stdout
        .lines()
        .filter_map(|l| kv_line(l).remove("fileid"))
        .collect();
    assert_eq!(fileids.len(), N, "fileids must be unique");
    for v in [3, 4] {
        let r = tg.run("nfs-ls", [tg.url(v, "/many/")]).expect_ok("nfs-ls");
        let names: Vec<String> = r
            .stdout
            .lines()
            .filter_map(|l| l.split_whitespace().last().map(str::to_string))
            .filter(|n| n != "." && n != "..")
            .collect();
        assert_exactly_once(&names, &expected, &format!("nfs-ls v{v}"));
    }
}

fn assert_exactly_once(names: &[String], expected: &BTreeSet<String>, what: &str) {
    let set: BTreeSet<String> = names.iter().cloned().collect();
    assert_eq!(
        names.len(),
        set.len(),
        "{what}: duplicates in a listing of {}",
        names.len()
    );
    let missing: Vec<_> = expected.difference(&set).take(5).collect();
    let extra: Vec<_> = set.difference(expected).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: missing {missing:?}, extra {extra:?}"
    );
}

fn cat(tg: &TestGateway, v: u8, path: &str) -> String {
    tg.client(v, &["cat", path]).expect_ok("cat").stdout
}

fn rename_replaces_atomically_and_keeps_fileid(tg: &TestGateway) {
    tg.client(3, &["put", "/a", "hello"]).expect_ok("put");
    let id = tg
        .client(3, &["stat", "/a"])
        .expect_ok("stat")
        .num("fileid");
    tg.client(3, &["rename", "/a", "/b"]).expect_ok("rename");
    let r = tg.client(3, &["stat", "/a"]);
    assert_eq!(r.num("errno"), ENOENT, "old name gone: {r}");
    assert_eq!(
        tg.client(3, &["stat", "/b"])
            .expect_ok("stat")
            .num("fileid"),
        id
    );
    assert_eq!(cat(tg, 3, "/b"), "hello");
    // ESXi's `.vmx~` -> `.vmx`: rename over an existing name replaces it.
    tg.client(3, &["put", "/b~", "new contents"])
        .expect_ok("put");
    let id2 = tg
        .client(3, &["stat", "/b~"])
        .expect_ok("stat")
        .num("fileid");
    tg.client(3, &["rename", "/b~", "/b"])
        .expect_ok("rename over");
    assert_eq!(cat(tg, 3, "/b"), "new contents");
    assert_eq!(
        tg.client(3, &["stat", "/b"])
            .expect_ok("stat")
            .num("fileid"),
        id2
    );
    // Across directories, and over NFSv4.
    tg.client(4, &["mkdir", "/d1"]).expect_ok("mkdir");
    tg.client(4, &["rename", "/b", "/d1/c"])
        .expect_ok("rename v4");
    assert_eq!(cat(tg, 4, "/d1/c"), "new contents");
    let r = tg.client(3, &["ls", "/"]).expect_ok("ls");
    assert!(!r.stdout.contains("name=b "), "{r}");
}

fn hard_links(tg: &TestGateway) {
    tg.client(3, &["put", "/orig", "linked data"])
        .expect_ok("put");
    tg.client(3, &["link", "/orig", "/other"]).expect_ok("link");
    let a = tg.client(3, &["stat", "/orig"]).expect_ok("stat");
    let b = tg.client(3, &["stat", "/other"]).expect_ok("stat");
    assert_eq!(a.num("fileid"), b.num("fileid"));
    assert_eq!(a.num("nlink"), 2);
    tg.client(3, &["unlink", "/orig"]).expect_ok("unlink");
    let b = tg.client(3, &["stat", "/other"]).expect_ok("stat");
    assert_eq!(b.num("nlink"), 1);
    assert_eq!(cat(tg, 3, "/other"), "linked data");
    let r = tg.client(3, &["link", "/other", "/other"]);
    assert_eq!(r.num("errno"), EEXIST, "link onto an existing name: {r}");
}

fn symlinks(tg: &TestGateway) {
    tg.client(3, &["put", "/target", "via symlink"])
        .expect_ok("put");
    tg.client(3, &["symlink", "target", "/sl"])
        .expect_ok("symlink");
    let r = tg.client(3, &["readlink", "/sl"]).expect_ok("readlink");
    assert_eq!(r.get("target").as_deref(), Some("target"));
    let r = tg.client(3, &["lstat", "/sl"]).expect_ok("lstat");
    assert_eq!(r.get("type").as_deref(), Some("symlink"));
    let r = tg.client(4, &["readlink", "/sl"]).expect_ok("readlink v4");
    assert_eq!(r.get("target").as_deref(), Some("target"));
    tg.client(3, &["unlink", "/sl"]).expect_ok("unlink symlink");
    assert_eq!(cat(tg, 3, "/target"), "via symlink");
}

fn truncate_shrinks_and_grows(tg: &TestGateway) {
    tg.client(3, &["write", "/t", "0", "3000000", "5"])
        .expect_ok("write");
    tg.client(3, &["truncate", "/t", "1000000"])
        .expect_ok("shrink");
    assert_eq!(
        tg.client(3, &["stat", "/t"]).expect_ok("stat").num("size"),
        1_000_000
    );
    tg.client(3, &["verify", "/t", "0", "1000000", "5"])
        .expect_ok("data kept");
    tg.client(3, &["truncate", "/t", "5000000"])
        .expect_ok("grow");
    assert_eq!(
        tg.client(3, &["stat", "/t"]).expect_ok("stat").num("size"),
        5_000_000
    );
    // The grown part reads as zeros, not as the old data.
    let r = tg.client(3, &["verify", "/t", "1000000", "4096", "5"]);
    assert!(
        !r.ok(),
        "old bytes must not reappear after shrink+grow: {r}"
    );
    tg.client(4, &["truncate", "/t", "0"])
        .expect_ok("truncate v4");
    assert_eq!(
        tg.client(3, &["stat", "/t"]).expect_ok("stat").num("size"),
        0
    );
}

fn unlink_while_open_v4_reads_until_close(tg: &TestGateway) {
    tg.client(3, &["write", "/uwo", "0", "200000", "7"])
        .expect_ok("write");
    let r = tg.client(4, &["unlink-while-open", "/uwo", "200000", "7"]);
    assert!(
        r.ok(),
        "data must stay readable through the open v4 handle: {r}"
    );
    assert_eq!(r.num("stat_after_unlink_errno"), ENOENT, "{r}");
    assert_eq!(r.num("verified"), 200_000);
    let r = tg.client(3, &["stat", "/uwo"]);
    assert_eq!(r.num("errno"), ENOENT, "{r}");
}

fn unlink_while_open_v3_is_stale(tg: &TestGateway) {
    tg.client(3, &["write", "/uwo3", "0", "100000", "8"])
        .expect_ok("write");
    let r = tg.client(3, &["unlink-while-open", "/uwo3", "100000", "8"]);
    // NFSv3 has no open state: the unlinked file is gone and its handle is stale.
    assert_eq!(r.num("getattr_after_unlink_nfsstat"), NFS3ERR_STALE, "{r}");
    assert!(
        !r.ok(),
        "reading an unlinked file's handle over NFSv3 must fail: {r}"
    );
}

fn guarded_create_twice_is_eexist(tg: &TestGateway) {
    tg.client(3, &["create3", "guarded", "/g"])
        .expect_ok("first GUARDED");
    let r = tg.client(3, &["create3", "guarded", "/g"]);
    assert_eq!(r.num("errno"), EEXIST, "second GUARDED: {r}");
    // libnfs' own O_EXCL create (GUARDED on v3).
    tg.client(3, &["create-excl", "/g2"])
        .expect_ok("create-excl");
    let r = tg.client(3, &["create-excl", "/g2"]);
    assert_eq!(r.num("errno"), EEXIST, "{r}");
    // UNCHECKED on an existing name succeeds.
    tg.client(3, &["create3", "unchecked", "/g"])
        .expect_ok("UNCHECKED over existing");
}

fn exclusive_create_verifier(tg: &TestGateway) {
    let a = tg
        .client(
            3,
            &["create3", "exclusive", "/.lck-0001", "0102030405060708"],
        )
        .expect_ok("EXCLUSIVE");
    let replay = tg
        .client(
            3,
            &["create3", "exclusive", "/.lck-0001", "0102030405060708"],
        )
        .expect_ok("replay with the same verifier");
    assert_eq!(a.num("fileid"), replay.num("fileid"));
    let r = tg.client(
        3,
        &["create3", "exclusive", "/.lck-0001", "1111111111111111"],
    );
    assert_eq!(r.num("errno"), EEXIST, "other verifier: {r}");
    // 84-byte lock writes (ESXi's lease updates) then work on it, and each one moves mtime
    // forward: other hosts judge the lock holder's liveness by it.
    let mut last = 0f64;
    for seed in 3..6 {
        tg.client(3, &["write", "/.lck-0001", "0", "84", &seed.to_string()])
            .expect_ok("write");
        let st = tg.client(3, &["stat", "/.lck-0001"]).expect_ok("stat");
        assert_eq!(st.num("size"), 84);
        let mtime: f64 = st.get("mtime").and_then(|m| m.parse().ok()).expect("mtime");
        assert!(mtime > 1.6e9, "mtime is a real time after a write: {st}");
        assert!(
            mtime > last,
            "mtime must advance on every write: {last} then {st}"
        );
        last = mtime;
    }
}

fn file_of_256_mib_round_trips(tg: &TestGateway) {
    if !require_tools(&["nfs-cp", "sha256sum"]) {
        return;
    }
    let src = tg.dir().join("256m.bin");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&src).expect("create"));
        for i in 0..256 {
            f.write_all(&pattern(MIB as usize, i)).expect("write");
        }
        f.flush().expect("flush");
    }
    let want = sha256_file(&src);
    let s = src.display().to_string();
    tg.run_timeout("nfs-cp", [s.as_str(), &tg.url(3, "/256m.bin")], LONG)
        .expect_ok("nfs-cp to server");
    std::fs::remove_file(&src).expect("rm");
    assert_eq!(
        tg.client(3, &["stat", "/256m.bin"])
            .expect_ok("stat")
            .num("size"),
        256 * MIB
    );
    let back = tg.dir().join("256m.back");
    let b = back.display().to_string();
    tg.run_timeout("nfs-cp", [tg.url(3, "/256m.bin").as_str(), &b], LONG)
        .expect_ok("nfs-cp from server");
    assert_eq!(sha256_file(&back), want, "checksum after the round trip");
}

const LONG: std::time::Duration = std::time::Duration::from_secs(240);

fn parallel_writers(tg: &TestGateway) {
    const PER: u64 = 4 * MIB;
    const N: u64 = 4;
    // One file per writer, plus one shared file written in disjoint ranges.
    tg.client(3, &["put", "/shared", ""])
        .expect_ok("create shared");
    tg.client(3, &["truncate", "/shared", &(N * PER).to_string()])
        .expect_ok("size shared");
    thread::scope(|s| {
        let mut hs = Vec::new();
        for i in 0..N {
            hs.push(s.spawn(move || {
                let own = format!("/own{i}");
                tg.client(3, &["write", &own, "0", &PER.to_string(), &i.to_string()])
                    .expect_ok("own file");
            }));
            hs.push(s.spawn(move || {
                let off = (i * PER).to_string();
                tg.client(3, &["write", "/shared", &off, &PER.to_string(), "99"])
                    .expect_ok("shared range");
            }));
        }
        for h in hs {
            h.join().expect("writer thread");
        }
    });
    for i in 0..N {
        let own = format!("/own{i}");
        tg.client(3, &["verify", &own, "0", &PER.to_string(), &i.to_string()])
            .expect_ok("verify own");
    }
    let total = (N * PER).to_string();
    tg.client(3, &["verify", "/shared", "0", &total, "99"])
        .expect_ok("verify shared");
    tg.client(4, &["verify", "/shared", "0", &total, "99"])
        .expect_ok("verify shared over v4");
}

fn qemu_img_and_qemu_io(tg: &TestGateway) {
    if !require_tools(&["qemu-img", "qemu-io"]) {
        return;
    }
    let raw = tg.qemu_url("/disk.raw");
    let qcow = tg.qemu_url("/disk.qcow2");
    let qemu = |args: &[&str]| {
        let r = tg.run_timeout(args[0], &args[1..], LONG);
        let r = r.expect_ok(&args.join(" "));
        assert!(
            !r.stdout.contains("failed") && !r.stderr.contains("failed"),
            "{}: {r}",
            args.join(" ")
        );
        r
    };
    qemu(&["qemu-img", "create", "-f", "raw", &raw, "64M"]);
    qemu(&["qemu-img", "create", "-f", "qcow2", &qcow, "64M"]);
    for (fmt, url) in [("raw", &raw), ("qcow2", &qcow)] {
        qemu(&[
            "qemu-io",
            "-f",
            fmt,
            "-c",
            "write -P 0xab 0 1M",
            "-c",
            "write -P 0x5a 8M 64k",
            "-c",
            "flush",
            "-c",
            "read -P 0xab 0 1M",
            "-c",
            "read -P 0x5a 8M 64k",
            "-c",
            "read -P 0 16M 4k",
            url,
        ]);
    }
    // Zero writes and discard (qcow2 keeps them in its metadata; QEMU's nfs driver sends no
    // DEALLOCATE), then the map shows data and zero runs.
    qemu(&[
        "qemu-io",
        "-f",
        "qcow2",
        "-c",
        "write -z 2M 1M",
        "-c",
        "discard 8M 64k",
        "-c",
        "flush",
        "-c",
        "read -P 0 2M 1M",
        "-c",
        "read -P 0 8M 64k",
        "-c",
        "read -P 0xab 0 1M",
        &qcow,
    ]);
    let r = qemu(&["qemu-img", "map", "--output=json", "-f", "qcow2", &qcow]);
    assert!(r.stdout.contains("\"data\": true"), "{r}");
    assert!(r.stdout.contains("\"zero\": true"), "{r}");
    let r = qemu(&["qemu-img", "check", "-f", "qcow2", &qcow]);
    assert!(r.stdout.contains("No errors were found"), "{r}");
    let conv_raw = tg.qemu_url("/conv.raw");
    let conv_qcow = tg.qemu_url("/conv.qcow2");
    qemu(&[
        "qemu-img", "convert", "-f", "qcow2", "-O", "raw", &qcow, &conv_raw,
    ]);
    qemu(&[
        "qemu-img", "convert", "-f", "raw", "-O", "qcow2", &raw, &conv_qcow,
    ]);
    qemu(&[
        "qemu-img", "compare", "-f", "qcow2", "-F", "raw", &qcow, &conv_raw,
    ]);
    qemu(&[
        "qemu-img", "compare", "-f", "raw", "-F", "qcow2", &raw, &conv_qcow,
    ]);
    let r = qemu(&["qemu-img", "check", "-f", "qcow2", &conv_qcow]);
    assert!(r.stdout.contains("No errors were found"), "{r}");
    // The converted raw image has the qcow2's data, and its discarded range reads as zeros.
    let r = qemu(&[
        "qemu-io",
        "-f",
        "raw",
        "-c",
        "read -P 0xab 0 1M",
        "-c",
        "read -P 0 8M 64k",
        &conv_raw,
    ]);
    assert!(r.stdout.contains("read 1048576/1048576"), "{r}");
}

fn random_io_at_queue_depth(tg: &TestGateway) {
    let size = (8 * MIB).to_string();
    tg.client(3, &["write", "/rio", "0", &size, "5"])
        .expect_ok("fill");
    // Random 4 KiB writes of the same pattern at QD 16 with a COMMIT every 64 writes: the file
    // must still verify as a whole, and reads at QD 16 (v3) and QD 8 (v4) must match.
    let r = tg
        .client(
            3,
            &[
                "randio", "/rio", &size, "4096", "16", "2000", "write", "5", "64",
            ],
        )
        .expect_ok("randio write");
    assert_eq!(r.num("ops"), 2000);
    assert!(r.num("commits") >= 2000 / 64, "{r}");
    let r = tg
        .client(
            3,
            &[
                "randio",
                "/rio",
                &size,
                "4096",
                "16",
                "2000",
                "readverify",
                "5",
            ],
        )
        .expect_ok("randio read v3");
    assert_eq!(r.num("mismatches"), 0);
    let r = tg
        .client(
            4,
            &[
                "randio",
                "/rio",
                &size,
                "4096",
                "8",
                "500",
                "readverify",
                "5",
            ],
        )
        .expect_ok("randio read v4");
    assert_eq!(r.num("ops"), 500);
    tg.client(3, &["verify", "/rio", "0", &size, "5"])
        .expect_ok("whole file");
    // The check can fail: another seed does not verify.
    let r = tg.client(
        3,
        &[
            "randio",
            "/rio",
            &size,
            "4096",
            "4",
            "50",
            "readverify",
            "6",
        ],
    );
    assert!(!r.ok() && r.num("mismatches") > 0, "{r}");
}

fn capacity_and_transfer_limits(tg: &TestGateway) {
    for v in [3, 4] {
        let r = tg.client(v, &["statfs", "/"]).expect_ok("statfs");
        let (total, free, avail) = (
            r.num("total_bytes"),
            r.num("free_bytes"),
            r.num("avail_bytes"),
        );
        assert!(total > 0 && total >= free && free >= avail, "v{v}: {r}");
        if v == 3 {
            // FSINFO: the exports' MaxRead/MaxWrite (1 MiB), what ESXi and QEMU will use.
            assert_eq!(r.num("readmax"), MIB, "{r}");
            assert_eq!(r.num("writemax"), MIB, "{r}");
        }
        // The real capacity of the filesystem holding the data (the test's temp dir).
        let host = host_total_bytes(&tg.data_dir);
        assert!(
            total.abs_diff(host) <= host / 10,
            "v{v}: total {total} vs the data directory's filesystem {host}: {r}"
        );
    }
}

fn host_total_bytes(path: &std::path::Path) -> u64 {
    let out = std::process::Command::new("df")
        .args(["--output=size", "-B1"])
        .arg(path)
        .output()
        .expect("df");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("df output: {text}"))
}

fn parallel_v4_clients(tg: &TestGateway) {
    const N: usize = 6;
    thread::scope(|s| {
        let hs: Vec<_> = (0..N)
            .map(|i| {
                s.spawn(move || {
                    let path = format!("/v4-{i}");
                    let text = format!("client {i} was here");
                    tg.client(4, &["put", &path, &text]).expect_ok("put v4");
                    assert_eq!(cat(tg, 4, &path), text);
                    tg.client(4, &["rename", &path, &format!("{path}.done")])
                        .expect_ok("rename v4");
                })
            })
            .collect();
        for h in hs {
            h.join().expect("v4 client thread");
        }
    });
    let r = tg.client(3, &["ls", "/"]).expect_ok("ls");
    for i in 0..N {
        assert!(r.stdout.contains(&format!("name=v4-{i}.done ")), "{r}");
    }
}

fn nfsv4_writes(tg: &TestGateway) {
    // NFSv4.0 OPEN + WRITE + COMMIT + CLOSE (our client sends 2 KiB WRITEs: libnfs 4.0's limit).
    let size = MIB.to_string();
    tg.client(4, &["write", "/v4data", "0", &size, "4"])
        .expect_ok("write v4");
    tg.client(3, &["verify", "/v4data", "0", &size, "4"])
        .expect_ok("verify v3");
    let r = tg
        .client(
            4,
            &[
                "randio", "/v4data", &size, "2048", "8", "400", "write", "4", "32",
            ],
        )
        .expect_ok("randio write v4");
    assert!(r.num("commits") >= 400 / 32, "{r}");
    tg.client(4, &["verify", "/v4data", "0", &size, "4"])
        .expect_ok("verify v4");
    // Overwrite with truncation (OPEN with size 0) keeps the same file.
    let id = tg
        .client(3, &["stat", "/v4data"])
        .expect_ok("stat")
        .num("fileid");
    tg.client(4, &["put", "/v4data", "short"])
        .expect_ok("put v4");
    let st = tg.client(3, &["stat", "/v4data"]).expect_ok("stat");
    assert_eq!((st.num("fileid"), st.num("size")), (id, 5), "{st}");
    assert_eq!(cat(tg, 4, "/v4data"), "short");
}

/// Our client as uid/gid 1000 (AUTH_SYS credentials from libnfs's URL options).
fn as_user(tg: &TestGateway, args: &[&str]) -> Run {
    let url = format!("{}&uid=1000&gid=1000", tg.url(3, ""));
    let mut all: Vec<&str> = vec![&url];
    all.extend_from_slice(args);
    tg.run_timeout(client_bin(), all, CMD_TIMEOUT)
}

/// Creating, renaming and choosing owners are checked against the directory's mode and the
/// caller's credentials (Ganesha 4.3 leaves these checks to the FSAL; VFS gets them from the
/// kernel).
fn a_non_root_caller_is_held_to_directory_permissions(tg: &TestGateway) {
    // As root: a 0755 root-owned directory with a root file in it, and a 0777 directory.
    tg.client(3, &["mkdir", "/locked"]).expect_ok("mkdir");
    tg.client(3, &["chmod", "/locked", "755"])
        .expect_ok("chmod");
    tg.client(3, &["put", "/locked/rootfile", "root data"])
        .expect_ok("put");
    tg.client(3, &["mkdir", "/open"]).expect_ok("mkdir");
    tg.client(3, &["chmod", "/open", "777"]).expect_ok("chmod");

    // As uid 1000: nothing new in the locked directory, nothing renamed out of it.
    for args in [
        &["put", "/locked/mine", "x"][..],
        &["mkdir", "/locked/d"],
        &["symlink", "t", "/locked/sl"],
        &["rename", "/locked/rootfile", "/open/stolen"],
    ] {
        let r = as_user(tg, args);
        assert_eq!(r.num("errno"), EACCES, "uid 1000 {args:?}: {r}");
    }
    assert_eq!(cat(tg, 3, "/locked/rootfile"), "root data");

    // In the open directory it may, and what it creates is its own.
    as_user(tg, &["put", "/open/mine", "user data"]).expect_ok("put as uid 1000");
    let st = tg.client(3, &["stat", "/open/mine"]).expect_ok("stat");
    assert_eq!(st.num("uid"), 1000);
    as_user(tg, &["mkdir", "/open/dir"]).expect_ok("mkdir as uid 1000");
    as_user(tg, &["rename", "/open/mine", "/open/renamed"]).expect_ok("rename as uid 1000");

    // A root-owned file in a sticky 1777 directory cannot be renamed away by another user.
    tg.client(3, &["chmod", "/open", "1777"])
        .expect_ok("chmod sticky");
    tg.client(3, &["put", "/open/roots", "r"]).expect_ok("put");
    let r = as_user(tg, &["rename", "/open/roots", "/open/taken"]);
    assert!(
        r.num("errno") == EACCES || r.num("errno") == EPERM,
        "sticky rename: {r}"
    );
    as_user(tg, &["rename", "/open/renamed", "/open/again"]).expect_ok("own file in sticky dir");
}
