//! `strata-delay-proxy --listen ADDR --upstream ADDR --delay-ms N`: a TCP proxy that holds every
//! chunk of bytes for N milliseconds in each direction, so that a local S3 server answers with a
//! network's latency (the kernel here has no `netem`). Order and content are kept; throughput is
//! not limited (chunks in flight overlap). Prints `listening on ADDR` once ready; runs until
//! killed. Started inside a gateway's namespace (`Gateway::command`) in front of the S3 test
//! server where timing matters.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Bytes read at a time.
const CHUNK: usize = 64 << 10;

fn main() {
    if let Err(e) = run() {
        eprintln!("strata-delay-proxy: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let (mut listen, mut upstream, mut delay_ms) = (None, None, None);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--listen" => listen = Some(val()?),
            "--upstream" => upstream = Some(val()?),
            "--delay-ms" => {
                let v = val()?;
                delay_ms = Some(
                    v.parse::<u64>()
                        .map_err(|_| format!("--delay-ms {v}: not a number"))?,
                );
            }
            _ => return Err(format!("unknown argument {a} (see the file's doc)")),
        }
    }
    let listen = listen.ok_or("--listen ADDR is required")?;
    let upstream = upstream.ok_or("--upstream ADDR is required")?;
    let delay = Duration::from_millis(delay_ms.ok_or("--delay-ms N is required")?);
    let listener = TcpListener::bind(&listen).map_err(|e| format!("binding {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on {addr}");
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    for client in listener.incoming() {
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                eprintln!("strata-delay-proxy: accept: {e}");
                continue;
            }
        };
        let upstream = upstream.clone();
        thread::spawn(move || match TcpStream::connect(&upstream) {
            Ok(server) => relay(client, server, delay),
            Err(e) => eprintln!("strata-delay-proxy: connecting {upstream}: {e}"),
        });
    }
    Ok(())
}

/// Relays both directions of one connection, each delayed.
fn relay(client: TcpStream, server: TcpStream, delay: Duration) {
    let pairs = (|| {
        Some((
            (client.try_clone().ok()?, server.try_clone().ok()?),
            (server, client),
        ))
    })();
    let Some(((c_in, s_out), (s_in, c_out))) = pairs else {
        return;
    };
    let up = thread::spawn(move || delayed_copy(c_in, s_out, delay));
    delayed_copy(s_in, c_out, delay);
    let _ = up.join();
}

/// Copies `from` to `to`, each chunk written `delay` after it was read; shuts the write side
/// once `from` ends (after the last chunk is due).
fn delayed_copy(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer = thread::spawn(move || {
        for (due, bytes) in rx {
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
            if to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
    let mut buf = vec![0u8; CHUNK];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.join();
}
