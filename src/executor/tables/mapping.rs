//! The executor's mapping file: where each source table goes and how its
//! columns become the destination's, checked against both catalogs.
//!
//! ```toml
//! [tables.customers]            # the source table, as the access logs name it
//! destination = "customers_v2"  # default: the same name
//! columns = { full_name = "name" }  # destination column = source column;
//!                                   # others take the source column of their name
//!
//! [tables.orders]
//! query = "SELECT region, id, total, total * 100 AS total_cents FROM orders"
//! ```
//!
//! A `query` returns the destination's columns by name; its
//! primary-key columns must hold the source's primary key, in order (they
//! are what a leased key is looked up by).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use postgres::Client;

use crate::pg::catalog::{self, Table};
use crate::pg::{self, quote_identifier};

#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    #[serde(default)]
    pub tables: BTreeMap<String, TableMapping>,
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableMapping {
    pub destination: Option<String>,
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    pub query: Option<String>,
}

impl Mapping {
    pub fn read(path: &Path) -> anyhow::Result<Mapping> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the mapping file {}", path.display()))?;
        let mapping: Mapping = toml::from_str(&text)
            .map_err(|error| anyhow::anyhow!("mapping file {}: {error}", path.display()))?;
        for (table, rule) in &mapping.tables {
            if rule.query.is_some() && !rule.columns.is_empty() {
                bail!(
                    "mapping file {}: table {table} has both `query` and `columns`; give one",
                    path.display()
                );
            }
        }
        Ok(mapping)
    }
}

/// How one table is copied: the statements, built once from the catalogs.
#[derive(Clone, Debug)]
pub struct TablePlan {
    pub source: Table,
    pub destination: Table,
    /// Reads the rows of keys given as one `text[]` per primary-key
    /// column: `(position in the arrays, 1-based; the row as JSON with the
    /// destination's column names)`.
    pub select: String,
    /// Upserts the rows of a JSON array (`$1`).
    pub upsert: String,
    /// Deletes the rows of keys given as one `text[]` per key column.
    pub delete: String,
    /// Every source row as the destination should hold it: the
    /// destination's column names, its key columns holding the source's
    /// key (for `verify`).
    pub source_rows: String,
    /// Every destination row, the same columns in the same order.
    pub destination_rows: String,
}

impl TablePlan {
    /// Checks `rule` (or the identity mapping) against both catalogs and
    /// builds the statements; with `create_missing`, creates a missing
    /// destination table like the source's when the mapping is the identity.
    pub fn build(
        source: &mut Client,
        destination: &mut Client,
        table: &str,
        rule: Option<&TableMapping>,
        create_missing: bool,
    ) -> anyhow::Result<TablePlan> {
        let identity = TableMapping::default();
        let rule = rule.unwrap_or(&identity);
        let source_table = catalog::describe(source, table)
            .map_err(pg::failed_at(format!("source: describing table {table}")))?
            .ok_or_else(|| anyhow::anyhow!("source: there is no table {table}"))?;
        if source_table.primary_key.is_empty() {
            bail!(
                "source table {table} has no primary key: its rows have no key to be copied by (add one, or leave the table out)"
            );
        }
        let target = rule.destination.as_deref().unwrap_or(table);
        let described = catalog::describe(destination, target).map_err(pg::failed_at(format!(
            "destination: describing table {target}"
        )))?;
        let destination_table = match described {
            Some(found) => found,
            None if create_missing && rule.query.is_none() && rule.columns.is_empty() => {
                create_like(destination, target, &source_table)?
            }
            None => bail!("destination: there is no table {target} (mapped from {table})"),
        };
        if destination_table.primary_key.len() != source_table.primary_key.len() {
            bail!(
                "destination table {target} has a primary key of {} columns ({}); source table {table}'s has {} ({}): a key must name one row on both sides",
                destination_table.primary_key.len(),
                destination_table.key_list(None),
                source_table.primary_key.len(),
                source_table.key_list(None),
            );
        }
        let produced = match &rule.query {
            Some(query) => query_columns(source, table, query, &destination_table)?,
            None => mapped_columns(table, rule, &source_table, &destination_table)?,
        };
        Ok(TablePlan::statements(
            source_table,
            destination_table,
            rule,
            produced,
        ))
    }

    fn statements(
        source: Table,
        destination: Table,
        rule: &TableMapping,
        produced: Vec<(String, String)>,
    ) -> TablePlan {
        let key_count = source.primary_key.len();
        let arrays = (1..=key_count)
            .map(|i| format!("${i}::text[]"))
            .collect::<Vec<_>>()
            .join(", ");
        let key_names = (1..=key_count)
            .map(|i| format!("k{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let match_keys = |alias: &str, columns: Vec<&str>, types: Vec<&str>| {
            columns
                .iter()
                .zip(types)
                .enumerate()
                .map(|(i, (column, sql_type))| {
                    format!(
                        "{alias}.{} = k.k{}::{sql_type}",
                        quote_identifier(column),
                        i + 1
                    )
                })
                .collect::<Vec<_>>()
                .join(" AND ")
        };
        let source_types = source.key_types();
        let destination_keys: Vec<&str> =
            destination.key_columns().map(|c| c.name.as_str()).collect();
        let (source_rows, rows) = match &rule.query {
            Some(query) => (
                format!("SELECT q.* FROM ({query}) q"),
                format!(
                    "SELECT q.* FROM ({query}) q WHERE {}",
                    match_keys("q", destination_keys.clone(), source_types.clone())
                ),
            ),
            None => {
                let projection = format!(
                    "SELECT {} FROM {} s",
                    produced
                        .iter()
                        .map(|(to, from)| format!(
                            "s.{} AS {}",
                            quote_identifier(from),
                            quote_identifier(to)
                        ))
                        .collect::<Vec<_>>()
                        .join(", "),
                    source.sql_name,
                );
                let filtered = format!(
                    "{projection} WHERE {}",
                    match_keys(
                        "s",
                        source.key_columns().map(|c| c.name.as_str()).collect(),
                        source_types.clone()
                    )
                );
                (projection, filtered)
            }
        };
        let select = format!(
            "SELECT k.position, row_to_json(r)::text \
             FROM unnest({arrays}) WITH ORDINALITY AS k({key_names}, position) \
             CROSS JOIN LATERAL ({rows}) r"
        );
        let written: Vec<String> = produced
            .iter()
            .map(|(to, _)| quote_identifier(to))
            .collect();
        let updates: Vec<String> = produced
            .iter()
            .filter(|(to, _)| !destination_keys.contains(&to.as_str()))
            .map(|(to, _)| format!("{0} = excluded.{0}", quote_identifier(to)))
            .collect();
        let on_conflict = if updates.is_empty() {
            "DO NOTHING".to_string()
        } else {
            format!("DO UPDATE SET {}", updates.join(", "))
        };
        let upsert = format!(
            "INSERT INTO {table} ({columns}) SELECT {columns} \
             FROM json_populate_recordset(NULL::{table}, $1::text::json) \
             ON CONFLICT ({keys}) {on_conflict}",
            table = destination.sql_name,
            columns = written.join(", "),
            keys = destination.key_list(None),
        );
        let destination_types = destination.key_types();
        let delete = format!(
            "DELETE FROM {} d USING unnest({arrays}) AS k({key_names}) WHERE {}",
            destination.sql_name,
            match_keys("d", destination_keys.clone(), destination_types)
        );
        let destination_rows = format!(
            "SELECT {} FROM {}",
            written.join(", "),
            destination.sql_name
        );
        TablePlan {
            source,
            destination,
            select,
            upsert,
            delete,
            source_rows,
            destination_rows,
        }
    }
}

/// `(destination column, source column)` for every destination column a
/// column mapping fills.
fn mapped_columns(
    table: &str,
    rule: &TableMapping,
    source: &Table,
    destination: &Table,
) -> anyhow::Result<Vec<(String, String)>> {
    for (to, from) in &rule.columns {
        if destination.column(to).is_none() {
            bail!(
                "mapping for table {table}: destination table {} has no column {to}",
                destination.name
            );
        }
        if source.column(from).is_none() {
            bail!(
                "mapping for table {table}: destination column {to} takes source column {from}, which table {table} does not have"
            );
        }
    }
    let mut produced = Vec::new();
    for column in destination.columns.iter().filter(|c| !c.generated) {
        let from = match rule.columns.get(&column.name) {
            Some(from) => Some(from.as_str()),
            None => source.column(&column.name).map(|c| c.name.as_str()),
        };
        match from {
            Some(from) => produced.push((column.name.clone(), from.to_string())),
            None if column.not_null && !column.has_default => bail!(
                "destination column {}.{} has no source column in table {table} and no default: map one under [tables.{table}.columns]",
                destination.name,
                column.name
            ),
            None => {}
        }
    }
    for (position, (source_key, destination_key)) in source
        .key_columns()
        .zip(destination.key_columns())
        .enumerate()
    {
        let from = produced
            .iter()
            .find(|(to, _)| *to == destination_key.name)
            .map(|(_, from)| from.as_str());
        if from != Some(source_key.name.as_str()) {
            bail!(
                "destination table {}'s primary-key column {} (number {}) must take source column {} of table {table}, which is at the same place in its primary key",
                destination.name,
                destination_key.name,
                position + 1,
                source_key.name
            );
        }
    }
    Ok(produced)
}

/// The destination columns `query` returns, each checked to be one.
fn query_columns(
    source: &mut Client,
    table: &str,
    query: &str,
    destination: &Table,
) -> anyhow::Result<Vec<(String, String)>> {
    let statement = source
        .prepare(&format!("SELECT * FROM ({query}) q LIMIT 0"))
        .map_err(pg::failed_at(format!(
            "mapping for table {table}: the source cannot run its query"
        )))?;
    let returned: Vec<String> = statement
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    for name in &returned {
        match destination.column(name) {
            None => bail!(
                "mapping for table {table}: the query returns column {name}, which destination table {} does not have",
                destination.name
            ),
            Some(column) if column.generated => bail!(
                "mapping for table {table}: the query returns column {name}, which destination table {} generates itself",
                destination.name
            ),
            Some(_) => {}
        }
    }
    for column in &destination.columns {
        let needed = destination.key_columns().any(|k| k.name == column.name)
            || (column.not_null && !column.has_default && !column.generated);
        if needed && !returned.contains(&column.name) {
            bail!(
                "mapping for table {table}: the query does not return column {} of destination table {}, which needs a value",
                column.name,
                destination.name
            );
        }
    }
    Ok(returned
        .into_iter()
        .map(|name| (name.clone(), name))
        .collect())
}

/// Creates `name` in the destination with the source table's columns,
/// types, NOT NULLs and primary key.
fn create_like(destination: &mut Client, name: &str, source: &Table) -> anyhow::Result<Table> {
    let columns: Vec<String> = source
        .columns
        .iter()
        .map(|c| {
            format!(
                "{} {}{}",
                quote_identifier(&c.name),
                c.sql_type,
                if c.not_null { " NOT NULL" } else { "" }
            )
        })
        .collect();
    let qualified = match name.split_once('.') {
        Some((schema, table)) => {
            format!("{}.{}", quote_identifier(schema), quote_identifier(table))
        }
        None => quote_identifier(name),
    };
    destination
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {qualified} ({}, PRIMARY KEY ({}))",
            columns.join(", "),
            source.key_list(None)
        ))
        .map_err(pg::failed_at(format!(
            "destination: creating table {name} like the source's"
        )))?;
    catalog::describe(destination, name)?
        .ok_or_else(|| anyhow::anyhow!("destination: table {name} was created but is not there"))
}
