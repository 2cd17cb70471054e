//! Telling Ganesha's MDCACHE that an object changed behind it (a rollback, an extended
//! attribute set or removed: MDCACHE passes those through without refreshing): the engine's
//! change hook calls each export's up-call vector `invalidate` with the object's key (its
//! wire handle), so the next GETATTR reaches us and clients see the new size, mtime and
//! change attribute at once instead of after the attribute cache expires.

use std::ffi::c_void;
use std::sync::Arc;

use parking_lot::Mutex;
use strata_engine::{ChangeHook, Handle};

use crate::ffi;
use crate::log::GLevel;

/// `FSAL_UP_INVALIDATE_ATTRS | FSAL_UP_INVALIDATE_CONTENT` (`fsal_up.h`: static consts that
/// bindgen does not carry).
const INVALIDATE: u32 = 0x01 | 0x04;

/// `FSAL_UP_INVALIDATE_ATTRS` alone (a change of attributes only: a directory keeps its
/// cached entries).
const INVALIDATE_ATTRS: u32 = 0x01;

/// The up-call vectors of the live exports (as addresses), registered at create_export and
/// removed at release; held while calling so that a release waits for a call in progress.
static VECTORS: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// Registers an export's up-call vector.
pub(crate) fn register(up: *const ffi::fsal_up_vector) {
    if !up.is_null() {
        VECTORS.lock().push(up as usize);
    }
}

/// Forgets an export's up-call vector (at its release).
pub(crate) fn unregister(up: *const ffi::fsal_up_vector) {
    VECTORS.lock().retain(|v| *v != up as usize);
}

/// The engine's change hook: invalidates `h` in every export's cache.
pub(crate) fn hook() -> ChangeHook {
    Arc::new(invalidate)
}

/// Invalidates `h`'s attributes in every export's cache: the FSAL calls it after a change
/// MDCACHE does not see as one (extended attributes), so the next GETATTR shows the new change
/// attribute.
pub(crate) fn invalidate_attrs(h: Handle) {
    invalidate_with(h, INVALIDATE_ATTRS)
}

fn invalidate(h: Handle) {
    invalidate_with(h, INVALIDATE)
}

fn invalidate_with(h: Handle, flags: u32) {
    let key = h.to_bytes();
    let vectors = VECTORS.lock();
    for &v in vectors.iter() {
        let up = v as *const ffi::fsal_up_vector;
        let mut desc = ffi::gsh_buffdesc {
            addr: key.as_ptr() as *mut c_void,
            len: key.len(),
        };
        // SAFETY: `up` is the vector Ganesha passed to create_export for an export that is not
        // released yet (release unregisters it under this lock); `desc` points at `key`, which
        // outlives the call; MDCACHE's invalidate sets up its own op context and copies the key.
        let status = unsafe {
            match (*up).invalidate {
                Some(f) => f(up, &mut desc, flags),
                None => continue,
            }
        };
        // Not cached (NOENT) is what most invalidations find: nothing to drop.
        if status.major != ffi::ERR_FSAL_NO_ERROR && status.major != ffi::ERR_FSAL_NOENT {
            crate::log::log(
                GLevel::Warn,
                &format!(
                    "invalidating the cached attributes of inode {} failed: {}",
                    h.ino, status.major
                ),
            );
        }
    }
}
