//! The backend's owner record (issue #10, "a new namespace on an old backend"): a gateway with a
//! fresh data directory never touches a backend another gateway owns or wrote; the owner
//! restarts with a growing epoch; an empty backend is claimed; a backend written before owner
//! records is claimed only by the namespace that accounts for its objects. Real redb files,
//! real local directories, `LocalStore` backends.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use strata_backend::{Call, Hook, HookedStore, LocalStore, ObjectStore};
use strata_engine::*;

const ME: Cred = Cred { uid: 0, gid: 0 };

/// `data` with its backend in `backend`.
fn config(data: &Path, backend: &Path) -> EngineConfig {
    let mut cfg = EngineConfig::new(data);
    cfg.backend = BackendConfig::Local {
        dir: backend.to_path_buf(),
    };
    cfg
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Every object of the backend: key -> (bytes, ETag). LocalStore's ETag changes at every put,
/// even of equal bytes, so equal snapshots mean nothing was rewritten either.
fn snapshot(backend: &Path) -> BTreeMap<String, (Vec<u8>, String)> {
    let store = LocalStore::open(backend.to_path_buf()).expect("store");
    rt().block_on(async {
        let mut out = BTreeMap::new();
        let mut token = None;
        loop {
            let page = store.list("", token.as_deref(), 100).await.expect("list");
            for o in &page.objects {
                let (bytes, meta) = store.get(&o.key).await.expect("get");
                out.insert(o.key.clone(), (bytes.to_vec(), meta.etag));
            }
            match page.next {
                Some(t) => token = Some(t),
                None => return out,
            }
        }
    })
}

fn record_on(backend: &Path) -> Option<OwnerRecord> {
    let store = LocalStore::open(backend.to_path_buf()).expect("store");
    rt().block_on(async {
        match store.get(OWNER_KEY).await {
            Ok((b, _)) => Some(OwnerRecord::decode(OWNER_KEY, &b).expect("a valid record")),
            Err(e) if e.is_not_found() => None,
            Err(e) => panic!("reading the owner record: {e}"),
        }
    })
}

fn put_raw(backend: &Path, key: &str, data: Vec<u8>) {
    let store = LocalStore::open(backend.to_path_buf()).expect("store");
    rt().block_on(store.put(key, data.into())).expect("put");
}

fn delete_raw(backend: &Path, key: &str) {
    let store = LocalStore::open(backend.to_path_buf()).expect("store");
    rt().block_on(store.delete(key)).expect("delete");
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(37).wrapping_add(seed))
        .collect()
}

fn refusal(r: Result<Filesystem>) -> String {
    match r {
        Err(Error::NotOwner(m)) => m,
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(fs) => panic!("opened although refused (fsid {:x})", fs.fsid()),
    }
}

/// A file and a volume with committed data, everything flushed to the backend.
fn write_file_and_volume(fs: &Filesystem) -> (Handle, Handle) {
    let f = fs
        .create(fs.root(), b"notes.txt", 0o644, ME, CreateMode::Guarded)
        .expect("create file")
        .attr
        .handle;
    fs.write(f, 0, &pattern(3 << 20, 1), true)
        .expect("write file");
    let v = fs
        .create(fs.root(), b"disk-flat.vmdk", 0o644, ME, CreateMode::Guarded)
        .expect("create volume")
        .attr;
    assert_eq!(v.kind, Kind::Volume);
    fs.write(v.handle, 0, &pattern(50_000, 2), true)
        .expect("write volume");
    fs.flush_to_backend().expect("flush");
    (f, v.handle)
}

fn assert_data(fs: &Filesystem, (f, v): (Handle, Handle)) {
    let mut buf = vec![0u8; 3 << 20];
    assert_eq!(fs.read(f, 0, &mut buf).expect("read file").0, 3 << 20);
    assert!(buf == pattern(3 << 20, 1), "file data intact");
    let mut buf = vec![0u8; 50_000];
    assert_eq!(fs.read(v, 0, &mut buf).expect("read volume").0, 50_000);
    assert!(buf == pattern(50_000, 2), "volume data intact");
}

#[test]
fn a_fresh_data_dir_on_another_gateways_backend_is_refused_and_changes_nothing() {
    let (a_dir, b_dir, backend) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let (handles, a_id) = {
        let fs = Filesystem::open(config(a_dir.path(), backend.path())).expect("A opens");
        let h = write_file_and_volume(&fs);
        (h, (fs.fsid(), fs.owner().gateway))
    };
    let before = snapshot(backend.path());
    assert!(before.keys().any(|k| k.starts_with(FILES_PREFIX)));
    assert!(before.keys().any(|k| k.starts_with(VOLUMES_PREFIX)));

    let msg = refusal(Filesystem::open(config(b_dir.path(), backend.path())));
    assert_eq!(
        snapshot(backend.path()),
        before,
        "B's attempt changed the backend"
    );
    // The owner is named; B's namespace, created by the refused start, is gone again: its data
    // directory stays empty, ready for `strata restore`.
    for id in [a_id.0, a_id.1] {
        assert!(
            msg.contains(&format!("{id:016x}")),
            "{id:016x} not in: {msg}"
        );
    }
    assert!(msg.contains("This is gateway "), "{msg}");
    assert!(!b_dir.path().join("strata.redb").exists(), "{msg}");
    assert!(msg.contains(&backend.path().display().to_string()), "{msg}");
    assert!(msg.contains("strata restore"), "{msg}");

    // A is still the owner and has everything.
    let fs = Filesystem::open(config(a_dir.path(), backend.path())).expect("A reopens");
    assert_data(&fs, handles);
    assert_eq!(fs.owner().epoch, 2);
}

#[test]
fn the_owner_restarts_with_a_growing_epoch_and_an_empty_backend_is_claimed() {
    let (data, backend) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    assert!(record_on(backend.path()).is_none());
    let id = {
        let fs = Filesystem::open(config(data.path(), backend.path())).expect("claims");
        assert_eq!(fs.owner().epoch, 1);
        assert_eq!(fs.owner().fsid, fs.fsid());
        (fs.fsid(), fs.owner().gateway)
    };
    let rec = record_on(backend.path()).expect("the claim wrote a record");
    assert_eq!((rec.fsid, rec.gateway, rec.epoch), (id.0, id.1, 1));
    assert!(
        rec.label.ends_with(&data.path().display().to_string()),
        "{rec:?}"
    );
    for epoch in 2..=3 {
        let fs = Filesystem::open(config(data.path(), backend.path())).expect("reopens");
        assert_eq!(
            (fs.fsid(), fs.owner().gateway, fs.owner().epoch),
            (id.0, id.1, epoch)
        );
        drop(fs);
        assert_eq!(record_on(backend.path()).expect("record").epoch, epoch);
    }
}

/// Counts writes and deletes reaching the store.
#[derive(Debug, Default)]
struct Writes(AtomicUsize);

#[async_trait::async_trait]
impl Hook for Writes {
    async fn before(&self, call: &Call<'_>) -> strata_backend::Result<()> {
        if matches!(call, Call::Put { .. } | Call::Delete { .. }) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

fn open_counting(data: &Path, backend: &Path) -> (Result<Filesystem>, usize) {
    let hook = Arc::new(HookedStore::new(
        Arc::new(LocalStore::open(backend.to_path_buf()).expect("store")),
        Writes::default(),
    ));
    let r = Filesystem::open_with(
        config(data, backend),
        OpenOptions {
            store: Some(hook.clone()),
            ..OpenOptions::default()
        },
    );
    let writes = hook.hook().0.load(Ordering::SeqCst);
    (r, writes)
}

#[test]
fn a_backend_without_a_record_is_claimed_only_by_the_namespace_that_wrote_it() {
    let (a_dir, backend) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let (handles, a_fsid) = {
        let fs = Filesystem::open(config(a_dir.path(), backend.path())).expect("A opens");
        (write_file_and_volume(&fs), fs.fsid())
    };
    // As written before owner records existed.
    delete_raw(backend.path(), OWNER_KEY);
    let before = snapshot(backend.path());

    // A fresh namespace accounts for nothing.
    let fresh = tempfile::tempdir().expect("tempdir");
    let (r, writes) = open_counting(fresh.path(), backend.path());
    let msg = refusal(r);
    assert!(msg.contains("no owner record"), "{msg}");
    assert!(msg.contains("never handed out"), "{msg}");
    assert_eq!(writes, 0, "writes or deletes reached the backend");

    // A namespace with a volume at the same ino, but its own: the manifest names another.
    let c_dir = tempfile::tempdir().expect("tempdir");
    {
        let own = tempfile::tempdir().expect("tempdir");
        let fs = Filesystem::open(config(c_dir.path(), own.path())).expect("C opens");
        for name in [&b"c.txt"[..], b"c-flat.vmdk"] {
            fs.create(fs.root(), name, 0o644, ME, CreateMode::Guarded)
                .expect("create");
        }
    }
    let (r, writes) = open_counting(c_dir.path(), backend.path());
    let msg = refusal(r);
    assert!(
        msg.contains(&format!("of namespace {a_fsid:016x}")),
        "names the manifest's namespace: {msg}"
    );
    assert_eq!(writes, 0, "writes or deletes reached the backend");

    // An object that is no Strata object at all.
    put_raw(backend.path(), "stray", b"x".to_vec());
    let (r, _) = open_counting(a_dir.path(), backend.path());
    let msg = refusal(r);
    assert!(msg.contains("stray"), "{msg}");
    delete_raw(backend.path(), "stray");
    assert_eq!(
        snapshot(backend.path()),
        before,
        "a refusal changed the backend"
    );

    // The namespace that wrote it claims it, with everything there.
    // Its epoch is above every epoch its keys carry (the lost record said 1): keys of epoch 1
    // are never written again.
    let fs = Filesystem::open(config(a_dir.path(), backend.path())).expect("A claims");
    assert_eq!(fs.owner().epoch, 2);
    assert_data(&fs, handles);
    drop(fs);
    assert_eq!(record_on(backend.path()).expect("record").fsid, a_fsid);
}

#[test]
fn a_damaged_or_oversized_owner_record_is_a_clear_error_and_stays() {
    let (data, backend) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    drop(Filesystem::open(config(data.path(), backend.path())).expect("claims"));
    for bad in [b"garbage".to_vec(), vec![7u8; 1 << 20]] {
        put_raw(backend.path(), OWNER_KEY, bad);
        let before = snapshot(backend.path());
        match Filesystem::open(config(data.path(), backend.path())) {
            Err(Error::Io(m)) => assert!(m.contains(OWNER_KEY), "{m}"),
            Err(e) => panic!("another error: {e}"),
            Ok(_) => panic!("opened on a damaged owner record"),
        }
        assert_eq!(snapshot(backend.path()), before);
    }
}

/// Writes another gateway's record under the inner store just before the first conditional
/// put of the owner record: the gateway lost a race.
#[derive(Debug)]
struct Intruder {
    inner: Arc<LocalStore>,
    done: AtomicBool,
}

#[async_trait::async_trait]
impl Hook for Intruder {
    async fn before(&self, call: &Call<'_>) -> strata_backend::Result<()> {
        let claim = matches!(call, Call::Put { key, conditional: true } if *key == OWNER_KEY);
        if claim && !self.done.swap(true, Ordering::SeqCst) {
            let rec = OwnerRecord::new(0xabcd, 0xdcba, 7, "intruder:/data");
            self.inner.put(OWNER_KEY, rec.encode().into()).await?;
        }
        Ok(())
    }
}

fn open_raced(data: &Path, backend: &Path) -> Result<Filesystem> {
    let inner = Arc::new(LocalStore::open(backend.to_path_buf()).expect("store"));
    let hooked = HookedStore::new(
        inner.clone(),
        Intruder {
            inner,
            done: AtomicBool::new(false),
        },
    );
    Filesystem::open_with(
        config(data, backend),
        OpenOptions {
            store: Some(Arc::new(hooked)),
            ..OpenOptions::default()
        },
    )
}

#[test]
fn a_lost_race_for_the_record_is_refused() {
    let (data, backend) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    // The claim of an empty backend (put_if_absent) loses.
    let msg = refusal(open_raced(data.path(), backend.path()));
    assert!(msg.contains("000000000000dcba"), "names the winner: {msg}");
    assert_eq!(record_on(backend.path()).expect("record").gateway, 0xdcba);

    // The epoch bump of the owner (put_if_match) loses.
    delete_raw(backend.path(), OWNER_KEY);
    drop(Filesystem::open(config(data.path(), backend.path())).expect("claims"));
    let msg = refusal(open_raced(data.path(), backend.path()));
    assert!(
        msg.contains("changed while this gateway was starting"),
        "{msg}"
    );
    assert_eq!(record_on(backend.path()).expect("record").epoch, 7);
}
