//! Write a shadowcast migration policy as a plain Rust type.
//!
//! A policy sees a batch of candidate keys — columns of model scores,
//! features and metadata it asked for in [`Policy::COLUMNS`] — and writes,
//! for every key, a weight (0 excludes the key) and optional scheduling
//! hints. [`export_policy!`] turns the type into a WebAssembly module that
//! speaks the host's ABI ([`abi`], documented in `policies/ABI.md`):
//!
//! ```ignore
//! use shadowcast_policy::{Batch, Column, Config, Decisions, Policy, export_policy};
//!
//! struct FavourSmallRows;
//!
//! impl Policy for FavourSmallRows {
//!     const COLUMNS: &'static [Column] = &[Column::SIZE_BYTES];
//!     fn configure(_: &Config) -> Result<Self, String> { Ok(FavourSmallRows) }
//!     fn decide(&mut self, batch: &Batch, out: &mut Decisions) {
//!         for (i, size) in batch.size_bytes().iter().enumerate() {
//!             out.weight[i] = 1.0 / (1.0 + *size as f64 / 4096.0);
//!         }
//!     }
//! }
//!
//! export_policy!(FavourSmallRows);
//! ```
//!
//! Build with `cargo build --release --target wasm32-unknown-unknown` and a
//! `crate-type = ["cdylib"]` library. The same type also runs natively over
//! a [`Batch`] built from slices, which is how its cost is compared.

pub mod abi;
mod config;
#[doc(hidden)]
#[cfg(target_arch = "wasm32")]
pub mod guest;

pub use abi::{Column, Feature, priority};
pub use config::Config;

/// A read-only view of one batch of candidate keys.
#[derive(Clone, Copy, Debug, Default)]
pub struct Batch<'a> {
    pub len: usize,
    /// The current time, microseconds since the Unix epoch (UTC).
    pub now_us: i64,
    pub size_bytes: Option<&'a [u64]>,
    pub hot: Option<&'a [f64]>,
    pub churn: Option<&'a [f64]>,
    pub expected_accesses: Option<&'a [f64]>,
    pub table_ids: Option<&'a [u32]>,
    pub table_names: Strings<'a>,
    pub tenant_ids: Option<&'a [u32]>,
    pub tenant_names: Strings<'a>,
    pub keys: Option<Strings<'a>>,
    /// One entry per feature of [`abi::FEATURE_NAMES`]; `None` when not asked for.
    pub features: [Option<&'a [f64]>; abi::FEATURE_NAMES.len()],
}

/// A column of byte strings: `offsets` has one more entry than there are strings.
#[derive(Clone, Copy, Debug, Default)]
pub struct Strings<'a> {
    pub offsets: &'a [u32],
    pub bytes: &'a [u8],
}

impl<'a> Strings<'a> {
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, index: usize) -> &'a [u8] {
        &self.bytes[self.offsets[index] as usize..self.offsets[index + 1] as usize]
    }

    /// The string at `index` as text (lossy only for invalid UTF-8, which
    /// table and tenant names never are).
    pub fn text(&self, index: usize) -> &'a str {
        core::str::from_utf8(self.get(index)).unwrap_or("")
    }

    /// The index of `name`, if present.
    pub fn position(&self, name: &str) -> Option<u32> {
        (0..self.len())
            .find(|&i| self.get(i) == name.as_bytes())
            .map(|i| i as u32)
    }
}

fn requested<'a, T>(column: Option<&'a [T]>, name: &str) -> &'a [T] {
    column.unwrap_or_else(|| panic!("column `{name}` was not asked for in Policy::COLUMNS"))
}

impl<'a> Batch<'a> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn size_bytes(&self) -> &'a [u64] {
        requested(self.size_bytes, "size_bytes")
    }

    pub fn hot(&self) -> &'a [f64] {
        requested(self.hot, "hot")
    }

    pub fn churn(&self) -> &'a [f64] {
        requested(self.churn, "churn")
    }

    pub fn expected_accesses(&self) -> &'a [f64] {
        requested(self.expected_accesses, "expected_accesses")
    }

    pub fn table_ids(&self) -> &'a [u32] {
        requested(self.table_ids, "table")
    }

    /// The table of key `index`.
    pub fn table(&self, index: usize) -> &'a str {
        self.table_names.text(self.table_ids()[index] as usize)
    }

    /// The id `table` has in this batch, if any key of the batch is in it:
    /// compare ids, not names, in per-key loops.
    pub fn table_id(&self, table: &str) -> Option<u32> {
        self.table_names.position(table)
    }

    pub fn tenant_ids(&self) -> &'a [u32] {
        requested(self.tenant_ids, "tenant")
    }

    /// The tenant of key `index`, if it has one.
    pub fn tenant(&self, index: usize) -> Option<&'a str> {
        match self.tenant_ids()[index] {
            abi::NO_TENANT => None,
            id => Some(self.tenant_names.text(id as usize)),
        }
    }

    pub fn tenant_id(&self, tenant: &str) -> Option<u32> {
        self.tenant_names.position(tenant)
    }

    /// The bytes of key `index`.
    pub fn key(&self, index: usize) -> &'a [u8] {
        self.keys
            .unwrap_or_else(|| panic!("column `key` was not asked for in Policy::COLUMNS"))
            .get(index)
    }

    pub fn feature(&self, feature: Feature) -> &'a [f64] {
        requested(self.features[feature as usize], feature.name())
    }
}

/// What a policy writes, one entry per key of the batch. The host fills in
/// the defaults before the call (weight NaN, so an unset weight is caught;
/// priority [`priority::NORMAL`]; no earliest time; any destination).
#[derive(Debug)]
pub struct Decisions<'a> {
    /// ≥ 0 and finite; 0 excludes the key. Scales the key's benefit when
    /// ranking and sampling.
    pub weight: &'a mut [f64],
    /// One of [`priority`]'s classes (0–3); higher moves first.
    pub priority: &'a mut [u32],
    /// The earliest time the key may move, µs since the Unix epoch; 0 = any time.
    pub not_before_us: &'a mut [i64],
    /// Preferred destination partition or tier; [`abi::ANY_DESTINATION`] = no preference.
    pub destination: &'a mut [u32],
}

/// A migration policy.
pub trait Policy: Sized {
    /// The input columns [`Policy::decide`] reads; the host supplies only these.
    const COLUMNS: &'static [Column];

    /// Builds the policy from the configuration given at load time (empty
    /// when none was given). An `Err` refuses the load with its message.
    fn configure(config: &Config) -> Result<Self, String>;

    /// Writes a decision for every key of `batch` into `out`.
    fn decide(&mut self, batch: &Batch, out: &mut Decisions);
}

/// Exports `$policy` (a [`Policy`]) under the ABI's names. The exports
/// exist in wasm32 builds only: natively (a benchmark or a test calling the
/// policy's code directly) the crate is a plain library.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        #[cfg(target_arch = "wasm32")]
        mod shadowcast_policy_exports {
            use super::*;

            static SHADOWCAST_POLICY: $crate::guest::Slot<$policy> = $crate::guest::Slot::new();

            #[unsafe(no_mangle)]
            pub extern "C" fn shadowcast_abi_version() -> i32 {
                $crate::abi::VERSION as i32
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn shadowcast_columns() -> i64 {
                $crate::abi::mask(<$policy as $crate::Policy>::COLUMNS) as i64
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn shadowcast_alloc(size: i32) -> i32 {
                $crate::guest::alloc(size)
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn shadowcast_configure(ptr: i32, len: i32) -> i32 {
                $crate::guest::configure(&SHADOWCAST_POLICY, ptr, len)
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn shadowcast_decide(batch: i32) -> i32 {
                $crate::guest::decide(&SHADOWCAST_POLICY, batch)
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn shadowcast_error_message() -> i64 {
                $crate::guest::error_message()
            }
        }
    };
}
