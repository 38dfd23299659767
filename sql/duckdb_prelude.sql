-- DuckDB set-up for features.sql and labels.sql (sql/run_duckdb.py fills it
-- in). Replace {logs} with a Parquet glob such as '/data/logs/**/*.parquet',
-- {as_of_us} with the cut-off and {horizon_us} with the horizon, in
-- microseconds, and {hot_share} and {churn_min_writes} with the label rules
-- of labels.sql (0.05 and 2 by default). Logs with no `tenant` column in any
-- file: write CAST(NULL AS VARCHAR) AS tenant instead.
CREATE OR REPLACE VIEW access_log AS
SELECT epoch_us(ts) AS ts_us,
       CAST(key AS VARCHAR) AS key,
       CAST(table_name AS VARCHAR) AS table_name,
       CAST(op AS VARCHAR) AS op,
       CAST(size_bytes AS BIGINT) AS size_bytes,
       CAST(tenant AS VARCHAR) AS tenant
FROM read_parquet({logs}, hive_partitioning = false, union_by_name = true);
CREATE OR REPLACE VIEW params AS SELECT CAST({as_of_us} AS BIGINT) AS as_of_us, CAST({horizon_us} AS BIGINT) AS horizon_us,
       CAST({hot_share} AS DOUBLE) AS hot_share, CAST({churn_min_writes} AS BIGINT) AS churn_min_writes;
