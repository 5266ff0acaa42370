//! Invoke over MQTT: functions of this host invoked through the broker of `[mqtt]`, with MQTT 5
//! request/response, by the cloud or another device.
//!
//! - Request: a PUBLISH to `lambkin/THING/functions/NAME/invoke` ([`request_filter`]; THING is
//!   the host's `thing_name`), its payload the event, its `Response Topic` where the answer
//!   goes, its `Correlation Data` (optional) copied into the answer. A synchronous
//!   (`RequestResponse`) invocation; requests are not stored (a host that stops drops what it
//!   has not answered, as an HTTP caller's connection would).
//! - Answer: a PUBLISH to the response topic, at the request's QoS (0 or 1), with the
//!   correlation data, published directly (not spooled: an answer whose requester is gone,
//!   or that finds the connection down, is dropped with a warning): the function's
//!   result as its payload; on an error the user property `lambkin-error`, whose value is
//!   `Unhandled` when the function failed (the payload is the function's error document, as
//!   the Invoke API answers with `X-Amz-Function-Error: Unhandled`), or the error's type when
//!   the host refused the request (the payload is `{"errorType", "errorMessage"}`: [`Refused`]).
//!   An answer larger than the broker takes (`[mqtt] max_message_size_bytes`) is replaced by
//!   the error `Function.ResponseSizeTooLarge`, naming its size and the limit.
//! - Who may: the broker's own policies decide who may publish to the request topics, and
//!   `[mqtt_invoke] functions` which functions answer (none by default: the host then does
//!   not subscribe at all). A function not on the list is refused with `AccessDeniedException`.
//! - MQTT 3.1.1 has no response topic or correlation data: the configuration refuses
//!   `[mqtt_invoke] functions` with `[mqtt] version = "mqtt3"` (exit 78), so there is no
//!   fallback to a reply topic in the payload.
//! - A request without a response topic cannot be answered: it is logged and dropped. At most
//!   [`IN_FLIGHT`] requests run at once; one more is answered `TooManyRequestsException`.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use lambkin_proto::ipc::shapes::iot_core::{MqttProperties, UserProperty};
use lambkin_proto::lambda::function::{FunctionName, PayloadEncoding};

use crate::config::MqttInvokeConfig;
use crate::lambda::function::Refusal;
use crate::lambda::invocation::{Completion, FunctionResponse, Invocation, RequestId};
use crate::lambda::registry::Registry;
use crate::mqtt::{IncomingMessage, Mqtt, OutgoingMessage};

/// Requests running at once; past it a request is refused (`TooManyRequestsException`).
pub const IN_FLIGHT: usize = 64;
/// The user property that marks an answer as an error.
pub const ERROR_PROPERTY: &str = "lambkin-error";
/// Its value when the function itself failed.
pub const FUNCTION_ERROR: &str = "Unhandled";

/// The filter of every request topic of the host `thing_name`.
pub fn request_filter(thing_name: &str) -> String {
    format!("lambkin/{thing_name}/functions/+/invoke")
}

/// The function a request topic names (`lambkin/THING/functions/NAME/invoke`).
fn function_of<'a>(topic: &'a str, thing_name: &str) -> Option<&'a str> {
    topic
        .strip_prefix("lambkin/")?
        .strip_prefix(thing_name)?
        .strip_prefix("/functions/")?
        .strip_suffix("/invoke")
        .filter(|name| !name.contains('/'))
}

/// Whether the host answers on `topic`, a requester's choice: not a filter, not a `$` topic
/// (the broker's own), and not a request topic of this scheme (of any device), so that a
/// requester cannot make the host publish its answer as a request to another device.
fn check_response_topic(topic: &str) -> Result<(), &'static str> {
    if topic.is_empty() || topic.contains(['+', '#', '\0']) {
        return Err("empty, or a filter with wildcards");
    }
    if topic.starts_with('$') {
        return Err("a $ topic");
    }
    let levels: Vec<&str> = topic.split('/').collect();
    if let ["lambkin", _, "functions", _, "invoke"] = levels.as_slice() {
        return Err("an invoke request topic");
    }
    Ok(())
}

/// Why a request was refused; [`Refused::error_type`] is the one place each gets its name on
/// the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{name:?} is not a function name")]
    BadName { name: String },
    #[error("function {name} may not be invoked over MQTT: it is not in [mqtt_invoke] functions")]
    NotAllowed { name: String },
    #[error("Function not found: {arn}")]
    NotFound { arn: String },
    #[error("Could not parse request body into json: {0}")]
    NotJson(String),
    #[error("Rate Exceeded: the function's queue of {max_queue} invocations is full")]
    QueueFull { max_queue: u32 },
    #[error("Rate Exceeded: {IN_FLIGHT} requests over MQTT are running already")]
    Busy,
    #[error("the host is shutting down")]
    ShuttingDown,
    #[error("the function was deleted or replaced before the invocation ran")]
    FunctionRemoved,
    /// The function's remote target (`Greengrass.Delegation` `remote`) did not run it.
    #[error("{0}")]
    RemoteTarget(String),
    /// The function's answer is larger than the broker takes (`max_message_size_bytes`).
    #[error(
        "Response payload size ({size} bytes) exceeded maximum allowed payload size ({max} bytes, [mqtt] max_message_size_bytes)."
    )]
    ResponseTooLarge { size: usize, max: u32 },
}

impl Refused {
    /// The Lambda API's name for the error.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::BadName { .. } => "InvalidParameterValueException",
            Self::NotAllowed { .. } => "AccessDeniedException",
            Self::NotFound { .. } => "ResourceNotFoundException",
            Self::NotJson(_) => "InvalidRequestContentException",
            Self::QueueFull { .. } | Self::Busy => "TooManyRequestsException",
            Self::ShuttingDown => "ServiceException",
            Self::FunctionRemoved => "ResourceConflictException",
            Self::RemoteTarget(_) => "RemoteTargetException",
            Self::ResponseTooLarge { .. } => "Function.ResponseSizeTooLarge",
        }
    }

    /// The answer's payload.
    fn document(&self) -> Vec<u8> {
        serde_json::json!({"errorType": self.error_type(), "errorMessage": self.to_string()})
            .to_string()
            .into_bytes()
    }
}

/// What answers a request: the function's response, or a refusal.
type Outcome = Result<FunctionResponse, Refused>;

/// The subscription task; dropping it ends the subscription and every request in flight.
#[derive(Debug)]
pub struct MqttInvoke {
    task: JoinHandle<()>,
}

impl Drop for MqttInvoke {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What every request needs.
struct Context {
    mqtt: Mqtt,
    registry: Registry,
    thing_name: String,
    allowed: BTreeSet<String>,
}

impl MqttInvoke {
    /// Subscribes to the request topics when `config` allows any function; `None` otherwise.
    pub async fn start(
        config: &MqttInvokeConfig,
        mqtt: Option<Mqtt>,
        registry: Registry,
        thing_name: &str,
    ) -> Option<Self> {
        if config.functions.is_empty() {
            return None;
        }
        let Some(mqtt) = mqtt else {
            // The configuration refuses this; here for completeness.
            tracing::warn!("[mqtt_invoke] functions are set but there is no [mqtt] broker");
            return None;
        };
        let filter = request_filter(thing_name);
        let requests = match mqtt.subscribe(&filter, true).await {
            Ok(requests) => requests,
            Err(e) => {
                tracing::error!(%filter, error = %e, "cannot subscribe to the MQTT invoke requests");
                return None;
            }
        };
        tracing::info!(%filter, functions = ?config.functions, "functions may be invoked over MQTT");
        let context = Arc::new(Context {
            mqtt,
            registry,
            thing_name: thing_name.to_owned(),
            allowed: config.functions.iter().cloned().collect(),
        });
        let task = tokio::spawn(async move {
            let mut requests = requests;
            let mut running = JoinSet::new();
            while let Some(request) = requests.recv().await {
                while running.try_join_next().is_some() {}
                let context = context.clone();
                if running.len() >= 2 * IN_FLIGHT {
                    // Refusals are answered while there is room for them too; past that a
                    // flood is dropped, counted in the log, rather than held in memory.
                    tracing::warn!(topic = %request.topic, "too many invoke requests over MQTT at once; dropped, unanswered");
                    continue;
                }
                if running.len() >= IN_FLIGHT {
                    running.spawn(async move { context.refuse(request, Refused::Busy).await });
                    continue;
                }
                running.spawn(async move { context.serve(request).await });
            }
        });
        Some(Self { task })
    }
}

impl Context {
    /// Runs one request and answers it.
    async fn serve(&self, request: IncomingMessage) {
        let Some(reply_to) = self.reply_to(&request) else {
            return;
        };
        let outcome = self.invoke(&request).await;
        if let Err(refused) = &outcome {
            tracing::warn!(topic = %request.topic, error = %refused, "an invoke request over MQTT was refused");
        }
        self.answer(&request, reply_to, outcome).await;
    }

    async fn refuse(&self, request: IncomingMessage, refused: Refused) {
        let Some(reply_to) = self.reply_to(&request) else {
            return;
        };
        tracing::warn!(topic = %request.topic, error = %refused, "an invoke request over MQTT was refused");
        self.answer(&request, reply_to, Err(refused)).await;
    }

    /// The request's response topic; a request without one, or with one the host will not
    /// publish to, is logged and dropped before anything runs.
    fn reply_to(&self, request: &IncomingMessage) -> Option<String> {
        let Some(reply_to) = request.properties.response_topic.clone() else {
            tracing::warn!(
                topic = %request.topic,
                "an invoke request over MQTT has no response topic (MQTT 5 Response Topic); dropped, unanswered"
            );
            return None;
        };
        if let Err(why) = check_response_topic(&reply_to) {
            tracing::warn!(
                topic = %request.topic,
                response_topic = %reply_to,
                "an invoke request over MQTT names a response topic that is refused ({why}); dropped, unanswered"
            );
            return None;
        }
        Some(reply_to)
    }

    async fn invoke(&self, request: &IncomingMessage) -> Outcome {
        let name = function_of(&request.topic, &self.thing_name).unwrap_or_default();
        let function = FunctionName::parse(name).map_err(|_| Refused::BadName {
            name: name.to_owned(),
        })?;
        if !self.allowed.contains(function.as_str()) {
            return Err(Refused::NotAllowed {
                name: function.as_str().to_owned(),
            });
        }
        let Some((handle, spec)) = self.registry.lookup(&function) else {
            return Err(Refused::NotFound {
                arn: self.registry.arn(function.as_str()),
            });
        };
        let mut payload = request.payload.clone();
        if spec.config.greengrass.input_payload_encoding_type == PayloadEncoding::Json {
            if payload.iter().all(u8::is_ascii_whitespace) {
                payload = Bytes::from_static(b"{}");
            } else if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&payload) {
                return Err(Refused::NotJson(e.to_string()));
            }
        }
        let (tx, rx) = oneshot::channel();
        let invocation = Invocation {
            request_id: RequestId::new(),
            payload,
            content_type: request.properties.content_type.clone(),
            client_context: None,
            trace_id: None,
            want_log_tail: false,
            completion: Completion::Caller(tx),
        };
        handle.submit(invocation).await.map_err(|r| match r {
            Refusal::QueueFull { max_queue } => Refused::QueueFull { max_queue },
            Refusal::ShuttingDown => Refused::ShuttingDown,
        })?;
        match rx.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(crate::lambda::invocation::InvocationAbort::FunctionRemoved)) => {
                Err(Refused::FunctionRemoved)
            }
            Ok(Err(crate::lambda::invocation::InvocationAbort::Remote(why))) => {
                Err(Refused::RemoteTarget(why))
            }
            Ok(Err(crate::lambda::invocation::InvocationAbort::ShuttingDown)) | Err(_) => {
                Err(Refused::ShuttingDown)
            }
        }
    }

    /// Publishes the answer to `reply_to` with the request's correlation data; an answer
    /// larger than the broker takes is replaced by a `Function.ResponseSizeTooLarge` error,
    /// so the requester is not left waiting for it.
    async fn answer(&self, request: &IncomingMessage, reply_to: String, outcome: Outcome) {
        let outcome = within_limit(outcome, self.mqtt.max_message_size());
        if let Err(refused @ Refused::ResponseTooLarge { .. }) = &outcome {
            tracing::warn!(request = %request.topic, response_topic = %reply_to, error = %refused, "an answer over MQTT is larger than the broker takes; answered with an error instead");
        }
        let (payload, content_type, error) = match outcome {
            Ok(response) => {
                let error = response.function_error.then(|| FUNCTION_ERROR.to_owned());
                let content_type = response
                    .content_type
                    .unwrap_or_else(|| "application/json".to_owned());
                (response.body.to_vec(), content_type, error)
            }
            Err(refused) => (
                refused.document(),
                "application/json".to_owned(),
                Some(refused.error_type().to_owned()),
            ),
        };
        let properties = MqttProperties {
            correlation_data: request.properties.correlation_data.clone(),
            content_type: Some(content_type),
            user_properties: error.map(|value| {
                vec![UserProperty {
                    key: ERROR_PROPERTY.to_owned(),
                    value,
                }]
            }),
            ..MqttProperties::default()
        };
        // Straight to the connection, at the request's QoS: an answer is worth something
        // only while its requester waits, so it does not take the spool's room from the
        // components' messages, nor wait there for a later connection.
        let message = OutgoingMessage {
            topic: reply_to.clone(),
            at_least_once: request.at_least_once,
            payload,
            properties,
        };
        if let Err(e) = self.mqtt.publish_direct(message).await {
            tracing::warn!(request = %request.topic, response_topic = %reply_to, error = %e, "cannot answer an invoke request over MQTT");
        }
    }
}

/// `outcome`, or the refusal that replaces a response over `max` bytes.
fn within_limit(outcome: Outcome, max: u32) -> Outcome {
    match outcome {
        Ok(response) if response.body.len() > max as usize => Err(Refused::ResponseTooLarge {
            size: response.body.len(),
            max,
        }),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_topics_that_are_refused() {
        assert_eq!(check_response_topic("replies/abc"), Ok(()));
        assert_eq!(
            check_response_topic("lambkin/me/functions/f/result"),
            Ok(())
        );
        for refused in [
            "",
            "replies/#",
            "replies/+/x",
            "$aws/things/x/shadow/update",
            "lambkin/other/functions/f/invoke",
            "lambkin/me/functions/f/invoke",
        ] {
            assert!(check_response_topic(refused).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn the_function_is_read_from_the_request_topic() {
        assert_eq!(
            request_filter("gateway-1"),
            "lambkin/gateway-1/functions/+/invoke"
        );
        assert_eq!(
            function_of("lambkin/gw/functions/echo/invoke", "gw"),
            Some("echo")
        );
        assert_eq!(
            function_of("lambkin/gw/functions/echo/invoke", "other"),
            None
        );
        assert_eq!(function_of("lambkin/gw/functions/a/b/invoke", "gw"), None);
        assert_eq!(function_of("lambkin/gw/functions/echo", "gw"), None);
    }

    #[test]
    fn an_answer_over_the_broker_limit_becomes_an_error_naming_its_size_and_the_limit() {
        let response = |size: usize| FunctionResponse {
            body: Bytes::from(vec![b'x'; size]),
            content_type: None,
            function_error: false,
            log_tail: None,
        };
        assert!(within_limit(Ok(response(100)), 100).is_ok());
        let refused = within_limit(Ok(response(101)), 100).unwrap_err();
        assert_eq!(refused.error_type(), "Function.ResponseSizeTooLarge");
        let doc: serde_json::Value = serde_json::from_slice(&refused.document()).unwrap();
        let message = doc["errorMessage"].as_str().unwrap();
        assert!(
            message.contains("(101 bytes)") && message.contains("(100 bytes"),
            "{message}"
        );
        // A refusal stays as it is.
        assert_eq!(
            within_limit(Err(Refused::Busy), 0).unwrap_err(),
            Refused::Busy
        );
    }

    #[test]
    fn a_refusal_is_a_lambda_error_document() {
        let refused = Refused::NotAllowed {
            name: "secret".into(),
        };
        let doc: serde_json::Value = serde_json::from_slice(&refused.document()).unwrap();
        assert_eq!(doc["errorType"], "AccessDeniedException");
        assert!(doc["errorMessage"]
            .as_str()
            .unwrap()
            .contains("not in [mqtt_invoke] functions"));
    }
}
