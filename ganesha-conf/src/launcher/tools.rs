//! Small helpers: tools on PATH, absolute paths, log reading.

use super::{io_err, LaunchError, LOG_TAIL};
use crate::conf::GaneshaConf;
use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

pub(super) fn setup_err(msg: impl Into<String>) -> LaunchError {
    LaunchError::Setup(msg.into())
}

/// `program` as an absolute path when it is a bare name found by [`find_in_path`].
pub(super) fn resolve(program: &OsStr) -> std::ffi::OsString {
    let bare = !program.as_encoded_bytes().contains(&b'/');
    match program.to_str().filter(|_| bare).and_then(find_in_path) {
        Some(p) => p.into_os_string(),
        None => program.to_os_string(),
    }
}

pub(super) fn uses_strata_fsal(conf: &GaneshaConf) -> bool {
    conf.exports
        .iter()
        .any(|e| matches!(e.fsal, crate::conf::FsalBlock::Strata))
        || conf.strata.is_some()
}

pub(super) fn absolute(p: &Path) -> Result<PathBuf, LaunchError> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        let cwd = std::env::current_dir().map_err(io_err("reading the current directory"))?;
        Ok(cwd.join(p))
    }
}

/// Fails with [`LaunchError::MissingTool`] when `name` is not an executable file in `PATH`.
pub fn require_tool(name: &str) -> Result<PathBuf, LaunchError> {
    find_in_path(name).ok_or_else(|| LaunchError::MissingTool(name.to_string()))
}

/// The full path of `name` in `PATH`, then in the standard bin and sbin directories (which a
/// non-login or non-root `PATH` may lack).
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ]
    .map(PathBuf::from);
    std::env::split_paths(&path).chain(extra).find_map(|dir| {
        let f = dir.join(name);
        let meta = fs::metadata(&f).ok()?;
        (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then_some(f)
    })
}

pub(super) fn log_contains_after(path: &Path, start: u64, needle: &str) -> bool {
    let Ok(mut f) = fs::File::open(path) else {
        return false;
    };
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(start)).is_err() || f.read_to_end(&mut buf).is_err() {
        return false;
    }
    String::from_utf8_lossy(&buf).contains(needle)
}

/// The last few KiB of a text file (empty if unreadable).
pub fn log_tail(path: &Path) -> String {
    let Ok(mut f) = fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}
