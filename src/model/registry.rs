//! The model registry on disk:
//!
//! ```text
//! models/NAME/VERSION/model.json     the predictor (preprocessing + parameters)
//! models/NAME/VERSION/manifest.json  kind, feature set, training window,
//!                                    hyperparameters, metrics, checksum
//! models/NAME/active                 the promoted version
//! models/NAME/history                every promotion, oldest first (for rollback)
//! ```
//!
//! Files are written to a temporary name and renamed, so a crash never
//! leaves a half-written manifest or pointer behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ModelError;
use super::predictor::{Hyperparameters, ModelKind, Predictor};
use super::train::TrainingWindow;
use crate::features::{FEATURE_SET_NAME, FEATURE_SET_VERSION};

const MODEL_FILE: &str = "model.json";
const MANIFEST_FILE: &str = "manifest.json";

/// Everything recorded about one model version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub kind: ModelKind,
    pub feature_set: String,
    pub feature_set_version: u32,
    pub hyperparameters: Hyperparameters,
    pub window: TrainingWindow,
    /// Metrics measured at training time, by name; undefined ones (an AUC
    /// with one class absent, say) are left out.
    pub metrics: BTreeMap<String, f64>,
    pub created: String,
    pub model_sha256: String,
    pub model_bytes: u64,
}

impl Manifest {
    pub fn feature_set_label(&self) -> String {
        format!("{} v{}", self.feature_set, self.feature_set_version)
    }
}

/// A model loaded and verified, ready to score.
pub struct LoadedModel {
    pub manifest: Manifest,
    pub predictor: Predictor,
}

/// A model directory tree.
#[derive(Clone, Debug)]
pub struct Registry {
    root: PathBuf,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
    move |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, bytes).map_err(io_error(&temporary))?;
    std::fs::rename(&temporary, path).map_err(io_error(path))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn check_name(kind: &str, value: &str) -> Result<(), ModelError> {
    let fine = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !value.starts_with('.');
    if fine {
        Ok(())
    } else {
        Err(ModelError::Registry(format!(
            "`{value}` is not a valid model {kind}: use letters, digits, '-', '_' and '.'"
        )))
    }
}

impl Registry {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Registry { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn model_dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn version_dir(&self, name: &str, version: &str) -> PathBuf {
        self.model_dir(name).join(version)
    }

    /// Stores a trained predictor as the next version (`v1`, `v2`, …) of `name`.
    pub fn save(
        &self,
        name: &str,
        predictor: &Predictor,
        window: TrainingWindow,
        metrics: BTreeMap<String, f64>,
    ) -> Result<Manifest, ModelError> {
        check_name("name", name)?;
        let next = self
            .versions(name)?
            .iter()
            .filter_map(|v| v.strip_prefix('v')?.parse::<u32>().ok())
            .max()
            .unwrap_or(0)
            + 1;
        let version = format!("v{next}");
        let dir = self.version_dir(name, &version);
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let model = serde_json::to_vec(predictor).expect("predictors serialize");
        write_atomically(&dir.join(MODEL_FILE), &model)?;
        let manifest = Manifest {
            name: name.to_string(),
            version,
            kind: predictor.kind(),
            feature_set: FEATURE_SET_NAME.to_string(),
            feature_set_version: FEATURE_SET_VERSION,
            hyperparameters: predictor.hyperparameters.clone(),
            window,
            // JSON has no NaN: an undefined metric is omitted, not written as null.
            metrics: metrics
                .into_iter()
                .filter(|(_, value)| value.is_finite())
                .collect(),
            created: crate::time::format_instant(
                chrono::Utc::now().timestamp() * crate::time::SECOND_US,
            ),
            model_sha256: sha256_hex(&model),
            model_bytes: model.len() as u64,
        };
        let text = serde_json::to_vec_pretty(&manifest).expect("manifests serialize");
        write_atomically(&dir.join(MANIFEST_FILE), &text)?;
        Ok(manifest)
    }

    /// Model names, sorted.
    pub fn names(&self) -> Result<Vec<String>, ModelError> {
        let mut names = Vec::new();
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(names),
            Err(error) => return Err(io_error(&self.root)(error)),
        };
        for entry in entries {
            let entry = entry.map_err(io_error(&self.root))?;
            if entry.path().is_dir() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Versions of `name` that have a manifest, oldest first.
    pub fn versions(&self, name: &str) -> Result<Vec<String>, ModelError> {
        let dir = self.model_dir(name);
        let mut versions: Vec<(u32, String)> = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(io_error(&dir)(error)),
        };
        for entry in entries {
            let entry = entry.map_err(io_error(&dir))?;
            let version = entry.file_name().to_string_lossy().into_owned();
            if entry.path().join(MANIFEST_FILE).is_file() {
                let number = version
                    .strip_prefix('v')
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(u32::MAX);
                versions.push((number, version));
            }
        }
        versions.sort();
        Ok(versions.into_iter().map(|(_, v)| v).collect())
    }

    pub fn manifest(&self, name: &str, version: &str) -> Result<Manifest, ModelError> {
        check_name("name", name)?;
        check_name("version", version)?;
        let path = self.version_dir(name, version).join(MANIFEST_FILE);
        let text = std::fs::read(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => ModelError::Registry(format!(
                "no model {name} {version} under {} (see `shadowcast models list`)",
                self.root.display()
            )),
            _ => io_error(&path)(source),
        })?;
        serde_json::from_slice(&text).map_err(|e| ModelError::Corrupt {
            path,
            problem: e.to_string(),
        })
    }

    /// Loads and verifies a version: manifest readable, feature set the one
    /// this build computes, model file intact (size and SHA-256) and parseable.
    pub fn load(&self, name: &str, version: &str) -> Result<LoadedModel, ModelError> {
        let manifest = self.manifest(name, version)?;
        let dir = self.version_dir(name, version);
        if manifest.feature_set != FEATURE_SET_NAME
            || manifest.feature_set_version != FEATURE_SET_VERSION
        {
            return Err(ModelError::FeatureSetMismatch {
                path: dir.join(MANIFEST_FILE),
                found: manifest.feature_set_label(),
                expected: format!("{FEATURE_SET_NAME} v{FEATURE_SET_VERSION}"),
            });
        }
        let path = dir.join(MODEL_FILE);
        let bytes = std::fs::read(&path).map_err(io_error(&path))?;
        let found = sha256_hex(&bytes);
        if found != manifest.model_sha256 || bytes.len() as u64 != manifest.model_bytes {
            return Err(ModelError::Checksum {
                path,
                expected: manifest.model_sha256.clone(),
                found,
            });
        }
        let predictor: Predictor =
            serde_json::from_slice(&bytes).map_err(|e| ModelError::Corrupt {
                path: path.clone(),
                problem: e.to_string(),
            })?;
        if predictor.preprocess.input_names != super::input::input_names() {
            return Err(ModelError::Corrupt {
                path,
                problem: "its inputs are not the features of this feature set".into(),
            });
        }
        Ok(LoadedModel {
            manifest,
            predictor,
        })
    }

    fn history(&self, name: &str) -> Result<Vec<String>, ModelError> {
        let path = self.model_dir(name).join("history");
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(text
                .lines()
                .map(str::to_string)
                .filter(|l| !l.is_empty())
                .collect()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(error) => Err(io_error(&path)(error)),
        }
    }

    fn set_active(&self, name: &str, history: &[String]) -> Result<(), ModelError> {
        let dir = self.model_dir(name);
        let mut text = history.join("\n");
        text.push('\n');
        write_atomically(&dir.join("history"), text.as_bytes())?;
        let active = history.last().map(String::as_str).unwrap_or_default();
        write_atomically(&dir.join("active"), format!("{active}\n").as_bytes())
    }

    /// The promoted version of `name`, if any.
    pub fn active(&self, name: &str) -> Result<Option<String>, ModelError> {
        Ok(self.history(name)?.last().cloned())
    }

    /// Makes `version` the active one, after checking that it loads.
    pub fn promote(&self, name: &str, version: &str) -> Result<LoadedModel, ModelError> {
        let loaded = self.load(name, version)?;
        let mut history = self.history(name)?;
        history.push(version.to_string());
        self.set_active(name, &history)?;
        Ok(loaded)
    }

    /// Returns to the version promoted before the active one, after checking
    /// that it loads.
    pub fn rollback(&self, name: &str) -> Result<LoadedModel, ModelError> {
        let mut history = self.history(name)?;
        if history.len() < 2 {
            return Err(ModelError::Registry(format!(
                "model {name} has no earlier promotion to roll back to"
            )));
        }
        history.pop();
        let previous = history.last().expect("at least one left").clone();
        let loaded = self.load(name, &previous)?;
        self.set_active(name, &history)?;
        Ok(loaded)
    }

    /// The active version of `name`; an error says whether the registry
    /// has no such model or the model has no promoted version.
    pub fn active_version(&self, name: &str) -> Result<String, ModelError> {
        if !self.model_dir(name).is_dir() {
            let root = std::path::absolute(&self.root).unwrap_or_else(|_| self.root.clone());
            return Err(ModelError::Registry(format!(
                "no model {name} in the registry at {} (the repository ships models/default: run from its root, or train and promote one: `shadowcast train --logs … --out {}/{name} --promote`)",
                root.display(),
                self.root.display()
            )));
        }
        self.active(name)?.ok_or_else(|| {
            ModelError::Registry(format!(
                "model {name} has no promoted version; run `shadowcast models promote {name} VERSION`"
            ))
        })
    }

    /// Loads the active version of `name`.
    pub fn load_active(&self, name: &str) -> Result<LoadedModel, ModelError> {
        self.load(name, &self.active_version(name)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A missing registry and a model never promoted are told apart, and
    /// the first names where it looked.
    #[test]
    fn a_missing_model_names_the_registry_it_looked_in() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new(dir.path().join("models"));
        let missing = registry.load_active("default").err().unwrap().to_string();
        assert!(
            missing.contains("no model default in the registry at"),
            "{missing}"
        );
        assert!(
            missing.contains(&dir.path().join("models").display().to_string()),
            "{missing}"
        );
        std::fs::create_dir_all(dir.path().join("models/default")).unwrap();
        let unpromoted = registry.load_active("default").err().unwrap().to_string();
        assert!(
            unpromoted.contains("has no promoted version"),
            "{unpromoted}"
        );
    }
}
