//! Write amplification of regular files (issue 14), counted, not timed: the bytes this process
//! hands to write system calls (`/proc/self/io` `wchar`: the journal, the extent cache, redb,
//! the local backend) for one operation, against the bytes of data it carries. Each test is a
//! process of its own (nextest), and nothing else writes meanwhile: the uploader waits
//! `File_Upload_Delay` (set long here) before it uploads a file or checkpoints the namespace
//! into redb (both amortised over everything written meanwhile, not counted here).

use std::time::Duration;

use strata_engine::*;

mod support;

const DATA: usize = 4096;

/// Bytes this process passed to write(2)-family calls so far.
fn wchar() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").expect("/proc/self/io");
    io.lines()
        .find_map(|l| l.strip_prefix("wchar: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("wchar in /proc/self/io")
}

fn open() -> (tempfile::TempDir, Filesystem) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = EngineConfig::new(dir.path());
    config.file_upload_delay = Duration::from_secs(3600);
    let fs = Filesystem::open(config).expect("open");
    (dir, fs)
}

fn create(fs: &Filesystem, name: &str) -> Handle {
    support::create_in_root(fs, name)
        .expect("create")
        .attr
        .handle
}

/// A 4 KiB write + COMMIT to a regular file costs about what it writes: its journal record and
/// the extent cache, no extent upload and no metadata transaction.
#[test]
fn a_4k_write_and_commit_writes_less_than_5x() {
    let (_d, fs) = open();
    let f = create(&fs, "vm.nvram");
    // Warm: the file's extent is cached, the journal's segment exists.
    fs.write(f, 0, &[1u8; 64 << 10], true).expect("first write");
    for i in 0..8u64 {
        let before = wchar();
        fs.write(f, i * DATA as u64, &[7u8; DATA], false)
            .expect("write");
        fs.commit(f).expect("commit");
        let wrote = wchar() - before;
        eprintln!("4 KiB write + COMMIT: {wrote} bytes written");
        assert!(
            wrote < 5 * DATA as u64,
            "{wrote} bytes written for {DATA} bytes of data"
        );
    }
}

/// A small file: create + 4 KiB + COMMIT. The create is durable through the file journal (its
/// rows, a few hundred bytes), not a redb commit of whole 4 KiB pages; the data costs what it
/// writes.
#[test]
fn a_small_file_create_write_and_commit_writes_less_than_5x() {
    let (_d, fs) = open();
    // Warm: a first file makes the tables' pages and the journal's segment exist.
    let g = create(&fs, "warm");
    fs.write(g, 0, &[1u8; DATA], true).expect("write");
    let mut worst = 0;
    for i in 0..16 {
        let before = wchar();
        let f = create(&fs, &format!("small-{i}"));
        fs.write(f, 0, &[7u8; DATA], false).expect("write");
        fs.commit(f).expect("commit");
        let wrote = wchar() - before;
        worst = worst.max(wrote);
    }
    eprintln!("create + 4 KiB + COMMIT: at most {worst} bytes written");
    assert!(
        worst < 5 * DATA as u64,
        "{worst} bytes written for {DATA} bytes of data"
    );
}
