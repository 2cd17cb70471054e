//! `strata snapshot create|list|info|delete`: a volume's snapshots, over the management socket.

use std::process::ExitCode;

use clap::Subcommand;
use indicatif::ProgressBar;
use strata_mgmt::{
    ClientError, MgmtClient, SnapshotDeleteReport, SnapshotListReport, SnapshotReport,
};

use crate::gateway::with_client;
use crate::report::{human, table, Col};
use crate::{SocketArgs, QUERY_TIMEOUT};

#[derive(Subcommand)]
pub(crate) enum SnapshotCmd {
    /// Take a snapshot of a volume: everything written to it before the command, in constant
    /// time whatever its size.
    Create {
        /// The volume's path inside the export, e.g. /vm1/disk-flat.vmdk.
        path: String,
        /// The snapshot's name, unique within the volume (1 to 128 bytes, no '/').
        name: String,
        /// User metadata, KEY=VALUE (repeat for more; keys of letters, digits, '.', '_', '-').
        #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_meta)]
        meta: Vec<(String, String)>,
        #[command(flatten)]
        at: SocketArgs,
    },
    /// List a volume's snapshots, oldest first.
    List {
        /// The volume's path.
        path: String,
        #[command(flatten)]
        at: SocketArgs,
    },
    /// Show one snapshot: when it was taken, bytes written since the previous one, whether it
    /// is on the backend yet, its metadata.
    Info {
        /// The volume's path.
        path: String,
        /// The snapshot's name.
        name: String,
        #[command(flatten)]
        at: SocketArgs,
    },
    /// Roll a volume back to a snapshot: it then reads exactly as when the snapshot was taken;
    /// every snapshot, older and newer, is kept. Power the VM off (or detach the disk) first.
    Rollback {
        /// The volume's path.
        path: String,
        /// The snapshot's name.
        name: String,
        /// Roll back even while an NFSv4 client holds the volume open.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        at: SocketArgs,
    },
    /// Delete a snapshot (constant time; what only it referenced becomes garbage).
    Delete {
        /// The volume's path.
        path: String,
        /// The snapshot's name.
        name: String,
        #[command(flatten)]
        at: SocketArgs,
    },
}

/// Starts the rollback as a job and follows it (a progress bar in a terminal) until it ends.
fn wait_for_rollback(
    c: &mut MgmtClient,
    path: &str,
    name: &str,
    force: bool,
    bar: Option<&ProgressBar>,
) -> Result<SnapshotReport, ClientError> {
    let id = c.snapshot_rollback_start(path, name, force)?.id;
    crate::job::follow(c, id, bar)?;
    c.snapshot_info(path, name)
}

fn parse_meta(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected KEY=VALUE"))?;
    Ok((k.to_string(), v.to_string()))
}

pub(crate) fn run(cmd: SnapshotCmd) -> Result<ExitCode, String> {
    let t = Some(QUERY_TIMEOUT);
    match cmd {
        SnapshotCmd::Create {
            path,
            name,
            meta,
            at,
        } => with_client(
            &at,
            t,
            |c| c.snapshot_create(&path, &name, meta),
            |s| {
                format!(
                    "snapshot {:?} of {} taken\n{}",
                    s.name,
                    s.path,
                    info_text(s)
                )
            },
        ),
        SnapshotCmd::List { path, at } => {
            with_client(&at, t, |c| c.snapshot_list(&path), list_text)
        }
        SnapshotCmd::Info { path, name, at } => {
            with_client(&at, t, |c| c.snapshot_info(&path, &name), info_text)
        }
        SnapshotCmd::Rollback {
            path,
            name,
            force,
            at,
        } => {
            let bar = crate::job::progress_bar(at.json, format!("rolling {path} back to {name:?}"));
            let r = with_client(
                &at,
                Some(QUERY_TIMEOUT),
                |c| wait_for_rollback(c, &path, &name, force, bar.as_ref()),
                |s| {
                    format!(
                        "{} rolled back to snapshot {:?} (TLog {})\n",
                        s.path, s.name, s.tlog
                    )
                },
            );
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            r
        }
        SnapshotCmd::Delete { path, name, at } => with_client(
            &at,
            t,
            |c| c.snapshot_delete(&path, &name),
            |d: &SnapshotDeleteReport| format!("snapshot {:?} of {} deleted\n", d.name, d.path),
        ),
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of a Unix time.
fn utc(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn meta_text(meta: &[(String, String)]) -> String {
    meta.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "not yet"
    }
}

fn info_text(s: &SnapshotReport) -> String {
    format!(
        "snapshot          {}\n\
         volume            {}\n\
         id                {}\n\
         TLog              {}\n\
         created           {} UTC\n\
         since previous    {} ({})\n\
         on backend        {}\n\
         metadata          {}\n",
        s.name,
        s.path,
        s.id,
        s.tlog,
        utc(s.created_secs),
        s.bytes_since_previous,
        human(s.bytes_since_previous),
        yes_no(s.on_backend),
        meta_text(&s.meta),
    )
}

fn list_text(l: &SnapshotListReport) -> String {
    if l.snapshots.is_empty() {
        return format!("{} has no snapshots\n", l.path);
    }
    let rows: Vec<Vec<String>> = l
        .snapshots
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.id.to_string(),
                s.tlog.to_string(),
                utc(s.created_secs),
                human(s.bytes_since_previous),
                yes_no(s.on_backend).to_string(),
                meta_text(&s.meta),
            ]
        })
        .collect();
    let cols = [
        "NAME",
        "ID",
        "TLOG",
        "CREATED (UTC)",
        "SINCE PREVIOUS",
        "ON BACKEND",
        "METADATA",
    ]
    .map(|h| Col(h, false, 0));
    table(&cols, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(1_796_390_461), "2026-12-04 13:21:01");
        assert_eq!(parse_meta("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_meta("novalue").is_err());
    }
}
