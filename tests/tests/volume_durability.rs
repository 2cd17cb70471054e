//! Issue 5's durability contract for volumes, end to end through `ganesha.nfsd` and our FSAL:
//! nothing acknowledged by an NFSv3 COMMIT is lost when Ganesha is SIGKILLed mid-workload, and a
//! volume whose backend becomes unreachable fills its write buffer, answers NFS3ERR_JUKEBOX, and
//! loses nothing once the backend returns.
//!
//! The writer is our libnfs client's `commitlog` command: UNSTABLE WRITEs of 4 KiB..64 KiB at
//! random byte offsets (so most are unaligned: read-modify-write of 4 KiB clusters), a COMMIT
//! every [`EVERY`] writes, and a `committed=N` line after each COMMIT that succeeded with the
//! writes' verifier. Offsets, lengths and data are a function of the seed and the write index,
//! so the test replays them here (see [`plan`] and [`data_byte`], which mirror the C code).
//!
//! What is checked, byte by byte, against the last `committed=N` line the writer printed:
//! a byte must hold the value of the last of writes `0..N` that covers it (zero if none), or the
//! value of one of the writes after `N` that the writer may have sent (those were never
//! committed: old or new is both fine, per byte). Any other value is a lost or corrupted
//! committed byte.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use strata_tests::*;

const MIB: u64 = 1 << 20;
/// The volume (the `-flat.vmdk` suffix makes it a volume) and its size.
const VOL: &str = "/w-flat.vmdk";
const SIZE: u64 = 64 * MIB;
/// A COMMIT after this many writes.
const EVERY: u64 = 8;
/// NFS3ERR_JUKEBOX (RFC 1813).
const NFS3ERR_JUKEBOX: u64 = 10008;
/// Bound for a whole writer run and for the `strata` CLI.
const WRITER_TIMEOUT: Duration = Duration::from_secs(300);

/// Mirrors `pattern_byte` in csrc/nfs_client.c: the byte at file position `pos` for `seed`.
fn data_byte(pos: u64, seed: u64) -> u8 {
    let mut x = pos.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ seed.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 29;
    (x ^ (x >> 17)) as u8
}

/// Mirrors `do_commitlog`'s offsets and lengths: (offset, length) of writes `0..count`.
fn plan(size: u64, seed: u64, count: u64) -> Vec<(u64, u64)> {
    let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(1);
    let mut next = || {
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    (0..count)
        .map(|_| {
            let len = 4096 + next() % 61441;
            let off = next() % (size - len + 1);
            (off, len)
        })
        .collect()
}

/// Checks `actual` (the whole volume read back) against `base` (its contents before the writer
/// ran) overwritten by writes `0..committed` of `seed`, with writes `committed..maybe` allowed
/// per byte (see the module doc). Panics with the first bad bytes. Returns how many bytes of
/// the uncommitted writes hold their new value (for the log).
fn check(actual: &[u8], base: &[u8], seed: u64, committed: u64, maybe: u64) -> u64 {
    assert_eq!(
        actual.len() as u64,
        SIZE,
        "volume read back at a wrong size"
    );
    let writes = plan(SIZE, seed, maybe);
    let mut expect = base.to_vec();
    for (i, &(off, len)) in writes.iter().enumerate().take(committed as usize) {
        let w_seed = seed + i as u64 + 1;
        for p in off..off + len {
            expect[p as usize] = data_byte(p, w_seed);
        }
    }
    let later = &writes[committed as usize..];
    let mut bad = Vec::new();
    let mut new_bytes = 0u64;
    for (p, (&a, &e)) in actual.iter().zip(&expect).enumerate() {
        let p = p as u64;
        if a == e {
            continue;
        }
        let uncommitted_value = later.iter().enumerate().any(|(j, &(off, len))| {
            (off..off + len).contains(&p) && a == data_byte(p, seed + committed + j as u64 + 1)
        });
        if uncommitted_value {
            new_bytes += 1;
        } else {
            bad.push((p, a, e));
        }
    }
    assert!(
        bad.is_empty(),
        "{} committed bytes lost or corrupted (of writes 0..{committed}, seed {seed}); first \
         (offset, got, expected): {:?}",
        bad.len(),
        &bad[..bad.len().min(10)]
    );
    new_bytes
}

/// The highest `committed=N` in the writer's output, with the byte count on that line.
fn last_commit(out: &str) -> (u64, u64) {
    out.lines()
        .rev()
        .find_map(|l| {
            let kv = kv_line(l);
            let n = kv.get("committed")?.parse().ok()?;
            let b = kv.get("bytes")?.parse().ok()?;
            Some((n, b))
        })
        .unwrap_or((0, 0))
}

/// A `commitlog` writer running in the gateway's namespace, its stdout collected as it comes.
struct Writer {
    child: Child,
    out: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

impl Writer {
    fn start(tg: &TestGateway, seed: u64, count: u64) -> Writer {
        let mut cmd = tg.gw().command(client_bin());
        cmd.arg(tg.url(3, ""))
            .args(["commitlog", VOL])
            .args([SIZE, seed, count, EVERY].map(|v| v.to_string()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the writer: {e}"));
        let mut pipe = child.stdout.take().expect("piped stdout");
        let out = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&out);
        let reader = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        Writer {
            child,
            out,
            reader: Some(reader),
        }
    }

    /// The output so far.
    fn output(&self) -> String {
        self.out.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the writer (SIGKILL) and returns its whole output.
    fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.output()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates the empty volume: a raw NFSv3 CREATE, then SETATTR of its size (reads as zeros).
fn create_volume(tg: &TestGateway) {
    tg.client(3, &["create3", "unchecked", VOL])
        .expect_ok("create the volume");
    tg.client(3, &["truncate", VOL, &SIZE.to_string()])
        .expect_ok("size the volume");
}

/// The whole volume, copied out with `nfs-cp` (an independent client) over NFSv3.
fn read_volume(tg: &TestGateway, name: &str) -> Vec<u8> {
    let local = tg.dir().join(name);
    let local_s = local.display().to_string();
    tg.run_timeout(
        "nfs-cp",
        [tg.url(3, VOL).as_str(), &local_s],
        WRITER_TIMEOUT,
    )
    .expect_ok("nfs-cp the volume out");
    std::fs::read(&local).unwrap_or_else(|e| panic!("read {local_s}: {e}"))
}

/// Runs the `strata` CLI on the host side (the management socket is in the data directory).
fn strata(args: &[&str]) -> Run {
    let bin = profile_dir().join("strata");
    assert!(
        bin.is_file(),
        "{} not found: build the workspace first (cargo build --workspace)",
        bin.display()
    );
    let mut cmd = Command::new(bin);
    cmd.args(args);
    run_bounded(cmd, WRITER_TIMEOUT)
}

/// Total size of the files below `dir` whose path relative to it contains `part`.
fn bytes_under(dir: &Path, part: &str) -> u64 {
    let mut total = 0;
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .strip_prefix(dir)
                .is_ok_and(|r| r.to_string_lossy().contains(part))
            {
                total += e.metadata().map_or(0, |m| m.len());
            }
        }
    }
    total
}

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
    create_volume(&tg);
    const COUNT: u64 = 100_000;
    // About 20 MiB committed per round: several SCOs, some already uploaded.
    const MIN_COMMITS: u64 = 75;

    let mut base = vec![0u8; SIZE as usize];
    for round in 0..3u64 {
        // Seeds far apart: write i of a round carries seed + i + 1.
        let seed = 0x5eed_0000_0000 + round * 1_000_000;
        let mut w = Writer::start(&tg, seed, COUNT);
        let enough = poll_until(Duration::from_secs(120), || {
            last_commit(&w.output()).0 >= MIN_COMMITS * EVERY || !w.running()
        });
        assert!(
            enough && w.running(),
            "round {round}: writer did not reach {MIN_COMMITS} commits while running: {}",
            w.output()
        );
        tg.gw_mut().kill_ganesha().expect("SIGKILL ganesha");
        // The writer's last line before the kill bounds what was acknowledged; stop it before
        // the restart so that it cannot write to the new server.
        let out = w.kill();
        let (committed, bytes) = last_commit(&out);
        assert!(committed >= MIN_COMMITS * EVERY, "round {round}: {out}");
        assert!(
            !out.contains("done=1"),
            "round {round}: the writer finished before the kill: {out}"
        );

        tg.gw_mut()
            .restart_ganesha()
            .expect("restart after SIGKILL");
        let st = tg.client(3, &["stat", VOL]).expect_ok("stat after restart");
        assert_eq!(st.num("size"), SIZE, "round {round}: {st}");
        let data = read_volume(&tg, &format!("after-kill-{round}.bin"));
        // At most EVERY writes were sent after the last COMMIT the writer reported.
        let maybe = (committed + EVERY).min(COUNT);
        let new_bytes = check(&data, &base, seed, committed, maybe);
        eprintln!(
            "round {round}: {committed} writes ({bytes} bytes) committed before SIGKILL; \
             {new_bytes} bytes of the uncommitted writes survived"
        );
        base = data;
    }

    // Still a working volume: a last workload after the crash restarts, fully committed.
    let r = tg.run_timeout(
        client_bin(),
        [
            tg.url(3, ""),
            "commitlog".into(),
            VOL.into(),
            SIZE.to_string(),
            "7".into(),
            "64".into(),
            EVERY.to_string(),
        ],
        WRITER_TIMEOUT,
    );
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
    create_volume(&tg);
    let backend = tg.data_dir.join("backend");
    assert!(
        backend.is_dir(),
        "no backend directory at {}",
        backend.display()
    );
    let b = backend.display().to_string();

    // Read-only in the gateway's mount namespace only (root ignores mode bits, not EROFS).
    tg.run("mount", ["--bind", b.as_str(), b.as_str()])
        .expect_ok("bind mount");
    tg.run("mount", ["-o", "remount,bind,ro", b.as_str()])
        .expect_ok("remount read-only");
    let probe = format!("{b}/probe");
    let r = tg.run("touch", [probe.as_str()]);
    assert!(!r.ok(), "backend still writable inside the namespace: {r}");

    const SEED: u64 = 0x5eed_0002;
    // ~135 MiB of writes: far more than the write buffer, so the writer must meet JUKEBOX.
    const COUNT: u64 = 4000;
    let t0 = Instant::now();
    let r = tg.run_timeout(
        client_bin(),
        [
            tg.url(3, ""),
            "commitlog".into(),
            VOL.into(),
            SIZE.to_string(),
            SEED.to_string(),
            COUNT.to_string(),
            EVERY.to_string(),
        ],
        WRITER_TIMEOUT,
    );
    let took = t0.elapsed();
    assert!(!r.ok(), "all {COUNT} writes succeeded with no backend: {r}");
    assert_eq!(
        r.get("nfsstat").and_then(|s| s.parse().ok()),
        Some(NFS3ERR_JUKEBOX),
        "expected NFS3ERR_JUKEBOX: {r}"
    );
    let (committed, bytes) = last_commit(&r.stdout);
    // The failed request: writes up to and including it may or may not be there.
    let maybe = if let Some(i) = r.get("failed_write") {
        i.parse::<u64>().expect("failed_write") + 1
    } else {
        r.num("failed_commit")
    };
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

    let data = read_volume(&tg, "after-backend-returns.bin");
    check(&data, &vec![0u8; SIZE as usize], SEED, committed, maybe);

    // Writable again once drained.
    let r = tg.run_timeout(
        client_bin(),
        [
            tg.url(3, ""),
            "commitlog".into(),
            VOL.into(),
            SIZE.to_string(),
            "9".into(),
            "64".into(),
            EVERY.to_string(),
        ],
        WRITER_TIMEOUT,
    );
    let r = r.expect_ok("commitlog after the backend returned");
    assert_eq!(r.get("done").as_deref(), Some("1"), "{r}");
}
