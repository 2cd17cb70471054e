//! Issue 15's snapshot verbs end to end: Ganesha with our FSAL, a volume written over NFS by
//! the project's libnfs client, and the `strata snapshot` commands on the host side talking to
//! the engine through the real management socket — tables, JSON, every error — then the
//! snapshots after a SIGKILL of Ganesha and after a backend restart of the volume; and
//! `strata volume create` and `volume list` beside them.

use std::path::Path;

use strata_tests::*;

const MIB: u64 = 1 << 20;
const VOL: &str = "/vm-flat.vmdk";

use strata_tests::{stdout_json as json, strata_at as strata};

fn write(tg: &TestGateway, off: u64, len: u64, seed: u64) {
    let (off, len, seed) = (off.to_string(), len.to_string(), seed.to_string());
    tg.client(3, &["write", VOL, &off, &len, &seed])
        .expect_ok("write");
}

/// `(name, id, tlog, on_backend)` of every snapshot `snapshot list --json` shows.
fn listed(bin: &Path, data: &Path) -> Vec<(String, u64, u64, bool)> {
    let r = strata(bin, data, &["snapshot", "list", VOL, "--json"]).expect_ok("list");
    json(&r)["snapshots"]
        .as_array()
        .unwrap_or_else(|| panic!("no snapshots array: {r}"))
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_string(),
                s["id"].as_u64().unwrap_or_default(),
                s["tlog"].as_u64().unwrap_or_default(),
                s["on_backend"].as_bool().unwrap_or_default(),
            )
        })
        .collect()
}

fn verify(tg: &TestGateway, off: u64, len: u64, seed: u64) {
    let (off, len, seed) = (off.to_string(), len.to_string(), seed.to_string());
    tg.client(3, &["verify", VOL, &off, &len, &seed])
        .expect_ok("verify");
}

fn size(tg: &TestGateway) -> u64 {
    tg.client(3, &["stat", VOL]).expect_ok("stat").num("size")
}

fn expect_error(r: Run, code: i32, needle: &str) {
    assert_eq!(r.code(), code, "{r}");
    assert!(r.stderr.contains(needle), "wanted {needle:?}: {r}");
}

#[test]
fn snapshot_commands_through_the_gateway_survive_sigkill_and_a_backend_restart() {
    let Some(bin) = strata_cli() else {
        return;
    };
    let Some(mut tg) = TestGateway::strata_with_params(&[("SCO_Max_Age", "1")]) else {
        return;
    };
    let data = tg.data_dir.clone();
    let run = |args: &[&str]| strata(&bin, &data, args);
    write(&tg, 0, 2 * MIB, 1);

    // Create, with metadata; JSON.
    let r = run(&[
        "snapshot",
        "create",
        VOL,
        "before-upgrade",
        "--meta",
        "owner=ops",
        "--meta",
        "ticket=42",
        "--json",
    ])
    .expect_ok("create");
    let s1 = json(&r);
    assert_eq!(s1["name"], "before-upgrade");
    assert_eq!(s1["path"], VOL);
    assert_eq!(s1["bytes_since_previous"], 2 * MIB);
    assert_eq!(
        s1["meta"],
        serde_json::json!([["owner", "ops"], ["ticket", "42"]])
    );
    write(&tg, 4 * MIB, MIB, 2);
    // Create and info as tables.
    let r = run(&["snapshot", "create", VOL, "s2"]).expect_ok("create s2");
    assert!(
        r.stdout.contains("snapshot \"s2\" of /vm-flat.vmdk taken"),
        "{r}"
    );
    let r = run(&["snapshot", "info", VOL, "s2"]).expect_ok("info");
    assert!(
        r.stdout.contains("since previous    1048576 (1.0 MiB)"),
        "{r}"
    );
    assert!(r.stdout.contains("created           20"), "{r}");
    let r = run(&["snapshot", "list", VOL]).expect_ok("list");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("ON BACKEND"),
        "{r}"
    );
    assert!(
        lines[1].starts_with("before-upgrade") && lines[1].contains("owner=ops ticket=42"),
        "{r}"
    );
    assert!(lines[2].starts_with("s2"), "{r}");

    // Errors: exit 1 and one line saying what.
    expect_error(
        run(&["snapshot", "create", VOL, "s2"]),
        1,
        "already has a snapshot \"s2\"",
    );
    expect_error(
        run(&["snapshot", "info", VOL, "nope"]),
        1,
        "has no snapshot \"nope\"",
    );
    expect_error(
        run(&["snapshot", "delete", VOL, "nope"]),
        1,
        "has no snapshot \"nope\"",
    );
    expect_error(
        run(&["snapshot", "list", "/nope-flat.vmdk"]),
        1,
        "/nope-flat.vmdk: not found",
    );
    expect_error(run(&["snapshot", "list", "/"]), 1, "/ is not a volume");
    expect_error(run(&["snapshot", "create", VOL, "a/b"]), 1, "no '/'");
    expect_error(
        run(&["snapshot", "create", VOL, "m", "--meta", "novalue"]),
        2,
        "expected KEY=VALUE",
    );

    // Rollback: the volume reads as at the snapshot (size too); the newer snapshot is kept
    // and reads as it did (a rollback to it after the first one).
    write(&tg, 0, MIB, 9);
    let r = run(&["snapshot", "rollback", VOL, "before-upgrade"]).expect_ok("rollback");
    assert!(
        r.stdout
            .contains("/vm-flat.vmdk rolled back to snapshot \"before-upgrade\""),
        "{r}"
    );
    verify(&tg, 0, 2 * MIB, 1);
    assert_eq!(size(&tg), 2 * MIB);
    let r = run(&["snapshot", "rollback", VOL, "s2", "--json"]).expect_ok("rollback to s2");
    assert_eq!(json(&r)["name"], "s2");
    verify(&tg, 0, 2 * MIB, 1);
    verify(&tg, 4 * MIB, MIB, 2);
    assert_eq!(size(&tg), 5 * MIB);
    expect_error(
        run(&["snapshot", "rollback", VOL, "nope"]),
        1,
        "has no snapshot \"nope\"",
    );

    // Jobs: syncs and rollbacks ran as jobs; a background sync answers with its job.
    let r = run(&["sync"]).expect_ok("background sync");
    assert!(r.stdout.contains("as job "), "{r}");
    let r = run(&["sync", "--wait", "--json"]).expect_ok("sync --wait");
    let waited = json(&r)["job"]
        .as_u64()
        .unwrap_or_else(|| panic!("no job: {r}"));
    let r = run(&["job", "list", "--json"]).expect_ok("job list");
    let jobs = json(&r)["jobs"].as_array().cloned().unwrap_or_default();
    let kinds: Vec<&str> = jobs.iter().filter_map(|j| j["kind"].as_str()).collect();
    assert!(
        kinds.iter().filter(|k| **k == "rollback").count() >= 2,
        "{r}"
    );
    assert!(kinds.iter().filter(|k| **k == "sync").count() >= 2, "{r}");
    let r = run(&["job", "show", &waited.to_string()]).expect_ok("job show");
    assert!(r.stdout.contains("state             done"), "{r}");
    assert!(r.stdout.contains("kind              sync"), "{r}");
    let r = run(&["job", "list"]).expect_ok("job list");
    assert!(r.stdout.starts_with("  ID  KIND"), "{r}");
    expect_error(run(&["job", "show", "9999"]), 1, "no job 9999");
    expect_error(run(&["job", "cancel", "9999"]), 1, "no job 9999");

    // A volume made without an NFS client: listed, seen over NFS, snapshotted like any other.
    let r = run(&["volume", "create", "/vm2-flat.vmdk", "64M", "--json"]).expect_ok("create");
    assert_eq!(json(&r)["size"], 64 * MIB);
    let st = tg.client(3, &["stat", "/vm2-flat.vmdk"]).expect_ok("stat");
    assert_eq!(st.num("size"), 64 * MIB, "{st}");
    let r = run(&["volume", "list", "--json"]).expect_ok("volume list");
    let paths: Vec<(String, u64)> = json(&r)["volumes"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"))
        .iter()
        .map(|v| {
            (
                v["path"].as_str().unwrap_or_default().to_string(),
                v["size"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        paths,
        [
            ("/vm-flat.vmdk".to_string(), 5 * MIB),
            ("/vm2-flat.vmdk".to_string(), 64 * MIB)
        ]
    );
    let r = run(&["volume", "list"]).expect_ok("volume list");
    assert!(
        r.stdout.starts_with("PATH") && r.stdout.contains("/vm2-flat.vmdk"),
        "{r}"
    );
    run(&["snapshot", "create", "/vm2-flat.vmdk", "empty"]).expect_ok("snapshot of vm2");
    expect_error(
        run(&["volume", "create", "/vm2-flat.vmdk", "1G"]),
        1,
        "already exists",
    );
    expect_error(
        run(&["volume", "create", "/notes.txt", "1G"]),
        1,
        "not a volume name",
    );
    expect_error(
        run(&["volume", "create", "/nodir/x-flat.vmdk", "1G"]),
        1,
        "/nodir: not found",
    );
    expect_error(
        run(&["volume", "create", "/x-flat.vmdk", "lots"]),
        2,
        "is not a size",
    );
    // Removing a volume deletes its backend objects as a job.
    tg.client(3, &["unlink", "/vm2-flat.vmdk"])
        .expect_ok("unlink");
    let r = run(&["job", "list", "--json"]).expect_ok("job list");
    let listing = json(&r);
    let deletes: Vec<&serde_json::Value> = listing["jobs"]
        .as_array()
        .map(|a| a.iter().filter(|j| j["kind"] == "delete").collect())
        .unwrap_or_default();
    assert_eq!(deletes.len(), 1, "{r}");
    assert!(
        deletes[0]["target"]
            .as_str()
            .is_some_and(|t| t.starts_with("volume ")),
        "{r}"
    );

    // On the backend after a sync; a deleted one is gone.
    strata_sync_wait(&bin, &data);
    let all = listed(&bin, &data);
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all.iter().all(|s| s.3), "all on the backend: {all:?}");
    let r = run(&["snapshot", "delete", VOL, "s2", "--json"]).expect_ok("delete");
    assert_eq!(json(&r)["name"], "s2");
    let kept = listed(&bin, &data);
    assert_eq!(kept, all[..1].to_vec());
    strata_sync_wait(&bin, &data);

    // A SIGKILL of Ganesha, then a backend restart of the volume: the same snapshot, alone.
    tg.gw_mut().kill_ganesha().expect("SIGKILL ganesha");
    tg.gw_mut().restart_ganesha().expect("restart");
    assert_eq!(listed(&bin, &data), kept, "after SIGKILL");
    let ino = tg.client(3, &["stat", VOL]).expect_ok("stat").num("fileid");
    let local = data.join("volumes").join(format!("{ino:016x}"));
    tg.gw_mut().kill_ganesha().expect("SIGKILL ganesha");
    std::fs::remove_dir_all(&local).expect("drop the volume's local state");
    tg.gw_mut()
        .restart_ganesha()
        .expect("restart from the backend");
    assert_eq!(listed(&bin, &data), kept, "after a backend restart");
    verify(&tg, 0, 2 * MIB, 1);
    verify(&tg, 4 * MIB, MIB, 2);
    assert!(local.join("tlog").exists(), "the volume was restored");
    let r = run(&["snapshot", "create", VOL, "after-restore", "--json"]).expect_ok("create");
    assert!(json(&r)["id"].as_u64() > Some(kept[0].1), "{r}");

    // No gateway: exit 3.
    tg.gw_mut().kill_ganesha().expect("SIGKILL ganesha");
    expect_error(run(&["snapshot", "list", VOL]), 3, "no gateway answers");
}

/// A SIGKILL of Ganesha at sampled points of a rollback (as soon as it started, after its
/// upload, after its rebuild, where the job's progress shows them): after the restart the
/// volume reads as before the rollback or as at the snapshot, never a mix, and its snapshots
/// are all there.
#[test]
fn a_sigkill_during_a_rollback_leaves_the_volume_before_or_at_the_snapshot() {
    let Some(bin) = strata_cli() else {
        return;
    };
    let Some(mut tg) = TestGateway::strata_with(|_| {}) else {
        return;
    };
    let data = tg.data_dir.clone();
    let sock = data.join("mgmt.sock");
    write(&tg, 0, 4 * MIB, 1);
    strata(&bin, &data, &["snapshot", "create", VOL, "s"]).expect_ok("snapshot");
    let mut seed = 1;
    let mut outcomes = (0, 0);
    // Points 0..=2: as the job's progress shows them; 3: once the job ended.
    for point in 0..4u64 {
        // What the volume holds before this rollback: seed `seed` where the snapshot has 1.
        seed += 1;
        write(&tg, MIB, 2 * MIB, seed);
        let mut c = strata_mgmt::MgmtClient::connect(&sock).expect("connect");
        let job = c
            .snapshot_rollback_start(VOL, "s", false)
            .expect("rollback started");
        // Wait (bounded) until the job got to `point`, or ended.
        let deadline = std::time::Instant::now() + CMD_TIMEOUT;
        let ended = loop {
            let j = c.job_show(job.id).expect("job show");
            if j.state != "running" {
                assert_eq!(j.state, "done", "{j:?}");
                break true;
            }
            if point < 3 && j.done >= point {
                break false;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the rollback never ended"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        tg.gw_mut().kill_ganesha().expect("SIGKILL ganesha");
        tg.gw_mut().restart_ganesha().expect("restart");
        let before = tg.client(
            3,
            &[
                "verify",
                VOL,
                &MIB.to_string(),
                &(2 * MIB).to_string(),
                &seed.to_string(),
            ],
        );
        if before.ok() {
            assert!(!ended, "point {point}: a finished rollback was undone");
            outcomes.0 += 1;
        } else {
            verify(&tg, 0, 4 * MIB, 1);
            outcomes.1 += 1;
        }
        verify(&tg, 0, MIB, 1);
        let r = strata(&bin, &data, &["snapshot", "list", VOL, "--json"]).expect_ok("list");
        assert_eq!(json(&r)["snapshots"][0]["name"], "s", "{r}");
    }
    eprintln!("rollbacks undone: {}, finished: {}", outcomes.0, outcomes.1);
    assert!(outcomes.1 >= 1, "the rollback waited for finished");
}
