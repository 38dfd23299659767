//! The `shadowcast_status` table in the destination: where the migration
//! stands, readable with `psql` by whoever runs the cut-over.
//!
//! One row for the whole migration (`scope = 'migration'`, `table_name =
//! ''`) and one per table (`scope = 'table'`), replaced every few seconds;
//! columns that only the whole migration has are NULL in the table rows.
//!
//! | column | meaning |
//! |---|---|
//! | `scope`, `table_name` | `migration` and `''`, or `table` and the table's name |
//! | `phase` | SHADOWING, BACKGROUND, CUTOVER_READY or DONE (slowest shard) |
//! | `paused` | copying paused by an operator |
//! | `keys_total`, `bytes_total` | keys tracked and their bytes |
//! | `keys_current`, `bytes_current` | in the destination at their latest version |
//! | `keys_stale`, `bytes_stale` | copied, then written again (re-sync pending) |
//! | `keys_source_only`, `bytes_source_only` | not copied yet |
//! | `keys_leased` | under a live lease (being copied; `keys_source_only` counts leased keys too in table rows) |
//! | `shadow_keys`, `shadow_keys_current`, `shadow_completeness` | the shadow sample, how much of it is current, and the share |
//! | `predicted_access_share_current` | share of the model's predicted accesses on current keys |
//! | `confidence`, `confidence_threshold`, `confidence_parts` | the migration confidence, the threshold CUTOVER waits for, and its parts (JSON) |
//! | `throughput_keys_per_s`, `eta_seconds` | over the last minute; NULL when unknown |
//! | `capture_slot`, `capture_confirmed_lsn`, `capture_retained_wal_bytes` | the replication slot, how far it is confirmed, and the WAL the source keeps for it |
//! | `updated_at` | when the row was written |

use postgres::Client;

use crate::service::proto;

pub const STATUS_TABLE: &str = "shadowcast_status";

/// The replication slot as the source sees it.
#[derive(Clone, Debug)]
pub struct SlotFigures {
    pub name: String,
    pub confirmed_lsn: Option<String>,
    pub retained_wal_bytes: Option<i64>,
}

pub fn create(destination: &mut Client) -> Result<(), postgres::Error> {
    destination.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {STATUS_TABLE} (\
             scope text NOT NULL, table_name text PRIMARY KEY, phase text NOT NULL, paused boolean, \
             keys_total bigint NOT NULL, bytes_total bigint NOT NULL, \
             keys_current bigint NOT NULL, bytes_current bigint NOT NULL, \
             keys_stale bigint NOT NULL, bytes_stale bigint NOT NULL, \
             keys_source_only bigint NOT NULL, bytes_source_only bigint NOT NULL, \
             keys_leased bigint, \
             shadow_keys bigint NOT NULL, shadow_keys_current bigint NOT NULL, \
             shadow_completeness double precision NOT NULL, \
             predicted_access_share_current double precision, \
             confidence double precision, confidence_threshold double precision, \
             confidence_parts jsonb, \
             throughput_keys_per_s double precision, eta_seconds double precision, \
             capture_slot text, capture_confirmed_lsn text, capture_retained_wal_bytes bigint, \
             updated_at timestamptz NOT NULL)"
    ))
}

pub fn slot_figures(
    source: &mut Client,
    slot: &str,
) -> Result<Option<SlotFigures>, postgres::Error> {
    Ok(source
        .query_opt(
            "SELECT confirmed_flush_lsn::text, \
                    pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )?
        .map(|row| SlotFigures {
            name: slot.to_string(),
            confirmed_lsn: row.get(0),
            retained_wal_bytes: row.get(1),
        }))
}

/// One row's figures.
struct Row<'a> {
    scope: &'static str,
    table_name: &'a str,
    total: Option<proto::KeysAndBytes>,
    current: Option<proto::KeysAndBytes>,
    stale: Option<proto::KeysAndBytes>,
    source_only: Option<proto::KeysAndBytes>,
    sample: Option<proto::KeysAndBytes>,
    sample_current: Option<proto::KeysAndBytes>,
    /// The whole migration's own figures; `None` in a table's row.
    whole: Option<&'a proto::Status>,
}

/// Replaces the migration's row and each table's with `status`.
pub fn write(
    destination: &mut Client,
    status: &proto::Status,
    slot: Option<&SlotFigures>,
) -> Result<(), postgres::Error> {
    let phase = proto::Phase::try_from(status.phase)
        .map_or("UNKNOWN", |p| p.as_str_name())
        .trim_start_matches("PHASE_");
    let parts: Option<String> = serde_json::from_str::<serde_json::Value>(&status.json)
        .ok()
        .and_then(|json| json.get("confidence").map(|c| c.to_string()));
    let mut rows = vec![Row {
        scope: "migration",
        table_name: "",
        total: status.total,
        current: status.current,
        stale: status.stale,
        source_only: status.source_only,
        sample: status.sample,
        sample_current: status.sample_current,
        whole: Some(status),
    }];
    rows.extend(status.tables.iter().map(|table| Row {
        scope: "table",
        table_name: &table.table,
        total: table.total,
        current: table.current,
        stale: table.stale,
        source_only: table.source_only,
        sample: table.sample,
        sample_current: table.sample_current,
        whole: None,
    }));
    let counts = |part: Option<proto::KeysAndBytes>| {
        let part = part.unwrap_or_default();
        (part.keys as i64, part.bytes as i64)
    };
    let mut transaction = destination.transaction()?;
    let upsert = transaction.prepare(&format!(
        "INSERT INTO {STATUS_TABLE} VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
         $13, $14, $15, $16, $17, $18, $19, $20::text::jsonb, $21, $22, $23, $24, $25, now()) \
         ON CONFLICT (table_name) DO UPDATE SET scope = excluded.scope, phase = excluded.phase, \
         paused = excluded.paused, keys_total = excluded.keys_total, bytes_total = excluded.bytes_total, \
         keys_current = excluded.keys_current, bytes_current = excluded.bytes_current, \
         keys_stale = excluded.keys_stale, bytes_stale = excluded.bytes_stale, \
         keys_source_only = excluded.keys_source_only, bytes_source_only = excluded.bytes_source_only, \
         keys_leased = excluded.keys_leased, shadow_keys = excluded.shadow_keys, \
         shadow_keys_current = excluded.shadow_keys_current, \
         shadow_completeness = excluded.shadow_completeness, \
         predicted_access_share_current = excluded.predicted_access_share_current, \
         confidence = excluded.confidence, confidence_threshold = excluded.confidence_threshold, \
         confidence_parts = excluded.confidence_parts, \
         throughput_keys_per_s = excluded.throughput_keys_per_s, eta_seconds = excluded.eta_seconds, \
         capture_slot = excluded.capture_slot, capture_confirmed_lsn = excluded.capture_confirmed_lsn, \
         capture_retained_wal_bytes = excluded.capture_retained_wal_bytes, updated_at = now()"
    ))?;
    for row in &rows {
        let (keys_total, bytes_total) = counts(row.total);
        let (keys_current, bytes_current) = counts(row.current);
        let (keys_stale, bytes_stale) = counts(row.stale);
        let (keys_source_only, bytes_source_only) = counts(row.source_only);
        let (shadow_keys, _) = counts(row.sample);
        let (shadow_current, _) = counts(row.sample_current);
        let completeness = if shadow_keys == 0 {
            1.0
        } else {
            shadow_current as f64 / shadow_keys as f64
        };
        let whole = row.whole;
        let slot = whole.and(slot);
        transaction.execute(
            &upsert,
            &[
                &row.scope,
                &row.table_name,
                &phase,
                &whole.map(|s| s.paused),
                &keys_total,
                &bytes_total,
                &keys_current,
                &bytes_current,
                &keys_stale,
                &bytes_stale,
                &keys_source_only,
                &bytes_source_only,
                &whole.map(|s| counts(s.leased).0),
                &shadow_keys,
                &shadow_current,
                &completeness,
                &whole.map(|s| s.predicted_access_share_in_destination),
                &whole.map(|s| s.confidence),
                &whole.map(|s| s.confidence_threshold),
                &whole.and(parts.as_deref()),
                &whole.map(|s| s.throughput_keys_per_s),
                &whole.and_then(|s| s.eta_seconds),
                &slot.map(|s| s.name.as_str()),
                &slot.and_then(|s| s.confirmed_lsn.as_deref()),
                &slot.and_then(|s| s.retained_wal_bytes),
            ],
        )?;
    }
    transaction.commit()
}
