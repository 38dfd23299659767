//! The `Routing` service: batch look-ups of where keys are, answered from
//! the scheduler's in-memory location map under one lock per batch.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::proto::{self, KeyLocation, routing_server::Routing};
use super::{Shared, invalid};
use crate::state::Location;

/// The most keys one look-up may carry.
const MAX_KEYS: usize = 1 << 20;

pub struct RoutingApi {
    shared: Arc<Shared>,
}

impl RoutingApi {
    pub fn new(shared: Arc<Shared>) -> Self {
        RoutingApi { shared }
    }
}

#[tonic::async_trait]
impl Routing for RoutingApi {
    async fn lookup(
        &self,
        request: Request<proto::LookupRequest>,
    ) -> Result<Response<proto::LookupResponse>, Status> {
        let request = request.into_inner();
        let total: usize = request.tables.iter().map(|t| t.keys.len()).sum();
        if total > MAX_KEYS {
            return Err(invalid(
                "tables",
                format!("{total} keys in one look-up; at most {MAX_KEYS}"),
            ));
        }
        for (i, group) in request.tables.iter().enumerate() {
            if group.table.is_empty() {
                return Err(invalid(format!("tables[{i}].table"), "is empty"));
            }
            for (j, key) in group.keys.iter().enumerate() {
                self.shared.check_owned(
                    format_args!("tables[{i}].keys[{j}]"),
                    &group.table,
                    key,
                )?;
            }
        }
        let locations = self
            .shared
            .scheduler
            .run(move |scheduler| {
                let map = scheduler.map();
                let mut locations = Vec::with_capacity(total);
                for group in &request.tables {
                    let table = map.find_table(&group.table);
                    locations.extend(group.keys.iter().map(|key| {
                        let location = table
                            .and_then(|table| map.find(table, key))
                            .map(|id| map.record(id).location());
                        let wire = match location {
                            None => KeyLocation::Unknown,
                            Some(Location::SourceOnly) => KeyLocation::SourceOnly,
                            Some(Location::Current) => KeyLocation::Current,
                            Some(Location::Stale) => KeyLocation::Stale,
                        };
                        wire as i32
                    }));
                }
                locations
            })
            .await?;
        self.shared.metrics.lookups.add(total as u64);
        Ok(Response::new(proto::LookupResponse { locations }))
    }
}
