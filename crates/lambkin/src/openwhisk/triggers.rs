//! Triggers and rules: firing a trigger (through the API, or by a message on the local pub/sub
//! topic filter its `lambkin-pubsub-topic` annotation names, or on the IoT Core topic filter
//! its `lambkin-iotcore-topic` names, through the host's MQTT connection at QoS 1) activates
//! the action of each of
//! its active rules with the trigger's parameters under the fired ones, and records the
//! trigger's own activation (its logs: one JSON line per rule, naming the action's activation).
//! Triggers and rules are kept in `ROOT/state/openwhisk/{triggers,rules}/NAME.json`.
//!
//! A bound trigger's messages, like a Lambda component's `pubsubTopics`, are not persisted:
//! local pub/sub promises no delivery, a broker's QoS 1 ends at the host, and an activation
//! starts per message as it arrives. Without `[mqtt]` an IoT Core binding is kept and warned
//! about, and fires nothing.

use std::path::Path;
use std::sync::{Arc, PoisonError, Weak};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};

use lambkin_proto::openwhisk::{
    rule_status, split_reference, Activation, ActivationResponse, EntityRef, KeyValue, Rule,
    RulePut, Trigger, TriggerPut, WhiskError,
};

use super::{new_activation_id, now_ms, OpenWhisk};
use crate::pubsub::{Client, Filter, Payload, ReceiveMode};

/// Every `*.json` in `dir` that parses as a `T`.
pub(super) fn load_all<T: DeserializeOwned>(dir: &Path) -> std::io::Result<Vec<T>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)?.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        match std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<T>(&b).ok())
        {
            Some(value) => found.push(value),
            None => tracing::error!(path = %path.display(), "unreadable OpenWhisk entity"),
        }
    }
    Ok(found)
}

/// Writes `dir/NAME.json` (0600, renamed into place).
pub(super) fn store<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<(), WhiskError> {
    let bytes = serde_json::to_vec(value).map_err(|e| WhiskError::Internal(e.to_string()))?;
    crate::layout::write_private(&dir.join(format!("{name}.json")), &bytes)
        .map_err(|e| WhiskError::Internal(format!("cannot keep {name}: {e}")))
}

fn unstore(dir: &Path, name: &str) -> Result<(), WhiskError> {
    match std::fs::remove_file(dir.join(format!("{name}.json"))) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(WhiskError::Internal(format!("cannot delete {name}: {e}"))),
    }
}

impl OpenWhisk {
    pub fn trigger(&self, name: &str) -> Option<Arc<Trigger>> {
        self.entities().triggers.get(name).cloned()
    }

    pub fn triggers(&self) -> Vec<Arc<Trigger>> {
        self.entities().triggers.values().cloned().collect()
    }

    pub fn rule(&self, name: &str) -> Option<Arc<Rule>> {
        self.entities().rules.get(name).cloned()
    }

    pub fn rules(&self) -> Vec<Arc<Rule>> {
        self.entities().rules.values().cloned().collect()
    }

    fn entities(&self) -> std::sync::RwLockReadGuard<'_, super::Entities> {
        self.entities.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn entities_mut(&self) -> std::sync::RwLockWriteGuard<'_, super::Entities> {
        self.entities
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The name a reference names in this namespace.
    fn own_name(&self, reference: &str) -> Result<String, WhiskError> {
        let (namespace, name) = split_reference(reference)?;
        if namespace.is_some_and(|ns| !self.is_own_namespace(ns)) {
            return Err(WhiskError::BadRequest(format!(
                "'{reference}' is not in this host's namespace."
            )));
        }
        Ok(name.to_owned())
    }

    pub async fn put_trigger(
        self: &Arc<Self>,
        name: &str,
        put: TriggerPut,
        overwrite: bool,
    ) -> Result<Arc<Trigger>, WhiskError> {
        let _guard = self.writes.lock().await;
        let existing = self.trigger(name);
        if existing.is_some() && !overwrite {
            return Err(WhiskError::AlreadyExists);
        }
        let trigger = Trigger::from_put(put, existing.as_deref(), &self.namespace, name, now_ms())?;
        let parse = |topic: &str| {
            Filter::parse(topic).map_err(|e| {
                WhiskError::BadRequest(format!("topic filter '{topic}' is not valid: {e}"))
            })
        };
        let filter = trigger.pubsub_topic().map(parse).transpose()?;
        if let Some(topic) = trigger.iotcore_topic() {
            parse(topic)?;
        }
        store(&self.dirs.triggers, name, &trigger)?;
        let trigger = Arc::new(trigger);
        self.entities_mut()
            .triggers
            .insert(name.to_owned(), trigger.clone());
        self.unbind(name);
        self.bind_iotcore(&trigger);
        if let Some(filter) = filter {
            self.bind(&trigger, filter).await;
        }
        Ok(trigger)
    }

    pub async fn delete_trigger(&self, name: &str) -> Result<Arc<Trigger>, WhiskError> {
        let _guard = self.writes.lock().await;
        let trigger = self.trigger(name).ok_or(WhiskError::NotFound)?;
        unstore(&self.dirs.triggers, name)?;
        self.entities_mut().triggers.remove(name);
        self.unbind(name);
        Ok(trigger)
    }

    pub async fn put_rule(
        &self,
        name: &str,
        put: RulePut,
        overwrite: bool,
    ) -> Result<Arc<Rule>, WhiskError> {
        lambkin_proto::openwhisk::check_name(name)?;
        let _guard = self.writes.lock().await;
        let existing = self.rule(name);
        if existing.is_some() && !overwrite {
            return Err(WhiskError::AlreadyExists);
        }
        let reference =
            |given: Option<String>, old: Option<&EntityRef>, what: &str| match (given, old) {
                (Some(r), _) => self.own_name(&r),
                (None, Some(old)) => Ok(old.name.clone()),
                (None, None) => Err(WhiskError::BadRequest(format!(
                    "The request content was malformed: a rule needs its {what}."
                ))),
            };
        let trigger = reference(
            put.trigger,
            existing.as_ref().map(|r| &r.trigger),
            "trigger",
        )?;
        let action = reference(put.action, existing.as_ref().map(|r| &r.action), "action")?;
        if self.trigger(&trigger).is_none() {
            return Err(WhiskError::BadRequest(format!(
                "The rule's trigger /{}/{trigger} does not exist.",
                self.namespace
            )));
        }
        if self.action(&action).is_none() {
            return Err(WhiskError::BadRequest(format!(
                "The rule's action /{}/{action} does not exist.",
                self.namespace
            )));
        }
        let status = match put.status.as_deref() {
            Some(s) => rule_status(s)?.to_owned(),
            None => existing
                .as_ref()
                .map_or_else(|| "active".to_owned(), |r| r.status.clone()),
        };
        let path = self.namespace.clone();
        let rule = Rule {
            namespace: self.namespace.clone(),
            name: name.to_owned(),
            version: existing.as_ref().map_or_else(
                || "0.0.1".to_owned(),
                |r| {
                    let mut parts: Vec<u64> = r
                        .version
                        .split('.')
                        .map(|p| p.parse().unwrap_or(0))
                        .collect();
                    parts.resize(3, 0);
                    format!("{}.{}.{}", parts[0], parts[1], parts[2] + 1)
                },
            ),
            publish: false,
            status,
            trigger: EntityRef {
                name: trigger,
                path: path.clone(),
            },
            action: EntityRef { name: action, path },
            annotations: put
                .annotations
                .or_else(|| existing.as_ref().map(|r| r.annotations.clone()))
                .unwrap_or_default(),
            updated: now_ms(),
        };
        store(&self.dirs.rules, name, &rule)?;
        let rule = Arc::new(rule);
        self.entities_mut()
            .rules
            .insert(name.to_owned(), rule.clone());
        Ok(rule)
    }

    /// `POST .../rules/NAME` with `{"status": ...}`: enables or disables the rule.
    pub async fn set_rule_status(&self, name: &str, status: &str) -> Result<(), WhiskError> {
        let status = rule_status(status)?;
        let _guard = self.writes.lock().await;
        let mut rule = (*self.rule(name).ok_or(WhiskError::NotFound)?).clone();
        rule.status = status.to_owned();
        rule.updated = now_ms();
        store(&self.dirs.rules, name, &rule)?;
        self.entities_mut()
            .rules
            .insert(name.to_owned(), Arc::new(rule));
        Ok(())
    }

    pub async fn delete_rule(&self, name: &str) -> Result<Arc<Rule>, WhiskError> {
        let _guard = self.writes.lock().await;
        let rule = self.rule(name).ok_or(WhiskError::NotFound)?;
        unstore(&self.dirs.rules, name)?;
        self.entities_mut().rules.remove(name);
        Ok(rule)
    }

    /// Fires `trigger`: each active rule's action runs (not waited for; a code action's
    /// activation is stored first, as a non-blocking invoke's, so it runs after a restart
    /// too). `None` when no rule is active (OpenWhisk answers 204 then, and records nothing).
    pub async fn fire(
        self: &Arc<Self>,
        trigger: &Trigger,
        params: Map<String, Value>,
    ) -> Option<String> {
        let rules: Vec<Arc<Rule>> = self
            .rules()
            .into_iter()
            .filter(|r| r.trigger.name == trigger.name && r.is_active())
            .collect();
        if rules.is_empty() {
            return None;
        }
        let params = trigger.merged_parameters(params);
        let start_ms = now_ms();
        let mut logs = Vec::with_capacity(rules.len());
        for rule in rules {
            let rule_path = format!("{}/{}", self.namespace, rule.name);
            let action_path = format!("{}/{}", self.namespace, rule.action.name);
            let Some(action) = self.action(&rule.action.name) else {
                logs.push(
                    json!({"statusCode": 1, "success": false, "rule": rule_path,
                           "action": action_path, "error": "The requested resource does not exist."})
                    .to_string(),
                );
                continue;
            };
            let id = new_activation_id();
            let started = if matches!(action.kind(), Ok(super::Kind::Sequence)) {
                let ow = self.clone();
                let params = params.clone();
                let rule = rule.name.clone();
                // Runs to its end on its own; its record is kept like any other activation.
                tokio::spawn(async move {
                    if let Err(e) = ow.activate(action, params, id).await {
                        tracing::warn!(%rule, error = %e, "a rule's activation was refused");
                    }
                });
                Ok(())
            } else {
                self.enqueue(&action, params.clone(), id).await
            };
            logs.push(
                match started {
                    Ok(()) => json!({"statusCode": 0, "success": true,
                                     "activationId": id.simple().to_string(),
                                     "rule": rule_path, "action": action_path}),
                    Err(e) => {
                        tracing::warn!(rule = %rule.name, error = %e, "a rule's activation was refused");
                        json!({"statusCode": 1, "success": false, "rule": rule_path,
                               "action": action_path, "error": e.to_string()})
                    }
                }
                .to_string(),
            );
        }
        let id = new_activation_id().simple().to_string();
        self.activations.record(Activation {
            namespace: self.namespace.clone(),
            name: trigger.name.clone(),
            version: trigger.version.clone(),
            subject: self.key.uuid.clone(),
            activation_id: id.clone(),
            start_ms,
            end_ms: now_ms(),
            response: ActivationResponse::success(Value::Object(params)),
            logs,
            annotations: vec![KeyValue {
                key: "path".into(),
                value: json!(format!("{}/{}", self.namespace, trigger.name)),
            }],
        });
        Some(id)
    }

    /// Subscribes a task to `filter` that fires the trigger at each message.
    async fn bind(self: &Arc<Self>, trigger: &Trigger, filter: Filter) {
        // The host subscribes for itself, as `lambkin sub` does: every message, its own too.
        let mut subscription = match self
            .pubsub
            .subscribe(Client::Cli, filter, ReceiveMode::All)
            .await
        {
            Ok(s) => s,
            Err(_) => {
                tracing::warn!(trigger = %trigger.name, "local pub/sub has stopped; the trigger is not bound");
                return;
            }
        };
        let weak: Weak<Self> = Arc::downgrade(self);
        let name = trigger.name.clone();
        let task = tokio::spawn(async move {
            while let Some(message) = subscription.recv().await {
                let Some(ow) = weak.upgrade() else { return };
                let Some(trigger) = ow.trigger(&name) else {
                    return;
                };
                let params = match &message.payload {
                    Payload::Json(value) => message_parameters(value, &message.topic.to_string()),
                    Payload::Binary(bytes) => bytes_parameters(bytes, &message.topic.to_string()),
                };
                ow.fire(&trigger, params).await;
            }
        });
        self.feeds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(trigger.name.clone(), task);
    }

    /// Subscribes at the broker (in the background: the broker may be away) and fires the
    /// trigger at each message.
    fn bind_iotcore(self: &Arc<Self>, trigger: &Trigger) {
        let Some(topic) = trigger.iotcore_topic().map(str::to_owned) else {
            return;
        };
        let Some(mqtt) = self.mqtt.clone() else {
            tracing::warn!(trigger = %trigger.name, %topic, "no [mqtt] broker is configured: the trigger's IoT Core topic fires nothing");
            return;
        };
        let weak: Weak<Self> = Arc::downgrade(self);
        let name = trigger.name.clone();
        let task = tokio::spawn(async move {
            let mut messages = match mqtt.subscribe(&topic, true).await {
                Ok(messages) => messages,
                Err(e) => {
                    tracing::warn!(trigger = %name, %topic, error = %e, "cannot subscribe to the IoT Core topic; the trigger is not bound");
                    return;
                }
            };
            while let Some(message) = messages.recv().await {
                let Some(ow) = weak.upgrade() else { return };
                let Some(trigger) = ow.trigger(&name) else {
                    return;
                };
                ow.fire(&trigger, bytes_parameters(&message.payload, &message.topic))
                    .await;
            }
        });
        self.feeds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(format!("{}\u{0}iotcore", trigger.name), task);
    }

    fn unbind(&self, name: &str) {
        let mut feeds = self.feeds.lock().unwrap_or_else(PoisonError::into_inner);
        for key in [name.to_owned(), format!("{name}\u{0}iotcore")] {
            if let Some(task) = feeds.remove(&key) {
                task.abort();
            }
        }
    }

    /// Binds the stored triggers that name a topic (at start).
    pub async fn bind_stored(self: &Arc<Self>) {
        for trigger in self.triggers() {
            self.bind_iotcore(&trigger);
            if let Some(filter) = trigger.pubsub_topic().and_then(|t| Filter::parse(t).ok()) {
                self.bind(&trigger, filter).await;
            }
        }
    }

    /// Ends every binding.
    pub(super) fn unbind_all(&self) {
        for (_, task) in self
            .feeds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
        {
            task.abort();
        }
    }
}

/// A message's parameters: a JSON object's fields, else `{"message": VALUE}`; and `topic`.
fn message_parameters(value: &Value, topic: &str) -> Map<String, Value> {
    let mut params = match value {
        Value::Object(fields) => fields.clone(),
        other => Map::from_iter([("message".to_owned(), other.clone())]),
    };
    params.entry("topic").or_insert(json!(topic));
    params
}

/// As [`message_parameters`] for bytes: JSON if they are, else their text.
fn bytes_parameters(bytes: &[u8], topic: &str) -> Map<String, Value> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(value) => message_parameters(&value, topic),
        Err(_) => message_parameters(&json!(String::from_utf8_lossy(bytes)), topic),
    }
}
