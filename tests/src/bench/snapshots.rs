//! The snapshot rows (issue 15): how long `snapshot create` and `snapshot delete` take through
//! the management socket (the time the engine answers in, measured by this process with the
//! protocol's client, so no `strata` process start is counted), on a volume with the bench
//! image and with the sustained import written, before and with 1,000 snapshots. Before each
//! timed create a short burst of 4 KiB writes with COMMITs goes to the volume (untimed), so
//! every create seals a SCO and closes a TLog, as it does on a volume in use.

use std::time::Instant;

use strata_mgmt::MgmtClient;

use super::run::{Settings, Target};

/// Timed creates (and deletes) per row.
const SAMPLES: usize = 10;
/// Snapshots taken before the "with 1,000 snapshots" rows.
const MANY: usize = 1000;
const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// One row: its name and the milliseconds of each sample.
pub(crate) type Row = (String, Result<Vec<f64>, String>);

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

fn written(bytes: u64) -> String {
    if bytes >= GIB {
        format!("{} GiB", bytes / GIB)
    } else {
        format!("{} MiB", bytes / MIB)
    }
}

fn ids(size: u64) -> [String; 3] {
    let w = written(size);
    [
        format!("snapshot create, volume with {w} written"),
        format!("snapshot create, {w} written, {MANY} snapshots"),
        format!("snapshot delete, {w} written, {MANY} snapshots"),
    ]
}

/// The rows for volume `path` (`size` bytes, all written) of a Strata target.
pub(crate) fn rows(t: &Target, s: &Settings, path: &str, size: u64) -> Vec<Row> {
    match measure(t, s, path, size) {
        Ok([a, b, c]) => ids(size).into_iter().zip([Ok(a), Ok(b), Ok(c)]).collect(),
        Err(e) => rows_na(size, &e),
    }
}

/// The rows, each with the same reason for having no value.
pub(crate) fn rows_na(size: u64, why: &str) -> Vec<Row> {
    ids(size)
        .into_iter()
        .map(|id| (id, Err(why.to_string())))
        .collect()
}

fn measure(t: &Target, s: &Settings, path: &str, size: u64) -> Result<[Vec<f64>; 3], String> {
    let sock = t.tg.data_dir.join("mgmt.sock");
    let mut c = MgmtClient::connect(&sock).map_err(|e| format!("{}: {e}", sock.display()))?;
    let burst = |t: &Target| {
        let args: Vec<String> = [
            "randio",
            "write",
            path,
            &size.to_string(),
            "4096",
            "1",
            "1",
            "0.05",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        t.client(&args, s).map(drop)
    };
    let timed_creates = |c: &mut MgmtClient, prefix: &str| -> Result<Vec<f64>, String> {
        let mut v = Vec::new();
        for i in 0..SAMPLES {
            burst(t)?;
            let t0 = Instant::now();
            c.snapshot_create(path, &format!("{prefix}{i}"), Vec::new())
                .map_err(|e| format!("snapshot create: {e}"))?;
            v.push(ms(t0));
        }
        Ok(v)
    };
    let first = timed_creates(&mut c, "first-")?;
    for i in 0..MANY {
        c.snapshot_create(path, &format!("many-{i}"), Vec::new())
            .map_err(|e| format!("snapshot create: {e}"))?;
    }
    let many = timed_creates(&mut c, "late-")?;
    let mut deletes = Vec::new();
    for i in 0..SAMPLES {
        let t0 = Instant::now();
        c.snapshot_delete(path, &format!("many-{i}"))
            .map_err(|e| format!("snapshot delete: {e}"))?;
        deletes.push(ms(t0));
    }
    Ok([first, many, deletes])
}
