//! The ESXi-like NFSv4.1 sequence of `../shared/docs/esxi-kvm-clients.md` §2 and §4.2 through
//! Ganesha on Strata, with two clients: nfs-rs (PyPI `nfs-rs` 0.8.7, a userspace NFSv4.1
//! client that `scripts/setup` installs pinned by hash; the steps are `tests/py/nfs41_esxi.py`)
//! and the project's own `strata-nfs42-client` (minor version 2, the same session and state
//! operations).
//!
//! What nfs-rs does (checked on the wire with strace): EXCHANGE_ID → CREATE_SESSION →
//! RECLAIM_COMPLETE at connect (its `version` is 4.1, its lease healthy); OPEN of `x` kept
//! while RENAME `x~` → `x` replaces it, a READ of the old data through that open, and its
//! CLOSE with the old filehandle, which must be NFS4_OK and not STALE; a second nfs-rs client
//! (its own EXCHANGE_ID owner) then sees only the new file; a 1 GiB thin disk through its
//! `truncate`; and, as the refused client, OPEN ACCESS_READ, OPEN ACCESS_BOTH and a truncate of
//! a file another client holds with DENY_BOTH: each NFS4ERR_SHARE_DENIED.
//!
//! What nfs-rs cannot do, so the project's client does it: nfs-rs always opens with
//! `OPEN4_SHARE_DENY_NONE` (and `WANT_NO_DELEG`), its `truncate` and `File.truncate` send
//! SETATTR of the size with the anonymous stateid, never the open's, and its Python API has
//! no way to reclaim an open after a server restart (no CLAIM_PREVIOUS; state lost there is
//! `NfsLostOpenStateError`, "reopen"). So `strata-nfs42-client` does OPEN(CLAIM_NULL, create,
//! ACCESS_BOTH, DENY_BOTH) → SETATTR(size = 1 GiB, that open's stateid), which must be NFS4_OK
//! (nfs-ganesha #1144, which the FSAL works around), the second client's OPEN ACCESS_READ →
//! NFS4ERR_SHARE_DENIED (`open2`: a second client identity in the same process, so the first
//! open is certainly still held), the anonymous stateid's SETATTR of the size refused, and the
//! reclaim: the DENY_BOTH open abandoned (no CLOSE, no DESTROY_CLIENTID: a host cut off),
//! Ganesha restarted with a grace period, another client's OPEN → NFS4ERR_GRACE, a reclaim by
//! an owner Ganesha did not know → NFS4ERR_NO_GRACE, the same owner's OPEN(CLAIM_PREVIOUS,
//! DENY_BOTH) → NFS4_OK, then RECLAIM_COMPLETE, and once the grace period is over (polled,
//! bounded) the reclaimed reservation still refuses a second client.
//!
//! The launcher normally starts Ganesha with `Graceless = true`; the reclaim test sets
//! `Grace_Period` (which keeps `Graceless = false`) and a short `Lease_Lifetime`, so that
//! Ganesha's reaper (every half lease) lifts the grace period soon after the only known client
//! sent RECLAIM_COMPLETE (NLM is off).

use strata_tests::nfs_rs;
use strata_tests::*;

const GIB: u64 = 1 << 30;

/// Runs the project's client on `path` with the whitespace-separated `cmds`.
fn nfs4(tg: &TestGateway, path: &str, cmds: &str) -> Run {
    let mut args: Vec<&str> = vec![path];
    args.extend(cmds.split_whitespace());
    tg.nfs42(&args)
}

/// The `op=` lines' statuses of a run of the project's client, in order.
fn statuses(r: &Run) -> Vec<String> {
    r.op_lines().iter().map(|l| l["status"].clone()).collect()
}

/// `key=` of line `n` of a run.
fn field(r: &Run, n: usize, key: &str) -> String {
    r.op_lines()
        .get(n)
        .and_then(|l| l.get(key).cloned())
        .unwrap_or_else(|| panic!("no {key}= in line {n}: {r}"))
}

/// The nfs-rs URL of the gateway's export, NFSv4.1.
fn url(tg: &TestGateway) -> String {
    format!("nfs://127.0.0.1{}?version=4.1", tg.pseudo)
}

#[test]
fn nfs_rs_session_rename_over_an_open_file_and_close_with_the_old_handle() {
    let Some(python) = nfs_rs::python() else {
        return;
    };
    let Some(tg) = TestGateway::strata() else {
        return;
    };
    let script = nfs_rs::script("nfs41_esxi.py");
    let r = nfs_rs::run(&tg, &python, &script, &["session-rename", &url(&tg)]);
    assert!(r.ok(), "nfs-rs steps failed: {r}");
    let steps = nfs_rs::steps(&r);
    let names: Vec<&str> = steps.iter().map(|s| s["step"].as_str()).collect();
    assert_eq!(
        names,
        ["session", "rename_over_open", "second_client", "thin"],
        "{r}"
    );
    assert_eq!(steps[0]["version"], "4.1", "{r}");
    assert_eq!(steps[1]["close"], "OK", "{r}");
    assert_eq!(steps[3]["size"], GIB.to_string(), "{r}");
    // The project's client sees the same: the new config under the name, the thin disk.
    let r = nfs4(&tg, "/vm1.vmx", "open getattr").expect_ok("getattr vm1.vmx");
    assert_eq!(field(&r, 1, "fileid"), steps[2]["fileid"], "{r}");
    assert_eq!(field(&r, 1, "nlink"), "1", "{r}");
    let r = nfs4(&tg, "/vm1-flat.vmdk", "open getattr").expect_ok("getattr flat");
    assert_eq!(field(&r, 1, "size"), GIB.to_string(), "{r}");
}

#[test]
fn deny_both_open_setattr_size_and_a_second_client() {
    let Some(tg) = TestGateway::strata() else {
        return;
    };
    // ESXi creating a thin disk: OPEN create BOTH/DENY_BOTH, SETATTR size 1 GiB with that
    // open's stateid (#1144: NFS4_OK, not SHARE_DENIED), GETATTR; a second client can neither
    // read nor write it; the anonymous stateid may not change its size either. The open's own
    // I/O works; after CLOSE the second client gets in.
    let r = nfs4(
        &tg,
        "/vm2-flat.vmdk",
        "create deny=both setsize 1073741824 getattr \
         expect=NFS4ERR_SHARE_DENIED open2 read none \
         expect=NFS4ERR_SHARE_DENIED open2 write none \
         expect=NFS4ERR_SHARE_DENIED open2 both none \
         expect=NFS4ERR_SHARE_DENIED setsize 4096 anon \
         write 1048576 65536 7 read 1048576 65536 7 getattr close open2 read none",
    )
    .expect_ok("the DENY_BOTH sequence");
    assert_eq!(r.op_lines().len(), 12, "{r}");
    assert_eq!(field(&r, 2, "size"), GIB.to_string(), "{r}");
    assert_eq!(
        field(&r, 9, "size"),
        GIB.to_string(),
        "a refused size change: {r}"
    );
    // Thin: the 1 GiB costs no space beyond what was written.
    let used: u64 = field(&r, 9, "space_used").parse().unwrap();
    assert!(used < 4 << 20, "space_used {used}: {r}");

    // The `.vmx~` → `.vmx` replacement while `.vmx` is open DENY_BOTH: READ and GETATTR
    // through the old handle, CLOSE with it NFS4_OK (not STALE); the name is the new file.
    nfs4(&tg, "/vm2.vmx~", "create write 0 4000 2").expect_ok("write vm2.vmx~");
    let r = nfs4(
        &tg,
        "/vm2.vmx",
        "create deny=both write 0 3000 1 rename vm2.vmx~ vm2.vmx read 0 3000 1 getattr close",
    )
    .expect_ok("rename over the open file, CLOSE with the old handle");
    assert_eq!(statuses(&r).last().map(String::as_str), Some("OK"), "{r}");
    assert_eq!(field(&r, 4, "size"), "3000", "{r}");
    assert_eq!(
        field(&r, 4, "nlink"),
        "0",
        "the replaced file is unlinked: {r}"
    );
    nfs4(&tg, "/vm2.vmx", "open access=read read 0 4000 2").expect_ok("the new vm2.vmx");
    let r = nfs4(&tg, "/vm2.vmx~", "open");
    assert_eq!(statuses(&r), ["NFS4ERR_NOENT"], "{r}");

    // nfs-rs as the refused client: a DENY_BOTH open abandoned by its client stays for the
    // lease (60 s by default), and every nfs-rs open and truncate is SHARE_DENIED.
    let Some(python) = nfs_rs::python() else {
        return;
    };
    nfs4(&tg, "/vm2-flat.vmdk", "open deny=both abandon").expect_ok("abandon");
    let script = nfs_rs::script("nfs41_esxi.py");
    let r = nfs_rs::run(
        &tg,
        &python,
        &script,
        &["denied", &url(&tg), "vm2-flat.vmdk"],
    );
    assert!(r.ok(), "nfs-rs was not refused: {r}");
    let steps = nfs_rs::steps(&r);
    assert_eq!(steps.len(), 4, "{r}");
    for s in &steps[..3] {
        assert_eq!(s["status"], "NFS4ERR_SHARE_DENIED", "{r}");
    }
    assert_eq!(steps[3]["size"], GIB.to_string(), "{r}");
}

#[test]
fn deny_both_open_is_reclaimed_after_a_restart_in_the_grace_period() {
    let Some(mut tg) = TestGateway::strata_with(|conf| {
        conf.nfsv4.lease_lifetime = Some(8);
        conf.nfsv4.grace_period = Some(30);
    }) else {
        return;
    };
    let conf = std::fs::read_to_string(tg.gw().conf_path()).expect("read ganesha.conf");
    for line in [
        "Graceless = false;",
        "Lease_Lifetime = 8;",
        "Grace_Period = 30;",
    ] {
        assert!(conf.contains(line), "{line} missing:\n{conf}");
    }
    // The host holds its disk open DENY_BOTH, sized through the open, and is cut off.
    let r = nfs4(
        &tg,
        "/vm3-flat.vmdk",
        "create owner=esxi-host-a deny=both setsize 1073741824 write 0 65536 3 abandon",
    )
    .expect_ok("open and abandon");
    assert_eq!(statuses(&r), ["OK"; 4], "{r}");
    tg.gw_mut().restart_ganesha().expect("restart Ganesha");

    // In the grace period: a new open by another client waits (NFS4ERR_GRACE), a reclaim by
    // a client the server did not know is refused.
    let r = nfs4(&tg, "/vm3-flat.vmdk", "open access=read");
    assert_eq!(statuses(&r), ["NFS4ERR_GRACE"], "{r}");
    let r = nfs4(&tg, "/vm3-flat.vmdk", "reclaim owner=esxi-host-b deny=both");
    assert_eq!(statuses(&r), ["NFS4ERR_NO_GRACE"], "{r}");
    // The host comes back: its reclaim of the DENY_BOTH open is granted, the data and size
    // are there; a size change waits for the grace period's end. Then (polled: Ganesha lifts
    // the grace period once every known client sent RECLAIM_COMPLETE) the reservation holds
    // against a second client, and the reclaimed stateid sets the size.
    let r = nfs4(
        &tg,
        "/vm3-flat.vmdk",
        "reclaim owner=esxi-host-a deny=both getattr read 0 65536 3 \
         expect=NFS4ERR_GRACE setsize 4096 \
         expect=NFS4ERR_SHARE_DENIED open2 read none aftergrace \
         setsize 2147483648 getattr expect=NFS4ERR_SHARE_DENIED open2 both none close \
         open2 read none",
    )
    .expect_ok("the reclaim");
    assert_eq!(field(&r, 1, "size"), GIB.to_string(), "{r}");
    assert_eq!(field(&r, 6, "size"), (2 * GIB).to_string(), "{r}");
    assert_eq!(r.op_lines().len(), 10, "{r}");
    assert!(
        tg.log().contains("NFS Server Now NOT IN GRACE"),
        "the grace period ended"
    );
}
