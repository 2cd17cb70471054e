//! Data: read2, write2, commit2, and setattr2.

use super::create::is_empty;
use super::open::io_share_check;
use super::{err, not_regular, setattr_of, MAX_FILE_SIZE, O_READ, O_WRITE};
use crate::export::fs;
use crate::ffi;
use crate::handle::from_obj;
use crate::{eng, guard};
use std::ffi::c_void;
use strata_engine::{Kind, Stability};

pub(super) unsafe extern "C" fn read2(
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

pub(super) unsafe extern "C" fn write2(
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

pub(super) unsafe extern "C" fn commit2(
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

pub(super) unsafe extern "C" fn setattr2(
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
                Kind::File | Kind::Volume => {}
                _ => return Err(err(ffi::ERR_FSAL_INVAL, libc::EINVAL)),
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
