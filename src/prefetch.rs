//! Memory hints for walks over keys in ranked order.
//!
//! A plan hands keys out best first, which is random in key-id order: each
//! key's record, plan and bytes sit on cache lines of their own in arrays
//! far larger than the caches. Asking for a key's lines a few keys before
//! it is reached lets those loads overlap instead of waiting one by one.
//! A hint changes no value; on processors without one it does nothing.

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
