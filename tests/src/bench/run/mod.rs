//! The benchmark run: systems, workloads, repetitions, peak RSS.

mod system;
mod target;
mod workloads;

use self::system::bench_system;
pub(crate) use self::target::{dir_usage, run_bounded, Target, QEMU_PATTERN};
use crate::bench::report::Measurement;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

const GIB: u64 = 1 << 30;

/// Ganesha MEM keeps at most this much data per file (its `Inode_Size` maximum).
pub(crate) const MEM_INODE_SIZE: u64 = 2 * MIB;

/// A COMMIT after this many writes in the "with commits" random-write workloads, and the
/// flush interval of the qemu-img flush workload.
pub(crate) const COMMIT_EVERY: u64 = 16;

/// One of the systems under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum System {
    /// Ganesha with our FSAL, local backend, fresh data directory.
    Strata,
    /// Ganesha's VFS FSAL exporting a fresh directory on the same disk.
    Vfs,
    /// Ganesha's MEM FSAL: the protocol ceiling, no storage behind it.
    Mem,
    /// Ganesha with our FSAL on the S3 test server (SeaweedFS) behind a delaying proxy
    /// ([`S3_DELAY_MS`] each way): not in the default run (`--systems strata,strata-s3`).
    StrataS3,
}

/// The delay the S3 column's proxy adds in each direction, milliseconds.
pub(crate) const S3_DELAY_MS: u32 = 20;

impl System {
    /// The systems of the default run, in table order.
    pub(crate) const ALL: [System; 3] = [System::Strata, System::Vfs, System::Mem];

    /// Every system (what `--systems` accepts).
    pub(crate) const EVERY: [System; 4] =
        [System::Strata, System::Vfs, System::Mem, System::StrataS3];

    /// Ganesha with our FSAL (on any backend).
    pub(crate) fn is_strata(self) -> bool {
        matches!(self, System::Strata | System::StrataS3)
    }

    /// Short name (table column, JSON key).
    pub(crate) fn name(self) -> &'static str {
        match self {
            System::Strata => "strata",
            System::Vfs => "vfs",
            System::Mem => "mem",
            System::StrataS3 => "strata-s3",
        }
    }

    /// Column heading.
    pub(crate) fn label(self) -> &'static str {
        match self {
            System::Strata => "Strata",
            System::Vfs => "Ganesha VFS",
            System::Mem => "Ganesha MEM*",
            System::StrataS3 => "Strata on S3 (20 ms)",
        }
    }

    /// Parses a short name.
    pub(crate) fn parse(s: &str) -> Option<System> {
        System::EVERY.into_iter().find(|x| x.name() == s)
    }
}

/// Settings of one benchmark run.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Quick mode: one repetition, smaller sizes, shorter durations.
    pub quick: bool,
    /// Repetitions per workload (the table shows the median).
    pub runs: usize,
    /// Systems to run.
    pub systems: Vec<System>,
    /// Directory holding `libfsalstrata.so`.
    pub plugin_dir: PathBuf,
    /// Parent of the per-system temp directories (data dirs; all on one disk).
    pub tmp_base: PathBuf,
    /// Volume / image size for Strata and VFS.
    pub image_size: u64,
    /// Duration of one random I/O job.
    pub rand_secs: f64,
    /// Files in the small-file workload.
    pub small_files: u64,
    /// Bound for one client command.
    pub cmd_timeout: Duration,
    /// The `strata` CLI (for `strata sync --wait`); None: Strata runs are not settled.
    pub strata_cli: Option<PathBuf>,
}

impl Settings {
    /// Defaults for quick or full mode.
    pub(crate) fn new(quick: bool, plugin_dir: PathBuf, tmp_base: PathBuf) -> Settings {
        Settings {
            quick,
            runs: if quick { 1 } else { 3 },
            systems: System::ALL.to_vec(),
            plugin_dir,
            tmp_base,
            image_size: if quick { 256 * MIB } else { GIB },
            rand_secs: if quick { 2.0 } else { 5.0 },
            small_files: if quick { 500 } else { 2000 },
            cmd_timeout: Duration::from_secs(if quick { 60 } else { 180 }),
            strata_cli: None,
        }
    }
}

/// Everything the report needs.
pub(crate) struct Results {
    /// All measurements.
    pub measurements: Vec<Measurement>,
    /// Peak RSS of ganesha.nfsd per system (KiB), or the error that stopped the system.
    pub rss_kib: Vec<(System, Result<u64, String>)>,
    /// Wall time of the whole run.
    pub wall_secs: f64,
}

/// Runs all systems in order.
pub(crate) fn run_all(s: &Settings) -> Results {
    let t0 = Instant::now();
    let mut measurements = Vec::new();
    let mut rss_kib = Vec::new();
    for &system in &s.systems {
        let r = bench_system(system, s, &mut measurements);
        if let Err(e) = &r {
            eprintln!("bench: {}: {e}", system.label());
        }
        rss_kib.push((system, r));
    }
    Results {
        measurements,
        rss_kib,
        wall_secs: t0.elapsed().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests;
