//! Issue 14's durability contract for regular files, end to end through `ganesha.nfsd` and our
//! FSAL: a COMMIT returns once the file journal holds the data on local disk; nothing it
//! acknowledged is lost when Ganesha is SIGKILLed mid-workload; the backend catches up after
//! `strata sync --wait`; with the backend unreachable, COMMITs go on until
//! `File_Write_Buffer_Size` is not on the backend, then NFS3ERR_JUKEBOX, and nothing is lost
//! once it returns.
//!
//! The writer is the `commitlog` workload (`strata_tests::commitlog`) on a regular file; the
//! check is the volumes' one: every byte holds the last committed write covering it, or the
//! value of a write sent after the last acknowledged COMMIT.

use std::path::Path;

use strata_tests::commitlog::*;
use strata_tests::*;

const MIB: u64 = 1 << 20;
/// A regular file (no volume suffix).
const FILE: &str = "/w.data";

/// Bytes kept in the file journal: its segments (a drained journal holds one header).
fn journal_bytes(data_dir: &Path) -> u64 {
    bytes_under(data_dir, "file-journal")
}

/// Bytes of the file's extent objects on the local backend.
fn extent_bytes(data_dir: &Path) -> u64 {
    bytes_under(&data_dir.join("backend"), "files")
}

/// `strata sync --wait` through the management socket; the journal is drained afterwards.
fn sync_wait(data_dir: &Path) {
    let d = data_dir.display().to_string();
    let s = strata(&["sync", "--wait", "--data-dir", &d]).expect_ok("strata sync --wait");
    assert!(
        s.stdout
            .starts_with("synced: everything committed is on the backend"),
        "{s}"
    );
    let left = journal_bytes(data_dir);
    assert!(
        left <= 64,
        "{left} bytes left in the file journal after sync --wait"
    );
}

/// SIGKILL of Ganesha while a writer commits to a regular file, twice (each round starts from
/// what the last crash left): every byte a COMMIT acknowledged reads back after the restart;
/// `strata sync --wait` then puts it all on the backend and empties the journal.
#[test]
fn sigkill_during_a_regular_file_workload_keeps_every_committed_byte() {
    let Some(mut tg) = TestGateway::strata() else {
        return;
    };
    if !require_tools(&["nfs-cp"]) {
        return;
    }
    create_object(&tg, FILE);
    // About 10 MiB committed per round.
    let base = sigkill_rounds(&mut tg, FILE, 2, 40, 0xf11e_0000_0000);
    // The backend catches up: everything on it, nothing left in the journal.
    sync_wait(&tg.data_dir);
    assert!(
        extent_bytes(&tg.data_dir) >= 16 * MIB,
        "only {} bytes of extents on the backend",
        extent_bytes(&tg.data_dir)
    );
    let data = read_object(&tg, FILE, "file-after-sync.bin");
    assert!(data == base, "the file changed across sync --wait");
}

/// The backend directory turns read-only (a bind mount inside the gateway's namespace): a
/// regular file keeps taking committed writes until about `File_Write_Buffer_Size` waits in the
/// journal, then NFS3ERR_JUKEBOX. When the backend returns, `strata sync --wait` drains the
/// journal, every committed byte reads back, and the file is writable again.
#[test]
fn unreachable_backend_fills_the_file_write_buffer_then_jukebox_and_loses_nothing() {
    const WRITE_BUFFER: u64 = 16 * MIB;
    let Some(tg) = TestGateway::strata_with(|conf| {
        if let Some(block) = conf.strata.as_mut() {
            block.push(("File_Write_Buffer_Size".into(), "16M".into()));
            block.push(("Backend_Stall_Timeout".into(), "2".into()));
        }
    }) else {
        return;
    };
    if !require_tools(&["nfs-cp", "mount", "umount"]) {
        return;
    }
    create_object(&tg, FILE);
    let b = backend_read_only(&tg);

    const SEED: u64 = 0xf11e_0002;
    // ~135 MiB of writes: far more than the buffer.
    const COUNT: u64 = 4000;
    let r = run_commitlog(&tg, FILE, SEED, COUNT);
    // With no backend, the writer must meet JUKEBOX.
    let (committed, bytes, maybe) = jukebox_outcome(&r);
    // The journal holds the client's bytes plus a small header per write.
    assert!(
        (WRITE_BUFFER / 2..=2 * WRITE_BUFFER).contains(&bytes),
        "JUKEBOX after {bytes} committed bytes with File_Write_Buffer_Size {WRITE_BUFFER}: {r}"
    );
    let kept = journal_bytes(&tg.data_dir);
    assert!(
        kept >= WRITE_BUFFER / 2,
        "only {kept} bytes in the journal with the backend read-only"
    );
    assert_eq!(extent_bytes(&tg.data_dir), 0, "nothing reached the backend");
    eprintln!("JUKEBOX after {committed} writes ({bytes} bytes committed, {kept} in the journal)");

    tg.run("umount", [b.as_str()])
        .expect_ok("umount the read-only bind");
    sync_wait(&tg.data_dir);
    assert!(extent_bytes(&tg.data_dir) >= bytes.min(SIZE) / 2);
    let data = read_object(&tg, FILE, "file-after-backend-returns.bin");
    check(&data, &vec![0u8; SIZE as usize], SEED, committed, maybe);

    let r = run_commitlog(&tg, FILE, 9, 64);
    let r = r.expect_ok("commitlog after the backend returned");
    assert_eq!(r.get("done").as_deref(), Some("1"), "{r}");
}
