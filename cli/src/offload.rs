//! `strata offload clone|reserve|stats`: the VAAI-NAS-style verbs (what an ESXi host plugin
//! asks of the array) over the management socket: a fast or full clone of a volume, space
//! reserved for a whole volume, and its space by what it shares with its parent.

use std::process::ExitCode;

use clap::Subcommand;
use strata_mgmt::{JobReport, OffloadCloneReport, OffloadStatsReport};

use crate::gateway::with_client;
use crate::report::{human, volume_report};
use crate::{SocketArgs, QUERY_TIMEOUT};

#[derive(Subcommand)]
pub(crate) enum OffloadCmd {
    /// Clone a volume at a snapshot taken now. Fast (the default): the new volume shares
    /// every byte with SOURCE until either writes it. --full: then flatten it (a job with
    /// progress): afterwards it reads nothing of SOURCE.
    Clone {
        /// The volume cloned, e.g. /vm1/disk-flat.vmdk.
        source: String,
        /// The new volume's path (a name with a volume suffix, in an existing directory).
        new: String,
        /// A full copy: flatten the clone.
        #[arg(long)]
        full: bool,
        /// With --full: start the flatten and print its job instead of following it.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        at: SocketArgs,
    },
    /// Reserve space for a whole volume (ALLOCATE over its size: a thick disk); `strata
    /// volume info` shows it as allocated.
    Reserve {
        /// The volume's path.
        path: String,
        #[command(flatten)]
        at: SocketArgs,
    },
    /// Size, used bytes, and how many of them the volume shares with the volumes it was
    /// cloned from.
    Stats {
        /// The volume's path.
        path: String,
        #[command(flatten)]
        at: SocketArgs,
    },
}

pub(crate) fn run(cmd: OffloadCmd) -> Result<ExitCode, String> {
    match cmd {
        OffloadCmd::Clone {
            source,
            new,
            full,
            no_wait,
            at,
        } => {
            let bar = (full && !no_wait)
                .then(|| crate::job::progress_bar(at.json, format!("full clone of {source}")))
                .flatten();
            let r = with_client(
                &at,
                // A clone uploads what the source has not yet; a flatten copies it all.
                None,
                |c| {
                    let mut r = c.offload_clone(&source, &new, full, false)?;
                    if let (Some(j), false) = (&r.flatten, no_wait) {
                        r.flatten = Some(crate::job::follow(c, j.id, bar.as_ref())?);
                    }
                    Ok(r)
                },
                clone_text,
            );
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            r
        }
        OffloadCmd::Reserve { path, at } => with_client(
            &at,
            Some(QUERY_TIMEOUT),
            |c| c.offload_reserve(&path),
            volume_report,
        ),
        OffloadCmd::Stats { path, at } => {
            with_client(&at, None, |c| c.offload_stats(&path), stats_text)
        }
    }
}

fn clone_text(r: &OffloadCloneReport) -> String {
    let c = &r.clone;
    let how = match &r.flatten {
        None => "fast clone: shares every byte with its source until written".to_string(),
        Some(JobReport { state, .. }) if state == "done" => {
            "full clone: reads nothing of its source".to_string()
        }
        Some(j) => format!(
            "full clone in progress: job {} (follow it with `strata job show {}`)",
            j.id, j.id
        ),
    };
    format!(
        "{} cloned from {} at snapshot {:?}: {} ({}), inode {}\n{how}\n",
        c.path,
        c.source,
        c.snapshot,
        c.size,
        human(c.size),
        c.ino
    )
}

fn stats_text(s: &OffloadStatsReport) -> String {
    let line = |k: &str, v: u64| format!("{k:<17} {v} ({})\n", human(v));
    let mut out = format!("volume            {} (inode {})\n", s.path, s.ino);
    out.push_str(&line("size", s.size));
    out.push_str(&line("used", s.used_bytes));
    out.push_str(&line("unshared", s.unshared_bytes));
    out.push_str(&line("shared", s.shared_bytes));
    out.push_str(&line("reserved", s.reserved_bytes));
    out.push_str(&format!("ancestors         {}\n", s.ancestors));
    out
}
