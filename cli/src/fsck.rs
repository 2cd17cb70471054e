//! `strata fsck`: the gateway's backend checked against its namespace, as a job in the
//! gateway (followed with a progress bar with `--wait`); exit code 1 when it found damage or
//! orphans left in place.

use std::process::ExitCode;

use strata_mgmt::{FsckReport, JobReport};

use crate::gateway::with_client;
use crate::report::human;
use crate::SocketArgs;

/// Starts the check; with `wait`, follows it and prints what it found.
pub(crate) fn fsck(
    deep: bool,
    repair: bool,
    wait: bool,
    at: &SocketArgs,
) -> Result<ExitCode, String> {
    let bar = wait
        .then(|| crate::job::progress_bar(at.json, "checking the backend".into()))
        .flatten();
    let mut found = false;
    let r = with_client(
        at,
        Some(crate::QUERY_TIMEOUT),
        |c| {
            let j = c.fsck(deep, repair, false)?;
            if !wait {
                return Ok(j);
            }
            crate::job::follow(c, j.id, bar.as_ref())
        },
        |j: &JobReport| {
            let (text, problems) = describe(j);
            found = problems;
            text
        },
    );
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    match r {
        Ok(code) if code == ExitCode::SUCCESS && found => Ok(ExitCode::FAILURE),
        other => other,
    }
}

/// The text for job `j`, and whether it found something left to fix.
fn describe(j: &JobReport) -> (String, bool) {
    let rep = j
        .result
        .clone()
        .and_then(|v| serde_json::from_value::<FsckReport>(v).ok());
    match (j.state.as_str(), rep) {
        ("done", Some(r)) => {
            let mut s = format!(
                "fsck{}: {} objects on the backend; {} files and {} volumes checked{}\n",
                if r.deep { " --deep" } else { "" },
                r.objects,
                r.files,
                r.volumes,
                if r.deep {
                    format!(", {} read back", human(r.bytes_read))
                } else {
                    String::new()
                }
            );
            for d in &r.damage {
                s.push_str(&format!("  damaged  {}: {}\n", d.key, d.what));
            }
            for o in &r.orphans {
                s.push_str(&format!("  orphan   {}: {}\n", o.key, o.what));
            }
            for n in &r.notes {
                s.push_str(&format!("  note     {n}\n"));
            }
            if r.quarantined > 0 {
                s.push_str(&format!(
                    "{} orphans moved to quarantine/ on the backend\n",
                    r.quarantined
                ));
            }
            let left = !r.damage.is_empty() || r.orphans.len() as u64 > r.quarantined;
            if r.damage.is_empty() && r.orphans.is_empty() {
                s.push_str("clean\n");
            }
            (s, left)
        }
        ("running", _) => (
            format!(
                "fsck started as job {} (follow it with `strata job show {}`)\n",
                j.id, j.id
            ),
            false,
        ),
        (state, _) => (
            format!(
                "fsck: job {} {state}: {}\n",
                j.id,
                j.reason.as_deref().unwrap_or("")
            ),
            true,
        ),
    }
}
