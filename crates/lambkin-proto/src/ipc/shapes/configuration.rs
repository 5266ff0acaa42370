//! Component configuration (§4.3). No authorization applies: any component may read any
//! component's configuration, and update its own.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ipc::error::IpcError;

/// `GetConfigurationRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetConfigurationRequest {
    /// The caller's own component when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_name: Option<String>,
    /// The whole `configuration` when absent or empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_path: Option<Vec<String>>,
}

/// `GetConfigurationResponse`. `value` is always an object: a leaf at `keyPath` comes back as
/// `{"<leafName>": <leafValue>}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetConfigurationResponse {
    pub component_name: String,
    pub value: Map<String, Value>,
}

/// The error for an unknown component, no configuration, or an unknown path.
pub fn key_not_found() -> IpcError {
    IpcError::resource_not_found("Key not found")
}

/// `UpdateConfigurationRequest`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateConfigurationRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_path: Option<Vec<String>>,
    /// Seconds since the epoch, with a fraction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_to_merge: Option<Map<String, Value>>,
}

/// A validated `UpdateConfiguration` of the caller's own configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigurationUpdate {
    /// Relative to the component's `configuration`; empty for its root.
    pub key_path: Vec<String>,
    /// Seconds since the epoch; an update older than the node's modification time fails.
    pub timestamp: f64,
    pub value_to_merge: Map<String, Value>,
}

impl UpdateConfigurationRequest {
    /// The nucleus's checks and texts (§4.3).
    pub fn validate(self) -> Result<ConfigurationUpdate, IpcError> {
        let timestamp = self
            .timestamp
            .ok_or_else(|| IpcError::invalid_arguments("Timestamp is required"))?;
        let value_to_merge = self
            .value_to_merge
            .ok_or_else(|| IpcError::invalid_arguments("ValueToMerge is required"))?;
        let key_path = self.key_path.unwrap_or_default();
        let touches_access_control = match key_path.first() {
            Some(top) => top.eq_ignore_ascii_case("accessControl"),
            None => value_to_merge
                .keys()
                .any(|k| k.eq_ignore_ascii_case("accessControl")),
        };
        if touches_access_control {
            return Err(IpcError::invalid_arguments(
                "Config update is not allowed for following fields [accessControl]",
            ));
        }
        Ok(ConfigurationUpdate {
            key_path,
            timestamp,
            value_to_merge,
        })
    }
}

/// Merges `value_to_merge` into `config` at `key_path`, as UpdateConfiguration does (a leaf on
/// the way is replaced by an object; objects merge deeply, anything else replaces); returns
/// the path of every leaf whose value changed (and of every object that replaced a leaf). The
/// host applies an update with it, and again when it reads the configuration's saved changes.
pub fn apply_update(
    config: &mut Value,
    key_path: &[String],
    value_to_merge: Map<String, Value>,
) -> Vec<Vec<String>> {
    let mut changed = Vec::new();
    if !config.is_object() {
        *config = Value::Object(Map::new());
    }
    let mut node = config;
    let mut at = Vec::new();
    for key in key_path {
        let Value::Object(map) = node else { break };
        let entry = map
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            // A leaf at keyPath: the update replaces it.
            *entry = Value::Object(Map::new());
        }
        at.push(key.clone());
        node = entry;
    }
    if let Value::Object(map) = node {
        merge(map, value_to_merge, &mut at, &mut changed);
    }
    changed
}

/// Deep-merges `update` into `target`, and records the path of every leaf whose value changed
/// (and of every object that replaced a leaf).
fn merge(
    target: &mut Map<String, Value>,
    update: Map<String, Value>,
    at: &mut Vec<String>,
    changed: &mut Vec<Vec<String>>,
) {
    for (key, value) in update {
        at.push(key.clone());
        match (target.get_mut(&key), value) {
            (Some(Value::Object(existing)), Value::Object(more)) => {
                merge(existing, more, at, changed)
            }
            (Some(existing), value) if *existing == value => {}
            (_, value) => {
                target.insert(key, value);
                changed.push(at.clone());
            }
        }
        at.pop();
    }
}

/// The error for an update older than the configuration it would change.
pub fn stale_update() -> IpcError {
    IpcError::FailedUpdateConditionCheck {
        message: "Proposed timestamp is older than the config's latest modified timestamp".into(),
    }
}

/// `UpdateConfigurationResponse`: always `{}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UpdateConfigurationResponse {}

/// `SubscribeToConfigurationUpdateRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscribeToConfigurationUpdateRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_path: Option<Vec<String>>,
}

/// `SubscribeToConfigurationUpdateResponse`: always `{}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SubscribeToConfigurationUpdateResponse {}

/// `ConfigurationUpdateEvent`: one changed node, its path relative to `configuration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationUpdateEvent {
    pub component_name: String,
    pub key_path: Vec<String>,
}

/// `ConfigurationUpdateEvents`: the event of a `SubscribeToConfigurationUpdate` stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationUpdateEvents {
    pub configuration_update_event: ConfigurationUpdateEvent,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::shapes::parse_request;
    use serde_json::json;

    #[test]
    fn merge_records_changed_leaves() {
        let mut target = json!({"a": 1, "m": {"x": true, "y": 2}})
            .as_object()
            .cloned()
            .unwrap();
        let update = json!({"a": 1, "m": {"x": false, "z": 3}, "n": 4})
            .as_object()
            .cloned()
            .unwrap();
        let mut changed = Vec::new();
        merge(&mut target, update, &mut Vec::new(), &mut changed);
        assert_eq!(
            Value::Object(target),
            json!({"a": 1, "m": {"x": false, "y": 2, "z": 3}, "n": 4})
        );
        assert_eq!(
            changed,
            vec![
                vec!["m".to_owned(), "x".to_owned()],
                vec!["m".to_owned(), "z".to_owned()],
                vec!["n".to_owned()],
            ]
        );
    }

    #[test]
    fn an_update_at_a_leaf_replaces_it_with_an_object() {
        let mut config = json!({"a": 1, "b": {"c": "leaf"}});
        let update = json!({"x": 2}).as_object().cloned().unwrap();
        let changed = apply_update(&mut config, &["b".into(), "c".into()], update);
        assert_eq!(config, json!({"a": 1, "b": {"c": {"x": 2}}}));
        assert_eq!(
            changed,
            vec![vec!["b".to_owned(), "c".to_owned(), "x".to_owned()]]
        );
    }

    #[test]
    fn update_reads_python_timestamps() {
        let request: UpdateConfigurationRequest = parse_request(
            br#"{"keyPath": ["nested"], "timestamp": 1795312997.472959, "valueToMerge": {"n": 2, "m": {"x": true}}}"#,
        )
        .unwrap();
        let update = request.validate().unwrap();
        assert_eq!(update.key_path, ["nested"]);
        assert!((update.timestamp - 1_795_312_997.472_959).abs() < 1e-6);
        assert_eq!(
            Value::Object(update.value_to_merge),
            json!({"n": 2, "m": {"x": true}})
        );
    }

    #[test]
    fn update_checks_use_the_nucleus_texts() {
        let error = |body: &str| {
            parse_request::<UpdateConfigurationRequest>(body.as_bytes())
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string()
        };
        assert_eq!(error(r#"{"valueToMerge": {}}"#), "Timestamp is required");
        assert_eq!(error(r#"{"timestamp": 1}"#), "ValueToMerge is required");
        let denied = "Config update is not allowed for following fields [accessControl]";
        assert_eq!(
            error(r#"{"timestamp": 1, "valueToMerge": {"accessControl": {}}}"#),
            denied
        );
        assert_eq!(
            error(r#"{"timestamp": 1, "keyPath": ["accessControl", "x"], "valueToMerge": {}}"#),
            denied
        );
        assert_eq!(
            stale_update().to_string(),
            "Proposed timestamp is older than the config's latest modified timestamp"
        );
        assert_eq!(
            key_not_found().to_wire().payload,
            br#"{"message":"Key not found"}"#
        );
    }

    #[test]
    fn responses_and_events_have_the_model_members() {
        let mut value = Map::new();
        value.insert("greeting".into(), "hello".into());
        let response = GetConfigurationResponse {
            component_name: "com.example.Probe".into(),
            value,
        };
        assert_eq!(
            serde_json::to_value(&response).unwrap(),
            json!({"componentName": "com.example.Probe", "value": {"greeting": "hello"}})
        );
        let event = ConfigurationUpdateEvents {
            configuration_update_event: ConfigurationUpdateEvent {
                component_name: "com.example.Probe".into(),
                key_path: vec!["nested".into(), "n".into()],
            },
        };
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            json!({"configurationUpdateEvent": {"componentName": "com.example.Probe", "keyPath": ["nested", "n"]}})
        );
    }
}
