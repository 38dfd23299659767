//! The block's walks and binning in vector registers: AVX2, eight keys a
//! register, and AVX-512, sixteen. Each gives exactly what the plain code in
//! the parent module gives (its tests compare them), for the keys of a
//! block in whole groups of a register, and says how many keys that was;
//! the plain code does the rest.
//!
//! A key's walk stays in a register from the root to its leaf. The first
//! three levels' splits (one, two, four) are read straight: each split's
//! column of bins is loaded as it lies and each lane picks its own by the
//! way it went so far. Deeper levels pick their split from registers with
//! a permute while the level's splits fit in them, else gather it, and
//! gather each lane's bin. Several registers of keys walk side by side so
//! that their gathers overlap. The leaf reached is added to the key's sum
//! in the same pass.

use std::arch::x86_64::*;

use super::{Bins, MISSING_HIGH};

/// Splits of the first `N` heap positions of a tree, zero past its last.
fn top_splits<const N: usize>(splits: &[u32]) -> [u32; N] {
    let mut top = [0; N];
    let known = splits.len().min(N);
    top[..known].copy_from_slice(&splits[..known]);
    top
}

/// Adds to `sums[row]` the leaf each row of the block reaches down a
/// complete tree, eight rows a register; gives how many rows that was.
///
/// # Safety
/// The processor has AVX2; `splits` holds the `2^depth - 1` splits and
/// `leaves` the `2^depth` leaves of a complete tree; `bins` has every
/// split's column for `sums.len()` rows, and the spare bin after the last.
#[target_feature(enable = "avx2")]
pub unsafe fn add_leaves_eight(
    splits: &[u32],
    depth: u32,
    bins: &Bins,
    leaves: &[f64],
    sums: &mut [f64],
) -> usize {
    let keys = sums.len();
    let top = top_splits::<16>(splits);
    let tree = Eight {
        top,
        // SAFETY: eight u32 of `top`, read unaligned.
        level_three: unsafe { _mm256_loadu_si256(top[7..].as_ptr() as *const __m256i) },
        splits,
        depth,
        leaves,
    };
    let whole_groups = keys - keys % 64;
    let whole = keys - keys % 8;
    for first in (0..whole_groups).step_by(64) {
        // SAFETY: as this function's.
        unsafe { tree.add_leaves::<8>(bins, first, sums) };
    }
    for first in (whole_groups..whole).step_by(8) {
        // SAFETY: as this function's.
        unsafe { tree.add_leaves::<1>(bins, first, sums) };
    }
    whole
}

struct Eight<'a> {
    top: [u32; 16],
    /// The splits at heap positions 7 to 14 (level 3), and one more.
    level_three: __m256i,
    splits: &'a [u32],
    depth: u32,
    leaves: &'a [f64],
}

impl Eight<'_> {
    /// Rows `first..first + 8 * GROUPS` of [`add_leaves_eight`].
    ///
    /// # Safety
    /// As [`add_leaves_eight`]'s, and those rows are in `sums`.
    #[target_feature(enable = "avx2")]
    unsafe fn add_leaves<const GROUPS: usize>(&self, bins: &Bins, first: usize, sums: &mut [f64]) {
        let low_half = _mm256_set1_epi32(0xffff);
        let one = _mm256_set1_epi32(1);
        let seven = _mm256_set1_epi32(7);
        let shift = _mm_cvtsi32_si128(bins.shift as i32);
        let lane_numbers = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let mut index = [_mm256_setzero_si256(); GROUPS];
        for level in 0..self.depth {
            for (group, index) in index.iter_mut().enumerate() {
                let row = first + 8 * group;
                let (bin, cut) = match level {
                    0..3 => {
                        // SAFETY: the split's column is in `bins`, and the
                        // eight rows from `row` are in the block.
                        let at = |position: usize| unsafe {
                            let split = self.top[position];
                            let column = (split & 0xffff) as usize;
                            let bins = bins.values.as_ptr().add((column << bins.shift) + row);
                            let bins = _mm_loadu_si128(bins as *const __m128i);
                            let cut = _mm256_set1_epi32((split >> 16) as i32);
                            (_mm256_cvtepu16_epi32(bins), cut)
                        };
                        let pick = |right: __m256i, (bin_a, cut_a), (bin_b, cut_b)| {
                            (
                                _mm256_blendv_epi8(bin_a, bin_b, right),
                                _mm256_blendv_epi8(cut_a, cut_b, right),
                            )
                        };
                        // The way so far, from the heap position: at
                        // level 1 right is 2; at level 2 the first step
                        // went right from 5 on, the second where even.
                        let first_way = match level {
                            1 => _mm256_cmpeq_epi32(*index, _mm256_set1_epi32(2)),
                            _ => _mm256_cmpgt_epi32(*index, _mm256_set1_epi32(4)),
                        };
                        let second_way = _mm256_cmpeq_epi32(
                            _mm256_and_si256(*index, one),
                            _mm256_setzero_si256(),
                        );
                        match level {
                            0 => at(0),
                            1 => pick(first_way, at(1), at(2)),
                            _ => pick(
                                first_way,
                                pick(second_way, at(3), at(4)),
                                pick(second_way, at(5), at(6)),
                            ),
                        }
                    }
                    _ => {
                        let split = match level {
                            3 => _mm256_permutevar8x32_epi32(
                                self.level_three,
                                _mm256_sub_epi32(*index, seven),
                            ),
                            // SAFETY: before the last step every index is
                            // a split's heap position, below 2^depth - 1.
                            _ => unsafe {
                                _mm256_i32gather_epi32::<4>(self.splits.as_ptr() as _, *index)
                            },
                        };
                        let rows = _mm256_add_epi32(_mm256_set1_epi32(row as i32), lane_numbers);
                        let column = _mm256_and_si256(split, low_half);
                        let bin_at = _mm256_add_epi32(_mm256_sll_epi32(column, shift), rows);
                        // SAFETY: the bin and the two bytes after it are
                        // in `bins` (the spare bin after the last).
                        let bin = unsafe {
                            _mm256_i32gather_epi32::<2>(bins.values.as_ptr() as _, bin_at)
                        };
                        (
                            _mm256_and_si256(bin, low_half),
                            _mm256_srli_epi32::<16>(split),
                        )
                    }
                };
                // Bins and cuts are below 2^16: a signed comparison holds.
                let right = _mm256_cmpgt_epi32(bin, cut);
                // 2i + 1, plus 1 where it went right (the comparison gives -1).
                *index = _mm256_sub_epi32(
                    _mm256_add_epi32(_mm256_add_epi32(*index, *index), one),
                    right,
                );
            }
        }
        let first_leaf = _mm256_set1_epi32((1 << self.depth) - 1);
        for (group, index) in index.iter().enumerate() {
            let leaf = _mm256_sub_epi32(*index, first_leaf);
            let halves = [
                _mm256_castsi256_si128(leaf),
                _mm256_extracti128_si256::<1>(leaf),
            ];
            for (half, leaf) in halves.into_iter().enumerate() {
                let at = sums[first + 8 * group + 4 * half..][..4].as_mut_ptr();
                // SAFETY: each leaf number is below 2^depth; four f64 of
                // `sums`, read and written unaligned.
                unsafe {
                    let value = _mm256_i32gather_pd::<8>(self.leaves.as_ptr(), leaf);
                    _mm256_storeu_pd(at, _mm256_add_pd(_mm256_loadu_pd(at), value));
                }
            }
        }
    }
}

/// Adds to `sums[row]` the leaf each row of the block reaches down a
/// complete tree, sixteen rows a register; gives how many rows that was.
/// The splits of the first six levels (63) are four registers.
///
/// # Safety
/// The processor has AVX-512F; `splits` holds the `2^depth - 1` splits and
/// `leaves` the `2^depth` leaves of a complete tree; `bins` has every
/// split's column for `sums.len()` rows, and the spare bin after the last.
#[target_feature(enable = "avx512f")]
pub unsafe fn add_leaves_sixteen(
    splits: &[u32],
    depth: u32,
    bins: &Bins,
    leaves: &[f64],
    sums: &mut [f64],
) -> usize {
    let keys = sums.len();
    let top = top_splits::<64>(splits);
    let tree = Sixteen {
        top,
        // SAFETY: four times sixteen u32 of `top`, read unaligned.
        registers: std::array::from_fn(|quarter| unsafe {
            _mm512_loadu_si512(top[16 * quarter..].as_ptr() as *const _)
        }),
        splits,
        depth,
        leaves,
    };
    let whole_groups = keys - keys % 128;
    let whole = keys - keys % 16;
    for first in (0..whole_groups).step_by(128) {
        // SAFETY: as this function's.
        unsafe { tree.add_leaves::<8>(bins, first, sums) };
    }
    for first in (whole_groups..whole).step_by(16) {
        // SAFETY: as this function's.
        unsafe { tree.add_leaves::<1>(bins, first, sums) };
    }
    whole
}

struct Sixteen<'a> {
    top: [u32; 64],
    /// `top` in four registers.
    registers: [__m512i; 4],
    splits: &'a [u32],
    depth: u32,
    leaves: &'a [f64],
}

impl Sixteen<'_> {
    /// Rows `first..first + 16 * GROUPS` of [`add_leaves_sixteen`].
    ///
    /// # Safety
    /// As [`add_leaves_sixteen`]'s, and those rows are in `sums`.
    #[target_feature(enable = "avx512f")]
    unsafe fn add_leaves<const GROUPS: usize>(&self, bins: &Bins, first: usize, sums: &mut [f64]) {
        let [top0, top1, top2, top3] = self.registers;
        let low_half = _mm512_set1_epi32(0xffff);
        let one = _mm512_set1_epi32(1);
        let thirty_two = _mm512_set1_epi32(32);
        let shift = _mm_cvtsi32_si128(bins.shift as i32);
        let lane_numbers = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let mut index = [_mm512_setzero_si512(); GROUPS];
        for level in 0..self.depth {
            for (group, index) in index.iter_mut().enumerate() {
                let row = first + 16 * group;
                let (bin, cut) = match level {
                    0..3 => {
                        // SAFETY: the split's column is in `bins`, and the
                        // sixteen rows from `row` are in the block.
                        let at = |position: usize| unsafe {
                            let split = self.top[position];
                            let column = (split & 0xffff) as usize;
                            let bins = bins.values.as_ptr().add((column << bins.shift) + row);
                            let bins = _mm256_loadu_si256(bins as *const __m256i);
                            let cut = _mm512_set1_epi32((split >> 16) as i32);
                            (_mm512_cvtepu16_epi32(bins), cut)
                        };
                        let pick = |right: u16, (bin_a, cut_a), (bin_b, cut_b)| {
                            (
                                _mm512_mask_blend_epi32(right, bin_a, bin_b),
                                _mm512_mask_blend_epi32(right, cut_a, cut_b),
                            )
                        };
                        // The way so far, from the heap position: at
                        // level 1 right is 2; at level 2 the first step
                        // went right from 5 on, the second where even.
                        let first_way = match level {
                            1 => _mm512_cmpeq_epi32_mask(*index, _mm512_set1_epi32(2)),
                            _ => _mm512_cmpgt_epu32_mask(*index, _mm512_set1_epi32(4)),
                        };
                        let second_way = _mm512_testn_epi32_mask(*index, one);
                        match level {
                            0 => at(0),
                            1 => pick(first_way, at(1), at(2)),
                            _ => pick(
                                first_way,
                                pick(second_way, at(3), at(4)),
                                pick(second_way, at(5), at(6)),
                            ),
                        }
                    }
                    _ => {
                        let split = match level {
                            // Positions below 16, then below 32: one
                            // register, two, then four.
                            3 => _mm512_permutexvar_epi32(*index, top0),
                            4 => _mm512_permutex2var_epi32(top0, *index, top1),
                            5 => {
                                let below = _mm512_permutex2var_epi32(top0, *index, top1);
                                let above = _mm512_permutex2var_epi32(top2, *index, top3);
                                let past = _mm512_cmpge_epu32_mask(*index, thirty_two);
                                _mm512_mask_blend_epi32(past, below, above)
                            }
                            // SAFETY: before the last step every index is
                            // a split's heap position, below 2^depth - 1.
                            _ => unsafe {
                                _mm512_i32gather_epi32::<4>(*index, self.splits.as_ptr() as _)
                            },
                        };
                        let rows = _mm512_add_epi32(_mm512_set1_epi32(row as i32), lane_numbers);
                        let column = _mm512_and_si512(split, low_half);
                        let bin_at = _mm512_add_epi32(_mm512_sll_epi32(column, shift), rows);
                        // SAFETY: the bin and the two bytes after it are
                        // in `bins` (the spare bin after the last).
                        let bin = unsafe {
                            _mm512_i32gather_epi32::<2>(bin_at, bins.values.as_ptr() as _)
                        };
                        (
                            _mm512_and_si512(bin, low_half),
                            _mm512_srli_epi32::<16>(split),
                        )
                    }
                };
                let right = _mm512_cmpgt_epu32_mask(bin, cut);
                let left = _mm512_add_epi32(_mm512_add_epi32(*index, *index), one);
                *index = _mm512_mask_add_epi32(left, right, left, one);
            }
        }
        let first_leaf = _mm512_set1_epi32((1 << self.depth) - 1);
        for (group, index) in index.iter().enumerate() {
            let leaf = _mm512_sub_epi32(*index, first_leaf);
            let halves = [
                _mm512_castsi512_si256(leaf),
                _mm512_extracti64x4_epi64::<1>(leaf),
            ];
            for (half, leaf) in halves.into_iter().enumerate() {
                let at = sums[first + 16 * group + 8 * half..][..8].as_mut_ptr();
                // SAFETY: each leaf number is below 2^depth; eight f64 of
                // `sums`, read and written unaligned.
                unsafe {
                    let value = _mm512_i32gather_pd::<8>(leaf, self.leaves.as_ptr() as _);
                    _mm512_storeu_pd(at, _mm512_add_pd(_mm512_loadu_pd(at), value));
                }
            }
        }
    }
}

/// Each value's bin against `cuts` (ascending, padded with NaN to a power
/// of two less one), as [`super::CompleteTrees::bin`] gives it, in `low`
/// and `high`, for the first values in whole sixteens, four a register;
/// gives how many values that was. A binary search without branches: the
/// same halving steps for every value.
///
/// # Safety
/// The processor has AVX2; `cuts` is padded as said; `low` and `high` are
/// as long as `values`.
#[target_feature(enable = "avx2")]
pub unsafe fn bin_eight(cuts: &[f64], values: &[f64], low: &mut [u16], high: &mut [u16]) -> usize {
    let whole = values.len() - values.len() % 16;
    for first in (0..whole).step_by(16) {
        // SAFETY: sixteen values from `first`, read unaligned.
        let value: [__m256d; 4] = std::array::from_fn(|group| unsafe {
            _mm256_loadu_pd(values[first + 4 * group..].as_ptr())
        });
        let mut reached = [_mm256_setzero_si256(); 4];
        let mut step = cuts.len().div_ceil(2);
        while step > 0 {
            let ahead = _mm256_set1_epi64x(step as i64);
            let last_of_step = _mm256_set1_epi64x(step as i64 - 1);
            for (reached, value) in reached.iter_mut().zip(&value) {
                let at = _mm256_add_epi64(*reached, last_of_step);
                // SAFETY: what was reached plus a step stays within the
                // padded length: the steps are its halves.
                let cut = unsafe { _mm256_i64gather_pd::<8>(cuts.as_ptr(), at) };
                let reaches = _mm256_castpd_si256(_mm256_cmp_pd::<_CMP_LE_OQ>(cut, *value));
                *reached = _mm256_add_epi64(*reached, _mm256_and_si256(reaches, ahead));
            }
            step /= 2;
        }
        for (group, reached) in reached.iter().enumerate() {
            let mut counts = [0u64; 4];
            // SAFETY: four u64, written unaligned.
            unsafe { _mm256_storeu_si256(counts.as_mut_ptr() as *mut __m256i, *reached) };
            for (lane, count) in counts.into_iter().enumerate() {
                let at = first + 4 * group + lane;
                (low[at], high[at]) = super::bins_of(values[at], count as usize);
            }
        }
    }
    whole
}

/// [`bin_eight`] for the first values in whole groups of 32, eight a
/// register, with AVX-512 (F and VL).
///
/// # Safety
/// The processor has AVX-512F and VL; as [`bin_eight`]'s otherwise.
#[target_feature(enable = "avx512f,avx512vl")]
pub unsafe fn bin_sixteen(
    cuts: &[f64],
    values: &[f64],
    low: &mut [u16],
    high: &mut [u16],
) -> usize {
    let whole = values.len() - values.len() % 32;
    let one = _mm512_set1_epi32(1);
    let missing_high = _mm512_set1_epi32(i32::from(MISSING_HIGH));
    for first in (0..whole).step_by(32) {
        // SAFETY: 32 values from `first`, read unaligned.
        let value: [__m512d; 4] = std::array::from_fn(|group| unsafe {
            _mm512_loadu_pd(values[first + 8 * group..].as_ptr())
        });
        let mut reached = [_mm256_setzero_si256(); 4];
        let mut step = cuts.len().div_ceil(2);
        while step > 0 {
            let ahead = _mm256_set1_epi32(step as i32);
            let last_of_step = _mm256_set1_epi32(step as i32 - 1);
            for (reached, value) in reached.iter_mut().zip(&value) {
                let at = _mm256_add_epi32(*reached, last_of_step);
                // SAFETY: as in `bin_eight`.
                let cut = unsafe { _mm512_i32gather_pd::<8>(at, cuts.as_ptr() as _) };
                let reaches = _mm512_cmp_pd_mask::<_CMP_LE_OQ>(cut, *value);
                *reached = _mm256_mask_add_epi32(*reached, reaches, *reached, ahead);
            }
            step /= 2;
        }
        for half in 0..2 {
            let [a, b] = [2 * half, 2 * half + 1];
            let bins = _mm512_add_epi32(
                _mm512_inserti64x4::<1>(_mm512_castsi256_si512(reached[a]), reached[b]),
                one,
            );
            let nan = u16::from(_mm512_cmp_pd_mask::<_CMP_UNORD_Q>(value[a], value[a]))
                | u16::from(_mm512_cmp_pd_mask::<_CMP_UNORD_Q>(value[b], value[b])) << 8;
            let at = first + 16 * half;
            // SAFETY: sixteen u16 of each, written unaligned.
            unsafe {
                _mm256_storeu_si256(
                    low[at..][..16].as_mut_ptr() as *mut __m256i,
                    _mm512_cvtepi32_epi16(_mm512_maskz_mov_epi32(!nan, bins)),
                );
                _mm256_storeu_si256(
                    high[at..][..16].as_mut_ptr() as *mut __m256i,
                    _mm512_cvtepi32_epi16(_mm512_mask_mov_epi32(bins, nan, missing_high)),
                );
            }
        }
    }
    whole
}
