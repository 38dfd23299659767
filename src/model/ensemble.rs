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
    /// Each input's distinct thresholds, ascending, then NaN (which no
    /// value reaches) up to a power of two less one, so that the search for
    /// a value's bin takes the same halving steps whatever the value
    /// (empty when no tree splits on the input).
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

    /// The raw score (log-odds or log count) of each of `keys` keys whose
    /// inputs are laid out column by column, input `j` at
    /// `columns[j * stride..][..keys]`, appended to `out`.
    pub fn score_columns(&self, columns: &[f64], stride: usize, keys: usize, out: &mut Vec<f64>) {
        let part = Part {
            trees: 0..self.complete.trees.len(),
            base_score: self.stored.base_score,
        };
        let block = Block {
            columns,
            stride,
            keys,
        };
        self.complete.score(block, &[part], &mut [Some(out)]);
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

    /// [`Ensemble::score_columns`] of each ensemble whose `outs` entry is
    /// `Some`, appended there.
    pub fn score_columns(
        &self,
        columns: &[f64],
        stride: usize,
        keys: usize,
        outs: &mut [Option<&mut Vec<f64>>],
    ) {
        let block = Block {
            columns,
            stride,
            keys,
        };
        self.complete.score(block, &self.parts, outs);
    }
}

/// Keys' inputs laid out column by column: input `j` of `keys` keys at
/// `columns[j * stride..][..keys]`.
#[derive(Clone, Copy)]
struct Block<'a> {
    columns: &'a [f64],
    stride: usize,
    keys: usize,
}

impl Block<'_> {
    fn column(&self, input: usize) -> &[f64] {
        &self.columns[input * self.stride..][..self.keys]
    }
}

/// A block's bins, column by column: column `c` (see
/// [`CompleteTrees::splits`]) at `values[c << shift..]`, one bin a key.
/// Columns are a power of two apart so that a walk finds one with a shift,
/// and there is a spare bin at the end (the vector walks read 4 bytes for
/// each 2-byte bin).
struct Bins {
    values: Vec<u16>,
    shift: u32,
}

impl Bins {
    fn get(&self, column: u32, row: usize) -> u16 {
        self.values[((column as usize) << self.shift) + row]
    }
}

/// Rows `first..` of a block of `at.len()` rows whose bins are `bins`
/// down a complete tree of `depth` whose splits are `splits`, each step
/// over all of them, so the rows' walks overlap in the processor instead
/// of each waiting on its own loads.
fn walk_one_by_one(splits: &[u32], depth: u32, bins: &Bins, at: &mut [u32], first: usize) {
    at[first..].fill(0);
    for _ in 0..depth {
        for (row, index) in at.iter_mut().enumerate().skip(first) {
            let split = splits[*index as usize];
            let bin = bins.get(split & 0xffff, row);
            *index = 2 * *index + 1 + u32::from(u32::from(bin) > split >> 16);
        }
    }
}

/// A value's bins in its two columns (see [`CompleteTrees::splits`]) when
/// it reaches `reached` cuts: 1 + `reached` in both, or, missing, 0 in the
/// first and [`MISSING_HIGH`] in the second.
fn bins_of(value: f64, reached: usize) -> (u16, u16) {
    match value.is_nan() {
        true => (0, MISSING_HIGH),
        false => (1 + reached as u16, 1 + reached as u16),
    }
}

/// How a block's keys are binned and go down a tree, narrowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Walk {
    OneByOne,
    /// AVX2: eight keys a register.
    #[cfg(target_arch = "x86_64")]
    Eight,
    /// AVX-512 (F and VL): sixteen keys a register.
    #[cfg(target_arch = "x86_64")]
    Sixteen,
}

impl Walk {
    /// The widest walk the processor has, no wider than `SHADOWCAST_SIMD`
    /// allows (`avx512`, `avx2` or `none`: to compare them on one machine,
    /// or to keep a processor from slowing its clock for wide vectors);
    /// decided once.
    fn chosen() -> Walk {
        static CHOSEN: std::sync::OnceLock<Walk> = std::sync::OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let widest = Walk::widest();
            let Ok(cap) = std::env::var("SHADOWCAST_SIMD") else {
                return widest;
            };
            let cap = match cap.as_str() {
                "none" => Walk::OneByOne,
                #[cfg(target_arch = "x86_64")]
                "avx2" => Walk::Eight,
                #[cfg(target_arch = "x86_64")]
                "avx512" => Walk::Sixteen,
                other => {
                    tracing::warn!(
                        "SHADOWCAST_SIMD={other:?} is none of avx512, avx2 and none \
                         (on this processor): scoring uses the widest vectors it has"
                    );
                    return widest;
                }
            };
            widest.min(cap)
        })
    }

    fn widest() -> Walk {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vl")
            {
                return Walk::Sixteen;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Walk::Eight;
            }
        }
        Walk::OneByOne
    }
}

#[cfg(target_arch = "x86_64")]
mod vector;

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
            if !thresholds.is_empty() {
                let padded = (thresholds.len() + 1).next_power_of_two() - 1;
                thresholds.resize(padded, f64::NAN);
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

    /// Appends to each `outs[i]` that is `Some` the raw score of each key
    /// of `block` for `parts[i]`'s trees. Tree by tree over the whole
    /// block, so each tree stays in the cache while every key walks it.
    fn score(&self, block: Block, parts: &[Part], outs: &mut [Option<&mut Vec<f64>>]) {
        let keys = block.keys;
        let walk = Walk::chosen();
        let bins = self.bin(walk, block);
        let mut at = vec![0u32; keys];
        for (part, out) in parts.iter().zip(outs) {
            let Some(out) = out else { continue };
            let first = out.len();
            out.extend(std::iter::repeat_n(part.base_score, keys));
            let sums = &mut out[first..];
            for tree in &self.trees[part.trees.clone()] {
                self.add_leaves(walk, tree, &bins, &mut at, sums);
            }
        }
    }

    /// Adds to `sums[row]` the leaf of `tree` that each row of a block
    /// (`sums.len()` rows, binned by [`CompleteTrees::bin`]) reaches; `at`
    /// is room for one heap position a row.
    fn add_leaves(
        &self,
        walk: Walk,
        tree: &CompleteTree,
        bins: &Bins,
        at: &mut [u32],
        sums: &mut [f64],
    ) {
        let splits = &self.splits[tree.splits..][..(1 << tree.depth) - 1];
        let leaves = &self.leaves[tree.leaves..][..1 << tree.depth];
        let keys = sums.len();
        // SAFETY (both): the processor has what `Walk::chosen` checked;
        // `lay_out` gives every split a column below 2 × `cuts.len()`, and
        // `bin` gives `bins` that many columns of `keys` rows and the spare
        // bin.
        let first = match walk {
            #[cfg(target_arch = "x86_64")]
            Walk::Sixteen => unsafe {
                vector::add_leaves_sixteen(splits, tree.depth, bins, leaves, sums)
            },
            #[cfg(target_arch = "x86_64")]
            Walk::Eight => unsafe {
                vector::add_leaves_eight(splits, tree.depth, bins, leaves, sums)
            },
            Walk::OneByOne => 0,
        };
        let at = &mut at[..keys];
        walk_one_by_one(splits, tree.depth, bins, at, first);
        let first_leaf = (1u32 << tree.depth) - 1;
        for (sum, &index) in sums.iter_mut().zip(&*at).skip(first) {
            *sum += leaves[(index - first_leaf) as usize];
        }
    }

    /// Inputs a row must have.
    fn inputs(&self) -> usize {
        self.cuts.len()
    }

    /// `block`'s bins: each input's bin for each key, twice (a missing
    /// input is bin 0 in the first column, [`MISSING_HIGH`] in the second).
    fn bin(&self, walk: Walk, block: Block) -> Bins {
        assert!(
            block.columns.len() >= block.stride * self.inputs().saturating_sub(1) + block.keys,
            "a block of {} values for trees that split on {} inputs of {} keys",
            block.columns.len(),
            self.inputs(),
            block.keys
        );
        let keys = block.keys;
        let shift = keys.next_power_of_two().trailing_zeros();
        let mut bins = Bins {
            values: vec![0; ((2 * self.cuts.len()) << shift) + 1],
            shift,
        };
        for (input, cuts) in self.cuts.iter().enumerate() {
            if cuts.is_empty() {
                continue;
            }
            let (low, high) = bins.values[(2 * input) << shift..].split_at_mut(1 << shift);
            let (low, high) = (&mut low[..keys], &mut high[..keys]);
            let values = block.column(input);
            // SAFETY (both): the processor has what `Walk::chosen` checked;
            // `cuts` is padded to a power of two less one.
            let first = match walk {
                #[cfg(target_arch = "x86_64")]
                Walk::Sixteen => unsafe { vector::bin_sixteen(cuts, values, low, high) },
                #[cfg(target_arch = "x86_64")]
                Walk::Eight => unsafe { vector::bin_eight(cuts, values, low, high) },
                Walk::OneByOne => 0,
            };
            for ((low, high), &value) in low.iter_mut().zip(high).zip(values).skip(first) {
                (*low, *high) = bins_of(value, cuts.partition_point(|&t| t <= value));
            }
        }
        bins
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
        let (values, stride, keys) = column_major(&row_major, columns);
        ensemble.score_columns(&values, stride, keys, &mut scores);
        assert_eq!(scores.len(), rows + 1, "appended after what was there");
        for (row, want) in expected.iter().enumerate() {
            let got = scores[row + 1];
            assert!((got - want).abs() < 1e-9, "row {row}: {got} vs {want}");
        }
    }

    /// `rows` (`inputs` values a row) column by column, as scoring reads
    /// them, with the columns a few values apart; and that distance and
    /// the number of rows.
    fn column_major(rows: &[f64], inputs: usize) -> (Vec<f64>, usize, usize) {
        let keys = rows.len() / inputs;
        let stride = keys + 3;
        let mut columns = vec![0.0; stride * inputs];
        for (key, row) in rows.chunks_exact(inputs).enumerate() {
            for (input, &value) in row.iter().enumerate() {
                columns[input * stride + key] = value;
            }
        }
        (columns, stride, keys)
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
        let (values, stride, keys) = column_major(&rows, 2);
        ensemble.score_columns(&values, stride, keys, &mut scores);
        assert_eq!(scores.len(), 37);
        for (row, score) in scores.iter().enumerate() {
            let (inputs, leaf) = cases[row % cases.len()];
            assert_eq!(*score, 100.0 + leaf + 0.5, "row {row}: {inputs:?}");
        }
    }

    /// One tree's leaf for one row, the plain way: from the root, a
    /// missing input to the split's missing side, below the threshold to
    /// the left.
    fn leaf_of(stored: &StoredTrees, root: u32, row: &[f64]) -> f64 {
        let mut node = &stored.nodes[root as usize];
        while node.feature != LEAF {
            let value = row[node.feature as usize];
            let next = if value.is_nan() {
                node.missing
            } else if value < node.threshold {
                node.left
            } else {
                node.right
            };
            node = &stored.nodes[next as usize];
        }
        node.threshold
    }

    /// Random trees up to 8 deep (levels past those whose splits the
    /// vector walks hold in registers), with shallow leaves, thresholds
    /// that rows hit exactly and missing inputs sent either way, over a
    /// block whose rows are not a whole number of any walk's groups: every
    /// walk this processor has gives the plain walk's sums, exactly.
    #[test]
    fn every_walk_scores_deep_random_trees_as_the_plain_walk_does() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut random = move |below: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % below
        };
        fn grow(nodes: &mut Vec<Node>, depth: u32, random: &mut impl FnMut(u64) -> u64) -> u32 {
            let at = nodes.len() as u32;
            nodes.push(leaf(random(1000) as f64 / 8.0));
            if depth < 8 && random(9) != 0 {
                let left = grow(nodes, depth + 1, random);
                let right = grow(nodes, depth + 1, random);
                let missing = if random(2) == 0 { left } else { right };
                let threshold = random(17) as f64 / 4.0 - 2.0;
                nodes[at as usize] = split(random(5) as u32, threshold, left, right, missing);
            }
            at
        }
        let mut stored = StoredTrees {
            base_score: 0.25,
            roots: Vec::new(),
            nodes: Vec::new(),
        };
        for _ in 0..12 {
            let root = grow(&mut stored.nodes, 0, &mut random);
            stored.roots.push(root);
        }
        let rows: Vec<f64> = (0..1000 * 5)
            .map(|_| match random(23) {
                0 => f64::NAN,
                k => k as f64 / 4.0 - 2.75,
            })
            .collect();
        let expected: Vec<f64> = rows
            .chunks_exact(5)
            .map(|row| {
                let leaves = stored.roots.iter().map(|&root| leaf_of(&stored, root, row));
                leaves.fold(stored.base_score, |sum, leaf| sum + leaf)
            })
            .collect();
        let complete = CompleteTrees::lay_out(&stored).unwrap();
        assert!(complete.trees.iter().any(|tree| tree.depth == 8));
        let (values, stride, keys) = column_major(&rows, 5);
        let block = Block {
            columns: &values,
            stride,
            keys,
        };
        let mut walks = vec![Walk::OneByOne];
        #[cfg(target_arch = "x86_64")]
        walks.extend([Walk::Eight, Walk::Sixteen]);
        for walk in walks.into_iter().filter(|&walk| walk <= Walk::widest()) {
            let bins = complete.bin(walk, block);
            let mut sums = vec![stored.base_score; keys];
            let mut at = vec![0; keys];
            for tree in &complete.trees {
                complete.add_leaves(walk, tree, &bins, &mut at, &mut sums);
            }
            for (row, (got, want)) in sums.iter().zip(&expected).enumerate() {
                assert_eq!(got, want, "{walk:?}, row {row}");
            }
        }
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
        let (values, stride, keys) = column_major(&rows, 2);
        together.score_columns(&values, stride, keys, &mut [Some(&mut a), Some(&mut b)]);
        assert_eq!(a.len(), 22, "appended after what was there");
        for (row, (got_a, got_b)) in a[1..].iter().zip(&b).enumerate() {
            let (inputs, want_a, want_b) = cases[row % cases.len()];
            assert_eq!((*got_a, *got_b), (want_a, want_b), "row {row}: {inputs:?}");
        }
        let mut only_second = Vec::new();
        together.score_columns(&values, stride, keys, &mut [None, Some(&mut only_second)]);
        assert_eq!(only_second, b);
    }
}
