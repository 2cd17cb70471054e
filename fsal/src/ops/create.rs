//! What creating an entry needs: the caller's credentials and group membership, who may
//! change a directory's entries (sticky bit), and the exclusive-create verifier.

use super::{caller_cred, err, setattr_of};
use crate::export::fs;
use crate::ffi;
use crate::{eng, FResult};
use std::ffi::c_char;
use std::ptr;
use strata_engine::{Attr, Cred, SetAttr, Timestamp};

pub(super) fn is_empty(s: &SetAttr) -> bool {
    *s == SetAttr::default()
}

/// Ganesha's exclusive-create convention (set_common_verifier): the verifier's first four
/// bytes become atime seconds, the last four mtime seconds.
pub(super) fn verifier_times(v: &[u8; 8]) -> (Timestamp, Timestamp) {
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

pub(super) fn verifier_matches(a: &Attr, v: &[u8; 8]) -> bool {
    let (at, mt) = verifier_times(v);
    a.atime.secs == at.secs && a.mtime.secs == mt.secs
}

pub(super) fn verifier_of(p: *const c_char) -> [u8; 8] {
    let mut v = [0u8; 8];
    if !p.is_null() {
        // SAFETY: fsal_verifier_t is an 8-byte array; Ganesha passes a pointer to one.
        unsafe { ptr::copy_nonoverlapping(p as *const u8, v.as_mut_ptr(), 8) };
    }
    v
}

/// Applies the attributes of a create that the create call itself did not set.
pub(super) fn finish_create(h: strata_engine::Handle, attr: Attr, set: SetAttr) -> FResult<Attr> {
    if is_empty(&set) {
        return Ok(attr);
    }
    let fs = fs()?;
    eng("setattr after create", fs.setattr(h, &set))
}

/// Owner for a new object: the attributes Ganesha passed, else the caller. Only root may give
/// a new object another owner, or a group it is not a member of (EPERM, as chown would).
pub(super) fn create_cred(
    attrs_in: *const ffi::fsal_attrlist,
) -> FResult<(Cred, SetAttr, Option<u32>)> {
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
pub(super) fn caller_in_group(gid: u32) -> bool {
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
pub(super) fn may_change_entries(dir: *mut ffi::fsal_obj_handle) -> FResult<()> {
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
pub(super) fn sticky_allows(
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
