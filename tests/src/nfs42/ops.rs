//! NFSv4.1/4.2 operations (RFC 8881, RFC 7862, RFC 8276): their numbers, their arguments as
//! XDR, and a decoder of each one's result. The namespace operations (CREATE of the non-regular
//! kinds, REMOVE, READLINK) and the attributes GETATTR asks for are in `ops_ns.rs`.

use super::ops_ns::{decode_attrs, encode_create};
pub use super::ops_ns::{sets_mode, type_name, Attrs, CreateKind};
use super::xdr::{Dec, DecResult, Enc};

/// A stateid (`stateid4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StateId {
    /// Its sequence number.
    pub seqid: u32,
    /// The server's opaque part.
    pub other: [u8; 12],
}

/// One operation of a COMPOUND, with its arguments.
#[derive(Debug, Clone)]
pub enum Op {
    /// PUTROOTFH.
    PutRootFh,
    /// PUTFH.
    PutFh(Vec<u8>),
    /// LOOKUP of one name.
    Lookup(String),
    /// GETFH.
    GetFh,
    /// GETATTR of type, size, fileid, mode, numlinks, rawdev and space_used.
    GetAttr,
    /// OPEN: by name in the current directory (created, UNCHECKED with mode 0644, when
    /// `create`), or a reclaim of the current filehandle after a server restart; with share
    /// access and deny bits.
    Open {
        /// What is opened: a name, or the current filehandle (a reclaim).
        claim: Claim,
        /// Create it if missing (CLAIM_NULL only).
        create: bool,
        /// The client id (the open owner's).
        clientid: u64,
        /// `OPEN4_SHARE_ACCESS_*`: 1 read, 2 write, 3 both.
        access: u32,
        /// `OPEN4_SHARE_DENY_*`: 0 none, 1 read, 2 write, 3 both.
        deny: u32,
    },
    /// SETATTR of the size with a stateid (an open's, or the anonymous all-zero one).
    SetSize(StateId, u64),
    /// SAVEFH.
    SaveFh,
    /// RENAME of a name in the saved filehandle's directory to a name in the current one.
    Rename(String, String),
    /// CLOSE.
    Close(StateId),
    /// WRITE (`stable`: FILE_SYNC4, else UNSTABLE4).
    Write(StateId, u64, Vec<u8>, bool),
    /// COMMIT of the whole file.
    Commit,
    /// READ.
    Read(StateId, u64, u32),
    /// ALLOCATE.
    Allocate(StateId, u64, u64),
    /// DEALLOCATE.
    Deallocate(StateId, u64, u64),
    /// SEEK (`hole`: NFS4_CONTENT_HOLE, else DATA).
    Seek(StateId, u64, bool),
    /// GETXATTR.
    GetXattr(String),
    /// SETXATTR (option: 0 either, 1 create, 2 replace).
    SetXattr(String, Vec<u8>, u32),
    /// LISTXATTRS from a cookie, with the reply's byte budget (`lxa_maxcount`).
    ListXattrs(u64, u32),
    /// REMOVEXATTR.
    RemoveXattr(String),
    /// CREATE of a non-regular object named `name` in the current directory, with mode
    /// `mode`; the current filehandle becomes the new object.
    Create {
        /// What to create.
        kind: CreateKind,
        /// Its name.
        name: String,
        /// Its permission bits (the mode attribute).
        mode: u32,
    },
    /// REMOVE of a name in the current directory.
    Remove(String),
    /// READLINK of the current filehandle (a symbolic link).
    ReadLink,
}

/// What an OPEN names (`open_claim4`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// CLAIM_NULL: a name in the current directory.
    Null(String),
    /// CLAIM_PREVIOUS: the current filehandle, open before the server restarted (a reclaim
    /// during its grace period; no delegation).
    Previous,
}

/// What an operation answered (its result beyond the status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Nothing beyond NFS4_OK.
    Done,
    /// A file handle (GETFH).
    Fh(Vec<u8>),
    /// Attributes (GETATTR).
    Attrs(Attrs),
    /// CREATE's answer: the attributes the server set (a bitmap, `attrset`).
    Created(Vec<u32>),
    /// A symbolic link's target (READLINK).
    Link(Vec<u8>),
    /// An open's stateid.
    Opened(StateId),
    /// Bytes written and how stable.
    Written(u32, u32),
    /// Bytes read and end of file.
    Data(Vec<u8>, bool),
    /// A SEEK's answer: end of file, offset.
    Sought(bool, u64),
    /// An xattr's value.
    Value(Vec<u8>),
    /// Xattr names, the next cookie, end of the list.
    Names(Vec<String>, u64, bool),
}

/// Operation numbers.
pub(super) mod num {
    pub(crate) const CLOSE: u32 = 4;
    pub(crate) const COMMIT: u32 = 5;
    pub(crate) const CREATE: u32 = 6;
    pub(crate) const GETATTR: u32 = 9;
    pub(crate) const GETFH: u32 = 10;
    pub(crate) const LOOKUP: u32 = 15;
    pub(crate) const OPEN: u32 = 18;
    pub(crate) const PUTFH: u32 = 22;
    pub(crate) const PUTROOTFH: u32 = 24;
    pub(crate) const READ: u32 = 25;
    pub(crate) const READLINK: u32 = 27;
    pub(crate) const REMOVE: u32 = 28;
    pub(crate) const RENAME: u32 = 29;
    pub(crate) const SAVEFH: u32 = 32;
    pub(crate) const SETATTR: u32 = 34;
    pub(crate) const WRITE: u32 = 38;
    pub(crate) const EXCHANGE_ID: u32 = 42;
    pub(crate) const CREATE_SESSION: u32 = 43;
    pub(crate) const DESTROY_SESSION: u32 = 44;
    pub(crate) const SEQUENCE: u32 = 53;
    pub(crate) const DESTROY_CLIENTID: u32 = 57;
    pub(crate) const RECLAIM_COMPLETE: u32 = 58;
    pub(crate) const ALLOCATE: u32 = 59;
    pub(crate) const DEALLOCATE: u32 = 62;
    pub(crate) const SEEK: u32 = 69;
    pub(crate) const GETXATTR: u32 = 72;
    pub(crate) const SETXATTR: u32 = 73;
    pub(crate) const LISTXATTRS: u32 = 74;
    pub(crate) const REMOVEXATTR: u32 = 75;
}

/// The NFSv4 statuses this client names (RFC 8881 section 15.1, RFC 7862, RFC 8276).
const STATUS_NAMES: &[(u32, &str)] = &[
    (0, "OK"),
    (1, "NFS4ERR_PERM"),
    (2, "NFS4ERR_NOENT"),
    (5, "NFS4ERR_IO"),
    (6, "NFS4ERR_NXIO"),
    (13, "NFS4ERR_ACCESS"),
    (17, "NFS4ERR_EXIST"),
    (18, "NFS4ERR_XDEV"),
    (20, "NFS4ERR_NOTDIR"),
    (21, "NFS4ERR_ISDIR"),
    (22, "NFS4ERR_INVAL"),
    (27, "NFS4ERR_FBIG"),
    (28, "NFS4ERR_NOSPC"),
    (30, "NFS4ERR_ROFS"),
    (31, "NFS4ERR_MLINK"),
    (63, "NFS4ERR_NAMETOOLONG"),
    (66, "NFS4ERR_NOTEMPTY"),
    (69, "NFS4ERR_DQUOT"),
    (70, "NFS4ERR_STALE"),
    (10001, "NFS4ERR_BADHANDLE"),
    (10003, "NFS4ERR_BAD_COOKIE"),
    (10004, "NFS4ERR_NOTSUPP"),
    (10005, "NFS4ERR_TOOSMALL"),
    (10006, "NFS4ERR_SERVERFAULT"),
    (10007, "NFS4ERR_BADTYPE"),
    (10008, "NFS4ERR_DELAY"),
    (10011, "NFS4ERR_EXPIRED"),
    (10012, "NFS4ERR_LOCKED"),
    (10013, "NFS4ERR_GRACE"),
    (10015, "NFS4ERR_SHARE_DENIED"),
    (10018, "NFS4ERR_RESOURCE"),
    (10020, "NFS4ERR_NOFILEHANDLE"),
    (10021, "NFS4ERR_MINOR_VERS_MISMATCH"),
    (10023, "NFS4ERR_STALE_STATEID"),
    (10024, "NFS4ERR_OLD_STATEID"),
    (10025, "NFS4ERR_BAD_STATEID"),
    (10029, "NFS4ERR_SYMLINK"),
    (10032, "NFS4ERR_ATTRNOTSUPP"),
    (10033, "NFS4ERR_NO_GRACE"),
    (10034, "NFS4ERR_RECLAIM_BAD"),
    (10035, "NFS4ERR_RECLAIM_CONFLICT"),
    (10036, "NFS4ERR_BADXDR"),
    (10038, "NFS4ERR_OPENMODE"),
    (10040, "NFS4ERR_BADCHAR"),
    (10041, "NFS4ERR_BADNAME"),
    (10044, "NFS4ERR_OP_ILLEGAL"),
    (10052, "NFS4ERR_BADSESSION"),
    (10053, "NFS4ERR_BADSLOT"),
    (10054, "NFS4ERR_COMPLETE_ALREADY"),
    (10063, "NFS4ERR_SEQ_MISORDERED"),
    (10065, "NFS4ERR_REQ_TOO_BIG"),
    (10066, "NFS4ERR_REP_TOO_BIG"),
    (10070, "NFS4ERR_TOO_MANY_OPS"),
    (10071, "NFS4ERR_OP_NOT_IN_SESSION"),
    (10078, "NFS4ERR_DEADSESSION"),
    (10083, "NFS4ERR_WRONG_TYPE"),
    (10095, "NFS4ERR_NOXATTR"),
    (10096, "NFS4ERR_XATTR2BIG"),
];

/// The name of an NFSv4 status (`NFS4ERR_...`), or `NFS4ERR_<number>` for one not listed.
pub fn status_name(s: u32) -> String {
    STATUS_NAMES
        .iter()
        .find(|(n, _)| *n == s)
        .map_or_else(|| format!("NFS4ERR_{s}"), |(_, name)| (*name).to_string())
}

fn stateid(e: &mut Enc, s: &StateId) {
    e.u32(s.seqid).fixed(&s.other);
}

/// Encodes one operation.
pub(super) fn encode(e: &mut Enc, op: &Op) {
    match op {
        Op::PutRootFh => {
            e.u32(num::PUTROOTFH);
        }
        Op::PutFh(fh) => {
            e.u32(num::PUTFH).opaque(fh);
        }
        Op::Lookup(name) => {
            e.u32(num::LOOKUP).opaque(name.as_bytes());
        }
        Op::GetFh => {
            e.u32(num::GETFH);
        }
        Op::GetAttr => {
            e.u32(num::GETATTR);
            super::ops_ns::encode_getattr_bitmap(e);
        }
        Op::Open {
            claim,
            create,
            clientid,
            access,
            deny,
        } => {
            e.u32(num::OPEN)
                .u32(0) // seqid (ignored in 4.1)
                .u32(*access)
                .u32(*deny)
                .u64(*clientid)
                .opaque(format!("strata-nfs42-{}", std::process::id()).as_bytes());
            if *create {
                // OPEN4_CREATE, UNCHECKED4, attributes: mode (33: word 1, bit 1) 0644.
                let mut vals = Enc::default();
                vals.u32(0o644);
                e.u32(1).u32(0).u32(2).u32(0).u32(1 << 1).opaque(&vals.0);
            } else {
                e.u32(0);
            }
            match claim {
                Claim::Null(name) => {
                    e.u32(0).opaque(name.as_bytes());
                }
                // CLAIM_PREVIOUS, OPEN_DELEGATE_NONE.
                Claim::Previous => {
                    e.u32(1).u32(0);
                }
            }
        }
        Op::SetSize(s, size) => {
            // The size is attribute 4: word 0, bit 4.
            e.u32(num::SETATTR);
            stateid(e, s);
            let mut vals = Enc::default();
            vals.u64(*size);
            e.u32(1).u32(1 << 4).opaque(&vals.0);
        }
        Op::SaveFh => {
            e.u32(num::SAVEFH);
        }
        Op::Rename(from, to) => {
            e.u32(num::RENAME)
                .opaque(from.as_bytes())
                .opaque(to.as_bytes());
        }
        Op::Close(s) => {
            e.u32(num::CLOSE).u32(0);
            stateid(e, s);
        }
        Op::Write(s, off, data, stable) => {
            e.u32(num::WRITE);
            stateid(e, s);
            e.u64(*off).u32(if *stable { 2 } else { 0 }).opaque(data);
        }
        Op::Commit => {
            e.u32(num::COMMIT).u64(0).u32(0);
        }
        Op::Read(s, off, count) => {
            e.u32(num::READ);
            stateid(e, s);
            e.u64(*off).u32(*count);
        }
        Op::Allocate(s, off, len) | Op::Deallocate(s, off, len) => {
            let n = if matches!(op, Op::Allocate(..)) {
                num::ALLOCATE
            } else {
                num::DEALLOCATE
            };
            e.u32(n);
            stateid(e, s);
            e.u64(*off).u64(*len);
        }
        Op::Seek(s, off, hole) => {
            e.u32(num::SEEK);
            stateid(e, s);
            e.u64(*off).u32(u32::from(*hole));
        }
        Op::GetXattr(name) => {
            e.u32(num::GETXATTR).opaque(name.as_bytes());
        }
        Op::SetXattr(name, value, option) => {
            e.u32(num::SETXATTR)
                .u32(*option)
                .opaque(name.as_bytes())
                .opaque(value);
        }
        Op::ListXattrs(cookie, maxcount) => {
            e.u32(num::LISTXATTRS).u64(*cookie).u32(*maxcount);
        }
        Op::RemoveXattr(name) => {
            e.u32(num::REMOVEXATTR).opaque(name.as_bytes());
        }
        Op::Create { kind, name, mode } => encode_create(e, kind, name, *mode),
        Op::Remove(name) => {
            e.u32(num::REMOVE).opaque(name.as_bytes());
        }
        Op::ReadLink => {
            e.u32(num::READLINK);
        }
    }
}

fn read_stateid(d: &mut Dec<'_>) -> DecResult<StateId> {
    let seqid = d.u32()?;
    let mut other = [0u8; 12];
    other.copy_from_slice(d.fixed(12)?);
    Ok(StateId { seqid, other })
}

/// `change_info4`.
pub(super) fn skip_change_info(d: &mut Dec<'_>) -> DecResult<()> {
    d.bool()?;
    d.u64()?;
    d.u64()?;
    Ok(())
}

pub(super) fn read_bitmap(d: &mut Dec<'_>) -> DecResult<Vec<u32>> {
    let n = d.count(8)?;
    (0..n).map(|_| d.u32()).collect()
}

/// Decodes the result (after its status, which was NFS4_OK) of an operation.
pub(super) fn decode(d: &mut Dec<'_>, op: &Op) -> DecResult<Answer> {
    Ok(match op {
        Op::PutRootFh | Op::PutFh(_) | Op::Lookup(_) | Op::SaveFh => Answer::Done,
        Op::SetSize(..) => {
            read_bitmap(d)?; // attrsset
            Answer::Done
        }
        Op::Rename(..) => {
            skip_change_info(d)?;
            skip_change_info(d)?;
            Answer::Done
        }
        Op::Allocate(..) | Op::Deallocate(..) => Answer::Done,
        Op::GetFh => Answer::Fh(d.opaque(128)?.to_vec()),
        Op::GetAttr => Answer::Attrs(decode_attrs(d)?),
        Op::Open { .. } => {
            let s = read_stateid(d)?;
            skip_change_info(d)?;
            d.u32()?; // rflags
            read_bitmap(d)?;
            match d.u32()? {
                0 => {}
                3 => {
                    // OPEN_DELEGATE_NONE_EXT: why, and for two reasons a flag.
                    if matches!(d.u32()?, 1 | 2) {
                        d.bool()?;
                    }
                }
                t => return Err(format!("a delegation of type {t} was not asked for")),
            }
            Answer::Opened(s)
        }
        Op::Close(_) => {
            read_stateid(d)?;
            Answer::Done
        }
        Op::Write(..) => {
            let count = d.u32()?;
            let committed = d.u32()?;
            d.fixed(8)?;
            Answer::Written(count, committed)
        }
        Op::Commit => {
            d.fixed(8)?;
            Answer::Done
        }
        Op::Read(..) => {
            let eof = d.bool()?;
            Answer::Data(d.opaque(4 << 20)?.to_vec(), eof)
        }
        Op::Seek(..) => {
            let eof = d.bool()?;
            Answer::Sought(eof, d.u64()?)
        }
        Op::GetXattr(_) => Answer::Value(d.opaque(1 << 20)?.to_vec()),
        Op::SetXattr(..) | Op::RemoveXattr(_) | Op::Remove(_) => {
            skip_change_info(d)?;
            Answer::Done
        }
        Op::Create { .. } => {
            skip_change_info(d)?;
            Answer::Created(read_bitmap(d)?)
        }
        Op::ReadLink => Answer::Link(d.opaque(4096)?.to_vec()),
        Op::ListXattrs(..) => {
            let cookie = d.u64()?;
            let n = d.count(65_536)?;
            let mut names = Vec::new();
            for _ in 0..n {
                names.push(String::from_utf8_lossy(d.opaque(4096)?).into_owned());
            }
            Answer::Names(names, cookie, d.bool()?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(op: &Op) -> Vec<u8> {
        let mut e = Enc::default();
        encode(&mut e, op);
        e.0
    }

    #[test]
    fn arguments_have_their_rfc_layout() {
        let s = StateId {
            seqid: 1,
            other: [7; 12],
        };
        // SEEK: op, stateid (4 + 12), offset, what.
        let b = encoded(&Op::Seek(s, 4096, true));
        assert_eq!(b.len(), 4 + 16 + 8 + 4);
        assert_eq!(&b[..4], &69u32.to_be_bytes());
        assert_eq!(&b[b.len() - 4..], &1u32.to_be_bytes());
        let b = encoded(&Op::Deallocate(s, 1, 2));
        assert_eq!(b.len(), 4 + 16 + 16);
        assert_eq!(&b[..4], &62u32.to_be_bytes());
    }

    fn words(b: &[u8]) -> Vec<u32> {
        b.chunks(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    #[test]
    fn share_reservations_reclaims_setattr_and_rename_have_their_rfc_layout() {
        let owner = format!("strata-nfs42-{}", std::process::id());
        let mut head = vec![18, 0, 3, 3, 0, 9, owner.len() as u32];
        head.extend(words(&{
            let mut o = owner.clone().into_bytes();
            o.resize(o.len().div_ceil(4) * 4, 0);
            o
        }));
        // OPEN: seqid 0, ACCESS_BOTH, DENY_BOTH, clientid 9 (a hyper), the owner; OPEN4_CREATE
        // UNCHECKED4 with the mode 0644; CLAIM_NULL and the name.
        let w = words(&encoded(&Op::Open {
            claim: Claim::Null("f".into()),
            create: true,
            clientid: 9,
            access: 3,
            deny: 3,
        }));
        let mut want = head.clone();
        want.extend([
            1,
            0,
            2,
            0,
            1 << 1,
            4,
            0o644,
            0,
            1,
            u32::from_be_bytes(*b"f\0\0\0"),
        ]);
        assert_eq!(w, want);
        // A reclaim: OPEN4_NOCREATE, CLAIM_PREVIOUS (1) with OPEN_DELEGATE_NONE (0).
        let w = words(&encoded(&Op::Open {
            claim: Claim::Previous,
            create: false,
            clientid: 9,
            access: 3,
            deny: 3,
        }));
        let mut want = head;
        want.extend([0, 1, 0]);
        assert_eq!(w, want);
        // SETATTR (34): the stateid, then fattr4 {bitmap {1 << 4}: the size; 8 bytes}.
        let s = StateId {
            seqid: 2,
            other: [0x11; 12],
        };
        let w = words(&encoded(&Op::SetSize(s, 1 << 30)));
        assert_eq!(
            w,
            [
                34,
                2,
                0x1111_1111,
                0x1111_1111,
                0x1111_1111,
                1,
                1 << 4,
                8,
                0,
                1 << 30
            ]
        );
        // SAVEFH (32); RENAME (29) of two names.
        assert_eq!(words(&encoded(&Op::SaveFh)), [32]);
        assert_eq!(
            words(&encoded(&Op::Rename("x~".into(), "x".into()))),
            [
                29,
                2,
                u32::from_be_bytes(*b"x~\0\0"),
                1,
                u32::from_be_bytes(*b"x\0\0\0")
            ]
        );
        // Their results: SETATTR's attrsset bitmap; RENAME's two change_info4.
        let mut e = Enc::default();
        e.u32(1).u32(1 << 4);
        let set = Op::SetSize(s, 0);
        assert_eq!(decode(&mut Dec::new(&e.0), &set), Ok(Answer::Done));
        assert!(decode(&mut Dec::new(&e.0[..4]), &set).is_err());
        let mut e = Enc::default();
        e.bool(true).u64(1).u64(2).bool(false).u64(3).u64(4);
        let rename = Op::Rename("a".into(), "b".into());
        assert_eq!(decode(&mut Dec::new(&e.0), &rename), Ok(Answer::Done));
        assert!(decode(&mut Dec::new(&e.0[..20]), &rename).is_err());
        assert_eq!(status_name(10033), "NFS4ERR_NO_GRACE");
    }

    #[test]
    fn results_that_do_not_decode_are_errors() {
        let open = Op::Open {
            claim: Claim::Null("x".into()),
            create: false,
            clientid: 1,
            access: 3,
            deny: 0,
        };
        // A delegation nobody asked for, then a truncated stateid.
        let mut e = Enc::default();
        e.u32(1)
            .fixed(&[0; 12])
            .bool(false)
            .u64(0)
            .u64(0)
            .u32(0)
            .u32(0)
            .u32(1);
        assert!(decode(&mut Dec::new(&e.0), &open).is_err());
        assert!(decode(&mut Dec::new(&[0, 0, 0, 1, 0]), &open).is_err());
        // A SEEK answer with a bad boolean, a READ longer than its bytes.
        assert!(decode(
            &mut Dec::new(&[0, 0, 0, 7, 0, 0, 0, 0]),
            &Op::Seek(StateId::default(), 0, false)
        )
        .is_err());
        assert!(decode(
            &mut Dec::new(&[0, 0, 0, 0, 0, 0, 1, 0]),
            &Op::Read(StateId::default(), 0, 1)
        )
        .is_err());
        assert_eq!(status_name(6), "NFS4ERR_NXIO");
        assert_eq!(status_name(99_999), "NFS4ERR_99999");
    }

    #[test]
    fn status_numbers_are_the_rfcs() {
        for (n, name) in [
            (10004, "NFS4ERR_NOTSUPP"),
            (10008, "NFS4ERR_DELAY"),
            (10012, "NFS4ERR_LOCKED"),
            (10033, "NFS4ERR_NO_GRACE"),
            (10034, "NFS4ERR_RECLAIM_BAD"),
            (10035, "NFS4ERR_RECLAIM_CONFLICT"),
            (10036, "NFS4ERR_BADXDR"),
            (10054, "NFS4ERR_COMPLETE_ALREADY"),
            (10063, "NFS4ERR_SEQ_MISORDERED"),
            (10071, "NFS4ERR_OP_NOT_IN_SESSION"),
            (10095, "NFS4ERR_NOXATTR"),
            (10096, "NFS4ERR_XATTR2BIG"),
        ] {
            assert_eq!(status_name(n), name);
        }
        assert!(
            STATUS_NAMES.windows(2).all(|w| w[0].0 < w[1].0),
            "sorted, no number twice"
        );
    }

    /// Every op's decoder on every prefix of a valid answer, and on noise: errors or
    /// answers, never a panic.
    #[test]
    fn truncated_and_random_answers_never_panic() {
        let s = StateId::default();
        let ops = [
            Op::GetFh,
            Op::GetAttr,
            Op::Open {
                claim: Claim::Null("x".into()),
                create: true,
                clientid: 1,
                access: 3,
                deny: 3,
            },
            Op::Open {
                claim: Claim::Previous,
                create: false,
                clientid: 1,
                access: 3,
                deny: 3,
            },
            Op::SetSize(s, 1 << 30),
            Op::SaveFh,
            Op::Rename("a~".into(), "a".into()),
            Op::Close(s),
            Op::Write(s, 0, vec![1], true),
            Op::Commit,
            Op::Read(s, 0, 8),
            Op::Seek(s, 0, true),
            Op::GetXattr("user.a".into()),
            Op::SetXattr("user.a".into(), vec![1], 0),
            Op::ListXattrs(0, 64 << 10),
            Op::RemoveXattr("user.a".into()),
            Op::Create {
                kind: CreateKind::Fifo,
                name: "p".into(),
                mode: 0o644,
            },
            Op::Remove("p".into()),
            Op::ReadLink,
        ];
        // A long enough answer of small words (valid for every op: counts and lengths of 1).
        let mut valid = Enc::default();
        for _ in 0..64 {
            valid.u32(1);
        }
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut noise = vec![0u8; 256];
        for op in &ops {
            for n in 0..valid.0.len() {
                let _ = decode(&mut Dec::new(&valid.0[..n]), op);
            }
            for _ in 0..200 {
                for b in noise.iter_mut() {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *b = x as u8;
                }
                let n = (x % 256) as usize;
                let _ = decode(&mut Dec::new(&noise[..n]), op);
            }
        }
    }
}
