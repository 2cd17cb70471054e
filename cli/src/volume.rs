//! `strata volume list|create|info|clone|flatten|template`: volumes (VM disks), their clones and
//! templates, over the management socket.

use std::process::ExitCode;

use clap::Subcommand;
use strata_mgmt::{JobReport, SnapshotReport, VolumeCloneReport, VolumeListReport};

use crate::gateway::{volume_create, volume_info, with_client};
use crate::report::{human, table, Col};
use crate::{params, SocketArgs, QUERY_TIMEOUT};

#[derive(Subcommand)]
pub(crate) enum VolumeCmd {
    /// Every volume of the gateway, by path: size, and what it is in a chain of clones (a
    /// template; a clone and its parent).
    List {
        /// Also the volumes removed while clones still read their data (hidden).
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        at: SocketArgs,
    },
    /// Create a volume without an NFS client (for cloud stacks and scripts): PATH's name must
    /// end in one of the gateway's Volume_Suffixes and its directory must exist.
    Create {
        /// The new volume's path inside the export, e.g. /vm1/disk-flat.vmdk.
        path: String,
        /// Its size: bytes, or with a K, M, G or T suffix (e.g. 20G).
        #[arg(value_parser = params::parse_size)]
        size: u64,
        #[command(flatten)]
        at: SocketArgs,
    },
    /// Size, space used, bytes not yet on the backend, commit and cache counters of a volume.
    Info {
        /// The volume's path inside the export, e.g. /vm1/disk-flat.vmdk.
        path: String,
        #[command(flatten)]
        at: SocketArgs,
    },
    /// Clone a volume: a new, writable volume at NEW that reads as SOURCE did at a snapshot
    /// (nothing copied). Without --snapshot: at the template's snapshot for a template, else at
    /// a snapshot taken now for the purpose.
    Clone {
        /// The volume cloned, e.g. /templates/debian-flat.vmdk.
        source: String,
        /// The new volume's path (a name with a volume suffix, in an existing directory).
        new: String,
        /// The snapshot of SOURCE to clone.
        #[arg(long)]
        snapshot: Option<String>,
        #[command(flatten)]
        at: SocketArgs,
    },
    /// Make a clone independent: copy what it still reads from the volumes it was cloned from
    /// (a job with progress); afterwards it shares nothing with them.
    Flatten {
        /// The clone's path.
        path: String,
        /// Start the job and print it instead of following it.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        at: SocketArgs,
    },
    /// Make a volume a template: read-only from now on (writes answer the NFS read-only
    /// error), cloned without naming a snapshot.
    Template {
        /// The volume's path.
        path: String,
        #[command(flatten)]
        at: SocketArgs,
    },
}

pub(crate) fn run(cmd: VolumeCmd) -> Result<ExitCode, String> {
    let t = Some(QUERY_TIMEOUT);
    match cmd {
        VolumeCmd::Info { path, at } => volume_info(&path, &at),
        VolumeCmd::Create { path, size, at } => volume_create(&path, size, &at),
        VolumeCmd::List { all, at } => with_client(&at, t, |c| c.volume_list(all), list_text),
        VolumeCmd::Clone {
            source,
            new,
            snapshot,
            at,
        } => with_client(
            &at,
            // A clone uploads what the parent has not yet: as long as that takes.
            None,
            |c| c.volume_clone(&source, &new, snapshot.as_deref()),
            |r: &VolumeCloneReport| {
                format!(
                    "{} cloned from {} at snapshot {:?}: {} ({}), inode {}\n",
                    r.path,
                    r.source,
                    r.snapshot,
                    r.size,
                    human(r.size),
                    r.ino
                )
            },
        ),
        VolumeCmd::Flatten { path, no_wait, at } => {
            let bar = (!no_wait)
                .then(|| crate::job::progress_bar(at.json, format!("flattening {path}")))
                .flatten();
            let r = with_client(
                &at,
                t,
                |c| {
                    let j = c.volume_flatten(&path, false)?;
                    if no_wait {
                        return Ok(j);
                    }
                    crate::job::follow(c, j.id, bar.as_ref())
                },
                |j: &JobReport| {
                    if j.state == "done" {
                        format!(
                            "{} flattened: it reads nothing of another volume\n",
                            j.target
                        )
                    } else {
                        format!(
                            "flatten of {} started as job {} (follow it with `strata job show {}`)\n",
                            j.target, j.id, j.id
                        )
                    }
                },
            );
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            r
        }
        VolumeCmd::Template { path, at } => with_client(
            &at,
            None,
            |c| c.volume_template(&path),
            |s: &SnapshotReport| {
                format!(
                    "{} is a template: read-only, cloned at its snapshot {:?}\n",
                    s.path, s.name
                )
            },
        ),
    }
}

fn list_text(l: &VolumeListReport) -> String {
    let mut out = String::new();
    if l.volumes.is_empty() {
        out.push_str("no volumes\n");
    } else {
        let rows: Vec<Vec<String>> = l
            .volumes
            .iter()
            .map(|v| {
                let kind = match (&v.template, &v.parent) {
                    (Some(_), _) => "template".to_string(),
                    (None, Some(_)) => format!("clone (depth {})", v.ancestors.len()),
                    (None, None) => "volume".to_string(),
                };
                vec![
                    v.path.clone(),
                    v.ino.to_string(),
                    format!("{} ({})", v.size, human(v.size)),
                    kind,
                    v.parent.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        let cols = [
            Col("PATH", false, 4),
            Col("INODE", true, 4),
            Col("SIZE", false, 4),
            Col("KIND", false, 4),
            Col("PARENT", false, 0),
        ];
        out.push_str(&table(&cols, &rows));
    }
    if !l.hidden.is_empty() {
        out.push_str("\nhidden (removed, kept while clones read their data):\n");
        let rows: Vec<Vec<String>> = l
            .hidden
            .iter()
            .map(|h| vec![format!("hidden:{}", h.ino), h.readers.join(", ")])
            .collect();
        out.push_str(&table(
            &[Col("VOLUME", false, 4), Col("READ BY", false, 0)],
            &rows,
        ));
    }
    out
}
