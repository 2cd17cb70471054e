//! Extended attributes: Ganesha's RFC 8276 operations (NFSv4.2 GETXATTR, SETXATTR,
//! LISTXATTRS, REMOVEXATTR) on the engine's attributes. Ganesha's core checks no permission
//! for them: reading or listing needs read permission on the object, changing needs write
//! permission (as Linux asks for `user.` attributes).
//!
//! Ganesha calls `getxattrs` with a 1024-byte buffer first; a longer value answers
//! `ERR_FSAL_XATTR2BIG`, then Ganesha asks for the length (a null buffer) and calls again with
//! a buffer of that length. `listxattrs` gets a byte budget for the names (4 bytes of length
//! each plus the name padded to 4) and a cookie: ours is the number of names already returned,
//! in byte order. A change is followed by an MDCACHE invalidation of the object (MDCACHE passes
//! these operations through and would show the old change attribute).

use super::err;
use crate::export::fs;
use crate::ffi;
use crate::handle::from_obj;
use crate::{eng, guard, FResult};
use std::ptr;
use strata_engine::XattrMode;

/// The bytes of an NFS string argument.
///
/// # Safety
/// `s` must be null or point to Ganesha's live `utf8string` for this call.
unsafe fn bytes_of<'a>(s: *const ffi::utf8string) -> FResult<&'a [u8]> {
    if s.is_null() {
        return Err(err(ffi::ERR_FSAL_INVAL, libc::EINVAL));
    }
    // SAFETY: s is non-null and valid (caller).
    let s = unsafe { &*s };
    if s.utf8string_len == 0 {
        return Ok(&[]);
    }
    if s.utf8string_val.is_null() {
        return Err(err(ffi::ERR_FSAL_INVAL, libc::EINVAL));
    }
    // SAFETY: Ganesha's decoded string: utf8string_len bytes at utf8string_val, alive for the
    // call.
    Ok(unsafe {
        std::slice::from_raw_parts(s.utf8string_val as *const u8, s.utf8string_len as usize)
    })
}

/// `EXPORT_OPTION_MD_WRITE_ACCESS` (`nfs_exports.h`, a `#define` the bindings do not carry):
/// the export lets this client change metadata.
const EXPORT_MD_WRITE: u32 = 0x0000_0100;

/// Ganesha 4.3 checks no export permission for the xattr operations (their `exp_perm_flags`
/// are 0): a change on an export this client may only read is refused here (ROFS).
fn export_writable() -> FResult<()> {
    // SAFETY: strata_get_op_ctx returns Ganesha's thread-local request context or null; its
    // export_perms is plain data set up for this request.
    let options = unsafe {
        let ctx = ffi::strata_get_op_ctx();
        if ctx.is_null() {
            return Err(err(ffi::ERR_FSAL_SERVERFAULT, libc::EIO));
        }
        (*ctx).export_perms.options
    };
    if options & EXPORT_MD_WRITE == 0 {
        return Err(err(ffi::ERR_FSAL_ROFS, libc::EROFS));
    }
    Ok(())
}

/// The caller's permission `what` (FSAL_R_OK or FSAL_W_OK) on `obj`, by its mode bits.
fn allowed(obj: *mut ffi::fsal_obj_handle, what: u32) -> FResult<()> {
    // SAFETY: obj is our live handle for the whole call; fsal_test_access reads its attributes
    // through our getattrs and the live op_ctx's credentials; null out pointers are accepted.
    let st = unsafe {
        ffi::fsal_test_access(
            obj,
            what as ffi::fsal_accessflags_t,
            ptr::null_mut(),
            ptr::null_mut(),
            false,
        )
    };
    if st.major == ffi::ERR_FSAL_NO_ERROR {
        Ok(())
    } else {
        Err(st)
    }
}

pub(super) unsafe extern "C" fn getxattrs(
    obj: *mut ffi::fsal_obj_handle,
    name: *mut ffi::xattrkey4,
    value: *mut ffi::xattrvalue4,
) -> ffi::fsal_status_t {
    guard("getxattrs", || {
        let fs = fs()?;
        // SAFETY: obj is our live handle; name is Ganesha's argument.
        let (me, name) = unsafe { (from_obj(obj), bytes_of(name)?) };
        allowed(obj, ffi::FSAL_R_OK)?;
        let v = eng("getxattr", fs.getxattr(me.h, name))?;
        if value.is_null() {
            return Err(err(ffi::ERR_FSAL_INVAL, libc::EINVAL));
        }
        // SAFETY: value is Ganesha's result descriptor for this call.
        let out = unsafe { &mut *value };
        let len = u32::try_from(v.len()).map_err(|_| err(ffi::ERR_FSAL_XATTR2BIG, libc::E2BIG))?;
        if out.utf8string_val.is_null() {
            // The length query.
            out.utf8string_len = len;
            return Ok(());
        }
        if v.len() > out.utf8string_len as usize {
            return Err(err(ffi::ERR_FSAL_XATTR2BIG, libc::ERANGE));
        }
        // SAFETY: the buffer holds utf8string_len >= v.len() bytes (Ganesha allocated it).
        unsafe { ptr::copy_nonoverlapping(v.as_ptr(), out.utf8string_val as *mut u8, v.len()) };
        out.utf8string_len = len;
        Ok(())
    })
}

pub(super) unsafe extern "C" fn setxattrs(
    obj: *mut ffi::fsal_obj_handle,
    option: ffi::setxattr_option4,
    name: *mut ffi::xattrkey4,
    value: *mut ffi::xattrvalue4,
) -> ffi::fsal_status_t {
    guard("setxattrs", || {
        let fs = fs()?;
        let how = match option {
            ffi::SETXATTR4_EITHER => XattrMode::Either,
            ffi::SETXATTR4_CREATE => XattrMode::Create,
            ffi::SETXATTR4_REPLACE => XattrMode::Replace,
            _ => return Err(err(ffi::ERR_FSAL_INVAL, libc::EINVAL)),
        };
        // SAFETY: obj is our live handle; name and value are Ganesha's arguments.
        let (me, name, value) = unsafe { (from_obj(obj), bytes_of(name)?, bytes_of(value)?) };
        export_writable()?;
        allowed(obj, ffi::FSAL_W_OK)?;
        eng("setxattr", fs.setxattr(me.h, name, value, how))?;
        // MDCACHE passes SETXATTR through without refreshing the attributes it holds.
        crate::upcall::invalidate_attrs(me.h);
        Ok(())
    })
}

pub(super) unsafe extern "C" fn removexattrs(
    obj: *mut ffi::fsal_obj_handle,
    name: *mut ffi::xattrkey4,
) -> ffi::fsal_status_t {
    guard("removexattrs", || {
        let fs = fs()?;
        // SAFETY: obj is our live handle; name is Ganesha's argument.
        let (me, name) = unsafe { (from_obj(obj), bytes_of(name)?) };
        export_writable()?;
        allowed(obj, ffi::FSAL_W_OK)?;
        eng("removexattr", fs.removexattr(me.h, name))?;
        crate::upcall::invalidate_attrs(me.h);
        Ok(())
    })
}

/// Bytes a name takes in a LISTXATTRS reply: its length word and the name padded to 4.
fn listed_len(name: &[u8]) -> usize {
    4 + name.len().div_ceil(4) * 4
}

/// The names from `start` that fit `budget` bytes; `None` if not even the first one does.
pub(crate) fn page(names: &[Vec<u8>], start: usize, budget: usize) -> Option<&[Vec<u8>]> {
    let rest = names.get(start..).unwrap_or(&[]);
    let mut used = 0;
    let mut n = 0;
    for name in rest {
        used += listed_len(name);
        if used > budget {
            break;
        }
        n += 1;
    }
    if n == 0 && !rest.is_empty() {
        return None;
    }
    Some(&rest[..n])
}

pub(super) unsafe extern "C" fn listxattrs(
    obj: *mut ffi::fsal_obj_handle,
    maxcount: ffi::count4,
    cookie: *mut ffi::nfs_cookie4,
    eof: *mut ffi::bool_t,
    names: *mut ffi::xattrlist4,
) -> ffi::fsal_status_t {
    guard("listxattrs", || {
        let fs = fs()?;
        if cookie.is_null() || eof.is_null() || names.is_null() {
            return Err(err(ffi::ERR_FSAL_INVAL, libc::EINVAL));
        }
        // SAFETY: obj is our live handle; cookie is Ganesha's in/out argument.
        let (me, start) = unsafe { (from_obj(obj), *cookie) };
        allowed(obj, ffi::FSAL_R_OK)?;
        let all = eng("listxattrs", fs.listxattrs(me.h))?;
        let start = usize::try_from(start)
            .ok()
            .filter(|&s| s <= all.len())
            .ok_or_else(|| err(ffi::ERR_FSAL_BADCOOKIE, libc::EINVAL))?;
        // Ganesha's overhead leaves out the names array's own length word.
        let budget = (maxcount as usize).saturating_sub(4);
        let got =
            page(&all, start, budget).ok_or_else(|| err(ffi::ERR_FSAL_TOOSMALL, libc::ERANGE))?;
        let entries = alloc_entries(got)?;
        // SAFETY: Ganesha's out arguments for this call; it frees every entry's bytes and the
        // array with gsh_free (free) after encoding the reply.
        unsafe {
            (*names).xl4_count = got.len() as ffi::count4;
            (*names).xl4_entries = entries;
            *cookie = (start + got.len()) as ffi::nfs_cookie4;
            *eof = ffi::bool_t::from(start + got.len() == all.len());
        }
        Ok(())
    })
}

/// A malloc'ed array of malloc'ed names, as Ganesha frees them (null when empty).
fn alloc_entries(got: &[Vec<u8>]) -> FResult<*mut ffi::xattrkey4> {
    if got.is_empty() {
        return Ok(ptr::null_mut());
    }
    let nomem = || err(ffi::ERR_FSAL_NOMEM, libc::ENOMEM);
    // SAFETY: calloc of got.len() zeroed entries (a zeroed utf8string is empty).
    let arr = unsafe { libc::calloc(got.len(), std::mem::size_of::<ffi::xattrkey4>()) }
        as *mut ffi::xattrkey4;
    if arr.is_null() {
        return Err(nomem());
    }
    for (i, n) in got.iter().enumerate() {
        // SAFETY: malloc of at least one byte; filled with n below.
        let p = unsafe { libc::malloc(n.len().max(1)) } as *mut u8;
        if p.is_null() {
            // SAFETY: the entries before i were malloc'ed here and the array calloc'ed.
            unsafe {
                for j in 0..i {
                    libc::free((*arr.add(j)).utf8string_val as *mut libc::c_void);
                }
                libc::free(arr as *mut libc::c_void);
            }
            return Err(nomem());
        }
        // SAFETY: p holds n.len() bytes; arr has got.len() entries.
        unsafe {
            ptr::copy_nonoverlapping(n.as_ptr(), p, n.len());
            (*arr.add(i)).utf8string_len = n.len() as u32;
            (*arr.add(i)).utf8string_val = p as *mut libc::c_char;
        }
    }
    Ok(arr)
}

#[cfg(test)]
mod tests {
    use super::page;

    #[test]
    fn pages_fit_the_budget_and_refuse_a_budget_too_small_for_one_name() {
        let names: Vec<Vec<u8>> = vec![b"a".to_vec(), b"bbbbb".to_vec(), b"cc".to_vec()];
        // 8 + 12 + 8 bytes.
        assert_eq!(page(&names, 0, 28).map(|p| p.len()), Some(3));
        assert_eq!(page(&names, 0, 27).map(|p| p.len()), Some(2));
        assert_eq!(page(&names, 1, 12).map(|p| p.len()), Some(1));
        assert_eq!(page(&names, 1, 11), None);
        assert_eq!(page(&names, 3, 0).map(|p| p.len()), Some(0));
        assert_eq!(page(&[], 0, 0).map(|p| p.len()), Some(0));
    }
}
