//! Plain data types of the facade: handles, attributes, credentials, requests and replies.

use crate::error::{Error, Result};

/// Inode number: the NFS fileid. Persistent and never reused.
pub type Ino = u64;

/// A persistent object handle: inode number + generation. Its 16-byte wire form is what the
/// FSAL hands to NFS clients (well under ESXi's 51-byte limit for NFSv3 FSAL handles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle {
    /// Inode number (NFS fileid).
    pub ino: Ino,
    /// Generation of the inode number; with never-reused inode numbers this guards against
    /// handles from a different Strata namespace that happens to use the same number.
    pub generation: u64,
}

impl Handle {
    /// Length of the wire form in bytes.
    pub const WIRE_LEN: usize = 16;

    /// The wire form: inode then generation, both little-endian.
    pub fn to_bytes(&self) -> [u8; Self::WIRE_LEN] {
        let mut b = [0u8; Self::WIRE_LEN];
        b[..8].copy_from_slice(&self.ino.to_le_bytes());
        b[8..].copy_from_slice(&self.generation.to_le_bytes());
        b
    }

    /// Parses the wire form; any other length is `Invalid`.
    pub fn from_bytes(b: &[u8]) -> Result<Handle> {
        if b.len() != Self::WIRE_LEN {
            return Err(Error::Invalid(format!(
                "handle of {} bytes, expected {}",
                b.len(),
                Self::WIRE_LEN
            )));
        }
        let mut ino = [0u8; 8];
        let mut generation = [0u8; 8];
        ino.copy_from_slice(&b[..8]);
        generation.copy_from_slice(&b[8..]);
        Ok(Handle {
            ino: u64::from_le_bytes(ino),
            generation: u64::from_le_bytes(generation),
        })
    }
}

/// What an object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A directory (metadata only).
    Directory,
    /// A regular file kept by the FileDriver.
    File,
    /// A regular file kept as a volume (VM disk), chosen by name suffix at create time.
    Volume,
    /// A symbolic link (metadata only).
    Symlink,
    /// A named pipe (metadata only).
    Fifo,
    /// A Unix-domain socket's name (metadata only).
    Socket,
    /// A character device node (metadata only: its [`DeviceId`]).
    CharDevice,
    /// A block device node (metadata only: its [`DeviceId`]).
    BlockDevice,
}

impl Kind {
    /// True for the two kinds that NFS shows as regular files.
    pub fn is_regular(self) -> bool {
        matches!(self, Kind::File | Kind::Volume)
    }

    /// True for the special files: FIFOs, sockets and device nodes (made by `mknod`).
    pub fn is_special(self) -> bool {
        matches!(
            self,
            Kind::Fifo | Kind::Socket | Kind::CharDevice | Kind::BlockDevice
        )
    }

    /// True for the device nodes (the kinds that carry a [`DeviceId`]).
    pub fn is_device(self) -> bool {
        matches!(self, Kind::CharDevice | Kind::BlockDevice)
    }
}

/// A volume's space by what it shares with the volumes it was cloned from (the VAAI-style
/// extended statistics): of the bytes it maps, those in its ancestors' SCOs are shared with
/// them, the rest (written since the clone, or copied up by a flatten) are its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VolumeSharing {
    /// Bytes of the volume's mapped clusters (its own and its ancestors'), 4 KiB each.
    pub used_bytes: u64,
    /// Of those, the bytes in the volume's own SCOs: what it does not share with its parent
    /// (all of them for a volume that is no clone).
    pub unshared_bytes: u64,
}

/// How a SETXATTR treats an attribute already there (RFC 8276 `setxattr_option4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XattrMode {
    /// Create it or replace it.
    Either,
    /// Create it; fail if it exists.
    Create,
    /// Replace it; fail if it does not exist.
    Replace,
}

/// A device node's numbers (NFS `specdata`: major, minor); zero for every other kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DeviceId {
    /// The major number.
    pub major: u32,
    /// The minor number.
    pub minor: u32,
}

/// A point in time, seconds and nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    /// Seconds since the epoch.
    pub secs: i64,
    /// Nanoseconds, below 1_000_000_000.
    pub nsecs: u32,
}

/// Attributes of an object as the facade reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// The handle of the object.
    pub handle: Handle,
    /// Its kind.
    pub kind: Kind,
    /// Permission bits (07777), without the file type.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes (for a symlink, the length of its target).
    pub size: u64,
    /// Bytes of data actually stored for this object.
    pub space_used: u64,
    /// Number of directory entries naming it (directories: 2 + subdirectories).
    pub nlink: u32,
    /// Last access.
    pub atime: Timestamp,
    /// Last data change.
    pub mtime: Timestamp,
    /// Last attribute or data change.
    pub ctime: Timestamp,
    /// Change counter: bumped on every data or metadata change (NFSv4 change attribute).
    pub change: u64,
    /// Device nodes: their numbers (zero for every other kind).
    pub rdev: DeviceId,
}

/// A time to set with setattr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetTime {
    /// The server's current time.
    Now,
    /// This time.
    At(Timestamp),
}

/// Attribute changes for setattr; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// New permission bits.
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size (regular files only): shrink drops data beyond it, grow is sparse.
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<SetTime>,
    /// New modification time.
    pub mtime: Option<SetTime>,
}

/// The caller's credentials, used as owner of new objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cred {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// How `create` treats an existing name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateMode {
    /// Open the existing regular file if there is one.
    Unchecked,
    /// Fail with `Exists` if the name exists.
    Guarded,
    /// Exclusive create with a client verifier: if the name exists and is a regular file created
    /// with the same verifier, succeed (a replay); otherwise `Exists`.
    Exclusive([u8; 8]),
}

/// The reply of `create`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// Attributes of the file (new or existing).
    pub attr: Attr,
    /// False when an existing file was returned (Unchecked on an existing name, or an exclusive
    /// replay).
    pub created: bool,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's name.
    pub name: Vec<u8>,
    /// Cookie to pass to `readdir` to resume after this entry. Stable across concurrent inserts
    /// and removals; never 0, 1 or 2 (reserved by NFS clients and Ganesha).
    pub cookie: u64,
    /// Attributes of the object it names.
    pub attr: Attr,
}

/// A page of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadDir {
    /// Entries in cookie order, without "." and "..".
    pub entries: Vec<DirEntry>,
    /// True when the listing ended within this page.
    pub eof: bool,
}

/// How durable a write is when `write` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stability {
    /// Not yet durable: a later `commit` makes it so.
    Unstable,
    /// Durable per the object kind's contract (FILE_SYNC).
    Stable,
}

/// What a SEEK (NFSv4.2, `lseek` SEEK_DATA / SEEK_HOLE) looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekWhat {
    /// The first byte at or after the offset that holds data (a written cluster of a volume,
    /// an extent of a regular file).
    Data,
    /// The first byte at or after the offset in a hole (the end of the object is one).
    Hole,
}

/// A SEEK's answer: the offset found, and whether it is at or past the end (RFC 7862's
/// `sr_eof`; also true when no data follows, with the offset at the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeekFound {
    /// The offset found.
    pub offset: u64,
    /// It is the end of the object.
    pub eof: bool,
}

/// Capacity figures for FSSTAT / statfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    /// Total bytes of the data directory's filesystem.
    pub total_bytes: u64,
    /// Free bytes.
    pub free_bytes: u64,
    /// Bytes available to users.
    pub avail_bytes: u64,
    /// Total inodes (files) that can exist.
    pub total_files: u64,
    /// Free inodes.
    pub free_files: u64,
    /// Inodes available to users.
    pub avail_files: u64,
}

/// One snapshot of a volume, as the facade reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Unique within the volume, growing: the order snapshots were taken in.
    pub id: u64,
    /// Its name, unique within the volume.
    pub name: String,
    /// The volume as of the end of this TLog (0: before any).
    pub tlog: u64,
    /// When it was taken.
    pub created: Timestamp,
    /// User metadata (key, value), in the order given.
    pub meta: Vec<(String, String)>,
    /// Bytes written to the volume between the previous snapshot and this one.
    pub bytes_since_previous: u64,
    /// Its data and record are on the backend: a backend restart keeps it.
    pub on_backend: bool,
}

/// What losing the local disk now would lose ([`crate::Filesystem::recovery_point`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecoveryPoint {
    /// Bytes of the volumes' SCOs and TLogs not yet on the backend.
    pub volume_bytes: u64,
    /// When the oldest of those changes was logged (None: none).
    pub volumes_since: Option<std::time::SystemTime>,
    /// Bytes of the file journal's segments holding regular files' records not yet applied
    /// (uploaded, or for creates checkpointed into the namespace): at most that much.
    pub file_bytes: u64,
    /// When the oldest such segment's first record was written (None: none).
    pub files_since: Option<std::time::SystemTime>,
    /// When the namespace image on the backend was taken (None: there is none yet).
    pub namespace_image: Option<std::time::SystemTime>,
    /// Whether the namespace changed since that image.
    pub namespace_changed: bool,
}

/// State of one volume for the management API (`strata volume stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VolumeInfo {
    /// Size in bytes (including writes not yet durable).
    pub size: u64,
    /// Bytes of live data stored for the volume (4 KiB clusters).
    pub space_used: u64,
    /// Bytes ALLOCATE reserved that hold no data yet.
    pub reserved_bytes: u64,
    /// Bytes written locally and not yet on the backend (SCOs and TLogs waiting for upload).
    pub pending_backend_bytes: u64,
    /// When the oldest change not yet on the backend was logged (None: every change is
    /// there). With `pending_backend_bytes`, the volume's recovery point: what losing the
    /// local disk now would lose.
    pub pending_backend_since: Option<std::time::SystemTime>,
    /// Commits (COMMITs and stable writes) since the volume was opened by this gateway.
    pub commits: u64,
    /// Group-commit rounds (each one set of fsyncs) since the volume was opened.
    pub commit_rounds: u64,
    /// Of those, rounds that fdatasynced only the write-ahead log of small commits.
    pub wal_rounds: u64,
    /// Writes after which the volume's pattern of writes and COMMITs said a COMMIT would
    /// follow: the write-ahead log's writeback was started then.
    pub expected_commits: u64,
    /// Clusters appended to SCOs since the volume was opened.
    pub clusters_written: u64,
    /// Mapped clusters unmapped since it was opened (holes punched, zeros written).
    pub clusters_unmapped: u64,
    /// SCOs sealed since the volume was opened.
    pub scos_sealed: u64,
    /// Read cache hits, if the volume has a read cache (0 otherwise).
    pub cache_hits: u64,
    /// Read cache misses, if the volume has a read cache (0 otherwise).
    pub cache_misses: u64,
    /// Clusters of evicted SCOs served by the content-addressed cluster cache.
    pub cluster_cache_hits: u64,
    /// TLogs replayed when the volume was opened (local restart: those after `applied_tlog`;
    /// backend restart: those after the checkpoint).
    pub tlogs_replayed: u64,
    /// The newest TLog applied to the on-disk MetaDataStore (0: none).
    pub applied_tlog: u64,
    /// The newest metadata checkpoint on the backend as the volume knows it (0: none).
    pub checkpoint_tlog: u64,
    /// MetaDataStore entries still corked in memory (their TLog is not on the backend yet).
    pub corked_clusters: u64,
    /// What the scrubber knows and did.
    pub scrub: ScrubInfo,
    /// Writes that waited for the upload (paced between the marks, or at the hard mark).
    pub writes_paced: u64,
    /// Their total wait, milliseconds.
    pub pacing_delay_ms: u64,
    /// Writes answered `Delay` (write buffer full and the backend stalled).
    pub writes_refused: u64,
    /// The largest backlog (bytes not yet on the backend) a write saw.
    pub peak_backlog: u64,
    /// The measured upload rate, bytes per second (0: nothing measured yet).
    pub upload_rate: u64,
}

/// A volume's scrubbing and garbage collection: what is known dead, what the passes did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScrubInfo {
    /// Clusters superseded that nothing reads any more, still in a backend object.
    pub dead_clusters: u64,
    /// Clusters superseded that a snapshot or a clone still reads.
    pub pinned_clusters: u64,
    /// Backend objects marked garbage, waiting for `GC_Grace`.
    pub garbage_objects: u64,
    /// Completed passes (all runs).
    pub passes: u64,
    /// When the last pass finished, seconds since the Unix epoch (0: never).
    pub last_finished_secs: u64,
    /// How long it took, milliseconds.
    pub last_millis: u64,
    /// SCOs compacted (or dropped whole), all passes.
    pub scos_compacted: u64,
    /// Backend bytes reclaimed by compactions, all passes.
    pub reclaimed_bytes: u64,
    /// Backend objects deleted, all passes.
    pub objects_deleted: u64,
}

/// What one scrub request did (over one volume, or every volume).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScrubSummary {
    /// SCOs compacted (or dropped whole).
    pub scos_compacted: u64,
    /// Backend bytes the compactions freed.
    pub bytes_reclaimed: u64,
    /// Backend objects deleted.
    pub objects_deleted: u64,
}
