-- shadowcast feature set `shadowcast.access`, version 2, written for DuckDB.
--
-- The same table as features.sql (and src/features/definition.rs), the way
-- a DuckDB user would write it: one pass of aggregates per key, with
-- FILTER, arg_max ordered by (time, value) for the latest value and
-- max(ts, 4) for the four latest times, instead of the portable file's
-- window function over every event and packed decimals. Needs the relations
-- of duckdb_prelude.sql; run it with `python3 sql/run_duckdb.py --sql
-- features_duckdb.sql ...`. tests/sql_duckdb.rs checks both files against
-- the native engine.
WITH per_key AS (
    SELECT
        table_name,
        key,
        -- the latest access naming a tenant; at equal times the greatest name
        arg_max(tenant, (ts_us, tenant)) FILTER (WHERE tenant IS NOT NULL) AS tenant,
        min(ts_us) AS first_ts,
        count(*) AS events,
        count(*) FILTER (WHERE as_of_us - ts_us < 3600000000) AS events_1h,
        count(*) FILTER (WHERE as_of_us - ts_us < 21600000000) AS events_6h,
        count(*) FILTER (WHERE as_of_us - ts_us < 86400000000) AS events_24h,
        count(*) FILTER (WHERE as_of_us - ts_us < 604800000000) AS events_7d,
        count(*) FILTER (WHERE op = 'read') AS reads_total,
        count(*) FILTER (WHERE op <> 'read') AS writes_total,
        count(*) FILTER (WHERE op <> 'read' AND as_of_us - ts_us < 604800000000) AS writes_7d,
        coalesce(sum(exp(-0.6931471805599453::DOUBLE * (as_of_us - ts_us) / 3600000000::DOUBLE)) FILTER (WHERE op = 'read'), 0) AS reads_decay_1h,
        coalesce(sum(exp(-0.6931471805599453::DOUBLE * (as_of_us - ts_us) / 21600000000::DOUBLE)) FILTER (WHERE op = 'read'), 0) AS reads_decay_6h,
        coalesce(sum(exp(-0.6931471805599453::DOUBLE * (as_of_us - ts_us) / 86400000000::DOUBLE)) FILTER (WHERE op = 'read'), 0) AS reads_decay_24h,
        coalesce(sum(exp(-0.6931471805599453::DOUBLE * (as_of_us - ts_us) / 3600000000::DOUBLE)) FILTER (WHERE op <> 'read'), 0) AS writes_decay_1h,
        coalesce(sum(exp(-0.6931471805599453::DOUBLE * (as_of_us - ts_us) / 21600000000::DOUBLE)) FILTER (WHERE op <> 'read'), 0) AS writes_decay_6h,
        coalesce(sum(exp(-0.6931471805599453::DOUBLE * (as_of_us - ts_us) / 86400000000::DOUBLE)) FILTER (WHERE op <> 'read'), 0) AS writes_decay_24h,
        max(ts_us) FILTER (WHERE op = 'read') AS last_read_ts,
        max(ts_us) FILTER (WHERE op <> 'read') AS last_write_ts,
        -- at equal times a delete is the latest event
        arg_max(op = 'delete', (ts_us, op = 'delete')) AS is_deleted,
        -- at equal times the larger size is the latest
        arg_max(size_capped, (ts_us, size_capped)) AS size_last,
        max(size_capped) AS size_max,
        count(*) FILTER (WHERE ts_us % 86400000000 < 21600000000) AS tod_00_06,
        count(*) FILTER (WHERE ts_us % 86400000000 >= 21600000000 AND ts_us % 86400000000 < 43200000000) AS tod_06_12,
        count(*) FILTER (WHERE ts_us % 86400000000 >= 43200000000 AND ts_us % 86400000000 < 64800000000) AS tod_12_18,
        count(*) FILTER (WHERE ts_us % 86400000000 >= 64800000000) AS tod_18_24,
        count(*) FILTER (WHERE (ts_us % 86400000000 - as_of_us % 86400000000 + 86400000000) % 86400000000 < 21600000000) AS tod_next_6h,
        -- on the horizon's time scale: windows of H/16, H/4, H, 4H, 16H; half-lives of H/4, H, 4H
        count(*) FILTER (WHERE (as_of_us - ts_us) * 16 < horizon_us) AS events_hdiv16,
        count(*) FILTER (WHERE (as_of_us - ts_us) * 4 < horizon_us) AS events_hdiv4,
        count(*) FILTER (WHERE as_of_us - ts_us < horizon_us) AS events_h,
        count(*) FILTER (WHERE as_of_us - ts_us < horizon_us * 4) AS events_hx4,
        count(*) FILTER (WHERE as_of_us - ts_us < horizon_us * 16) AS events_hx16,
        sum(exp(-0.6931471805599453::DOUBLE * (as_of_us - ts_us) / (horizon_us::DOUBLE * 0.25::DOUBLE))) AS decay_hdiv4,
        sum(exp(-0.6931471805599453::DOUBLE * (as_of_us - ts_us) / horizon_us::DOUBLE)) AS decay_h,
        sum(exp(-0.6931471805599453::DOUBLE * (as_of_us - ts_us) / (horizon_us::DOUBLE * 4::DOUBLE))) AS decay_hx4,
        -- the four latest event times, newest first (ties kept)
        max(ts_us, 4) AS latest
    FROM (
        SELECT l.*, p.as_of_us, p.horizon_us,
               CASE WHEN l.size_bytes > 1099511627775 THEN 1099511627775 ELSE l.size_bytes END AS size_capped
        FROM access_log l, params p
        WHERE l.ts_us <= p.as_of_us
    )
    GROUP BY table_name, key
),
features AS (
    SELECT
        k.*,
        (p.as_of_us - first_ts)::DOUBLE / 1000000::DOUBLE AS first_seen_age_s,
        (p.as_of_us - last_read_ts)::DOUBLE / 1000000::DOUBLE AS secs_since_last_read,
        (p.as_of_us - last_write_ts)::DOUBLE / 1000000::DOUBLE AS secs_since_last_write,
        reads_total::DOUBLE / events::DOUBLE AS read_share,
        writes_7d::DOUBLE / greatest(1::DOUBLE, least(168::DOUBLE, (p.as_of_us - first_ts)::DOUBLE / 3600000000::DOUBLE)) AS change_rate_per_h,
        -- prefix: everything before the key's last ':' or '/'
        regexp_extract(key, '^(.*)[:/]', 1) AS prefix,
        -- gaps in units of H: T back to the latest event, then between each of the latest events
        (p.as_of_us - latest[1])::DOUBLE / p.horizon_us::DOUBLE AS gap1_h,
        (latest[1] - latest[2])::DOUBLE / p.horizon_us::DOUBLE AS gap2_h,
        (latest[2] - latest[3])::DOUBLE / p.horizon_us::DOUBLE AS gap3_h,
        (latest[3] - latest[4])::DOUBLE / p.horizon_us::DOUBLE AS gap4_h,
        (p.as_of_us - first_ts)::DOUBLE / p.horizon_us::DOUBLE AS age_h
    FROM per_key k, params p
)
SELECT
    table_name, key, tenant, first_seen_age_s,
    events_1h, events_6h, events_24h, events_7d, reads_total, writes_total,
    reads_decay_1h, reads_decay_6h, reads_decay_24h, writes_decay_1h, writes_decay_6h, writes_decay_24h,
    secs_since_last_read, secs_since_last_write, read_share, change_rate_per_h,
    size_last, size_max, is_deleted,
    tod_00_06::DOUBLE / events::DOUBLE AS tod_share_00_06,
    tod_06_12::DOUBLE / events::DOUBLE AS tod_share_06_12,
    tod_12_18::DOUBLE / events::DOUBLE AS tod_share_12_18,
    tod_18_24::DOUBLE / events::DOUBLE AS tod_share_18_24,
    tod_next_6h::DOUBLE / events::DOUBLE AS tod_share_next_6h,
    CASE WHEN prefix = '' THEN 0
         ELSE sum(events_24h) OVER (PARTITION BY table_name, prefix) - events_24h
    END::BIGINT AS prefix_events_24h,
    (sum(events_24h) OVER (PARTITION BY table_name ORDER BY key ROWS BETWEEN 8 PRECEDING AND 8 FOLLOWING)
         - events_24h)::BIGINT AS range_events_24h,
    events_hdiv16, events_hdiv4, events_h, events_hx4, events_hx16,
    decay_hdiv4, decay_h, decay_hx4,
    gap1_h, gap2_h, gap3_h, gap4_h, age_h,
    -- the cut-off T and the horizon H, so the table says what it describes
    params.as_of_us, params.horizon_us
FROM features CROSS JOIN params
ORDER BY table_name, key
