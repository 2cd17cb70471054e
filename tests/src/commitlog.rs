//! The `commitlog` workload of the durability tests (volumes and regular files alike): our
//! libnfs client's `commitlog` command writes UNSTABLE WRITEs of 4 KiB..64 KiB at random byte
//! offsets, a COMMIT every [`EVERY`] writes, and prints `committed=N` after each COMMIT that
//! succeeded with the writes' verifier. Offsets, lengths and data are a function of the seed and
//! the write index, so the tests replay them here ([`plan`], [`data_byte`], which mirror the C
//! code) and check, byte by byte, that every committed byte is there ([`check`]).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::*;

const MIB: u64 = 1 << 20;
/// The size of the object the workload writes.
pub const SIZE: u64 = 64 * MIB;
/// A COMMIT after this many writes.
pub const EVERY: u64 = 8;
/// NFS3ERR_JUKEBOX (RFC 1813).
pub const NFS3ERR_JUKEBOX: u64 = 10008;
/// Bound for a whole writer run and for the `strata` CLI.
pub const WRITER_TIMEOUT: Duration = Duration::from_secs(300);

/// Mirrors `pattern_byte` in csrc/nfs_client.c: the byte at file position `pos` for `seed`.
pub fn data_byte(pos: u64, seed: u64) -> u8 {
    let mut x = pos.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ seed.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 29;
    (x ^ (x >> 17)) as u8
}

/// Mirrors `do_commitlog`'s offsets and lengths: (offset, length) of writes `0..count`.
pub fn plan(size: u64, seed: u64, count: u64) -> Vec<(u64, u64)> {
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
pub fn check(actual: &[u8], base: &[u8], seed: u64, committed: u64, maybe: u64) -> u64 {
    assert_eq!(
        actual.len() as u64,
        SIZE,
        "object read back at a wrong size"
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
pub fn last_commit(out: &str) -> (u64, u64) {
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
pub struct Writer {
    child: Child,
    out: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the workload on `path` (an object of [`SIZE`] bytes).
    pub fn start(tg: &TestGateway, path: &str, seed: u64, count: u64) -> Writer {
        let mut args = vec!["commitlog".to_string(), path.to_string()];
        args.extend([SIZE, seed, count, EVERY].map(|v| v.to_string()));
        Writer::spawn(tg, &args)
    }

    /// Starts our libnfs client with `args` (after the server URL) in the gateway's namespace.
    pub fn spawn(tg: &TestGateway, args: &[String]) -> Writer {
        let mut cmd = tg.gw().command(client_bin());
        cmd.arg(tg.url(3, ""))
            .args(args)
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
    pub fn output(&self) -> String {
        self.out.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the writer (SIGKILL) and returns its whole output.
    pub fn kill(mut self) -> String {
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

/// Creates the empty object at `path`: a raw NFSv3 CREATE, then SETATTR of its size (reads as
/// zeros). A volume or a regular file, as its name says.
pub fn create_object(tg: &TestGateway, path: &str) {
    tg.client(3, &["create3", "unchecked", path])
        .expect_ok("create the object");
    tg.client(3, &["truncate", path, &SIZE.to_string()])
        .expect_ok("size the object");
}

/// The whole object at `path`, copied out with `nfs-cp` (an independent client) over NFSv3
/// into the test's directory as `name`.
pub fn read_object(tg: &TestGateway, path: &str, name: &str) -> Vec<u8> {
    let local = tg.dir().join(name);
    let local_s = local.display().to_string();
    tg.run_timeout(
        "nfs-cp",
        [tg.url(3, path).as_str(), &local_s],
        WRITER_TIMEOUT,
    )
    .expect_ok("nfs-cp the object out");
    std::fs::read(&local).unwrap_or_else(|e| panic!("read {local_s}: {e}"))
}

/// Runs the `strata` CLI on the host side (the management socket is in the data directory).
pub fn strata(args: &[&str]) -> Run {
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

/// Files (recursively) under `dir`, relative to it, with their sizes; empty if it does not
/// exist.
pub fn files_with_sizes(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(dir) {
                let len = e.metadata().map_or(0, |m| m.len());
                out.push((rel.to_string_lossy().into_owned(), len));
            }
        }
    }
    out
}

/// Total size of the files below `dir` whose path relative to it contains `part`.
pub fn bytes_under(dir: &Path, part: &str) -> u64 {
    files_with_sizes(dir)
        .iter()
        .filter(|(p, _)| p.contains(part))
        .map(|(_, n)| n)
        .sum()
}

/// A `commitlog` run that met NFS3ERR_JUKEBOX (asserted): its last acknowledged `committed=N`,
/// the bytes of those writes, and how many writes may have been sent (the failed request
/// included: it may or may not be there).
pub fn jukebox_outcome(r: &Run) -> (u64, u64, u64) {
    assert!(!r.ok(), "every write succeeded: {r}");
    assert_eq!(
        r.get("nfsstat").and_then(|s| s.parse().ok()),
        Some(NFS3ERR_JUKEBOX),
        "expected NFS3ERR_JUKEBOX: {r}"
    );
    let (committed, bytes) = last_commit(&r.stdout);
    let maybe = if let Some(i) = r.get("failed_write") {
        i.parse::<u64>().expect("failed_write") + 1
    } else {
        r.num("failed_commit")
    };
    (committed, bytes, maybe)
}

/// Makes the gateway's local backend directory read-only inside its mount namespace (a
/// read-only bind mount: root ignores mode bits, not EROFS), checked; returns its path for the
/// `umount` that brings it back.
pub fn backend_read_only(tg: &TestGateway) -> String {
    let backend = tg.data_dir.join("backend");
    assert!(
        backend.is_dir(),
        "no backend directory at {}",
        backend.display()
    );
    let b = backend.display().to_string();
    tg.run("mount", ["--bind", b.as_str(), b.as_str()])
        .expect_ok("bind mount");
    tg.run("mount", ["-o", "remount,bind,ro", b.as_str()])
        .expect_ok("remount read-only");
    let probe = format!("{b}/probe");
    let r = tg.run("touch", [probe.as_str()]);
    assert!(!r.ok(), "backend still writable inside the namespace: {r}");
    b
}

/// Runs the whole `commitlog` workload (`count` writes of `seed`) on `path` and waits for it.
pub fn run_commitlog(tg: &TestGateway, path: &str, seed: u64, count: u64) -> Run {
    tg.run_timeout(
        client_bin(),
        [
            tg.url(3, ""),
            "commitlog".into(),
            path.into(),
            SIZE.to_string(),
            seed.to_string(),
            count.to_string(),
            EVERY.to_string(),
        ],
        WRITER_TIMEOUT,
    )
}

/// Rounds of SIGKILL of Ganesha while a writer commits to `path` (each round's writer starts
/// from what the last crash left): after each restart, every byte a COMMIT acknowledged before
/// the kill reads back (checked against the writer's last `committed=N`). A round goes on until
/// `min_commits` COMMITs. Returns the object's content after the last round.
pub fn sigkill_rounds(
    tg: &mut TestGateway,
    path: &str,
    rounds: u64,
    min_commits: u64,
    seed_base: u64,
) -> Vec<u8> {
    sigkill_rounds_with(tg, path, rounds, min_commits, seed_base, &|_| {})
}

/// [`sigkill_rounds`], calling `before_kill` with the gateway in each round once the writer
/// reached `min_commits` COMMITs, just before the SIGKILL (the writer still running).
pub fn sigkill_rounds_with(
    tg: &mut TestGateway,
    path: &str,
    rounds: u64,
    min_commits: u64,
    seed_base: u64,
    before_kill: &dyn Fn(&TestGateway),
) -> Vec<u8> {
    const COUNT: u64 = 100_000;
    let mut base = vec![0u8; SIZE as usize];
    for round in 0..rounds {
        // Seeds far apart: write i of a round carries seed + i + 1.
        let seed = seed_base + round * 1_000_000;
        let mut w = Writer::start(tg, path, seed, COUNT);
        let enough = poll_until(Duration::from_secs(120), || {
            last_commit(&w.output()).0 >= min_commits * EVERY || !w.running()
        });
        assert!(
            enough && w.running(),
            "round {round}: writer did not reach {min_commits} commits while running: {}",
            w.output()
        );
        before_kill(tg);
        tg.gw_mut().kill_ganesha().expect("SIGKILL ganesha");
        // The writer's last line before the kill bounds what was acknowledged; stop it before
        // the restart so that it cannot write to the new server.
        let out = w.kill();
        let (committed, bytes) = last_commit(&out);
        assert!(committed >= min_commits * EVERY, "round {round}: {out}");
        assert!(
            !out.contains("done=1"),
            "round {round}: the writer finished before the kill: {out}"
        );
        tg.gw_mut()
            .restart_ganesha()
            .expect("restart after SIGKILL");
        let st = tg
            .client(3, &["stat", path])
            .expect_ok("stat after restart");
        assert_eq!(st.num("size"), SIZE, "round {round}: {st}");
        let data = read_object(tg, path, &format!("after-kill-{round}.bin"));
        // At most EVERY writes were sent after the last COMMIT the writer reported.
        let maybe = (committed + EVERY).min(COUNT);
        let new_bytes = check(&data, &base, seed, committed, maybe);
        eprintln!(
            "round {round}: {committed} writes ({bytes} bytes) committed before SIGKILL; \
             {new_bytes} bytes of the uncommitted writes survived"
        );
        base = data;
    }
    base
}
