//! A minimal NFSv4.2 client of the project's own, for end-to-end tests of what no other client
//! here sends (ALLOCATE, DEALLOCATE, SEEK, the RFC 8276 extended attributes, CREATE of
//! directories, symbolic links, FIFOs, sockets and devices, share reservations with deny
//! bits, SETATTR of the size with an open's stateid, reclaims after a server restart): ONC RPC
//! over TCP with AUTH_SYS, one session (EXCHANGE_ID, CREATE_SESSION, RECLAIM_COMPLETE), then
//! COMPOUNDs of minor version 2 that start with SEQUENCE on slot 0. Written from RFC 5531, 4506, 8881,
//! 7862 and 8276. `strata-nfs42-client` is its command line.

pub mod ops;
mod ops_ns;
pub mod rpc;
pub mod xdr;

use std::time::Duration;

use self::ops::{num, Answer, Claim, Op, StateId};
use self::rpc::Rpc;
use self::xdr::{Dec, Enc};

/// NFS's RPC program and version.
const NFS_PROGRAM: u32 = 100_003;
const NFS_V4: u32 = 4;
/// How long connecting, and each read and write of a call, may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// NFS4ERR_DELAY answers retried, and the pause between (a retry policy, not synchronisation).
const DELAY_RETRIES: u32 = 20;
const DELAY_PAUSE: Duration = Duration::from_millis(250);

/// A failed operation: its NFS4 status, or a transport or decoding error (status 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The NFS4 status (0: not an NFS status; see `msg`).
    pub status: u32,
    /// What failed.
    pub msg: String,
}

impl Failure {
    fn local(msg: impl Into<String>) -> Failure {
        Failure {
            status: 0,
            msg: msg.into(),
        }
    }

    /// The status's name (`NFS4ERR_...`), or `ERROR` for a local failure.
    pub fn name(&self) -> String {
        if self.status == 0 {
            "ERROR".into()
        } else {
            ops::status_name(self.status)
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name(), self.msg)
    }
}

/// One client with one session.
#[derive(Debug)]
pub struct Client {
    rpc: Rpc,
    clientid: u64,
    session: [u8; 16],
    seq: u32,
}

impl Client {
    /// Connects to `server` (an IPv4 address, port 2049) and sets up a session, as a client
    /// of its own (an owner no other client has).
    pub fn connect(server: &str) -> Result<Client, Failure> {
        Self::connect_as(server, None, false)
    }

    /// [`Client::connect`] with the client owner `owner` (`co_ownerid`; None: one of its own),
    /// so that a later process can be the same client, e.g. to reclaim its opens after a
    /// server restart. `reclaim`: leave RECLAIM_COMPLETE to the caller
    /// ([`Client::reclaim_complete`], after its reclaims), else send it now.
    pub fn connect_as(server: &str, owner: Option<&str>, reclaim: bool) -> Result<Client, Failure> {
        let mut rpc = Rpc::connect(&format!("{server}:2049"), TIMEOUT).map_err(Failure::local)?;
        // EXCHANGE_ID. A named client keeps its verifier (it did not restart, the server did).
        let mut e = Enc::default();
        let (owner, verifier) = match owner {
            Some(o) => (o.to_string(), fnv64(o.as_bytes()).to_be_bytes()),
            None => (
                format!("strata-nfs42-{}-{}", std::process::id(), now_nanos()),
                (u64::from(std::process::id()) << 32 | 0x5354_5241).to_be_bytes(),
            ),
        };
        e.u32(num::EXCHANGE_ID)
            .fixed(&verifier)
            .opaque(owner.as_bytes())
            .u32(0x0001_0000) // EXCHGID4_FLAG_USE_NON_PNFS
            .u32(0) // SP4_NONE
            .u32(0); // no implementation id
        let res = compound(&mut rpc, &e.0, 1)?;
        let mut d = Dec::new(&res);
        op_status(&mut d, num::EXCHANGE_ID)?;
        let clientid = d.u64().map_err(Failure::local)?;
        let seq = d.u32().map_err(Failure::local)?;
        // CREATE_SESSION.
        let mut e = Enc::default();
        e.u32(num::CREATE_SESSION).u64(clientid).u32(seq).u32(0);
        for _ in 0..2 {
            // header pad, max request, max response, max response cached, max ops, max
            // requests, no RDMA.
            e.u32(0)
                .u32(2 << 20)
                .u32(2 << 20)
                .u32(64 << 10)
                .u32(16)
                .u32(1)
                .u32(0);
        }
        e.u32(0x4000_0000).u32(1).u32(0); // callback program, one AUTH_NONE flavour
        let res = compound(&mut rpc, &e.0, 1)?;
        let mut d = Dec::new(&res);
        op_status(&mut d, num::CREATE_SESSION)?;
        let mut session = [0u8; 16];
        session.copy_from_slice(d.fixed(16).map_err(Failure::local)?);
        let mut c = Client {
            rpc,
            clientid,
            session,
            seq: 0,
        };
        if !reclaim {
            // Nothing to reclaim.
            c.reclaim_complete()?;
        }
        Ok(c)
    }

    /// RECLAIM_COMPLETE: this client reclaims nothing more (a server out of its grace period
    /// may say it knows; that is fine).
    pub fn reclaim_complete(&mut self) -> Result<(), Failure> {
        let mut e = Enc::default();
        e.u32(num::RECLAIM_COMPLETE).bool(false);
        match self.raw(&e.0, 1) {
            Ok(_) => Ok(()),
            Err(f) if f.status == 10_054 => Ok(()), // NFS4ERR_COMPLETE_ALREADY
            Err(f) => Err(f),
        }
    }

    /// The client id the server gave (the open owner's).
    pub fn clientid(&self) -> u64 {
        self.clientid
    }

    /// Runs `ops` in one COMPOUND after SEQUENCE; the answer of each, or the failure of the
    /// first that failed. NFS4ERR_DELAY is retried a bounded number of times.
    pub fn run(&mut self, ops: &[Op]) -> Result<Vec<Answer>, Failure> {
        let mut e = Enc::default();
        for op in ops {
            ops::encode(&mut e, op);
        }
        let n = u32::try_from(ops.len()).map_err(|_| Failure::local("too many operations"))?;
        let res = self.raw(&e.0, n)?;
        let mut d = Dec::new(&res);
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            let opnum = op_number(op);
            op_status(&mut d, opnum)?;
            out.push(ops::decode(&mut d, op).map_err(Failure::local)?);
        }
        Ok(out)
    }

    /// SEQUENCE then the encoded `ops` (`n` of them); returns the bytes after SEQUENCE's
    /// result (the other results, COMPOUND's status already checked).
    fn raw(&mut self, ops: &[u8], n: u32) -> Result<Vec<u8>, Failure> {
        let mut attempt = 0;
        loop {
            self.seq = self.seq.wrapping_add(1);
            let mut e = Enc::default();
            e.u32(num::SEQUENCE)
                .fixed(&self.session)
                .u32(self.seq)
                .u32(0) // slot
                .u32(0) // highest slot
                .bool(false);
            e.0.extend_from_slice(ops);
            match compound_counted(&mut self.rpc, &e.0, n + 1) {
                Err((f, results)) => {
                    if results <= 1 {
                        // SEQUENCE itself failed: the slot's sequence id was not used.
                        self.seq = self.seq.wrapping_sub(1);
                    }
                    if f.status != 10_008 || attempt >= DELAY_RETRIES {
                        return Err(f);
                    }
                    attempt += 1;
                    std::thread::sleep(DELAY_PAUSE);
                }
                Ok(res) => {
                    let mut d = Dec::new(&res);
                    op_status(&mut d, num::SEQUENCE)?;
                    d.fixed(16).map_err(Failure::local)?;
                    for _ in 0..5 {
                        d.u32().map_err(Failure::local)?;
                    }
                    let at = res.len() - d.remaining();
                    return Ok(res[at..].to_vec());
                }
            }
        }
    }

    /// The file handle of `path` (components separated by `/`) under the root.
    pub fn lookup(&mut self, path: &str) -> Result<Vec<u8>, Failure> {
        let mut ops = vec![Op::PutRootFh];
        ops.extend(
            path.split('/')
                .filter(|c| !c.is_empty())
                .map(|c| Op::Lookup(c.to_string())),
        );
        ops.push(Op::GetFh);
        match self.run(&ops)?.pop() {
            Some(Answer::Fh(fh)) => Ok(fh),
            a => Err(Failure::local(format!("GETFH answered {a:?}"))),
        }
    }

    /// Opens `name` in directory `dir` (created when `create`) with share access both and
    /// deny none: its handle and stateid.
    pub fn open(
        &mut self,
        dir: &[u8],
        name: &str,
        create: bool,
    ) -> Result<(Vec<u8>, StateId), Failure> {
        self.open_shared(dir, Claim::Null(name.to_string()), create, (3, 0))
    }

    /// OPEN of `claim` (a name in directory `fh`, or the file `fh` itself for a reclaim) with
    /// `share` = (`OPEN4_SHARE_ACCESS_*`, `OPEN4_SHARE_DENY_*`): the file's handle and the
    /// stateid.
    pub fn open_shared(
        &mut self,
        fh: &[u8],
        claim: Claim,
        create: bool,
        share: (u32, u32),
    ) -> Result<(Vec<u8>, StateId), Failure> {
        let a = self.run(&[
            Op::PutFh(fh.to_vec()),
            Op::Open {
                claim,
                create,
                clientid: self.clientid,
                access: share.0,
                deny: share.1,
            },
            Op::GetFh,
        ])?;
        match (a.get(1), a.get(2)) {
            (Some(Answer::Opened(s)), Some(Answer::Fh(fh))) => Ok((fh.clone(), *s)),
            _ => Err(Failure::local(format!("OPEN answered {a:?}"))),
        }
    }

    /// Ends the session and the client id (best effort).
    pub fn destroy(mut self) {
        let mut e = Enc::default();
        e.u32(num::DESTROY_SESSION).fixed(&self.session);
        let _ = compound(&mut self.rpc, &e.0, 1);
        let mut e = Enc::default();
        e.u32(num::DESTROY_CLIENTID).u64(self.clientid);
        let _ = compound(&mut self.rpc, &e.0, 1);
    }
}

/// FNV-1a 64 of `b`.
fn fnv64(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, x| {
        (h ^ u64::from(*x)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn op_number(op: &Op) -> u32 {
    match op {
        Op::PutRootFh => num::PUTROOTFH,
        Op::PutFh(_) => num::PUTFH,
        Op::Lookup(_) => num::LOOKUP,
        Op::GetFh => num::GETFH,
        Op::GetAttr => num::GETATTR,
        Op::Open { .. } => num::OPEN,
        Op::Close(_) => num::CLOSE,
        Op::Write(..) => num::WRITE,
        Op::Commit => num::COMMIT,
        Op::Read(..) => num::READ,
        Op::Allocate(..) => num::ALLOCATE,
        Op::Deallocate(..) => num::DEALLOCATE,
        Op::Seek(..) => num::SEEK,
        Op::GetXattr(_) => num::GETXATTR,
        Op::SetXattr(..) => num::SETXATTR,
        Op::ListXattrs(..) => num::LISTXATTRS,
        Op::RemoveXattr(_) => num::REMOVEXATTR,
        Op::Create { .. } => num::CREATE,
        Op::Remove(_) => num::REMOVE,
        Op::ReadLink => num::READLINK,
        Op::SetSize(..) => num::SETATTR,
        Op::SaveFh => num::SAVEFH,
        Op::Rename(..) => num::RENAME,
    }
}

/// Sends a COMPOUND of minor version 2 with `n` encoded operations; returns its result array's
/// bytes (after the array count) when COMPOUND's status is NFS4_OK, else the failure of the
/// last operation (the one that failed) with its status.
fn compound(rpc: &mut Rpc, ops: &[u8], n: u32) -> Result<Vec<u8>, Failure> {
    compound_counted(rpc, ops, n).map_err(|(f, _)| f)
}

/// [`compound`], with the number of results a failed COMPOUND had (the failed operation is the
/// last; 0 for a failure before any result).
fn compound_counted(rpc: &mut Rpc, ops: &[u8], n: u32) -> Result<Vec<u8>, (Failure, u32)> {
    let mut e = Enc::default();
    e.opaque(b"strata").u32(2).u32(n);
    e.0.extend_from_slice(ops);
    let local = |m: String| (Failure::local(m), 0);
    let res = rpc.call(NFS_PROGRAM, NFS_V4, 1, &e.0).map_err(local)?;
    let mut d = Dec::new(&res);
    let status = d.u32().map_err(local)?;
    d.opaque(1024).map_err(local)?;
    let count = d.count(n.max(1)).map_err(local)?;
    if status != 0 {
        // The result array ends with the operation that failed, with this status.
        let f = Failure {
            status,
            msg: format!("COMPOUND of {n} operations, {count} results"),
        };
        return Err((f, count));
    }
    let at = res.len() - d.remaining();
    Ok(res[at..].to_vec())
}

/// Reads one result's operation number and status; a status other than NFS4_OK is the
/// failure.
fn op_status(d: &mut Dec<'_>, want: u32) -> Result<(), Failure> {
    let got = d.u32().map_err(Failure::local)?;
    if got != want {
        return Err(Failure::local(format!(
            "result of op {got}, expected {want}"
        )));
    }
    match d.u32().map_err(Failure::local)? {
        0 => Ok(()),
        s => Err(Failure {
            status: s,
            msg: format!("op {want}"),
        }),
    }
}
