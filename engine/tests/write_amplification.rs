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

/// Operations per test: their journal records fill more than the zeros the journal writes
/// ahead of them (1 MiB), so that those count as they do in the long run.
const OPS: u64 = 400;

/// A 4 KiB write + COMMIT to a regular file costs about what it writes: its journal record
/// (and the zeros ahead of it), the extent cache, no extent upload and no metadata transaction.
#[test]
fn a_4k_write_and_commit_writes_less_than_5x() {
    let (_d, fs) = open();
    let f = create(&fs, "vm.nvram");
    // Warm: the file's extents are cached.
    fs.write(f, 0, &[1u8; 2 << 20], true).expect("first write");
    let before = wchar();
    for i in 0..OPS {
        fs.write(f, i * DATA as u64, &[7u8; DATA], false)
            .expect("write");
        fs.commit(f).expect("commit");
    }
    let per_op = (wchar() - before) / OPS;
    eprintln!("4 KiB write + COMMIT: {per_op} bytes written per operation");
    assert!(
        per_op < 5 * DATA as u64,
        "{per_op} bytes written for {DATA} bytes of data"
    );
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
    let before = wchar();
    for i in 0..OPS {
        let f = create(&fs, &format!("small-{i}"));
        fs.write(f, 0, &[7u8; DATA], false).expect("write");
        fs.commit(f).expect("commit");
    }
    let per_op = (wchar() - before) / OPS;
    eprintln!("create + 4 KiB + COMMIT: {per_op} bytes written per file");
    assert!(
        per_op < 5 * DATA as u64,
        "{per_op} bytes written for {DATA} bytes of data"
    );
}

/// The whole life of small files on the way to the backend: create + 4 KiB + COMMIT for each,
/// then everything uploaded (`strata sync --wait`): the journal, the extent cache, the objects
/// (the local backend writes each once), the namespace's checkpoint and the uploader's records.
#[test]
fn small_files_up_to_the_backend_write_less_than_5x() {
    let (_d, fs) = open();
    let g = create(&fs, "warm");
    fs.write(g, 0, &[1u8; DATA], true).expect("write");
    fs.flush_to_backend().expect("flush");
    const FILES: usize = OPS as usize;
    let before = wchar();
    for i in 0..FILES {
        let f = create(&fs, &format!("small-{i}"));
        fs.write(f, 0, &[7u8; DATA], false).expect("write");
        fs.commit(f).expect("commit");
    }
    let local = wchar() - before;
    fs.flush_to_backend().expect("flush");
    let wrote = wchar() - before;
    let data = (FILES * DATA) as u64;
    eprintln!(
        "{FILES} small files: {local} bytes until COMMIT, {wrote} with the upload ({:.2}x)",
        wrote as f64 / data as f64
    );
    assert!(
        wrote < 5 * data,
        "{wrote} bytes written for {data} bytes of data"
    );
}
