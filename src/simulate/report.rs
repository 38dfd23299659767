//! The simulation's outputs: Parquet for notebooks and PNG charts.
