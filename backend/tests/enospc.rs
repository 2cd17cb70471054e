//! A full disk gives `Error::NoSpace`: a child process runs in a private mount namespace with
//! a 1 MiB tmpfs as the store's directory and puts until the disk is full.

use std::process::Command;

use bytes::Bytes;
use strata_backend::{Error, LocalStore, ObjectStore};

const CHILD_ENV: &str = "STRATA_BACKEND_ENOSPC_CHILD_DIR";

#[test]
fn enospc_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // only meaningful as the child of `full_disk_gives_no_space`
    };
    println!("CHILD-STARTED");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = LocalStore::open(format!("{dir}/store")).expect("open");
    rt.block_on(async {
        let mut stored = Vec::new();
        for i in 0..100 {
            let data = Bytes::from(vec![i as u8; 100_000]);
            match store.put(&format!("o/{i}"), data).await {
                Ok(_) => stored.push(i),
                Err(Error::NoSpace) => break,
                Err(e) => panic!("expected NoSpace, got {e}"),
            }
        }
        assert!(
            !stored.is_empty() && stored.len() < 100,
            "the disk filled after some puts: {}",
            stored.len()
        );
        // The failed put left nothing behind; the stored objects are intact.
        let tmp = std::fs::read_dir(format!("{dir}/store/.strata-tmp"))
            .expect("tmp")
            .count();
        assert_eq!(tmp, 0, "a failed put removes its temp file");
        for i in &stored {
            let (data, _) = store.get(&format!("o/{i}")).await.expect("get");
            assert!(data.len() == 100_000 && data.iter().all(|b| *b == *i as u8));
        }
        // Deleting frees room for a put again.
        store.delete("o/0").await.expect("delete");
        store
            .put("again", Bytes::from(vec![7u8; 50_000]))
            .await
            .expect("put after freeing space");
    });
    println!("ENOSPC-OK");
}

#[test]
fn full_disk_gives_no_space() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("exe");
    let script = "mount -t tmpfs -o size=1m strata-enospc \"$0\" && exec \"$1\" --exact enospc_child --nocapture --test-threads=1";
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
        // No private mount namespace or tmpfs (not root?): a missing component.
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
