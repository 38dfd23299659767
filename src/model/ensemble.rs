//! Gradient-boosted trees as the model file stores and scores them. Takes
//! a fitted forust-ml booster; gives the same raw score it would (base score
//! plus every tree's leaf), exactly, at a fraction of the cost.
//!
//! Stored, the trees are one flat array of nodes as forust-ml grew them.
//! Loaded, each tree is laid out complete to its depth in heap order: a
//! shallow leaf is copied into every leaf position below it, so every key
//! takes the same number of steps down a tree and the next node is
//! `2i + 1 + went_right`, with no branch on the data and no child indices.

use forust_ml::GradientBooster;
use serde::{Deserialize, Serialize};

/// Deepest tree the complete layout takes (2^12 leaves, 80 KiB a tree).
pub const MAX_DEPTH: u16 = 12;

/// Marks a leaf in [`Node::feature`].
const LEAF: u32 = u32::MAX;

/// One stored node: a split (`input < threshold` goes left, NaN goes to
/// `missing`, which is one of the two) or, when `feature` is [`LEAF`], a
/// leaf whose value is `threshold`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
struct Node {
    threshold: f64,
    feature: u32,
    left: u32,
    right: u32,
    missing: u32,
}

/// The trees as the model file keeps them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct StoredTrees {
    base_score: f64,
    /// Index of each tree's root in `nodes`.
    roots: Vec<u32>,
    nodes: Vec<Node>,
}

/// One tree of the complete layout: its depth and where its splits and
/// leaves start.
#[derive(Clone, Debug, PartialEq)]
struct CompleteTree {
    depth: u32,
    splits: usize,
    leaves: usize,
}

/// Every tree complete, splits and leaves in heap order, splits comparing
/// bin numbers instead of values: each input's thresholds (over all the
/// trees) sorted once, an input's bin is 1 + how many of them it reaches,
/// and `input >= threshold j` is exactly `bin > j + 1`. A row is binned
/// once per ensemble, then every step of every tree reads two bytes.
#[derive(Clone, Debug, PartialEq)]
struct CompleteTrees {
    trees: Vec<CompleteTree>,
    /// Each split's bin column in its low 16 bits and the bin it compares
    /// with in its high 16. Input `i` has two columns: `2i`, where a
    /// missing input is bin 0 (goes left), and `2i + 1`, where it is
    /// [`MISSING_HIGH`] (goes right).
    splits: Vec<u32>,
    leaves: Vec<f64>,
    /// Each input's distinct thresholds, ascending (empty when no tree
    /// splits on it).
    cuts: Vec<Vec<f64>>,
}

/// The bin of a missing input in its "goes right" column: above every
/// split's bin.
const MISSING_HIGH: u16 = u16::MAX;

/// Most distinct thresholds one input may have in one ensemble, so that
/// every bin, and [`MISSING_HIGH`] above them, fits in 16 bits.
const MAX_CUTS: usize = MISSING_HIGH as usize - 2;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StoredTrees", into = "StoredTrees")]
pub struct Ensemble {
    stored: StoredTrees,
    complete: CompleteTrees,
}

impl From<Ensemble> for StoredTrees {
    fn from(ensemble: Ensemble) -> StoredTrees {
        ensemble.stored
    }
}

impl TryFrom<StoredTrees> for Ensemble {
    type Error = String;

    fn try_from(stored: StoredTrees) -> Result<Ensemble, String> {
        let complete = CompleteTrees::lay_out(&stored)?;
        Ok(Ensemble { stored, complete })
    }
}

impl Ensemble {
    /// Flattens a fitted booster (trained without early stopping: every
    /// tree predicts, and without forust-ml's separate missing branch).
    pub fn from_booster(booster: &GradientBooster) -> Result<Ensemble, String> {
        let mut roots = Vec::with_capacity(booster.trees.len());
        let mut nodes = Vec::new();
        for tree in &booster.trees {
            let offset = nodes.len() as u32;
            roots.push(offset);
            let at = |index: usize| offset + index as u32;
            nodes.extend(tree.nodes.iter().map(|node| {
                if node.is_leaf {
                    Node {
                        threshold: f64::from(node.weight_value),
                        feature: LEAF,
                        left: 0,
                        right: 0,
                        missing: 0,
                    }
                } else {
                    Node {
                        threshold: node.split_value,
                        feature: node.split_feature as u32,
                        left: at(node.left_child),
                        right: at(node.right_child),
                        missing: at(node.missing_node),
                    }
                }
            }));
        }
        Ensemble::try_from(StoredTrees {
            base_score: booster.base_score,
            roots,
            nodes,
        })
    }

    /// The raw score (log-odds or log count) of each row of `rows`, `inputs`
    /// values per row, appended to `out`.
    pub fn score_rows(&self, rows: &[f64], inputs: usize, out: &mut Vec<f64>) {
        let part = Part {
            trees: 0..self.complete.trees.len(),
            base_score: self.stored.base_score,
        };
        self.complete
            .score_rows(rows, inputs, &[part], &mut [Some(out)]);
    }
}

/// Several ensembles over the same inputs (a model's targets), scored
/// together: a block's inputs are binned once, against the thresholds of
/// all of them, instead of once per ensemble.
#[derive(Clone, Debug, PartialEq)]
pub struct Ensembles {
    complete: CompleteTrees,
    /// Each ensemble's trees in `complete`, and its base score.
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq)]
struct Part {
    trees: std::ops::Range<usize>,
    base_score: f64,
}

impl Ensembles {
    /// The ensembles together; an error when their thresholds together
    /// are more than one input's bins hold (score them one by one then).
    pub fn combine(ensembles: &[&Ensemble]) -> Result<Ensembles, String> {
        let mut roots = Vec::new();
        let mut nodes: Vec<Node> = Vec::new();
        let mut parts = Vec::with_capacity(ensembles.len());
        for ensemble in ensembles {
            let offset = nodes.len() as u32;
            let first = roots.len();
            roots.extend(ensemble.stored.roots.iter().map(|root| root + offset));
            nodes.extend(ensemble.stored.nodes.iter().map(|node| match node.feature {
                LEAF => *node,
                _ => Node {
                    left: node.left + offset,
                    right: node.right + offset,
                    missing: node.missing + offset,
                    ..*node
                },
            }));
            parts.push(Part {
                trees: first..roots.len(),
                base_score: ensemble.stored.base_score,
            });
        }
        let together = StoredTrees {
            base_score: 0.0,
            roots,
            nodes,
        };
        Ok(Ensembles {
            complete: CompleteTrees::lay_out(&together)?,
            parts,
        })
    }

    /// [`Ensemble::score_rows`] of each ensemble whose `outs` entry is
    /// `Some`, appended there.
    pub fn score_rows(&self, rows: &[f64], inputs: usize, outs: &mut [Option<&mut Vec<f64>>]) {
        self.complete.score_rows(rows, inputs, &self.parts, outs);
    }
}

/// Rows `first..` of a block of `at.len()` rows whose bins are `bins`
/// down a complete tree of `depth` whose splits are `splits`, each step
/// over all of them, so the rows' walks overlap in the processor instead
/// of each waiting on its own loads.
fn walk_one_by_one(splits: &[u32], depth: u32, bins: &[u16], at: &mut [u32], first: usize) {
    let keys = at.len();
    at[first..].fill(0);
    for _ in 0..depth {
        for (row, index) in at.iter_mut().enumerate().skip(first) {
            let split = splits[*index as usize];
            let bin = bins[(split & 0xffff) as usize * keys + row];
            *index = 2 * *index + 1 + u32::from(u32::from(bin) > split >> 16);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod vector {
    use std::arch::x86_64::*;

    /// [`super::walk_one_by_one`] from the first row, eight rows at a time
    /// with AVX2 gathers: each step fetches eight splits and eight bins in
    /// two instructions (one, on the first four levels, whose splits are
    /// picked from a register).
    ///
    /// # Safety
    /// The processor has AVX2; `splits` holds the `2^depth - 1` splits of a
    /// complete tree; each split's column times `at.len()`, plus
    /// `at.len()`, is below `bins.len()` (so the 4-byte read of any bin
    /// stays inside).
    #[target_feature(enable = "avx2")]
    pub unsafe fn walk(splits: &[u32], depth: u32, bins: &[u16], at: &mut [u32]) {
        let keys = at.len();
        let lanes = keys - keys % 8;
        let low_half = _mm256_set1_epi32(0xffff);
        let one = _mm256_set1_epi32(1);
        let columns_apart = _mm256_set1_epi32(keys as i32);
        let lane_numbers = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        at[..lanes].fill(0);
        for level in 0..depth as usize {
            let first_node = (1usize << level) - 1;
            let nodes = 1usize << level;
            // The first four levels' splits fit in one register: each lane
            // picks its own with a permute instead of a gather.
            let in_register = (nodes <= 8).then(|| {
                let mut level_splits = [0u32; 8];
                level_splits[..nodes].copy_from_slice(&splits[first_node..first_node + nodes]);
                // SAFETY: eight u32, read unaligned.
                unsafe { _mm256_loadu_si256(level_splits.as_ptr() as *const __m256i) }
            });
            let first_of_level = _mm256_set1_epi32(first_node as i32);
            for first in (0..lanes).step_by(8) {
                let lane_at = at[first..first + 8].as_mut_ptr() as *mut __m256i;
                // SAFETY: eight u32 of `at`, read and written unaligned.
                let index = unsafe { _mm256_loadu_si256(lane_at) };
                let rows = _mm256_add_epi32(_mm256_set1_epi32(first as i32), lane_numbers);
                let split = match in_register {
                    Some(level_splits) => _mm256_permutevar8x32_epi32(
                        level_splits,
                        _mm256_sub_epi32(index, first_of_level),
                    ),
                    // SAFETY: before the last step every index is a split's
                    // heap position, below 2^depth - 1.
                    None => unsafe { _mm256_i32gather_epi32::<4>(splits.as_ptr() as _, index) },
                };
                let column = _mm256_and_si256(split, low_half);
                let bin_at = _mm256_add_epi32(_mm256_mullo_epi32(column, columns_apart), rows);
                // SAFETY: the caller's bound on columns covers the bin and
                // the two bytes after it.
                let bin = unsafe { _mm256_i32gather_epi32::<2>(bins.as_ptr() as _, bin_at) };
                let went_right = _mm256_cmpgt_epi32(
                    _mm256_and_si256(bin, low_half),
                    _mm256_srli_epi32::<16>(split),
                );
                // 2i + 1, plus 1 where it went right (the comparison gives -1).
                let next = _mm256_sub_epi32(
                    _mm256_add_epi32(_mm256_add_epi32(index, index), one),
                    went_right,
                );
                // SAFETY: as the load above.
                unsafe { _mm256_storeu_si256(lane_at, next) };
            }
        }
        super::walk_one_by_one(splits, depth, bins, at, lanes);
    }
}

impl CompleteTrees {
    fn lay_out(stored: &StoredTrees) -> Result<CompleteTrees, String> {
        let mut depths = Vec::with_capacity(stored.roots.len());
        for (number, &root) in stored.roots.iter().enumerate() {
            let depth = stored
                .depth(root)
                .map_err(|e| format!("tree {number}: {e}"))?;
            if depth > u32::from(MAX_DEPTH) {
                return Err(format!(
                    "tree {number} is {depth} splits deep; at most {MAX_DEPTH} are scored"
                ));
            }
            depths.push(depth);
        }
        let mut cuts: Vec<Vec<f64>> = Vec::new();
        for node in stored.nodes.iter().filter(|node| node.feature != LEAF) {
            if node.threshold.is_nan() {
                return Err(format!(
                    "a split on input {} has no threshold",
                    node.feature
                ));
            }
            let input = node.feature as usize;
            if input >= usize::from(u16::MAX / 2) {
                return Err(format!(
                    "a split on input {input}: at most 32,767 inputs are scored"
                ));
            }
            if cuts.len() <= input {
                cuts.resize(input + 1, Vec::new());
            }
            cuts[input].push(node.threshold);
        }
        for (input, thresholds) in cuts.iter_mut().enumerate() {
            thresholds.sort_by(f64::total_cmp);
            thresholds.dedup();
            if thresholds.len() > MAX_CUTS {
                return Err(format!(
                    "input {input} is split at {} distinct values; at most {MAX_CUTS} are scored",
                    thresholds.len()
                ));
            }
        }
        let mut complete = CompleteTrees {
            trees: Vec::with_capacity(stored.roots.len()),
            splits: Vec::new(),
            leaves: Vec::new(),
            cuts,
        };
        for (number, (&root, depth)) in stored.roots.iter().zip(depths).enumerate() {
            let tree = CompleteTree {
                depth,
                splits: complete.splits.len(),
                leaves: complete.leaves.len(),
            };
            // Splits below a shallow leaf are never decisive: every leaf
            // position under them holds the same value.
            complete.splits.resize(tree.splits + (1 << depth) - 1, 0);
            complete.leaves.resize(tree.leaves + (1 << depth), 0.0);
            let mut pending = vec![(root, 0usize, 0u32)];
            while let Some((index, position, level)) = pending.pop() {
                let node = &stored.nodes[index as usize];
                if node.feature == LEAF {
                    let first_leaf = (1usize << level) - 1;
                    let spread = 1usize << (depth - level);
                    let start = tree.leaves + (position - first_leaf) * spread;
                    complete.leaves[start..start + spread].fill(node.threshold);
                    continue;
                }
                let input = node.feature as usize;
                let column = if node.missing == node.right {
                    2 * input + 1
                } else if node.missing == node.left {
                    2 * input
                } else {
                    return Err(format!(
                        "tree {number}, node {index}: missing inputs have a branch of their own"
                    ));
                };
                let cut = complete.cuts[input].partition_point(|&t| t < node.threshold);
                complete.splits[tree.splits + position] = column as u32 | ((cut as u32 + 1) << 16);
                pending.push((node.left, 2 * position + 1, level + 1));
                pending.push((node.right, 2 * position + 2, level + 1));
            }
            complete.trees.push(tree);
        }
        Ok(complete)
    }

    /// Appends to each `outs[i]` that is `Some` the raw score of each row
    /// for `parts[i]`'s trees. Tree by tree over the whole block, so each
    /// tree stays in the cache while every row walks it, and step by step
    /// over every row, so the rows' walks overlap in the processor instead
    /// of each waiting on its own comparisons.
    fn score_rows(
        &self,
        rows: &[f64],
        inputs: usize,
        parts: &[Part],
        outs: &mut [Option<&mut Vec<f64>>],
    ) {
        assert!(
            inputs >= self.inputs(),
            "rows of {inputs} inputs for trees that split on {}",
            self.inputs()
        );
        let keys = rows.len() / inputs;
        let mut bins = Vec::new();
        self.bin(rows, inputs, keys, &mut bins);
        let mut at = vec![0u32; keys];
        for (part, out) in parts.iter().zip(outs) {
            let Some(out) = out else { continue };
            let first = out.len();
            out.extend(std::iter::repeat_n(part.base_score, keys));
            let sums = &mut out[first..];
            for tree in &self.trees[part.trees.clone()] {
                self.walk(tree, &bins, &mut at);
                let first_leaf = (1u32 << tree.depth) - 1;
                let leaves = &self.leaves[tree.leaves..];
                for (sum, &index) in sums.iter_mut().zip(&at) {
                    *sum += leaves[(index - first_leaf) as usize];
                }
            }
        }
    }

    /// Where each row of a block (`at.len()` rows, binned into `bins` by
    /// [`CompleteTrees::bin`]) leaves `tree`: heap positions, the leaves
    /// numbered from `2^depth - 1`.
    fn walk(&self, tree: &CompleteTree, bins: &[u16], at: &mut [u32]) {
        let splits = &self.splits[tree.splits..][..(1 << tree.depth) - 1];
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the processor has AVX2; `lay_out` gives every split a
            // column below 2 × `cuts.len()`, and `bin` makes `bins`
            // 2 × `cuts.len()` × `at.len()` + 1 long.
            unsafe { vector::walk(splits, tree.depth, bins, at) };
            return;
        }
        walk_one_by_one(splits, tree.depth, bins, at, 0);
    }

    /// Inputs a row must have.
    fn inputs(&self) -> usize {
        self.cuts.len()
    }

    /// `rows`' bins column by column, `keys` bins a column, with a spare
    /// bin at the end (the vector walk reads 4 bytes for each 2-byte bin).
    fn bin(&self, rows: &[f64], inputs: usize, keys: usize, bins: &mut Vec<u16>) {
        bins.clear();
        bins.resize(2 * self.cuts.len() * keys + 1, 0);
        for (input, thresholds) in self.cuts.iter().enumerate() {
            if thresholds.is_empty() {
                continue;
            }
            let (low, high) = bins[2 * input * keys..].split_at_mut(keys);
            for ((low, high), row) in low.iter_mut().zip(high).zip(rows.chunks_exact(inputs)) {
                let value = row[input];
                if value.is_nan() {
                    *low = 0;
                    *high = MISSING_HIGH;
                } else {
                    let bin = 1 + thresholds.partition_point(|&t| t <= value) as u16;
                    *low = bin;
                    *high = bin;
                }
            }
        }
    }
}

impl StoredTrees {
    /// Splits on the longest path down from `root`, checking every child
    /// index on the way.
    fn depth(&self, root: u32) -> Result<u32, String> {
        let mut deepest = 0;
        let mut pending = vec![(root, 0u32)];
        while let Some((index, depth)) = pending.pop() {
            let node = self
                .nodes
                .get(index as usize)
                .ok_or_else(|| format!("node {index} is past the {} stored", self.nodes.len()))?;
            if depth > u32::from(MAX_DEPTH) {
                return Ok(depth);
            }
            if node.feature == LEAF {
                deepest = deepest.max(depth);
            } else {
                pending.push((node.left, depth + 1));
                pending.push((node.right, depth + 1));
            }
        }
        Ok(deepest)
    }
}

#[cfg(test)]
mod tests {
    use forust_ml::Matrix;
    use forust_ml::objective::ObjectiveType;

    use super::*;

    /// Scored by the flat walk, every row gets what forust-ml's own matrix
    /// prediction gives, NaN inputs (the missing branch) included.
    #[test]
    fn the_flat_ensemble_scores_as_forust_predicts() {
        let rows = 500;
        let columns = 3;
        // Column-major, as forust-ml reads it.
        let mut data = vec![0.0; rows * columns];
        let mut y = Vec::with_capacity(rows);
        for row in 0..rows {
            let a = (row % 17) as f64;
            let b = ((row * 7) % 11) as f64;
            let c = if row % 5 == 0 {
                f64::NAN
            } else {
                (row % 3) as f64
            };
            data[row] = a;
            data[rows + row] = b;
            data[2 * rows + row] = c;
            y.push(a * 2.0 + b - if c.is_nan() { 4.0 } else { c });
        }
        let matrix = Matrix::new(&data, rows, columns);
        let mut booster = GradientBooster::default()
            .set_objective_type(ObjectiveType::SquaredLoss)
            .set_iterations(20)
            .set_max_depth(4);
        booster.fit_unweighted(&matrix, &y, None).unwrap();
        let expected = booster.predict(&matrix, false);
        let ensemble = Ensemble::from_booster(&booster).unwrap();
        assert_eq!(ensemble.stored.roots.len(), 20);
        let row_major: Vec<f64> = (0..rows)
            .flat_map(|row| [data[row], data[rows + row], data[2 * rows + row]])
            .collect();
        let mut scores = vec![-1.0];
        ensemble.score_rows(&row_major, columns, &mut scores);
        assert_eq!(scores.len(), rows + 1, "appended after what was there");
        for (row, want) in expected.iter().enumerate() {
            let got = scores[row + 1];
            assert!((got - want).abs() < 1e-9, "row {row}: {got} vs {want}");
        }
    }

    fn split(feature: u32, threshold: f64, left: u32, right: u32, missing: u32) -> Node {
        Node {
            threshold,
            feature,
            left,
            right,
            missing,
        }
    }

    fn leaf(value: f64) -> Node {
        split(LEAF, value, 0, 0, 0)
    }

    /// Two trees worked out by hand. Tree 0 (root 0): input 0 < 2.5 goes
    /// to a leaf of 1 right away (missing input 0 goes right); else input
    /// 1 < -1 gives 10, else 20 (missing input 1 goes left). Tree 1 (root
    /// 5): a single leaf of 0.5. Base score 100.
    fn by_hand() -> StoredTrees {
        StoredTrees {
            base_score: 100.0,
            roots: vec![0, 5],
            nodes: vec![
                split(0, 2.5, 1, 2, 2),
                leaf(1.0),
                split(1, -1.0, 3, 4, 3),
                leaf(10.0),
                leaf(20.0),
                leaf(0.5),
            ],
        }
    }

    /// Rows in every direction, including exact ties with thresholds,
    /// infinities and missing inputs on both sides, over a block whose
    /// length is not a multiple of the eight vector lanes.
    #[test]
    fn complete_trees_score_shallow_leaves_ties_and_missing_inputs_by_hand() {
        let ensemble = Ensemble::try_from(by_hand()).unwrap();
        let cases = [
            ([0.0, 0.0], 1.0),
            ([2.4999, 5.0], 1.0),
            ([2.5, -1.0], 20.0),
            ([2.5, -1.0001], 10.0),
            ([f64::NAN, 0.0], 20.0),
            ([f64::NAN, f64::NAN], 10.0),
            ([3.0, f64::NAN], 10.0),
            ([f64::INFINITY, f64::NEG_INFINITY], 10.0),
            ([f64::NEG_INFINITY, f64::NAN], 1.0),
            ([1e300, 1e300], 20.0),
        ];
        let rows: Vec<f64> = (0..37).flat_map(|row| cases[row % cases.len()].0).collect();
        let mut scores = Vec::new();
        ensemble.score_rows(&rows, 2, &mut scores);
        assert_eq!(scores.len(), 37);
        for (row, score) in scores.iter().enumerate() {
            let (inputs, leaf) = cases[row % cases.len()];
            assert_eq!(*score, 100.0 + leaf + 0.5, "row {row}: {inputs:?}");
        }
    }

    #[test]
    fn the_vector_walk_lands_where_the_row_by_row_walk_does() {
        let ensemble = Ensemble::try_from(by_hand()).unwrap();
        let complete = &ensemble.complete;
        let rows: Vec<f64> = (0..203)
            .flat_map(|row| {
                let value = |salt: usize| match (row * salt) % 7 {
                    0 => f64::NAN,
                    k => k as f64 - 3.5,
                };
                [value(3), value(5)]
            })
            .collect();
        let mut bins = Vec::new();
        complete.bin(&rows, 2, 203, &mut bins);
        let tree = &complete.trees[0];
        let splits = &complete.splits[tree.splits..][..(1 << tree.depth) - 1];
        let mut one_by_one = vec![0; 203];
        walk_one_by_one(splits, tree.depth, &bins, &mut one_by_one, 0);
        let mut chosen = vec![0; 203];
        complete.walk(tree, &bins, &mut chosen);
        assert_eq!(one_by_one, chosen);
        // Position 4 is the padding under the shallow leaf (3 would need
        // a missing input 0 to go left at the root); 5 and 6 the deep ones.
        let leaves: std::collections::BTreeSet<u32> = one_by_one.iter().copied().collect();
        assert_eq!(leaves, [4, 5, 6].into());
    }

    #[test]
    fn a_model_file_keeps_its_trees_and_refuses_what_cannot_be_scored() {
        let ensemble = Ensemble::try_from(by_hand()).unwrap();
        let text = serde_json::to_string(&ensemble).unwrap();
        let loaded: Ensemble = serde_json::from_str(&text).unwrap();
        assert_eq!(loaded, ensemble);

        let mut own_branch = by_hand();
        own_branch.nodes[2].missing = 5;
        let error = Ensemble::try_from(own_branch).unwrap_err();
        assert!(
            error.contains("tree 0, node 2: missing inputs have a branch"),
            "{error}"
        );

        let mut past_the_end = by_hand();
        past_the_end.nodes[2].right = 9;
        let error = Ensemble::try_from(past_the_end).unwrap_err();
        assert!(
            error.contains("tree 0: node 9 is past the 6 stored"),
            "{error}"
        );

        let mut looping = by_hand();
        looping.nodes[2].right = 0;
        let error = Ensemble::try_from(looping).unwrap_err();
        assert!(
            error.contains("tree 0 is 13 splits deep; at most 12"),
            "{error}"
        );

        let mut text = serde_json::to_value(by_hand()).unwrap();
        text["nodes"][0]["missing"] = 7.into();
        let error = serde_json::from_value::<Ensemble>(text)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("missing inputs have a branch of their own"),
            "{error}"
        );
    }

    /// Two ensembles scored together (inputs binned once against both sets
    /// of thresholds) give each its own scores, worked out by hand; an
    /// ensemble not asked for gets nothing appended.
    #[test]
    fn ensembles_scored_together_give_each_its_own_scores() {
        let first = Ensemble::try_from(by_hand()).unwrap();
        let mut other = by_hand();
        other.base_score = 50.0;
        other.nodes[0].threshold = 0.5;
        other.nodes[2].threshold = 3.0;
        let second = Ensemble::try_from(other).unwrap();
        let together = Ensembles::combine(&[&first, &second]).unwrap();
        let cases = [
            ([0.0, 0.0], 101.5, 51.5),
            ([2.5, -1.0], 120.5, 60.5),
            ([f64::NAN, 5.0], 120.5, 70.5),
            ([3.0, f64::NAN], 110.5, 60.5),
            ([0.7, 2.0], 101.5, 60.5),
        ];
        let rows: Vec<f64> = (0..21).flat_map(|row| cases[row % cases.len()].0).collect();
        let (mut a, mut b) = (vec![7.0], Vec::new());
        together.score_rows(&rows, 2, &mut [Some(&mut a), Some(&mut b)]);
        assert_eq!(a.len(), 22, "appended after what was there");
        for (row, (got_a, got_b)) in a[1..].iter().zip(&b).enumerate() {
            let (inputs, want_a, want_b) = cases[row % cases.len()];
            assert_eq!((*got_a, *got_b), (want_a, want_b), "row {row}: {inputs:?}");
        }
        let mut only_second = Vec::new();
        together.score_rows(&rows, 2, &mut [None, Some(&mut only_second)]);
        assert_eq!(only_second, b);
    }
}
