//! Object ops on the namespace: lookup, readdir, getattrs, mkdir, symlink, mknode, readlink,
//! link, rename, unlink, release, and handles to wire and key form.

use super::create::{create_cred, finish_create, may_change_entries, sticky_allows};
use super::{cur_export, err, name_of};
use crate::export::fs;
use crate::ffi;
use crate::handle::{self, fill_attrs, from_obj, new_handle};
use crate::FResult;
use crate::{eng, guard, guard_with, maybe_test_panic};
use std::ffi::{c_char, c_void, CString};
use std::ptr;
use strata_engine::{DeviceId, Kind};

pub(super) unsafe extern "C" fn release(obj: *mut ffi::fsal_obj_handle) {
    guard_with("release", (), || {
        // SAFETY: MDCACHE releases each handle we gave it exactly once.
        unsafe { handle::release(obj) }
    })
}

pub(super) unsafe extern "C" fn lookup(
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
pub(super) const READDIR_PAGE: usize = 256;

pub(super) unsafe extern "C" fn readdir(
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

pub(super) unsafe extern "C" fn getattrs(
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

pub(super) unsafe extern "C" fn mkdir(
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

pub(super) unsafe extern "C" fn symlink(
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

/// Special files: FIFOs, sockets, character and block devices (NFSv3 MKNOD, NFSv4 CREATE),
/// with the device numbers Ganesha passes in `attrs_in->rawdev`.
pub(super) unsafe extern "C" fn mknode(
    dir: *mut ffi::fsal_obj_handle,
    name: *const c_char,
    nodetype: ffi::object_file_type_t,
    attrs_in: *mut ffi::fsal_attrlist,
    new_obj: *mut *mut ffi::fsal_obj_handle,
    attrs_out: *mut ffi::fsal_attrlist,
) -> ffi::fsal_status_t {
    guard("mknode", || {
        let fs = fs()?;
        // SAFETY: dir is our live handle.
        let d = unsafe { from_obj(dir) };
        let n = name_of(name)?;
        let kind = match nodetype {
            ffi::FIFO_FILE => Kind::Fifo,
            ffi::SOCKET_FILE => Kind::Socket,
            ffi::CHARACTER_FILE => Kind::CharDevice,
            ffi::BLOCK_FILE => Kind::BlockDevice,
            _ => return Err(err(ffi::ERR_FSAL_BADTYPE, libc::EINVAL)),
        };
        // Only root makes device nodes (as a kernel without CAP_MKNOD refuses them): a device
        // a user made would reach a client's disks through any mount without `nodev`.
        if kind.is_device() && super::caller_cred().uid != 0 {
            return Err(err(ffi::ERR_FSAL_PERM, libc::EPERM));
        }
        let rdev = rdev_of(attrs_in)?;
        let (cred, mut set, mode) = create_cred(attrs_in)?;
        may_change_entries(dir)?;
        set.size = None;
        let attr = eng(
            "mknode",
            fs.mknod(d.h, n, kind, mode.unwrap_or(0o644), rdev, cred),
        )?;
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

/// The device numbers of a create's attributes (zero when absent); numbers past 32 bits are
/// refused.
fn rdev_of(attrs_in: *const ffi::fsal_attrlist) -> FResult<DeviceId> {
    if attrs_in.is_null() {
        return Ok(DeviceId::default());
    }
    // SAFETY: attrs_in is Ganesha's attribute list for this call.
    let a = unsafe { &*attrs_in };
    if a.valid_mask & ffi::ATTR_RAWDEV as u64 == 0 {
        return Ok(DeviceId::default());
    }
    let num = |v: u64| u32::try_from(v).map_err(|_| err(ffi::ERR_FSAL_INVAL, libc::EINVAL));
    Ok(DeviceId {
        major: num(a.rawdev.major)?,
        minor: num(a.rawdev.minor)?,
    })
}

pub(super) unsafe extern "C" fn readlink(
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

pub(super) unsafe extern "C" fn link(
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

pub(super) unsafe extern "C" fn rename(
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

pub(super) unsafe extern "C" fn unlink(
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

pub(super) unsafe extern "C" fn handle_to_wire(
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

pub(super) unsafe extern "C" fn handle_to_key(
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
