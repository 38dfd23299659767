//! The SQLite back-end: one file, one table per shadowcast table.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{Copy, Database, DatabaseError, Row, TableRows, quoted, to_sql_version};

pub struct Sqlite {
    name: String,
    connection: Connection,
}

impl Sqlite {
    pub fn open(path: &Path) -> Result<Self, DatabaseError> {
        let name = format!("sqlite:{}", path.display());
        let failed = |e: rusqlite::Error| DatabaseError {
            database: name.clone(),
            problem: e.to_string(),
        };
        let connection = Connection::open(path).map_err(failed)?;
        // WAL lets readers (the demo's checks, other executors) work while
        // one executor writes; a busy timeout rides out their locks. The
        // timeout comes first: switching to WAL takes a lock too, and
        // another connection writing would refuse it at once.
        connection
            .busy_timeout(std::time::Duration::from_secs(30))
            .map_err(failed)?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(failed)?;
        connection
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(failed)?;
        Ok(Sqlite { name, connection })
    }

    fn error(&self, table: &str, error: rusqlite::Error) -> DatabaseError {
        DatabaseError {
            database: self.name.clone(),
            problem: format!("table {table}: {error}"),
        }
    }

    fn has_table(&self, table: &str) -> Result<bool, rusqlite::Error> {
        self.connection
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
    }
}

impl Database for Sqlite {
    fn read(&mut self, table: &str, keys: &[&[u8]]) -> Result<Vec<Option<Row>>, DatabaseError> {
        let run = |this: &mut Self| -> Result<Vec<Option<Row>>, rusqlite::Error> {
            if !this.has_table(table)? {
                return Ok(vec![None; keys.len()]);
            }
            let snapshot = this.connection.transaction()?;
            let mut rows = Vec::with_capacity(keys.len());
            {
                let mut select = snapshot.prepare_cached(&format!(
                    "SELECT version, value FROM {} WHERE key = ?1",
                    quoted(table)
                ))?;
                for key in keys {
                    rows.push(
                        select
                            .query_row([key], |row| {
                                Ok(Row {
                                    version: row.get::<_, i64>(0)?.max(0) as u64,
                                    value: row.get(1)?,
                                })
                            })
                            .optional()?,
                    );
                }
            }
            snapshot.commit()?;
            Ok(rows)
        };
        run(self).map_err(|e| self.error(table, e))
    }

    fn write(&mut self, table: &str, copies: &[Copy]) -> Result<(), DatabaseError> {
        let run = |this: &mut Self| -> Result<(), rusqlite::Error> {
            let name = quoted(table);
            // Take the write lock up front: a deferred transaction that
            // upgrades fails at once when another writer holds it.
            let transaction = this
                .connection
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            transaction.execute(
                &format!(
                    "CREATE TABLE IF NOT EXISTS {name} \
                     (key BLOB PRIMARY KEY, version INTEGER NOT NULL, value BLOB NOT NULL)"
                ),
                [],
            )?;
            {
                let mut upsert = transaction.prepare_cached(&format!(
                    "INSERT INTO {name} (key, version, value) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (key) DO UPDATE SET version = excluded.version, value = excluded.value \
                     WHERE excluded.version > {name}.version"
                ))?;
                let mut delete = transaction.prepare_cached(&format!(
                    "DELETE FROM {name} WHERE key = ?1 AND version <= ?2"
                ))?;
                for copy in copies {
                    let version = to_sql_version(copy.version);
                    match copy.value {
                        Some(value) => upsert.execute(params![copy.key, version, value])?,
                        None => delete.execute(params![copy.key, version])?,
                    };
                }
            }
            transaction.commit()
        };
        run(self).map_err(|e| self.error(table, e))
    }

    fn dump(&mut self) -> Result<Vec<TableRows>, DatabaseError> {
        let run = |this: &mut Self| -> Result<_, rusqlite::Error> {
            let tables: Vec<String> = this
                .connection
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?
                .query_map([], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            let mut all = Vec::new();
            for table in tables {
                let rows = this
                    .connection
                    .prepare(&format!(
                        "SELECT key, version, value FROM {} ORDER BY key",
                        quoted(&table)
                    ))?
                    .query_map([], |row| {
                        Ok((
                            row.get::<_, Vec<u8>>(0)?,
                            Row {
                                version: row.get::<_, i64>(1)?.max(0) as u64,
                                value: row.get(2)?,
                            },
                        ))
                    })?
                    .collect::<Result<_, _>>()?;
                all.push((table, rows));
            }
            Ok(all)
        };
        run(self).map_err(|e| self.error("*", e))
    }
}
