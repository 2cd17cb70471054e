//! Each shipped profile (ganesha-conf/profiles/*.conf) is accepted by ganesha.nfsd itself with
//! our FSAL: parsed, its data directory pointed at a temp dir, started in a private namespace,
//! every export visible to a client, stopped.

use std::path::PathBuf;

use strata_ganesha_conf::conf::GaneshaConf;
use strata_tests::*;

fn profiles_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ganesha-conf/profiles")
}

fn check_profile(name: &str) {
    if !require_tools(GATEWAY_TOOLS) || !require_tools(&["nfs-ls", "showmount"]) {
        return;
    }
    let path = profiles_dir().join(format!("{name}.conf"));
    let text = std::fs::read_to_string(&path).expect("read profile");
    let mut conf = GaneshaConf::parse(&text, &path).unwrap_or_else(|e| panic!("{name}: {e:?}"));
    let dir = tempdir();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    let pairs = conf.strata.as_mut().expect("profile has a STRATA block");
    let slot = pairs
        .iter_mut()
        .find(|(k, _)| k.eq_ignore_ascii_case("Data_Dir"))
        .expect("Data_Dir");
    slot.1 = data.display().to_string();
    let exports = conf.exports.clone();
    let conf_minor_versions = conf.nfsv4.minor_versions.clone();
    assert!(!exports.is_empty());
    let mut tg = TestGateway::launch(dir, data, conf, Some(plugin_dir()))
        .unwrap_or_else(|e| panic!("profile {name} refused: {e}"));
    let log = tg.log();
    assert!(
        !log.contains("Failed to call create_export") && !log.contains("export refused"),
        "{name}: every export must be created:\n{log}"
    );
    assert_eq!(tg.gw().export_errors(), Vec::<String>::new(), "{name}");
    let mounts = tg.run("showmount", ["-e", "127.0.0.1"]);
    // libnfs speaks NFSv4.0 only; a profile limited to 4.1 (esxi) must refuse it.
    let v40 = conf_minor_versions.is_empty() || conf_minor_versions.contains(&0);
    for e in &exports {
        if e.protocols.contains(&3) {
            let url = format!("nfs://127.0.0.1{}/?version=3", e.pseudo);
            tg.run("nfs-ls", [url.as_str()])
                .expect_ok(&format!("{name}: nfs-ls {url}"));
            assert!(
                mounts.stdout.contains(&e.pseudo),
                "{name}: showmount: {mounts}"
            );
        }
        if e.protocols.contains(&4) {
            let url = format!("nfs://127.0.0.1{}/?version=4", e.pseudo);
            let r = tg.run("nfs-ls", [url.as_str()]);
            if v40 {
                r.expect_ok(&format!("{name}: nfs-ls {url}"));
            } else {
                assert!(
                    !r.ok(),
                    "{name}: a 4.1-only server must refuse NFSv4.0: {r}"
                );
            }
        }
    }
    let pids = tg.stop();
    assert!(poll_until(std::time::Duration::from_secs(5), || pids
        .iter()
        .all(|p| !pid_exists(*p))));
}

#[test]
fn default_profile_accepted_by_ganesha() {
    check_profile("default");
}

#[test]
fn esxi_profile_accepted_by_ganesha() {
    check_profile("esxi");
}

#[test]
fn kvm_profile_accepted_by_ganesha() {
    check_profile("kvm");
}

#[test]
fn every_shipped_profile_is_tested() {
    let mut names: Vec<String> = std::fs::read_dir(profiles_dir())
        .expect("profiles dir")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".conf")
                .map(str::to_string)
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["default", "esxi", "kvm"],
        "add a test for each new profile"
    );
}
