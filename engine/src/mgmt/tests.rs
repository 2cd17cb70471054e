//! The management server through its client: every request, the refusals, stop.

use std::os::unix::fs::PermissionsExt;

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
        let fs =
            Arc::new(Filesystem::open(EngineConfig::new(dir.path().join("data"))).expect("open"));
        let server = MgmtServer::start(dir.path().join("mgmt.sock"), fs.clone()).expect("start");
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
