-- DuckDB set-up for features.sql. Replace {logs} with a Parquet glob such as
-- '/data/logs/**/*.parquet', {as_of_us} with the cut-off and {horizon_us} with
-- the horizon, in microseconds.
CREATE OR REPLACE VIEW access_log AS
SELECT epoch_us(ts) AS ts_us,
       CAST(key AS VARCHAR) AS key,
       CAST(table_name AS VARCHAR) AS table_name,
       CAST(op AS VARCHAR) AS op,
       CAST(size_bytes AS BIGINT) AS size_bytes
FROM read_parquet({logs}, hive_partitioning = false);
CREATE OR REPLACE VIEW params AS SELECT CAST({as_of_us} AS BIGINT) AS as_of_us, CAST({horizon_us} AS BIGINT) AS horizon_us;
