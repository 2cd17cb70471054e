//! The namespace head (`namespace/head` on the backend): which image is the namespace's, and the
//! inode high-water mark. Byte layout in `FORMATS.md` ("Namespace head").

use crate::error::{Error, Result};

/// The head's key.
pub(crate) const HEAD_KEY: &str = "namespace/head";
/// Prefix of the images' keys: `namespace/image.<epoch>.<seq>`, 16 hex digits each.
const IMAGE_PREFIX: &str = "namespace/image.";
/// Prefix of the logs' keys: `namespace/log.<epoch>.<seq>`.
const LOG_PREFIX: &str = "namespace/log.";
/// The head's first bytes.
const MAGIC: [u8; 8] = *b"STRATAHD";
/// The layout version after the magic.
const VERSION: u32 = 1;
/// The head's length: magic, version, flags, 10 u64, image CRC, CRC.
pub(crate) const HEAD_LEN: usize = 8 + 4 + 4 + 10 * 8 + 4 + 4;
/// Flag: the head names an image.
const HAS_IMAGE: u32 = 1;

/// The image a head names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ImageRef {
    /// The epoch of the gateway that uploaded it.
    pub epoch: u64,
    /// Its number within that epoch (from 1).
    pub seq: u64,
    /// Its length in bytes.
    pub len: u64,
    /// When its read transaction began, seconds since the Unix epoch (for reports only).
    pub taken: u64,
    /// CRC-32C of its bytes (the image also ends in its own).
    pub crc: u32,
    /// The last log after it (`seq + 1 ..= log_last`, same epoch); `seq` when there is none.
    pub log_last: u64,
}

impl ImageRef {
    /// Its key on the backend.
    pub(crate) fn key(&self) -> String {
        image_key(self.epoch, self.seq)
    }

    /// The keys of its logs, in order.
    pub(crate) fn log_keys(&self) -> Vec<(u64, String)> {
        (self.seq + 1..=self.log_last)
            .map(|s| (s, log_key(self.epoch, s)))
            .collect()
    }
}

/// `namespace/log.<epoch>.<seq>`.
pub(crate) fn log_key(epoch: u64, seq: u64) -> String {
    format!("{LOG_PREFIX}{epoch:016x}.{seq:016x}")
}

/// `namespace/image.<epoch>.<seq>`.
pub(crate) fn image_key(epoch: u64, seq: u64) -> String {
    format!("{IMAGE_PREFIX}{epoch:016x}.{seq:016x}")
}

/// The epoch an image or log key carries, if `key` is one.
pub(crate) fn image_key_epoch(key: &str) -> Option<u64> {
    let (epoch, seq) = key
        .strip_prefix(IMAGE_PREFIX)
        .or_else(|| key.strip_prefix(LOG_PREFIX))?
        .split_once('.')?;
    let hex = |s: &str| s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(epoch) && hex(seq))
        .then(|| u64::from_str_radix(epoch, 16).ok())
        .flatten()
}

/// The namespace head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    /// The namespace's fsid.
    pub fsid: u64,
    /// The gateway that wrote it.
    pub gateway: u64,
    /// That gateway's owner epoch when it wrote it.
    pub epoch: u64,
    /// No inode number at or above this one was ever handed out.
    pub ino_hwm: u64,
    /// The namespace's image, once one was uploaded.
    pub image: Option<ImageRef>,
    /// One more at every write of the head: a gateway writes it at least every
    /// [`super::HEARTBEAT`], so a head that does not change for longer belongs to a gateway
    /// that is gone (what `strata restore` waits to see before it takes over).
    pub beat: u64,
}

impl Head {
    /// Its bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEAD_LEN);
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        let flags = if self.image.is_some() { HAS_IMAGE } else { 0 };
        b.extend_from_slice(&flags.to_le_bytes());
        let i = self.image.unwrap_or(ImageRef {
            epoch: 0,
            seq: 0,
            len: 0,
            taken: 0,
            crc: 0,
            log_last: 0,
        });
        for v in [
            self.fsid,
            self.gateway,
            self.epoch,
            self.ino_hwm,
            i.epoch,
            i.seq,
            i.len,
            i.taken,
            i.log_last,
            self.beat,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&i.crc.to_le_bytes());
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// Reads a head, checking its length, magic, version and checksum.
    pub(crate) fn decode(b: &[u8]) -> Result<Head> {
        let bad = |why: &str| Error::Io(format!("{HEAD_KEY} on the backend is damaged: {why}"));
        if b.len() != HEAD_LEN || b[..8] != MAGIC {
            return Err(bad("not a namespace head"));
        }
        let crc = u32::from_le_bytes([b[100], b[101], b[102], b[103]]);
        if crc32c::crc32c(&b[..100]) != crc {
            return Err(bad("its checksum does not match"));
        }
        let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let u64_at = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(a)
        };
        if u32_at(8) != VERSION {
            return Err(Error::Io(format!(
                "{HEAD_KEY} on the backend has layout version {}: this build reads {VERSION}",
                u32_at(8)
            )));
        }
        let flags = u32_at(12);
        if flags & !HAS_IMAGE != 0 {
            return Err(bad("unknown flags"));
        }
        let image = (flags & HAS_IMAGE != 0).then(|| ImageRef {
            epoch: u64_at(48),
            seq: u64_at(56),
            len: u64_at(64),
            taken: u64_at(72),
            log_last: u64_at(80),
            crc: u32_at(96),
        });
        if image.is_some_and(|i| i.log_last < i.seq) {
            return Err(bad("its last log is before its image"));
        }
        Ok(Head {
            fsid: u64_at(16),
            gateway: u64_at(24),
            epoch: u64_at(32),
            ino_hwm: u64_at(40),
            image,
            beat: u64_at(88),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_round_trips_and_damage_is_refused() {
        let mut h = Head {
            fsid: 1,
            gateway: 2,
            epoch: 3,
            ino_hwm: 1 << 20,
            image: None,
            beat: 4,
        };
        assert_eq!(Head::decode(&h.encode()).expect("decode"), h);
        h.image = Some(ImageRef {
            epoch: 3,
            seq: 9,
            len: 1234,
            taken: 1_700_000_000,
            crc: 0xdead_beef,
            log_last: 12,
        });
        let b = h.encode();
        assert_eq!(b.len(), HEAD_LEN);
        assert_eq!(Head::decode(&b).expect("decode"), h);
        for at in [0, 8, 20, 50, 83, 91, 99, 103] {
            let mut bad = b.clone();
            bad[at] ^= 1;
            assert!(Head::decode(&bad).is_err(), "damage at {at} noticed");
        }
        assert!(Head::decode(&b[..96]).is_err());
        let logs = h.image.expect("image").log_keys();
        assert_eq!(logs.len(), 3);
        assert_eq!(image_key_epoch(&logs[0].1), Some(3), "{}", logs[0].1);
        assert_eq!(
            image_key_epoch(&image_key(0xab, 2)),
            Some(0xab),
            "{}",
            image_key(0xab, 2)
        );
        assert_eq!(image_key_epoch("namespace/image.12.34"), None);
    }
}
