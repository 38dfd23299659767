//! Gradient-boosted trees as the model file stores and scores them: every
//! tree's nodes in one flat array of small records, walked one key at a
//! time. Takes a fitted forust-ml booster; gives the same raw score it
//! would (base score plus every tree's leaf), without forust-ml's per-tree
//! allocations and 80-byte nodes.

use forust_ml::GradientBooster;
use serde::{Deserialize, Serialize};

/// Marks a leaf in [`Node::feature`].
const LEAF: u32 = u32::MAX;

/// One node: a split (`input < threshold` goes left, NaN goes to
/// `missing`) or, when `feature` is [`LEAF`], a leaf whose value is
/// `threshold`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
struct Node {
    threshold: f64,
    feature: u32,
    left: u32,
    right: u32,
    missing: u32,
}

impl Node {
    /// The child a split sends `value` to.
    #[inline(always)]
    fn child(&self, value: f64) -> u32 {
        if value.is_nan() {
            self.missing
        } else if value < self.threshold {
            self.left
        } else {
            self.right
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ensemble {
    base_score: f64,
    /// Index of each tree's root in `nodes`.
    roots: Vec<u32>,
    nodes: Vec<Node>,
    /// Each tree's depth (splits on its longest path), found on first use.
    #[serde(skip)]
    depths: std::sync::OnceLock<Vec<u32>>,
}

/// Keys walking one tree side by side: their steps do not depend on each
/// other, so the processor overlaps them instead of waiting on each
/// comparison.
const LANES: usize = 8;

impl Ensemble {
    /// Flattens a fitted booster (trained without early stopping: every
    /// tree predicts).
    pub fn from_booster(booster: &GradientBooster) -> Ensemble {
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
        Ensemble {
            base_score: booster.base_score,
            roots,
            nodes,
            depths: std::sync::OnceLock::new(),
        }
    }

    fn depths(&self) -> &[u32] {
        self.depths.get_or_init(|| {
            self.roots
                .iter()
                .map(|&root| {
                    let mut deepest = 0;
                    let mut pending = vec![(root, 0u32)];
                    while let Some((index, depth)) = pending.pop() {
                        let node = &self.nodes[index as usize];
                        if node.feature == LEAF {
                            deepest = deepest.max(depth);
                        } else {
                            for child in [node.left, node.right, node.missing] {
                                pending.push((child, depth + 1));
                            }
                        }
                    }
                    deepest
                })
                .collect()
        })
    }

    /// The raw score (log-odds or log count) of each row of `rows`, `inputs`
    /// values per row, added to `out`. Tree by tree over the whole block,
    /// so each tree's nodes stay in the cache while every row walks it.
    pub fn score_rows(&self, rows: &[f64], inputs: usize, out: &mut Vec<f64>) {
        let first = out.len();
        let keys = rows.len() / inputs;
        out.extend(std::iter::repeat_n(self.base_score, keys));
        let sums = &mut out[first..];
        let side_by_side = keys - keys % LANES;
        for (&root, &depth) in self.roots.iter().zip(self.depths()) {
            for start in (0..side_by_side).step_by(LANES) {
                // Every lane takes `depth` steps without a branch on the
                // data; a lane at a leaf stays there.
                let mut at = [root; LANES];
                for _ in 0..depth {
                    for (lane, index) in at.iter_mut().enumerate() {
                        let node = &self.nodes[*index as usize];
                        let leaf = node.feature == LEAF;
                        let feature = if leaf { 0 } else { node.feature as usize };
                        let next = node.child(rows[(start + lane) * inputs + feature]);
                        *index = if leaf { *index } else { next };
                    }
                }
                for (sum, index) in sums[start..start + LANES].iter_mut().zip(at) {
                    *sum += self.nodes[index as usize].threshold;
                }
            }
            for (sum, row) in sums[side_by_side..]
                .iter_mut()
                .zip(rows[side_by_side * inputs..].chunks_exact(inputs))
            {
                *sum += self.leaf(root, row);
            }
        }
    }

    fn leaf(&self, root: u32, row: &[f64]) -> f64 {
        let mut node = &self.nodes[root as usize];
        while node.feature != LEAF {
            node = &self.nodes[node.child(row[node.feature as usize]) as usize];
        }
        node.threshold
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
        let ensemble = Ensemble::from_booster(&booster);
        assert_eq!(ensemble.roots.len(), 20);
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
}
