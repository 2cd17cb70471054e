//! ONC RPC (RFC 5531) over TCP with record marking, AUTH_SYS credentials (uid 0, gid 0): one
//! call at a time on one connection, every read and write bounded by a timeout.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::xdr::{Dec, DecResult, Enc};

/// Largest RPC record accepted from the server (a READ of 1 MiB and then some).
const MAX_RECORD: usize = 4 << 20;

/// One RPC connection.
#[derive(Debug)]
pub struct Rpc {
    stream: TcpStream,
    xid: u32,
    machine: String,
}

impl Rpc {
    /// Connects to `addr` (`host:port`); every read and write waits at most `timeout`.
    pub fn connect(addr: &str, timeout: Duration) -> Result<Rpc, String> {
        let sa = addr.parse().map_err(|e| format!("address {addr}: {e}"))?;
        let stream =
            TcpStream::connect_timeout(&sa, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|()| stream.set_write_timeout(Some(timeout)))
            .and_then(|()| stream.set_nodelay(true))
            .map_err(|e| format!("socket options: {e}"))?;
        Ok(Rpc {
            stream,
            xid: std::process::id().wrapping_mul(65_599),
            machine: format!("strata-nfs42-{}", std::process::id()),
        })
    }

    /// Calls `proc` of program `prog` version `vers` with the encoded `args`; returns the
    /// result bytes of an accepted, successful reply.
    pub fn call(
        &mut self,
        prog: u32,
        vers: u32,
        proc_: u32,
        args: &[u8],
    ) -> Result<Vec<u8>, String> {
        self.xid = self.xid.wrapping_add(1);
        let xid = self.xid;
        let mut cred = Enc::default();
        cred.u32(0) // stamp
            .opaque(self.machine.as_bytes())
            .u32(0) // uid
            .u32(0) // gid
            .u32(0); // no supplementary gids
        let mut m = Enc::default();
        m.u32(xid)
            .u32(0) // CALL
            .u32(2) // RPC version
            .u32(prog)
            .u32(vers)
            .u32(proc_)
            .u32(1) // AUTH_SYS
            .opaque(&cred.0)
            .u32(0) // verifier AUTH_NONE
            .opaque(&[]);
        m.0.extend_from_slice(args);
        let len = u32::try_from(m.0.len()).map_err(|_| "call too large".to_string())?;
        let mut rec = (0x8000_0000 | len).to_be_bytes().to_vec();
        rec.extend_from_slice(&m.0);
        self.stream
            .write_all(&rec)
            .map_err(|e| format!("send: {e}"))?;
        loop {
            let reply = read_record(&mut self.stream)?;
            let mut d = Dec::new(&reply);
            if d.u32()? != xid {
                continue; // an answer to an earlier call that timed out
            }
            let body = parse_reply(&mut d)?;
            return Ok(reply[reply.len() - body..].to_vec());
        }
    }
}

/// Reads one record (RFC 5531 section 11): fragments, each a 4-byte header (the last
/// fragment's flag, 31 bits of length) and its bytes, until the last; at most [`MAX_RECORD`]
/// bytes in all.
fn read_record(r: &mut impl Read) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let mut h = [0u8; 4];
        r.read_exact(&mut h).map_err(|e| format!("receive: {e}"))?;
        let h = u32::from_be_bytes(h);
        let n = (h & 0x7fff_ffff) as usize;
        if out.len() + n > MAX_RECORD {
            return Err(format!("record over {MAX_RECORD} bytes"));
        }
        let start = out.len();
        out.resize(start + n, 0);
        r.read_exact(&mut out[start..])
            .map_err(|e| format!("receive: {e}"))?;
        if h & 0x8000_0000 != 0 {
            return Ok(out);
        }
    }
}

/// Checks a reply after its xid; returns how many bytes of results follow.
fn parse_reply(d: &mut Dec<'_>) -> DecResult<usize> {
    if d.u32()? != 1 {
        return Err("not a reply".into());
    }
    match d.u32()? {
        0 => {}
        1 => return Err(format!("call denied (reject status {})", d.u32()?)),
        s => return Err(format!("reply status {s}")),
    }
    let _flavor = d.u32()?;
    d.opaque(400)?;
    match d.u32()? {
        0 => Ok(d.remaining()),
        s => Err(format!("call not accepted (accept status {s})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_checked() {
        let mut ok = Enc::default();
        ok.u32(1).u32(0).u32(0).opaque(&[]).u32(0).u32(42);
        assert_eq!(parse_reply(&mut Dec::new(&ok.0)), Ok(4));
        let mut denied = Enc::default();
        denied.u32(1).u32(1).u32(1);
        assert!(parse_reply(&mut Dec::new(&denied.0)).is_err());
        let mut garbage = Enc::default();
        garbage.u32(1).u32(0).u32(0).u32(100_000);
        assert!(parse_reply(&mut Dec::new(&garbage.0)).is_err());
        assert!(parse_reply(&mut Dec::new(&[0, 0])).is_err());
    }

    #[test]
    fn records_are_joined_across_fragments() {
        // "abc" + "defg" (last): one record; the bytes after it are the next record's.
        let mut wire = vec![0, 0, 0, 3, b'a', b'b', b'c', 0x80, 0, 0, 4];
        wire.extend_from_slice(b"defg");
        wire.extend_from_slice(&[0x80, 0, 0, 1, b'h']);
        let mut r = &wire[..];
        assert_eq!(read_record(&mut r).as_deref(), Ok(&b"abcdefg"[..]));
        assert_eq!(read_record(&mut r).as_deref(), Ok(&b"h"[..]));
        // The stream ends inside a fragment, or before the last fragment.
        assert!(read_record(&mut &wire[..5]).is_err());
        assert!(read_record(&mut &wire[..7]).is_err());
        // A record longer than the bound is refused before it is read.
        assert!(read_record(&mut &[0xff, 0xff, 0xff, 0xff][..]).is_err());
        let mut many = Vec::new();
        for _ in 0..5 {
            many.extend_from_slice(&(1u32 << 20).to_be_bytes());
            many.resize(many.len() + (1 << 20), 0);
        }
        assert!(read_record(&mut &many[..]).is_err());
    }
}
