//! Issue 18, disaster recovery, end to end: a gateway written over NFS (directories, files,
//! links, special files, extended attributes, a volume with a snapshot, a clone), `strata sync --wait`, Ganesha SIGKILLed and its
//! data directory deleted; a new gateway on an empty data directory is refused with a log line
//! that names `strata restore`; `strata restore --conf ... --take-over` (refused without
//! `--take-over`); then Ganesha on the restored directory serves every name, fileid,
//! attribute, link, byte, snapshot and clone, hands out fileids never used before, and
//! `strata fsck --deep` finds its backend clean.

use std::collections::BTreeMap;
use std::path::Path;

use strata_tests::*;
use strata_tests::{stdout_json as json, strata_at as strata};

const MIB: u64 = 1 << 20;

fn launch(dir: tempfile::TempDir, data: &Path, backend: &Path) -> TestGateway {
    TestGateway::launch(
        dir,
        data.to_path_buf(),
        strata_conf_on(data, backend),
        Some(plugin_dir()),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn client(tg: &TestGateway, args: &[&str]) -> Run {
    tg.client(3, args).expect_ok(&args.join(" "))
}

/// What NFS shows of each path: its `stat` line without the atime-like fields that a read
/// changes (fileid, size, mode, nlink, uid, gid, mtime).
fn stats(tg: &TestGateway, paths: &[&str]) -> BTreeMap<String, Vec<String>> {
    paths
        .iter()
        .map(|p| {
            let r = tg.client(3, &["lstat", p]).expect_ok("lstat");
            let keep = ["fileid", "size", "mode", "nlink", "uid", "gid", "mtime"];
            let v = keep
                .iter()
                .map(|k| format!("{k}={}", r.get(k).unwrap_or_default()))
                .collect();
            (p.to_string(), v)
        })
        .collect()
}

#[test]
fn a_gateway_comes_back_from_its_backend_after_its_data_directory_is_lost() {
    let Some(bin) = strata_cli() else { return };
    if !require_tools(GATEWAY_TOOLS) {
        return;
    }
    let backend = tempdir();
    let a_dir = tempdir();
    let a_data = a_dir.path().join("data");
    std::fs::create_dir_all(&a_data).expect("mkdir");
    let mut a = launch(a_dir, &a_data, backend.path());
    client(&a, &["mkdir", "/vms"]);
    client(
        &a,
        &["write", "/vms/a.vmx", "0", &(3 * MIB + 5).to_string(), "1"],
    );
    client(&a, &["chmod", "/vms/a.vmx", "640"]);
    client(&a, &["link", "/vms/a.vmx", "/a-link.vmx"]);
    client(&a, &["symlink", "vms/a.vmx", "/sym"]);
    // Special files and extended attributes (issue 20) come back with everything else.
    client(&a, &["mknod", "/vms/pipe", "fifo"]);
    client(&a, &["mknod", "/sdb", "blk", "8", "16", "660"]);
    a.nfs42(&["/vms/a.vmx", "open", "setxattr", "origin", "host-a"])
        .expect_ok("setxattr");
    a.nfs42(&["/vms", "dir", "setxattr", "tag", "vms"])
        .expect_ok("setxattr");
    client(
        &a,
        &[
            "write",
            "/vms/disk-flat.vmdk",
            "0",
            &(2 * MIB).to_string(),
            "2",
        ],
    );
    strata(
        &bin,
        &a_data,
        &["snapshot", "create", "/vms/disk-flat.vmdk", "before"],
    )
    .expect_ok("snapshot");
    client(
        &a,
        &[
            "write",
            "/vms/disk-flat.vmdk",
            &MIB.to_string(),
            "65536",
            "3",
        ],
    );
    strata(
        &bin,
        &a_data,
        &[
            "volume",
            "clone",
            "/vms/disk-flat.vmdk",
            "/clone-flat.vmdk",
            "--snapshot",
            "before",
        ],
    )
    .expect_ok("clone");
    client(&a, &["write", "/clone-flat.vmdk", "4096", "8192", "4"]);
    let paths = [
        "/vms",
        "/vms/a.vmx",
        "/a-link.vmx",
        "/sym",
        "/vms/disk-flat.vmdk",
        "/clone-flat.vmdk",
        "/vms/pipe",
        "/sdb",
    ];
    strata_sync_wait(&bin, &a_data);
    let before = stats(&a, &paths);
    let highest: u64 = before
        .values()
        .filter_map(|v| v[0].strip_prefix("fileid=")?.parse().ok())
        .max()
        .expect("fileids");
    let r = strata(&bin, &a_data, &["status", "--json"]).expect_ok("status");
    let rp = &json(&r)["engine"]["not_on_backend"];
    assert_eq!(rp["namespace_changed"], false, "synced: {rp}");
    assert!(rp["namespace_image_age_ms"].is_u64(), "{rp}");

    // Created after the sync, so perhaps after the last image: its fileid must never be handed
    // out again either (the high-water mark on the backend is ahead of it).
    client(&a, &["write", "/late", "0", "4096", "8"]);
    let late = a
        .client(3, &["stat", "/late"])
        .expect_ok("stat")
        .num("fileid");
    // The machine is lost: Ganesha killed, its data directory gone.
    a.gw_mut().kill_ganesha().expect("SIGKILL");
    drop(a);
    std::fs::remove_dir_all(&a_data).ok();

    // A gateway on a new, empty data directory is refused, and says how to restore.
    let b_dir = tempdir();
    let b_data = b_dir.path().join("data");
    std::fs::create_dir_all(&b_data).expect("mkdir");
    let b_conf_path = b_dir.path().join("ganesha.conf");
    std::fs::write(
        &b_conf_path,
        strata_conf_on(&b_data, backend.path()).render(),
    )
    .expect("conf");
    let refused_dir = tempdir();
    let said = match TestGateway::launch(
        refused_dir,
        b_data.clone(),
        strata_conf_on(&b_data, backend.path()),
        Some(plugin_dir()),
    ) {
        Ok(b) => {
            assert!(!b.gw().export_errors().is_empty(), "the export is refused");
            b.log()
        }
        Err(e) => e.to_string(),
    };
    assert!(
        said.lines()
            .any(|l| l.contains("refusing the backend") && l.contains("strata restore")),
        "no refusal naming strata restore:\n{said}"
    );

    // Restore: refused without --take-over, then done.
    let conf_arg = b_conf_path.display().to_string();
    let mut cmd = std::process::Command::new(&bin);
    cmd.args(["restore", "--conf", &conf_arg]);
    let r = run_bounded(cmd, std::time::Duration::from_secs(120));
    assert!(!r.ok() && r.stderr.contains("--take-over"), "{r}");
    assert_eq!(
        std::fs::read_dir(&b_data).expect("dir").count(),
        0,
        "a refused restore writes nothing"
    );
    let mut cmd = std::process::Command::new(&bin);
    cmd.args(["restore", "--conf", &conf_arg, "--take-over", "--json"]);
    let r = run_bounded(cmd, std::time::Duration::from_secs(120)).expect_ok("restore");
    let report = json(&r);
    assert_eq!(report["volumes"], 2, "{report}");
    assert_eq!(report["files"], 1, "{report}");
    assert_eq!(report["symlinks"], 1, "{report}");
    assert_eq!(report["directories"], 2, "{report}");
    assert_eq!(report["special_files"], 2, "{report}");
    assert_eq!(report["xattrs"], 2, "{report}");

    let b = launch(b_dir, &b_data, backend.path());
    assert_eq!(stats(&b, &paths), before, "names, fileids and attributes");
    let dev = b.client(3, &["stat", "/sdb"]).expect_ok("stat");
    assert_eq!(
        (dev.get("type").as_deref(), dev.get("rdev").as_deref()),
        (Some("blk"), Some("8,16")),
        "{dev}"
    );
    for (path, first, name, value) in [
        ("/vms/a.vmx", "open", "origin", "host-a"),
        ("/vms", "dir", "tag", "vms"),
    ] {
        let r = b
            .nfs42(&[path, first, "listxattrs", "getxattr", name])
            .expect_ok("xattrs after the restore");
        let l = r.op_lines();
        assert_eq!(l[1].get("names").map(String::as_str), Some(name), "{r}");
        assert_eq!(l[2].get("value").map(String::as_str), Some(value), "{r}");
    }
    client(
        &b,
        &["verify", "/vms/a.vmx", "0", &(3 * MIB + 5).to_string(), "1"],
    );
    client(
        &b,
        &[
            "verify",
            "/a-link.vmx",
            "0",
            &(3 * MIB + 5).to_string(),
            "1",
        ],
    );
    let r = client(&b, &["readlink", "/sym"]);
    assert!(r.stdout.contains("vms/a.vmx"), "{r}");
    client(
        &b,
        &["verify", "/vms/disk-flat.vmdk", "0", &MIB.to_string(), "2"],
    );
    client(
        &b,
        &[
            "verify",
            "/vms/disk-flat.vmdk",
            &MIB.to_string(),
            "65536",
            "3",
        ],
    );
    client(&b, &["verify", "/clone-flat.vmdk", "4096", "8192", "4"]);
    client(
        &b,
        &["verify", "/clone-flat.vmdk", &MIB.to_string(), "65536", "2"],
    );
    let r = strata(
        &bin,
        &b_data,
        &["snapshot", "list", "/vms/disk-flat.vmdk", "--json"],
    )
    .expect_ok("snapshot list");
    assert!(r.stdout.contains("\"before\""), "{r}");
    // New objects get fileids never handed out before; the restored gateway writes.
    client(&b, &["write", "/new", "0", "4096", "9"]);
    let new = b
        .client(3, &["stat", "/new"])
        .expect_ok("stat")
        .num("fileid");
    assert!(new > highest.max(late), "{new} > {highest}, {late}");
    client(&b, &["write", "/vms/disk-flat.vmdk", "0", "4096", "9"]);
    strata_sync_wait(&bin, &b_data);
    // The restored backend checks clean, every cluster read back (a job, through the socket).
    let r = strata(&bin, &b_data, &["fsck", "--deep", "--wait", "--json"]).expect_ok("fsck");
    let job = json(&r);
    assert_eq!(job["state"], "done", "{job}");
    let found = &job["result"];
    assert_eq!(found["damage"], serde_json::json!([]), "{found}");
    assert_eq!(found["orphans"], serde_json::json!([]), "{found}");
    assert_eq!(found["volumes"], 2, "{found}");
    assert!(found["bytes_read"].as_u64() >= Some(2 * MIB), "{found}");
}
