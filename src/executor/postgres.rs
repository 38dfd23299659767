//! The PostgreSQL back-end: one table per shadowcast table, read with one
//! `= ANY` query per batch and written with one `UNNEST` upsert.

use postgres::{Client, NoTls};

use super::{Copy, Database, DatabaseError, Row, TableRows, quoted, to_sql_version};

/// A `key, version, value` result row.
fn keyed_row(row: &postgres::Row) -> (Vec<u8>, Row) {
    (
        row.get(0),
        Row {
            version: row.get::<_, i64>(1).max(0) as u64,
            value: row.get(2),
        },
    )
}

pub struct Postgres {
    name: String,
    client: Client,
}

impl Postgres {
    pub fn connect(url: &str) -> Result<Self, DatabaseError> {
        let name = crate::pg::display_url(url);
        let client = Client::connect(url, NoTls).map_err(|e| DatabaseError {
            database: name.clone(),
            problem: e.to_string(),
        })?;
        Ok(Postgres { name, client })
    }

    fn error(&self, table: &str, error: postgres::Error) -> DatabaseError {
        DatabaseError {
            database: self.name.clone(),
            problem: format!("table {table}: {error}"),
        }
    }
}

impl Database for Postgres {
    fn read(&mut self, table: &str, keys: &[&[u8]]) -> Result<Vec<Option<Row>>, DatabaseError> {
        let run = |client: &mut Client| -> Result<Vec<Option<Row>>, postgres::Error> {
            let exists: bool = client
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[&quoted(table)])?
                .get(0);
            if !exists {
                return Ok(vec![None; keys.len()]);
            }
            let found = client.query(
                &format!(
                    "SELECT key, version, value FROM {} WHERE key = ANY($1)",
                    quoted(table)
                ),
                &[&keys],
            )?;
            let mut by_key: std::collections::HashMap<Vec<u8>, Row> =
                found.iter().map(keyed_row).collect();
            Ok(keys.iter().map(|key| by_key.remove(*key)).collect())
        };
        run(&mut self.client).map_err(|e| self.error(table, e))
    }

    fn write(&mut self, table: &str, copies: &[Copy]) -> Result<(), DatabaseError> {
        let run = |client: &mut Client| -> Result<(), postgres::Error> {
            let name = quoted(table);
            let mut transaction = client.transaction()?;
            transaction.batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {name} \
                 (key BYTEA PRIMARY KEY, version BIGINT NOT NULL, value BYTEA NOT NULL)"
            ))?;
            let (present, absent): (Vec<&Copy>, Vec<&Copy>) =
                copies.iter().partition(|c| c.value.is_some());
            let keys: Vec<&[u8]> = present.iter().map(|c| c.key).collect();
            let versions: Vec<i64> = present.iter().map(|c| to_sql_version(c.version)).collect();
            let values: Vec<&[u8]> = present.iter().filter_map(|c| c.value).collect();
            transaction.execute(
                &format!(
                    "INSERT INTO {name} (key, version, value) \
                     SELECT * FROM UNNEST($1::bytea[], $2::int8[], $3::bytea[]) \
                     ON CONFLICT (key) DO UPDATE SET version = excluded.version, value = excluded.value \
                     WHERE {name}.version < excluded.version"
                ),
                &[&keys, &versions, &values],
            )?;
            let keys: Vec<&[u8]> = absent.iter().map(|c| c.key).collect();
            let versions: Vec<i64> = absent.iter().map(|c| to_sql_version(c.version)).collect();
            transaction.execute(
                &format!(
                    "DELETE FROM {name} USING UNNEST($1::bytea[], $2::int8[]) AS gone (key, version) \
                     WHERE {name}.key = gone.key AND {name}.version <= gone.version"
                ),
                &[&keys, &versions],
            )?;
            transaction.commit()
        };
        run(&mut self.client).map_err(|e| self.error(table, e))
    }

    fn dump(&mut self) -> Result<Vec<TableRows>, DatabaseError> {
        let run = |client: &mut Client| -> Result<_, postgres::Error> {
            let tables: Vec<String> = client
                .query(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename",
                    &[],
                )?
                .into_iter()
                .map(|row| row.get(0))
                .collect();
            let mut all = Vec::new();
            for table in tables {
                let rows = client
                    .query(
                        &format!(
                            "SELECT key, version, value FROM {} ORDER BY key",
                            quoted(&table)
                        ),
                        &[],
                    )?
                    .iter()
                    .map(keyed_row)
                    .collect();
                all.push((table, rows));
            }
            Ok(all)
        };
        run(&mut self.client).map_err(|e| self.error("*", e))
    }
}
