//! The inode record ([`Inode`]) and its versioned byte encoding (`engine/FORMATS.md`,
//! "Namespace").

use super::names::now;
use super::FIRST_COOKIE;
use crate::error::{Error, Result};
use crate::types::{Cred, DeviceId, Ino, Kind, Timestamp};

/// One inode as stored in the `inodes` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Inode {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Durable size (files, volumes: as of the last data commit; symlinks: target length).
    pub size: u64,
    pub atime: Timestamp,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    pub nlink: u32,
    pub generation: u64,
    pub change: u64,
    /// Directories: the parent directory (the root is its own parent). Others: 0.
    pub parent: Ino,
    /// Directories: next readdir cookie to hand out.
    pub next_cookie: u64,
    /// Files and volumes: number of extents in the extent map (for `space_used`).
    pub nextents: u64,
    /// Exclusive-create verifier, when the file was made by an exclusive create.
    pub verifier: Option<[u8; 8]>,
    /// Symlinks: the target.
    pub target: Vec<u8>,
    /// Device nodes: their numbers (zero for every other kind).
    pub rdev: DeviceId,
}

pub(super) const ENC_VERSION: u8 = 1;

impl Inode {
    pub(super) fn new(kind: Kind, mode: u32, cred: Cred, generation: u64) -> Inode {
        let t = now();
        Inode {
            kind,
            mode: mode & 0o7777,
            uid: cred.uid,
            gid: cred.gid,
            size: 0,
            atime: t,
            mtime: t,
            ctime: t,
            nlink: 1,
            generation,
            change: 1,
            parent: 0,
            next_cookie: FIRST_COOKIE,
            nextents: 0,
            verifier: None,
            target: Vec::new(),
            rdev: DeviceId::default(),
        }
    }

    /// Marks an attribute change (ctime and change counter).
    pub(super) fn touch_c(&mut self, t: Timestamp) {
        self.ctime = t;
        self.change += 1;
    }

    /// Marks a content change (mtime, ctime and change counter).
    pub(super) fn touch_mc(&mut self, t: Timestamp) {
        self.mtime = t;
        self.touch_c(t);
    }

    /// Encodes the record (little-endian, see FORMATS.md).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(128 + self.target.len());
        b.push(ENC_VERSION);
        b.push(match self.kind {
            Kind::Directory => 1,
            Kind::File => 2,
            Kind::Volume => 3,
            Kind::Symlink => 4,
            Kind::Fifo => 5,
            Kind::Socket => 6,
            Kind::CharDevice => 7,
            Kind::BlockDevice => 8,
        });
        for v in [self.mode, self.uid, self.gid] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&self.size.to_le_bytes());
        for t in [self.atime, self.mtime, self.ctime] {
            b.extend_from_slice(&t.secs.to_le_bytes());
            b.extend_from_slice(&t.nsecs.to_le_bytes());
        }
        b.extend_from_slice(&self.nlink.to_le_bytes());
        for v in [
            self.generation,
            self.change,
            self.parent,
            self.next_cookie,
            self.nextents,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        match self.verifier {
            Some(v) => {
                b.push(1);
                b.extend_from_slice(&v);
            }
            None => b.push(0),
        }
        if self.kind.is_device() {
            b.extend_from_slice(&self.rdev.major.to_le_bytes());
            b.extend_from_slice(&self.rdev.minor.to_le_bytes());
        } else {
            b.extend_from_slice(&self.target);
        }
        b
    }

    /// Decodes a record written by [`Inode::encode`].
    pub(crate) fn decode(b: &[u8]) -> Result<Inode> {
        let mut r = Reader { b, pos: 0 };
        let version = r.u8()?;
        if version != ENC_VERSION {
            return Err(Error::Io(format!("inode record version {version} unknown")));
        }
        let kind = match r.u8()? {
            1 => Kind::Directory,
            2 => Kind::File,
            3 => Kind::Volume,
            4 => Kind::Symlink,
            5 => Kind::Fifo,
            6 => Kind::Socket,
            7 => Kind::CharDevice,
            8 => Kind::BlockDevice,
            k => return Err(Error::Io(format!("inode record kind {k} unknown"))),
        };
        let mode = r.u32()?;
        let uid = r.u32()?;
        let gid = r.u32()?;
        let size = r.u64()?;
        let atime = r.time()?;
        let mtime = r.time()?;
        let ctime = r.time()?;
        let nlink = r.u32()?;
        let generation = r.u64()?;
        let change = r.u64()?;
        let parent = r.u64()?;
        let next_cookie = r.u64()?;
        let nextents = r.u64()?;
        let verifier = match r.u8()? {
            0 => None,
            1 => {
                let mut v = [0u8; 8];
                v.copy_from_slice(r.take(8)?);
                Some(v)
            }
            f => return Err(Error::Io(format!("inode record verifier flag {f} unknown"))),
        };
        let (target, rdev) = if kind.is_device() {
            let rdev = DeviceId {
                major: r.u32()?,
                minor: r.u32()?,
            };
            if r.pos != b.len() {
                return Err(Error::Io(
                    "device inode record longer than its fields".into(),
                ));
            }
            (Vec::new(), rdev)
        } else if matches!(kind, Kind::Fifo | Kind::Socket) && r.pos != b.len() {
            return Err(Error::Io(
                "special file inode record longer than its fields".into(),
            ));
        } else {
            (b[r.pos..].to_vec(), DeviceId::default())
        };
        Ok(Inode {
            kind,
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
            ctime,
            nlink,
            generation,
            change,
            parent,
            next_cookie,
            nextents,
            verifier,
            target,
            rdev,
        })
    }
}

pub(super) struct Reader<'a> {
    pub(super) b: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len());
        match end {
            Some(end) => {
                let s = &self.b[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(Error::Io("inode record truncated".into())),
        }
    }
    pub(super) fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub(super) fn u32(&mut self) -> Result<u32> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }
    pub(super) fn u64(&mut self) -> Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    pub(super) fn time(&mut self) -> Result<Timestamp> {
        let secs = self.u64()? as i64;
        let nsecs = self.u32()?;
        Ok(Timestamp { secs, nsecs })
    }
}
