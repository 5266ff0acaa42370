//! The operations: each request, parsed into its shape and authorized (`greengrass-ipc.md`
//! §4, §5), carried out against the host's services. One function per operation; the one
//! `match` on [`Operation`] in [`dispatch`] decides what each is.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::broadcast;

use lambkin_proto::ipc::shapes::components::{
    caller_not_found, component_not_found, ComponentDetails, ComponentRequest,
    GetComponentDetailsResponse, ListComponentsResponse, RequestStatus, RestartComponentResponse,
    StopComponentResponse, UpdateStateRequest,
};
use lambkin_proto::ipc::shapes::configuration::{
    key_not_found, stale_update, ConfigurationUpdateEvent, ConfigurationUpdateEvents,
    GetConfigurationRequest, GetConfigurationResponse, SubscribeToConfigurationUpdateRequest,
    UpdateConfigurationRequest,
};
use lambkin_proto::ipc::shapes::deployments::{
    CreateLocalDeploymentRequest, CreateLocalDeploymentResponse, FailureHandlingPolicy,
    GetLocalDeploymentStatusRequest, GetLocalDeploymentStatusResponse,
    ListLocalDeploymentsResponse, LocalDeployment,
};
use lambkin_proto::ipc::shapes::iot_core::{
    IoTCoreMessage, MqttMessage, PublishToIoTCoreRequest, Qos, SubscribeToIoTCoreRequest,
};
use lambkin_proto::ipc::shapes::pubsub::{
    MessagePayload, MessageRef, PublishMessage, PublishToTopicRequest, SubscribeToTopicRequest,
};
use lambkin_proto::ipc::shapes::token::{
    token_not_found, ValidateAuthorizationTokenRequest, ValidateAuthorizationTokenResponse,
};
use lambkin_proto::ipc::shapes::{self, parse_request};
use lambkin_proto::ipc::{authorize, IpcError, Operation, Request};
use lambkin_proto::recipe::ComponentName;

use super::tokens::Tokens;
use crate::components::configs::UpdateRefused;
use crate::components::deployment::{ConfigUpdate, DeploymentRequest, FailurePolicy};
use crate::components::engine::{AcceptError, ControlError, Engine};
use crate::components::updates::UpdateNotice;
use crate::metrics::counters::Gauge;
use crate::mqtt::{IncomingMessage, Mqtt, OutgoingMessage};
use crate::pubsub::queue::Inbox;
use crate::pubsub::{self, Client, Filter, Group, PubSubHandle, Subscription, Topic};
use crate::store::DeploymentRecord;
use lambkin_proto::ipc::shapes::updates::{
    ComponentUpdatePolicyEvents, DeferComponentUpdateRequest, PostComponentUpdateEvent,
    PreComponentUpdateEvent,
};

/// Configuration-update events waiting for slow connections before the oldest are lost.
const CONFIG_EVENTS: usize = 256;

/// What the operations work with; shared by every connection.
#[derive(Debug)]
pub struct Services {
    pub pubsub: PubSubHandle,
    pub engine: Engine,
    pub tokens: Tokens,
    /// The broker connection, when `[mqtt]` is configured.
    pub mqtt: Option<Mqtt>,
    config_updates: broadcast::Sender<ConfigurationChanged>,
    /// The latest UpdateConfiguration timestamp per component, for the stale check.
    modified: Mutex<HashMap<String, f64>>,
    /// Each component's subscription byte budget, shared by its connections.
    budgets: Mutex<HashMap<String, std::sync::Weak<Mutex<crate::pubsub::Budget>>>>,
    /// Connections open, for `/metrics`.
    pub connections: Arc<Gauge>,
}

/// One configuration node changed by UpdateConfiguration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigurationChanged {
    pub component: String,
    /// Relative to the component's configuration.
    pub key_path: Vec<String>,
}

/// A future that answers an operation later: one that waits on the engine.
pub type Pending = Pin<Box<dyn Future<Output = Result<Vec<u8>, IpcError>> + Send>>;

/// How an operation ends.
pub enum Outcome {
    /// Answer now.
    Reply(Result<Vec<u8>, IpcError>),
    /// Answer when this resolves, without holding the connection up meanwhile.
    Later(Pending),
    /// SubscribeToTopic: respond, then deliver each message as an event.
    Topic(Subscription),
    /// SubscribeToIoTCore: respond, then deliver each broker message as an event.
    IoTCore(Inbox<IncomingMessage>),
    /// SubscribeToConfigurationUpdate: respond, then send an event for each change under
    /// `key_path` of `component`.
    Configuration {
        component: String,
        key_path: Vec<String>,
    },
    /// SubscribeToComponentUpdates: respond, then send each deployment's notices.
    ComponentUpdates,
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Reply(result) => f.debug_tuple("Reply").field(result).finish(),
            Self::Later(_) => f.write_str("Later(..)"),
            Self::Topic(subscription) => f.debug_tuple("Topic").field(subscription).finish(),
            Self::IoTCore(_) => f.write_str("IoTCore(..)"),
            Self::Configuration {
                component,
                key_path,
            } => f
                .debug_struct("Configuration")
                .field("component", component)
                .field("key_path", key_path)
                .finish(),
            Self::ComponentUpdates => f.write_str("ComponentUpdates"),
        }
    }
}

impl Services {
    pub fn new(pubsub: PubSubHandle, engine: Engine, tokens: Tokens) -> Self {
        let (config_updates, _) = broadcast::channel(CONFIG_EVENTS);
        Self {
            pubsub,
            engine,
            tokens,
            mqtt: None,
            config_updates,
            modified: Mutex::default(),
            budgets: Mutex::default(),
            connections: Arc::default(),
        }
    }

    /// Counts open connections on `gauge` (the host's `/metrics` reads it).
    pub fn with_connection_gauge(mut self, gauge: Arc<Gauge>) -> Self {
        self.connections = gauge;
        self
    }

    /// The byte budget every subscription queue of `component` counts against, over all
    /// its connections: many connections do not multiply what one component can make the
    /// host hold. Kept while one of its connections is.
    pub fn subscription_budget(&self, component: &str) -> crate::pubsub::SharedBudget {
        let mut budgets = self.budgets.lock().unwrap_or_else(PoisonError::into_inner);
        budgets.retain(|_, b| b.strong_count() > 0);
        if let Some(budget) = budgets.get(component).and_then(std::sync::Weak::upgrade) {
            return budget;
        }
        let budget = Arc::new(Mutex::new(crate::pubsub::Budget::new(SUBSCRIPTION_BYTES)));
        budgets.insert(component.to_owned(), Arc::downgrade(&budget));
        budget
    }

    /// IoT Core operations go to `mqtt`.
    pub fn with_mqtt(mut self, mqtt: Option<Mqtt>) -> Self {
        self.mqtt = mqtt;
        self
    }

    pub fn configuration_changes(&self) -> broadcast::Receiver<ConfigurationChanged> {
        self.config_updates.subscribe()
    }

    fn authorize(
        &self,
        principal: &ComponentName,
        operation: Operation,
        resource: Option<&str>,
    ) -> Result<(), IpcError> {
        let policy = self.engine.access_control(principal.as_str());
        authorize(&policy, principal, operation, resource)
    }
}

/// Carries out one request. A subscription's queue joins `group`, the connection's.
pub async fn dispatch(services: &Arc<Services>, request: Request, group: &Arc<Group>) -> Outcome {
    use Operation::*;
    let Request {
        operation,
        principal,
        payload,
        ..
    } = request;
    let s = services;
    let p = &principal;
    let reply = Outcome::Reply;
    match operation {
        PublishToTopic => reply(publish_to_topic(s, p, &payload).await),
        SubscribeToTopic => match subscribe_to_topic(s, p, &payload, group).await {
            Ok(subscription) => Outcome::Topic(subscription),
            Err(e) => reply(Err(e)),
        },
        PublishToIoTCore => match publish_to_iot_core(s, p, &payload) {
            Ok(pending) => Outcome::Later(pending),
            Err(e) => reply(Err(e)),
        },
        SubscribeToIoTCore => match subscribe_to_iot_core(s, p, &payload, group).await {
            Ok(messages) => Outcome::IoTCore(messages),
            Err(e) => reply(Err(e)),
        },
        GetConfiguration => reply(get_configuration(s, p, &payload)),
        UpdateConfiguration => match update_configuration(s, p, &payload) {
            Ok(answer) => Outcome::Later(persisted(s, answer)),
            Err(e) => reply(Err(e)),
        },
        SubscribeToConfigurationUpdate => match subscribe_to_configuration(s, p, &payload) {
            Ok((component, key_path)) => Outcome::Configuration {
                component,
                key_path,
            },
            Err(e) => reply(Err(e)),
        },
        UpdateState => reply(update_state(s, p, &payload)),
        GetComponentDetails => reply(get_component_details(s, p, &payload)),
        ListComponents => reply(list_components(s, p)),
        RestartComponent | StopComponent => match control(s, p, operation, &payload) {
            Ok(pending) => Outcome::Later(pending),
            Err(e) => reply(Err(e)),
        },
        CreateLocalDeployment => match create_local_deployment(s, p, &payload) {
            Ok(pending) => Outcome::Later(pending),
            Err(e) => reply(Err(e)),
        },
        GetLocalDeploymentStatus => reply(get_local_deployment_status(s, p, &payload).await),
        ListLocalDeployments => reply(list_local_deployments(s, p).await),
        ValidateAuthorizationToken => reply(validate_authorization_token(s, p, &payload)),
        SubscribeToComponentUpdates => Outcome::ComponentUpdates,
        DeferComponentUpdate => reply(defer_component_update(s, p, &payload)),
        SubscribeToIoTCoreConnectionStatus
        | SubscribeToValidateConfigurationUpdates
        | SendConfigurationValidityReport
        | PauseComponent
        | ResumeComponent
        | CancelLocalDeployment
        | CreateDebugPassword
        | GetSecretValue
        | GetThingShadow
        | UpdateThingShadow
        | DeleteThingShadow
        | ListNamedShadowsForThing
        | PutComponentMetric
        | VerifyClientDeviceIdentity
        | GetClientDeviceAuthToken
        | AuthorizeClientDeviceAction
        | SubscribeToCertificateUpdates => reply(Err(IpcError::not_supported(operation.name()))),
    }
}

fn to_json(value: &impl Serialize) -> Result<Vec<u8>, IpcError> {
    serde_json::to_vec(value).map_err(|e| IpcError::service(format!("cannot encode: {e}")))
}

const EMPTY: &[u8] = b"{}";

fn stopped() -> IpcError {
    IpcError::service("the host is stopping")
}

// ------------------------------------------------------------------ pub/sub ----

async fn publish_to_topic(
    s: &Services,
    principal: &ComponentName,
    payload: &[u8],
) -> Result<Vec<u8>, IpcError> {
    let request: PublishToTopicRequest = parse_request(payload)?;
    s.authorize(
        principal,
        Operation::PublishToTopic,
        request.topic.as_deref(),
    )?;
    let publish = request.validate()?;
    let topic =
        Topic::parse(&publish.topic).map_err(|e| IpcError::invalid_arguments(e.to_string()))?;
    let message = match publish.message {
        MessagePayload::Json(value) => pubsub::Payload::Json(Arc::new(value)),
        MessagePayload::Binary(bytes) => pubsub::Payload::Binary(Bytes::from(bytes)),
    };
    s.pubsub
        .publish(Client::Component(principal.clone()), topic, message)
        .await
        .map_err(|_| stopped())?;
    Ok(EMPTY.to_vec())
}

async fn subscribe_to_topic(
    s: &Services,
    principal: &ComponentName,
    payload: &[u8],
    group: &Arc<Group>,
) -> Result<Subscription, IpcError> {
    let request: SubscribeToTopicRequest = parse_request(payload)?;
    s.authorize(
        principal,
        Operation::SubscribeToTopic,
        request.topic.as_deref(),
    )?;
    let subscribe = request.validate()?;
    let filter =
        Filter::parse(&subscribe.topic).map_err(|e| IpcError::invalid_arguments(e.to_string()))?;
    let mode = match subscribe.receive_mode {
        shapes::pubsub::ReceiveMode::ReceiveAllMessages => pubsub::ReceiveMode::All,
        shapes::pubsub::ReceiveMode::ReceiveMessagesFromOthers => pubsub::ReceiveMode::FromOthers,
    };
    s.pubsub
        .subscribe_in(
            Client::Component(principal.clone()),
            filter,
            mode,
            group.clone(),
        )
        .await
        .map_err(|_| stopped())
}

/// A message as a `SubscriptionResponseMessage` event: the variant that was published, with
/// the concrete topic as `context.topic`. Written from the shared message, without copying
/// it first (a 16 MiB message is otherwise held twice more per subscriber while it is sent).
pub fn subscription_event(message: &pubsub::Message) -> Result<Vec<u8>, IpcError> {
    let payload = match &message.payload {
        pubsub::Payload::Json(value) => MessageRef::Json(value),
        pubsub::Payload::Binary(bytes) => MessageRef::Binary(bytes),
    };
    PublishMessage::encode_delivery(payload, message.topic.as_str())
        .map_err(|e| IpcError::service(format!("cannot encode: {e}")))
}

// ------------------------------------------------------------------ IoT Core ----

fn no_broker() -> IpcError {
    IpcError::service("no MQTT broker is configured")
}

fn publish_to_iot_core(
    s: &Services,
    principal: &ComponentName,
    payload: &[u8],
) -> Result<Pending, IpcError> {
    let request: PublishToIoTCoreRequest = parse_request(payload)?;
    s.authorize(
        principal,
        Operation::PublishToIoTCore,
        request.topic_name.as_deref(),
    )?;
    let publish = request.validate()?;
    let mqtt = s.mqtt.clone().ok_or_else(no_broker)?;
    let traffic = mqtt.counters().traffic.of(principal.as_str());
    Ok(Box::pin(async move {
        let topic = publish.topic_name;
        let bytes = publish.payload.len();
        mqtt.publish(OutgoingMessage {
            topic: topic.clone(),
            at_least_once: publish.qos == Qos::AtLeastOnce,
            payload: publish.payload,
            properties: publish.properties,
        })
        .await
        .map_err(|e| IpcError::service(format!("Publish to topic {topic} failed: {e}")))?;
        traffic.sent_messages.inc();
        traffic.sent_bytes.add(bytes as u64);
        Ok(EMPTY.to_vec())
    }))
}

async fn subscribe_to_iot_core(
    s: &Services,
    principal: &ComponentName,
    payload: &[u8],
    group: &Arc<Group>,
) -> Result<Inbox<IncomingMessage>, IpcError> {
    let request: SubscribeToIoTCoreRequest = parse_request(payload)?;
    s.authorize(
        principal,
        Operation::SubscribeToIoTCore,
        request.topic_name.as_deref(),
    )?;
    let subscribe = request.validate()?;
    let mqtt = s.mqtt.as_ref().ok_or_else(no_broker)?;
    mqtt.subscribe_in(
        &subscribe.topic_name,
        subscribe.qos == Qos::AtLeastOnce,
        group.clone(),
    )
    .await
    .map_err(|e| {
        IpcError::service(format!(
            "Subscribe to topic {} failed with error {e}",
            subscribe.topic_name
        ))
    })
}

/// A broker message as an `IoTCoreMessage` event.
pub fn iot_core_event(message: &IncomingMessage) -> Result<Vec<u8>, IpcError> {
    to_json(&IoTCoreMessage {
        message: MqttMessage {
            topic_name: message.topic.clone(),
            payload: shapes::Blob(message.payload.to_vec()),
            properties: message.properties.clone(),
        },
    })
}

// ------------------------------------------------------------- configuration ----

/// The node at `path` under `root`.
fn node_at<'a>(root: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter()
        .try_fold(root, |node, key| node.as_object()?.get(key))
}

fn get_configuration(
    s: &Services,
    principal: &ComponentName,
    payload: &[u8],
) -> Result<Vec<u8>, IpcError> {
    let request: GetConfigurationRequest = parse_request(payload)?;
    let component = request
        .component_name
        .unwrap_or_else(|| principal.as_str().to_owned());
    let config = s
        .engine
        .configuration(&component)
        .ok_or_else(key_not_found)?;
    let path = request.key_path.unwrap_or_default();
    let value = match (node_at(&config, &path), path.last()) {
        (Some(Value::Object(map)), _) => map.clone(),
        (Some(leaf), Some(name)) => Map::from_iter([(name.clone(), leaf.clone())]),
        _ => return Err(key_not_found()),
    };
    to_json(&GetConfigurationResponse {
        component_name: component,
        value,
    })
}

/// Bytes all of one component's subscriptions may hold queued together, over all its
/// connections ([`Services::subscription_budget`]).
pub(crate) const SUBSCRIPTION_BYTES: usize = 32 * 1024 * 1024;

/// The largest configuration a component may have through UpdateConfiguration (its
/// deployment's configuration and its updates together, as JSON).
pub const MAX_CONFIGURATION_BYTES: usize = 1024 * 1024;

fn update_configuration(
    s: &Services,
    principal: &ComponentName,
    payload: &[u8],
) -> Result<Vec<u8>, IpcError> {
    let request: UpdateConfigurationRequest = parse_request(payload)?;
    let update = request.validate()?;
    let component = principal.as_str();
    // A configuration is kept in memory: its size is bounded, so that one component cannot
    // grow the host or stall its thread with a huge update.
    let update_bytes = serde_json::to_vec(&update.value_to_merge).map_or(usize::MAX, |v| v.len());
    let current_bytes = s
        .engine
        .configuration(component)
        .and_then(|c| serde_json::to_vec(&c).ok())
        .map_or(0, |v| v.len());
    if current_bytes.saturating_add(update_bytes) > MAX_CONFIGURATION_BYTES {
        return Err(IpcError::invalid_arguments(format!(
            "the configuration update of {update_bytes} bytes would take {component}'s configuration over the limit of {MAX_CONFIGURATION_BYTES} bytes"
        )));
    }
    let mut modified = s.modified.lock().unwrap_or_else(PoisonError::into_inner);
    if modified
        .get(component)
        .is_some_and(|latest| update.timestamp < *latest)
    {
        return Err(stale_update());
    }
    // What decides how the host runs the component, or what runs as root, comes from
    // deployments only: a component changing it would be granting itself more.
    let changed = s
        .engine
        .configs()
        .apply_update(component, &update)
        .map_err(|refused| match refused {
            UpdateRefused::Protected(_) => IpcError::unauthorized(refused.to_string()),
            UpdateRefused::NotRunning => {
                IpcError::service(format!("component {component} is not on this device"))
            }
        })?;
    modified.insert(component.to_owned(), update.timestamp);
    drop(modified);
    for key_path in changed {
        // Nobody listening is fine.
        let _ = s.config_updates.send(ConfigurationChanged {
            component: component.to_owned(),
            key_path,
        });
    }
    Ok(EMPTY.to_vec())
}

/// Answers an UpdateConfiguration once the changed configuration is on disk, so that it
/// survives a restart of the host.
fn persisted(s: &Services, answer: Vec<u8>) -> Pending {
    let engine = s.engine.clone();
    Box::pin(async move {
        engine.persist_configuration().await.map_err(|e| {
            IpcError::service(format!(
                "the configuration changed, but the change could not be saved: {e}"
            ))
        })?;
        Ok(answer)
    })
}

fn subscribe_to_configuration(
    s: &Services,
    principal: &ComponentName,
    payload: &[u8],
) -> Result<(String, Vec<String>), IpcError> {
    let request: SubscribeToConfigurationUpdateRequest = parse_request(payload)?;
    let component = request
        .component_name
        .unwrap_or_else(|| principal.as_str().to_owned());
    let config = s
        .engine
        .configuration(&component)
        .ok_or_else(key_not_found)?;
    let key_path = request.key_path.unwrap_or_default();
    node_at(&config, &key_path).ok_or_else(key_not_found)?;
    Ok((component, key_path))
}

/// The event for `change` on a subscription to `key_path` of `component`, if it is under it.
pub fn configuration_event(
    change: &ConfigurationChanged,
    component: &str,
    key_path: &[String],
) -> Option<Result<Vec<u8>, IpcError>> {
    (change.component == component && change.key_path.starts_with(key_path)).then(|| {
        to_json(&ConfigurationUpdateEvents {
            configuration_update_event: ConfigurationUpdateEvent {
                component_name: change.component.clone(),
                key_path: change.key_path.clone(),
            },
        })
    })
}

// ------------------------------------------------------------------ updates ----

fn defer_component_update(
    s: &Services,
    principal: &ComponentName,
    payload: &[u8],
) -> Result<Vec<u8>, IpcError> {
    let request: DeferComponentUpdateRequest = parse_request(payload)?;
    let (deployment_id, recheck_ms) = request.validate()?;
    s.engine.component_updates().defer(
        principal.as_str(),
        deployment_id,
        recheck_ms,
        request.message.as_deref(),
    )?;
    Ok(EMPTY.to_vec())
}

/// The event a SubscribeToComponentUpdates stream sends for `notice`.
pub fn component_update_event(notice: &UpdateNotice) -> Result<Vec<u8>, IpcError> {
    to_json(&match notice {
        UpdateNotice::Pre(id) => ComponentUpdatePolicyEvents {
            pre_update_event: Some(PreComponentUpdateEvent {
                deployment_id: id.clone(),
                is_ggc_restarting: false,
            }),
            post_update_event: None,
        },
        UpdateNotice::Post(id) => ComponentUpdatePolicyEvents {
            pre_update_event: None,
            post_update_event: Some(PostComponentUpdateEvent {
                deployment_id: id.clone(),
            }),
        },
    })
}

// --------------------------------------------------------------- components ----

fn update_state(
    s: &Services,
    principal: &ComponentName,
    payload: &[u8],
) -> Result<Vec<u8>, IpcError> {
    let request: UpdateStateRequest = parse_request(payload)?;
    if !s.engine.list().iter().any(|c| c.name == principal.as_str()) {
        return Err(caller_not_found(principal.as_str()));
    }
    tracing::info!(component = %principal, state = ?request.state, "component reported its state");
    Ok(EMPTY.to_vec())
}

fn details(s: &Services, status: &crate::components::engine::ComponentStatus) -> ComponentDetails {
    ComponentDetails {
        component_name: status.name.clone(),
        version: status.version.clone(),
        state: status.state.into(),
        configuration: s
            .engine
            .configuration(&status.name)
            .and_then(|c| c.as_object().cloned()),
    }
}

fn get_component_details(
    s: &Services,
    principal: &ComponentName,
    payload: &[u8],
) -> Result<Vec<u8>, IpcError> {
    let request: ComponentRequest = parse_request(payload)?;
    s.authorize(
        principal,
        Operation::GetComponentDetails,
        request.component_name.as_deref(),
    )?;
    let name = request.validate()?;
    let status = s
        .engine
        .list()
        .into_iter()
        .find(|c| c.name == name)
        .ok_or_else(|| component_not_found(&name))?;
    to_json(&GetComponentDetailsResponse {
        component_details: details(s, &status),
    })
}

fn list_components(s: &Services, principal: &ComponentName) -> Result<Vec<u8>, IpcError> {
    s.authorize(principal, Operation::ListComponents, Some("*"))?;
    let components = s.engine.list().iter().map(|c| details(s, c)).collect();
    to_json(&ListComponentsResponse { components })
}

fn control(
    s: &Services,
    principal: &ComponentName,
    operation: Operation,
    payload: &[u8],
) -> Result<Pending, IpcError> {
    let request: ComponentRequest = parse_request(payload)?;
    s.authorize(principal, operation, request.component_name.as_deref())?;
    let name = request.validate()?;
    let engine = s.engine.clone();
    Ok(Box::pin(async move {
        let restart = operation == Operation::RestartComponent;
        let result = if restart {
            engine.restart(name.clone()).await
        } else {
            engine.stop(name.clone()).await
        };
        let (status, message) = match result {
            Ok(()) => (RequestStatus::Succeeded, None),
            Err(ControlError::NotFound(_)) => return Err(component_not_found(&name)),
            Err(e @ ControlError::Builtin(_)) => (RequestStatus::Failed, Some(e.to_string())),
            Err(ControlError::Stopped) => return Err(stopped()),
        };
        if restart {
            to_json(&RestartComponentResponse {
                restart_status: status,
                message,
            })
        } else {
            to_json(&StopComponentResponse {
                stop_status: status,
                message,
            })
        }
    }))
}

// -------------------------------------------------------------- deployments ----

fn create_local_deployment(
    s: &Services,
    principal: &ComponentName,
    payload: &[u8],
) -> Result<Pending, IpcError> {
    s.authorize(principal, Operation::CreateLocalDeployment, Some("*"))?;
    let request: CreateLocalDeploymentRequest = parse_request(payload)?;
    let mut update_config = std::collections::BTreeMap::new();
    for (component, update) in request.component_to_configuration.unwrap_or_default() {
        let update: ConfigUpdate = serde_json::from_value(Value::Object(update)).map_err(|e| {
            IpcError::invalid_arguments(format!("componentToConfiguration.{component}: {e}"))
        })?;
        update_config.insert(component, update);
    }
    let deployment = DeploymentRequest {
        recipe_dir: request.recipe_directory_path.map(Into::into),
        artifact_dir: request.artifacts_directory_path.map(Into::into),
        merge: request.root_component_versions_to_add.unwrap_or_default(),
        remove: request.root_components_to_remove.unwrap_or_default(),
        update_config,
        // A local deployment's default (§4.5 of the model).
        failure_policy: match request.failure_handling_policy {
            Some(FailureHandlingPolicy::Rollback) => FailurePolicy::Rollback,
            Some(FailureHandlingPolicy::DoNothing) | None => FailurePolicy::DoNothing,
        },
        run_with: request.component_to_run_with_info.unwrap_or_default(),
        // Local deployments do not notify components (the nucleus's default for them).
        component_update_policy: None,
    };
    let engine = s.engine.clone();
    Ok(Box::pin(async move {
        // Answered once accepted (QUEUED), as the nucleus answers: the caller follows it with
        // GetLocalDeploymentStatus.
        let id = engine.submit(deployment).await.map_err(|e| match e {
            AcceptError::Unrecorded(e) => IpcError::service(e.to_string()),
            AcceptError::Stopped => stopped(),
        })?;
        to_json(&CreateLocalDeploymentResponse {
            deployment_id: Some(id),
        })
    }))
}

fn local_deployment(record: DeploymentRecord) -> LocalDeployment {
    LocalDeployment {
        deployment_id: record.id,
        status: record.status,
        created_on: None,
        deployment_status_details: record.report.map(|r| r.status_details(&record.message)),
    }
}

async fn get_local_deployment_status(
    s: &Services,
    principal: &ComponentName,
    payload: &[u8],
) -> Result<Vec<u8>, IpcError> {
    let request: GetLocalDeploymentStatusRequest = parse_request(payload)?;
    s.authorize(
        principal,
        Operation::GetLocalDeploymentStatus,
        request.deployment_id.as_deref(),
    )?;
    let id = request
        .deployment_id
        .ok_or_else(|| IpcError::invalid_arguments("Deployment ID cannot be empty"))?;
    let record = s
        .engine
        .deployments()
        .await
        .into_iter()
        .find(|d| d.id == id)
        .ok_or_else(|| IpcError::resource_not_found(format!("Cannot find deployment: {id}")))?;
    to_json(&GetLocalDeploymentStatusResponse {
        deployment: local_deployment(record),
    })
}

async fn list_local_deployments(
    s: &Services,
    principal: &ComponentName,
) -> Result<Vec<u8>, IpcError> {
    s.authorize(principal, Operation::ListLocalDeployments, Some("*"))?;
    let local_deployments = s
        .engine
        .deployments()
        .await
        .into_iter()
        .map(local_deployment)
        .collect();
    to_json(&ListLocalDeploymentsResponse { local_deployments })
}

// ------------------------------------------------------------------- tokens ----

fn validate_authorization_token(
    s: &Services,
    principal: &ComponentName,
    payload: &[u8],
) -> Result<Vec<u8>, IpcError> {
    s.authorize(principal, Operation::ValidateAuthorizationToken, None)?;
    let request: ValidateAuthorizationTokenRequest = parse_request(payload)?;
    let token = request.validate()?;
    s.tokens.component(&token).ok_or_else(token_not_found)?;
    to_json(&ValidateAuthorizationTokenResponse { is_valid: true })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_events_only_under_the_subscribed_path() {
        let change = ConfigurationChanged {
            component: "c".into(),
            key_path: vec!["m".into(), "x".into()],
        };
        assert!(configuration_event(&change, "c", &[]).is_some());
        assert!(configuration_event(&change, "c", &["m".into()]).is_some());
        assert!(configuration_event(&change, "c", &["n".into()]).is_none());
        assert!(configuration_event(&change, "d", &[]).is_none());
    }
}
