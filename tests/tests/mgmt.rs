//! Issue 5's management API end to end: Ganesha with our FSAL serves the engine's management
//! socket at `<data dir>/mgmt.sock`; the `strata` CLI, run on the host side of the gateway's
//! private namespace, talks to it after QEMU wrote a volume over NFS.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use strata_tests::*;

const MIB: u64 = 1 << 20;
/// Bound for one `strata` command (a sync may upload).
const STRATA_TIMEOUT: Duration = Duration::from_secs(120);

/// The `strata` binary built next to the tests (`cargo build --workspace`).
fn strata_bin() -> PathBuf {
    let bin = profile_dir().join("strata");
    assert!(
        bin.is_file(),
        "{} not found: build the workspace first (cargo build --workspace)",
        bin.display()
    );
    bin
}

/// Runs `strata args` on the host side (outside the gateway's namespaces).
fn strata(args: &[&str]) -> Run {
    let mut cmd = Command::new(strata_bin());
    cmd.args(args);
    run_bounded(cmd, STRATA_TIMEOUT)
}

fn json(r: &Run) -> serde_json::Value {
    serde_json::from_str(r.stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {r}"))
}

/// Total size of the files below `dir`.
fn tree_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_bytes(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

#[test]
fn strata_sync_volume_info_and_status_through_the_gateway() {
    // Partial SCOs stay local for an hour: only the sync can put them on the backend.
    let Some(mut tg) = TestGateway::strata_with(|c| {
        if let Some(pairs) = c.strata.as_mut() {
            pairs.push(("SCO_Max_Age".into(), "3600".into()));
        }
    }) else {
        return;
    };
    if !require_tools(&["qemu-img", "qemu-io"]) {
        return;
    }
    let d = tg.data_dir.display().to_string();
    let sock = tg.data_dir.join("mgmt.sock");

    // The FSAL started the server with the engine: a socket, mode 0600, reachable from here.
    let m = std::fs::symlink_metadata(&sock)
        .unwrap_or_else(|e| panic!("no management socket at {}: {e}", sock.display()));
    assert!(
        m.file_type().is_socket(),
        "{} is not a socket",
        sock.display()
    );
    assert_eq!(m.permissions().mode() & 0o7777, 0o600);

    // A volume written by QEMU over NFSv3 (the name makes it a volume).
    let url = tg.qemu_url("/x-flat.vmdk");
    let qemu = |args: &[&str]| {
        tg.run_timeout(args[0], &args[1..], CMD_TIMEOUT)
            .expect_ok(&args.join(" "))
    };
    let writing = std::time::Instant::now();
    qemu(&["qemu-img", "create", "-f", "raw", &url, "4M"]);
    qemu(&[
        "qemu-io",
        "-f",
        "raw",
        "-c",
        "write -P 0xab 0 1M",
        "-c",
        "write -P 0xcd 2M 512k",
        "-c",
        "flush",
        &url,
    ]);

    // Before the sync, the 1.5 MiB written sit in the volume's open SCO, not on the backend.
    let before = json(
        &strata(&["volume", "info", "/x-flat.vmdk", "--data-dir", &d, "--json"])
            .expect_ok("volume info before sync"),
    );
    let pending = before["pending_backend_bytes"].as_u64().expect("pending");
    assert!(pending >= MIB + MIB / 2, "{before}");
    // The recovery point: the oldest change not on the backend was logged by the create or
    // those writes, not earlier.
    let age = before["pending_backend_age_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("no age for changes not on the backend: {before}"));
    let since_create = writing.elapsed().as_millis() as u64;
    assert!(
        age <= since_create,
        "age {age} ms, the volume was created {since_create} ms ago: {before}"
    );
    let r = strata(&["volume", "info", "/x-flat.vmdk", "--data-dir", &d])
        .expect_ok("volume info before sync");
    assert!(r.stdout.contains(", the oldest change "), "{r}");
    // The gateway's view: every volume's pending bytes, the oldest change's age.
    let s = json(&strata(&["status", "--data-dir", &d, "--json"]).expect_ok("status --json"));
    let rp = &s["engine"]["not_on_backend"];
    assert!(rp["volume_bytes"].as_u64() >= Some(pending), "{s}");
    assert!(rp["volume_age_ms"].as_u64() >= Some(age), "{s}");

    let r = strata(&["sync", "--wait", "--data-dir", &d]).expect_ok("strata sync --wait");
    assert!(
        r.stdout
            .starts_with("synced: everything committed is on the backend"),
        "{r}"
    );

    // Independently of the engine's own counters: the data is in the backend directory.
    let on_backend = tree_bytes(&tg.data_dir.join("backend").join("volumes"));
    assert!(
        on_backend >= MIB + MIB / 2,
        "only {on_backend} bytes under backend/volumes after sync --wait"
    );

    let r = strata(&["volume", "info", "/x-flat.vmdk", "--data-dir", &d, "--json"])
        .expect_ok("strata volume info --json");
    let v = json(&r);
    assert_eq!(v["path"], "/x-flat.vmdk", "{r}");
    assert_eq!(v["size"], 4 * MIB, "{r}");
    assert_eq!(v["pending_backend_bytes"], 0, "{r}");
    assert!(v["pending_backend_age_ms"].is_null(), "{r}");
    let used = v["space_used"].as_u64().expect("space_used");
    assert!(
        (MIB + MIB / 2..=4 * MIB).contains(&used),
        "space_used {used} should hold the 1.5 MiB written: {r}"
    );
    // The same volume as NFS sees it.
    let st = tg.client(3, &["stat", "/x-flat.vmdk"]).expect_ok("stat");
    assert_eq!(v["ino"].as_u64(), Some(st.num("fileid")), "{r}\n{st}");

    let r = strata(&["volume", "info", "/x-flat.vmdk", "--data-dir", &d])
        .expect_ok("strata volume info");
    assert!(
        r.stdout.contains("size              4194304 (4.0 MiB)\n"),
        "{r}"
    );
    assert!(r.stdout.contains("not on backend    0 (0 B)\n"), "{r}");

    // Not a volume: exit 1, clear message.
    let r = strata(&["volume", "info", "/", "--data-dir", &d]);
    assert_eq!(r.code(), 1, "{r}");
    assert!(
        r.stderr.contains("/ is not a volume: it is a directory"),
        "{r}"
    );

    // The engine answering is Ganesha itself.
    let r = strata(&["status", "--data-dir", &d]).expect_ok("strata status");
    let pid = tg.gw().ganesha_pid();
    assert!(
        r.stdout.contains(&format!(
            "engine: answering on {} (strata {}, protocol 1, pid {pid},",
            sock.display(),
            env!("CARGO_PKG_VERSION")
        )),
        "{r}"
    );
    assert!(
        r.stdout
            .contains("not on backend  volumes 0 B (nothing waiting), files "),
        "{r}"
    );
    let s = json(&strata(&["status", "--data-dir", &d, "--json"]).expect_ok("status --json"));
    assert_eq!(s["engine"]["pid"], pid);
    assert_eq!(s["engine"]["data_dir"], d.as_str());
    assert_eq!(s["engine"]["not_on_backend"]["volume_bytes"], 0, "{s}");
    assert!(
        s["engine"]["not_on_backend"]["volume_age_ms"].is_null(),
        "{s}"
    );

    // SIGKILL leaves the socket file behind: the commands see no gateway; a restarted Ganesha
    // replaces the stale socket and serves again.
    tg.gw_mut().kill_ganesha().expect("SIGKILL ganesha");
    assert!(sock.exists(), "a killed gateway cannot remove its socket");
    let r = strata(&["sync", "--wait", "--data-dir", &d]);
    assert_eq!(r.code(), 3, "{r}");
    tg.gw_mut().restart_ganesha().expect("restart ganesha");
    let s = json(&strata(&["status", "--data-dir", &d, "--json"]).expect_ok("status --json"));
    assert_eq!(s["engine"]["pid"], tg.gw().ganesha_pid());
    assert_ne!(s["engine"]["pid"], pid);
    let v = json(
        &strata(&["volume", "info", "/x-flat.vmdk", "--data-dir", &d, "--json"])
            .expect_ok("volume info after restart"),
    );
    assert_eq!(v["size"], 4 * MIB);

    // A clean stop unloads the FSAL, which removes the socket; the commands say so (exit 3).
    tg.stop();
    assert!(!sock.exists(), "socket left behind by a clean stop");
    let r = strata(&["sync", "--wait", "--data-dir", &d]);
    assert_eq!(r.code(), 3, "{r}");
    assert!(r.stderr.contains("no gateway answers on"), "{r}");
    let r = strata(&["status", "--data-dir", &d]);
    assert_eq!(r.code(), 3, "{r}");
    assert!(r.stdout.contains("engine: not answering"), "{r}");
}

/// `strata status --json`'s map cache counters: (hits, misses).
fn map_cache_counters(d: &str) -> (u64, u64) {
    let s = json(&strata(&["status", "--data-dir", d, "--json"]).expect_ok("status --json"));
    let m = &s["engine"]["map_cache"];
    assert_eq!(m["capacity"], 64 * MIB, "the default Map_Cache_Size: {s}");
    (
        m["hits"].as_u64().expect("hits"),
        m["misses"].as_u64().expect("misses"),
    )
}

#[test]
fn volume_reads_go_through_the_map_cache_and_see_each_synced_overwrite() {
    let Some(tg) = TestGateway::strata() else {
        return;
    };
    if !require_tools(&["qemu-img", "qemu-io"]) {
        return;
    }
    let d = tg.data_dir.display().to_string();
    let url = tg.qemu_url("/m-flat.vmdk");
    let qemu = |args: &[&str]| {
        let r = tg
            .run_timeout(args[0], &args[1..], CMD_TIMEOUT)
            .expect_ok(&args.join(" "));
        assert!(
            !r.stdout.contains("failed") && !r.stderr.contains("failed"),
            "{}: {r}",
            args.join(" ")
        );
    };
    let io = |cmds: &[&str]| {
        let mut args = vec!["qemu-io", "-f", "raw"];
        for c in cmds {
            args.extend(["-c", c]);
        }
        args.push(&url);
        qemu(&args);
    };
    let sync = || {
        strata(&["sync", "--wait", "--data-dir", &d]).expect_ok("strata sync --wait");
    };
    qemu(&["qemu-img", "create", "-f", "raw", &url, "4M"]);
    io(&["write -P 0xab 0 1M", "flush"]);
    // On the backend: the MetaDataStore holds the map, READs look it up.
    sync();
    let (h0, m0) = map_cache_counters(&d);
    io(&["read -P 0xab 0 1M"]);
    io(&["read -P 0xab 0 1M"]);
    let (h1, m1) = map_cache_counters(&d);
    assert!(m1 > m0, "the first reads filled pages: {m0} -> {m1} misses");
    assert!(h1 > h0, "the second reads hit them: {h0} -> {h1} hits");
    // Overwrites and zeros (unmapped) applied to the MetaDataStore under cached pages.
    io(&["write -P 0xcd 256k 64k", "write -z 512k 64k", "flush"]);
    sync();
    io(&[
        "read -P 0xab 0 256k",
        "read -P 0xcd 256k 64k",
        "read -P 0xab 320k 192k",
        "read -P 0 512k 64k",
        "read -P 0xab 576k 448k",
    ]);
    let (h2, _) = map_cache_counters(&d);
    assert!(h2 > h1, "{h1} -> {h2} hits");
}
