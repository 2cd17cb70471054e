//! Volumes (issue 5) end to end through `ganesha.nfsd` and our FSAL: a VM disk written with
//! `qemu-img`/`qemu-io` over NFS lands in the VolumeDriver's SCOs and TLogs (never in FileDriver
//! extents), reaches the backend (SCOs, TLogs, manifest) through the background pipeline, and
//! survives a graceful restart and a SIGKILL of Ganesha after a COMMIT (QEMU's `flush`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use strata_tests::*;

/// qemu-io runs against a 1 GiB image; allow for slow CI machines.
const QEMU_TIMEOUT: Duration = Duration::from_secs(300);

/// Pattern writes at unaligned offsets and sizes (not multiples of 4 KiB), across cluster and
/// SCO boundaries, plus one at the end of the 1 GiB image. They do not overlap.
const WRITES: &[(&str, u64, u64)] = &[
    ("0x11", 0, 1 << 20),
    ("0x22", (2 << 20) + 3 * 4096 + 512, 100_000),
    ("0x33", (5 << 20) - 1000, 9000),
    ("0x44", (1 << 30) - 70_000, 70_000),
];

/// The gateway with our FSAL; partial SCOs older than 1 s go to the backend.
fn gateway() -> Option<TestGateway> {
    if !require_tools(&["qemu-img", "qemu-io"]) {
        return None;
    }
    TestGateway::strata_with(|conf| {
        if let Some(block) = conf.strata.as_mut() {
            block.push(("SCO_Max_Age".into(), "1".into()));
        }
    })
}

fn qemu(tg: &TestGateway, args: &[&str]) -> Run {
    let r = tg.run_timeout(args[0], &args[1..], QEMU_TIMEOUT);
    let r = r.expect_ok(&args.join(" "));
    assert!(
        !r.stdout.contains("failed") && !r.stderr.contains("failed"),
        "{}: {r}",
        args.join(" ")
    );
    r
}

/// `qemu-io` commands: every write (with `flush` after them when `write`), or every read
/// verifying its pattern, plus a never-written range that must read as zeros.
fn io_commands(write: bool) -> Vec<String> {
    let mut c = Vec::new();
    for (p, off, len) in WRITES {
        let op = if write { "write" } else { "read" };
        c.push("-c".to_string());
        c.push(format!("{op} -P {p} {off} {len}"));
    }
    if write {
        c.push("-c".into());
        c.push("flush".into());
    }
    c.push("-c".into());
    c.push(format!("read -P 0 {} 65536", 512 << 20));
    c
}

fn qemu_io(tg: &TestGateway, url: &str, write: bool) {
    let cmds = io_commands(write);
    let mut args: Vec<&str> = vec!["qemu-io", "-f", "raw"];
    args.extend(cmds.iter().map(String::as_str));
    args.push(url);
    let r = qemu(tg, &args);
    let reads = r.stdout.matches("read ").count();
    assert!(reads >= 1, "{r}");
}

/// Files (recursively) under `dir`, relative to it; empty if it does not exist.
fn files_under(dir: &Path) -> Vec<String> {
    strata_tests::commitlog::files_with_sizes(dir)
        .into_iter()
        .map(|(p, _)| p)
        .collect()
}

/// The volume's local directory and backend namespace, from its NFS fileid (the inode number).
fn volume_dirs(tg: &TestGateway, path: &str) -> (PathBuf, PathBuf) {
    let ino = tg
        .client(3, &["stat", path])
        .expect_ok("stat")
        .num("fileid");
    let name = format!("{ino:016x}");
    (
        tg.data_dir.join("volumes").join(&name),
        tg.data_dir.join("backend").join("volumes").join(&name),
    )
}

#[test]
fn qemu_disk_lands_in_scos_and_tlogs_reaches_the_backend_and_survives_restart() {
    let Some(mut tg) = gateway() else {
        return;
    };
    let url = tg.qemu_url("/disk-flat.vmdk");
    qemu(&tg, &["qemu-img", "create", "-f", "raw", &url, "1G"]);
    qemu_io(&tg, &url, true);
    qemu_io(&tg, &url, false);

    let st = tg.client(3, &["stat", "/disk-flat.vmdk"]).expect_ok("stat");
    assert_eq!(st.num("size"), 1 << 30, "{st}");
    let (local, remote) = volume_dirs(&tg, "/disk-flat.vmdk");
    let lf = files_under(&local);
    assert!(
        lf.iter().any(|f| f.starts_with("sco/")),
        "no local SCO: {lf:?}"
    );
    assert!(
        lf.iter().any(|f| f.starts_with("tlog/")),
        "no local TLog: {lf:?}"
    );
    let extents = files_under(&tg.data_dir.join("backend").join("files"));
    assert!(
        extents.is_empty(),
        "volume data went to FileDriver extents: {extents:?}"
    );

    // The background pipeline (SCO_Max_Age = 1 s) uploads SCOs, TLogs and the manifest.
    let uploaded = poll_until(Duration::from_secs(60), || {
        let rf = files_under(&remote);
        rf.iter().any(|f| f == "manifest.xml")
            && rf.iter().any(|f| f.starts_with("sco/"))
            && rf.iter().any(|f| f.starts_with("tlog/"))
    });
    assert!(
        uploaded,
        "backend holds {:?} after 60 s",
        files_under(&remote)
    );

    // Graceful restart: same data, over a fresh server.
    tg.gw_mut().restart_ganesha().expect("restart");
    qemu_io(&tg, &url, false);
}

#[test]
fn sigkill_after_flush_keeps_the_volume_data() {
    let Some(mut tg) = gateway() else {
        return;
    };
    let url = tg.qemu_url("/vm.raw");
    qemu(&tg, &["qemu-img", "create", "-f", "raw", &url, "1G"]);
    qemu_io(&tg, &url, true);
    tg.gw_mut().kill_ganesha().expect("SIGKILL ganesha");
    tg.gw_mut()
        .restart_ganesha()
        .expect("restart after SIGKILL");
    qemu_io(&tg, &url, false);
    let st = tg.client(3, &["stat", "/vm.raw"]).expect_ok("stat");
    assert_eq!(st.num("size"), 1 << 30, "{st}");
    // Still a working volume: write and read again after the crash restart.
    qemu(
        &tg,
        &[
            "qemu-io",
            "-f",
            "raw",
            "-c",
            "write -P 0x77 100000 5000",
            "-c",
            "flush",
            "-c",
            "read -P 0x77 100000 5000",
            "-c",
            "read -P 0x11 0 90000",
            &url,
        ],
    );
}

/// `strata sync --wait` (the management API's flush_to_backend) puts everything on the backend:
/// with the local volume cache thrown away, the gateway rebuilds the disk from the backend alone.
#[test]
fn sync_wait_then_lost_local_cache_rebuilds_from_the_backend() {
    let Some(strata) = strata_cli() else {
        return;
    };
    let Some(mut tg) = gateway() else {
        return;
    };
    let url = tg.qemu_url("/sync-flat.vmdk");
    qemu(&tg, &["qemu-img", "create", "-f", "raw", &url, "1G"]);
    qemu_io(&tg, &url, true);
    let (local, remote) = volume_dirs(&tg, "/sync-flat.vmdk");
    let mut cmd = std::process::Command::new(&strata);
    cmd.args(["sync", "--wait", "--timeout", "120", "--data-dir"])
        .arg(&tg.data_dir);
    run_bounded(cmd, CMD_TIMEOUT).expect_ok("strata sync --wait");
    let rf = files_under(&remote);
    assert!(rf.iter().any(|f| f == "manifest.xml"), "{rf:?}");

    // Everything is on the backend now: the machine may lose its local disk.
    tg.gw_mut().kill_ganesha().expect("SIGKILL ganesha");
    std::fs::remove_dir_all(&local).expect("drop the local volume cache");
    tg.gw_mut()
        .restart_ganesha()
        .expect("restart without the local cache");
    qemu_io(&tg, &url, false);
    assert!(
        local.join("tlog").exists(),
        "local state rebuilt from the backend"
    );
}

/// Bytes of the files directly in `dir` (0 if it does not exist).
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |rd| {
        rd.flatten()
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    })
}

/// Metadata checkpoints keep a backend restart short: a volume of 128 TLogs (64 KiB SCOs, one
/// per TLog) with `Checkpoint_TLogs = 8` is rebuilt from its backend namespace by loading the
/// newest checkpoint and replaying fewer than 8 TLogs, without downloading its SCOs (reads
/// fetch the clusters they need).
#[test]
fn a_backend_restart_loads_the_checkpoint_and_replays_only_the_tlogs_after_it() {
    let Some(strata) = strata_cli() else {
        return;
    };
    if !require_tools(&["qemu-img", "qemu-io"]) {
        return;
    }
    let Some(mut tg) = TestGateway::strata_with(|conf| {
        if let Some(block) = conf.strata.as_mut() {
            for (k, v) in [
                ("SCO_Max_Age", "1"),
                ("SCO_Size", "64K"),
                ("TLog_SCOs", "1"),
                ("Checkpoint_TLogs", "8"),
            ] {
                block.push((k.into(), v.into()));
            }
        }
    }) else {
        return;
    };
    let d = tg.data_dir.display().to_string();
    let info = || -> serde_json::Value {
        let mut cmd = std::process::Command::new(&strata);
        cmd.args([
            "volume",
            "info",
            "/ckpt-flat.vmdk",
            "--json",
            "--data-dir",
            &d,
        ]);
        let r = run_bounded(cmd, CMD_TIMEOUT).expect_ok("strata volume info");
        serde_json::from_str(r.stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {r}"))
    };
    let url = tg.qemu_url("/ckpt-flat.vmdk");
    let r = tg.run_timeout(
        "qemu-img",
        ["create", "-f", "raw", &url, "64M"],
        QEMU_TIMEOUT,
    );
    assert!(r.ok(), "{r}\n{}", tg.log());
    qemu(
        &tg,
        &[
            "qemu-io",
            "-f",
            "raw",
            "-c",
            "write -P 0x5a 0 8M",
            "-c",
            "write -P 0xa5 4M 4k",
            "-c",
            "flush",
            &url,
        ],
    );
    let (local, remote) = volume_dirs(&tg, "/ckpt-flat.vmdk");
    let mut cmd = std::process::Command::new(&strata);
    cmd.args(["sync", "--wait", "--timeout", "120", "--data-dir", &d]);
    run_bounded(cmd, CMD_TIMEOUT).expect_ok("strata sync --wait");
    let rf = files_under(&remote);
    let tlogs = rf.iter().filter(|f| f.starts_with("tlog/")).count() as u64;
    assert!(tlogs >= 128, "{tlogs} TLogs on the backend: {rf:?}");
    assert!(
        rf.iter().any(|f| f.starts_with("mds/")),
        "no checkpoint: {rf:?}"
    );

    tg.gw_mut().kill_ganesha().expect("SIGKILL ganesha");
    std::fs::remove_dir_all(&local).expect("drop the volume's local state");
    tg.gw_mut().restart_ganesha().expect("restart");

    // `volume info` opens the volume: a backend restart.
    let v = info();
    let replayed = v["tlogs_replayed"].as_u64().expect("tlogs_replayed");
    let ckpt = v["checkpoint_tlog"].as_u64().expect("checkpoint_tlog");
    assert!(
        ckpt > 0 && replayed < 8,
        "{tlogs} TLogs on the backend: {v}"
    );
    assert_eq!(v["size"], 64 << 20, "{v}");
    // Only metadata came down: the SCOs stay on the backend until read.
    let sco_bytes = dir_bytes(&local.join("sco"));
    assert!(sco_bytes < 1 << 20, "{sco_bytes} bytes of SCOs downloaded");

    let r = qemu(
        &tg,
        &[
            "qemu-io",
            "-f",
            "raw",
            "-c",
            "read -P 0x5a 0 4M",
            "-c",
            "read -P 0xa5 4M 4k",
            "-c",
            "read -P 0x5a 4100k 4092k",
            "-c",
            "read -P 0 8M 1M",
            &url,
        ],
    );
    assert_eq!(r.stdout.matches("read ").count(), 4, "{r}");
    let v = info();
    assert!(
        v["cache_misses"].as_u64().unwrap_or(0) > 0,
        "read from the backend: {v}"
    );
}
