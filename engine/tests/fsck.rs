//! `strata fsck` (issue 18) against a real gateway on a local backend: a clean backend is
//! reported clean; a corrupted SCO (found only by `deep`), a truncated TLog, a missing file
//! extent and planted orphans are reported; `repair` moves the orphans to `quarantine/` and
//! changes nothing else.

use std::path::{Path, PathBuf};

use strata_engine::*;

const ME: Cred = Cred { uid: 0, gid: 0 };
const MIB: usize = 1 << 20;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed) ^ (i >> 10) as u8)
        .collect()
}

fn created(fs: &Filesystem, name: &[u8], data: &[u8]) -> Attr {
    let a = fs
        .create(fs.root(), name, 0o644, ME, CreateMode::Guarded)
        .expect("create")
        .attr;
    fs.write(a.handle, 0, data, true).expect("write");
    a
}

/// The one backend file under `dir` (a volume's `sco/` or `tlog/`).
fn only_file(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.into_iter().next().expect("one")
}

fn fsck(fs: &Filesystem, deep: bool, repair: bool) -> strata_engine::mgmt::FsckReport {
    fs.fsck_with(FsckOptions { deep, repair }, &NoProgress)
        .expect("fsck")
}

fn keys(v: &[strata_engine::mgmt::FsckFinding]) -> Vec<String> {
    let mut k: Vec<String> = v.iter().map(|f| f.key.clone()).collect();
    k.sort();
    k
}

#[test]
fn fsck_reports_damage_and_orphans_and_quarantines_orphans() {
    let t = tempfile::tempdir().expect("tempdir");
    let backend = t.path().join("backend");
    let mut cfg = EngineConfig::new(t.path().join("data"));
    cfg.backend = BackendConfig::Local {
        dir: backend.clone(),
    };
    let fs = Filesystem::open(cfg).expect("open");
    let file = created(&fs, b"f", &pattern(3 * MIB, 1));
    let a = created(&fs, b"a-flat.vmdk", &pattern(300_000, 2));
    let b = created(&fs, b"b-flat.vmdk", &pattern(300_000, 3));
    fs.flush_to_backend().expect("flush");

    let clean = fsck(&fs, true, false);
    assert!(clean.damage.is_empty(), "{clean:?}");
    assert!(clean.orphans.is_empty(), "{clean:?}");
    assert_eq!((clean.files, clean.volumes), (1, 2), "{clean:?}");
    assert_eq!(clean.bytes_read, 600_000, "every byte read back");

    let vol_dir = |ino: u64| backend.join(format!("volumes/{ino:016x}"));
    // A corrupted SCO: a byte of a's data flipped on the backend.
    let sco = only_file(&vol_dir(a.handle.ino).join("sco"));
    let mut bytes = std::fs::read(&sco).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&sco, &bytes).expect("write");
    // A truncated TLog of b.
    let tlog = only_file(&vol_dir(b.handle.ino).join("tlog"));
    let len = std::fs::metadata(&tlog).expect("meta").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&tlog)
        .expect("open")
        .set_len(len / 2)
        .expect("truncate");
    // A missing extent of the file (its second).
    let second = format!("{:016x}.00000001.", file.handle.ino);
    let extent = std::fs::read_dir(backend.join("files"))
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&second))
        })
        .expect("the second extent");
    std::fs::remove_file(&extent).expect("rm");
    // Orphans: a volume's object, an extent and a key the namespace knows nothing of.
    let planted = [
        "volumes/00000000000000ff/manifest.xml",
        "files/00000000000000ee.00000000.0000000000000001",
        "stray",
    ];
    let store = strata_backend::LocalStore::open(backend.clone()).expect("store");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    // And an extent no map names, of this run's epoch: perhaps an upload in flight.
    let ours = format!(
        "files/{:016x}.00000000.{:016x}",
        0xdd,
        (fs.owner().epoch << 40) | 7
    );
    for k in planted.iter().copied().chain([ours.as_str()]) {
        rt.block_on(strata_backend::ObjectStore::put(
            &store,
            k,
            b"x".to_vec().into(),
        ))
        .expect("plant");
    }

    let vol_key = |ino: u64| format!("volumes/{ino:016x}/");
    let extent_key = format!(
        "files/{}",
        extent.file_name().expect("name").to_string_lossy()
    );
    let shallow = fsck(&fs, false, false);
    assert_eq!(
        keys(&shallow.damage),
        {
            let mut v = vec![extent_key.clone(), vol_key(b.handle.ino)];
            v.sort();
            v
        },
        "without deep, the SCO's data is not read: {shallow:?}"
    );
    let mut want_orphans: Vec<String> = planted.iter().map(|k| k.to_string()).collect();
    want_orphans.push(ours.clone());
    want_orphans.sort();
    assert_eq!(keys(&shallow.orphans), want_orphans, "{shallow:?}");

    let deep = fsck(&fs, true, false);
    let mut want = vec![extent_key, vol_key(a.handle.ino), vol_key(b.handle.ino)];
    want.sort();
    assert_eq!(keys(&deep.damage), want, "{deep:?}");

    let repaired = fsck(&fs, false, true);
    assert_eq!(repaired.quarantined, 3, "{repaired:?}");
    for k in planted {
        assert!(!backend.join(k).exists(), "{k} moved");
        assert!(
            backend.join("quarantine").join(k).exists(),
            "{k} in quarantine"
        );
    }
    assert!(
        backend.join(&ours).exists(),
        "this run's extent is left in place"
    );
    let after = fsck(&fs, false, false);
    assert_eq!(keys(&after.orphans), vec![ours.clone()], "{after:?}");
    assert!(after.orphans[0].what.contains("left in place"), "{after:?}");
    assert_eq!(after.damage.len(), 2, "damage is only reported: {after:?}");
}
