//! The launcher's own tests, on Ganesha's VFS FSAL (no dependency on our FSAL): start in a
//! private namespace, serve a real client, restart, crash, detach, stop without leaks.

use std::time::Duration;

use strata_ganesha_conf::launcher::{
    self, detached_status, stop_detached, Gateway, LaunchError, LaunchOptions, NamespaceMode,
};
use strata_tests::*;

fn all_gone(pids: &[u32]) -> bool {
    poll_until(Duration::from_secs(5), || {
        pids.iter().all(|p| !pid_exists(*p))
    })
}

#[test]
fn vfs_export_serves_nfs_ls_and_stop_leaks_nothing() {
    if !require_tool("nfs-ls") {
        return;
    }
    let Some(mut tg) = TestGateway::vfs() else {
        return;
    };
    std::fs::write(tg.data_dir.join("hello.txt"), b"hello\n").expect("write");
    let pids = tg.gw().pids();
    assert_eq!(pids.len(), 3, "holder, rpcbind and ganesha: {pids:?}");
    assert!(tg.log().contains("NFS SERVER INITIALIZED"));
    assert_eq!(tg.gw().export_errors(), Vec::<String>::new());
    for v in [3, 4] {
        let r = tg.run("nfs-ls", [tg.url(v, "/")]).expect_ok("nfs-ls");
        assert!(r.stdout.contains("hello.txt"), "v{v}: {r}");
    }
    // The namespace is private: the host's loopback has no NFS server of ours.
    let conf = std::fs::read_to_string(tg.gw().conf_path()).expect("conf");
    assert!(conf.contains("Graceless = true"), "{conf}");
    assert!(conf.contains("RecoveryRoot"), "{conf}");
    let gone = tg.stop();
    assert!(all_gone(&gone), "processes left after stop: {gone:?}");
}

#[test]
fn kill_and_restart_ganesha() {
    if !require_tool("nfs-ls") {
        return;
    }
    let Some(mut tg) = TestGateway::vfs() else {
        return;
    };
    std::fs::write(tg.data_dir.join("f"), b"x").expect("write");
    let first = tg.gw().ganesha_pid();
    tg.gw_mut().kill_ganesha().expect("kill");
    assert!(!pid_exists(first), "ganesha {first} survived SIGKILL");
    assert_eq!(tg.gw().ganesha_pid(), 0);
    tg.gw_mut().restart_ganesha().expect("restart after kill");
    let second = tg.gw().ganesha_pid();
    assert_ne!(second, first);
    tg.run("nfs-ls", [tg.url(3, "/")])
        .expect_ok("nfs-ls after restart");
    // A graceful restart while running.
    tg.gw_mut().restart_ganesha().expect("restart");
    assert!(!pid_exists(second));
    let r = tg.run("nfs-ls", [tg.url(4, "/")]).expect_ok("nfs-ls v4");
    assert!(r.stdout.contains(" f"), "{r}");
    let gone = tg.stop();
    assert!(all_gone(&gone), "{gone:?}");
}

#[test]
fn drop_stops_everything() {
    let Some(tg) = TestGateway::vfs() else { return };
    let pids = tg.gw().pids();
    drop(tg);
    assert!(all_gone(&pids), "processes left after drop: {pids:?}");
}

#[test]
fn detach_status_and_stop_detached() {
    if !require_tools(GATEWAY_TOOLS) {
        return;
    }
    let dir = tempdir();
    let export = dir.path().join("export");
    std::fs::create_dir_all(&export).expect("mkdir");
    let work = dir.path().join("work");
    let gw = Gateway::start(LaunchOptions {
        work_dir: work.clone(),
        conf: vfs_conf(&export),
        plugin_dir: None,
        namespace: NamespaceMode::Private,
        ready_timeout: READY_TIMEOUT,
        s3_server: None,
    })
    .expect("start");
    let pids = gw.pids();
    let ganesha = gw.ganesha_pid();
    let state = gw.detach().expect("detach");
    assert!(state.is_file());
    assert!(
        pids.iter().all(|p| pid_exists(*p)),
        "detach must leave them running"
    );
    let st = detached_status(&work).expect("status");
    assert!(st.running(), "{st}");
    assert_eq!(st.ganesha_pid(), Some(ganesha));
    assert_eq!(st.namespace, NamespaceMode::Private);
    stop_detached(&work).expect("stop_detached");
    assert!(all_gone(&pids), "left after stop_detached: {pids:?}");
    assert!(!state.exists(), "state file removed");
    assert!(matches!(
        detached_status(&work),
        Err(LaunchError::NotRunning(_))
    ));
    assert!(matches!(
        stop_detached(&work),
        Err(LaunchError::NotRunning(_))
    ));
}

#[test]
fn missing_plugin_is_a_clear_error() {
    if !require_tools(GATEWAY_TOOLS) {
        return;
    }
    let dir = tempdir();
    let empty = dir.path().join("no-plugin-here");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let conf = strata_ganesha_conf::conf::GaneshaConf::strata_default(&dir.path().join("data"));
    let err = Gateway::start(LaunchOptions {
        work_dir: dir.path().join("work"),
        conf,
        plugin_dir: Some(empty.clone()),
        namespace: NamespaceMode::Private,
        ready_timeout: READY_TIMEOUT,
        s3_server: None,
    })
    .expect_err("must refuse");
    assert!(
        matches!(&err, LaunchError::MissingPlugin(p) if p.starts_with(&empty)),
        "{err}"
    );
}

#[test]
fn ganesha_startup_failure_reports_the_log() {
    if !require_tools(GATEWAY_TOOLS) {
        return;
    }
    let dir = tempdir();
    let export = dir.path().join("export");
    std::fs::create_dir_all(&export).expect("mkdir");
    let mut conf = vfs_conf(&export);
    // Two exports with the same id: Ganesha refuses the configuration.
    let dup = conf.exports[0].clone();
    conf.exports.push(dup);
    let res = Gateway::start(LaunchOptions {
        work_dir: dir.path().join("work"),
        conf,
        plugin_dir: None,
        namespace: NamespaceMode::Private,
        ready_timeout: Duration::from_secs(20),
        s3_server: None,
    });
    match res {
        Err(LaunchError::EarlyExit { tail, .. }) | Err(LaunchError::Timeout { tail, .. }) => {
            eprintln!("refused as expected; log tail:\n{tail}");
            assert!(!tail.is_empty(), "error must quote the log");
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(gw) => {
            // Ganesha 4.3 may start and only drop the duplicate export: then the log says so.
            let log = gw.log_text();
            gw.stop().expect("stop");
            assert!(
                log.contains("Duplicate") || log.contains("duplicate") || log.contains("already"),
                "a duplicate Export_Id must at least be logged:\n{log}"
            );
        }
    }
}

#[test]
fn find_in_path_finds_sbin_tools() {
    assert!(launcher::find_in_path("sh").is_some());
    assert!(launcher::find_in_path("no-such-tool-strata").is_none());
}

/// Host mode is what `strata up` uses. To test it without touching this machine's network, the
/// test re-runs itself (`host_mode_inner`) inside `unshare --net --mount`, where "the host" is
/// a throw-away namespace with its own loopback and /run.
#[test]
fn host_mode_in_a_throwaway_namespace() {
    if !require_tools(GATEWAY_TOOLS) || !require_tool("nfs-ls") {
        return;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let script = r#"PATH="$PATH:/usr/sbin:/sbin"; ip link set lo up && mount -t tmpfs tmpfs /run && exec "$@""#;
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["--net", "--mount", "--", "sh", "-c", script, "sh"])
        .arg(exe)
        .args(["--exact", "host_mode_inner", "--ignored", "--nocapture"])
        .env("STRATA_HOST_MODE_INNER", "1");
    let r = run_bounded(cmd, std::time::Duration::from_secs(120));
    assert!(r.ok(), "inner host-mode test failed: {r}");
    assert!(
        r.stdout.contains("1 passed"),
        "the inner test must have run: {r}"
    );
}

#[test]
#[ignore = "run by host_mode_in_a_throwaway_namespace inside its own namespace"]
fn host_mode_inner() {
    assert_eq!(
        std::env::var("STRATA_HOST_MODE_INNER").as_deref(),
        Ok("1"),
        "only run inside host_mode_in_a_throwaway_namespace"
    );
    let dir = tempdir();
    let export = dir.path().join("export");
    std::fs::create_dir_all(&export).expect("mkdir");
    std::fs::write(export.join("seen-by-host-mode"), b"x").expect("write");
    let opts = |work: &str| LaunchOptions {
        work_dir: dir.path().join(work),
        conf: vfs_conf(&export),
        plugin_dir: None,
        namespace: NamespaceMode::Host,
        ready_timeout: READY_TIMEOUT,
        s3_server: None,
    };
    // No rpcbind answers here yet: the launcher starts one.
    let gw = Gateway::start(opts("w1")).expect("start in host mode");
    let pids = gw.pids();
    assert_eq!(pids.len(), 2, "rpcbind + ganesha, no holder: {pids:?}");
    let url = format!("nfs://127.0.0.1{VFS_PSEUDO}/?version=3");
    let mut ls = gw.command("nfs-ls");
    ls.arg(&url);
    let r = run_bounded(ls, CMD_TIMEOUT).expect_ok("nfs-ls");
    assert!(r.stdout.contains("seen-by-host-mode"), "{r}");
    // Detach, as `strata up` does; status; stop, as `strata down` does.
    let work = gw.work_dir().to_path_buf();
    gw.detach().expect("detach");
    let st = detached_status(&work).expect("status");
    assert!(st.running(), "{st}");
    assert_eq!(st.namespace, NamespaceMode::Host);
    stop_detached(&work).expect("stop");
    assert!(all_gone(&pids), "{pids:?}");

    // With an rpcbind already answering, the launcher uses it and does not start another.
    let mut rpcbind =
        std::process::Command::new(launcher::find_in_path("rpcbind").expect("rpcbind"))
            .args(["-f", "-w"])
            .spawn()
            .expect("rpcbind");
    assert!(poll_until(std::time::Duration::from_secs(10), || {
        std::process::Command::new(launcher::find_in_path("rpcinfo").expect("rpcinfo"))
            .args(["-p", "127.0.0.1"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }));
    let gw = Gateway::start(opts("w2")).expect("start with an existing rpcbind");
    assert_eq!(gw.pids(), vec![gw.ganesha_pid()], "only ganesha is ours");
    gw.stop().expect("stop");
    assert!(
        pid_exists(rpcbind.id()),
        "the existing rpcbind is left alone"
    );
    let _ = rpcbind.kill();
    let _ = rpcbind.wait();
}

/// PIDs of live processes whose command line mentions `needle`.
fn pids_mentioning(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(needle) && pid_exists(pid) {
            out.push(pid);
        }
    }
    out
}

#[test]
fn ready_timeout_stops_everything_and_says_so() {
    if !require_tools(GATEWAY_TOOLS) {
        return;
    }
    let dir = tempdir();
    let export = dir.path().join("export");
    std::fs::create_dir_all(&export).expect("mkdir");
    let work = dir.path().join("work");
    let err = Gateway::start(LaunchOptions {
        work_dir: work.clone(),
        conf: vfs_conf(&export),
        plugin_dir: None,
        namespace: NamespaceMode::Private,
        ready_timeout: Duration::ZERO,
        s3_server: None,
    })
    .expect_err("a zero ready timeout cannot be met");
    assert!(matches!(err, LaunchError::Timeout { .. }), "{err}");
    let conf = work.join("ganesha.conf").display().to_string();
    let left = pids_mentioning(&conf);
    assert!(
        poll_until(Duration::from_secs(5), || pids_mentioning(&conf).is_empty()),
        "ganesha left running after a failed start: {left:?}"
    );
}

#[test]
fn failed_exports_are_reported_although_ganesha_starts() {
    if !require_tools(GATEWAY_TOOLS) {
        return;
    }
    let dir = tempdir();
    let export = dir.path().join("export");
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&export).expect("mkdir");
    std::fs::create_dir_all(&empty).expect("mkdir");
    // A plugin dir without libfsalvfs.so: Ganesha 4.3 still starts, with no export.
    let gw = Gateway::start(LaunchOptions {
        work_dir: dir.path().join("work"),
        conf: vfs_conf(&export),
        plugin_dir: Some(empty),
        namespace: NamespaceMode::Private,
        ready_timeout: READY_TIMEOUT,
        s3_server: None,
    })
    .expect("ganesha starts");
    let errs = gw.export_errors();
    assert!(
        errs.iter().any(|l| l.contains("Failed to load FSAL (VFS)")),
        "{errs:#?}"
    );
    assert!(
        errs.iter().any(|l| l.contains("ganesha.conf:")),
        "{errs:#?}"
    );
    gw.stop().expect("stop");
}

/// The S3 test server (SeaweedFS `weed mini`, installed by scripts/setup) runs inside the
/// gateway's private namespace: signed requests with its credentials store and return objects,
/// others are refused, the host's loopback does not see it, and stop leaves nothing behind.
#[test]
fn s3_test_server_runs_in_the_gateway_namespace_and_stops_with_it() {
    if !require_tools(GATEWAY_TOOLS) || !require_tool("curl") {
        return;
    }
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf();
    let weed = launcher::S3ServerOptions::setup_weed(&repo);
    if !weed.is_file() {
        let msg = format!("{} is missing (run scripts/setup)", weed.display());
        if in_ci() {
            panic!("{msg}; CI=true, so this is a failure, not a skip");
        }
        eprintln!("SKIP: {msg}");
        return;
    }
    let s3 = launcher::S3ServerOptions::for_tests(weed);
    let dir = tempdir();
    let export = dir.path().join("export");
    std::fs::create_dir_all(&export).expect("mkdir");
    let gw = Gateway::start(LaunchOptions {
        work_dir: dir.path().join("work"),
        conf: vfs_conf(&export),
        plugin_dir: None,
        namespace: NamespaceMode::Private,
        ready_timeout: READY_TIMEOUT,
        s3_server: Some(s3.clone()),
    })
    .expect("start with the S3 server");
    let pids = gw.pids();
    assert_eq!(pids.len(), 4, "holder, rpcbind, s3 and ganesha: {pids:?}");
    let curl = |user: &str, extra: &[&str], url: String| {
        let out = gw
            .command("curl")
            .args(["-s", "-w", "\n%{http_code}", "--max-time", "10"])
            .args(["--aws-sigv4", "aws:amz:us-east-1:s3", "--user", user])
            .args(extra)
            .arg(url)
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let user = format!("{}:{}", s3.access_key, s3.secret_key);
    let obj = format!("{}/{}/hello", s3.endpoint(), s3.bucket);
    let put = curl(
        &user,
        &[
            "-X",
            "PUT",
            "-H",
            "x-amz-content-sha256: UNSIGNED-PAYLOAD",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            "hello s3",
        ],
        obj.clone(),
    );
    assert!(put.ends_with("200"), "PUT: {put}");
    let get = curl(&user, &[], obj.clone());
    assert_eq!(get, "hello s3\n200", "GET");
    let wrong = curl("nobody-key:nobody-secret-0123456789", &[], obj.clone());
    assert!(
        wrong.ends_with("403"),
        "a wrong key must be refused: {wrong}"
    );
    // Not on the host's loopback: the server lives in the private namespace only.
    let host = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "2",
        ])
        .arg(format!("{}/healthz", s3.endpoint()))
        .output()
        .expect("curl on the host");
    assert_eq!(
        String::from_utf8_lossy(&host.stdout),
        "000",
        "reachable from the host"
    );
    gw.stop().expect("stop");
    assert!(all_gone(&pids), "processes left after stop: {pids:?}");
}
