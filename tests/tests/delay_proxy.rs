//! The delaying TCP proxy (`strata-delay-proxy`) that gives the local S3 test server a network's
//! latency: each direction holds bytes for the delay, order and content are kept.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the proxy when the test ends, however it ends.
struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An echo server on a free loopback port: every connection gets its bytes back.
fn echo_server() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind echo");
    let addr = l.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut r = c.try_clone().expect("clone");
                let mut w = c;
                let _ = std::io::copy(&mut r, &mut w);
            });
        }
    });
    addr
}

#[test]
fn the_proxy_delays_each_direction_and_keeps_every_byte_in_order() {
    const DELAY_MS: u64 = 40;
    let upstream = echo_server();
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata-delay-proxy"))
        .args(["--listen", "127.0.0.1:0", "--upstream", &upstream])
        .args(["--delay-ms", &DELAY_MS.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the proxy");
    let stdout = child.stdout.take().expect("stdout");
    let proxy = Proxy(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the proxy's first line");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();

    let mut s = TcpStream::connect(&addr).expect("connect to the proxy");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // A round trip crosses the proxy twice: at least twice the delay.
    let t = Instant::now();
    s.write_all(b"ping").expect("write");
    let mut pong = [0u8; 4];
    s.read_exact(&mut pong).expect("read");
    let rtt = t.elapsed();
    assert_eq!(&pong, b"ping");
    assert!(
        rtt >= Duration::from_millis(2 * DELAY_MS),
        "round trip {rtt:?} shorter than twice the delay"
    );
    // 4 MiB of patterned bytes come back whole and in order.
    let data: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut w = s.try_clone().expect("clone");
    let to_send = data.clone();
    let sender = std::thread::spawn(move || w.write_all(&to_send));
    let mut back = vec![0u8; data.len()];
    s.read_exact(&mut back).expect("read back");
    sender.join().expect("sender").expect("write");
    assert!(back == data, "bytes changed or reordered through the proxy");
    drop(proxy);
}
