//! A full cache disk gives `Error::NoSpace`: a child process runs in a private mount namespace
//! with a 2 MiB tmpfs as the cache directory (the cache bound is far larger than the disk).

use std::process::Command;
use std::sync::Arc;

use strata_backend::MemStore;
use strata_filedriver::{Config, Error, ExtentMap, FileDriver};

const CHILD_ENV: &str = "STRATA_FILEDRIVER_ENOSPC_CHILD_DIR";

#[test]
fn enospc_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // only meaningful as the child of `full_cache_disk_gives_no_space`
    };
    println!("CHILD-STARTED");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let config = Config {
        cache_dir: format!("{dir}/cache").into(),
        cache_bytes: 1 << 30,
        first_gen: 1,
    };
    let fd =
        FileDriver::open(Arc::new(MemStore::new()), config, rt.handle().clone()).expect("open");
    let mut map = ExtentMap::new();
    let chunk = vec![0x5au8; 256 * 1024];
    let mut written = 0u64;
    let err = loop {
        match fd.write(1, &map, written, &chunk) {
            Ok(()) => written += chunk.len() as u64,
            Err(e) => break e,
        }
        assert!(written < 64 << 20, "the 2 MiB disk never filled");
    };
    assert!(matches!(err, Error::NoSpace), "expected NoSpace, got {err}");
    assert!(written > 0);
    // What was written before the disk filled is still there and can be synced.
    let mut buf = vec![0u8; written as usize];
    fd.read(1, &map, 0, &mut buf).expect("read");
    assert!(buf.iter().all(|b| *b == 0x5a));
    fd.sync(1, &mut map).expect("sync");
    println!("ENOSPC-OK");
}

#[test]
fn full_cache_disk_gives_no_space() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("exe");
    let script = "mount -t tmpfs -o size=2m strata-enospc \"$0\" && exec \"$1\" --exact enospc_child --nocapture --test-threads=1";
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .arg(dir.path())
        .arg(&exe)
        .env(CHILD_ENV, dir.path())
        .output();
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let out = match out {
        Ok(o) => o,
        Err(e) if !ci => {
            eprintln!("skipping: cannot run unshare: {e}");
            return;
        }
        Err(e) => panic!("unshare is needed (CI=true): {e}"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stdout.contains("CHILD-STARTED") {
        assert!(
            !ci,
            "could not mount a tmpfs in a private namespace (CI=true): {stderr}"
        );
        eprintln!("skipping: could not mount a tmpfs in a private namespace: {stderr}");
        return;
    }
    assert!(
        out.status.success() && stdout.contains("ENOSPC-OK"),
        "child failed:\n{stdout}\n{stderr}"
    );
}
