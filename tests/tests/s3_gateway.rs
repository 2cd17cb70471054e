//! The gateway on an S3 backend end to end: Ganesha with our FSAL and `Backend = S3`, a real
//! S3 server (SeaweedFS `weed mini`) in the same private namespace, real NFS clients. Regular
//! files and volumes reach the bucket, survive a SIGKILL of Ganesha and a backend restart of
//! a volume from S3 alone; an outage of the store does not stop volume COMMITs (writes are
//! paced as the backlog grows, not refused), and nothing acknowledged is lost when it comes
//! back.

use strata_tests::s3::S3Gateway;
use strata_tests::*;

const MIB: u64 = 1 << 20;

/// The write buffer (hard mark) of the gateway of the outage test; writes are paced from half
/// of it.
const WRITE_BUFFER: u64 = 16 * MIB;

fn gateway_with(extra: &[(&str, &str)]) -> Option<S3Gateway> {
    S3Gateway::start(|conf| {
        if let Some(block) = conf.strata.as_mut() {
            block.push(("SCO_Max_Age".into(), "1".into()));
            for (k, v) in extra {
                block.push((k.to_string(), v.to_string()));
            }
        }
    })
}

fn gateway() -> Option<S3Gateway> {
    gateway_with(&[])
}

/// The volume's local directory, from its NFS fileid.
fn volume_dir(tg: &TestGateway, path: &str) -> std::path::PathBuf {
    let ino = tg
        .client(3, &["stat", path])
        .expect_ok("stat")
        .num("fileid");
    tg.data_dir.join("volumes").join(format!("{ino:016x}"))
}

fn write(tg: &TestGateway, path: &str, off: u64, len: u64, seed: u64) {
    let (off, len, seed) = (off.to_string(), len.to_string(), seed.to_string());
    tg.client(3, &["write", path, &off, &len, &seed])
        .expect_ok(&format!("write {path}"));
}

fn verify(tg: &TestGateway, path: &str, off: u64, len: u64, seed: u64) {
    let (off, len, seed) = (off.to_string(), len.to_string(), seed.to_string());
    for v in [3, 4] {
        tg.client(v, &["verify", path, &off, &len, &seed])
            .expect_ok(&format!("v{v} verify {path}"));
    }
}

#[test]
fn files_and_volumes_on_s3_survive_sigkill_and_a_backend_restart() {
    let Some(strata) = strata_cli() else {
        return;
    };
    let Some(mut g) = gateway() else {
        return;
    };
    assert!(g.tg.log().contains("NFS SERVER INITIALIZED"));
    write(&g.tg, "/file.bin", 0, 3 * MIB + 123, 7);
    write(&g.tg, "/disk.raw", 0, 8 * MIB, 9);
    write(&g.tg, "/disk.raw", 20 * MIB + 4096 + 17, 100_000, 10);
    strata_sync_wait(&strata, &g.tg.data_dir);

    // Everything is in the bucket, under the gateway's prefix, by kind.
    let keys = g.keys();
    let ino =
        g.tg.client(3, &["stat", "/disk.raw"])
            .expect_ok("stat")
            .num("fileid");
    let vol = format!("volumes/{ino:016x}/");
    assert!(keys.iter().any(|k| k.starts_with("files/")), "{keys:?}");
    assert!(keys.contains(&format!("{vol}manifest.xml")), "{keys:?}");
    assert!(
        keys.iter()
            .any(|k| k.starts_with(&vol) && k.contains("sco")),
        "{keys:?}"
    );
    assert!(
        keys.iter().any(|k| k == "owner"),
        "the owner record: {keys:?}"
    );

    // A crash of Ganesha: everything reads back.
    g.tg.gw_mut().kill_ganesha().expect("SIGKILL ganesha");
    g.tg.gw_mut().restart_ganesha().expect("restart");
    verify(&g.tg, "/file.bin", 0, 3 * MIB + 123, 7);
    verify(&g.tg, "/disk.raw", 0, 8 * MIB, 9);
    verify(&g.tg, "/disk.raw", 20 * MIB + 4096 + 17, 100_000, 10);

    // The restarted gateway is a new run with a new owner epoch: what it uploads goes under
    // keys of its own, beside the first run's (data keys are never written twice).
    write(&g.tg, "/disk.raw", 12 * MIB, 2 * MIB, 11);
    strata_sync_wait(&strata, &g.tg.data_dir);
    let keys = g.keys();
    let mut epochs = std::collections::BTreeSet::new();
    for k in keys
        .iter()
        .filter(|k| k.starts_with(&format!("{vol}sco/")) || k.starts_with(&format!("{vol}tlog/")))
    {
        let (_, epoch) = k
            .rsplit_once('.')
            .unwrap_or_else(|| panic!("{k}: no epoch"));
        assert_eq!(epoch.len(), 16, "{k}");
        epochs.insert(epoch.to_string());
    }
    assert_eq!(epochs.len(), 2, "the volume's keys of both runs: {keys:?}");

    // A backend restart: the volume's local state is gone, S3 alone rebuilds it.
    let local = volume_dir(&g.tg, "/disk.raw");
    g.tg.gw_mut().kill_ganesha().expect("SIGKILL ganesha");
    std::fs::remove_dir_all(&local).expect("drop the volume's local state");
    g.tg.gw_mut().restart_ganesha().expect("restart from S3");
    verify(&g.tg, "/disk.raw", 0, 8 * MIB, 9);
    verify(&g.tg, "/disk.raw", 12 * MIB, 2 * MIB, 11);
    verify(&g.tg, "/disk.raw", 20 * MIB + 4096 + 17, 100_000, 10);
    assert!(local.join("tlog").exists(), "local state rebuilt from S3");
}

/// Issue 18 on S3: the data directory lost, `strata restore --take-over` (run inside the
/// gateway's namespace, where the S3 server is) brings the gateway back from the bucket alone:
/// names, fileids, bytes; and `strata fsck --deep` finds the bucket clean.
#[test]
fn a_gateway_comes_back_from_s3_after_its_data_directory_is_lost() {
    let Some(strata) = strata_cli() else {
        return;
    };
    let Some(mut g) = gateway() else {
        return;
    };
    g.tg.client(3, &["mkdir", "/d"]).expect_ok("mkdir");
    write(&g.tg, "/d/file.bin", 0, 3 * MIB + 5, 3);
    write(&g.tg, "/d/disk.raw", 0, 4 * MIB, 4);
    strata_sync_wait(&strata, &g.tg.data_dir);
    let stat = |tg: &TestGateway, p: &str| {
        let r = tg.client(3, &["stat", p]).expect_ok("stat");
        (r.num("fileid"), r.num("size"))
    };
    let before = [stat(&g.tg, "/d/file.bin"), stat(&g.tg, "/d/disk.raw")];

    g.tg.gw_mut().kill_ganesha().expect("SIGKILL ganesha");
    std::fs::remove_dir_all(&g.tg.data_dir).expect("the data directory is lost");
    std::fs::create_dir_all(&g.tg.data_dir).expect("a new, empty one");
    let conf = g.tg.gw().conf_path().display().to_string();
    let r = g.tg.run_timeout(
        &strata,
        ["restore", "--conf", &conf, "--take-over", "--json"],
        std::time::Duration::from_secs(120),
    );
    let report = stdout_json(&r.expect_ok("strata restore"));
    assert_eq!(
        (report["files"].as_u64(), report["volumes"].as_u64()),
        (Some(1), Some(1)),
        "{report}"
    );
    g.tg.gw_mut()
        .restart_ganesha()
        .expect("start on the restored directory");
    assert_eq!(
        [stat(&g.tg, "/d/file.bin"), stat(&g.tg, "/d/disk.raw")],
        before,
        "the same fileids and sizes"
    );
    verify(&g.tg, "/d/file.bin", 0, 3 * MIB + 5, 3);
    verify(&g.tg, "/d/disk.raw", 0, 4 * MIB, 4);
    let r = strata_at(
        &strata,
        &g.tg.data_dir,
        &["fsck", "--deep", "--wait", "--json"],
    );
    let job = stdout_json(&r.expect_ok("fsck"));
    assert_eq!(job["result"]["damage"], serde_json::json!([]), "{job}");
    assert_eq!(job["result"]["orphans"], serde_json::json!([]), "{job}");
}

#[test]
fn an_s3_outage_does_not_stop_volume_commits_and_loses_nothing() {
    let Some(strata) = strata_cli() else {
        return;
    };
    let Some(mut g) = gateway_with(&[("Write_Buffer_Size", "16M")]) else {
        return;
    };
    write(&g.tg, "/vm-flat.vmdk", 0, 4 * MIB, 1);
    strata_sync_wait(&strata, &g.tg.data_dir);

    // The store goes away: writes with their COMMITs still succeed (the local log is durable),
    // paced once the backlog passes half the write buffer, never refused below it.
    g.tg.gw_mut().kill_s3().expect("kill the S3 server");
    write(&g.tg, "/vm-flat.vmdk", 4 * MIB, 10 * MIB, 2);
    write(&g.tg, "/vm-flat.vmdk", MIB + 512, 70_000, 3);
    verify(&g.tg, "/vm-flat.vmdk", 4 * MIB, 10 * MIB, 2);
    let d = g.tg.data_dir.display().to_string();
    let mut cmd = std::process::Command::new(&strata);
    cmd.args([
        "volume",
        "info",
        "/vm-flat.vmdk",
        "--json",
        "--data-dir",
        &d,
    ]);
    let info = run_bounded(cmd, CMD_TIMEOUT).expect_ok("strata volume info");
    let v: serde_json::Value = serde_json::from_str(info.stdout.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {info}"));
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} missing: {v}"));
    assert!(
        n("writes_paced") > 0,
        "no write was paced during the outage: {v}"
    );
    assert_eq!(n("writes_refused"), 0, "{v}");
    assert!(
        n("peak_backlog") > WRITE_BUFFER / 2 && n("peak_backlog") <= WRITE_BUFFER,
        "the backlog passed the soft mark, never the hard one: {v}"
    );

    // It comes back: the backlog drains, and S3 alone holds every acknowledged write.
    g.tg.gw_mut().restart_s3().expect("restart the S3 server");
    strata_sync_wait(&strata, &g.tg.data_dir);
    let local = volume_dir(&g.tg, "/vm-flat.vmdk");
    g.tg.gw_mut().kill_ganesha().expect("SIGKILL ganesha");
    std::fs::remove_dir_all(&local).expect("drop the volume's local state");
    g.tg.gw_mut().restart_ganesha().expect("restart from S3");
    verify(&g.tg, "/vm-flat.vmdk", 0, MIB + 512, 1);
    verify(&g.tg, "/vm-flat.vmdk", MIB + 512, 70_000, 3);
    verify(
        &g.tg,
        "/vm-flat.vmdk",
        MIB + 512 + 70_000,
        3 * MIB - 512 - 70_000,
        1,
    );
    verify(&g.tg, "/vm-flat.vmdk", 4 * MIB, 10 * MIB, 2);
}
