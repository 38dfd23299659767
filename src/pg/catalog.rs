//! Tables as the catalog describes them: columns, types, primary key.

use postgres::GenericClient;

use super::quote_identifier;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// The type as `format_type` writes it (`numeric(10,2)`, `uuid`).
    pub sql_type: String,
    pub not_null: bool,
    pub has_default: bool,
    /// A generated column: computed by the table, never written.
    pub generated: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    /// The name as the access logs give it.
    pub name: String,
    /// The schema-qualified name as SQL should say it.
    pub sql_name: String,
    pub columns: Vec<Column>,
    /// Positions in `columns` of the primary key's columns, in key order;
    /// empty when the table has none.
    pub primary_key: Vec<usize>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn key_columns(&self) -> impl Iterator<Item = &Column> {
        self.primary_key.iter().map(|&i| &self.columns[i])
    }

    /// The primary key's column types, in key order.
    pub fn key_types(&self) -> Vec<&str> {
        self.key_columns().map(|c| c.sql_type.as_str()).collect()
    }

    /// `a, b`: the primary key's columns, quoted, prefixed by `alias.`
    /// when one is given.
    pub fn key_list(&self, alias: Option<&str>) -> String {
        let prefix = alias.map(|a| format!("{a}.")).unwrap_or_default();
        self.key_columns()
            .map(|c| format!("{prefix}{}", quote_identifier(&c.name)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `schema.table` splits at its first dot; a bare name is in the current
/// schema.
fn schema_and_name(name: &str) -> (Option<&str>, &str) {
    match name.split_once('.') {
        Some((schema, table)) => (Some(schema), table),
        None => (None, name),
    }
}

/// The table (or partitioned table) `name`, or `None` when there is none.
pub fn describe(
    client: &mut impl GenericClient,
    name: &str,
) -> Result<Option<Table>, postgres::Error> {
    let (schema, table) = schema_and_name(name);
    let rows = client.query(
        "SELECT c.oid::regclass::text, a.attname::text, format_type(a.atttypid, a.atttypmod), \
                a.attnotnull, a.atthasdef, a.attgenerated::text <> '', \
                array_position(i.indkey::int2[], a.attnum) \
         FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
         LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary \
         WHERE n.nspname = coalesce($1, current_schema()) AND c.relname = $2 \
           AND c.relkind IN ('r', 'p') \
         ORDER BY a.attnum",
        &[&schema, &table],
    )?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let mut described = Table {
        name: name.to_string(),
        sql_name: first.get(0),
        columns: Vec::with_capacity(rows.len()),
        primary_key: Vec::new(),
    };
    let mut key: Vec<(i32, usize)> = Vec::new();
    for (position, row) in rows.iter().enumerate() {
        described.columns.push(Column {
            name: row.get(1),
            sql_type: row.get(2),
            not_null: row.get(3),
            has_default: row.get(4),
            generated: row.get(5),
        });
        if let Some(order) = row.get::<_, Option<i32>>(6) {
            key.push((order, position));
        }
    }
    key.sort_unstable();
    described.primary_key = key.into_iter().map(|(_, position)| position).collect();
    Ok(Some(described))
}

/// Every table of the current schema with a primary key, by name.
pub fn tables_with_keys(client: &mut impl GenericClient) -> Result<Vec<String>, postgres::Error> {
    let rows = client.query(
        "SELECT c.relname::text FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') \
           AND EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) \
           AND c.relname NOT LIKE 'shadowcast\\_%' \
         ORDER BY 1",
        &[],
    )?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}
