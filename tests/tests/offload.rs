//! Issue 20's VAAI-NAS-style offload verbs end to end: a real gateway, its management socket
//! through `strata offload ...`, the data read back over NFS with the libnfs client. A fast
//! clone reads as its source and shares all of it (extended statistics: nothing unshared until
//! it writes, then exactly the clusters it wrote); a full clone reads as its source and reads
//! nothing of it (still right after the source is removed); a reserve shows in `strata volume
//! info`; bad requests are refused with one line and change nothing.

use strata_tests::{stdout_json as json, strata_at as strata, *};

const MIB: u64 = 1 << 20;
const SRC: &str = "/vm1-flat.vmdk";
const FAST: &str = "/fast-flat.vmdk";
const FULL: &str = "/full-flat.vmdk";

fn verify(tg: &TestGateway, path: &str, off: u64, len: u64, seed: u64) {
    tg.client(
        3,
        &[
            "verify",
            path,
            &off.to_string(),
            &len.to_string(),
            &seed.to_string(),
        ],
    )
    .expect_ok(&format!("verify {path} {off}+{len} seed {seed}"));
}

#[test]
fn fast_and_full_clones_reserve_and_extended_statistics_through_the_socket() {
    let Some(bin) = strata_cli() else {
        return;
    };
    let Some(tg) = TestGateway::strata_with_params(&[("SCO_Max_Age", "1")]) else {
        return;
    };
    let data = tg.data_dir.clone();
    let run = |args: &[&str]| strata(&bin, &data, args);
    let stats =
        |path: &str| json(&run(&["offload", "stats", path, "--json"]).expect_ok("offload stats"));
    tg.client(3, &["write", SRC, "0", &(4 * MIB).to_string(), "1"])
        .expect_ok("write the source");
    let s = stats(SRC);
    assert_eq!(
        (
            &s["size"],
            &s["used_bytes"],
            &s["unshared_bytes"],
            &s["shared_bytes"]
        ),
        (
            &(4 * MIB).into(),
            &(4 * MIB).into(),
            &(4 * MIB).into(),
            &0.into()
        ),
        "a volume that is no clone shares nothing: {s}"
    );
    assert_eq!(s["ancestors"], 0, "{s}");

    // Fast clone: reads as the source, shares every byte until it writes.
    let r = json(&run(&["offload", "clone", SRC, FAST, "--json"]).expect_ok("fast clone"));
    assert!(r["flatten"].is_null(), "{r}");
    assert_eq!(r["clone"]["source"], SRC, "{r}");
    verify(&tg, FAST, 0, 4 * MIB, 1);
    let s = stats(FAST);
    assert_eq!(
        (
            &s["used_bytes"],
            &s["unshared_bytes"],
            &s["shared_bytes"],
            &s["ancestors"]
        ),
        (&(4 * MIB).into(), &0.into(), &(4 * MIB).into(), &1.into()),
        "{s}"
    );
    // Two clusters written: exactly those are its own.
    tg.client(3, &["write", FAST, "4096", "8192", "2"])
        .expect_ok("write the clone");
    let s = stats(FAST);
    assert_eq!(
        (&s["unshared_bytes"], &s["shared_bytes"]),
        (&8192.into(), &(4 * MIB - 8192).into()),
        "{s}"
    );
    verify(&tg, FAST, 4096, 8192, 2);
    verify(&tg, SRC, 0, 4 * MIB, 1);

    // Full clone: a clone then a flatten, done when answered; it shares nothing, and reads
    // right once the source is gone.
    let r = json(&run(&["offload", "clone", "--full", SRC, FULL, "--json"]).expect_ok("full"));
    assert_eq!(r["flatten"]["state"], "done", "{r}");
    let s = stats(FULL);
    assert_eq!(
        (
            &s["used_bytes"],
            &s["unshared_bytes"],
            &s["shared_bytes"],
            &s["ancestors"]
        ),
        (&(4 * MIB).into(), &(4 * MIB).into(), &0.into(), &0.into()),
        "{s}"
    );
    // The snapshot the full clone took on its source went with its job (it would keep the
    // source's old data forever); the fast clone's stays (the clone reads it).
    let snaps = json(&run(&["snapshot", "list", SRC, "--json"]).expect_ok("snapshots"));
    let n = snaps["snapshots"].as_array().map(Vec::len);
    assert_eq!(n, Some(1), "only the fast clone's snapshot: {snaps}");
    tg.client(3, &["unlink", SRC])
        .expect_ok("remove the source");
    verify(&tg, FULL, 0, 4 * MIB, 1);
    verify(&tg, FAST, 0, 4096, 1);

    // Reserve: the whole volume allocated, shown by `strata volume info` and the statistics.
    run(&["volume", "create", "/thick-flat.vmdk", "64M"]).expect_ok("volume create");
    let v = json(&run(&["offload", "reserve", "/thick-flat.vmdk", "--json"]).expect_ok("reserve"));
    assert_eq!(v["reserved_bytes"], 64 * MIB, "{v}");
    let info =
        json(&run(&["volume", "info", "/thick-flat.vmdk", "--json"]).expect_ok("volume info"));
    assert_eq!(
        (&info["reserved_bytes"], &info["space_used"]),
        (&(64 * MIB).into(), &0.into()),
        "{info}"
    );
    assert_eq!(stats("/thick-flat.vmdk")["reserved_bytes"], 64 * MIB);

    // Refusals: one line saying what, exit 1, nothing made.
    tg.client(3, &["put", "/notes.txt", "x"])
        .expect_ok("a regular file");
    for (args, needle) in [
        (vec!["offload", "stats", "/notes.txt"], "not a volume"),
        (vec!["offload", "reserve", "/nope-flat.vmdk"], "not found"),
        (vec!["offload", "clone", FULL, FAST], "exists already"),
        (
            vec!["offload", "clone", "--full", FULL, "/copy.txt"],
            "not a volume name",
        ),
        (vec!["offload", "clone", SRC, "/new-flat.vmdk"], "not found"),
    ] {
        let r = run(&args);
        assert_eq!(r.code(), 1, "{r}");
        assert!(r.stderr.contains(needle), "wanted {needle:?}: {r}");
    }
    let ls = tg.client(3, &["ls", "/"]).expect_ok("ls");
    for absent in ["copy.txt", "new-flat.vmdk"] {
        assert!(!ls.stdout.contains(absent), "{absent} was made: {ls}");
    }
}
