//! The one behaviour every store shares, as a suite any store can run (arrow-rs
//! `object_store`'s conformance tests are the model): every call, paging, ranged reads, the
//! conditional-put races and the conditional-write probe. The crate's tests run it on the
//! local and memory stores; `strata-tests` runs it on [`crate::S3Store`] against a real S3
//! server (feature `conformance`). A store under test must start empty.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::*;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// Every listed key of `prefix`, fetched page by page with `max` per page.
pub async fn list_all(store: &dyn ObjectStore, prefix: &str, max: usize) -> Vec<String> {
    list_all_meta(store, prefix, max)
        .await
        .into_iter()
        .map(|m| m.key)
        .collect()
}

/// Every listed object of `prefix` with its metadata, fetched page by page.
pub async fn list_all_meta(store: &dyn ObjectStore, prefix: &str, max: usize) -> Vec<ObjectMeta> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = store
            .list(prefix, token.as_deref(), max)
            .await
            .expect("list");
        assert!(page.objects.len() <= max.max(1), "page larger than max");
        out.extend(page.objects);
        match page.next {
            Some(t) => token = Some(t),
            None => return out,
        }
    }
}

/// What a store's ETags are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Etags {
    /// The hex MD5 of the content, as S3 for a single-part PUT ([`MemStore`]): equal content,
    /// equal ETag.
    Md5,
    /// An opaque version tag ([`LocalStore`]): every put makes a new one, even of equal content.
    Version,
}

/// The order of a store's listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListOrder {
    /// Ascending byte order of the whole key, as S3 specifies (local, memory, AWS).
    Bytes,
    /// Segment by segment: a "directory" `b/` sorts as `b`, before its siblings `b.z` and
    /// `ba` (although `.` sorts below `/` byte-wise). SeaweedFS lists its filer tree so.
    /// Paging is still complete and without repeats.
    Tree,
}

impl ListOrder {
    /// `keys` sorted in this order.
    pub fn sorted(self, keys: &[String]) -> Vec<String> {
        let mut keys = keys.to_vec();
        match self {
            ListOrder::Bytes => keys.sort(),
            ListOrder::Tree => keys.sort_by_key(|k| k.replace('/', "\0")),
        }
        keys
    }
}

/// The behaviour every store shares.
pub async fn conformance(store: Arc<dyn ObjectStore>, etags: Etags, order: ListOrder) {
    // put / get / head / get_range agree on the metadata.
    let m = store.put("a/one", b("hello")).await.expect("put");
    assert_eq!((m.key.as_str(), m.size), ("a/one", 5));
    if etags == Etags::Md5 {
        assert_eq!(m.etag, "5d41402abc4b2a76b9719d911017c592", "MD5 hex as S3");
    }
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
    let (data, meta) = store.get("a/one").await.expect("get");
    assert_eq!(&data[..], b"world!");
    assert_eq!(meta, m2);
    assert_eq!(store.head("a/one").await.expect("head"), m2);
    // Replacing with equal content: a new version tag, or the same MD5.
    let m3 = store.put("a/one", b("world!")).await.expect("replace");
    match etags {
        Etags::Version => assert_ne!(m3.etag, m2.etag, "a replacement is a new version"),
        Etags::Md5 => assert_eq!(m3.etag, m2.etag, "same content, same MD5"),
    }
    assert_eq!(store.head("a/one").await.expect("head"), m3);
    if etags == Etags::Version {
        assert!(
            store
                .put_if_match("a/one", b("x"), &m2.etag)
                .await
                .unwrap_err()
                .is_condition_failed(),
            "the ETag of a replaced version of equal content is stale"
        );
    }
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
    // Batched deletes: missing keys included; others untouched.
    let batch: Vec<String> = (0..25).map(|i| format!("many/{i:02}")).collect();
    for k in &batch {
        store.put(k, b(k)).await.expect("put");
    }
    let mut doomed: Vec<String> = batch.iter().step_by(2).cloned().collect();
    doomed.push("many/missing".into());
    store.delete_many(&doomed).await.expect("delete_many");
    let left = list_all(&*store, "many/", 100).await;
    let want: Vec<String> = batch.iter().skip(1).step_by(2).cloned().collect();
    assert_eq!(left, want, "delete_many deletes exactly its keys");
    store.delete_many(&want).await.expect("delete_many");
    store.delete_many(&[]).await.expect("nothing to delete");
    assert!(list_all(&*store, "many/", 100).await.is_empty());
    assert!(matches!(
        store.delete_many(&["ok".into(), "a//b".into()]).await,
        Err(Error::InvalidKey { .. })
    ));

    // Listing: ascending, recursive, string prefixes, paging by token.
    let keys = [
        "b/x/1", "b/x/2", "b/x2", "b/y", "b.z", "ba", "c/d/e/f", "b/x/10",
    ];
    let mut metas = BTreeMap::new();
    for k in keys {
        metas.insert(k.to_string(), store.put(k, b(k)).await.expect("put"));
    }
    metas.insert("a/one".to_string(), m3.clone());
    let mut all: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    all.push("a/one".into());
    all.sort();
    let all = order.sorted(&all);
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
    // A listing carries the sizes and etags the puts returned.
    let page = store.list("b/y", None, 10).await.expect("list");
    assert_eq!(page.objects, vec![metas["b/y"].clone()]);
    assert_eq!(page.objects[0].size, 3);
    if etags == Etags::Md5 {
        assert_eq!(page.objects[0].etag, etag_of(b"b/y"));
    }
    assert_eq!(page.next, None);
    assert_eq!(
        list_all_meta(&*store, "", 3).await,
        all.iter().map(|k| metas[k].clone()).collect::<Vec<_>>()
    );
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
    // put_file stores a local file's contents; a replaced source (renamed over, as a volume
    // evicts an SCO) leaves the object as it was.
    let src_dir = tempfile::tempdir().expect("tempdir");
    let src = src_dir.path().join("sco");
    std::fs::write(&src, b"sealed bytes").expect("write source");
    let m = store.put_file("f/sco", &src).await.expect("put_file");
    assert_eq!((m.key.as_str(), m.size), ("f/sco", 12));
    let tmp = src_dir.path().join("stub");
    std::fs::write(&tmp, b"stub").expect("write stub");
    std::fs::rename(&tmp, &src).expect("replace source");
    let (data, meta) = store.get("f/sco").await.expect("get");
    assert_eq!((&data[..], meta), (&b"sealed bytes"[..], m));
    assert!(store
        .put_file("f/missing", &src_dir.path().join("nope"))
        .await
        .is_err());
    store.delete("f/sco").await.expect("delete");
    // A larger file (in parts on a store whose multipart threshold is below it): every byte,
    // also across part boundaries.
    let big: Vec<u8> = (0..(11u32 << 20) + 17)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let big_path = src_dir.path().join("big");
    std::fs::write(&big_path, &big).expect("write the large source");
    let m = store
        .put_file("f/big", &big_path)
        .await
        .expect("put_file large");
    assert_eq!(m.size, big.len() as u64);
    let (data, meta) = store.get("f/big").await.expect("get large");
    assert!(data[..] == big[..], "the large object differs");
    assert_eq!(meta.size, m.size);
    for (start, len) in [
        (0u64, 100u64),
        ((5 << 20) - 10, 20),
        ((10 << 20) - 3, 1 << 20),
    ] {
        let end = (start + len).min(big.len() as u64);
        let got = store.get_range("f/big", start..end).await.expect("range");
        assert!(
            got[..] == big[start as usize..end as usize],
            "range {start}+{len}"
        );
    }
    store.delete("f/big").await.expect("delete");
    // The conditional-write probe passes on every store of the contract.
    crate::probe::conditional_writes(&*store, "probe/")
        .await
        .expect("the probe");
    assert!(
        list_all(&*store, "probe/", 10).await.is_empty(),
        "the probe cleans up"
    );
}

/// 8 tasks race `put_if_absent` on one key, then `put_if_match` on one etag: one winner each.
pub async fn conditional_races(store: Arc<dyn ObjectStore>) {
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
