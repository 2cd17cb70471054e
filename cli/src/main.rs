//! The `strata` command: start and stop a gateway (`up`, `down`, `status`), talk to a running
//! gateway's engine over its management socket (`status`, `sync`, `volume info`), and work with
//! ganesha.conf files (`conf check`, `conf render`, `conf params`).
// The doc comments are also the commands' --help text (clap), where <placeholders> are plain text.
#![allow(rustdoc::invalid_html_tags)]

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use strata_ganesha_conf::launcher::{self, Gateway, LaunchOptions, NamespaceMode};
use strata_ganesha_conf::{check_file, check_text, params, GaneshaConf, PROFILES};
use strata_mgmt::{ClientError, MgmtClient, StatusReport, SyncReport, VolumeReport};

/// Exit code of `strata status` when no gateway runs (as LSB init scripts do); also of the
/// management commands when no gateway answers on the socket.
const EXIT_NOT_RUNNING: u8 = 3;
/// Bound on `status` and `volume info` calls.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Strata: an NFS gateway for VM storage on object storage.
#[derive(Parser)]
#[command(name = "strata", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start a gateway (rpcbind + ganesha.nfsd with Strata's FSAL) and leave it running.
    Up(UpArgs),
    /// Stop the gateway started by `strata up` with this data directory.
    Down(DataDirArg),
    /// Show whether the gateway of this data directory runs and what its engine says over the
    /// management socket (exit code 3 if neither runs nor answers).
    Status(StatusArgs),
    /// Put everything committed so far on the object backend. With --wait, return only once
    /// it is there (what scripts and tests wait with).
    Sync(SyncArgs),
    /// Volumes (VM disks) of a running gateway.
    #[command(subcommand)]
    Volume(VolumeCmd),
    /// Work with ganesha.conf files.
    #[command(subcommand)]
    Conf(ConfCmd),
}

#[derive(Args)]
struct DataDirArg {
    /// The data directory given to `strata up`.
    #[arg(long, default_value = "./var/strata")]
    data_dir: PathBuf,
}

/// Where to find a running gateway's management socket.
#[derive(Args)]
struct SocketArgs {
    /// The data directory of the gateway: its socket is the Mgmt_Socket of the ganesha.conf
    /// `strata up` recorded there, else <data-dir>/mgmt.sock.
    #[arg(long, default_value = "./var/strata")]
    data_dir: PathBuf,
    /// The management socket itself (overrides --data-dir).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Print the engine's answer as JSON (one line) instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct StatusArgs {
    #[command(flatten)]
    at: SocketArgs,
}

#[derive(Args)]
struct SyncArgs {
    /// Wait until everything committed is on the backend. Without it, the sync starts in the
    /// gateway and the command returns at once.
    #[arg(long)]
    wait: bool,
    /// With --wait: give up after this many seconds (0: wait as long as it takes).
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    #[command(flatten)]
    at: SocketArgs,
}

#[derive(Subcommand)]
enum VolumeCmd {
    /// Size, space used, bytes not yet on the backend, commit and cache counters of a volume.
    Info {
        /// The volume's path inside the export, e.g. /vm1/disk-flat.vmdk.
        path: String,
        #[command(flatten)]
        at: SocketArgs,
    },
}

#[derive(Args)]
struct UpArgs {
    /// Local state: redb namespace, caches, local backend, and the gateway's ganesha.conf and
    /// log (under `ganesha/`).
    #[arg(long, default_value = "./var/strata")]
    data_dir: PathBuf,
    /// Directory of the local object backend (default: <data-dir>/backend).
    #[arg(long, conflicts_with = "s3_endpoint")]
    backend_dir: Option<PathBuf>,
    /// Use an S3-compatible backend at this URL (needs --s3-bucket).
    #[arg(long, requires = "s3_bucket")]
    s3_endpoint: Option<String>,
    /// The S3 bucket.
    #[arg(long, requires = "s3_endpoint")]
    s3_bucket: Option<String>,
    /// The S3 region.
    #[arg(long, requires = "s3_endpoint")]
    s3_region: Option<String>,
    /// File with the S3 credentials.
    #[arg(long, requires = "s3_endpoint")]
    s3_credentials_file: Option<PathBuf>,
    /// NFS port.
    #[arg(long, default_value_t = 2049)]
    nfs_port: u16,
    /// MOUNT protocol port (NFSv3).
    #[arg(long, default_value_t = 20048)]
    mnt_port: u16,
    /// Run in a private network + mount namespace (for a machine that already serves NFS).
    #[arg(long)]
    private_namespace: bool,
    /// Directory holding libfsalstrata.so (default: the directory of this executable).
    #[arg(long)]
    plugin_dir: Option<PathBuf>,
    /// Use this ganesha.conf instead of the default profile. Only what strata models is kept
    /// (NFS_CORE_PARAM ports/protocols/NLM, NFSV4, LOG, STRATA, EXPORT); the port, backend and
    /// data options above are ignored with it.
    #[arg(long)]
    conf: Option<PathBuf>,
    /// How long to wait for Ganesha to come up, in seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

#[derive(Subcommand)]
enum ConfCmd {
    /// Check a ganesha.conf: syntax, the STRATA block and the parts strata models. Prints OK or
    /// one FILE:LINE: REASON per error (exit code 1).
    Check {
        /// The file.
        file: PathBuf,
    },
    /// Print a profile's ganesha.conf.
    Render {
        /// The profile.
        #[arg(long, default_value = "default", value_parser = clap::builder::PossibleValuesParser::new(PROFILES))]
        profile: String,
        /// Data_Dir of the STRATA block.
        #[arg(long, default_value = "/var/lib/strata")]
        data_dir: PathBuf,
    },
    /// Print the STRATA block's parameters as a Markdown table.
    Params,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Up(args) => up(args),
        Cmd::Down(a) => down(&a.data_dir),
        Cmd::Status(a) => status(&a.at),
        Cmd::Sync(a) => sync(&a),
        Cmd::Volume(VolumeCmd::Info { path, at }) => volume_info(&path, &at),
        Cmd::Conf(ConfCmd::Check { file }) => conf_check(&file),
        Cmd::Conf(ConfCmd::Render { profile, data_dir }) => conf_render(&profile, &data_dir),
        Cmd::Conf(ConfCmd::Params) => {
            print!("{}", params::params_markdown());
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("strata: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn absolute(p: &Path) -> Result<PathBuf, String> {
    std::path::absolute(p).map_err(|e| format!("cannot resolve {}: {e}", p.display()))
}

/// Where `strata up` keeps the gateway's own files (conf, log, pid and state files).
fn work_dir_of(data_dir: &Path) -> Result<PathBuf, String> {
    Ok(absolute(data_dir)?.join("ganesha"))
}

fn conf_check(file: &Path) -> Result<ExitCode, String> {
    match check_file(file) {
        Ok((conf, settings)) => {
            let exports: Vec<String> = conf
                .exports
                .iter()
                .map(|e| format!("{} ({})", e.pseudo, e.fsal.name()))
                .collect();
            let data = settings
                .map(|s| format!("; Data_Dir {}", s.data_dir.display()))
                .unwrap_or_default();
            println!(
                "{}: OK ({} export(s): {}{data})",
                file.display(),
                exports.len(),
                exports.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(errs) => {
            for e in &errs {
                println!("{e}");
            }
            eprintln!("strata: {} error(s) in {}", errs.len(), file.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

fn conf_render(profile: &str, data_dir: &Path) -> Result<ExitCode, String> {
    let data_dir = absolute(data_dir)?;
    let text = GaneshaConf::render_profile(profile, &data_dir)
        .ok_or_else(|| format!("unknown profile {profile}"))?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn down(data_dir: &Path) -> Result<ExitCode, String> {
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

fn status(at: &SocketArgs) -> Result<ExitCode, String> {
    let work = work_dir_of(&at.data_dir)?;
    let launched = match launcher::detached_status(&work) {
        Ok(st) => Some(st),
        Err(launcher::LaunchError::NotRunning(_)) => None,
        Err(e) => return Err(e.to_string()),
    };
    let sock = socket_path(at)?;
    let engine = MgmtClient::connect(&sock).and_then(|mut c| {
        c.set_timeout(Some(QUERY_TIMEOUT))?;
        c.status()
    });
    let running = launched.as_ref().is_some_and(|st| st.running()) || engine.is_ok();
    let code = if running {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NOT_RUNNING)
    };
    if at.json {
        let v = serde_json::json!({
            "running": running,
            "launched_by_strata_up": launched.as_ref().is_some_and(|st| st.running()),
            "socket": sock,
            "engine": engine.as_ref().ok(),
            "engine_error": engine.as_ref().err().map(|e| e.to_string()),
        });
        println!("{v}");
        return Ok(code);
    }
    match &launched {
        Some(st) => println!("{st}"),
        None if engine.is_ok() => println!(
            "gateway: not started by `strata up` (nothing recorded in {})",
            work.display()
        ),
        None => println!(
            "gateway: not running (nothing recorded in {})",
            work.display()
        ),
    }
    match &engine {
        Ok(r) => print!("{}", engine_report(&sock, r)),
        Err(ClientError::NotRunning { .. }) => {
            println!(
                "engine: not answering (nothing listens on {})",
                sock.display()
            )
        }
        Err(e) => println!("engine: not answering on {}: {e}", sock.display()),
    }
    Ok(code)
}

/// The socket of `--socket`, else the Mgmt_Socket of the conf `strata up` recorded for the data
/// directory, else `<data-dir>/mgmt.sock`.
fn socket_path(at: &SocketArgs) -> Result<PathBuf, String> {
    if let Some(s) = &at.socket {
        return absolute(s);
    }
    let data_dir = absolute(&at.data_dir)?;
    let recorded = work_dir_of(&data_dir)?.join("ganesha.conf");
    if recorded.is_file() {
        if let Ok(s) = strata_ganesha_conf::load_strata_settings(&recorded) {
            return Ok(s.mgmt_socket);
        }
    }
    Ok(data_dir.join("mgmt.sock"))
}

/// Runs one management call; a gateway that is not running is exit code 3 with a hint.
fn with_client<T>(
    at: &SocketArgs,
    timeout: Option<Duration>,
    call: impl FnOnce(&mut MgmtClient) -> Result<T, ClientError>,
    show: impl FnOnce(&T) -> String,
) -> Result<ExitCode, String>
where
    T: serde::Serialize,
{
    let sock = socket_path(at)?;
    let answer = MgmtClient::connect(&sock).and_then(|mut c| {
        c.set_timeout(timeout)?;
        call(&mut c)
    });
    match answer {
        Ok(v) => {
            if at.json {
                let line = serde_json::to_string(&v).map_err(|e| e.to_string())?;
                println!("{line}");
            } else {
                print!("{}", show(&v));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(ClientError::NotRunning { .. }) => {
            eprintln!(
                "strata: no gateway answers on {} (is it running? see `strata status`; \
                 --socket or --data-dir choose another)",
                sock.display()
            );
            Ok(ExitCode::from(EXIT_NOT_RUNNING))
        }
        Err(ClientError::Server(e)) => Err(e.message),
        Err(e) => Err(e.to_string()),
    }
}

fn sync(a: &SyncArgs) -> Result<ExitCode, String> {
    let timeout = match (a.wait, a.timeout) {
        (false, _) => Some(QUERY_TIMEOUT),
        (true, 0) => None,
        (true, t) => Some(Duration::from_secs(t)),
    };
    with_client(&a.at, timeout, |c| c.sync(a.wait), sync_report)
}

fn volume_info(path: &str, at: &SocketArgs) -> Result<ExitCode, String> {
    with_client(
        at,
        Some(QUERY_TIMEOUT),
        |c| c.volume_info(path),
        volume_report,
    )
}

/// `1.5 GiB`-style sizes for people (the exact byte counts are printed too).
fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn duration_text(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// The engine part of `strata status`.
fn engine_report(sock: &Path, r: &StatusReport) -> String {
    let sp = &r.space;
    format!(
        "engine: answering on {} (strata {}, protocol {}, pid {}, up {})\n  \
         data dir  {}\n  backend   {}\n  fsid      {:#x}\n  \
         space     {} available of {} ({} free); {} of {} inodes free\n  \
         cluster cache {} of {} held; {} hits, {} misses\n",
        sock.display(),
        r.gateway_version,
        r.protocol_version,
        r.pid,
        duration_text(r.uptime_secs),
        r.data_dir.display(),
        r.backend,
        r.fsid,
        human(sp.avail_bytes),
        human(sp.total_bytes),
        human(sp.free_bytes),
        sp.free_files,
        sp.total_files,
        human(r.cluster_cache.bytes),
        human(r.cluster_cache.capacity),
        r.cluster_cache.hits,
        r.cluster_cache.misses,
    )
}

fn sync_report(r: &SyncReport) -> String {
    if r.waited {
        format!(
            "synced: everything committed is on the backend ({} ms)\n",
            r.elapsed_ms
        )
    } else {
        "sync started in the gateway (not waiting; use --wait to wait for it)\n".to_string()
    }
}

fn volume_report(v: &VolumeReport) -> String {
    let rate = v
        .cache_hit_rate
        .map_or_else(|| "n/a".to_string(), |r| format!("{:.1}%", r * 100.0));
    format!(
        "volume            {}\n\
         inode             {}\n\
         size              {} ({})\n\
         space used        {} ({})\n\
         not on backend    {} ({})\n\
         commits           {} ({} group-commit rounds)\n\
         clusters written  {}\n\
         SCOs sealed       {}\n\
         cache             {} hits, {} misses (hit rate {rate})\n\
         cluster cache     {} hits (clusters of evicted SCOs not fetched again)\n\
         metadata          applied up to TLog {}, checkpoint TLog {}, {} clusters corked\n\
         TLogs replayed    {} (at open)\n\
         upload            {}/s; peak backlog {} ({})\n\
         pacing            {} writes waited, {} ms in all; {} answered DELAY\n",
        v.path,
        v.ino,
        v.size,
        human(v.size),
        v.space_used,
        human(v.space_used),
        v.pending_backend_bytes,
        human(v.pending_backend_bytes),
        v.commits,
        v.commit_rounds,
        v.clusters_written,
        v.scos_sealed,
        v.cache_hits,
        v.cache_misses,
        v.cluster_cache_hits,
        v.applied_tlog,
        v.checkpoint_tlog,
        v.corked_clusters,
        v.tlogs_replayed,
        human(v.upload_rate),
        v.peak_backlog,
        human(v.peak_backlog),
        v.writes_paced,
        v.pacing_delay_ms,
        v.writes_refused,
    )
}

/// The plugin directory for `up`: `--plugin-dir`, else the directory of this executable when
/// it holds libfsalstrata.so (cargo puts both in target/<profile>).
fn plugin_dir(arg: Option<&Path>) -> Result<PathBuf, String> {
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
fn port_free(port: u16, what: &str) -> Result<(), String> {
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
fn writable_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create the data directory {}: {e}", dir.display()))?;
    let probe = dir.join(".strata-write-test");
    std::fs::write(&probe, b"ok")
        .map_err(|e| format!("the data directory {} is not writable: {e}", dir.display()))?;
    std::fs::remove_file(&probe)
        .map_err(|e| format!("the data directory {} is not writable: {e}", dir.display()))
}

fn up_conf(args: &UpArgs, data_dir: &Path) -> Result<GaneshaConf, String> {
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
        if let Some(f) = &args.s3_credentials_file {
            extra.push(("S3_Credentials_File", path_text(f)?));
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

fn up(args: UpArgs) -> Result<ExitCode, String> {
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

/// The configuration errors in a Ganesha log (FSAL load failures and CONFIG errors), without
/// their timestamp prefix.
fn config_errors(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| {
            (l.contains(" :CONFIG :CRIT :") || l.contains(" :CONFIG :MAJ :"))
                || (l.contains("load_fsal :") && (l.contains(":CRIT :") || l.contains(":MAJ :")))
        })
        .map(|l| match l.find("] ") {
            Some(i) => l[i + 2..].to_string(),
            None => l.to_string(),
        })
        .collect()
}

/// What `strata up` prints once the gateway runs: the exports, files, and how to mount.
fn up_report(
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
