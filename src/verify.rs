//! Verification: does the destination hold what the source holds?
//!
//! Takes: a PostgreSQL source and destination (and the executor's mapping,
//! so each side is compared as the destination should hold it).
//! Gives: per table, the rows compared and every key that differs — missing
//! in the destination, left over in it, or with other contents — each
//! marked when a write after the verification's snapshot explains it.
//! Guarantees: each side is read in one snapshot, in primary-key order, a
//! chunk of keys at a time: the source's next chunk and the same key range
//! of the destination come back as keys with an MD5 of each row's JSON
//! text (the server computes them, so rows never cross the network), the
//! two chunks are compared whole, and only a chunk that differs is matched
//! key by key. It runs beside the migration (two read-only snapshots), and
//! no difference is missed: every destination key falls in some chunk's
//! range or after the last one. Key columns must sort alike on both sides
//! (same types and collation).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use postgres::types::ToSql;
use postgres::{GenericClient, IsolationLevel};

use crate::executor::tables::ROW_VERSIONS;
use crate::executor::tables::mapping::{Mapping, TablePlan};
use crate::pg::{self, catalog, key, quote_identifier};

#[derive(Clone, Debug)]
pub struct VerifyOptions {
    pub source: String,
    pub destination: String,
    pub mapping: Mapping,
    /// Tables to compare; every table of the source's current schema with
    /// a primary key when empty.
    pub tables: Vec<String>,
    /// Keys per chunk.
    pub chunk: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Difference {
    MissingInDestination,
    OnlyInDestination,
    Different,
}

impl Difference {
    pub fn describe(self) -> &'static str {
        match self {
            Difference::MissingInDestination => "missing in the destination",
            Difference::OnlyInDestination => "only in the destination",
            Difference::Different => "different",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DifferingKey {
    pub key: Vec<u8>,
    pub difference: Difference,
    /// The destination's copy was made at a version (LSN) after the
    /// verification's source snapshot: a later write explains it.
    pub copied_after_snapshot: Option<u64>,
}

#[derive(Clone, Debug, Default)]
pub struct TableReport {
    pub table: String,
    pub rows: u64,
    pub chunks: u64,
    pub chunks_compared_by_row: u64,
    pub differing: Vec<DifferingKey>,
}

#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    /// The source snapshot's version: writes at later LSNs are not in it.
    pub snapshot_lsn: u64,
    pub tables: Vec<TableReport>,
}

impl VerifyReport {
    /// Keys that differ with no later write to explain them.
    pub fn unexplained(&self) -> impl Iterator<Item = (&str, &DifferingKey)> {
        self.tables.iter().flat_map(|t| {
            t.differing
                .iter()
                .filter(|d| d.copied_after_snapshot.is_none())
                .map(move |d| (t.table.as_str(), d))
        })
    }
}

/// One chunk of one side: keys in order with their rows' checksums.
#[derive(Default, PartialEq, Eq)]
struct Chunk {
    /// The key columns' text forms, per row.
    keys: Vec<Vec<String>>,
    checksums: Vec<String>,
}

pub fn verify(options: &VerifyOptions) -> anyhow::Result<VerifyReport> {
    let mut source = pg::connect(&options.source).context("source")?;
    let mut destination = pg::connect(&options.destination).context("destination")?;
    let tables = if options.tables.is_empty() {
        catalog::tables_with_keys(&mut source).map_err(pg::failed_at("source"))?
    } else {
        options.tables.clone()
    };
    let mut plans = Vec::new();
    for table in &tables {
        plans.push(TablePlan::build(
            &mut source,
            &mut destination,
            table,
            options.mapping.tables.get(table),
            false,
        )?);
    }
    let (mut source_snapshot, snapshot_lsn) =
        pg::lsn::snapshot(&mut source, Duration::from_secs(60))
            .map_err(|e| anyhow::anyhow!("source: {e}"))?;
    let mut destination_snapshot = destination
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(pg::failed_at("destination"))?;
    let mut report = VerifyReport {
        snapshot_lsn,
        tables: Vec::new(),
    };
    for plan in &plans {
        let mut table = compare_table(
            plan,
            &mut source_snapshot,
            &mut destination_snapshot,
            options.chunk.max(1),
        )
        .with_context(|| format!("table {}", plan.source.name))?;
        explain(&mut destination_snapshot, &mut table, snapshot_lsn)
            .map_err(pg::failed_at("destination"))?;
        report.tables.push(table);
    }
    Ok(report)
}

fn compare_table(
    plan: &TablePlan,
    source: &mut impl GenericClient,
    destination: &mut impl GenericClient,
    chunk: usize,
) -> anyhow::Result<TableReport> {
    let count = plan.destination.primary_key.len();
    let key_tuple = plan.destination.key_list(Some("r"));
    let key_text = plan
        .destination
        .key_columns()
        .map(|c| format!("r.{}::text", quote_identifier(&c.name)))
        .collect::<Vec<_>>()
        .join(", ");
    // Bounds travel as text and are cast to each side's key types.
    let bound = |types: &[&str], first: usize| {
        types
            .iter()
            .enumerate()
            .map(|(i, t)| format!("${}::text::{t}", first + i))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rows_where = |projection: &str, condition: String, limit: &str| {
        format!(
            "SELECT {key_text}, md5(row_to_json(r)::text) FROM ({projection}) r \
             WHERE {condition} ORDER BY {key_tuple}{limit}"
        )
    };
    let source_types = plan.source.key_types();
    let destination_types = plan.destination.key_types();
    // $1..$n: the lower bound (exclusive), ignored while $n+1 ("from the
    // start") holds; $n+2..: the upper bound (inclusive).
    let after_lower =
        |types: &[&str]| format!("(${} OR ({key_tuple}) > ({}))", count + 1, bound(types, 1));
    let source_chunk = rows_where(
        &plan.source_rows,
        after_lower(&source_types),
        &format!(" LIMIT {chunk}"),
    );
    let destination_range = rows_where(
        &plan.destination_rows,
        format!(
            "{} AND ({key_tuple}) <= ({})",
            after_lower(&destination_types),
            bound(&destination_types, count + 2)
        ),
        "",
    );
    let destination_tail = rows_where(&plan.destination_rows, after_lower(&destination_types), "");

    let mut report = TableReport {
        table: plan.source.name.clone(),
        ..TableReport::default()
    };
    // NULL bounds before the first chunk: a cast of an empty string could fail.
    let mut lower: Vec<Option<String>> = vec![None; count];
    loop {
        let from_start = lower[0].is_none();
        let mut params = pg::params(&lower);
        params.push(&from_start);
        let source_rows =
            read_chunk(source, &source_chunk, &params).map_err(pg::failed_at("source"))?;
        let Some(last) = source_rows.keys.last().cloned() else {
            // Past the source's last key: what the destination still has
            // there is left over.
            let tail = read_chunk(destination, &destination_tail, &params)
                .map_err(pg::failed_at("destination"))?;
            report.differing.extend(differences(&source_rows, &tail));
            break;
        };
        report.rows += source_rows.keys.len() as u64;
        report.chunks += 1;
        params.extend(pg::params(&last));
        let destination_rows = read_chunk(destination, &destination_range, &params)
            .map_err(pg::failed_at("destination"))?;
        if source_rows != destination_rows {
            report.chunks_compared_by_row += 1;
            report
                .differing
                .extend(differences(&source_rows, &destination_rows));
        }
        lower = last.into_iter().map(Some).collect();
    }
    Ok(report)
}

fn read_chunk(
    client: &mut impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Chunk, postgres::Error> {
    let rows = client.query(sql, params)?;
    let mut chunk = Chunk::default();
    for row in rows {
        let count = row.len() - 1;
        chunk.keys.push((0..count).map(|i| row.get(i)).collect());
        chunk.checksums.push(row.get(count));
    }
    Ok(chunk)
}

fn differences(source: &Chunk, destination: &Chunk) -> Vec<DifferingKey> {
    let by_key = |chunk: &Chunk| -> BTreeMap<Vec<u8>, String> {
        chunk
            .keys
            .iter()
            .zip(&chunk.checksums)
            .map(|(parts, sum)| (key::encode(parts), sum.clone()))
            .collect()
    };
    let (from, to) = (by_key(source), by_key(destination));
    let mut found = Vec::new();
    for (name, sum) in &from {
        let difference = match to.get(name) {
            None => Difference::MissingInDestination,
            Some(other) if other != sum => Difference::Different,
            Some(_) => continue,
        };
        found.push(DifferingKey {
            key: name.clone(),
            difference,
            copied_after_snapshot: None,
        });
    }
    for name in to.keys().filter(|name| !from.contains_key(*name)) {
        found.push(DifferingKey {
            key: name.clone(),
            difference: Difference::OnlyInDestination,
            copied_after_snapshot: None,
        });
    }
    found
}

/// Marks the keys whose destination copy is newer than the snapshot.
fn explain(
    destination: &mut impl GenericClient,
    table: &mut TableReport,
    snapshot_lsn: u64,
) -> Result<(), postgres::Error> {
    if table.differing.is_empty() {
        return Ok(());
    }
    let recorded: bool = destination
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&ROW_VERSIONS])?
        .get(0);
    if !recorded {
        return Ok(());
    }
    let keys: Vec<&[u8]> = table.differing.iter().map(|d| &d.key[..]).collect();
    let versions: BTreeMap<Vec<u8>, i64> = destination
        .query(
            &format!(
                "SELECT key, version FROM {ROW_VERSIONS} WHERE table_name = $1 AND key = ANY($2)"
            ),
            &[&table.table, &keys],
        )?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    for differing in &mut table.differing {
        if let Some(&version) = versions.get(&differing.key)
            && version as u64 > snapshot_lsn
        {
            differing.copied_after_snapshot = Some(version as u64);
        }
    }
    Ok(())
}
