//! The guard that keeps a model from ranking keys worse than the obvious
//! counter. At training time the learner is fitted once more without the
//! newest cut-off, and on that held-out cut-off its ranking is judged beside
//! every counter heuristic (most frequent, each decayed counter) and beside
//! blends of the two; the guard keeps what captured most. A learner that
//! loses to a counter on data it has not seen is not trusted with the
//! ranking: the counter ranks instead.
//!
//! The churn probability is guarded the same way, by ROC AUC on the
//! held-out cut-off: the learner's churn model against the key's write rate
//! so far, read as a Poisson rate over the horizon (`P(at least k writes)`,
//! k the churn rule's writes). The write rate needs no labels, so it also
//! stands in when the learner had nothing to learn from (no cut-off held a
//! churning key) and the held-out cut-off cannot tell the two apart.
//!
//! One cut-off is noisy: each key's accesses in the horizon vary like a
//! Poisson count, so two rankings' captures differ by chance by about
//! `sqrt(accesses of the keys one takes and the other does not) / all
//! accesses` (one standard error). The learner or a blend replaces the
//! counter only when it captured more than two standard errors above it.
//!
//! A blend is a weighted geometric mean on the count scale,
//! `exp(w ln(1 + model) + (1 - w) ln(1 + c counter)) - 1`, with `c` scaling
//! the counter to the accesses the held-out keys really had: the result stays an expected number of
//! accesses (the scheduler and policies read it as one), and the weights 0
//! and 1 rank exactly as the counter and the model do.

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use super::evaluate::{key_capture, roc_auc, top_keys};
use super::input::input_column;
use super::train::LabelledCutoff;
use crate::features::KeyFeatures;
use crate::features::definition::DECAY_HALF_LIVES;

/// Model weights tried, 0 being the counter alone and 1 the model alone.
const MODEL_WEIGHTS: [f64; 5] = [0.0, 0.25, 0.5, 0.75, 1.0];

/// The key budget candidates are judged at.
const BUDGET: f64 = 0.10;

/// A counter a guard can rank by, computed from the raw model inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Counter {
    /// Reads and writes before the cut-off.
    MostFrequent,
    /// Reads and writes decayed with the half-life of index `0` in [`DECAY_HALF_LIVES`].
    Decayed(usize),
}

impl Counter {
    fn all() -> impl Iterator<Item = Counter> {
        std::iter::once(Counter::MostFrequent)
            .chain((0..DECAY_HALF_LIVES.len()).map(Counter::Decayed))
    }

    /// The method name `evaluate` prints for the same heuristic.
    pub fn name(self) -> String {
        match self {
            Counter::MostFrequent => "most-frequent".into(),
            Counter::Decayed(index) => format!("decayed-{}", DECAY_HALF_LIVES[index].0),
        }
    }

    /// The raw input columns summed into this counter.
    fn columns(self) -> [usize; 2] {
        match self {
            Counter::MostFrequent => [input_column("reads_total"), input_column("writes_total")],
            Counter::Decayed(index) => {
                let suffix = DECAY_HALF_LIVES[index].0;
                [
                    input_column(&format!("reads_decay_{suffix}")),
                    input_column(&format!("writes_decay_{suffix}")),
                ]
            }
        }
    }

    /// The counter of every row of raw model inputs.
    pub fn values(self, raw: ArrayView2<f64>) -> Vec<f64> {
        let [a, b] = self.columns();
        raw.rows().into_iter().map(|row| row[a] + row[b]).collect()
    }

    /// The counter of one key's features (the same sum as [`Counter::values`]).
    pub fn of_features(self, row: &KeyFeatures) -> f64 {
        match self {
            Counter::MostFrequent => (row.reads_total + row.writes_total) as f64,
            Counter::Decayed(index) => row.reads_decay[index] + row.writes_decay[index],
        }
    }
}

/// What gives the probability that a key churns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChurnSource {
    /// The learner's churn model.
    #[default]
    Learner,
    /// The key's writes so far per horizon, as a Poisson rate.
    WriteRate,
}

/// The churn probability of every row of raw model inputs from its write
/// rate: λ = writes so far / max(age in horizons, 1), and
/// `P(N >= min_writes)` for N ~ Poisson(λ).
pub fn write_rate_churn(raw: ArrayView2<f64>, min_writes: u64) -> Vec<f64> {
    let (writes, age) = (input_column("writes_total"), input_column("age_h"));
    raw.rows()
        .into_iter()
        .map(|row| {
            let rate = row[writes].max(0.0) / row[age].max(1.0);
            let mut term = (-rate).exp();
            let mut below = 0.0;
            for i in 0..min_writes {
                below += term;
                term *= rate / (i + 1) as f64;
            }
            (1.0 - below).clamp(0.0, 1.0)
        })
        .collect()
}

/// What the guard measured on the held-out cut-off: why it chose.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    /// The held-out cut-off (RFC 3339).
    pub cutoff: String,
    /// Share of the horizon's accesses captured by 10% of the keys, per candidate.
    pub captures: Vec<(String, f64)>,
    /// Per candidate against the best counter: two standard errors of the
    /// capture difference, the gain it had to beat.
    #[serde(default)]
    pub required_gains: Vec<(String, f64)>,
    /// ROC AUC of each churn ranking (none when no held-out key churned, or all did).
    #[serde(default)]
    pub churn_aucs: Vec<(String, Option<f64>)>,
}

/// What the learner predicted for the held-out keys, fitted without them.
pub struct HeldOutScores<'a> {
    pub accesses: &'a [f64],
    pub churn: &'a [f64],
    /// The learner's churn model is a constant: its cut-offs held one class only.
    pub churn_learned_nothing: bool,
}

/// What a guard reads of each held-out key besides its outcome: the value
/// of every counter and the write-rate churn, gathered batch by batch so the
/// held-out keys' inputs need not be held at once.
pub struct HeldOutCounts {
    /// One column per counter, in [`Counter::all`] order.
    counters: Vec<(Counter, Vec<f64>)>,
    write_rate_churn: Vec<f64>,
    churn_min_writes: u64,
}

impl HeldOutCounts {
    pub fn new(churn_min_writes: u64) -> Self {
        HeldOutCounts {
            counters: Counter::all()
                .map(|counter| (counter, Vec::new()))
                .collect(),
            write_rate_churn: Vec::new(),
            churn_min_writes,
        }
    }

    /// Every key of `raw` at once.
    pub fn of(raw: ArrayView2<f64>, churn_min_writes: u64) -> Self {
        let mut counts = Self::new(churn_min_writes);
        counts.extend(raw);
        counts
    }

    /// Adds the next keys, rows of raw model inputs.
    pub fn extend(&mut self, raw: ArrayView2<f64>) {
        for (counter, values) in &mut self.counters {
            values.extend(counter.values(raw));
        }
        self.write_rate_churn
            .extend(write_rate_churn(raw, self.churn_min_writes));
    }

    /// The keys gathered in another order put back in row order: the i-th
    /// key gathered is row `rows[i]`.
    pub fn in_row_order(self, rows: &[usize]) -> Self {
        HeldOutCounts {
            counters: self
                .counters
                .into_iter()
                .map(|(counter, values)| (counter, in_row_order(values, rows)))
                .collect(),
            write_rate_churn: in_row_order(self.write_rate_churn, rows),
            churn_min_writes: self.churn_min_writes,
        }
    }
}

/// `values` of rows `rows[0]`, `rows[1]`, … as values of rows 0, 1, …
pub fn in_row_order(values: Vec<f64>, rows: &[usize]) -> Vec<f64> {
    let mut ordered = vec![0.0; values.len()];
    for (value, &row) in values.into_iter().zip(rows) {
        ordered[row] = value;
    }
    ordered
}

/// The chosen ranking: a counter, the model, or a blend of the two.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Guard {
    pub counter: Counter,
    /// Weight of the model in the blend: 0 ranks by the counter alone, 1 by the model alone.
    pub model_weight: f64,
    /// Multiplies the counter into expected accesses in the horizon.
    pub counter_scale: f64,
    /// Older models take their churn from the learner.
    #[serde(default)]
    pub churn: ChurnSource,
    /// The churn rule's writes in the horizon (for [`ChurnSource::WriteRate`]).
    #[serde(default)]
    pub churn_min_writes: u64,
    pub validation: Validation,
}

impl Guard {
    /// Chooses on `held_out` (a cut-off the model was not fitted on), given
    /// the model's scores for each of its keys; with no model (nothing older
    /// to fit one on) the best counter ranks and the write rate gives churn.
    pub fn choose(
        model: Option<HeldOutScores>,
        held_out: &LabelledCutoff,
        counts: HeldOutCounts,
    ) -> Guard {
        let capture = |hot: &[f64]| key_capture(hot, held_out, BUDGET);
        let mut captures = Vec::new();
        let mut best_counter = (Counter::MostFrequent, f64::NEG_INFINITY, Vec::new());
        for (counter, values) in counts.counters {
            let captured = capture(&values);
            captures.push((counter.name(), captured));
            if captured > best_counter.1 {
                best_counter = (counter, captured, values);
            }
        }
        let (counter, mut best, counter_values) = best_counter;
        let accessed: u64 = held_out.outcomes.iter().map(|o| o.accesses).sum();
        let churn_min_writes = counts.churn_min_writes;
        let (churn, churn_aucs) = choose_churn(model.as_ref(), held_out, &counts.write_rate_churn);
        let mut chosen = Guard {
            counter,
            model_weight: 0.0,
            counter_scale: scale_to(accessed as f64, &counter_values),
            churn,
            churn_min_writes,
            validation: Validation {
                cutoff: crate::time::format_instant(held_out.cutoff),
                captures: Vec::new(),
                required_gains: Vec::new(),
                churn_aucs,
            },
        };
        let counter_keys = top_keys(&counter_values, BUDGET);
        let counter_capture = best;
        let mut required_gains = Vec::new();
        for weight in MODEL_WEIGHTS
            .into_iter()
            .skip(1)
            .filter(|_| model.is_some())
        {
            let candidate = Guard {
                model_weight: weight,
                ..chosen.clone()
            };
            let mut blended = model
                .as_ref()
                .expect("filtered on a model")
                .accesses
                .to_vec();
            candidate.blend(&mut blended, &counter_values);
            let captured = capture(&blended);
            let required =
                2.0 * standard_error(&top_keys(&blended, BUDGET), &counter_keys, held_out);
            captures.push((candidate.label(), captured));
            required_gains.push((candidate.label(), required));
            // Only a gain beyond chance on unseen data earns the model a say.
            if captured - counter_capture > required && captured > best {
                best = captured;
                chosen = candidate;
            }
        }
        chosen.validation.captures = captures;
        chosen.validation.required_gains = required_gains;
        chosen
    }

    /// Replaces the model's expected accesses and churn probabilities by the guarded ones.
    pub fn apply(&self, accesses: &mut [f64], churn: &mut Vec<f64>, raw: ArrayView2<f64>) {
        if self.churn == ChurnSource::WriteRate {
            *churn = write_rate_churn(raw, self.churn_min_writes);
        }
        if self.model_weight == 1.0 {
            return;
        }
        let counter = self.counter.values(raw);
        self.blend(accesses, &counter);
    }

    fn blend(&self, accesses: &mut [f64], counter: &[f64]) {
        let weight = self.model_weight;
        for (value, &count) in accesses.iter_mut().zip(counter) {
            let counted = (self.counter_scale * count).max(0.0).ln_1p();
            *value = (weight * value.max(0.0).ln_1p() + (1.0 - weight) * counted).exp_m1();
        }
    }

    /// How a candidate is named in the validation table.
    fn label(&self) -> String {
        match self.model_weight {
            0.0 => self.counter.name(),
            1.0 => "model".into(),
            weight => format!("{:.0}% model + {}", 100.0 * weight, self.counter.name()),
        }
    }

    /// One sentence: what ranks, and the figures that decided it.
    pub fn describe(&self) -> String {
        let required = |name: &str| {
            self.validation
                .required_gains
                .iter()
                .find(|(candidate, _)| candidate == name)
                .map(|(_, gain)| gain)
        };
        let figures: Vec<String> = self
            .validation
            .captures
            .iter()
            .map(|(name, capture)| match required(name) {
                Some(gain) => format!(
                    "{name} {:.1}% (needs +{:.1})",
                    100.0 * capture,
                    100.0 * gain
                ),
                None => format!("{name} {:.1}%", 100.0 * capture),
            })
            .collect();
        let churn = match self.churn {
            ChurnSource::Learner => "the learner",
            ChurnSource::WriteRate => "the write rate",
        };
        let churn_figures: Vec<String> = self
            .validation
            .churn_aucs
            .iter()
            .map(|(name, auc)| match auc {
                Some(auc) => format!("{name} AUC {auc:.3}"),
                None => format!("{name} AUC undefined"),
            })
            .collect();
        let churn = format!("; churn by {churn} ({})", churn_figures.join(", "));
        let learner_tested = self
            .validation
            .captures
            .iter()
            .any(|(name, _)| name == "model");
        if learner_tested {
            format!(
                "ranks by {}: best at a 10% key budget on the held-out cut-off {} ({}){churn}",
                self.label(),
                self.validation.cutoff,
                figures.join(", ")
            )
        } else {
            format!(
                "ranks by {}: no cut-off before {} had history to test the learner on, so the best counter there ranks ({}){churn}",
                self.label(),
                self.validation.cutoff,
                figures.join(", ")
            )
        }
    }
}

/// One standard error of the difference between the captures of two key
/// sets: each key's accesses counted as Poisson (variance = the count), and
/// only the keys in one set but not the other move the difference.
fn standard_error(a: &[usize], b: &[usize], held_out: &LabelledCutoff) -> f64 {
    let mut in_a = vec![false; held_out.outcomes.len()];
    for &key in a {
        in_a[key] = true;
    }
    let mut in_b = vec![false; held_out.outcomes.len()];
    for &key in b {
        in_b[key] = true;
    }
    let differing: u64 = held_out
        .outcomes
        .iter()
        .enumerate()
        .filter(|(key, _)| in_a[*key] != in_b[*key])
        .map(|(_, outcome)| outcome.accesses)
        .sum();
    (differing as f64).sqrt() / held_out.total.accesses.max(1) as f64
}

/// The learner's churn model unless the write rate ranked the held-out keys
/// better (the write rate wins ties), or the held-out keys cannot tell the
/// two apart and the learner learned nothing.
fn choose_churn(
    model: Option<&HeldOutScores>,
    held_out: &LabelledCutoff,
    write_rate_churn: &[f64],
) -> (ChurnSource, Vec<(String, Option<f64>)>) {
    let defined = |auc: f64| (!auc.is_nan()).then_some(auc);
    let by_rate = roc_auc(write_rate_churn, &held_out.churn);
    let mut aucs = vec![("write-rate".to_string(), defined(by_rate))];
    let Some(model) = model else {
        return (ChurnSource::WriteRate, aucs);
    };
    let by_learner = roc_auc(model.churn, &held_out.churn);
    aucs.push(("model".to_string(), defined(by_learner)));
    let source = if by_learner.is_nan() || by_rate.is_nan() {
        if model.churn_learned_nothing {
            ChurnSource::WriteRate
        } else {
            ChurnSource::Learner
        }
    } else if by_learner > by_rate {
        ChurnSource::Learner
    } else {
        ChurnSource::WriteRate
    };
    (source, aucs)
}

/// The factor that makes `counter` sum to `accessed`, the accesses its
/// keys really had (1 when either is zero).
fn scale_to(accessed: f64, counter: &[f64]) -> f64 {
    let counter_sum: f64 = counter.iter().sum();
    if accessed > 0.0 && counter_sum > 0.0 {
        accessed / counter_sum
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;

    use super::*;
    use crate::features::FeatureTable;
    use crate::model::input::input_names;
    use crate::model::labels::Outcome;

    /// 20 keys, key `i` accessed `i` times in the horizon (190 in all); the
    /// decayed counters are all zero.
    fn held_out() -> LabelledCutoff {
        let outcomes: Vec<Outcome> = (0..20)
            .map(|i| Outcome {
                accesses: i,
                bytes_read: 0,
                writes: 0,
                reads_before_write: 0,
            })
            .collect();
        LabelledCutoff {
            cutoff: 0,
            features: crate::features::FeatureRows::Built(FeatureTable::from_batches(
                0,
                1,
                true,
                0,
                Vec::new(),
            )),
            hot: outcomes.iter().map(|o| o.accesses >= 18).collect(),
            churn: vec![false; 20],
            total: Outcome {
                accesses: 190,
                bytes_read: 0,
                writes: 0,
                reads_before_write: 0,
            },
            outcomes,
        }
    }

    fn raw_with(column: &str, value: impl Fn(usize) -> f64) -> Array2<f64> {
        let column = input_column(column);
        let mut raw = Array2::zeros((20, input_names().len()));
        for row in 0..20 {
            raw[[row, column]] = value(row);
        }
        raw
    }

    fn raw_with_reads(reads: impl Fn(usize) -> f64) -> Array2<f64> {
        raw_with("reads_total", reads)
    }

    /// The learner's held-out scores, its churn probability 0.1 for every key.
    fn learner(accesses: &[f64]) -> HeldOutScores<'_> {
        HeldOutScores {
            accesses,
            churn: &[0.1; 20],
            churn_learned_nothing: false,
        }
    }

    /// The held-out cut-off with keys 18 and 19 churning.
    fn churning_at_18_and_19() -> LabelledCutoff {
        let mut cutoff = held_out();
        cutoff.churn[18] = true;
        cutoff.churn[19] = true;
        cutoff
    }

    fn capture_of(guard: &Guard, candidate: &str) -> f64 {
        guard
            .validation
            .captures
            .iter()
            .find(|(name, _)| name == candidate)
            .unwrap_or_else(|| panic!("{candidate} judged: {:?}", guard.validation))
            .1
    }

    /// Worked by hand: 10% of 20 keys is 2. The counter ranks `k19`, `k18`
    /// first: 37/190. The model ranks them last: `k0`, `k1`, 1/190. A 25%
    /// blend scores 0.25 ln(20 - i) + 0.75 ln(1 + i), highest at `k15`
    /// (2.481) and `k14` (2.479): 29/190. The counter alone wins.
    #[test]
    fn a_model_that_ranks_worse_than_the_counter_is_not_trusted() {
        let raw = raw_with_reads(|i| i as f64);
        let model: Vec<f64> = (0..20).map(|i| (19 - i) as f64).collect();
        let guard = Guard::choose(
            Some(learner(&model)),
            &held_out(),
            HeldOutCounts::of(raw.view(), 2),
        );
        assert_eq!(guard.counter, Counter::MostFrequent);
        assert_eq!(guard.model_weight, 0.0);
        assert_eq!(capture_of(&guard, "most-frequent"), 37.0 / 190.0);
        assert_eq!(capture_of(&guard, "model"), 1.0 / 190.0);
        assert_eq!(
            capture_of(&guard, "25% model + most-frequent"),
            29.0 / 190.0
        );
        // Ranked by the counter, scaled to the held-out accesses (both sum to 190).
        let mut accesses = model.clone();
        guard.apply(&mut accesses, &mut vec![0.1; 20], raw.view());
        for (i, value) in accesses.iter().enumerate() {
            assert!((value - i as f64).abs() < 1e-9, "key {i}: {value}");
        }
    }

    /// The mirror image: the model ranks perfectly, the counter backwards;
    /// a 75% blend has the scores of the 25% blend above: 29/190. The model
    /// alone wins (37/190, against 1/190: the two differ on keys 0, 1, 18
    /// and 19, 38 accesses, so it needed 2 sqrt(38)/190 = 6.5 points) and
    /// its scores pass through untouched.
    #[test]
    fn a_model_that_ranks_better_on_held_out_data_ranks_alone() {
        let raw = raw_with_reads(|i| (19 - i) as f64);
        let model: Vec<f64> = (0..20).map(|i| i as f64).collect();
        let guard = Guard::choose(
            Some(learner(&model)),
            &held_out(),
            HeldOutCounts::of(raw.view(), 2),
        );
        assert_eq!(guard.model_weight, 1.0);
        assert_eq!(capture_of(&guard, "model"), 37.0 / 190.0);
        assert_eq!(capture_of(&guard, "most-frequent"), 1.0 / 190.0);
        assert_eq!(
            capture_of(&guard, "75% model + most-frequent"),
            29.0 / 190.0
        );
        let mut accesses = model.clone();
        guard.apply(&mut accesses, &mut vec![0.1; 20], raw.view());
        assert_eq!(accesses, model);
        assert!(guard.describe().starts_with("ranks by model:"));
    }

    #[test]
    fn without_a_model_the_best_counter_ranks_and_says_why() {
        let raw = raw_with_reads(|i| i as f64);
        let guard = Guard::choose(None, &held_out(), HeldOutCounts::of(raw.view(), 2));
        assert_eq!(guard.counter, Counter::MostFrequent);
        assert_eq!(guard.model_weight, 0.0);
        assert_eq!(guard.validation.captures.len(), 1 + DECAY_HALF_LIVES.len());
        assert!(
            guard.describe().contains("no cut-off before"),
            "{}",
            guard.describe()
        );
    }

    /// Worked by hand: the counter ranks `k19` (19 reads), `k17` (18) first:
    /// 36/190; the model `k19`, `k18`: 37/190. The two differ on `k17` and
    /// `k18`, 35 accesses: one standard error is sqrt(35)/190 = 3.1 points,
    /// so a gain of 1/190 (0.5 point) is chance and the counter ranks.
    #[test]
    fn a_gain_within_chance_does_not_earn_the_model_a_say() {
        let raw = raw_with_reads(|i| match i {
            17 => 18.0,
            18 => 17.0,
            i => i as f64,
        });
        let model: Vec<f64> = (0..20).map(|i| i as f64).collect();
        let guard = Guard::choose(
            Some(learner(&model)),
            &held_out(),
            HeldOutCounts::of(raw.view(), 2),
        );
        assert_eq!(capture_of(&guard, "most-frequent"), 36.0 / 190.0);
        assert_eq!(capture_of(&guard, "model"), 37.0 / 190.0);
        assert_eq!(guard.model_weight, 0.0, "{}", guard.describe());
        assert_eq!(guard.counter, Counter::MostFrequent);
        let required = guard
            .validation
            .required_gains
            .iter()
            .find(|(name, _)| name == "model")
            .unwrap()
            .1;
        assert!(
            (required - 2.0 * 35f64.sqrt() / 190.0).abs() < 1e-12,
            "{required}"
        );
    }

    /// Worked by hand: key `i` has written `i` times and is younger than one
    /// horizon, so λ = i. Keys 18 and 19 churn (two writes or more): the
    /// write rate ranks them first (AUC 1), the learner's constant 0.1 ties
    /// every key (AUC 0.5). The write rate gives churn: P(N >= 2) =
    /// 1 - e^-λ (1 + λ): 0 for key 0, 1 - 2/e = 0.264241 for key 1,
    /// 1 - 3/e² = 0.593994 for key 2.
    #[test]
    fn the_write_rate_gives_churn_when_it_ranks_churning_keys_better() {
        let raw = raw_with("writes_total", |i| i as f64);
        let model: Vec<f64> = (0..20).map(|i| i as f64).collect();
        let guard = Guard::choose(
            Some(learner(&model)),
            &churning_at_18_and_19(),
            HeldOutCounts::of(raw.view(), 2),
        );
        assert_eq!(guard.churn, ChurnSource::WriteRate);
        assert_eq!(
            guard.validation.churn_aucs,
            vec![
                ("write-rate".to_string(), Some(1.0)),
                ("model".to_string(), Some(0.5))
            ]
        );
        let mut churn = vec![0.1; 20];
        guard.apply(&mut model.clone(), &mut churn, raw.view());
        for (key, expected) in [(0, 0.0), (1, 0.264241), (2, 0.593994)] {
            assert!(
                (churn[key] - expected).abs() < 1e-6,
                "key {key}: {}",
                churn[key]
            );
        }
        assert!(guard.describe().contains("churn by the write rate"));
    }

    /// Eight writes over four horizons is a rate of two per horizon: the same
    /// 1 - 3/e² as two writes in a key younger than one horizon.
    #[test]
    fn the_write_rate_is_per_horizon_of_the_keys_age() {
        let mut raw = Array2::zeros((2, input_names().len()));
        raw[[0, input_column("writes_total")]] = 8.0;
        raw[[0, input_column("age_h")]] = 4.0;
        raw[[1, input_column("writes_total")]] = 2.0;
        raw[[1, input_column("age_h")]] = 0.25;
        let churn = write_rate_churn(raw.view(), 2);
        for value in churn {
            assert!((value - 0.593994).abs() < 1e-6, "{value}");
        }
    }

    /// The learner ranks the churning keys first (AUC 1), the write rate
    /// last (key `i` wrote 19 - i times: AUC 0): the learner's churn stays.
    #[test]
    fn the_learner_keeps_churn_when_it_ranks_better() {
        let raw = raw_with("writes_total", |i| (19 - i) as f64);
        let model: Vec<f64> = (0..20).map(|i| i as f64).collect();
        let churn: Vec<f64> = (0..20).map(|i| if i >= 18 { 0.9 } else { 0.0 }).collect();
        let scores = HeldOutScores {
            accesses: &model,
            churn: &churn,
            churn_learned_nothing: false,
        };
        let guard = Guard::choose(
            Some(scores),
            &churning_at_18_and_19(),
            HeldOutCounts::of(raw.view(), 2),
        );
        assert_eq!(guard.churn, ChurnSource::Learner);
        let mut applied = churn.clone();
        guard.apply(&mut model.clone(), &mut applied, raw.view());
        assert_eq!(applied, churn);
    }

    /// No held-out key churns, so neither ranking can be judged: the
    /// learner keeps churn if it learned something, the write rate takes
    /// over if it is a constant.
    #[test]
    fn without_churning_keys_a_learner_that_learned_nothing_gives_way() {
        let raw = raw_with("writes_total", |i| i as f64);
        let model: Vec<f64> = (0..20).map(|i| i as f64).collect();
        let mut scores = learner(&model);
        let guard = Guard::choose(
            Some(learner(&model)),
            &held_out(),
            HeldOutCounts::of(raw.view(), 2),
        );
        assert_eq!(guard.churn, ChurnSource::Learner);
        assert!(guard.describe().contains("write-rate AUC undefined"));
        let stored: Guard = serde_json::from_str(&serde_json::to_string(&guard).unwrap()).unwrap();
        assert_eq!(stored, guard, "undefined AUCs survive the model file");
        scores.churn_learned_nothing = true;
        let guard = Guard::choose(Some(scores), &held_out(), HeldOutCounts::of(raw.view(), 2));
        assert_eq!(guard.churn, ChurnSource::WriteRate);
    }
}
