//! `strata-nfs42-client SERVER EXPORT PATH CMD...`: the project's NFSv4.2 client
//! (`strata_tests::nfs42`) on one file or directory, for tests. The commands run in order on
//! one session and, for a file, one open of `EXPORT/PATH`:
//!
//! - `create` (OPEN, created if missing) or `open` (must exist; the default) — first; or `dir`
//!   first: `EXPORT/PATH` is a directory, looked up and not opened (the commands that need an
//!   open file are then usage errors); or `reclaim` first: the file is reopened with
//!   CLAIM_PREVIOUS after a server restart (during its grace period), then RECLAIM_COMPLETE.
//!   Right after it, options: `access=read|write|both` and `deny=none|read|write|both` (the
//!   open's share reservation; default both, none), `owner=NAME` (the client owner, so that a
//!   later process is the same client: default, one of its own);
//! - `write OFF LEN SEED` (the tests' pattern, FILE_SYNC, 1 MiB per WRITE), `writez OFF LEN`
//!   (zeros), `commit`;
//! - `read OFF LEN SEED` (checked against the pattern), `readz OFF LEN` (checked zeros),
//!   `readsum OFF LEN` (prints `sum=`, the bytes' FNV-1a 64 in hex, and `len=`, those read);
//! - `allocate OFF LEN`, `deallocate OFF LEN`, `seek data|hole OFF`, `close`;
//! - `setsize N` (SETATTR of the size with the open's stateid; `setsize N anon`: with the
//!   anonymous stateid), `rename FROM TO` (in the file's directory; the open keeps its
//!   filehandle), `open2 ACCESS DENY [aftergrace]` (a second client, with an owner of its own,
//!   opens the file by name with those share bits, closes it and goes: its OPEN's status is the
//!   command's; `aftergrace`: NFS4ERR_GRACE is retried every 250 ms for up to 120 s, the first
//!   client renewing its lease meanwhile; prints `waited_ms=`), `abandon` (last: exit at once,
//!   with no CLOSE, DESTROY_SESSION or DESTROY_CLIENTID, like a client cut off: its state
//!   stays until its lease runs out or the server restarts);
//! - `getattr` (of the file, or the directory after `dir`): `size= space_used= fileid= type=`
//!   (`reg`, `dir`, `lnk`, `blk`, `chr`, `sock`, `fifo`) `mode=` (octal) `nlink=` `change=`, and for a
//!   device `rdev=MAJOR,MINOR`;
//! - `setxattr NAME VALUE [either|create|replace]`, `getxattr NAME`, `listxattrs
//!   [maxcount=N]` (every page until eof: `names=` and `pages=`),
//!   `removexattr NAME`;
//! - in the directory (PATH itself after `dir`, else PATH's parent), CREATE of an entry, each
//!   then printing its attributes as `getattr` does and `mode_set=` (the server's `attrset`
//!   has the mode): `mknod fifo|sock NAME`, `mknod chr|blk NAME MAJOR MINOR`, `mkdir NAME`,
//!   `symlink NAME TARGET`, each with an optional last word `mode=OCTAL` (default 644, 755 for
//!   `mkdir`); `lookup NAME` (LOOKUP, not following a symbolic link, then GETATTR: printed as
//!   `getattr` does), `readlink NAME` (`target=`), `remove NAME` (REMOVE).
//!
//! A command may be prefixed `expect=NFS4ERR_X`: it must fail with exactly that status. One
//! output line per command (`op=seek status=OK what=data offset=4096 eof=0 us=312`: `us` is
//! the command's time, for benches); exit 0 when every command
//! met its expectation, 1 at the first that did not (why on stderr), 2 for a usage error (the
//! whole command line is checked before anything is sent). The file is closed (unless `close`
//! did) and the session destroyed at the end either way.

use std::time::{Duration, Instant};

use strata_tests::nfs42::ops::{
    sets_mode, type_name, Answer, Attrs, Claim, CreateKind, Op, StateId,
};
use strata_tests::nfs42::{Client, Failure};

const CHUNK: u64 = 1 << 20;

fn usage(msg: &str) -> ! {
    eprintln!("strata-nfs42-client: {msg}\nusage: strata-nfs42-client SERVER EXPORT PATH CMD... (see the source's doc)");
    std::process::exit(2)
}

fn num(args: &mut std::slice::Iter<'_, String>, what: &str) -> u64 {
    let Some(a) = args.next() else {
        usage(&format!("{what} missing"))
    };
    a.parse()
        .unwrap_or_else(|_| usage(&format!("{what}: not a number: {a}")))
}

fn word<'a>(args: &mut std::slice::Iter<'a, String>, what: &str) -> &'a str {
    args.next()
        .map(String::as_str)
        .unwrap_or_else(|| usage(&format!("{what} missing")))
}

/// What one command printed, or its failure.
type Outcome = Result<String, Failure>;

struct File {
    c: Client,
    server: String,
    /// The file's name in `dir`.
    name: String,
    /// The open file, or the directory after `dir`.
    fh: Vec<u8>,
    /// Where the commands on names act: the file's directory, or `fh` after `dir`.
    dir: Vec<u8>,
    st: StateId,
    open: bool,
}

impl File {
    fn run(&mut self, ops: Vec<Op>) -> Result<Vec<Answer>, Failure> {
        let fh = self.fh.clone();
        self.run_at(fh, ops)
    }

    /// `ops` after PUTFH of `fh`; their answers.
    fn run_at(&mut self, fh: Vec<u8>, ops: Vec<Op>) -> Result<Vec<Answer>, Failure> {
        let mut all = vec![Op::PutFh(fh)];
        all.extend(ops);
        let mut a = self.c.run(&all)?;
        a.remove(0);
        Ok(a)
    }

    /// `ops` in the directory, then GETATTR of where they left the current filehandle: the
    /// other answers and the attributes, printed.
    fn in_dir_then_attrs(&mut self, mut ops: Vec<Op>) -> Result<(Vec<Answer>, String), Failure> {
        ops.push(Op::GetAttr);
        let dir = self.dir.clone();
        let mut a = self.run_at(dir, ops)?;
        match a.pop() {
            Some(Answer::Attrs(at)) => Ok((a, attrs_line(&at))),
            other => Err(Failure {
                status: 0,
                msg: format!("GETATTR answered {other:?}"),
            }),
        }
    }

    fn write(&mut self, off: u64, data: &[u8]) -> Outcome {
        let mut at = 0usize;
        while at < data.len() {
            let n = (data.len() - at).min(CHUNK as usize);
            let a = self.run(vec![Op::Write(
                self.st,
                off + at as u64,
                data[at..at + n].to_vec(),
                true,
            )])?;
            match a.first() {
                Some(Answer::Written(w, _)) if *w as usize == n => {}
                other => {
                    return Err(Failure {
                        status: 0,
                        msg: format!("short write: {other:?}"),
                    })
                }
            }
            at += n;
        }
        Ok(format!("len={}", data.len()))
    }

    fn read(&mut self, off: u64, len: u64) -> Result<Vec<u8>, Failure> {
        let mut out = Vec::new();
        while (out.len() as u64) < len {
            let n = (len - out.len() as u64).min(CHUNK) as u32;
            let a = self.run(vec![Op::Read(self.st, off + out.len() as u64, n)])?;
            match a.into_iter().next() {
                Some(Answer::Data(d, eof)) => {
                    let short = d.is_empty() || eof;
                    out.extend(d);
                    if short {
                        break;
                    }
                }
                other => {
                    return Err(Failure {
                        status: 0,
                        msg: format!("READ answered {other:?}"),
                    })
                }
            }
        }
        Ok(out)
    }
}

fn check(what: &str, off: u64, got: &[u8], want: &[u8]) -> Outcome {
    if got.len() != want.len() {
        return Err(Failure {
            status: 0,
            msg: format!("{what}: {} bytes read, {} expected", got.len(), want.len()),
        });
    }
    match got.iter().zip(want).position(|(a, b)| a != b) {
        None => Ok(format!("len={}", got.len())),
        Some(i) => Err(Failure {
            status: 0,
            msg: format!("{what}: first difference at offset {}", off + i as u64),
        }),
    }
}

/// Attributes as `getattr` prints them.
fn attrs_line(a: &Attrs) -> String {
    let mut s = format!(
        "size={} space_used={} fileid={} type={} mode={:o} nlink={} change={}",
        a.size,
        a.space_used,
        a.fileid,
        type_name(a.kind),
        a.mode,
        a.nlink,
        a.change
    );
    if matches!(a.kind, 3 | 4) {
        s.push_str(&format!(" rdev={},{}", a.rdev.0, a.rdev.1));
    }
    s
}

/// A number that must fit in 32 bits.
fn num32(args: &mut std::slice::Iter<'_, String>, what: &str) -> u32 {
    u32::try_from(num(args, what)).unwrap_or_else(|_| usage(&format!("{what}: over 32 bits")))
}

/// The optional last word `mode=OCTAL` of a create command, else `default`.
fn mode_word(args: &mut std::slice::Iter<'_, String>, default: u32) -> u32 {
    let Some(m) = args.clone().next().and_then(|a| a.strip_prefix("mode=")) else {
        return default;
    };
    args.next();
    u32::from_str_radix(m, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .unwrap_or_else(|| usage(&format!("mode={m}: an octal mode up to 7777")))
}

/// The arguments of `mknod`, `mkdir` or `symlink`: what to create, its name and mode.
fn create_args(cmd: &str, args: &mut std::slice::Iter<'_, String>) -> (CreateKind, String, u32) {
    let (kind, name) = match cmd {
        "mkdir" => (CreateKind::Dir, word(args, "name").to_string()),
        "symlink" => {
            let name = word(args, "name").to_string();
            (CreateKind::Symlink(word(args, "target").to_string()), name)
        }
        _ => {
            let what = word(args, "fifo|sock|chr|blk");
            let name = word(args, "name").to_string();
            let kind = match what {
                "fifo" => CreateKind::Fifo,
                "sock" => CreateKind::Socket,
                "chr" => CreateKind::Char(num32(args, "major"), num32(args, "minor")),
                "blk" => CreateKind::Block(num32(args, "major"), num32(args, "minor")),
                w => usage(&format!("mknod {w}: fifo, sock, chr or blk")),
            };
            (kind, name)
        }
    };
    let mode = mode_word(args, if cmd == "mkdir" { 0o755 } else { 0o644 });
    (kind, name, mode)
}

/// The commands that use the open file's stateid (usage errors after `dir`).
const NEED_OPEN: &[&str] = &[
    "write",
    "writez",
    "read",
    "readz",
    "readsum",
    "allocate",
    "deallocate",
    "seek",
    "close",
    "setsize",
    "open2",
];

/// How long `open2 ... aftergrace` waits for the grace period to end, and how often it asks.
const GRACE_WAIT: Duration = Duration::from_secs(120);
const GRACE_POLL: Duration = Duration::from_millis(250);

/// `read|write|both` as `OPEN4_SHARE_ACCESS_*`.
fn access_bits(w: &str) -> u32 {
    match w {
        "read" => 1,
        "write" => 2,
        "both" => 3,
        _ => usage(&format!("access {w}: read, write or both")),
    }
}

/// `none|read|write|both` as `OPEN4_SHARE_DENY_*`.
fn deny_bits(w: &str) -> u32 {
    match w {
        "none" => 0,
        "read" => 1,
        "write" => 2,
        "both" => 3,
        _ => usage(&format!("deny {w}: none, read, write or both")),
    }
}

/// The arguments of `open2`: share access and deny bits, and whether to wait out the grace
/// period.
fn open2_args(args: &mut std::slice::Iter<'_, String>) -> (u32, u32, bool) {
    let access = access_bits(word(args, "access"));
    let deny = deny_bits(word(args, "deny"));
    let after = args.clone().next().is_some_and(|a| a == "aftergrace");
    if after {
        args.next();
    }
    (access, deny, after)
}

/// `open2`: a second client opens the file with `share`; retried while the server is in its
/// grace period when `after` (the first client's lease renewed meanwhile).
fn open2(f: &mut File, share: (u32, u32), after: bool) -> Outcome {
    let started = Instant::now();
    let mut c2 = Client::connect(&f.server)?;
    let res = loop {
        match c2.open_shared(&f.dir, Claim::Null(f.name.clone()), false, share) {
            Err(e) if after && e.status == 10_013 && started.elapsed() < GRACE_WAIT => {
                f.c.run(&[])?; // SEQUENCE alone: the first client's lease stays alive
                std::thread::sleep(GRACE_POLL);
            }
            r => break r,
        }
    };
    if let Ok((fh, st)) = &res {
        let _ = c2.run(&[Op::PutFh(fh.clone()), Op::Close(*st)]);
    }
    c2.destroy();
    res.map(|_| format!("waited_ms={}", started.elapsed().as_millis()))
}

fn one(f: &mut File, cmd: &str, args: &mut std::slice::Iter<'_, String>) -> Outcome {
    match cmd {
        "write" => {
            let (off, len, seed) = (num(args, "offset"), num(args, "length"), num(args, "seed"));
            f.write(off, &strata_tests::pattern(len as usize, seed))
        }
        "writez" => {
            let (off, len) = (num(args, "offset"), num(args, "length"));
            f.write(off, &vec![0u8; len as usize])
        }
        "commit" => f.run(vec![Op::Commit]).map(|_| String::new()),
        "read" => {
            let (off, len, seed) = (num(args, "offset"), num(args, "length"), num(args, "seed"));
            let got = f.read(off, len)?;
            check(
                "read",
                off,
                &got,
                &strata_tests::pattern(len as usize, seed),
            )
        }
        "readz" => {
            let (off, len) = (num(args, "offset"), num(args, "length"));
            let got = f.read(off, len)?;
            check("readz", off, &got, &vec![0u8; len as usize])
        }
        "readsum" => {
            let (off, len) = (num(args, "offset"), num(args, "length"));
            let got = f.read(off, len)?;
            let sum = got.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
            });
            Ok(format!("sum={sum:016x} len={}", got.len()))
        }
        "setsize" => {
            let size = num(args, "size");
            let st = if args.clone().next().is_some_and(|a| a == "anon") {
                args.next();
                StateId::default()
            } else {
                f.st
            };
            f.run(vec![Op::SetSize(st, size)]).map(|_| String::new())
        }
        "rename" => {
            let (from, to) = (word(args, "from").to_string(), word(args, "to").to_string());
            let dir = f.dir.clone();
            let ops = vec![Op::SaveFh, Op::PutFh(dir.clone()), Op::Rename(from, to)];
            f.run_at(dir, ops).map(|_| String::new())
        }
        "open2" => {
            let (access, deny, after) = open2_args(args);
            open2(f, (access, deny), after)
        }
        "close" => {
            f.open = false;
            f.run(vec![Op::Close(f.st)]).map(|_| String::new())
        }
        "allocate" | "deallocate" => {
            let (off, len) = (num(args, "offset"), num(args, "length"));
            let op = if cmd == "allocate" {
                Op::Allocate(f.st, off, len)
            } else {
                Op::Deallocate(f.st, off, len)
            };
            f.run(vec![op]).map(|_| String::new())
        }
        "seek" => {
            let hole = match word(args, "data|hole") {
                "data" => false,
                "hole" => true,
                w => usage(&format!("seek {w}: data or hole")),
            };
            let off = num(args, "offset");
            match f.run(vec![Op::Seek(f.st, off, hole)])?.pop() {
                Some(Answer::Sought(eof, o)) => Ok(format!(
                    "what={} offset={o} eof={}",
                    if hole { "hole" } else { "data" },
                    u8::from(eof)
                )),
                other => Err(Failure {
                    status: 0,
                    msg: format!("SEEK answered {other:?}"),
                }),
            }
        }
        "getattr" => match f.run(vec![Op::GetAttr])?.pop() {
            Some(Answer::Attrs(a)) => Ok(attrs_line(&a)),
            other => Err(Failure {
                status: 0,
                msg: format!("GETATTR answered {other:?}"),
            }),
        },
        "mknod" | "mkdir" | "symlink" => {
            let (kind, name, mode) = create_args(cmd, args);
            let (a, attrs) = f.in_dir_then_attrs(vec![Op::Create { kind, name, mode }])?;
            match a.first() {
                Some(Answer::Created(set)) => {
                    Ok(format!("{attrs} mode_set={}", u8::from(sets_mode(set))))
                }
                other => Err(Failure {
                    status: 0,
                    msg: format!("CREATE answered {other:?}"),
                }),
            }
        }
        "lookup" => {
            let name = word(args, "name").to_string();
            f.in_dir_then_attrs(vec![Op::Lookup(name)])
                .map(|(_, attrs)| attrs)
        }
        "readlink" => {
            let name = word(args, "name").to_string();
            let dir = f.dir.clone();
            match f.run_at(dir, vec![Op::Lookup(name), Op::ReadLink])?.pop() {
                Some(Answer::Link(t)) => Ok(format!("target={}", String::from_utf8_lossy(&t))),
                other => Err(Failure {
                    status: 0,
                    msg: format!("READLINK answered {other:?}"),
                }),
            }
        }
        "remove" => {
            let name = word(args, "name").to_string();
            let dir = f.dir.clone();
            f.run_at(dir, vec![Op::Remove(name)]).map(|_| String::new())
        }
        "setxattr" => {
            let name = word(args, "name").to_string();
            let value = word(args, "value").as_bytes().to_vec();
            let option = match args.clone().next().map(String::as_str) {
                Some("either") => 0,
                Some("create") => 1,
                Some("replace") => 2,
                _ => 3,
            };
            let option = if option == 3 {
                0
            } else {
                args.next();
                option
            };
            f.run(vec![Op::SetXattr(name, value, option)])
                .map(|_| String::new())
        }
        "getxattr" => {
            let name = word(args, "name").to_string();
            match f.run(vec![Op::GetXattr(name)])?.pop() {
                Some(Answer::Value(v)) => Ok(format!("value={}", String::from_utf8_lossy(&v))),
                other => Err(Failure {
                    status: 0,
                    msg: format!("GETXATTR answered {other:?}"),
                }),
            }
        }
        "listxattrs" => {
            let maxcount = maxcount_word(args);
            let mut names = Vec::new();
            let mut cookie = 0;
            for page in 1..=1000 {
                match f.run(vec![Op::ListXattrs(cookie, maxcount)])?.pop() {
                    Some(Answer::Names(n, next, eof)) => {
                        names.extend(n);
                        cookie = next;
                        if eof {
                            return Ok(format!("names={} pages={page}", names.join(",")));
                        }
                    }
                    other => {
                        return Err(Failure {
                            status: 0,
                            msg: format!("LISTXATTRS answered {other:?}"),
                        })
                    }
                }
            }
            Err(Failure {
                status: 0,
                msg: "LISTXATTRS never reached the end".into(),
            })
        }
        "removexattr" => {
            let name = word(args, "name").to_string();
            f.run(vec![Op::RemoveXattr(name)]).map(|_| String::new())
        }
        c => usage(&format!("unknown command {c}")),
    }
}

/// LISTXATTRS' optional `maxcount=N` (the reply's byte budget; 64 KiB without it).
fn maxcount_word<'a>(args: &mut (impl Iterator<Item = &'a String> + Clone)) -> u32 {
    match args
        .clone()
        .next()
        .and_then(|a| a.strip_prefix("maxcount="))
    {
        Some(n) => {
            args.next();
            n.parse()
                .unwrap_or_else(|_| usage(&format!("maxcount={n}: a number expected")))
        }
        None => 64 << 10,
    }
}

/// Checks the commands' words before anything is sent (a usage error exits 2 here); `dir`:
/// after `dir`, with no open file.
fn validate(cmds: &[String], dir: bool) {
    let mut args = cmds.iter();
    while let Some(a) = args.next() {
        let cmd = match a.strip_prefix("expect=") {
            Some(x) if x.starts_with("NFS4ERR_") => word(&mut args, "command"),
            Some(x) => usage(&format!("expect={x}: NFS4ERR_... expected")),
            None => a.as_str(),
        };
        if dir && NEED_OPEN.contains(&cmd) {
            usage(&format!("{cmd} needs an open file, not `dir`"));
        }
        match cmd {
            "write" | "read" => {
                for what in ["offset", "length", "seed"] {
                    num(&mut args, what);
                }
            }
            "writez" | "readz" | "readsum" | "allocate" | "deallocate" => {
                num(&mut args, "offset");
                num(&mut args, "length");
            }
            "commit" | "getattr" | "close" => {}
            "listxattrs" => {
                maxcount_word(&mut args);
            }
            "setsize" => {
                num(&mut args, "size");
                if args.clone().next().is_some_and(|a| a == "anon") {
                    args.next();
                }
            }
            "rename" => {
                word(&mut args, "from");
                word(&mut args, "to");
            }
            "open2" => {
                open2_args(&mut args);
            }
            "abandon" => {
                if !args.as_slice().is_empty() {
                    usage("abandon must come last");
                }
            }
            "seek" => {
                if !matches!(word(&mut args, "data|hole"), "data" | "hole") {
                    usage("seek: data or hole");
                }
                num(&mut args, "offset");
            }
            "setxattr" => {
                word(&mut args, "name");
                word(&mut args, "value");
                if matches!(
                    args.clone().next().map(String::as_str),
                    Some("either" | "create" | "replace")
                ) {
                    args.next();
                }
            }
            "getxattr" | "removexattr" | "lookup" | "readlink" | "remove" => {
                word(&mut args, "name");
            }
            "mknod" | "mkdir" | "symlink" => {
                create_args(cmd, &mut args);
            }
            "create" | "open" | "dir" | "reclaim" => usage(&format!("{cmd} must come first")),
            c => usage(&format!("unknown command {c}")),
        }
    }
}

/// The first word (`create`, `open`, `dir` or `reclaim`; `open` when there is none) and the
/// options after it: share access and deny bits, the client owner.
struct Start<'a> {
    first: &'a str,
    share: (u32, u32),
    owner: Option<&'a str>,
}

fn start_words<'a>(args: &mut std::slice::Iter<'a, String>) -> Start<'a> {
    let mut s = Start {
        first: "open",
        share: (3, 0),
        owner: None,
    };
    if let Some(w) = args
        .clone()
        .next()
        .filter(|w| matches!(w.as_str(), "create" | "open" | "dir" | "reclaim"))
    {
        s.first = w;
        args.next();
    }
    while let Some((k, v)) = args.clone().next().and_then(|a| a.split_once('=')) {
        match k {
            "access" => s.share.0 = access_bits(v),
            "deny" => s.share.1 = deny_bits(v),
            "owner" if !v.is_empty() => s.owner = Some(v),
            _ => break,
        }
        args.next();
    }
    if s.first == "dir" && (s.share != (3, 0) || s.owner.is_some()) {
        usage("`dir` takes no options");
    }
    s
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.len() < 3 {
        usage("SERVER EXPORT PATH missing");
    }
    let (server, export, path) = (&argv[0], &argv[1], &argv[2]);
    let mut args = argv[3..].iter();
    let full = format!("{export}/{path}");
    let st = start_words(&mut args);
    let (first, is_dir) = (st.first, st.first == "dir");
    let (dir, name) = match full.trim_end_matches('/').rsplit_once('/') {
        _ if is_dir => (full.clone(), String::new()),
        Some((d, n)) if !n.is_empty() => (d.to_string(), n.to_string()),
        _ => usage("PATH names no file"),
    };
    validate(args.as_slice(), is_dir);
    let reclaim = first == "reclaim";
    let mut c = match Client::connect_as(server, st.owner, reclaim) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("session with {server}: {e}");
            std::process::exit(1)
        }
    };
    let started = c.lookup(&dir).and_then(|d| match first {
        "dir" => Ok((d.clone(), d, StateId::default())),
        "reclaim" => {
            // CLAIM_PREVIOUS opens the current filehandle: the file's, looked up first.
            let file = c.lookup(&format!("{dir}/{name}"))?;
            let (fh, sid) = c.open_shared(&file, Claim::Previous, false, st.share)?;
            c.reclaim_complete()?;
            Ok((fh, d, sid))
        }
        _ => {
            let claim = Claim::Null(name.clone());
            c.open_shared(&d, claim, first == "create", st.share)
                .map(|(fh, sid)| (fh, d, sid))
        }
    });
    let (fh, dir, sid) = match started {
        Ok(v) => v,
        Err(e) => {
            println!("op={first} status={}", e.name());
            eprintln!("{first} {full}: {e}");
            c.destroy();
            std::process::exit(1)
        }
    };
    println!("op={first} status=OK");
    let mut f = File {
        c,
        server: server.clone(),
        name,
        fh,
        dir,
        st: sid,
        open: !is_dir,
    };
    let mut rc = 0;
    while let Some(a) = args.next() {
        let (expect, cmd) = match a.strip_prefix("expect=") {
            Some(x) => (Some(x.to_string()), word(&mut args, "command").to_string()),
            None => (None, a.clone()),
        };
        if cmd == "abandon" {
            // Gone without a word: no CLOSE, no DESTROY_SESSION, no DESTROY_CLIENTID.
            println!("op=abandon status=OK");
            std::process::exit(rc);
        }
        let started = Instant::now();
        let out = one(&mut f, &cmd, &mut args);
        let us = started.elapsed().as_micros();
        let status = match &out {
            Ok(_) => "OK".to_string(),
            Err(e) => e.name(),
        };
        println!(
            "op={cmd} status={status}{} us={us}",
            out.as_ref()
                .ok()
                .filter(|s| !s.is_empty())
                .map_or(String::new(), |s| format!(" {s}"))
        );
        let met = match (&expect, &out) {
            (None, Ok(_)) => true,
            (Some(x), Err(e)) => *x == e.name(),
            _ => false,
        };
        if !met {
            eprintln!(
                "{cmd}: expected {}, got {}",
                expect.as_deref().unwrap_or("OK"),
                out.as_ref()
                    .err()
                    .map_or("OK".to_string(), ToString::to_string)
            );
            rc = 1;
            break;
        }
    }
    if f.open {
        let st = f.st;
        let _ = f.run(vec![Op::Close(st)]);
    }
    f.c.destroy();
    std::process::exit(rc);
}
