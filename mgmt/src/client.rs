//! The client: one connection to a gateway's management socket.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::ErrorBody;
use crate::offload::{OffloadCloneReport, OffloadStatsReport};
use crate::protocol::{Reply, Request, RequestLine, ResponseLine, MAX_RESPONSE, PROTOCOL_VERSION};
use crate::reports::{
    JobListReport, JobReport, SnapshotDeleteReport, SnapshotListReport, SnapshotReport,
    StatusReport, SyncReport, VolumeCloneReport, VolumeCreateReport, VolumeListReport,
    VolumeReport,
};

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

    /// [`Request::VolumeList`] (with `all`, the hidden volumes too).
    pub fn volume_list(&mut self, all: bool) -> Result<VolumeListReport, ClientError> {
        match self.call(&Request::VolumeList { all })? {
            Reply::VolumeList(l) => Ok(l),
            other => Err(mismatch("volume_list", &other)),
        }
    }

    /// [`Request::VolumeClone`].
    pub fn volume_clone(
        &mut self,
        source: &str,
        path: &str,
        snapshot: Option<&str>,
    ) -> Result<VolumeCloneReport, ClientError> {
        let req = Request::VolumeClone {
            source: source.into(),
            path: path.into(),
            snapshot: snapshot.map(Into::into),
        };
        match self.call(&req)? {
            Reply::VolumeClone(v) => Ok(v),
            other => Err(mismatch("volume_clone", &other)),
        }
    }

    /// [`Request::Scrub`] of the volume at `path` (every volume: `None`): with `wait`, the job
    /// once it ended; without, at once.
    pub fn scrub(&mut self, path: Option<&str>, wait: bool) -> Result<JobReport, ClientError> {
        let req = Request::Scrub {
            path: path.map(Into::into),
            wait,
        };
        match self.call(&req)? {
            Reply::Job(j) => Ok(j),
            other => Err(mismatch("scrub", &other)),
        }
    }

    /// [`Request::Fsck`]: with `wait`, the job once it ended (its `result` the report); without,
    /// at once.
    pub fn fsck(&mut self, deep: bool, repair: bool, wait: bool) -> Result<JobReport, ClientError> {
        match self.call(&Request::Fsck { deep, repair, wait })? {
            Reply::Job(j) => Ok(j),
            other => Err(mismatch("fsck", &other)),
        }
    }

    /// [`Request::VolumeFlatten`]: with `wait`, the job once it ended; without, at once.
    pub fn volume_flatten(&mut self, path: &str, wait: bool) -> Result<JobReport, ClientError> {
        let req = Request::VolumeFlatten {
            path: path.into(),
            wait,
        };
        match self.call(&req)? {
            Reply::Job(j) => Ok(j),
            other => Err(mismatch("volume_flatten", &other)),
        }
    }

    /// [`Request::OffloadClone`]: a fast clone, or (`full`) a clone then flattened (with
    /// `wait`, answered once the flatten ended).
    pub fn offload_clone(
        &mut self,
        source: &str,
        path: &str,
        full: bool,
        wait: bool,
    ) -> Result<OffloadCloneReport, ClientError> {
        let req = Request::OffloadClone {
            source: source.into(),
            path: path.into(),
            full,
            wait,
        };
        match self.call(&req)? {
            Reply::OffloadClone(r) => Ok(r),
            other => Err(mismatch("offload_clone", &other)),
        }
    }

    /// [`Request::OffloadReserve`]: the volume's state after the reservation.
    pub fn offload_reserve(&mut self, path: &str) -> Result<VolumeReport, ClientError> {
        match self.call(&Request::OffloadReserve { path: path.into() })? {
            Reply::VolumeInfo(v) => Ok(v),
            other => Err(mismatch("offload_reserve", &other)),
        }
    }

    /// [`Request::OffloadStats`].
    pub fn offload_stats(&mut self, path: &str) -> Result<OffloadStatsReport, ClientError> {
        match self.call(&Request::OffloadStats { path: path.into() })? {
            Reply::OffloadStats(r) => Ok(r),
            other => Err(mismatch("offload_stats", &other)),
        }
    }

    /// [`Request::VolumeTemplate`]: the template's snapshot.
    pub fn volume_template(&mut self, path: &str) -> Result<SnapshotReport, ClientError> {
        match self.call(&Request::VolumeTemplate { path: path.into() })? {
            Reply::Snapshot(s) => Ok(s),
            other => Err(mismatch("volume_template", &other)),
        }
    }

    /// [`Request::VolumeCreate`].
    pub fn volume_create(
        &mut self,
        path: &str,
        size: u64,
    ) -> Result<VolumeCreateReport, ClientError> {
        let req = Request::VolumeCreate {
            path: path.into(),
            size,
        };
        match self.call(&req)? {
            Reply::VolumeCreate(v) => Ok(v),
            other => Err(mismatch("volume_create", &other)),
        }
    }

    /// [`Request::SnapshotCreate`].
    pub fn snapshot_create(
        &mut self,
        path: &str,
        name: &str,
        meta: Vec<(String, String)>,
    ) -> Result<SnapshotReport, ClientError> {
        let req = Request::SnapshotCreate {
            path: path.into(),
            name: name.into(),
            meta,
        };
        match self.call(&req)? {
            Reply::Snapshot(s) => Ok(s),
            other => Err(mismatch("snapshot_create", &other)),
        }
    }

    /// [`Request::SnapshotList`].
    pub fn snapshot_list(&mut self, path: &str) -> Result<SnapshotListReport, ClientError> {
        match self.call(&Request::SnapshotList { path: path.into() })? {
            Reply::SnapshotList(l) => Ok(l),
            other => Err(mismatch("snapshot_list", &other)),
        }
    }

    /// [`Request::SnapshotInfo`].
    pub fn snapshot_info(&mut self, path: &str, name: &str) -> Result<SnapshotReport, ClientError> {
        let req = Request::SnapshotInfo {
            path: path.into(),
            name: name.into(),
        };
        match self.call(&req)? {
            Reply::Snapshot(s) => Ok(s),
            other => Err(mismatch("snapshot_info", &other)),
        }
    }

    /// [`Request::SnapshotRollback`].
    pub fn snapshot_rollback(
        &mut self,
        path: &str,
        name: &str,
        force: bool,
    ) -> Result<SnapshotReport, ClientError> {
        let req = Request::SnapshotRollback {
            path: path.into(),
            name: name.into(),
            force,
            wait: true,
        };
        match self.call(&req)? {
            Reply::Snapshot(s) => Ok(s),
            other => Err(mismatch("snapshot_rollback", &other)),
        }
    }

    /// [`Request::SnapshotRollback`] without waiting: the rollback's job.
    pub fn snapshot_rollback_start(
        &mut self,
        path: &str,
        name: &str,
        force: bool,
    ) -> Result<JobReport, ClientError> {
        let req = Request::SnapshotRollback {
            path: path.into(),
            name: name.into(),
            force,
            wait: false,
        };
        match self.call(&req)? {
            Reply::Job(j) => Ok(j),
            other => Err(mismatch("snapshot_rollback", &other)),
        }
    }

    /// [`Request::JobList`].
    pub fn job_list(&mut self) -> Result<JobListReport, ClientError> {
        match self.call(&Request::JobList)? {
            Reply::JobList(l) => Ok(l),
            other => Err(mismatch("job_list", &other)),
        }
    }

    /// [`Request::JobShow`].
    pub fn job_show(&mut self, id: u64) -> Result<JobReport, ClientError> {
        match self.call(&Request::JobShow { id })? {
            Reply::Job(j) => Ok(j),
            other => Err(mismatch("job_show", &other)),
        }
    }

    /// [`Request::JobCancel`].
    pub fn job_cancel(&mut self, id: u64) -> Result<JobReport, ClientError> {
        match self.call(&Request::JobCancel { id })? {
            Reply::Job(j) => Ok(j),
            other => Err(mismatch("job_cancel", &other)),
        }
    }

    /// [`Request::SnapshotDelete`].
    pub fn snapshot_delete(
        &mut self,
        path: &str,
        name: &str,
    ) -> Result<SnapshotDeleteReport, ClientError> {
        let req = Request::SnapshotDelete {
            path: path.into(),
            name: name.into(),
        };
        match self.call(&req)? {
            Reply::SnapshotDelete(d) => Ok(d),
            other => Err(mismatch("snapshot_delete", &other)),
        }
    }
}

/// Decodes one answer as read (at most [`MAX_RESPONSE`] + 1 bytes): a whole line, of this
/// protocol version, holding a result or an error.
pub fn parse_response(buf: &[u8]) -> Result<Reply, ClientError> {
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
