-- Spark SQL set-up for features.sql and labels.sql (sql/run_spark.py fills
-- it in). Replace {logs} with the log directory (Spark discovers dt=/hour=
-- partitions itself), {as_of_us} with the cut-off and {horizon_us} with the
-- horizon, in microseconds, and {hot_share} and {churn_min_writes} with the
-- label rules of labels.sql (0.05 and 2 by default). Keys must be strings
-- (cast binary keys to hex first if yours are not UTF-8). Logs without a
-- `tenant` column: write CAST(NULL AS STRING) AS tenant instead.
CREATE OR REPLACE TEMP VIEW access_log AS
SELECT unix_micros(ts) AS ts_us,
       CAST(key AS STRING) AS key,
       table_name,
       op,
       CAST(size_bytes AS BIGINT) AS size_bytes,
       CAST(tenant AS STRING) AS tenant
FROM parquet.`{logs}`;
CREATE OR REPLACE TEMP VIEW params AS SELECT CAST({as_of_us} AS BIGINT) AS as_of_us, CAST({horizon_us} AS BIGINT) AS horizon_us,
       CAST({hot_share} AS DOUBLE) AS hot_share, CAST({churn_min_writes} AS BIGINT) AS churn_min_writes;
