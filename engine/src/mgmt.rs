//! The management API (DESIGN §7): served by the engine inside the gateway process on a Unix
//! stream socket (`Mgmt_Socket`, mode 0600); the `strata` CLI is its client.
//!
//! Protocol: newline-delimited JSON, one request line answered by one response line, any number
//! of requests per connection. Every message carries `"version"` ([`PROTOCOL_VERSION`]).
//!
//! ```text
//! -> {"version":1,"op":"status"}
//! <- {"version":1,"result":{"status":{"gateway_version":"0.1.0",...}}}
//! -> {"version":1,"op":"sync","wait":true}
//! <- {"version":1,"result":{"sync":{"waited":true,"elapsed_ms":12}}}
//! -> {"version":1,"op":"volume_info","path":"/vm1/disk-flat.vmdk"}
//! <- {"version":1,"result":{"volume_info":{"path":"/vm1/disk-flat.vmdk","size":...}}}
//! <- {"version":1,"error":{"kind":"not_found","message":"..."}}
//! ```
//!
//! Requests are at most [`MAX_REQUEST`] bytes; a longer one is answered `too_large` and the
//! connection closed (the stream cannot be resynchronised). A malformed request is answered
//! `bad_request` and changes nothing. Facade calls run on the server's own plain threads, never
//! on the engine runtime; a panic in a handler is caught and answered `internal`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::fs::{BackendConfig, Filesystem};
use crate::types::Kind;

/// Version of the protocol spoken here; requests of another version are refused.
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest request line accepted, in bytes (newline included).
pub const MAX_REQUEST: usize = 64 * 1024;
/// Largest response line the client accepts, in bytes.
pub const MAX_RESPONSE: usize = 1 << 20;
/// Connections served at once; more are answered `busy` and closed.
pub const MAX_CONNECTIONS: usize = 32;
/// A connection idle this long (no complete request) is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on writing one response.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`MgmtServer::stop`] waits for requests in progress (a long sync) to finish.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Pending connections the kernel queues before we accept them.
const BACKLOG: i32 = 16;

// ---------------------------------------------------------------------------------------------
// Wire types
// ---------------------------------------------------------------------------------------------

/// A request, as the `"op"` field names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// The gateway's status: versions, uptime, data directory, capacity.
    Status,
    /// Put everything committed so far on the backend. With `wait` (the default) the answer
    /// comes once it is there; without, the sync starts and the answer comes at once.
    Sync {
        /// Wait for the sync to finish before answering.
        #[serde(default = "yes")]
        wait: bool,
    },
    /// State of the volume at `path` (absolute, inside the Strata namespace).
    VolumeInfo {
        /// e.g. `/vm1/disk-flat.vmdk`.
        path: String,
    },
}

fn yes() -> bool {
    true
}

/// A request line: the version and the request.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RequestLine {
    version: u32,
    #[serde(flatten)]
    request: Request,
}

/// The result of a successful request, keyed by the request's op.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// Answer to [`Request::Status`].
    Status(StatusReport),
    /// Answer to [`Request::Sync`].
    Sync(SyncReport),
    /// Answer to [`Request::VolumeInfo`].
    VolumeInfo(VolumeReport),
}

/// An error answer: a stable machine-readable `kind` and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// One of `bad_request`, `too_large`, `unsupported_version`, `busy`, `internal`,
    /// `not_a_volume`, or an engine error kind (`not_found`, `not_dir`, `is_dir`, `invalid`,
    /// `stale`, `no_space`, `delay`, `not_supported`, `io`, ...).
    pub kind: String,
    /// What went wrong.
    pub message: String,
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.kind)
    }
}

/// A response line: the version and either a result or an error.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ResponseLine {
    version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<Reply>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody>,
}

/// Capacity of the data directory's filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpaceReport {
    /// Total bytes.
    pub total_bytes: u64,
    /// Free bytes.
    pub free_bytes: u64,
    /// Bytes available to unprivileged users.
    pub avail_bytes: u64,
    /// Total inodes.
    pub total_files: u64,
    /// Free inodes.
    pub free_files: u64,
}

/// Answer to [`Request::Status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// Version of the engine serving the request (the strata crates' version).
    pub gateway_version: String,
    /// The protocol version the server speaks.
    pub protocol_version: u32,
    /// PID of the gateway process (ganesha.nfsd).
    pub pid: u32,
    /// Seconds since the management server started (with the engine).
    pub uptime_secs: u64,
    /// The engine's data directory.
    pub data_dir: PathBuf,
    /// The object backend, e.g. `local /var/lib/strata/backend`.
    pub backend: String,
    /// The namespace's identity (the NFS fsid).
    pub fsid: u64,
    /// Capacity of the data directory.
    pub space: SpaceReport,
    /// Management requests served so far (this one included).
    pub requests: u64,
    /// The cluster cache shared by all volumes.
    #[serde(default)]
    pub cluster_cache: ClusterCacheReport,
}

/// The content-addressed cluster cache in [`StatusReport`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterCacheReport {
    /// Its bound in bytes (`Cluster_Cache_Size`; 0: off).
    pub capacity: u64,
    /// Bytes of cluster data held.
    pub bytes: u64,
    /// Lookups that found the cluster (a backend read saved).
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
}

/// Answer to [`Request::Sync`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport {
    /// True when the answer waited for the sync: everything committed before the request is
    /// on the backend. False: the sync was started in the background.
    pub waited: bool,
    /// Time the sync took, in milliseconds (0 when not waited for).
    pub elapsed_ms: u64,
}

/// Answer to [`Request::VolumeInfo`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeReport {
    /// The path asked about.
    pub path: String,
    /// Its inode number (NFS fileid).
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Bytes of data stored for it.
    pub space_used: u64,
    /// Bytes written locally and not yet on the backend.
    pub pending_backend_bytes: u64,
    /// Commits since the gateway opened it.
    pub commits: u64,
    /// Group-commit rounds since the gateway opened it.
    pub commit_rounds: u64,
    /// Clusters written since the gateway opened it.
    pub clusters_written: u64,
    /// SCOs sealed since the gateway opened it.
    pub scos_sealed: u64,
    /// Read cache hits.
    pub cache_hits: u64,
    /// Read cache misses.
    pub cache_misses: u64,
    /// `cache_hits / (cache_hits + cache_misses)`, absent before the first cached read.
    pub cache_hit_rate: Option<f64>,
    /// Clusters of evicted SCOs served by the cluster cache instead of the backend.
    #[serde(default)]
    pub cluster_cache_hits: u64,
    /// TLogs replayed when the volume was opened.
    #[serde(default)]
    pub tlogs_replayed: u64,
    /// The newest TLog applied to the on-disk MetaDataStore.
    #[serde(default)]
    pub applied_tlog: u64,
    /// The newest metadata checkpoint on the backend (0: none).
    #[serde(default)]
    pub checkpoint_tlog: u64,
    /// MetaDataStore entries still corked in memory.
    #[serde(default)]
    pub corked_clusters: u64,
    /// Writes that waited for the upload (paced, or at the write buffer's hard mark).
    #[serde(default)]
    pub writes_paced: u64,
    /// Their total wait, milliseconds.
    #[serde(default)]
    pub pacing_delay_ms: u64,
    /// Writes answered DELAY (buffer full, backend stalled).
    #[serde(default)]
    pub writes_refused: u64,
    /// The largest backlog a write saw, bytes.
    #[serde(default)]
    pub peak_backlog: u64,
    /// The measured upload rate, bytes per second.
    #[serde(default)]
    pub upload_rate: u64,
}

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Another live server answers on the socket path already.
    #[error("{0}: another gateway's management server answers there already")]
    InUse(PathBuf),
    /// Something that is not a socket sits at the path.
    #[error("{0}: exists and is not a socket; remove it or choose another Mgmt_Socket")]
    NotASocket(PathBuf),
    /// The path cannot hold a Unix socket address.
    #[error("{0}: not usable as a Unix socket path: {1}")]
    BadPath(PathBuf, String),
    /// A system call failed.
    #[error("{path}: {what}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
}

/// State shared by the accept thread and the connection threads.
struct Shared {
    fs: Arc<Filesystem>,
    started: Instant,
    stopping: AtomicBool,
    requests: AtomicU64,
    /// Threads serving something (connections and background syncs), for a bounded stop.
    active: Mutex<usize>,
    idle: Condvar,
    /// A handle on every open connection, to wake its reader at stop.
    conns: Mutex<HashMap<u64, UnixStream>>,
    next_conn: AtomicU64,
    /// Test switch: the next request's handler panics.
    #[cfg(test)]
    panic_next: AtomicBool,
}

/// Counts a serving thread in [`Shared::active`] for as long as it lives.
struct ActiveGuard(Arc<Shared>);

impl ActiveGuard {
    /// Registers a thread, unless `limit` threads serve already.
    fn enter(shared: &Arc<Shared>, limit: usize) -> Option<ActiveGuard> {
        let mut n = shared.active.lock();
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(ActiveGuard(shared.clone()))
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        let mut n = self.0.active.lock();
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.0.idle.notify_all();
        }
    }
}

/// The management server: an accept thread plus one plain thread per connection. Stop it with
/// [`MgmtServer::stop`] (or drop it): the socket file is removed.
pub struct MgmtServer {
    path: PathBuf,
    /// (device, inode) of the socket file we created, so stop never removes someone else's.
    file_id: (u64, u64),
    /// A second handle on the listening socket, to wake the accept thread at stop.
    listener: UnixListener,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MgmtServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MgmtServer")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl MgmtServer {
    /// Listens on `path` (mode 0600) and serves `fs`. A stale socket file left by a dead
    /// gateway is replaced; a socket a live server answers on is not.
    pub fn start(path: impl AsRef<Path>, fs: Arc<Filesystem>) -> Result<MgmtServer, ServeError> {
        let path = path.as_ref().to_path_buf();
        let io = |what: &'static str| {
            let path = path.clone();
            move |source: std::io::Error| ServeError::Io { path, what, source }
        };
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_socket() => {
                if UnixStream::connect(&path).is_ok() {
                    return Err(ServeError::InUse(path));
                }
                // Nobody listens: the socket of a gateway that died.
                std::fs::remove_file(&path).map_err(io("removing the stale socket"))?;
            }
            Ok(_) => return Err(ServeError::NotASocket(path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("inspecting")(e)),
        }
        let listener = bind_private(&path)?;
        let meta = std::fs::symlink_metadata(&path).map_err(io("inspecting"))?;
        let shared = Arc::new(Shared {
            fs,
            started: Instant::now(),
            stopping: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            active: Mutex::new(0),
            idle: Condvar::new(),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            #[cfg(test)]
            panic_next: AtomicBool::new(false),
        });
        let waker = listener.try_clone().map_err(io("duplicating"))?;
        let s = shared.clone();
        let accept = std::thread::Builder::new()
            .name("strata-mgmt".into())
            .spawn(move || accept_loop(listener, s))
            .map_err(io("starting the accept thread"))?;
        tracing::info!(socket = %path.display(), "management API listening");
        Ok(MgmtServer {
            path,
            file_id: (meta.dev(), meta.ino()),
            listener: waker,
            shared,
            accept: Some(accept),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting, lets requests in progress finish (bounded), removes the socket file.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Shutting the listening socket down wakes the blocked accept() (Linux: EINVAL).
        if let Err(e) =
            nix::sys::socket::shutdown(self.listener.as_raw_fd(), nix::sys::socket::Shutdown::Both)
        {
            tracing::warn!(error = %e, "cannot wake the management accept thread");
        }
        if accept.join().is_err() {
            tracing::warn!("the management accept thread panicked");
        }
        // Idle connections wait in read(): end their input; a request in progress still
        // gets its answer.
        for c in self.shared.conns.lock().values() {
            let _ = c.shutdown(std::net::Shutdown::Read);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut n = self.shared.active.lock();
        while *n > 0 {
            if self.shared.idle.wait_until(&mut n, deadline).timed_out() {
                tracing::warn!(
                    busy = *n,
                    "management requests still running at stop; not waiting longer"
                );
                break;
            }
        }
        drop(n);
        // Remove the socket file only if it is still the one we created.
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if (m.dev(), m.ino()) == self.file_id {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::warn!(socket = %self.path.display(), error = %e, "cannot remove the management socket");
                }
            }
        }
        tracing::info!(socket = %self.path.display(), "management API stopped");
    }
}

impl Drop for MgmtServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// socket + bind + chmod 0600 + listen: nobody else can connect in between, whatever the
/// process umask.
fn bind_private(path: &Path) -> Result<UnixListener, ServeError> {
    use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
    let sys = |what: &'static str| {
        let path = path.to_path_buf();
        move |e: nix::Error| ServeError::Io {
            path,
            what,
            source: std::io::Error::from(e),
        }
    };
    let addr = UnixAddr::new(path).map_err(|e| ServeError::BadPath(path.into(), e.to_string()))?;
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(sys("creating the socket"))?;
    socket::bind(fd.as_raw_fd(), &addr).map_err(sys("binding"))?;
    let restrict = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    if let Err(source) = restrict {
        let _ = std::fs::remove_file(path);
        return Err(ServeError::Io {
            path: path.into(),
            what: "setting mode 0600",
            source,
        });
    }
    if let Err(e) = socket::listen(&fd, Backlog::new(BACKLOG).unwrap_or(Backlog::MAXCONN)) {
        let _ = std::fs::remove_file(path);
        return Err(sys("listening")(e));
    }
    Ok(UnixListener::from(fd))
}

fn accept_loop(listener: UnixListener, shared: Arc<Shared>) {
    loop {
        let accepted = listener.accept();
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE and the like: back off instead of spinning.
                tracing::warn!(error = %e, "management accept failed");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let Some(guard) = ActiveGuard::enter(&shared, MAX_CONNECTIONS) else {
            refuse_busy(stream);
            continue;
        };
        let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
        if let Ok(c) = stream.try_clone() {
            shared.conns.lock().insert(id, c);
        }
        let s = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("strata-mgmt-conn".into())
            .spawn(move || {
                // Nothing may unwind out of a server thread inside Ganesha.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    serve_connection(stream, &s)
                }));
                s.conns.lock().remove(&id);
                drop(guard);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start a management connection thread");
            shared.conns.lock().remove(&id);
        }
    }
}

fn refuse_busy(stream: UnixStream) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let line = error_line(
        "busy",
        format!("more than {MAX_CONNECTIONS} management connections; try again"),
    );
    let _ = send_all(&stream, line.as_bytes());
}

/// Writes all of `buf` with MSG_NOSIGNAL: a client gone away must not SIGPIPE the gateway.
fn send_all(stream: &UnixStream, mut buf: &[u8]) -> std::io::Result<()> {
    use nix::sys::socket::{send, MsgFlags};
    while !buf.is_empty() {
        match send(stream.as_raw_fd(), buf, MsgFlags::MSG_NOSIGNAL) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(nix::Error::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// What reading one request line gave.
enum Line {
    Eof,
    Request(Vec<u8>),
    TooLarge,
}

fn read_line(r: &mut impl BufRead) -> std::io::Result<Line> {
    let mut buf = Vec::new();
    let n = r.take(MAX_REQUEST as u64 + 1).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(Line::Eof);
    }
    if buf.len() > MAX_REQUEST || (buf.len() == MAX_REQUEST && buf.last() != Some(&b'\n')) {
        return Ok(Line::TooLarge);
    }
    Ok(Line::Request(buf))
}

fn serve_connection(stream: UnixStream, shared: &Arc<Shared>) {
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let out = stream;
    loop {
        let (line, close) = match read_line(&mut reader) {
            Ok(Line::Eof) | Err(_) => return,
            Ok(Line::TooLarge) => (
                error_line(
                    "too_large",
                    format!("request longer than {MAX_REQUEST} bytes"),
                ),
                true,
            ),
            Ok(Line::Request(bytes)) => (handle_bytes(&bytes, shared), false),
        };
        if send_all(&out, line.as_bytes()).is_err() {
            return;
        }
        if close {
            // Closing a Unix socket with unread input resets the peer, which could then lose
            // the answer just sent: stop writing, and swallow a bounded rest of the request.
            let _ = out.shutdown(std::net::Shutdown::Write);
            let _ = reader.get_ref().set_read_timeout(Some(DRAIN_TIMEOUT));
            let _ = std::io::copy(&mut reader.take(DRAIN_LIMIT), &mut std::io::sink());
            return;
        }
    }
}

/// How much of an oversized request is swallowed before closing, and for how long.
const DRAIN_LIMIT: u64 = 16 * MAX_REQUEST as u64;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Answers one request line (without panicking: a handler panic becomes `internal`).
fn handle_bytes(bytes: &[u8], shared: &Arc<Shared>) -> String {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let req = match parse_request(bytes) {
        Ok(r) => r,
        Err(e) => return error_line(&e.kind, e.message),
    };
    let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dispatch(req, shared)));
    let response = match answer {
        Ok(Ok(reply)) => ResponseLine {
            version: PROTOCOL_VERSION,
            result: Some(reply),
            error: None,
        },
        Ok(Err(e)) => ResponseLine {
            version: PROTOCOL_VERSION,
            result: None,
            error: Some(e),
        },
        Err(_) => ResponseLine {
            version: PROTOCOL_VERSION,
            result: None,
            error: Some(ErrorBody {
                kind: "internal".into(),
                message: "the request handler panicked; see the gateway log".into(),
            }),
        },
    };
    to_line(&response)
}

/// Decodes one request line (at most [`MAX_REQUEST`] bytes, see `read_line`): the request,
/// or the error to answer (`bad_request`, `unsupported_version`).
fn parse_request(bytes: &[u8]) -> Result<Request, ErrorBody> {
    let req: RequestLine = match serde_json::from_slice(bytes) {
        Ok(r) => r,
        Err(e) => {
            // Tell a newer client apart from garbage.
            let version = serde_json::from_slice::<serde_json::Value>(bytes)
                .ok()
                .and_then(|v| v.get("version").and_then(|v| v.as_u64()));
            return Err(match version {
                Some(v) if v != u64::from(PROTOCOL_VERSION) => unsupported(v),
                _ => ErrorBody {
                    kind: "bad_request".into(),
                    message: format!("not a valid request: {e}"),
                },
            });
        }
    };
    if req.version != PROTOCOL_VERSION {
        return Err(unsupported(u64::from(req.version)));
    }
    Ok(req.request)
}

fn unsupported(v: u64) -> ErrorBody {
    ErrorBody {
        kind: "unsupported_version".into(),
        message: format!(
            "protocol version {v} is not supported; this gateway speaks {PROTOCOL_VERSION}"
        ),
    }
}

fn error_line(kind: &str, message: String) -> String {
    to_line(&ResponseLine {
        version: PROTOCOL_VERSION,
        result: None,
        error: Some(ErrorBody {
            kind: kind.into(),
            message,
        }),
    })
}

fn to_line(r: &ResponseLine) -> String {
    let mut s = serde_json::to_string(r).unwrap_or_else(|e| {
        format!(
            r#"{{"version":{PROTOCOL_VERSION},"error":{{"kind":"internal","message":"cannot encode the answer: {}"}}}}"#,
            e.to_string().replace(['"', '\\'], "'")
        )
    });
    s.push('\n');
    s
}

/// The stable `kind` of an engine error on the wire.
pub fn error_kind(e: &Error) -> &'static str {
    match e {
        Error::NotFound => "not_found",
        Error::Exists => "exists",
        Error::NotDir => "not_dir",
        Error::IsDir => "is_dir",
        Error::NotEmpty => "not_empty",
        Error::NameTooLong => "name_too_long",
        Error::Invalid(_) => "invalid",
        Error::Stale => "stale",
        Error::NoSpace => "no_space",
        Error::Delay => "delay",
        Error::NotSupported(_) => "not_supported",
        Error::Io(_) | Error::Format(_) | Error::Backend { .. } => "io",
        Error::NotOwner(_) => "not_owner",
    }
}

fn engine_error(e: Error, context: &str) -> ErrorBody {
    ErrorBody {
        kind: error_kind(&e).into(),
        message: format!("{context}: {e}"),
    }
}

fn dispatch(req: Request, shared: &Arc<Shared>) -> Result<Reply, ErrorBody> {
    #[cfg(test)]
    if shared.panic_next.swap(false, Ordering::SeqCst) {
        panic!("injected handler panic");
    }
    let fs = &shared.fs;
    match req {
        Request::Status => {
            let s = fs.statfs().map_err(|e| engine_error(e, "statfs"))?;
            let backend = match &fs.config().backend {
                BackendConfig::Local { dir } => format!("local {}", dir.display()),
            };
            Ok(Reply::Status(StatusReport {
                gateway_version: env!("CARGO_PKG_VERSION").into(),
                protocol_version: PROTOCOL_VERSION,
                pid: std::process::id(),
                uptime_secs: shared.started.elapsed().as_secs(),
                data_dir: fs.config().data_dir.clone(),
                backend,
                fsid: fs.fsid(),
                space: SpaceReport {
                    total_bytes: s.total_bytes,
                    free_bytes: s.free_bytes,
                    avail_bytes: s.avail_bytes,
                    total_files: s.total_files,
                    free_files: s.free_files,
                },
                requests: shared.requests.load(Ordering::Relaxed),
                cluster_cache: {
                    let c = fs.cluster_cache_stats();
                    ClusterCacheReport {
                        capacity: c.capacity,
                        bytes: c.bytes,
                        hits: c.hits,
                        misses: c.misses,
                    }
                },
            }))
        }
        Request::Sync { wait: true } => {
            let t = Instant::now();
            fs.flush_to_backend().map_err(|e| engine_error(e, "sync"))?;
            Ok(Reply::Sync(SyncReport {
                waited: true,
                elapsed_ms: u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX),
            }))
        }
        Request::Sync { wait: false } => {
            // One more than the connection limit: the connection asking holds a slot already.
            let guard =
                ActiveGuard::enter(shared, MAX_CONNECTIONS + 1).ok_or_else(|| ErrorBody {
                    kind: "busy".into(),
                    message: "too many management requests in progress; try again".into(),
                })?;
            let fs = fs.clone();
            std::thread::Builder::new()
                .name("strata-mgmt-sync".into())
                .spawn(move || {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        fs.flush_to_backend()
                    }));
                    match r {
                        Ok(Ok(())) => tracing::info!("background sync done"),
                        Ok(Err(e)) => tracing::warn!(error = %e, "background sync failed"),
                        Err(_) => tracing::warn!("background sync panicked"),
                    }
                    drop(guard);
                })
                .map_err(|e| ErrorBody {
                    kind: "io".into(),
                    message: format!("cannot start the sync: {e}"),
                })?;
            Ok(Reply::Sync(SyncReport {
                waited: false,
                elapsed_ms: 0,
            }))
        }
        Request::VolumeInfo { path } => {
            let attr = fs.lookup_path(&path).map_err(|e| engine_error(e, &path))?;
            if attr.kind != Kind::Volume {
                let what = match attr.kind {
                    Kind::Directory => "a directory",
                    Kind::File => "a regular file (not created with a volume suffix)",
                    Kind::Symlink => "a symbolic link",
                    Kind::Volume => "a volume",
                };
                return Err(ErrorBody {
                    kind: "not_a_volume".into(),
                    message: format!("{path} is not a volume: it is {what}"),
                });
            }
            let v = fs
                .volume_stats(attr.handle)
                .map_err(|e| engine_error(e, &path))?;
            let looked = v.cache_hits + v.cache_misses;
            Ok(Reply::VolumeInfo(VolumeReport {
                path,
                ino: attr.handle.ino,
                size: v.size,
                space_used: v.space_used,
                pending_backend_bytes: v.pending_backend_bytes,
                commits: v.commits,
                commit_rounds: v.commit_rounds,
                clusters_written: v.clusters_written,
                scos_sealed: v.scos_sealed,
                cache_hits: v.cache_hits,
                cache_misses: v.cache_misses,
                cache_hit_rate: (looked > 0).then(|| v.cache_hits as f64 / looked as f64),
                cluster_cache_hits: v.cluster_cache_hits,
                tlogs_replayed: v.tlogs_replayed,
                applied_tlog: v.applied_tlog,
                checkpoint_tlog: v.checkpoint_tlog,
                corked_clusters: v.corked_clusters,
                writes_paced: v.writes_paced,
                pacing_delay_ms: v.pacing_delay_ms,
                writes_refused: v.writes_refused,
                peak_backlog: v.peak_backlog,
                upload_rate: v.upload_rate,
            }))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

/// Why a management call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nobody listens at the socket path: the gateway is not running (or uses another
    /// `Mgmt_Socket`).
    #[error("no gateway answers on {path}: {source}")]
    NotRunning {
        /// The socket path.
        path: PathBuf,
        /// The connect error (not found, connection refused).
        source: std::io::Error,
    },
    /// Connecting or talking failed otherwise (permissions, timeout, broken connection).
    #[error("{0}")]
    Io(String),
    /// The server's answer makes no sense (another program, another protocol).
    #[error("unexpected answer from the gateway: {0}")]
    Protocol(String),
    /// The gateway answered with an error.
    #[error("{0}")]
    Server(ErrorBody),
}

/// A connection to a gateway's management socket.
#[derive(Debug)]
pub struct MgmtClient {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl MgmtClient {
    /// Connects to the socket at `path` (no timeout set: see [`MgmtClient::set_timeout`]).
    pub fn connect(path: impl AsRef<Path>) -> Result<MgmtClient, ClientError> {
        let path = path.as_ref().to_path_buf();
        let stream = match UnixStream::connect(&path) {
            Ok(s) => s,
            Err(source)
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Err(ClientError::NotRunning { path, source });
            }
            Err(e) => {
                return Err(ClientError::Io(format!(
                    "cannot connect to {}: {e}",
                    path.display()
                )))
            }
        };
        let writer = stream
            .try_clone()
            .map_err(|e| ClientError::Io(format!("{}: {e}", path.display())))?;
        Ok(MgmtClient {
            path,
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Bounds each call (sending and waiting for the answer); `None` waits forever.
    pub fn set_timeout(&mut self, t: Option<Duration>) -> Result<(), ClientError> {
        let io = |e: std::io::Error| ClientError::Io(format!("{}: {e}", self.path.display()));
        self.writer.set_write_timeout(t).map_err(io)?;
        self.writer.set_read_timeout(t).map_err(io)
    }

    /// Sends one request and returns its answer.
    pub fn call(&mut self, request: &Request) -> Result<Reply, ClientError> {
        let line = RequestLine {
            version: PROTOCOL_VERSION,
            request: request.clone(),
        };
        let mut text = serde_json::to_string(&line)
            .map_err(|e| ClientError::Protocol(format!("cannot encode the request: {e}")))?;
        text.push('\n');
        self.call_raw(text.as_bytes())
    }

    /// Sends raw bytes as a request (tests of the server's refusals) and parses the answer.
    pub fn call_raw(&mut self, bytes: &[u8]) -> Result<Reply, ClientError> {
        let path = self.path.display().to_string();
        let timed_out = |e: &std::io::Error| {
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            )
        };
        if let Err(e) = self.writer.write_all(bytes) {
            // The server may have refused the request and closed early (too large): its
            // answer is still there to read.
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                return Err(ClientError::Io(format!(
                    "sending the request to {path}: {e}"
                )));
            }
        }
        let mut buf = Vec::new();
        let n = (&mut self.reader)
            .take(MAX_RESPONSE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| {
                if timed_out(&e) {
                    ClientError::Io(format!("no answer from {path} in time"))
                } else {
                    ClientError::Io(format!("reading the answer from {path}: {e}"))
                }
            })?;
        if n == 0 {
            return Err(ClientError::Io(format!(
                "{path} closed the connection without answering"
            )));
        }
        parse_response(&buf)
    }

    /// [`Request::Status`].
    pub fn status(&mut self) -> Result<StatusReport, ClientError> {
        match self.call(&Request::Status)? {
            Reply::Status(s) => Ok(s),
            other => Err(mismatch("status", &other)),
        }
    }

    /// [`Request::Sync`].
    pub fn sync(&mut self, wait: bool) -> Result<SyncReport, ClientError> {
        match self.call(&Request::Sync { wait })? {
            Reply::Sync(s) => Ok(s),
            other => Err(mismatch("sync", &other)),
        }
    }

    /// [`Request::VolumeInfo`].
    pub fn volume_info(&mut self, path: &str) -> Result<VolumeReport, ClientError> {
        match self.call(&Request::VolumeInfo { path: path.into() })? {
            Reply::VolumeInfo(v) => Ok(v),
            other => Err(mismatch("volume_info", &other)),
        }
    }
}

/// Decodes one answer as read (at most [`MAX_RESPONSE`] + 1 bytes): a whole line, of this
/// protocol version, holding a result or an error.
fn parse_response(buf: &[u8]) -> Result<Reply, ClientError> {
    if buf.last() != Some(&b'\n') {
        return Err(ClientError::Protocol(if buf.len() > MAX_RESPONSE {
            format!("answer longer than {MAX_RESPONSE} bytes")
        } else {
            "answer cut short".into()
        }));
    }
    let resp: ResponseLine =
        serde_json::from_slice(buf).map_err(|e| ClientError::Protocol(e.to_string()))?;
    if resp.version != PROTOCOL_VERSION {
        return Err(ClientError::Protocol(format!(
            "the gateway speaks protocol version {}, this client {PROTOCOL_VERSION}",
            resp.version
        )));
    }
    match (resp.result, resp.error) {
        (_, Some(e)) => Err(ClientError::Server(e)),
        (Some(r), None) => Ok(r),
        (None, None) => Err(ClientError::Protocol("neither result nor error".into())),
    }
}

fn mismatch(asked: &str, got: &Reply) -> ClientError {
    ClientError::Protocol(format!("asked for {asked}, got {got:?}"))
}

#[cfg(test)]
mod decoder_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::EngineConfig;
    use crate::types::{CreateMode, Cred};

    /// A server on a temp socket over a real filesystem in a temp directory.
    struct Fixture {
        dir: tempfile::TempDir,
        fs: Arc<Filesystem>,
        server: Option<MgmtServer>,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().expect("tempdir");
            let fs = Arc::new(
                Filesystem::open(EngineConfig::new(dir.path().join("data"))).expect("open"),
            );
            let server =
                MgmtServer::start(dir.path().join("mgmt.sock"), fs.clone()).expect("start");
            Fixture {
                dir,
                fs,
                server: Some(server),
            }
        }

        fn sock(&self) -> PathBuf {
            self.dir.path().join("mgmt.sock")
        }

        fn client(&self) -> MgmtClient {
            let mut c = MgmtClient::connect(self.sock()).expect("connect");
            c.set_timeout(Some(Duration::from_secs(30)))
                .expect("timeout");
            c
        }
    }

    fn server_error(r: Result<Reply, ClientError>) -> ErrorBody {
        match r {
            Err(ClientError::Server(e)) => e,
            other => panic!("expected a server error, got {other:?}"),
        }
    }

    #[test]
    fn status_sync_and_volume_info_round_trip() {
        let f = Fixture::new();
        let mut c = f.client();
        let st = c.status().expect("status");
        assert_eq!(st.protocol_version, PROTOCOL_VERSION);
        assert_eq!(st.gateway_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(st.pid, std::process::id());
        assert_eq!(st.data_dir, f.dir.path().join("data"));
        assert_eq!(st.fsid, f.fs.fsid());
        assert!(st.backend.starts_with("local "), "{}", st.backend);
        assert!(st.space.total_bytes > 0 && st.space.avail_bytes <= st.space.total_bytes);

        // A volume written through the facade, as Ganesha would.
        let root = f.fs.root();
        let v =
            f.fs.create(
                root,
                b"disk-flat.vmdk",
                0o644,
                Cred::default(),
                CreateMode::Guarded,
            )
            .expect("create volume")
            .attr;
        let data = vec![0x5au8; 3 * 4096 + 100];
        f.fs.write(v.handle, 8192, &data, false).expect("write");
        let synced = c.sync(true).expect("sync");
        assert!(synced.waited);
        let info = c.volume_info("/disk-flat.vmdk").expect("volume info");
        assert_eq!(info.path, "/disk-flat.vmdk");
        assert_eq!(info.ino, v.handle.ino);
        assert_eq!(info.size, 8192 + data.len() as u64);
        assert!(info.space_used >= data.len() as u64, "{info:?}");
        assert_eq!(info.pending_backend_bytes, 0, "{info:?}");
        let direct = f.fs.volume_stats(v.handle).expect("volume_stats");
        assert_eq!(info.size, direct.size);
        assert_eq!(info.space_used, direct.space_used);

        // The same connection keeps serving; the request counter counts all of them.
        assert!(c.status().expect("status again").requests >= 4);
        // A sync in the background answers at once.
        assert!(!c.sync(false).expect("background sync").waited);
    }

    #[test]
    fn volume_info_refuses_what_is_not_a_volume() {
        let f = Fixture::new();
        let root = f.fs.root();
        f.fs.mkdir(root, b"vm1", 0o755, Cred::default())
            .expect("mkdir");
        f.fs.create(
            root,
            b"notes.txt",
            0o644,
            Cred::default(),
            CreateMode::Guarded,
        )
        .expect("create file");
        let mut c = f.client();
        let req = |p: &str| Request::VolumeInfo { path: p.into() };
        let e = server_error(c.call(&req("/vm1")));
        assert_eq!(e.kind, "not_a_volume");
        assert!(
            e.message
                .contains("/vm1 is not a volume: it is a directory"),
            "{e}"
        );
        let e = server_error(c.call(&req("/notes.txt")));
        assert_eq!(e.kind, "not_a_volume");
        let e = server_error(c.call(&req("/vm1/missing-flat.vmdk")));
        assert_eq!(e.kind, "not_found", "{e}");
        let e = server_error(c.call(&req("relative-flat.vmdk")));
        assert_eq!(e.kind, "invalid", "{e}");
    }

    #[test]
    fn bad_requests_get_clear_errors_and_change_nothing() {
        let f = Fixture::new();
        let before = f.fs.readdir(f.fs.root(), 0, 100).expect("readdir");
        let mut c = f.client();
        for (raw, kind, needle) in [
            (&b"hello\n"[..], "bad_request", "not a valid request"),
            (
                b"{\"version\":1,\"op\":\"mkdir\",\"path\":\"/x\"}\n",
                "bad_request",
                "mkdir",
            ),
            (
                b"{\"version\":1,\"op\":\"volume_info\"}\n",
                "bad_request",
                "path",
            ),
            (b"{\"op\":\"status\"}\n", "bad_request", "version"),
            (
                b"{\"version\":2,\"op\":\"status\"}\n",
                "unsupported_version",
                "version 2",
            ),
            (
                b"{\"version\":9,\"op\":\"future\"}\n",
                "unsupported_version",
                "version 9",
            ),
            (b"\xff\xfe\n", "bad_request", "not a valid request"),
        ] {
            let e = server_error(c.call_raw(raw));
            assert_eq!(e.kind, kind, "{:?}: {e}", String::from_utf8_lossy(raw));
            assert!(
                e.message.contains(needle),
                "{:?}: {e}",
                String::from_utf8_lossy(raw)
            );
        }
        // The connection still works, and nothing changed.
        c.status().expect("status after bad requests");
        let after = f.fs.readdir(f.fs.root(), 0, 100).expect("readdir");
        assert_eq!(before, after);
    }

    #[test]
    fn oversized_request_is_refused_and_the_connection_closed() {
        let f = Fixture::new();
        // Just under the limit: parsed (as garbage), the connection stays.
        let mut c = f.client();
        let mut small = vec![b' '; MAX_REQUEST - 1];
        small.push(b'\n');
        assert_eq!(server_error(c.call_raw(&small)).kind, "bad_request");
        c.status().expect("still usable");
        // Over the limit, without any newline: refused without reading it all.
        let big = vec![b'x'; MAX_REQUEST * 4];
        let mut c = f.client();
        let e = server_error(c.call_raw(&big));
        assert_eq!(e.kind, "too_large");
        assert!(e.message.contains(&MAX_REQUEST.to_string()), "{e}");
        match c.status() {
            Err(ClientError::Io(_)) => {}
            other => panic!("the connection should be closed, got {other:?}"),
        }
        // The server itself is fine.
        f.client().status().expect("new connection");
    }

    #[test]
    fn socket_is_mode_0600_and_stop_removes_it() {
        let mut f = Fixture::new();
        let m = std::fs::symlink_metadata(f.sock()).expect("socket exists");
        assert!(m.file_type().is_socket());
        assert_eq!(m.permissions().mode() & 0o7777, 0o600);
        // An idle connection must not hold stop up.
        let _idle = f.client();
        let t = Instant::now();
        f.server.take().expect("server").stop();
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "stop took {:?}",
            t.elapsed()
        );
        assert!(!f.sock().exists(), "socket file left behind");
        match MgmtClient::connect(f.sock()) {
            Err(ClientError::NotRunning { .. }) => {}
            other => panic!("expected NotRunning, got {other:?}"),
        }
    }

    #[test]
    fn stale_socket_is_replaced_live_one_and_other_files_are_not() {
        let f = Fixture::new();
        // A second server on the live socket is refused.
        match MgmtServer::start(f.sock(), f.fs.clone()) {
            Err(ServeError::InUse(_)) => {}
            other => panic!("expected InUse, got {other:?}"),
        }
        f.client().status().expect("first server unharmed");
        // A socket file nobody listens on (a dead gateway's) is replaced.
        let stale = f.dir.path().join("stale.sock");
        drop(UnixListener::bind(&stale).expect("bind"));
        assert!(stale.exists());
        let s = MgmtServer::start(&stale, f.fs.clone()).expect("replace stale");
        MgmtClient::connect(&stale)
            .expect("connect")
            .status()
            .expect("status");
        s.stop();
        // A regular file is never removed.
        let file = f.dir.path().join("file.sock");
        std::fs::write(&file, b"keep").expect("write");
        match MgmtServer::start(&file, f.fs.clone()) {
            Err(ServeError::NotASocket(_)) => {}
            other => panic!("expected NotASocket, got {other:?}"),
        }
        assert_eq!(std::fs::read(&file).expect("read"), b"keep");
    }

    #[test]
    fn handler_panic_is_caught_and_answered() {
        let f = Fixture::new();
        let mut c = f.client();
        let server = f.server.as_ref().expect("server");
        server.shared.panic_next.store(true, Ordering::SeqCst);
        let e = server_error(c.call(&Request::Status));
        assert_eq!(e.kind, "internal");
        c.status().expect("the same connection serves on");
    }

    #[test]
    fn connections_beyond_the_limit_are_told_busy() {
        let f = Fixture::new();
        let mut held = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            let mut c = f.client();
            // A round trip proves the server counts this connection.
            c.status().expect("status");
            held.push(c);
        }
        let mut extra = f.client();
        let e = server_error(extra.call(&Request::Status));
        assert_eq!(e.kind, "busy");
        held.pop();
        // The slot frees when the connection's thread ends: poll, bounded.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match f.client().status() {
                Ok(_) => break,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("slot never freed: {e}"),
            }
        }
    }
}
