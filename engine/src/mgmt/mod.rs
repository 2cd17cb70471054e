//! The management API's server (DESIGN §7), served by the engine inside the gateway process on
//! a Unix stream socket (`Mgmt_Socket`, mode 0600); the `strata` CLI is its client. The
//! protocol's types and the client are the `strata-mgmt` crate (re-exported here).
//!
//! - this file: [`MgmtServer`] (start, stop) and the state its threads share;
//! - `conn`: the socket (bound private), the accept loop, one thread per connection, framing
//!   and decoding of request lines, encoding of answers;
//! - `handlers`: one handler per resource (`status`, `sync`, `volume`, `snapshot`, `job`),
//!   and the mapping of engine errors to error kinds, and `spawn_job` (a long operation
//!   on a thread of its own, as one of the engine's jobs, `crate::jobs`).
//!
//! Requests are at most [`MAX_REQUEST`] bytes; a longer one is answered `too_large` and the
//! connection closed (the stream cannot be resynchronised). A malformed request is answered
//! `bad_request` and changes nothing. Facade calls run on the server's own plain threads, never
//! on the engine runtime; a panic in a handler is caught and answered `internal`.

mod conn;
mod handlers;

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

pub use self::handlers::error_kind;
pub use strata_mgmt::*;

use self::conn::{accept_loop, bind_private};
use crate::fs::Filesystem;
use crate::jobs::Job;

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

/// Runs `op` as a job of `kind` on `target` (`crate::jobs`) on a thread of its own, counted as
/// active so that the server's stop waits for it (bounded); a panic ends it `failed`.
fn spawn_job(
    shared: &Arc<Shared>,
    kind: &'static str,
    target: String,
    op: impl FnOnce(&Job) -> Result<(), ErrorBody> + Send + 'static,
) -> Result<Arc<Job>, ErrorBody> {
    // One more than the connection limit: the connection asking holds a slot already.
    let guard = ActiveGuard::enter(shared, MAX_CONNECTIONS + 1).ok_or_else(|| ErrorBody {
        kind: ErrorKind::Busy,
        message: "too many management requests in progress; try again".into(),
    })?;
    let job = shared.fs.jobs().register(kind, target);
    let j = job.clone();
    std::thread::Builder::new()
        .name(format!("strata-job-{}", job.report().id))
        .spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| op(&j)))
                .unwrap_or_else(|_| {
                    Err(ErrorBody {
                        kind: ErrorKind::Internal,
                        message: format!("{kind} job panicked; see the gateway log"),
                    })
                });
            j.finish(r);
            drop(guard);
        })
        .map_err(|e| {
            let err = ErrorBody {
                kind: ErrorKind::Io,
                message: format!("cannot start the {kind} job: {e}"),
            };
            job.finish(Err(err.clone()));
            err
        })?;
    Ok(job)
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

#[cfg(test)]
mod decoder_tests;
#[cfg(test)]
mod tests;
