//! Issue 11 end to end, through `ganesha.nfsd` and QEMU's userspace NFS driver (libnfs, which
//! does not retry NFS3ERR_JUKEBOX): a writer faster than the backend is paced, never refused.
//! The backend is slowed by the engine's test knob `STRATA_TEST_UPLOAD_DELAY_MS` (every PUT
//! waits), so that `qemu-img bench` writing 4x `Write_Buffer_Size` outruns the upload.

use std::path::PathBuf;
use std::time::Duration;

use strata_tests::*;

const MIB: u64 = 1 << 20;
const QEMU_TIMEOUT: Duration = Duration::from_secs(300);
/// The write buffer (the hard mark) of the test gateway.
const WRITE_BUFFER: u64 = 16 * MIB;

/// The `strata` CLI built next to the plugin; `None` (skip) when missing, a failure under CI.
fn strata_cli() -> Option<PathBuf> {
    let strata = plugin_dir().join("strata");
    if strata.exists() {
        return Some(strata);
    }
    assert!(
        !in_ci(),
        "{} missing (cargo build --workspace)",
        strata.display()
    );
    eprintln!("skipped: {} missing", strata.display());
    None
}

#[test]
fn sustained_writes_through_qemu_are_paced_not_refused() {
    // Inherited by ganesha.nfsd: each backend PUT (a 4 MiB SCO) takes 400 ms more
    // (4 in flight: about 40 MB/s, far below what QEMU writes over loopback).
    std::env::set_var("STRATA_TEST_UPLOAD_DELAY_MS", "400");
    let tg = TestGateway::strata_with(|conf| {
        if let Some(block) = conf.strata.as_mut() {
            block.push(("SCO_Max_Age".into(), "1".into()));
            block.push(("Write_Buffer_Size".into(), "16M".into()));
        }
    });
    std::env::remove_var("STRATA_TEST_UPLOAD_DELAY_MS");
    let Some(tg) = tg else {
        return;
    };
    if !require_tools(&["qemu-img", "qemu-io"]) {
        return;
    }
    let Some(strata) = strata_cli() else {
        return;
    };
    let d = tg.data_dir.display().to_string();
    let url = tg.qemu_url("/import.raw");
    tg.run_timeout(
        "qemu-img",
        ["create", "-f", "raw", &url, "128M"],
        QEMU_TIMEOUT,
    )
    .expect_ok("qemu-img create");
    // 64 MiB (4x the write buffer), 1 MiB requests, 8 in flight, no cache: an import.
    let count = (4 * WRITE_BUFFER / MIB).to_string();
    let r = tg.run_timeout(
        "qemu-img",
        [
            "bench",
            "-w",
            "-t",
            "none",
            "-s",
            "1M",
            "-d",
            "8",
            "-c",
            &count,
            "--pattern=171",
            "-f",
            "raw",
            &url,
        ],
        QEMU_TIMEOUT,
    );
    let r = r.expect_ok("qemu-img bench -w (4x the write buffer)");
    assert!(
        !r.stderr.contains("Failed") && !r.stdout.contains("Failed"),
        "a write failed: {r}"
    );
    let mut cmd = std::process::Command::new(&strata);
    cmd.args(["volume", "info", "/import.raw", "--json", "--data-dir", &d]);
    let info = run_bounded(cmd, CMD_TIMEOUT).expect_ok("strata volume info");
    let v: serde_json::Value = serde_json::from_str(info.stdout.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {info}"));
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} missing: {v}"));
    eprintln!("{v}");
    assert!(n("writes_paced") > 0, "no write was paced: {v}");
    assert_eq!(n("writes_refused"), 0, "a write was refused: {v}");
    assert!(
        n("peak_backlog") > WRITE_BUFFER / 2,
        "the backlog never crossed the soft mark: {v}"
    );
    // Every write reserves its length below the hard mark before it is written.
    assert!(
        n("peak_backlog") <= WRITE_BUFFER,
        "the backlog went past the hard mark: {v}"
    );
    let mut cmd = std::process::Command::new(&strata);
    cmd.args(["sync", "--wait", "--timeout", "120", "--data-dir", &d]);
    run_bounded(cmd, CMD_TIMEOUT).expect_ok("strata sync --wait");
    let r = tg.run_timeout(
        "qemu-io",
        ["-f", "raw", "-c", "read -P 171 0 64M", &url],
        QEMU_TIMEOUT,
    );
    let r = r.expect_ok("qemu-io read back");
    assert!(
        !r.stdout.contains("verification failed") && !r.stderr.contains("failed"),
        "the import does not read back: {r}"
    );
}
