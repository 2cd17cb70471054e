//! Object operations: every NFS operation on a file, directory or symlink reaches the engine
//! here. Each entry point is wrapped by [`guard`] (a panic becomes SERVERFAULT); no lock is
//! held while Ganesha's callbacks (`done_cb`, the readdir callback) run.

mod create;
mod dir;
mod io;
mod open;
mod space;
mod xattr;

#[cfg(test)]
use self::create::verifier_times;
use self::dir::{
    getattrs, handle_to_key, handle_to_wire, link, lookup, mkdir, mknode, readdir, readlink,
    release, rename, symlink, unlink,
};
use self::io::{commit2, read2, setattr2, write2};
use self::open::{close, close2, open2, reopen2, status2};
use self::space::{fallocate, seek2};
use self::xattr::{getxattrs, listxattrs, removexattrs, setxattrs};
use crate::ffi;
use crate::{st, FResult};
use std::ffi::{c_char, CStr};
#[cfg(test)]
use std::ptr;
use strata_engine::{Cred, Kind, SetAttr, SetTime, Timestamp};

/// Ganesha's object-ops vector for all Strata handles; filled once by [`init_obj_ops`].
static mut OBJ_OPS: ffi::fsal_obj_ops = unsafe { std::mem::zeroed() };

/// Our ops vector (a stable address for every handle's `obj_ops`).
pub(crate) fn obj_ops() -> *mut ffi::fsal_obj_ops {
    &raw mut OBJ_OPS
}

/// Fills the ops vector: Ganesha's defaults, then ours.
pub(crate) fn init_obj_ops() {
    // SAFETY: called once from the module constructor before any handle exists; nothing else
    // reads OBJ_OPS yet.
    unsafe {
        let o = &raw mut OBJ_OPS;
        ffi::fsal_default_obj_ops_init(o);
        let o = &mut *o;
        o.release = Some(release);
        o.lookup = Some(lookup);
        o.readdir = Some(readdir);
        o.mkdir = Some(mkdir);
        o.symlink = Some(symlink);
        o.mknode = Some(mknode);
        o.readlink = Some(readlink);
        o.getattrs = Some(getattrs);
        o.link = Some(link);
        o.rename = Some(rename);
        o.unlink = Some(unlink);
        o.close = Some(close);
        o.handle_to_wire = Some(handle_to_wire);
        o.handle_to_key = Some(handle_to_key);
        o.open2 = Some(open2);
        o.status2 = Some(status2);
        o.reopen2 = Some(reopen2);
        o.read2 = Some(read2);
        o.write2 = Some(write2);
        o.commit2 = Some(commit2);
        o.setattr2 = Some(setattr2);
        o.close2 = Some(close2);
        o.fallocate = Some(fallocate);
        o.seek2 = Some(seek2);
        o.getxattrs = Some(getxattrs);
        o.setxattrs = Some(setxattrs);
        o.removexattrs = Some(removexattrs);
        o.listxattrs = Some(listxattrs);
    }
}

/// Largest file size (also fs_info.maxfilesize): what fits an off_t.
pub(crate) const MAX_FILE_SIZE: u64 = i64::MAX as u64;

const O_CLOSED: ffi::fsal_openflags_t = ffi::FSAL_O_CLOSED as ffi::fsal_openflags_t;

const O_READ: ffi::fsal_openflags_t = ffi::FSAL_O_READ as ffi::fsal_openflags_t;

const O_WRITE: ffi::fsal_openflags_t = ffi::FSAL_O_WRITE as ffi::fsal_openflags_t;

const O_TRUNC: ffi::fsal_openflags_t = ffi::FSAL_O_TRUNC as ffi::fsal_openflags_t;

/// Access and deny bits: what a share reservation consists of.
const O_SHARE_BITS: ffi::fsal_openflags_t = ffi::FSAL_O_OPENFLAGS as ffi::fsal_openflags_t;

fn err(major: ffi::fsal_errors_t, errno: i32) -> ffi::fsal_status_t {
    st(major, errno)
}

/// The export new handles belong to: op_ctx->fsal_export (MDCACHE points it at ours
/// around every sub-FSAL call).
fn cur_export() -> FResult<*mut ffi::fsal_export> {
    // SAFETY: strata_get_op_ctx returns Ganesha's thread-local request context or null.
    let ctx = unsafe { ffi::strata_get_op_ctx() };
    if ctx.is_null() {
        return Err(err(ffi::ERR_FSAL_SERVERFAULT, libc::EIO));
    }
    // SAFETY: ctx is the live context of the current request.
    let e = unsafe { (*ctx).fsal_export };
    if e.is_null() {
        return Err(err(ffi::ERR_FSAL_SERVERFAULT, libc::EIO));
    }
    Ok(e)
}

/// The caller's credentials (owner of new objects).
fn caller_cred() -> Cred {
    // SAFETY: as in cur_export; creds is plain data in the live context.
    unsafe {
        let ctx = ffi::strata_get_op_ctx();
        if ctx.is_null() {
            Cred::default()
        } else {
            Cred {
                uid: (*ctx).creds.caller_uid,
                gid: (*ctx).creds.caller_gid,
            }
        }
    }
}

/// A name argument as bytes.
fn name_of<'a>(p: *const c_char) -> FResult<&'a [u8]> {
    if p.is_null() {
        return Err(err(ffi::ERR_FSAL_INVAL, libc::EINVAL));
    }
    // SAFETY: Ganesha passes NUL-terminated names that live for the call.
    Ok(unsafe { CStr::from_ptr(p) }.to_bytes())
}

fn mask(a: &ffi::fsal_attrlist, bit: u32) -> bool {
    a.valid_mask & (bit as u64) != 0
}

fn tstamp(t: &ffi::timespec) -> Timestamp {
    Timestamp {
        secs: t.tv_sec,
        nsecs: t.tv_nsec.clamp(0, 999_999_999) as u32,
    }
}

/// The engine setattr request for a Ganesha attribute list (mode, owner, group, size, times
/// including *_SERVER = now). Other attributes are ignored.
fn setattr_of(a: *const ffi::fsal_attrlist) -> SetAttr {
    let mut s = SetAttr::default();
    if a.is_null() {
        return s;
    }
    // SAFETY: a is a valid attribute list from Ganesha for this call.
    let a = unsafe { &*a };
    if mask(a, ffi::ATTR_MODE) {
        s.mode = Some(a.mode & 0o7777);
    }
    if mask(a, ffi::ATTR_OWNER) {
        s.uid = Some(a.owner as u32);
    }
    if mask(a, ffi::ATTR_GROUP) {
        s.gid = Some(a.group as u32);
    }
    if mask(a, ffi::ATTR_SIZE) {
        s.size = Some(a.filesize);
    }
    if mask(a, ffi::ATTR_ATIME_SERVER) {
        s.atime = Some(SetTime::Now);
    } else if mask(a, ffi::ATTR_ATIME) {
        s.atime = Some(SetTime::At(tstamp(&a.atime)));
    }
    if mask(a, ffi::ATTR_MTIME_SERVER) {
        s.mtime = Some(SetTime::Now);
    } else if mask(a, ffi::ATTR_MTIME) {
        s.mtime = Some(SetTime::At(tstamp(&a.mtime)));
    }
    s
}

/// [`setattr_of`] for unit tests.
#[cfg(test)]
pub(crate) fn tests_setattr_of(a: &ffi::fsal_attrlist) -> SetAttr {
    setattr_of(a)
}

/// A stateless named [`open2`] (NFSv3 CREATE style) for unit tests; any new handle is leaked.
///
/// # Safety
/// `dir` must point to a valid [`handle::StrataHandle`] of a directory; `attrs_in` must be
/// null or a valid attribute list.
#[cfg(test)]
pub(crate) unsafe fn tests_open2_named(
    dir: *mut ffi::fsal_obj_handle,
    name: &CStr,
    createmode: ffi::fsal_create_mode,
    attrs_in: *mut ffi::fsal_attrlist,
) -> ffi::fsal_status_t {
    let mut new_obj: *mut ffi::fsal_obj_handle = ptr::null_mut();
    // SAFETY: the caller's pointers; every other pointer is null or local.
    unsafe {
        open2(
            dir,
            ptr::null_mut(),
            O_READ | O_WRITE,
            createmode,
            name.as_ptr(),
            attrs_in,
            ptr::null_mut(),
            &mut new_obj,
            ptr::null_mut(),
            ptr::null_mut(),
        )
    }
}

/// [`verifier_times`] for unit tests.
#[cfg(test)]
pub(crate) fn tests_verifier_times(v: &[u8; 8]) -> (Timestamp, Timestamp) {
    verifier_times(v)
}

fn not_regular(kind: Kind) -> FResult<()> {
    match kind {
        Kind::Directory => Err(err(ffi::ERR_FSAL_ISDIR, libc::EISDIR)),
        Kind::Symlink => Err(err(ffi::ERR_FSAL_SYMLINK, libc::ELOOP)),
        Kind::File | Kind::Volume => Ok(()),
        Kind::Fifo | Kind::Socket | Kind::CharDevice | Kind::BlockDevice => {
            Err(err(ffi::ERR_FSAL_INVAL, libc::EINVAL))
        }
    }
}
