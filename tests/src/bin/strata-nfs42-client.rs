//! `strata-nfs42-client SERVER EXPORT PATH CMD...`: the project's NFSv4.2 client
//! (`strata_tests::nfs42`) on one file, for tests. The commands run in order on one session and
//! one open of `EXPORT/PATH`:
//!
//! - `create` (OPEN, created if missing) or `open` (must exist; the default) — first;
//! - `write OFF LEN SEED` (the tests' pattern, FILE_SYNC, 1 MiB per WRITE), `writez OFF LEN`
//!   (zeros), `commit`;
//! - `read OFF LEN SEED` (checked against the pattern), `readz OFF LEN` (checked zeros),
//!   `readsum OFF LEN` (prints `sum=`, the bytes' FNV-1a 64 in hex, and `len=`, those read);
//! - `allocate OFF LEN`, `deallocate OFF LEN`, `seek data|hole OFF`, `getattr`, `close`;
//! - `setxattr NAME VALUE [either|create|replace]`, `getxattr NAME`, `listxattrs`,
//!   `removexattr NAME`.
//!
//! A command may be prefixed `expect=NFS4ERR_X`: it must fail with exactly that status. One
//! output line per command (`op=seek status=OK what=data offset=4096 eof=0 us=312`: `us` is
//! the command's time, for benches); exit 0 when every command
//! met its expectation, 1 at the first that did not (why on stderr), 2 for a usage error (the
//! whole command line is checked before anything is sent). The file is closed (unless `close`
//! did) and the session destroyed at the end either way.

use strata_tests::nfs42::ops::{Answer, Op, StateId};
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
    fh: Vec<u8>,
    st: StateId,
    open: bool,
}

impl File {
    fn run(&mut self, ops: Vec<Op>) -> Result<Vec<Answer>, Failure> {
        let mut all = vec![Op::PutFh(self.fh.clone())];
        all.extend(ops);
        let mut a = self.c.run(&all)?;
        a.remove(0);
        Ok(a)
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
            Some(Answer::Attrs {
                size,
                fileid,
                space_used,
                ..
            }) => Ok(format!(
                "size={size} space_used={space_used} fileid={fileid}"
            )),
            other => Err(Failure {
                status: 0,
                msg: format!("GETATTR answered {other:?}"),
            }),
        },
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
            let mut names = Vec::new();
            let mut cookie = 0;
            for _ in 0..1000 {
                match f.run(vec![Op::ListXattrs(cookie)])?.pop() {
                    Some(Answer::Names(n, next, eof)) => {
                        names.extend(n);
                        cookie = next;
                        if eof {
                            return Ok(format!("names={}", names.join(",")));
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

/// Checks the commands' words before anything is sent (a usage error exits 2 here).
fn validate(cmds: &[String]) {
    let mut args = cmds.iter();
    while let Some(a) = args.next() {
        let cmd = match a.strip_prefix("expect=") {
            Some(x) if x.starts_with("NFS4ERR_") => word(&mut args, "command"),
            Some(x) => usage(&format!("expect={x}: NFS4ERR_... expected")),
            None => a.as_str(),
        };
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
            "commit" | "getattr" | "close" | "listxattrs" => {}
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
            "getxattr" | "removexattr" => {
                word(&mut args, "name");
            }
            "create" | "open" => usage(&format!("{cmd} must come first")),
            c => usage(&format!("unknown command {c}")),
        }
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.len() < 3 {
        usage("SERVER EXPORT PATH missing");
    }
    let (server, export, path) = (&argv[0], &argv[1], &argv[2]);
    let mut args = argv[3..].iter();
    let full = format!("{export}/{path}");
    let (dir, name) = match full.trim_end_matches('/').rsplit_once('/') {
        Some((d, n)) if !n.is_empty() => (d.to_string(), n.to_string()),
        _ => usage("PATH names no file"),
    };
    let create = matches!(argv.get(3).map(String::as_str), Some("create"));
    if matches!(argv.get(3).map(String::as_str), Some("create" | "open")) {
        args.next();
    }
    validate(args.as_slice());
    let mut c = match Client::connect(server) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("session with {server}: {e}");
            std::process::exit(1)
        }
    };
    let opened = c.lookup(&dir).and_then(|d| c.open(&d, &name, create));
    let (fh, st) = match opened {
        Ok(v) => v,
        Err(e) => {
            println!("op=open status={}", e.name());
            eprintln!("open {full}: {e}");
            c.destroy();
            std::process::exit(1)
        }
    };
    println!("op={} status=OK", if create { "create" } else { "open" });
    let mut f = File {
        c,
        fh,
        st,
        open: true,
    };
    let mut rc = 0;
    while let Some(a) = args.next() {
        let (expect, cmd) = match a.strip_prefix("expect=") {
            Some(x) => (Some(x.to_string()), word(&mut args, "command").to_string()),
            None => (None, a.clone()),
        };
        let started = std::time::Instant::now();
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
