-- shadowcast feature set `shadowcast.access`, version 2, in portable SQL.
--
-- The same definitions as src/features/definition.rs: run this on a cluster
-- when the logs outgrow one machine, and hand the result to shadowcast.
-- Needs two relations, set up by a dialect prelude (duckdb_prelude.sql or
-- spark_prelude.sql in this folder):
--   access_log(ts_us BIGINT, key STRING, table_name STRING, op STRING, size_bytes BIGINT, tenant STRING)
--     ts_us: event time in microseconds since the epoch (UTC)
--     tenant: NULL where an access names none (the preludes read the logs'
--     `tenant` column; for logs without one, select CAST(NULL AS STRING) instead)
--   params(as_of_us BIGINT, horizon_us BIGINT)  -- the cut-off T and the horizon H, one row
-- Only functions common to DuckDB and Spark SQL are used; literals that must
-- be floating point are cast explicitly (both dialects read 0.5 as DECIMAL).
-- Output: one row per (table_name, key) with an event at or before T,
-- ordered by table_name then key (byte order), each row also carrying T and
-- H (as_of_us, horizon_us) so that `shadowcast train --features` knows the
-- cut-off without being told.
WITH events AS (
    SELECT
        l.table_name,
        l.key,
        l.tenant,
        l.ts_us,
        CASE l.op WHEN 'read' THEN 0 WHEN 'insert' THEN 1 WHEN 'update' THEN 2 WHEN 'delete' THEN 3 END AS op_code,
        CASE WHEN l.size_bytes > 1099511627775 THEN 1099511627775 ELSE l.size_bytes END AS size_capped,
        p.as_of_us - l.ts_us AS age_us,
        p.as_of_us,
        p.horizon_us
    FROM access_log l CROSS JOIN params p
    WHERE l.ts_us <= p.as_of_us
),
-- the latest four event times of each key (ties kept, as a multiset)
latest AS (
    SELECT table_name, key, ts_us,
           row_number() OVER (PARTITION BY table_name, key ORDER BY ts_us DESC) AS newest
    FROM events
),
latest_four AS (
    SELECT table_name, key,
        max(CASE WHEN newest = 1 THEN ts_us END) AS latest_1,
        max(CASE WHEN newest = 2 THEN ts_us END) AS latest_2,
        max(CASE WHEN newest = 3 THEN ts_us END) AS latest_3,
        max(CASE WHEN newest = 4 THEN ts_us END) AS latest_4
    FROM latest
    WHERE newest <= 4
    GROUP BY table_name, key
),
-- the tenant of the latest access naming one; at equal times the greatest name
latest_tenant AS (
    SELECT table_name, key, tenant,
           rank() OVER (PARTITION BY table_name, key ORDER BY ts_us DESC) AS newest
    FROM events
    WHERE tenant IS NOT NULL
),
tenants AS (
    SELECT table_name, key, max(tenant) AS tenant
    FROM latest_tenant
    WHERE newest = 1
    GROUP BY table_name, key
),
per_key AS (
    SELECT
        table_name,
        key,
        max(as_of_us) AS as_of_us,
        min(ts_us) AS first_ts,
        sum(CASE WHEN age_us < 3600000000 THEN 1 ELSE 0 END) AS events_1h,
        sum(CASE WHEN age_us < 21600000000 THEN 1 ELSE 0 END) AS events_6h,
        sum(CASE WHEN age_us < 86400000000 THEN 1 ELSE 0 END) AS events_24h,
        sum(CASE WHEN age_us < 604800000000 THEN 1 ELSE 0 END) AS events_7d,
        sum(CASE WHEN op_code = 0 THEN 1 ELSE 0 END) AS reads_total,
        sum(CASE WHEN op_code <> 0 THEN 1 ELSE 0 END) AS writes_total,
        sum(CASE WHEN op_code <> 0 AND age_us < 604800000000 THEN 1 ELSE 0 END) AS writes_7d,
        sum(CASE WHEN op_code = 0 THEN exp(CAST(-0.6931471805599453 AS DOUBLE) * age_us / CAST(3600000000 AS DOUBLE)) ELSE CAST(0 AS DOUBLE) END) AS reads_decay_1h,
        sum(CASE WHEN op_code = 0 THEN exp(CAST(-0.6931471805599453 AS DOUBLE) * age_us / CAST(21600000000 AS DOUBLE)) ELSE CAST(0 AS DOUBLE) END) AS reads_decay_6h,
        sum(CASE WHEN op_code = 0 THEN exp(CAST(-0.6931471805599453 AS DOUBLE) * age_us / CAST(86400000000 AS DOUBLE)) ELSE CAST(0 AS DOUBLE) END) AS reads_decay_24h,
        sum(CASE WHEN op_code <> 0 THEN exp(CAST(-0.6931471805599453 AS DOUBLE) * age_us / CAST(3600000000 AS DOUBLE)) ELSE CAST(0 AS DOUBLE) END) AS writes_decay_1h,
        sum(CASE WHEN op_code <> 0 THEN exp(CAST(-0.6931471805599453 AS DOUBLE) * age_us / CAST(21600000000 AS DOUBLE)) ELSE CAST(0 AS DOUBLE) END) AS writes_decay_6h,
        sum(CASE WHEN op_code <> 0 THEN exp(CAST(-0.6931471805599453 AS DOUBLE) * age_us / CAST(86400000000 AS DOUBLE)) ELSE CAST(0 AS DOUBLE) END) AS writes_decay_24h,
        max(CASE WHEN op_code = 0 THEN ts_us END) AS last_read_ts,
        max(CASE WHEN op_code <> 0 THEN ts_us END) AS last_write_ts,
        -- latest (time, op): the op of the last event, ties to the larger code (delete wins)
        max(ts_us * 4 + op_code) AS last_event_code,
        -- latest (time, size): size of the last event, ties to the larger size
        max(ts_us) AS last_ts,
        max(CAST(ts_us AS DECIMAL(38, 0)) * 1099511627776 + size_capped) AS last_ts_size,
        max(size_capped) AS size_max,
        sum(CASE WHEN ts_us % 86400000000 < 21600000000 THEN 1 ELSE 0 END) AS tod_00_06,
        sum(CASE WHEN ts_us % 86400000000 >= 21600000000 AND ts_us % 86400000000 < 43200000000 THEN 1 ELSE 0 END) AS tod_06_12,
        sum(CASE WHEN ts_us % 86400000000 >= 43200000000 AND ts_us % 86400000000 < 64800000000 THEN 1 ELSE 0 END) AS tod_12_18,
        sum(CASE WHEN ts_us % 86400000000 >= 64800000000 THEN 1 ELSE 0 END) AS tod_18_24,
        sum(CASE WHEN (ts_us % 86400000000 - as_of_us % 86400000000 + 86400000000) % 86400000000 < 21600000000 THEN 1 ELSE 0 END) AS tod_next_6h,
        -- on the horizon's time scale: windows of H/16, H/4, H, 4H, 16H; half-lives of H/4, H, 4H
        max(horizon_us) AS horizon_us,
        sum(CASE WHEN age_us * 16 < horizon_us THEN 1 ELSE 0 END) AS events_hdiv16,
        sum(CASE WHEN age_us * 4 < horizon_us THEN 1 ELSE 0 END) AS events_hdiv4,
        sum(CASE WHEN age_us < horizon_us THEN 1 ELSE 0 END) AS events_h,
        sum(CASE WHEN age_us < horizon_us * 4 THEN 1 ELSE 0 END) AS events_hx4,
        sum(CASE WHEN age_us < horizon_us * 16 THEN 1 ELSE 0 END) AS events_hx16,
        sum(exp(CAST(-0.6931471805599453 AS DOUBLE) * age_us / (CAST(horizon_us AS DOUBLE) * CAST(0.25 AS DOUBLE)))) AS decay_hdiv4,
        sum(exp(CAST(-0.6931471805599453 AS DOUBLE) * age_us / (CAST(horizon_us AS DOUBLE) * CAST(1 AS DOUBLE)))) AS decay_h,
        sum(exp(CAST(-0.6931471805599453 AS DOUBLE) * age_us / (CAST(horizon_us AS DOUBLE) * CAST(4 AS DOUBLE)))) AS decay_hx4
    FROM events
    GROUP BY table_name, key
),
features AS (
    SELECT
        k.table_name,
        k.key,
        t.tenant,
        CAST(as_of_us - first_ts AS DOUBLE) / CAST(1000000 AS DOUBLE) AS first_seen_age_s,
        CAST(events_1h AS BIGINT) AS events_1h,
        CAST(events_6h AS BIGINT) AS events_6h,
        CAST(events_24h AS BIGINT) AS events_24h,
        CAST(events_7d AS BIGINT) AS events_7d,
        CAST(reads_total AS BIGINT) AS reads_total,
        CAST(writes_total AS BIGINT) AS writes_total,
        reads_decay_1h,
        reads_decay_6h,
        reads_decay_24h,
        writes_decay_1h,
        writes_decay_6h,
        writes_decay_24h,
        CAST(as_of_us - last_read_ts AS DOUBLE) / CAST(1000000 AS DOUBLE) AS secs_since_last_read,
        CAST(as_of_us - last_write_ts AS DOUBLE) / CAST(1000000 AS DOUBLE) AS secs_since_last_write,
        CAST(reads_total AS DOUBLE) / CAST(reads_total + writes_total AS DOUBLE) AS read_share,
        CAST(writes_7d AS DOUBLE) / greatest(CAST(1 AS DOUBLE), least(CAST(168 AS DOUBLE),
            CAST(as_of_us - first_ts AS DOUBLE) / CAST(3600000000 AS DOUBLE))) AS change_rate_per_h,
        CAST(last_ts_size - CAST(last_ts AS DECIMAL(38, 0)) * 1099511627776 AS BIGINT) AS size_last,
        CAST(size_max AS BIGINT) AS size_max,
        last_event_code % 4 = 3 AS is_deleted,
        CAST(tod_00_06 AS DOUBLE) / CAST(reads_total + writes_total AS DOUBLE) AS tod_share_00_06,
        CAST(tod_06_12 AS DOUBLE) / CAST(reads_total + writes_total AS DOUBLE) AS tod_share_06_12,
        CAST(tod_12_18 AS DOUBLE) / CAST(reads_total + writes_total AS DOUBLE) AS tod_share_12_18,
        CAST(tod_18_24 AS DOUBLE) / CAST(reads_total + writes_total AS DOUBLE) AS tod_share_18_24,
        CAST(tod_next_6h AS DOUBLE) / CAST(reads_total + writes_total AS DOUBLE) AS tod_share_next_6h,
        -- prefix: everything before the key's last ':' or '/'
        regexp_extract(k.key, '^(.*)[:/]', 1) AS prefix,
        CAST(events_hdiv16 AS BIGINT) AS events_hdiv16,
        CAST(events_hdiv4 AS BIGINT) AS events_hdiv4,
        CAST(events_h AS BIGINT) AS events_h,
        CAST(events_hx4 AS BIGINT) AS events_hx4,
        CAST(events_hx16 AS BIGINT) AS events_hx16,
        decay_hdiv4,
        decay_h,
        decay_hx4,
        -- gaps in units of H: T back to the latest event, then between each of the latest events
        CAST(as_of_us - l.latest_1 AS DOUBLE) / CAST(horizon_us AS DOUBLE) AS gap1_h,
        CAST(l.latest_1 - l.latest_2 AS DOUBLE) / CAST(horizon_us AS DOUBLE) AS gap2_h,
        CAST(l.latest_2 - l.latest_3 AS DOUBLE) / CAST(horizon_us AS DOUBLE) AS gap3_h,
        CAST(l.latest_3 - l.latest_4 AS DOUBLE) / CAST(horizon_us AS DOUBLE) AS gap4_h,
        CAST(as_of_us - first_ts AS DOUBLE) / CAST(horizon_us AS DOUBLE) AS age_h
    FROM per_key k JOIN latest_four l ON k.table_name = l.table_name AND k.key = l.key
    LEFT JOIN tenants t ON k.table_name = t.table_name AND k.key = t.key
)
SELECT
    table_name, key, tenant, first_seen_age_s,
    events_1h, events_6h, events_24h, events_7d, reads_total, writes_total,
    reads_decay_1h, reads_decay_6h, reads_decay_24h, writes_decay_1h, writes_decay_6h, writes_decay_24h,
    secs_since_last_read, secs_since_last_write, read_share, change_rate_per_h,
    size_last, size_max, is_deleted,
    tod_share_00_06, tod_share_06_12, tod_share_12_18, tod_share_18_24, tod_share_next_6h,
    CASE WHEN prefix = '' THEN CAST(0 AS BIGINT)
         ELSE CAST(sum(events_24h) OVER (PARTITION BY table_name, prefix) - events_24h AS BIGINT)
    END AS prefix_events_24h,
    CAST(sum(events_24h) OVER (PARTITION BY table_name ORDER BY key ROWS BETWEEN 8 PRECEDING AND 8 FOLLOWING)
         - events_24h AS BIGINT) AS range_events_24h,
    events_hdiv16, events_hdiv4, events_h, events_hx4, events_hx16,
    decay_hdiv4, decay_h, decay_hx4,
    gap1_h, gap2_h, gap3_h, gap4_h, age_h,
    -- the cut-off T and the horizon H, so the table says what it describes
    params.as_of_us, params.horizon_us
FROM features CROSS JOIN params
ORDER BY table_name, key
