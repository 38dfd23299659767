//! PostgreSQL as a migration's source and destination: what the tables
//! executor, `capture` and `verify` share.
//!
//! Takes: connection URLs and table names as the access logs spell them
//! (`table` in the connection's current schema, or `schema.table`).
//! Gives: each table's shape from the catalog ([`catalog`]), the canonical
//! access-log key of a row ([`key`]), and log sequence numbers as versions
//! with a snapshot whose version is exact ([`lsn`]).
//! Guarantees: a name is looked up exactly as given (no case folding) and
//! written into SQL only as PostgreSQL quotes it; a URL's password never
//! appears in an error.

pub mod catalog;
pub mod key;
pub mod lsn;

use postgres::{Client, NoTls};

/// A database's name for messages: the URL without its user and password.
pub fn display_url(url: &str) -> String {
    match url.rsplit_once('@') {
        Some((_, rest)) => format!("postgres://…@{rest}"),
        None => url.to_string(),
    }
}

/// The session settings every connection of the executor, capture and
/// verify pins: the text form of a value (and so a key, and a row's
/// checksum) must not depend on a server's or a database's defaults.
const TEXT_FORMS: &str = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; \
     SET IntervalStyle = 'postgres'; SET bytea_output = 'hex'; SET extra_float_digits = 1";

/// Connects to `url` with the session settings that pin text forms (UTC,
/// ISO dates, hex bytea, shortest round-trip floats), naming the database
/// (not the password) on failure.
pub fn connect(url: &str) -> anyhow::Result<Client> {
    let mut client = Client::connect(url, NoTls).map_err(failed_at(display_url(url)))?;
    client
        .batch_execute(TEXT_FORMS)
        .map_err(failed_at(display_url(url)))?;
    Ok(client)
}

/// A PostgreSQL error with the server's message, detail and hint when
/// there are any (the driver's `Display` says only "db error").
pub fn describe_error(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut text = db.message().to_string();
            if let Some(detail) = db.detail() {
                text.push_str(&format!(" ({detail})"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!("; hint: {hint}"));
            }
            text
        }
        None => error.to_string(),
    }
}

/// Turns a PostgreSQL error into one that says where it happened (`source`,
/// a database's name, a step) and what the server said.
pub fn failed_at(place: impl std::fmt::Display) -> impl FnOnce(postgres::Error) -> anyhow::Error {
    move |error| anyhow::anyhow!("{place}: {}", describe_error(&error))
}

/// The server's words alone, for a caller that says where.
pub fn failed(error: postgres::Error) -> anyhow::Error {
    anyhow::Error::msg(describe_error(&error))
}

/// `values` as statement parameters.
pub fn params<T: postgres::types::ToSql + Sync>(
    values: &[T],
) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    values
        .iter()
        .map(|v| v as &(dyn postgres::types::ToSql + Sync))
        .collect()
}

/// `"name"`, an identifier safe to put in SQL whatever `name` holds.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
