//! Issue 5's durability contract for volumes, end to end through `ganesha.nfsd` and our FSAL:
//! nothing acknowledged by an NFSv3 COMMIT is lost when Ganesha is SIGKILLed mid-workload, and a
//! volume whose backend becomes unreachable fills its write buffer, answers NFS3ERR_JUKEBOX, and
//! loses nothing once the backend returns.
//!
//! The writer is our libnfs client's `commitlog` workload (`strata_tests::commitlog`, shared
//! with the regular files' test in `file_durability.rs`); unaligned writes mean read-modify-write
//! of 4 KiB clusters.
//!
//! What is checked, byte by byte, against the last `committed=N` line the writer printed:
//! a byte must hold the value of the last of writes `0..N` that covers it (zero if none), or the
//! value of one of the writes after `N` that the writer may have sent (those were never
//! committed: old or new is both fine, per byte). Any other value is a lost or corrupted
//! committed byte.

use std::time::Instant;

use strata_tests::commitlog::*;
use strata_tests::*;

const MIB: u64 = 1 << 20;
/// The volume (the `-flat.vmdk` suffix makes it a volume).
const VOL: &str = "/w-flat.vmdk";

/// The oracle is not vacuous: an image that lost one committed byte (the value it had before
/// the last write covering it), or that holds a byte of a write never sent, fails the check.
#[test]
fn the_check_catches_a_lost_committed_byte() {
    const SEED: u64 = 3;
    let writes = plan(SIZE, SEED, 60);
    let zeros = vec![0u8; SIZE as usize];
    let mut img = zeros.clone();
    for (i, &(off, len)) in writes.iter().enumerate().take(50) {
        for p in off..off + len {
            img[p as usize] = data_byte(p, SEED + i as u64 + 1);
        }
    }
    assert_eq!(check(&img, &zeros, SEED, 50, 50), 0);
    // A byte that only write 49 covers, rolled back to zero.
    let (off, len) = writes[49];
    let lone = (off..off + len)
        .find(|&p| {
            writes[..49].iter().all(|&(o, l)| !(o..o + l).contains(&p))
                && data_byte(p, SEED + 50) != 0
        })
        .expect("write 49 has a byte of its own");
    let mut lost = img.clone();
    lost[lone as usize] = 0;
    let r = std::panic::catch_unwind(|| check(&lost, &zeros, SEED, 50, 60));
    assert!(r.is_err(), "a lost committed byte passed the check");
    // Bytes of write 55 appear: allowed as uncommitted when it may have been sent, not when
    // only writes up to 52 were.
    let (off, len) = writes[55];
    let mut ahead = img.clone();
    for p in off..off + len {
        ahead[p as usize] = data_byte(p, SEED + 56);
    }
    assert!(check(&ahead, &zeros, SEED, 50, 60) > 0);
    let r = std::panic::catch_unwind(|| check(&ahead, &zeros, SEED, 50, 52));
    assert!(r.is_err(), "bytes of a write never sent passed the check");
}

/// SIGKILL of Ganesha while a writer is mid-workload, three times in a row (each round's writer
/// starts from what the previous crash left; its first COMMIT, of the whole file, makes that
/// state stable too): after each restart, every byte that a COMMIT acknowledged before the kill
/// reads back (checked against the writer's last `committed=N`), and the volume keeps working.
#[test]
fn sigkill_during_a_write_workload_keeps_every_committed_byte() {
    // Partial SCOs older than 1 s go to the backend, so the kill also lands mid-upload.
    let Some(mut tg) = TestGateway::strata_with(|conf| {
        if let Some(block) = conf.strata.as_mut() {
            block.push(("SCO_Max_Age".into(), "1".into()));
        }
    }) else {
        return;
    };
    if !require_tools(&["nfs-cp"]) {
        return;
    }
    let Some(strata) = strata_cli() else {
        return;
    };
    create_object(&tg, VOL);
    // About 20 MiB committed per round: several SCOs, some already uploaded. Just before each
    // kill: some of the workload's COMMITs were answered by the volume's write-ahead log alone
    // (the windows of 8 writes small enough for it), so the kill lands after such COMMITs and
    // the restart replays the log; and the volume expected some of those COMMITs (one every 8
    // writes) and started the log's writeback at the write before each.
    let wal_answered = |tg: &TestGateway| {
        let mut cmd = std::process::Command::new(&strata);
        let d = tg.data_dir.display().to_string();
        cmd.args(["volume", "info", VOL, "--json", "--data-dir", &d]);
        let out = run_bounded(cmd, CMD_TIMEOUT).expect_ok("strata volume info");
        let info: serde_json::Value = serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
        let (wal, rounds) = (info["wal_rounds"].as_u64(), info["commit_rounds"].as_u64());
        assert!(
            wal.is_some_and(|w| w > 0 && rounds.is_some_and(|r| w <= r)),
            "no COMMIT answered by the write-ahead log before the kill: {info}"
        );
        assert!(
            info["expected_commits"].as_u64().is_some_and(|e| e > 0),
            "no COMMIT expected: {info}"
        );
    };
    sigkill_rounds_with(&mut tg, VOL, 3, 75, 0x5eed_0000_0000, &wal_answered);

    // Still a working volume: a last workload after the crash restarts, fully committed.
    let r = run_commitlog(&tg, VOL, 7, 64);
    let r = r.expect_ok("commitlog after restart");
    assert_eq!(r.get("done").as_deref(), Some("1"), "{r}");
}

/// The backend directory turns read-only (a bind mount inside the gateway's mount namespace):
/// a volume keeps taking committed writes until about `Write_Buffer_Size` is not on the backend,
/// then answers NFS3ERR_JUKEBOX. When the backend returns, `strata sync --wait` drains it, every
/// committed byte reads back, and the backend holds the data.
#[test]
fn unreachable_backend_fills_the_write_buffer_then_jukebox_and_loses_nothing() {
    const WRITE_BUFFER: u64 = 16 * MIB;
    let Some(tg) = TestGateway::strata_with(|conf| {
        if let Some(block) = conf.strata.as_mut() {
            block.push(("SCO_Max_Age".into(), "1".into()));
            block.push(("Write_Buffer_Size".into(), "16M".into()));
            // DELAY only once the backend made no progress for this long (default 60 s).
            block.push(("Backend_Stall_Timeout".into(), "2".into()));
        }
    }) else {
        return;
    };
    if !require_tools(&["nfs-cp", "mount", "umount"]) {
        return;
    }
    let d = tg.data_dir.display().to_string();
    create_object(&tg, VOL);
    let b = backend_read_only(&tg);
    let backend = tg.data_dir.join("backend");

    const SEED: u64 = 0x5eed_0002;
    // ~135 MiB of writes: far more than the write buffer, so the writer must meet JUKEBOX.
    const COUNT: u64 = 4000;
    let t0 = Instant::now();
    let r = run_commitlog(&tg, VOL, SEED, COUNT);
    let took = t0.elapsed();
    // With no backend, the writer must meet JUKEBOX.
    let (committed, bytes, maybe) = jukebox_outcome(&r);
    // Unaligned writes store whole 4 KiB clusters, so the log grows faster than the bytes
    // written: JUKEBOX comes after somewhat less than the buffer of client bytes, not far less,
    // and never after much more.
    assert!(
        (WRITE_BUFFER / 2..=2 * WRITE_BUFFER).contains(&bytes),
        "JUKEBOX after {bytes} committed bytes with Write_Buffer_Size {WRITE_BUFFER}: {r}"
    );
    let info = strata(&["volume", "info", VOL, "--data-dir", &d, "--json"])
        .expect_ok("volume info while the backend is read-only");
    let v: serde_json::Value = serde_json::from_str(info.stdout.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {info}"));
    let pending = v["pending_backend_bytes"].as_u64().expect("pending");
    assert!(
        pending >= WRITE_BUFFER / 2,
        "only {pending} bytes pending with the backend read-only: {info}"
    );
    eprintln!(
        "JUKEBOX after {committed} writes ({bytes} bytes committed, {pending} pending) in \
         {took:?}, on {}",
        r.stdout
            .lines()
            .find(|l| l.starts_with("failed_"))
            .unwrap_or("?")
    );

    // The backend returns; the pipeline drains.
    tg.run("umount", [b.as_str()])
        .expect_ok("umount the read-only bind");
    let s = strata(&["sync", "--wait", "--data-dir", &d]).expect_ok("strata sync --wait");
    assert!(
        s.stdout
            .starts_with("synced: everything committed is on the backend"),
        "{s}"
    );
    let info = strata(&["volume", "info", VOL, "--data-dir", &d, "--json"])
        .expect_ok("volume info after sync");
    let v: serde_json::Value = serde_json::from_str(info.stdout.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {info}"));
    assert_eq!(v["pending_backend_bytes"], 0, "{info}");
    let ino = tg.client(3, &["stat", VOL]).expect_ok("stat").num("fileid");
    let remote = backend.join("volumes").join(format!("{ino:016x}"));
    let scos = bytes_under(&remote, "sco");
    assert!(
        scos >= bytes,
        "{scos} bytes of SCOs on the backend for {bytes} committed bytes ({})",
        remote.display()
    );

    let data = read_object(&tg, VOL, "after-backend-returns.bin");
    check(&data, &vec![0u8; SIZE as usize], SEED, committed, maybe);

    // Writable again once drained.
    let r = run_commitlog(&tg, VOL, 9, 64);
    let r = r.expect_ok("commitlog after the backend returned");
    assert_eq!(r.get("done").as_deref(), Some("1"), "{r}");
}
