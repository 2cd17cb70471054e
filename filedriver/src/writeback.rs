//! Keeping the cache within its bound: the LRU lists, claiming extents for upload, uploading
//! them in batches, and evicting clean extents.

use super::cache::read_cached;
use super::{extent_key, Claim, Error, Extent, FileDriver, FileState, Result};
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl FileDriver {
    pub(super) fn list(&self, st: &Arc<FileState>, idx: u64, e: &mut Extent) {
        let mut lru = self.lru.lock();
        lru.next_tick += 1;
        e.tick = lru.next_tick;
        let list = if e.dirty {
            &mut lru.dirty
        } else {
            &mut lru.clean
        };
        list.insert(e.tick, (st.clone(), idx));
        lru.extents += 1;
        lru.bytes += e.len;
        if e.dirty {
            lru.dirty_bytes += e.len;
        }
    }

    pub(super) fn unlist(&self, e: &Extent) {
        let mut lru = self.lru.lock();
        let list = if e.dirty {
            &mut lru.dirty
        } else {
            &mut lru.clean
        };
        list.remove(&e.tick);
        lru.extents -= 1;
        lru.bytes -= e.len;
        if e.dirty {
            lru.dirty_bytes -= e.len;
        }
    }

    /// Changes an extent with `f` and moves it to the young end of its LRU list.
    pub(super) fn relist(
        &self,
        st: &Arc<FileState>,
        idx: u64,
        e: &mut Extent,
        f: impl FnOnce(&mut Extent),
    ) {
        self.unlist(e);
        f(e);
        self.list(st, idx, e);
    }

    /// Claims dirty extent `idx` for upload as a new object generation and reads its content.
    /// `None` when it is not cached or clean, or (unless `wait`) when another upload of it is
    /// running.
    pub(super) fn claim(&self, st: &Arc<FileState>, idx: u64, wait: bool) -> Result<Option<Claim>> {
        let mut m = st.meta.lock();
        loop {
            match m.extents.get(&idx) {
                Some(e) if e.uploading && wait => st.uploaded.wait(&mut m),
                Some(e) if e.dirty && !e.uploading => break,
                _ => return Ok(None),
            }
        }
        let Some(e) = m.extents.get_mut(&idx) else {
            return Ok(None);
        };
        let mut data = vec![0u8; e.len as usize];
        read_cached(&self.cache_path(st.file, idx, e.id), e.len, 0, &mut data)?;
        e.uploading = true;
        Ok(Some(Claim {
            idx,
            id: e.id,
            gen: e.gen,
            version: self.next_gen.fetch_add(1, Ordering::Relaxed),
            data: Bytes::from(data),
        }))
    }

    /// Uploads claimed extents concurrently and records the outcome; keeps the first error.
    pub(super) fn upload_batch(
        &self,
        st: &Arc<FileState>,
        claims: Vec<Claim>,
        first_err: &mut Option<Error>,
    ) {
        if claims.is_empty() {
            return;
        }
        let tasks: Vec<_> = claims
            .iter()
            .map(|c| {
                let store = self.store.clone();
                let key = extent_key(st.file, c.idx, c.version);
                let data = c.data.clone();
                self.rt.spawn(async move { store.put(&key, data).await })
            })
            .collect();
        let results = self.rt.block_on(async {
            let mut out = Vec::with_capacity(tasks.len());
            for t in tasks {
                out.push(match t.await {
                    Ok(r) => r.map(|_| ()).map_err(Error::from),
                    Err(e) => Err(Error::Io(std::io::Error::other(e.to_string()))),
                });
            }
            out
        });
        let mut m = st.meta.lock();
        for (c, r) in claims.iter().zip(results) {
            let ok = r.is_ok();
            if let Err(e) = r {
                tracing::warn!(file = st.file, idx = c.idx, err = %e, "extent upload failed");
                first_err.get_or_insert(e);
                // It may have landed all the same: never named, so garbage.
                m.garbage.push((c.idx, c.version));
            }
            if ok {
                self.uploaded
                    .fetch_add(c.data.len() as u64, Ordering::Relaxed);
                if let Some(older) = m.backend.insert(c.idx, c.version) {
                    m.garbage.push((c.idx, older));
                }
            }
            if let Some(e) = m.extents.get_mut(&c.idx).filter(|e| e.id == c.id) {
                e.uploading = false;
                if ok && e.gen == c.gen {
                    self.relist(st, c.idx, e, |e| e.dirty = false);
                }
            }
        }
        drop(m);
        st.uploaded.notify_all();
    }

    /// Brings the cache under its bound by evicting the least recently used clean extents.
    /// Dirty extents stay until the caller uploads them (then they are clean).
    pub(super) fn evict(&self) {
        let bound = self.config.cache_bytes;
        loop {
            let clean = {
                let lru = self.lru.lock();
                if lru.bytes <= bound {
                    return;
                }
                lru.clean
                    .iter()
                    .next()
                    .map(|(t, (st, i))| (*t, st.clone(), *i))
            };
            let Some((tick, st, idx)) = clean else {
                return;
            };
            {
                let mut m = st.meta.lock();
                if m.extents
                    .get(&idx)
                    .is_some_and(|e| e.tick == tick && !e.dirty)
                {
                    self.drop_extent(&st, &mut m, idx);
                }
            }
            self.release(st);
        }
    }
}
