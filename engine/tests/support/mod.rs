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

/// Test data: `len` bytes that differ with `seed` and along the buffer (also 4 KiB apart).
pub(crate) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

/// The whole of object `h`, read through the facade.
pub(crate) fn read_all(fs: &strata_engine::Filesystem, h: strata_engine::Handle) -> Vec<u8> {
    let size = fs.getattr(h).expect("getattr").size as usize;
    let mut buf = vec![0u8; size];
    let (n, _) = fs.read(h, 0, &mut buf).expect("read");
    buf.truncate(n);
    buf
}
