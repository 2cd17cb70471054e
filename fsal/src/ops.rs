//! Object operations: every NFS operation on a file, directory or symlink reaches the engine
//! here. Each entry point is wrapped by [`guard`] (a panic becomes SERVERFAULT); no lock is
//! held while Ganesha's callbacks (`done_cb`, the readdir callback) run.

use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr;

use strata_engine::{Attr, CreateMode, Cred, Kind, SetAttr, SetTime, Stability, Timestamp};

use crate::export::fs;
use crate::ffi;
use crate::handle::{self, fill_attrs, from_obj, new_handle};
use crate::state::{self, change_share, check_stateless, fd_of};
use crate::{eng, guard, guard_with, maybe_test_panic, st, FResult};

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

fn is_empty(s: &SetAttr) -> bool {
    *s == SetAttr::default()
}

/// Ganesha's exclusive-create convention (set_common_verifier): the verifier's first four
/// bytes become atime seconds, the last four mtime seconds.
fn verifier_times(v: &[u8; 8]) -> (Timestamp, Timestamp) {
    let hi = u32::from_ne_bytes([v[0], v[1], v[2], v[3]]);
    let lo = u32::from_ne_bytes([v[4], v[5], v[6], v[7]]);
    (
        Timestamp {
            secs: hi as i64,
            nsecs: 0,
        },
        Timestamp {
            secs: lo as i64,
            nsecs: 0,
        },
    )
}

fn verifier_matches(a: &Attr, v: &[u8; 8]) -> bool {
    let (at, mt) = verifier_times(v);
    a.atime.secs == at.secs && a.mtime.secs == mt.secs
}

fn verifier_of(p: *const c_char) -> [u8; 8] {
    let mut v = [0u8; 8];
    if !p.is_null() {
        // SAFETY: fsal_verifier_t is an 8-byte array; Ganesha passes a pointer to one.
        unsafe { ptr::copy_nonoverlapping(p as *const u8, v.as_mut_ptr(), 8) };
    }
    v
}

fn not_regular(kind: Kind) -> FResult<()> {
    match kind {
        Kind::Directory => Err(err(ffi::ERR_FSAL_ISDIR, libc::EISDIR)),
        Kind::Symlink => Err(err(ffi::ERR_FSAL_SYMLINK, libc::ELOOP)),
        Kind::File | Kind::Volume => Ok(()),
    }
}

unsafe extern "C" fn release(obj: *mut ffi::fsal_obj_handle) {
    guard_with("release", (), || {
        // SAFETY: MDCACHE releases each handle we gave it exactly once.
        unsafe { handle::release(obj) }
    })
}

unsafe extern "C" fn lookup(
    dir: *mut ffi::fsal_obj_handle,
    path: *const c_char,
    out: *mut *mut ffi::fsal_obj_handle,
    attrs_out: *mut ffi::fsal_attrlist,
) -> ffi::fsal_status_t {
    guard("lookup", || {
        let fs = fs()?;
        // SAFETY: dir is one of our live handles (MDCACHE).
        let d = unsafe { from_obj(dir) };
        let name = name_of(path)?;
        maybe_test_panic(name);
        let attr = eng("lookup", fs.lookup(d.h, name))?;
        let exp = cur_export()?;
        // SAFETY: out/attrs_out are Ganesha's out pointers; exp is live.
        unsafe {
            *out = new_handle(exp, &attr);
            fill_attrs(attrs_out, &attr);
        }
        Ok(())
    })
}

/// Entries fetched from the engine per call while listing.
const READDIR_PAGE: usize = 256;

unsafe extern "C" fn readdir(
    dir: *mut ffi::fsal_obj_handle,
    whence: *mut ffi::fsal_cookie_t,
    dir_state: *mut c_void,
    cb: ffi::fsal_readdir_cb,
    attrmask: ffi::attrmask_t,
    eof: *mut bool,
) -> ffi::fsal_status_t {
    guard("readdir", || {
        let fs = fs()?;
        // SAFETY: dir is our live handle; whence is null or Ganesha's cookie.
        let d = unsafe { from_obj(dir) };
        let mut cookie = if whence.is_null() {
            0
        } else {
            unsafe { *whence }
        };
        let cb = cb.ok_or(err(ffi::ERR_FSAL_INVAL, libc::EINVAL))?;
        let exp = cur_export()?;
        let set_eof = |v: bool| {
            if !eof.is_null() {
                // SAFETY: eof is Ganesha's out flag.
                unsafe { *eof = v };
            }
        };
        loop {
            // The engine returns a snapshot page; no engine lock is held during callbacks.
            let page = eng("readdir", fs.readdir(d.h, cookie, READDIR_PAGE))?;
            let n = page.entries.len();
            for e in page.entries {
                cookie = e.cookie;
                let Ok(name) = CString::new(e.name) else {
                    continue; // a name with NUL cannot be sent; never produced by NFS clients
                };
                // SAFETY: all-zero is an empty attribute list; we fill it.
                let mut attrs: ffi::fsal_attrlist = unsafe { std::mem::zeroed() };
                attrs.request_mask = attrmask;
                // SAFETY: exp is live; the callback takes ownership of the new handle and
                // only borrows name and attrs for the call.
                let r = unsafe {
                    fill_attrs(&mut attrs, &e.attr);
                    let obj = new_handle(exp, &e.attr);
                    cb(name.as_ptr(), obj, &mut attrs, dir_state, e.cookie)
                };
                if r >= ffi::DIR_TERMINATE {
                    set_eof(false);
                    return Ok(());
                }
            }
            if page.eof || n == 0 {
                set_eof(true);
                return Ok(());
            }
        }
    })
}

unsafe extern "C" fn getattrs(
    obj: *mut ffi::fsal_obj_handle,
    attrs_out: *mut ffi::fsal_attrlist,
) -> ffi::fsal_status_t {
    guard("getattrs", || {
        let fs = fs()?;
        // SAFETY: obj is our live handle.
        let h = unsafe { from_obj(obj) };
        match eng("getattr", fs.getattr(h.h)) {
            Ok(a) => {
                // SAFETY: attrs_out is Ganesha's attribute list.
                unsafe { fill_attrs(attrs_out, &a) };
                Ok(())
            }
            Err(e) => {
                // SAFETY: as above.
                unsafe { handle::attrs_error_allowed(attrs_out) };
                Err(e)
            }
        }
    })
}

/// Applies the attributes of a create that the create call itself did not set.
fn finish_create(h: strata_engine::Handle, attr: Attr, set: SetAttr) -> FResult<Attr> {
    if is_empty(&set) {
        return Ok(attr);
    }
    let fs = fs()?;
    eng("setattr after create", fs.setattr(h, &set))
}

/// Owner for a new object: the attributes Ganesha passed, else the caller. Only root may give
/// a new object another owner, or a group it is not a member of (EPERM, as chown would).
fn create_cred(attrs_in: *const ffi::fsal_attrlist) -> FResult<(Cred, SetAttr, Option<u32>)> {
    let mut set = setattr_of(attrs_in);
    let caller = caller_cred();
    let cred = Cred {
        uid: set.uid.take().unwrap_or(caller.uid),
        gid: set.gid.take().unwrap_or(caller.gid),
    };
    if caller.uid != 0
        && (cred.uid != caller.uid || (cred.gid != caller.gid && !caller_in_group(cred.gid)))
    {
        return Err(err(ffi::ERR_FSAL_PERM, libc::EPERM));
    }
    let mode = set.mode.take();
    Ok((cred, set, mode))
}

/// Whether `gid` is among the caller's supplementary groups.
fn caller_in_group(gid: u32) -> bool {
    // SAFETY: as in caller_cred; Ganesha keeps caller_garray (caller_glen entries) alive for the
    // whole request.
    unsafe {
        let ctx = ffi::strata_get_op_ctx();
        if ctx.is_null() {
            return false;
        }
        let c = &(*ctx).creds;
        if c.caller_garray.is_null() {
            return false;
        }
        std::slice::from_raw_parts(c.caller_garray, c.caller_glen as usize).contains(&gid)
    }
}

/// Ganesha 4.3 leaves the permission check of adding, and renaming away, directory entries to
/// the FSAL (it checks REMOVE and LINK itself): the caller needs write and search permission on
/// the directory, by its mode bits and the request's credentials (root passes).
fn may_change_entries(dir: *mut ffi::fsal_obj_handle) -> FResult<()> {
    // SAFETY: dir is a live handle of ours for the whole call; fsal_test_access reads its
    // attributes through our getattrs and the credentials of the live op_ctx; null
    // allowed/denied pointers are accepted.
    let st = unsafe {
        ffi::fsal_test_access(
            dir,
            ffi::FSAL_W_OK | ffi::FSAL_X_OK,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            false,
        )
    };
    if st.major == ffi::ERR_FSAL_NO_ERROR {
        Ok(())
    } else {
        Err(st)
    }
}

/// The sticky-bit rule for taking an entry out of `dir` (rename): in a sticky directory only
/// the owner of the entry, the owner of the directory, or root may.
fn sticky_allows(
    fs: &strata_engine::Filesystem,
    dir: strata_engine::Handle,
    entry: strata_engine::Handle,
) -> FResult<()> {
    let caller = caller_cred();
    if caller.uid == 0 {
        return Ok(());
    }
    let d = eng("getattr for rename", fs.getattr(dir))?;
    if d.mode & 0o1000 == 0 || d.uid == caller.uid {
        return Ok(());
    }
    let e = eng("getattr for rename", fs.getattr(entry))?;
    if e.uid == caller.uid {
        return Ok(());
    }
    Err(err(ffi::ERR_FSAL_ACCESS, libc::EACCES))
}

unsafe extern "C" fn mkdir(
    dir: *mut ffi::fsal_obj_handle,
    name: *const c_char,
    attrs_in: *mut ffi::fsal_attrlist,
    new_obj: *mut *mut ffi::fsal_obj_handle,
    attrs_out: *mut ffi::fsal_attrlist,
) -> ffi::fsal_status_t {
    guard("mkdir", || {
        let fs = fs()?;
        // SAFETY: dir is our live handle.
        let d = unsafe { from_obj(dir) };
        let n = name_of(name)?;
        let (cred, mut set, mode) = create_cred(attrs_in)?;
        may_change_entries(dir)?;
        set.size = None;
        let attr = eng("mkdir", fs.mkdir(d.h, n, mode.unwrap_or(0o755), cred))?;
        let attr = finish_create(attr.handle, attr, set)?;
        let exp = cur_export()?;
        // SAFETY: out pointers from Ganesha; exp live.
        unsafe {
            *new_obj = new_handle(exp, &attr);
            fill_attrs(attrs_out, &attr);
        }
        Ok(())
    })
}

unsafe extern "C" fn symlink(
    dir: *mut ffi::fsal_obj_handle,
    name: *const c_char,
    link_path: *const c_char,
    attrs_in: *mut ffi::fsal_attrlist,
    new_obj: *mut *mut ffi::fsal_obj_handle,
    attrs_out: *mut ffi::fsal_attrlist,
) -> ffi::fsal_status_t {
    guard("symlink", || {
        let fs = fs()?;
        // SAFETY: dir is our live handle.
        let d = unsafe { from_obj(dir) };
        let n = name_of(name)?;
        let target = name_of(link_path)?;
        let (cred, mut set, _mode) = create_cred(attrs_in)?;
        may_change_entries(dir)?;
        set.size = None;
        let attr = eng("symlink", fs.symlink(d.h, n, target, cred))?;
        let attr = finish_create(attr.handle, attr, set)?;
        let exp = cur_export()?;
        // SAFETY: out pointers from Ganesha; exp live.
        unsafe {
            *new_obj = new_handle(exp, &attr);
            fill_attrs(attrs_out, &attr);
        }
        Ok(())
    })
}

/// Special files (FIFOs, sockets, devices) have no engine kind: NOTSUPP, quietly (Ganesha's
/// default logs every call at CRIT).
unsafe extern "C" fn mknode(
    _dir: *mut ffi::fsal_obj_handle,
    _name: *const c_char,
    _nodetype: ffi::object_file_type_t,
    _attrs_in: *mut ffi::fsal_attrlist,
    _new_obj: *mut *mut ffi::fsal_obj_handle,
    _attrs_out: *mut ffi::fsal_attrlist,
) -> ffi::fsal_status_t {
    err(ffi::ERR_FSAL_NOTSUPP, libc::ENOTSUP)
}

unsafe extern "C" fn readlink(
    obj: *mut ffi::fsal_obj_handle,
    content: *mut ffi::gsh_buffdesc,
    _refresh: bool,
) -> ffi::fsal_status_t {
    guard("readlink", || {
        let fs = fs()?;
        // SAFETY: obj is our live handle.
        let h = unsafe { from_obj(obj) };
        if h.kind != Kind::Symlink {
            return Err(err(ffi::ERR_FSAL_INVAL, libc::EINVAL));
        }
        if content.is_null() {
            return Err(err(ffi::ERR_FSAL_INVAL, libc::EINVAL));
        }
        let target = eng("readlink", fs.readlink(h.h))?;
        // Ganesha frees the buffer with gsh_free (free); len counts the trailing NUL.
        // SAFETY: malloc of len+1 bytes, filled completely below.
        let buf = unsafe { libc::malloc(target.len() + 1) } as *mut u8;
        if buf.is_null() {
            return Err(err(ffi::ERR_FSAL_NOMEM, libc::ENOMEM));
        }
        // SAFETY: buf has target.len()+1 bytes; content is Ganesha's descriptor.
        unsafe {
            ptr::copy_nonoverlapping(target.as_ptr(), buf, target.len());
            *buf.add(target.len()) = 0;
            (*content).addr = buf as *mut c_void;
            (*content).len = target.len() + 1;
        }
        Ok(())
    })
}

unsafe extern "C" fn link(
    obj: *mut ffi::fsal_obj_handle,
    destdir: *mut ffi::fsal_obj_handle,
    name: *const c_char,
) -> ffi::fsal_status_t {
    guard("link", || {
        let fs = fs()?;
        // SAFETY: both are our live handles.
        let (o, d) = unsafe { (from_obj(obj), from_obj(destdir)) };
        let n = name_of(name)?;
        eng("link", fs.link(o.h, d.h, n))?;
        Ok(())
    })
}

unsafe extern "C" fn rename(
    obj: *mut ffi::fsal_obj_handle,
    olddir: *mut ffi::fsal_obj_handle,
    old_name: *const c_char,
    newdir: *mut ffi::fsal_obj_handle,
    new_name: *const c_char,
) -> ffi::fsal_status_t {
    guard("rename", || {
        let fs = fs()?;
        // SAFETY: all three are our live handles.
        let (o, od, nd) = unsafe { (from_obj(obj), from_obj(olddir), from_obj(newdir)) };
        let on = name_of(old_name)?;
        let nn = name_of(new_name)?;
        may_change_entries(olddir)?;
        may_change_entries(newdir)?;
        sticky_allows(&fs, od.h, o.h)?;
        if let Ok(target) = fs.lookup(nd.h, nn) {
            if target.handle != o.h {
                sticky_allows(&fs, nd.h, target.handle)?;
            }
        }
        eng("rename", fs.rename(od.h, on, nd.h, nn))
    })
}

unsafe extern "C" fn unlink(
    dir: *mut ffi::fsal_obj_handle,
    obj: *mut ffi::fsal_obj_handle,
    name: *const c_char,
) -> ffi::fsal_status_t {
    guard("unlink", || {
        let fs = fs()?;
        // SAFETY: both are our live handles.
        let (d, o) = unsafe { (from_obj(dir), from_obj(obj)) };
        let n = name_of(name)?;
        if o.kind == Kind::Directory {
            eng("rmdir", fs.rmdir(d.h, n))
        } else {
            eng("unlink", fs.unlink(d.h, n))
        }
    })
}

/// Closes the "global fd" of a stateless open (NFSv3 CREATE). There is no real descriptor;
/// Ganesha only counts them, so answer NOT_OPENED unless a stateless open was recorded.
unsafe extern "C" fn close(obj: *mut ffi::fsal_obj_handle) -> ffi::fsal_status_t {
    guard("close", || {
        // SAFETY: obj is our live handle.
        let h = unsafe { from_obj(obj) };
        if state::take_global_open(h.h.ino) {
            Ok(())
        } else {
            Err(err(ffi::ERR_FSAL_NOT_OPENED, 0))
        }
    })
}

unsafe extern "C" fn handle_to_wire(
    obj: *const ffi::fsal_obj_handle,
    _output_type: ffi::fsal_digesttype_t,
    fh_desc: *mut ffi::gsh_buffdesc,
) -> ffi::fsal_status_t {
    guard("handle_to_wire", || {
        // SAFETY: obj is our live handle; fh_desc is Ganesha's output buffer of len bytes.
        unsafe {
            let h = from_obj(obj);
            let d = &mut *fh_desc;
            if d.addr.is_null() || d.len < h.key.len() {
                return Err(err(ffi::ERR_FSAL_TOOSMALL, libc::EOVERFLOW));
            }
            ptr::copy_nonoverlapping(h.key.as_ptr(), d.addr as *mut u8, h.key.len());
            d.len = h.key.len();
        }
        Ok(())
    })
}

unsafe extern "C" fn handle_to_key(
    obj: *mut ffi::fsal_obj_handle,
    fh_desc: *mut ffi::gsh_buffdesc,
) {
    guard_with("handle_to_key", (), || {
        // SAFETY: obj is our live handle, so its key outlives every use MDCACHE makes of it;
        // fh_desc is Ganesha's descriptor.
        unsafe {
            let h = from_obj(obj);
            (*fh_desc).addr = h.key.as_ptr() as *mut c_void;
            (*fh_desc).len = h.key.len();
        }
    })
}

/// Takes (or changes) the share reservation and engine open of `state` on `h`. Returns the
/// previous (flags, engine_open) so a failed open can be undone.
fn take_open(
    h: strata_engine::Handle,
    st_ptr: *mut ffi::state_t,
    flags: ffi::fsal_openflags_t,
) -> FResult<Option<(ffi::fsal_openflags_t, bool)>> {
    if st_ptr.is_null() {
        // Stateless (NFSv3 CREATE): no reservation; Ganesha counts a global fd.
        state::set_global_open(h.ino);
        return Ok(None);
    }
    // SAFETY: the state came from our alloc_state; Ganesha holds its state lock.
    let sfd = unsafe { fd_of(st_ptr) };
    let before = (sfd.fd.openflags, sfd.engine_open);
    change_share(h.ino, before.0, flags)?;
    if !sfd.engine_open {
        let fs = fs()?;
        if let Err(e) = eng("open_file", fs.open_file(h)) {
            let _ = change_share(h.ino, flags, before.0);
            return Err(e);
        }
        sfd.engine_open = true;
    }
    sfd.fd.openflags = flags;
    Ok(Some(before))
}

/// Undoes [`take_open`] after a later step of open2 failed.
fn undo_open(
    h: strata_engine::Handle,
    st_ptr: *mut ffi::state_t,
    before: Option<(ffi::fsal_openflags_t, bool)>,
) {
    let Some((flags, was_open)) = before else {
        state::take_global_open(h.ino);
        return;
    };
    // SAFETY: as in take_open.
    let sfd = unsafe { fd_of(st_ptr) };
    let _ = change_share(h.ino, sfd.fd.openflags, flags);
    sfd.fd.openflags = flags;
    if !was_open && sfd.engine_open {
        sfd.engine_open = false;
        if let Ok(fs) = fs() {
            let _ = fs.close_file(h);
        }
    }
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn open2(
    obj: *mut ffi::fsal_obj_handle,
    state_ptr: *mut ffi::state_t,
    openflags: ffi::fsal_openflags_t,
    createmode: ffi::fsal_create_mode,
    name: *const c_char,
    attrs_in: *mut ffi::fsal_attrlist,
    verifier: *mut c_char,
    new_obj: *mut *mut ffi::fsal_obj_handle,
    attrs_out: *mut ffi::fsal_attrlist,
    caller_perm_check: *mut bool,
) -> ffi::fsal_status_t {
    guard("open2", || {
        let fs = fs()?;
        // SAFETY: obj is our live handle (the file, or the parent directory when named).
        let me = unsafe { from_obj(obj) };
        let trunc = openflags & O_TRUNC != 0;
        let share = openflags & O_SHARE_BITS;
        let verf = verifier_of(verifier);
        let exclusive = createmode >= ffi::FSAL_EXCLUSIVE;
        let set_perm_check = |v: bool| {
            if !caller_perm_check.is_null() {
                // SAFETY: Ganesha's out flag.
                unsafe { *caller_perm_check = v };
            }
        };

        if name.is_null() {
            // Open by handle (MDCACHE found the object already).
            not_regular(me.kind)?;
            let before = take_open(me.h, state_ptr, share)?;
            let res = (|| {
                let mut attr = eng("getattr", fs.getattr(me.h))?;
                if exclusive
                    && createmode != ffi::FSAL_EXCLUSIVE_9P
                    && !verifier_matches(&attr, &verf)
                {
                    return Err(err(ffi::ERR_FSAL_EXIST, libc::EEXIST));
                }
                if trunc && attr.size != 0 {
                    let set = SetAttr {
                        size: Some(0),
                        ..SetAttr::default()
                    };
                    attr = eng("truncate on open", fs.setattr(me.h, &set))?;
                }
                Ok(attr)
            })();
            return match res {
                Ok(attr) => {
                    // SAFETY: attrs_out is null or Ganesha's list.
                    unsafe { fill_attrs(attrs_out, &attr) };
                    Ok(())
                }
                Err(e) => {
                    undo_open(me.h, state_ptr, before);
                    Err(e)
                }
            };
        }

        let n = name_of(name)?;
        maybe_test_panic(n);
        let (cred, mut set, mode) = create_cred(attrs_in)?;
        // The size limit setattr2 enforces holds for a size given with the create too (NFSv3
        // CREATE sattr, NFSv4 createattrs): refuse before anything is created.
        if set.size.is_some_and(|s| s > MAX_FILE_SIZE) {
            return Err(err(ffi::ERR_FSAL_FBIG, libc::EFBIG));
        }
        let (attr, created) = if createmode == ffi::FSAL_NO_CREATE {
            (eng("lookup for open", fs.lookup(me.h, n))?, false)
        } else {
            let how = match createmode {
                ffi::FSAL_UNCHECKED => CreateMode::Unchecked,
                ffi::FSAL_GUARDED => CreateMode::Guarded,
                _ => CreateMode::Exclusive(verf),
            };
            // Only a new entry needs write permission on the directory: opening an existing
            // file (UNCHECKED, an exclusive replay) does not.
            if matches!(fs.lookup(me.h, n), Err(strata_engine::Error::NotFound)) {
                may_change_entries(obj)?;
            }
            let c = eng(
                "create",
                fs.create(me.h, n, mode.unwrap_or(0o600), cred, how),
            )?;
            (c.attr, c.created)
        };
        not_regular(attr.kind)?;
        set_perm_check(!created);
        let h = attr.handle;
        let before = take_open(h, state_ptr, share)?;
        let res = {
            let mut todo = SetAttr::default();
            if created {
                // The create set mode and owner; apply the rest of the requested attributes.
                todo = std::mem::take(&mut set);
                if exclusive {
                    let (at, mt) = verifier_times(&verf);
                    todo.atime = Some(SetTime::At(at));
                    todo.mtime = Some(SetTime::At(mt));
                }
            } else if createmode == ffi::FSAL_UNCHECKED {
                // An existing file: only a requested size applies (e.g. O_TRUNC via size 0).
                todo.size = set.size;
            }
            if trunc && attr.size != 0 {
                todo.size = Some(0);
            }
            finish_create(h, attr.clone(), todo)
        };
        match res {
            Ok(attr) => {
                let exp = cur_export()?;
                // SAFETY: out pointers from Ganesha; exp live.
                unsafe {
                    *new_obj = new_handle(exp, &attr);
                    fill_attrs(attrs_out, &attr);
                }
                Ok(())
            }
            Err(e) => {
                undo_open(h, state_ptr, before);
                Err(e)
            }
        }
    })
}

unsafe extern "C" fn status2(
    _obj: *mut ffi::fsal_obj_handle,
    state_ptr: *mut ffi::state_t,
) -> ffi::fsal_openflags_t {
    guard_with("status2", O_CLOSED, || {
        if state_ptr.is_null() {
            return O_CLOSED;
        }
        // SAFETY: the state came from our alloc_state.
        unsafe { fd_of(state_ptr) }.fd.openflags
    })
}

unsafe extern "C" fn reopen2(
    obj: *mut ffi::fsal_obj_handle,
    state_ptr: *mut ffi::state_t,
    openflags: ffi::fsal_openflags_t,
) -> ffi::fsal_status_t {
    guard("reopen2", || {
        if state_ptr.is_null() {
            return Err(err(ffi::ERR_FSAL_INVAL, libc::EINVAL));
        }
        let fs = fs()?;
        // SAFETY: obj is our live handle.
        let me = unsafe { from_obj(obj) };
        not_regular(me.kind)?;
        let before = take_open(me.h, state_ptr, openflags & O_SHARE_BITS)?;
        if openflags & O_TRUNC != 0 {
            let set = SetAttr {
                size: Some(0),
                ..SetAttr::default()
            };
            if let Err(e) = eng("truncate on reopen", fs.setattr(me.h, &set)) {
                undo_open(me.h, state_ptr, before);
                return Err(e);
            }
        }
        Ok(())
    })
}

unsafe extern "C" fn close2(
    obj: *mut ffi::fsal_obj_handle,
    state_ptr: *mut ffi::state_t,
) -> ffi::fsal_status_t {
    guard("close2", || {
        if state_ptr.is_null() {
            return Ok(());
        }
        // SAFETY: obj is our live handle; the state came from our alloc_state.
        let (me, sfd) = unsafe { (from_obj(obj), fd_of(state_ptr)) };
        if sfd.fd.openflags != O_CLOSED {
            let _ = change_share(me.h.ino, sfd.fd.openflags, O_CLOSED);
            sfd.fd.openflags = O_CLOSED;
        }
        if sfd.engine_open {
            sfd.engine_open = false;
            let fs = fs()?;
            eng("close_file", fs.close_file(me.h))?;
        }
        Ok(())
    })
}

/// Share check for I/O: with a state, Ganesha validated it (and its reservation is ours, so
/// no self-conflict); without one (NFSv3, anonymous stateid) a transient check.
fn io_share_check(
    ino: u64,
    st_ptr: *mut ffi::state_t,
    flags: ffi::fsal_openflags_t,
    bypass: bool,
) -> FResult<()> {
    if st_ptr.is_null() {
        check_stateless(ino, flags, bypass)
    } else {
        Ok(())
    }
}

unsafe extern "C" fn read2(
    obj: *mut ffi::fsal_obj_handle,
    bypass: bool,
    done_cb: ffi::fsal_async_cb,
    arg: *mut ffi::fsal_io_arg,
    caller_arg: *mut c_void,
) {
    let status = guard("read2", || {
        // SAFETY: arg is Ganesha's I/O argument for this call with iov_count buffers.
        let a = unsafe { &mut *arg };
        a.io_amount = 0;
        if !a.info.is_null() {
            return Err(err(ffi::ERR_FSAL_NOTSUPP, libc::ENOTSUP)); // READ_PLUS
        }
        let fs = fs()?;
        // SAFETY: obj is our live handle.
        let me = unsafe { from_obj(obj) };
        not_regular(me.kind)?;
        io_share_check(me.h.ino, a.state, O_READ, bypass)?;
        let count = a.iov_count.max(0) as usize;
        // SAFETY: iov is a flexible array of iov_count entries.
        let iovs = unsafe { a.iov.as_mut_slice(count) };
        let mut off = a.offset;
        let mut total = 0usize;
        let mut at_eof = false;
        for v in iovs.iter() {
            if v.iov_len == 0 {
                continue;
            }
            // SAFETY: each iovec describes a writable buffer Ganesha owns for the call.
            let buf = unsafe { std::slice::from_raw_parts_mut(v.iov_base as *mut u8, v.iov_len) };
            let (n, eof) = eng("read", fs.read(me.h, off, buf))?;
            total += n;
            off += n as u64;
            if eof || n < buf.len() {
                at_eof = eof || n < buf.len();
                break;
            }
        }
        a.io_amount = total;
        a.__bindgen_anon_1.end_of_file = at_eof;
        Ok(())
    });
    if let Some(cb) = done_cb {
        // SAFETY: Ganesha's completion callback, called exactly once, with no lock held.
        unsafe { cb(obj, status, arg as *mut c_void, caller_arg) };
    }
}

unsafe extern "C" fn write2(
    obj: *mut ffi::fsal_obj_handle,
    bypass: bool,
    done_cb: ffi::fsal_async_cb,
    arg: *mut ffi::fsal_io_arg,
    caller_arg: *mut c_void,
) {
    let status = guard("write2", || {
        // SAFETY: arg is Ganesha's I/O argument for this call with iov_count buffers.
        let a = unsafe { &mut *arg };
        // SAFETY: reading the union member Ganesha set for a write.
        let stable = unsafe { a.__bindgen_anon_1.fsal_stable };
        a.io_amount = 0;
        let fs = fs()?;
        // SAFETY: obj is our live handle.
        let me = unsafe { from_obj(obj) };
        not_regular(me.kind)?;
        io_share_check(me.h.ino, a.state, O_WRITE, bypass)?;
        let count = a.iov_count.max(0) as usize;
        // SAFETY: iov is a flexible array of iov_count entries.
        let iovs = unsafe { a.iov.as_mut_slice(count) };
        let mut off = a.offset;
        let mut total = 0usize;
        let mut all_stable = true;
        for v in iovs.iter() {
            if v.iov_len == 0 {
                continue;
            }
            // SAFETY: each iovec describes a readable buffer Ganesha owns for the call.
            let data = unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len) };
            let (n, s) = eng("write", fs.write(me.h, off, data, stable))?;
            total += n;
            off += n as u64;
            all_stable &= s == Stability::Stable;
            if n < data.len() {
                break;
            }
        }
        a.io_amount = total;
        // Report what was achieved: an engine that made the data durable says so.
        a.__bindgen_anon_1.fsal_stable = all_stable;
        Ok(())
    });
    if let Some(cb) = done_cb {
        // SAFETY: Ganesha's completion callback, called exactly once, with no lock held.
        unsafe { cb(obj, status, arg as *mut c_void, caller_arg) };
    }
}

unsafe extern "C" fn commit2(
    obj: *mut ffi::fsal_obj_handle,
    _offset: libc::off_t,
    _len: usize,
) -> ffi::fsal_status_t {
    guard("commit2", || {
        let fs = fs()?;
        // SAFETY: obj is our live handle.
        let me = unsafe { from_obj(obj) };
        eng("commit", fs.commit(me.h))
    })
}

unsafe extern "C" fn setattr2(
    obj: *mut ffi::fsal_obj_handle,
    bypass: bool,
    state_ptr: *mut ffi::state_t,
    attrs: *mut ffi::fsal_attrlist,
) -> ffi::fsal_status_t {
    guard("setattr2", || {
        let fs = fs()?;
        // SAFETY: obj is our live handle.
        let me = unsafe { from_obj(obj) };
        let set = setattr_of(attrs);
        if set.size.is_some_and(|s| s > MAX_FILE_SIZE) {
            return Err(err(ffi::ERR_FSAL_FBIG, libc::EFBIG));
        }
        if set.size.is_some() {
            match me.kind {
                Kind::Directory => return Err(err(ffi::ERR_FSAL_ISDIR, libc::EISDIR)),
                Kind::Symlink => return Err(err(ffi::ERR_FSAL_INVAL, libc::EINVAL)),
                Kind::File | Kind::Volume => {}
            }
            // nfs-ganesha #1144: a size change that comes with a state uses that state (its
            // own DENY_BOTH reservation must not refuse it); only a stateless one is checked.
            io_share_check(me.h.ino, state_ptr, O_WRITE, bypass)?;
        }
        if is_empty(&set) {
            return Ok(());
        }
        eng("setattr", fs.setattr(me.h, &set)).map(|_| ())
    })
}
