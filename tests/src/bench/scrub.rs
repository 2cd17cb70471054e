//! The scrub rows (issue 17), on the bench image after the write workloads overwrote it many
//! times: a snapshot (so the scrub must keep what it reads), then `strata scrub` of the image
//! through the management socket with the default `Scrub_Bandwidth`, while 4 KiB random reads
//! and writes take turns against it, window after window (a `strata sync --wait` after each
//! write window, as after the writes before the pass), until the pass ends. Rows: the
//! image's backend bytes per byte of live data afterwards, the backend data scrubbed per
//! second, and the reads' and writes' IOPS and 99th percentile latency during the pass
//! against the same I/O just before it.

use std::time::{Duration, Instant};

use strata_mgmt::MgmtClient;

use super::clones::Row;
use super::latency::Histogram;
use super::report::Unit;
use super::run::{dir_usage, Settings, Target};

const MIB: f64 = (1u64 << 20) as f64;
const SNAPSHOT: &str = "bench-scrub";

fn ids() -> [(String, Unit); 10] {
    [
        (
            "scrub: backend bytes of the image per live byte, after a snapshot and a scrub".into(),
            Unit::TimesLive,
        ),
        ("scrub: backend data scrubbed".into(), Unit::MibPerSec),
        ("rand read 4K qd8, before a scrub".into(), Unit::Iops),
        ("rand read 4K qd8, during a scrub".into(), Unit::Iops),
        (
            "rand read 4K qd8 p99 latency, before a scrub".into(),
            Unit::Millis,
        ),
        (
            "rand read 4K qd8 p99 latency, during a scrub".into(),
            Unit::Millis,
        ),
        (
            "rand write 4K qd8 commit/16, before a scrub".into(),
            Unit::Iops,
        ),
        (
            "rand write 4K qd8 commit/16, during a scrub".into(),
            Unit::Iops,
        ),
        (
            "rand write 4K qd8 commit/16 p99 latency, before a scrub".into(),
            Unit::Millis,
        ),
        (
            "rand write 4K qd8 commit/16 p99 latency, during a scrub".into(),
            Unit::Millis,
        ),
    ]
}

/// The rows, each with the same reason for having no value.
pub(crate) fn rows_na(why: &str) -> Vec<Row> {
    ids()
        .into_iter()
        .map(|(id, u)| (id, u, Err(why.to_string()), None))
        .collect()
}

/// The rows for a Strata target on `image` (path, bytes).
pub(crate) fn rows(t: &Target, s: &Settings, image: (&str, u64)) -> Vec<Row> {
    match measure(t, s, image) {
        Ok(rows) => rows,
        Err(e) => rows_na(&e),
    }
}

/// A client error as the row's reason.
fn err(what: &'static str) -> impl Fn(strata_mgmt::ClientError) -> String {
    move |e| format!("{what}: {e}")
}

/// One window of 4 KiB random I/O at queue depth 8 over the image (writes COMMIT every 16):
/// IOPS and the requests' latencies.
fn randio(
    t: &Target,
    s: &Settings,
    image: (&str, u64),
    write: bool,
) -> Result<(f64, Histogram), String> {
    let args: Vec<String> = [
        "randio",
        if write { "write" } else { "read" },
        image.0,
        &image.1.to_string(),
        "4096",
        "8",
        if write { "16" } else { "0" },
        &s.rand_secs.to_string(),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    let kv = t.client(&args, s)?;
    let iops = kv
        .get("iops")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("randio: no iops in {kv:?}"))?;
    let hist = kv
        .get("lat_hist")
        .ok_or_else(|| format!("randio: no lat_hist in {kv:?}"))?;
    Ok((iops, Histogram::parse(hist)?))
}

/// The windows of one kind of I/O in one phase (before the pass, during it): each window's
/// start (seconds into the phase), IOPS and p99; and every request's latency pooled.
#[derive(Default)]
struct Phase {
    windows: Vec<(f64, f64, f64)>,
    pooled: Histogram,
    /// Writes paced by the upload backlog, and their total wait in milliseconds.
    paced: (u64, u64),
}

impl Phase {
    fn push(&mut self, at: f64, iops: f64, h: &Histogram) {
        self.windows
            .push((at, iops, f64::from(h.quantile(0.99)) / 1000.0));
        self.pooled.add(h);
    }

    /// The windows' mean IOPS.
    fn iops(&self) -> Result<f64, String> {
        if self.windows.is_empty() {
            return Err("no window ran".into());
        }
        Ok(self.windows.iter().map(|w| w.1).sum::<f64>() / self.windows.len() as f64)
    }

    /// The p99 of every request of the phase, in milliseconds.
    fn p99(&self) -> Result<f64, String> {
        self.iops()?;
        Ok(f64::from(self.pooled.quantile(0.99)) / 1000.0)
    }

    /// Each window's p99, by its start.
    fn list(&self) -> String {
        let l: Vec<String> = self
            .windows
            .iter()
            .map(|(at, _, p99)| format!("{at:.0} s: {p99:.2} ms"))
            .collect();
        l.join(", ")
    }
}

/// The note of a "during" p99 row.
fn p99_note(quiet: &Phase, during: &Phase, write: bool) -> Option<String> {
    let (q, d) = (quiet.p99().ok()?, during.p99().ok()?);
    let pacing = if write {
        format!(
            "; writes paced by the upload backlog: {} ({} ms of waits) before, {} ({} ms) during",
            quiet.paced.0, quiet.paced.1, during.paced.0, during.paced.1
        )
    } else {
        String::new()
    };
    Some(format!(
        "{:.2}x the p99 before the scrub (goal: within 1.5x), each the p99 of every request of \
         the phase's windows; {:.2}x the IOPS before; p99 per window, before: {}; during, from \
         the pass's start: {}{pacing}",
        d / q.max(1e-6),
        during.iops().unwrap_or(0.0) / quiet.iops().unwrap_or(1.0).max(1e-6),
        quiet.list(),
        during.list()
    ))
}

/// One round: a read window, a write window, then `strata sync --wait` (so that what the
/// writes left to upload is not the next read window's burden). `t0` is the phase's start.
fn round(
    t: &Target,
    s: &Settings,
    c: &mut MgmtClient,
    image: (&str, u64),
    t0: Instant,
    phases: (&mut Phase, &mut Phase),
) -> Result<(), String> {
    let (reads, writes) = phases;
    let at = t0.elapsed().as_secs_f64();
    let (iops, h) = randio(t, s, image, false)?;
    reads.push(at, iops, &h);
    let paced = |c: &mut MgmtClient| -> Result<(u64, u64), String> {
        let v = c.volume_info(image.0).map_err(err("volume info"))?;
        Ok((v.writes_paced, v.pacing_delay_ms))
    };
    let p0 = paced(c)?;
    let at = t0.elapsed().as_secs_f64();
    let (iops, h) = randio(t, s, image, true)?;
    writes.push(at, iops, &h);
    let p1 = paced(c)?;
    writes.paced.0 += p1.0.saturating_sub(p0.0);
    writes.paced.1 += p1.1.saturating_sub(p0.1);
    c.sync(true).map_err(err("sync"))?;
    Ok(())
}

/// Rounds of I/O before the pass.
const QUIET_ROUNDS: usize = 3;

/// Waits for job `id` to end; its final report.
fn wait_job(c: &mut MgmtClient, id: u64, s: &Settings) -> Result<strata_mgmt::JobReport, String> {
    let deadline = Instant::now() + s.cmd_timeout.max(Duration::from_secs(1800));
    loop {
        let j = c.job_show(id).map_err(err("job show"))?;
        if j.state != "running" {
            return Ok(j);
        }
        if Instant::now() > deadline {
            return Err(format!("scrub job {} still running", j.id));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn measure(t: &Target, s: &Settings, image: (&str, u64)) -> Result<Vec<Row>, String> {
    let sock = t.tg.data_dir.join("mgmt.sock");
    let mut c = MgmtClient::connect(&sock).map_err(|e| format!("{}: {e}", sock.display()))?;
    c.sync(true).map_err(err("sync"))?;
    let v0 = c.volume_info(image.0).map_err(err("volume info"))?;
    let dir =
        t.tg.data_dir
            .join("backend")
            .join("volumes")
            .join(format!("{:016x}", v0.ino));
    let (_, before, _) = dir_usage(&dir);
    c.snapshot_create(image.0, SNAPSHOT, Vec::new())
        .map_err(err("snapshot create"))?;
    let (mut quiet_reads, mut quiet_writes) = (Phase::default(), Phase::default());
    let q0 = Instant::now();
    for _ in 0..QUIET_ROUNDS {
        round(
            t,
            s,
            &mut c,
            image,
            q0,
            (&mut quiet_reads, &mut quiet_writes),
        )?;
    }
    let t0 = Instant::now();
    let job = c.scrub(Some(image.0), false).map_err(err("scrub"))?;
    // Rounds until the pass ends (its state checked after each).
    let (mut reads, mut writes) = (Phase::default(), Phase::default());
    loop {
        round(t, s, &mut c, image, t0, (&mut reads, &mut writes))?;
        if c.job_show(job.id).map_err(err("job show"))?.state != "running" {
            break;
        }
    }
    let job = wait_job(&mut c, job.id, s)?;
    let took = t0.elapsed();
    if job.state != "done" {
        return Err(format!("scrub job {}: {:?}", job.state, job.reason));
    }
    let scrubbed = c.volume_info(image.0).map_err(err("volume info"))?;
    // A second pass for what the racing writes superseded, then the space.
    let second = c.scrub(Some(image.0), true).map_err(err("second scrub"))?;
    if second.state != "done" {
        return Err(format!(
            "second scrub {}: {:?}",
            second.state, second.reason
        ));
    }
    c.sync(true).map_err(err("sync"))?;
    let v = c.volume_info(image.0).map_err(err("volume info"))?;
    let (_, after, _) = dir_usage(&dir);
    c.snapshot_delete(image.0, SNAPSHOT)
        .map_err(err("snapshot delete"))?;
    // Live data: what the volume maps plus what its snapshot and clones still read.
    let live = (v.space_used + v.scrub.pinned_clusters * 4096).max(1) as f64;
    let kinds: Vec<String> = ["sco", "tlog", "mds", "snap"]
        .iter()
        .map(|k| format!("{k}/ {:.0} MiB", dir_usage(&dir.join(k)).1 as f64 / MIB))
        .collect();
    let [ratio_id, rate_id, qr_id, dr_id, qrp_id, drp_id, qw_id, dw_id, qwp_id, dwp_id] = ids();
    let ratio_note = format!(
        "{:.0} MiB on the backend for {:.0} MiB live (mapped, plus {} clusters superseded but \
         read by the snapshot or a clone; {:.2}x before the scrub): {}; the measured pass \
         compacted {} SCOs and deleted {} objects, a second pass for what the racing writes \
         superseded {} and {}; {} dead clusters left in SCOs above Scrub_Threshold (80 %)",
        after as f64 / MIB,
        live / MIB,
        v.scrub.pinned_clusters,
        before as f64 / live,
        kinds.join(", "),
        scrubbed
            .scrub
            .scos_compacted
            .saturating_sub(v0.scrub.scos_compacted),
        scrubbed
            .scrub
            .objects_deleted
            .saturating_sub(v0.scrub.objects_deleted),
        v.scrub
            .scos_compacted
            .saturating_sub(scrubbed.scrub.scos_compacted),
        v.scrub
            .objects_deleted
            .saturating_sub(scrubbed.scrub.objects_deleted),
        v.scrub.dead_clusters
    );
    let rate_note = format!(
        "{:.0} MiB of backend data in {:.1} s with the default Scrub_Bandwidth (64 MiB/s of \
         reads and writes per volume), reads and writes racing it",
        before as f64 / MIB,
        took.as_secs_f64()
    );
    let took_s = took.as_secs_f64();
    let rounds = format!(
        "{QUIET_ROUNDS} rounds before the pass, {} during its {took_s:.0} s; a round is a read \
         window and a write window of {:.0} s each, then `strata sync --wait`",
        reads.windows.len(),
        s.rand_secs
    );
    let row = |id: (String, Unit), v: Result<f64, String>, note: Option<String>| -> Row {
        (id.0, id.1, v.map(|x| vec![x]), note)
    };
    Ok(vec![
        row(ratio_id, Ok(after as f64 / live), Some(ratio_note)),
        row(
            rate_id,
            Ok(before as f64 / MIB / took_s.max(0.0005)),
            Some(rate_note),
        ),
        row(qr_id, quiet_reads.iops(), Some(rounds.clone())),
        row(dr_id, reads.iops(), Some(rounds)),
        row(qrp_id, quiet_reads.p99(), None),
        row(drp_id, reads.p99(), p99_note(&quiet_reads, &reads, false)),
        row(qw_id, quiet_writes.iops(), None),
        row(dw_id, writes.iops(), None),
        row(qwp_id, quiet_writes.p99(), None),
        row(dwp_id, writes.p99(), p99_note(&quiet_writes, &writes, true)),
    ])
}
