//! Shards: which of N service instances owns a key, so that one migration
//! of a billion keys runs as N services of a fraction each.
//!
//! The rule (also in the proto comments, for clients in other languages):
//! hash the table name, one zero byte and the key bytes with 64-bit FNV-1a
//! (offset basis 0xcbf29ce484222325, prime 0x100000001b3), mix the hash
//! with MurmurHash3's 64-bit finalizer (`h ^= h >> 33; h *= 0xff51afd7ed558ccd;
//! h ^= h >> 33; h *= 0xc4ceb9fe1a85ec53; h ^= h >> 33`, wrapping), then take
//! the shard `floor(h * N / 2^64)`. FNV-1a alone leaves its high bits
//! uneven for keys that differ only at the end (`order:0000000001`, …:
//! 11% more keys in one of seven shards); the finalizer spreads them. Shard
//! I of N owns the keys whose shard is I; the services, the reference
//! executor and clients that route by key all use [`shard_of`].

use std::fmt;
use std::str::FromStr;

/// One shard of a sharded service: `index` of `count` (`0/1` when the
/// service is not sharded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// The whole key space.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    pub fn owns(&self, table: &str, key: &[u8]) -> bool {
        self.count == 1 || shard_of(table, key, self.count) == self.index
    }
}

impl Default for Shard {
    fn default() -> Self {
        Shard::WHOLE
    }
}

/// The shard of `count` that owns (`table`, `key`).
pub fn shard_of(table: &str, key: &[u8], count: u32) -> u32 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for &byte in table.as_bytes().iter().chain(&[0u8]).chain(key) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^= hash >> 33;
    ((u128::from(hash) * u128::from(count)) >> 64) as u32
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    /// `I/N`, with N from 1 to 4096 and I below N.
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not a shard I/N (for example 0/4: the first of four)");
        let (index, count) = text.split_once('/').ok_or_else(bad)?;
        let index: u32 = index.trim().parse().map_err(|_| bad())?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        if !(1..=4096).contains(&count) {
            return Err(format!("`{text}`: the shard count must be 1 to 4096"));
        }
        if index >= count {
            return Err(format!(
                "`{text}`: shards of {count} are numbered 0 to {}",
                count - 1
            ));
        }
        Ok(Shard { index, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FNV-1a 64 of the bytes, written out from its definition.
    fn fnv1a(bytes: &[u8]) -> u64 {
        let mut hash: u64 = 14695981039346656037;
        for byte in bytes {
            hash ^= *byte as u64;
            hash = hash.wrapping_mul(1099511628211);
        }
        hash
    }

    /// MurmurHash3's fmix64, written out from its definition.
    fn fmix64(mut k: u64) -> u64 {
        k ^= k >> 33;
        k = k.wrapping_mul(0xff51afd7ed558ccd);
        k ^= k >> 33;
        k = k.wrapping_mul(0xc4ceb9fe1a85ec53);
        k ^ (k >> 33)
    }

    #[test]
    fn the_hash_is_fnv1a_of_table_zero_key_mixed_and_the_shard_its_high_part() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x85944171f73967e8);
        // fmix64 sends 0 to 0 and is a bijection (1 goes elsewhere).
        assert_eq!(fmix64(0), 0);
        assert_ne!(fmix64(1), 1);
        // "users" \0 "u:1": hashed by the definitions above, scaled to 4
        // shards by the top two bits and to 1000 by the high part.
        let hash = fmix64(fnv1a(b"users\0u:1"));
        assert_eq!(shard_of("users", b"u:1", 4), (hash >> 62) as u32);
        assert_eq!(
            shard_of("users", b"u:1", 1000),
            ((hash as u128 * 1000) >> 64) as u32
        );
        assert_eq!(shard_of("users", b"u:1", 1), 0);
        // The table is part of the identity: the same bytes split apart
        // elsewhere hash differently.
        assert_ne!(fnv1a(b"users\0u:1"), fnv1a(b"user\0su:1"));
    }

    #[test]
    fn keys_spread_evenly_over_shards() {
        let count = 7;
        let mut per_shard = vec![0usize; count as usize];
        for i in 0..70_000 {
            per_shard[shard_of("orders", format!("order:{i:010}").as_bytes(), count) as usize] += 1;
        }
        for keys in per_shard {
            assert!(
                (9_000..11_000).contains(&keys),
                "{keys} of 70000 keys in one of 7 shards"
            );
        }
    }

    #[test]
    fn shards_parse_from_i_slash_n() {
        assert_eq!("2/4".parse::<Shard>(), Ok(Shard { index: 2, count: 4 }));
        assert_eq!("0/1".parse::<Shard>(), Ok(Shard::WHOLE));
        for bad in ["4/4", "1", "a/2", "0/0", "0/5000"] {
            let error = bad.parse::<Shard>().unwrap_err();
            assert!(error.contains(bad), "{error}");
        }
        assert!(Shard { index: 1, count: 2 }.to_string() == "1/2");
    }
}
