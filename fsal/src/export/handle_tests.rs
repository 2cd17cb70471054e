//! Property tests of the FSAL's file-handle decoding: the bytes of an NFS file handle come
//! from the network. Any length but 16 is BADHANDLE at `wire_to_host`, `host_to_key` and
//! `create_handle`; 16 bytes that name no object of this namespace are STALE; never a panic
//! (which would answer SERVERFAULT).

use std::sync::{Arc, OnceLock};

use proptest::prelude::*;
use strata_engine::{EngineConfig, Filesystem, Handle};

use super::{create_handle, host_to_key, tests_install_engine, wire_to_host};
use crate::ffi;

/// One engine for every case (the FSAL holds one per process).
fn engine() -> &'static (tempfile::TempDir, Arc<Filesystem>) {
    static E: OnceLock<(tempfile::TempDir, Arc<Filesystem>)> = OnceLock::new();
    E.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = Arc::new(Filesystem::open(EngineConfig::new(dir.path())).expect("engine"));
        (dir, fs)
    })
}

/// The three export operations' statuses for a handle of bytes `b`.
fn statuses(b: &mut [u8]) -> [ffi::fsal_errors_t; 3] {
    let mut desc = ffi::gsh_buffdesc {
        addr: b.as_mut_ptr().cast(),
        len: b.len(),
    };
    let mut out: *mut ffi::fsal_obj_handle = std::ptr::null_mut();
    // SAFETY: desc describes b, live for the calls; the export is never read on these paths
    // (only a handle naming a live object would reach new_handle, and the caller excludes it).
    unsafe {
        [
            wire_to_host(std::ptr::null_mut(), 0, &mut desc, 0).major,
            host_to_key(std::ptr::null_mut(), &mut desc).major,
            create_handle(
                std::ptr::null_mut(),
                &mut desc,
                &mut out,
                std::ptr::null_mut(),
            )
            .major,
        ]
    }
}

fn check(mut b: Vec<u8>) -> Result<(), TestCaseError> {
    let (_, fs) = engine();
    tests_install_engine(fs.clone());
    let root = fs.root().to_bytes();
    prop_assume!(b[..] != root[..]);
    let got = statuses(&mut b);
    if b.len() == Handle::WIRE_LEN {
        prop_assert_eq!(
            got,
            [
                ffi::ERR_FSAL_NO_ERROR,
                ffi::ERR_FSAL_NO_ERROR,
                ffi::ERR_FSAL_STALE
            ]
        );
    } else {
        prop_assert_eq!(got, [ffi::ERR_FSAL_BADHANDLE; 3]);
    }
    Ok(())
}

proptest! {
    #[test]
    fn random_wire_handles_are_badhandle_or_stale(
        b in prop::collection::vec(any::<u8>(), 0..80)
    ) {
        check(b)?;
    }

    /// The root's handle with a bit flipped, a byte changed, cut or extended.
    #[test]
    fn changed_root_handles_are_badhandle_or_stale(
        flip in 0usize..128, len in 0usize..40, extra in any::<u8>()
    ) {
        let (_, fs) = engine();
        let mut b = fs.root().to_bytes().to_vec();
        if len == Handle::WIRE_LEN {
            b[flip / 8] ^= 1 << (flip % 8);
        }
        b.resize(len, extra);
        check(b)?;
    }
}

#[test]
fn a_missing_handle_buffer_is_badhandle() {
    let (_, fs) = engine();
    tests_install_engine(fs.clone());
    let mut desc = ffi::gsh_buffdesc {
        addr: std::ptr::null_mut(),
        len: Handle::WIRE_LEN,
    };
    let mut out: *mut ffi::fsal_obj_handle = std::ptr::null_mut();
    // SAFETY: null pointers are what is tested; no byte is read through them.
    let got = unsafe {
        [
            wire_to_host(std::ptr::null_mut(), 0, std::ptr::null_mut(), 0).major,
            host_to_key(std::ptr::null_mut(), std::ptr::null_mut()).major,
            create_handle(
                std::ptr::null_mut(),
                &mut desc,
                &mut out,
                std::ptr::null_mut(),
            )
            .major,
        ]
    };
    assert_eq!(got, [ffi::ERR_FSAL_BADHANDLE; 3]);
}
