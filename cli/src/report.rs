//! What the management commands print: tables for people, JSON with `--json`.

use std::path::Path;

use strata_mgmt::{JobListReport, JobReport, StatusReport, SyncReport, VolumeReport};

/// `1.5 GiB`-style sizes for people (the exact byte counts are printed too).
pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The age of the oldest change not on the backend, for people.
fn pending_age(ms: Option<u64>) -> String {
    ms.map_or_else(
        || "nothing waiting".into(),
        |ms| format!("the oldest {} old", age(ms)),
    )
}

/// An age in milliseconds for people: `350 ms` below a second, else [`duration_text`].
fn age(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        duration_text(ms / 1000)
    }
}

pub(crate) fn duration_text(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// The engine part of `strata status`.
pub(crate) fn engine_report(sock: &Path, r: &StatusReport) -> String {
    let sp = &r.space;
    format!(
        "engine: answering on {} (strata {}, protocol {}, pid {}, up {})\n  \
         data dir  {}\n  backend   {}\n  fsid      {:#x}\n  \
         space     {} available of {} ({} free); {} of {} inodes free\n  \
         cluster cache {} of {} held; {} hits, {} misses\n  \
         map cache {} of {} held; {} hits, {} misses\n  \
         not on backend  volumes {} ({}), files {} ({}); namespace {}\n",
        sock.display(),
        r.gateway_version,
        r.protocol_version,
        r.pid,
        duration_text(r.uptime_secs),
        r.data_dir.display(),
        r.backend,
        r.fsid,
        human(sp.avail_bytes),
        human(sp.total_bytes),
        human(sp.free_bytes),
        sp.free_files,
        sp.total_files,
        human(r.cluster_cache.bytes),
        human(r.cluster_cache.capacity),
        r.cluster_cache.hits,
        r.cluster_cache.misses,
        human(r.map_cache.bytes),
        human(r.map_cache.capacity),
        r.map_cache.hits,
        r.map_cache.misses,
        human(r.not_on_backend.volume_bytes),
        pending_age(r.not_on_backend.volume_age_ms),
        human(r.not_on_backend.file_bytes),
        pending_age(r.not_on_backend.file_age_ms),
        namespace_image(&r.not_on_backend),
    )
}

/// The namespace's part of the recovery point.
fn namespace_image(r: &strata_mgmt::RecoveryPointReport) -> String {
    match (r.namespace_image_age_ms, r.namespace_changed) {
        (None, _) => "not on the backend yet (no image)".into(),
        (Some(ms), false) => format!("image {} old, nothing changed since", age(ms / 1000 * 1000)),
        (Some(ms), true) => format!("image {} old, changed since", age(ms / 1000 * 1000)),
    }
}

pub(crate) fn sync_report(r: &SyncReport) -> String {
    if r.waited {
        format!(
            "synced: everything committed is on the backend ({} ms)\n",
            r.elapsed_ms
        )
    } else {
        match r.job {
            Some(id) => format!(
                "sync started in the gateway as job {id} (not waiting; `strata job show {id}`, \
                 or --wait to wait for it)\n"
            ),
            None => {
                "sync started in the gateway (not waiting; use --wait to wait for it)\n".to_string()
            }
        }
    }
}

pub(crate) fn volume_report(v: &VolumeReport) -> String {
    let rate = v
        .cache_hit_rate
        .map_or_else(|| "n/a".to_string(), |r| format!("{:.1}%", r * 100.0));
    format!(
        "volume            {}\n\
         inode             {}\n\
         size              {} ({})\n\
         mapped            {} ({}): clusters holding data; holes and zeros take none\n\
         allocated         {} ({}), {} ({}) of it reserved by ALLOCATE and not written\n\
         not on backend    {} ({}){}\n\
         commits           {} ({} group-commit rounds, {} of them by the write-ahead log alone; {} expected, the log's writeback started by the write before)\n\
         clusters written  {}; {} unmapped (holes punched, zeros written)\n\
         SCOs sealed       {}\n\
         cache             {} hits, {} misses (hit rate {rate})\n\
         cluster cache     {} hits (clusters of evicted SCOs not fetched again)\n\
         metadata          applied up to TLog {}, checkpoint TLog {}, {} clusters corked\n\
         TLogs replayed    {} (at open)\n\
         upload            {}/s; peak backlog {} ({})\n\
         pacing            {} writes waited, {} ms in all; {} answered DELAY\n\
         scrub             {} passes (last took {} ms); {} SCOs compacted, {} reclaimed, {} objects deleted\n\
         garbage           {} dead clusters, {} read only by snapshots or clones, {} objects waiting for GC_Grace\n",
        v.path,
        v.ino,
        v.size,
        human(v.size),
        v.space_used,
        human(v.space_used),
        v.space_used + v.reserved_bytes,
        human(v.space_used + v.reserved_bytes),
        v.reserved_bytes,
        human(v.reserved_bytes),
        v.pending_backend_bytes,
        human(v.pending_backend_bytes),
        v.pending_backend_age_ms
            .map_or_else(String::new, |ms| format!(", the oldest change {} old", age(ms))),
        v.commits,
        v.commit_rounds,
        v.wal_rounds,
        v.expected_commits,
        v.clusters_written,
        v.clusters_unmapped,
        v.scos_sealed,
        v.cache_hits,
        v.cache_misses,
        v.cluster_cache_hits,
        v.applied_tlog,
        v.checkpoint_tlog,
        v.corked_clusters,
        v.tlogs_replayed,
        human(v.upload_rate),
        v.peak_backlog,
        human(v.peak_backlog),
        v.writes_paced,
        v.pacing_delay_ms,
        v.writes_refused,
        v.scrub.passes,
        v.scrub.last_millis,
        v.scrub.scos_compacted,
        human(v.scrub.reclaimed_bytes),
        v.scrub.objects_deleted,
        v.scrub.dead_clusters,
        v.scrub.pinned_clusters,
        v.scrub.garbage_objects,
    )
}

/// A column of [`table`]: its header, whether it is right-aligned, its least width.
pub(crate) struct Col(pub(crate) &'static str, pub(crate) bool, pub(crate) usize);

/// A table for people: a header line, then a line per row; columns as wide as their widest
/// cell (at least their least width), two spaces apart; the last column is not padded.
pub(crate) fn table(cols: &[Col], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = cols.iter().map(|c| c.0.len().max(c.2)).collect();
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            if let Some(wi) = w.get_mut(i) {
                *wi = (*wi).max(cell.chars().count());
            }
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, (cell, col)) in cells.iter().zip(cols).enumerate() {
            let width = w[i];
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else if col.1 {
                s.push_str(&format!("{cell:>width$}  "));
            } else {
                s.push_str(&format!("{cell:<width$}  "));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let head: Vec<String> = cols.iter().map(|c| c.0.to_string()).collect();
    let mut out = line(&head);
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

/// One job, as `job show` prints it.
pub(crate) fn job_report(j: &JobReport) -> String {
    let mut out = format!(
        "job               {}\n\
         kind              {}\n\
         target            {}\n\
         state             {}\n\
         progress          {} of {}\n",
        j.id, j.kind, j.target, j.state, j.done, j.total
    );
    if let Some(r) = &j.reason {
        out.push_str(&format!("reason            {r}\n"));
    }
    out
}

/// The jobs, as `job list` prints them.
pub(crate) fn job_list_report(l: &JobListReport) -> String {
    if l.jobs.is_empty() {
        return "no jobs (since the gateway started)\n".to_string();
    }
    let rows: Vec<Vec<String>> = l
        .jobs
        .iter()
        .map(|j| {
            vec![
                j.id.to_string(),
                j.kind.clone(),
                j.state.clone(),
                format!("{}/{}", j.done, j.total),
                match &j.reason {
                    Some(r) => format!("{} ({r})", j.target),
                    None => j.target.clone(),
                },
            ]
        })
        .collect();
    let cols = [
        Col("ID", true, 4),
        Col("KIND", false, 9),
        Col("STATE", false, 10),
        Col("PROGRESS", true, 13),
        Col("TARGET", false, 0),
    ];
    table(&cols, &rows)
}
