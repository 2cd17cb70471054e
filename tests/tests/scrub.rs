//! Issue 17's scrubbing and GC end to end: Ganesha with our FSAL, a volume overwritten over
//! NFS by the project's libnfs client, a snapshot and a clone of it, then `strata scrub
//! --wait` through the real management socket: the local backend shrinks to near the live
//! data, `strata volume info` shows what the pass did, and every view reads the same over
//! NFS — the volume after a backend restart (its reads go to the compacted objects), the clone,
//! and a new clone of the snapshot (rebuilt from the backend).

use std::path::Path;

use strata_tests::*;

const MIB: u64 = 1 << 20;
const CHUNK: u64 = 64 << 10;
const SIZE: u64 = 8 * MIB;
const VOL: &str = "/disk-flat.vmdk";
const CLONE: &str = "/clone-flat.vmdk";
const LATE: &str = "/late-flat.vmdk";

use strata_tests::{stdout_json as json, strata_at as strata};

/// The pattern seed of every 64 KiB chunk of a volume, as written.
struct Oracle(Vec<u64>);

impl Oracle {
    fn write(&mut self, tg: &TestGateway, path: &str, off: u64, len: u64, seed: u64) {
        let (o, l, s) = (off.to_string(), len.to_string(), seed.to_string());
        tg.client(3, &["write", path, &o, &l, &s])
            .expect_ok(&format!("write {path} at {off}"));
        for c in off / CHUNK..(off + len) / CHUNK {
            self.0[c as usize] = seed;
        }
    }

    /// Reads the whole volume over NFS and compares, one read per run of chunks of one seed.
    fn verify(&self, tg: &TestGateway, v: u8, path: &str) {
        let mut c = 0;
        while c < self.0.len() {
            let seed = self.0[c];
            let mut e = c + 1;
            while e < self.0.len() && self.0[e] == seed {
                e += 1;
            }
            let (o, l) = (c as u64 * CHUNK, (e - c) as u64 * CHUNK);
            tg.client(
                v,
                &[
                    "verify",
                    path,
                    &o.to_string(),
                    &l.to_string(),
                    &seed.to_string(),
                ],
            )
            .expect_ok(&format!("verify {path} at {o} over NFSv{v}"));
            c = e;
        }
    }
}

fn ino(tg: &TestGateway, path: &str) -> u64 {
    tg.client(3, &["stat", path])
        .expect_ok("stat")
        .num("fileid")
}

/// The gateway of these tests: uploads within a second, garbage deleted at once, no
/// background passes, 1 MiB SCOs, and `extra` parameters.
fn gateway(extra: &[(&str, &str)]) -> Option<TestGateway> {
    TestGateway::strata_with(|c| {
        if let Some(pairs) = c.strata.as_mut() {
            for (k, v) in [
                ("SCO_Max_Age", "1"),
                ("GC_Grace", "0"),
                ("Scrub_Interval", "0"),
                ("SCO_Size", "1M"),
            ]
            .iter()
            .chain(extra)
            {
                pairs.push(((*k).into(), (*v).into()));
            }
        }
    })
}

/// Heavy overwrites of VOL, snapshot `mid`, CLONE of it, more overwrites of both, all on the
/// backend. Returns the oracles of VOL, `mid` and CLONE.
fn scenario(tg: &TestGateway, bin: &Path) -> (Oracle, Oracle, Oracle) {
    let data = tg.data_dir.clone();
    let run = |args: &[&str]| strata(bin, &data, args);
    let chunks = (SIZE / CHUNK) as usize;
    let mut vol = Oracle(vec![0; chunks]);
    for seed in 1..=3 {
        vol.write(tg, VOL, 0, SIZE, seed);
    }
    for k in 0..24u64 {
        vol.write(tg, VOL, (k * 37 % 128) * CHUNK, CHUNK, 100 + k);
    }
    run(&["snapshot", "create", VOL, "mid"]).expect_ok("snapshot");
    let mid = Oracle(vol.0.clone());
    run(&["volume", "clone", VOL, CLONE, "--snapshot", "mid"]).expect_ok("clone");
    let mut clone = Oracle(mid.0.clone());
    clone.write(tg, CLONE, 0, MIB, 30);
    vol.write(tg, VOL, 0, SIZE, 20);
    for k in 0..24u64 {
        vol.write(tg, VOL, (k * 53 % 128) * CHUNK, CHUNK, 200 + k);
    }
    strata_sync_wait(bin, &data);
    (vol, mid, clone)
}

/// Backend bytes of the volumes at `paths`.
fn backend_bytes(tg: &TestGateway, paths: &[&str]) -> u64 {
    let backend = tg.data_dir.join("backend").join("volumes");
    paths
        .iter()
        .map(|p| tree_bytes(&backend.join(format!("{:016x}", ino(tg, p)))))
        .sum()
}

#[test]
fn a_scrub_through_the_gateway_frees_the_backend_and_every_view_reads_the_same() {
    let Some(bin) = strata_cli() else {
        return;
    };
    let Some(mut tg) = gateway(&[]) else {
        return;
    };
    let data = tg.data_dir.clone();
    let run = |args: &[&str]| strata(&bin, &data, args);
    // Heavy overwrites: the whole volume three times, then scattered pieces.
    let (vol, mid, clone) = scenario(&tg, &bin);
    let v_ino = ino(&tg, VOL);
    let bytes = || backend_bytes(&tg, &[VOL, CLONE]);
    let before = bytes();

    let r = run(&["scrub", VOL, "--wait", "--json"]).expect_ok("scrub");
    let j = json(&r);
    assert_eq!(j[0]["state"], "done", "{r}");
    assert_eq!(j[0]["kind"], "scrub", "{r}");
    let s = &j[1]["scrub"];
    assert!(s["scos_compacted"].as_u64() > Some(0), "{r}");
    assert!(s["objects_deleted"].as_u64() > Some(0), "{r}");
    assert_eq!(s["passes"], 1, "{r}");
    // The clone's own garbage too; every volume at once, as a job that is listed.
    let r = run(&["scrub", "--wait"]).expect_ok("scrub everything");
    assert!(r.stdout.contains("scrub of every volume done"), "{r}");
    let r = run(&["job", "list", "--json"]).expect_ok("job list");
    assert!(r.stdout.contains("\"scrub\""), "{r}");
    let r = run(&["volume", "info", VOL]).expect_ok("volume info");
    assert!(r.stdout.contains("SCOs compacted"), "{r}");

    // Live: the volume (8 MiB), the snapshot (8 MiB, nothing shared with the volume now), the
    // clone's own MiB. Metadata allowance: TLogs, checkpoints, manifests.
    let after = bytes();
    let live = 17 * MIB;
    eprintln!("backend {before} -> {after} bytes for {live} live");
    assert!(
        after <= live + live / 4 + 2 * MIB,
        "backend {after} bytes for {live} live (was {before})"
    );
    assert!(after < before, "{after} < {before}");

    vol.verify(&tg, 3, VOL);
    clone.verify(&tg, 4, CLONE);
    // The snapshot as a new clone sees it (rebuilt from the backend as of the snapshot).
    run(&["volume", "clone", VOL, LATE, "--snapshot", "mid"]).expect_ok("clone after scrub");
    mid.verify(&tg, 3, LATE);
    // A backend restart of the volume: its reads now go to the compacted objects.
    restart_from_backend(&mut tg, v_ino);
    vol.verify(&tg, 3, VOL);
    clone.verify(&tg, 3, CLONE);
}

/// SIGKILL of Ganesha, the volume `ino`'s local state removed, Ganesha started again: the
/// volume comes back from the backend alone.
fn restart_from_backend(tg: &mut TestGateway, ino: u64) {
    tg.gw_mut().kill_ganesha().expect("SIGKILL ganesha");
    std::fs::remove_dir_all(tg.data_dir.join("volumes").join(format!("{ino:016x}")))
        .expect("drop the volume's local state");
    tg.gw_mut()
        .restart_ganesha()
        .expect("restart from the backend");
}

/// `strata job show ID --json` as JSON.
fn job(bin: &Path, data: &Path, id: u64) -> serde_json::Value {
    json(&strata(bin, data, &["job", "show", &id.to_string(), "--json"]).expect_ok("job show"))
}

#[test]
fn sigkill_of_ganesha_during_a_scrub_loses_nothing_and_the_next_pass_finishes() {
    let Some(bin) = strata_cli() else {
        return;
    };
    // Slow enough that a pass is still running when it is killed.
    let Some(mut tg) = gateway(&[("Scrub_Bandwidth", "4M")]) else {
        return;
    };
    let data = tg.data_dir.clone();
    let run = |args: &[&str]| strata(&bin, &data, args);
    let (vol, mid, clone) = scenario(&tg, &bin);
    // SIGKILL once the pass has compacted `k` SCOs (observed through the job's progress).
    for k in [1u64, 4] {
        let j = json(&run(&["scrub", VOL, "--json"]).expect_ok("scrub"));
        let id = j[0]["id"].as_u64().unwrap_or_else(|| panic!("{j}"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let s = job(&bin, &data, id);
            if s["state"] != "running" {
                panic!("the pass ended before it was killed (k = {k}): {s}");
            }
            if s["done"].as_u64() > Some(k) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no progress: {s}");
        }
        tg.gw_mut().kill_ganesha().expect("SIGKILL ganesha");
        tg.gw_mut().restart_ganesha().expect("restart");
        vol.verify(&tg, 3, VOL);
        clone.verify(&tg, 3, CLONE);
    }
    // The next pass finishes the work and collects what the killed ones left.
    let r = run(&["scrub", VOL, "--wait", "--json"]).expect_ok("scrub");
    let j = json(&r);
    assert_eq!(j[0]["state"], "done", "{r}");
    assert_eq!(j[1]["scrub"]["garbage_objects"], 0, "{r}");
    run(&["scrub", CLONE, "--wait"]).expect_ok("scrub the clone");
    let live = 17 * MIB;
    let after = backend_bytes(&tg, &[VOL, CLONE]);
    assert!(
        after <= live + live / 4 + 2 * MIB,
        "{after} bytes for {live} live"
    );
    // Every view, read from the backend.
    let v_ino = ino(&tg, VOL);
    restart_from_backend(&mut tg, v_ino);
    vol.verify(&tg, 3, VOL);
    clone.verify(&tg, 4, CLONE);
    run(&["volume", "clone", VOL, LATE, "--snapshot", "mid"]).expect_ok("clone after scrub");
    mid.verify(&tg, 3, LATE);
}
