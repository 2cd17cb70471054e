//! A real child process is SIGKILLed in the middle of many `LocalStore` puts; afterwards every
//! object under a final name is complete, and reopening removes the leftover temp files.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_backend::{LocalStore, ObjectStore};

const CHILD_ENV: &str = "STRATA_BACKEND_CRASH_CHILD_DIR";

/// A self-checking object: 8 bytes length, 8 bytes seed, then bytes of a generator seeded
/// with `seed`. Any truncation or mix of two versions fails `check`.
fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len.max(16));
    out.extend_from_slice(&(len.max(16) as u64).to_le_bytes());
    out.extend_from_slice(&seed.to_le_bytes());
    let mut x = seed | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(x as u8);
    }
    out
}

fn check(data: &[u8]) -> Result<(), String> {
    if data.len() < 16 {
        return Err(format!(
            "object of {} bytes is shorter than its header",
            data.len()
        ));
    }
    let len = u64::from_le_bytes(data[..8].try_into().map_err(|_| "header")?) as usize;
    let seed = u64::from_le_bytes(data[8..16].try_into().map_err(|_| "header")?);
    if len != data.len() {
        return Err(format!("object claims {len} bytes, has {}", data.len()));
    }
    if content(seed, len) != data {
        return Err("content does not match its seed".into());
    }
    Ok(())
}

/// The child: writes objects of varied sizes forever (until killed), over and over the same
/// keys so that replacements are interrupted too.
#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // only meaningful as the child of `sigkill_during_puts_leaves_only_complete_objects`
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let store = LocalStore::open(&dir).expect("open");
    rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..4u64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0u64.. {
                    let seed = w << 32 | i;
                    let key = format!("w{w}/obj{:02}", i % 23);
                    let len = 16 + ((i * 7919) % 300_000) as usize;
                    store
                        .put(&key, Bytes::from(content(seed, len)))
                        .await
                        .expect("put");
                    println!("put {key}");
                }
            }));
        }
        for t in tasks {
            t.await.expect("join");
        }
    });
}

#[test]
fn sigkill_during_puts_leaves_only_complete_objects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let exe = std::env::current_exe().expect("current exe");
    let mut interrupted_rounds = 0;
    for round in 0..5 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &root)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        // Let it complete a number of puts (so objects get replaced), bounded by a deadline:
        // the child prints one line per completed put.
        let deadline = Instant::now() + Duration::from_secs(60);
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut puts = 0;
        while puts < 150 + round * 37 {
            assert!(
                Instant::now() < deadline,
                "child wrote too little before the deadline"
            );
            match lines.next() {
                Some(Ok(l)) if l.starts_with("put ") => puts += 1,
                Some(Ok(_)) => {}
                other => panic!("child stopped early: {other:?}"),
            }
        }
        // Kill it mid-flight (std's kill is SIGKILL: no unwinding, no Drop).
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
        drop(lines);

        let tmp = root.join(".strata-tmp");
        if std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0) > 0 {
            interrupted_rounds += 1;
        }
        let mut checked = 0;
        for w in 0..4 {
            let Ok(entries) = std::fs::read_dir(root.join(format!("w{w}"))) else {
                continue;
            };
            for e in entries {
                let e = e.expect("entry");
                let data = std::fs::read(e.path()).expect("read");
                if let Err(why) = check(&data) {
                    panic!(
                        "round {round}: {} is not a complete object: {why}",
                        e.path().display()
                    );
                }
                checked += 1;
            }
        }
        assert!(
            checked >= 40,
            "round {round}: only {checked} objects checked"
        );
        // Reopening cleans the temp dir and sees the same objects through the API.
        let store = LocalStore::open(&root).expect("reopen");
        assert_eq!(
            std::fs::read_dir(&tmp).expect("tmp").count(),
            0,
            "temp files cleaned at open"
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let page = store.list("", None, 1000).await.expect("list");
            assert_eq!(page.objects.len(), checked);
            for m in page.objects {
                let (data, _) = store.get(&m.key).await.expect("get");
                check(&data).expect("complete via the API");
            }
        });
    }
    // Evidence that the kills did land inside puts (temp written, not yet renamed).
    assert!(
        interrupted_rounds > 0,
        "no kill interrupted a put: the test proved nothing"
    );
}
