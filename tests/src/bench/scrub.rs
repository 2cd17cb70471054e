//! The scrub rows (issue 17), on the bench image after the write workloads overwrote it many
//! times: a snapshot (so the scrub must keep what it reads), then `strata scrub` of the image
//! through the management socket with the default `Scrub_Bandwidth`, while 4 KiB random reads
//! run against it. Rows: the image's backend bytes per byte of live data afterwards, the
//! backend data scrubbed per second, and the random reads during the scrub against the same
//! reads just before it.

use std::time::{Duration, Instant};

use strata_mgmt::MgmtClient;

use super::clones::Row;
use super::report::Unit;
use super::run::{dir_usage, Settings, Target};

const MIB: f64 = (1u64 << 20) as f64;
const SNAPSHOT: &str = "bench-scrub";

fn ids() -> [(String, Unit); 6] {
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

fn measure(t: &Target, s: &Settings, image: (&str, u64)) -> Result<Vec<Row>, String> {
    let sock = t.tg.data_dir.join("mgmt.sock");
    let mut c = MgmtClient::connect(&sock).map_err(|e| format!("{}: {e}", sock.display()))?;
    c.sync(true).map_err(err("sync"))?;
    let v = c.volume_info(image.0).map_err(err("volume info"))?;
    let dir =
        t.tg.data_dir
            .join("backend")
            .join("volumes")
            .join(format!("{:016x}", v.ino));
    let (_, before, _) = dir_usage(&dir);
    c.snapshot_create(image.0, SNAPSHOT, Vec::new())
        .map_err(err("snapshot create"))?;
    let randread = || super::clones::randread_p99(t, s, image.0, image.1);
    let quiet = randread()?;
    let t0 = Instant::now();
    let job = c.scrub(Some(image.0), false).map_err(err("scrub"))?;
    let during = randread();
    let overlap = t0.elapsed();
    let deadline = Instant::now() + s.cmd_timeout.max(Duration::from_secs(1800));
    let job = loop {
        let j = c.job_show(job.id).map_err(err("job show"))?;
        if j.state != "running" {
            break j;
        }
        if Instant::now() > deadline {
            return Err(format!("scrub job {} still running", j.id));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let took = t0.elapsed();
    if job.state != "done" {
        return Err(format!("scrub job {}: {:?}", job.state, job.reason));
    }
    c.sync(true).map_err(err("sync"))?;
    let v = c.volume_info(image.0).map_err(err("volume info"))?;
    let (_, after, _) = dir_usage(&dir);
    c.snapshot_delete(image.0, SNAPSHOT)
        .map_err(err("snapshot delete"))?;
    let live = v.space_used.max(1) as f64;
    let kinds: Vec<String> = ["sco", "tlog", "mds", "snap"]
        .iter()
        .map(|k| format!("{k}/ {:.0} MiB", dir_usage(&dir.join(k)).1 as f64 / MIB))
        .collect();
    let [ratio_id, rate_id, quiet_id, during_id, quiet_p99_id, during_p99_id] = ids();
    let ratio_note = format!(
        "{:.0} MiB on the backend for {:.0} MiB live ({:.2}x before the scrub): {}; {} SCOs \
         compacted, {} objects deleted; {} clusters superseded but read by a snapshot or a \
         clone, {} dead left in SCOs above Scrub_Threshold (80 %)",
        after as f64 / MIB,
        live / MIB,
        before as f64 / live,
        kinds.join(", "),
        v.scrub.scos_compacted,
        v.scrub.objects_deleted,
        v.scrub.pinned_clusters,
        v.scrub.dead_clusters
    );
    let rate_note = format!(
        "{:.0} MiB of backend data in {:.1} s with the default Scrub_Bandwidth (64 MiB/s of \
         reads and writes per volume)",
        before as f64 / MIB,
        took.as_secs_f64()
    );
    let during_note = format!(
        "the reads ran the first {:.1} s of a {:.1} s scrub",
        overlap.as_secs_f64().min(took.as_secs_f64()),
        took.as_secs_f64()
    );
    let p99_note = match &during {
        Ok((_, p99)) => format!(
            "{:.2}x the p99 before the scrub (goal: within 1.5x); {during_note}",
            p99 / quiet.1.max(1e-6)
        ),
        Err(_) => during_note.clone(),
    };
    Ok(vec![
        (
            ratio_id.0,
            ratio_id.1,
            Ok(vec![after as f64 / live]),
            Some(ratio_note),
        ),
        (
            rate_id.0,
            rate_id.1,
            Ok(vec![before as f64 / MIB / took.as_secs_f64().max(0.0005)]),
            Some(rate_note),
        ),
        (quiet_id.0, quiet_id.1, Ok(vec![quiet.0]), None),
        (quiet_p99_id.0, quiet_p99_id.1, Ok(vec![quiet.1]), None),
        (
            during_p99_id.0,
            during_p99_id.1,
            during.clone().map(|v| vec![v.1]),
            Some(p99_note),
        ),
        (
            during_id.0,
            during_id.1,
            during.map(|v| vec![v.0]),
            Some(during_note),
        ),
    ])
}
