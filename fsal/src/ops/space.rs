//! NFSv4.2 space operations: fallocate (ALLOCATE and DEALLOCATE) and seek2 (SEEK).

use super::open::io_share_check;
use super::{err, not_regular, O_WRITE};
use crate::export::fs;
use crate::ffi;
use crate::handle::from_obj;
use crate::{eng, guard};
use strata_engine::SeekWhat;

/// ALLOCATE (`allocate`) reserves the range and grows the file over it; DEALLOCATE punches a
/// hole (reads as zeros, the size unchanged). Both are durable when they return. Ganesha
/// checked the stateid, the open's write access and the export's largest offset.
pub(super) unsafe extern "C" fn fallocate(
    obj: *mut ffi::fsal_obj_handle,
    state: *mut ffi::state_t,
    offset: u64,
    length: u64,
    allocate: bool,
) -> ffi::fsal_status_t {
    guard("fallocate", || {
        let fs = fs()?;
        // SAFETY: obj is our live handle.
        let me = unsafe { from_obj(obj) };
        not_regular(me.kind)?;
        if offset
            .checked_add(length)
            .is_none_or(|e| e > super::MAX_FILE_SIZE)
        {
            return Err(err(ffi::ERR_FSAL_FBIG, libc::EFBIG));
        }
        io_share_check(me.h.ino, state, O_WRITE, false)?;
        if allocate {
            eng("allocate", fs.allocate(me.h, offset, length))
        } else {
            eng("deallocate", fs.deallocate(me.h, offset, length))
        }
    })
}

/// SEEK for data or a hole from `info`'s offset: the answer goes back in the same field with
/// `io_eof`. An offset at or past the end is an error (Ganesha answers NFS4ERR_NXIO); other
/// kinds of content (application data blocks) are not supported.
pub(super) unsafe extern "C" fn seek2(
    obj: *mut ffi::fsal_obj_handle,
    _state: *mut ffi::state_t,
    info: *mut ffi::io_info,
) -> ffi::fsal_status_t {
    guard("seek2", || {
        let fs = fs()?;
        // SAFETY: obj is our live handle.
        let me = unsafe { from_obj(obj) };
        not_regular(me.kind)?;
        // SAFETY: info is Ganesha's argument for this call, valid until it returns.
        let info = unsafe { &mut *info };
        let what = match info.io_content.what {
            ffi::NFS4_CONTENT_DATA => SeekWhat::Data,
            ffi::NFS4_CONTENT_HOLE => SeekWhat::Hole,
            _ => return Err(err(ffi::ERR_FSAL_NOTSUPP, libc::ENOTSUP)),
        };
        // SAFETY: for DATA and HOLE, Ganesha set the `hole` member's offset.
        let offset = unsafe { info.io_content.__bindgen_anon_1.hole.di_offset };
        match eng("seek", fs.seek(me.h, offset, what))? {
            None => Err(err(ffi::ERR_FSAL_NXIO, libc::ENXIO)),
            Some(found) => {
                info.io_content.__bindgen_anon_1.hole.di_offset = found.offset;
                info.io_eof = found.eof.into();
                Ok(())
            }
        }
    })
}
