//! Many threads at once: different files, one file in disjoint and in overlapping ranges, and
//! a directory changing while another thread lists it. Results are checked against what each
//! thread did, then again after a reopen (committed data is durable).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use strata_engine::*;

const THREADS: u64 = 8;
const ME: Cred = Cred { uid: 0, gid: 0 };

fn open(dir: &std::path::Path) -> Filesystem {
    let mut c = EngineConfig::new(dir);
    c.extent_cache_size = 256 << 20;
    Filesystem::open(c).expect("open")
}

fn read_all(fs: &Filesystem, h: Handle) -> Vec<u8> {
    let size = fs.getattr(h).expect("getattr").size as usize;
    let mut buf = vec![0u8; size];
    let (n, _) = fs.read(h, 0, &mut buf).expect("read");
    assert_eq!(n, size);
    buf
}

/// A tiny deterministic generator (no shared RNG between threads).
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn threads_write_different_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = Arc::new(open(dir.path()));
    let root = fs.root();
    let mut handles = Vec::new();
    for t in 0..THREADS {
        let fs = fs.clone();
        handles.push(thread::spawn(move || {
            let name = format!("file{t}");
            let h = fs
                .create(root, name.as_bytes(), 0o644, ME, CreateMode::Guarded)
                .expect("create")
                .attr
                .handle;
            let len = (1 << 20) + 12345 * (t as usize + 1);
            let mut want = vec![0u8; len];
            let mut s = t + 1;
            // Random chunks in random order, some stable, some read back at once.
            for k in 0..60 {
                let off = (next(&mut s) % len as u64) as usize;
                let n = ((next(&mut s) % 40_000) as usize + 1).min(len - off);
                let byte = (t * 31 + k) as u8;
                fs.write(h, off as u64, &vec![byte; n], k % 7 == 0)
                    .expect("write");
                want[off..off + n].fill(byte);
                if k % 10 == 0 {
                    let mut buf = vec![0u8; n];
                    fs.read(h, off as u64, &mut buf).expect("read back");
                    assert!(
                        buf.iter().all(|&b| b == byte),
                        "thread {t} reads its own write"
                    );
                }
            }
            // Pin the size with a final write at the end.
            fs.write(h, (len - 1) as u64, &want[len - 1..], false)
                .expect("last byte");
            fs.commit(h).expect("commit");
            (h, want)
        }));
    }
    let results: Vec<(Handle, Vec<u8>)> = handles
        .into_iter()
        .map(|j| j.join().expect("thread"))
        .collect();
    for (h, want) in &results {
        assert!(read_all(&fs, *h) == *want, "file {h:?} differs");
    }
    drop(fs);
    let fs = open(dir.path());
    for (h, want) in &results {
        assert!(
            read_all(&fs, *h) == *want,
            "file {h:?} differs after reopen"
        );
    }
}

#[test]
fn threads_write_disjoint_ranges_of_one_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = Arc::new(open(dir.path()));
    let h = fs
        .create(fs.root(), b"shared", 0o644, ME, CreateMode::Guarded)
        .expect("create")
        .attr
        .handle;
    // Regions straddle extent boundaries (1 MiB) on purpose.
    const REGION: u64 = 300_000;
    const CHUNK: u64 = 10_000;
    let stop = Arc::new(AtomicBool::new(false));
    // A committer runs throughout, as NFS COMMITs would.
    let committer = {
        let (fs, stop) = (fs.clone(), stop.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                fs.commit(h).expect("commit");
                thread::yield_now();
            }
        })
    };
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let fs = fs.clone();
            thread::spawn(move || {
                let mut offs: Vec<u64> = (0..REGION / CHUNK)
                    .map(|k| t * REGION + k * CHUNK)
                    .collect();
                offs.reverse();
                for off in offs {
                    let data: Vec<u8> = (0..CHUNK).map(|i| ((off + i) % 251) as u8).collect();
                    fs.write(h, off, &data, false).expect("write");
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    stop.store(true, Ordering::Relaxed);
    committer.join().expect("committer");
    fs.commit(h).expect("final commit");
    let want: Vec<u8> = (0..THREADS * REGION).map(|i| (i % 251) as u8).collect();
    assert!(read_all(&fs, h) == want, "shared file differs");
    drop(fs);
    let fs = open(dir.path());
    assert!(read_all(&fs, h) == want, "shared file differs after reopen");
}

#[test]
fn threads_write_overlapping_blocks_of_one_file() {
    // Every write is one aligned 4 KiB block filled with (thread << 4 | count of this thread's
    // writes to that block, mod 16). Writes inside an extent do not tear, and each thread's
    // writes are ordered, so at the end every block holds the last value some thread wrote there.
    const BLOCK: u64 = 4096;
    const BLOCKS: u64 = 600; // 2.4 MiB: three extents
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = Arc::new(open(dir.path()));
    let h = fs
        .create(fs.root(), b"contended", 0o644, ME, CreateMode::Guarded)
        .expect("create")
        .attr
        .handle;
    fs.setattr(
        h,
        &SetAttr {
            size: Some(BLOCK * BLOCKS),
            ..Default::default()
        },
    )
    .expect("size");
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let fs = fs.clone();
            thread::spawn(move || {
                let mut s = 0x9E37_79B9 + t;
                let mut last: BTreeMap<u64, u8> = BTreeMap::new();
                let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
                for _ in 0..800 {
                    let b = next(&mut s) % BLOCKS;
                    let c = counts.entry(b).or_insert(0);
                    *c += 1;
                    let v = ((t << 4) | (*c % 16)) as u8;
                    fs.write(h, b * BLOCK, &[v; BLOCK as usize], false)
                        .expect("write");
                    last.insert(b, v);
                }
                last
            })
        })
        .collect();
    let lasts: Vec<BTreeMap<u64, u8>> = writers
        .into_iter()
        .map(|w| w.join().expect("writer"))
        .collect();
    fs.commit(h).expect("commit");
    let check = |data: &[u8]| {
        for b in 0..BLOCKS {
            let blk = &data[(b * BLOCK) as usize..((b + 1) * BLOCK) as usize];
            let v = blk[0];
            assert!(blk.iter().all(|&x| x == v), "block {b} is torn");
            let allowed: BTreeSet<u8> = lasts.iter().filter_map(|l| l.get(&b).copied()).collect();
            if allowed.is_empty() {
                assert_eq!(v, 0, "block {b} was never written");
            } else {
                assert!(
                    allowed.contains(&v),
                    "block {b} holds {v:#x}, not the last write of any thread {allowed:?}"
                );
            }
        }
    };
    check(&read_all(&fs, h));
    drop(fs);
    check(&read_all(&open(dir.path()), h));
}

#[test]
fn readdir_while_names_come_and_go() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = Arc::new(open(dir.path()));
    let d = fs.mkdir(fs.root(), b"d", 0o755, ME).expect("mkdir").handle;
    let keep: BTreeSet<String> = (0..40).map(|i| format!("keep{i:02}")).collect();
    // Interleave permanent names with churn so that pages cross removals and inserts.
    for (i, k) in keep.iter().enumerate() {
        fs.create(d, k.as_bytes(), 0o644, ME, CreateMode::Guarded)
            .expect("keep");
        fs.create(
            d,
            format!("tmp{i}").as_bytes(),
            0o644,
            ME,
            CreateMode::Guarded,
        )
        .expect("tmp");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let churners: Vec<_> = (0..3u64)
        .map(|t| {
            let (fs, stop) = (fs.clone(), stop.clone());
            thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let old = format!("tmp{}", (i * 3 + t) % 40);
                    let _ = fs.unlink(d, old.as_bytes());
                    let new = format!("new{t}-{i}");
                    fs.create(d, new.as_bytes(), 0o644, ME, CreateMode::Guarded)
                        .expect("create");
                    if i.is_multiple_of(2) {
                        fs.unlink(d, new.as_bytes()).expect("unlink");
                    } else {
                        let _ = fs.rename(
                            d,
                            new.as_bytes(),
                            d,
                            format!("tmp{}", (i * 3 + t) % 40).as_bytes(),
                        );
                    }
                    i += 1;
                }
            })
        })
        .collect();
    for round in 0..30 {
        let mut seen: BTreeMap<String, u32> = BTreeMap::new();
        let mut cookie = 0;
        let mut last_cookie = 0;
        loop {
            let page = fs.readdir(d, cookie, 7).expect("readdir");
            for e in &page.entries {
                assert!(e.cookie > last_cookie, "cookies ascend");
                last_cookie = e.cookie;
                *seen
                    .entry(String::from_utf8_lossy(&e.name).into_owned())
                    .or_insert(0) += 1;
                cookie = e.cookie;
            }
            if page.eof {
                break;
            }
        }
        // Entries present throughout appear exactly once. (A name removed and created again
        // during the listing is a new entry with a new cookie and may appear twice: POSIX
        // leaves entries added or removed meanwhile unspecified; ascending cookies already
        // prove no entry repeats.)
        for k in &keep {
            assert_eq!(
                seen.get(k).copied(),
                Some(1),
                "round {round}: {k} not listed exactly once"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for c in churners {
        c.join().expect("churner");
    }
}
