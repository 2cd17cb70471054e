//! Tests of every store of this crate against one behaviour, plus store-specific ones.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;

use crate::conformance::{
    conditional_races, conformance, list_all, list_all_meta, Etags, ListOrder,
};
use crate::*;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[test]
fn local_store_conformance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(LocalStore::open(dir.path().join("store")).expect("open"));
    rt().block_on(conformance(store.clone(), Etags::Version, ListOrder::Bytes));
    // Emptied directories are removed on delete; the temp dir is never listed.
    rt().block_on(async {
        for k in list_all(&*store, "", 100).await {
            store.delete(&k).await.expect("delete");
        }
        assert!(list_all(&*store, "", 100).await.is_empty());
    });
    let left: Vec<_> = std::fs::read_dir(store.root())
        .expect("readdir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from(local::TMP_DIR)],
        "only the temp dir is left"
    );
}

/// Issue 11: the local store takes a file by linking it, not by writing its bytes again.
#[test]
fn local_store_put_file_links_instead_of_copying() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path().join("store")).expect("open");
    let src = dir.path().join("sco");
    std::fs::write(&src, vec![7u8; 1 << 20]).expect("write source");
    let m = rt()
        .block_on(store.put_file("v/sco/1", &src))
        .expect("put_file");
    let object = store.root().join("v/sco/1");
    let ino = |p: &std::path::Path| std::fs::metadata(p).expect("stat").ino();
    assert_eq!(ino(&object), ino(&src), "the object is not the source file");
    assert_eq!(store.linked_puts(), 1);
    // The ETag is still a version: a second put of the same file makes a new one.
    let m2 = rt()
        .block_on(store.put_file("v/sco/1", &src))
        .expect("put_file again");
    assert_ne!(m.etag, m2.etag);
    assert_eq!(rt().block_on(store.head("v/sco/1")).expect("head"), m2);
    // Deleting the source leaves the object.
    std::fs::remove_file(&src).expect("remove source");
    let (data, _) = rt().block_on(store.get("v/sco/1")).expect("get");
    assert!(data.len() == 1 << 20 && data.iter().all(|b| *b == 7));
}

#[test]
fn mem_store_conformance() {
    let store = Arc::new(MemStore::new());
    rt().block_on(conformance(store.clone(), Etags::Md5, ListOrder::Bytes));
    assert!(!store.is_empty());
}

#[test]
fn namespaced_conformance_and_isolation() {
    let inner = Arc::new(MemStore::new());
    let ns = Arc::new(Namespaced::new(inner.clone(), "files/").expect("ns"));
    rt().block_on(async {
        inner.put("other", b("outside")).await.expect("put");
        inner
            .put("files", b("not in the namespace either"))
            .await
            .expect("put");
        conformance(ns.clone(), Etags::Md5, ListOrder::Bytes).await;
        // Everything the namespace wrote is under its prefix in the inner store.
        let inner_keys = list_all(&*inner, "", 100).await;
        let ns_keys = list_all(&*ns, "", 100).await;
        assert!(!ns_keys.is_empty());
        let expected: Vec<String> = ["files", "other"]
            .iter()
            .map(|s| s.to_string())
            .chain(ns_keys.iter().map(|k| format!("files/{k}")))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(inner_keys, expected);
        let m = ns.head("a/one").await.expect("head");
        assert_eq!(m.key, "a/one", "metadata carries the namespace's own key");
        assert!(
            matches!(ns.get("../other").await, Err(Error::InvalidKey { .. })),
            "no escape with .."
        );
    });
    assert!(Namespaced::new(inner, "../x/").is_err());
}

#[test]
fn namespaced_on_local_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let local = Arc::new(LocalStore::open(dir.path()).expect("open"));
    let ns = Arc::new(Namespaced::new(local, "files/").expect("ns"));
    rt().block_on(conformance(ns, Etags::Version, ListOrder::Bytes));
    assert!(
        dir.path().join("files/a/one").is_file(),
        "namespaces are sub-directories of a local store"
    );
}

#[test]
fn conditional_put_races() {
    let dir = tempfile::tempdir().expect("tempdir");
    rt().block_on(conditional_races(Arc::new(
        LocalStore::open(dir.path()).expect("open"),
    )));
    rt().block_on(conditional_races(Arc::new(MemStore::new())));
}

#[test]
fn local_store_reserves_its_temp_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).expect("open");
    rt().block_on(async {
        let key = format!("{}/x", local::TMP_DIR);
        assert!(matches!(
            store.put(&key, b("x")).await,
            Err(Error::InvalidKey { .. })
        ));
        assert!(matches!(
            store.get(local::TMP_DIR).await,
            Err(Error::InvalidKey { .. })
        ));
        // A key and a "directory" of the same name cannot both exist in a directory store.
        store.put("k/sub", b("x")).await.expect("put");
        assert!(matches!(
            store.put("k", b("x")).await,
            Err(Error::InvalidKey { .. })
        ));
        assert!(matches!(
            store.put("k/sub/deeper", b("x")).await,
            Err(Error::InvalidKey { .. })
        ));
        assert_eq!(&store.get("k/sub").await.expect("get").0[..], b"x");
    });
}

/// The temp-file/rename discipline: a put interrupted after its temp file is written and
/// fsynced, before the rename, leaves the final name untouched; the next open cleans the temp.
#[test]
fn interrupted_put_never_shows_under_its_final_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).expect("open");
    let rt = rt();
    rt.block_on(async {
        store.put("d/old", b("old content")).await.expect("put");
        store.set_fail_before_rename(true);
        assert!(store.put("d/old", b("new content")).await.is_err());
        assert!(store.put("d/new", b("brand new")).await.is_err());
        assert!(store.put_if_absent("e/new", b("brand new")).await.is_err());
        store.set_fail_before_rename(false);
        assert_eq!(
            &store.get("d/old").await.expect("get").0[..],
            b"old content",
            "old object unchanged"
        );
        assert!(
            store.get("d/new").await.unwrap_err().is_not_found(),
            "no new object"
        );
        assert!(
            store.get("e/new").await.unwrap_err().is_not_found(),
            "no new object"
        );
        assert_eq!(
            list_all(&store, "", 10).await,
            vec!["d/old".to_string()],
            "temp files are not listed"
        );
    });
    let temps = std::fs::read_dir(store.tmp_dir()).expect("tmp").count();
    assert_eq!(
        temps, 3,
        "the interrupted puts left their temp files (as a crash would)"
    );
    drop(store);
    let store = LocalStore::open(dir.path()).expect("reopen");
    assert_eq!(
        std::fs::read_dir(store.tmp_dir()).expect("tmp").count(),
        0,
        "open removes leftover temp files"
    );
    rt.block_on(async {
        assert_eq!(
            &store.get("d/old").await.expect("get").0[..],
            b"old content"
        );
        assert!(store.get("d/new").await.unwrap_err().is_not_found());
    });
}

#[test]
fn io_errors_map_to_typed_errors() {
    let enospc = std::io::Error::from_raw_os_error(libc::ENOSPC);
    assert!(matches!(Error::from_io("k", enospc), Error::NoSpace));
    let edquot = std::io::Error::from_raw_os_error(libc::EDQUOT);
    assert!(matches!(Error::from_io("k", edquot), Error::NoSpace));
    let enoent = std::io::Error::from_raw_os_error(libc::ENOENT);
    assert!(Error::from_io("k", enoent).is_not_found());
    let eio = std::io::Error::from_raw_os_error(libc::EIO);
    assert!(matches!(Error::from_io("k", eio), Error::Io { .. }));
}

#[test]
fn local_store_long_segment_is_invalid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).expect("open");
    let key = "x".repeat(300);
    let r = rt().block_on(store.put(&key, b("x")));
    assert!(matches!(r, Err(Error::InvalidKey { .. })), "{r:?}");
}

/// LocalStore ETags come from file metadata, not content: an in-place rewrite of the file's
/// bytes behind the store's back (same size, same inode, mtime put back) leaves head, list and
/// get reporting the same ETag, an MD5 would not; while a put of identical content (a new
/// inode) makes a new ETag, and the old one no longer matches.
#[test]
fn local_store_etag_is_metadata_not_content() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).expect("open");
    rt().block_on(async {
        let m = store.put("v/disk", b("original")).await.expect("put");
        let path = dir.path().join("v/disk");
        let mtime = std::fs::metadata(&path)
            .expect("stat")
            .modified()
            .expect("mtime");
        {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("open in place");
            f.write_all(b"REWRITES").expect("rewrite");
            f.set_times(std::fs::FileTimes::new().set_modified(mtime))
                .expect("restore mtime");
        }
        assert_eq!(store.head("v/disk").await.expect("head"), m);
        assert_eq!(
            store.list("v/", None, 10).await.expect("list").objects,
            vec![m.clone()]
        );
        let (data, meta) = store.get("v/disk").await.expect("get");
        assert_eq!(&data[..], b"REWRITES", "the store reads what is on disk");
        assert_eq!(meta, m, "the ETag does not depend on the content");

        let m2 = store.put("v/disk", b("REWRITES")).await.expect("replace");
        assert_ne!(m2.etag, m.etag, "a put of equal content is a new version");
        assert_eq!(store.head("v/disk").await.expect("head"), m2);
        assert_eq!(store.get("v/disk").await.expect("get").1, m2);
        assert!(store
            .put_if_match("v/disk", b("x"), &m.etag)
            .await
            .unwrap_err()
            .is_condition_failed());
        let m3 = store
            .put_if_match("v/disk", b("y"), &m2.etag)
            .await
            .expect("match");
        assert_eq!(store.head("v/disk").await.expect("head"), m3);
    });
}

/// head, list and put_if_match never read an object: a 64 GiB (sparse) object is answered
/// from its metadata. Reading it instead would mean allocating 64 GiB (an error) or minutes of
/// hashing; so would an MD5 ETag.
#[test]
fn local_store_head_and_list_of_a_huge_object_do_not_read_it() {
    const HUGE: u64 = 64 << 30;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).expect("open");
    rt().block_on(async {
        store.put("vol/sco", b("head")).await.expect("put");
        // Grow the object file in place to a sparse 64 GiB behind the store's back.
        std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("vol/sco"))
            .expect("open in place")
            .set_len(HUGE)
            .expect("set_len");
        let h = store.head("vol/sco").await.expect("head");
        assert_eq!((h.key.as_str(), h.size), ("vol/sco", HUGE));
        let page = store.list("vol/", None, 1000).await.expect("list");
        assert_eq!(page.objects, vec![h.clone()]);
        assert_eq!(
            &store.get_range("vol/sco", 0..4).await.expect("range")[..],
            b"head"
        );
        let m = store
            .put_if_match("vol/sco", b("small"), &h.etag)
            .await
            .expect("match against a huge object");
        assert_eq!(store.head("vol/sco").await.expect("head"), m);
        assert_eq!(m.size, 5);
    });
}

/// A put's mtime is unique in the process, so the ETag changes even when a deleted object's
/// inode number is reused at once (as ext4 does) for a new object of the same size: no ETag
/// repeats over many delete/put and replace cycles of equal content on one key.
#[test]
fn local_store_etags_never_repeat_on_inode_reuse() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).expect("open");
    let mut etags = std::collections::BTreeSet::new();
    let mut inodes = std::collections::BTreeSet::new();
    let mut puts = 0;
    rt().block_on(async {
        for i in 0..300 {
            let m = store.put("k", b("same")).await.expect("put");
            puts += 1;
            inodes.insert(std::fs::metadata(dir.path().join("k")).expect("stat").ino());
            assert!(etags.insert(m.etag.clone()), "ETag repeated at {i}");
            assert_eq!(store.head("k").await.expect("head"), m);
            if i % 2 == 0 {
                store.delete("k").await.expect("delete");
            }
        }
    });
    // Not asserted (it depends on the file system), but shows the test exercised reuse.
    eprintln!("{puts} puts used {} distinct inode numbers", inodes.len());
}

/// The mtimes LocalStore gives its puts are distinct across threads and increasing in each,
/// even when called faster than the clock ticks.
#[test]
fn local_store_mtimes_are_unique() {
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(|| {
                let v: Vec<_> = (0..20_000).map(|_| local::unique_mtime()).collect();
                assert!(v.windows(2).all(|w| w[0] < w[1]), "increasing per thread");
                v
            })
        })
        .collect();
    let mut all = std::collections::BTreeSet::new();
    for t in threads {
        for m in t.join().expect("join") {
            assert!(all.insert(m), "mtime handed out twice");
        }
    }
}

#[test]
fn faulty_store_fails_when_switched() {
    let inner = Arc::new(MemStore::new());
    let faulty = FaultyStore::new(inner.clone());
    rt().block_on(async {
        faulty.put("k", b("v")).await.expect("healthy put");
        faulty.set_failing(true);
        assert!(matches!(faulty.get("k").await, Err(Error::Io { .. })));
        assert!(matches!(
            faulty.put("k", b("w")).await,
            Err(Error::Io { .. })
        ));
        assert!(matches!(
            faulty.list("", None, 10).await,
            Err(Error::Io { .. })
        ));
        assert!(matches!(faulty.delete("k").await, Err(Error::Io { .. })));
        assert_eq!(&inner.get("k").await.expect("inner untouched").0[..], b"v");
        faulty.set_failing(false);
        assert_eq!(&faulty.get("k").await.expect("healthy again").0[..], b"v");
    });
    assert_eq!(faulty.calls(), 6);
    assert_eq!(faulty.failures(), 4);
}

#[derive(Debug, Clone)]
enum Op {
    Put(String, Vec<u8>),
    PutIfAbsent(String, Vec<u8>),
    /// `true`: with the current ETag; `false`: with a stale one of the key (or a made-up one).
    PutIfMatch(String, Vec<u8>, bool),
    Delete(String),
    Get(String),
    Head(String),
    Range(String, u64, u64),
    List(String, usize),
}

/// Keys from a small space so operations collide; no key is a "directory" of another.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        (0..4u8).prop_map(|i| format!("k{i}")),
        (0..2u8, 0..3u8).prop_map(|(d, i)| format!("d{d}/k{i}")),
        (0..3u8).prop_map(|i| format!("d0/s/k{i}")),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    // Few distinct contents, so replacements with equal content (and equal size) are common.
    let data = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        (0..3u8).prop_map(|i| vec![i; 8]),
    ];
    prop_oneof![
        (key(), data.clone()).prop_map(|(k, d)| Op::Put(k, d)),
        (key(), data.clone()).prop_map(|(k, d)| Op::PutIfAbsent(k, d)),
        (key(), data, any::<bool>()).prop_map(|(k, d, m)| Op::PutIfMatch(k, d, m)),
        key().prop_map(Op::Delete),
        key().prop_map(Op::Get),
        key().prop_map(Op::Head),
        (key(), 0..70u64, 0..70u64).prop_map(|(k, s, e)| Op::Range(k, s, e)),
        (
            prop_oneof![
                Just(""),
                Just("d0"),
                Just("d0/"),
                Just("d0/s/"),
                Just("k"),
                Just("d1/k1")
            ],
            1..4usize
        )
            .prop_map(|(p, m)| Op::List(p.to_string(), m)),
    ]
}

/// The model of a store: each key's content and the ETag its last put returned, and every
/// ETag each key ever had.
#[derive(Default)]
struct Model {
    objects: BTreeMap<String, (Vec<u8>, String)>,
    history: BTreeMap<String, Vec<String>>,
}

impl Model {
    /// Records a successful put of `d` under `k` that returned `m`, checking its ETag: the MD5
    /// of the content, or a version tag this key never had before (not even before a delete).
    fn put(&mut self, etags: Etags, k: String, d: Vec<u8>, m: ObjectMeta) {
        assert_eq!((m.key.as_str(), m.size), (k.as_str(), d.len() as u64));
        let seen = self.history.entry(k.clone()).or_default();
        match etags {
            Etags::Md5 => assert_eq!(m.etag, etag_of(&d)),
            Etags::Version => assert!(
                !seen.contains(&m.etag),
                "put of {k} returned an ETag the key already had: {}",
                m.etag
            ),
        }
        seen.push(m.etag.clone());
        self.objects.insert(k, (d, m.etag));
    }

    /// The metadata the store must report for `k`.
    fn meta(&self, k: &str) -> Option<ObjectMeta> {
        self.objects.get(k).map(|(d, etag)| ObjectMeta {
            key: k.to_string(),
            size: d.len() as u64,
            etag: etag.clone(),
        })
    }
}

/// Runs `ops` against `store` and a model, comparing every result, ETags included: the ETag a
/// put returned is the one get, head and list report until the next put.
async fn run_model(store: &dyn ObjectStore, etags: Etags, ops: Vec<Op>) {
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Put(k, d) => {
                let m = store.put(&k, Bytes::from(d.clone())).await.expect("put");
                model.put(etags, k, d, m);
            }
            Op::PutIfAbsent(k, d) => {
                let r = store.put_if_absent(&k, Bytes::from(d.clone())).await;
                if model.objects.contains_key(&k) {
                    assert!(r.unwrap_err().is_condition_failed())
                } else {
                    model.put(etags, k, d, r.expect("put_if_absent"));
                }
            }
            Op::PutIfMatch(k, d, right) => {
                let current = model.objects.get(&k).map(|(_, e)| e.clone());
                let etag = if right {
                    current.clone()
                } else {
                    // A stale ETag of this key: must never match again.
                    model
                        .history
                        .get(&k)
                        .and_then(|h| h.iter().rev().find(|e| Some(*e) != current.as_ref()))
                        .cloned()
                }
                .unwrap_or_else(|| "0123".to_string());
                let r = store.put_if_match(&k, Bytes::from(d.clone()), &etag).await;
                if current.is_some() && right {
                    model.put(etags, k, d, r.expect("put_if_match"));
                } else {
                    assert!(r.unwrap_err().is_condition_failed(), "etag {etag}");
                }
            }
            Op::Delete(k) => {
                store.delete(&k).await.expect("delete");
                model.objects.remove(&k);
            }
            Op::Get(k) => match (store.get(&k).await, model.objects.get(&k)) {
                (Ok((d, m)), Some((want, _))) => {
                    assert_eq!(&d[..], &want[..]);
                    assert_eq!(Some(m), model.meta(&k));
                }
                (Err(e), None) => assert!(e.is_not_found()),
                (r, want) => panic!("get {k}: {r:?} vs model {want:?}"),
            },
            Op::Head(k) => match (store.head(&k).await, model.meta(&k)) {
                (Ok(m), Some(want)) => assert_eq!(m, want),
                (Err(e), None) => assert!(e.is_not_found()),
                (r, want) => panic!("head {k}: {r:?} vs model {want:?}"),
            },
            Op::Range(k, s, e) => match (store.get_range(&k, s..e).await, model.objects.get(&k)) {
                (Ok(d), Some((want, _))) => {
                    let end = (e as usize).min(want.len());
                    let start = (s as usize).min(end);
                    assert_eq!(&d[..], &want[start..end]);
                }
                (Err(e), None) => assert!(e.is_not_found()),
                (r, want) => panic!("range {k}: {r:?} vs model {want:?}"),
            },
            Op::List(p, max) => {
                let got = list_all_meta(store, &p, max).await;
                let want: Vec<ObjectMeta> = model
                    .objects
                    .keys()
                    .filter(|k| k.starts_with(&p))
                    .filter_map(|k| model.meta(k))
                    .collect();
                assert_eq!(got, want, "list {p:?}");
            }
        }
    }
    let all = list_all_meta(store, "", 3).await;
    let want: Vec<ObjectMeta> = model.objects.keys().filter_map(|k| model.meta(k)).collect();
    assert_eq!(all, want);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn local_store_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::open(dir.path()).expect("open");
        rt().block_on(run_model(&store, Etags::Version, ops));
    }

    #[test]
    fn mem_store_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        rt().block_on(run_model(&MemStore::new(), Etags::Md5, ops));
    }

    #[test]
    fn namespaced_local_store_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(LocalStore::open(dir.path()).expect("open"));
        let ns = Namespaced::new(store, "ns/").expect("ns");
        rt().block_on(run_model(&ns, Etags::Version, ops));
    }
}

/// A store that drops some conditions of its puts, as Garage (all of them) or an old MinIO
/// (an `If-Match` on a missing key) did: the probe refuses each, naming what failed.
#[derive(Debug)]
struct IgnoresConditions {
    inner: MemStore,
    ignore_create: bool,
    ignore_match_on_missing: bool,
    /// Any If-Match succeeds on an existing object.
    ignore_stale_match: bool,
    /// Creates check, then yield, then write: not atomic, racers all win.
    racy_create: bool,
    /// Updates check the ETag, then yield, then write: not atomic.
    racy_update: bool,
}

#[async_trait::async_trait]
impl ObjectStore for IgnoresConditions {
    async fn put_opts(&self, key: &str, data: Bytes, mode: PutMode) -> Result<ObjectMeta> {
        if mode == PutMode::Create && self.racy_create {
            if self.inner.head(key).await.is_ok() {
                return Err(Error::ConditionFailed { key: key.into() });
            }
            tokio::task::yield_now().await;
            return self.inner.put(key, data).await;
        }
        if let (PutMode::Update { etag }, true) = (&mode, self.racy_update) {
            match self.inner.head(key).await {
                Ok(m) if m.etag == *etag => {}
                _ => return Err(Error::ConditionFailed { key: key.into() }),
            }
            tokio::task::yield_now().await;
            return self.inner.put(key, data).await;
        }
        let mode = match mode {
            PutMode::Create if self.ignore_create => PutMode::Overwrite,
            PutMode::Update { .. }
                if self.ignore_stale_match && self.inner.head(key).await.is_ok() =>
            {
                PutMode::Overwrite
            }
            PutMode::Update { .. }
                if self.ignore_match_on_missing && self.inner.head(key).await.is_err() =>
            {
                PutMode::Overwrite
            }
            m => m,
        };
        self.inner.put_opts(key, data, mode).await
    }
    async fn get(&self, key: &str) -> Result<(Bytes, ObjectMeta)> {
        self.inner.get(key).await
    }
    async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<Bytes> {
        self.inner.get_range(key, range).await
    }
    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        self.inner.head(key).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str, token: Option<&str>, max: usize) -> Result<ListPage> {
        self.inner.list(prefix, token, max).await
    }
}

#[test]
fn the_probe_refuses_a_store_that_ignores_conditional_writes() {
    let rt = rt();
    let store = |flaw: &str| IgnoresConditions {
        inner: MemStore::new(),
        ignore_create: flaw == "create",
        ignore_match_on_missing: flaw == "missing",
        ignore_stale_match: flaw == "stale",
        racy_create: flaw == "racy create",
        racy_update: flaw == "racy update",
    };
    rt.block_on(probe::conditional_writes(&store("none"), "probe/"))
        .expect("a store that honours its conditions passes");
    let cases = [
        ("If-None-Match: *) over", store("create")),
        ("missing key", store("missing")),
        ("stale If-Match", store("stale")),
        ("racing creates", store("racy create")),
        ("racing updates", store("racy update")),
    ];
    for (expect, store) in cases {
        let err = rt
            .block_on(probe::conditional_writes(&store, "probe/"))
            .expect_err("refused");
        assert!(
            matches!(&err, Error::ConditionsIgnored { what } if what.contains(expect)),
            "{expect}: {err}"
        );
        assert!(
            store.inner.is_empty(),
            "the probe cleans up after a refusal"
        );
    }
}
