//! Issue 4's tests that only make sense for our FSAL: restart on the same data directory (data,
//! attributes and the same handle bytes), crash restart, bad STRATA parameters, the injected
//! panic switch, and the ESXi handle-size limit.

use strata_ganesha_conf::params::{ParamType, RawSetting, StrataSettings, PARAMS};
use strata_tests::*;

const MIB: u64 = 1 << 20;

/// Captures what a client sees of `path` over NFSv3: (stat line, handle hex).
fn snapshot(tg: &TestGateway, path: &str) -> (Run, String) {
    let st = tg.client(3, &["stat", path]).expect_ok("stat");
    let h = tg.client(3, &["handle", path]).expect_ok("handle");
    let hex = h.get("handle").expect("handle=");
    (st, hex)
}

fn assert_same_file(before: &Run, after: &Run) {
    for key in [
        "fileid", "size", "mode", "nlink", "uid", "gid", "mtime", "type",
    ] {
        assert_eq!(
            before.get(key),
            after.get(key),
            "{key}: {before} vs {after}"
        );
    }
}

fn restart_check(crash: bool) {
    let Some(mut tg) = TestGateway::strata() else {
        return;
    };
    tg.client(3, &["mkdir", "/dir"]).expect_ok("mkdir");
    tg.client(
        3,
        &["write", "/dir/data", "0", &(3 * MIB + 17).to_string(), "11"],
    )
    .expect_ok("write");
    tg.client(3, &["put", "/small", "small file"])
        .expect_ok("put");
    tg.client(3, &["symlink", "dir/data", "/ln"])
        .expect_ok("symlink");
    let (st_data, h_data) = snapshot(&tg, "/dir/data");
    let (st_dir, h_dir) = snapshot(&tg, "/dir");
    // ESXi's NFSv3 client accepts handles of at most 56 bytes.
    assert!(h_data.len() / 2 <= 56, "handle too long for ESXi: {h_data}");

    if crash {
        tg.gw_mut().kill_ganesha().expect("SIGKILL ganesha");
    }
    tg.gw_mut()
        .restart_ganesha()
        .expect("restart on the same data dir");

    let (st2, h2) = snapshot(&tg, "/dir/data");
    assert_same_file(&st_data, &st2);
    assert_eq!(h2, h_data, "same handle bytes after restart");
    let (st_dir2, h_dir2) = snapshot(&tg, "/dir");
    assert_eq!(st_dir.get("fileid"), st_dir2.get("fileid"));
    assert_eq!(h_dir, h_dir2);
    // The old handle bytes work directly (no lookup), over a fresh server.
    let g = tg
        .client(3, &["getattr-fh", &h_data])
        .expect_ok("GETATTR old handle");
    assert_eq!(g.get("fileid"), st_data.get("fileid"));
    assert_eq!(g.get("size"), st_data.get("size"));
    tg.client(
        3,
        &[
            "verify",
            "/dir/data",
            "0",
            &(3 * MIB + 17).to_string(),
            "11",
        ],
    )
    .expect_ok("data after restart");
    assert_eq!(
        tg.client(4, &["cat", "/small"]).expect_ok("cat").stdout,
        "small file"
    );
    let r = tg.client(3, &["readlink", "/ln"]).expect_ok("readlink");
    assert_eq!(r.get("target").as_deref(), Some("dir/data"));
    // New objects get new fileids (never reused).
    tg.client(3, &["put", "/new", "n"])
        .expect_ok("put after restart");
    let ids: Vec<u64> = ["/dir/data", "/dir", "/small", "/new"]
        .iter()
        .map(|p| tg.client(3, &["stat", p]).expect_ok("stat").num("fileid"))
        .collect();
    let mut uniq = ids.clone();
    uniq.sort_unstable();
    uniq.dedup();
    assert_eq!(uniq.len(), ids.len(), "fileids {ids:?}");
}

#[test]
fn restart_keeps_data_attributes_and_handles() {
    restart_check(false);
}

#[test]
fn sigkill_restart_keeps_committed_data_and_handles() {
    restart_check(true);
}

#[test]
fn removed_file_handle_is_stale_after_restart() {
    let Some(mut tg) = TestGateway::strata() else {
        return;
    };
    tg.client(3, &["put", "/gone", "x"]).expect_ok("put");
    let (_, h) = snapshot(&tg, "/gone");
    tg.client(3, &["unlink", "/gone"]).expect_ok("unlink");
    tg.gw_mut().restart_ganesha().expect("restart");
    let r = tg.client(3, &["getattr-fh", &h]);
    assert_eq!(
        r.get("nfsstat").as_deref(),
        Some("70"),
        "NFS3ERR_STALE: {r}"
    );
}

/// Starts a gateway whose STRATA block has one bad parameter; returns the outcome.
fn bad_param(name: &str, value: &str) {
    if !require_tools(GATEWAY_TOOLS) || !require_tool("nfs-ls") {
        return;
    }
    let dir = tempdir();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    let mut conf = strata_ganesha_conf::conf::GaneshaConf::strata_default(&data);
    if let Some(pairs) = conf.strata.as_mut() {
        match pairs.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value.to_string(),
            None => pairs.push((name.to_string(), value.to_string())),
        }
    }
    // The launcher renders the conf (adding Plugins_Dir, RecoveryRoot) into work/ganesha.conf:
    // line numbers are those of that file.
    let conf_file = dir.path().join("work/ganesha.conf");
    let line_of = || {
        let text = std::fs::read_to_string(&conf_file).expect("rendered conf");
        text.lines()
            .position(|l| l.trim_start().starts_with(&format!("{name} =")))
            .map(|i| i + 1)
            .expect("the bad parameter is in the rendered conf")
    };
    match TestGateway::launch(dir, data, conf, Some(plugin_dir())) {
        Ok(tg) => {
            let line = line_of();
            assert!(
                !tg.gw().export_errors().is_empty(),
                "the launcher must see the refused export"
            );
            // Ganesha runs, but without the export, and says why with the line number.
            let r = tg.run("nfs-ls", [tg.url(3, "/")]);
            assert!(!r.ok(), "{name} = {value}: the export must be refused: {r}");
            let r = tg.run("nfs-ls", [tg.url(4, "/")]);
            assert!(
                !r.ok(),
                "{name} = {value}: the export must be refused (v4): {r}"
            );
            let log = tg.log();
            let needle = format!(":{line}");
            assert!(
                log.lines()
                    .any(|l| l.contains("STRATA") && l.contains(&needle) && l.contains(name)),
                "{name} = {value}: no log line naming line {line}:\n{}",
                log.lines()
                    .filter(|l| l.contains("STRATA") || l.contains("onfig"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        Err(e) => {
            let line = line_of();
            // Ganesha refused to start: the log in the error must still name the line.
            let text = e.to_string();
            assert!(
                text.contains(&format!(":{line}")) && text.contains(name),
                "{name} = {value}: error without the line {line}: {text}"
            );
        }
    }
}

#[test]
fn bad_size_refuses_export_with_line() {
    bad_param("Extent_Cache_Size", "lots");
}

#[test]
fn bad_enum_refuses_export_with_line() {
    bad_param("Backend", "FTP");
}

#[test]
fn out_of_range_refuses_export_with_line() {
    bad_param("TLog_SCOs", "0");
}

#[test]
fn unknown_parameter_refuses_export_with_line() {
    bad_param("No_Such_Parameter", "1");
}

/// A value of the wrong form or out of range for each parameter type (None: every text is valid).
fn bad_value(ty: ParamType) -> Option<String> {
    match ty {
        ParamType::Path => Some("relative/path".to_string()),
        ParamType::Enum(_) => Some("NOT_AN_OPTION".to_string()),
        ParamType::Size { .. } => Some("lots".to_string()),
        ParamType::Count { max, .. } | ParamType::Seconds { max, .. } => {
            Some((max + 1).to_string())
        }
        ParamType::Text | ParamType::List => None,
    }
}

#[test]
fn every_parameter_with_a_bad_value_refuses_the_export_with_its_line() {
    let mut tested = 0;
    for p in PARAMS {
        let Some(value) = bad_value(p.ty) else {
            continue;
        };
        // The test's own premise, checked with the shared validator: this value is bad.
        let pairs = [
            RawSetting::new("Data_Dir", "/var/lib/strata", 2),
            RawSetting::new(p.name, &value, 3),
        ];
        let pairs = if p.name == "Data_Dir" {
            &pairs[1..]
        } else {
            &pairs[..]
        };
        assert!(
            StrataSettings::from_pairs(pairs, 1).is_err(),
            "{} = {value} should be invalid",
            p.name
        );
        bad_param(p.name, &value);
        tested += 1;
    }
    assert!(tested >= 10, "only {tested} parameters tested");
}

#[test]
fn injected_panic_gives_an_error_and_the_server_keeps_serving() {
    // Read by the FSAL at load time: ganesha.nfsd inherits this process's environment.
    // nextest runs each test in its own process, so this does not leak into other tests.
    std::env::set_var("STRATA_TEST_PANIC_NAME", "boom");
    let Some(tg) = TestGateway::strata() else {
        return;
    };
    std::env::remove_var("STRATA_TEST_PANIC_NAME");
    let pid = tg.gw().ganesha_pid();
    tg.client(3, &["put", "/fine", "still here"])
        .expect_ok("put");
    for v in [3, 4] {
        let r = tg.client(v, &["stat", "/boom"]);
        assert!(!r.ok(), "v{v}: lookup of the panic name must fail: {r}");
        assert_ne!(
            r.get("errno").as_deref(),
            Some("2"),
            "v{v}: not ENOENT: {r}"
        );
        // The very next requests are served.
        let r = tg.client(v, &["cat", "/fine"]).expect_ok("cat after panic");
        assert_eq!(r.stdout, "still here");
    }
    tg.client(3, &["put", "/after", "x"])
        .expect_ok("create after panic");
    assert!(pid_exists(pid), "ganesha.nfsd must survive the panic");
    assert_eq!(tg.gw().ganesha_pid(), pid);
    assert!(
        tg.log().contains("boom"),
        "the panic must be logged:\n{}",
        launcher_tail(&tg)
    );
}

fn launcher_tail(tg: &TestGateway) -> String {
    strata_ganesha_conf::launcher::log_tail(tg.gw().log_path())
}

#[test]
fn space_used_is_honest_and_grown_files_are_sparse() {
    let Some(tg) = TestGateway::strata() else {
        return;
    };
    tg.client(3, &["write", "/u", "0", &(16 * MIB).to_string(), "1"])
        .expect_ok("write");
    let st = tg.client(3, &["stat", "/u"]).expect_ok("stat");
    assert_eq!(st.num("size"), 16 * MIB);
    assert!(st.num("used") >= 16 * MIB, "space used: {st}");
    // ESXi creates thin disks with CREATE + SETATTR(size): O(1), no space used.
    tg.client(3, &["put", "/thin-flat.vmdk", ""])
        .expect_ok("create");
    tg.client(
        3,
        &["truncate", "/thin-flat.vmdk", &(1u64 << 30).to_string()],
    )
    .expect_ok("grow to 1 GiB");
    let st = tg.client(3, &["stat", "/thin-flat.vmdk"]).expect_ok("stat");
    assert_eq!(st.num("size"), 1 << 30);
    assert!(st.num("used") < MIB, "a grown file is sparse: {st}");
    tg.client(3, &["verify", "/thin-flat.vmdk", "0", "0", "0"])
        .expect_ok("zero-length verify");
}
