//! `strata restore`: a gateway back from the backend alone, into an empty data directory.
//!
//! 1. The data directory must be empty; the backend must hold an owner record and a
//!    namespace head naming an image of the same namespace.
//! 2. Taking the backend over is explicit (`take_over`): the owner record names another
//!    gateway, which must be gone for good. Unless `force`, the namespace head is watched for
//!    [`TAKE_OVER_PROBE`]: a running gateway rewrites it every heartbeat, and is refused. On a store run with `S3_Unsafe_Single_Writer`
//!    nothing fences that gateway should it come back, so `force` is needed too.
//! 3. The image and the logs after it are read, checked (length, checksums, layout, each log's
//!    place) and applied in order, then imported into a new
//!    `strata.redb` under a new gateway id, its next inode number at least the head's
//!    high-water mark: no number handed out before is handed out again.
//! 4. The head is rewritten naming the same image under the new gateway (a conditional write
//!    on the head the image was read from: the old gateway, should it still run, names no
//!    newer image after it and so deletes nothing the restored image names); then the owner
//!    record names the new gateway, its epoch one above the old one's (a conditional write on
//!    the record read in step 1: a race with another restore or start loses). Then
//!    every volume manifest the image names is rewritten (its generation 2^20 up, by a
//!    conditional write): the old gateway, should it still run, loses its next conditional
//!    write of each, which stops that volume's uploads for good (a refused conditional write
//!    is final).
//! 5. The gateway opens once (as Ganesha would) and closes: its start bumps the epoch again,
//!    raises the high-water mark and uploads its first image, whose head write fences the old
//!    head. Volumes open from their manifests when first used; file extents are read from the
//!    backend on demand: nothing is downloaded in bulk.
//!
//! A failure before step 4 leaves the backend untouched and removes what step 3 wrote.

use super::{read_head, TAKE_OVER_PROBE};
use crate::error::{Error, Result};
use crate::fs::{BackendConfig, EngineConfig, Filesystem, METADATA_FILE};
use crate::owner::{read_record, OwnerRecord, OWNER_KEY};
use crate::progress::Progress;

/// How to restore.
#[derive(Debug, Clone, Copy)]
pub struct RestoreOptions {
    /// Take the backend over from the gateway its owner record names (required: that gateway
    /// must be gone).
    pub take_over: bool,
    /// Take over even if the owner looks alive (its namespace head changed while watched),
    /// and on a store without conditional writes (`S3_Unsafe_Single_Writer`), where nothing
    /// fences the old gateway should it come back.
    pub force: bool,
    /// How long the namespace head is watched for the owner's heartbeat before taking over
    /// ([`TAKE_OVER_PROBE`] by default; a shorter watch may miss a gateway that is alive).
    pub probe: std::time::Duration,
}

impl Default for RestoreOptions {
    fn default() -> RestoreOptions {
        RestoreOptions {
            take_over: false,
            force: false,
            probe: TAKE_OVER_PROBE,
        }
    }
}

/// What a restore brought back.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RestoreReport {
    /// The gateway the backend belonged to.
    pub previous_owner: String,
    /// The restored gateway's owner epoch.
    pub epoch: u64,
    /// When the image was taken (seconds since the Unix epoch).
    pub image_taken: u64,
    /// The image's age when the restore read it, seconds.
    pub image_age_secs: u64,
    /// The image's size in bytes.
    pub image_bytes: u64,
    /// Directories restored (the root included).
    pub directories: u64,
    /// Regular files restored.
    pub files: u64,
    /// Volumes restored (opened from their manifests when first used).
    pub volumes: u64,
    /// Symbolic links restored.
    pub symlinks: u64,
    /// Special files restored (FIFOs, sockets, device nodes).
    pub special_files: u64,
    /// Extended attributes restored (of every object).
    pub xattrs: u64,
    /// The next inode number the restored gateway hands out.
    pub next_ino: u64,
}

/// Steps of the progress report.
const STEPS: u64 = 5;

/// Restores the gateway `config` describes from its backend (steps 1 to 5).
pub fn restore(
    config: &EngineConfig,
    opts: RestoreOptions,
    p: &dyn Progress,
) -> Result<RestoreReport> {
    let data = &config.data_dir;
    p.step(0, STEPS);
    match std::fs::read_dir(data) {
        Ok(mut d) => {
            if d.next().is_some() {
                return Err(Error::Invalid(format!(
                    "the data directory {} is not empty: a restore writes only into an empty \
                     one (move this one aside if it is a damaged copy)",
                    data.display()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data).map_err(|e| crate::error::io_err(data.display(), e))?;
        }
        Err(e) => return Err(crate::error::io_err(data.display(), e)),
    }
    let rt = crate::runtime::build()?;
    let (store, location) = crate::fs::connect_store(config, &rt, None)?;
    let r = restore_into(config, opts, p, &rt, &*store, &location);
    drop(rt);
    let report = match r {
        Ok(v) => v,
        Err((e, written)) => {
            if written {
                let _ = std::fs::remove_file(data.join(METADATA_FILE));
            }
            return Err(e);
        }
    };
    p.step(4, STEPS);
    // Step 5.
    let done = |e: Error| {
        Error::Io(format!(
            "the namespace is restored and the backend taken over, but opening the restored \
             gateway once failed: {e}. Start the gateway: it goes on from here"
        ))
    };
    let fs = Filesystem::open(config.clone()).map_err(done)?;
    let epoch = fs.owner().epoch;
    // Its first image under its own epoch.
    fs.flush_to_backend().map_err(done)?;
    drop(fs);
    p.step(STEPS, STEPS);
    tracing::info!(
        backend = %location,
        image_age_secs = report.image_age_secs,
        "gateway restored from the backend"
    );
    Ok(RestoreReport { epoch, ..report })
}

/// Steps 1 to 4; on an error, whether the namespace file was written.
fn restore_into(
    config: &EngineConfig,
    opts: RestoreOptions,
    p: &dyn Progress,
    rt: &tokio::runtime::Runtime,
    store: &dyn strata_backend::ObjectStore,
    location: &str,
) -> std::result::Result<RestoreReport, (Error, bool)> {
    let before = |e: Error| (e, false);
    let Some((owner, owner_etag)) = rt.block_on(read_record(store)).map_err(before)? else {
        return Err(before(Error::Invalid(format!(
            "the backend {location} has no owner record: no gateway was ever started on it"
        ))));
    };
    let head = rt.block_on(read_head(store)).map_err(before)?;
    let mut head_etag = head.as_ref().map(|(_, e)| e.clone()).unwrap_or_default();
    let Some((mut head, mut image)) = head.and_then(|(h, _)| Some((h, h.image?))) else {
        return Err(before(Error::Invalid(format!(
            "the backend {location} holds no namespace image: its gateway ({}) never uploaded \
             one (a gateway uploads its first at start; those before this version of Strata \
             uploaded none)",
            owner.describe()
        ))));
    };
    if head.fsid != owner.fsid {
        return Err(before(Error::Io(format!(
            "the backend {location} is inconsistent: its owner record names namespace {:016x} \
             and its namespace head {:016x}",
            owner.fsid, head.fsid
        ))));
    }
    // Step 2.
    if !opts.take_over {
        return Err(before(Error::NotOwner(format!(
            "the backend {location} belongs to {}, epoch {}: restoring takes it over. Make \
             sure that gateway is gone for good (its machine lost or stopped, never to start \
             again with its data directory), then run the restore again with --take-over",
            owner.describe(),
            owner.epoch
        ))));
    }
    if let BackendConfig::S3(s3) = &config.backend {
        if s3.unsafe_single_writer && !opts.force {
            return Err(before(Error::NotOwner(
                "S3_Unsafe_Single_Writer is set: this store has no conditional writes, so \
                 nothing would stop the old gateway from overwriting the restored one's \
                 objects should it come back. Add --force once it is certainly gone"
                    .into(),
            )));
        }
    }
    // Is the owner alive? A running gateway rewrites the head every heartbeat.
    if !opts.force {
        std::thread::sleep(opts.probe);
        let again = rt.block_on(read_head(store)).map_err(before)?;
        if again.as_ref().map(|(h, _)| h.beat) != Some(head.beat) {
            return Err(before(Error::NotOwner(format!(
                "{} looks alive: its namespace head on {location} changed while this restore \
                 watched it for {:?}. Stop it first (or, if it cannot be stopped and must be \
                 fenced off, run again with --force)",
                owner.describe(),
                opts.probe
            ))));
        }
        if let Some((h, e)) = again {
            (head, head_etag) = (h, e);
            image = h.image.unwrap_or(image);
        }
    }
    p.step(1, STEPS);
    // Step 3.
    let bytes = read_object(rt, store, &image.key(), image.len, location).map_err(before)?;
    if bytes.len() as u64 != image.len || crc32c::crc32c(&bytes) != image.crc {
        return Err(before(Error::Io(format!(
            "the namespace image {} on {location} is damaged: its length or checksum is not \
             the one its head records",
            image.key()
        ))));
    }
    let (h, mut rows) = crate::namespace::decode_image(&bytes).map_err(before)?;
    if h.fsid != head.fsid {
        return Err(before(Error::Io(format!(
            "the namespace image {} on {location} is of namespace {:016x}, not {:016x}",
            image.key(),
            h.fsid,
            head.fsid
        ))));
    }
    // Then the logs of the changes since, in order.
    for (seq, key) in image.log_keys() {
        let b = read_object(rt, store, &key, LOG_MAX, location).map_err(before)?;
        crate::namespace::decode_log(&b, head.fsid, image.seq, seq)
            .map_err(|e| before(Error::Io(format!("{key} on {location}: {e}"))))?
            .apply(&mut rows);
    }
    p.step(2, STEPS);
    let gateway = crate::namespace::random_u64();
    let path = config.data_dir.join(METADATA_FILE);
    let written = |e: Error| (e, true);
    let db = redb::Database::create(&path).map_err(|e| written(e.into()))?;
    let info = crate::namespace::import_rows(&db, &rows, head.fsid, gateway, head.ino_hwm)
        .map_err(written)?;
    drop(db);
    p.step(3, STEPS);
    // Step 4.
    let label = format!("{}:{}", crate::fs::host_name(), config.data_dir.display());
    let epoch = owner
        .epoch
        .checked_add(1)
        .ok_or_else(|| written(Error::Io("the owner epoch cannot grow any more".into())))?;
    // The head first, conditionally on the one the image was read from: from here on the old
    // gateway's next head write fails, so it never names another image (nor, after it, deletes
    // garbage or volumes the restored image still names).
    let taken = super::head::Head {
        gateway,
        epoch,
        beat: head.beat.wrapping_add(1),
        ..head
    };
    rt.block_on(store.put_if_match(super::HEAD_KEY, taken.encode().into(), &head_etag))
        .map_err(|e| {
            if e.is_condition_failed() {
                written(Error::NotOwner(format!(
                    "the namespace head on {location} changed while restoring: {} still runs \
                     and uploads; stop it, then restore again",
                    owner.describe()
                )))
            } else {
                written(e.into())
            }
        })?;
    let new = OwnerRecord::new(owner.fsid, gateway, epoch, &label);
    rt.block_on(store.put_if_match(OWNER_KEY, new.encode().into(), &owner_etag))
        .map_err(|e| {
            if e.is_condition_failed() {
                written(Error::NotOwner(format!(
                    "the owner record on {location} changed while restoring (another restore \
                     or gateway start?); nothing was taken over"
                )))
            } else {
                written(e.into())
            }
        })?;
    for &ino in &info.volumes {
        rt.block_on(fence_manifest(store, owner.fsid, ino))
            .map_err(written)?;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let k = info.kinds;
    Ok(RestoreReport {
        previous_owner: owner.describe(),
        epoch,
        image_taken: image.taken,
        image_age_secs: now.saturating_sub(image.taken),
        image_bytes: image.len,
        directories: k.directories,
        files: k.files,
        volumes: k.volumes,
        symlinks: k.symlinks,
        special_files: k.special,
        xattrs: info.xattrs,
        next_ino: info.next_ino,
    })
}

/// Largest namespace log read (a log is at most half its image, itself one row per entry).
const LOG_MAX: u64 = 1 << 30;

/// Reads `key`, at most `max` bytes (a larger object is an error without reading it).
fn read_object(
    rt: &tokio::runtime::Runtime,
    store: &dyn strata_backend::ObjectStore,
    key: &str,
    max: u64,
    location: &str,
) -> Result<bytes::Bytes> {
    let what = |e: String| Error::Io(format!("reading {key} from {location}: {e}"));
    match rt.block_on(crate::owner::get_bounded(store, key, max)) {
        Ok(Some((b, _))) => Ok(b),
        Ok(None) => Err(what("it is missing".into())),
        Err(e) => Err(what(e.to_string())),
    }
}

/// How far a restore moves a manifest's generation up.
const FENCE_GENERATIONS: u64 = 1 << 20;

/// Tries of a manifest's rewrite when another writer wins the race (the old gateway, still
/// running, uploading that volume).
const FENCE_TRIES: usize = 5;

/// Rewrites volume `ino`'s manifest as it is, its generation one up, by a conditional write:
/// an older owner's next conditional write of it fails. Nothing to do for a volume without one.
async fn fence_manifest(
    store: &dyn strata_backend::ObjectStore,
    fsid: u64,
    ino: u64,
) -> Result<()> {
    use crate::volume::manifest::{Manifest, MANIFEST_NAME};
    let key = format!(
        "{}{ino:016x}/{MANIFEST_NAME}",
        crate::registry::VOLUMES_PREFIX
    );
    for _ in 0..FENCE_TRIES {
        let Some((xml, etag)) =
            crate::owner::get_bounded(store, &key, crate::owner::MANIFEST_MAX).await?
        else {
            return Ok(());
        };
        let mut m = Manifest::from_xml(&key, &xml)?;
        let want = crate::registry::volume_id(fsid, ino);
        if m.volume != want {
            return Err(Error::Io(format!(
                "{key} names volume {}, not {want}: the backend is inconsistent",
                m.volume
            )));
        }
        // Far above what the old gateway would write next (its generation plus one): its
        // conditional write fails, and it cannot take the manifest for the answer of its own
        // write lost on the way (the bytes differ).
        m.generation = m.generation.saturating_add(FENCE_GENERATIONS);
        match store.put_if_match(&key, m.to_xml().into(), &etag).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_condition_failed() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::NotOwner(format!(
        "{key} changed {FENCE_TRIES} times while the restore rewrote it: the old gateway still \
         runs and uploads; stop it, then restore again"
    )))
}
