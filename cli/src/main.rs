//! The `strata` command: start and stop a gateway (`up`, `down`, `status`), talk to a running
//! gateway's engine over its management socket (`status`, `sync`, `volume info|list|create`,
//! `snapshot create|list|info|rollback|delete`, `job list|show|cancel`), and work with
//! ganesha.conf files (`conf check`, `conf render`, `conf params`).
// The doc comments are also the commands' --help text (clap), where <placeholders> are plain text.
#![allow(rustdoc::invalid_html_tags)]

mod conf;
mod fsck;
mod gateway;
mod job;
mod offload;
mod report;
mod restore;
mod snapshot;
mod up;
mod volume;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use strata_ganesha_conf::{params, PROFILES};

use conf::{conf_check, conf_render};
use gateway::{status, sync};
use up::{down, up};
use volume::VolumeCmd;

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
    /// Scrub and collect garbage now: compact the SCOs of PATH's volume (or of every volume)
    /// that are mostly garbage and delete what nothing references (after GC_Grace). With
    /// --wait, follow the job with a progress bar; without, print it and return.
    Scrub(ScrubArgs),
    /// Check the backend against the namespace, online, as a job: every file's extents
    /// exist, every volume's manifest, checkpoint and TLogs read and verified (with --deep,
    /// every cluster read back and checked against its MD5); damage and orphans reported, exit
    /// code 1 if any. Changes nothing unless --repair, which moves orphans to quarantine/.
    Fsck(FsckArgs),
    /// Volumes (VM disks) of a running gateway.
    #[command(subcommand)]
    Volume(VolumeCmd),
    /// Snapshots of a running gateway's volumes.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCmd),
    /// The long operations of a running gateway (syncs, rollbacks): list, show, cancel.
    #[command(subcommand)]
    Job(job::JobCmd),
    /// The VAAI-NAS-style offload verbs (what an ESXi host plugin asks of the array): fast
    /// and full clones of a volume, space reserved, extended statistics.
    #[command(subcommand)]
    Offload(offload::OffloadCmd),
    /// Work with ganesha.conf files.
    #[command(subcommand)]
    Conf(ConfCmd),
    /// Bring a gateway back from its backend alone after its data directory was lost
    /// (disaster recovery): the namespace from its last image on the backend, volumes and
    /// files read from the backend as they are used. Run it with Ganesha stopped, on the
    /// ganesha.conf whose STRATA block names the new, empty Data_Dir and the backend.
    Restore(RestoreArgs),
}

#[derive(Args)]
struct FsckArgs {
    /// Read every cluster of every volume back from the backend and check its MD5.
    #[arg(long)]
    deep: bool,
    /// Move orphans to quarantine/ on the backend (copied, then deleted); damage is only
    /// reported.
    #[arg(long)]
    repair: bool,
    /// Follow the job until it ends and print what it found.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    at: SocketArgs,
}

#[derive(Args)]
struct RestoreArgs {
    /// The ganesha.conf of the gateway to restore.
    #[arg(long)]
    conf: PathBuf,
    /// Take the backend over from the gateway its owner record names. Required: make sure
    /// that gateway is gone for good (machine lost, never started again with its data
    /// directory); once restored, it is refused if it comes back. The restore first watches
    /// the backend for 10 s and refuses if that gateway still writes its heartbeat.
    #[arg(long)]
    take_over: bool,
    /// Take over even from a gateway that looks alive (it is fenced off: its writes are
    /// refused from its next upload on), and with S3_Unsafe_Single_Writer (no conditional
    /// writes), where nothing would stop the old gateway from overwriting objects.
    #[arg(long)]
    force: bool,
    /// Print the report as JSON (one line).
    #[arg(long)]
    json: bool,
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

#[derive(Args)]
struct ScrubArgs {
    /// The volume (a path inside the gateway's namespace); every volume when absent.
    path: Option<String>,
    /// Follow the job until it ends.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    at: SocketArgs,
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
    /// Key prefix of the gateway's objects in the bucket (e.g. `gw1/`).
    #[arg(long, requires = "s3_endpoint")]
    s3_prefix: Option<String>,
    /// File with the S3 credentials (AWS shared-credentials format, `[default]` section);
    /// without it, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from the environment.
    #[arg(long, requires = "s3_endpoint")]
    s3_credentials_file: Option<PathBuf>,
    /// Run on a store whose conditional writes fail the probe at start (Garage, old MinIO):
    /// only safe if this gateway is the prefix's only writer ever (see the README).
    #[arg(long, requires = "s3_endpoint")]
    s3_unsafe_single_writer: bool,
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
        Cmd::Scrub(a) => gateway::scrub(a.path.as_deref(), a.wait, &a.at),
        Cmd::Fsck(a) => fsck::fsck(a.deep, a.repair, a.wait, &a.at),
        Cmd::Volume(cmd) => volume::run(cmd),
        Cmd::Snapshot(cmd) => snapshot::run(cmd),
        Cmd::Job(cmd) => job::run(cmd),
        Cmd::Offload(cmd) => offload::run(cmd),
        Cmd::Conf(ConfCmd::Check { file }) => conf_check(&file),
        Cmd::Conf(ConfCmd::Render { profile, data_dir }) => conf_render(&profile, &data_dir),
        Cmd::Restore(a) => restore::restore(
            &a.conf,
            strata_engine::RestoreOptions {
                take_over: a.take_over,
                force: a.force,
                ..strata_engine::RestoreOptions::default()
            },
            a.json,
        ),
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
