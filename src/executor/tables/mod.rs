//! PostgreSQL tables as they are: any table with a primary key, copied
//! with every column and type, its rows found by the canonical key
//! ([`crate::pg::key`]) and versioned by log sequence numbers
//! ([`crate::pg::lsn`]).
//!
//! A batch is read in one source snapshot (one statement for the batch)
//! and written in one destination transaction: rows are upserted from one
//! JSON array (PostgreSQL's own text forms, so every type round-trips),
//! keys gone from the source deleted. The version each key was copied at
//! is kept in the destination's `shadowcast_row_versions` table and
//! checked in the same transaction, so an older copy never replaces a
//! newer one, whichever executor finishes first.

pub mod mapping;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use postgres::Client;

use self::mapping::{Mapping, TablePlan};
use super::{Copier, DatabaseError};
use crate::pg::{self, describe_error, key};
use crate::service::proto;

/// The destination table that records the version each key was copied at.
pub const ROW_VERSIONS: &str = "shadowcast_row_versions";

pub struct PostgresTables {
    source_name: String,
    destination_name: String,
    source: Client,
    destination: Client,
    mapping: Mapping,
    /// Shared with each batch that copies the table.
    plans: HashMap<String, Arc<TablePlan>>,
    /// How long a snapshot may wait for older transactions to end.
    patience: Duration,
}

impl PostgresTables {
    /// Connects to both databases and checks every mapped table against
    /// them (a mismatch is refused here, naming table and column).
    /// With `capture_slot`, the source must have that replication slot:
    /// writes committed before it exists would never be reported.
    pub fn open(
        source_url: &str,
        destination_url: &str,
        mapping: Mapping,
        capture_slot: Option<&str>,
    ) -> anyhow::Result<PostgresTables> {
        let mut source = pg::connect(source_url).context("source")?;
        let mut destination = pg::connect(destination_url).context("destination")?;
        // The source only ever commits the empty transactions that take a
        // snapshot's transaction ID: losing one in a crash loses nothing,
        // so it need not wait for a WAL flush.
        source
            .batch_execute("SET synchronous_commit = off")
            .map_err(pg::failed_at("source"))?;
        if let Some(slot) = capture_slot {
            let exists = source
                .query_opt(
                    "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
                    &[&slot],
                )
                .map_err(pg::failed_at("source"))?
                .is_some();
            if !exists {
                anyhow::bail!(
                    "{}: there is no replication slot {slot}: start `shadowcast capture` first (writes committed before its slot exists would be missed), or pass --without-capture if the source takes no writes",
                    pg::display_url(source_url)
                );
            }
        }
        create_row_versions(&mut destination).map_err(pg::failed_at(format!(
            "destination: creating {ROW_VERSIONS}"
        )))?;
        let mut plans = HashMap::new();
        for (table, rule) in &mapping.tables {
            let plan = TablePlan::build(&mut source, &mut destination, table, Some(rule), true)?;
            plans.insert(table.clone(), Arc::new(plan));
        }
        Ok(PostgresTables {
            source_name: pg::display_url(source_url),
            destination_name: pg::display_url(destination_url),
            source,
            destination,
            mapping,
            plans,
            patience: Duration::from_secs(30),
        })
    }

    fn plan(&mut self, table: &str) -> Result<Arc<TablePlan>, DatabaseError> {
        if !self.plans.contains_key(table) {
            let plan = TablePlan::build(
                &mut self.source,
                &mut self.destination,
                table,
                self.mapping.tables.get(table),
                true,
            )
            .map_err(|error| DatabaseError {
                database: format!("{} → {}", self.source_name, self.destination_name),
                problem: format!("{error:#}"),
            })?;
            self.plans.insert(table.to_string(), Arc::new(plan));
        }
        Ok(Arc::clone(&self.plans[table]))
    }
}

/// Several executors may start at once: the lock makes one create it.
fn create_row_versions(destination: &mut Client) -> Result<(), postgres::Error> {
    let mut transaction = destination.transaction()?;
    transaction.batch_execute(&format!(
        "SELECT pg_advisory_xact_lock(7318034551); \
         CREATE TABLE IF NOT EXISTS {ROW_VERSIONS} (\
             table_name text NOT NULL, key bytea NOT NULL, version bigint NOT NULL, \
             PRIMARY KEY (table_name, key))"
    ))?;
    transaction.commit()
}

/// One `text[]` per primary-key column, from the decoded keys.
fn key_arrays<'a>(parts: &[&'a Vec<String>], columns: usize) -> Vec<Vec<&'a str>> {
    (0..columns)
        .map(|i| parts.iter().map(|p| p[i].as_str()).collect())
        .collect()
}

impl Copier for PostgresTables {
    fn versions(&self) -> crate::scheduler::Versions {
        crate::scheduler::Versions::Lsn
    }

    fn copy(
        &mut self,
        table: &str,
        keys: &[&proto::LeasedKey],
    ) -> Result<Vec<Result<u64, String>>, DatabaseError> {
        let patience = self.patience;
        let plan = self.plan(table)?;
        let columns = plan.source.primary_key.len();
        let decoded: Vec<Result<Vec<String>, key::KeyError>> =
            keys.iter().map(|k| key::decode(&k.key, columns)).collect();
        let valid: Vec<usize> = (0..keys.len()).filter(|&i| decoded[i].is_ok()).collect();
        let parts: Vec<&Vec<String>> = valid
            .iter()
            .map(|&i| decoded[i].as_ref().expect("kept only decoded keys"))
            .collect();
        let arrays = key_arrays(&parts, columns);

        let source_failed = |problem: String| DatabaseError {
            database: self.source_name.clone(),
            problem: format!("table {table}: {problem}"),
        };
        let (rows, version) = {
            let (mut snapshot, version) = pg::lsn::snapshot(&mut self.source, patience)
                .map_err(|e| source_failed(e.to_string()))?;
            let rows = snapshot
                .query(&plan.select, &pg::params(&arrays))
                .map_err(|e| source_failed(describe_error(&e)))?;
            snapshot
                .commit()
                .map_err(|e| source_failed(describe_error(&e)))?;
            (rows, version)
        };
        let mut found: Vec<Option<String>> = vec![None; valid.len()];
        for row in &rows {
            let position: i64 = row.get(0);
            found[(position - 1) as usize] = Some(row.get(1));
        }

        let destination_failed = |problem: String| DatabaseError {
            database: self.destination_name.clone(),
            problem: format!("table {}: {problem}", plan.destination.name),
        };
        let write = |destination: &mut Client| -> Result<(), postgres::Error> {
            let mut transaction = destination.transaction()?;
            let names: Vec<&[u8]> = valid.iter().map(|&i| &keys[i].key[..]).collect();
            let versions = vec![crate::executor::to_sql_version(version); names.len()];
            let newer: HashSet<Vec<u8>> = transaction
                .query(
                    &format!(
                        "INSERT INTO {ROW_VERSIONS} AS v (table_name, key, version) \
                         SELECT $1, key, version FROM unnest($2::bytea[], $3::int8[]) AS u(key, version) \
                         ON CONFLICT (table_name, key) DO UPDATE SET version = excluded.version \
                         WHERE v.version < excluded.version RETURNING key"
                    ),
                    &[&table, &names, &versions],
                )?
                .iter()
                .map(|row| row.get(0))
                .collect();
            let mut present = String::from("[");
            let mut absent = Vec::new();
            for (slot, &i) in valid.iter().enumerate() {
                if !newer.contains(&keys[i].key[..]) {
                    continue;
                }
                match &found[slot] {
                    Some(json) => {
                        if present.len() > 1 {
                            present.push(',');
                        }
                        present.push_str(json);
                    }
                    None => absent.push(parts[slot]),
                }
            }
            present.push(']');
            if present.len() > 2 {
                transaction.execute(&plan.upsert, &[&present])?;
            }
            if !absent.is_empty() {
                let arrays = key_arrays(&absent, columns);
                transaction.execute(&plan.delete, &pg::params(&arrays))?;
            }
            transaction.commit()
        };
        write(&mut self.destination).map_err(|e| destination_failed(describe_error(&e)))?;
        Ok(decoded
            .into_iter()
            .map(|d| {
                d.map(|_| version)
                    .map_err(|e| format!("table {table}: {e}"))
            })
            .collect())
    }
}
