//! Planning: the policy stage's candidates and decisions become each key's
//! benefit, class and hints; the shadow sample is drawn (once) and what
//! ranking needs is taken, whole or in slices.

use shadowcast_policy::abi::{FEATURE_NAMES, priority};

use super::queues::{EXCLUDED, RankingInput};
use super::settings::SAMPLE_DRAWN;
use super::{Scheduler, SchedulerError, sample};
use crate::policy::{Candidates, Decisions};
use crate::state::{KeyId, KeyRecord};

/// A plan must decide every candidate.
fn check_plan(candidates: &Candidates, decisions: &Decisions) -> Result<(), SchedulerError> {
    if candidates.len() != decisions.len() {
        return Err(SchedulerError::MismatchedDecisions {
            candidates: candidates.len(),
            decisions: decisions.len(),
        });
    }
    Ok(())
}

/// Bytes added to every key's size when ranking by benefit per byte: the
/// fixed cost of moving a row, so empty rows do not rank infinitely high.
const PER_KEY_OVERHEAD_BYTES: f64 = 64.0;

impl Scheduler {
    /// Scores every candidate with the policy's decisions, registers new
    /// keys, draws the shadow sample (once), and re-ranks all work: the
    /// stages below, in one call.
    pub fn plan(
        &mut self,
        candidates: &Candidates,
        decisions: &Decisions,
    ) -> Result<(), SchedulerError> {
        check_plan(candidates, decisions)?;
        self.score(candidates, decisions, 0..candidates.len())?;
        let input = self.ranking_input()?;
        drop(self.install_ranking(input.rank()));
        Ok(())
    }

    /// Planning stage 1: scores `candidates[range]` with their decisions
    /// and registers new keys (committed). A service runs it in slices so
    /// that lease calls go on between them; the old ranking serves until
    /// [`install_ranking`](Self::install_ranking).
    pub fn score(
        &mut self,
        candidates: &Candidates,
        decisions: &Decisions,
        range: std::ops::Range<usize>,
    ) -> Result<(), SchedulerError> {
        check_plan(candidates, decisions)?;
        let feature = |name: &str| {
            FEATURE_NAMES
                .iter()
                .position(|f| *f == name)
                .and_then(|i| candidates.features.get(i))
                .filter(|column| column.len() == candidates.len())
        };
        let (frequency, write_rate) = (feature("events_7d"), feature("change_rate_per_h"));
        let table_ids = (0..candidates.tables.len() as u32)
            .map(|id| self.map.table_id(candidates.tables.name(id)))
            .collect::<Result<Vec<u32>, _>>()?;
        if self.candidate_ids.len() < range.end {
            self.candidate_ids.resize(range.end, KeyId::NONE);
        }
        // Known keys first: a look-up only where the last plan's key at a
        // position is not the same key (a new model or policy over the same
        // features keeps them all), so the map can make room for exactly
        // the new keys before tracking them.
        let (mut new_count, mut new_bytes) = (0, 0);
        for i in range.clone() {
            let table = table_ids[candidates.table_ids[i] as usize];
            let key = candidates.key(i);
            let cached = self.candidate_ids[i];
            let same = cached.index() < self.map.len()
                && self.map.table_of(cached) == table
                && self.map.key(cached) == key;
            if !same {
                match self.map.find(table, key) {
                    Some(id) => self.candidate_ids[i] = id,
                    None => {
                        self.candidate_ids[i] = KeyId::NONE;
                        new_count += 1;
                        new_bytes += key.len();
                    }
                }
            }
        }
        self.map.reserve(new_count, new_bytes);
        self.plans.reserve(new_count);
        let mut new_keys = Vec::new();
        for i in range {
            let id = match self.candidate_ids[i] {
                KeyId::NONE => {
                    let table = table_ids[candidates.table_ids[i] as usize];
                    let key = candidates.key(i);
                    let (id, new) = self.track_in(table, key, candidates.size_bytes[i])?;
                    if new {
                        new_keys.push((id, self.map.record(id)));
                    }
                    self.candidate_ids[i] = id;
                    id
                }
                known => known,
            };
            let size = candidates.size_bytes[i];
            let weight = decisions.weight[i];
            let expected = candidates.expected_accesses[i].max(0.0);
            let churn = candidates.churn[i].clamp(0.0, 1.0);
            let benefit = weight * expected * (1.0 - self.config.churn_penalty * churn)
                / (size as f64 + PER_KEY_OVERHEAD_BYTES);
            self.update_plan(id, |plan| {
                plan.benefit = benefit as f32;
                plan.expected = expected as f32;
                if let Some(column) = frequency {
                    plan.frequency = column[i].max(0.0) as f32;
                }
                if let Some(column) = write_rate {
                    plan.write_rate = column[i].max(0.0) as f32;
                }
                plan.class = if weight > 0.0 {
                    decisions.priority[i].min(priority::FIRST) as u8
                } else {
                    EXCLUDED
                };
                plan.destination = decisions.destination[i];
            });
            self.plans.set_not_before_us(id, decisions.not_before_us[i]);
        }
        self.commit(&new_keys, &[])?;
        Ok(())
    }

    /// Planning stage 2, after the last [`score`](Self::score): draws the
    /// shadow sample (once) and takes what ranking needs of every key, to
    /// be ranked anywhere ([`RankingInput::rank`], which also finds the
    /// predicted-hot keys).
    pub fn ranking_input(&mut self) -> Result<RankingInput, SchedulerError> {
        self.begin_ranking_input().map(|mut input| {
            self.extend_ranking_input(&mut input, usize::MAX);
            input
        })
    }

    /// Stage 2 in slices, for an owner that serves leases between them:
    /// draws the shadow sample (once) and gives an empty input, to be
    /// filled by [`extend_ranking_input`](Self::extend_ranking_input).
    pub fn begin_ranking_input(&mut self) -> Result<RankingInput, SchedulerError> {
        if !self.sample_drawn {
            self.draw_sample()?;
        }
        Ok(self.begin_snapshot())
    }

    fn draw_sample(&mut self) -> Result<(), SchedulerError> {
        let ids: Vec<KeyId> = self.map.ids().collect();
        let items: Vec<sample::SampleItem> = ids
            .iter()
            .map(|&id| {
                let plan = self.plans.get(id);
                sample::SampleItem {
                    table: self.map.table_name(id),
                    key: self.map.key(id),
                    size_bytes: self.map.record(id).size_bytes,
                    frequency: plan.frequency as f64,
                    change_rate: plan.write_rate as f64,
                    predicted: plan.expected as f64,
                }
            })
            .collect();
        let drawn = sample::draw(&items, &self.config.sample);
        let changes: Vec<(KeyId, KeyRecord)> = drawn
            .into_iter()
            .map(|position| {
                let id = ids[position];
                let record = KeyRecord {
                    in_sample: true,
                    ..self.map.record(id)
                };
                (id, record)
            })
            .collect();
        self.commit(&changes, &[(SAMPLE_DRAWN, "true".to_string())])?;
        self.sample_drawn = true;
        Ok(())
    }
}
