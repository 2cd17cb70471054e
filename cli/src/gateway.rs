//! Talking to a running gateway over its management socket: `status`, `sync`, `volume
//! info|list|create`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use strata_ganesha_conf::launcher::{self};
use strata_mgmt::{ClientError, JobReport, MgmtClient, VolumeReport};

use crate::report::{engine_report, human, sync_report, volume_report};
use crate::{absolute, work_dir_of, SocketArgs, SyncArgs, EXIT_NOT_RUNNING, QUERY_TIMEOUT};

pub(crate) fn status(at: &SocketArgs) -> Result<ExitCode, String> {
    let work = work_dir_of(&at.data_dir)?;
    let launched = match launcher::detached_status(&work) {
        Ok(st) => Some(st),
        Err(launcher::LaunchError::NotRunning(_)) => None,
        Err(e) => return Err(e.to_string()),
    };
    let sock = socket_path(at)?;
    let engine = MgmtClient::connect(&sock).and_then(|mut c| {
        c.set_timeout(Some(QUERY_TIMEOUT))?;
        c.status()
    });
    let running = launched.as_ref().is_some_and(|st| st.running()) || engine.is_ok();
    let code = if running {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NOT_RUNNING)
    };
    if at.json {
        let v = serde_json::json!({
            "running": running,
            "launched_by_strata_up": launched.as_ref().is_some_and(|st| st.running()),
            "socket": sock,
            "engine": engine.as_ref().ok(),
            "engine_error": engine.as_ref().err().map(|e| e.to_string()),
        });
        println!("{v}");
        return Ok(code);
    }
    match &launched {
        Some(st) => println!("{st}"),
        None if engine.is_ok() => println!(
            "gateway: not started by `strata up` (nothing recorded in {})",
            work.display()
        ),
        None => println!(
            "gateway: not running (nothing recorded in {})",
            work.display()
        ),
    }
    match &engine {
        Ok(r) => print!("{}", engine_report(&sock, r)),
        Err(ClientError::NotRunning { .. }) => {
            println!(
                "engine: not answering (nothing listens on {})",
                sock.display()
            )
        }
        Err(e) => println!("engine: not answering on {}: {e}", sock.display()),
    }
    Ok(code)
}

/// The socket of `--socket`, else the Mgmt_Socket of the conf `strata up` recorded for the data
/// directory, else `<data-dir>/mgmt.sock`.
pub(crate) fn socket_path(at: &SocketArgs) -> Result<PathBuf, String> {
    if let Some(s) = &at.socket {
        return absolute(s);
    }
    let data_dir = absolute(&at.data_dir)?;
    let recorded = work_dir_of(&data_dir)?.join("ganesha.conf");
    if recorded.is_file() {
        if let Ok(s) = strata_ganesha_conf::load_strata_settings(&recorded) {
            return Ok(s.mgmt_socket);
        }
    }
    Ok(data_dir.join("mgmt.sock"))
}

/// Runs one management call; a gateway that is not running is exit code 3 with a hint.
pub(crate) fn with_client<T>(
    at: &SocketArgs,
    timeout: Option<Duration>,
    call: impl FnOnce(&mut MgmtClient) -> Result<T, ClientError>,
    show: impl FnOnce(&T) -> String,
) -> Result<ExitCode, String>
where
    T: serde::Serialize,
{
    let sock = socket_path(at)?;
    let answer = MgmtClient::connect(&sock).and_then(|mut c| {
        c.set_timeout(timeout)?;
        call(&mut c)
    });
    match answer {
        Ok(v) => {
            if at.json {
                let line = serde_json::to_string(&v).map_err(|e| e.to_string())?;
                println!("{line}");
            } else {
                print!("{}", show(&v));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(ClientError::NotRunning { .. }) => {
            eprintln!(
                "strata: no gateway answers on {} (is it running? see `strata status`; \
                 --socket or --data-dir choose another)",
                sock.display()
            );
            Ok(ExitCode::from(EXIT_NOT_RUNNING))
        }
        Err(ClientError::Server(e)) => Err(e.message),
        Err(e) => Err(e.to_string()),
    }
}

pub(crate) fn sync(a: &SyncArgs) -> Result<ExitCode, String> {
    let timeout = match (a.wait, a.timeout) {
        (false, _) => Some(QUERY_TIMEOUT),
        (true, 0) => None,
        (true, t) => Some(Duration::from_secs(t)),
    };
    with_client(&a.at, timeout, |c| c.sync(a.wait), sync_report)
}

/// `strata scrub [PATH] [--wait]`: the job, followed with a progress bar with `--wait`, then
/// the volume's scrub totals.
pub(crate) fn scrub(path: Option<&str>, wait: bool, at: &SocketArgs) -> Result<ExitCode, String> {
    let what = path.unwrap_or("every volume").to_string();
    let bar = wait
        .then(|| crate::job::progress_bar(at.json, format!("scrubbing {what}")))
        .flatten();
    let r = with_client(
        at,
        Some(QUERY_TIMEOUT),
        |c| {
            let j = c.scrub(path, false)?;
            if !wait {
                return Ok((j, None));
            }
            let j = crate::job::follow(c, j.id, bar.as_ref())?;
            let v = match path {
                Some(p) if j.state == "done" => Some(c.volume_info(p)?),
                _ => None,
            };
            Ok((j, v))
        },
        |(j, v): &(JobReport, Option<VolumeReport>)| match (j.state.as_str(), v) {
            ("done", Some(v)) => format!(
                "scrub of {} done: {} SCOs compacted, {} reclaimed, {} objects deleted in all; \
                 {} dead clusters left, {} read only by snapshots or clones\n",
                v.path,
                v.scrub.scos_compacted,
                human(v.scrub.reclaimed_bytes),
                v.scrub.objects_deleted,
                v.scrub.dead_clusters,
                v.scrub.pinned_clusters
            ),
            ("done", None) => format!("scrub of {what} done (job {})\n", j.id),
            ("running", _) => format!(
                "scrub of {what} started as job {} (follow it with `strata job show {}`)\n",
                j.id, j.id
            ),
            (state, _) => format!(
                "scrub of {what}: job {} {state}: {}\n",
                j.id,
                j.reason.as_deref().unwrap_or("")
            ),
        },
    );
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    r
}

pub(crate) fn volume_info(path: &str, at: &SocketArgs) -> Result<ExitCode, String> {
    with_client(
        at,
        Some(QUERY_TIMEOUT),
        |c| c.volume_info(path),
        volume_report,
    )
}

pub(crate) fn volume_create(path: &str, size: u64, at: &SocketArgs) -> Result<ExitCode, String> {
    with_client(
        at,
        Some(QUERY_TIMEOUT),
        |c| c.volume_create(path, size),
        |v| {
            format!(
                "volume {} created: {} ({}), inode {}\n",
                v.path,
                v.size,
                human(v.size),
                v.ino
            )
        },
    )
}
