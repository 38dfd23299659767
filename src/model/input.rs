//! Model inputs: the numeric features of a [`FeatureTable`] as a matrix, and
//! the preprocessing every model learns and carries, so callers always pass
//! raw features.

use std::borrow::Borrow;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use ndarray::{Array2, ArrayView1, ArrayView2, ArrayViewMut2, Axis};
use serde::{Deserialize, Serialize};

use rayon::prelude::*;

use crate::features::table::{KEY_COLUMNS, column_names, input_values};
use crate::features::{FeatureRows, FeatureRowsRef, FeatureTable, KeyStates};

/// Recency of something that never happened, in seconds (about 116 days):
/// older than anything a cut-off looks back at.
const NEVER_SECONDS: f64 = 1e7;

/// Names of the model inputs, in column order: every feature except the
/// table name and the key.
pub fn input_names() -> Vec<String> {
    column_names().into_iter().skip(KEY_COLUMNS.len()).collect()
}

/// The column of the input named `name` in [`raw_inputs`].
pub fn input_column(name: &str) -> usize {
    input_names()
        .iter()
        .position(|input| input == name)
        .unwrap_or_else(|| panic!("`{name}` is not a model input"))
}

/// One row per key, one column per input; booleans as 0/1, missing values NaN.
pub fn raw_inputs(table: &FeatureTable) -> Array2<f64> {
    stacked(table.len(), table.batches().iter())
}

/// Like [`raw_inputs`], for a cut-off's rows however they are held.
pub fn raw_inputs_of_rows(rows: &FeatureRows) -> Array2<f64> {
    match rows {
        FeatureRows::Built(table) => raw_inputs(table),
        FeatureRows::OnDemand(states) => raw_inputs_of_states(states),
    }
}

fn stacked<B: Borrow<RecordBatch>>(rows: usize, batches: impl Iterator<Item = B>) -> Array2<f64> {
    let names = input_names();
    let mut inputs = Array2::<f64>::zeros((rows, names.len()));
    let mut first = 0;
    for batch in batches {
        let batch = batch.borrow();
        let end = first + batch.num_rows();
        fill_inputs(batch, &names, inputs.slice_mut(ndarray::s![first..end, ..]));
        first = end;
    }
    inputs
}

/// Like [`raw_inputs`], each row's inputs built from its key's state
/// directly, on every core, with no feature batch in between.
pub fn raw_inputs_of_states(states: &KeyStates) -> Array2<f64> {
    let mut inputs = Array2::<f64>::zeros((states.len(), input_names().len()));
    fill_inputs_of_states(states, 0, &mut inputs.view_mut());
    inputs
}

/// Calls `each` with the raw inputs of every row, a block of rows at a
/// time, in row order: a pass over every key that never holds every row's
/// inputs. From states, blocks of `block_rows` share one buffer; a table's
/// blocks are its batches.
pub fn for_each_input_block(
    rows: FeatureRowsRef<'_>,
    block_rows: usize,
    mut each: impl FnMut(ArrayView2<f64>),
) {
    let names = input_names();
    match rows {
        FeatureRowsRef::Built(table) => {
            for batch in table.batches() {
                let mut inputs = Array2::<f64>::zeros((batch.num_rows(), names.len()));
                fill_inputs(batch, &names, inputs.view_mut());
                each(inputs.view());
            }
        }
        FeatureRowsRef::OnDemand(states) => {
            let block_rows = block_rows.clamp(1, states.len().max(1));
            let mut buffer = Array2::<f64>::zeros((block_rows, names.len()));
            for first in (0..states.len()).step_by(block_rows) {
                let rows = (states.len() - first).min(block_rows);
                let mut block = buffer.slice_mut(ndarray::s![..rows, ..]);
                fill_inputs_of_states(states, first, &mut block);
                each(block.view());
            }
        }
    }
}

/// Fills the rows of `out` with the inputs of the states' rows from
/// `first` on, on every core.
fn fill_inputs_of_states(states: &KeyStates, first: usize, out: &mut ArrayViewMut2<f64>) {
    const CHUNK_ROWS: usize = 4096;
    let width = out.ncols();
    out.as_slice_mut()
        .expect("whole rows of a standard-layout array")
        .par_chunks_mut(width * CHUNK_ROWS)
        .enumerate()
        .for_each(|(chunk, block)| {
            for (offset, out) in block.chunks_mut(width).enumerate() {
                let features = states.row(first + chunk * CHUNK_ROWS + offset);
                for (slot, value) in out.iter_mut().zip(input_values(&features)) {
                    *slot = value;
                }
            }
        });
}

/// Like [`raw_inputs`], for the given rows only (in ascending order).
pub fn raw_inputs_of(features: &FeatureRows, rows: &[usize]) -> Array2<f64> {
    raw_inputs(&features.take(rows))
}

/// The rows of [`raw_inputs`] one feature batch at a time, in any order,
/// each batch with the row number of each of its rows (see
/// [`FeatureRows::drain`]): a pass over every key that holds one batch of
/// inputs and features, not all.
pub fn raw_inputs_drained(
    features: FeatureRows,
) -> impl Iterator<Item = (Vec<usize>, Array2<f64>)> {
    let names = input_names();
    features.drain().map(move |(rows, batch)| {
        let mut inputs = Array2::<f64>::zeros((batch.num_rows(), names.len()));
        fill_inputs(&batch, &names, inputs.view_mut());
        (rows, inputs)
    })
}

/// Row `i` of `out` gets the inputs of row `i` of `batch`.
fn fill_inputs(batch: &RecordBatch, names: &[String], mut out: ndarray::ArrayViewMut2<f64>) {
    for (column, name) in names.iter().enumerate() {
        let values = batch
            .column_by_name(name)
            .expect("canonical feature column");
        let values = arrow_cast::cast(values, &DataType::Float64).expect("numeric feature column");
        let values = values.as_primitive::<Float64Type>();
        for (row, value) in out.column_mut(column).iter_mut().enumerate() {
            *value = if values.is_valid(row) {
                values.value(row)
            } else {
                f64::NAN
            };
        }
    }
}

/// log(1 + x) for x ≥ 0 (below 0 counts as 0), approximated: the exponent
/// of 1 + x in single precision times ln 2, plus a degree-5 Remez
/// polynomial of its mantissa (the one the micromath crate uses, absolute
/// error under 0.001, to the bit). Far finer than what separates keys after
/// standardization, several times faster than the exact function, and
/// free of branches, so a column of inputs compiles to vector code: it runs
/// for most inputs of every key scored. Training and scoring use the same
/// function.
#[inline(always)]
fn log_scale(value: f64) -> f64 {
    let x = 1.0 + value.max(0.0) as f32;
    let bits = x.to_bits();
    let exponent = ((bits >> 23) & 0xff) as i32 - 127;
    let mantissa = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    let polynomial = -1.741_793_9_f32
        + (2.821_202_6
            + (-1.469_956_8 + (0.447_179_55 - 0.056_570_85 * mantissa) * mantissa) * mantissa)
            * mantissa;
    let ln = exponent as f32 * std::f32::consts::LN_2 + polynomial;
    f64::from(if x == 1.0 { 0.0 } else { ln })
}

/// Learned input preprocessing: missing recency becomes "long ago",
/// heavy-tailed inputs (counts, decayed counters, sizes, ages) are put on a
/// log scale, and every input is standardized with the training mean and
/// standard deviation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    pub input_names: Vec<String>,
    log_scaled: Vec<bool>,
    mean: Vec<f64>,
    /// 1 / standard deviation (1 for constant inputs).
    inverse_scale: Vec<f64>,
}

impl Preprocess {
    pub fn fit(raw: ArrayView2<f64>) -> Self {
        let input_names = input_names();
        let log_scaled: Vec<bool> = input_names
            .iter()
            .map(|name| !(name.contains("share") || name == "is_deleted"))
            .collect();
        let mut preprocess = Preprocess {
            input_names,
            log_scaled,
            mean: vec![0.0; raw.ncols()],
            inverse_scale: vec![1.0; raw.ncols()],
        };
        let transformed = preprocess.transform(raw);
        let rows = transformed.nrows().max(1) as f64;
        for (column, values) in transformed.axis_iter(Axis(1)).enumerate() {
            let mean = values.sum() / rows;
            let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / rows;
            preprocess.mean[column] = mean;
            preprocess.inverse_scale[column] = if variance > 1e-12 {
                1.0 / variance.sqrt()
            } else {
                1.0
            };
        }
        preprocess
    }

    fn transform(&self, raw: ArrayView2<f64>) -> Array2<f64> {
        let mut out = Array2::<f64>::zeros(raw.dim());
        for (raw_row, mut row) in raw.axis_iter(Axis(0)).zip(out.axis_iter_mut(Axis(0))) {
            let row = row.as_slice_mut().expect("a fresh array is contiguous");
            self.apply_row(raw_row, row);
        }
        out
    }

    /// One key's raw inputs into `out` (one slot per input).
    pub fn apply_row(&self, raw: ArrayView1<f64>, out: &mut [f64]) {
        match raw.as_slice() {
            Some(values) => self.apply_slice(values, out),
            None => self.apply_slice(&raw.to_vec(), out),
        }
    }

    /// One key's raw inputs (a slice) into `out`.
    pub fn apply_slice(&self, raw: &[f64], out: &mut [f64]) {
        let columns = raw
            .iter()
            .zip(&self.log_scaled)
            .zip(self.mean.iter().zip(&self.inverse_scale));
        for (slot, ((&value, &log_scaled), (mean, inverse_scale))) in out.iter_mut().zip(columns) {
            let filled = if value.is_nan() { NEVER_SECONDS } else { value };
            let scaled = if log_scaled {
                log_scale(filled)
            } else {
                filled
            };
            *slot = (scaled - mean) * inverse_scale;
        }
    }

    /// Column `column` of raw inputs, in place, made ready for a linear
    /// model whose weights carry the standardization (see
    /// [`Preprocess::standardization`]): missing values filled, log scale
    /// where the input is log-scaled. One operation down a column, so it
    /// compiles to vector code.
    pub fn scale_column(&self, column: usize, values: &mut [f64]) {
        self.column_in_vectors(column, values, false);
    }

    /// Column `column` of raw inputs, in place, made what
    /// [`Preprocess::apply_slice`] makes of it: [`Preprocess::scale_column`],
    /// then standardized.
    pub fn apply_column(&self, column: usize, values: &mut [f64]) {
        self.column_in_vectors(column, values, true);
    }

    /// [`Preprocess::column`] in the widest vectors the processor has.
    fn column_in_vectors(&self, column: usize, values: &mut [f64], standardize: bool) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the processor has AVX2.
            unsafe { self.column_avx2(column, values, standardize) };
            return;
        }
        self.column(column, values, standardize);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn column_avx2(&self, column: usize, values: &mut [f64], standardize: bool) {
        self.column(column, values, standardize);
    }

    /// Missing values filled, log scale where the input is log-scaled,
    /// and, when `standardize`, the training mean and scale applied; the
    /// same operations as [`Preprocess::apply_slice`], in the same order.
    #[inline(always)]
    fn column(&self, column: usize, values: &mut [f64], standardize: bool) {
        for value in values.iter_mut() {
            if value.is_nan() {
                *value = NEVER_SECONDS;
            }
        }
        if self.log_scaled[column] {
            for value in values.iter_mut() {
                *value = log_scale(*value);
            }
        }
        if standardize {
            let (mean, inverse_scale) = (self.mean[column], self.inverse_scale[column]);
            for value in values {
                *value = (*value - mean) * inverse_scale;
            }
        }
    }

    /// The training mean and 1 / standard deviation of each input, after
    /// [`Preprocess::scale_column`].
    pub fn standardization(&self) -> (&[f64], &[f64]) {
        (&self.mean, &self.inverse_scale)
    }

    /// Raw inputs in, model-ready inputs out.
    pub fn apply(&self, raw: ArrayView2<f64>) -> Array2<f64> {
        self.transform(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selected_rows_decode_like_the_whole_table() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        crate::workload::Generator::new(crate::workload::GenerateOptions {
            profile: crate::workload::profile::named("oltp").unwrap(),
            seed: 2,
            events: 5_000,
            start: 0,
            hours: 3,
        })
        .write(&logs, &|_| {})
        .unwrap();
        let source = crate::logs::LogSource::open(&logs).unwrap();
        let options = crate::features::FeatureOptions {
            as_of: 3 * crate::time::HOUR_US,
            horizon: crate::time::HOUR_US,
            since: None,
        };
        let whole = crate::features::compute(&source, options, &|_| {}).unwrap();
        let on_demand =
            FeatureRows::OnDemand(crate::features::scan(&source, options, &|_| {}).unwrap());
        // The same rows in batches of 100, so selections cross batches.
        let batch = &whole.batches()[0];
        let table = FeatureTable::from_batches(
            whole.as_of,
            whole.horizon,
            whole.keys_are_utf8,
            whole.events_scanned,
            (0..batch.num_rows())
                .step_by(100)
                .map(|start| batch.slice(start, 100.min(batch.num_rows() - start)))
                .collect(),
        );
        assert!(table.batches().len() > 3, "{} keys", table.len());
        let all = raw_inputs(&table);
        let same = |a: f64, b: f64| a == b || (a.is_nan() && b.is_nan());
        // A second scan adds each key's decayed terms in another order.
        let close = |a: f64, b: f64| same(a, b) || (a - b).abs() <= 1e-12 * a.abs().max(b.abs());
        let from_states = raw_inputs_of_rows(&on_demand);
        assert_eq!(from_states.dim(), all.dim());
        for ((at, &a), &b) in all.indexed_iter().zip(from_states.iter()) {
            assert!(close(a, b), "{at:?} from the states: {a} against {b}");
        }
        // Blocks of 100 rows from the states, the batches of the table.
        for (held, block_rows) in [(on_demand.borrowed(), 100), ((&table).into(), 1)] {
            let mut blocks = Vec::new();
            for_each_input_block(held, block_rows, |raw| blocks.push(raw.to_owned()));
            assert!(blocks.len() > 3, "{} blocks", blocks.len());
            let views: Vec<_> = blocks.iter().map(|block| block.view()).collect();
            let stacked_blocks = ndarray::concatenate(Axis(0), &views).unwrap();
            assert_eq!(stacked_blocks.dim(), all.dim());
            for ((at, &a), &b) in all.indexed_iter().zip(stacked_blocks.iter()) {
                assert!(close(a, b), "{at:?} from blocks: {a} against {b}");
            }
        }
        let rows = [0, 7, 8, 99, 100, 101, 250, table.len() - 1];
        let some = raw_inputs_of(&FeatureRows::Built(table.clone()), &rows);
        let some_on_demand = raw_inputs_of(&on_demand, &rows);
        let taken = table.take(&rows);
        let taken_inputs = raw_inputs(&taken);
        let keys: Vec<_> = whole.rows().map(|row| row.key).collect();
        let taken_keys: Vec<_> = taken.rows().map(|row| row.key).collect();
        assert_eq!(taken.len(), rows.len());
        for (index, &row) in rows.iter().enumerate() {
            assert_eq!(taken_keys[index], keys[row], "row {row} taken");
            for column in 0..all.ncols() {
                let a = all[[row, column]];
                assert!(same(a, some[[index, column]]), "row {row} column {column}");
                assert!(
                    close(a, some_on_demand[[index, column]]),
                    "row {row} column {column} on demand"
                );
                assert!(
                    same(a, taken_inputs[[index, column]]),
                    "row {row} column {column} taken"
                );
            }
        }
        for features in [FeatureRows::Built(table.clone()), on_demand] {
            let mut keys_in_order = Vec::new();
            features.for_each_key(|_, key, _| keys_in_order.push(key.to_vec()));
            assert_eq!(keys_in_order, keys, "the keys in table order");
            let mut seen = vec![false; table.len()];
            for (rows, inputs) in raw_inputs_drained(features) {
                for (&row, values) in rows.iter().zip(inputs.rows()) {
                    assert!(!seen[row], "row {row} drained twice");
                    seen[row] = true;
                    for (column, &value) in values.iter().enumerate() {
                        assert!(
                            close(all[[row, column]], value),
                            "row {row} column {column} drained"
                        );
                    }
                }
            }
            assert!(seen.iter().all(|&seen| seen), "every row drained");
        }
    }

    #[test]
    fn preprocessing_standardizes_and_fills_missing_values() {
        let columns = input_names().len();
        let mut raw = Array2::<f64>::zeros((4, columns));
        for row in 0..4 {
            for column in 0..columns {
                raw[[row, column]] = (row * 10 + column) as f64;
            }
        }
        raw[[2, 13]] = f64::NAN;
        let preprocess = Preprocess::fit(raw.view());
        let ready = preprocess.apply(raw.view());
        for column in ready.axis_iter(Axis(1)) {
            assert!(column.sum().abs() < 1e-9, "centred");
            assert!(column.iter().all(|v| v.is_finite()));
        }
        assert!(
            ready[[2, 13]] > ready[[3, 13]],
            "never read counts as longest ago"
        );
    }

    /// The branch-free log scale is micromath's ln(1 + x) to the bit, over
    /// zeros, small counts, fractions, the "never" filler and values up to
    /// the largest single-precision number (past it micromath gives NaN).
    #[test]
    fn the_log_scale_is_micromath_to_the_bit() {
        let mut values: Vec<f64> = (0..5000).map(f64::from).collect();
        values.extend((0..2000).map(|i| f64::from(i) * 0.001_7));
        values.extend((0..280).map(|i| 1.37_f64.powi(i)));
        values.extend([NEVER_SECONDS, -3.0, 1e-9, f64::from(f32::EPSILON)]);
        for value in values {
            let reference = f64::from(micromath::F32(1.0 + value.max(0.0) as f32).ln().0);
            assert_eq!(
                log_scale(value).to_bits(),
                reference.to_bits(),
                "ln(1 + {value})"
            );
        }
    }
}
