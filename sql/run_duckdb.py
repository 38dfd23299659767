"""Runs a feature SQL file in DuckDB over shadowcast access logs.

usage: python3 sql/run_duckdb.py [--sql FILE] [--hot-share S] [--churn-min-writes N]
                                 LOGS_DIR AS_OF_US HORIZON_US OUT.parquet [THREADS]

FILE is features.sql (portable, the default), features_duckdb.sql (written
for DuckDB) or labels.sql, read from this folder. Writes the table to OUT.parquet
and prints the wall time of the query, measured in the process (connect,
scan, aggregate, write; not Python's start-up). Used by the equality test
(tests/sql_duckdb.rs) and the benchmark (benches/features_vs_duckdb.sh).
"""
import argparse
import pathlib
import time

import duckdb


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sql", default="features.sql")
    parser.add_argument("--hot-share", type=float, default=0.05)
    parser.add_argument("--churn-min-writes", type=int, default=2)
    parser.add_argument("logs")
    parser.add_argument("as_of_us", type=int)
    parser.add_argument("horizon_us", type=int)
    parser.add_argument("out")
    parser.add_argument("threads", type=int, nargs="?")
    args = parser.parse_args()
    here = pathlib.Path(__file__).resolve().parent
    root = pathlib.Path(args.logs)
    glob = str(root / "**" / "*.parquet") if root.is_dir() else str(root)
    prelude = (here / "duckdb_prelude.sql").read_text()
    prelude = prelude.replace("{logs}", "'" + glob.replace("'", "''") + "'")
    prelude = prelude.replace("{as_of_us}", str(args.as_of_us))
    prelude = prelude.replace("{horizon_us}", str(args.horizon_us))
    prelude = prelude.replace("{hot_share}", repr(args.hot_share))
    prelude = prelude.replace("{churn_min_writes}", str(args.churn_min_writes))
    query = (here / args.sql).read_text()
    started = time.perf_counter()
    con = duckdb.connect()
    if args.threads:
        con.execute(f"SET threads = {args.threads}")
    con.execute(prelude)
    con.execute(f"COPY ({query}) TO '{args.out}' (FORMAT parquet)")
    print(f"duckdb {duckdb.__version__} {args.sql}: written in {time.perf_counter() - started:.3f}s")


if __name__ == "__main__":
    main()
