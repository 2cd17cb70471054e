//! `strata job list|show|cancel`: the gateway's long operations (syncs, rollbacks).

use std::process::ExitCode;

use clap::Subcommand;

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
