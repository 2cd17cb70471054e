//! Medians, the text table, the JSON file and the machine description.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use super::run::{Results, Settings, System, COMMIT_EVERY};

/// What a measurement counts; "higher is better" except where [`Unit::lower_is_better`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// Requests per second.
    Iops,
    /// MiB per second.
    MibPerSec,
    /// Files per second.
    FilesPerSec,
    /// MiB stored (lower is better).
    MibStored,
    /// Milliseconds (lower is better).
    Millis,
    /// Bytes stored per byte of live data (lower is better).
    TimesLive,
}

impl Unit {
    /// Short name for the table and JSON.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Unit::Iops => "IOPS",
            Unit::MibPerSec => "MiB/s",
            Unit::FilesPerSec => "files/s",
            Unit::MibStored => "MiB",
            Unit::Millis => "ms",
            Unit::TimesLive => "x live",
        }
    }

    /// True when a smaller value is better.
    pub(crate) fn lower_is_better(self) -> bool {
        matches!(self, Unit::MibStored | Unit::Millis | Unit::TimesLive)
    }
}

/// All repetitions of one workload on one system.
#[derive(Debug, Clone)]
pub(crate) struct Measurement {
    /// Workload name (table row).
    pub workload: String,
    /// System (table column).
    pub system: System,
    /// Unit of the values.
    pub unit: Unit,
    /// The values of each repetition, or why there are none.
    pub values: Result<Vec<f64>, String>,
    /// A remark printed under the table.
    pub note: Option<String>,
    /// For write workloads: bytes ganesha.nfsd passed to write system calls per byte the
    /// client wrote.
    pub write_amp: Option<f64>,
}

impl Measurement {
    /// A measurement.
    pub(crate) fn new(
        workload: &str,
        system: System,
        unit: Unit,
        values: Result<Vec<f64>, String>,
        note: Option<String>,
    ) -> Measurement {
        Measurement {
            workload: workload.to_string(),
            system,
            unit,
            values,
            note,
            write_amp: None,
        }
    }

    /// The median of the repetitions (None if failed or empty).
    pub(crate) fn median(&self) -> Option<f64> {
        median(self.values.as_ref().ok()?)
    }
}

/// Median of a list (mean of the middle two for even lengths).
pub(crate) fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    Some(if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    })
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A table cell: the median, "n/a (why)", "FAILED" or "-" (not run).
fn cell(m: Option<&Measurement>) -> String {
    match m {
        None => "-".into(),
        Some(m) => match &m.values {
            Ok(_) => m.median().map_or("-".into(), fmt_num),
            Err(e) if e.starts_with("n/a") => e.clone(),
            Err(_) => "FAILED".into(),
        },
    }
}

/// Strata's value over another's, as "1.23x" (inverted where lower is better, so >1 always
/// means Strata is better).
fn ratio(unit: Unit, strata: Option<f64>, other: Option<f64>) -> String {
    match (strata, other) {
        (Some(s), Some(o)) if s > 0.0 && o > 0.0 => {
            let r = if unit.lower_is_better() { o / s } else { s / o };
            format!("{r:.2}x")
        }
        _ => "-".to_string(),
    }
}

/// The S3 column (`--systems strata,strata-s3`): each workload on the local backend and on the
/// S3 test server behind the delaying proxy, and their ratio (>1: S3 is faster). Empty when
/// the S3 system did not run.
fn s3_table(r: &Results) -> String {
    let mut out = String::new();
    if !r.measurements.iter().any(|m| m.system == System::StrataS3) {
        return out;
    }
    let _ = writeln!(
        out,
        "| workload (S3 backend) | unit | Strata, local backend | {} | S3/local |",
        System::StrataS3.label()
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|");
    for (w, unit) in workloads(r) {
        let (local, s3) = (find(r, &w, System::Strata), find(r, &w, System::StrataS3));
        let Some(s3m) = s3 else { continue };
        let _ = writeln!(
            out,
            "| {w} | {} | {} | {} | {} |",
            unit.name(),
            cell(local),
            cell(Some(s3m)),
            ratio(unit, s3m.median(), local.and_then(Measurement::median)),
        );
    }
    let _ = writeln!(
        out,
        "\nS3 column: SeaweedFS `weed mini` (the S3 test server) in the gateway's namespace, behind \
         `strata-delay-proxy` holding every chunk {} ms in each direction (a request pays at \
         least 2x that); everything else as for Strata.\n",
        crate::bench::run::S3_DELAY_MS
    );
    out
}

/// Workload names in first-seen order.
fn workloads(r: &Results) -> Vec<(String, Unit)> {
    let mut seen: Vec<(String, Unit)> = Vec::new();
    for m in &r.measurements {
        if !seen.iter().any(|(w, _)| *w == m.workload) {
            seen.push((m.workload.clone(), m.unit));
        }
    }
    seen
}

fn find<'a>(r: &'a Results, workload: &str, system: System) -> Option<&'a Measurement> {
    r.measurements
        .iter()
        .find(|m| m.workload == workload && m.system == system)
}

/// The Markdown table (workload x system, medians, ratios, peak RSS) and its notes.
pub(crate) fn table(r: &Results, s: &Settings) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| workload | unit | Strata | Ganesha VFS | Ganesha MEM* | Strata/VFS | Strata/MEM |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|");
    for (w, unit) in workloads(r) {
        let get = |sys| find(r, &w, sys);
        let med = |sys| get(sys).and_then(Measurement::median);
        let _ = writeln!(
            out,
            "| {w} | {} | {} | {} | {} | {} | {} |",
            unit.name(),
            cell(get(System::Strata)),
            cell(get(System::Vfs)),
            cell(get(System::Mem)),
            ratio(unit, med(System::Strata), med(System::Vfs)),
            ratio(unit, med(System::Strata), med(System::Mem)),
        );
    }
    let rss = |sys: System| -> Option<u64> {
        r.rss_kib
            .iter()
            .find(|(x, _)| *x == sys)
            .and_then(|(_, v)| v.as_ref().ok().copied())
    };
    let rss_cell = |sys| rss(sys).map_or("-".into(), |k| format!("{:.0}", k as f64 / 1024.0));
    let rss_ratio = |other| match (rss(System::Strata), rss(other)) {
        (Some(a), Some(b)) if a > 0 => format!("{:.2}x", b as f64 / a as f64),
        _ => "-".into(),
    };
    let _ = writeln!(
        out,
        "| peak RSS of ganesha.nfsd (VmHWM) | MiB | {} | {} | {} | {} | {} |",
        rss_cell(System::Strata),
        rss_cell(System::Vfs),
        rss_cell(System::Mem),
        rss_ratio(System::Vfs),
        rss_ratio(System::Mem),
    );
    let _ = writeln!(out);
    out.push_str(&s3_table(r));
    out.push_str(&amp_table(r));
    let _ = writeln!(
        out,
        "Median of {} run(s) per cell. Ratios compare Strata with the other system so that >1 \
         always means Strata is better: Strata/other for rates, other/Strata for space and \
         RSS. Volume/image `bench.raw` of {} MiB (a volume on Strata).",
        s.runs,
        s.image_size >> 20
    );
    let _ = writeln!(
        out,
        "*MEM: Ganesha's MEM FSAL, the protocol ceiling with no storage behind it; it keeps at \
         most 2 MiB per file (`MEM {{ Inode_Size = 2097152; }}`), so its image is 2 MiB and the \
         same request counts wrap inside it. MEM allocates `Inode_Size` for every file, so its RSS \
         grows with the number of files (the small-file rows)."
    );
    let _ = writeln!(
        out,
        "qemu rows: `qemu-img bench -f raw` over `nfs://` (NFSv3, libnfs, cache=writeback), \
         sequential; MiB/s or IOPS from the elapsed time qemu-img reports. rand rows: our \
         libnfs client (NFSv3, UNSTABLE writes), uniformly random 4 KiB-aligned offsets for {} s; \
         commit/{COMMIT_EVERY}: the queue is drained and a COMMIT sent after every \
         {COMMIT_EVERY} writes. small files: one client, one at a time, create + WRITE 4 KiB + \
         COMMIT each file, then remove each.",
        s.rand_secs
    );
    let mut notes: Vec<String> = Vec::new();
    for m in &r.measurements {
        let n = match (&m.note, &m.values) {
            (_, Err(e)) if !e.starts_with("n/a") => Some(format!(
                "{} on {}: FAILED: {e}",
                m.workload,
                m.system.label()
            )),
            (Some(n), _) => Some(format!("{} on {}: {n}", m.workload, m.system.label())),
            _ => None,
        };
        if let Some(n) = n {
            if m.system == System::Mem && m.note.is_some() {
                continue; // Covered by the MEM footnote.
            }
            notes.push(
                n.lines()
                    .next()
                    .unwrap_or_default()
                    .chars()
                    .take(600)
                    .collect(),
            );
        }
    }
    for (sys, v) in &r.rss_kib {
        if let Err(e) = v {
            notes.push(format!("{}: {e}", sys.label()));
        }
    }
    for n in notes {
        let _ = writeln!(out, "- {n}");
    }
    out
}

/// Where write time goes, one view: bytes ganesha.nfsd sent to storage per byte written by
/// the client (empty when no write workload could be measured).
fn amp_table(r: &Results) -> String {
    let rows: Vec<(String, Unit)> = workloads(r)
        .into_iter()
        .filter(|(w, _)| {
            r.measurements
                .iter()
                .any(|m| m.workload == *w && m.write_amp.is_some())
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Write amplification: bytes ganesha.nfsd passed to write system calls (`/proc/PID/io` \
         wchar, bytes given to write(2)-family calls: data files, metadata, logs; not its NFS \
         replies, which go out with sendmsg) per byte the client wrote, over all runs of the \
         row:\n"
    );
    let _ = writeln!(
        out,
        "| write workload | Strata | Ganesha VFS | Ganesha MEM* |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for (w, _) in rows {
        let cell = |sys| {
            find(r, &w, sys)
                .and_then(|m| m.write_amp)
                .map_or("-".to_string(), |a| format!("{a:.2}"))
        };
        let _ = writeln!(
            out,
            "| {w} | {} | {} | {} |",
            cell(System::Strata),
            cell(System::Vfs),
            cell(System::Mem)
        );
    }
    let _ = writeln!(out);
    out
}

fn sh(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s.trim().to_string()
        })
        .unwrap_or_default()
}

/// A description of the machine: CPUs, memory, the disk of the data dirs, kernel, versions.
pub(crate) fn machine(tmp_base: &Path) -> BTreeMap<&'static str, String> {
    let mut m = BTreeMap::new();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    m.insert("cpus", format!("{cpus} ({model})"));
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
        })
        .and_then(|k| k.parse::<u64>().ok())
        .map_or(String::new(), |k| {
            format!("{:.1} GiB", k as f64 / (1u64 << 20) as f64)
        });
    m.insert("memory", mem);
    let tmp = tmp_base.display().to_string();
    let df = sh("df", &["-hT", &tmp]);
    m.insert(
        "disk",
        df.lines()
            .last()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .map(|l| format!("{l} (data dirs under {tmp})"))
            .unwrap_or_default(),
    );
    m.insert("kernel", sh("uname", &["-r"]));
    // What was measured: the commit, and whether the work tree had changes on top of it.
    let head = sh("git", &["rev-parse", "--short", "HEAD"]);
    if !head.is_empty() && !head.contains(' ') {
        let dirty = !sh("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty();
        m.insert(
            "source",
            format!(
                "{head}{}",
                if dirty { " + uncommitted changes" } else { "" }
            ),
        );
    }
    // Other work on the machine skews results: record the load when the run starts.
    m.insert(
        "load at start",
        std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
    );
    m.insert(
        "ganesha",
        sh("dpkg-query", &["-W", "-f", "${Version}", "nfs-ganesha"]),
    );
    m.insert(
        "qemu-img",
        sh("qemu-img", &["--version"])
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
    );
    m.insert(
        "libnfs",
        sh("dpkg-query", &["-W", "-f", "${Version}", "libnfs-dev"]),
    );
    m
}

/// The JSON document written to `--out`.
pub(crate) fn json(
    r: &Results,
    s: &Settings,
    command: &str,
    machine: &BTreeMap<&str, String>,
) -> Value {
    let results: Vec<Value> = r
        .measurements
        .iter()
        .map(|m| {
            json!({
                "workload": m.workload,
                "system": m.system.name(),
                "unit": m.unit.name(),
                "median": m.median(),
                "values": m.values.as_ref().ok(),
                "error": m.values.as_ref().err(),
                "note": m.note,
                "server_write_bytes_per_client_byte": m.write_amp,
            })
        })
        .collect();
    let rss: BTreeMap<&str, Value> = r
        .rss_kib
        .iter()
        .map(|(sys, v)| {
            (
                sys.name(),
                match v {
                    Ok(k) => json!({ "peak_rss_kib": k }),
                    Err(e) => json!({ "error": e }),
                },
            )
        })
        .collect();
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    json!({
        "schema": 1,
        "unix_time": unix,
        "command": command,
        "quick": s.quick,
        "runs": s.runs,
        "image_size": s.image_size,
        "rand_secs": s.rand_secs,
        "small_files": s.small_files,
        "wall_secs": r.wall_secs,
        "machine": machine,
        "systems": rss,
        "results": results,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::run::Results;
    use std::path::PathBuf;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn ratio_is_better_when_above_one() {
        assert_eq!(ratio(Unit::Iops, Some(200.0), Some(100.0)), "2.00x");
        // Milliseconds: less is better, so the ratio is inverted.
        assert_eq!(ratio(Unit::Millis, Some(1.0), Some(2.0)), "2.00x");
        assert_eq!(ratio(Unit::MibStored, Some(4.0), Some(1.0)), "0.25x");
        assert_eq!(ratio(Unit::Iops, None, Some(1.0)), "-");
        assert_eq!(ratio(Unit::Iops, Some(1.0), Some(0.0)), "-");
    }

    #[test]
    fn table_shows_medians_ratios_failures_and_rss() {
        let s = Settings::new(true, PathBuf::from("/nonexistent"), std::env::temp_dir());
        let m = |sys, v| Measurement::new("w", sys, Unit::Iops, v, None);
        let r = Results {
            measurements: vec![
                m(System::Strata, Ok(vec![300.0, 100.0, 200.0])),
                m(System::Vfs, Ok(vec![100.0])),
                m(System::Mem, Err("connection refused".into())),
                Measurement::new(
                    "snap",
                    System::Strata,
                    Unit::Millis,
                    Err("n/a (x)".into()),
                    None,
                ),
            ],
            rss_kib: vec![(System::Strata, Ok(2048)), (System::Vfs, Ok(1024))],
            wall_secs: 1.0,
        };
        let t = table(&r, &s);
        assert!(
            t.contains("| w | IOPS | 200 | 100 | FAILED | 2.00x | - |"),
            "{t}"
        );
        assert!(t.contains("| snap | ms | n/a (x) | - | - | - | - |"), "{t}");
        assert!(t.contains("| MiB | 2 | 1 | - | 0.50x | - |"), "{t}");
        assert!(
            t.contains("w on Ganesha MEM*: FAILED: connection refused"),
            "{t}"
        );
        let j = json(&r, &s, "cmd", &BTreeMap::new());
        assert_eq!(j["results"][0]["median"], 200.0);
        assert_eq!(j["results"][2]["error"], "connection refused");
        assert_eq!(j["systems"]["strata"]["peak_rss_kib"], 2048);
    }

    #[test]
    fn the_s3_table_compares_the_backends_only_when_s3_ran() {
        let s = Settings::new(true, PathBuf::from("/nonexistent"), std::env::temp_dir());
        let m = |sys, v| Measurement::new("w", sys, Unit::Iops, v, None);
        let mut r = Results {
            measurements: vec![m(System::Strata, Ok(vec![1000.0]))],
            rss_kib: vec![],
            wall_secs: 1.0,
        };
        assert!(!table(&r, &s).contains("S3/local"));
        r.measurements.push(m(System::StrataS3, Ok(vec![800.0])));
        let t = table(&r, &s);
        assert!(t.contains("| w | IOPS | 1000 | 800 | 0.80x |"), "{t}");
        assert!(t.contains("20 ms"), "{t}");
    }
}
