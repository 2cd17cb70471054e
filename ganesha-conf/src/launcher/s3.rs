//! The S3 test server: SeaweedFS `weed mini` (installed by `scripts/setup`, see
//! `../shared/docs/s3-test-server.md`) started inside the gateway's namespaces before Ganesha,
//! with a fresh data directory and its own ports, and ready once a signed HeadBucket on its
//! bucket answers 200 and a signed PUT into it is stored. For tests and benchmarks of the S3 backend: a real, disk-backed store on
//! the private loopback, stopped with the gateway.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use super::process::{kill_now, proc_start_time};
use super::tools::{log_tail, setup_err};
use super::{io_err, Gateway, LaunchError, Proc, POLL};

/// How long `weed mini` gets to answer a signed HeadBucket and store a PUT (about 1.5 s idle).
const S3_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `$1` (the weed binary) with the arguments after `$2`, with directory `$2` bound over
/// /tmp: the binary is opened before the bind and executed through its descriptor.
const PRIVATE_TMP: &str = r#"exec 3<"$1" && mkdir -p "$2/data" && mount --bind "$2" /tmp && shift 2 && exec /proc/self/fd/3 "$@""#;

/// The key of the readiness PUT (deleted again once it was stored).
const READY_KEY: &str = "launcher-ready-check";

/// curl arguments of the readiness PUT (a small unsigned-payload body).
const PUT_ARGS: [&str; 7] = [
    "-X",
    "PUT",
    "-H",
    "x-amz-content-sha256: UNSIGNED-PAYLOAD",
    "--data-binary",
    "ready",
    "-s",
];

/// An S3 server to run beside Ganesha ([`super::LaunchOptions::s3_server`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3ServerOptions {
    /// The `weed` binary.
    pub weed: PathBuf,
    /// The bucket the server creates (3 to 63 characters).
    pub bucket: String,
    /// The access key it accepts.
    pub access_key: String,
    /// The secret key it accepts.
    pub secret_key: String,
    /// The first of its ports: it listens on base+1 to base+6 and base+333 (S3), and each
    /// +10000 for gRPC, so two servers in one namespace need bases at least 1000 apart.
    pub port_base: u16,
    /// A delaying proxy in front of the server (a network's latency; the kernel has no
    /// `netem`): the endpoint is then the proxy's, on base+334.
    pub latency: Option<Latency>,
}

/// `strata-delay-proxy` between the gateway and the S3 server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Latency {
    /// The `strata-delay-proxy` binary.
    pub proxy: PathBuf,
    /// Milliseconds each chunk is held, in each direction.
    pub delay_ms: u32,
}

impl S3ServerOptions {
    /// A server with test credentials and bucket `strata-test`, the `weed` binary at `weed`.
    pub fn for_tests(weed: PathBuf) -> S3ServerOptions {
        S3ServerOptions {
            weed,
            bucket: "strata-test".into(),
            access_key: "strata-test-key".into(),
            secret_key: "strata-test-secret-0123456789".into(),
            port_base: 8000,
            latency: None,
        }
    }

    /// The S3 endpoint URL (path-style addressing: `<endpoint>/<bucket>/<key>`): the server's,
    /// or its delaying proxy's.
    pub fn endpoint(&self) -> String {
        let port = if self.latency.is_some() { 334 } else { 333 };
        format!("http://127.0.0.1:{}", u32::from(self.port_base) + port)
    }

    /// The `weed` binary `scripts/setup` installs under the repository at `repo`.
    pub fn setup_weed(repo: &Path) -> PathBuf {
        repo.join(".cache/s3/venv/bin/weed")
    }
}

impl Gateway {
    /// Kills the S3 server with SIGKILL (an outage of the store) and reaps it; its data stay.
    pub fn kill_s3(&mut self) -> Result<(), LaunchError> {
        if let Some(mut p) = self.s3.take() {
            kill_now(&mut p)?;
        }
        Ok(())
    }

    /// Starts the S3 server again on its data (after [`Gateway::kill_s3`]) and waits until it
    /// is ready.
    pub fn restart_s3(&mut self) -> Result<(), LaunchError> {
        let o = self
            .s3_options
            .clone()
            .ok_or_else(|| setup_err("this gateway has no S3 server"))?;
        self.kill_s3()?;
        self.start_s3(&o, false)
    }

    /// Starts `weed mini` in the gateway's namespaces and waits until a signed HeadBucket on
    /// its bucket answers 200 and a PUT is stored; on failure the error carries the tail of its log.
    pub(super) fn start_s3(&mut self, o: &S3ServerOptions, fresh: bool) -> Result<(), LaunchError> {
        if !o.weed.is_file() {
            return Err(setup_err(format!(
                "{} not found: scripts/setup installs the S3 test server",
                o.weed.display()
            )));
        }
        let base = u32::from(o.port_base);
        if base + 333 + 10_000 > u32::from(u16::MAX) {
            return Err(setup_err(format!(
                "S3 port base {base} too high: its gRPC ports pass 65535"
            )));
        }
        let dir = self.work_dir.join("s3");
        if fresh && dir.exists() {
            fs::remove_dir_all(&dir).map_err(io_err(format!("emptying {}", dir.display())))?;
        }
        fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        let log = self.work_dir.join("s3.log");
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(io_err("opening s3.log"))?;
        let err = out.try_clone().map_err(io_err("cloning a file handle"))?;
        let port = |n: u32| (base + n).to_string();
        // weed names unix sockets after its ports in /tmp (`/tmp/seaweedfs-*-<port>.sock`),
        // which every gateway's namespace shares: it runs in a mount namespace of its own with
        // its directory bound over /tmp (the binary opened first, as it may live under /tmp).
        let child = self
            .command("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                PRIVATE_TMP,
                "sh",
            ])
            .arg(&o.weed)
            .arg(&dir)
            .arg("mini")
            .arg("-dir=/tmp/data")
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-master.telemetry=false",
            ])
            .args([
                "-admin.ui=false",
                "-webdav=false",
                "-s3.autoCreateBucket=false",
            ])
            .arg("-volume.preStopSeconds=0")
            .arg(format!("-master.port={}", port(1)))
            .arg(format!("-volume.port={}", port(2)))
            .arg(format!("-filer.port={}", port(3)))
            .arg(format!("-admin.port={}", port(4)))
            .arg(format!("-s3.port.iceberg={}", port(5)))
            .arg(format!("-s3.port.lance={}", port(6)))
            .arg(format!("-s3.port={}", port(333)))
            .arg(format!("-bucket={}", o.bucket))
            .env("AWS_ACCESS_KEY_ID", &o.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &o.secret_key)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io_err("starting weed mini"))?;
        let pid = child.id();
        self.s3 = Some(Proc {
            name: "s3",
            start_time: proc_start_time(pid).unwrap_or(0),
            child,
        });
        if let Some(l) = &o.latency {
            self.start_s3_proxy(l, base)?;
        }
        let deadline = Instant::now() + S3_READY_TIMEOUT;
        // Ready once a signed HeadBucket answers 200 and then a PUT is stored: the S3 front
        // answers before its volume server takes writes ("volume 1 not found", HTTP 500).
        let mut bucket_ready = false;
        loop {
            if !bucket_ready {
                bucket_ready = self.s3_request(o, &["-I"], "")? == "200";
            }
            if bucket_ready && self.s3_request(o, &PUT_ARGS, READY_KEY)? == "200" {
                self.s3_request(o, &["-X", "DELETE"], READY_KEY)?;
                return Ok(());
            }
            let s3 = self
                .s3
                .as_mut()
                .ok_or_else(|| setup_err("the S3 server vanished"))?;
            if let Some(status) = s3.child.try_wait().map_err(io_err("waiting for weed"))? {
                self.s3 = None;
                return Err(setup_err(format!(
                    "weed mini exited ({status}):\n{}",
                    log_tail(&log)
                )));
            }
            if Instant::now() > deadline {
                return Err(setup_err(format!(
                    "the S3 server did not store a signed PUT in {}s:\n{}",
                    S3_READY_TIMEOUT.as_secs(),
                    log_tail(&log)
                )));
            }
            thread::sleep(POLL * 10);
        }
    }

    /// Starts the delaying proxy on base+334 in front of the server on base+333.
    fn start_s3_proxy(&mut self, l: &Latency, base: u32) -> Result<(), LaunchError> {
        let log = self.work_dir.join("s3-proxy.log");
        let out = fs::File::create(&log).map_err(io_err("creating s3-proxy.log"))?;
        let err = out.try_clone().map_err(io_err("cloning a file handle"))?;
        let child = self
            .command(&l.proxy)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", base + 334))
            .arg("--upstream")
            .arg(format!("127.0.0.1:{}", base + 333))
            .arg("--delay-ms")
            .arg(l.delay_ms.to_string())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io_err(format!("starting {}", l.proxy.display())))?;
        let pid = child.id();
        self.s3_proxy = Some(Proc {
            name: "s3-proxy",
            start_time: proc_start_time(pid).unwrap_or(0),
            child,
        });
        Ok(())
    }

    /// The HTTP status of a signed request with `args` on `key` of the S3 server's bucket (the
    /// bucket itself if `key` is empty; "000": no answer).
    fn s3_request(
        &self,
        o: &S3ServerOptions,
        args: &[&str],
        key: &str,
    ) -> Result<String, LaunchError> {
        let out = self
            .command("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
            ])
            .args(["--aws-sigv4", "aws:amz:us-east-1:s3", "--user"])
            .arg(format!("{}:{}", o.access_key, o.secret_key))
            .args(args)
            .arg(format!("{}/{}/{key}", o.endpoint(), o.bucket))
            .stdin(Stdio::null())
            .output()
            .map_err(io_err("running curl"))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}
