//! PostgreSQL's logical replication protocol (`pgoutput`, protocol
//! version 1) as `pg_logical_slot_peek_binary_changes` returns it: one
//! message per row, turned here into the keys each committed transaction
//! wrote and the tables it truncated.

use std::collections::HashMap;

use crate::logs::Op;

/// PostgreSQL counts time from 2000-01-01 00:00 UTC.
const POSTGRES_EPOCH_US: i64 = 946_684_800_000_000;

/// A row written by a committed transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowWrite {
    /// `table` in the capture's schema, else `schema.table`.
    pub table: String,
    /// The canonical key ([`crate::pg::key`]).
    pub key: Vec<u8>,
    /// Bytes of the row's text after the write (0 for a delete).
    pub size_bytes: u64,
    /// Insert, update or delete (an update that moves a row to another
    /// key deletes the old key).
    pub op: Op,
}

/// One committed transaction's writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// Where the commit record starts: the writes' version.
    pub commit_lsn: u64,
    /// Where it ends: how far the slot may be confirmed once reported.
    pub end_lsn: u64,
    /// The commit's time, microseconds since the Unix epoch.
    pub committed_at_us: i64,
    pub writes: Vec<RowWrite>,
    /// Tables the transaction emptied with TRUNCATE (their keys are not
    /// listed), each once, in the order truncated.
    pub truncated: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("a {what} message ends early ({len} bytes)")]
    Truncated { what: &'static str, len: usize },
    #[error("a change names relation {0}, which no relation message described")]
    UnknownRelation(u32),
    #[error("a {what} message has an unexpected tag {tag:?}")]
    Malformed { what: &'static str, tag: char },
}

#[derive(Clone, Debug)]
struct Relation {
    table: String,
    /// Which columns make up the key (the replica identity: the primary key).
    key_columns: Vec<usize>,
}

enum Value {
    Null,
    Unchanged,
    Text(String),
}

/// Reads messages in order and hands out each transaction at its commit.
pub struct Decoder {
    /// The schema a table is named without (the connection's current one).
    default_schema: String,
    relations: HashMap<u32, Relation>,
    open: Vec<RowWrite>,
    open_truncated: Vec<String>,
}

struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
    len: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError::Truncated {
                what: self.what,
                len: self.len,
            });
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let end = self
            .bytes
            .iter()
            .position(|&b| b == 0)
            .ok_or(DecodeError::Truncated {
                what: self.what,
                len: self.len,
            })?;
        let text = String::from_utf8_lossy(&self.bytes[..end]).into_owned();
        self.bytes = &self.bytes[end + 1..];
        Ok(text)
    }

    fn tuple(&mut self) -> Result<Vec<Value>, DecodeError> {
        let count = self.u16()?;
        (0..count)
            .map(|_| match self.u8()? {
                b'n' => Ok(Value::Null),
                b'u' => Ok(Value::Unchanged),
                b't' => {
                    let len = self.u32()? as usize;
                    Ok(Value::Text(
                        String::from_utf8_lossy(self.take(len)?).into_owned(),
                    ))
                }
                tag => Err(DecodeError::Malformed {
                    what: self.what,
                    tag: tag as char,
                }),
            })
            .collect()
    }
}

impl Decoder {
    pub fn new(default_schema: &str) -> Decoder {
        Decoder {
            default_schema: default_schema.to_string(),
            relations: HashMap::new(),
            open: Vec::new(),
            open_truncated: Vec::new(),
        }
    }

    /// Reads one message; gives the transaction it completes, if any.
    pub fn message(&mut self, bytes: &[u8]) -> Result<Option<Committed>, DecodeError> {
        let Some((&tag, body)) = bytes.split_first() else {
            return Ok(None);
        };
        let what = match tag {
            b'B' => "begin",
            b'C' => "commit",
            b'R' => "relation",
            b'I' => "insert",
            b'U' => "update",
            b'D' => "delete",
            b'T' => "truncate",
            _ => "other",
        };
        let mut reader = Reader {
            bytes: body,
            what,
            len: bytes.len(),
        };
        match tag {
            b'B' => {
                self.open.clear();
                self.open_truncated.clear();
            }
            b'C' => {
                reader.u8()?;
                let commit_lsn = reader.u64()?;
                let end_lsn = reader.u64()?;
                let committed_at = reader.u64()? as i64;
                return Ok(Some(Committed {
                    commit_lsn,
                    end_lsn,
                    committed_at_us: committed_at + POSTGRES_EPOCH_US,
                    writes: std::mem::take(&mut self.open),
                    truncated: std::mem::take(&mut self.open_truncated),
                }));
            }
            b'R' => {
                let id = reader.u32()?;
                let schema = reader.string()?;
                let name = reader.string()?;
                reader.u8()?;
                let count = reader.u16()?;
                let mut key_columns = Vec::new();
                for i in 0..count as usize {
                    let flags = reader.u8()?;
                    reader.string()?;
                    reader.u32()?;
                    reader.u32()?;
                    if flags & 1 == 1 {
                        key_columns.push(i);
                    }
                }
                let table = if schema == self.default_schema {
                    name
                } else {
                    format!("{schema}.{name}")
                };
                self.relations.insert(id, Relation { table, key_columns });
            }
            b'I' => {
                let relation = reader.u32()?;
                expect(&mut reader, b'N')?;
                let new = reader.tuple()?;
                self.write(relation, &new, Op::Insert)?;
            }
            b'U' => {
                let relation = reader.u32()?;
                let old = match reader.u8()? {
                    b'K' | b'O' => {
                        let old = reader.tuple()?;
                        expect(&mut reader, b'N')?;
                        Some(old)
                    }
                    b'N' => None,
                    tag => {
                        return Err(DecodeError::Malformed {
                            what,
                            tag: tag as char,
                        });
                    }
                };
                let new = reader.tuple()?;
                if let Some(old) = old {
                    // The key changed: the old key's row is gone.
                    let before = self.key_of(relation, &old)?;
                    let after = self.key_of(relation, &new)?;
                    if before.1 != after.1 {
                        self.open.push(RowWrite {
                            table: before.0,
                            key: before.1,
                            size_bytes: 0,
                            op: Op::Delete,
                        });
                    }
                }
                self.write(relation, &new, Op::Update)?;
            }
            b'D' => {
                let relation = reader.u32()?;
                match reader.u8()? {
                    b'K' | b'O' => {}
                    tag => {
                        return Err(DecodeError::Malformed {
                            what,
                            tag: tag as char,
                        });
                    }
                }
                let old = reader.tuple()?;
                let (table, key) = self.key_of(relation, &old)?;
                self.open.push(RowWrite {
                    table,
                    key,
                    size_bytes: 0,
                    op: Op::Delete,
                });
            }
            b'T' => {
                let count = reader.u32()?;
                // CASCADE and RESTART IDENTITY change nothing here: a
                // table emptied by cascade is listed too.
                let _options = reader.u8()?;
                for _ in 0..count {
                    let id = reader.u32()?;
                    let relation = self
                        .relations
                        .get(&id)
                        .ok_or(DecodeError::UnknownRelation(id))?;
                    if !self.open_truncated.contains(&relation.table) {
                        self.open_truncated.push(relation.table.clone());
                    }
                }
            }
            // Origin, type and logical messages say nothing about rows.
            _ => {}
        }
        Ok(None)
    }

    fn key_of(&self, relation: u32, tuple: &[Value]) -> Result<(String, Vec<u8>), DecodeError> {
        let found = self
            .relations
            .get(&relation)
            .ok_or(DecodeError::UnknownRelation(relation))?;
        let parts: Vec<&str> = found
            .key_columns
            .iter()
            .map(|&i| match tuple.get(i) {
                Some(Value::Text(text)) => text.as_str(),
                _ => "",
            })
            .collect();
        Ok((found.table.clone(), crate::pg::key::encode(&parts)))
    }

    fn write(&mut self, relation: u32, row: &[Value], op: Op) -> Result<(), DecodeError> {
        let (table, key) = self.key_of(relation, row)?;
        let size_bytes = row
            .iter()
            .map(|value| match value {
                Value::Text(text) => text.len() as u64,
                Value::Null | Value::Unchanged => 0,
            })
            .sum();
        self.open.push(RowWrite {
            table,
            key,
            size_bytes,
            op,
        });
        Ok(())
    }
}

fn expect(reader: &mut Reader, wanted: u8) -> Result<(), DecodeError> {
    match reader.u8()? {
        tag if tag == wanted => Ok(()),
        tag => Err(DecodeError::Malformed {
            what: reader.what,
            tag: tag as char,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Messages built by hand from the protocol's documented layout.
    fn relation(id: u32, schema: &str, name: &str, columns: &[(&str, bool)]) -> Vec<u8> {
        let mut m = vec![b'R'];
        m.extend(id.to_be_bytes());
        for s in [schema, name] {
            m.extend(s.as_bytes());
            m.push(0);
        }
        m.push(b'd');
        m.extend((columns.len() as u16).to_be_bytes());
        for (column, key) in columns {
            m.push(u8::from(*key));
            m.extend(column.as_bytes());
            m.push(0);
            m.extend(25u32.to_be_bytes());
            m.extend((-1i32).to_be_bytes());
        }
        m
    }

    fn tuple(values: &[Option<&str>]) -> Vec<u8> {
        let mut m = (values.len() as u16).to_be_bytes().to_vec();
        for value in values {
            match value {
                Some(text) => {
                    m.push(b't');
                    m.extend((text.len() as u32).to_be_bytes());
                    m.extend(text.as_bytes());
                }
                None => m.push(b'n'),
            }
        }
        m
    }

    /// A TRUNCATE of the relations `ids`, with `options` (1: CASCADE).
    fn truncate(options: u8, ids: &[u32]) -> Vec<u8> {
        let mut m = vec![b'T'];
        m.extend((ids.len() as u32).to_be_bytes());
        m.push(options);
        for id in ids {
            m.extend(id.to_be_bytes());
        }
        m
    }

    fn commit(commit_lsn: u64, end_lsn: u64) -> Vec<u8> {
        let mut m = vec![b'C', 0];
        m.extend(commit_lsn.to_be_bytes());
        m.extend(end_lsn.to_be_bytes());
        m.extend(0u64.to_be_bytes());
        m
    }

    #[test]
    fn a_transaction_gives_each_written_key_at_its_commit() {
        let mut decoder = Decoder::new("public");
        let mut begin = vec![b'B'];
        begin.extend([0; 20]);
        assert_eq!(decoder.message(&begin).unwrap(), None);
        let columns = [("region", true), ("id", true), ("note", false)];
        decoder
            .message(&relation(7, "public", "orders", &columns))
            .unwrap();
        decoder
            .message(&relation(8, "sales", "items", &[("id", true)]))
            .unwrap();
        let mut insert = vec![b'I'];
        insert.extend(7u32.to_be_bytes());
        insert.push(b'N');
        insert.extend(tuple(&[Some("us,west"), Some("2"), Some("hello")]));
        decoder.message(&insert).unwrap();
        // An update that moves row 5 to key 6.
        let mut update = vec![b'U'];
        update.extend(8u32.to_be_bytes());
        update.push(b'K');
        update.extend(tuple(&[Some("5")]));
        update.push(b'N');
        update.extend(tuple(&[Some("6")]));
        decoder.message(&update).unwrap();
        let mut delete = vec![b'D'];
        delete.extend(7u32.to_be_bytes());
        delete.push(b'K');
        delete.extend(tuple(&[Some("eu"), Some("1"), None]));
        decoder.message(&delete).unwrap();
        let done = decoder
            .message(&commit(0x1532F60, 0x1532F90))
            .unwrap()
            .unwrap();
        assert_eq!((done.commit_lsn, done.end_lsn), (0x1532F60, 0x1532F90));
        assert_eq!(
            done.committed_at_us, 946_684_800_000_000,
            "2000-01-01 in Unix time"
        );
        let written: Vec<(&str, &[u8], u64, Op)> = done
            .writes
            .iter()
            .map(|w| (w.table.as_str(), &w.key[..], w.size_bytes, w.op))
            .collect();
        assert_eq!(
            written,
            [
                ("orders", &b"us\\,west,2"[..], 7 + 1 + 5, Op::Insert),
                ("sales.items", b"5", 0, Op::Delete),
                ("sales.items", b"6", 1, Op::Update),
                ("orders", b"eu,1", 0, Op::Delete),
            ]
        );
    }

    #[test]
    fn bad_messages_are_errors_not_guesses() {
        let mut decoder = Decoder::new("public");
        let mut insert = vec![b'I'];
        insert.extend(9u32.to_be_bytes());
        insert.push(b'N');
        insert.extend(tuple(&[Some("1")]));
        assert!(matches!(
            decoder.message(&insert),
            Err(DecodeError::UnknownRelation(9))
        ));
        assert!(matches!(
            decoder.message(&[b'C', 0, 1]),
            Err(DecodeError::Truncated { what: "commit", .. })
        ));
        decoder
            .message(&relation(3, "public", "t", &[("id", true)]))
            .unwrap();
        let emptied = truncate(0, &[3, 4]);
        assert!(matches!(
            decoder.message(&emptied),
            Err(DecodeError::UnknownRelation(4))
        ));
        assert!(matches!(
            decoder.message(&emptied[..9]),
            Err(DecodeError::Truncated {
                what: "truncate",
                ..
            })
        ));
    }

    #[test]
    fn a_truncate_names_each_table_it_emptied_once() {
        let mut decoder = Decoder::new("public");
        decoder.message(&[&[b'B'][..], &[0; 20]].concat()).unwrap();
        decoder
            .message(&relation(3, "public", "orders", &[("id", true)]))
            .unwrap();
        decoder
            .message(&relation(4, "sales", "items", &[("id", true)]))
            .unwrap();
        // TRUNCATE orders, sales.items (option bits: CASCADE), then orders again.
        assert_eq!(decoder.message(&truncate(1, &[3, 4])).unwrap(), None);
        decoder.message(&truncate(0, &[3])).unwrap();
        let mut insert = vec![b'I'];
        insert.extend(3u32.to_be_bytes());
        insert.push(b'N');
        insert.extend(tuple(&[Some("9")]));
        decoder.message(&insert).unwrap();
        let done = decoder.message(&commit(0x40, 0x48)).unwrap().unwrap();
        assert_eq!(done.truncated, ["orders", "sales.items"]);
        assert_eq!(
            done.writes.len(),
            1,
            "a row written after the truncate is a write"
        );
        let next = decoder.message(&commit(0x50, 0x58)).unwrap().unwrap();
        assert!(
            next.truncated.is_empty(),
            "a commit takes its own truncations only"
        );
    }
}
