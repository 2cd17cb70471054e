//! `S3Store` against a real S3 server (SeaweedFS `weed mini`, in a private namespace): the
//! store conformance suite every store runs, the conditional-put races, a conditional put
//! whose answer is lost on the way back, and the errors at start for wrong credentials and a
//! missing bucket.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use bytes::Bytes;
use strata_backend::conformance::{conditional_races, conformance, Etags, ListOrder};
use strata_backend::s3::default_http_client;
use strata_backend::{Error, ObjectStore, S3Config, S3Store, PUT_ID_META};
use strata_ganesha_conf::launcher::S3ServerOptions;
use strata_tests::s3::{block_on_in_namespace, s3_config, weed_bin};
use strata_tests::*;

/// A gateway (Ganesha's VFS FSAL; only its namespace matters) with the S3 test server.
fn server() -> Option<(TestGateway, S3ServerOptions)> {
    if !require_tools(GATEWAY_TOOLS) {
        return None;
    }
    let s3 = S3ServerOptions::for_tests(weed_bin()?);
    let dir = tempdir();
    let export = dir.path().join("export");
    std::fs::create_dir_all(&export).expect("mkdir");
    let conf = vfs_conf(&export);
    let tg = TestGateway::launch_with(dir, export, conf, None, Some(s3.clone()))
        .unwrap_or_else(|e| panic!("{e}"));
    Some((tg, s3))
}

fn config(tg: &TestGateway, s3: &S3ServerOptions, prefix: &str) -> S3Config {
    s3_config(
        s3,
        prefix,
        &tg.dir().join(format!("creds-{}", prefix.replace('/', "_"))),
    )
}

#[test]
fn s3_store_passes_the_store_conformance_suite() {
    let Some((tg, s3)) = server() else {
        return;
    };
    let (suite, races) = (config(&tg, &s3, "suite/"), config(&tg, &s3, "races/"));
    block_on_in_namespace(tg.gw(), async move {
        // The connect probes conditional writes: SeaweedFS passes. Files above 6 MiB go up in
        // 5 MiB parts, so the suite's 11 MiB file is a 3-part upload.
        let suite = S3Config {
            multipart_threshold: 6 << 20,
            part_size: 5 << 20,
            ..suite
        };
        let store = Arc::new(S3Store::connect(suite).await.expect("connect"));
        // SeaweedFS lists its filer tree segment by segment (see ListOrder::Tree).
        conformance(store.clone(), Etags::Md5, ListOrder::Tree).await;
        // The large file really went up in 3 parts (a multipart ETag ends in "-<parts>").
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big");
        std::fs::write(&path, vec![7u8; (11 << 20) + 1]).expect("write");
        let m = store.put_file("big", &path).await.expect("put_file");
        assert!(m.etag.ends_with("-3"), "not a 3-part upload: {}", m.etag);
        assert_eq!(store.head("big").await.expect("head").size, (11 << 20) + 1);
        let store = Arc::new(S3Store::connect(races).await.expect("connect"));
        conditional_races(store).await;
    });
}

/// Loses the answer to the next `armed` PUTs: each reaches the server and is applied, and the
/// client sees a timeout instead of the answer. Fails the next `heads` HEADs before they are
/// sent (a connection reset). With `strip_meta`, HEAD answers lose their user metadata (as a
/// store that does not keep it).
#[derive(Debug, Clone)]
struct LoseAnswers {
    inner: SharedHttpClient,
    armed: Arc<AtomicU32>,
    lost: Arc<AtomicU32>,
    heads: Arc<AtomicU32>,
    strip_meta: bool,
}

#[derive(Debug)]
struct LoseConn {
    inner: SharedHttpConnector,
    armed: Arc<AtomicU32>,
    lost: Arc<AtomicU32>,
    heads: Arc<AtomicU32>,
    strip_meta: bool,
}

impl LoseAnswers {
    fn new(strip_meta: bool) -> LoseAnswers {
        LoseAnswers {
            inner: default_http_client(),
            armed: Arc::new(AtomicU32::new(0)),
            lost: Arc::new(AtomicU32::new(0)),
            heads: Arc::new(AtomicU32::new(0)),
            strip_meta,
        }
    }
}

impl HttpClient for LoseAnswers {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(LoseConn {
            inner: self.inner.http_connector(settings, components),
            armed: self.armed.clone(),
            lost: self.lost.clone(),
            heads: self.heads.clone(),
            strip_meta: self.strip_meta,
        })
    }
}

impl HttpConnector for LoseConn {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let is_put = request.method() == "PUT";
        let is_head = request.method() == "HEAD";
        let (inner, armed, lost) = (self.inner.clone(), self.armed.clone(), self.lost.clone());
        let (heads, strip_meta) = (self.heads.clone(), self.strip_meta);
        HttpConnectorFuture::new(async move {
            let take = |n: u32| n.checked_sub(1);
            if is_head
                && heads
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, take)
                    .is_ok()
            {
                return Err(ConnectorError::io("test: connection reset".into()));
            }
            let mut answer = inner.call(request).await?;
            if is_head && strip_meta {
                answer
                    .headers_mut()
                    .remove(format!("x-amz-meta-{PUT_ID_META}"));
            }
            if is_put
                && armed
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, take)
                    .is_ok()
            {
                lost.fetch_add(1, Ordering::SeqCst);
                return Err(ConnectorError::timeout("test: the answer was lost".into()));
            }
            Ok(answer)
        })
    }
}

#[test]
fn a_conditional_put_whose_answer_was_lost_is_told_from_another_writers() {
    let Some((tg, s3)) = server() else {
        return;
    };
    let cfg = config(&tg, &s3, "lost/");
    block_on_in_namespace(tg.gw(), async move {
        let lose = LoseAnswers::new(false);
        let store = S3Store::connect_with_http_client(cfg, SharedHttpClient::new(lose.clone()))
            .await
            .expect("connect");
        // 1. A create that succeeded, its answer lost: the retry's 412 is ours.
        lose.armed.store(1, Ordering::SeqCst);
        let m = store
            .put_if_absent("k", Bytes::from_static(b"mine"))
            .await
            .expect("a create whose answer was lost still succeeds");
        assert_eq!(lose.lost.load(Ordering::SeqCst), 1, "an answer was lost");
        assert_eq!(&store.get("k").await.expect("get").0[..], b"mine");
        assert_eq!(store.head("k").await.expect("head").etag, m.etag);
        // 1b. The same, and the HEAD that looks for our put id fails once: retried, not taken
        // for another writer's object.
        lose.armed.store(1, Ordering::SeqCst);
        lose.heads.store(1, Ordering::SeqCst);
        store
            .put_if_absent("k2", Bytes::from_static(b"mine too"))
            .await
            .expect("a failed HEAD after a lost answer is retried");
        assert_eq!(lose.heads.load(Ordering::SeqCst), 0, "the HEAD failed once");
        assert_eq!(lose.lost.load(Ordering::SeqCst), 2);
        // 2. An update that succeeded, its answer lost: the retry's stale If-Match is ours too.
        lose.armed.store(1, Ordering::SeqCst);
        let m2 = store
            .put_if_match("k", Bytes::from_static(b"mine, updated"), &m.etag)
            .await
            .expect("an update whose answer was lost still succeeds");
        assert_eq!(lose.lost.load(Ordering::SeqCst), 3);
        assert_eq!(&store.get("k").await.expect("get").0[..], b"mine, updated");
        assert_ne!(m2.etag, m.etag);
        // 3. Another writer's object: a create refused with its answer lost stays refused.
        store
            .put("other", Bytes::from_static(b"theirs"))
            .await
            .expect("put");
        lose.armed.store(1, Ordering::SeqCst);
        let err = store
            .put_if_absent("other", Bytes::from_static(b"mine"))
            .await
            .expect_err("someone else's object");
        assert!(err.is_condition_failed(), "{err}");
        assert_eq!(lose.lost.load(Ordering::SeqCst), 4);
        assert_eq!(&store.get("other").await.expect("get").0[..], b"theirs");
    });
}

/// A store that does not keep user metadata cannot tell a lost answer from another writer:
/// refused at start by the probe's last step.
#[test]
fn a_store_that_drops_user_metadata_is_refused() {
    let Some((tg, s3)) = server() else {
        return;
    };
    let cfg = config(&tg, &s3, "nometa/");
    block_on_in_namespace(tg.gw(), async move {
        let client = SharedHttpClient::new(LoseAnswers::new(true));
        let err = S3Store::connect_with_http_client(cfg, client)
            .await
            .expect_err("metadata dropped");
        assert!(
            matches!(&err, Error::ConditionsIgnored { what } if what.contains("user metadata")),
            "{err}"
        );
    });
}

#[test]
fn wrong_credentials_and_a_missing_bucket_are_named_at_start() {
    let Some((tg, s3)) = server() else {
        return;
    };
    let wrong = S3ServerOptions {
        secret_key: "not-the-secret-0123456789".into(),
        ..s3.clone()
    };
    let denied = config(&tg, &wrong, "x/");
    let no_bucket = S3Config {
        bucket: "no-such-bucket".into(),
        ..config(&tg, &s3, "y/")
    };
    block_on_in_namespace(tg.gw(), async move {
        let err = S3Store::connect(denied).await.expect_err("wrong secret");
        let msg = err.to_string();
        assert!(matches!(err, Error::Denied { .. }), "{msg}");
        assert!(
            msg.contains("strata-test-key") && msg.contains("refused"),
            "{msg}"
        );
        assert!(!msg.contains("not-the-secret"), "the secret leaked: {msg}");
        let err = S3Store::connect(no_bucket).await.expect_err("no bucket");
        assert!(matches!(err, Error::NoBucket { .. }), "{err}");
        assert!(err.to_string().contains("no-such-bucket"), "{err}");
    });
}
