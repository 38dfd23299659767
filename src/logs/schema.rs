//! The access-log schema: one row per data access.
//!
//! | column       | Arrow / Parquet type                      | required | meaning                                  |
//! |--------------|-------------------------------------------|----------|------------------------------------------|
//! | `ts`         | timestamp, UTC (any unit; written as µs)  | yes      | when the access happened                 |
//! | `key`        | UTF-8 string or binary                    | yes      | primary key of the row, as bytes         |
//! | `table_name` | UTF-8 string (plain or dictionary)        | yes      | table or namespace the key lives in      |
//! | `op`         | UTF-8 string: read, insert, update, delete| yes      | what the access did                      |
//! | `size_bytes` | any integer type, not negative            | yes      | size of the row touched                  |
//! | `tenant`     | UTF-8 string, nullable                    | no       | owning tenant, for multi-tenant sources  |
//! | `latency_us` | any integer type, nullable                | no       | how long the source took to serve it     |
//!
//! A key is identified by the pair (`table_name`, `key`): the same key bytes in
//! two tables are two different rows.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

pub const TS: &str = "ts";
pub const KEY: &str = "key";
pub const TABLE: &str = "table_name";
pub const OP: &str = "op";
pub const SIZE: &str = "size_bytes";
pub const TENANT: &str = "tenant";
pub const LATENCY: &str = "latency_us";

/// Columns every access-log file must have, in the order the reader projects them.
pub const REQUIRED_COLUMNS: [&str; 5] = [TS, KEY, TABLE, OP, SIZE];

/// What an access did to its row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Op {
    Read = 0,
    Insert = 1,
    Update = 2,
    Delete = 3,
}

impl Op {
    pub const ALL: [Op; 4] = [Op::Read, Op::Insert, Op::Update, Op::Delete];

    /// The spelling stored in the `op` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }

    /// Parses the stored spelling (exact, lower case).
    pub fn parse(text: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.as_str() == text)
    }

    /// The numeric code used where operations are ordered (ties in the SQL
    /// feature definitions are broken by it, so it is part of the contract).
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn is_write(self) -> bool {
        self != Op::Read
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn dictionary_utf8() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// The schema shadowcast writes (generator and importer). Low-cardinality
/// string columns are dictionary encoded; readers accept plain strings too.
pub fn canonical_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(
            TS,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new(KEY, DataType::Utf8, false),
        Field::new(TABLE, dictionary_utf8(), false),
        Field::new(OP, dictionary_utf8(), false),
        Field::new(SIZE, DataType::Int64, false),
        Field::new(TENANT, dictionary_utf8(), true),
        Field::new(LATENCY, DataType::Int64, true),
    ]))
}

/// Human description of the types accepted for a column, for error messages.
pub fn expected_type(column: &str) -> &'static str {
    match column {
        TS => "a timestamp (e.g. TIMESTAMP(MICROS, UTC))",
        KEY => "a UTF-8 string or binary",
        TABLE | OP | TENANT => "a UTF-8 string",
        SIZE | LATENCY => "an integer",
        _ => "nothing (unknown column)",
    }
}

fn is_string(data_type: &DataType) -> bool {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, value) => {
            matches!(**value, DataType::Utf8 | DataType::LargeUtf8)
        }
        _ => false,
    }
}

/// Whether the reader can take `data_type` for `column`.
pub fn accepts(column: &str, data_type: &DataType) -> bool {
    match column {
        TS => matches!(data_type, DataType::Timestamp(_, _)),
        KEY => {
            is_string(data_type)
                || matches!(
                    data_type,
                    DataType::Binary | DataType::LargeBinary | DataType::BinaryView
                )
        }
        TABLE | OP | TENANT => is_string(data_type),
        SIZE | LATENCY => data_type.is_integer(),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_spellings_round_trip() {
        for op in Op::ALL {
            assert_eq!(Op::parse(op.as_str()), Some(op));
        }
        assert_eq!(Op::parse("READ"), None);
        assert_eq!(Op::parse("write"), None);
    }

    #[test]
    fn canonical_schema_is_accepted_by_the_reader_rules() {
        for field in canonical_schema().fields() {
            assert!(accepts(field.name(), field.data_type()), "{}", field.name());
        }
        assert!(!accepts(TS, &DataType::Int64));
        assert!(!accepts(SIZE, &DataType::Utf8));
    }
}
