//! Memory hints for walks over keys in ranked order.
//!
//! A plan hands keys out best first, which is random in key-id order: each
//! key's record, plan and bytes sit on cache lines of their own in arrays
//! far larger than the caches. Asking for a key's lines a few keys before
//! it is reached lets those loads overlap instead of waiting one by one,
//! and backing those arrays with huge pages ([`huge_pages`]) spares each
//! load a page-table walk. A hint changes no value; where the processor or
//! the kernel has none it does nothing.

/// How many keys ahead of the one being worked on a walk asks for its
/// lines: far enough that a miss (about 100 ns) ends before the key is
/// reached, near enough that the lines are not pushed out again first.
pub const AHEAD: usize = 16;

/// Asks for the cache line holding `slice[index]` (nothing past the end).
#[inline(always)]
pub fn element<T>(slice: &[T], index: usize) {
    if let Some(value) = slice.get(index) {
        line(value);
    }
}

/// Asks for the cache line holding `value`.
#[inline(always)]
pub fn line<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch reads nothing and faults on no address; SSE is
        // part of every x86-64 processor.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(value).cast::<i8>()) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// Buffers smaller than this keep ordinary pages (a system call saves
/// nothing on them).
const HUGE_PAGES_FROM_BYTES: usize = 4 << 20;

/// Asks the kernel to back `vec`'s buffer with 2 MiB pages where it can
/// (Linux's transparent huge pages, which most systems give on request).
/// A walk in ranked order reaches a new 4 KiB page with nearly every key,
/// in each of the arrays it reads: besides the cache miss, each costs a
/// page-table walk that a prefetch waits for, longer still under a
/// hypervisor. Changes no value; elsewhere, or when refused, nothing
/// happens. Pages the buffer already touched stay small until the kernel
/// gets to them, so ask before filling it.
pub fn huge_pages<T>(vec: &Vec<T>) {
    let bytes = vec.capacity() * std::mem::size_of::<T>();
    if bytes < HUGE_PAGES_FROM_BYTES {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        let start = vec.as_ptr() as usize;
        let aligned = start.next_multiple_of(PAGE);
        let length = (start + bytes).saturating_sub(aligned) / PAGE * PAGE;
        // SAFETY: the range lies inside the vector's own allocation, and
        // MADV_HUGEPAGE changes how it is backed, not what it holds.
        unsafe {
            libc::madvise(aligned as *mut libc::c_void, length, libc::MADV_HUGEPAGE);
        }
    }
}

/// [`huge_pages`] again if `vec` was given a new buffer since its
/// capacity was `capacity_before` (a vector that grows moves).
pub fn huge_pages_if_grown<T>(vec: &Vec<T>, capacity_before: usize) {
    if vec.capacity() != capacity_before {
        huge_pages(vec);
    }
}
