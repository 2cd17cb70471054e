//! Tests of the S3 store that need no S3 server (the rest run against SeaweedFS in
//! `strata-tests`).

use super::*;

/// A store that accepts connections and never answers is cut by the request timeout and
/// the retry bound: `connect` fails "unavailable", in bounded time, naming the endpoint.
#[test]
fn a_store_that_hangs_is_cut_by_timeouts() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        // Accept and hold every connection, reading nothing, answering nothing.
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                held.push(sock);
            }
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let creds = dir.path().join("creds");
        std::fs::write(
            &creds,
            "[default]\naws_access_key_id = k\naws_secret_access_key = s\n",
        )
        .expect("write creds");
        let mut config = S3Config::new(
            format!("http://{addr}"),
            "bucket",
            CredentialsSource::File(creds),
        );
        config.request_timeout = Duration::from_millis(500);
        config.retry = RetryPolicy {
            max_attempts: 2,
            max_elapsed: Duration::from_secs(10),
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(10),
        };
        let store = S3Store::new(
            &S3Config {
                credentials: CredentialsSource::File(dir.path().join("nonexistent")),
                ..config.clone()
            },
            default_http_client(),
        );
        assert!(store.is_err(), "unreadable credentials file refused");
        let start = std::time::Instant::now();
        let err = S3Store::connect(config).await.expect_err("a hanging store");
        let took = start.elapsed();
        assert!(matches!(err, Error::Unavailable { .. }), "{err}");
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
        assert!(took < Duration::from_secs(10), "took {took:?}");
        assert!(
            took >= Duration::from_millis(500),
            "took {took:?}: no timeout ran"
        );
        hold.abort();
    });
}
