//! ABI version 1, as constants: the names of the exports, the byte layout of
//! the batch header, the input columns and the output conventions. The host
//! (shadowcast) and the guest (this SDK) both read them from here, so they
//! cannot drift apart; `policies/ABI.md` explains them in prose.

/// The ABI version this SDK and the host speak.
pub const VERSION: u32 = 1;

/// Export names.
pub mod export {
    /// `() -> i32`: the ABI version the module speaks.
    pub const ABI_VERSION: &str = "shadowcast_abi_version";
    /// `(size: i32) -> i32`: an 8-byte aligned region of at least `size`
    /// bytes, valid until the next call.
    pub const ALLOC: &str = "shadowcast_alloc";
    /// `(batch: i32) -> i32`: decisions written, or a negative error code.
    pub const DECIDE: &str = "shadowcast_decide";
    /// Optional `() -> i64`: bit mask of the input columns wanted (all when
    /// absent).
    pub const COLUMNS: &str = "shadowcast_columns";
    /// Optional `(ptr: i32, len: i32) -> i32`: configuration blob; 0 = accepted.
    pub const CONFIGURE: &str = "shadowcast_configure";
    /// Optional `() -> i64`: `ptr << 32 | len` of a UTF-8 message explaining
    /// the last failure (error code or trap).
    pub const ERROR_MESSAGE: &str = "shadowcast_error_message";
    /// The module's linear memory.
    pub const MEMORY: &str = "memory";
}

/// Byte offsets in the batch header. Every pointer is a `u32` address in
/// the guest's memory, 0 when the column was not supplied.
pub mod header {
    pub const ABI_VERSION: usize = 0;
    pub const COUNT: usize = 4;
    /// `i64`: the current time, microseconds since the Unix epoch (UTC).
    pub const NOW_US: usize = 8;
    /// `u64`: bit mask of the input columns supplied.
    pub const SUPPLIED: usize = 16;
    /// Outputs, each `count` long: `f64` weights, `u32` priority classes,
    /// `i64` earliest move times (µs), `u32` destinations.
    pub const WEIGHT: usize = 24;
    pub const PRIORITY: usize = 28;
    pub const NOT_BEFORE: usize = 32;
    pub const DESTINATION: usize = 36;
    /// Inputs.
    pub const SIZE_BYTES: usize = 40;
    pub const HOT: usize = 44;
    pub const CHURN: usize = 48;
    pub const EXPECTED_ACCESSES: usize = 52;
    pub const TABLE_IDS: usize = 56;
    pub const TABLE_NAMES_COUNT: usize = 60;
    pub const TABLE_NAMES_OFFSETS: usize = 64;
    pub const TABLE_NAMES_BYTES: usize = 68;
    pub const TENANT_IDS: usize = 72;
    pub const TENANT_NAMES_COUNT: usize = 76;
    pub const TENANT_NAMES_OFFSETS: usize = 80;
    pub const TENANT_NAMES_BYTES: usize = 84;
    pub const KEY_OFFSETS: usize = 88;
    pub const KEY_BYTES: usize = 92;
    pub const FEATURE_COUNT: usize = 96;
    /// `feature_count` pointers to `f64` columns, in [`super::FEATURE_NAMES`] order.
    pub const FEATURES: usize = 104;

    /// Header length for `feature_count` features, rounded up to 8 bytes.
    pub const fn len(feature_count: usize) -> usize {
        (FEATURES + 4 * feature_count).div_ceil(8) * 8
    }
}

/// An input column a policy can ask for; its bit in the column mask is its
/// number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column(pub u8);

impl Column {
    /// `u64`: the row's size in bytes.
    pub const SIZE_BYTES: Column = Column(0);
    /// `f64`: the model's probability that the key is hot in the horizon.
    pub const HOT: Column = Column(1);
    /// `f64`: the model's probability that the key churns in the horizon.
    pub const CHURN: Column = Column(2);
    /// `f64`: the model's expected accesses in the horizon.
    pub const EXPECTED_ACCESSES: Column = Column(3);
    /// `u32` ids into the batch's table-name dictionary.
    pub const TABLE: Column = Column(4);
    /// `u32` ids into the batch's tenant dictionary, [`NO_TENANT`] for none.
    pub const TENANT: Column = Column(5);
    /// The key's bytes (`u32` offsets, `count + 1` of them, then the bytes).
    pub const KEY: Column = Column(6);
    /// First feature column; feature `i` of [`FEATURE_NAMES`] is column `8 + i`.
    pub const FIRST_FEATURE: u8 = 8;

    /// The column of feature `feature`.
    pub const fn feature(feature: Feature) -> Column {
        Column(Self::FIRST_FEATURE + feature as u8)
    }

    pub const fn bit(self) -> u64 {
        1 << self.0
    }
}

/// The bit mask of `columns`.
pub const fn mask(columns: &[Column]) -> u64 {
    let mut bits = 0;
    let mut i = 0;
    while i < columns.len() {
        bits |= columns[i].bit();
        i += 1;
    }
    bits
}

/// Every column, as a mask.
pub const ALL_COLUMNS: u64 = {
    let features = (1u64 << FEATURE_NAMES.len()) - 1;
    0x7f | (features << Column::FIRST_FEATURE)
};

/// Tenant id of a key without a tenant.
pub const NO_TENANT: u32 = u32::MAX;

/// Priority classes: higher classes are scheduled first.
pub mod priority {
    /// Move after everything else (e.g. keys that will churn).
    pub const LAST: u32 = 0;
    /// The default.
    pub const NORMAL: u32 = 1;
    pub const EARLY: u32 = 2;
    pub const FIRST: u32 = 3;
}

/// Destination 0 means "no preference".
pub const ANY_DESTINATION: u32 = 0;

/// Names of the feature columns (shadowcast feature set `shadowcast.access`
/// version 1, every numeric feature), in column order.
pub const FEATURE_NAMES: [&str; 27] = [
    "first_seen_age_s",
    "events_1h",
    "events_6h",
    "events_24h",
    "events_7d",
    "reads_total",
    "writes_total",
    "reads_decay_1h",
    "reads_decay_6h",
    "reads_decay_24h",
    "writes_decay_1h",
    "writes_decay_6h",
    "writes_decay_24h",
    "secs_since_last_read",
    "secs_since_last_write",
    "read_share",
    "change_rate_per_h",
    "size_last",
    "size_max",
    "is_deleted",
    "tod_share_00_06",
    "tod_share_06_12",
    "tod_share_12_18",
    "tod_share_18_24",
    "tod_share_next_6h",
    "prefix_events_24h",
    "range_events_24h",
];

/// The features, by name; `feature as usize` indexes [`FEATURE_NAMES`].
/// Missing values (a key never written has no `secs_since_last_write`) are NaN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Feature {
    FirstSeenAgeS,
    Events1h,
    Events6h,
    Events24h,
    Events7d,
    ReadsTotal,
    WritesTotal,
    ReadsDecay1h,
    ReadsDecay6h,
    ReadsDecay24h,
    WritesDecay1h,
    WritesDecay6h,
    WritesDecay24h,
    SecsSinceLastRead,
    SecsSinceLastWrite,
    ReadShare,
    ChangeRatePerH,
    SizeLast,
    SizeMax,
    IsDeleted,
    TodShare00To06,
    TodShare06To12,
    TodShare12To18,
    TodShare18To24,
    TodShareNext6h,
    PrefixEvents24h,
    RangeEvents24h,
}

impl Feature {
    pub const fn name(self) -> &'static str {
        FEATURE_NAMES[self as usize]
    }
}
