//! Issue 10, "a new namespace on an old backend", through Ganesha: a second gateway with a fresh
//! `Data_Dir` on the `Backend_Dir` of a running one is refused (its export, with a log line
//! naming both gateways and the backend), nothing on the backend changes, and the first one
//! keeps serving.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use strata_tests::*;

const LEN: &str = "3145728";

/// Every object file under the backend directory (but the namespace head, which the running
/// owner rewrites as its heartbeat): relative path -> (bytes, inode, mtime in ns).
/// A put writes a new file and renames it over the old one, so a rewrite, even of equal bytes,
/// changes the inode and the mtime.
fn objects(dir: &Path) -> BTreeMap<String, (Vec<u8>, u64, i128)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            let rel = p
                .strip_prefix(dir)
                .expect("under the backend")
                .to_string_lossy()
                .into_owned();
            // The running owner's own heartbeat rewrites its namespace head every few seconds.
            if rel.starts_with(".strata-tmp") || rel == "namespace/head" {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                let m = std::fs::metadata(&p).expect("metadata");
                let mtime = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
                out.insert(rel, (std::fs::read(&p).expect("read"), m.ino(), mtime));
            }
        }
    }
    out
}

/// `(gateway id, fsid)` of the owner record, in hex, read at the offsets of `engine/FORMATS.md`.
fn owner_ids(backend: &Path) -> (String, String) {
    let b = std::fs::read(backend.join("owner")).expect("an owner record");
    assert!(
        b.len() >= 40 && &b[..8] == b"STRATAOW",
        "owner record {b:?}"
    );
    let at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
    (format!("{:016x}", at(20)), format!("{:016x}", at(12)))
}

#[test]
fn a_second_gateway_with_a_fresh_data_dir_is_refused_and_changes_nothing() {
    if !require_tools(GATEWAY_TOOLS) || !require_tool("nfs-ls") {
        return;
    }
    let backend = tempdir();
    let a_dir = tempdir();
    let a_data = a_dir.path().join("data");
    std::fs::create_dir_all(&a_data).expect("mkdir");
    let a = TestGateway::launch(
        a_dir,
        a_data.clone(),
        strata_conf_on(&a_data, backend.path()),
        Some(plugin_dir()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    a.client(3, &["write", "/keep", "0", LEN, "5"])
        .expect_ok("write and commit");
    let Some(cli) = strata_cli() else { return };
    strata_sync_wait(&cli, &a_data);
    let before = objects(backend.path());
    assert!(
        before.keys().any(|k| k.starts_with("files/")),
        "the committed file is on the backend: {:?}",
        before.keys()
    );
    let (a_gateway, a_fsid) = owner_ids(backend.path());

    let b_dir = tempdir();
    let b_data = b_dir.path().join("data");
    std::fs::create_dir_all(&b_data).expect("mkdir");
    let b_conf = strata_conf_on(&b_data, backend.path());
    let said = match TestGateway::launch(b_dir, b_data, b_conf, Some(plugin_dir())) {
        Ok(b) => {
            assert!(
                !b.gw().export_errors().is_empty(),
                "the launcher must see the refused export"
            );
            let r = b.run("nfs-ls", [b.url(3, "/")]);
            assert!(!r.ok(), "B's export must be refused: {r}");
            b.log()
        }
        // Ganesha would not start without an export: the error carries its log.
        Err(e) => e.to_string(),
    };
    let line = said
        .lines()
        .find(|l| l.contains("export refused") && l.contains("refusing the backend"))
        .unwrap_or_else(|| panic!("no refusal in B's log:\n{said}"));
    for needle in [
        a_gateway.as_str(),
        a_fsid.as_str(),
        &backend.path().display().to_string(),
        "This is gateway",
    ] {
        assert!(line.contains(needle), "{needle} not in: {line}");
    }
    assert!(
        objects(backend.path()) == before,
        "B's attempt changed the backend"
    );
    a.client(3, &["verify", "/keep", "0", LEN, "5"])
        .expect_ok("A still serves its data");
}
