//! Issue 16's clone verbs end to end: Ganesha with our FSAL, volumes written and read over
//! NFSv3 and NFSv4 by the project's libnfs client, and `strata volume clone|template|flatten|
//! list` on the host side through the real management socket; then the clones after a SIGKILL
//! of Ganesha and after a backend restart, a parent removed while clones read it (hidden, then
//! deleted with its last reader), and a flattened clone that stands alone.

use std::path::Path;

use strata_tests::*;

const MIB: u64 = 1 << 20;
const GOLD: &str = "/gold-flat.vmdk";
const VM1: &str = "/vm1-flat.vmdk";
const VM2: &str = "/vm2-flat.vmdk";
const VM3: &str = "/vm3-flat.vmdk";
const EROFS: u64 = 30;
const NFS3ERR_ROFS: u64 = 30;

use strata_tests::{stdout_json as json, strata_at as strata};

fn write(tg: &TestGateway, v: u8, path: &str, off: u64, len: u64, seed: u64) -> Run {
    let (off, len, seed) = (off.to_string(), len.to_string(), seed.to_string());
    tg.client(v, &["write", path, &off, &len, &seed])
}

fn verify(tg: &TestGateway, v: u8, path: &str, off: u64, len: u64, seed: u64) {
    let (o, l, s) = (off.to_string(), len.to_string(), seed.to_string());
    tg.client(v, &["verify", path, &o, &l, &s])
        .expect_ok(&format!("verify {path} at {off} over NFSv{v}"));
}

fn ino(tg: &TestGateway, path: &str) -> u64 {
    tg.client(3, &["stat", path])
        .expect_ok("stat")
        .num("fileid")
}

/// (path, template, parent, ancestors) of every volume `volume list --json` shows.
fn listed(bin: &Path, data: &Path) -> (Vec<(String, bool, String, usize)>, serde_json::Value) {
    let r = strata(bin, data, &["volume", "list", "--all", "--json"]).expect_ok("volume list");
    let j = json(&r);
    let v = j["volumes"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"))
        .iter()
        .map(|v| {
            (
                v["path"].as_str().unwrap_or_default().to_string(),
                v["template"].is_string(),
                v["parent"].as_str().unwrap_or("-").to_string(),
                v["ancestors"].as_array().map_or(0, Vec::len),
            )
        })
        .collect();
    (v, j["hidden"].clone())
}

#[test]
fn clone_template_and_flatten_commands_through_the_gateway() {
    let Some(bin) = strata_cli() else {
        return;
    };
    let Some(mut tg) = TestGateway::strata_with_params(&[("SCO_Max_Age", "1")]) else {
        return;
    };
    let data = tg.data_dir.clone();
    let run = |args: &[&str]| strata(&bin, &data, args);
    write(&tg, 3, GOLD, 0, 2 * MIB, 1).expect_ok("write gold");

    // A clone without --snapshot: at a snapshot taken for the purpose. Seen over NFS at once.
    let r = run(&["volume", "clone", GOLD, VM1, "--json"]).expect_ok("clone");
    let c = json(&r);
    assert_eq!(c["path"], VM1);
    assert_eq!(c["size"], 2 * MIB);
    assert!(
        c["snapshot"]
            .as_str()
            .is_some_and(|s| s.starts_with("clone-")),
        "{r}"
    );
    verify(&tg, 3, VM1, 0, 2 * MIB, 1);
    verify(&tg, 4, VM1, 0, 2 * MIB, 1);
    // Writes on either side stay there.
    write(&tg, 3, VM1, MIB, MIB, 5).expect_ok("write the clone");
    verify(&tg, 3, GOLD, 0, 2 * MIB, 1);
    verify(&tg, 3, VM1, MIB, MIB, 5);

    // The parent becomes a template: read-only over NFSv3 and NFSv4.
    let r = run(&["volume", "template", GOLD]).expect_ok("template");
    assert!(r.stdout.contains("is a template"), "{r}");
    // NFSv3: the WRITE's status as the server sent it (libnfs's pwrite reports any failed
    // write as EFAULT).
    let w = tg.client(3, &["write3", GOLD, "0", "4096", "9"]);
    assert_eq!(
        w.num("nfsstat"),
        NFS3ERR_ROFS,
        "a template write over NFSv3: {w}"
    );
    let w = write(&tg, 4, GOLD, 0, 4096, 9);
    assert_eq!(w.num("errno"), EROFS, "a template write over NFSv4: {w}");
    assert!(w.stdout.contains("NFS4ERR_ROFS"), "{w}");
    let t = tg.client(3, &["truncate", GOLD, "1"]);
    assert_eq!(t.num("errno"), EROFS, "a template truncate: {t}");
    verify(&tg, 4, GOLD, 0, 2 * MIB, 1);
    // Cloned without naming a snapshot: at the template's.
    let r = run(&["volume", "clone", GOLD, VM2, "--json"]).expect_ok("clone of the template");
    assert_eq!(json(&r)["snapshot"], "template");
    verify(&tg, 3, VM2, 0, 2 * MIB, 1);
    // A clone of a clone, at a named snapshot.
    run(&["snapshot", "create", VM1, "mine"]).expect_ok("snapshot");
    write(&tg, 3, VM1, 0, 4096, 6).expect_ok("write after the snapshot");
    let r = run(&["volume", "clone", VM1, VM3, "--snapshot", "mine"]).expect_ok("clone");
    assert!(r.stdout.contains("cloned from /vm1-flat.vmdk"), "{r}");
    verify(&tg, 3, VM3, 0, MIB, 1);
    verify(&tg, 3, VM3, MIB, MIB, 5);

    // Errors: one line saying what, exit 1.
    for (args, needle) in [
        (vec!["volume", "clone", GOLD, VM1], "exists already"),
        (vec!["volume", "clone", GOLD, "/x.txt"], "not a volume name"),
        (
            vec!["volume", "clone", "/nope-flat.vmdk", "/y-flat.vmdk"],
            "not found",
        ),
        (
            vec!["volume", "clone", VM1, "/y-flat.vmdk", "--snapshot", "nope"],
            "has no snapshot \"nope\"",
        ),
        (vec!["volume", "template", GOLD], "a template already"),
    ] {
        let r = run(&args);
        assert_eq!(r.code(), 1, "{r}");
        assert!(r.stderr.contains(needle), "wanted {needle:?}: {r}");
    }

    let (vols, _) = listed(&bin, &data);
    assert_eq!(
        vols,
        [
            (GOLD.to_string(), true, "-".to_string(), 0),
            (VM1.to_string(), false, GOLD.to_string(), 1),
            (VM2.to_string(), false, GOLD.to_string(), 1),
            (VM3.to_string(), false, VM1.to_string(), 2),
        ]
    );
    let r = run(&["volume", "list"]).expect_ok("volume list");
    assert!(
        r.stdout.contains("template") && r.stdout.contains("clone (depth 2)"),
        "{r}"
    );

    // After a SIGKILL of Ganesha; then a backend restart of the grandchild.
    strata_sync_wait(&bin, &data);
    tg.gw_mut().kill_ganesha().expect("SIGKILL ganesha");
    tg.gw_mut().restart_ganesha().expect("restart");
    verify(&tg, 3, VM3, 0, MIB, 1);
    verify(&tg, 3, VM1, 0, 4096, 6);
    let w = tg.client(3, &["write3", GOLD, "0", "4096", "9"]);
    assert_eq!(
        w.num("nfsstat"),
        NFS3ERR_ROFS,
        "still a template after a restart: {w}"
    );
    let vm3 = ino(&tg, VM3);
    tg.gw_mut().kill_ganesha().expect("SIGKILL ganesha");
    std::fs::remove_dir_all(data.join("volumes").join(format!("{vm3:016x}")))
        .expect("drop the clone's local state");
    tg.gw_mut()
        .restart_ganesha()
        .expect("restart from the backend");
    verify(&tg, 3, VM3, 0, MIB, 1);
    verify(&tg, 4, VM3, MIB, MIB, 5);

    // The parent removed: its name goes at once, its data stays while clones read it.
    let gold = ino(&tg, GOLD);
    tg.client(3, &["unlink", GOLD])
        .expect_ok("unlink the template");
    let (_, hidden) = listed(&bin, &data);
    assert_eq!(hidden[0]["ino"], gold, "{hidden}");
    assert_eq!(
        hidden[0]["readers"],
        serde_json::json!([VM1, VM2, VM3]),
        "{hidden}"
    );
    let gold_on_backend = data
        .join("backend")
        .join("volumes")
        .join(format!("{gold:016x}"));
    assert!(gold_on_backend.exists());
    verify(&tg, 3, VM2, 0, 2 * MIB, 1);
    // Flatten the grandchild; remove the other clones: the parent's data is garbage and goes.
    let r = run(&["volume", "flatten", VM3]).expect_ok("flatten");
    assert!(r.stdout.contains("flattened"), "{r}");
    for p in [VM1, VM2] {
        tg.client(3, &["unlink", p]).expect_ok("unlink a clone");
    }
    strata_sync_wait(&bin, &data);
    let (vols, hidden) = listed(&bin, &data);
    assert_eq!(vols, [(VM3.to_string(), false, "-".to_string(), 0)]);
    assert_eq!(hidden, serde_json::json!([]));
    assert!(
        !gold_on_backend.exists(),
        "the parent's backend objects are deleted"
    );
    verify(&tg, 3, VM3, 0, MIB, 1);
    // The flattened clone comes back from its own backend namespace alone.
    tg.gw_mut().kill_ganesha().expect("SIGKILL ganesha");
    std::fs::remove_dir_all(data.join("volumes").join(format!("{vm3:016x}")))
        .expect("drop the local state");
    tg.gw_mut()
        .restart_ganesha()
        .expect("restart from the backend");
    verify(&tg, 3, VM3, 0, MIB, 1);
    verify(&tg, 3, VM3, MIB, MIB, 5);
}
