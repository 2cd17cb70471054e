//! Where a SCO's clusters are on the backend: its original object, or the compacted object
//! the scrubber put in its place (same positions, dead ones left out).
//!
//! A reader asks for clusters by position `(SCO, index)`, which never changes. It tries the
//! object it knows (the volume's `compacted` table for its own SCOs, a layout it resolved
//! before, else the original key); when that object is gone (a scrub replaced it, possibly in
//! another volume whose SCOs a clone reads, or before a backend restart) it lists
//! `sco/<seq>.` in the owner's namespace, takes the newest compacted object, reads its header,
//! remembers the layout and asks again. A position the compacted object does not keep is an
//! error (it was found dead: nothing should read it), never other bytes.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use strata_backend::ObjectStore;

use crate::error::{Error, Result};
use crate::volume::backend::keys::sco_key;
use crate::volume::format::{
    compacted_key, parse_sco_key, sco_name, CompactedHeader, Generation, VolumeId,
    CLUSTER_SIZE_U64, SCO_HEADER_LEN,
};
use crate::volume::state::{Remote, Volume};

/// A compacted SCO's object and its header.
#[derive(Debug)]
pub(crate) struct Layout {
    pub(super) key: String,
    pub(super) header: CompactedHeader,
}

/// The layouts known, by (ancestor index or `None` for the volume's own, SCO).
pub(crate) type Layouts = HashMap<(Option<usize>, u64), Arc<Layout>>;

/// Layouts remembered per volume at most (each holds 4 bytes per kept position).
const MAX_LAYOUTS: usize = 4096;

/// How many times a read follows a SCO to a newer object before giving up.
const ATTEMPTS: usize = 3;

/// Why a SCO's bytes could not be had: the backend's answer (the caller tells unreachable
/// from missing), or anything else.
#[derive(Debug)]
pub(in crate::volume) enum Fetch {
    /// What the store answered.
    Backend(strata_backend::Error),
    /// A bad header, a position not kept, a runtime problem.
    Engine(Error),
}

impl From<Error> for Fetch {
    fn from(e: Error) -> Fetch {
        Fetch::Engine(e)
    }
}

type FResult<T> = std::result::Result<T, Fetch>;

impl Fetch {
    /// As the engine's error, `what` naming the call for a backend error.
    pub(in crate::volume) fn into_error(self, what: &str) -> Error {
        match self {
            Fetch::Backend(e) => Error::Backend {
                what: what.to_string(),
                source: e,
            },
            Fetch::Engine(e) => e,
        }
    }
}

/// Every key under `prefix` in `store_`.
pub(in crate::volume) fn list_all(
    what: &str,
    remote: &Remote,
    store_: &Arc<dyn ObjectStore>,
    prefix: &str,
) -> FResult<Vec<String>> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = store(remote.block_on(what, store_.list(prefix, token.as_deref(), 1000))?)?;
        out.extend(page.objects.into_iter().map(|o| o.key));
        match page.next {
            Some(t) => token = Some(t),
            None => return Ok(out),
        }
    }
}

/// The store's answer, with its error kept typed.
fn store<T>(r: std::result::Result<T, strata_backend::Error>) -> FResult<T> {
    r.map_err(Fetch::Backend)
}

impl Volume {
    /// Bytes `start..start + len` of SCO `sco` as laid out originally (header, then clusters),
    /// from whichever object holds them now, in `store` (the namespace of the volume that
    /// sealed it: this one, or ancestor `ancestor`), `epoch` being the original's.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::volume) fn get_sco_range(
        &self,
        what: &str,
        remote: &Remote,
        store_: &Arc<dyn ObjectStore>,
        ancestor: Option<usize>,
        sco: u64,
        epoch: u64,
        start: u64,
        len: u64,
    ) -> FResult<Bytes> {
        let owner = match ancestor {
            None => self.id,
            Some(i) => self.ancestor(i)?,
        };
        let mut layout = self.known_layout(ancestor, sco, epoch)?;
        for _ in 0..ATTEMPTS {
            let (key, from) = match &layout {
                None => (sco_key(sco, epoch), start),
                Some(l) => (l.key.clone(), Self::compacted_offset(what, l, start, len)?),
            };
            match remote.block_on(what, store_.get_range(&key, from..from + len))? {
                Err(e) if e.is_not_found() => {
                    self.sco_layouts.lock().remove(&(ancestor, sco));
                    let Some(l) = self.find_layout(what, remote, store_, owner, sco, epoch)? else {
                        return Err(Fetch::Backend(e));
                    };
                    let l = Arc::new(l);
                    self.remember(ancestor, sco, l.clone());
                    layout = Some(l);
                }
                other => return store(other),
            }
        }
        Err(Fetch::Engine(Error::Io(format!(
            "{what}: the SCO moved {ATTEMPTS} times while it was read"
        ))))
    }

    /// Where `start..start + len` (original layout, whole clusters) is in the compacted
    /// object `l`: every position asked for must be kept there, one after the other.
    fn compacted_offset(what: &str, l: &Layout, start: u64, len: u64) -> Result<u64> {
        let first = (start - SCO_HEADER_LEN) / CLUSTER_SIZE_U64;
        let n = len / CLUSTER_SIZE_U64;
        let idx = |i: u64| u32::try_from(first + i).unwrap_or(u32::MAX);
        let o0 = l.header.offset_of(idx(0));
        let o1 = l.header.offset_of(idx(n.saturating_sub(1)));
        match (o0, o1) {
            (Some(a), Some(b)) if b - a == (n.saturating_sub(1)) * CLUSTER_SIZE_U64 => Ok(a),
            _ => Err(Error::Io(format!(
                "{what}: the compacted SCO {} does not keep clusters {}..{}: they were found \
                 dead by the scrubber",
                l.key,
                first,
                first + n
            ))),
        }
    }

    /// The layout remembered for `sco`, or for the volume's own SCOs the one its
    /// MetaDataStore records (`None`: the original object).
    pub(super) fn known_layout(
        &self,
        ancestor: Option<usize>,
        sco: u64,
        epoch: u64,
    ) -> FResult<Option<Arc<Layout>>> {
        if let Some(l) = self.sco_layouts.lock().get(&(ancestor, sco)) {
            return Ok(Some(l.clone()));
        }
        if ancestor.is_some() {
            return Ok(None);
        }
        let Some(c) = self.mds.compacted(sco)? else {
            return Ok(None);
        };
        if c.kept == 0 {
            return Ok(None);
        }
        let Some(remote) = self.remote.lock().clone() else {
            return Ok(None);
        };
        let key = compacted_key(sco, epoch, c.writer, c.counter);
        let what = format!("compacted SCO {key}");
        let l = Arc::new(self.read_layout(&what, &remote, &remote.store, self.id, sco, key)?);
        self.remember(None, sco, l.clone());
        Ok(Some(l))
    }

    /// The newest compacted object of `sco` (uploaded in `epoch`) in `store`, found by
    /// listing (`None`: there is none).
    pub(super) fn find_layout(
        &self,
        what: &str,
        remote: &Remote,
        store_: &Arc<dyn ObjectStore>,
        volume: VolumeId,
        sco: u64,
        epoch: u64,
    ) -> FResult<Option<Layout>> {
        let best = self
            .compacted_objects(what, remote, store_, sco, epoch)?
            .into_iter()
            .max();
        match best {
            None => Ok(None),
            Some((_, key)) => Ok(Some(
                self.read_layout(what, remote, store_, volume, sco, key)?,
            )),
        }
    }

    /// The compacted objects of `sco` uploaded in `epoch` in `store_`, by listing:
    /// (generation, key).
    pub(super) fn compacted_objects(
        &self,
        what: &str,
        remote: &Remote,
        store_: &Arc<dyn ObjectStore>,
        sco: u64,
        epoch: u64,
    ) -> FResult<Vec<(Generation, String)>> {
        let prefix = format!("sco/{}.", sco_name(sco));
        Ok(list_all(what, remote, store_, &prefix)?
            .into_iter()
            .filter_map(|k| match parse_sco_key(&k) {
                Some((s, e, Some(g))) if s == sco && e == epoch => Some((g, k)),
                _ => None,
            })
            .collect())
    }

    /// Reads and checks the header of the compacted object `key`.
    fn read_layout(
        &self,
        what: &str,
        remote: &Remote,
        store_: &Arc<dyn ObjectStore>,
        volume: VolumeId,
        sco: u64,
        key: String,
    ) -> FResult<Layout> {
        let first = store(remote.block_on(what, store_.get_range(&key, 0..CLUSTER_SIZE_U64))?)?;
        let fmt = |e| Fetch::Engine(Error::Format(e));
        let need = CompactedHeader::needed(&key, &first).map_err(fmt)?;
        let bytes = if need <= first.len() {
            first
        } else {
            let rest = remote.block_on(
                what,
                store_.get_range(&key, first.len() as u64..need as u64),
            )?;
            let mut b = first.to_vec();
            b.extend_from_slice(&store(rest)?);
            Bytes::from(b)
        };
        let header = CompactedHeader::decode(&key, &bytes, volume, sco).map_err(fmt)?;
        Ok(Layout { key, header })
    }

    /// Remembers a resolved layout; the memory is bounded ([`MAX_LAYOUTS`], then it starts
    /// over: a layout forgotten is listed again when needed).
    fn remember(&self, ancestor: Option<usize>, sco: u64, l: Arc<Layout>) {
        let mut m = self.sco_layouts.lock();
        if m.len() >= MAX_LAYOUTS {
            m.clear();
        }
        m.insert((ancestor, sco), l);
    }

    /// Remembers the layout of a SCO this volume just compacted (or forgets it: `None`).
    pub(in crate::volume) fn set_layout(&self, sco: u64, l: Option<(String, CompactedHeader)>) {
        let mut m = self.sco_layouts.lock();
        match l {
            Some((key, header)) => {
                if m.len() >= MAX_LAYOUTS {
                    m.clear();
                }
                m.insert((None, sco), Arc::new(Layout { key, header }));
            }
            None => {
                m.remove(&(None, sco));
            }
        }
    }
}
