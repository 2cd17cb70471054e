//! Creating a volume (and preparing an empty directory for one) and destroying its local files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, RwLock};

use crate::error::{Error, Result};
use crate::volume::commit::FsyncSite;
use crate::volume::dirsync::DirSync;
use crate::volume::files::io_err;
use crate::volume::format::{tlog_name, Entry, TlogHeader, VolumeId, TLOG_HEADER_LEN};
use crate::volume::localfs::LocalFs;
use crate::volume::mds::cork::Overlay;
use crate::volume::mds::store::Mds;
use crate::volume::options::{VolumeOptions, MAX_VOLUME_SIZE};
use crate::volume::state::{Counters, OpenTlog, State, SyncState, Volume};
use crate::volume::wal::Wal;
use crate::volume::{files, layout};

/// Makes `dir` ready to receive a new volume (create, or a backend restart): its `sco/` and
/// `tlog/` directories exist, there is no TLog (else `Exists`), and a MetaDataStore left without
/// TLogs (by a create or restore that did not finish) is removed, since nothing there is a
/// volume. Returns the two directories.
pub(super) fn prepare_empty_dir(fs: &dyn LocalFs, dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let sco_dir = layout::sco_dir(dir);
    let tlog_dir = layout::tlog_dir(dir);
    for d in [&sco_dir, &tlog_dir] {
        fs.create_dir_all(d).map_err(|e| io_err(d.display(), e))?;
    }
    if !fs
        .list(&tlog_dir)
        .map_err(|e| io_err(tlog_dir.display(), e))?
        .is_empty()
    {
        return Err(Error::Exists);
    }
    // A write-ahead log left by an earlier volume here names its files: it must not be
    // replayed into the new one's.
    for p in [
        layout::wal_path(dir),
        layout::wal_tmp_path(dir),
        layout::mds_path(dir),
    ] {
        files::remove_durably(fs, &p)?;
    }
    Ok((sco_dir, tlog_dir))
}

impl Volume {
    /// Creates a new, empty volume of `size` bytes in `dir` (which must not hold a volume yet).
    /// Durable when it returns.
    pub(crate) fn create(
        fs: Arc<dyn LocalFs>,
        dir: &Path,
        id: VolumeId,
        opts: VolumeOptions,
        size: u64,
    ) -> Result<Volume> {
        Self::create_inner(fs, dir, id, opts, size, None)
    }

    pub(crate) fn create_inner(
        fs: Arc<dyn LocalFs>,
        dir: &Path,
        id: VolumeId,
        opts: VolumeOptions,
        size: u64,
        skip_fsync: Option<FsyncSite>,
    ) -> Result<Volume> {
        opts.check()?;
        if size > MAX_VOLUME_SIZE {
            return Err(Error::Invalid(format!(
                "volume size {size} above {MAX_VOLUME_SIZE}"
            )));
        }
        let (sco_dir, tlog_dir) = prepare_empty_dir(&*fs, dir)?;
        let wal = Wal::create(&*fs, dir, id, skip_fsync)?;
        let mds_syncs = Arc::new(AtomicU64::new(0));
        let mds = Mds::open(
            &*fs,
            dir,
            true,
            skip_fsync == Some(FsyncSite::MdsCommit),
            mds_syncs.clone(),
        )?;
        // The first TLog is created directly (there is no previous one to close).
        let path = tlog_dir.join(tlog_name(1));
        let file = fs
            .create_new(&path)
            .map_err(|e| io_err(path.display(), e))?;
        let header = TlogHeader { volume: id, seq: 1 }.encode();
        file.write_at(&header, 0)
            .map_err(|e| io_err(path.display(), e))?;
        let tlog = OpenTlog {
            seq: 1,
            file,
            len: TLOG_HEADER_LEN as u64,
            crc: crc32c::crc32c(&header),
            deferred: Default::default(),
            scos: 0,
            first_entry: None,
            ours: true,
        };
        let vol = Volume::assemble(
            fs,
            id,
            opts,
            (sco_dir, tlog_dir),
            State {
                size: 0,
                ov: Overlay::default(),
                mapped: 0,
                applied_tlog: 0,
                applied_size: 0,
                db_empty: true,
                sco: None,
                tlog,
                next_sco: 1,
                write_gen: 0,
                sco_dir: DirSync::dirty(),
                tlog_dir: DirSync::dirty(),
                unsynced: Vec::new(),
                tlog_bytes: BTreeMap::new(),
                tlog_since: BTreeMap::new(),
                scos: BTreeMap::new(),
                backend_tlog: 0,
                logged: 0,
                wal,
            },
            skip_fsync,
            (mds, mds_syncs),
        );
        {
            let mut st = vol.state.write();
            vol.fsync(FsyncSite::CreateTlog, &*st.tlog.file, "tlog create")?;
            if size > 0 {
                vol.tlog_append(&mut st, &[Entry::Resize { size }])?;
                vol.set_size(&mut st, 1, size)?;
            }
        }
        vol.commit_round()?;
        Ok(vol)
    }

    pub(super) fn assemble(
        fs: Arc<dyn LocalFs>,
        id: VolumeId,
        opts: VolumeOptions,
        (sco_dir, tlog_dir): (PathBuf, PathBuf),
        st: State,
        skip_fsync: Option<FsyncSite>,
        (mds, mds_syncs): (Mds, Arc<AtomicU64>),
    ) -> Volume {
        let gen = st.write_gen;
        let reserved = mds.reserved().unwrap_or_else(|e| {
            tracing::warn!(volume = %id, error = %e, "cannot read the reserved ranges");
            Default::default()
        });
        Volume {
            fs,
            id,
            opts,
            sco_dir,
            tlog_dir,
            state: RwLock::new(st),
            sync: Mutex::new(SyncState {
                durable_gen: gen,
                leader: false,
            }),
            sync_cv: Condvar::new(),
            halted: Mutex::new(None),
            handles: Mutex::new(Default::default()),
            sealed: Mutex::new(Vec::new()),
            counters: Counters::default(),
            pattern: Default::default(),
            skip_fsync,
            backend: tokio::sync::Mutex::new(Default::default()),
            remote: Mutex::new(None),
            epochs: RwLock::new(Default::default()),
            writer_epoch: AtomicU64::new(1),
            cluster_cache: Mutex::new(None),
            mds,
            mds_syncs,
            uncork_lock: Mutex::new(()),
            rollback_lock: Mutex::new(()),
            lineage: RwLock::new(Default::default()),
            ancestor_stores: Mutex::new(None),
            sco_layouts: Mutex::new(Default::default()),
            scrub_lock: Mutex::new(()),
            swept: std::sync::atomic::AtomicBool::new(false),
            tlogs_examined: Mutex::new(std::collections::HashMap::new()),
            template: AtomicU64::new(0),
            tlog_roll_len: AtomicU64::new(crate::volume::log::TLOG_ROLL_LEN),
            zero_detect: std::sync::atomic::AtomicBool::new(true),
            reserved: Mutex::new(reserved),
            tlog_closed: tokio::sync::Notify::new(),
        }
    }

    /// Deletes every local file of the volume (its last link and open are gone). The volume is
    /// halted: any later call fails. A scrub pass in flight stops at its next step and is
    /// waited for, so that no compacted object lands after the backend's objects are deleted.
    pub(crate) fn destroy(&self) -> Result<()> {
        self.halt(&Error::Io("volume deleted".into()));
        let _pass = self.scrub_lock.lock();
        let _st = self.state.write();
        self.handles.lock().clear();
        for d in [&self.sco_dir, &self.tlog_dir] {
            files::empty_dir_durably(&*self.fs, d)?;
        }
        if let Some(dir) = self.sco_dir.parent() {
            for p in [layout::wal_path(dir), layout::mds_path(dir)] {
                files::remove_durably(&*self.fs, &p)?;
            }
        }
        Ok(())
    }
}
