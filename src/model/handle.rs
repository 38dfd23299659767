//! The serving model as a cheap, shareable handle.

use std::sync::{Arc, RwLock};

use super::ModelError;
use super::registry::{LoadedModel, Registry};

/// A handle to the model that scores requests. Clones share the same slot.
///
/// Each request takes [`ModelHandle::current`] once and scores with that
/// snapshot, so it sees one model from start to end even when a swap happens
/// meanwhile. A std `RwLock` suffices: it is held only to clone or replace an
/// `Arc`, never while scoring and never across an await.
#[derive(Clone)]
pub struct ModelHandle {
    slot: Arc<RwLock<Arc<LoadedModel>>>,
}

impl ModelHandle {
    pub fn new(model: LoadedModel) -> Self {
        ModelHandle {
            slot: Arc::new(RwLock::new(Arc::new(model))),
        }
    }

    /// The model serving now.
    pub fn current(&self) -> Arc<LoadedModel> {
        self.slot.read().expect("model slot poisoned").clone()
    }

    /// Replaces the serving model; returns the one replaced.
    pub fn swap(&self, model: LoadedModel) -> Arc<LoadedModel> {
        std::mem::replace(
            &mut *self.slot.write().expect("model slot poisoned"),
            Arc::new(model),
        )
    }

    /// Loads and verifies `name`/`version`, then swaps it in. On any error
    /// the serving model stays as it was.
    pub fn load_and_swap(
        &self,
        registry: &Registry,
        name: &str,
        version: &str,
    ) -> Result<Arc<LoadedModel>, ModelError> {
        let model = registry.load(name, version)?;
        self.swap(model);
        Ok(self.current())
    }
}
