//! `strata conf`: check and render ganesha.conf files; reading Ganesha's configuration errors
//! out of its log.

use std::path::Path;
use std::process::ExitCode;

use strata_ganesha_conf::{check_file, GaneshaConf};

use crate::absolute;

pub(crate) fn conf_check(file: &Path) -> Result<ExitCode, String> {
    match check_file(file) {
        Ok((conf, settings)) => {
            let exports: Vec<String> = conf
                .exports
                .iter()
                .map(|e| format!("{} ({})", e.pseudo, e.fsal.name()))
                .collect();
            let data = settings
                .map(|s| format!("; Data_Dir {}", s.data_dir.display()))
                .unwrap_or_default();
            println!(
                "{}: OK ({} export(s): {}{data})",
                file.display(),
                exports.len(),
                exports.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(errs) => {
            for e in &errs {
                println!("{e}");
            }
            eprintln!("strata: {} error(s) in {}", errs.len(), file.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

pub(crate) fn conf_render(profile: &str, data_dir: &Path) -> Result<ExitCode, String> {
    let data_dir = absolute(data_dir)?;
    let text = GaneshaConf::render_profile(profile, &data_dir)
        .ok_or_else(|| format!("unknown profile {profile}"))?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}
