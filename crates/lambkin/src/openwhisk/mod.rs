//! OpenWhisk actions on Lambkin's Lambda machinery (Apache OpenWhisk's proposal "Execute
//! OpenWhisk action via AWS Lambda"): an action's `kind` names a Lambda runtime
//! (`Kind::lambda_runtime`), and each code action is a Lambda function `ow-NAME` whose handler
//! is the adapter shipped in `runtimes/openwhisk/`, packed with the action's code. Lifecycles,
//! queues, timeouts, memory and logs are the functions'. This module keeps the actions
//! (`ROOT/state/openwhisk/actions/NAME.json`), runs activations (code actions and sequences)
//! and keeps their records (`activations`); `http` is the REST API's edge. A non-blocking
//! activation is a stored Lambda `Event` invocation of the action's function
//! ([`OpenWhisk::enqueue`]), recorded when it has run ([`StoredActivations`]), after a restart
//! too. A kind may bring Lambda layers, which must be published when an action is made.

pub mod activations;
pub mod http;
pub mod key;
mod request;
mod triggers;
mod web;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use tokio::sync::oneshot;

use lambkin_proto::lambda::function::FunctionName;
use lambkin_proto::lambda::management::UpdateFunctionConfigurationRequest;
use lambkin_proto::openwhisk::{
    messages, Action, ActionPut, Activation, ActivationResponse, AdapterAnswer, KeyValue, Kind,
    KindLayer, KindTable, Outcome, Rule, Trigger, WhiskError,
};

use crate::lambda::code::CodeError;
use crate::lambda::function::Refusal;
use crate::lambda::invocation::{
    Completion, FunctionResponse, Invocation, InvocationAbort, RequestId,
};
use crate::lambda::registry::{ManageError, Registry};
use crate::layout::Layout;
use crate::pubsub::PubSubHandle;

use activations::Activations;
use key::WhiskKey;

/// An action `NAME` is the Lambda function `ow-NAME`.
pub const FUNCTION_PREFIX: &str = "ow-";
/// Instances an action's function may run at once (its further activations queue).
pub const MAX_INSTANCES: u32 = 8;
/// Activation records kept.
pub const RETENTION: usize = 10_000;
/// How deep sequences may nest.
const MAX_SEQUENCE_DEPTH: usize = 16;

const ADAPTER_JS: &str = include_str!("../../runtimes/openwhisk/adapter.js");
const ADAPTER_PY: &str = include_str!("../../runtimes/openwhisk/adapter.py");
const ACTIONLOOP_PY: &str = include_str!("../../runtimes/openwhisk/actionloop.py");

/// The OpenWhisk side of the host: its key, its actions, their activations.
pub struct OpenWhisk {
    /// The device's namespace (`_` names it too).
    pub namespace: String,
    key: WhiskKey,
    /// What actions get as `__OW_API_HOST`.
    api_host: String,
    registry: Registry,
    actions: RwLock<BTreeMap<String, Arc<Action>>>,
    actions_dir: PathBuf,
    /// Serialises action writes, so each sees the previous one's result.
    writes: tokio::sync::Mutex<()>,
    pub activations: Activations,
    entities: RwLock<Entities>,
    dirs: Dirs,
    /// The tasks that fire bound triggers, by trigger.
    feeds: std::sync::Mutex<std::collections::HashMap<String, tokio::task::JoinHandle<()>>>,
    pubsub: PubSubHandle,
    /// The broker connection, for triggers bound to IoT Core topics.
    mqtt: Option<crate::mqtt::Mqtt>,
    /// Kind → Lambda runtime.
    kinds: KindTable,
    /// Whether a blocking invoke's record is synced before the answer (`[openwhisk]
    /// sync_blocking_records`).
    sync_blocking_records: bool,
}

/// Triggers and rules, by name.
#[derive(Debug, Default)]
struct Entities {
    triggers: BTreeMap<String, Arc<Trigger>>,
    rules: BTreeMap<String, Arc<Rule>>,
}

#[derive(Debug)]
struct Dirs {
    triggers: PathBuf,
    rules: PathBuf,
}

impl std::fmt::Debug for OpenWhisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenWhisk")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// `ROOT/state/openwhisk.auth`.
pub fn auth_file(layout: &Layout) -> PathBuf {
    layout.state_dir().join("openwhisk.auth")
}

/// The device's namespace: the thing name when OpenWhisk can name it so, else `guest`.
pub fn namespace_of(thing_name: &str) -> String {
    let ok = !thing_name.is_empty()
        && thing_name.len() <= 256
        && thing_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_@.-".contains(&b));
    if ok {
        thing_name.to_owned()
    } else {
        "guest".into()
    }
}

/// The Lambda function that runs action `name`.
pub fn function_name(name: &str) -> Result<FunctionName, WhiskError> {
    FunctionName::parse(&format!("{FUNCTION_PREFIX}{name}"))
        .map_err(|e| WhiskError::BadRequest(e.to_string()))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A new activation id: 32 hex digits (the Lambda request id is the same UUID, hyphenated).
pub fn new_activation_id() -> uuid::Uuid {
    uuid::Uuid::new_v4()
}

/// The one place the registry's errors become OpenWhisk's.
fn whisk_error(e: ManageError) -> WhiskError {
    match e {
        ManageError::NotFound(_) => WhiskError::NotFound,
        ManageError::AlreadyExists(_) | ManageError::OwnedByComponent(_) => {
            WhiskError::Conflict(format!("the action's Lambda function: {e}"))
        }
        ManageError::Invalid(_)
        | ManageError::Unsupported(_)
        | ManageError::Reserved(_)
        | ManageError::UnknownTarget { .. }
        | ManageError::Runtime(_)
        | ManageError::Layers(_)
        | ManageError::Code(
            CodeError::NotBase64(_)
            | CodeError::BadZip(_)
            | CodeError::UnsafePath(_)
            | CodeError::MissingEntryPoint(_)
            | CodeError::TooLarge(_),
        ) => WhiskError::BadRequest(e.to_string()),
        ManageError::Code(CodeError::Io(_)) | ManageError::Store(_) | ManageError::Log(_) => {
            WhiskError::Internal(e.to_string())
        }
    }
}

impl OpenWhisk {
    /// Reads the key (made at the first start), the actions and the kept activations.
    pub fn start(
        layout: &Layout,
        registry: Registry,
        pubsub: PubSubHandle,
        mqtt: Option<crate::mqtt::Mqtt>,
        config: &crate::config::OpenWhiskConfig,
        thing_name: &str,
        api_host: String,
    ) -> anyhow::Result<Arc<Self>> {
        use anyhow::Context;
        let kinds = config
            .kind_table()
            .map_err(|problems| anyhow::anyhow!("openwhisk.kinds: {}", problems.join("; ")))?;
        let key = key::load_or_create(&auth_file(layout))
            .with_context(|| format!("cannot make {}", auth_file(layout).display()))?;
        let base = layout.state_dir().join("openwhisk");
        let actions_dir = base.join("actions");
        let dirs = Dirs {
            triggers: base.join("triggers"),
            rules: base.join("rules"),
        };
        for dir in [&base, &actions_dir, &dirs.triggers, &dirs.rules] {
            crate::layout::create_private_dir(dir)
                .with_context(|| format!("cannot make {}", dir.display()))?;
        }
        let entities = Entities {
            triggers: triggers::load_all::<Trigger>(&dirs.triggers)?
                .into_iter()
                .map(|t| (t.name.clone(), Arc::new(t)))
                .collect(),
            rules: triggers::load_all::<Rule>(&dirs.rules)?
                .into_iter()
                .map(|r| (r.name.clone(), Arc::new(r)))
                .collect(),
        };
        let actions: BTreeMap<String, Arc<Action>> = triggers::load_all::<Action>(&actions_dir)?
            .into_iter()
            .map(|a| (a.name.clone(), Arc::new(a)))
            .collect();
        let activations = Activations::open(&base.join("activations"), RETENTION)
            .context("cannot open the OpenWhisk activation records")?;
        Ok(Arc::new(Self {
            namespace: namespace_of(thing_name),
            key,
            api_host,
            registry,
            actions: RwLock::new(actions),
            actions_dir,
            writes: tokio::sync::Mutex::new(()),
            activations,
            entities: RwLock::new(entities),
            dirs,
            feeds: std::sync::Mutex::default(),
            pubsub,
            mqtt,
            kinds,
            sync_blocking_records: config.sync_blocking_records,
        }))
    }

    pub fn kinds(&self) -> &KindTable {
        &self.kinds
    }

    pub fn key(&self) -> &WhiskKey {
        &self.key
    }

    /// Whether `namespace` (from a path) is this device's.
    pub fn is_own_namespace(&self, namespace: &str) -> bool {
        namespace == "_" || namespace == self.namespace
    }

    pub fn action(&self, name: &str) -> Option<Arc<Action>> {
        self.actions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    pub fn actions(&self) -> Vec<Arc<Action>> {
        self.actions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    fn keep(&self, action: Arc<Action>) {
        self.actions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(action.name.clone(), action);
    }

    fn forget(&self, name: &str) {
        self.actions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(name);
    }

    fn action_path(&self, name: &str) -> PathBuf {
        self.actions_dir.join(format!("{name}.json"))
    }

    /// Creates or (with `overwrite`) updates an action. The code is loaded once in a scratch
    /// function before anything changes, so code that does not parse or lacks its entry point
    /// is refused with the reason and the action stays as it was.
    pub async fn put_action(
        &self,
        name: &str,
        put: ActionPut,
        overwrite: bool,
    ) -> Result<Arc<Action>, WhiskError> {
        let _guard = self.writes.lock().await;
        let existing = self.action(name);
        if existing.is_some() && !overwrite {
            return Err(WhiskError::AlreadyExists);
        }
        let action = Action::from_put(
            put,
            existing.as_deref(),
            &self.namespace,
            name,
            now_ms(),
            &self.kinds,
        )?;
        let (_, runtime) = self.kinds.resolve(&action.exec.kind)?;
        let runtime = Target {
            runtime: runtime.unwrap_or_default().to_owned(),
            layers: self.kind_layers(&action.exec.kind)?,
        };
        let kind = action.kind()?;
        let function = function_name(name)?;
        let had_function = existing
            .as_deref()
            .is_some_and(|a| !matches!(a.kind(), Ok(Kind::Sequence)));
        match kind {
            Kind::Sequence => self.check_sequence(&action)?,
            Kind::Node | Kind::Python | Kind::Native => {
                let delegation = delegation(&action)?;
                let zip = code_zip(&action, kind)?;
                self.check_code(&action, kind, &runtime, &zip).await?;
                if had_function {
                    self.registry
                        .update_code(&function, parse_request(json!({ "ZipFile": zip }))?)
                        .await
                        .map_err(whisk_error)?;
                    let config =
                        with_delegation(function_config(&action, kind, &runtime), delegation);
                    self.registry
                        .update_configuration(&function, {
                            let mut request: UpdateFunctionConfigurationRequest =
                                parse_request(config)?;
                            request.timeout_ms = timeout_ms(&action);
                            request
                        })
                        .await
                        .map_err(whisk_error)?;
                } else {
                    self.registry
                        .create(with_timeout_ms(
                            &action,
                            with_delegation(
                                create_request(&function, &action, kind, &runtime, zip),
                                delegation,
                            ),
                        )?)
                        .await
                        .map_err(whisk_error)?;
                }
            }
        }
        let bytes = serde_json::to_vec(&action).map_err(|e| WhiskError::Internal(e.to_string()))?;
        if let Err(e) = crate::layout::write_private(&self.action_path(name), &bytes) {
            if !had_function && kind != Kind::Sequence {
                let _ = self.registry.delete(&function).await;
            }
            return Err(WhiskError::Internal(format!(
                "cannot keep the action {name}: {e}"
            )));
        }
        if had_function && kind == Kind::Sequence {
            let _ = self.registry.delete(&function).await;
        }
        let action = Arc::new(action);
        self.keep(action.clone());
        Ok(action)
    }

    pub async fn delete_action(&self, name: &str) -> Result<Arc<Action>, WhiskError> {
        let _guard = self.writes.lock().await;
        let action = self.action(name).ok_or(WhiskError::NotFound)?;
        std::fs::remove_file(self.action_path(name))
            .map_err(|e| WhiskError::Internal(format!("cannot delete the action {name}: {e}")))?;
        self.forget(name);
        if !matches!(action.kind(), Ok(Kind::Sequence)) {
            match self.registry.delete(&function_name(name)?).await {
                Ok(()) | Err(ManageError::NotFound(_)) => {}
                Err(e) => {
                    tracing::warn!(action = name, error = %e, "cannot delete the action's function")
                }
            }
        }
        Ok(action)
    }

    /// The layer version ARNs `kind` brings, each checked to exist on this host: an action
    /// of a kind whose layer is not published is refused, naming the layer.
    fn kind_layers(&self, kind: &str) -> Result<Vec<String>, WhiskError> {
        let layers = self.registry.layers();
        let arns: Vec<String> = self
            .kinds
            .layers(kind)
            .iter()
            .map(|l| match l {
                KindLayer::Arn(arn) => arn.to_arn(),
                KindLayer::Local(name, version) => layers.version_arn(name, *version),
            })
            .collect();
        layers.resolve(&arns).map_err(|e| {
            WhiskError::BadRequest(format!(
                "The kind '{kind}' runs with a Lambda layer this host does not have: {e}"
            ))
        })?;
        Ok(arns)
    }

    /// Every component must be an action of this namespace, and not the sequence itself.
    fn check_sequence(&self, action: &Action) -> Result<(), WhiskError> {
        for component in action.exec.components.iter().flatten() {
            let name = self.component_name(component)?;
            if name == action.name {
                return Err(WhiskError::BadRequest(
                    "Sequence may not refer to itself.".into(),
                ));
            }
            if self.action(&name).is_none() {
                return Err(WhiskError::BadRequest(format!(
                    "Sequence component does not exist: {component}"
                )));
            }
        }
        Ok(())
    }

    /// `/NS/NAME`, `/NS/default/NAME`, `NS/NAME` or `NAME` → NAME, for this namespace.
    fn component_name(&self, component: &str) -> Result<String, WhiskError> {
        let parts: Vec<&str> = component.trim_start_matches('/').split('/').collect();
        let (namespace, name) = match parts.as_slice() {
            [name] => (None, *name),
            [ns, name] | [ns, "default", name] => (Some(*ns), *name),
            _ => {
                return Err(WhiskError::BadRequest(format!(
                    "Sequence component does not exist: {component} (packages are not supported)"
                )))
            }
        };
        if namespace.is_some_and(|ns| !self.is_own_namespace(ns)) {
            return Err(WhiskError::BadRequest(format!(
                "Sequence component does not exist: {component}"
            )));
        }
        Ok(name.to_owned())
    }

    /// Loads the action's code in a scratch function (the same runtime, user and limits)
    /// without running it.
    async fn check_code(
        &self,
        action: &Action,
        kind: Kind,
        runtime: &Target,
        zip: &str,
    ) -> Result<(), WhiskError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let scratch = FunctionName::parse(&format!("owcheck-{}", &id[..16]))
            .map_err(|e| WhiskError::Internal(e.to_string()))?;
        self.registry
            .create(with_timeout_ms(
                action,
                create_request(&scratch, action, kind, runtime, zip.to_owned()),
            )?)
            .await
            .map_err(whisk_error)?;
        let answer = self
            .call(&scratch, &json!({ "check": true }), RequestId::new())
            .await;
        if let Err(e) = self.registry.delete(&scratch).await {
            tracing::warn!(function = %scratch, error = %e, "cannot delete a scratch function");
        }
        let response = answer?;
        if response.function_error {
            return Err(WhiskError::BadRequest(format!(
                "The action's code could not be loaded: {}",
                String::from_utf8_lossy(&response.body)
            )));
        }
        match AdapterAnswer::parse(&response.body).map(|a| a.outcome) {
            Some(lambkin_proto::openwhisk::AdapterOutcome::InitFailed(message)) => {
                Err(WhiskError::BadRequest(message))
            }
            Some(_) => Ok(()),
            None => Err(WhiskError::Internal(
                "the action adapter gave no answer".into(),
            )),
        }
    }

    /// One Lambda invocation of `function`, waited for.
    async fn call(
        &self,
        function: &FunctionName,
        event: &Value,
        request_id: RequestId,
    ) -> Result<FunctionResponse, WhiskError> {
        let (handle, _) = self.registry.lookup(function).ok_or_else(|| {
            WhiskError::Internal(format!("the action's function {function} is missing"))
        })?;
        let (tx, rx) = oneshot::channel();
        handle
            .submit(Invocation {
                request_id,
                payload: Bytes::from(event.to_string()),
                content_type: None,
                client_context: None,
                trace_id: None,
                want_log_tail: false,
                completion: Completion::Caller(tx),
            })
            .await
            .map_err(refused)?;
        rx.await
            .map_err(|_| WhiskError::Internal("the activation was lost".into()))?
            .map_err(|abort| match abort {
                InvocationAbort::ShuttingDown => WhiskError::Unavailable,
                InvocationAbort::FunctionRemoved => WhiskError::Conflict(
                    "Action could not be found or may have been deleted.".into(),
                ),
                InvocationAbort::Remote(why) => WhiskError::Internal(why),
            })
    }

    /// Runs `action` with `params` over its defaults and keeps the activation's record.
    pub async fn activate(
        self: Arc<Self>,
        action: Arc<Action>,
        params: Map<String, Value>,
        id: uuid::Uuid,
    ) -> Result<Arc<Activation>, WhiskError> {
        self.activate_nested(action, params, id, 0).await
    }

    fn activate_nested(
        self: Arc<Self>,
        action: Arc<Action>,
        params: Map<String, Value>,
        id: uuid::Uuid,
        depth: usize,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Arc<Activation>, WhiskError>> + Send>,
    > {
        Box::pin(async move {
            let params = action.merged_parameters(params);
            let activation = match action.kind()? {
                Kind::Sequence => self.run_sequence(&action, params, id, depth).await?,
                Kind::Node | Kind::Python | Kind::Native => {
                    self.run_code(&action, params, id).await?
                }
            };
            if self.sync_blocking_records {
                Ok(self.activations.record_durable(activation).await)
            } else {
                Ok(self.activations.record(activation))
            }
        })
    }

    /// The Lambda event an activation of `action` is: the parameters as `value`, the
    /// `__OW_*` values as `env` (the adapter sets them).
    fn event(&self, action: &Action, params: Map<String, Value>, activation_id: &str) -> Value {
        json!({
            "value": params,
            "env": {
                "__OW_API_HOST": self.api_host,
                "__OW_API_KEY": self.key.auth(),
                "__OW_NAMESPACE": self.namespace,
                "__OW_ACTION_NAME": format!("/{}/{}", self.namespace, action.name),
                "__OW_ACTION_VERSION": action.version,
                "__OW_ACTIVATION_ID": activation_id,
                "__OW_TRANSACTION_ID": activation_id,
            },
        })
    }

    async fn run_code(
        &self,
        action: &Action,
        params: Map<String, Value>,
        id: uuid::Uuid,
    ) -> Result<Activation, WhiskError> {
        let activation_id = id.simple().to_string();
        let event = self.event(action, params, &activation_id);
        let start_ms = now_ms();
        let response = self
            .call(
                &function_name(&action.name)?,
                &event,
                RequestId::from_stored(id.hyphenated().to_string()),
            )
            .await?;
        Ok(self.activation_of(
            &Ran::of(action),
            activation_id,
            start_ms,
            now_ms(),
            &response,
        ))
    }

    /// Accepts a non-blocking activation of a code action: its event is stored durably as a
    /// Lambda `Event` invocation (the same queue and store, so it runs after a restart too),
    /// with what its record needs, sealed with the key; when it has run, [`StoredActivations`]
    /// writes the record (synced) before the store forgets the event.
    pub async fn enqueue(
        &self,
        action: &Action,
        params: Map<String, Value>,
        id: uuid::Uuid,
    ) -> Result<(), WhiskError> {
        let activation_id = id.simple().to_string();
        let request_id = RequestId::from_stored(id.hyphenated().to_string());
        let params = action.merged_parameters(params);
        let mut event = self.event(action, params, &activation_id);
        let stored = StoredActivation {
            ran: Ran::of(action),
            accepted_ms: now_ms(),
            seal: self.key.seal(request_id.as_str()),
        };
        if let Some(fields) = event.as_object_mut() {
            fields.insert(
                STORED_ACTIVATION.into(),
                serde_json::to_value(&stored).map_err(|e| WhiskError::Internal(e.to_string()))?,
            );
        }
        let function = function_name(&action.name)?;
        let (handle, _) = self.registry.lookup(&function).ok_or_else(|| {
            WhiskError::Internal(format!("the action's function {function} is missing"))
        })?;
        let payload = Bytes::from(event.to_string());
        let store = self.registry.store().clone();
        let seq = store
            .persist_event(function, request_id.to_string(), payload.clone())
            .await
            .map_err(|e| WhiskError::Internal(format!("cannot keep the activation: {e}")))?;
        let submitted = handle
            .submit(Invocation {
                request_id,
                payload,
                content_type: None,
                client_context: None,
                trace_id: None,
                want_log_tail: false,
                completion: Completion::Event {
                    seq,
                    store: store.clone(),
                    sink: self.registry.event_sink(),
                },
            })
            .await;
        match submitted {
            Ok(()) => Ok(()),
            Err(refusal) => {
                store.complete_event(seq).await;
                Err(refused(refusal))
            }
        }
    }

    /// Writes the record of a stored activation that has run (see [`OpenWhisk::enqueue`]);
    /// an event without a valid seal (made through the Lambda API) writes none.
    async fn finish_stored(
        &self,
        request_id: &RequestId,
        payload: &Bytes,
        response: &FunctionResponse,
    ) {
        let Some(stored) = serde_json::from_slice::<Value>(payload)
            .ok()
            .and_then(|mut v| v.get_mut(STORED_ACTIVATION).map(Value::take))
        else {
            return;
        };
        let stored = match serde_json::from_value::<StoredActivation>(stored) {
            Ok(s) if self.key.sealed(request_id.as_str(), &s.seal) => s,
            _ => {
                tracing::warn!(%request_id, "an Event invocation claims to be an OpenWhisk activation without the key's seal: no record written");
                return;
            }
        };
        let Ok(id) = uuid::Uuid::parse_str(request_id.as_str()) else {
            return;
        };
        let activation = self.activation_of(
            &stored.ran,
            id.simple().to_string(),
            stored.accepted_ms,
            now_ms(),
            response,
        );
        self.activations.record_durable(activation).await;
    }

    /// The record of an activation of `ran` that started at `start_ms` and ended with
    /// `response`.
    fn activation_of(
        &self,
        ran: &Ran,
        activation_id: String,
        start_ms: u64,
        end_ms: u64,
        response: &FunctionResponse,
    ) -> Activation {
        let path = format!("{}/{}", self.namespace, ran.name);
        let timeout = ran.limits.timeout;
        let (outcome, answer) = if response.function_error {
            let error: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
            let field = |k: &str| {
                error
                    .get(k)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            };
            let (error_type, message) = (field("errorType"), field("errorMessage"));
            (
                ActivationResponse::classify(Some((&error_type, &message)), None, timeout),
                None,
            )
        } else {
            let answer = AdapterAnswer::parse(&response.body);
            (
                ActivationResponse::classify(None, answer.as_ref(), timeout),
                answer,
            )
        };
        let timed_out = outcome.result.get("error").and_then(Value::as_str)
            == Some(messages::timed_out(timeout).as_str());
        let mut annotations = vec![
            kv("path", json!(path)),
            kv(
                "waitTime",
                json!(answer
                    .as_ref()
                    .and_then(|a| a.started_ms)
                    .map_or(0, |s| s.saturating_sub(start_ms))),
            ),
            kv("kind", json!(ran.kind)),
            kv("timeout", json!(timed_out)),
            kv("limits", json!(ran.limits)),
        ];
        if let Some(init) = answer.as_ref().and_then(|a| a.init_ms) {
            annotations.push(kv("initTime", json!(init)));
        }
        let logs = answer
            .map(|a| log_lines(&a, ran.limits.log_bytes()))
            .unwrap_or_default();
        Activation {
            namespace: self.namespace.clone(),
            name: ran.name.clone(),
            version: ran.version.clone(),
            subject: self.key.uuid.clone(),
            activation_id,
            start_ms,
            end_ms,
            response: outcome,
            logs,
            annotations,
        }
    }

    /// The components in order, each one's result the next one's parameters; the first that
    /// fails ends the sequence with its response. The sequence's logs are the components'
    /// activation ids.
    async fn run_sequence(
        self: &Arc<Self>,
        action: &Action,
        params: Map<String, Value>,
        id: uuid::Uuid,
        depth: usize,
    ) -> Result<Activation, WhiskError> {
        let start_ms = now_ms();
        let mut logs = Vec::new();
        let mut params = params;
        let mut response = ActivationResponse::success(Value::Object(params.clone()));
        for component in action.exec.components.iter().flatten() {
            let found = self
                .component_name(component)
                .ok()
                .and_then(|n| self.action(&n));
            let Some(next) = found.filter(|_| depth < MAX_SEQUENCE_DEPTH) else {
                response = ActivationResponse::error(
                    Outcome::ApplicationError,
                    json!("Sequence component does not exist."),
                );
                break;
            };
            let step = self
                .clone()
                .activate_nested(next, params, new_activation_id(), depth + 1)
                .await?;
            logs.push(step.activation_id.clone());
            response = step.response.clone();
            if response.outcome != Outcome::Success {
                break;
            }
            params = match &response.result {
                Value::Object(fields) => fields.clone(),
                _ => Map::new(),
            };
        }
        let path = format!("{}/{}", self.namespace, action.name);
        Ok(Activation {
            namespace: self.namespace.clone(),
            name: action.name.clone(),
            version: action.version.clone(),
            subject: self.key.uuid.clone(),
            activation_id: id.simple().to_string(),
            start_ms,
            end_ms: now_ms(),
            response,
            logs,
            annotations: vec![
                kv("topmost", json!(depth == 0)),
                kv("path", json!(path)),
                kv("waitTime", json!(0)),
                kv("kind", json!("sequence")),
                kv("limits", json!(action.limits)),
            ],
        })
    }

    /// Lets the pending activation records reach the disk.
    pub fn shutdown(&self) {
        self.unbind_all();
        self.activations.shutdown();
    }
}

/// The one place a function's refusal becomes OpenWhisk's error.
fn refused(refusal: Refusal) -> WhiskError {
    match refusal {
        Refusal::QueueFull { max_queue } => WhiskError::TooManyRequests(format!(
            "the action's queue of {max_queue} activations is full"
        )),
        Refusal::ShuttingDown => WhiskError::Unavailable,
    }
}

/// The event field a stored non-blocking activation carries (the adapter reads only `value`
/// and `env`).
const STORED_ACTIVATION: &str = "lambkinActivation";

/// What an activation's record says of the action that ran, as it was when it was accepted.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Ran {
    name: String,
    version: String,
    kind: String,
    limits: lambkin_proto::openwhisk::Limits,
}

impl Ran {
    fn of(action: &Action) -> Self {
        Self {
            name: action.name.clone(),
            version: action.version.clone(),
            kind: action.exec.kind.clone(),
            limits: action.limits,
        }
    }
}

/// A stored non-blocking activation's part of its event.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct StoredActivation {
    ran: Ran,
    accepted_ms: u64,
    /// [`WhiskKey::seal`] of the request id.
    seal: String,
}

/// Takes the outcome of stored non-blocking activations for the OpenWhisk side (held weakly:
/// the registry outlives nothing of it).
#[derive(Debug)]
pub struct StoredActivations(std::sync::Weak<OpenWhisk>);

impl StoredActivations {
    pub fn new(ow: &Arc<OpenWhisk>) -> Arc<Self> {
        Arc::new(Self(Arc::downgrade(ow)))
    }
}

impl crate::lambda::invocation::EventSink for StoredActivations {
    fn finished<'a>(
        &'a self,
        request_id: &'a RequestId,
        payload: &'a Bytes,
        response: &'a FunctionResponse,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            if let Some(ow) = self.0.upgrade() {
                ow.finish_stored(request_id, payload, response).await;
            }
        })
    }
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value,
    }
}

/// The activation's log lines, within its `logs` limit (OpenWhisk's truncation notice last).
fn log_lines(answer: &AdapterAnswer, limit: usize) -> Vec<String> {
    let mut lines = Vec::with_capacity(answer.logs.len());
    let mut used = 0usize;
    for entry in &answer.logs {
        let line = entry.to_line();
        used += line.len();
        if used > limit {
            lines.push(format!(
                "Logs were truncated because the total bytes size exceeds the limit of {limit} bytes."
            ));
            break;
        }
        lines.push(line);
    }
    lines
}

/// The action's timeout to the millisecond, for the function (its `Timeout` in seconds is
/// rounded up).
/// The annotation that sets where an action's activations run: `{"policy", "target",
/// "functionName", "qualifier", "overflowQueueThreshold"}`, as a Lambda component's
/// `delegation` (README, "Delegation to remote targets"). Without it: here.
pub const DELEGATION_ANNOTATION: &str = "delegation";

/// The action's function's `Greengrass.Delegation`, from its annotation (none: `local`, so
/// removing the annotation brings the action back here). Its values are checked with the
/// function's other settings; the target's name by the registry.
fn delegation(action: &Action) -> Result<Value, WhiskError> {
    let Some(value) = action.annotation(DELEGATION_ANNOTATION) else {
        return Ok(json!({ "Policy": "local" }));
    };
    let Some(object) = value.as_object() else {
        return Err(WhiskError::BadRequest(format!(
            "the {DELEGATION_ANNOTATION} annotation must be an object such as \
             {{\"policy\":\"remote\",\"target\":\"NAME\"}}, not {value}"
        )));
    };
    let mut settings = Map::new();
    for (key, member) in object {
        let name = match key.as_str() {
            "policy" => "Policy",
            "target" => "Target",
            "functionName" => "FunctionName",
            "qualifier" => "Qualifier",
            "overflowQueueThreshold" => "OverflowQueueThreshold",
            other => {
                return Err(WhiskError::BadRequest(format!(
                    "the {DELEGATION_ANNOTATION} annotation takes policy, target, functionName, \
                     qualifier and overflowQueueThreshold, not {other:?}"
                )))
            }
        };
        settings.insert(name.to_owned(), member.clone());
    }
    let settings = Value::Object(settings);
    serde_json::from_value::<lambkin_proto::lambda::function::Delegation>(settings.clone())
        .map_err(|e| {
            WhiskError::BadRequest(format!("the {DELEGATION_ANNOTATION} annotation: {e}"))
        })?;
    Ok(settings)
}

/// `request` (a function's settings) with `Greengrass.Delegation` set.
fn with_delegation(mut request: Value, delegation: Value) -> Value {
    if let Some(greengrass) = request.get_mut("Greengrass").and_then(Value::as_object_mut) {
        greengrass.insert("Delegation".into(), delegation);
    }
    request
}

fn timeout_ms(action: &Action) -> Option<u32> {
    u32::try_from(action.limits.timeout).ok()
}

/// A function made for an action times out at the action's millisecond timeout.
fn with_timeout_ms(
    action: &Action,
    request: Value,
) -> Result<lambkin_proto::lambda::management::CreateFunctionRequest, WhiskError> {
    let mut request: lambkin_proto::lambda::management::CreateFunctionRequest =
        parse_request(request)?;
    request.timeout_ms = timeout_ms(action);
    Ok(request)
}

fn parse_request<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, WhiskError> {
    serde_json::from_value(value).map_err(|e| WhiskError::Internal(e.to_string()))
}

/// The instances an action's function may run at once: an instance runs one activation at a
/// time, so an action of concurrency N gets N × [`MAX_INSTANCES`], and N times the
/// activations at once that an action of concurrency 1 gets.
pub fn max_instances(limits: &lambkin_proto::openwhisk::Limits) -> u32 {
    MAX_INSTANCES.saturating_mul(limits.concurrency.max(1))
}

/// What an action's kind runs on: the Lambda runtime and the layers (ARNs) over its `/opt`.
#[derive(Debug, Clone)]
struct Target {
    runtime: String,
    layers: Vec<String>,
}

/// The function's settings from the action's: its runtime and layers, the adapter as handler,
/// the timeout rounded up to whole seconds (as the Lambda API shows it; the function times out
/// at the action's milliseconds, [`timeout_ms`]), the memory, on-demand instances.
fn function_config(action: &Action, kind: Kind, target: &Target) -> Value {
    json!({
        "Runtime": target.runtime,
        "Layers": target.layers,
        "Handler": match kind {
            Kind::Native => "__openwhisk_actionloop.handler",
            Kind::Node | Kind::Python | Kind::Sequence => "__openwhisk_adapter.handler",
        },
        "Timeout": action.limits.timeout.div_ceil(1000),
        "MemorySize": action.limits.memory,
        "Description": format!("OpenWhisk action /{}/{}", action.namespace, action.name),
        "Greengrass": {
            "Pinned": false,
            "MaxInstancesCount": max_instances(&action.limits),
        },
    })
}

fn create_request(
    function: &FunctionName,
    action: &Action,
    kind: Kind,
    runtime: &Target,
    zip: String,
) -> Value {
    let mut request = function_config(action, kind, runtime);
    if let Some(obj) = request.as_object_mut() {
        obj.insert("FunctionName".into(), json!(function.as_str()));
        obj.insert("Code".into(), json!({ "ZipFile": zip }));
    }
    request
}

/// An entry of the function's zip: a file (name, content, mode) or a link (name, target).
enum Packed {
    File(String, Vec<u8>, u32),
    Link(String, String),
}

/// The function's code: the adapters, the action's code and its entry point (base64 zip). A
/// zip action's entries go under `__openwhisk_action/` (Node: `package.json` or `index.js` at
/// its root; Python: `__main__.py`), a native action's under `__openwhisk_native/` (a zip's
/// entries keep their modes; a script becomes `exec`, 0755).
fn code_zip(action: &Action, kind: Kind) -> Result<String, WhiskError> {
    use std::io::Write;
    let b64 = &base64::engine::general_purpose::STANDARD;
    let code = action.exec.code.as_deref().unwrap_or_default();
    let meta = json!({
        "main": action.main(),
        "kind": action.exec.kind,
        "binary": action.exec.binary,
    })
    .to_string();
    let mut files: Vec<Packed> = vec![
        Packed::File("__openwhisk_adapter.js".into(), ADAPTER_JS.into(), 0o644),
        Packed::File("__openwhisk_adapter.py".into(), ADAPTER_PY.into(), 0o644),
        Packed::File(
            "__openwhisk_actionloop.py".into(),
            ACTIONLOOP_PY.into(),
            0o644,
        ),
        Packed::File("__openwhisk_action.json".into(), meta.into_bytes(), 0o644),
    ];
    match (kind, action.exec.binary) {
        (Kind::Python, false) => files.push(Packed::File(
            "__openwhisk_action.py".into(),
            code.into(),
            0o644,
        )),
        (Kind::Node | Kind::Sequence, false) => files.push(Packed::File(
            "__openwhisk_action.js".into(),
            code.into(),
            0o644,
        )),
        (Kind::Native, false) => files.push(Packed::File(
            "__openwhisk_native/exec".into(),
            code.into(),
            0o755,
        )),
        (Kind::Python, true) => {
            unzip_into(code, "__openwhisk_action", &["__main__.py"], &mut files)?
        }
        (Kind::Node | Kind::Sequence, true) => unzip_into(
            code,
            "__openwhisk_action",
            &["package.json", "index.js"],
            &mut files,
        )?,
        (Kind::Native, true) => unzip_into(code, "__openwhisk_native", &["exec"], &mut files)?,
    }
    let zip = (|| -> zip::result::ZipResult<Vec<u8>> {
        let mut buf = std::io::Cursor::new(Vec::new());
        let mut w = zip::ZipWriter::new(&mut buf);
        for packed in &files {
            match packed {
                Packed::File(name, content, mode) => {
                    let options = zip::write::SimpleFileOptions::default().unix_permissions(*mode);
                    w.start_file(name.as_str(), options)?;
                    w.write_all(content)?;
                }
                Packed::Link(name, target) => {
                    w.add_symlink(
                        name.as_str(),
                        target.as_str(),
                        zip::write::SimpleFileOptions::default(),
                    )?;
                }
            }
        }
        w.finish()?;
        Ok(buf.into_inner())
    })()
    .map_err(|e| WhiskError::Internal(format!("cannot pack the action: {e}")))?;
    Ok(b64.encode(zip))
}

/// Adds the entries of the base64 zip `code` under `prefix/`, which must hold one of `needs`
/// at its root (an `exec` becomes executable). The zip is read by the Lambda code's archive
/// planner ([`crate::lambda::code::read_within`]): an entry out of its directory, through a
/// link, a link out or to a link, a duplicate, or more than a function's unzipped limits is
/// refused, naming it.
fn unzip_into(
    code: &str,
    prefix: &str,
    needs: &[&str],
    files: &mut Vec<Packed>,
) -> Result<(), WhiskError> {
    use crate::lambda::code::ArchiveEntry;
    let bad = |why: String| WhiskError::BadRequest(format!("exec.code: {why}"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(code.trim())
        .map_err(|e| bad(format!("not base64: {e}")))?;
    let entries = crate::lambda::code::read_within(&bytes, crate::lambda::code::Limits::default())
        .map_err(|e| bad(e.to_string()))?;
    let at_root = |name: &str| {
        entries.iter().any(|(path, entry)| {
            path == std::path::Path::new(name) && !matches!(entry, ArchiveEntry::Dir)
        })
    };
    if !needs.iter().any(|n| at_root(n)) {
        return Err(bad(format!(
            "the zip must hold {} at its root",
            needs.join(" or ")
        )));
    }
    for (path, entry) in entries {
        let name = format!("{prefix}/{}", path.display());
        match entry {
            ArchiveEntry::Dir => {}
            ArchiveEntry::Link { target } => files.push(Packed::Link(name, target)),
            ArchiveEntry::File { mode, content } => {
                // Readable by the function's user whatever the zip says (an archiver may
                // record 0600, or no mode at all).
                let mode = if mode == 0 { 0o644 } else { mode | 0o644 };
                let mode = if path == std::path::Path::new("exec") {
                    mode | 0o755
                } else {
                    mode
                };
                files.push(Packed::File(name, content, mode));
            }
        }
    }
    Ok(())
}
