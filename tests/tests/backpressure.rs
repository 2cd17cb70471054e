//! Issue 11 end to end, through `ganesha.nfsd` and QEMU's userspace NFS driver (libnfs, which
//! does not retry NFS3ERR_JUKEBOX): a writer faster than the backend is paced, never refused.
//! The backend is slowed by the engine's test knob `STRATA_TEST_UPLOAD_DELAY_MS` (every PUT
//! waits), so that `qemu-img bench` writing 4x `Write_Buffer_Size` outruns the upload, and so
//! does the project's own libnfs client after it. The backlog measured from the volume's files
//! (`strata volume info`, sampled all along) never exceeds the hard mark.

use std::time::Duration;

use strata_tests::*;

const MIB: u64 = 1 << 20;
const QEMU_TIMEOUT: Duration = Duration::from_secs(300);
/// The write buffer (the hard mark) of the test gateway.
const WRITE_BUFFER: u64 = 16 * MIB;

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
    let info = |path: &str| -> serde_json::Value {
        let mut cmd = std::process::Command::new(&strata);
        cmd.args(["volume", "info", path, "--json", "--data-dir", &d]);
        let info = run_bounded(cmd, CMD_TIMEOUT).expect_ok("strata volume info");
        serde_json::from_str(info.stdout.trim())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {info}"))
    };
    tg.run_timeout(
        "qemu-img",
        ["create", "-f", "raw", &url, "128M"],
        QEMU_TIMEOUT,
    )
    .expect_ok("qemu-img create");
    // The backlog as measured from the files (not the estimate writes are admitted by),
    // sampled while the writers run.
    let done = std::sync::atomic::AtomicBool::new(false);
    let peak_measured = std::sync::atomic::AtomicU64::new(0);
    let sample = |path: &str| {
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            let v = info(path);
            if let Some(p) = v["pending_backend_bytes"].as_u64() {
                peak_measured.fetch_max(p, std::sync::atomic::Ordering::SeqCst);
            }
        }
    };
    // 64 MiB (4x the write buffer), 1 MiB requests, 8 in flight, no cache: an import.
    let count = (4 * WRITE_BUFFER / MIB).to_string();
    let r = std::thread::scope(|sc| {
        sc.spawn(|| sample("/import.raw"));
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
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        r
    });
    let r = r.expect_ok("qemu-img bench -w (4x the write buffer)");
    assert!(
        !r.stderr.contains("Failed") && !r.stdout.contains("Failed"),
        "a write failed: {r}"
    );
    let paced = |path: &str| {
        let v = info(path);
        let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} missing: {v}"));
        eprintln!("{path}: {v}");
        assert!(n("writes_paced") > 0, "{path}: no write was paced: {v}");
        assert_eq!(n("writes_refused"), 0, "{path}: a write was refused: {v}");
        assert!(
            n("peak_backlog") > WRITE_BUFFER / 2,
            "{path}: the backlog never crossed the soft mark: {v}"
        );
        let peak = peak_measured.swap(0, std::sync::atomic::Ordering::SeqCst);
        assert!(
            peak > 0 && peak <= WRITE_BUFFER,
            "{path}: the measured backlog peaked at {peak}, past the hard mark {WRITE_BUFFER}: {v}"
        );
    };
    paced("/import.raw");
    // The project's own client (libnfs, synchronous 1 MiB-or-smaller NFSv3 writes): 64 MiB
    // into a new volume, also paced, never refused.
    done.store(false, std::sync::atomic::Ordering::SeqCst);
    let len = (4 * WRITE_BUFFER).to_string();
    let r = std::thread::scope(|sc| {
        // The sampler starts once the file exists.
        sc.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let mut cmd = std::process::Command::new(&strata);
                cmd.args(["volume", "info", "/own.raw", "--json", "--data-dir", &d]);
                if run_bounded(cmd, CMD_TIMEOUT).ok() {
                    break;
                }
            }
            sample("/own.raw")
        });
        let r = tg.client(3, &["write", "/own.raw", "0", &len, "7"]);
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        r
    });
    r.expect_ok("strata-nfs-client write (4x the write buffer)");
    paced("/own.raw");
    tg.client(3, &["verify", "/own.raw", "0", &len, "7"])
        .expect_ok("the own client's write reads back");
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
