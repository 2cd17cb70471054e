//! `volume_info`: one volume's size, space, commits, caches, MetaDataStore, pacing and upload;
//! `volume_list`: every volume by path; `volume_create`: a volume made without an NFS client.

use std::collections::HashMap;
use std::sync::Arc;

use super::engine_error;
use crate::mgmt::{
    spawn_job, ErrorBody, ErrorKind, HiddenVolumeItem, Reply, ScrubInfoReport, Shared,
    VolumeCreateReport, VolumeListItem, VolumeListReport, VolumeReport,
};
use crate::types::{CreateMode, Cred, Handle, Kind, SetAttr};

/// Directory entries asked for per readdir call of the walk.
const READDIR_PAGE: usize = 1024;

/// The handle of the volume at `path` (`not_a_volume` for anything else).
pub(super) fn volume_handle(shared: &Arc<Shared>, path: &str) -> Result<Handle, ErrorBody> {
    let attr = shared
        .fs
        .lookup_path(path)
        .map_err(|e| engine_error(e, path))?;
    if attr.kind != Kind::Volume {
        let what = match attr.kind {
            Kind::Directory => "a directory",
            Kind::File => "a regular file (not created with a volume suffix)",
            Kind::Symlink => "a symbolic link",
            Kind::Fifo => "a FIFO",
            Kind::Socket => "a socket",
            Kind::CharDevice => "a character device",
            Kind::BlockDevice => "a block device",
            Kind::Volume => "a volume",
        };
        return Err(ErrorBody {
            kind: ErrorKind::NotAVolume,
            message: format!("{path} is not a volume: it is {what}"),
        });
    }
    Ok(attr.handle)
}

/// [`crate::mgmt::Request::VolumeInfo`].
pub(super) fn volume_info(shared: &Arc<Shared>, path: String) -> Result<Reply, ErrorBody> {
    let h = volume_handle(shared, &path)?;
    let v = shared
        .fs
        .volume_stats(h)
        .map_err(|e| engine_error(e, &path))?;
    let looked = v.cache_hits + v.cache_misses;
    Ok(Reply::VolumeInfo(VolumeReport {
        path,
        ino: h.ino,
        size: v.size,
        space_used: v.space_used,
        reserved_bytes: v.reserved_bytes,
        pending_backend_bytes: v.pending_backend_bytes,
        pending_backend_age_ms: v.pending_backend_since.map(super::status::age_ms),
        commits: v.commits,
        commit_rounds: v.commit_rounds,
        wal_rounds: v.wal_rounds,
        expected_commits: v.expected_commits,
        clusters_written: v.clusters_written,
        clusters_unmapped: v.clusters_unmapped,
        scos_sealed: v.scos_sealed,
        cache_hits: v.cache_hits,
        cache_misses: v.cache_misses,
        cache_hit_rate: (looked > 0).then(|| v.cache_hits as f64 / looked as f64),
        cluster_cache_hits: v.cluster_cache_hits,
        tlogs_replayed: v.tlogs_replayed,
        applied_tlog: v.applied_tlog,
        checkpoint_tlog: v.checkpoint_tlog,
        corked_clusters: v.corked_clusters,
        writes_paced: v.writes_paced,
        pacing_delay_ms: v.pacing_delay_ms,
        writes_refused: v.writes_refused,
        peak_backlog: v.peak_backlog,
        upload_rate: v.upload_rate,
        scrub: ScrubInfoReport {
            dead_clusters: v.scrub.dead_clusters,
            pinned_clusters: v.scrub.pinned_clusters,
            garbage_objects: v.scrub.garbage_objects,
            passes: v.scrub.passes,
            last_finished_secs: v.scrub.last_finished_secs,
            last_millis: v.scrub.last_millis,
            scos_compacted: v.scrub.scos_compacted,
            reclaimed_bytes: v.scrub.reclaimed_bytes,
            objects_deleted: v.scrub.objects_deleted,
        },
    }))
}

/// [`crate::mgmt::Request::Scrub`]: a job over one volume or all; with `wait`, answered once
/// it ended.
pub(super) fn scrub(
    shared: &Arc<Shared>,
    path: Option<String>,
    wait: bool,
) -> Result<Reply, ErrorBody> {
    let h = path
        .as_deref()
        .map(|p| volume_handle(shared, p))
        .transpose()?;
    let fs = shared.fs.clone();
    let target = path.unwrap_or_else(|| "/".into());
    let t = target.clone();
    let job = spawn_job(shared, "scrub", target, move |job| {
        fs.scrub_with(h, job)
            .map(drop)
            .map_err(|e| engine_error(e, &format!("scrubbing {t}")))
    })?;
    if wait {
        job.wait()?;
    }
    Ok(Reply::Job(job.report()))
}

/// [`crate::mgmt::Request::VolumeList`]: a walk of the namespace from the root (readdir gives
/// each volume's attributes, which opens it if it is not open yet), then what each is in a
/// chain of clones; with `all`, the hidden volumes.
pub(super) fn volume_list(shared: &Arc<Shared>, all: bool) -> Result<Reply, ErrorBody> {
    let fs = &shared.fs;
    let mut volumes = Vec::new();
    let mut handles: HashMap<u64, Handle> = HashMap::new();
    let mut dirs = vec![(String::new(), fs.root())];
    while let Some((path, dir)) = dirs.pop() {
        let mut cookie = 0;
        let mut subdirs = Vec::new();
        loop {
            let page = fs
                .readdir(dir, cookie, READDIR_PAGE)
                .map_err(|e| engine_error(e, if path.is_empty() { "/" } else { &path }))?;
            for e in &page.entries {
                cookie = e.cookie;
                let p = format!("{path}/{}", String::from_utf8_lossy(&e.name));
                match e.attr.kind {
                    Kind::Directory => subdirs.push((p, e.attr.handle)),
                    Kind::Volume => {
                        handles.insert(e.attr.handle.ino, e.attr.handle);
                        volumes.push(VolumeListItem {
                            path: p,
                            ino: e.attr.handle.ino,
                            size: e.attr.size,
                            template: None,
                            parent: None,
                            ancestors: Vec::new(),
                        });
                    }
                    _ => {}
                }
            }
            if page.eof || page.entries.is_empty() {
                break;
            }
        }
        // Depth first, names in order: the stack takes the last one first.
        subdirs.sort_by(|a, b| b.0.cmp(&a.0));
        dirs.extend(subdirs);
    }
    volumes.sort_by(|a, b| a.path.cmp(&b.path));
    let paths: HashMap<u64, String> = volumes.iter().map(|v| (v.ino, v.path.clone())).collect();
    let name = |ino: u64| {
        paths
            .get(&ino)
            .cloned()
            .unwrap_or_else(|| format!("hidden:{ino}"))
    };
    for v in &mut volumes {
        let Some(h) = handles.get(&v.ino).copied() else {
            continue;
        };
        let c = fs
            .volume_clone_info(h)
            .map_err(|e| engine_error(e, &v.path))?;
        v.template = c.template;
        v.ancestors = c.ancestors.iter().map(|a| a.0).collect();
        v.parent = c.ancestors.last().map(|a| name(a.0));
    }
    let mut hidden = Vec::new();
    if all {
        for h in fs
            .hidden_volumes()
            .map_err(|e| engine_error(e, "hidden volumes"))?
        {
            hidden.push(HiddenVolumeItem {
                ino: h.ino,
                removed_secs: h.removed_secs,
                readers: h.readers.iter().map(|r| name(*r)).collect(),
            });
        }
    }
    Ok(Reply::VolumeList(VolumeListReport { volumes, hidden }))
}

/// [`crate::mgmt::Request::VolumeCreate`]: the file is created (its name must make it a
/// volume), then sized. A name in use is `exists`, and nothing is changed.
pub(super) fn volume_create(
    shared: &Arc<Shared>,
    path: String,
    size: u64,
) -> Result<Reply, ErrorBody> {
    let fs = &shared.fs;
    let invalid = |message: String| ErrorBody {
        kind: ErrorKind::Invalid,
        message,
    };
    let (parent, name) = path
        .rsplit_once('/')
        .filter(|(_, n)| !n.is_empty())
        .ok_or_else(|| invalid(format!("{path:?}: expected an absolute path to a file")))?;
    if !fs.is_volume_name(name.as_bytes()) {
        return Err(invalid(format!(
            "{path}: not a volume name: it must end in one of {}",
            fs.config().volume_suffixes.join(", ")
        )));
    }
    let parent = if parent.is_empty() { "/" } else { parent };
    let dir = fs
        .lookup_path(parent)
        .map_err(|e| engine_error(e, parent))?;
    let created = fs
        .create(
            dir.handle,
            name.as_bytes(),
            0o644,
            Cred::default(),
            CreateMode::Guarded,
        )
        .map_err(|e| engine_error(e, &path))?;
    let set = SetAttr {
        size: Some(size),
        ..SetAttr::default()
    };
    let attr = fs
        .setattr(created.attr.handle, &set)
        .map_err(|e| engine_error(e, &path))?;
    fs.commit(attr.handle).map_err(|e| engine_error(e, &path))?;
    Ok(Reply::VolumeCreate(VolumeCreateReport {
        path,
        ino: attr.handle.ino,
        size: attr.size,
    }))
}
