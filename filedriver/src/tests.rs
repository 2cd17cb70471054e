//! Tests of the FileDriver against a model, with real stores and a real cache directory.

use std::fs;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use proptest::prelude::*;
use strata_backend::{ListPage, LocalStore, MemStore, ObjectMeta, PutMode};

use super::*;

const MIB: u64 = EXTENT_SIZE;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn config(dir: &Path, cache_bytes: u64) -> Config {
    Config {
        cache_dir: dir.join("cache"),
        cache_bytes,
        first_gen: 1,
    }
}

/// The extent indices a map names.
fn idx(map: &ExtentMap) -> Vec<u64> {
    map.keys().copied().collect()
}

/// The extent indices of a list of versions, sorted.
fn idx_of(v: &[ExtentVersion]) -> Vec<u64> {
    let mut i: Vec<u64> = v.iter().map(|(i, _)| *i).collect();
    i.sort_unstable();
    i
}

/// Object names without their generation (what extent objects exist, whatever version).
fn base(file: FileId, index: u64) -> String {
    extent_key(file, index, 0)
}

fn no_journal(_: &[ExtentVersion]) -> Result<()> {
    Ok(())
}

/// Deterministic test data (8 bytes per generator step: debug builds run these tests).
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn read_vec(fd: &FileDriver, file: FileId, map: &ExtentMap, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0xAAu8; len];
    fd.read(file, map, offset, &mut buf).expect("read");
    buf
}

fn apply(model: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let end = offset as usize + data.len();
    if model.len() < end {
        model.resize(end, 0);
    }
    model[offset as usize..end].copy_from_slice(data);
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    store: Arc<dyn ObjectStore>,
    /// Each driver opened starts its generations above the last one's (as the engine's
    /// owner epoch does).
    opened: AtomicU64,
}

impl Fixture {
    fn local() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(LocalStore::open(dir.path().join("backend")).expect("store"));
        Fixture {
            rt: runtime(),
            dir,
            store,
            opened: AtomicU64::new(0),
        }
    }

    fn with(store: Arc<dyn ObjectStore>) -> Fixture {
        Fixture {
            rt: runtime(),
            dir: tempfile::tempdir().expect("tempdir"),
            store,
            opened: AtomicU64::new(0),
        }
    }

    fn driver(&self, cache_bytes: u64) -> FileDriver {
        let run = self.opened.fetch_add(1, Ordering::Relaxed) + 1;
        let mut config = config(self.dir.path(), cache_bytes);
        config.first_gen = run << 40;
        FileDriver::open(self.store.clone(), config, self.rt.handle().clone()).expect("open driver")
    }

    /// The newest version of an extent object.
    fn object(&self, file: FileId, idx: u64) -> Option<Vec<u8>> {
        let prefix = base(file, idx);
        // Generations are fixed-width hex: the greatest name is the newest version.
        let newest = self
            .rt
            .block_on(self.store.list(&prefix, None, 10_000))
            .expect("list")
            .objects
            .into_iter()
            .map(|m| m.key)
            .max()?;
        match self.rt.block_on(self.store.get(&newest)) {
            Ok((d, _)) => Some(d.to_vec()),
            Err(e) if e.is_not_found() => None,
            Err(e) => panic!("get: {e}"),
        }
    }

    fn keys(&self) -> Vec<String> {
        let page = self
            .rt
            .block_on(self.store.list("", None, 10_000))
            .expect("list");
        // Without generations, deduplicated: which extents have objects.
        let mut keys: Vec<String> = page
            .objects
            .into_iter()
            .map(|m| m.key.get(..25).unwrap_or(&m.key).to_string())
            .collect();
        keys.dedup();
        keys
    }
}

#[test]
fn extent_key_layout() {
    assert_eq!(extent_key(0x2a, 3, 0), "000000000000002a.00000003");
    assert_eq!(
        extent_key(0x2a, 3, 0x10000000005),
        "000000000000002a.00000003.0000010000000005"
    );
    assert_eq!(
        extent_key(u64::MAX, 0xffff_ffff, 0),
        "ffffffffffffffff.ffffffff"
    );
}

#[test]
fn holes_writes_and_reads_across_extents() {
    let fx = Fixture::local();
    let fd = fx.driver(64 * MIB);
    let map = ExtentMap::new();
    assert_eq!(
        read_vec(&fd, 1, &map, 5 * MIB, 100),
        vec![0; 100],
        "an unknown file is all holes"
    );
    let data = pattern(1, (2 * MIB + 12345) as usize);
    let off = MIB - 100;
    fd.write(1, &map, off, &data).expect("write");
    let mut model = Vec::new();
    apply(&mut model, off, &data);
    assert_eq!(read_vec(&fd, 1, &map, 0, model.len()), model);
    assert_eq!(
        read_vec(&fd, 1, &map, off + 10, 3),
        model[off as usize + 10..off as usize + 13]
    );
    // Beyond what was written: zeros (the caller clamps at its size; the driver reads holes).
    assert_eq!(
        read_vec(&fd, 1, &map, model.len() as u64, 4096),
        vec![0; 4096]
    );
    assert!(fd.has_dirty(1));
    assert!(
        fx.keys().is_empty(),
        "nothing reaches the backend before sync"
    );
    // Another file is independent.
    assert_eq!(read_vec(&fd, 2, &map, off, 10), vec![0; 10]);
}

#[test]
fn sync_uploads_extents_and_reopen_reads_them() {
    let fx = Fixture::local();
    let fd = fx.driver(64 * MIB);
    let mut map = ExtentMap::new();
    let data = pattern(2, (MIB + 1000) as usize);
    fd.write(7, &map, 3 * MIB, &data).expect("write");
    fd.sync(7, &mut map).expect("sync");
    assert_eq!(idx(&map), [3, 4]);
    assert!(!fd.has_dirty(7));
    assert_eq!(fx.keys(), vec![base(7, 3), base(7, 4)]);
    assert_eq!(fx.object(7, 3).expect("extent 3"), data[..MIB as usize]);
    assert_eq!(
        fx.object(7, 4).expect("extent 4"),
        data[MIB as usize..],
        "a short last extent"
    );
    // A second sync with nothing dirty uploads nothing and keeps the map.
    fd.sync(7, &mut map).expect("sync");
    assert_eq!(idx(&map), [3, 4]);
    drop(fd);

    // Reopen: the cache is wiped, reads come from the backend through the map.
    let fd = fx.driver(64 * MIB);
    assert_eq!(fd.cache_stats(), CacheStats::default());
    assert_eq!(read_vec(&fd, 7, &map, 3 * MIB, data.len()), data);
    assert_eq!(read_vec(&fd, 7, &map, 0, 100), vec![0; 100], "hole before");
    // Not in the map: a hole, even though the object exists (the map is the truth).
    let partial: ExtentMap = map
        .iter()
        .filter(|(i, _)| **i == 3)
        .map(|(i, g)| (*i, *g))
        .collect();
    let fd2 = fx.driver(64 * MIB);
    assert_eq!(read_vec(&fd2, 7, &partial, 4 * MIB, 1000), vec![0; 1000]);
}

#[test]
fn partial_write_to_uncached_extent_reads_modify_writes() {
    let fx = Fixture::local();
    let mut map = ExtentMap::new();
    let base = pattern(3, MIB as usize);
    {
        let fd = fx.driver(64 * MIB);
        fd.write(9, &map, 0, &base).expect("write");
        fd.sync(9, &mut map).expect("sync");
    }
    let fd = fx.driver(64 * MIB);
    fd.write(9, &map, 1000, b"hello").expect("partial write");
    fd.sync(9, &mut map).expect("sync");
    let mut want = base.clone();
    want[1000..1005].copy_from_slice(b"hello");
    assert_eq!(
        fx.object(9, 0).expect("extent"),
        want,
        "the rest of the extent was kept"
    );
    // A whole-extent write does not need the old content.
    let whole = pattern(4, MIB as usize);
    let fd = fx.driver(64 * MIB);
    fd.write(9, &map, 0, &whole).expect("whole write");
    fd.sync(9, &mut map).expect("sync");
    assert_eq!(fx.object(9, 0).expect("extent"), whole);
}

#[test]
fn truncate_shrinks_zeroes_the_tail_and_grows_sparse() {
    let fx = Fixture::local();
    let fd = fx.driver(64 * MIB);
    let mut map = ExtentMap::new();
    let data = pattern(5, (4 * MIB) as usize);
    fd.write(3, &map, 0, &data).expect("write");
    fd.sync(3, &mut map).expect("sync");
    assert_eq!(idx(&map), [0, 1, 2, 3]);

    let new_size = MIB + 777;
    let removed = fd
        .truncate(3, &mut map, new_size, &mut no_journal)
        .expect("truncate");
    assert_eq!(
        idx_of(&removed),
        vec![1, 2, 3],
        "cut, and the tail's old version"
    );
    assert_eq!(idx(&map), [0, 1]);
    // The tail extent was cut and uploaded at once.
    assert_eq!(
        fx.object(3, 1).expect("tail"),
        data[MIB as usize..new_size as usize]
    );
    fd.delete_extents(3, &removed).expect("delete extents");
    assert_eq!(fx.keys(), vec![base(3, 0), base(3, 1)]);
    fd.delete_extents(3, &removed)
        .expect("deleting missing extents is fine");

    // Grow again: the old bytes do not come back, in the cache or after a reopen.
    fd.truncate(3, &mut map, 4 * MIB, &mut no_journal)
        .expect("grow");
    let mut want = data[..new_size as usize].to_vec();
    want.resize((4 * MIB) as usize, 0);
    assert_eq!(read_vec(&fd, 3, &map, 0, want.len()), want);
    drop(fd);
    let fd = fx.driver(64 * MIB);
    assert_eq!(read_vec(&fd, 3, &map, 0, want.len()), want);

    // Shrink an uncached extent (fetched, cut, uploaded) to an extent boundary and below.
    let removed = fd
        .truncate(3, &mut map, 500, &mut no_journal)
        .expect("truncate");
    assert_eq!(idx_of(&removed), vec![0, 1]);
    assert_eq!(fx.object(3, 0).expect("tail"), data[..500]);
    let removed = fd
        .truncate(3, &mut map, 0, &mut no_journal)
        .expect("truncate to 0");
    assert_eq!(idx_of(&removed), vec![0]);
    assert!(map.is_empty());
    assert_eq!(read_vec(&fd, 3, &map, 0, 1000), vec![0; 1000]);
}

#[test]
fn truncate_drops_unsynced_data_beyond_the_end() {
    let fx = Fixture::local();
    let fd = fx.driver(64 * MIB);
    let mut map = ExtentMap::new();
    fd.write(4, &map, 0, &pattern(6, (3 * MIB) as usize))
        .expect("write");
    let removed = fd
        .truncate(4, &mut map, 10, &mut no_journal)
        .expect("truncate");
    assert!(removed.is_empty(), "nothing was on the backend");
    assert_eq!(idx(&map), [0], "the cut tail is uploaded");
    assert_eq!(fx.object(4, 0).expect("tail"), pattern(6, 10));
    assert_eq!(fd.cache_stats().bytes, 10);
    fd.sync(4, &mut map).expect("sync");
    assert_eq!(
        fx.keys(),
        vec![base(4, 0)],
        "the dropped extents never reach the backend"
    );
}

#[test]
fn delete_removes_objects_and_cache() {
    let fx = Fixture::local();
    let fd = fx.driver(64 * MIB);
    let mut map = ExtentMap::new();
    fd.write(5, &map, 0, &pattern(7, (2 * MIB) as usize))
        .expect("write");
    fd.sync(5, &mut map).expect("sync");
    fd.write(5, &map, 5 * MIB, b"dirty").expect("write");
    fd.write(6, &map, 0, b"other file").expect("write");
    let mut map6 = ExtentMap::new();
    fd.sync(6, &mut map6).expect("sync");
    fd.delete(5, &map).expect("delete");
    assert_eq!(fx.keys(), vec![base(6, 0)]);
    assert!(!fd.has_dirty(5));
    assert_eq!(
        fd.cache_stats().extents,
        1,
        "only file 6's extent is cached"
    );
    assert_eq!(read_vec(&fd, 5, &ExtentMap::new(), 0, 10), vec![0; 10]);
    let cache_files = fs::read_dir(fx.dir.path().join("cache"))
        .expect("cache")
        .count();
    assert_eq!(cache_files, 1);
}

/// A store whose puts can be held at a gate, to interleave a write with an upload.
#[derive(Debug)]
struct GateStore {
    inner: MemStore,
    gated: AtomicBool,
    waiting: AtomicUsize,
    gate: tokio::sync::Semaphore,
}

#[async_trait]
impl ObjectStore for GateStore {
    async fn put_opts(
        &self,
        key: &str,
        data: Bytes,
        mode: PutMode,
    ) -> strata_backend::Result<ObjectMeta> {
        if mode == PutMode::Overwrite && self.gated.load(Ordering::SeqCst) {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            let permit = self.gate.acquire().await.expect("gate");
            permit.forget();
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
        self.inner.put_opts(key, data, mode).await
    }
    async fn get(&self, key: &str) -> strata_backend::Result<(Bytes, ObjectMeta)> {
        self.inner.get(key).await
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> strata_backend::Result<Bytes> {
        self.inner.get_range(key, range).await
    }
    async fn head(&self, key: &str) -> strata_backend::Result<ObjectMeta> {
        self.inner.head(key).await
    }
    async fn delete(&self, key: &str) -> strata_backend::Result<()> {
        self.inner.delete(key).await
    }
    async fn list(
        &self,
        prefix: &str,
        token: Option<&str>,
        max: usize,
    ) -> strata_backend::Result<ListPage> {
        self.inner.list(prefix, token, max).await
    }
}

fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::yield_now();
    }
}

#[test]
fn a_write_during_an_upload_stays_dirty() {
    let gate = Arc::new(GateStore {
        inner: MemStore::new(),
        gated: AtomicBool::new(true),
        waiting: AtomicUsize::new(0),
        gate: tokio::sync::Semaphore::new(0),
    });
    let fx = Fixture::with(gate.clone());
    let fd = Arc::new(fx.driver(64 * MIB));
    let map0 = ExtentMap::new();
    fd.write(1, &map0, 0, b"first version").expect("write");
    let syncer = {
        let fd = fd.clone();
        std::thread::spawn(move || {
            let mut map = ExtentMap::new();
            fd.sync(1, &mut map).map(|_| map)
        })
    };
    wait_until("the upload to reach the gate", || {
        gate.waiting.load(Ordering::SeqCst) == 1
    });
    // The upload holds "first version"; this write lands while it is in flight.
    fd.write(1, &map0, 0, b"SECOND")
        .expect("write during upload");
    gate.gate.add_permits(1);
    let mut map = syncer.join().expect("join").expect("sync");
    assert_eq!(idx(&map), [0]);
    assert_eq!(&fx.object(1, 0).expect("uploaded")[..], b"first version");
    assert!(
        fd.has_dirty(1),
        "the extent written during the upload is still dirty"
    );
    gate.gated.store(false, Ordering::SeqCst);
    fd.sync(1, &mut map).expect("second sync");
    assert!(!fd.has_dirty(1));
    assert_eq!(&fx.object(1, 0).expect("uploaded")[..], b"SECONDversion");
}

#[test]
fn backend_failure_keeps_data_dirty_and_sync_retries() {
    let faulty = Arc::new(strata_backend::FaultyStore::new(Arc::new(MemStore::new())));
    let fx = Fixture::with(faulty.clone());
    let fd = fx.driver(64 * MIB);
    let mut map = ExtentMap::new();
    fd.write(1, &map, 0, &pattern(8, 3000)).expect("write");
    faulty.set_failing(true);
    assert!(matches!(fd.sync(1, &mut map), Err(Error::Backend(_))));
    assert!(map.is_empty());
    assert!(fd.has_dirty(1));
    faulty.set_failing(false);
    fd.sync(1, &mut map).expect("sync");
    assert_eq!(idx(&map), [0]);
    assert_eq!(fx.object(1, 0).expect("object"), pattern(8, 3000));
    // A read of an uncached extent fails with the backend's error while it is down.
    let fd = fx.driver(64 * MIB);
    faulty.set_failing(true);
    let mut buf = [0u8; 10];
    assert!(matches!(
        fd.read(1, &map, 0, &mut buf),
        Err(Error::Backend(_))
    ));
}

#[test]
fn refuses_to_block_inside_the_runtime() {
    let fx = Fixture::local();
    let fd = fx.driver(64 * MIB);
    let r = fx
        .rt
        .block_on(async { fd.write(1, &ExtentMap::new(), 0, b"x") });
    assert!(matches!(r, Err(Error::Io(_))), "an error, not a panic");
}

#[test]
fn open_wipes_the_cache_dir() {
    let fx = Fixture::local();
    let cache = fx.dir.path().join("cache");
    fs::create_dir_all(cache.join("sub")).expect("mkdir");
    fs::write(cache.join("stale"), b"x").expect("write");
    fs::write(cache.join("sub/stale"), b"x").expect("write");
    let _fd = fx.driver(MIB);
    assert_eq!(fs::read_dir(&cache).expect("cache").count(), 0);
}

/// A tiny cache (3 MiB) under writes of 12 MiB to several files without sync: dirty extents
/// stay (nothing goes to the backend behind the caller's back) while clean ones are evicted,
/// no written byte is lost, and once uploaded the cache goes back under its bound.
#[test]
fn eviction_keeps_dirty_data() {
    let fx = Fixture::local();
    let fd = fx.driver(3 * MIB);
    let mut maps = vec![ExtentMap::new(); 3];
    let mut models = vec![Vec::new(); 3];
    for round in 0..4u64 {
        for f in 0..3u64 {
            let data = pattern(round * 10 + f, (MIB + 4321) as usize);
            let off = round * MIB - round * 1000;
            fd.write(f, &maps[f as usize], off, &data).expect("write");
            apply(&mut models[f as usize], off, &data);
            let stats = fd.cache_stats();
            assert!(
                stats.bytes - stats.dirty_bytes <= 3 * MIB,
                "clean extents over the bound: {stats:?}"
            );
        }
    }
    assert!(
        fx.keys().is_empty(),
        "nothing uploaded behind the caller's back"
    );
    for f in 0..3u64 {
        assert_eq!(
            read_vec(&fd, f, &maps[f as usize], 0, models[f as usize].len()),
            models[f as usize]
        );
    }
    for f in 0..3u64 {
        fd.sync(f, &mut maps[f as usize]).expect("sync");
        let n = models[f as usize].len() as u64;
        assert_eq!(
            idx(&maps[f as usize]),
            (0..n.div_ceil(MIB)).collect::<Vec<u64>>(),
            "map names every extent"
        );
    }
    read_vec(&fd, 0, &maps[0], 0, 1);
    assert!(fd.cache_stats().bytes <= 3 * MIB, "{:?}", fd.cache_stats());
    drop(fd);
    let fd = fx.driver(3 * MIB);
    for f in 0..3u64 {
        assert_eq!(
            read_vec(&fd, f, &maps[f as usize], 0, models[f as usize].len()),
            models[f as usize]
        );
        assert!(fd.cache_stats().bytes <= 3 * MIB);
    }
}

/// Threads write disjoint ranges of one file and whole other files at once; everything reads
/// back as written, before and after sync + reopen.
#[test]
fn concurrent_writers() {
    for cache in [64 * MIB, 2 * MIB] {
        let fx = Fixture::local();
        let fd = Arc::new(fx.driver(cache));
        let chunk = 300_000u64; // not extent-aligned: neighbours share extents
        let threads: Vec<_> = (0..6u64)
            .map(|t| {
                let fd = fd.clone();
                std::thread::spawn(move || {
                    let map = ExtentMap::new();
                    for i in 0..4u64 {
                        // Shared file 100: thread t owns chunks t, t+6, t+12, t+18.
                        let n = t + 6 * i;
                        fd.write(100, &map, n * chunk, &pattern(1000 + n, chunk as usize))
                            .expect("write");
                        // Its own file.
                        fd.write(t, &map, i * 777_777, &pattern(t * 100 + i, 500_000))
                            .expect("write");
                        let mut back = vec![0u8; 500_000];
                        fd.read(t, &map, i * 777_777, &mut back).expect("read");
                        assert_eq!(back, pattern(t * 100 + i, 500_000));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("writer thread");
        }
        let mut shared = Vec::new();
        for n in 0..24u64 {
            apply(&mut shared, n * chunk, &pattern(1000 + n, chunk as usize));
        }
        let mut own: Vec<Vec<u8>> = vec![Vec::new(); 6];
        for (t, m) in own.iter_mut().enumerate() {
            for i in 0..4u64 {
                apply(m, i * 777_777, &pattern(t as u64 * 100 + i, 500_000));
            }
        }
        let mut map = ExtentMap::new();
        assert_eq!(read_vec(&fd, 100, &map, 0, shared.len()), shared);
        // Concurrent syncs of different files.
        let syncs: Vec<_> = (0..6u64)
            .map(|t| {
                let fd = fd.clone();
                std::thread::spawn(move || {
                    let mut m = ExtentMap::new();
                    fd.sync(t, &mut m).map(|_| m)
                })
            })
            .collect();
        let maps: Vec<ExtentMap> = syncs
            .into_iter()
            .map(|s| s.join().expect("join").expect("sync"))
            .collect();
        fd.sync(100, &mut map).expect("sync");
        drop(fd);
        let fd = fx.driver(cache);
        assert_eq!(
            read_vec(&fd, 100, &map, 0, shared.len()),
            shared,
            "cache {cache}"
        );
        for t in 0..6 {
            assert_eq!(read_vec(&fd, t as u64, &maps[t], 0, own[t].len()), own[t]);
        }
    }
}

/// Many threads read and write the same extents at once (a torture test of the locking: every
/// read sees whole writes of one writer for each aligned 4 KiB block).
#[test]
fn concurrent_same_extent_readers_and_writers() {
    let fx = Fixture::local();
    let fd = Arc::new(fx.driver(MIB + MIB / 2));
    let mut map = ExtentMap::new();
    fd.write(1, &map, 0, &vec![0u8; (3 * MIB) as usize])
        .expect("write");
    fd.sync(1, &mut map).expect("sync");
    let map = Arc::new(map);
    let threads: Vec<_> = (1..=6u8)
        .map(|t| {
            let (fd, map) = (fd.clone(), map.clone());
            std::thread::spawn(move || {
                for i in 0..40u64 {
                    let block = (i * 7 + u64::from(t) * 13) % 768;
                    fd.write(1, &map, block * 4096, &[t; 4096]).expect("write");
                    let mut buf = vec![0u8; 4096];
                    let other = (i * 11 + u64::from(t)) % 768;
                    fd.read(1, &map, other * 4096, &mut buf).expect("read");
                    assert!(buf.iter().all(|b| *b == buf[0]), "a torn 4 KiB block");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
}

#[derive(Debug, Clone)]
enum Op {
    Write(u64, usize, u64),
    Read(u64, usize),
    Truncate(u64),
    Sync,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let off = prop_oneof![
        0..4 * MIB,
        (0..4u64).prop_map(|i| i * MIB),
        (1..4u64).prop_map(|i| i * MIB - 1)
    ];
    prop_oneof![
        4 => (off.clone(), 1..300_000usize, any::<u64>()).prop_map(|(o, l, s)| Op::Write(o, l, s)),
        2 => (off.clone(), 1..2_500_000usize).prop_map(|(o, l)| Op::Read(o, l)),
        1 => off.prop_map(Op::Truncate),
        2 => Just(Op::Sync),
        1 => Just(Op::Reopen),
    ]
}

/// Runs random operations against the driver and a `Vec<u8>` model. The harness plays the
/// engine: it keeps size and map, persists them at `sync` and at `truncate` (then deletes the
/// cut extents). `Reopen` drops the driver (and its cache) and opens a new one: only what was
/// persisted survives, and it must equal the model as of then.
fn run_model(ops: Vec<Op>, cache_bytes: u64, reopen: bool) {
    let fx = Fixture::local();
    let mut fd = fx.driver(cache_bytes);
    let file = 42;
    let mut map = ExtentMap::new();
    let mut model: Vec<u8> = Vec::new();
    // What a restart sees: the content as persisted, and the persisted map.
    let mut durable: Vec<u8> = Vec::new();
    let mut durable_map = ExtentMap::new();
    for op in ops {
        match op {
            Op::Write(off, len, seed) => {
                let data = pattern(seed, len);
                fd.write(file, &map, off, &data).expect("write");
                apply(&mut model, off, &data);
            }
            Op::Read(off, len) => {
                // The caller clamps at its size.
                let end = (off as usize + len).min(model.len());
                let start = (off as usize).min(end);
                let got = read_vec(&fd, file, &map, start as u64, end - start);
                assert_eq!(got, model[start..end], "read {start}..{end}");
            }
            Op::Truncate(size) => {
                let removed = fd
                    .truncate(file, &mut map, size, &mut no_journal)
                    .expect("truncate");
                assert!(
                    removed.iter().all(|(i, g)| map.get(i) != Some(g)),
                    "the map names no removed version"
                );
                model.resize(size as usize, 0);
                // Persisted with the new size: the tail extent went up with the truncate.
                durable.resize(size as usize, 0);
                let tail = ((size / MIB) * MIB) as usize;
                durable[tail..].copy_from_slice(&model[tail..]);
                durable_map = map.clone();
                fd.delete_extents(file, &removed).expect("delete extents");
            }
            Op::Sync => {
                fd.sync(file, &mut map).expect("sync");
                assert!(!fd.has_dirty(file));
                durable = model.clone();
                durable_map = map.clone();
            }
            Op::Reopen if reopen => {
                drop(fd);
                fd = fx.driver(cache_bytes);
                map = durable_map.clone();
                model = durable.clone();
                assert_eq!(
                    read_vec(&fd, file, &map, 0, model.len()),
                    model,
                    "after reopen"
                );
            }
            Op::Reopen => {}
        }
        // The map never names an extent past the end.
        if let Some((last, _)) = map.last_key_value() {
            assert!(
                *last < (model.len() as u64).div_ceil(MIB).max(1),
                "map {map:?} past size {}",
                model.len()
            );
        }
    }
    assert_eq!(
        read_vec(&fd, file, &map, 0, model.len()),
        model,
        "final content"
    );
    fd.sync(file, &mut map).expect("final sync");
    drop(fd);
    let fd = fx.driver(cache_bytes);
    assert_eq!(
        read_vec(&fd, file, &map, 0, model.len()),
        model,
        "final content after reopen"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Large cache (no write-back): restarts see exactly the last persisted state.
    #[test]
    fn matches_model_with_reopen(ops in proptest::collection::vec(op(), 1..40)) {
        run_model(ops, 64 * MIB, true);
    }

    /// Tiny cache: constant eviction and write-back; every read equals the model.
    #[test]
    fn matches_model_under_eviction(ops in proptest::collection::vec(op(), 1..40)) {
        run_model(ops, 2 * MIB, false);
    }
}

/// Writers, readers and syncs of the same files at once, with a cache smaller than the data
/// (constant write-back and eviction), the map behind a read-write lock as the engine keeps
/// it. Every block ends as its last write, in the cache and after sync + reopen; no deadlock.
#[test]
fn stress_writes_reads_syncs_under_eviction() {
    let fx = Fixture::local();
    let fd = Arc::new(fx.driver(3 * MIB));
    let files = 2u64;
    let blocks = 512u64; // 4 KiB blocks per file: 2 MiB per file
    let threads = 4u64;
    let rounds = 6u64;
    let maps: Arc<Vec<parking_lot::RwLock<ExtentMap>>> = Arc::new(
        (0..files)
            .map(|_| parking_lot::RwLock::new(ExtentMap::new()))
            .collect(),
    );
    let block = |t: u64, r: u64, b: u64| pattern(t << 40 | r << 20 | b, 4096);
    let stop = Arc::new(AtomicBool::new(false));
    let syncer = {
        let (fd, maps, stop) = (fd.clone(), maps.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                for f in 0..files {
                    let mut map = maps[f as usize].write();
                    fd.sync(f, &mut map).expect("sync");
                }
                n += 1;
            }
            n
        })
    };
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (fd, maps) = (fd.clone(), maps.clone());
            std::thread::spawn(move || {
                for r in 0..rounds {
                    for f in 0..files {
                        // Thread t owns blocks b with b % threads == t, striding 37 blocks.
                        for k in 0..(blocks / threads / 8) {
                            let b = ((k * 37 * threads + t) % blocks) / threads * threads + t;
                            let map = maps[f as usize].read();
                            fd.write(f, &map, b * 4096, &block(t, r, b)).expect("write");
                            let mut buf = vec![0u8; 4096];
                            fd.read(f, &map, b * 4096, &mut buf).expect("read");
                            assert_eq!(buf, block(t, r, b), "own block reads back");
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    stop.store(true, Ordering::SeqCst);
    let syncs = syncer.join().expect("syncer");
    assert!(syncs > 0);
    // The expected content: the last round's write of each block that was written.
    let mut want: Vec<Vec<u8>> = vec![vec![0u8; (blocks * 4096) as usize]; files as usize];
    for t in 0..threads {
        for k in 0..(blocks / threads / 8) {
            let b = ((k * 37 * threads + t) % blocks) / threads * threads + t;
            for w in want.iter_mut() {
                w[(b * 4096) as usize..((b + 1) * 4096) as usize].copy_from_slice(&block(
                    t,
                    rounds - 1,
                    b,
                ));
            }
        }
    }
    for f in 0..files {
        let map = maps[f as usize].read();
        assert_eq!(
            read_vec(&fd, f, &map, 0, want[f as usize].len()),
            want[f as usize]
        );
    }
    for f in 0..files {
        let mut map = maps[f as usize].write();
        fd.sync(f, &mut map).expect("sync");
    }
    assert!(
        fd.cache_stats().bytes <= 2 * MIB + MIB,
        "{:?}",
        fd.cache_stats()
    );
    drop(fd);
    let fd = fx.driver(3 * MIB);
    for f in 0..files {
        let map = maps[f as usize].read();
        assert_eq!(
            read_vec(&fd, f, &map, 0, want[f as usize].len()),
            want[f as usize],
            "after reopen"
        );
    }
}
