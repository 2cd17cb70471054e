//! The hypervisors' NFS sequences of `esxi-kvm-clients.md` §4 end to end (issue 20), each on
//! Strata and on Ganesha's own VFS FSAL as the reference:
//!
//! - **ESXi-like, NFSv3** (§4.1) with the project's libnfs client (`strata-nfs-client`): mount
//!   as root, FSINFO/FSSTAT, a VM directory, the `.lck-<fileid>` lock file by EXCLUSIVE create
//!   (replayed with its verifier, refused with another's: a second host), its 84-byte
//!   FILE_SYNC lease writes moving mtime forward, the descriptor and a 1 GiB thin flat disk,
//!   4 KiB writes at random offsets with COMMITs read back, `vmx~` renamed over `vmx`, the
//!   `.nvram`, an appended `vmware.log`, a `.vswp` sized to the RAM and removed, fileids and
//!   handles (≤ 56 bytes) unchanged across a rename and a restart, the lock released.
//!   One step is not run as written: the "second host" uses a second EXCLUSIVE create with
//!   another verifier from the same client (libnfs's AUTH_SYS machine name is not settable
//!   here), which is what decides it on the server.
//! - **KVM-like** (§4.3 A) with `qemu-img`/`qemu-io` over QEMU's own `nfs://` driver
//!   (NFSv3, UNSTABLE + COMMIT): qcow2 created, written, flushed, read, zeroed and discarded,
//!   mapped, checked; a raw image written; `qemu-img info` with `uid`/`gid` in the URL; a
//!   `version=4` URL refused (QEMU's driver speaks v3 only); convert and compare.
//!
//! The ESXi NFSv4.1 sequence (§4.2) is in `nfs41_sequence.rs` where it exists; latency (step
//! 12) is measured by `scripts/bench`, never asserted here.

use strata_tests::*;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// A qemu command's time bound.
const LONG: std::time::Duration = std::time::Duration::from_secs(300);

fn esxi_nfs3_sequence(tg: &mut TestGateway, what: &str) {
    let c = |args: &[&str]| tg.client(3, args).expect_ok(&format!("{what}: {args:?}"));
    // 1. Mounted as uid 0, root not squashed: a new file is root's.
    c(&["put", "/owner-check", "x"]);
    assert_eq!(c(&["stat", "/owner-check"]).num("uid"), 0, "{what}");
    // 2. FSINFO and FSSTAT.
    let fs = c(&["statfs", "/"]);
    let (rmax, wmax) = (fs.num("readmax"), fs.num("writemax"));
    assert!(
        rmax > 0 && rmax <= MIB && wmax > 0 && wmax <= MIB,
        "{what}: {fs}"
    );
    let (t, f, a) = (
        fs.num("total_bytes"),
        fs.num("free_bytes"),
        fs.num("avail_bytes"),
    );
    assert!(t >= f && f >= a && t > 0, "{what}: {fs}");
    // 3. The VM's directory, listed.
    c(&["mkdir", "/vm1"]);
    assert!(c(&["ls", "/"]).stdout.contains("name=vm1 "), "{what}");
    // 6 (first, for its fileid). The descriptor and the flat disk, thin at 1 GiB.
    c(&["put", "/vm1/vm1.vmdk", "# Disk DescriptorFile\nversion=1\n"]);
    c(&["put", "/vm1/vm1-flat.vmdk", ""]);
    c(&["truncate", "/vm1/vm1-flat.vmdk", &GIB.to_string()]);
    let flat = c(&["stat", "/vm1/vm1-flat.vmdk"]);
    assert_eq!(flat.num("size"), GIB, "{what}");
    assert!(flat.num("used") < 64 * MIB, "{what}: thin: {flat}");
    let fileid = flat.num("fileid");
    // 4. The lock file `.lck-<fileid as little-endian hex>`: EXCLUSIVE with verifier V,
    // replayed with V, refused with another; its 84-byte FILE_SYNC lease writes.
    let lck = format!("/vm1/.lck-{}", hex_le(fileid));
    let first = c(&["create3", "exclusive", &lck, "0102030405060708"]);
    let replay = c(&["create3", "exclusive", &lck, "0102030405060708"]);
    assert_eq!(first.num("fileid"), replay.num("fileid"), "{what}");
    // 5. A second host's create of the same lock (another verifier): EXIST, the lock is held.
    let other = tg.client(3, &["create3", "exclusive", &lck, "a1a2a3a4a5a6a7a8"]);
    assert_eq!(other.num("errno"), 17, "{what}: EEXIST: {other}");
    let mut last = String::new();
    for seed in 1..=3 {
        let w = c(&["write3", &lck, "0", "84", &seed.to_string()]);
        assert_eq!(
            (w.num("written"), w.num("committed")),
            (84, 2),
            "{what}: FILE_SYNC: {w}"
        );
        let st = c(&["stat", &lck]);
        assert_eq!(st.num("size"), 84, "{what}");
        let m = st.get("mtime").expect("mtime");
        assert!(newer(&m, &last), "{what}: mtime {m} after {last}");
        last = m;
        c(&["verify", &lck, "0", "84", &seed.to_string()]);
    }
    // 6 (the rest). A hole of the thin disk reads as zeros.
    c(&[
        "verify",
        "/vm1/vm1-flat.vmdk",
        &(512 * MIB).to_string(),
        "65536",
        "zero",
    ]);
    // 7. 4 KiB writes at random offsets (UNSTABLE, a COMMIT every 8), read back.
    let size = (256 * MIB).to_string();
    c(&[
        "randio",
        "/vm1/vm1-flat.vmdk",
        &size,
        "4096",
        "8",
        "256",
        "write",
        "7",
        "8",
    ]);
    c(&[
        "randio",
        "/vm1/vm1-flat.vmdk",
        &size,
        "4096",
        "8",
        "256",
        "readverify",
        "7",
    ]);
    // 8. `vm1.vmx~` written and renamed over `vm1.vmx`: replaced whole.
    c(&["put", "/vm1/vm1.vmx", "old"]);
    c(&["put", "/vm1/vm1.vmx~", "displayName = \"vm1\"\n"]);
    c(&["rename", "/vm1/vm1.vmx~", "/vm1/vm1.vmx"]);
    assert_eq!(
        c(&["cat", "/vm1/vm1.vmx"]).stdout,
        "displayName = \"vm1\"\n",
        "{what}"
    );
    // 9. `.nvram`, an appended `vmware.log`, a `.vswp` of the RAM's size, then removed.
    c(&["write", "/vm1/vm1.nvram", "0", "8684", "5"]);
    for (i, off) in [0u64, 4096, 8192].iter().enumerate() {
        c(&[
            "write",
            "/vm1/vmware.log",
            &off.to_string(),
            "4096",
            &(10 + i).to_string(),
        ]);
    }
    assert_eq!(c(&["stat", "/vm1/vmware.log"]).num("size"), 12288, "{what}");
    c(&["put", "/vm1/vm1.vswp", ""]);
    c(&["truncate", "/vm1/vm1.vswp", &(2 * GIB).to_string()]);
    assert_eq!(c(&["stat", "/vm1/vm1.vswp"]).num("size"), 2 * GIB, "{what}");
    c(&["unlink", "/vm1/vm1.vswp"]);
    // 10. Fileid and handle: ≤ 56 bytes, the same after a rename and after a restart.
    let h = c(&["handle", "/vm1/vm1-flat.vmdk"])
        .get("handle")
        .expect("handle");
    assert!(h.len() / 2 <= 56, "{what}: handle too long for ESXi: {h}");
    c(&["rename", "/vm1/vm1-flat.vmdk", "/vm1/disk-flat.vmdk"]);
    assert_eq!(
        c(&["stat", "/vm1/disk-flat.vmdk"]).num("fileid"),
        fileid,
        "{what}"
    );
    tg.gw_mut().restart_ganesha().expect("restart");
    let c = |args: &[&str]| tg.client(3, args).expect_ok(&format!("{what}: {args:?}"));
    assert_eq!(
        c(&["stat", "/vm1/disk-flat.vmdk"]).num("fileid"),
        fileid,
        "{what}"
    );
    assert_eq!(
        c(&["getattr-fh", &h]).num("fileid"),
        fileid,
        "{what}: the handle still works"
    );
    c(&[
        "randio",
        "/vm1/disk-flat.vmdk",
        &size,
        "4096",
        "8",
        "256",
        "readverify",
        "7",
    ]);
    // 11. The lock released.
    c(&["unlink", &lck]);
    assert!(!c(&["ls", "/vm1"]).stdout.contains(".lck-"), "{what}");
}

/// A fileid as ESXi names its lock file: the 8 bytes little-endian, in hex.
fn hex_le(v: u64) -> String {
    v.to_le_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `secs.nanos` `a` is strictly after `b` (empty `b`: anything is).
fn newer(a: &str, b: &str) -> bool {
    let parse = |s: &str| -> Option<(u64, u64)> {
        let (s, n) = s.split_once('.')?;
        Some((s.parse().ok()?, n.parse().ok()?))
    };
    b.is_empty() || parse(a).zip(parse(b)).is_some_and(|(a, b)| a > b)
}

#[test]
fn esxi_nfs3_sequence_on_strata() {
    let Some(mut tg) = TestGateway::strata() else {
        return;
    };
    esxi_nfs3_sequence(&mut tg, "strata");
}

#[test]
fn esxi_nfs3_sequence_on_the_vfs_fsal() {
    let Some(mut tg) = TestGateway::vfs() else {
        return;
    };
    esxi_nfs3_sequence(&mut tg, "vfs");
}

fn kvm_sequence(tg: &TestGateway, what: &str) {
    if !require_tools(&["qemu-img", "qemu-io"]) {
        return;
    }
    let qemu = |args: &[&str]| {
        let r = tg.run_timeout(args[0], &args[1..], LONG);
        r.expect_ok(&format!("{what}: {}", args.join(" ")))
    };
    let u = tg.qemu_url("/vm1.qcow2");
    qemu(&["qemu-img", "create", "-f", "qcow2", &u, "64M"]);
    let io = qemu(&[
        "qemu-io",
        "-f",
        "qcow2",
        "-c",
        "write -P 0xab 0 1M",
        "-c",
        "flush",
        "-c",
        "read -P 0xab 0 1M",
        "-c",
        "write -z 1M 1M",
        "-c",
        "discard 0 64k",
        "-c",
        "read -P 0 0 64k",
        "-c",
        "read -P 0 1M 1M",
        &u,
    ]);
    assert!(!io.stdout.contains("failed"), "{what}: {io}");
    let map = qemu(&["qemu-img", "map", "--output=json", "-f", "qcow2", &u]);
    assert!(
        map.stdout.contains("\"data\": true") && map.stdout.contains("\"zero\": true"),
        "{what}: data and zero runs: {map}"
    );
    let check = qemu(&["qemu-img", "check", "-f", "qcow2", &u]);
    assert!(
        check.stdout.contains("No errors were found"),
        "{what}: {check}"
    );
    let raw = tg.qemu_url("/raw1.img");
    qemu(&["qemu-img", "create", "-f", "raw", &raw, "16M"]);
    qemu(&[
        "qemu-io",
        "-f",
        "raw",
        "-c",
        "write -P 0x5a 4096 8192",
        "-c",
        "flush",
        &raw,
    ]);
    let back = qemu(&[
        "qemu-io",
        "-f",
        "raw",
        "-c",
        "read -P 0x5a 4096 8192",
        "-c",
        "read -P 0 0 4096",
        &raw,
    ]);
    assert!(!back.stdout.contains("failed"), "{what}: {back}");
    let info = qemu(&["qemu-img", "info", &format!("{u}?uid=0&gid=0")]);
    assert!(info.stdout.contains("file format: qcow2"), "{what}: {info}");
    // QEMU's nfs driver speaks NFSv3 only: a version=4 URL fails.
    let v4 = tg.run_timeout("qemu-img", ["info", &format!("{u}?version=4")], LONG);
    assert!(v4.code() != 0, "{what}: version=4 must fail: {v4}");
    let copy = tg.qemu_url("/copy.qcow2");
    qemu(&["qemu-img", "convert", "-O", "qcow2", &u, &copy]);
    qemu(&["qemu-img", "compare", &u, &copy]);
}

#[test]
fn kvm_sequence_on_strata() {
    let Some(tg) = TestGateway::strata() else {
        return;
    };
    kvm_sequence(&tg, "strata");
}

#[test]
fn kvm_sequence_on_the_vfs_fsal() {
    let Some(tg) = TestGateway::vfs() else {
        return;
    };
    kvm_sequence(&tg, "vfs");
}
