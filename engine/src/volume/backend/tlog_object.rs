//! Reading a TLog back from the backend: its original object, or the compacted one a scrub
//! put in its place (`tlog/<seq>.<epoch>.<writer>.<counter>`: the same TLog less the cluster
//! entries of positions found dead). Both give every view (a snapshot's TLog, a reader point,
//! the head) the same map, so a reader takes whichever it finds.

use bytes::Bytes;
use strata_backend::ObjectStore;

use super::keys::tlog_key;
use super::{be_err, get_at_most, MAX_TLOG_OBJECT_LEN};
use crate::error::Result;
use crate::volume::format::{compacted_tlog_key, parse_tlog_key, tlog_name, Generation};

/// How many times a read follows a TLog to a newer object before giving up (a scrub may
/// replace the object it found meanwhile).
const ATTEMPTS: usize = 3;

/// TLog `seq` uploaded in `epoch`: `known` is the compacted generation the caller's
/// MetaDataStore records (tried first), else the original, else (gone: a scrub replaced it)
/// the newest compacted object listed. Returns its key and bytes (not parsed).
pub(in crate::volume) async fn get_tlog(
    store: &dyn ObjectStore,
    seq: u64,
    epoch: u64,
    known: Option<Generation>,
) -> Result<(String, Bytes)> {
    let original = tlog_key(seq, epoch);
    let mut first = known.map(|(w, c)| compacted_tlog_key(seq, epoch, w, c));
    for _ in 0..ATTEMPTS {
        let mut tries = Vec::new();
        tries.extend(first.take());
        tries.push(original.clone());
        for key in tries {
            match get_at_most(store, &key, MAX_TLOG_OBJECT_LEN).await {
                Ok((b, _)) => return Ok((key, b)),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(be_err(&key, e)),
            }
        }
        first = newest_compacted(store, seq, epoch).await?;
        if first.is_none() {
            break;
        }
    }
    Err(be_err(
        &original,
        strata_backend::Error::NotFound {
            key: original.clone(),
        },
    ))
}

/// The compacted objects of TLog `seq` uploaded in `epoch` on the backend, by listing:
/// (generation, key).
pub(in crate::volume) async fn compacted_tlogs(
    store: &dyn ObjectStore,
    seq: u64,
    epoch: u64,
) -> Result<Vec<(Generation, String)>> {
    let prefix = format!("tlog/{}.{epoch:016x}.", tlog_name(seq));
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = store
            .list(&prefix, token.as_deref(), 1000)
            .await
            .map_err(|e| be_err(&prefix, e))?;
        for o in page.objects {
            if let Some((s, e, Some(g))) = parse_tlog_key(&o.key) {
                if s == seq && e == epoch {
                    out.push((g, o.key));
                }
            }
        }
        match page.next {
            Some(t) => token = Some(t),
            None => return Ok(out),
        }
    }
}

async fn newest_compacted(store: &dyn ObjectStore, seq: u64, epoch: u64) -> Result<Option<String>> {
    Ok(compacted_tlogs(store, seq, epoch)
        .await?
        .into_iter()
        .max()
        .map(|(_, k)| k))
}
