//! The discard rows (issue 19), Strata and VFS over NFSv4.2 with the project's own client
//! (`strata-nfs42-client`): a file written whole (256 MiB quick, 1 GiB full), then one
//! DEALLOCATE of all of it (what a guest's `fstrim` or `blkdiscard` costs), and zeros written
//! over it in 1 MiB WRITEs (what ESXi's zeroing costs; a Strata volume unmaps them). Each time
//! is the client's own measure of the operation (`us=`), without its session set-up.

use super::clones::Row;
use super::report::Unit;
use super::run::{Settings, Target};
use strata_tests::Run;

/// The file the rows use (a volume on Strata: `.raw`).
const FILE: &str = "/discard-bench.raw";
const MIB: u64 = 1 << 20;

fn bytes(s: &Settings) -> u64 {
    if s.quick {
        256 * MIB
    } else {
        1024 * MIB
    }
}

fn ids(s: &Settings) -> [(String, Unit); 2] {
    let mib = bytes(s) / MIB;
    [
        (
            format!("DEALLOCATE of {mib} MiB written (NFSv4.2)"),
            Unit::Millis,
        ),
        (
            format!("zeros written over {mib} MiB of data, 1M FILE_SYNC (NFSv4.2)"),
            Unit::MibPerSec,
        ),
    ]
}

/// The rows, each with the same reason for having no value.
pub(crate) fn rows_na(s: &Settings, why: &str) -> Vec<Row> {
    ids(s)
        .into_iter()
        .map(|(id, unit)| (id, unit, Err(why.to_string()), None))
        .collect()
}

/// Microseconds of the client's command `op` (its first line with `op=<op>`).
fn micros(r: &Run, op: &str) -> Result<f64, String> {
    r.stdout
        .lines()
        .find(|l| l.starts_with(&format!("op={op} ")))
        .and_then(|l| {
            strata_tests::kv_line(l)
                .get("us")
                .and_then(|v| v.parse::<f64>().ok())
        })
        .ok_or_else(|| format!("no time for {op}: {r}"))
}

/// The rows for a Strata or VFS target; the file is removed afterwards.
pub(crate) fn rows(t: &Target, s: &Settings) -> Vec<Row> {
    let n = bytes(s).to_string();
    let mut dealloc = Vec::new();
    let mut zeros = Vec::new();
    for run in 0..s.runs {
        let seed = (100 + run).to_string();
        let write =
            t.tg.nfs42(&[FILE, "create", "write", "0", &n, &seed, "commit"]);
        if !write.ok() {
            return rows_na(s, &format!("writing the file failed: {write}"));
        }
        let r =
            t.tg.nfs42(&[FILE, "open", "deallocate", "0", &n, "readz", "0", "4096"]);
        if !r.ok() {
            return rows_na(s, &format!("DEALLOCATE failed: {r}"));
        }
        match micros(&r, "deallocate") {
            Ok(us) => dealloc.push(us / 1000.0),
            Err(e) => return rows_na(s, &e),
        }
        let w =
            t.tg.nfs42(&[FILE, "open", "write", "0", &n, &seed, "writez", "0", &n]);
        if !w.ok() {
            return rows_na(s, &format!("writing zeros failed: {w}"));
        }
        match micros(&w, "writez") {
            Ok(us) => zeros.push(bytes(s) as f64 / MIB as f64 / (us / 1e6)),
            Err(e) => return rows_na(s, &e),
        }
    }
    let note = format!(
        "file of {} MiB; Strata: a volume (holes unmapped, zeros detected)",
        bytes(s) / MIB
    );
    let [(a, ua), (b, ub)] = ids(s);
    let _ = t.tg.client(3, &["unlink", FILE]);
    vec![(a, ua, Ok(dealloc), Some(note)), (b, ub, Ok(zeros), None)]
}
