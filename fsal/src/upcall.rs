//! Telling Ganesha's MDCACHE that an object changed behind it (a rollback, an extended
//! attribute set or removed: MDCACHE passes those through without refreshing): the engine's
//! change hook calls each export's up-call vector `invalidate` with the object's key (its
//! wire handle), so the next GETATTR reaches us and clients see the new size, mtime and
//! change attribute at once instead of after the attribute cache expires.

use std::ffi::c_void;
use std::sync::Arc;

use std::cell::RefCell;

use parking_lot::ReentrantMutex;
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
/// Reentrant: a call can drop the last reference of its own export, which MDCACHE then
/// releases on the calling thread, and the release unregisters here (a plain mutex deadlocked).
static VECTORS: ReentrantMutex<RefCell<Vec<usize>>> =
    parking_lot::const_reentrant_mutex(RefCell::new(Vec::new()));

/// Registers an export's up-call vector.
pub(crate) fn register(up: *const ffi::fsal_up_vector) {
    if !up.is_null() {
        VECTORS.lock().borrow_mut().push(up as usize);
    }
}

/// The registered vectors (tests).
#[cfg(test)]
fn registered() -> Vec<usize> {
    VECTORS.lock().borrow().clone()
}

/// Forgets an export's up-call vector (at its release).
pub(crate) fn unregister(up: *const ffi::fsal_up_vector) {
    VECTORS.lock().borrow_mut().retain(|v| *v != up as usize);
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
    // Held across the calls (another thread's release waits for them); the list is copied
    // so that a release inside a call, on this thread, can change it.
    let held = VECTORS.lock();
    let vectors = held.borrow().clone();
    for v in vectors {
        if !held.borrow().contains(&v) {
            // Released by an earlier call of this loop.
            continue;
        }
        let up = v as *const ffi::fsal_up_vector;
        let mut desc = ffi::gsh_buffdesc {
            addr: key.as_ptr() as *mut c_void,
            len: key.len(),
        };
        // SAFETY: `up` is the vector Ganesha passed to create_export for an export that is not
        // released yet (release unregisters it under this lock: another thread's waits for
        // the loop, this thread's own is seen by the check above); `desc` points at `key`, which
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector under test (its address is what `register` keeps).
    static mut RELEASED: ffi::fsal_up_vector = unsafe { std::mem::zeroed() };

    /// An invalidate whose export reference drop is the export's last: MDCACHE then releases
    /// the export on this very thread, and the release unregisters its vector.
    unsafe extern "C" fn releasing_invalidate(
        vec: *const ffi::fsal_up_vector,
        _obj: *mut ffi::gsh_buffdesc,
        _flags: u32,
    ) -> ffi::fsal_status_t {
        unregister(vec);
        crate::ok()
    }

    #[test]
    fn an_export_released_inside_its_own_invalidate_does_not_deadlock() {
        // SAFETY: this test alone touches RELEASED, before handing its address out.
        let up = unsafe {
            let v = &raw mut RELEASED;
            (*v).invalidate = Some(releasing_invalidate);
            v as *const ffi::fsal_up_vector
        };
        register(up);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            invalidate_attrs(Handle {
                ino: 7,
                generation: 1,
            });
            let _ = tx.send(());
        });
        assert!(
            rx.recv_timeout(std::time::Duration::from_secs(10)).is_ok(),
            "invalidate deadlocked on the release of the export it was calling"
        );
        assert!(!registered().contains(&(up as usize)), "unregistered");
    }
}
