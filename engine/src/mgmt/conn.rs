//! Connections: the private socket, the accept loop, one thread per connection, request
//! framing and decoding, answer encoding.

use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::handlers::dispatch;
use super::{
    ActiveGuard, ErrorBody, ErrorKind, Request, RequestLine, ResponseLine, ServeError, Shared,
    BACKLOG, IDLE_TIMEOUT, MAX_CONNECTIONS, MAX_REQUEST, PROTOCOL_VERSION, WRITE_TIMEOUT,
};

/// socket + bind + chmod 0600 + listen: nobody else can connect in between, whatever the
/// process umask.
pub(super) fn bind_private(path: &Path) -> Result<UnixListener, ServeError> {
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

pub(super) fn accept_loop(listener: UnixListener, shared: Arc<Shared>) {
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
        ErrorKind::Busy,
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
pub(super) enum Line {
    Eof,
    Request(Vec<u8>),
    TooLarge,
}

pub(super) fn read_line(r: &mut impl BufRead) -> std::io::Result<Line> {
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
                    ErrorKind::TooLarge,
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
        Err(e) => return error_line(e.kind, e.message),
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
                kind: ErrorKind::Internal,
                message: "the request handler panicked; see the gateway log".into(),
            }),
        },
    };
    to_line(&response)
}

/// Decodes one request line (at most [`MAX_REQUEST`] bytes, see `read_line`): the request,
/// or the error to answer (`bad_request`, `unsupported_version`).
pub(super) fn parse_request(bytes: &[u8]) -> Result<Request, ErrorBody> {
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
                    kind: ErrorKind::BadRequest,
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
        kind: ErrorKind::UnsupportedVersion,
        message: format!(
            "protocol version {v} is not supported; this gateway speaks {PROTOCOL_VERSION}"
        ),
    }
}

fn error_line(kind: ErrorKind, message: String) -> String {
    to_line(&ResponseLine {
        version: PROTOCOL_VERSION,
        result: None,
        error: Some(ErrorBody { kind, message }),
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
