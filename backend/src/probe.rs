//! The conditional-write probe: before a gateway trusts a store to fence a second writer, it
//! checks that the store honours conditional puts, under keys of its own below `dir`:
//!
//! 1. a create (`If-None-Match: *`) of a new key succeeds;
//! 2. a second create of that key fails (Garage ignores `If-None-Match`);
//! 3. an update with a stale ETag (`If-Match`) fails;
//! 4. an update of a missing key fails and creates nothing (MinIO once accepted it);
//! 5. eight creates racing on one new key: exactly one wins, and its bytes are stored;
//! 6. eight updates racing on that object's ETag: exactly one wins, and its bytes are stored;
//! 7. the probe's objects are deleted (a failed delete is logged; the owner check at start
//!    ignores keys under [`PROBE_PREFIX`], so a leftover never blocks a start).
//!
//! A store that answers a conditional put "not implemented" (HTTP 501) fails the probe too.
//! The S3 store adds a last step of its own: a put's user metadata (its put id) comes back.
//!
//! A failure names the step; the caller refuses to run unless the user said the gateway is
//! the store's only writer.

use bytes::Bytes;

use crate::join::join_all;
use crate::{Error, ObjectStore, Result};

/// Writers racing in steps 5 and 6.
const RACERS: u8 = 8;

/// Where the probe writes (a directory of its own below this).
pub const PROBE_PREFIX: &str = "probe/";

fn unsafe_store(what: &str) -> Error {
    Error::ConditionsIgnored {
        what: what.to_string(),
    }
}

/// A store error, unless it says the store does not implement conditional puts.
fn store_error(e: Error) -> Error {
    match e {
        Error::Protocol { reason, .. }
            if reason.starts_with("HTTP 501") || reason.contains(" NotImplemented:") =>
        {
            unsafe_store(&format!("a conditional put was answered: {reason}"))
        }
        e => e,
    }
}

/// Runs the probe on `store` under `dir` (a prefix ending in `/`, below [`PROBE_PREFIX`]). Errors of the store itself
/// (unreachable, refused) are returned as they are.
pub async fn conditional_writes(store: &(dyn ObjectStore + 'static), dir: &str) -> Result<()> {
    let a = format!("{dir}a");
    let missing = format!("{dir}missing");
    let race = format!("{dir}race");
    let result = steps(store, &a, &missing, &race).await.map_err(store_error);
    for key in [&a, &missing, &race] {
        if let Err(e) = store.delete(key).await {
            tracing::warn!(key, error = %e, "the conditional-write probe could not delete its object");
        }
    }
    result
}

async fn steps(
    store: &(dyn ObjectStore + 'static),
    a: &str,
    missing: &str,
    race: &str,
) -> Result<()> {
    let first = store.put_if_absent(a, Bytes::from_static(b"1")).await?;
    match store.put_if_absent(a, Bytes::from_static(b"2")).await {
        Err(e) if e.is_condition_failed() => {}
        Err(e) => return Err(e),
        Ok(_) => {
            return Err(unsafe_store(
                "a create (If-None-Match: *) over an existing object succeeded",
            ))
        }
    }
    let stale = "00000000000000000000000000000000";
    let stale = if first.etag == stale { "1" } else { stale };
    match store.put_if_match(a, Bytes::from_static(b"3"), stale).await {
        Err(e) if e.is_condition_failed() => {}
        Err(e) => return Err(e),
        Ok(_) => return Err(unsafe_store("an update with a stale If-Match succeeded")),
    }
    match store
        .put_if_match(missing, Bytes::from_static(b"4"), &first.etag)
        .await
    {
        Err(e) if e.is_condition_failed() || e.is_not_found() => {}
        Err(e) => return Err(e),
        Ok(_) => {
            return Err(unsafe_store(
                "an update (If-Match) of a missing key succeeded",
            ))
        }
    }
    match store.head(missing).await {
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e),
        Ok(_) => {
            return Err(unsafe_store(
                "a refused update (If-Match) of a missing key created it",
            ))
        }
    }
    race_creates(store, race).await
}

/// Step 5: eight creates racing on the new `key`: exactly one wins; then step 6 on its version.
async fn race_creates(store: &(dyn ObjectStore + 'static), key: &str) -> Result<()> {
    // The racers run as separate requests at once (joined futures on one task).
    let puts = (0..RACERS).map(|i| {
        let body = Bytes::from(vec![i; 64]);
        async move { (i, store.put_if_absent(key, body).await) }
    });
    let etag = one_winner(
        store,
        key,
        join_all(puts).await,
        "creates (If-None-Match: *) of one key",
    )
    .await?;
    race_updates(store, key, &etag).await
}

/// Step 6: eight updates racing on the version `etag` of `key`: exactly one wins.
async fn race_updates(store: &(dyn ObjectStore + 'static), key: &str, etag: &str) -> Result<()> {
    let puts = (0..RACERS).map(|i| {
        let body = Bytes::from(vec![100 + i; 64]);
        async move { (100 + i, store.put_if_match(key, body, etag).await) }
    });
    one_winner(
        store,
        key,
        join_all(puts).await,
        "updates (If-Match) of one version",
    )
    .await?;
    Ok(())
}

/// Checks a race's outcome: exactly one racer succeeded (the others were refused, any other
/// error is the store's) and `key` holds its 64 bytes of its tag; returns the object's ETag.
async fn one_winner(
    store: &(dyn ObjectStore + 'static),
    key: &str,
    results: Vec<(u8, Result<crate::ObjectMeta>)>,
    what: &str,
) -> Result<String> {
    let mut winners = Vec::new();
    for (tag, r) in results {
        match r {
            Ok(_) => winners.push(tag),
            Err(e) if e.is_condition_failed() => {}
            Err(e) => return Err(e),
        }
    }
    if winners.len() != 1 {
        return Err(unsafe_store(&format!(
            "{} of {RACERS} racing {what} succeeded",
            winners.len()
        )));
    }
    let (data, meta) = store.get(key).await?;
    if data[..] != vec![winners[0]; 64][..] {
        return Err(unsafe_store(&format!(
            "the object after racing {what} is not the winner's"
        )));
    }
    Ok(meta.etag)
}
