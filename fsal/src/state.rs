//! NFSv4 open state and share reservations.
//!
//! `alloc_state` allocates Ganesha's `state_t` followed by our per-state data ([`StateFd`]).
//! Share reservation counters (`struct fsal_share`) live per inode in [`SHARES`], not per
//! handle: MDCACHE may hold several of our handle objects for one inode over time, and a
//! deny must hold against all of them. Ganesha's own `check_share_conflict` and
//! `update_share_counters` do the arithmetic, under our lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::LazyLock;

use parking_lot::Mutex;
use strata_engine::Ino;

use crate::ffi;
use crate::FResult;

/// Our data after each `state_t`.
#[repr(C)]
pub(crate) struct StateFd {
    /// Ganesha's generic fd: the open and deny flags of this state (FSAL_O_CLOSED when not open).
    pub fd: ffi::fsal_fd,
    /// The engine's open count was taken for this state (NFSv4 OPEN -> engine.open_file).
    pub engine_open: bool,
}

/// `state_t` followed by our data; what `alloc_state` returns.
#[repr(C)]
pub(crate) struct StrataState {
    /// Ganesha's part; must stay first.
    pub state: ffi::state_t,
    /// Ours.
    pub fd: StateFd,
}

/// Share counters per inode. An entry with all counters at zero is removed.
static SHARES: LazyLock<Mutex<HashMap<Ino, ffi::fsal_share>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
/// How many inodes [`SHARES`] holds (written under its lock): while none, a stateless I/O
/// needs no lock at all (every NFSv3 READ and WRITE checks).
static SHARED_INODES: AtomicUsize = AtomicUsize::new(0);

fn zero_share() -> ffi::fsal_share {
    ffi::fsal_share {
        share_access_read: 0,
        share_access_write: 0,
        share_deny_read: 0,
        share_deny_write: 0,
        share_deny_write_mand: 0,
    }
}

fn is_zero(s: &ffi::fsal_share) -> bool {
    s.share_access_read == 0
        && s.share_access_write == 0
        && s.share_deny_read == 0
        && s.share_deny_write == 0
        && s.share_deny_write_mand == 0
}

fn check(share: &mut ffi::fsal_share, flags: ffi::fsal_openflags_t, bypass: bool) -> FResult<()> {
    // SAFETY: check_share_conflict only reads the counters of a valid fsal_share.
    let s = unsafe { ffi::check_share_conflict(share, flags, bypass) };
    if s.major == ffi::ERR_FSAL_NO_ERROR {
        Ok(())
    } else {
        Err(s)
    }
}

fn update(share: &mut ffi::fsal_share, old: ffi::fsal_openflags_t, new: ffi::fsal_openflags_t) {
    // SAFETY: update_share_counters adjusts the counters of a valid fsal_share in place.
    unsafe { ffi::update_share_counters(share, old, new) }
}

/// Replaces a state's share `old` by `new` on inode `ino`, atomically; on conflict nothing
/// changes. The rules (RFC 7530 §9.9/§16.16, as pynfs OPEN21/25/30 test them):
/// - a new open or an upgrade (Ganesha passes the union of old and requested flags) must not
///   conflict with any reservation, the state's own included: an OPEN for READ by the owner
///   of a DENY_READ open is denied;
/// - a downgrade (`new` a strict subset of `old`) only gives up bits, so it is checked
///   against the other states' reservations only, and can never fail on its own deny bits.
pub(crate) fn change_share(
    ino: Ino,
    old: ffi::fsal_openflags_t,
    new: ffi::fsal_openflags_t,
) -> FResult<()> {
    let closed = ffi::FSAL_O_CLOSED as ffi::fsal_openflags_t;
    let downgrade = new != old && new & !old == 0;
    let mut map = SHARES.lock();
    let share = map.entry(ino).or_insert_with(zero_share);
    let res = if new == closed {
        Ok(())
    } else if downgrade {
        update(share, old, closed);
        let r = check(share, new, false);
        update(share, closed, old);
        r
    } else {
        check(share, new, false)
    };
    if res.is_ok() {
        update(share, old, new);
    }
    if is_zero(share) {
        map.remove(&ino);
    }
    SHARED_INODES.store(map.len(), Ordering::Release);
    res
}

/// A transient check for an operation without a state (NFSv3 I/O, stateless setattr of the
/// size): fails with SHARE_DENIED when an open's deny bits forbid `flags`.
pub(crate) fn check_stateless(ino: Ino, flags: ffi::fsal_openflags_t, bypass: bool) -> FResult<()> {
    if SHARED_INODES.load(Ordering::Acquire) == 0 {
        return Ok(());
    }
    let mut map = SHARES.lock();
    match map.get_mut(&ino) {
        None => Ok(()),
        Some(share) => check(share, flags, bypass),
    }
}

/// The share counters of an inode (tests and debugging).
#[cfg(test)]
pub(crate) fn share_of(ino: Ino) -> Option<ffi::fsal_share> {
    SHARES.lock().get(&ino).copied()
}

/// Our data behind a Ganesha state pointer.
///
/// # Safety
/// `state` must come from [`alloc_state`] and be live.
pub(crate) unsafe fn fd_of<'a>(state: *mut ffi::state_t) -> &'a mut StateFd {
    // SAFETY: state is the first field of a live StrataState (caller).
    unsafe { &mut (*(state as *mut StrataState)).fd }
}

/// export_ops.alloc_state: `state_t` + [`StateFd`], zeroed, with Ganesha's init_state rules.
pub(crate) unsafe extern "C" fn alloc_state(
    _exp: *mut ffi::fsal_export,
    state_type: ffi::state_type,
    related_state: *mut ffi::state_t,
) -> *mut ffi::state_t {
    // No guard: nothing here can panic except allocation failure, which aborts anyway.
    // SAFETY: state_t is a C struct for which all-zero is the state Ganesha expects from
    // gsh_calloc; StateFd is plain data.
    let b: Box<StrataState> = Box::new(unsafe { std::mem::zeroed() });
    let p = Box::into_raw(b);
    // SAFETY: p is a fresh, valid StrataState; related_state, when non-null, is a live state
    // whose stateid_other Ganesha asks us to copy (init_state in fsal_commonlib.h).
    unsafe {
        (*p).state.state_type = state_type;
        if !related_state.is_null() {
            (*p).state.state_data.lock.openstate_key = (*related_state).stateid_other;
        }
        (*p).fd.fd.openflags = ffi::FSAL_O_CLOSED as ffi::fsal_openflags_t;
        std::ptr::addr_of_mut!((*p).state)
    }
}

/// export_ops.free_state.
pub(crate) unsafe extern "C" fn free_state(_exp: *mut ffi::fsal_export, state: *mut ffi::state_t) {
    if state.is_null() {
        return;
    }
    // SAFETY: state came from alloc_state (Box<StrataState>) and Ganesha frees it once.
    unsafe { drop(Box::from_raw(state as *mut StrataState)) }
}

/// Inodes with a stateless open (NFSv3 CREATE) that Ganesha counts as an open global fd
/// until it calls `close`.
static GLOBAL_OPEN: LazyLock<Mutex<std::collections::HashSet<Ino>>> =
    LazyLock::new(|| Mutex::new(std::collections::HashSet::new()));

/// Records a stateless open of `ino`.
pub(crate) fn set_global_open(ino: Ino) {
    GLOBAL_OPEN.lock().insert(ino);
}

/// Forgets the stateless open of `ino`; returns whether there was one.
pub(crate) fn take_global_open(ino: Ino) -> bool {
    GLOBAL_OPEN.lock().remove(&ino)
}
