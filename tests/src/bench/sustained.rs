//! The sustained-import row (issue 11): one `qemu-img bench` writing 8 GiB (1 GiB with
//! `--quick`) sequentially, 1 MiB requests, 8 in flight, no host cache, into a fresh file over
//! QEMU's `nfs://` driver — the way `qemu-img convert` imports a VM image. On Strata the write
//! buffer (`Write_Buffer_Size`, 1 GiB by default) fills many times over, so the row shows the
//! rate a writer settles at under pacing, with the volume's upload rate, its peak backlog and
//! its paced and refused writes (`strata volume info`) in the note.

use std::time::Instant;

use super::run::{run_bounded, Settings, Target};

/// The row's name in the table.
pub(crate) const ID: &str = "sustained 8 GiB sequential write through nfs://";

/// The volume it writes (left in place by [`run`]; [`remove`] removes it).
pub(crate) const FILE: &str = "/sustained.raw";
const MIB: u64 = 1 << 20;

/// Bytes the row writes.
pub(crate) fn bytes(s: &Settings) -> u64 {
    if s.quick {
        1 << 30
    } else {
        8 << 30
    }
}

/// Runs the import once on `t`: its rate (MiB/s, wall time of the qemu-img process, which
/// ends with a flush) and, on Strata, a note with what the volume reports.
pub(crate) fn run(t: &mut Target, s: &Settings) -> Result<(f64, Option<String>), String> {
    let len = bytes(s);
    let url = t.tg.qemu_url(FILE);
    let mut c = t.cmd("qemu-img");
    c.args(["create", "-q", "-f", "raw"])
        .arg(&url)
        .arg(len.to_string());
    let out = run_bounded(c, s.cmd_timeout)?;
    if !out.ok {
        return Err(format!("qemu-img create: {}{}", out.stdout, out.stderr));
    }
    let mut c = t.cmd("qemu-img");
    c.args([
        "bench",
        "-w",
        "--pattern",
        crate::bench::run::QEMU_PATTERN,
        "-t",
        "none",
        "-f",
        "raw",
        "-s",
        "1M",
        "-d",
        "8",
    ])
    .args(["-c", &(len / MIB).to_string()])
    .arg(&url);
    let t0 = Instant::now();
    // An import is long: a bound in proportion to its size (at least 5 MiB/s).
    let out = run_bounded(
        c,
        s.cmd_timeout + std::time::Duration::from_secs(len / (5 * MIB)),
    )?;
    let wall = t0.elapsed().as_secs_f64();
    if !out.ok || out.stdout.contains("Failed") || out.stderr.contains("Failed") {
        return Err(format!("qemu-img bench: {}{}", out.stdout, out.stderr));
    }
    let note = match t.strata_cli.clone() {
        Some(cli) => {
            let mut c = t.cmd(cli);
            c.args(["volume", "info", FILE, "--json", "--socket"])
                .arg(t.tg.data_dir.join("mgmt.sock"));
            let out = run_bounded(c, s.cmd_timeout)?;
            let v: serde_json::Value = serde_json::from_str(out.stdout.trim())
                .map_err(|e| format!("strata volume info: not JSON ({e}): {}", out.stdout))?;
            let n = |k: &str| v[k].as_u64().unwrap_or(0);
            Some(format!(
                "{} GiB in {wall:.0} s; upload rate {:.0} MiB/s, peak backlog {} MiB of the \
                 1024 MiB write buffer, {} writes paced ({:.1} s in all), {} refused",
                len >> 30,
                n("upload_rate") as f64 / MIB as f64,
                n("peak_backlog") / MIB,
                n("writes_paced"),
                n("pacing_delay_ms") as f64 / 1000.0,
                n("writes_refused"),
            ))
        }
        None => Some(format!("{} GiB in {wall:.0} s", len >> 30)),
    };
    t.settle(s)?;
    Ok((len as f64 / MIB as f64 / wall.max(0.0005), note))
}

/// Removes the volume [`run`] wrote.
pub(crate) fn remove(t: &Target, s: &Settings) -> Result<(), String> {
    t.client(&["unlink".into(), FILE.into()], s).map(drop)
}
