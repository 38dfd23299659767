//! The `shadowcast_status` table in the destination: where the migration
//! stands, readable with `psql` by whoever runs the cut-over.
//!
//! One row, `scope = 'migration'`, replaced every few seconds:
//!
//! | column | meaning |
//! |---|---|
//! | `phase` | SHADOWING, BACKGROUND, CUTOVER_READY or DONE (slowest shard) |
//! | `paused` | copying paused by an operator |
//! | `keys_total`, `bytes_total` | keys tracked and their bytes |
//! | `keys_current`, `bytes_current` | in the destination at their latest version |
//! | `keys_stale`, `bytes_stale` | copied, then written again (re-sync pending) |
//! | `keys_source_only`, `bytes_source_only` | not copied yet |
//! | `keys_leased` | under a live lease (being copied) |
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
             scope text PRIMARY KEY, phase text NOT NULL, paused boolean NOT NULL, \
             keys_total bigint NOT NULL, bytes_total bigint NOT NULL, \
             keys_current bigint NOT NULL, bytes_current bigint NOT NULL, \
             keys_stale bigint NOT NULL, bytes_stale bigint NOT NULL, \
             keys_source_only bigint NOT NULL, bytes_source_only bigint NOT NULL, \
             keys_leased bigint NOT NULL, \
             shadow_keys bigint NOT NULL, shadow_keys_current bigint NOT NULL, \
             shadow_completeness double precision NOT NULL, \
             predicted_access_share_current double precision NOT NULL, \
             confidence double precision NOT NULL, confidence_threshold double precision NOT NULL, \
             confidence_parts jsonb, \
             throughput_keys_per_s double precision NOT NULL, eta_seconds double precision, \
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

/// Replaces the migration's row with `status`.
pub fn write(
    destination: &mut Client,
    status: &proto::Status,
    slot: Option<&SlotFigures>,
) -> Result<(), postgres::Error> {
    let counts = |part: Option<proto::KeysAndBytes>| {
        let part = part.unwrap_or_default();
        (part.keys as i64, part.bytes as i64)
    };
    let (keys_total, bytes_total) = counts(status.total);
    let (keys_current, bytes_current) = counts(status.current);
    let (keys_stale, bytes_stale) = counts(status.stale);
    let (keys_source_only, bytes_source_only) = counts(status.source_only);
    let (keys_leased, _) = counts(status.leased);
    let (shadow_keys, _) = counts(status.sample);
    let (shadow_current, _) = counts(status.sample_current);
    let completeness = if shadow_keys == 0 {
        1.0
    } else {
        shadow_current as f64 / shadow_keys as f64
    };
    let parts: Option<String> = serde_json::from_str::<serde_json::Value>(&status.json)
        .ok()
        .and_then(|json| json.get("confidence").map(|c| c.to_string()));
    let phase = proto::Phase::try_from(status.phase)
        .map_or("UNKNOWN", |p| p.as_str_name())
        .trim_start_matches("PHASE_");
    destination.execute(
        &format!(
            "INSERT INTO {STATUS_TABLE} VALUES ('migration', $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
             $11, $12, $13, $14, $15, $16, $17, $18::text::jsonb, $19, $20, $21, $22, $23, now()) \
             ON CONFLICT (scope) DO UPDATE SET phase = excluded.phase, paused = excluded.paused, \
             keys_total = excluded.keys_total, bytes_total = excluded.bytes_total, \
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
        ),
        &[
            &phase,
            &status.paused,
            &keys_total,
            &bytes_total,
            &keys_current,
            &bytes_current,
            &keys_stale,
            &bytes_stale,
            &keys_source_only,
            &bytes_source_only,
            &keys_leased,
            &shadow_keys,
            &shadow_current,
            &completeness,
            &status.predicted_access_share_in_destination,
            &status.confidence,
            &status.confidence_threshold,
            &parts,
            &status.throughput_keys_per_s,
            &status.eta_seconds,
            &slot.map(|s| s.name.as_str()),
            &slot.and_then(|s| s.confirmed_lsn.as_deref()),
            &slot.and_then(|s| s.retained_wal_bytes),
        ],
    )?;
    Ok(())
}
