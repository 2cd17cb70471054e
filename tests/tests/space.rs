//! Issue 19's space operations end to end: Ganesha with our FSAL and the project's own NFSv4.2
//! client (`strata-nfs42-client`): DEALLOCATE reads as zeros at once and after a SIGKILL of
//! Ganesha, ALLOCATE grows the file, SEEK finds exactly the data written on a sparse volume
//! and a sparse regular file; holes and zero writes lower the space `strata volume info`
//! shows at once and the backend's after a scrub; on a clone they read as zeros, not as the
//! parent's data, and a snapshot taken before keeps its view.

use std::path::Path;

use strata_tests::{stdout_json as json, strata_at as strata, *};

const MIB: u64 = 1 << 20;
const VOL: &str = "/disk.raw";
const FILE: &str = "/notes.bin";

/// Runs the NFSv4.2 client on `path` with `cmds` and panics unless every command met its
/// expectation.
fn nfs4(tg: &TestGateway, path: &str, cmds: &str) -> Run {
    let mut args: Vec<&str> = vec![path];
    args.extend(cmds.split_whitespace());
    tg.nfs42(&args).expect_ok(&format!("nfs4 {path} {cmds}"))
}

/// `key=` of the output line of the command numbered `n` (0-based) of a run.
fn field(r: &Run, n: usize, key: &str) -> u64 {
    let line = r
        .stdout
        .lines()
        .filter(|l| l.contains("op="))
        .nth(n)
        .unwrap_or_else(|| panic!("no line {n}: {r}"));
    kv_line(line)
        .get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in line {n} ({line}): {r}"))
}

/// The gateway of these tests: uploads within a second, garbage deleted at once, no
/// background scrub, 1 MiB SCOs (so a hole empties whole SCOs).
fn gateway() -> Option<TestGateway> {
    TestGateway::strata_with(|c| {
        if let Some(pairs) = c.strata.as_mut() {
            for (k, v) in [
                ("SCO_Max_Age", "1"),
                ("GC_Grace", "0"),
                ("Scrub_Interval", "0"),
                ("SCO_Size", "1M"),
            ] {
                pairs.push((k.into(), v.into()));
            }
        }
    })
}

fn volume_info(bin: &Path, data: &Path, path: &str) -> serde_json::Value {
    json(&strata(bin, data, &["volume", "info", path, "--json"]).expect_ok("volume info"))
}

#[test]
fn deallocate_allocate_and_seek_through_ganesha_on_a_volume_and_a_file() {
    let Some(bin) = strata_cli() else {
        return;
    };
    let Some(mut tg) = gateway() else {
        return;
    };
    let data = tg.data_dir.clone();
    // A sparse volume: 64 KiB at 0, 64 KiB at 1 MiB, grown to 4 MiB by ALLOCATE.
    let r = nfs4(
        &tg,
        VOL,
        "create write 0 65536 1 write 1048576 65536 2 allocate 0 4194304 getattr \
         seek data 0 seek hole 0 seek data 65536 seek hole 1048576 seek data 1114112 \
         expect=NFS4ERR_NXIO seek data 4194304",
    );
    assert_eq!(field(&r, 4, "size"), 4 * MIB, "ALLOCATE grew the volume");
    assert_eq!(field(&r, 5, "offset"), 0);
    assert_eq!(field(&r, 6, "offset"), 65_536);
    assert_eq!(field(&r, 7, "offset"), MIB);
    assert_eq!(field(&r, 8, "offset"), MIB + 65_536);
    assert_eq!(field(&r, 9, "eof"), 1, "no data after the second piece");
    let info = volume_info(&bin, &data, VOL);
    assert_eq!(info["space_used"], 2 * 65_536, "{info}");
    // DEALLOCATE: zeros at once, the space gone at once.
    let r = nfs4(
        &tg,
        VOL,
        "open deallocate 0 65536 readz 0 65536 read 1048576 65536 2 seek data 0",
    );
    assert_eq!(field(&r, 4, "offset"), MIB);
    let info = volume_info(&bin, &data, VOL);
    assert_eq!(info["space_used"], 65_536, "{info}");
    assert!(info["clusters_unmapped"].as_u64() >= Some(16), "{info}");

    // A sparse regular file: SEEK at the 1 MiB extents' granularity.
    let r = nfs4(
        &tg,
        FILE,
        "create write 0 65536 3 write 3145728 65536 4 seek data 0 seek hole 0 \
         seek data 1048576 deallocate 0 4096 readz 0 4096 read 3145728 65536 4",
    );
    assert_eq!(field(&r, 3, "offset"), 0);
    assert_eq!(field(&r, 4, "offset"), MIB);
    assert_eq!(field(&r, 5, "offset"), 3 * MIB);

    // SIGKILL: the answered DEALLOCATEs stay (durable when answered).
    tg.gw_mut().kill_ganesha().expect("SIGKILL ganesha");
    tg.gw_mut().restart_ganesha().expect("restart");
    nfs4(&tg, VOL, "open readz 0 65536 read 1048576 65536 2 getattr");
    nfs4(&tg, FILE, "open readz 0 4096");
    let info = volume_info(&bin, &data, VOL);
    assert_eq!(info["space_used"], 65_536, "after the restart: {info}");
}

#[test]
fn holes_and_zero_writes_free_the_backend_after_a_scrub_and_clones_read_zeros() {
    let Some(bin) = strata_cli() else {
        return;
    };
    let Some(tg) = gateway() else {
        return;
    };
    let data = tg.data_dir.clone();
    let run = |args: &[&str]| strata(&bin, &data, args);
    nfs4(
        &tg,
        VOL,
        "create write 0 4194304 5 write 4194304 2097152 7 write 6291456 2097152 8",
    );
    strata_sync_wait(&bin, &data);
    let ino = tg.client(3, &["stat", VOL]).expect_ok("stat").num("fileid");
    let objects = data
        .join("backend")
        .join("volumes")
        .join(format!("{ino:016x}"));
    let before = tree_bytes(&objects);
    // Half by DEALLOCATE, a quarter by writing zeros (zero detection).
    nfs4(
        &tg,
        VOL,
        "open deallocate 0 4194304 writez 4194304 2097152 readz 0 6291456 \
         read 6291456 2097152 8",
    );
    let info = volume_info(&bin, &data, VOL);
    assert_eq!(info["space_used"], 2 * MIB, "{info}");
    strata_sync_wait(&bin, &data);
    run(&["scrub", VOL, "--wait"]).expect_ok("scrub");
    let after = tree_bytes(&objects);
    assert!(
        after < before / 2,
        "the volume's backend did not give the space back: {before} -> {after} bytes"
    );
    nfs4(&tg, VOL, "open readz 0 6291456 read 6291456 2097152 8");

    // A snapshot taken before a hole keeps its view: a clone of it made after reads the data.
    nfs4(&tg, "/src.raw", "create write 0 4194304 6");
    run(&["snapshot", "create", "/src.raw", "before"]).expect_ok("snapshot");
    nfs4(&tg, "/src.raw", "open deallocate 0 1048576 readz 0 1048576");
    run(&[
        "volume",
        "clone",
        "/src.raw",
        "/clone.raw",
        "--snapshot",
        "before",
    ])
    .expect_ok("clone");
    nfs4(&tg, "/clone.raw", "open read 0 4194304 6");
    // On the clone, a hole and zeros read as zeros, not as the parent's data.
    nfs4(
        &tg,
        "/clone.raw",
        "open deallocate 0 1048576 writez 1048576 1048576 readz 0 2097152",
    );
    let info = volume_info(&bin, &data, "/clone.raw");
    assert_eq!(info["space_used"], 2 * MIB, "{info}");
    nfs4(&tg, "/src.raw", "open readz 0 1048576");
}

/// QEMU's own NFSv3 driver: zeros it writes (`write -z`, which that driver turns into WRITEs of
/// zeros) give the space back through zero detection, and `qemu-img map` of the sparse volume
/// still covers it whole (that driver reports no holes: unchanged).
#[test]
fn qemu_zero_writes_over_nfsv3_free_space_and_qemu_img_map_covers_the_volume() {
    if !require_tools(&["qemu-img", "qemu-io"]) {
        return;
    }
    let Some(bin) = strata_cli() else {
        return;
    };
    let Some(tg) = gateway() else {
        return;
    };
    let data = tg.data_dir.clone();
    let url = tg.qemu_url("/sparse.raw");
    let qemu = |args: &[&str]| tg.run(args[0], &args[1..]).expect_ok(&args.join(" "));
    qemu(&["qemu-img", "create", "-f", "raw", &url, "16M"]);
    qemu(&[
        "qemu-io",
        "-f",
        "raw",
        "-c",
        "write -P 0x5a 0 4M",
        "-c",
        "flush",
        &url,
    ]);
    let info = volume_info(&bin, &data, "/sparse.raw");
    assert_eq!(info["space_used"], 4 * MIB, "{info}");
    qemu(&[
        "qemu-io",
        "-f",
        "raw",
        "-c",
        "write -z 0 2M",
        "-c",
        "flush",
        "-c",
        "read -P 0 0 2M",
        "-c",
        "read -P 0x5a 2M 2M",
        &url,
    ]);
    let info = volume_info(&bin, &data, "/sparse.raw");
    assert_eq!(info["space_used"], 2 * MIB, "zeros unmapped: {info}");
    let r = qemu(&["qemu-img", "map", "--output=json", "-f", "raw", &url]);
    let map: serde_json::Value = serde_json::from_str(&r.stdout).expect("map JSON");
    let covered: u64 = map
        .as_array()
        .expect("map entries")
        .iter()
        .map(|e| e["length"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(covered, 16 * MIB, "{r}");
}
