//! nfs-rs, a userspace NFSv4.1 client from PyPI (Apache-2.0), which `scripts/setup` installs
//! pinned by version and hash into a venv under `.cache/nfs-rs`: where its python is, and
//! running the tests' scripts (`tests/py/`) with it inside a gateway's namespace.

use std::path::{Path, PathBuf};

use crate::{in_ci, Run, TestGateway, CMD_TIMEOUT};

/// The version `scripts/setup` installs.
pub const VERSION: &str = "0.8.7";

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

/// The venv's python, with nfs-rs installed; None (a loud skip) if it is missing outside CI,
/// a panic under `CI=true`.
pub fn python() -> Option<PathBuf> {
    let venv = repo().join(".cache/nfs-rs/venv");
    let python = venv.join("bin/python");
    // lib/python3.X/site-packages/nfs_rs-VERSION.dist-info, whatever X the venv has.
    let dist = format!("site-packages/nfs_rs-{VERSION}.dist-info");
    let installed = std::fs::read_dir(venv.join("lib"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|d| d.path().join(&dist).is_dir());
    if python.is_file() && installed {
        return Some(python);
    }
    let msg = format!(
        "nfs-rs {VERSION} is not installed in {} (run scripts/setup)",
        venv.display()
    );
    if in_ci() {
        panic!("{msg}; CI=true, so this is a failure, not a skip");
    }
    eprintln!("SKIP: {msg}");
    None
}

/// A script of `tests/py/`.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("py").join(name)
}

/// Runs `python script args` inside `tg`'s namespace, bounded by [`CMD_TIMEOUT`].
pub fn run(tg: &TestGateway, python: &Path, script: &Path, args: &[&str]) -> Run {
    let mut all = vec![script.as_os_str()];
    all.extend(args.iter().map(|a| std::ffi::OsStr::new(*a)));
    tg.run_timeout(python, all, CMD_TIMEOUT)
}

/// The `step=NAME` lines of a script's output, as maps (see [`crate::kv_line`]).
pub fn steps(r: &Run) -> Vec<std::collections::BTreeMap<String, String>> {
    r.stdout
        .lines()
        .filter(|l| l.starts_with("step="))
        .map(crate::kv_line)
        .collect()
}
