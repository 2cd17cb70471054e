//! The namespace side of the operations in `ops.rs`: CREATE's arguments for the non-regular
//! kinds (RFC 8881 section 18.4: `createtype4`, the name, `createattrs` with the mode), and
//! the attributes GETATTR asks for and how they decode (RFC 8881 section 5: type, size,
//! fileid, mode, numlinks, rawdev, space_used).

use super::ops::num;
use super::xdr::{Dec, DecResult, Enc};

/// What a CREATE makes (`createtype4`; regular files are OPEN's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateKind {
    /// A directory (NF4DIR).
    Dir,
    /// A symbolic link to this target (NF4LNK, `linkdata`).
    Symlink(String),
    /// A block device (NF4BLK): major, minor (`specdata4`).
    Block(u32, u32),
    /// A character device (NF4CHR): major, minor.
    Char(u32, u32),
    /// A socket (NF4SOCK).
    Socket,
    /// A FIFO (NF4FIFO).
    Fifo,
}

/// `nfs_ftype4` values.
const NF4DIR: u32 = 2;
const NF4BLK: u32 = 3;
const NF4CHR: u32 = 4;
const NF4LNK: u32 = 5;
const NF4SOCK: u32 = 6;
const NF4FIFO: u32 = 7;

/// Attribute numbers this client asks for.
const FATTR4_TYPE: usize = 1;
const FATTR4_CHANGE: usize = 3;
const FATTR4_SIZE: usize = 4;
const FATTR4_FILEID: usize = 20;
const FATTR4_MODE: usize = 33;
const FATTR4_NUMLINKS: usize = 35;
const FATTR4_RAWDEV: usize = 41;
const FATTR4_SPACE_USED: usize = 45;

/// A bitmap4 of attribute numbers (two words: all of ours are below 64).
fn bitmap(attrs: &[usize]) -> [u32; 2] {
    let mut w = [0u32; 2];
    for a in attrs {
        w[a / 32] |= 1 << (a % 32);
    }
    w
}

/// An object's attributes as GETATTR answered them (0 for one the server did not return).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Attrs {
    /// The type (`nfs_ftype4`: 1 regular, 2 directory, ...; see [`type_name`]).
    pub kind: u32,
    /// Size in bytes.
    pub size: u64,
    /// Fileid.
    pub fileid: u64,
    /// Permission bits (`mode4`).
    pub mode: u32,
    /// Hard links.
    pub nlink: u32,
    /// A device's major and minor numbers (`specdata4`).
    pub rdev: (u32, u32),
    /// Bytes used.
    pub space_used: u64,
    /// The change attribute.
    pub change: u64,
}

/// The short name of an `nfs_ftype4` (`reg`, `dir`, `blk`, `chr`, `lnk`, `sock`, `fifo`,
/// `attrdir`, `namedattr`), or its number.
pub fn type_name(kind: u32) -> String {
    let names = [
        "reg",
        "dir",
        "blk",
        "chr",
        "lnk",
        "sock",
        "fifo",
        "attrdir",
        "namedattr",
    ];
    kind.checked_sub(1)
        .and_then(|i| names.get(i as usize))
        .map_or_else(|| kind.to_string(), |n| (*n).to_string())
}

/// GETATTR's argument: the bitmap of the attributes [`Attrs`] holds.
pub(super) fn encode_getattr_bitmap(e: &mut Enc) {
    let w = bitmap(&[
        FATTR4_TYPE,
        FATTR4_CHANGE,
        FATTR4_SIZE,
        FATTR4_FILEID,
        FATTR4_MODE,
        FATTR4_NUMLINKS,
        FATTR4_RAWDEV,
        FATTR4_SPACE_USED,
    ]);
    e.u32(2).u32(w[0]).u32(w[1]);
}

/// CREATE's arguments: `createtype4`, `objname`, `createattrs` (the mode only).
pub(super) fn encode_create(e: &mut Enc, kind: &CreateKind, name: &str, mode: u32) {
    e.u32(num::CREATE);
    match kind {
        CreateKind::Dir => {
            e.u32(NF4DIR);
        }
        CreateKind::Symlink(target) => {
            e.u32(NF4LNK).opaque(target.as_bytes());
        }
        CreateKind::Block(major, minor) => {
            e.u32(NF4BLK).u32(*major).u32(*minor);
        }
        CreateKind::Char(major, minor) => {
            e.u32(NF4CHR).u32(*major).u32(*minor);
        }
        CreateKind::Socket => {
            e.u32(NF4SOCK);
        }
        CreateKind::Fifo => {
            e.u32(NF4FIFO);
        }
    }
    e.opaque(name.as_bytes());
    let w = bitmap(&[FATTR4_MODE]);
    let mut vals = Enc::default();
    vals.u32(mode);
    e.u32(2).u32(w[0]).u32(w[1]).opaque(&vals.0);
}

/// GETATTR's result: a bitmap, then the values of the attributes it names in the order of
/// their numbers. A value of an attribute not asked for cannot be skipped (its size is not
/// known here): an error.
pub(super) fn decode_attrs(d: &mut Dec<'_>) -> DecResult<Attrs> {
    let bits = super::ops::read_bitmap(d)?;
    let vals = d.opaque(4096)?;
    let mut v = Dec::new(vals);
    let has = |n: usize| bits.get(n / 32).is_some_and(|w| w & (1 << (n % 32)) != 0);
    let known = bitmap(&[
        FATTR4_TYPE,
        FATTR4_CHANGE,
        FATTR4_SIZE,
        FATTR4_FILEID,
        FATTR4_MODE,
        FATTR4_NUMLINKS,
        FATTR4_RAWDEV,
        FATTR4_SPACE_USED,
    ]);
    for (i, w) in bits.iter().enumerate() {
        let extra = w & !known.get(i).copied().unwrap_or(0);
        if extra != 0 {
            return Err(format!(
                "GETATTR returned attribute {} that was not asked for",
                i * 32 + extra.trailing_zeros() as usize
            ));
        }
    }
    let mut a = Attrs::default();
    if has(FATTR4_TYPE) {
        a.kind = v.u32()?;
    }
    if has(FATTR4_CHANGE) {
        a.change = v.u64()?;
    }
    if has(FATTR4_SIZE) {
        a.size = v.u64()?;
    }
    if has(FATTR4_FILEID) {
        a.fileid = v.u64()?;
    }
    if has(FATTR4_MODE) {
        a.mode = v.u32()?;
    }
    if has(FATTR4_NUMLINKS) {
        a.nlink = v.u32()?;
    }
    if has(FATTR4_RAWDEV) {
        a.rdev = (v.u32()?, v.u32()?);
    }
    if has(FATTR4_SPACE_USED) {
        a.space_used = v.u64()?;
    }
    if v.remaining() != 0 {
        return Err(format!(
            "{} bytes after the attributes' values",
            v.remaining()
        ));
    }
    Ok(a)
}

/// Whether CREATE's `attrset` says the mode was set.
pub fn sets_mode(attrset: &[u32]) -> bool {
    attrset
        .get(FATTR4_MODE / 32)
        .is_some_and(|w| w & (1 << (FATTR4_MODE % 32)) != 0)
}

#[cfg(test)]
mod tests {
    use super::super::ops::{decode, encode, Answer, Op};
    use super::*;

    fn encoded(op: &Op) -> Vec<u8> {
        let mut e = Enc::default();
        encode(&mut e, op);
        e.0
    }

    fn words(b: &[u8]) -> Vec<u32> {
        b.chunks(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    /// The fattr4 of CREATE: bitmap {0, 1 << 1} (mode is attribute 33), 4 bytes, the mode.
    const MODE_0640: [u32; 5] = [2, 0, 1 << 1, 4, 0o640];

    fn create(kind: CreateKind, name: &str) -> Vec<u32> {
        words(&encoded(&Op::Create {
            kind,
            name: name.into(),
            mode: 0o640,
        }))
    }

    #[test]
    fn create_arguments_have_the_rfc_layout() {
        // CREATE (6), NF4CHR (4), specdata4 {major, minor}, objname "c" (padded), fattr4.
        let mut want = vec![6, 4, 1, 3, 1, u32::from_be_bytes(*b"c\0\0\0")];
        want.extend(MODE_0640);
        assert_eq!(create(CreateKind::Char(1, 3), "c"), want);
        let mut want = vec![6, 3, 8, 0x0012_3456, 1, u32::from_be_bytes(*b"b\0\0\0")];
        want.extend(MODE_0640);
        assert_eq!(create(CreateKind::Block(8, 0x0012_3456), "b"), want);
        // The kinds with no type data: the type, then the name at once.
        for (kind, t) in [
            (CreateKind::Dir, 2),
            (CreateKind::Socket, 6),
            (CreateKind::Fifo, 7),
        ] {
            let mut want = vec![6, t, 4, u32::from_be_bytes(*b"name")];
            want.extend(MODE_0640);
            assert_eq!(create(kind, "name"), want);
        }
        // NF4LNK (5): linkdata as a string (5 bytes, 3 of padding), then the name.
        let mut want = vec![
            6,
            5,
            5,
            u32::from_be_bytes(*b"../t"),
            u32::from_be_bytes(*b"o\0\0\0"),
            1,
            u32::from_be_bytes(*b"l\0\0\0"),
        ];
        want.extend(MODE_0640);
        assert_eq!(create(CreateKind::Symlink("../to".into()), "l"), want);
        // REMOVE (28) of a name, READLINK (27) alone.
        assert_eq!(
            words(&encoded(&Op::Remove("ab".into()))),
            [28, 2, u32::from_be_bytes(*b"ab\0\0")]
        );
        assert_eq!(words(&encoded(&Op::ReadLink)), [27]);
    }

    #[test]
    fn getattr_asks_for_and_decodes_type_mode_nlink_rawdev() {
        // GETATTR (9), bitmap of 2 words: type 1, change 3, size 4, fileid 20; mode 33,
        // numlinks 35, rawdev 41, space_used 45.
        assert_eq!(
            words(&encoded(&Op::GetAttr)),
            [
                9,
                2,
                1 << 1 | 1 << 3 | 1 << 4 | 1 << 20,
                1 << 1 | 1 << 3 | 1 << 9 | 1 << 13
            ]
        );
        let mut vals = Enc::default();
        vals.u32(4) // NF4CHR
            .u64(9) // change
            .u64(0)
            .u64(77)
            .u32(0o620)
            .u32(1)
            .u32(136)
            .u32(5)
            .u64(0);
        let mut e = Enc::default();
        e.u32(2)
            .u32(1 << 1 | 1 << 3 | 1 << 4 | 1 << 20)
            .u32(1 << 1 | 1 << 3 | 1 << 9 | 1 << 13)
            .opaque(&vals.0);
        let want = Attrs {
            kind: 4,
            size: 0,
            fileid: 77,
            mode: 0o620,
            nlink: 1,
            rdev: (136, 5),
            space_used: 0,
            change: 9,
        };
        assert_eq!(
            decode(&mut Dec::new(&e.0), &Op::GetAttr),
            Ok(Answer::Attrs(want))
        );
        // A server that returns only some (type and mode): the others are 0.
        let mut vals = Enc::default();
        vals.u32(7).u32(0o600);
        let mut e = Enc::default();
        e.u32(2).u32(1 << 1).u32(1 << 1).opaque(&vals.0);
        assert_eq!(
            decode(&mut Dec::new(&e.0), &Op::GetAttr),
            Ok(Answer::Attrs(Attrs {
                kind: 7,
                mode: 0o600,
                ..Attrs::default()
            }))
        );
        // Values missing, values left over, an attribute not asked for: errors.
        let mut e = Enc::default();
        e.u32(2)
            .u32(1 << 1)
            .u32(1 << 9)
            .opaque(&[0, 0, 0, 3, 0, 0, 0, 1]);
        assert!(decode(&mut Dec::new(&e.0), &Op::GetAttr).is_err());
        let mut e = Enc::default();
        e.u32(1).u32(1 << 1).opaque(&[0, 0, 0, 3, 0, 0, 0, 1]);
        assert!(decode(&mut Dec::new(&e.0), &Op::GetAttr).is_err());
        let mut e = Enc::default();
        e.u32(1)
            .u32(1 << 1 | 1 << 2)
            .opaque(&[0, 0, 0, 3, 0, 0, 0, 1]);
        assert!(decode(&mut Dec::new(&e.0), &Op::GetAttr).is_err());
    }

    #[test]
    fn create_remove_readlink_results_decode() {
        let create = Op::Create {
            kind: CreateKind::Fifo,
            name: "p".into(),
            mode: 0o644,
        };
        // change_info4 (atomic, before, after), attrset {0, 1 << 1}: the mode was set.
        let mut e = Enc::default();
        e.bool(true).u64(1).u64(2).u32(2).u32(0).u32(1 << 1);
        let a = decode(&mut Dec::new(&e.0), &create);
        assert_eq!(a, Ok(Answer::Created(vec![0, 1 << 1])));
        assert!(sets_mode(&[0, 1 << 1]));
        assert!(!sets_mode(&[0]) && !sets_mode(&[]));
        // A truncated attrset, a bad boolean in change_info4.
        assert!(decode(&mut Dec::new(&e.0[..e.0.len() - 4]), &create).is_err());
        let mut e = Enc::default();
        e.u32(5).u64(1).u64(2).u32(0);
        assert!(decode(&mut Dec::new(&e.0), &create).is_err());
        // REMOVE: change_info4 only.
        let mut e = Enc::default();
        e.bool(false).u64(1).u64(2);
        let remove = Op::Remove("p".into());
        assert_eq!(decode(&mut Dec::new(&e.0), &remove), Ok(Answer::Done));
        assert!(decode(&mut Dec::new(&e.0[..12]), &remove).is_err());
        // READLINK: the target as a string.
        let mut e = Enc::default();
        e.opaque(b"../target");
        let a = decode(&mut Dec::new(&e.0), &Op::ReadLink);
        assert_eq!(a, Ok(Answer::Link(b"../target".to_vec())));
        assert!(decode(&mut Dec::new(&e.0[..8]), &Op::ReadLink).is_err());
    }

    #[test]
    fn type_names() {
        let names: Vec<String> = (0..=10).map(type_name).collect();
        assert_eq!(
            names,
            [
                "0",
                "reg",
                "dir",
                "blk",
                "chr",
                "lnk",
                "sock",
                "fifo",
                "attrdir",
                "namedattr",
                "10"
            ]
        );
    }
}
