//! Benchmarking one system: every workload, repeated, with its notes.

use super::target::{dir_usage, local_state, IoTally, Out, Target};
use super::workloads::{qemu_workloads, rand_workloads, QemuWork};
use super::{Settings, System, MIB};
use crate::bench::report::{median, Measurement, Unit};
use std::time::Instant;

/// Both notes, or either.
pub(super) fn join_notes(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(format!("{a}; {b}")),
        (a, b) => a.or(b),
    }
}

/// The error lines of a failed command (stderr first), on one line.
pub(super) fn brief(out: &Out) -> String {
    let text: Vec<&str> = out
        .stderr
        .lines()
        .chain(out.stdout.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Sending "))
        .collect();
    text.join(" / ")
}

/// Parses `Run completed in 1.234 seconds.`.
pub(crate) fn parse_qemu_secs(out: &str) -> Option<f64> {
    out.lines()
        .find_map(|l| l.trim().strip_prefix("Run completed in "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

pub(super) fn num(
    kv: &std::collections::BTreeMap<String, String>,
    key: &str,
) -> Result<f64, String> {
    kv.get(key)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("client output lacks {key}=: {kv:?}"))
}

/// Collects values of one workload on one system over the repetitions.
pub(super) fn repeat(
    runs: usize,
    mut f: impl FnMut() -> Result<f64, String>,
) -> Result<Vec<f64>, String> {
    (0..runs).map(|_| f()).collect()
}

/// Runs everything on one system; appends to `out`. Progress goes to stderr.
pub(super) fn bench_system(
    system: System,
    s: &Settings,
    out: &mut Vec<Measurement>,
) -> Result<u64, String> {
    let t0 = Instant::now();
    let mut t = Target::start(system, s)?;
    eprintln!(
        "bench: {} started ({:.1}s), file {} of {} MiB",
        system.label(),
        t0.elapsed().as_secs_f64(),
        t.file,
        t.size / MIB
    );
    let mem_note = |w: &str| {
        (system == System::Mem).then(|| format!("{w}: MEM file is 2 MiB; I/O wraps inside it"))
    };
    let mut push = |workload: &str,
                    unit: Unit,
                    r: Result<Vec<f64>, String>,
                    note: Option<String>,
                    amp: Option<f64>| {
        match &r {
            Ok(v) => eprintln!(
                "bench: {} | {workload}: {v:?} {}{}",
                system.name(),
                unit.name(),
                amp.map_or(String::new(), |a| format!(
                    ", server bytes written per client byte {a:.2}"
                ))
            ),
            Err(e) if e.starts_with("n/a") => {
                eprintln!("bench: {} | {workload}: {e}", system.name())
            }
            Err(e) => eprintln!("bench: {} | {workload}: FAILED: {e}", system.name()),
        }
        let mut m = Measurement::new(workload, system, unit, r, note);
        m.write_amp = amp;
        out.push(m);
    };

    // A fresh volume written once sequentially, timed to the end of the flush at close.
    let fresh = QemuWork {
        id: "fresh volume seq write 1M qd8, incl. flush at close",
        write: true,
        bs: MIB,
        depth: 8,
        flush_every: 0,
        bytes: s.image_size,
    };
    let mut io = IoTally::default();
    let mut run_no = 0;
    let r = repeat(s.runs, || {
        run_no += 1;
        let file = format!("/fresh{run_no}.raw");
        t.create_file(&file, s)?;
        let before = t.written_bytes();
        let (_, wall) = t.qemu_bench_on(&file, &fresh, s)?;
        t.settle(s)?;
        io.add(before, t.written_bytes(), fresh.bytes);
        t.client(&["unlink".into(), file], s)?;
        Ok(fresh.bytes as f64 / MIB as f64 / wall.max(0.0005))
    });
    let note = join_notes(
        Some(
            "wall time of the qemu-img process (connect, write, final flush on close), so the \
             data is durable; then the file is removed"
                .into(),
        ),
        t.take_sync_note(),
    );
    push(fresh.id, Unit::MibPerSec, r, note, io.ratio());
    t.sample_rss();

    // qemu-img bench on a filled image.
    match t.create_image(s).and_then(|()| {
        t.client(&["fill".into(), t.file.into(), t.size.to_string()], s)?;
        t.settle(s)?;
        t.syncs.clear();
        Ok(())
    }) {
        Ok(()) => {
            for w in qemu_workloads(s) {
                let unit = if w.bs >= 64 << 10 {
                    Unit::MibPerSec
                } else {
                    Unit::Iops
                };
                let count = (w.bytes / w.bs).max(1);
                let mut io = IoTally::default();
                let r = repeat(s.runs, || {
                    let before = t.written_bytes();
                    let secs = t.qemu_bench(&w, s)?;
                    if w.write {
                        t.settle(s)?;
                    }
                    io.add(before, t.written_bytes(), count * w.bs);
                    let ops = count as f64 / secs.max(0.0005);
                    Ok(match unit {
                        Unit::MibPerSec => ops * w.bs as f64 / MIB as f64,
                        _ => ops,
                    })
                });
                let amp = if w.write { io.ratio() } else { None };
                let note = join_notes(mem_note(w.id), t.take_sync_note());
                push(w.id, unit, r, note, amp);
                t.sample_rss();
            }
        }
        Err(e) => {
            for w in qemu_workloads(s) {
                push(w.id, Unit::Iops, Err(e.clone()), None, None);
            }
        }
    }

    // Random I/O with our libnfs client, on the file qemu filled.
    for w in rand_workloads() {
        let args: Vec<String> = vec![
            "randio".into(),
            if w.write { "write" } else { "read" }.into(),
            t.file.into(),
            t.size.to_string(),
            "4096".into(),
            w.qd.to_string(),
            w.commit_every.to_string(),
            s.rand_secs.to_string(),
        ];
        let mut io = IoTally::default();
        let mut final_commits = Vec::new();
        let r = repeat(s.runs, || {
            let before = t.written_bytes();
            let kv = t.client(&args, s)?;
            if w.write {
                t.settle(s)?;
            }
            io.add(before, t.written_bytes(), num(&kv, "ops")? as u64 * 4096);
            final_commits.push(num(&kv, "final_commit_secs")?);
            num(&kv, "iops")
        });
        let amp = if w.write { io.ratio() } else { None };
        let note = if w.write && w.commit_every == 0 && system != System::Mem {
            median(&final_commits).map(|c| {
                format!("the untimed COMMIT after each run (of what it left unstable) took {c:.2} s (median)")
            })
        } else {
            mem_note(w.id)
        };
        let note = join_notes(note, t.take_sync_note());
        push(w.id, Unit::Iops, r, note, amp);
        t.sample_rss();
    }

    // A regular file (not a volume on Strata: no volume suffix), filled, then 4 KiB writes each
    // followed by a COMMIT at depth 1 (what ESXi's .vmx, .nvram and log writes do).
    let reg_id = "regular file rand write 4K qd1 commit/1";
    let reg = "/bench-regular.dat";
    let reg_size = t.size.min(64 * MIB);
    let filled = t
        .client(&["fill".into(), reg.into(), reg_size.to_string()], s)
        .and_then(|_| t.settle(s));
    let mut io = IoTally::default();
    let r = filled.and_then(|()| {
        repeat(s.runs, || {
            let before = t.written_bytes();
            let kv = t.client(
                &[
                    "randio".into(),
                    "write".into(),
                    reg.into(),
                    reg_size.to_string(),
                    "4096".into(),
                    "1".into(),
                    "1".into(),
                    s.rand_secs.to_string(),
                ],
                s,
            )?;
            t.settle(s)?;
            io.add(before, t.written_bytes(), num(&kv, "ops")? as u64 * 4096);
            num(&kv, "iops")
        })
    });
    push(reg_id, Unit::Iops, r, t.take_sync_note(), io.ratio());
    t.sample_rss();

    // Small files: the create phase, then (a client of its own, so that what the server
    // writes is counted per phase) the removal.
    let n = s.small_files;
    let mut removes = Vec::new();
    let mut run_no = 0;
    let mut io = IoTally::default();
    let mut rm_io = IoTally::default();
    let r = repeat(s.runs, || {
        run_no += 1;
        let args = |phase: &str| -> Vec<String> {
            vec![
                "smallfiles".into(),
                format!("/small{run_no}"),
                n.to_string(),
                phase.into(),
            ]
        };
        let before = t.written_bytes();
        let kv = t.client(&args("create"), s)?;
        t.settle(s)?;
        io.add(before, t.written_bytes(), n * 4096);
        let before = t.written_bytes();
        let rm = t.client(&args("remove"), s)?;
        t.settle(s)?;
        rm_io.add(before, t.written_bytes(), n * 4096);
        removes.push(n as f64 / num(&rm, "remove_secs")?.max(1e-6));
        Ok(n as f64 / num(&kv, "create_secs")?.max(1e-6))
    });
    let rm = r.as_ref().map(|_| removes.clone()).map_err(Clone::clone);
    push(
        &format!("small files create+4K+commit ({n})"),
        Unit::FilesPerSec,
        r,
        t.take_sync_note(),
        io.ratio(),
    );
    let rm_note = rm_io.ratio().map(|x| {
        format!(
            "{:.0} bytes written by the server per file removed (then the upload settled)",
            x * 4096.0
        )
    });
    push(
        &format!("small files remove ({n})"),
        Unit::FilesPerSec,
        rm,
        join_notes(rm_note, t.take_sync_note()),
        None,
    );
    t.sample_rss();

    // Cold read: restart Ganesha so its caches (and Strata's) are cold, then read it all.
    let cold_id = "cold seq read 1M qd8 after restart (Strata: from the backend)";
    match system {
        System::Mem => push(
            cold_id,
            Unit::MibPerSec,
            Err("n/a (MEM loses its data on restart)".into()),
            None,
            None,
        ),
        _ => {
            let w = QemuWork {
                id: cold_id,
                write: false,
                bs: MIB,
                depth: 8,
                flush_every: 0,
                bytes: t.size,
            };
            // What Strata keeps locally (outside the backend) when the read starts tells
            // where the "cold" data comes from: the FileDriver wipes its extent cache on open,
            // a volume's SCO cache stays.
            let data_dir = t.tg.data_dir.clone();
            let mut local_at_start = String::new();
            let strata = system.is_strata();
            let r = repeat(s.runs, || {
                t.sample_rss();
                if strata {
                    // Only on the backend: everything committed is uploaded, then Ganesha
                    // stops and the volumes' local state (SCO cache, TLogs) is deleted, so the
                    // read pays for the backend restart of the volume.
                    t.settle(s)?;
                    t.tg.gw_mut()
                        .kill_ganesha()
                        .map_err(|e| format!("stop: {e}"))?;
                    let volumes = data_dir.join("volumes");
                    if volumes.exists() {
                        std::fs::remove_dir_all(&volumes)
                            .map_err(|e| format!("removing {}: {e}", volumes.display()))?;
                    }
                }
                t.tg.gw_mut()
                    .restart_ganesha()
                    .map_err(|e| format!("restart: {e}"))?;
                local_at_start = local_state(&data_dir);
                let secs = t.qemu_bench(&w, s)?;
                Ok(t.size as f64 / MIB as f64 / secs.max(0.0005))
            });
            let note = match system {
                sys if sys.is_strata() => format!(
                    "before each read: `strata sync --wait`, Ganesha stopped, the volumes' local \
                     state deleted, Ganesha started: on first access the volume is rebuilt \
                     from its metadata checkpoint and the TLogs after it, and its data is read \
                     from the backend as needed (ranged GETs of up to 1 MiB, through the \
                     cluster cache); local state when the (last) \
                     read began: {local_at_start}; the OS page cache is warm for the backend \
                     directory"
                ),
                _ => "Ganesha restarted before each read; OS page cache warm (it cannot be \
                      dropped per namespace)"
                    .to_string(),
            };
            push(cold_id, Unit::MibPerSec, r, Some(note), None);
            t.sample_rss();
        }
    }

    // The sustained import (MEM's 2 MiB file cannot hold it).
    let r = match system {
        System::Mem => Err("n/a (MEM file is 2 MiB)".into()),
        _ => crate::bench::sustained::run(&mut t, s),
    };
    let sustained_ok = r.is_ok();
    let (r, note) = match r {
        Ok((rate, note)) => (Ok(vec![rate]), note),
        Err(e) => (Err(e), None),
    };
    push(crate::bench::sustained::ID, Unit::MibPerSec, r, note, None);
    t.sample_rss();

    // Snapshots (Strata only): on the bench image and on the volume the import wrote.
    let volumes = [
        (t.file, t.size),
        (
            crate::bench::sustained::FILE,
            crate::bench::sustained::bytes(s),
        ),
    ];
    for (path, size) in volumes {
        let rows = if !system.is_strata() {
            crate::bench::snapshots::rows_na(size, "n/a (no snapshots)")
        } else if path == crate::bench::sustained::FILE && !sustained_ok {
            crate::bench::snapshots::rows_na(size, "the import failed")
        } else {
            crate::bench::snapshots::rows(&t, s, path, size)
        };
        for (id, r) in rows {
            push(&id, Unit::Millis, r, None, None);
        }
    }
    // Clones (Strata only): on the imported volume (with its 1,000 snapshots) and the image.
    let big = (
        crate::bench::sustained::FILE,
        crate::bench::sustained::bytes(s),
    );
    let rows = if !system.is_strata() {
        crate::bench::clones::rows_na(big.1, "n/a (no clones)")
    } else if !sustained_ok {
        crate::bench::clones::rows_na(big.1, "the import failed")
    } else {
        crate::bench::clones::rows(&t, s, big, (t.file, t.size))
    };
    for (id, unit, r, note) in rows {
        push(&id, unit, r, note, None);
    }
    if sustained_ok {
        crate::bench::sustained::remove(&t, s)?;
    }
    // Scrub (Strata only): the bench image, overwritten by every workload above.
    let rows = if system.is_strata() {
        crate::bench::scrub::rows(&t, s, (t.file, t.size))
    } else {
        crate::bench::scrub::rows_na("n/a (no scrubber)")
    };
    for (id, unit, r, note) in rows {
        push(&id, unit, r, note, None);
    }

    // Discard (issue 19): Strata and VFS over NFSv4.2 (MEM: its files are 2 MiB).
    let rows = match system {
        System::Mem => crate::bench::discard::rows_na(s, "n/a (MEM file is 2 MiB)"),
        _ => crate::bench::discard::rows(&t, s),
    };
    for (id, unit, r, note) in rows {
        push(&id, unit, r, note, None);
    }

    // Space: what the system keeps on disk for what the client left there (the bench image;
    // the small files and fresh images were removed).
    let space_id = "disk space used at the end (allocated)";
    match system {
        System::Mem => push(
            space_id,
            Unit::MibStored,
            Err("n/a (no storage)".into()),
            None,
            None,
        ),
        _ => {
            let (_, _, total) = dir_usage(&t.tg.data_dir);
            let note = (system == System::Strata).then(|| {
                let (n, bytes, _) = dir_usage(&t.tg.data_dir.join("backend"));
                format!(
                    "backend: {n} objects, {} MiB; local state: {}; for a {} MiB volume",
                    bytes / MIB,
                    local_state(&t.tg.data_dir),
                    t.size / MIB
                )
            });
            push(
                space_id,
                Unit::MibStored,
                Ok(vec![total as f64 / MIB as f64]),
                note,
                None,
            );
        }
    }
    t.sample_rss();
    let rss = t.peak_rss_kib;
    // Disaster recovery (Strata on the local backend): stops this gateway, so it comes last.
    let rows = match system {
        System::Strata => crate::bench::restore::rows(&mut t, s),
        System::StrataS3 => crate::bench::restore::rows_na(
            s,
            t.size,
            "not measured on S3 yet (the test server lives in the gateway's namespace)",
        ),
        _ => crate::bench::restore::rows_na(s, t.size, "n/a (no restore)"),
    };
    for (id, unit, r, note) in rows {
        push(&id, unit, r, note, None);
    }
    if let Some(gw) = t.tg.gw.take() {
        gw.stop()
            .map_err(|e| format!("stopping {}: {e}", system.label()))?;
    }
    eprintln!(
        "bench: {} done in {:.1}s, peak ganesha.nfsd RSS {} MiB",
        system.label(),
        t0.elapsed().as_secs_f64(),
        rss / 1024
    );
    Ok(rss)
}
