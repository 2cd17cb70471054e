//! The disaster-recovery rows (issue 18), Strata on the local backend only: a namespace of
//! many empty files is added beside the bench volume, `strata sync --wait`, Ganesha stopped;
//! then `strata restore --take-over` into a new, empty data directory on the same backend (its
//! time is one row), Ganesha started on it, and one 4 KiB read of the bench volume: the time
//! from the restore's start to that read's answer is the other row (nothing is downloaded in
//! bulk, so it should not grow with the volume's size).

use std::time::Instant;

use strata_ganesha_conf::conf::GaneshaConf;

use super::clones::Row;
use super::report::Unit;
use super::run::{Settings, Target};
use strata_tests::{run_bounded, strata_conf_on, TestGateway};

/// Empty files in the restored namespace (full mode; a tenth in quick mode).
const ENTRIES: u64 = 100_000;

fn entries(s: &Settings) -> u64 {
    if s.quick {
        ENTRIES / 10
    } else {
        ENTRIES
    }
}

fn ids(s: &Settings, size: u64) -> [String; 2] {
    [
        format!("restore, namespace of {} entries", entries(s)),
        format!(
            "restore to the first 4 KiB read of a {} MiB volume",
            size >> 20
        ),
    ]
}

/// The rows, each with the same reason for having no value.
pub(crate) fn rows_na(s: &Settings, size: u64, why: &str) -> Vec<Row> {
    ids(s, size)
        .into_iter()
        .map(|id| (id, Unit::Millis, Err(why.to_string()), None))
        .collect()
}

/// Measures on `t` (stopped afterwards: run it last).
pub(crate) fn rows(t: &mut Target, s: &Settings) -> Vec<Row> {
    match measure(t, s) {
        Ok((restore_ms, first_ms, note)) => {
            let [a, b] = ids(s, t.size);
            vec![
                (a, Unit::Millis, Ok(vec![restore_ms]), Some(note.clone())),
                (b, Unit::Millis, Ok(vec![first_ms]), Some(note)),
            ]
        }
        Err(e) => rows_na(s, t.size, &e),
    }
}

fn measure(t: &mut Target, s: &Settings) -> Result<(f64, f64, String), String> {
    let cli = t.strata_cli.clone().ok_or("no strata CLI")?;
    let n = entries(s).to_string();
    t.client(&["smallfiles".into(), "/many".into(), n, "touch".into()], s)?;
    t.settle(s)?;
    let backend = t.tg.data_dir.join("backend");
    t.tg.stop();
    let base = tempfile::Builder::new()
        .prefix("strata-bench-restored-")
        .tempdir_in(&s.tmp_base)
        .map_err(|e| format!("temp dir: {e}"))?;
    let data = base.path().join("data");
    std::fs::create_dir_all(&data).map_err(|e| format!("mkdir: {e}"))?;
    let conf: GaneshaConf = strata_conf_on(&data, &backend);
    let conf_path = base.path().join("ganesha.conf");
    std::fs::write(&conf_path, conf.render()).map_err(|e| format!("conf: {e}"))?;

    let t0 = Instant::now();
    let mut cmd = std::process::Command::new(&cli);
    cmd.arg("restore")
        .arg("--conf")
        .arg(&conf_path)
        .args(["--take-over", "--json"]);
    let out = run_bounded(cmd, s.cmd_timeout);
    if !out.ok() {
        return Err(format!("strata restore: {}{}", out.stdout, out.stderr));
    }
    let restore_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let work = tempfile::Builder::new()
        .prefix("strata-bench-restored-work-")
        .tempdir_in(&s.tmp_base)
        .map_err(|e| format!("temp dir: {e}"))?;
    let tg = TestGateway::launch(work, data, conf, Some(s.plugin_dir.clone()))
        .map_err(|e| format!("starting the restored gateway: {e}"))?;
    let size = t.size.to_string();
    let read = tg.client(3, &["randio", t.file, &size, "4096", "1", "1", "read", "1"]);
    if !read.ok() {
        return Err(format!("the first read: {read}"));
    }
    let first_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let report: serde_json::Value = serde_json::from_str(out.stdout.trim())
        .map_err(|e| format!("restore --json: {e}: {}", out.stdout))?;
    let note = format!(
        "image of {} KiB; {} files, {} volumes; the first read includes starting Ganesha",
        report["image_bytes"].as_u64().unwrap_or(0) / 1024,
        report["files"],
        report["volumes"]
    );
    drop(tg);
    Ok((restore_ms, first_ms, note))
}
