//! The write-ahead log's writeback started when a COMMIT is expected (`expected_commit.rs`):
//! when the volume expects one, and what it starts then.

use super::expected_commit::CommitPattern;
use super::format::{sco_name, CLUSTER_SIZE_U64};
use super::layout;
use super::tests::{dir, fresh};
use super::VolumeOptions;

/// For each window size, counts that many writes then a COMMIT; returns what each write
/// answered (whether a COMMIT was expected after it).
fn windows(p: &CommitPattern, sizes: &[u64]) -> Vec<Vec<bool>> {
    sizes
        .iter()
        .map(|n| {
            let expected = (0..*n).map(|_| p.wrote()).collect();
            p.committed();
            expected
        })
        .collect()
}

#[test]
fn a_commit_is_expected_at_the_last_write_of_a_window_as_long_as_the_last_two() {
    let p = CommitPattern::default();
    let got = windows(&p, &[1, 1, 1, 1]);
    assert_eq!(got, [vec![false], vec![false], vec![true], vec![true]]);
    let p = CommitPattern::default();
    let got = windows(&p, &[3, 3, 3]);
    assert_eq!(
        got,
        [
            vec![false, false, false],
            vec![false, false, false],
            vec![false, false, true]
        ]
    );
    // Windows of changing lengths: no guess.
    let p = CommitPattern::default();
    let got = windows(&p, &[2, 3, 2, 3]);
    assert!(got.iter().flatten().all(|e| !e), "{got:?}");
    // A COMMIT with nothing written since the last one leaves the pattern as it was.
    let p = CommitPattern::default();
    windows(&p, &[1, 1]);
    p.committed();
    assert!(p.wrote());
}

#[test]
fn an_expected_commit_starts_the_write_ahead_logs_writeback_at_the_write_before_it() {
    let (fs, _lfs, vol) = fresh(VolumeOptions::default());
    let wal = layout::wal_path(&dir());
    let sco = layout::sco_dir(&dir()).join(sco_name(1));
    let started = || fs.writebacks(&wal).expect("the log");
    for i in 0..2 {
        vol.write(i * CLUSTER_SIZE_U64, &[1u8; 4096], false)
            .expect("write");
        assert_eq!(started(), 0, "window {i}: no pattern yet");
        vol.commit().expect("commit");
    }
    vol.write(9 * CLUSTER_SIZE_U64, &[7u8; 4096], false)
        .expect("write");
    assert_eq!(
        started(),
        1,
        "a third window of one write: its COMMIT is expected"
    );
    assert_eq!(vol.stats().expected_commits, 1);
    assert_eq!(fs.writebacks(&sco).expect("the SCO"), 0, "only the log's");
    // The client does not commit this time: the next write is not one the pattern expects a
    // COMMIT after.
    vol.write(10 * CLUSTER_SIZE_U64, &[7u8; 4096], false)
        .expect("write");
    assert_eq!(started(), 1);
    vol.commit().expect("commit");
    // A window larger than the log takes is made durable in place by its COMMIT: the log's
    // writeback would be of no use to it.
    let big = vec![2u8; 1 << 20];
    for _ in 0..3 {
        vol.write(0, &big, false).expect("write");
        vol.commit().expect("commit");
    }
    assert_eq!(started(), 1);
    assert_eq!(vol.stats().expected_commits, 1);
}

#[test]
fn only_client_commits_end_a_window() {
    let (fs, _lfs, vol) = fresh(VolumeOptions::default());
    let wal = layout::wal_path(&dir());
    let started = || fs.writebacks(&wal).expect("the log");
    // Windows of two writes; the engine syncs (an upload pass) between the two each time.
    for w in 0..3u64 {
        vol.write(w * CLUSTER_SIZE_U64, &[1u8; 4096], false)
            .expect("write");
        assert_eq!(started(), 0, "window {w}: not after one write of two");
        vol.sync().expect("the engine's sync");
        vol.write((w + 10) * CLUSTER_SIZE_U64, &[2u8; 4096], false)
            .expect("write");
        assert_eq!(started(), u64::from(w == 2), "window {w}");
        vol.commit().expect("commit");
    }
}
