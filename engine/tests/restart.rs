//! Restart through a real process: a child (this test binary, re-executed) runs the engine on a
//! real redb file and a real local backend, commits files and reports each commit on stdout; it
//! is killed with SIGKILL in the middle of its workload (no Drop, no flush). A new engine on the
//! same directories must find every reported commit, with the same handles and contents.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use strata_engine::*;

const CHILD_ENV: &str = "STRATA_ENGINE_RESTART_CHILD";
/// Commits to see before the kill.
const COMMITS_BEFORE_KILL: usize = 25;

fn fnv(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn content(i: u64) -> Vec<u8> {
    let len = ((i * 7919 * 131) % (3 << 20)) as usize + 1;
    (0..len).map(|j| (j as u64 * 31 + i) as u8).collect()
}

/// The child's workload; runs until killed (or a bound of iterations, so it never runs away).
fn child(dir: &str) {
    let fs = Filesystem::open(EngineConfig::new(dir)).expect("child open");
    let root = fs.root();
    let me = Cred { uid: 1, gid: 1 };
    let mut dirs = Vec::new();
    for d in 0..3 {
        let name = format!("d{d}");
        let a = fs.mkdir(root, name.as_bytes(), 0o755, me).expect("mkdir");
        dirs.push((name, a.handle));
    }
    let scratch = fs
        .create(root, b"scratch", 0o644, me, CreateMode::Guarded)
        .expect("scratch")
        .attr
        .handle;
    let out = std::io::stdout();
    // An unlinked file held open: its data must be gone after the restart.
    let orphan = fs
        .create(root, b"orphan", 0o644, me, CreateMode::Guarded)
        .expect("orphan")
        .attr
        .handle;
    fs.write(orphan, 0, &[1u8; 3 << 20], true)
        .expect("orphan data");
    fs.open_file(orphan).expect("open orphan");
    fs.unlink(root, b"orphan").expect("unlink orphan");
    {
        let mut o = out.lock();
        // The test harness may have printed "test ... " without a newline: start afresh.
        writeln!(o, "\nORPHAN {} {}", orphan.ino, orphan.generation).expect("stdout");
        o.flush().expect("flush");
    }
    for i in 0..10_000u64 {
        let (dname, dh) = &dirs[(i % 3) as usize];
        let name = format!("f{i}");
        let h = fs
            .create(*dh, name.as_bytes(), 0o644, me, CreateMode::Guarded)
            .expect("create")
            .attr
            .handle;
        let data = content(i);
        for (k, chunk) in data.chunks(64 << 10).enumerate() {
            fs.write(h, (k * (64 << 10)) as u64, chunk, false)
                .expect("write");
        }
        fs.commit(h).expect("commit");
        let path = format!("/{dname}/{name}");
        {
            let mut o = out.lock();
            writeln!(
                o,
                "FILE {path} {} {} {} {}",
                h.ino,
                h.generation,
                fnv(&data),
                data.len()
            )
            .expect("stdout");
            o.flush().expect("flush");
        }
        if i % 4 == 3 {
            // A committed rename: durable when it returns.
            let new = format!("g{i}");
            fs.rename(*dh, name.as_bytes(), root, new.as_bytes())
                .expect("rename");
            let mut o = out.lock();
            writeln!(o, "MOVE {path} /{new}").expect("stdout");
            o.flush().expect("flush");
        }
        // Unstable noise that is never committed: must not disturb anything committed.
        fs.write(scratch, i * 4096, &[0xEE; 4096], false)
            .expect("scratch write");
    }
}

#[test]
fn restart_child_entry() {
    // Only does something when re-executed by `killed_child_loses_nothing_committed`.
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(&dir);
    }
}

#[test]
fn killed_child_loses_nothing_committed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current exe");
    let mut kid = Command::new(exe)
        .args([
            "--exact",
            "restart_child_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = kid.stdout.take().expect("child stdout");
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            match line {
                Ok(l) => {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    });
    // path -> (ino, generation, checksum, len)
    let mut expect: BTreeMap<String, (u64, u64, u64, usize)> = BTreeMap::new();
    let mut commits = 0;
    let mut orphan = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    let apply = |line: &str, expect: &mut BTreeMap<String, (u64, u64, u64, usize)>| -> bool {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["FILE", path, ino, generation, sum, len] => {
                let parse = |s: &str| s.parse::<u64>().expect("number from child");
                expect.insert(
                    path.to_string(),
                    (
                        parse(ino),
                        parse(generation),
                        parse(sum),
                        parse(len) as usize,
                    ),
                );
                true
            }
            ["MOVE", from, to] => {
                let v = expect.remove(*from).expect("moved file was reported");
                expect.insert(to.to_string(), v);
                false
            }
            _ => false,
        }
    };
    while commits < COMMITS_BEFORE_KILL {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("child reports commits in time");
        if let ["ORPHAN", ino, generation] = line.split_whitespace().collect::<Vec<_>>().as_slice()
        {
            let n = |s: &str| s.parse::<u64>().expect("number from child");
            orphan = Some(Handle {
                ino: n(ino),
                generation: n(generation),
            });
        }
        if apply(&line, &mut expect) {
            commits += 1;
        }
    }
    // SIGKILL in the middle of the workload: no destructor, no flush.
    kid.kill().expect("SIGKILL the child");
    kid.wait().expect("reap child");
    // Whatever was reported before the kill counts too (complete lines only).
    reader.join().expect("reader thread");
    while let Ok(line) = rx.try_recv() {
        apply(&line, &mut expect);
    }
    assert!(expect.len() >= COMMITS_BEFORE_KILL);

    let fs = Filesystem::open(EngineConfig::new(dir.path())).expect("reopen after SIGKILL");
    for (path, (ino, generation, sum, len)) in &expect {
        let a = fs
            .lookup_path(path)
            .unwrap_or_else(|e| panic!("{path} lost after SIGKILL: {e}"));
        assert_eq!(
            a.handle,
            Handle {
                ino: *ino,
                generation: *generation
            },
            "{path}: handle changed"
        );
        assert_eq!(a.size as usize, *len, "{path}: size");
        let mut buf = vec![0u8; *len];
        let (n, _) = fs.read(a.handle, 0, &mut buf).expect("read");
        assert_eq!(n, *len);
        assert_eq!(fnv(&buf), *sum, "{path}: content differs");
        assert_eq!(
            fs.getattr(a.handle).expect("getattr by old handle").handle,
            a.handle
        );
    }
    // The open-but-unlinked file did not survive the restart, nor did its extents.
    let orphan = orphan.expect("child reported its orphan");
    assert!(
        matches!(fs.getattr(orphan), Err(Error::Stale)),
        "orphan survives"
    );
    // Committed data waits in the file journal (File_Upload_Delay): send it up now.
    fs.flush_to_backend().expect("flush to the backend");
    let files_dir = dir
        .path()
        .join("backend")
        .join(FILES_PREFIX.trim_end_matches('/'));
    let prefix = format!("{:016x}.", orphan.ino);
    let all: Vec<String> = std::fs::read_dir(&files_dir)
        .expect("backend files dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        all.len() > 1,
        "the backend holds the committed files' extents"
    );
    assert!(
        !all.iter().any(|n| n.starts_with(&prefix)),
        "the orphan's extents are deleted at the next open"
    );
    // The namespace is still usable: new objects get fresh inode numbers.
    let max_ino = expect.values().map(|v| v.0).max().unwrap_or(0);
    let c = fs
        .create(
            fs.root(),
            b"after",
            0o644,
            Cred::default(),
            CreateMode::Guarded,
        )
        .expect("create after restart");
    assert!(
        c.attr.handle.ino > max_ino,
        "inode numbers are never reused"
    );
}
