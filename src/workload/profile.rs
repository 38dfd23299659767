//! Named workload profiles. Each table follows one production cache cluster
//! from Twitter's published statistics (`twitter/cache-trace`, 2020Mar.md;
//! Yang, Yue, Vinayak, OSDI 2020): its Zipf alpha, operation mix, mean value
//! size, mean accesses per key and one-hit-wonder ratio.
//!
//! How the cache operations map to database operations: get/gets → read;
//! add → insert; set/cas/incr/prepend → update, except that a cluster whose
//! sets mostly hit new keys (high one-hit-wonder ratio) splits them between
//! insert and update; delete → delete.

/// One table of a generated workload.
#[derive(Clone, Debug, PartialEq)]
pub struct TableProfile {
    pub name: &'static str,
    /// Keys look like `{key_prefix}:{id:010}` so that byte order is id order.
    pub key_prefix: &'static str,
    /// The Twitter cluster this table is calibrated on.
    pub follows: &'static str,
    /// Share of all events that go to this table.
    pub share: f64,
    pub zipf_alpha: f64,
    /// The cluster's mean accesses per key: sets the initial key count.
    pub mean_accesses_per_key: f64,
    pub mean_value_bytes: f64,
    /// Shares of read, insert, update, delete; sum to 1.
    pub op_mix: [f64; 4],
    /// Share of accesses to a key chosen uniformly (the cold tail that makes
    /// one-hit wonders), set by hand so the generated one-hit-wonder ratio
    /// comes near the cluster's (the README lists both).
    pub uniform_share: f64,
    /// Share of accesses to trending cohorts that warm up and cool down.
    pub trending_share: f64,
    /// UTC hour of the daily peak.
    pub peak_hour: f64,
}

/// A named set of tables.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub name: &'static str,
    pub description: &'static str,
    pub tables: Vec<TableProfile>,
}

/// Daily swing of the event rate: peak is `1 + DAILY_AMPLITUDE` times the mean.
pub const DAILY_AMPLITUDE: f64 = 0.5;

fn cluster52_users(share: f64) -> TableProfile {
    TableProfile {
        name: "users",
        key_prefix: "user",
        follows: "cluster52 (get 0.91, add 0.04, gets 0.02, cas 0.02; alpha 1.21; 273 B; 19% one-hit)",
        share,
        zipf_alpha: 1.2117,
        mean_accesses_per_key: 32.6,
        mean_value_bytes: 273.0,
        op_mix: [0.93, 0.04, 0.03, 0.0],
        uniform_share: 0.10,
        trending_share: 0.30,
        peak_hour: 14.0,
    }
}

fn cluster12_sessions(share: f64) -> TableProfile {
    TableProfile {
        name: "sessions",
        key_prefix: "session",
        follows: "cluster12 (set 0.80, get 0.20; alpha 0.30; 1030 B; 81% one-hit)",
        share,
        zipf_alpha: 0.3048,
        mean_accesses_per_key: 1.3,
        mean_value_bytes: 1030.0,
        op_mix: [0.20, 0.30, 0.50, 0.0],
        uniform_share: 0.40,
        trending_share: 0.40,
        peak_hour: 20.0,
    }
}

fn cluster14_carts(share: f64) -> TableProfile {
    TableProfile {
        name: "carts",
        key_prefix: "cart",
        follows: "cluster14 (get 0.65, delete 0.22, set 0.13; alpha 1.30; 414 B; 11% one-hit)",
        share,
        zipf_alpha: 1.2959,
        mean_accesses_per_key: 35.4,
        mean_value_bytes: 414.0,
        op_mix: [0.65, 0.05, 0.08, 0.22],
        uniform_share: 0.06,
        trending_share: 0.40,
        peak_hour: 19.0,
    }
}

fn cluster24_products(share: f64) -> TableProfile {
    TableProfile {
        name: "products",
        key_prefix: "product",
        follows: "cluster24 (get 0.99; alpha 1.37; 699 B; 6% one-hit)",
        share,
        zipf_alpha: 1.3726,
        mean_accesses_per_key: 134.8,
        mean_value_bytes: 699.0,
        op_mix: [0.99, 0.0, 0.01, 0.0],
        uniform_share: 0.03,
        trending_share: 0.20,
        peak_hour: 13.0,
    }
}

/// All named profiles; the first is the default.
pub fn all() -> Vec<Profile> {
    vec![
        Profile {
            name: "oltp",
            description: "an e-commerce database: read-heavy users and products next to write-heavy sessions and carts with deletes",
            tables: vec![
                cluster52_users(0.35),
                cluster24_products(0.30),
                cluster12_sessions(0.20),
                cluster14_carts(0.15),
            ],
        },
        Profile {
            name: "read-heavy",
            description: "a read-mostly user store (cluster52)",
            tables: vec![cluster52_users(1.0)],
        },
        Profile {
            name: "write-heavy",
            description: "a session store dominated by short-lived writes (cluster12)",
            tables: vec![cluster12_sessions(1.0)],
        },
        Profile {
            name: "deletes",
            description: "a cart store with heavy deletes (cluster14)",
            tables: vec![cluster14_carts(1.0)],
        },
    ]
}

pub fn named(name: &str) -> Option<Profile> {
    all().into_iter().find(|profile| profile.name == name)
}

pub fn names() -> Vec<&'static str> {
    all().iter().map(|profile| profile.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_well_formed() {
        for profile in all() {
            let shares: f64 = profile.tables.iter().map(|t| t.share).sum();
            assert!((shares - 1.0).abs() < 1e-9, "{}", profile.name);
            for table in &profile.tables {
                let mix: f64 = table.op_mix.iter().sum();
                assert!((mix - 1.0).abs() < 1e-9, "{}", table.name);
                assert!(table.uniform_share + table.trending_share < 1.0);
            }
        }
        assert_eq!(named("oltp").map(|p| p.tables.len()), Some(4));
        assert!(named("nope").is_none());
    }
}
