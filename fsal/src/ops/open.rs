//! Opening and closing: open2 (create included), reopen2, status2, close2, close, and the
//! NFSv4 share reservations they check.

use super::create::{
    create_cred, finish_create, may_change_entries, verifier_matches, verifier_of, verifier_times,
};
use super::{
    cur_export, err, name_of, not_regular, MAX_FILE_SIZE, O_CLOSED, O_SHARE_BITS, O_TRUNC,
};
use crate::export::fs;
use crate::ffi;
use crate::handle::{fill_attrs, from_obj, new_handle};
use crate::state::{self, change_share, check_stateless, fd_of};
use crate::{eng, guard, guard_with, maybe_test_panic, FResult};
use std::ffi::c_char;
use strata_engine::{CreateMode, SetAttr, SetTime};

/// Closes the "global fd" of a stateless open (NFSv3 CREATE). There is no real descriptor;
/// Ganesha only counts them, so answer NOT_OPENED unless a stateless open was recorded.
pub(super) unsafe extern "C" fn close(obj: *mut ffi::fsal_obj_handle) -> ffi::fsal_status_t {
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

/// Takes (or changes) the share reservation and engine open of `state` on `h`. Returns the
/// previous (flags, engine_open) so a failed open can be undone.
pub(super) fn take_open(
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
pub(super) fn undo_open(
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
pub(super) unsafe extern "C" fn open2(
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

pub(super) unsafe extern "C" fn status2(
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

pub(super) unsafe extern "C" fn reopen2(
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

pub(super) unsafe extern "C" fn close2(
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
pub(super) fn io_share_check(
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
