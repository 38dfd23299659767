-- shadowcast labels: what each key did in the horizon (T, T+H] after a
-- cut-off T, and the classes models learn, in portable SQL.
--
-- The same definitions as src/model/labels.rs, in the layout of the label
-- table (src/model/label_table.rs; `shadowcast labels` writes the same):
-- run it beside features.sql on a cluster and hand both tables to
-- `shadowcast train --features F --labels L`. Needs the relations of a
-- dialect prelude (duckdb_prelude.sql or spark_prelude.sql):
--   access_log(ts_us BIGINT, key STRING, table_name STRING, op STRING, size_bytes BIGINT, tenant STRING)
--   params(as_of_us BIGINT, horizon_us BIGINT, hot_share DOUBLE, churn_min_writes BIGINT)
-- Rules:
-- * a key is labelled when it has an event at or before T (`seen_before`);
--   keys first seen in the horizon are listed too (they count in totals)
--   with null classes;
-- * reads_before_write: reads strictly before the key's first write in the
--   horizon (every read when it was not written): what only a copy made
--   before the horizon serves;
-- * hot: among the labelled keys, accesses at least the k-th largest, or
--   bytes read at least the k-th largest and above zero, where
--   k = max(1, ceil(keys * hot_share)) and each threshold is at least 1.
--   The k-th largest value is found from a count of keys per value (a
--   small table), not by sorting every key;
-- * churn: at least churn_min_writes writes in the horizon.
-- Output: one row per key, ordered by table_name then key (byte order).
WITH seen AS (
    SELECT DISTINCT l.table_name, l.key
    FROM access_log l CROSS JOIN params p
    WHERE l.ts_us <= p.as_of_us
),
future AS (
    SELECT l.table_name, l.key, l.ts_us, l.op = 'read' AS is_read, l.size_bytes
    FROM access_log l CROSS JOIN params p
    WHERE l.ts_us > p.as_of_us AND l.ts_us <= p.as_of_us + p.horizon_us
),
first_writes AS (
    SELECT table_name, key, min(ts_us) AS first_write
    FROM future
    WHERE NOT is_read
    GROUP BY table_name, key
),
outcomes AS (
    SELECT
        f.table_name,
        f.key,
        count(*) AS accesses,
        sum(CASE WHEN f.is_read THEN f.size_bytes ELSE 0 END) AS bytes_read,
        sum(CASE WHEN f.is_read THEN 0 ELSE 1 END) AS writes,
        sum(CASE WHEN f.is_read AND (w.first_write IS NULL OR f.ts_us < w.first_write) THEN 1 ELSE 0 END)
            AS reads_before_write
    FROM future f
    LEFT JOIN first_writes w ON f.table_name = w.table_name AND f.key = w.key
    GROUP BY f.table_name, f.key
),
keys AS (
    SELECT
        coalesce(s.table_name, o.table_name) AS table_name,
        coalesce(s.key, o.key) AS key,
        s.key IS NOT NULL AS seen_before,
        CAST(coalesce(o.accesses, 0) AS BIGINT) AS accesses,
        CAST(coalesce(o.bytes_read, 0) AS BIGINT) AS bytes_read,
        CAST(coalesce(o.writes, 0) AS BIGINT) AS writes,
        CAST(coalesce(o.reads_before_write, 0) AS BIGINT) AS reads_before_write
    FROM seen s
    FULL OUTER JOIN outcomes o ON s.table_name = o.table_name AND s.key = o.key
),
top AS (
    SELECT greatest(CAST(1 AS BIGINT), CAST(ceil(CAST(count(*) AS DOUBLE) * max(p.hot_share)) AS BIGINT)) AS k
    FROM seen CROSS JOIN params p
),
-- keys per value of each measure the hot rule ranks by
value_counts AS (
    SELECT 'accesses' AS measure, accesses AS value, count(*) AS keys FROM keys WHERE seen_before GROUP BY accesses
    UNION ALL
    SELECT 'bytes_read' AS measure, bytes_read AS value, count(*) AS keys FROM keys WHERE seen_before GROUP BY bytes_read
),
-- the k-th largest value: the largest value with at least k keys at or above it
thresholds AS (
    SELECT
        greatest(CAST(1 AS BIGINT), max(CASE WHEN measure = 'accesses' THEN value END)) AS by_accesses,
        greatest(CAST(1 AS BIGINT), max(CASE WHEN measure = 'bytes_read' THEN value END)) AS by_bytes
    FROM (
        SELECT measure, value,
               sum(keys) OVER (PARTITION BY measure ORDER BY value DESC
                               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS at_or_above
        FROM value_counts
    ) ranked CROSS JOIN top
    WHERE at_or_above >= top.k
)
SELECT
    k.table_name,
    k.key,
    k.seen_before,
    k.accesses,
    k.bytes_read,
    k.writes,
    k.reads_before_write,
    CASE WHEN k.seen_before
         THEN k.accesses >= t.by_accesses OR (k.bytes_read >= t.by_bytes AND k.bytes_read > 0)
    END AS hot,
    CASE WHEN k.seen_before THEN k.writes >= p.churn_min_writes END AS churn,
    p.as_of_us,
    p.horizon_us
FROM keys k
CROSS JOIN thresholds t
CROSS JOIN params p
ORDER BY k.table_name, k.key
