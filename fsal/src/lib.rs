//! libfsalstrata.so: the FSAL NFS-Ganesha 4.3 loads to serve Strata.
//!
//! Ganesha `dlopen`s this library (FSAL name `STRATA`); an ELF constructor registers the
//! module, `init_config` reads and validates the `STRATA { }` block, `create_export` opens the
//! one engine [`strata_engine::Filesystem`] shared by all exports, and every object operation
//! forwards into it. Every entry point from C is wrapped by `guard`: a panic becomes
//! ERR_FSAL_SERVERFAULT plus a log line and never unwinds into Ganesha.

#[macro_use]
mod log;
mod export;
mod ffi;
mod handle;
mod ops;
mod state;
mod upcall;

#[cfg(test)]
mod tests;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use strata_engine::Error;

use crate::log::GLevel;

/// Builds an `fsal_status_t`.
pub(crate) fn st(major: ffi::fsal_errors_t, minor: i32) -> ffi::fsal_status_t {
    ffi::fsal_status_t { major, minor }
}

/// Success.
pub(crate) fn ok() -> ffi::fsal_status_t {
    st(ffi::ERR_FSAL_NO_ERROR, 0)
}

/// Maps an engine error to the FSAL status (and errno as minor) NFS expects.
pub(crate) fn map_err(e: &Error) -> ffi::fsal_status_t {
    match e {
        Error::NotFound => st(ffi::ERR_FSAL_NOENT, libc::ENOENT),
        Error::Exists => st(ffi::ERR_FSAL_EXIST, libc::EEXIST),
        Error::NotDir => st(ffi::ERR_FSAL_NOTDIR, libc::ENOTDIR),
        Error::IsDir => st(ffi::ERR_FSAL_ISDIR, libc::EISDIR),
        Error::NotEmpty => st(ffi::ERR_FSAL_NOTEMPTY, libc::ENOTEMPTY),
        Error::NameTooLong => st(ffi::ERR_FSAL_NAMETOOLONG, libc::ENAMETOOLONG),
        Error::Invalid(_) => st(ffi::ERR_FSAL_INVAL, libc::EINVAL),
        Error::Stale => st(ffi::ERR_FSAL_STALE, libc::ESTALE),
        Error::NoSpace => st(ffi::ERR_FSAL_NOSPC, libc::ENOSPC),
        Error::Delay => st(ffi::ERR_FSAL_DELAY, libc::EAGAIN),
        Error::ReadOnly(_) => st(ffi::ERR_FSAL_ROFS, libc::EROFS),
        Error::NotSupported(_) => st(ffi::ERR_FSAL_NOTSUPP, libc::ENOTSUP),
        Error::Io(_) | Error::Format(_) | Error::Backend { .. } => st(ffi::ERR_FSAL_IO, libc::EIO),
        Error::NotOwner(_) => st(ffi::ERR_FSAL_PERM, libc::EPERM),
        Error::NoXattr => st(ffi::ERR_FSAL_NOXATTR, libc::ENODATA),
        Error::XattrTooBig => st(ffi::ERR_FSAL_XATTR2BIG, libc::E2BIG),
    }
}

/// Result type of the FSAL's internal helpers: an error is already an FSAL status.
pub(crate) type FResult<T> = Result<T, ffi::fsal_status_t>;

/// Converts an engine result, logging the unexpected errors (I/O, invalid) once here.
pub(crate) fn eng<T>(what: &str, r: strata_engine::Result<T>) -> FResult<T> {
    r.map_err(|e| {
        match &e {
            Error::Io(_)
            | Error::Format(_)
            | Error::Backend { .. }
            | Error::Invalid(_)
            | Error::NotSupported(_)
            | Error::NotOwner(_) => {
                glog!(GLevel::Warn, "{what}: {e}")
            }
            _ => glog!(GLevel::Debug, "{what}: {e}"),
        }
        map_err(&e)
    })
}

/// Runs an FSAL entry point, turning a panic into `on_panic` plus a log line.
pub(crate) fn guard_with<T>(what: &str, on_panic: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            log::log(
                GLevel::Crit,
                &format!("panic in {what}: {msg} (answered SERVERFAULT)"),
            );
            on_panic
        }
    }
}

/// Runs an FSAL entry point that returns a status; a panic becomes ERR_FSAL_SERVERFAULT.
pub(crate) fn guard(what: &str, f: impl FnOnce() -> FResult<()>) -> ffi::fsal_status_t {
    guard_with(what, st(ffi::ERR_FSAL_SERVERFAULT, libc::EIO), || {
        match f() {
            Ok(()) => ok(),
            Err(s) => s,
        }
    })
}

/// The test-only panic switch: `STRATA_TEST_PANIC_NAME=<name>` in ganesha.nfsd's environment
/// makes every lookup or open-by-name of exactly `<name>` panic inside the FSAL.
pub(crate) fn test_panic_name() -> Option<&'static [u8]> {
    static NAME: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    NAME.get_or_init(|| {
        std::env::var_os("STRATA_TEST_PANIC_NAME").map(|v| {
            use std::os::unix::ffi::OsStrExt;
            v.as_bytes().to_vec()
        })
    })
    .as_deref()
}

/// Panics when `name` is the test-only panic name (see [`test_panic_name`]).
pub(crate) fn maybe_test_panic(name: &[u8]) {
    if let Some(p) = test_panic_name() {
        if !p.is_empty() && p == name {
            panic!(
                "STRATA_TEST_PANIC_NAME: injected panic for {:?}",
                String::from_utf8_lossy(name)
            );
        }
    }
}

/// ELF constructor: registers the module when Ganesha `dlopen`s us. Not in unit tests, whose
/// binaries are not Ganesha.
#[cfg(not(test))]
#[used]
#[link_section = ".init_array"]
static STRATA_INIT: extern "C" fn() = strata_fsal_init;

/// ELF destructor: unregisters at `dlclose`.
#[cfg(not(test))]
#[used]
#[link_section = ".fini_array"]
static STRATA_FINI: extern "C" fn() = strata_fsal_fini;

#[cfg_attr(test, allow(dead_code))]
extern "C" fn strata_fsal_init() {
    guard_with("module init", (), export::module_init);
}

#[cfg_attr(test, allow(dead_code))]
extern "C" fn strata_fsal_fini() {
    guard_with("module fini", (), export::module_fini);
}
