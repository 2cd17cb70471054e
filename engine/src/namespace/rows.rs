//! The namespace as rows, and their two checksummed byte forms on the backend (layouts in
//! `FORMATS.md`, "The namespace on the backend"): an **image** holds every row, a **log** the
//! rows changed (upserted or deleted) since the image or log before it. Pure bytes: the redb
//! side is `image.rs`.
//!
//! A row is its table's index in [`TABLES`], its key fields and its value fields, each encoded
//! as the table's schema says (an integer: 8 bytes little-endian; a byte string: a u32 length
//! then the bytes).

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// A field of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    /// A u64 (an i64 as its two's complement).
    U,
    /// A byte string.
    B,
}

/// A table in images and logs: its name, its key fields, its value fields.
#[derive(Debug)]
pub(super) struct Table {
    pub(super) name: &'static str,
    pub(super) key: &'static [Field],
    pub(super) value: &'static [Field],
}

use Field::{B, U};

/// The tables, in this order (their index is the row's table number).
pub(super) const TABLES: [Table; 10] = [
    Table {
        name: "meta",
        key: &[B],
        value: &[U],
    },
    Table {
        name: "inodes",
        key: &[U],
        value: &[B],
    },
    Table {
        name: "dirents",
        key: &[U, B],
        value: &[U, U],
    },
    Table {
        name: "cookies",
        key: &[U, U],
        value: &[B],
    },
    Table {
        name: "file_extents",
        key: &[U, U],
        value: &[U],
    },
    Table {
        name: "file_applied",
        key: &[U],
        value: &[U],
    },
    Table {
        name: "orphans",
        key: &[U],
        value: &[],
    },
    Table {
        name: "clone_readers",
        key: &[U, U],
        value: &[],
    },
    Table {
        name: "hidden_volumes",
        key: &[U],
        value: &[U],
    },
    Table {
        name: "xattrs",
        key: &[U, B],
        value: &[B],
    },
];

/// A row's identity: its table number and key bytes.
pub(crate) type RowKey = (u8, Vec<u8>);

/// Every row: its identity -> its value bytes.
pub(crate) type Rows = BTreeMap<RowKey, Vec<u8>>;

/// What a log changes: rows put (new or changed) and rows deleted.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    /// Rows new or changed.
    pub(crate) put: Vec<(RowKey, Vec<u8>)>,
    /// Rows gone.
    pub(crate) deleted: Vec<RowKey>,
}

impl Changes {
    /// Whether it changes nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.put.is_empty() && self.deleted.is_empty()
    }

    /// Applies it to `rows`.
    pub(crate) fn apply(self, rows: &mut Rows) {
        for k in self.deleted {
            rows.remove(&k);
        }
        rows.extend(self.put);
    }
}

/// What turns `old` into `new`.
pub(crate) fn diff(old: &Rows, new: &Rows) -> Changes {
    let mut c = Changes::default();
    for (k, v) in new {
        if old.get(k) != Some(v) {
            c.put.push((k.clone(), v.clone()));
        }
    }
    for k in old.keys() {
        if !new.contains_key(k) {
            c.deleted.push(k.clone());
        }
    }
    c
}

/// The image's first bytes.
const IMAGE_MAGIC: [u8; 8] = *b"STRATANS";
/// A log's first bytes.
const LOG_MAGIC: [u8; 8] = *b"STRATANL";
/// The layout version written after the magic (both kinds).
const VERSION: u32 = 1;
/// The trailing CRC-32C.
const CRC_LEN: usize = 4;
/// Longest byte string of a field (an inode record, a name): far above any the namespace writes.
pub(super) const FIELD_MAX: usize = 1 << 20;
/// Longest key or value of a row in a log.
const ROW_PART_MAX: usize = 2 * FIELD_MAX + 64;

/// Appends fields.
#[derive(Debug, Default)]
pub(super) struct Writer {
    pub(super) buf: Vec<u8>,
}

impl Writer {
    pub(super) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(super) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(super) fn bytes(&mut self, v: &[u8]) -> Result<()> {
        let len = u32::try_from(v.len())
            .ok()
            .filter(|l| (*l as usize) <= FIELD_MAX)
            .ok_or_else(|| Error::Io(format!("a namespace row of {} bytes", v.len())))?;
        self.u32(len);
        self.buf.extend_from_slice(v);
        Ok(())
    }
    /// Ends the object: its CRC-32C.
    fn finish(mut self) -> Vec<u8> {
        let crc = crc32c::crc32c(&self.buf);
        self.buf.extend_from_slice(&crc.to_le_bytes());
        self.buf
    }
}

/// Reads fields, every length checked.
#[derive(Debug)]
pub(super) struct Reader<'a> {
    pub(super) b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.b.len() < n {
            return Err(damaged("it ends inside a row"));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    pub(super) fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }
    pub(super) fn u32(&mut self) -> Result<u32> {
        self.array().map(u32::from_le_bytes)
    }
    pub(super) fn u64(&mut self) -> Result<u64> {
        self.array().map(u64::from_le_bytes)
    }
    pub(super) fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        if n > FIELD_MAX {
            return Err(damaged("a row's field is too long"));
        }
        self.take(n)
    }
    /// The bytes of `fields`, checked against the schema.
    fn fields(&mut self, fields: &[Field]) -> Result<&'a [u8]> {
        let start = self.b;
        let mut n = 0;
        for f in fields {
            n += match f {
                Field::U => self.take(8)?.len(),
                Field::B => 4 + self.bytes()?.len(),
            };
        }
        Ok(&start[..n])
    }
    /// A byte string of a log (a row's key or value, itself fields).
    fn part(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        if n > ROW_PART_MAX {
            return Err(damaged("a row is too long"));
        }
        self.take(n)
    }
}

pub(super) fn damaged(why: &str) -> Error {
    Error::Io(format!("namespace image damaged: {why}"))
}

/// Checks `b`'s magic and checksum; the bytes between them.
fn body<'a>(b: &'a [u8], magic: &[u8; 8]) -> Result<&'a [u8]> {
    if b.len() < magic.len() + CRC_LEN || b[..8] != magic[..] {
        return Err(damaged("not a namespace image or log"));
    }
    let (body, crc) = b.split_at(b.len() - CRC_LEN);
    let mut c = [0u8; 4];
    c.copy_from_slice(crc);
    if crc32c::crc32c(body) != u32::from_le_bytes(c) {
        return Err(damaged("its checksum does not match"));
    }
    Ok(&body[8..])
}

fn check_version(r: &mut Reader<'_>) -> Result<()> {
    let version = r.u32()?;
    if version != VERSION {
        return Err(Error::Io(format!(
            "namespace image or log of layout version {version}: this build reads {VERSION}"
        )));
    }
    Ok(())
}

/// An image's header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// The namespace's fsid.
    pub(crate) fsid: u64,
    /// The namespace's change counter when its read transaction began.
    pub(crate) changes: u64,
}

/// The image of `rows`: magic, version, table count, fsid, changes, then each table (name,
/// row count, rows: key fields then value fields), then the CRC.
pub(crate) fn encode_image(h: Header, rows: &Rows) -> Vec<u8> {
    let mut w = Writer::default();
    w.buf.extend_from_slice(&IMAGE_MAGIC);
    w.u32(VERSION);
    w.u32(TABLES.len() as u32);
    w.u64(h.fsid);
    w.u64(h.changes);
    for (i, t) in TABLES.iter().enumerate() {
        let of_table = rows
            .range((i as u8, Vec::new())..)
            .take_while(|((n, _), _)| *n == i as u8);
        let count = of_table.clone().count() as u64;
        w.buf.push(t.name.len() as u8);
        w.buf.extend_from_slice(t.name.as_bytes());
        w.u64(count);
        for ((_, k), v) in of_table {
            w.buf.extend_from_slice(k);
            w.buf.extend_from_slice(v);
        }
    }
    w.finish()
}

/// Reads an image back: its header and rows, every length and the checksum checked.
pub(crate) fn decode_image(b: &[u8]) -> Result<(Header, Rows)> {
    let mut r = Reader {
        b: body(b, &IMAGE_MAGIC)?,
    };
    check_version(&mut r)?;
    // An image of a build before `xattrs` holds the first 9 tables only: that one is empty.
    let tables = r.u32()? as usize;
    if tables != TABLES.len() && tables != TABLES.len() - 1 {
        return Err(damaged("it does not hold the tables this build knows"));
    }
    let h = Header {
        fsid: r.u64()?,
        changes: r.u64()?,
    };
    let mut rows = Rows::new();
    for (i, t) in TABLES.iter().enumerate().take(tables) {
        let n = r.u8()? as usize;
        let name = r.take(n)?;
        if name != t.name.as_bytes() {
            return Err(damaged(&format!("a table where {} belongs", t.name)));
        }
        for _ in 0..r.u64()? {
            let k = r.fields(t.key)?.to_vec();
            let v = r.fields(t.value)?.to_vec();
            rows.insert((i as u8, k), v);
        }
    }
    if !r.b.is_empty() {
        return Err(damaged("bytes after its last table"));
    }
    Ok((h, rows))
}

/// A log: magic, version, fsid, changes, the number of the image it follows and its own, the
/// rows put (table, key, value) and deleted (table, key), then the CRC.
pub(crate) fn encode_log(h: Header, image_seq: u64, seq: u64, c: &Changes) -> Vec<u8> {
    let mut w = Writer::default();
    w.buf.extend_from_slice(&LOG_MAGIC);
    w.u32(VERSION);
    w.u64(h.fsid);
    w.u64(h.changes);
    w.u64(image_seq);
    w.u64(seq);
    w.u64(c.put.len() as u64);
    for ((t, k), v) in &c.put {
        w.buf.push(*t);
        w.u32(k.len() as u32);
        w.buf.extend_from_slice(k);
        w.u32(v.len() as u32);
        w.buf.extend_from_slice(v);
    }
    w.u64(c.deleted.len() as u64);
    for (t, k) in &c.deleted {
        w.buf.push(*t);
        w.u32(k.len() as u32);
        w.buf.extend_from_slice(k);
    }
    w.finish()
}

/// Reads log `seq` following image `image_seq` of namespace `fsid` back, every row checked
/// against its table's schema.
pub(crate) fn decode_log(b: &[u8], fsid: u64, image_seq: u64, seq: u64) -> Result<Changes> {
    let mut r = Reader {
        b: body(b, &LOG_MAGIC)?,
    };
    check_version(&mut r)?;
    let (f, _changes, i, s) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
    if (f, i, s) != (fsid, image_seq, seq) {
        return Err(damaged(&format!(
            "log {s} of image {i} of namespace {f:016x} where log {seq} of image {image_seq} \
             of {fsid:016x} belongs"
        )));
    }
    let table = |n: u8| {
        TABLES
            .get(n as usize)
            .ok_or_else(|| damaged(&format!("table number {n}")))
    };
    let whole = |part: &[u8], fields: &[Field]| -> Result<Vec<u8>> {
        let mut p = Reader { b: part };
        p.fields(fields)?;
        if !p.b.is_empty() {
            return Err(damaged("a row longer than its fields"));
        }
        Ok(part.to_vec())
    };
    let mut c = Changes::default();
    for _ in 0..r.u64()? {
        let n = r.u8()?;
        let t = table(n)?;
        let k = whole(r.part()?, t.key)?;
        let v = whole(r.part()?, t.value)?;
        c.put.push(((n, k), v));
    }
    for _ in 0..r.u64()? {
        let n = r.u8()?;
        let t = table(n)?;
        let k = whole(r.part()?, t.key)?;
        c.deleted.push((n, k));
    }
    if !r.b.is_empty() {
        return Err(damaged("bytes after its last row"));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(v: u64) -> Vec<u8> {
        v.to_le_bytes().to_vec()
    }

    fn rows() -> Rows {
        let mut r = Rows::new();
        let mut name = u(5).drain(..4).collect::<Vec<u8>>();
        name.extend_from_slice(b"abcde");
        r.insert((0, name), u(7));
        r.insert((1, u(1)), {
            let mut v = u(3)[..4].to_vec();
            v.extend_from_slice(b"xyz");
            v
        });
        r.insert((6, u(9)), Vec::new());
        r
    }

    #[test]
    fn images_and_logs_round_trip_and_damage_is_refused() {
        let h = Header {
            fsid: 3,
            changes: 11,
        };
        let a = rows();
        let img = encode_image(h, &a);
        assert_eq!(decode_image(&img).expect("decode"), (h, a.clone()));
        for at in [0, 9, 30, img.len() - 1] {
            let mut bad = img.clone();
            bad[at] ^= 1;
            assert!(decode_image(&bad).is_err(), "damage at {at}");
        }
        let mut b = a.clone();
        b.remove(&(6, u(9)));
        b.insert((1, u(1)), {
            let mut v = u(2)[..4].to_vec();
            v.extend_from_slice(b"zz");
            v
        });
        b.insert((5, u(4)), u(8));
        let c = diff(&a, &b);
        assert_eq!((c.put.len(), c.deleted.len()), (2, 1));
        let log = encode_log(h, 1, 2, &c);
        let back = decode_log(&log, 3, 1, 2).expect("decode log");
        assert_eq!(back, c);
        assert!(decode_log(&log, 3, 1, 3).is_err(), "another log's place");
        assert!(decode_log(&log[..log.len() - 2], 3, 1, 2).is_err());
        let mut applied = a;
        back.apply(&mut applied);
        assert_eq!(applied, b);
        assert!(diff(&b, &b).is_empty());
    }

    #[test]
    fn an_image_of_an_earlier_build_without_the_later_tables_reads_them_empty() {
        let h = Header {
            fsid: 3,
            changes: 11,
        };
        let a = rows();
        let img = encode_image(h, &a);
        // The image as a build before the `xattrs` table wrote it: one table fewer.
        let last = TABLES[TABLES.len() - 1].name.len();
        let mut old = img[..img.len() - CRC_LEN - (1 + last + 8)].to_vec();
        old[12..16].copy_from_slice(&(TABLES.len() as u32 - 1).to_le_bytes());
        let crc = crc32c::crc32c(&old[..]);
        old.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_image(&old).expect("decode"), (h, a));
        // Fewer tables than any build wrote, none, or more than this build knows: refused.
        for n in [0, TABLES.len() as u32 - 2, TABLES.len() as u32 + 1] {
            let mut bad = img[..img.len() - CRC_LEN].to_vec();
            bad[12..16].copy_from_slice(&n.to_le_bytes());
            let crc = crc32c::crc32c(&bad[..]);
            bad.extend_from_slice(&crc.to_le_bytes());
            assert!(decode_image(&bad).is_err(), "{n} tables");
        }
    }
}
