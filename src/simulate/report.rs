//! The simulation's outputs: terminal tables, Parquet for notebooks, PNG
//! charts, and the headline comparison (how much of the gap between the
//! best heuristic and the oracle the model closes).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, StringArray, UInt64Array};

use super::{RunResult, Simulation, Strategy};
use crate::chart::{Panel, Series};
use crate::time::{SECOND_US, format_instant};

/// Files [`write_outputs`] writes into its folder.
pub const RUNS_FILE: &str = "runs.parquet";
pub const TIMELINE_FILE: &str = "timeline.parquet";
pub const OVER_TIME_CHART: &str = "hit-share-over-time.png";
pub const BUDGET_CHART: &str = "hit-share-vs-budget.png";

#[derive(Debug, thiserror::Error)]
#[error("writing {path}: {problem}")]
pub struct ReportError {
    pub path: std::path::PathBuf,
    pub problem: String,
}

fn seconds(us: Option<i64>) -> Option<f64> {
    us.map(|us| us as f64 / SECOND_US as f64)
}

/// Seconds a stop-and-copy of the work left at cutover takes at the
/// background budget: the downtime it bounds.
pub fn downtime_s(run: &RunResult) -> f64 {
    run.figures.left_at_cutover.bytes as f64 / run.rate_after as f64
}

/// The model against the best heuristic and the oracle at one budget.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Headline {
    pub budget: f64,
    pub best_heuristic: Strategy,
    pub heuristic_share: f64,
    pub model_share: f64,
    pub oracle_share: f64,
}

impl Headline {
    /// Share of the heuristic-to-oracle gap the model closes (negative when
    /// it does worse than the heuristic; `NaN` when there is no gap).
    pub fn gap_closed(&self) -> f64 {
        (self.model_share - self.heuristic_share) / (self.oracle_share - self.heuristic_share)
    }
}

/// The headline at `budget`, when the model, the oracle and a heuristic ran.
pub fn headline(simulation: &Simulation, budget: f64) -> Option<Headline> {
    let share = |strategy| {
        simulation
            .run(strategy, budget)
            .map(|r| r.figures.after_cutover.share())
    };
    let (best_heuristic, heuristic_share) = simulation
        .runs
        .iter()
        .filter(|r| r.budget == budget && r.strategy.is_heuristic())
        .map(|r| (r.strategy, r.figures.after_cutover.share()))
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    Some(Headline {
        budget,
        best_heuristic,
        heuristic_share,
        model_share: share(Strategy::Model)?,
        oracle_share: share(Strategy::Oracle)?,
    })
}

fn percent(share: f64) -> String {
    if share.is_finite() {
        format!("{:.1}%", 100.0 * share)
    } else {
        "-".to_string()
    }
}

fn bytes(count: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = count as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{count} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn duration(us: Option<i64>) -> String {
    us.map_or_else(|| "never".to_string(), crate::time::format_duration)
}

/// The figures of every strategy at `budget`, as a text table.
pub fn budget_table(simulation: &Simulation, budget: f64) -> String {
    let timeline = simulation.timeline;
    let mut out = String::new();
    let first = simulation.runs.iter().find(|r| r.budget == budget);
    let _ = writeln!(
        out,
        "{} keys, {} at {}; window {}, cutover {}, reads measured to {}; budget {} of the bytes over the window ({}/s){}",
        simulation.keys,
        bytes(simulation.bytes),
        format_instant(timeline.start_us),
        duration(Some(timeline.window_us())),
        format_instant(timeline.cutover_us),
        format_instant(timeline.end_us),
        percent(budget),
        first.map_or("-".into(), |r| bytes(r.rate_after)),
        first.map_or(String::new(), |r| format!(
            "; {} reads after cutover",
            r.figures.after_cutover.reads
        )),
    );
    let _ = writeln!(
        out,
        "{:<14} {:>8} {:>8} | {:>10} {:>10} {:>10} | {:>10} {:>9} | {:>10} {:>10}",
        "strategy",
        "reads",
        "bytes",
        "copied pre",
        "copied",
        "wasted",
        "left",
        "downtime",
        "confident",
        "complete",
    );
    let _ = writeln!(
        out,
        "{:<14} {:>8} {:>8} | {:>10} {:>10} {:>10} | {:>10} {:>9} | {:>10} {:>10}",
        "", "served", "served", "", "in all", "re-synced", "at cutover", "bound", "after", "after",
    );
    for run in simulation.runs.iter().filter(|r| r.budget == budget) {
        let figures = &run.figures;
        let _ = writeln!(
            out,
            "{:<14} {:>8} {:>8} | {:>10} {:>10} {:>10} | {:>10} {:>9} | {:>10} {:>10}",
            run.strategy.name(),
            percent(figures.after_cutover.share()),
            percent(figures.after_cutover.bytes_share()),
            bytes(figures.copied_before_cutover.bytes),
            bytes(figures.copied.bytes),
            bytes(figures.wasted.bytes),
            bytes(figures.left_at_cutover.bytes),
            duration(Some((downtime_s(run) * SECOND_US as f64) as i64)),
            duration(figures.confidence_reached_us),
            duration(figures.complete_us),
        );
    }
    out
}

/// Share of post-cutover reads served, strategy by budget.
pub fn sweep_table(simulation: &Simulation) -> String {
    let mut out = String::new();
    let _ = write!(out, "{:<14}", "reads served");
    for budget in &simulation.budgets {
        let _ = write!(out, " {:>8}", percent(*budget));
    }
    out.push('\n');
    for strategy in strategies(simulation) {
        let _ = write!(out, "{:<14}", strategy.name());
        for &budget in &simulation.budgets {
            let share = simulation
                .run(strategy, budget)
                .map_or(f64::NAN, |r| r.figures.after_cutover.share());
            let _ = write!(out, " {:>8}", percent(share));
        }
        out.push('\n');
    }
    out
}

/// One line on the model against the best heuristic and the oracle.
pub fn headline_line(headline: &Headline) -> String {
    format!(
        "at a {} budget: model {} of post-cutover reads served, best heuristic ({}) {}, oracle {}: the model closes {} of the gap",
        percent(headline.budget),
        percent(headline.model_share),
        headline.best_heuristic,
        percent(headline.heuristic_share),
        percent(headline.oracle_share),
        percent(headline.gap_closed()),
    )
}

fn strategies(simulation: &Simulation) -> Vec<Strategy> {
    let mut seen: Vec<Strategy> = Vec::new();
    for run in &simulation.runs {
        if !seen.contains(&run.strategy) {
            seen.push(run.strategy);
        }
    }
    seen
}

/// Writes [`RUNS_FILE`], [`TIMELINE_FILE`], [`OVER_TIME_CHART`] (at
/// `budget`) and [`BUDGET_CHART`] into `dir`.
pub fn write_outputs(simulation: &Simulation, budget: f64, dir: &Path) -> Result<(), ReportError> {
    let failed = |file: &str, problem: String| ReportError {
        path: dir.join(file),
        problem,
    };
    crate::export::write_columns(&dir.join(RUNS_FILE), runs_columns(simulation))
        .map_err(|e| failed(RUNS_FILE, e.to_string()))?;
    crate::export::write_columns(&dir.join(TIMELINE_FILE), timeline_columns(simulation))
        .map_err(|e| failed(TIMELINE_FILE, e.to_string()))?;
    let subtitle = format!(
        "{} keys, window {} from {}",
        simulation.keys,
        duration(Some(simulation.timeline.window_us())),
        format_instant(simulation.timeline.start_us)
    );
    crate::chart::write_png(
        &dir.join(OVER_TIME_CHART),
        &format!(
            "Post-cutover reads served by the destination — budget {}, {subtitle}",
            percent(budget)
        ),
        &over_time_panels(simulation, budget),
    )
    .map_err(|problem| failed(OVER_TIME_CHART, problem))?;
    crate::chart::write_png(
        &dir.join(BUDGET_CHART),
        &format!("Post-cutover reads served against budget — {subtitle}"),
        &budget_panels(simulation),
    )
    .map_err(|problem| failed(BUDGET_CHART, problem))?;
    Ok(())
}

fn runs_columns(simulation: &Simulation) -> Vec<(&'static str, ArrayRef)> {
    let runs = &simulation.runs;
    let float = |value: &dyn Fn(&RunResult) -> Option<f64>| -> ArrayRef {
        Arc::new(Float64Array::from_iter(runs.iter().map(value)))
    };
    let count = |value: &dyn Fn(&RunResult) -> u64| -> ArrayRef {
        Arc::new(UInt64Array::from_iter_values(runs.iter().map(value)))
    };
    vec![
        (
            "strategy",
            Arc::new(StringArray::from_iter_values(
                runs.iter().map(|r| r.strategy.name()),
            )),
        ),
        ("budget_share", float(&|r| Some(r.budget))),
        ("rate_before_bytes_per_s", count(&|r| r.rate_before)),
        ("rate_after_bytes_per_s", count(&|r| r.rate_after)),
        (
            "reads_after_cutover",
            count(&|r| r.figures.after_cutover.reads),
        ),
        ("reads_served", count(&|r| r.figures.after_cutover.served)),
        (
            "read_share_served",
            float(&|r| Some(r.figures.after_cutover.share())),
        ),
        ("read_bytes", count(&|r| r.figures.after_cutover.bytes)),
        (
            "read_bytes_served",
            count(&|r| r.figures.after_cutover.bytes_served),
        ),
        (
            "read_bytes_share_served",
            float(&|r| Some(r.figures.after_cutover.bytes_share())),
        ),
        (
            "keys_copied_before_cutover",
            count(&|r| r.figures.copied_before_cutover.keys),
        ),
        (
            "bytes_copied_before_cutover",
            count(&|r| r.figures.copied_before_cutover.bytes),
        ),
        ("keys_copied", count(&|r| r.figures.copied.keys)),
        ("bytes_copied", count(&|r| r.figures.copied.bytes)),
        ("keys_wasted", count(&|r| r.figures.wasted.keys)),
        ("bytes_wasted", count(&|r| r.figures.wasted.bytes)),
        (
            "keys_left_at_cutover",
            count(&|r| r.figures.left_at_cutover.keys),
        ),
        (
            "bytes_left_at_cutover",
            count(&|r| r.figures.left_at_cutover.bytes),
        ),
        ("downtime_bound_s", float(&|r| Some(downtime_s(r)))),
        (
            "confidence_reached_s",
            float(&|r| seconds(r.figures.confidence_reached_us)),
        ),
        ("complete_s", float(&|r| seconds(r.figures.complete_us))),
    ]
}

fn timeline_columns(simulation: &Simulation) -> Vec<(&'static str, ArrayRef)> {
    let bucket_s = simulation.timeline.bucket_us() as f64 / SECOND_US as f64;
    let rows: Vec<(&RunResult, usize)> = simulation
        .runs
        .iter()
        .flat_map(|r| (0..r.figures.over_time.len()).map(move |i| (r, i)))
        .collect();
    let count = |value: &dyn Fn(&super::Reads) -> u64| -> ArrayRef {
        Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|(r, i)| value(&r.figures.over_time[*i])),
        ))
    };
    vec![
        (
            "strategy",
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(r, _)| r.strategy.name()),
            )),
        ),
        (
            "budget_share",
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|(r, _)| r.budget),
            )),
        ),
        (
            "seconds_after_cutover",
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|(_, i)| (*i + 1) as f64 * bucket_s),
            )),
        ),
        ("reads", count(&|r| r.reads)),
        ("reads_served", count(&|r| r.served)),
        ("read_bytes", count(&|r| r.bytes)),
        ("read_bytes_served", count(&|r| r.bytes_served)),
    ]
}

fn over_time_panels(simulation: &Simulation, budget: f64) -> Vec<Panel> {
    let hours = |i: usize| (i + 1) as f64 * simulation.timeline.bucket_us() as f64 / 3.6e9;
    let span = (simulation.timeline.end_us - simulation.timeline.cutover_us) as f64 / 3.6e9;
    let panel = |title: &str, share: fn(&super::Reads) -> f64| Panel {
        title: title.to_string(),
        x_label: "hours after cutover".to_string(),
        y_label: "share served by the destination".to_string(),
        x_range: 0.0..span,
        x_format: |x| format!("{x:.1}"),
        series: simulation
            .runs
            .iter()
            .filter(|r| r.budget == budget)
            .map(|r| Series {
                name: r.strategy.name().to_string(),
                points: r
                    .figures
                    .over_time
                    .iter()
                    .enumerate()
                    .filter(|(_, reads)| reads.reads > 0)
                    .map(|(i, reads)| (hours(i), share(reads)))
                    .collect(),
            })
            .collect(),
        empty_note: "no reads after cutover".to_string(),
    };
    vec![
        panel("Reads", super::Reads::share),
        panel("Bytes read", super::Reads::bytes_share),
    ]
}

fn budget_panels(simulation: &Simulation) -> Vec<Panel> {
    let largest = simulation.budgets.iter().copied().fold(0.0, f64::max);
    let panel = |title: &str, share: fn(&super::Reads) -> f64| Panel {
        title: title.to_string(),
        x_label: "budget (% of the bytes the window can move)".to_string(),
        y_label: "share of post-cutover reads served".to_string(),
        x_range: 0.0..100.0 * largest,
        x_format: |x| format!("{x:.0}%"),
        series: strategies(simulation)
            .into_iter()
            .map(|strategy| Series {
                name: strategy.name().to_string(),
                points: simulation
                    .runs
                    .iter()
                    .filter(|r| r.strategy == strategy)
                    .map(|r| (100.0 * r.budget, share(&r.figures.after_cutover)))
                    .collect(),
            })
            .collect(),
        empty_note: "no reads after cutover".to_string(),
    };
    vec![
        panel("Reads", super::Reads::share),
        panel("Bytes read", super::Reads::bytes_share),
    ]
}
