//! Test support shared by the engine's integration tests (each test binary uses a part of it).
#![allow(dead_code)]

pub(crate) mod crash_disk;

/// Creates the regular file `name` in the root directory (guarded, mode 0644, root's credentials).
pub(crate) fn create_in_root(
    fs: &strata_engine::Filesystem,
    name: &str,
) -> strata_engine::Result<strata_engine::Created> {
    fs.create(
        fs.root(),
        name.as_bytes(),
        0o644,
        strata_engine::Cred::default(),
        strata_engine::CreateMode::Guarded,
    )
}
