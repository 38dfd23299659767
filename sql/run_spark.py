"""Runs a shadowcast SQL file on Apache Spark over shadowcast access logs.

usage: python3 sql/run_spark.py [--sql FILE] [--hot-share S] [--churn-min-writes N]
                                [--master URL] LOGS AS_OF_US HORIZON_US OUT

FILE is features.sql (the default) or labels.sql, read from this folder and
set up by spark_prelude.sql. OUT is written as a Parquet directory (one part
file per task, in the query's order), which shadowcast reads as one table.
On a cluster, submit the same file:

    spark-submit --master yarn sql/run_spark.py --master yarn \
        hdfs:///logs 1764000000000000 21600000000 hdfs:///features/2025-11-24

Locally (the default master is local[*]) it needs only `pyspark` and a Java
runtime. Used by the equality test (tests/sql_spark.rs).
"""
import argparse
import pathlib
import shutil
import tempfile
import time

from pyspark.sql import SparkSession


def statements(text: str):
    """The statements of a SQL script, without comment lines."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sql", default="features.sql")
    parser.add_argument("--hot-share", default="0.05")
    parser.add_argument("--churn-min-writes", type=int, default=2)
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("logs")
    parser.add_argument("as_of_us", type=int)
    parser.add_argument("horizon_us", type=int)
    parser.add_argument("out")
    args = parser.parse_args()
    here = pathlib.Path(__file__).resolve().parent
    prelude = (here / "spark_prelude.sql").read_text()
    for name, value in {
        "logs": args.logs.replace("`", "``"),
        "as_of_us": str(args.as_of_us),
        "horizon_us": str(args.horizon_us),
        "hot_share": str(float(args.hot_share)),
        "churn_min_writes": str(args.churn_min_writes),
    }.items():
        prelude = prelude.replace("{" + name + "}", value)
    (query,) = statements((here / args.sql).read_text())
    # Spark makes its warehouse folder where it runs unless told otherwise.
    warehouse = tempfile.mkdtemp(prefix="shadowcast-spark-warehouse-")
    spark = (
        SparkSession.builder.master(args.master)
        .appName(f"shadowcast {args.sql}")
        .config("spark.sql.warehouse.dir", warehouse)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    started = time.perf_counter()
    for statement in statements(prelude):
        spark.sql(statement)
    spark.sql(query).write.mode("overwrite").parquet(args.out)
    print(f"spark {spark.version} {args.sql}: written in {time.perf_counter() - started:.3f}s")
    spark.stop()
    shutil.rmtree(warehouse, ignore_errors=True)


if __name__ == "__main__":
    main()
