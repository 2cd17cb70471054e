//! Namespace transactions made durable by the file journal instead of a redb commit.
//!
//! 1. Inside its write transaction (the only writer), an operation reads back the rows it
//!    changed as they now are (after-images), appends them to the file journal as one
//!    namespace record (LSN `L`), and sets `meta.journal_lsn = L` in the same transaction.
//! 2. It commits without an fsync and waits for the journal's commit of `L`: durable when it
//!    returns, with one fdatasync of the journal shared by every concurrent waiter (the file
//!    data's COMMITs included). redb keeps the pages in its write buffer.
//! 3. Any later durable redb commit (group commit, `durable.rs`; the uploader makes one every
//!    round when such records wait) persists it; the journal keeps the record's segment until
//!    then ([`Namespace::first_unsynced_lsn`]).
//! 4. At open, before anything else reads the namespace, the namespace records above the
//!    durable `meta.journal_lsn` are applied in LSN order (their rows put as they are), then
//!    made durable. LSN order is commit order: records are appended inside the transaction.
//!
//! After-images are exact because every transaction that commits without being journaled is
//! durable before it returns (a prefix of the commits survives a crash): a row replayed here
//! was last changed by this record's transaction or by one replayed before it.
//!
//! Only file and volume creates are journaled so far (the small-file path); the rest commit
//! durably. Row encoding: `FORMATS.md`, "Namespace records".

use super::{Namespace, COOKIES, DIRENTS, INODES, META};
use crate::error::{Error, Result};
use crate::journal::{Journal, Record};
use crate::types::Ino;
use crate::volume::{le_u32, le_u64};
use redb::{ReadableTable, WriteTransaction};
use std::borrow::Cow;
use std::sync::Arc;

/// The `meta` key of the last journaled namespace record a transaction carried.
pub(super) const META_JOURNAL_LSN: &str = "journal_lsn";

const ROW_INODE: u8 = 1;
const ROW_DIRENT: u8 = 2;
const ROW_COOKIE: u8 = 3;
const ROW_META: u8 = 4;

/// One row as a transaction left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Row {
    Inode {
        ino: Ino,
        record: Vec<u8>,
    },
    Dirent {
        dir: Ino,
        name: Vec<u8>,
        child: Ino,
        cookie: u64,
    },
    Cookie {
        dir: Ino,
        cookie: u64,
        name: Vec<u8>,
    },
    Meta {
        key: String,
        value: u64,
    },
}

/// The keys a create changed, whose after-images its record carries.
pub(super) struct CreateKeys<'a> {
    pub dir: Ino,
    pub child: Ino,
    pub name: &'a [u8],
}

fn put_u16_bytes(b: &mut Vec<u8>, v: &[u8]) -> Result<()> {
    let n = u16::try_from(v.len()).map_err(|_| Error::Io("namespace row too long".into()))?;
    b.extend_from_slice(&n.to_le_bytes());
    b.extend_from_slice(v);
    Ok(())
}

/// Encodes rows (see `FORMATS.md`).
pub(super) fn encode(rows: &[Row]) -> Result<Vec<u8>> {
    let mut b = Vec::new();
    b.extend_from_slice(&(rows.len() as u32).to_le_bytes());
    for r in rows {
        match r {
            Row::Inode { ino, record } => {
                b.push(ROW_INODE);
                b.extend_from_slice(&ino.to_le_bytes());
                put_u16_bytes(&mut b, record)?;
            }
            Row::Dirent {
                dir,
                name,
                child,
                cookie,
            } => {
                b.push(ROW_DIRENT);
                b.extend_from_slice(&dir.to_le_bytes());
                put_u16_bytes(&mut b, name)?;
                b.extend_from_slice(&child.to_le_bytes());
                b.extend_from_slice(&cookie.to_le_bytes());
            }
            Row::Cookie { dir, cookie, name } => {
                b.push(ROW_COOKIE);
                b.extend_from_slice(&dir.to_le_bytes());
                b.extend_from_slice(&cookie.to_le_bytes());
                put_u16_bytes(&mut b, name)?;
            }
            Row::Meta { key, value } => {
                b.push(ROW_META);
                put_u16_bytes(&mut b, key.as_bytes())?;
                b.extend_from_slice(&value.to_le_bytes());
            }
        }
    }
    Ok(b)
}

/// A bounds-checked reader of an encoded record.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or_else(|| Error::Io("namespace record cut short".into()))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(le_u64(self.take(8)?, 0))
    }
    fn bytes(&mut self) -> Result<Vec<u8>> {
        let n = self.take(2)?;
        let n = usize::from(u16::from_le_bytes([n[0], n[1]]));
        Ok(self.take(n)?.to_vec())
    }
}

/// Decodes rows; an error for anything that is not exactly an encoding.
pub(super) fn decode(b: &[u8]) -> Result<Vec<Row>> {
    let mut r = Reader { b, at: 0 };
    let count = le_u32(r.take(4)?, 0) as usize;
    let mut rows = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        rows.push(match r.u8()? {
            ROW_INODE => Row::Inode {
                ino: r.u64()?,
                record: r.bytes()?,
            },
            ROW_DIRENT => Row::Dirent {
                dir: r.u64()?,
                name: r.bytes()?,
                child: r.u64()?,
                cookie: r.u64()?,
            },
            ROW_COOKIE => Row::Cookie {
                dir: r.u64()?,
                cookie: r.u64()?,
                name: r.bytes()?,
            },
            ROW_META => Row::Meta {
                key: String::from_utf8(r.bytes()?)
                    .map_err(|_| Error::Io("namespace record: meta key not UTF-8".into()))?,
                value: r.u64()?,
            },
            k => return Err(Error::Io(format!("namespace record: row kind {k} unknown"))),
        });
    }
    if r.at != b.len() {
        return Err(Error::Io("namespace record: bytes after its rows".into()));
    }
    Ok(rows)
}

impl Namespace {
    /// Lets creates be made durable by `journal` (step 1 on) from now on.
    pub(crate) fn attach_journal(&self, journal: Arc<Journal>) {
        let _ = self.journal.set(journal);
    }

    /// The after-images of a create's rows, read inside its transaction.
    pub(super) fn create_rows(txn: &WriteTransaction, k: &CreateKeys<'_>) -> Result<Vec<Row>> {
        let inodes = txn.open_table(INODES)?;
        let mut rows = Vec::with_capacity(5);
        for ino in [k.dir, k.child] {
            let record = inodes
                .get(ino)?
                .map(|v| v.value().to_vec())
                .ok_or_else(|| Error::Io(format!("created inode {ino} not in its transaction")))?;
            rows.push(Row::Inode { ino, record });
        }
        let (child, cookie) = txn
            .open_table(DIRENTS)?
            .get((k.dir, k.name))?
            .map(|v| v.value())
            .ok_or_else(|| Error::Io("created entry not in its transaction".into()))?;
        rows.push(Row::Dirent {
            dir: k.dir,
            name: k.name.to_vec(),
            child,
            cookie,
        });
        rows.push(Row::Cookie {
            dir: k.dir,
            cookie,
            name: k.name.to_vec(),
        });
        let next = txn
            .open_table(META)?
            .get(super::META_NEXT_INO)?
            .map(|v| v.value())
            .ok_or_else(|| Error::Io("meta has no next_ino".into()))?;
        rows.push(Row::Meta {
            key: super::META_NEXT_INO.to_string(),
            value: next,
        });
        Ok(rows)
    }

    /// Commits `txn` whose changed rows are `rows`: through the journal when one is attached
    /// (steps 1 and 2), else durably as any other transaction.
    pub(super) fn commit_journaled(&self, txn: WriteTransaction, rows: &[Row]) -> Result<()> {
        let Some(journal) = self.journal.get() else {
            return self.commit(txn);
        };
        let payload = encode(rows)?;
        // Pinned before the record exists: a retirement running meanwhile keeps it.
        let pin = self.pin_journal(journal.next_lsn());
        let record = Record::Namespace {
            rows: Cow::Borrowed(&payload),
        };
        let lsn = match journal.append(&record, 0) {
            Ok(lsn) => lsn,
            Err(e) => {
                // A failed append is cut off: the journal does not have it.
                self.unpin(pin);
                return Err(e);
            }
        };
        // From here the record may become durable (any commit of the journal covers it):
        // should redb not take the transaction, the namespace stops taking writes, as the
        // next one could reuse its inode number or cookie, which a replay would then give
        // twice ([`Namespace::begin`] refuses until a restart, which replays the record if
        // its segment is still there).
        let doubt = self.in_doubt();
        let committed = (|| {
            fail_after_append()?;
            txn.open_table(META)?.insert(META_JOURNAL_LSN, lsn)?;
            self.commit_quiet(txn)
        })();
        doubt.resolve(&committed);
        match committed {
            Ok(seq) => self.journaled(pin, seq, lsn),
            Err(e) => {
                self.unpin(pin);
                return Err(e);
            }
        }
        journal.commit(lsn)
    }

    /// The lowest LSN the journal may hand out next: above every LSN this namespace recorded,
    /// as a file's applied LSN or as `meta.journal_lsn` (which a durable redb commit may carry
    /// before the journal has made that record durable; a crash then cuts it from the journal).
    pub(crate) fn lsn_floor(&self) -> Result<u64> {
        Ok(self.max_applied_lsn()?.max(self.journal_lsn()?) + 1)
    }

    /// The durable `meta.journal_lsn` (0: none).
    fn journal_lsn(&self) -> Result<u64> {
        use redb::ReadableDatabase;
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta.get(META_JOURNAL_LSN)?.map(|v| v.value()).unwrap_or(0))
    }

    /// Step 4: applies the namespace records above the durable `journal_lsn`, then makes them
    /// durable. Returns how many it applied.
    pub(crate) fn replay_journaled(&self, journal: &Journal) -> Result<u64> {
        let from = self.journal_lsn()?;
        let mut applied = 0u64;
        let mut last = from;
        let txn = self.begin()?;
        journal.replay(&mut |lsn, rec| {
            let Record::Namespace { rows } = rec else {
                return Ok(());
            };
            if lsn <= from {
                return Ok(());
            }
            for row in decode(&rows).map_err(|e| Error::Io(format!("journal LSN {lsn}: {e}")))? {
                apply(&txn, &row)?;
            }
            applied += 1;
            last = lsn;
            Ok(())
        })?;
        if applied > 0 {
            txn.open_table(META)?.insert(META_JOURNAL_LSN, last)?;
            self.commit(txn)?;
            tracing::info!(
                records = applied,
                "namespace changes replayed from the file journal"
            );
        } else {
            txn.abort()?;
        }
        Ok(applied)
    }
}

#[cfg(test)]
thread_local! {
    /// Test knob: the next journaled commit on this thread fails after its append.
    static FAIL_AFTER_APPEND: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Fails once after [`FAIL_AFTER_APPEND`] was set (tests only).
fn fail_after_append() -> Result<()> {
    #[cfg(test)]
    if FAIL_AFTER_APPEND.with(|f| f.replace(false)) {
        return Err(Error::Io("test: redb refused the transaction".into()));
    }
    Ok(())
}

/// Puts one row as its record has it.
fn apply(txn: &WriteTransaction, row: &Row) -> Result<()> {
    match row {
        Row::Inode { ino, record } => {
            // Checked like any record read from disk before it is trusted.
            super::inode::Inode::decode(record)?;
            txn.open_table(INODES)?.insert(*ino, record.as_slice())?;
        }
        Row::Dirent {
            dir,
            name,
            child,
            cookie,
        } => {
            txn.open_table(DIRENTS)?
                .insert((*dir, name.as_slice()), (*child, *cookie))?;
        }
        Row::Cookie { dir, cookie, name } => {
            txn.open_table(COOKIES)?
                .insert((*dir, *cookie), name.as_slice())?;
        }
        Row::Meta { key, value } => {
            txn.open_table(META)?.insert(key.as_str(), *value)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::{NewNode, ROOT};
    use crate::types::{CreateMode, Cred, Handle, Kind};
    use crate::volume::{LocalFs, SimFs};
    use std::path::Path;

    fn file() -> NewNode {
        NewNode {
            kind: Kind::File,
            mode: 0o644,
            cred: Cred::default(),
            target: vec![],
            rdev: crate::types::DeviceId::default(),
        }
    }

    /// A namespace on a real redb file with its journal on `sim` (replayed first, as at a start).
    fn open(db: &Path, sim: &SimFs) -> Namespace {
        let ns = Namespace::open(redb::Database::create(db).expect("db")).expect("namespace");
        let fs: Arc<dyn LocalFs> = Arc::new(sim.clone());
        let journal = Journal::open(
            fs,
            Path::new("/journal"),
            ns.fsid(),
            64 << 20,
            ns.lsn_floor().expect("floor"),
            None,
        )
        .expect("journal");
        ns.replay_journaled(&journal).expect("replay");
        ns.attach_journal(Arc::new(journal));
        ns
    }

    /// redb refuses a create whose record is already in the journal: the namespace takes no
    /// other write until a restart (the next create would get the same inode number, and the
    /// replay would give it to both); the restart replays the record, and every inode is then
    /// named by exactly one entry.
    #[test]
    fn a_create_redb_refuses_after_its_append_stops_writes_until_the_replay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("ns.redb");
        let sim = SimFs::new();
        let ns = open(&db, &sim);
        let root = Handle {
            ino: ROOT,
            generation: ns.fsid(),
        };
        ns.create(root, b"a", file(), CreateMode::Guarded)
            .expect("a");
        FAIL_AFTER_APPEND.with(|f| f.set(true));
        assert!(ns.create(root, b"b", file(), CreateMode::Guarded).is_err());
        for name in [&b"c"[..], b"d"] {
            assert!(
                ns.create(root, name, file(), CreateMode::Guarded).is_err(),
                "a write after the failure must be refused"
            );
        }
        // b's record reaches the disk with any later commit of the journal (a file's COMMIT).
        let journal = ns.journal.get().expect("journal").clone();
        journal
            .commit(journal.next_lsn() - 1)
            .expect("journal commit");
        drop(journal);
        drop(ns);
        sim.restart_process();

        let ns = open(&db, &sim);
        let (rows, _) = ns.readdir(root, 0, 100).expect("readdir");
        let mut inos: Vec<u64> = rows.iter().map(|r| r.ino).collect();
        let names: Vec<&[u8]> = rows.iter().map(|r| r.name.as_slice()).collect();
        assert_eq!(names, vec![&b"a"[..], b"b"], "b is replayed, nothing else");
        inos.sort_unstable();
        inos.dedup();
        assert_eq!(inos.len(), 2, "each inode named once: {names:?}");
        ns.create(root, b"c", file(), CreateMode::Guarded)
            .expect("writes go on after the restart");
    }

    #[test]
    fn rows_round_trip_and_damage_is_refused() {
        let rows = vec![
            Row::Inode {
                ino: 7,
                record: vec![1, 2, 3],
            },
            Row::Dirent {
                dir: 1,
                name: b"a".to_vec(),
                child: 7,
                cookie: 3,
            },
            Row::Cookie {
                dir: 1,
                cookie: 3,
                name: b"a".to_vec(),
            },
            Row::Meta {
                key: "next_ino".into(),
                value: 8,
            },
        ];
        let b = encode(&rows).expect("encode");
        assert_eq!(decode(&b).expect("decode"), rows);
        for cut in 0..b.len() {
            assert!(decode(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = b.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
        let mut bad = b.clone();
        bad[4] = 9;
        assert!(decode(&bad).is_err());
    }
}
