//! `strata restore`: a gateway whose data directory is lost, back from its backend alone (the
//! engine does the work: `strata_engine::restore`).

use std::path::Path;
use std::process::ExitCode;

use indicatif::ProgressBar;
use strata_engine::{EngineConfig, Progress, RestoreOptions, RestoreReport};

use crate::job::progress_bar;

/// The restore's steps on a progress bar.
struct Bar(Option<ProgressBar>);

impl Progress for Bar {
    fn step(&self, done: u64, total: u64) {
        if let Some(b) = &self.0 {
            b.set_length(total);
            b.set_position(done);
        }
    }
    fn cancelled(&self) -> bool {
        false
    }
}

/// Restores the gateway `conf` describes (its STRATA block: the empty Data_Dir, the backend).
pub(crate) fn restore(conf: &Path, opts: RestoreOptions, json: bool) -> Result<ExitCode, String> {
    let settings = strata_ganesha_conf::load_strata_settings(conf).map_err(|errs| {
        let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        format!("{} is not valid:\n{}", conf.display(), lines.join("\n"))
    })?;
    let config = EngineConfig::from_settings(&settings);
    let bar = Bar(progress_bar(json, "restoring".into()));
    let r = strata_engine::restore(&config, opts, &bar);
    if let Some(b) = &bar.0 {
        b.finish_and_clear();
    }
    let report = r.map_err(|e| format!("restore failed: {e}"))?;
    if json {
        let line = serde_json::to_string(&report).map_err(|e| e.to_string())?;
        println!("{line}");
    } else {
        print_report(&config, &report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(config: &EngineConfig, r: &RestoreReport) {
    println!(
        "restored {} from {}",
        config.data_dir.display(),
        config.backend.location()
    );
    println!("  taken over from   {}", r.previous_owner);
    println!("  owner epoch       {}", r.epoch);
    println!(
        "  namespace image   {} bytes, taken {} s before the restore",
        r.image_bytes, r.image_age_secs
    );
    println!(
        "  restored          {} directories, {} files, {} volumes, {} symlinks, {} special \
         files, {} extended attributes",
        r.directories, r.files, r.volumes, r.symlinks, r.special_files, r.xattrs
    );
    println!("  next fileid       {}", r.next_ino);
    println!(
        "What was created or changed after the image was taken, and data not yet uploaded \
         then, is lost. Volumes read their data from the backend as they are used; start the \
         gateway now."
    );
}
