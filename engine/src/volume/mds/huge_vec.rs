//! A vector of fixed capacity in memory aligned to, and advised for, transparent huge pages:
//! the map cache's slots (`map_cache.rs`), looked up at random by every READ, where 4 KiB
//! pages would cost a TLB miss (a two-level page walk in a virtual machine) on top of the
//! cache miss. Its memory is taken from the allocator once and touched only as elements are
//! pushed, so it costs what it holds, rounded up to a huge page.

use std::alloc::Layout;
use std::ptr::NonNull;

/// The size of a transparent huge page (x86-64, and arm64 with 4 KiB pages).
const HUGE_PAGE: usize = 2 << 20;

/// At most `cap` elements, never moved (no reallocation).
pub(super) struct HugeVec<T> {
    ptr: NonNull<T>,
    len: usize,
    cap: usize,
    /// The allocation (none for a capacity of 0).
    layout: Option<Layout>,
}

// SAFETY: a HugeVec owns its elements like a Vec does; sending or sharing it sends or shares
// them.
unsafe impl<T: Send> Send for HugeVec<T> {}
// SAFETY: as above; `&HugeVec` only gives out `&T`.
unsafe impl<T: Sync> Sync for HugeVec<T> {}

impl<T> HugeVec<T> {
    /// A vector that holds nothing (capacity 0).
    pub(super) fn empty() -> HugeVec<T> {
        HugeVec {
            ptr: NonNull::dangling(),
            len: 0,
            cap: 0,
            layout: None,
        }
    }

    /// An empty vector with room for `cap` elements; `None` when the memory cannot be had.
    pub(super) fn with_capacity(cap: usize) -> Option<HugeVec<T>> {
        if cap == 0 || std::mem::size_of::<T>() == 0 {
            return Some(HugeVec::empty());
        }
        let layout = Layout::array::<T>(cap)
            .ok()?
            .align_to(HUGE_PAGE)
            .ok()?
            .pad_to_align();
        // SAFETY: the layout's size is not zero (cap > 0, T not zero-sized).
        let raw = unsafe { std::alloc::alloc(layout) };
        let ptr = NonNull::new(raw.cast::<T>())?;
        // SAFETY: `raw..raw + size` is the allocation just made; MADV_HUGEPAGE only changes
        // how the kernel backs it, never its contents. A refusal leaves small pages.
        unsafe { libc::madvise(raw.cast(), layout.size(), libc::MADV_HUGEPAGE) };
        Some(HugeVec {
            ptr,
            len: 0,
            cap,
            layout: Some(layout),
        })
    }

    /// How many elements it can hold.
    pub(super) fn capacity(&self) -> usize {
        self.cap
    }

    /// Appends `v` and returns its index; gives it back when full.
    pub(super) fn push(&mut self, v: T) -> Result<usize, T> {
        if self.len == self.cap {
            return Err(v);
        }
        // SAFETY: `len < cap`: the slot is inside the allocation, uninitialised, and ours.
        unsafe { self.ptr.as_ptr().add(self.len).write(v) };
        self.len += 1;
        Ok(self.len - 1)
    }
}

impl<T> std::ops::Deref for HugeVec<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: the first `len` elements are initialised (`push`), and the pointer is
        // aligned and non-null (dangling only when `len` is 0).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> std::ops::DerefMut for HugeVec<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> Drop for HugeVec<T> {
    fn drop(&mut self) {
        // SAFETY: drops the `len` initialised elements exactly once.
        unsafe {
            std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(
                self.ptr.as_ptr(),
                self.len,
            ))
        };
        if let Some(layout) = self.layout {
            // SAFETY: allocated in `with_capacity` with this layout, and not freed before.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr().cast(), layout) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_holds_what_is_pushed_up_to_its_capacity_on_a_huge_page_boundary() {
        let mut v: HugeVec<String> = HugeVec::with_capacity(3).expect("memory");
        assert_eq!(v.as_ptr() as usize % HUGE_PAGE, 0);
        assert_eq!(v.push("a".into()), Ok(0));
        assert_eq!(v.push("b".into()), Ok(1));
        v[0].push('!');
        assert_eq!(v.push("c".into()), Ok(2));
        assert_eq!(v.push("d".into()), Err("d".to_string()), "full");
        assert_eq!(&v[..], ["a!", "b", "c"]);
        let mut none: HugeVec<u64> = HugeVec::with_capacity(0).expect("empty");
        assert_eq!(HugeVec::<u64>::empty().capacity(), 0);
        assert_eq!((none.capacity(), none.len()), (0, 0));
        assert_eq!(none.push(1), Err(1));
    }
}
