//! Tests of the volume registry: its upload pipeline (the one that ships) and deletion.
//!
//! Defect 4 of issue 10: a volume deletion raced every other path that opens volumes (the
//! flush of all volumes behind `strata sync --wait`, reopening at start, a client's access).
//! It removed the volume from the registry, waited for its pipeline and destroyed its files
//! without holding the volume's open gate, so a second `Volume` could be opened on the same
//! directory, or the volume restored from the backend and uploaded again after its deletion.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_backend::{Call, Hook, HookedStore, MemStore, ObjectStore};

use crate::error::Error;
use crate::registry::{RegistryConfig, VolumeRegistry};
use crate::types::Timestamp;
use crate::volume::VolumeOptions;

/// Holds the next PUT until the test releases it; while `down`, every call fails.
#[derive(Debug, Default)]
struct HoldPut {
    hold: parking_lot::Mutex<Option<std::sync::mpsc::Sender<tokio::sync::oneshot::Sender<()>>>>,
    down: std::sync::atomic::AtomicBool,
    failed: std::sync::atomic::AtomicU64,
}

#[async_trait::async_trait]
impl Hook for HoldPut {
    async fn before(&self, call: &Call<'_>) -> strata_backend::Result<()> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.down.load(SeqCst) {
            self.failed.fetch_add(1, SeqCst);
            return Err(strata_backend::Error::Io {
                key: String::new(),
                source: std::io::Error::other("injected: the backend is down"),
            });
        }
        if matches!(call, Call::Put { .. }) {
            let hold = self.hold.lock().take();
            if let Some(tx) = hold {
                let (release, released) = tokio::sync::oneshot::channel();
                let _ = tx.send(release);
                let _ = released.await;
            }
        }
        Ok(())
    }
}

fn poll_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn registry(
    dir: &Path,
    base: Arc<dyn ObjectStore>,
    rt: &tokio::runtime::Runtime,
) -> VolumeRegistry {
    let cfg = RegistryConfig {
        dir: dir.join("volumes"),
        opts: VolumeOptions {
            sco_clusters: 16,
            tlog_scos: 2,
            checkpoint_tlogs: 64,
        },
        // Every pass seals and uploads what was written (passes run every 100 ms).
        max_age: Duration::from_millis(1),
        fs: None,
        write_buffer: 1 << 40,
        throttle_start: 50,
        stall_timeout: Duration::from_secs(60),
        sco_cache_size: 0,
        cluster_cache_size: 0,
        map_cache_size: 1 << 20,
        scrub: crate::volume::scrub::ScrubOptions {
            threshold: 0.75,
            grace: Duration::ZERO,
            bandwidth: 0,
        },
        scrub_interval: Duration::ZERO,
        zero_detect: true,
        epoch: 1,
    };
    VolumeRegistry::new(cfg, 1, base, rt.handle().clone(), Default::default())
}

/// The deletion holds the volume's gate from start to end: a concurrent open waits for it and
/// then finds the volume deleted; nothing is uploaded after the deletion, and nothing of the
/// volume is left locally or on the backend.
#[test]
fn a_volume_being_deleted_is_never_opened_again() {
    let t = tempfile::tempdir().expect("tempdir");
    let rt = crate::runtime::build().expect("runtime");
    let store = Arc::new(HookedStore::new(
        Arc::new(MemStore::new()),
        HoldPut::default(),
    ));
    let vols = Arc::new(registry(t.path(), store.clone(), &rt));
    let v = vols.open_or_create(2, 0, true).expect("create");
    let (tx, held) = std::sync::mpsc::channel();
    *store.hook().hold.lock() = Some(tx);
    v.volume().write(0, &[7u8; 3 * 4096], false).expect("write");
    drop(v);
    // The pipeline's next pass uploads it: its first PUT is held, the pass is in flight.
    let release = held
        .recv_timeout(Duration::from_secs(30))
        .expect("a pipeline pass started uploading");
    let deleter = {
        let vols = vols.clone();
        std::thread::spawn(move || vols.delete(2))
    };
    // The deletion took the volume out of the registry and waits for the pass in flight.
    poll_until("the deletion has started", || vols.get(2).is_none());
    let opener = {
        let vols = vols.clone();
        std::thread::spawn(move || vols.open_or_create(2, 0, false).map(|_| ()))
    };
    let _ = release.send(());
    deleter.join().expect("deleter").expect("delete");
    let opened = opener.join().expect("opener");
    assert!(
        matches!(opened, Err(Error::Stale)),
        "a volume being deleted was opened again: {opened:?}"
    );
    vols.finish_deletions().expect("finish deletions");
    assert!(
        vols.get(2).is_none(),
        "the deleted volume is in the registry"
    );
    let left = rt
        .block_on(store.list("volumes/", None, 1000))
        .expect("list");
    assert!(
        left.objects.is_empty(),
        "objects of the deleted volume are on the backend: {:?}",
        left.objects.iter().map(|o| &o.key).collect::<Vec<_>>()
    );
    let local = t.path().join("volumes").join(format!("{:016x}", 2));
    assert!(!local.exists(), "local files of the deleted volume remain");
    // Later accesses (a flush of all volumes, a client holding an old handle) find it deleted.
    assert!(matches!(
        vols.open_or_create(2, 0, false),
        Err(Error::Stale)
    ));
    vols.stop_all();
}

/// The shipped upload loop retries with backoff while the backend is down, loses nothing
/// meanwhile, and drains everything once it is back: a registry started on the backend alone
/// then reads every byte.
#[test]
fn the_pipeline_retries_and_drains_once_the_backend_is_back() {
    use std::sync::atomic::Ordering::SeqCst;
    let t = tempfile::tempdir().expect("tempdir");
    let rt = crate::runtime::build().expect("runtime");
    let mem = Arc::new(MemStore::new());
    let store = Arc::new(HookedStore::new(mem.clone(), HoldPut::default()));
    let vols = registry(t.path(), store.clone(), &rt);
    let v = vols.open_or_create(2, 0, true).expect("create");
    store.hook().down.store(true, SeqCst);
    let data: Vec<u8> = (0..40 * 4096u32).map(|i| (i % 251) as u8).collect();
    v.volume().write(4096 + 100, &data, false).expect("write");
    v.volume().sync().expect("commit");
    // At least three passes failed: the loop retries (with backoff) rather than giving up.
    poll_until("three failed passes", || {
        store.hook().failed.load(SeqCst) >= 3
    });
    let listed = rt.block_on(mem.list("volumes/", None, 10)).expect("list");
    assert!(
        listed.objects.is_empty(),
        "nothing reached the backend while it was down"
    );
    store.hook().down.store(false, SeqCst);
    poll_until("the pipeline drained", || {
        vols.info(&v).pending_backend_bytes == 0
    });
    vols.stop_all();
    drop(v);
    drop(vols);
    // A registry with empty local state restores the volume from the backend alone.
    let t2 = tempfile::tempdir().expect("tempdir");
    let vols2 = registry(t2.path(), store.clone(), &rt);
    let v2 = vols2.open_or_create(2, 0, false).expect("restore");
    let mut got = vec![0u8; data.len()];
    assert_eq!(
        v2.volume().read(4096 + 100, &mut got).expect("read"),
        data.len()
    );
    assert!(
        got == data,
        "the drained volume reads back from the backend"
    );
    vols2.stop_all();
}

/// Delays every PUT: a backend slower than the writer.
#[derive(Debug)]
struct SlowPuts(Duration);

#[async_trait::async_trait]
impl Hook for SlowPuts {
    async fn before(&self, call: &Call<'_>) -> strata_backend::Result<()> {
        if matches!(call, Call::Put { .. }) {
            tokio::time::sleep(self.0).await;
        }
        Ok(())
    }
}

fn paced_registry(
    dir: &Path,
    base: Arc<dyn ObjectStore>,
    rt: &tokio::runtime::Runtime,
    write_buffer: u64,
    stall: Duration,
) -> Arc<VolumeRegistry> {
    paced_registry_with(dir, base, rt, write_buffer, stall, |_| {})
}

fn paced_registry_with(
    dir: &Path,
    base: Arc<dyn ObjectStore>,
    rt: &tokio::runtime::Runtime,
    write_buffer: u64,
    stall: Duration,
    tweak: impl FnOnce(&mut RegistryConfig),
) -> Arc<VolumeRegistry> {
    let mut cfg = RegistryConfig {
        dir: dir.join("volumes"),
        opts: VolumeOptions {
            sco_clusters: 16,
            tlog_scos: 2,
            checkpoint_tlogs: 64,
        },
        max_age: Duration::from_millis(1),
        fs: None,
        write_buffer,
        throttle_start: 50,
        stall_timeout: stall,
        sco_cache_size: 0,
        cluster_cache_size: 0,
        map_cache_size: 1 << 20,
        scrub: crate::volume::scrub::ScrubOptions {
            threshold: 0.75,
            grace: Duration::ZERO,
            bandwidth: 0,
        },
        scrub_interval: Duration::ZERO,
        zero_detect: true,
        epoch: 1,
    };
    tweak(&mut cfg);
    Arc::new(VolumeRegistry::new(
        cfg,
        1,
        base,
        rt.handle().clone(),
        Default::default(),
    ))
}

/// Volume 2 of a registry with a `buf` write buffer whose backend takes 15 ms per PUT (slower
/// than a writer).
fn slow_backend_volume(
    dir: &Path,
    rt: &tokio::runtime::Runtime,
    buf: u64,
) -> (Arc<VolumeRegistry>, Arc<crate::registry::OpenVolume>) {
    let store = Arc::new(HookedStore::new(
        Arc::new(MemStore::new()),
        SlowPuts(Duration::from_millis(15)),
    ));
    let vols = paced_registry(dir, store, rt, buf, Duration::from_secs(60));
    let v = vols.open_or_create(2, 0, true).expect("create");
    (vols, v)
}

/// Issue 11: a writer faster than the backend is paced, not refused: 4x the write buffer goes
/// through with no error, writes waited once the backlog crossed the soft mark, and the
/// backlog never went past the hard mark by more than one write.
#[test]
fn a_writer_faster_than_the_backend_is_paced_and_never_refused() {
    use crate::data::ObjectData;
    const BUF: u64 = 2 << 20;
    const PIECE: usize = 128 << 10;
    let t = tempfile::tempdir().expect("tempdir");
    let rt = crate::runtime::build().expect("runtime");
    let (vols, v) = slow_backend_volume(t.path(), &rt, BUF);
    let obj = crate::registry::VolumeObject::new(v.clone(), &vols);
    let total = 4 * BUF as usize;
    let data: Vec<u8> = (0..total).map(|i| (i % 253) as u8).collect();
    // The backlog as measured from the files (not the estimate the writes were admitted by),
    // sampled all along.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (vols, v, done) = (vols.clone(), v.clone(), done.clone());
        std::thread::spawn(move || {
            let mut peak = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                peak = peak.max(vols.info(&v).pending_backend_bytes);
                std::thread::sleep(Duration::from_millis(2));
            }
            peak
        })
    };
    for (i, piece) in data.chunks(PIECE).enumerate() {
        obj.write((i * PIECE) as u64, piece, Timestamp::default())
            .unwrap_or_else(|e| panic!("write {i} refused: {e}"));
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let measured_peak = sampler.join().expect("sampler");
    let info = vols.info(&v);
    assert!(info.writes_paced > 0, "no write was paced: {info:?}");
    assert_eq!(info.writes_refused, 0);
    // The peak the volume reports (what the management API shows). The sampled measurement
    // may miss a short peak, so it only bounds the backlog from above (next assertion): under
    // load, pacing keeps the files' backlog near the soft mark, and a 2 ms sampler saw
    // 0.94 MiB of a 1 MiB soft mark while the peak was 1.8 MiB.
    assert!(
        info.peak_backlog > BUF / 2,
        "the soft mark was never crossed (measured peak {measured_peak}): {info:?}"
    );
    assert!(
        measured_peak <= BUF,
        "the backlog went past the hard mark: measured {measured_peak}, {info:?}"
    );
    vols.flush(&v).expect("flush");
    let mut got = vec![0u8; total];
    assert_eq!(v.volume().read(0, &mut got).expect("read"), total);
    assert!(got == data);
    vols.stop_all();
}

/// The upload follows the log: a TLog's close starts a pipeline pass at once, instead of at the
/// next tick (every `SCO_Max_Age / 4`, up to 5 s). Before, a fast writer filled the write
/// buffer's soft mark between two ticks with data the backend could have taken, and was paced
/// by an upload rate that had never been measured (1 MiB/s).
#[test]
fn a_closed_tlog_is_uploaded_without_waiting_for_the_pipeline_tick() {
    use crate::data::ObjectData;
    let t = tempfile::tempdir().expect("tempdir");
    let rt = crate::runtime::build().expect("runtime");
    let store: Arc<dyn ObjectStore> = Arc::new(MemStore::new());
    // SCO_Max_Age 1 h: a pipeline tick every 5 s.
    let vols = paced_registry_with(
        t.path(),
        store,
        &rt,
        64 << 20,
        Duration::from_secs(60),
        |c| c.max_age = Duration::from_secs(3600),
    );
    let v = vols.open_or_create(2, 0, true).expect("create");
    let obj = crate::registry::VolumeObject::new(v.clone(), &vols);
    // Two SCOs of 16 clusters close TLog 1 (the second SCO is sealed by the first cluster
    // after it).
    let data = vec![0x33u8; 33 * 4096];
    let t0 = std::time::Instant::now();
    obj.write(0, &data, Timestamp::default()).expect("write");
    // Everything but the open TLog's one cluster goes up; bounded well below the 5 s tick.
    let deadline = t0 + Duration::from_millis(2500);
    loop {
        let pending = v.volume().bytes_not_on_backend();
        if pending <= 4096 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "TLog 1 still not on the backend after {:?}: {pending} bytes pending",
            t0.elapsed()
        );
        std::thread::yield_now();
    }
    vols.stop_all();
}

/// Zeros are not backlog: with `Zero_Detect` on, whole clusters of zeros are unmapped (one TLog
/// entry, nothing for the backend to take), so writing them is never paced, however much of
/// them goes by: over holes, and over data (once that data is on the backend). Before, each
/// such write reserved its whole length, and a guest writing zeros (an image import, a disk
/// being zeroed) was held to the upload rate of data that did not exist.
#[test]
fn writing_zeros_is_never_paced() {
    use crate::data::ObjectData;
    const BUF: u64 = 2 << 20;
    const PIECE: usize = 128 << 10;
    let t = tempfile::tempdir().expect("tempdir");
    let rt = crate::runtime::build().expect("runtime");
    let (vols, v) = slow_backend_volume(t.path(), &rt, BUF);
    let obj = crate::registry::VolumeObject::new(v.clone(), &vols);
    let total = 4 * BUF as usize;
    // Data over the first half, on the backend before the zeros come.
    let data = vec![0x5au8; total / 2];
    for (i, piece) in data.chunks(PIECE).enumerate() {
        obj.write((i * PIECE) as u64, piece, Timestamp::default())
            .expect("write");
    }
    vols.flush(&v).expect("flush");
    let before = vols.info(&v).writes_paced;
    let zeros = vec![0u8; PIECE];
    for i in 0..total / PIECE {
        obj.write((i * PIECE) as u64, &zeros, Timestamp::default())
            .expect("write zeros");
    }
    let info = vols.info(&v);
    assert_eq!(
        info.writes_paced - before,
        0,
        "writes of zeros were paced: {info:?}"
    );
    let mut got = vec![1u8; total];
    assert_eq!(v.volume().read(0, &mut got).expect("read"), total);
    assert!(got.iter().all(|b| *b == 0));
    vols.stop_all();
}

/// Issue 11: with the backend down, writes go on (paced) up to the hard mark; there they wait,
/// and only once the backend made no progress for `Backend_Stall_Timeout` are they answered
/// `Delay`; when the backend is back, writes resume and nothing is lost.
#[test]
fn a_stalled_backend_refuses_writes_only_at_the_hard_mark_after_the_stall_timeout() {
    use crate::data::ObjectData;
    use std::sync::atomic::Ordering::SeqCst;
    const BUF: u64 = 1 << 20;
    const PIECE: usize = 64 << 10;
    let t = tempfile::tempdir().expect("tempdir");
    let rt = crate::runtime::build().expect("runtime");
    let store = Arc::new(HookedStore::new(
        Arc::new(MemStore::new()),
        HoldPut::default(),
    ));
    store.hook().down.store(true, SeqCst);
    let stall = Duration::from_millis(300);
    let vols = paced_registry(t.path(), store.clone(), &rt, BUF, stall);
    let v = vols.open_or_create(2, 0, true).expect("create");
    let obj = crate::registry::VolumeObject::new(v.clone(), &vols);
    let mut written = 0u64;
    let mut refused_after = None;
    for i in 0..64u64 {
        let piece = vec![i as u8 + 1; PIECE];
        let began = Instant::now();
        match obj.write(i * PIECE as u64, &piece, Timestamp::default()) {
            Ok(()) => {
                written += PIECE as u64;
                // Committed on local durability, backend or not.
                v.volume().sync().expect("commit");
            }
            Err(Error::Delay) => {
                // The refused write itself waited at the hard mark for the stall timeout.
                assert!(
                    began.elapsed() >= stall,
                    "refused after {:?}, before the stall timeout",
                    began.elapsed()
                );
                refused_after = Some(written);
                break;
            }
            Err(e) => panic!("write {i}: {e}"),
        }
    }
    let refused_after = refused_after.expect("the full buffer was never refused");
    // Refused only when it did not fit under the hard mark (the backlog counts SCO and TLog
    // bytes too: the hard mark is reached with a little less data).
    let info = vols.info(&v);
    // (Nothing was uploaded since: what is pending now is what the refused write saw.)
    assert!(
        info.pending_backend_bytes + PIECE as u64 > BUF
            && info.peak_backlog <= BUF
            && refused_after >= BUF * 3 / 4,
        "refused below the hard mark, after {refused_after} bytes: {info:?}"
    );
    assert_eq!(info.writes_refused, 1);
    store.hook().down.store(false, SeqCst);
    let next = vec![0xeeu8; PIECE];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match obj.write(written, &next, Timestamp::default()) {
            Ok(()) => break,
            // A client's retry after DELAY, a little later.
            Err(Error::Delay) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("after the backend came back: {e}"),
        }
    }
    vols.flush(&v).expect("flush");
    for i in 0..written / PIECE as u64 {
        let mut b = vec![0u8; PIECE];
        v.volume().read(i * PIECE as u64, &mut b).expect("read");
        assert!(b.iter().all(|x| *x == i as u8 + 1), "piece {i} lost");
    }
    vols.stop_all();
}

/// Counts PUTs in flight (each held a little), and checks that a TLog is never sent while a
/// SCO upload is still in flight.
#[derive(Debug, Default)]
struct Concurrency {
    in_flight: std::sync::atomic::AtomicU64,
    scos_in_flight: std::sync::atomic::AtomicU64,
    max: std::sync::atomic::AtomicU64,
    tlog_with_scos_in_flight: std::sync::atomic::AtomicU64,
}

#[async_trait::async_trait]
impl Hook for Concurrency {
    async fn before(&self, call: &Call<'_>) -> strata_backend::Result<()> {
        use std::sync::atomic::Ordering::SeqCst;
        if let Call::Put { key, .. } = call {
            if key.starts_with("tlog/") && self.scos_in_flight.load(SeqCst) > 0 {
                self.tlog_with_scos_in_flight.fetch_add(1, SeqCst);
            }
            let sco = key.starts_with("sco/");
            let now = self.in_flight.fetch_add(1, SeqCst) + 1;
            self.max.fetch_max(now, SeqCst);
            if sco {
                self.scos_in_flight.fetch_add(1, SeqCst);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            if sco {
                self.scos_in_flight.fetch_sub(1, SeqCst);
            }
            self.in_flight.fetch_sub(1, SeqCst);
        }
        Ok(())
    }
}

/// Issue 11: a TLog's SCOs are uploaded several at a time, all before the TLog that names them
/// (and the manifest after the TLogs); the volume restores from what was uploaded.
#[test]
fn a_tlogs_scos_go_up_in_parallel_and_before_it() {
    use std::sync::atomic::Ordering::SeqCst;
    let rt = crate::runtime::build().expect("runtime");
    let store = Arc::new(HookedStore::new(
        Arc::new(MemStore::new()),
        Concurrency::default(),
    ));
    let fs: Arc<dyn crate::volume::LocalFs> = Arc::new(crate::volume::SimFs::new());
    let opts = VolumeOptions {
        sco_clusters: 16,
        tlog_scos: 8,
        checkpoint_tlogs: 64,
    };
    let dir = std::path::PathBuf::from("/v");
    let id = crate::volume::VolumeId([7; 16]);
    let vol = crate::volume::Volume::create(fs, &dir, id, opts, 0).expect("create");
    let data: Vec<u8> = (0..24 * 16 * 4096u32).map(|i| (i % 249) as u8).collect();
    vol.write(0, &data, false).expect("write");
    let rep = rt.block_on(vol.backup(&*store, true)).expect("backup");
    assert_eq!(rep.scos, 24);
    let h = store.hook();
    assert!(h.max.load(SeqCst) > 1, "one PUT at a time");
    assert_eq!(
        h.tlog_with_scos_in_flight.load(SeqCst),
        0,
        "a TLog was sent before its SCOs were on the backend"
    );
    let restored = rt
        .block_on(crate::volume::Volume::restore(
            &*store,
            Arc::new(crate::volume::SimFs::new()),
            &dir,
            id,
            opts,
        ))
        .expect("restore");
    restored.set_backend(store.clone(), rt.handle().clone(), 1);
    let mut got = vec![0u8; data.len()];
    assert_eq!(restored.read(0, &mut got).expect("read"), data.len());
    assert!(got == data);
}

/// Issue 11 review: a write buffer smaller than a TLog. The backlog is then all in the open
/// TLog, which the pipeline used to upload only at SCO_Max_Age: writers at the hard mark waited
/// with a healthy backend, and were refused once the stall timeout passed. Above the soft mark
/// with nothing closed to upload, the pipeline now closes the open TLog.
#[test]
fn a_write_buffer_smaller_than_a_tlog_never_stalls_a_healthy_backend() {
    use crate::data::ObjectData;
    const BUF: u64 = 1 << 20;
    const PIECE: usize = 64 << 10;
    let t = tempfile::tempdir().expect("tempdir");
    let rt = crate::runtime::build().expect("runtime");
    let store: Arc<dyn ObjectStore> = Arc::new(MemStore::new());
    let vols = paced_registry_with(t.path(), store, &rt, BUF, Duration::from_secs(2), |c| {
        // A TLog of 4 MiB (64 SCOs of 64 KiB), four times the write buffer; a maximum age
        // much longer than the stall timeout.
        c.opts.tlog_scos = 64;
        c.max_age = Duration::from_secs(600);
    });
    let v = vols.open_or_create(2, 0, true).expect("create");
    let obj = crate::registry::VolumeObject::new(v.clone(), &vols);
    let total = 4 * BUF as usize;
    let data: Vec<u8> = (0..total).map(|i| (i % 241) as u8).collect();
    for (i, piece) in data.chunks(PIECE).enumerate() {
        obj.write((i * PIECE) as u64, piece, Timestamp::default())
            .unwrap_or_else(|e| panic!("write {i} refused with a healthy backend: {e}"));
    }
    let info = vols.info(&v);
    assert_eq!(info.writes_refused, 0, "{info:?}");
    assert!(info.writes_paced > 0, "the buffer never filled: {info:?}");
    let mut got = vec![0u8; total];
    assert_eq!(v.volume().read(0, &mut got).expect("read"), total);
    assert!(got == data);
    vols.stop_all();
}

/// Fails every PUT of the manifest (SCOs and TLogs go up).
#[derive(Debug, Default)]
struct ManifestFails(std::sync::atomic::AtomicU64);

#[async_trait::async_trait]
impl Hook for ManifestFails {
    async fn before(&self, call: &Call<'_>) -> strata_backend::Result<()> {
        if let Call::Put { key, .. } = call {
            if key.ends_with("manifest.xml") {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                return Err(strata_backend::Error::Io {
                    key: key.to_string(),
                    source: std::io::Error::other("injected: the manifest PUT fails"),
                });
            }
        }
        Ok(())
    }
}

/// Writes pieces of `piece` bytes (piece `i` filled with the byte `i`) from piece `first` on,
/// until one is refused with DELAY or `limit` bytes are reached; returns the bytes written and
/// whether a write was refused. Any other error fails the test.
fn write_until_refused(
    obj: &crate::registry::VolumeObject,
    first: u64,
    piece: usize,
    limit: u64,
) -> (u64, bool) {
    use crate::data::ObjectData;
    let mut written = 0;
    for i in first..limit / piece as u64 {
        match obj.write(
            i * piece as u64,
            &vec![i as u8; piece],
            Timestamp::default(),
        ) {
            Ok(()) => written += piece as u64,
            Err(Error::Delay) => return (written, true),
            Err(e) => panic!("write {i}: {e}"),
        }
    }
    (written, false)
}

/// Issue 11 review: a pass that fails at the manifest sends the same SCOs and TLogs again at
/// every retry. That is not progress: counted as such, a backend that never accepts the
/// manifest never looked stalled and the estimate fell by each re-upload, so writes went on
/// past the hard mark. Each object now counts once: the buffer fills and, after the stall
/// timeout, writes are refused.
#[test]
fn re_uploads_after_a_failed_manifest_are_not_progress() {
    const BUF: u64 = 1 << 20;
    const PIECE: usize = 64 << 10;
    let t = tempfile::tempdir().expect("tempdir");
    let rt = crate::runtime::build().expect("runtime");
    let store = Arc::new(HookedStore::new(
        Arc::new(MemStore::new()),
        ManifestFails::default(),
    ));
    let stall = Duration::from_millis(500);
    let vols = paced_registry(t.path(), store.clone(), &rt, BUF, stall);
    let v = vols.open_or_create(2, 0, true).expect("create");
    let obj = crate::registry::VolumeObject::new(v.clone(), &vols);
    let (written, refused) = write_until_refused(&obj, 0, PIECE, 8 * BUF);
    let info = vols.info(&v);
    assert!(
        refused,
        "8x the buffer written without a refusal though no manifest was ever accepted: {info:?}"
    );
    assert!(
        store.hook().0.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "the manifest PUT was not retried"
    );
    assert!(
        written <= BUF && info.pending_backend_bytes <= BUF,
        "the backlog went past the hard mark: {written} written, {info:?}"
    );
    vols.stop_all();
}

/// Issue 11 review: a truncate is paced like a write. A shrink to a partial cluster rewrites
/// that cluster; unreserved, truncates could take the files past the hard mark. At the hard mark
/// with the backend stalled, it is refused (DELAY) and changes nothing.
#[test]
fn a_truncate_at_the_hard_mark_with_the_backend_stalled_is_refused() {
    use crate::data::{Commit, ObjectData};
    const BUF: u64 = 1 << 20;
    const PIECE: usize = 64 << 10;
    let t = tempfile::tempdir().expect("tempdir");
    let rt = crate::runtime::build().expect("runtime");
    let store = Arc::new(HookedStore::new(
        Arc::new(MemStore::new()),
        ManifestFails::default(),
    ));
    let vols = paced_registry(t.path(), store, &rt, BUF, Duration::from_millis(300));
    let v = vols.open_or_create(2, 0, true).expect("create");
    let obj = crate::registry::VolumeObject::new(v.clone(), &vols);
    let (end, refused) = write_until_refused(&obj, 0, PIECE, 8 * BUF);
    assert!(refused, "never refused");
    // Each shrink to a partial cluster rewrites it (a whole cluster appended): unpaced, enough
    // of them would take the files past the hard mark.
    let mut persist = |_: &Commit| Ok(());
    let mut size = end;
    let mut refused = false;
    for _ in 0..400 {
        let want = size - 100;
        match obj.truncate(want, &mut persist) {
            Ok(()) => size = want,
            Err(Error::Delay) => {
                refused = true;
                break;
            }
            Err(e) => panic!("truncate to {want}: {e}"),
        }
    }
    assert!(refused, "400 truncates at the hard mark, none refused");
    assert_eq!(v.vol.size(), size, "a refused truncate changed the size");
    let info = vols.info(&v);
    assert!(
        info.pending_backend_bytes <= BUF,
        "truncates took the backlog past the hard mark: {info:?}"
    );
    vols.stop_all();
}

/// Issue 11 review: a volume reopened while the backend is unreachable does not know the
/// manifest, and counted every local SCO (uploaded long ago, kept in the SCO cache) as backlog,
/// so its first writes met a full buffer. What its MetaDataStore applied is on the backend.
#[test]
fn a_volume_reopened_with_the_backend_down_counts_only_what_it_did_not_upload() {
    use std::sync::atomic::Ordering::SeqCst;
    const BUF: u64 = 1 << 20;
    let t = tempfile::tempdir().expect("tempdir");
    let rt = crate::runtime::build().expect("runtime");
    let store = Arc::new(HookedStore::new(
        Arc::new(MemStore::new()),
        HoldPut::default(),
    ));
    // The first registry runs on its own runtime, shut down (its tasks dropped, their volumes
    // closed, redb's files written to the end) before another registry opens the same files:
    // one process never has a volume's mds.redb open twice.
    let rt1 = crate::runtime::build().expect("runtime");
    let first = {
        let vols = paced_registry(
            t.path(),
            store.clone(),
            &rt1,
            4 * BUF,
            Duration::from_secs(60),
        );
        let v = vols.open_or_create(2, 0, true).expect("create");
        v.volume()
            .write(0, &vec![5u8; 2 * BUF as usize], false)
            .expect("write");
        vols.flush(&v).expect("flush");
        assert_eq!(vols.info(&v).pending_backend_bytes, 0);
        vols.stop_all();
        // The pipeline holds the Volume itself (not the registry's OpenVolume).
        Arc::downgrade(v.volume())
    };
    drop(rt1);
    assert_eq!(
        first.strong_count(),
        0,
        "the first registry's volume is closed"
    );
    store.hook().down.store(true, SeqCst);
    let vols = paced_registry(t.path(), store.clone(), &rt, BUF, Duration::from_secs(60));
    let v = vols.open_or_create(2, 0, false).expect("reopen");
    poll_until("a pipeline pass failed", || {
        store.hook().failed.load(SeqCst) > 0
    });
    let info = vols.info(&v);
    assert!(
        info.pending_backend_bytes < BUF / 4,
        "uploaded SCOs counted as backlog: {info:?}"
    );
    vols.stop_all();
}

#[test]
fn the_registry_evicts_down_to_the_sco_cache_size_after_a_flush() {
    let t = tempfile::tempdir().expect("tempdir");
    let rt = crate::runtime::build().expect("runtime");
    let base: Arc<dyn ObjectStore> = Arc::new(strata_backend::MemStore::new());
    let sco = 4096 + 16 * 4096 + 32;
    let cfg = RegistryConfig {
        dir: t.path().join("volumes"),
        opts: VolumeOptions {
            sco_clusters: 16,
            tlog_scos: 2,
            checkpoint_tlogs: 64,
        },
        max_age: Duration::from_secs(3600),
        fs: None,
        write_buffer: 1 << 40,
        throttle_start: 50,
        stall_timeout: Duration::from_secs(60),
        sco_cache_size: 8 * sco,
        cluster_cache_size: 0,
        map_cache_size: 1 << 20,
        scrub: crate::volume::scrub::ScrubOptions {
            threshold: 0.75,
            grace: Duration::ZERO,
            bandwidth: 0,
        },
        scrub_interval: Duration::ZERO,
        zero_detect: true,
        epoch: 1,
    };
    let vols = VolumeRegistry::new(cfg, 1, base, rt.handle().clone(), Default::default());
    let a = vols.open_or_create(2, 0, true).expect("open a");
    let b = vols.open_or_create(3, 0, true).expect("open b");
    let data: Vec<u8> = (0..20 * 65_536u32).map(|i| (i % 253) as u8).collect();
    for v in [&a, &b] {
        v.volume().write(0, &data, false).expect("write");
        vols.flush(v).expect("flush");
    }
    let local: u64 = [&a, &b].iter().map(|v| v.volume().sco_cache_bytes()).sum();
    assert!(local <= 8 * sco * 7 / 10, "{local}");
    // What the volumes count is what is on disk.
    let mut disk = 0;
    for v in [&a, &b] {
        for e in std::fs::read_dir(v.dir.join("sco")).expect("sco dir") {
            disk += e.expect("entry").metadata().expect("metadata").len();
        }
    }
    assert_eq!(disk, local);
    let mut hits = 0;
    for v in [&a, &b] {
        let mut buf = vec![0u8; data.len()];
        assert_eq!(v.volume().read(0, &mut buf).expect("read"), data.len());
        assert!(buf == data, "volume {} reads back", v.ino);
        let info = vols.info(v);
        assert!(info.cache_misses > 0, "{info:?}");
        hits += info.cache_hits;
    }
    // The newest SCOs (of the volume flushed last) stayed in the cache.
    assert!(hits > 0);
    vols.stop_all();
}

/// Counts the requests (PUT, GET, HEAD) for a manifest, once armed.
#[derive(Debug, Default)]
struct CountManifestPuts {
    armed: std::sync::atomic::AtomicBool,
    calls: std::sync::atomic::AtomicU64,
    puts: std::sync::atomic::AtomicU64,
}

#[async_trait::async_trait]
impl Hook for CountManifestPuts {
    async fn before(&self, call: &Call<'_>) -> strata_backend::Result<()> {
        use std::sync::atomic::Ordering::SeqCst;
        let key = match call {
            Call::Put { key, .. } | Call::Get { key } | Call::Head { key } => *key,
            _ => return Ok(()),
        };
        if key.ends_with("manifest.xml") && self.armed.load(SeqCst) {
            self.calls.fetch_add(1, SeqCst);
            if matches!(call, Call::Put { .. }) {
                self.puts.fetch_add(1, SeqCst);
            }
        }
        Ok(())
    }
}

/// Issue 12: a manifest changed by another writer is a final error, never retried like a
/// network blip: the pipeline tries once, stops, and the volume's writes are refused, saying
/// why (issue 18: it halts; before, they filled the buffer and got DELAY) — the other writer's
/// manifest stays as it is. (Before issue 12, the loop retried the conditional PUT with
/// backoff for ever.)
#[test]
fn a_manifest_changed_by_another_writer_stops_the_uploads_instead_of_retrying() {
    use crate::data::ObjectData;
    use std::sync::atomic::Ordering::SeqCst;
    const BUF: u64 = 1 << 20;
    const PIECE: usize = 64 << 10;
    let t = tempfile::tempdir().expect("tempdir");
    let rt = crate::runtime::build().expect("runtime");
    let mem = Arc::new(MemStore::new());
    let store = Arc::new(HookedStore::new(mem.clone(), CountManifestPuts::default()));
    let stall = Duration::from_secs(2);
    let vols = paced_registry(t.path(), store.clone(), &rt, BUF, stall);
    let v = vols.open_or_create(2, 0, true).expect("create");
    let obj = crate::registry::VolumeObject::new(v.clone(), &vols);
    obj.write(0, &vec![1u8; PIECE], Timestamp::default())
        .expect("first write");
    v.volume().sync().expect("commit");
    poll_until("the first upload", || {
        vols.info(&v).pending_backend_bytes == 0
    });
    // Another writer replaces the manifest behind the gateway's back.
    let listed = rt.block_on(mem.list("", None, 1000)).expect("list");
    let key = listed
        .objects
        .iter()
        .map(|o| o.key.clone())
        .find(|k| k.ends_with("manifest.xml"))
        .expect("a manifest");
    let intruder = bytes::Bytes::from_static(b"<strata-volume/>");
    rt.block_on(mem.put(&key, intruder.clone()))
        .expect("intruder");
    store.hook().armed.store(true, SeqCst);
    let refusal = (1..8 * BUF / PIECE as u64).find_map(|i| {
        obj.write(
            i * PIECE as u64,
            &vec![i as u8; PIECE],
            Timestamp::default(),
        )
        .err()
    });
    let e = refusal.unwrap_or_else(|| panic!("writes go on: {:?}", vols.info(&v)));
    assert!(e.to_string().contains("another writer"), "{e}");
    assert_eq!(
        store.hook().puts.load(SeqCst),
        1,
        "one manifest PUT, refused by the other writer's ETag, and no retry"
    );
    assert!(
        store.hook().calls.load(SeqCst) <= 3,
        "besides, only the read-back of the manifest (was the refused PUT our own, its answer \
         lost?): {} requests",
        store.hook().calls.load(SeqCst)
    );
    assert_eq!(
        rt.block_on(mem.get(&key)).expect("get").0,
        intruder,
        "the other writer's manifest is untouched"
    );
    vols.stop_all();
}
