//! `policy check` and `policy test`: clap arguments in, policy-stage calls out.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::model_commands::load_model;
use crate::features::FeatureTable;
use crate::model::input::raw_inputs;
use crate::policy::registry::Decided;
use crate::policy::{
    Candidates, Decisions, PolicyHost, PolicyLimits, PolicyRegistry, scheduling_order,
};
use crate::time::{format_instant, parse_instant};

#[derive(Args, Debug)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: PolicyCommand,
}

#[derive(Args, Debug)]
pub struct PolicyFileArgs {
    /// The policy module: WebAssembly (.wasm) or its text form (.wat).
    pub module: PathBuf,
    /// Configuration blob handed to the policy at load time (for SDK policies, `key = value` lines).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Time limit of one call, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub timeout_ms: u64,
    /// Memory limit of an instance, in MiB.
    #[arg(long, default_value_t = 64)]
    pub memory_mib: usize,
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Validate a module: exports, ABI version, configuration and a canary batch.
    Check(PolicyFileArgs),
    /// Run a policy over real features and show how it changes the ranking against the default.
    Test {
        #[command(flatten)]
        policy: PolicyFileArgs,
        /// Feature table (from `shadowcast features`).
        #[arg(long)]
        features: PathBuf,
        /// Model that scores the keys: REGISTRY/NAME[/VERSION].
        #[arg(long, default_value = "models/default")]
        model: PathBuf,
        /// The time the policy sees as now (default: the features' cut-off).
        #[arg(long)]
        now: Option<String>,
        /// Keys to show before and after.
        #[arg(long, default_value_t = 10)]
        top: usize,
    },
}

fn load(registry: &PolicyRegistry, args: &PolicyFileArgs) -> Result<String> {
    let info = registry.load_file(&args.module, args.config.as_deref())?;
    let name = info.name.clone();
    println!(
        "policy {name}: ABI v{} module, sha256 {}, valid (exports, configuration, canary batch)",
        shadowcast_policy::abi::VERSION,
        info.sha256
    );
    Ok(name)
}

pub fn policy_command(args: PolicyArgs) -> Result<()> {
    match args.command {
        PolicyCommand::Check(file) => {
            let registry = registry(&file)?;
            load(&registry, &file)?;
        }
        PolicyCommand::Test {
            policy,
            features,
            model,
            now,
            top,
        } => {
            let registry = registry(&policy)?;
            let name = load(&registry, &policy)?;
            let table = FeatureTable::read_parquet(&features)?;
            let model = load_model(&model)?;
            let raw = raw_inputs(&table);
            let scores = model.predictor.score(raw.view());
            let now_us = match now {
                Some(text) => parse_instant(&text).map_err(anyhow::Error::msg)?,
                None => table.as_of,
            };
            let candidates =
                Candidates::from_features((&table).into(), raw.view(), &scores, now_us);
            let decided = registry.decide(&candidates);
            if let Some(error) = decided.failures.first() {
                return Err(anyhow::anyhow!("{error}"));
            }
            report(&name, &candidates, &decided, top);
        }
    }
    Ok(())
}

fn registry(args: &PolicyFileArgs) -> Result<PolicyRegistry> {
    let limits = PolicyLimits {
        call_timeout: std::time::Duration::from_millis(args.timeout_ms),
        memory_bytes: args.memory_mib << 20,
        ..PolicyLimits::default()
    };
    Ok(PolicyRegistry::new(PolicyHost::new(limits)?))
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn report(name: &str, candidates: &Candidates, decided: &Decided, top: usize) {
    let decisions = &decided.decisions;
    let keys = candidates.len();
    println!("{keys} keys as of {}", format_instant(candidates.now_us));
    let before = scheduling_order(candidates, &Decisions::neutral(keys));
    let after = scheduling_order(candidates, decisions);
    let mut rank_after = vec![None; keys];
    for (rank, &i) in after.iter().enumerate() {
        rank_after[i] = Some(rank + 1);
    }
    println!("\ntop {top} by the default (model's expected accesses):");
    for (rank, &i) in before.iter().take(top).enumerate() {
        let now = rank_after[i].map_or("excluded".to_string(), |r| format!("#{r}"));
        println!(
            "  #{:<4} {:<40} expected {:>8.2}  -> {now} under {name}",
            rank + 1,
            candidates.describe(i),
            candidates.expected_accesses[i]
        );
    }
    println!("\ntop {top} under {name} (priority class, then expected accesses x weight):");
    for (rank, &i) in after.iter().take(top).enumerate() {
        println!(
            "  #{:<4} {:<40} class {} weight {:>7.3} expected {:>8.2}",
            rank + 1,
            candidates.describe(i),
            decisions.priority[i],
            decisions.weight[i],
            candidates.expected_accesses[i]
        );
    }
    let excluded = keys - after.len();
    let mut weights = decisions.weight.clone();
    weights.sort_by(f64::total_cmp);
    println!(
        "\nexcluded (weight 0): {excluded} of {keys} keys ({:.1}%)",
        100.0 * excluded as f64 / keys.max(1) as f64
    );
    println!(
        "weights: min {:.3}  p10 {:.3}  p50 {:.3}  p90 {:.3}  max {:.3}",
        quantile(&weights, 0.0),
        quantile(&weights, 0.1),
        quantile(&weights, 0.5),
        quantile(&weights, 0.9),
        quantile(&weights, 1.0)
    );
    let mut classes = [0usize; 4];
    for class in &decisions.priority {
        classes[*class as usize] += 1;
    }
    println!(
        "priority classes: first {}  early {}  normal {}  last {}",
        classes[3], classes[2], classes[1], classes[0]
    );
    let held = decisions
        .not_before_us
        .iter()
        .filter(|t| **t > candidates.now_us)
        .count();
    let directed = decisions.destination.iter().filter(|d| **d != 0).count();
    println!(
        "held back (earliest move after now): {held}; with a preferred destination: {directed}"
    );
    let moved_in_top = before
        .iter()
        .take(top)
        .filter(|i| !after.iter().take(top).any(|j| j == *i))
        .count();
    println!("{moved_in_top} of the default top {top} are not in the policy's top {top}");
}
