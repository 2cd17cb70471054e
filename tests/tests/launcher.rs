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
