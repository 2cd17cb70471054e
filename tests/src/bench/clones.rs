//! The clone rows (issue 16): how long `volume clone` takes through the management socket on
//! the volume the sustained import wrote (with the 1,000 snapshots the snapshot rows left on
//! it); 4 KiB random reads of a clone at the end of a chain of four against reads of its
//! parent (the bench image); and how fast a flatten copies what a clone reads from its parent.

use std::time::Instant;

use strata_mgmt::MgmtClient;

use super::report::Unit;
use super::run::{Settings, Target};

/// Timed clones per row.
const SAMPLES: usize = 5;
/// Depth of the chain whose last clone's reads are measured.
const DEPTH: usize = 4;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// One row: id, unit, the samples (or why there are none), a note.
pub(crate) type Row = (String, Unit, Result<Vec<f64>, String>, Option<String>);

fn written(bytes: u64) -> String {
    if bytes >= GIB {
        format!("{} GiB", bytes / GIB)
    } else {
        format!("{} MiB", bytes / MIB)
    }
}

fn ids(big: u64) -> [(String, Unit); 4] {
    [
        (
            format!("volume clone, {} written, 1000 snapshots", written(big)),
            Unit::Millis,
        ),
        (
            "rand read 4K qd8, parent of a clone chain".into(),
            Unit::Iops,
        ),
        (
            format!("rand read 4K qd8, clone at depth {DEPTH}"),
            Unit::Iops,
        ),
        (
            "volume flatten (clone of the bench image)".into(),
            Unit::MibPerSec,
        ),
    ]
}

/// The rows, each with the same reason for having no value.
pub(crate) fn rows_na(big: u64, why: &str) -> Vec<Row> {
    ids(big)
        .into_iter()
        .map(|(id, u)| (id, u, Err(why.to_string()), None))
        .collect()
}

/// 4 KiB random reads at queue depth 8 over the first `size` bytes of `path` for the rows'
/// duration: IOPS.
pub(crate) fn randread(t: &Target, s: &Settings, path: &str, size: u64) -> Result<f64, String> {
    randread_p99(t, s, path, size).map(|(iops, _)| iops)
}

/// [`randread`], with the reads' 99th percentile latency in milliseconds.
pub(crate) fn randread_p99(
    t: &Target,
    s: &Settings,
    path: &str,
    size: u64,
) -> Result<(f64, f64), String> {
    let args: Vec<String> = [
        "randio",
        "read",
        path,
        &size.to_string(),
        "4096",
        "8",
        "0",
        &s.rand_secs.to_string(),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    let kv = t.client(&args, s)?;
    let num = |k: &str| -> Result<f64, String> {
        kv.get(k)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("randio: no {k} in {kv:?}"))
    };
    Ok((num("iops")?, num("p99_us")? / 1000.0))
}

fn clone_path(i: usize) -> String {
    format!("/bench-clone-{i}.raw")
}

/// The rows for a Strata target: `big` is the imported volume (path, bytes), `image` the bench
/// image. Every clone made is removed again.
pub(crate) fn rows(t: &Target, s: &Settings, big: (&str, u64), image: (&str, u64)) -> Vec<Row> {
    let sock = t.tg.data_dir.join("mgmt.sock");
    let mut c = match MgmtClient::connect(&sock) {
        Ok(c) => c,
        Err(e) => return rows_na(big.1, &format!("{}: {e}", sock.display())),
    };
    let [create_id, parent_id, clone_id, flatten_id] = ids(big.1);
    let mut out = Vec::new();
    let mut made: Vec<String> = Vec::new();
    // Clone create on the big volume: each at a snapshot taken for the purpose.
    let mut create = || -> Result<Vec<f64>, String> {
        let mut v = Vec::new();
        for i in 0..SAMPLES {
            let p = clone_path(100 + i);
            let t0 = Instant::now();
            c.volume_clone(big.0, &p, None)
                .map_err(|e| format!("volume clone: {e}"))?;
            v.push(t0.elapsed().as_secs_f64() * 1000.0);
            made.push(p);
        }
        Ok(v)
    };
    out.push((create_id.0, create_id.1, create(), None));
    // A chain of clones of the bench image; reads of the parent, then of the last clone.
    let randread = |path: &str| randread(t, s, path, image.1);
    let mut chain = Vec::new();
    let built = (0..DEPTH).try_for_each(|i| {
        let src = chain.last().cloned().unwrap_or_else(|| image.0.to_string());
        let p = clone_path(i);
        c.volume_clone(&src, &p, None)
            .map_err(|e| format!("volume clone: {e}"))?;
        made.push(p.clone());
        chain.push(p);
        Ok::<(), String>(())
    });
    match built {
        Ok(()) => {
            // Each read twice, the second counted: the first warms the page cache of the SCO
            // files both read (the clone reads the image's, hash-checked).
            let last = chain.last().cloned().unwrap_or_default();
            let parent = randread(image.0).and_then(|_| randread(image.0));
            let cold = randread(&last);
            let warm = cold
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|_| randread(&last));
            let note = cold.as_ref().ok().map(|c| {
                format!(
                    "the second run; the first {c:.0} IOPS. The clone reads the clusters it \
                     shares from the image's local SCO files (each checked by its hash), the \
                     image from the same files (unchecked)"
                )
            });
            out.push((parent_id.0, parent_id.1, parent.map(|v| vec![v]), None));
            out.push((clone_id.0, clone_id.1, warm.map(|v| vec![v]), note));
        }
        Err(e) => {
            out.push((parent_id.0, parent_id.1, Err(e.clone()), None));
            out.push((clone_id.0, clone_id.1, Err(e), None));
        }
    }
    // Flatten the first clone of the image: it copies the whole image from the backend.
    let flatten = match chain.first() {
        Some(first) => {
            let t0 = Instant::now();
            c.volume_flatten(first, true)
                .map_err(|e| format!("volume flatten: {e}"))
                .and_then(|j| match j.state.as_str() {
                    "done" => Ok(vec![
                        image.1 as f64 / MIB as f64 / t0.elapsed().as_secs_f64().max(0.0005),
                    ]),
                    st => Err(format!("flatten job {st}: {:?}", j.reason)),
                })
        }
        None => Err("no clone to flatten".into()),
    };
    out.push((flatten_id.0, flatten_id.1, flatten, None));
    for p in made.iter().rev() {
        if let Err(e) = t.client(&["unlink".into(), p.clone()], s) {
            eprintln!("bench: removing clone {p}: {e}");
        }
    }
    out
}
