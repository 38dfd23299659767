//! A policy's configuration: `key = value` lines (blank lines and lines
//! starting with `#` are skipped), so a module needs no parser dependency.

/// Parsed configuration, in the order given.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    /// Parses `blob`; the error names the offending line.
    pub fn parse(blob: &[u8]) -> Result<Config, String> {
        let text = core::str::from_utf8(blob)
            .map_err(|e| format!("configuration is not UTF-8 text: {e}"))?;
        let mut entries = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line.split_once('=').ok_or_else(|| {
                format!(
                    "configuration line {}: expected `key = value`, found `{line}`",
                    number + 1
                )
            })?;
            entries.push((key.trim().to_string(), value.trim().to_string()));
        }
        Ok(Config { entries })
    }

    /// The last value given for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key` parsed as `T`, `default` when absent; the error
    /// names the key and the value.
    pub fn parse_or<T: core::str::FromStr>(&self, key: &str, default: T) -> Result<T, String>
    where
        T::Err: core::fmt::Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(value) => value
                .parse()
                .map_err(|e| format!("configuration `{key} = {value}`: {e}")),
        }
    }

    /// Every entry, in order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_and_names_bad_ones() {
        let config = Config::parse(b"# tenants\nboost.t7 = 3\n\nlimit=10\nlimit = 12\n").unwrap();
        assert_eq!(config.get("boost.t7"), Some("3"));
        assert_eq!(config.parse_or("limit", 0u32), Ok(12));
        assert_eq!(config.parse_or("absent", 5u32), Ok(5));
        assert!(config.parse_or::<u32>("boost.t7", 0).is_ok());
        let error = Config::parse(b"a = 1\noops\n").unwrap_err();
        assert!(error.contains("line 2"), "{error}");
        let error = Config::parse(b"n = x")
            .unwrap()
            .parse_or("n", 0u32)
            .unwrap_err();
        assert!(error.contains("`n = x`"), "{error}");
    }
}
