//! The canonical access-log key of a PostgreSQL row: its primary key's
//! columns in their text form (what the type's output function writes, as
//! `psql` shows it, with `TimeZone = UTC`, `DateStyle = ISO`,
//! `IntervalStyle = postgres`, `bytea_output = hex`: the settings every
//! connection of ours pins), in primary-key order.
//!
//! One column: its text, unchanged (`42`, `6f1c…-…`, `\x00ff` for bytea).
//! Several: each column's text with `\` written `\\` and `,` written `\,`,
//! joined by `,` (`us\,west,2` is region `us,west`, id `2`). A primary key
//! has no NULLs, so every part is present.

use std::fmt;

/// A key that does not name a row of the table it was given for.
#[derive(Debug, PartialEq, Eq)]
pub struct KeyError {
    pub key: String,
    pub problem: String,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key {}: {}", self.key, self.problem)
    }
}

impl std::error::Error for KeyError {}

/// The key of a row whose primary-key columns have the text forms `parts`.
pub fn encode<S: AsRef<str>>(parts: &[S]) -> Vec<u8> {
    if let [only] = parts {
        return only.as_ref().as_bytes().to_vec();
    }
    let mut key = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            key.push(',');
        }
        for c in part.as_ref().chars() {
            if c == '\\' || c == ',' {
                key.push('\\');
            }
            key.push(c);
        }
    }
    key.into_bytes()
}

/// The text forms of the `columns` primary-key columns that `key` names.
pub fn decode(key: &[u8], columns: usize) -> Result<Vec<String>, KeyError> {
    let refuse = |problem: String| KeyError {
        key: crate::keys::display_key(key),
        problem,
    };
    let text = std::str::from_utf8(key)
        .map_err(|_| refuse("is not UTF-8 text, so it is no primary key's text form".into()))?;
    if columns == 1 {
        return Ok(vec![text.to_string()]);
    }
    let mut parts = vec![String::new()];
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped @ ('\\' | ',')) => parts.last_mut().expect("one part").push(escaped),
                _ => {
                    return Err(refuse(
                        "has a `\\` that escapes neither `\\` nor `,`".into(),
                    ));
                }
            },
            ',' => parts.push(String::new()),
            c => parts.last_mut().expect("one part").push(c),
        }
    }
    if parts.len() != columns {
        return Err(refuse(format!(
            "has {} comma-separated parts; the primary key has {columns} columns",
            parts.len()
        )));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_column_keys_are_the_text_unchanged() {
        assert_eq!(encode(&["a,b\\c"]), b"a,b\\c");
        assert_eq!(decode(b"a,b\\c", 1).unwrap(), ["a,b\\c"]);
    }

    #[test]
    fn composite_keys_escape_commas_and_backslashes() {
        // Worked out by hand from the rule in the module comment.
        assert_eq!(encode(&["us,west", "2"]), b"us\\,west,2");
        assert_eq!(encode(&["a\\", "", "b"]), b"a\\\\,,b");
        assert_eq!(decode(b"us\\,west,2", 2).unwrap(), ["us,west", "2"]);
        assert_eq!(decode(b"a\\\\,,b", 3).unwrap(), ["a\\", "", "b"]);
    }

    #[test]
    fn keys_that_name_no_row_are_refused_with_the_key() {
        let wrong_count = decode(b"1,2,3", 2).unwrap_err();
        assert_eq!(wrong_count.key, "1,2,3");
        assert!(wrong_count.problem.contains("3 comma-separated parts"));
        assert!(decode(b"a\\b,c", 2).is_err());
        assert!(decode(b"trailing\\", 2).is_err());
        assert!(decode(&[0xff, b',', b'1'], 2).is_err());
    }

    #[test]
    fn every_composite_key_decodes_to_its_parts() {
        let samples = ["", ",", "\\", "\\,", "a,,b", "é\\x"];
        for a in samples {
            for b in samples {
                let key = encode(&[a, b]);
                assert_eq!(decode(&key, 2).unwrap(), [a, b], "{a:?} {b:?}");
            }
        }
    }
}
