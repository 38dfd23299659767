"""Runs sql/features.sql in DuckDB over shadowcast access logs.

usage: python3 sql/run_duckdb.py LOGS_DIR AS_OF_US HORIZON_US OUT.parquet [THREADS]

Writes the feature table to OUT.parquet and prints the wall time. Used by the
equality test (tests/sql_duckdb.rs) and the benchmark (benches/features_vs_duckdb.sh).
"""
import pathlib
import sys
import time

import duckdb


def main() -> None:
    logs, as_of_us, horizon_us, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    threads = int(sys.argv[5]) if len(sys.argv) > 5 else None
    here = pathlib.Path(__file__).resolve().parent
    root = pathlib.Path(logs)
    glob = str(root / "**" / "*.parquet") if root.is_dir() else str(root)
    prelude = (here / "duckdb_prelude.sql").read_text()
    prelude = prelude.replace("{logs}", "'" + glob.replace("'", "''") + "'")
    prelude = prelude.replace("{as_of_us}", str(as_of_us))
    prelude = prelude.replace("{horizon_us}", str(horizon_us))
    query = (here / "features.sql").read_text()
    started = time.perf_counter()
    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {threads}")
    con.execute(prelude)
    con.execute(f"COPY ({query}) TO '{out}' (FORMAT parquet)")
    print(f"duckdb {duckdb.__version__}: features in {time.perf_counter() - started:.3f}s")


if __name__ == "__main__":
    main()
