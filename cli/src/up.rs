//! `strata up` and `strata down`: a gateway started in its own namespaces from a rendered
//! ganesha.conf, and stopped.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use strata_ganesha_conf::launcher::{self, Gateway, LaunchOptions, NamespaceMode};
use strata_ganesha_conf::{check_file, check_text, GaneshaConf};

use crate::{absolute, work_dir_of, UpArgs};

pub(crate) fn down(data_dir: &Path) -> Result<ExitCode, String> {
    let work = work_dir_of(data_dir)?;
    match launcher::stop_detached(&work) {
        Ok(()) => {
            println!("strata: gateway stopped ({})", work.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(launcher::LaunchError::NotRunning(_)) => {
            println!(
                "strata: no gateway recorded in {}; nothing to stop",
                work.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The plugin directory for `up`: `--plugin-dir`, else the directory of this executable when
/// it holds libfsalstrata.so (cargo puts both in target/<profile>).
pub(crate) fn plugin_dir(arg: Option<&Path>) -> Result<PathBuf, String> {
    const LIB: &str = "libfsalstrata.so";
    if let Some(dir) = arg {
        let dir = absolute(dir)?;
        if !dir.join(LIB).is_file() {
            return Err(format!(
                "{} not found: build it (cargo build) or pass the directory that holds it",
                dir.join(LIB).display()
            ));
        }
        return Ok(dir);
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate strata itself: {e}"))?;
    match exe.parent() {
        Some(dir) if dir.join(LIB).is_file() => Ok(dir.to_path_buf()),
        Some(dir) => Err(format!(
            "{LIB} not found next to {} (in {}): build the workspace (cargo build) or pass --plugin-dir",
            exe.display(),
            dir.display()
        )),
        None => Err(format!("{LIB} not found: pass --plugin-dir")),
    }
}

/// Refuses when a port cannot be bound on this host (something listens there already).
pub(crate) fn port_free(port: u16, what: &str) -> Result<(), String> {
    match TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)) {
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "{what} port {port} is not available ({e}); is an NFS server (kernel nfsd or another \
             ganesha) running? Stop it, choose other ports (--nfs-port/--mnt-port), or use \
             --private-namespace"
        )),
    }
}

/// Creates the data directory and proves it is writable.
pub(crate) fn writable_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create the data directory {}: {e}", dir.display()))?;
    let probe = dir.join(".strata-write-test");
    std::fs::write(&probe, b"ok")
        .map_err(|e| format!("the data directory {} is not writable: {e}", dir.display()))?;
    std::fs::remove_file(&probe)
        .map_err(|e| format!("the data directory {} is not writable: {e}", dir.display()))
}

pub(crate) fn up_conf(args: &UpArgs, data_dir: &Path) -> Result<GaneshaConf, String> {
    if let Some(file) = &args.conf {
        let (conf, _) = check_file(file).map_err(|errs| {
            let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
            format!("{} is not valid:\n{}", file.display(), lines.join("\n"))
        })?;
        return Ok(conf);
    }
    let mut conf = GaneshaConf::strata_default(data_dir);
    conf.core.nfs_port = args.nfs_port;
    conf.core.mnt_port = args.mnt_port;
    let mut extra = Vec::new();
    let path_text = |p: &Path| -> Result<String, String> { Ok(absolute(p)?.display().to_string()) };
    if let Some(dir) = &args.backend_dir {
        extra.push(("Backend_Dir", path_text(dir)?));
    }
    if let (Some(endpoint), Some(bucket)) = (&args.s3_endpoint, &args.s3_bucket) {
        extra.push(("Backend", "S3".to_string()));
        extra.push(("S3_Endpoint", endpoint.clone()));
        extra.push(("S3_Bucket", bucket.clone()));
        if let Some(region) = &args.s3_region {
            extra.push(("S3_Region", region.clone()));
        }
        if let Some(prefix) = &args.s3_prefix {
            extra.push(("S3_Prefix", prefix.clone()));
        }
        if let Some(f) = &args.s3_credentials_file {
            extra.push(("S3_Credentials_File", path_text(f)?));
        }
        if args.s3_unsafe_single_writer {
            extra.push(("S3_Unsafe_Single_Writer", "true".to_string()));
        }
    }
    if let Some(pairs) = conf.strata.as_mut() {
        pairs.extend(extra.into_iter().map(|(k, v)| (k.to_string(), v)));
    }
    // Validate what we are about to start with, exactly as `strata conf check` would.
    check_text(&conf.render(), Path::new("<strata up options>")).map_err(|errs| {
        let lines: Vec<String> = errs.iter().map(|e| e.reason.clone()).collect();
        format!("invalid options: {}", lines.join("; "))
    })?;
    Ok(conf)
}

pub(crate) fn up(args: UpArgs) -> Result<ExitCode, String> {
    if launcher::find_in_path("ganesha.nfsd").is_none() {
        return Err("ganesha.nfsd is not installed: run scripts/setup".into());
    }
    if launcher::find_in_path("rpcbind").is_none() {
        return Err("rpcbind is not installed: run scripts/setup".into());
    }
    let data_dir = absolute(&args.data_dir)?;
    let work_dir = work_dir_of(&data_dir)?;
    if let Ok(st) = launcher::detached_status(&work_dir) {
        if st.running() {
            return Err(format!(
                "a gateway already runs for {} (ganesha pid {}); `strata down --data-dir {}` first",
                data_dir.display(),
                st.ganesha_pid().unwrap_or(0),
                args.data_dir.display()
            ));
        }
        // Leftovers of a gateway that died: clean them up before starting anew.
        launcher::stop_detached(&work_dir).map_err(|e| e.to_string())?;
    }
    writable_dir(&data_dir)?;
    // Keep the previous run's log aside, so that only this run's lines are judged below.
    let old_log = work_dir.join("ganesha.log");
    if old_log.exists() {
        std::fs::rename(&old_log, work_dir.join("ganesha.log.old"))
            .map_err(|e| format!("cannot move the old log {}: {e}", old_log.display()))?;
    }
    let plugins = plugin_dir(args.plugin_dir.as_deref())?;
    let conf = up_conf(&args, &data_dir)?;
    let namespace = if args.private_namespace {
        NamespaceMode::Private
    } else {
        port_free(conf.core.nfs_port, "NFS")?;
        if conf.core.mnt_port != 0 {
            port_free(conf.core.mnt_port, "MOUNT")?;
        }
        NamespaceMode::Host
    };
    let gw = Gateway::start(LaunchOptions {
        work_dir: work_dir.clone(),
        conf: conf.clone(),
        plugin_dir: Some(plugins),
        namespace,
        ready_timeout: Duration::from_secs(args.timeout),
        s3_server: None,
    })
    .map_err(|e| e.to_string())?;
    // Ganesha comes up even when it drops an export it cannot load; that is no gateway.
    let refused = config_errors(&gw.log_text());
    if !refused.is_empty() {
        let log = gw.log_path().display().to_string();
        gw.stop().map_err(|e| e.to_string())?;
        return Err(format!(
            "ganesha.nfsd refused the configuration (stopped it again; log {log}):\n{}",
            refused.join("\n")
        ));
    }
    let log = gw.log_path().to_path_buf();
    let conf_path = gw.conf_path().to_path_buf();
    let pid = gw.ganesha_pid();
    gw.detach().map_err(|e| e.to_string())?;
    let holder = launcher::detached_status(&work_dir)
        .ok()
        .and_then(|st| st.processes.into_iter().find(|p| p.name == "holder"))
        .map(|p| p.pid);
    print!(
        "{}",
        up_report(
            &conf,
            &data_dir,
            &args.data_dir,
            &log,
            &conf_path,
            pid,
            holder
        )
    );
    Ok(ExitCode::SUCCESS)
}

/// The configuration errors in a Ganesha log (FSAL load failures, CONFIG errors and why our
/// FSAL refused an export), without their timestamp prefix.
pub(crate) fn config_errors(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| {
            (l.contains(" :CONFIG :CRIT :") || l.contains(" :CONFIG :MAJ :"))
                || (l.contains("load_fsal :") && (l.contains(":CRIT :") || l.contains(":MAJ :")))
                || l.contains("strata :FSAL :CRIT :")
        })
        .map(|l| match l.find("] ") {
            Some(i) => l[i + 2..].to_string(),
            None => l.to_string(),
        })
        .collect()
}

/// What `strata up` prints once the gateway runs: the exports, files, and how to mount.
pub(crate) fn up_report(
    conf: &GaneshaConf,
    data_dir: &Path,
    data_dir_arg: &Path,
    log: &Path,
    conf_path: &Path,
    pid: u32,
    holder: Option<u32>,
) -> String {
    let nfs = conf.core.nfs_port;
    let mnt = conf.core.mnt_port;
    let std_ports = nfs == 2049;
    let mut o = String::new();
    o.push_str(&format!(
        "Strata gateway running (ganesha.nfsd pid {pid}).\n"
    ));
    o.push_str(&format!("  data dir  {}\n", data_dir.display()));
    o.push_str(&format!("  conf      {}\n", conf_path.display()));
    o.push_str(&format!("  log       {}\n", log.display()));
    o.push_str(&format!("  ports     NFS {nfs}, MOUNT {mnt}\n"));
    for e in &conf.exports {
        let protos: Vec<String> = e.protocols.iter().map(|p| format!("v{p}")).collect();
        o.push_str(&format!(
            "  export    {} (NFS {}, FSAL {})\n",
            e.pseudo,
            protos.join(" + "),
            e.fsal.name()
        ));
    }
    let Some(first) = conf.exports.first() else {
        return o;
    };
    let share = &first.pseudo;
    if let Some(h) = holder {
        o.push_str(&format!(
            "\nIt runs in a private network namespace: reach it from inside, e.g.\n  \
             nsenter -t {h} -n -m nfs-ls 'nfs://127.0.0.1{share}/?version=3&nfsport={nfs}&mountport={mnt}'\n"
        ));
    } else {
        o.push_str(&format!(
            "\nTry it:\n  nfs-ls 'nfs://127.0.0.1{share}/?version=3&nfsport={nfs}&mountport={mnt}'\n"
        ));
    }
    o.push_str(
        "\nESXi (one protocol per datastore: never mount one share with both v3 and v4.1):\n",
    );
    if !std_ports {
        o.push_str("  (ESXi only talks to NFS port 2049: restart with the default ports)\n");
    }
    for e in &conf.exports {
        let name = e.pseudo.trim_matches('/').replace('/', "-");
        let name = if name.is_empty() {
            "strata".to_string()
        } else {
            name
        };
        if e.protocols.contains(&3) {
            o.push_str(&format!(
                "  esxcli storage nfs add -H <host> -s {} -v {name}\n",
                e.pseudo
            ));
        }
        if e.protocols.contains(&4) {
            let name41 = if e.protocols.contains(&3) {
                format!("{name}41")
            } else {
                name
            };
            o.push_str(&format!(
                "  esxcli storage nfs41 add -H <host> -s {} -v {name41}\n",
                e.pseudo
            ));
        }
    }
    let opts = if std_ports {
        String::new()
    } else {
        format!(" -o port={nfs},mountport={mnt}")
    };
    o.push_str(&format!(
        "\nKVM:\n  mount -t nfs{opts} <host>:{share} /mnt\n  libvirt pool (virsh pool-define pool.xml; virsh pool-start strata):\n\
         <pool type='netfs'>\n  <name>strata</name>\n  <source>\n    <host name='<host>'/>\n    \
         <dir path='{share}'/>\n    <format type='nfs'/>\n  </source>\n  <target>\n    \
         <path>/var/lib/libvirt/images/strata</path>\n  </target>\n</pool>\n"
    ));
    o.push_str(&format!(
        "\nStop it with: strata down --data-dir {}\n",
        data_dir_arg.display()
    ));
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_are_found_in_the_log() {
        let log = "22/11/2026 00:48:42 : epoch 6b : vm : nfs-ganesha-1[main] load_fsal :NFS STARTUP :CRIT :Could not execute symbol fsal_init\n\
                   22/11/2026 00:48:42 : epoch 6b : vm : nfs-ganesha-1[main] config_errs_to_log :CONFIG :CRIT :Config File (/c:36): Failed to load FSAL (STRATA)\n\
                   22/11/2026 00:48:42 : epoch 6b : vm : nfs-ganesha-1[main] gsh_dbus_pkginit :DBUS :CRIT :dbus_bus_get failed\n\
                   22/11/2026 00:48:42 : epoch 6b : vm : nfs-ganesha-1[main] nfs_start :NFS STARTUP :EVENT :NFS SERVER INITIALIZED\n";
        let errs = config_errors(log);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].starts_with("load_fsal :NFS STARTUP :CRIT"),
            "{errs:?}"
        );
        assert!(errs[1].contains("Config File (/c:36)"), "{errs:?}");
    }

    /// The `--s3-*` options become the STRATA block's S3 parameters, validated.
    #[test]
    fn s3_options_become_the_s3_parameters() {
        use clap::Parser;
        let cli = crate::Cli::try_parse_from([
            "strata",
            "up",
            "--s3-endpoint",
            "http://127.0.0.1:9000",
            "--s3-bucket",
            "vms",
            "--s3-prefix",
            "gw1/",
            "--s3-region",
            "eu-west-1",
            "--s3-credentials-file",
            "/etc/strata/s3",
            "--s3-unsafe-single-writer",
        ])
        .expect("parse");
        let crate::Cmd::Up(args) = cli.cmd else {
            panic!("not up");
        };
        let conf = up_conf(&args, Path::new("/d")).expect("valid");
        let pairs = conf.strata.expect("a STRATA block");
        for (k, v) in [
            ("Backend", "S3"),
            ("S3_Endpoint", "http://127.0.0.1:9000"),
            ("S3_Bucket", "vms"),
            ("S3_Prefix", "gw1/"),
            ("S3_Region", "eu-west-1"),
            ("S3_Credentials_File", "/etc/strata/s3"),
            ("S3_Unsafe_Single_Writer", "true"),
        ] {
            assert!(
                pairs.iter().any(|(pk, pv)| pk == k && pv == v),
                "{k} = {v} missing: {pairs:?}"
            );
        }
        assert!(crate::Cli::try_parse_from(["strata", "up", "--s3-prefix", "p/"]).is_err());
    }

    #[test]
    fn report_names_export_files_and_mount_commands() {
        let conf = GaneshaConf::strata_default(Path::new("/d"));
        let r = up_report(
            &conf,
            Path::new("/d"),
            Path::new("./d"),
            Path::new("/d/ganesha/ganesha.log"),
            Path::new("/d/ganesha/ganesha.conf"),
            42,
            None,
        );
        for needle in [
            "pid 42",
            "/d/ganesha/ganesha.log",
            "export    /strata (NFS v3 + v4, FSAL STRATA)",
            "esxcli storage nfs add -H <host> -s /strata -v strata",
            "esxcli storage nfs41 add -H <host> -s /strata -v strata41",
            "mount -t nfs <host>:/strata /mnt",
            "<pool type='netfs'>",
            "strata down --data-dir ./d",
        ] {
            assert!(r.contains(needle), "missing {needle:?} in:\n{r}");
        }
        let mut conf = conf;
        conf.core.nfs_port = 20490;
        let r = up_report(
            &conf,
            Path::new("/d"),
            Path::new("/d"),
            Path::new("l"),
            Path::new("c"),
            1,
            Some(7),
        );
        assert!(r.contains("nsenter -t 7 -n -m nfs-ls"), "{r}");
        assert!(r.contains("-o port=20490,mountport=20048"), "{r}");
        assert!(r.contains("ESXi only talks to NFS port 2049"), "{r}");
        let esxi = GaneshaConf::esxi(Path::new("/d"));
        let r = up_report(
            &esxi,
            Path::new("/d"),
            Path::new("/d"),
            Path::new("l"),
            Path::new("c"),
            1,
            None,
        );
        assert!(
            r.contains("esxcli storage nfs add -H <host> -s /strata-v3 -v strata-v3\n"),
            "{r}"
        );
        assert!(
            r.contains("esxcli storage nfs41 add -H <host> -s /strata-v41 -v strata-v41\n"),
            "{r}"
        );
        assert!(!r.contains("nfs41 add -H <host> -s /strata-v3"), "{r}");
    }
}
