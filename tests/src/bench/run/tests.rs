//! The run's pure parts: parsing, tallies, usage.

use super::system::parse_qemu_secs;
use super::target::{dir_usage, mem_conf, vm_hwm_kib, IoTally};
use strata_tests::TestGateway;
use strata_tests::{require_tools, GATEWAY_TOOLS};

#[test]
fn parses_qemu_img_bench_output() {
    let out = "Sending 100 write requests, 65536 bytes each, 16 in parallel (starting at \
               offset 0, step size 65536)\nSending flush every 16 requests\n\
               Run completed in 0.083 seconds.\n";
    assert_eq!(parse_qemu_secs(out), Some(0.083));
    assert_eq!(parse_qemu_secs("nothing"), None);
}

#[test]
fn io_tally_needs_every_run() {
    let mut t = IoTally::default();
    t.add(Some(100), Some(300), 100);
    t.add(Some(300), Some(400), 100);
    assert_eq!(t.ratio(), Some(1.5));
    t.add(None, Some(1), 100);
    t.add(Some(0), Some(100), 100);
    assert_eq!(t.ratio(), None, "one unmeasured run spoils the total");
}

#[test]
fn reads_own_peak_rss_and_dir_usage() {
    assert!(vm_hwm_kib(std::process::id()).is_some_and(|k| k > 0));
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(d.path().join("a/b")).expect("mkdir");
    std::fs::write(d.path().join("a/b/x"), [0u8; 10]).expect("write");
    std::fs::write(d.path().join("y"), [0u8; 5]).expect("write");
    let (files, bytes, alloc) = dir_usage(d.path());
    assert_eq!((files, bytes), (2, 15));
    assert!(alloc >= 15, "{alloc}");
    assert_eq!(dir_usage(&d.path().join("missing")), (0, 0, 0));
}

/// The MEM export as the benchmark renders it is accepted by ganesha.nfsd and keeps data:
/// with Inode_Size not in effect (e.g. rendered into the export's FSAL block, where
/// Ganesha does not read it), MEM would return filler bytes instead of what was written.
#[test]
fn mem_export_keeps_written_data() {
    if !require_tools(GATEWAY_TOOLS) || !require_tools(&["nfs-cp", "nfs-cat"]) {
        return;
    }
    let dir = strata_tests::tempdir();
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&data_dir).expect("mkdir");
    let conf = mem_conf(&data_dir);
    let text = conf.render();
    assert!(
        text.contains("MEM {\n    Inode_Size = 2097152;\n}"),
        "{text}"
    );
    let src = dir.path().join("src.txt");
    std::fs::write(&src, b"strata bench MEM check\n").expect("write");
    let tg = TestGateway::launch(dir, data_dir, conf, None).expect("start MEM gateway");
    let url = tg.url(3, "/x.txt");
    tg.run("nfs-cp", [src.to_str().expect("utf-8 path"), &url])
        .expect_ok("nfs-cp");
    let r = tg.run("nfs-cat", [&url]).expect_ok("nfs-cat");
    assert_eq!(r.stdout, "strata bench MEM check\n");
}
