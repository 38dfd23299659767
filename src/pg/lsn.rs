//! Log sequence numbers as versions, and a source snapshot whose version
//! is exact.
//!
//! A write's version is the LSN where its transaction's commit record
//! starts (what logical decoding reports as the commit LSN). A copy's
//! version is `L - 1`, where `L` is the WAL insert position read before
//! the copy's snapshot was taken, and the snapshot is taken only once
//! every transaction that had an ID by then has ended. So a commit record
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

/// Opens a read-only REPEATABLE READ transaction on `client` and returns it
/// with its version (the module comment says why the version is exact).
/// Waits up to `patience` for transactions open before it to end.
pub fn snapshot(
    client: &mut Client,
    patience: Duration,
) -> Result<(Transaction<'_>, u64), SnapshotError> {
    // One simple query runs both statements in order in one implicit
    // transaction, which ends (taking its fresh ID with it) before the
    // snapshot below.
    let answers = client.simple_query(
        "SELECT pg_current_wal_insert_lsn()::text; SELECT pg_current_xact_id()::text",
    )?;
    let values: Vec<&str> = answers
        .iter()
        .filter_map(|message| match message {
            postgres::SimpleQueryMessage::Row(row) => row.get(0),
            _ => None,
        })
        .collect();
    let [insert_position, last_id] = values[..] else {
        unreachable!("two statements give two rows");
    };
    let insert_position = parse(insert_position).expect("the server writes LSNs as X/Y");
    let last_id: u64 = last_id.parse().expect("the server writes xid8 as a number");
    // Once no transaction with an ID up to `last_id` is open, none ever
    // will be again: the check can wait outside the snapshot's transaction.
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        let oldest: String = client
            .query_one("SELECT pg_snapshot_xmin(pg_current_snapshot())::text", &[])?
            .get(0);
        let oldest: u64 = oldest.parse().expect("the server writes xid8 as a number");
        if oldest > last_id {
            break;
        }
        if started.elapsed() > patience {
            return Err(blocked(client, oldest, started.elapsed()));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
    let transaction = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()?;
    Ok((transaction, insert_position - 1))
}

fn blocked(client: &mut Client, xid: u64, waited: Duration) -> SnapshotError {
    let found = client.query_opt(
        "SELECT pid, coalesce(state, '?'), coalesce(xact_start::text, '?') FROM pg_stat_activity \
         WHERE backend_xid::text = $1",
        &[&(xid & 0xffff_ffff).to_string()],
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
