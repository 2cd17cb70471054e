//! Tests of every store of this crate against one behaviour, plus store-specific ones.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;

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

/// Every listed key of `prefix`, fetched page by page with `max` per page.
async fn list_all(store: &dyn ObjectStore, prefix: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = store
            .list(prefix, token.as_deref(), max)
            .await
            .expect("list");
        assert!(page.objects.len() <= max.max(1), "page larger than max");
        out.extend(page.objects.into_iter().map(|m| m.key));
        match page.next {
            Some(t) => token = Some(t),
            None => return out,
        }
    }
}

/// The behaviour every store shares.
async fn conformance(store: Arc<dyn ObjectStore>) {
    // put / get / head / get_range; ETag = MD5 hex as S3.
    let m = store.put("a/one", b("hello")).await.expect("put");
    assert_eq!(
        m,
        ObjectMeta {
            key: "a/one".into(),
            size: 5,
            etag: "5d41402abc4b2a76b9719d911017c592".into()
        }
    );
    let (data, meta) = store.get("a/one").await.expect("get");
    assert_eq!(&data[..], b"hello");
    assert_eq!(meta, m);
    assert_eq!(store.head("a/one").await.expect("head"), m);
    assert_eq!(
        &store.get_range("a/one", 1..3).await.expect("range")[..],
        b"el"
    );
    assert_eq!(
        &store.get_range("a/one", 3..100).await.expect("clipped")[..],
        b"lo"
    );
    assert!(store
        .get_range("a/one", 10..20)
        .await
        .expect("beyond end")
        .is_empty());
    assert!(store
        .get_range("a/one", std::ops::Range { start: 4, end: 2 })
        .await
        .expect("inverted")
        .is_empty());
    // Empty objects exist.
    let e = store.put("empty", Bytes::new()).await.expect("empty put");
    assert_eq!(e.size, 0);
    assert_eq!(store.head("empty").await.expect("head empty").size, 0);
    // Replacing changes the etag.
    let m2 = store.put("a/one", b("world!")).await.expect("replace");
    assert_ne!(m2.etag, m.etag);
    assert_eq!(&store.get("a/one").await.expect("get").0[..], b"world!");
    // Missing objects.
    assert!(store.get("nope").await.unwrap_err().is_not_found());
    assert!(store.head("a/nope").await.unwrap_err().is_not_found());
    assert!(store
        .get_range("nope", 0..1)
        .await
        .unwrap_err()
        .is_not_found());
    assert!(
        store.get("a").await.unwrap_err().is_not_found(),
        "a prefix is not an object"
    );
    store
        .delete("nope")
        .await
        .expect("deleting a missing object succeeds");
    // Conditional puts.
    assert!(store
        .put_if_absent("a/one", b("x"))
        .await
        .unwrap_err()
        .is_condition_failed());
    let c = store
        .put_if_absent("a/two", b("two"))
        .await
        .expect("absent");
    assert!(store
        .put_if_match("a/two", b("x"), &m.etag)
        .await
        .unwrap_err()
        .is_condition_failed());
    assert!(store
        .put_if_match("a/three", b("x"), &m.etag)
        .await
        .unwrap_err()
        .is_condition_failed());
    let c2 = store
        .put_if_match("a/two", b("TWO"), &c.etag)
        .await
        .expect("match");
    assert_eq!(&store.get("a/two").await.expect("get").0[..], b"TWO");
    assert!(
        store
            .put_if_match("a/two", b("x"), &c.etag)
            .await
            .unwrap_err()
            .is_condition_failed(),
        "stale etag"
    );
    assert_eq!(store.head("a/two").await.expect("head").etag, c2.etag);
    // Delete.
    store.delete("a/two").await.expect("delete");
    assert!(store.get("a/two").await.unwrap_err().is_not_found());
    store
        .put_if_absent("a/two", b("again"))
        .await
        .expect("absent after delete");
    store.delete("a/two").await.expect("delete");
    store.delete("empty").await.expect("delete");

    // Listing: ascending, recursive, string prefixes, paging by token.
    let keys = [
        "b/x/1", "b/x/2", "b/x2", "b/y", "b.z", "ba", "c/d/e/f", "b/x/10",
    ];
    for k in keys {
        store.put(k, b(k)).await.expect("put");
    }
    let mut all: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    all.push("a/one".into());
    all.sort();
    for max in [0, 1, 2, 3, 100] {
        assert_eq!(list_all(&*store, "", max).await, all, "max {max}");
    }
    let under = |p: &str| {
        all.iter()
            .filter(|k| k.starts_with(p))
            .cloned()
            .collect::<Vec<_>>()
    };
    for p in [
        "b", "b/", "b/x", "b/x/", "b/x/1", "c/d/", "c/d/e/f", "zz", "b/q", "c/d/e/f/",
    ] {
        for max in [1, 2, 10] {
            assert_eq!(
                list_all(&*store, p, max).await,
                under(p),
                "prefix {p:?} max {max}"
            );
        }
    }
    // A listing page carries sizes and etags.
    let page = store.list("b/y", None, 10).await.expect("list");
    assert_eq!(
        page.objects,
        vec![ObjectMeta {
            key: "b/y".into(),
            size: 3,
            etag: etag_of(b"b/y")
        }]
    );
    assert_eq!(page.next, None);
    // A token from elsewhere in the key space is honoured as a position.
    let page = store.list("b/", Some("b/x/2"), 10).await.expect("list");
    let got: Vec<_> = page.objects.into_iter().map(|m| m.key).collect();
    assert_eq!(got, vec!["b/x2".to_string(), "b/y".to_string()]);

    // Key validation on every method.
    for bad in [
        "", "/a", "a/", "a//b", "./a", "a/./b", "a/..", "../x", "a\0b",
    ] {
        let is_invalid = |r: Result<(), Error>| matches!(r, Err(Error::InvalidKey { .. }));
        assert!(
            is_invalid(store.put(bad, b("x")).await.map(|_| ())),
            "put {bad:?}"
        );
        assert!(
            is_invalid(store.put_if_absent(bad, b("x")).await.map(|_| ())),
            "pia {bad:?}"
        );
        assert!(
            is_invalid(store.put_if_match(bad, b("x"), "e").await.map(|_| ())),
            "pim {bad:?}"
        );
        assert!(is_invalid(store.get(bad).await.map(|_| ())), "get {bad:?}");
        assert!(
            is_invalid(store.get_range(bad, 0..1).await.map(|_| ())),
            "range {bad:?}"
        );
        assert!(
            is_invalid(store.head(bad).await.map(|_| ())),
            "head {bad:?}"
        );
        assert!(is_invalid(store.delete(bad).await), "delete {bad:?}");
    }
    for bad in ["/a", "a//", "../", "a/../", "x\0"] {
        assert!(
            matches!(
                store.list(bad, None, 10).await,
                Err(Error::InvalidKey { .. })
            ),
            "list {bad:?}"
        );
    }
}

/// 8 tasks race `put_if_absent` on one key, then `put_if_match` on one etag: one winner each.
async fn conditional_races(store: Arc<dyn ObjectStore>) {
    for round in 0..5 {
        let key = format!("race/{round}");
        let tasks: Vec<_> = (0..8u8)
            .map(|i| {
                let store = store.clone();
                let key = key.clone();
                tokio::spawn(
                    async move { store.put_if_absent(&key, Bytes::from(vec![i; 1000])).await },
                )
            })
            .collect();
        let mut winners = Vec::new();
        for (i, t) in tasks.into_iter().enumerate() {
            match t.await.expect("join") {
                Ok(_) => winners.push(i as u8),
                Err(e) => assert!(e.is_condition_failed(), "unexpected {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one put_if_absent wins");
        let (data, meta) = store.get(&key).await.expect("get");
        assert_eq!(
            &data[..],
            &vec![winners[0]; 1000][..],
            "the winner's content is stored"
        );

        let tasks: Vec<_> = (0..8u8)
            .map(|i| {
                let (store, key, etag) = (store.clone(), key.clone(), meta.etag.clone());
                tokio::spawn(async move {
                    store
                        .put_if_match(&key, Bytes::from(vec![100 + i; 999]), &etag)
                        .await
                })
            })
            .collect();
        let mut winners = Vec::new();
        for (i, t) in tasks.into_iter().enumerate() {
            match t.await.expect("join") {
                Ok(_) => winners.push(100 + i as u8),
                Err(e) => assert!(e.is_condition_failed(), "unexpected {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one put_if_match wins");
        assert_eq!(
            &store.get(&key).await.expect("get").0[..],
            &vec![winners[0]; 999][..]
        );
    }
}

#[test]
fn local_store_conformance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(LocalStore::open(dir.path().join("store")).expect("open"));
    rt().block_on(conformance(store.clone()));
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

#[test]
fn mem_store_conformance() {
    let store = Arc::new(MemStore::new());
    rt().block_on(conformance(store.clone()));
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
        conformance(ns.clone()).await;
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
    rt().block_on(conformance(ns));
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
    PutIfMatch(String, Vec<u8>, bool),
    Delete(String),
    Get(String),
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
    let data = proptest::collection::vec(any::<u8>(), 0..64);
    prop_oneof![
        (key(), data.clone()).prop_map(|(k, d)| Op::Put(k, d)),
        (key(), data.clone()).prop_map(|(k, d)| Op::PutIfAbsent(k, d)),
        (key(), data, any::<bool>()).prop_map(|(k, d, m)| Op::PutIfMatch(k, d, m)),
        key().prop_map(Op::Delete),
        key().prop_map(Op::Get),
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

/// Runs `ops` against `store` and a BTreeMap model, comparing every result.
async fn run_model(store: &dyn ObjectStore, ops: Vec<Op>) {
    let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for op in ops {
        match op {
            Op::Put(k, d) => {
                let m = store.put(&k, Bytes::from(d.clone())).await.expect("put");
                assert_eq!(m.etag, etag_of(&d));
                model.insert(k, d);
            }
            Op::PutIfAbsent(k, d) => {
                let r = store.put_if_absent(&k, Bytes::from(d.clone())).await;
                match model.entry(k) {
                    std::collections::btree_map::Entry::Occupied(_) => {
                        assert!(r.unwrap_err().is_condition_failed())
                    }
                    std::collections::btree_map::Entry::Vacant(v) => {
                        r.expect("put_if_absent");
                        v.insert(d);
                    }
                }
            }
            Op::PutIfMatch(k, d, right) => {
                let etag = match (&model.get(&k), right) {
                    (Some(cur), true) => etag_of(cur),
                    _ => "0123".to_string(),
                };
                let r = store.put_if_match(&k, Bytes::from(d.clone()), &etag).await;
                if model.contains_key(&k) && right {
                    r.expect("put_if_match");
                    model.insert(k, d);
                } else {
                    assert!(r.unwrap_err().is_condition_failed());
                }
            }
            Op::Delete(k) => {
                store.delete(&k).await.expect("delete");
                model.remove(&k);
            }
            Op::Get(k) => match (store.get(&k).await, model.get(&k)) {
                (Ok((d, m)), Some(want)) => {
                    assert_eq!(&d[..], &want[..]);
                    assert_eq!(m.size, want.len() as u64);
                }
                (Err(e), None) => assert!(e.is_not_found()),
                (r, want) => panic!("get {k}: {r:?} vs model {want:?}"),
            },
            Op::Range(k, s, e) => match (store.get_range(&k, s..e).await, model.get(&k)) {
                (Ok(d), Some(want)) => {
                    let end = (e as usize).min(want.len());
                    let start = (s as usize).min(end);
                    assert_eq!(&d[..], &want[start..end]);
                }
                (Err(e), None) => assert!(e.is_not_found()),
                (r, want) => panic!("range {k}: {r:?} vs model {want:?}"),
            },
            Op::List(p, max) => {
                let got = list_all(store, &p, max).await;
                let want: Vec<String> = model
                    .keys()
                    .filter(|k| k.starts_with(&p))
                    .cloned()
                    .collect();
                assert_eq!(got, want, "list {p:?}");
            }
        }
    }
    let all = list_all(store, "", 3).await;
    assert_eq!(all, model.keys().cloned().collect::<Vec<_>>());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn local_store_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::open(dir.path()).expect("open");
        rt().block_on(run_model(&store, ops));
    }

    #[test]
    fn mem_store_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        rt().block_on(run_model(&MemStore::new(), ops));
    }

    #[test]
    fn namespaced_local_store_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(LocalStore::open(dir.path()).expect("open"));
        let ns = Namespaced::new(store, "ns/").expect("ns");
        rt().block_on(run_model(&ns, ops));
    }
}
