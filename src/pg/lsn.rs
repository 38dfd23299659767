//! Log sequence numbers as versions, and a source snapshot whose version
//! is exact.
//!
//! A write's version is the LSN where its transaction's commit record
//! starts (what logical decoding reports as the commit LSN). A copy's
//! version is `L - 1`, where `L` is the WAL insert position read before
//! the copy's snapshot was taken, and the snapshot is taken only once
//! every transaction that had an ID by then has ended (every one of the
//! source database's when the role may see every session's ID, else every
//! one of the server's). So a commit record
//! that starts before `L` belongs to a transaction that had ended — and is
//! visible — when the snapshot was taken, and one that starts at `L` or
//! later is not counted: the copy holds every write whose version is at
//! most its own, which is what "current" means to the service. (The WAL
//! insert position alone would not do: a transaction's commit record is
//! written before the transaction becomes visible, so a snapshot can miss
//! a commit whose record is already behind the insert position.)

use std::time::{Duration, Instant};

use postgres::{Client, IsolationLevel, Transaction};

/// `X/Y` (PostgreSQL's text form of an LSN) as a number.
pub fn parse(text: &str) -> Result<u64, String> {
    let (high, low) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?} is not an LSN (X/Y in hexadecimal)"))?;
    let half = |part: &str| {
        u32::from_str_radix(part, 16)
            .map_err(|_| format!("{text:?} is not an LSN (X/Y in hexadecimal)"))
    };
    Ok((u64::from(half(high)?) << 32) | u64::from(half(low)?))
}

/// PostgreSQL's text form of an LSN.
pub fn format(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

/// Why no snapshot could be taken.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{}", super::describe_error(.0))]
    Database(#[from] postgres::Error),
    #[error(
        "transaction {xid} (backend {pid}, {state}, open since {since}) has stayed open on the source for more than {waited:?}; a copy waits for the transactions open before it to end, so that its version is exact"
    )]
    Blocked {
        xid: String,
        pid: i32,
        state: String,
        since: String,
        waited: Duration,
    },
}

/// The oldest transaction of this database (sessions and prepared
/// transactions) whose ID is at most `$1` (a 32-bit xid; `age` compares
/// them across wrap-around), or NULL.
const OPEN_IN_THIS_DATABASE: &str = "SELECT min(id::text) FROM (\
     SELECT backend_xid AS id FROM pg_stat_activity \
     WHERE datname = current_database() AND backend_xid IS NOT NULL \
     UNION ALL SELECT transaction FROM pg_prepared_xacts WHERE database = current_database()\
     ) open WHERE age(id) >= age($1::text::xid)";

/// The same over every database: the oldest open transaction ID if it is
/// at most `$1` (a 64-bit xid8), else NULL.
const OPEN_ANYWHERE: &str = "SELECT x::text FROM \
     (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS x) oldest WHERE x <= $1::text::xid8";

/// Opens a read-only REPEATABLE READ transaction on `client` and returns it
/// with its version (the module comment says why the version is exact).
/// Waits up to `patience` for transactions open before it to end.
pub fn snapshot(
    client: &mut Client,
    patience: Duration,
) -> Result<(Transaction<'_>, u64), SnapshotError> {
    // One simple query runs the statements in order in one implicit
    // transaction, which ends (taking its fresh ID with it) before the
    // snapshot below.
    let answers = client.simple_query(
        "SELECT pg_current_wal_insert_lsn()::text; SELECT pg_current_xact_id()::text; \
         SELECT pg_has_role('pg_read_all_stats', 'MEMBER')::text",
    )?;
    let values: Vec<&str> = answers
        .iter()
        .filter_map(|message| match message {
            postgres::SimpleQueryMessage::Row(row) => row.get(0),
            _ => None,
        })
        .collect();
    let [insert_position, last_id, sees_every_session] = values[..] else {
        unreachable!("three statements give three rows");
    };
    let insert_position = parse(insert_position).expect("the server writes LSNs as X/Y");
    let last_id: u64 = last_id.parse().expect("the server writes xid8 as a number");
    // Only this database's transactions can write its tables, but only a
    // role that sees every session's transaction ID can tell which they
    // are; any other waits for every database's.
    let (open_before, last_id_text) = if sees_every_session == "true" {
        (OPEN_IN_THIS_DATABASE, (last_id & 0xffff_ffff).to_string())
    } else {
        (OPEN_ANYWHERE, last_id.to_string())
    };
    // Once no transaction with an ID up to `last_id` is open, none ever
    // will be again: the check can wait outside the snapshot's transaction.
    let started = Instant::now();
    let mut pause = Duration::from_micros(500);
    loop {
        let oldest: Option<String> = client.query_one(open_before, &[&last_id_text])?.get(0);
        let Some(oldest) = oldest else {
            break;
        };
        if started.elapsed() > patience {
            return Err(blocked(client, &oldest, started.elapsed()));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
    let transaction = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()?;
    Ok((transaction, insert_position - 1))
}

fn blocked(client: &mut Client, xid: &str, waited: Duration) -> SnapshotError {
    let short = xid
        .parse::<u64>()
        .map_or_else(|_| xid.to_string(), |id| (id & 0xffff_ffff).to_string());
    let found = client.query_opt(
        "SELECT pid, coalesce(state, '?'), coalesce(xact_start::text, '?') FROM pg_stat_activity \
         WHERE backend_xid::text = $1",
        &[&short],
    );
    let (pid, state, since) = match found {
        Ok(Some(row)) => (row.get(0), row.get(1), row.get(2)),
        _ => (0, "state unknown".to_string(), "?".to_string()),
    };
    SnapshotError::Blocked {
        xid: xid.to_string(),
        pid,
        state,
        since,
        waited,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lsns_read_and_write_as_postgresql_does() {
        assert_eq!(super::parse("0/1532EC0").unwrap(), 0x1532EC0);
        assert_eq!(
            super::parse("16/B374D848").unwrap(),
            (0x16 << 32) | 0xB374D848
        );
        assert_eq!(super::format((0x16 << 32) | 0xB374D848), "16/B374D848");
        assert!(super::parse("12345").is_err());
        assert!(super::parse("G/0").is_err());
    }
}
