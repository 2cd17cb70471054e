//! A full data directory answers `NoSpace` (ENOSPC), not a generic I/O error. The data
//! directory is a small tmpfs mounted in a private mount namespace (`unshare --mount`), in a
//! child process (this test binary, re-executed), so the host sees nothing.

use std::process::Command;

use strata_engine::*;

const CHILD_ENV: &str = "STRATA_ENGINE_NOSPACE_CHILD";

#[test]
fn nospace_child_entry() {
    // Only does something when re-executed inside the private namespace.
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let fs = Filesystem::open(EngineConfig::new(&dir)).expect("open on the small tmpfs");
    let root = fs.root();
    let f = fs
        .create(root, b"filler", 0o644, Cred::default(), CreateMode::Guarded)
        .expect("create")
        .attr
        .handle;
    let chunk = vec![0x5Au8; 1 << 20];
    let mut failure = None;
    for i in 0..64u64 {
        if let Err(e) = fs.write(f, i << 20, &chunk, true) {
            failure = Some((i, e));
            break;
        }
    }
    let (i, e) = failure.expect("a 16 MiB tmpfs fills up within 64 MiB of stable writes");
    assert!(
        matches!(e, Error::NoSpace),
        "full data dir after {i} MiB gave {e:?}, not NoSpace"
    );
    let st = fs.statfs().expect("statfs");
    // Regular files' writes keep a reserve (2 MiB) beyond their own length (twice: the
    // journal and the extent cache) so that removing a file still works.
    assert!(
        st.avail_bytes < 5 << 20,
        "statfs shows the disk (nearly) full: {st:?}"
    );
    // Freeing space makes the filesystem usable again.
    fs.unlink(root, b"filler").expect("unlink the filler");
    let g = fs
        .create(root, b"after", 0o644, Cred::default(), CreateMode::Guarded)
        .expect("create after freeing space")
        .attr
        .handle;
    fs.write(g, 0, &chunk, true)
        .expect("stable write after freeing space");
    println!("NOSPACE-CHILD-OK after {i} MiB");
}

#[test]
fn full_data_dir_answers_nospace() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let probe = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "true"])
        .status();
    if !matches!(probe, Ok(s) if s.success()) {
        assert!(!ci, "unshare --mount is needed for this test (CI=true)");
        eprintln!("skipping: cannot create a private mount namespace");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current exe");
    let script = r#"mount -t tmpfs -o size=16m strata-nospace "$0" && exec "$1" --exact nospace_child_entry --nocapture --test-threads=1"#;
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .arg(dir.path())
        .arg(&exe)
        .env(CHILD_ENV, dir.path())
        .output()
        .expect("run the child in a private mount namespace");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("NOSPACE-CHILD-OK"),
        "child failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}
