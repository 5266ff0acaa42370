//! The running components' configurations, owned here and shared by the engine and IPC.
//!
//! IPC reads and changes a configuration without waiting for a deployment in progress
//! (GetConfiguration, UpdateConfiguration, every operation's `accessControl`), so the
//! configurations cannot belong to the engine's actor alone. This type owns them, with the
//! changes not yet in the store and the keys only deployments may change, under one lock: one
//! state, one order of changes, no lock order to keep. The engine sets a component's
//! configuration when it starts and forgets it when it leaves; it takes IPC's changes in when
//! it plans, compares and records.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use lambkin_proto::ipc::shapes::configuration::{apply_update, ConfigurationUpdate};

use crate::store::{ConfigChange, Store, StoreError};

/// A configuration key that only a deployment may change, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedKey {
    /// Its path in the configuration.
    pub path: Vec<String>,
    /// Why: what decides by it.
    pub why: String,
}

#[derive(Debug, Default)]
struct State {
    /// Each running component's effective configuration.
    values: BTreeMap<String, serde_json::Value>,
    /// By target component: the keys protected, each with the component that protected it
    /// (it goes when that one goes).
    protected: BTreeMap<String, Vec<(String, ProtectedKey)>>,
    /// Changes made in memory and not yet sent to the store, in the order they were made.
    unsaved: Vec<ConfigChange>,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Configurations {
    state: Mutex<State>,
    /// One write of changes to the store at a time.
    persisting: tokio::sync::Mutex<()>,
}

impl Configurations {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `name`'s effective configuration; `None` for a component not running.
    pub fn get(&self, name: &str) -> Option<serde_json::Value> {
        self.state().values.get(name).cloned()
    }

    /// Every running component's effective configuration.
    pub fn snapshot(&self) -> BTreeMap<String, serde_json::Value> {
        self.state().values.clone()
    }

    /// `f` of `name`'s configuration, without copying it; `None` for a component not running.
    pub fn with<T>(&self, name: &str, f: impl FnOnce(&serde_json::Value) -> T) -> Option<T> {
        self.state().values.get(name).map(f)
    }

    /// `name` starts with `config`; the keys it protects (in its own configuration or
    /// another's, by target) replace those it protected before.
    pub fn start(
        &self,
        name: &str,
        config: serde_json::Value,
        protects: Vec<(String, ProtectedKey)>,
    ) {
        let mut state = self.state();
        state.values.insert(name.to_owned(), config);
        unprotect(&mut state, name);
        for (target, key) in protects {
            state
                .protected
                .entry(target)
                .or_default()
                .push((name.to_owned(), key));
        }
    }

    /// `name` left: its configuration and what it protected go.
    pub fn stop(&self, name: &str) {
        let mut state = self.state();
        state.values.remove(name);
        unprotect(&mut state, name);
    }

    /// Applies an IPC UpdateConfiguration to `name`'s configuration, unless it touches a key
    /// only deployments may change (checked under the same lock, so a deployment cannot
    /// protect a key between the check and the change), and queues the change for the store
    /// ([`Configurations::persist`]); returns the paths it changed.
    pub fn apply_update(
        &self,
        name: &str,
        update: &ConfigurationUpdate,
    ) -> Result<Vec<Vec<String>>, UpdateRefused> {
        let mut state = self.state();
        if let Some(key) =
            protected_key(&state, name, &update.key_path, update.value_to_merge.keys())
        {
            return Err(UpdateRefused::Protected(key));
        }
        let config = state
            .values
            .get_mut(name)
            .ok_or(UpdateRefused::NotRunning)?;
        let changed = apply_update(config, &update.key_path, update.value_to_merge.clone());
        // Queued under the same lock, so changes reach the store in the order they were made.
        state.unsaved.push(ConfigChange {
            component: name.to_owned(),
            key_path: update.key_path.clone(),
            value_to_merge: update.value_to_merge.clone(),
        });
        Ok(changed)
    }

    /// Writes the changes made so far to `store` and returns once they are on disk. Only the
    /// changes are written (the store appends them to the component's saved changes and
    /// folds them in now and then), never a whole configuration per update. Writes go one at
    /// a time, each taking every change queued when it goes, so a change answered after this
    /// returns is durable, in order.
    pub async fn persist(&self, store: &Store) -> Result<(), StoreError> {
        let _one_at_a_time = self.persisting.lock().await;
        let changes = std::mem::take(&mut self.state().unsaved);
        if changes.is_empty() {
            // A write before this one took them, and has returned.
            return Ok(());
        }
        store.append_config_changes(changes).await
    }
}

/// Why an IPC configuration update was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateRefused {
    /// It touches a key only deployments may change: the key's path and why.
    #[error("Config update is not allowed for {0}: only a deployment may change it")]
    Protected(String),
    #[error("the component is not running")]
    NotRunning,
}

/// The first key an IPC update of `component`'s configuration at `key_path`, merging
/// `merged` keys, would change that only a deployment may change, and why; `None` when the
/// update touches none. An update touches a key when one path is a prefix of the other
/// (merging at a parent replaces what is under it).
fn protected_key<'a>(
    state: &State,
    component: &str,
    key_path: &[String],
    merged: impl Iterator<Item = &'a String>,
) -> Option<String> {
    let keys = state.protected.get(component)?;
    let same = |a: &[String], b: &[String]| a.iter().zip(b).all(|(x, y)| x.eq_ignore_ascii_case(y));
    for k in merged {
        let mut touched = key_path.to_vec();
        touched.push(k.clone());
        if let Some((_, hit)) = keys.iter().find(|(_, p)| same(&p.path, &touched)) {
            return Some(format!("/{} ({})", hit.path.join("/"), hit.why));
        }
    }
    None
}

/// Forgets what `owner` protected.
fn unprotect(state: &mut State, owner: &str) {
    for keys in state.protected.values_mut() {
        keys.retain(|(o, _)| o != owner);
    }
    state.protected.retain(|_, keys| !keys.is_empty());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(path: &[&str], why: &str) -> ProtectedKey {
        ProtectedKey {
            path: path.iter().map(|s| (*s).to_owned()).collect(),
            why: why.into(),
        }
    }

    fn update(path: &[&str], merge: serde_json::Value) -> ConfigurationUpdate {
        ConfigurationUpdate {
            key_path: path.iter().map(|s| (*s).to_owned()).collect(),
            timestamp: 0.0,
            value_to_merge: merge.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn a_protected_key_is_refused_by_prefix_either_way_until_its_owner_leaves() {
        let configs = Configurations::default();
        configs.start("a", serde_json::json!({}), vec![]);
        configs.start(
            "b",
            serde_json::json!({}),
            vec![("a".into(), key(&["secret", "path"], "b reads it"))],
        );
        assert_eq!(
            configs.apply_update("a", &update(&["Secret"], serde_json::json!({"path": 1}))),
            Err(UpdateRefused::Protected("/secret/path (b reads it)".into()))
        );
        // Merging at the parent replaces what is under it.
        let parent = update(&[], serde_json::json!({"secret": {}}));
        assert!(configs.apply_update("a", &parent).is_err());
        assert!(configs
            .apply_update("a", &update(&[], serde_json::json!({"other": 1})))
            .is_ok());
        // Refused, they changed nothing.
        assert_eq!(configs.get("a"), Some(serde_json::json!({"other": 1})));
        configs.stop("b");
        assert!(configs.apply_update("a", &parent).is_ok());
    }

    #[test]
    fn a_restart_replaces_what_a_component_protected() {
        let configs = Configurations::default();
        let protects = |k: &str| vec![("a".to_owned(), key(&[k], "why"))];
        configs.start("a", serde_json::json!({}), protects("x"));
        configs.start("a", serde_json::json!({}), protects("y"));
        assert!(configs
            .apply_update("a", &update(&[], serde_json::json!({"x": 1})))
            .is_ok());
        assert!(configs
            .apply_update("a", &update(&[], serde_json::json!({"y": 1})))
            .is_err());
    }

    #[test]
    fn updates_change_running_components_only_and_are_queued_in_order() {
        let configs = Configurations::default();
        configs.start("a", serde_json::json!({"n": 1}), vec![]);
        assert_eq!(
            configs.apply_update("ghost", &update(&[], serde_json::json!({"n": 2}))),
            Err(UpdateRefused::NotRunning)
        );
        configs
            .apply_update("a", &update(&[], serde_json::json!({"n": 2})))
            .unwrap();
        configs
            .apply_update("a", &update(&["m"], serde_json::json!({"k": true})))
            .unwrap();
        assert_eq!(
            configs.get("a"),
            Some(serde_json::json!({"n": 2, "m": {"k": true}}))
        );
        let unsaved = std::mem::take(&mut configs.state().unsaved);
        assert_eq!(
            unsaved
                .iter()
                .map(|c| c.key_path.clone())
                .collect::<Vec<_>>(),
            [vec![], vec!["m".to_owned()]]
        );
        configs.stop("a");
        assert_eq!(configs.get("a"), None);
    }
}
