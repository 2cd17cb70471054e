//! The journal on the crash simulator: committed records survive a machine crash, a torn tail
//! is cut, retired segments go, and each fsync site is needed (leaving one out loses a
//! committed record or breaks the next start).

use super::*;
use crate::types::Timestamp;
use crate::volume::{CrashMode, SimFs};
use std::borrow::Cow;

const FSID: u64 = 0x5eed;
/// The smallest buffer: 1 MiB segments.
const BUFFER: u64 = 8 << 20;

fn dir() -> PathBuf {
    PathBuf::from("/data/file-journal")
}

fn open(sim: &SimFs, skip: Option<JournalSync>) -> Result<(Journal, Vec<(u64, Record<'static>)>)> {
    let j = Journal::open(Arc::new(sim.clone()), &dir(), FSID, BUFFER, 0, skip)?;
    let mut seen = Vec::new();
    j.replay(&mut |lsn, r| {
        seen.push((lsn, r));
        Ok(())
    })?;
    Ok((j, seen))
}

fn rec(ino: u64, len: usize) -> Record<'static> {
    Record::Write {
        ino,
        offset: 4096 * ino,
        mtime: Timestamp { secs: 1, nsecs: 2 },
        data: Cow::Owned(vec![ino as u8; len]),
    }
}

fn inos(seen: &[(u64, Record<'static>)]) -> Vec<u64> {
    seen.iter()
        .map(|(_, r)| match r {
            Record::Write { ino, .. } | Record::Upload { ino, .. } => *ino,
            Record::Namespace { .. } => 0,
        })
        .collect()
}

/// Commits records 1..=3 and leaves 4 uncommitted; crash; 1..=3 come back in order.
fn commit_scenario(skip: Option<JournalSync>) -> Result<Vec<u64>> {
    let sim = SimFs::new();
    let (j, seen) = open(&sim, skip)?;
    assert!(seen.is_empty());
    let mut last = 0;
    for ino in 1..=3 {
        last = j.append(&rec(ino, 4096), 0)?;
    }
    j.commit(last)?;
    j.append(&rec(4, 4096), 0)?;
    sim.crash(CrashMode::DropAll);
    let (_j, seen) = open(&sim, skip)?;
    Ok(inos(&seen))
}

/// Fills more than a segment without committing, commits the last record of the first
/// segment (covered by the seal), then one record of the second segment; crash.
fn seal_scenario(skip: Option<JournalSync>) -> Result<Vec<u64>> {
    let sim = SimFs::new();
    let (j, _) = open(&sim, skip)?;
    let mut lsns = Vec::new();
    for ino in 1..=5 {
        lsns.push(j.append(&rec(ino, 300 << 10), 0)?);
    }
    // Records 1..3 fill the first 1 MiB segment; 4 started the second.
    j.commit(lsns[2])?;
    j.commit(lsns[3])?;
    sim.crash(CrashMode::DropAll);
    let (_j, seen) = open(&sim, skip)?;
    Ok(inos(&seen))
}

/// A torn record at the end of a segment, cut at open; then more committed in a new segment
/// and a second crash: the next start must read everything committed.
fn cut_scenario(skip: Option<JournalSync>) -> Result<Vec<u64>> {
    let sim = SimFs::new();
    let (j, _) = open(&sim, skip)?;
    let l = j.append(&rec(1, 100), 0)?;
    j.commit(l)?;
    let seg = dir().join(seg_name(1));
    let mut bytes = sim.read_file(&seg).map_err(|e| io_err("read", e))?;
    // Right after the committed record (not after the zeros the journal writes ahead).
    bytes.truncate(SEGMENT_HEADER_LEN + rec(1, 100).encode(l).len());
    let torn = rec(2, 100).encode(l + 1);
    bytes.extend_from_slice(&torn[..torn.len() / 2]);
    sim.overwrite_durably(&seg, &bytes)
        .map_err(|e| io_err("tear", e))?;
    sim.crash(CrashMode::DropAll);
    let (j, seen) = open(&sim, skip)?;
    if inos(&seen) != vec![1] {
        return Ok(inos(&seen)); // the caller notices
    }
    let l = j.append(&rec(3, 100), 0)?;
    j.commit(l)?;
    sim.crash(CrashMode::DropAll);
    let (_j, seen) = open(&sim, skip)?;
    Ok(inos(&seen))
}

/// A process crash (the page cache survives) leaves uncommitted records in the last segment;
/// the next start keeps them and writes a new segment, where a record is committed; then the
/// machine crashes: the start after must still read everything committed.
fn process_then_machine_crash_scenario(skip: Option<JournalSync>) -> Result<Vec<u64>> {
    let sim = SimFs::new();
    let (j, _) = open(&sim, skip)?;
    j.append(&rec(1, 100), 0)?;
    j.append(&rec(2, 100), 0)?;
    drop(j);
    sim.restart_process();
    let (j, seen) = open(&sim, skip)?;
    if inos(&seen) != vec![1, 2] {
        return Ok(inos(&seen)); // the caller notices
    }
    let l = j.append(&rec(3, 100), 0)?;
    j.commit(l)?;
    sim.crash(CrashMode::DropAll);
    let (_j, seen) = open(&sim, skip)?;
    Ok(inos(&seen))
}

#[test]
fn committed_records_survive_a_machine_crash() {
    let got = commit_scenario(None).expect("scenario");
    assert!(
        got == vec![1, 2, 3] || got == vec![1, 2, 3, 4],
        "got {got:?}"
    );
    assert_eq!(seal_scenario(None).expect("scenario")[..4], [1, 2, 3, 4]);
    assert_eq!(cut_scenario(None).expect("scenario"), vec![1, 3]);
    assert_eq!(
        process_then_machine_crash_scenario(None).expect("scenario"),
        vec![1, 2, 3],
        "records replayed at the start are made durable by it"
    );
}

#[test]
fn every_fsync_site_is_needed() {
    for site in JournalSync::ALL {
        let skip = Some(site);
        let outcomes = [
            commit_scenario(skip).map(|g| g.len() >= 3 && g[..3] == [1, 2, 3]),
            seal_scenario(skip).map(|g| g.len() >= 4 && g[..4] == [1, 2, 3, 4]),
            cut_scenario(skip).map(|g| g == vec![1, 3]),
            process_then_machine_crash_scenario(skip).map(|g| g == vec![1, 2, 3]),
        ];
        let noticed = outcomes.iter().any(|o| !matches!(o, Ok(true)));
        assert!(noticed, "leaving out {site:?} lost nothing: is it needed?");
    }
}

#[test]
fn retired_segments_go_and_lsns_go_on() {
    let sim = SimFs::new();
    let (j, _) = open(&sim, None).expect("open");
    let mut last = 0;
    for ino in 1..=8 {
        last = j.append(&rec(ino, 300 << 10), 0).expect("append");
    }
    j.commit(last).expect("commit");
    let before = j.backlog();
    assert!(before > 2 << 20, "{before}");
    // Everything below record 5 applied: the segments holding only 1..4 go.
    j.retire(5).expect("retire");
    assert!(j.backlog() < before);
    let names = sim.list(&dir()).expect("list");
    assert!(!names.contains(&seg_name(1)), "{names:?}");
    // All applied: the current segment is sealed and goes too.
    j.retire(last + 1).expect("retire");
    assert_eq!(sim.list(&dir()).expect("list").len(), 1);
    drop(j);
    sim.crash(CrashMode::DropAll);
    // Removals need no directory fsync: retired segments may come back, their records all
    // applied (the caller skips them); the LSNs go on after them.
    let (j, seen) = open(&sim, None).expect("reopen");
    assert!(seen.iter().all(|(l, _)| *l <= last), "{:?}", inos(&seen));
    assert_eq!(j.next_lsn(), last + 1, "LSNs never go back");
    // Also when the newest segment lost its header (created just before a crash).
    drop(j);
    let newest = dir().join(seg_name(last + 1));
    sim.overwrite_durably(&newest, b"")
        .expect("lose the header");
    let (j, _) = open(&sim, None).expect("reopen");
    assert_eq!(j.next_lsn(), last + 1, "LSNs never go back");
    // Nor below what the namespace recorded as applied.
    drop(j);
    let j = Journal::open(
        Arc::new(sim.clone()),
        &dir(),
        FSID,
        BUFFER,
        last + 100,
        None,
    )
    .expect("reopen");
    assert_eq!(j.next_lsn(), last + 100);
}

#[test]
fn damage_before_the_tail_refuses_the_start() {
    let sim = SimFs::new();
    let (j, _) = open(&sim, None).expect("open");
    let mut last = 0;
    for ino in 1..=5 {
        last = j.append(&rec(ino, 300 << 10), 0).expect("append");
    }
    j.commit(last).expect("commit");
    drop(j);
    let seg = dir().join(seg_name(1));
    let mut bytes = sim.read_file(&seg).expect("read");
    bytes[SEGMENT_HEADER_LEN + 40] ^= 1;
    sim.overwrite_durably(&seg, &bytes).expect("damage");
    let err = open(&sim, None).expect_err("a damaged committed record");
    assert!(err.to_string().contains("damaged"), "{err}");
}

#[test]
fn reservations_bound_the_backlog() {
    let sim = SimFs::new();
    let (j, _) = open(&sim, None).expect("open");
    let hard = 1 << 20;
    assert!(
        j.reserve(hard, hard).is_some(),
        "an empty journal takes any write"
    );
    assert!(j.reserve(1, hard).is_none(), "full");
    j.unreserve(hard);
    let l = j.append(&rec(1, 1000), 0).expect("append");
    j.commit(l).expect("commit");
    assert!(j.reserve(hard, hard).is_none(), "kept bytes count");
    j.retire(l + 1).expect("retire");
    assert!(j.reserve(hard - 1024, hard).is_some());
}

#[test]
fn what_is_not_applied_dates_from_its_oldest_segment_until_retired() {
    let sim = SimFs::new();
    let (j, _) = open(&sim, None).expect("open");
    assert_eq!(j.not_applied(), None, "a fresh journal holds nothing");
    let before = SystemTime::now();
    let first = j.append(&rec(1, 4096), 0).expect("append");
    let after = SystemTime::now();
    let (bytes, since) = j.not_applied().expect("a record not applied");
    assert!(
        bytes > 4096 && before <= since && since <= after,
        "{bytes} {since:?}"
    );
    // More records, a seal among them: the date stays the oldest record's.
    let mut last = first;
    for ino in 2..=6 {
        last = j.append(&rec(ino, 300 << 10), 0).expect("append");
    }
    j.commit(last).expect("commit");
    assert_eq!(j.not_applied().map(|n| n.1), Some(since));
    // Everything applied: the segments retire and nothing is waiting.
    j.retire(last + 1).expect("retire");
    assert_eq!(j.not_applied(), None);
}

#[test]
fn after_a_restart_records_not_applied_date_from_their_segment_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let open_real = || {
        Journal::open(
            Arc::new(crate::volume::StdFs),
            dir.path(),
            FSID,
            BUFFER,
            0,
            None,
        )
        .expect("open")
    };
    let j = open_real();
    let lsn = j.append(&rec(1, 4096), 0).expect("append");
    j.commit(lsn).expect("commit");
    let written = SystemTime::now();
    drop(j);
    let j = open_real();
    let (_, since) = j.not_applied().expect("the record is still not applied");
    assert!(
        since <= written,
        "dated {since:?}, after it was written ({written:?})"
    );
}
