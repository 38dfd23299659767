//! The guest side of the ABI, used by [`crate::export_policy!`]: buffers,
//! the configured policy instance, and turning raw addresses into a
//! [`Batch`] and [`Decisions`]. A WebAssembly instance runs one thread, so
//! the statics here are never shared between threads.

use core::cell::UnsafeCell;

use crate::abi::{self, header};
use crate::{Batch, Config, Decisions, Policy, Strings};

/// Holds one value per instance.
pub struct Slot<T>(UnsafeCell<Option<T>>);

// SAFETY: a WebAssembly instance is single-threaded; the host never calls
// into one instance from two threads at once. The argument holds only on
// wasm32 (without the threads proposal): the module is built for it alone.
unsafe impl<T> Sync for Slot<T> {}

impl<T> Slot<T> {
    pub const fn new() -> Self {
        Slot(UnsafeCell::new(None))
    }

    #[allow(clippy::mut_from_ref)]
    fn get(&self) -> &mut Option<T> {
        // SAFETY: single-threaded, and no reference outlives one export call.
        unsafe { &mut *self.0.get() }
    }
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self::new()
    }
}

static BUFFER: Slot<Vec<u64>> = Slot::new();
static MESSAGE: Slot<String> = Slot::new();

fn set_message(message: String) {
    *MESSAGE.get() = Some(message);
}

pub fn error_message() -> i64 {
    match MESSAGE.get() {
        Some(message) => ((message.as_ptr() as i64) << 32) | message.len() as i64,
        None => 0,
    }
}

pub fn alloc(size: i32) -> i32 {
    let words = (size.max(0) as usize).div_ceil(8);
    let buffer = BUFFER.get().get_or_insert_with(Vec::new);
    if buffer.len() < words {
        buffer.resize(words, 0);
    }
    buffer.as_mut_ptr() as i32
}

fn record_panics() {
    std::panic::set_hook(Box::new(|info| {
        set_message(format!("policy panicked: {info}"))
    }));
}

pub fn configure<P: Policy>(slot: &Slot<P>, ptr: i32, len: i32) -> i32 {
    record_panics();
    let blob: &[u8] = if ptr == 0 || len <= 0 {
        // No configuration: a null pointer may not back even an empty slice.
        &[]
    } else {
        // SAFETY: the host wrote `len` bytes at `ptr` in this instance's memory.
        unsafe { core::slice::from_raw_parts(ptr as usize as *const u8, len as usize) }
    };
    match Config::parse(blob).and_then(|config| P::configure(&config)) {
        Ok(policy) => {
            *slot.get() = Some(policy);
            0
        }
        Err(message) => {
            set_message(message);
            -1
        }
    }
}

/// Reads a `u32` field of the header at `base`.
unsafe fn field(base: usize, offset: usize) -> u32 {
    // SAFETY: the caller passes the host's header address.
    unsafe { ((base + offset) as *const u32).read() }
}

/// A column of `len` values at the address in header field `offset`, if supplied.
unsafe fn column<'a, T>(base: usize, offset: usize, len: usize) -> Option<&'a [T]> {
    // SAFETY: the host wrote `len` values of `T` at the address it gives.
    match unsafe { field(base, offset) } {
        0 => None,
        address => Some(unsafe { core::slice::from_raw_parts(address as usize as *const T, len) }),
    }
}

unsafe fn output<'a, T>(base: usize, offset: usize, len: usize) -> &'a mut [T] {
    // SAFETY: the host reserved `len` values of `T` for this output.
    unsafe { core::slice::from_raw_parts_mut(field(base, offset) as usize as *mut T, len) }
}

unsafe fn strings<'a>(base: usize, offsets: usize, bytes: usize, count: usize) -> Strings<'a> {
    // SAFETY: offsets has count + 1 entries; bytes runs to the last offset.
    unsafe {
        match column::<u32>(base, offsets, count + 1) {
            Some(offsets) => {
                let end = offsets[count] as usize;
                Strings {
                    offsets,
                    bytes: column(base, bytes, end).unwrap_or(&[]),
                }
            }
            None => Strings::default(),
        }
    }
}

pub fn decide<P: Policy>(slot: &Slot<P>, batch: i32) -> i32 {
    if slot.get().is_none() && configure(slot, 0, 0) != 0 {
        return -1;
    }
    let policy = slot.get().as_mut().expect("configured above");
    let base = batch as usize;
    // SAFETY: the host laid the batch out as `abi::header` describes.
    unsafe {
        let len = field(base, header::COUNT) as usize;
        let mut features = [None; abi::FEATURE_NAMES.len()];
        let feature_count = (field(base, header::FEATURE_COUNT) as usize).min(features.len());
        for (i, feature) in features.iter_mut().enumerate().take(feature_count) {
            *feature = column(base, header::FEATURES + 4 * i, len);
        }
        let view = Batch {
            len,
            now_us: ((base + header::NOW_US) as *const i64).read(),
            size_bytes: column(base, header::SIZE_BYTES, len),
            hot: column(base, header::HOT, len),
            churn: column(base, header::CHURN, len),
            expected_accesses: column(base, header::EXPECTED_ACCESSES, len),
            table_ids: column(base, header::TABLE_IDS, len),
            table_names: strings(
                base,
                header::TABLE_NAMES_OFFSETS,
                header::TABLE_NAMES_BYTES,
                field(base, header::TABLE_NAMES_COUNT) as usize,
            ),
            tenant_ids: column(base, header::TENANT_IDS, len),
            tenant_names: strings(
                base,
                header::TENANT_NAMES_OFFSETS,
                header::TENANT_NAMES_BYTES,
                field(base, header::TENANT_NAMES_COUNT) as usize,
            ),
            keys: column::<u32>(base, header::KEY_OFFSETS, len + 1)
                .map(|_| strings(base, header::KEY_OFFSETS, header::KEY_BYTES, len)),
            features,
        };
        let mut out = Decisions {
            weight: output(base, header::WEIGHT, len),
            priority: output(base, header::PRIORITY, len),
            not_before_us: output(base, header::NOT_BEFORE, len),
            destination: output(base, header::DESTINATION, len),
        };
        policy.decide(&view, &mut out);
        len as i32
    }
}
