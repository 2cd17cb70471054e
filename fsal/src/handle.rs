//! Our object handle: a Ganesha `fsal_obj_handle` followed by the engine handle it names.
//!
//! Every lookup, readdir entry, create, `create_handle` and `lookup_path` returns a fresh
//! boxed handle owned by MDCACHE, which frees it through `release`. All object state lives
//! in the engine (keyed by inode) or in the per-inode share table (state.rs), never in the
//! handle, because MDCACHE may hold several of our handles for one inode over time.

use std::ptr;

use strata_engine::{Attr, Handle, Kind, Timestamp};

use crate::ffi;

/// The filesystem id every Strata object reports ('STRA', 1): stable across restarts.
pub(crate) const FSID_MAJOR: u64 = 0x5354_5241;
/// Minor part of the filesystem id.
pub(crate) const FSID_MINOR: u64 = 1;

/// A Strata object handle as Ganesha sees it. `obj` must stay first: Ganesha passes
/// `*mut fsal_obj_handle` and we cast back.
#[repr(C)]
pub(crate) struct StrataHandle {
    /// Ganesha's part.
    pub obj: ffi::fsal_obj_handle,
    /// The engine's persistent handle.
    pub h: Handle,
    /// Its wire form, also the MDCACHE key: must stay at a stable address while the handle
    /// lives (handle_to_key points into it).
    pub key: [u8; Handle::WIRE_LEN],
    /// What it is.
    pub kind: Kind,
}

/// Ganesha's object type for an engine kind.
pub(crate) fn obj_type(kind: Kind) -> ffi::object_file_type_t {
    match kind {
        Kind::Directory => ffi::DIRECTORY,
        Kind::File | Kind::Volume => ffi::REGULAR_FILE,
        Kind::Symlink => ffi::SYMBOLIC_LINK,
        Kind::Fifo => ffi::FIFO_FILE,
        Kind::Socket => ffi::SOCKET_FILE,
        Kind::CharDevice => ffi::CHARACTER_FILE,
        Kind::BlockDevice => ffi::BLOCK_FILE,
    }
}

/// Allocates a new handle for `attr` on `export` and hands ownership to the caller (MDCACHE).
///
/// # Safety
/// `export` must be a live `fsal_export` of this FSAL and the call must happen on a Ganesha
/// thread (fsal_obj_handle_init takes the module lock).
pub(crate) unsafe fn new_handle(
    export: *mut ffi::fsal_export,
    attr: &Attr,
) -> *mut ffi::fsal_obj_handle {
    // SAFETY: fsal_obj_handle is a plain C struct for which all-zero is the documented
    // starting state (Ganesha initialises its lock and list in fsal_obj_handle_init).
    let mut b = Box::new(StrataHandle {
        obj: unsafe { std::mem::zeroed() },
        h: attr.handle,
        key: attr.handle.to_bytes(),
        kind: attr.kind,
    });
    // SAFETY: b.obj is valid, zeroed memory that outlives the call; export is live (caller).
    unsafe {
        ffi::fsal_obj_handle_init(&mut b.obj, export, obj_type(attr.kind));
    }
    b.obj.obj_ops = crate::ops::obj_ops();
    b.obj.fileid = attr.handle.ino;
    b.obj.fsid = ffi::fsal_fsid__ {
        major: FSID_MAJOR,
        minor: FSID_MINOR,
    };
    b.obj.fs = ptr::null_mut();
    let raw = Box::into_raw(b);
    // SAFETY: raw is a valid StrataHandle whose first field is obj (repr(C)).
    unsafe { ptr::addr_of_mut!((*raw).obj) }
}

/// Our handle behind a Ganesha object pointer.
///
/// # Safety
/// `obj` must have been created by [`new_handle`] and not yet released.
pub(crate) unsafe fn from_obj<'a>(obj: *const ffi::fsal_obj_handle) -> &'a StrataHandle {
    // SAFETY: obj is the first field of a live StrataHandle (caller), so the cast is exact.
    unsafe { &*(obj as *const StrataHandle) }
}

/// Frees a handle created by [`new_handle`].
///
/// # Safety
/// `obj` must come from [`new_handle`]; it must not be used afterwards.
pub(crate) unsafe fn release(obj: *mut ffi::fsal_obj_handle) {
    // SAFETY: obj came from Box::into_raw of a StrataHandle whose first field is obj.
    unsafe {
        ffi::fsal_obj_handle_fini(obj);
        drop(Box::from_raw(obj as *mut StrataHandle));
    }
}

fn ts(t: Timestamp) -> ffi::timespec {
    ffi::timespec {
        tv_sec: t.secs as _,
        tv_nsec: t.nsecs as _,
    }
}

/// The attributes every Strata object supports: the POSIX set, and extended attributes
/// (Ganesha answers the RFC 8276 operations only when `ATTR4_XATTR` is among them).
pub(crate) fn supported_attrs() -> ffi::attrmask_t {
    (ffi::ATTRS_POSIX | ffi::ATTR4_XATTR) as ffi::attrmask_t
}

/// Fills a Ganesha attribute list from engine attributes. Leaves `acl`, `fs_locations` and
/// `sec_label` untouched (Ganesha owns and frees them; we never set them).
///
/// # Safety
/// `out` must be null or point to a valid `fsal_attrlist`.
pub(crate) unsafe fn fill_attrs(out: *mut ffi::fsal_attrlist, a: &Attr) {
    if out.is_null() {
        return;
    }
    // SAFETY: out is non-null and valid (caller).
    let o = unsafe { &mut *out };
    o.type_ = obj_type(a.kind);
    o.filesize = a.size;
    o.fsid = ffi::fsal_fsid__ {
        major: FSID_MAJOR,
        minor: FSID_MINOR,
    };
    o.fileid = a.handle.ino;
    o.mode = a.mode & 0o7777;
    o.numlinks = a.nlink;
    o.owner = a.uid as u64;
    o.group = a.gid as u64;
    o.rawdev = ffi::fsal_dev__ {
        major: a.rdev.major as u64,
        minor: a.rdev.minor as u64,
    };
    o.atime = ts(a.atime);
    o.mtime = ts(a.mtime);
    o.ctime = ts(a.ctime);
    o.creation = ts(a.ctime);
    o.spaceused = a.space_used;
    o.change = a.change;
    o.generation = a.handle.generation;
    o.valid_mask = supported_attrs();
    o.supported = supported_attrs();
}

/// Marks an attribute list as "could not be read" when the caller allowed that
/// (ATTR_RDATTR_ERR); returns whether it did.
///
/// # Safety
/// `out` must be null or point to a valid `fsal_attrlist`.
pub(crate) unsafe fn attrs_error_allowed(out: *mut ffi::fsal_attrlist) -> bool {
    if out.is_null() {
        return true;
    }
    // SAFETY: out is non-null and valid (caller).
    let o = unsafe { &mut *out };
    let rdattr_err = ffi::ATTR_RDATTR_ERR as u64;
    if o.request_mask & rdattr_err != 0 {
        o.valid_mask = rdattr_err;
        true
    } else {
        false
    }
}
