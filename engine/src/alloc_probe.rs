//! Test-only: the unit-test binary's global allocator, a thin wrapper over the system one that
//! records the largest single allocation a thread makes while a probe is armed on it. Decoder
//! tests use it to prove that no length or count read from disk, the backend or the network
//! sizes an allocation beyond a fixed bound.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The recording allocator (installed in `lib.rs` for `cfg(test)` only).
pub(crate) struct Probe;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // try_with: allocations during thread teardown are simply not recorded.
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            let _ = LARGEST.try_with(|m| m.set(m.get().max(size)));
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; recording touches only
// const-initialised thread-locals without destructors, which never allocate.
unsafe impl GlobalAlloc for Probe {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Disarms the probe when `largest_allocation` returns or unwinds.
struct Disarm;

impl Drop for Disarm {
    fn drop(&mut self) {
        ARMED.with(|a| a.set(false));
    }
}

/// Runs `f` and returns its result with the largest single allocation (bytes) this thread
/// made during it.
pub(crate) fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|m| m.set(0));
    ARMED.with(|a| a.set(true));
    let guard = Disarm;
    let out = f();
    drop(guard);
    (out, LARGEST.with(|m| m.get()))
}

/// The bound every decoder keeps: a fixed 64 KiB plus four times its input.
pub(crate) fn decoder_bound(input_len: usize) -> usize {
    (64 << 10) + 4 * input_len
}

#[test]
fn the_probe_sees_a_large_allocation_and_only_while_armed() {
    let (v, largest) = largest_allocation(|| vec![1u8; 3 << 20]);
    assert!(largest >= 3 << 20, "{largest}");
    let (_, quiet) = largest_allocation(|| 1 + 1);
    assert_eq!(quiet, 0);
    drop(v);
}
