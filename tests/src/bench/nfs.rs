//! The benchmark's own NFS client on libnfs 4.0 (NFSv3): true random I/O at a queue depth
//! (libnfs's async API driven by one poll loop), optionally with a COMMIT every N writes, and
//! small-file work (create, write 4 KiB, commit, remove). It runs as `strata-bench client ...`
//! inside the gateway's namespace and prints one `key=value` line per result.

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::time::{Duration, Instant};

/// Opaque `struct nfs_context`.
#[repr(C)]
struct NfsContext {
    _p: [u8; 0],
}

/// Opaque `struct nfsfh`.
#[repr(C)]
struct NfsFh {
    _p: [u8; 0],
}

/// `struct nfs_url` of libnfs.h.
#[repr(C)]
struct NfsUrl {
    server: *mut c_char,
    path: *mut c_char,
    file: *mut c_char,
}

type NfsCb = unsafe extern "C" fn(c_int, *mut NfsContext, *mut c_void, *mut c_void);

#[link(name = "nfs")]
extern "C" {
    fn nfs_init_context() -> *mut NfsContext;
    fn nfs_destroy_context(nfs: *mut NfsContext);
    fn nfs_parse_url_dir(nfs: *mut NfsContext, url: *const c_char) -> *mut NfsUrl;
    fn nfs_destroy_url(url: *mut NfsUrl);
    fn nfs_mount(nfs: *mut NfsContext, server: *const c_char, export: *const c_char) -> c_int;
    fn nfs_set_timeout(nfs: *mut NfsContext, ms: c_int);
    fn nfs_get_error(nfs: *mut NfsContext) -> *mut c_char;
    fn nfs_open(
        nfs: *mut NfsContext,
        path: *const c_char,
        flags: c_int,
        fh: *mut *mut NfsFh,
    ) -> c_int;
    fn nfs_creat(
        nfs: *mut NfsContext,
        path: *const c_char,
        mode: c_int,
        fh: *mut *mut NfsFh,
    ) -> c_int;
    fn nfs_close(nfs: *mut NfsContext, fh: *mut NfsFh) -> c_int;
    fn nfs_pwrite(
        nfs: *mut NfsContext,
        fh: *mut NfsFh,
        off: u64,
        count: u64,
        buf: *const c_void,
    ) -> c_int;
    fn nfs_fsync(nfs: *mut NfsContext, fh: *mut NfsFh) -> c_int;
    fn nfs_unlink(nfs: *mut NfsContext, path: *const c_char) -> c_int;
    fn nfs_mkdir(nfs: *mut NfsContext, path: *const c_char) -> c_int;
    fn nfs_rmdir(nfs: *mut NfsContext, path: *const c_char) -> c_int;
    fn nfs_pwrite_async(
        nfs: *mut NfsContext,
        fh: *mut NfsFh,
        off: u64,
        count: u64,
        buf: *const c_void,
        cb: NfsCb,
        private: *mut c_void,
    ) -> c_int;
    fn nfs_pread_async(
        nfs: *mut NfsContext,
        fh: *mut NfsFh,
        off: u64,
        count: u64,
        cb: NfsCb,
        private: *mut c_void,
    ) -> c_int;
    fn nfs_fsync_async(
        nfs: *mut NfsContext,
        fh: *mut NfsFh,
        cb: NfsCb,
        private: *mut c_void,
    ) -> c_int;
    fn nfs_get_fd(nfs: *mut NfsContext) -> c_int;
    fn nfs_which_events(nfs: *mut NfsContext) -> c_int;
    fn nfs_service(nfs: *mut NfsContext, revents: c_int) -> c_int;
}

/// Completion bookkeeping shared with libnfs callbacks through their private pointer (Cells:
/// callbacks may run inside any libnfs call, while the loop holds a shared reference).
#[derive(Default)]
struct Pending {
    inflight: Cell<u32>,
    done: Cell<u64>,
    commits: Cell<u64>,
    commit_inflight: Cell<bool>,
    errors: Cell<u64>,
    first_err: Cell<c_int>,
    /// Microseconds from issue to reply of each timed READ or WRITE that succeeded.
    latencies_us: RefCell<Vec<u32>>,
}

impl Pending {
    fn fail(&self, err: c_int) {
        self.errors.set(self.errors.get() + 1);
        if self.first_err.get() == 0 {
            self.first_err.set(err);
        }
    }
}

/// Callback of one READ or WRITE.
unsafe extern "C" fn on_io(err: c_int, _: *mut NfsContext, _: *mut c_void, private: *mut c_void) {
    // SAFETY: `private` is the `Pending` boxed in `Client`, which outlives the context (the
    // context, which may still call back with a cancel status, is destroyed first).
    let p = unsafe { &*private.cast::<Pending>() };
    p.inflight.set(p.inflight.get().saturating_sub(1));
    if err < 0 {
        p.fail(err);
    } else {
        p.done.set(p.done.get() + 1);
    }
}

/// One timed READ or WRITE in flight: its job's `Pending` and when it was issued (boxed, its
/// pointer the callback's private data; the callback frees it).
struct Timed {
    pending: *const Pending,
    issued: Instant,
}

/// Callback of one timed READ or WRITE: as [`on_io`], and its latency recorded.
unsafe extern "C" fn on_timed_io(
    err: c_int,
    nfs: *mut NfsContext,
    data: *mut c_void,
    private: *mut c_void,
) {
    // SAFETY: `private` is the `Timed` boxed by `randio` for this request alone; the library
    // calls back once per request.
    let t = unsafe { Box::from_raw(private.cast::<Timed>()) };
    // SAFETY: the `Pending` outlives the context (as in `on_io`).
    let p = unsafe { &*t.pending };
    if err >= 0 {
        let us = u32::try_from(t.issued.elapsed().as_micros()).unwrap_or(u32::MAX);
        p.latencies_us.borrow_mut().push(us);
    }
    // SAFETY: as in `on_io`, with the same `Pending`.
    unsafe { on_io(err, nfs, data, t.pending.cast_mut().cast()) };
}

/// The `q`-quantile (0..=1) of `sorted` (ascending), 0 when empty.
fn quantile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Callback of one COMMIT.
unsafe extern "C" fn on_commit(
    err: c_int,
    _: *mut NfsContext,
    _: *mut c_void,
    private: *mut c_void,
) {
    // SAFETY: as in `on_io`.
    let p = unsafe { &*private.cast::<Pending>() };
    p.inflight.set(p.inflight.get().saturating_sub(1));
    p.commit_inflight.set(false);
    if err < 0 {
        p.fail(err);
    } else {
        p.commits.set(p.commits.get() + 1);
    }
}

/// A mounted libnfs context (NFSv3).
struct Client {
    nfs: *mut NfsContext,
    // Declared after `nfs`, but dropped explicitly after the context in `Drop`.
    pending: Box<Pending>,
}

impl Drop for Client {
    fn drop(&mut self) {
        // SAFETY: `nfs` came from nfs_init_context and is destroyed exactly once; callbacks
        // it fires while cancelling point at `pending`, still alive here.
        unsafe { nfs_destroy_context(self.nfs) };
    }
}

fn cstr(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte"))
}

impl Client {
    /// Mounts the export named by a libnfs URL (`nfs://host/export`).
    fn mount(url: &str) -> Result<Client, String> {
        // SAFETY: plain constructor; NULL is checked.
        let nfs = unsafe { nfs_init_context() };
        if nfs.is_null() {
            return Err("nfs_init_context failed".into());
        }
        let client = Client {
            nfs,
            pending: Box::default(),
        };
        let c_url = cstr(url)?;
        // SAFETY: valid context and NUL-terminated string; the result is checked for NULL,
        // its strings are read before it is freed.
        unsafe {
            let u = nfs_parse_url_dir(nfs, c_url.as_ptr());
            if u.is_null() {
                return Err(client.error(&format!("parse url {url}"), -libc::EINVAL));
            }
            nfs_set_timeout(nfs, 60_000);
            let rc = nfs_mount(nfs, (*u).server, (*u).path);
            nfs_destroy_url(u);
            if rc < 0 {
                return Err(client.error("mount", rc));
            }
        }
        Ok(client)
    }

    /// libnfs's message for the last error, with `what` and the errno.
    fn error(&self, what: &str, rc: c_int) -> String {
        // SAFETY: valid context; the returned string (possibly NULL) is owned by libnfs.
        let msg = unsafe {
            let m = nfs_get_error(self.nfs);
            if m.is_null() {
                String::new()
            } else {
                CStr::from_ptr(m).to_string_lossy().into_owned()
            }
        };
        format!("{what}: {msg} (errno {})", -rc)
    }

    fn open(&self, path: &str, create: bool) -> Result<*mut NfsFh, String> {
        let p = cstr(path)?;
        let mut fh = std::ptr::null_mut();
        // SAFETY: valid context, path and out pointer.
        let rc = unsafe {
            if create {
                nfs_creat(self.nfs, p.as_ptr(), 0o644, &mut fh)
            } else {
                nfs_open(self.nfs, p.as_ptr(), libc::O_RDWR, &mut fh)
            }
        };
        if rc < 0 || fh.is_null() {
            return Err(self.error(&format!("open {path}"), rc));
        }
        Ok(fh)
    }

    fn close(&self, fh: *mut NfsFh) {
        // SAFETY: `fh` is an open handle of this context, closed once.
        unsafe { nfs_close(self.nfs, fh) };
    }

    fn pwrite(&self, fh: *mut NfsFh, off: u64, buf: &[u8]) -> Result<(), String> {
        // SAFETY: valid handle; `buf` is valid for its length during the call.
        let rc = unsafe { nfs_pwrite(self.nfs, fh, off, buf.len() as u64, buf.as_ptr().cast()) };
        if rc < 0 {
            return Err(self.error("write", rc));
        }
        Ok(())
    }

    fn fsync(&self, fh: *mut NfsFh) -> Result<(), String> {
        // SAFETY: valid handle.
        let rc = unsafe { nfs_fsync(self.nfs, fh) };
        if rc < 0 {
            return Err(self.error("commit", rc));
        }
        Ok(())
    }

    /// Runs the poll loop once (at most 100 ms, so libnfs's timeouts are serviced).
    fn service(&self) -> Result<(), String> {
        // SAFETY: valid context.
        let (fd, events) = unsafe { (nfs_get_fd(self.nfs), nfs_which_events(self.nfs)) };
        let mut pfd = libc::pollfd {
            fd,
            events: events as libc::c_short,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, 100) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(format!("poll: {e}"));
            }
            pfd.revents = 0;
        }
        // SAFETY: valid context; revents from poll (0 just services timeouts).
        let rc = unsafe { nfs_service(self.nfs, c_int::from(pfd.revents)) };
        if rc < 0 {
            return Err(self.error("service", rc));
        }
        Ok(())
    }
}

/// What one random I/O job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RandOp {
    /// Random READs.
    Read,
    /// Random (UNSTABLE) WRITEs.
    Write,
}

/// Parameters of a random I/O job.
#[derive(Debug, Clone)]
pub(crate) struct RandJob {
    /// Read or write.
    pub op: RandOp,
    /// Path inside the export (must exist and span `size` bytes).
    pub path: String,
    /// File range used, bytes.
    pub size: u64,
    /// Request size, bytes.
    pub bs: u64,
    /// Requests in flight.
    pub qd: u32,
    /// A COMMIT after every this many writes, with the queue drained first (0: never).
    pub commit_every: u64,
    /// How long to issue requests.
    pub duration: Duration,
    /// Seed of the offset sequence.
    pub seed: u64,
}

/// Runs a random I/O job for its duration, then (untimed) commits what a write job left
/// unstable; prints `ops= secs= iops= mibps= commits= final_commit_secs= p50_us= p99_us=
/// lat_hist=` (the latencies of the READs or WRITEs that succeeded, issue to reply; the
/// histogram is `bench::latency`'s, for pooling runs).
pub(crate) fn randio(url: &str, job: &RandJob) -> Result<String, String> {
    let blocks = job.size / job.bs.max(1);
    if blocks == 0 || job.qd == 0 {
        return Err("size must hold at least one block and qd must be > 0".into());
    }
    let client = Client::mount(url)?;
    let fh = client.open(&job.path, false)?;
    let buf = vec![0x5au8; job.bs as usize];
    let mut x = job.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next_off = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % blocks) * job.bs
    };
    let p: &Pending = &client.pending;
    let private = (p as *const Pending).cast_mut().cast::<c_void>();
    let start = Instant::now();
    let deadline = start + job.duration;
    let mut since_commit = 0u64;
    let result = loop {
        let stop = Instant::now() >= deadline;
        if p.errors.get() > 0 {
            break Err(client.error("I/O", p.first_err.get()));
        }
        if !stop && !p.commit_inflight.get() {
            while p.inflight.get() < job.qd {
                if job.commit_every > 0 && since_commit >= job.commit_every {
                    // A barrier: wait for the queue to drain, then COMMIT alone.
                    if p.inflight.get() == 0 {
                        p.commit_inflight.set(true);
                        p.inflight.set(1);
                        since_commit = 0;
                        // SAFETY: valid handle; `private` outlives the context.
                        let rc = unsafe { nfs_fsync_async(client.nfs, fh, on_commit, private) };
                        if rc < 0 {
                            p.inflight.set(0);
                            p.commit_inflight.set(false);
                            p.fail(rc);
                        }
                    }
                    break;
                }
                let off = next_off();
                p.inflight.set(p.inflight.get() + 1);
                let timed = Box::into_raw(Box::new(Timed {
                    pending: p,
                    issued: Instant::now(),
                }))
                .cast::<c_void>();
                // SAFETY: valid handle; libnfs encodes the WRITE (copying `buf`) before it
                // returns, and `buf` outlives the loop anyway; `timed` is freed by the
                // callback, and the `Pending` it points to outlives the context.
                let rc = unsafe {
                    match job.op {
                        RandOp::Read => {
                            nfs_pread_async(client.nfs, fh, off, job.bs, on_timed_io, timed)
                        }
                        RandOp::Write => nfs_pwrite_async(
                            client.nfs,
                            fh,
                            off,
                            job.bs,
                            buf.as_ptr().cast(),
                            on_timed_io,
                            timed,
                        ),
                    }
                };
                if rc < 0 {
                    // Not queued: no callback will free it.
                    // SAFETY: the box made above, not handed to the library.
                    drop(unsafe { Box::from_raw(timed.cast::<Timed>()) });
                    p.inflight.set(p.inflight.get() - 1);
                    p.fail(rc);
                    break;
                }
                since_commit += 1;
            }
        }
        if stop && p.inflight.get() == 0 {
            break Ok(());
        }
        if let Err(e) = client.service() {
            break Err(e);
        }
    };
    let secs = start.elapsed().as_secs_f64();
    // Untimed: commit what the job left unstable, so the next job does not pay for it.
    let t_commit = Instant::now();
    let committed = match (&result, job.op) {
        (Ok(()), RandOp::Write) => client.fsync(fh),
        _ => Ok(()),
    };
    let final_commit = t_commit.elapsed().as_secs_f64();
    client.close(fh);
    result?;
    committed?;
    let iops = p.done.get() as f64 / secs;
    let mut lat = p.latencies_us.take();
    lat.sort_unstable();
    Ok(format!(
        "ops={} secs={secs:.6} iops={iops:.1} mibps={:.3} commits={} final_commit_secs={final_commit:.6} p50_us={} p99_us={} lat_hist={}",
        p.done.get(),
        iops * job.bs as f64 / (1u64 << 20) as f64,
        p.commits.get(),
        quantile(&lat, 0.5),
        quantile(&lat, 0.99),
        super::latency::Histogram::of(&lat).encode()
    ))
}

/// Writes `size` bytes sequentially in 1 MiB requests to `path` (created if needed), then
/// commits: the data random reads then find. Prints `filled=`.
pub(crate) fn fill(url: &str, path: &str, size: u64) -> Result<String, String> {
    let client = Client::mount(url)?;
    let fh = match client.open(path, false) {
        Ok(fh) => fh,
        Err(_) => client.open(path, true)?,
    };
    let mut chunk: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8 ^ 0x3c).collect();
    let mut off = 0;
    while off < size {
        let n = (size - off).min(chunk.len() as u64) as usize;
        // Every 4 KiB block starts with its offset, so no two hold the same bytes: a
        // content-addressed cache (Strata's cluster cache) cannot serve one from another.
        for (k, block) in chunk[..n].chunks_mut(4096).enumerate() {
            let at = (off + k as u64 * 4096).to_le_bytes();
            let len = block.len().min(8);
            block[..len].copy_from_slice(&at[..len]);
        }
        client.pwrite(fh, off, &chunk[..n])?;
        off += n as u64;
    }
    client.fsync(fh)?;
    client.close(fh);
    Ok(format!("filled={size}"))
}

/// Small files, one at a time, by one client. `create`: makes `dir`, then per file create +
/// WRITE 4 KiB + COMMIT; prints `count=N create_secs=S`. `remove`: removes them, then `dir`;
/// prints `count=N remove_secs=S`. Two commands, so that the benchmark can count what the
/// server writes for each phase.
pub(crate) fn small_files(url: &str, dir: &str, count: u64, phase: &str) -> Result<String, String> {
    let client = Client::mount(url)?;
    let d = cstr(dir)?;
    let t0 = Instant::now();
    match phase {
        "create" => {
            // SAFETY: valid context and path.
            let rc = unsafe { nfs_mkdir(client.nfs, d.as_ptr()) };
            if rc < 0 && rc != -libc::EEXIST {
                return Err(client.error(&format!("mkdir {dir}"), rc));
            }
            let data = vec![0xa5u8; 4096];
            let t0 = Instant::now();
            for i in 0..count {
                let fh = client.open(&format!("{dir}/f{i:06}"), true)?;
                let r = client.pwrite(fh, 0, &data).and_then(|()| client.fsync(fh));
                client.close(fh);
                r?;
            }
            let secs = t0.elapsed().as_secs_f64();
            Ok(format!("count={count} create_secs={secs:.6}"))
        }
        "touch" => {
            // Empty files, no data: a large namespace, fast.
            // SAFETY: valid context and path.
            let rc = unsafe { nfs_mkdir(client.nfs, d.as_ptr()) };
            if rc < 0 && rc != -libc::EEXIST {
                return Err(client.error(&format!("mkdir {dir}"), rc));
            }
            for i in 0..count {
                let fh = client.open(&format!("{dir}/f{i:06}"), true)?;
                client.close(fh);
            }
            let secs = t0.elapsed().as_secs_f64();
            Ok(format!("count={count} touch_secs={secs:.6}"))
        }
        "remove" => {
            for i in 0..count {
                let p = cstr(&format!("{dir}/f{i:06}"))?;
                // SAFETY: valid context and path.
                let rc = unsafe { nfs_unlink(client.nfs, p.as_ptr()) };
                if rc < 0 {
                    return Err(client.error("unlink", rc));
                }
            }
            let secs = t0.elapsed().as_secs_f64();
            // SAFETY: valid context and path.
            let rc = unsafe { nfs_rmdir(client.nfs, d.as_ptr()) };
            if rc < 0 {
                return Err(client.error(&format!("rmdir {dir}"), rc));
            }
            Ok(format!("count={count} remove_secs={secs:.6}"))
        }
        other => Err(format!(
            "smallfiles: phase {other:?} is not create, touch or remove"
        )),
    }
}

/// Removes `path`. Prints `removed=1`.
pub(crate) fn unlink(url: &str, path: &str) -> Result<String, String> {
    let client = Client::mount(url)?;
    let p = cstr(path)?;
    // SAFETY: valid context and path.
    let rc = unsafe { nfs_unlink(client.nfs, p.as_ptr()) };
    if rc < 0 {
        return Err(client.error(&format!("unlink {path}"), rc));
    }
    Ok("removed=1".to_string())
}
