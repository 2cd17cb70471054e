//! Switches for end-to-end tests, read from the environment of the process that runs the
//! engine (`ganesha.nfsd`); never set in production.
//!
//! - `STRATA_TEST_UPLOAD_DELAY_MS=N`: every PUT to the backend waits N milliseconds first (a
//!   backend slower than the writers, to test backpressure through the real server).

use std::sync::Arc;
use std::time::Duration;

use strata_backend::{Call, Hook, HookedStore, ObjectStore};

/// The environment variable that slows every PUT down.
const UPLOAD_DELAY: &str = "STRATA_TEST_UPLOAD_DELAY_MS";

/// Delays every PUT by a fixed time.
#[derive(Debug)]
struct DelayPuts(Duration);

#[async_trait::async_trait]
impl Hook for DelayPuts {
    async fn before(&self, call: &Call<'_>) -> strata_backend::Result<()> {
        if matches!(call, Call::Put { .. }) {
            tokio::time::sleep(self.0).await;
        }
        Ok(())
    }
}

/// `store`, behind a delay on every PUT when `STRATA_TEST_UPLOAD_DELAY_MS` is set to a number
/// of milliseconds (a value that is not a number is ignored, with a warning).
pub(crate) fn slow_backend(store: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
    let Some(v) = std::env::var_os(UPLOAD_DELAY) else {
        return store;
    };
    match v.to_str().and_then(|s| s.parse::<u64>().ok()) {
        Some(ms) => {
            tracing::warn!(
                ms,
                "{UPLOAD_DELAY}: every backend PUT is delayed (a test knob)"
            );
            Arc::new(HookedStore::new(
                store,
                DelayPuts(Duration::from_millis(ms)),
            ))
        }
        None => {
            tracing::warn!(value = ?v, "{UPLOAD_DELAY} is not a number of milliseconds: ignored");
            store
        }
    }
}
