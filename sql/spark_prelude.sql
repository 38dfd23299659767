-- Spark SQL set-up for features.sql. Replace {logs} with the log directory
-- (Spark discovers dt=/hour= partitions itself) and {as_of_us} with the
-- cut-off and {horizon_us} with the horizon, in microseconds. Keys must be strings (cast binary keys to hex
-- first if yours are not UTF-8). Logs without a `tenant` column: write
-- CAST(NULL AS STRING) AS tenant instead.
CREATE OR REPLACE TEMP VIEW access_log AS
SELECT unix_micros(ts) AS ts_us,
       CAST(key AS STRING) AS key,
       table_name,
       op,
       CAST(size_bytes AS BIGINT) AS size_bytes,
       CAST(tenant AS STRING) AS tenant
FROM parquet.`{logs}`;
CREATE OR REPLACE TEMP VIEW params AS SELECT CAST({as_of_us} AS BIGINT) AS as_of_us, CAST({horizon_us} AS BIGINT) AS horizon_us;
