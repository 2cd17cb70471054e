//! The start rules of the owner record (`FORMATS.md`, "Owner record"): before anything else
//! touches the backend, a gateway bumps the epoch of a record naming it, claims an empty
//! backend, claims a backend of objects without a record only if its namespace accounts for
//! every one of them, and refuses everything else without writing or deleting anything.

use strata_backend::ObjectStore;

use super::record::{describe, OwnerRecord, OWNER_KEY, RECORD_MAX};
use crate::error::{Error, Result};
use crate::fs::FILES_PREFIX;
use crate::namespace::Namespace;
use crate::registry::{volume_id, VOLUMES_PREFIX};
use crate::types::{Ino, Kind};
use crate::volume::manifest::{Manifest, MANIFEST_NAME};

/// Largest volume manifest read while checking a backend without an owner record.
pub(crate) const MANIFEST_MAX: u64 = 1 << 20;
/// Keys per listing page.
const PAGE: usize = 1000;

/// The gateway that is starting.
pub(crate) struct Claimant<'a> {
    /// Its namespace.
    pub ns: &'a Namespace,
    /// `<host>:<data dir>`, for the record's label and messages.
    pub label: String,
    /// Where the backend is, for messages.
    pub location: String,
}

impl Claimant<'_> {
    fn describe(&self) -> String {
        describe(self.ns.gateway_id(), self.ns.fsid(), &self.label)
    }

    fn record(&self, epoch: u64) -> OwnerRecord {
        OwnerRecord::new(self.ns.fsid(), self.ns.gateway_id(), epoch, &self.label)
    }

    fn is(&self, r: &OwnerRecord) -> bool {
        r.fsid == self.ns.fsid() && r.gateway == self.ns.gateway_id()
    }

    /// The refusal: what is wrong, who we are, that nothing changed, and the way out.
    fn refuse(&self, what: String) -> Error {
        Error::NotOwner(format!(
            "refusing the backend {}: {what}. This is {}. Nothing was changed on the backend. \
             A gateway never takes over another's backend: point this one at an empty backend, \
             or start the owner with its own data directory. If the owner's data directory is \
             lost, `strata restore --conf <ganesha.conf> --take-over` brings the gateway back \
             here from the backend (disaster recovery)",
            self.location,
            self.describe()
        ))
    }
}

/// Applies the start rules; returns the record as it now is on the backend (ours).
pub(crate) async fn claim(store: &dyn ObjectStore, me: &Claimant<'_>) -> Result<OwnerRecord> {
    if let Some((bytes, etag)) = get_bounded(store, OWNER_KEY, RECORD_MAX).await? {
        let what = format!("{} on the backend {}", OWNER_KEY, me.location);
        let rec = OwnerRecord::decode(&what, &bytes)?;
        if !me.is(&rec) {
            let same_ns = if rec.fsid == me.ns.fsid() {
                " (the same namespace under another gateway id: a copy of its data directory?)"
            } else {
                ""
            };
            return Err(me.refuse(format!(
                "it is owned by {}, epoch {}{same_ns}",
                rec.describe(),
                rec.epoch
            )));
        }
        let epoch = rec
            .epoch
            .checked_add(1)
            .ok_or_else(|| Error::Io(format!("{what}: the epoch cannot grow any more")))?;
        let new = me.record(epoch);
        return match store
            .put_if_match(OWNER_KEY, new.encode().into(), &etag)
            .await
        {
            Ok(_) => {
                tracing::info!(epoch, backend = %me.location, "backend owner record: epoch bumped");
                Ok(new)
            }
            Err(e) if e.is_condition_failed() => lost_race(store, me, &new).await,
            Err(e) => Err(e.into()),
        };
    }
    let (foreign, highest) = first_foreign(store, me).await?;
    if let Some((key, why)) = foreign {
        return Err(me.refuse(format!(
            "it has no owner record and holds {key}, which this gateway's namespace does not \
             account for ({why}): another gateway or namespace wrote it"
        )));
    }
    // Above every epoch a key there carries (a record that was lost must not make the epoch
    // go back: keys of this epoch would be written again).
    let new = me.record(highest + 1);
    match store.put_if_absent(OWNER_KEY, new.encode().into()).await {
        Ok(_) => {
            tracing::info!(backend = %me.location, "backend claimed: owner record written");
            Ok(new)
        }
        Err(e) if e.is_condition_failed() => lost_race(store, me, &new).await,
        Err(e) => Err(e.into()),
    }
}

/// After a conditional put of the record failed: if the record is now exactly the one this
/// gateway tried to write, the put did succeed and only its answer was lost (a store that
/// retried it); otherwise someone else wrote it meanwhile, and the start is refused.
async fn lost_race(
    store: &dyn ObjectStore,
    me: &Claimant<'_>,
    tried: &OwnerRecord,
) -> Result<OwnerRecord> {
    let now = match get_bounded(store, OWNER_KEY, RECORD_MAX).await {
        Ok(Some((b, _))) => match OwnerRecord::decode(OWNER_KEY, &b) {
            Ok(r) if r == *tried => return Ok(r),
            Ok(r) => format!("{}, epoch {}", r.describe(), r.epoch),
            Err(e) => e.to_string(),
        },
        Ok(None) => "nobody (the record is gone again)".to_string(),
        Err(e) => format!("unknown ({e})"),
    };
    Err(me.refuse(format!(
        "its owner record changed while this gateway was starting; it now names {now}"
    )))
}

/// The owner record and its ETag, if there is one.
pub(crate) async fn read_record(store: &dyn ObjectStore) -> Result<Option<(OwnerRecord, String)>> {
    match get_bounded(store, OWNER_KEY, RECORD_MAX).await? {
        Some((b, etag)) => Ok(Some((OwnerRecord::decode(OWNER_KEY, &b)?, etag))),
        None => Ok(None),
    }
}

/// Reads an object of at most `max` bytes with its ETag; `None` if there is none. A larger
/// object is an error without reading it.
pub(crate) async fn get_bounded(
    store: &dyn ObjectStore,
    key: &str,
    max: u64,
) -> Result<Option<(bytes::Bytes, String)>> {
    let meta = match store.head(key).await {
        Ok(m) => m,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let too_big = |size: u64| {
        Error::Io(format!(
            "{key} on the backend is {size} bytes, more than the {max} expected"
        ))
    };
    if meta.size > max {
        return Err(too_big(meta.size));
    }
    let data = store.get_range(key, 0..max + 1).await?;
    if data.len() as u64 > max {
        return Err(too_big(data.len() as u64));
    }
    Ok(Some((data, meta.etag)))
}

/// The first object of a backend without an owner record that this namespace does not account
/// for, with the reason; `None` when it accounts for all of them (or there are none).
async fn first_foreign(
    store: &dyn ObjectStore,
    me: &Claimant<'_>,
) -> Result<(Option<(String, String)>, u64)> {
    let next_ino = me.ns.next_ino()?;
    let mut token: Option<String> = None;
    let mut highest = 0;
    loop {
        let page = store.list("", token.as_deref(), PAGE).await?;
        for obj in &page.objects {
            if let Some(why) = foreign(store, me, next_ino, &obj.key).await? {
                return Ok((Some((obj.key.clone(), why)), highest));
            }
            highest = highest.max(key_epoch(&obj.key).unwrap_or(0));
        }
        match page.next {
            Some(t) => token = Some(t),
            None => return Ok((None, highest)),
        }
    }
}

/// The upload epoch a data key carries, if any: a file extent's generation above its counter
/// bits, or the `.<epoch>` of a volume's SCO, TLog, snapshot record or checkpoint directory.
fn key_epoch(key: &str) -> Option<u64> {
    let hex16 = |s: &str| {
        is_hex(s, 16)
            .then(|| u64::from_str_radix(s, 16).ok())
            .flatten()
    };
    if let Some(epoch) = crate::ns_backend::image_key_epoch(key) {
        return Some(epoch);
    }
    if let Some(name) = key.strip_prefix(FILES_PREFIX) {
        let gen = hex16(name.rsplit('.').next()?)?;
        return name
            .matches('.')
            .count()
            .eq(&2)
            .then_some(gen >> crate::fs::GEN_EPOCH_SHIFT);
    }
    let inside = key.strip_prefix(VOLUMES_PREFIX)?.split_once('/')?.1;
    let (kind, rest) = inside.split_once('/')?;
    let name = match kind {
        "sco" | "tlog" | "snap" => rest,
        "mds" => rest.split_once('/')?.0,
        _ => return None,
    };
    let (_, epoch) = name.split_once('.')?;
    hex16(epoch)
}

/// Why `key` is not accounted for by this namespace, or `None` if it is: a file extent of an
/// ino this namespace handed out and that is a file (or gone), an object of a volume whose
/// manifest names this namespace's volume id, or (no manifest read here) of an ino handed out
/// here that is a volume (or gone).
async fn foreign(
    store: &dyn ObjectStore,
    me: &Claimant<'_>,
    next_ino: Ino,
    key: &str,
) -> Result<Option<String>> {
    if key.starts_with(strata_backend::probe::PROBE_PREFIX) {
        // Left by an S3 conditional-write probe that could not clean up: not data.
        return Ok(None);
    }
    if key == crate::ns_backend::HEAD_KEY {
        return Ok(match crate::ns_backend::read_head(store).await? {
            Some((h, _)) if h.fsid != me.ns.fsid() => Some(format!(
                "it is the namespace head of namespace {:016x}",
                h.fsid
            )),
            _ => None,
        });
    }
    if key.starts_with(crate::fs::QUARANTINE_PREFIX) {
        // Moved aside by `strata fsck --repair`: nothing refers to it.
        return Ok(None);
    }
    if crate::ns_backend::image_key_epoch(key).is_some() {
        // An image of whichever namespace the head names (checked with the head).
        return Ok(None);
    }
    if let Some(name) = key.strip_prefix(FILES_PREFIX) {
        // `<ino>.<index>` (format 1) or `<ino>.<index>.<generation>`.
        let Some(ino) = name
            .split_once('.')
            .filter(|(_, rest)| match rest.split_once('.') {
                Some((idx, gen)) => is_hex(idx, 8) && is_hex(gen, 16),
                None => is_hex(rest, 8),
            })
            .and_then(|(ino, _)| parse_ino(ino))
        else {
            return Ok(Some("not a file extent's name".into()));
        };
        return ino_is_ours(me.ns, next_ino, ino, Kind::File);
    }
    if let Some(rest) = key.strip_prefix(VOLUMES_PREFIX) {
        let Some((ino, inside)) = rest
            .split_once('/')
            .and_then(|(i, r)| Some((parse_ino(i)?, r)))
        else {
            return Ok(Some("not in a volume's namespace".into()));
        };
        if inside != MANIFEST_NAME {
            return ino_is_ours(me.ns, next_ino, ino, Kind::Volume);
        }
        let Some((xml, _)) = get_bounded(store, key, MANIFEST_MAX).await? else {
            // Deleted since the listing: nothing left to account for.
            return Ok(None);
        };
        let m = Manifest::from_xml(key, &xml)
            .map_err(|e| Error::Io(format!("backend {}: {e}", me.location)))?;
        let want = volume_id(me.ns.fsid(), ino);
        if m.volume != want {
            let fsid = u64::from_le_bytes(first8(&m.volume.0));
            return Ok(Some(format!(
                "its manifest names volume {} of namespace {fsid:016x}, not {want}",
                m.volume
            )));
        }
        return Ok(None);
    }
    Ok(Some("not a Strata file or volume object".into()))
}

/// Whether `ino` can be one of this namespace's objects of `kind`: handed out here (below
/// `next_ino`) and either gone (its leftovers are ours) or of that kind.
fn ino_is_ours(ns: &Namespace, next_ino: Ino, ino: Ino, kind: Kind) -> Result<Option<String>> {
    if ino <= crate::namespace::ROOT || ino >= next_ino {
        return Ok(Some(format!(
            "ino {ino} was never handed out here, the next ino is {next_ino}"
        )));
    }
    Ok(match ns.get_ino(ino)? {
        Some(i) if i.kind != kind => {
            Some(format!("ino {ino} is a {:?} here, not a {kind:?}", i.kind))
        }
        _ => None,
    })
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn parse_ino(s: &str) -> Option<Ino> {
    if !is_hex(s, 16) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

fn first8(b: &[u8; 16]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    a
}

#[cfg(test)]
mod tests {

    #[test]
    fn data_keys_tell_their_epoch() {
        for (key, epoch) in [
            ("files/0000000000000005.00000003.0000030000000007", Some(3)),
            ("files/0000000000000005.00000003", None),
            (
                "volumes/0000000000000009/sco/0000000000000001.0000000000000004",
                Some(4),
            ),
            (
                "volumes/0000000000000009/tlog/0000000000000001.000000000000000a",
                Some(10),
            ),
            (
                "volumes/0000000000000009/snap/0000000000000001.0000000000000002",
                Some(2),
            ),
            (
                "volumes/0000000000000009/mds/0000000000000008.0000000000000006/index",
                Some(6),
            ),
            ("volumes/0000000000000009/mds/0000000000000008/index", None),
            ("volumes/0000000000000009/sco/0000000000000001", None),
            ("volumes/0000000000000009/manifest.xml", None),
            ("owner", None),
        ] {
            assert_eq!(key_epoch(key), epoch, "{key}");
        }
    }

    use super::*;
    use crate::namespace::NewNode;
    use crate::types::{CreateMode, Cred, Handle};
    use strata_backend::MemStore;

    /// A namespace with ino 2 a file, 3 a directory, 4 a volume, 5 a file that is gone.
    fn ns() -> (tempfile::TempDir, Namespace) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = redb::Database::create(dir.path().join("t.redb")).expect("db");
        let ns = Namespace::open(db).expect("open");
        let root = Handle {
            ino: crate::namespace::ROOT,
            generation: ns.fsid(),
        };
        for (name, kind) in [
            ("f", Kind::File),
            ("d", Kind::Directory),
            ("v", Kind::Volume),
            ("gone", Kind::File),
        ] {
            let node = NewNode {
                kind,
                mode: 0o644,
                cred: Cred::default(),
                target: vec![],
                rdev: crate::types::DeviceId::default(),
            };
            ns.create(root, name.as_bytes(), node, CreateMode::Guarded)
                .expect("create");
        }
        ns.remove(root, b"gone", false).expect("remove");
        ns.purge(5, &[]).expect("purge");
        (dir, ns)
    }

    fn why(store: &MemStore, me: &Claimant<'_>, key: &str) -> Option<String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let next = me.ns.next_ino().expect("next_ino");
        rt.block_on(foreign(store, me, next, key))
            .expect("no error")
    }

    #[test]
    fn objects_are_accounted_for_by_ino_and_kind() {
        let (_dir, ns) = ns();
        let me = Claimant {
            ns: &ns,
            label: "test".into(),
            location: "mem".into(),
        };
        let store = MemStore::new();
        for ours in [
            "files/0000000000000002.00000000",
            "files/0000000000000005.00000003",
            "files/0000000000000005.00000003.0000010000000001",
            "volumes/0000000000000004/sco/0000000000000001",
            "volumes/0000000000000005/tlog/0000000000000001",
        ] {
            assert_eq!(why(&store, &me, ours), None, "{ours}");
        }
        for (theirs, reason) in [
            ("files/0000000000000003.00000000", "Directory"),
            ("files/0000000000000004.00000000", "Volume"),
            ("files/0000000000000006.00000000", "never handed out"),
            ("files/0000000000000001.00000000", "never handed out"),
            ("files/2.0", "not a file extent"),
            ("files/0000000000000002", "not a file extent"),
            ("files/0000000000000002.00000000.01", "not a file extent"),
            ("volumes/0000000000000002/sco/0000000000000001", "File"),
            (
                "volumes/0000000000000009/sco/0000000000000001",
                "never handed out",
            ),
            ("volumes/0000000000000004", "not in a volume"),
            ("stray", "not a Strata"),
        ] {
            let got = why(&store, &me, theirs).unwrap_or_else(|| panic!("{theirs} accepted"));
            assert!(got.contains(reason), "{theirs}: {got}");
        }
    }

    #[test]
    fn a_manifest_must_name_this_namespaces_volume() {
        let (_dir, ns) = ns();
        let me = Claimant {
            ns: &ns,
            label: "test".into(),
            location: "mem".into(),
        };
        let store = MemStore::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let key = "volumes/0000000000000004/manifest.xml";
        let put = |xml: Vec<u8>| rt.block_on(store.put(key, xml.into())).expect("put");
        put(Manifest::new(volume_id(ns.fsid(), 4)).to_xml());
        assert_eq!(why(&store, &me, key), None);
        let other = ns.fsid() ^ 0xff00;
        put(Manifest::new(volume_id(other, 4)).to_xml());
        let got = why(&store, &me, key).expect("another namespace's manifest");
        assert!(got.contains(&format!("{other:016x}")), "{got}");
        put(Manifest::new(volume_id(ns.fsid(), 2)).to_xml());
        assert!(why(&store, &me, key).is_some(), "another ino's manifest");
        // Garbage and oversized manifests are errors, not panics.
        let next = ns.next_ino().expect("next_ino");
        for bad in [b"<nope".to_vec(), vec![b' '; MANIFEST_MAX as usize + 1]] {
            put(bad);
            assert!(rt.block_on(foreign(&store, &me, next, key)).is_err());
        }
    }
}
