//! `strata job list|show|cancel`: the gateway's long operations (syncs, rollbacks).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use strata_mgmt::{ClientError, ErrorBody, ErrorKind, JobReport, MgmtClient};

use crate::gateway::with_client;
use crate::report::{job_list_report, job_report};
use crate::{SocketArgs, QUERY_TIMEOUT};

#[derive(Subcommand)]
pub(crate) enum JobCmd {
    /// The running jobs and the last finished ones (since the gateway started).
    List {
        #[command(flatten)]
        at: SocketArgs,
    },
    /// One job: kind, target, state, progress, why it failed.
    Show {
        /// The job's id.
        id: u64,
        #[command(flatten)]
        at: SocketArgs,
    },
    /// Ask a job to stop (where stopping leaves everything consistent: a sync between volumes,
    /// a rollback until it starts rewriting the volume).
    Cancel {
        /// The job's id.
        id: u64,
        #[command(flatten)]
        at: SocketArgs,
    },
}

pub(crate) fn run(cmd: JobCmd) -> Result<ExitCode, String> {
    let t = Some(QUERY_TIMEOUT);
    match cmd {
        JobCmd::List { at } => with_client(&at, t, |c| c.job_list(), job_list_report),
        JobCmd::Show { id, at } => with_client(&at, t, |c| c.job_show(id), job_report),
        JobCmd::Cancel { id, at } => with_client(
            &at,
            t,
            |c| c.job_cancel(id),
            |j| format!("job {} asked to stop\n{}", j.id, job_report(j)),
        ),
    }
}

/// Bound on following a long job (a rollback, a flatten).
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// How often a followed job is looked at.
const POLL: Duration = Duration::from_millis(200);

/// A progress bar on standard error, when it is a terminal and `--json` is off.
pub(crate) fn progress_bar(json: bool, msg: String) -> Option<ProgressBar> {
    (!json && std::io::stderr().is_terminal()).then(|| {
        let b = ProgressBar::new(0).with_message(msg);
        b.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b.set_draw_target(ProgressDrawTarget::stderr());
        b
    })
}

/// Follows job `id` (its progress on `bar`) until it ends: its report when it is done, else
/// its failure as an error.
pub(crate) fn follow(
    c: &mut MgmtClient,
    id: u64,
    bar: Option<&ProgressBar>,
) -> Result<JobReport, ClientError> {
    let started = Instant::now();
    loop {
        let j = c.job_show(id)?;
        if let Some(b) = bar {
            b.set_length(j.total);
            b.set_position(j.done);
        }
        match j.state.as_str() {
            "running" if started.elapsed() < FOLLOW_TIMEOUT => std::thread::sleep(POLL),
            "running" => {
                return Err(ClientError::Protocol(format!(
                    "job {id} still runs after {} s; follow it with `strata job show {id}`",
                    FOLLOW_TIMEOUT.as_secs()
                )))
            }
            "done" => return Ok(j),
            state => {
                return Err(ClientError::Server(ErrorBody {
                    kind: ErrorKind::Io,
                    message: format!(
                        "job {id} {state}: {}",
                        j.reason.unwrap_or_else(|| "no reason given".into())
                    ),
                }))
            }
        }
    }
}
