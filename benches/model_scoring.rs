//! Scoring throughput of each model kind, on one core, beside the decayed
//! counter heuristic computed from the same raw inputs.
//!
//! `cargo bench --bench model_scoring [-- KIND...]` (every kind by default)
//! generates a workload (oltp profile,
//! 4M events over 72 hours), computes features at the 60th hour, trains each
//! kind on the cut-offs before it and scores every key repeatedly. Prints
//! keys/s per core of the fastest round and the ratio to the heuristic;
//! BENCHMARKS.md records it.

use std::time::Instant;

use ndarray::Axis;
use shadowcast::features::{FeatureOptions, compute};
use shadowcast::logs::LogSource;
use shadowcast::model::input::{input_column, raw_inputs};
use shadowcast::model::labels::LabelRules;
use shadowcast::model::predictor::{Hyperparameters, ModelKind};
use shadowcast::model::train::{CutoffSource, TrainOptions, train};
use shadowcast::time::{HOUR_US, parse_instant};
use shadowcast::workload::{GenerateOptions, Generator, profile};

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let start = parse_instant("2026-11-01").expect("date");
    Generator::new(GenerateOptions {
        profile: profile::named("oltp").expect("profile"),
        seed: 1,
        events: 4_000_000,
        start,
        hours: 72,
    })
    .write(dir.path(), &|_| {})
    .expect("generate");
    let source = LogSource::open(dir.path()).expect("logs");
    let as_of = start + 60 * HOUR_US;
    let options = FeatureOptions {
        as_of,
        horizon: 6 * HOUR_US,
        since: None,
    };
    let features = compute(&source, options, &|_| {}).expect("features");
    let raw = raw_inputs(&features);
    let keys = raw.nrows();
    println!("{keys} keys, {} inputs each; one thread", raw.ncols());

    let decay_column = input_column("reads_decay_6h");
    let heuristic_rate = {
        let started = Instant::now();
        let mut fastest = f64::INFINITY;
        let mut checksum = 0.0;
        while started.elapsed().as_secs_f64() < 2.0 {
            let round = Instant::now();
            for row in raw.axis_iter(Axis(0)) {
                checksum += row[decay_column] + row[decay_column + 3];
            }
            fastest = fastest.min(round.elapsed().as_secs_f64());
        }
        std::hint::black_box(checksum);
        keys as f64 / fastest
    };
    println!("| scorer | targets scored | keys/s per core | vs heuristic | training (s) |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    println!(
        "| decayed-counter heuristic (2 inputs, no model) | - | {:.2} M | 1.00x | - |",
        heuristic_rate / 1e6
    );

    let chosen: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    for kind in [
        ModelKind::Logistic,
        ModelKind::Tree,
        ModelKind::Forest,
        ModelKind::Gbdt,
    ]
    .into_iter()
    .filter(|kind| chosen.is_empty() || chosen.contains(&kind.to_string()))
    {
        let options = TrainOptions {
            as_of,
            horizon: 6 * HOUR_US,
            cutoffs: 4,
            rules: LabelRules::default(),
            hyperparameters: Hyperparameters {
                max_rows: 100_000,
                ..Hyperparameters::new(kind)
            },
            guard: true,
        }
        .check()
        .expect("valid options");
        let started = Instant::now();
        let model = train(&CutoffSource::Logs(&source), &options, &|_| {}).expect("training");
        let training = started.elapsed().as_secs_f64();
        // Per core: a boosted model would otherwise predict on every core.
        let one_thread = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("a one-thread pool");
        // The best round of those in 3 seconds (at least 5): the machine's
        // other work only ever slows a round down.
        let started = Instant::now();
        let mut rounds = 0;
        let mut fastest = f64::INFINITY;
        while started.elapsed().as_secs_f64() < 3.0 || rounds < 5 {
            let round = Instant::now();
            one_thread.install(|| std::hint::black_box(model.predictor.score(raw.view())));
            fastest = fastest.min(round.elapsed().as_secs_f64());
            rounds += 1;
        }
        let rate = keys as f64 / fastest;
        let scored = model
            .predictor
            .targets_scored()
            .into_iter()
            .filter(|&scored| scored)
            .count();
        println!(
            "| {kind} | {scored} of 3 | {:.2} M | {:.2}x | {training:.1} |",
            rate / 1e6,
            rate / heuristic_rate
        );
    }
}
