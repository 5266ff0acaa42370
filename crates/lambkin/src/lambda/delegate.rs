//! Invocations a function hands to its remote target (`Greengrass.Delegation`): where each one
//! goes under the function's policy, and what happens to it there. The function actor asks
//! [`Delegation::route`] at each admission and runs [`run`] as one of its own tasks for each
//! invocation that goes out.
//!
//! - A synchronous invocation is one `RequestResponse` Invoke; the target's answer (body,
//!   content type, `X-Amz-Function-Error`, `X-Amz-Log-Result`) is the caller's.
//! - An `Event` is one `Event` Invoke; it stays in the store until the target answered 202,
//!   tried again with backoff (up to the target's `event_retry_max_ms`), also after a restart.
//! - `remote-first` and `overflow` bring an invocation the target did not run back here
//!   ([`Outcome::RunHere`]); `remote` answers a synchronous caller the error
//!   (`RemoteTargetException`) and keeps an `Event` until the target takes it.
//!
//! Every invocation that leaves is written to the function's log (`DELEGATED`, with the
//! target's request id) and every one that comes back (`FALLBACK`, with the reason).

use std::sync::Arc;
use std::time::Duration;

use lambkin_proto::lambda::function::{Delegation as Settings, DelegationPolicy};

use super::invocation::{Completion, FunctionResponse, Invocation, InvocationAbort};
use crate::logfile::{Level, LogFile};
use crate::remote::{RemoteAnswer, RemoteError, RemoteInvoke, Target, Targets};

/// The first wait before a delegated `Event` is offered again.
const EVENT_RETRY_FIRST: Duration = Duration::from_millis(100);

/// A function's delegation, resolved against the host's targets.
#[derive(Debug, Clone)]
pub struct Delegation {
    pub policy: DelegationPolicy,
    /// The target; `Err(name)` when no target of that name is configured (a function stored
    /// before the target left `config.toml`).
    target: Result<Arc<Target>, String>,
    function: String,
    qualifier: Option<String>,
    overflow_queue_threshold: u32,
}

/// Where an invocation goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Here,
    Remote,
}

/// How a delegated invocation ended.
#[derive(Debug)]
pub enum Outcome {
    /// The target took it: answered it, or accepted the `Event`.
    Delegated,
    /// Not taken, and ended: the caller got the error, or the `Event` stays in the store for
    /// the next start.
    Done,
    /// The target did not run it: it runs here after all.
    RunHere(Invocation),
}

impl Delegation {
    /// The delegation of a function named `function_name` with these settings; `None` for
    /// `local`.
    pub fn resolve(settings: &Settings, function_name: &str, targets: &Targets) -> Option<Self> {
        if settings.is_local() {
            return None;
        }
        let name = settings.target.clone().unwrap_or_default();
        let target = targets.get(&name).ok_or(name);
        if let Err(name) = &target {
            // Checked when the function was defined: the target left config.toml since.
            tracing::warn!(
                function = function_name,
                target = %name,
                policy = settings.policy.as_str(),
                "the function delegates to a remote target config.toml no longer has"
            );
        }
        Some(Self {
            policy: settings.policy,
            target,
            function: settings
                .function_name
                .clone()
                .unwrap_or_else(|| function_name.to_owned()),
            qualifier: settings.qualifier.clone(),
            overflow_queue_threshold: settings.overflow_queue_threshold,
        })
    }

    /// Where the next invocation goes: `waiting` is how many invocations would wait here for
    /// an instance with it admitted (the scheduler's count), `refused` whether the queue
    /// would refuse it.
    pub fn route(&self, waiting: usize, refused: bool) -> Route {
        match self.policy {
            DelegationPolicy::Local => Route::Here,
            DelegationPolicy::Remote | DelegationPolicy::RemoteFirst => Route::Remote,
            DelegationPolicy::Overflow => {
                if refused || waiting > self.overflow_queue_threshold as usize {
                    Route::Remote
                } else {
                    Route::Here
                }
            }
        }
    }

    fn target_name(&self) -> &str {
        match &self.target {
            Ok(target) => target.name(),
            Err(name) => name,
        }
    }
}

/// The function an invocation leaves: its name, its log, and how long it may run.
#[derive(Debug, Clone)]
pub struct Origin {
    pub name: String,
    pub log: Arc<LogFile>,
    pub timeout: Duration,
}

/// Takes `inv` to the target. For a caller, the answer; for an `Event`, until the target has
/// it (or it comes back here under `remote-first` and `overflow`). A held `Event` follows the
/// function's configuration (`current`): before each new attempt it takes the delegation as
/// it is then, and runs here once the policy is `local`.
pub async fn run(
    spec: Origin,
    mut delegation: Delegation,
    current: tokio::sync::watch::Receiver<Option<Delegation>>,
    inv: Invocation,
) -> Outcome {
    let event = matches!(
        inv.completion,
        Completion::Event { .. } | Completion::Detached
    );
    let mut request = RemoteInvoke {
        function: delegation.function.clone(),
        qualifier: delegation.qualifier.clone(),
        event,
        payload: inv.payload.clone(),
        content_type: inv.content_type.clone(),
        client_context: inv.client_context.clone(),
        log_tail: inv.want_log_tail,
        function_timeout: spec.timeout,
    };
    let mut wait = EVENT_RETRY_FIRST;
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let falls_back = delegation.policy != DelegationPolicy::Remote;
        request.function.clone_from(&delegation.function);
        request.qualifier.clone_from(&delegation.qualifier);
        let result = match &delegation.target {
            Ok(target) => target.invoke(&request).await,
            Err(name) => Err(RemoteError::Unreachable {
                target: name.clone(),
                why: format!("no remote target named {name} is configured in config.toml"),
            }),
        };
        match result {
            Ok(answer) => {
                note_delegated(&spec, &delegation, &inv, &answer);
                finish(inv, answer).await;
                return Outcome::Delegated;
            }
            Err(e) if falls_back => {
                note_fallback(&spec, &delegation, &inv, &e);
                return Outcome::RunHere(inv);
            }
            Err(e) => match &inv.completion {
                Completion::Event { .. } => {
                    // Kept in the store: offered again until the target takes it.
                    let retry_max = delegation
                        .target
                        .as_ref()
                        .map_or(Duration::from_secs(30), |t| t.event_retry_max());
                    if attempt.is_power_of_two() {
                        tracing::warn!(
                            function = %spec.name,
                            request_id = %inv.request_id,
                            attempt,
                            error = %e,
                            "the remote target has not taken the Event yet; it stays stored and is offered again"
                        );
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(retry_max);
                    match current.borrow().clone() {
                        Some(now) => delegation = now,
                        None => {
                            let line = format!(
                                "FALLBACK RequestId: {} Target: {}: runs here: the function's policy is local now",
                                inv.request_id,
                                delegation.target_name(),
                            );
                            spec.log.write_lines(Level::Info, line.as_bytes());
                            return Outcome::RunHere(inv);
                        }
                    }
                }
                _ => {
                    note_failed(&spec, &delegation, &inv, &e);
                    inv.abort(InvocationAbort::Remote(e.to_string())).await;
                    return Outcome::Done;
                }
            },
        }
    }
}

/// The target's answer, delivered as the function's.
async fn finish(inv: Invocation, answer: RemoteAnswer) {
    match answer {
        RemoteAnswer::Accepted { .. } => inv.handed_over().await,
        RemoteAnswer::Response {
            body,
            content_type,
            function_error,
            log_result,
            ..
        } => {
            inv.finish(FunctionResponse {
                body,
                content_type,
                function_error: function_error.is_some(),
                log_tail: log_result,
            })
            .await
        }
    }
}

fn note_delegated(spec: &Origin, delegation: &Delegation, inv: &Invocation, answer: &RemoteAnswer) {
    let (how, remote_id) = match answer {
        RemoteAnswer::Accepted { request_id } => ("accepted", request_id.as_deref()),
        RemoteAnswer::Response {
            request_id,
            function_error,
            ..
        } => (
            if function_error.is_some() {
                "answered with a function error"
            } else {
                "answered"
            },
            request_id.as_deref(),
        ),
    };
    let line = format!(
        "DELEGATED RequestId: {} Target: {} Function: {} RemoteRequestId: {} Policy: {} ({how})",
        inv.request_id,
        delegation.target_name(),
        delegation.function,
        remote_id.unwrap_or("-"),
        delegation.policy.as_str(),
    );
    spec.log.write_lines(Level::Info, line.as_bytes());
    tracing::debug!(function = %spec.name, request_id = %inv.request_id, target = delegation.target_name(), "invocation ran on the remote target");
}

fn note_fallback(spec: &Origin, delegation: &Delegation, inv: &Invocation, e: &RemoteError) {
    let line = format!(
        "FALLBACK RequestId: {} Target: {} Policy: {}: runs here: {e}",
        inv.request_id,
        delegation.target_name(),
        delegation.policy.as_str(),
    );
    spec.log.write_lines(Level::Warn, line.as_bytes());
    tracing::info!(function = %spec.name, request_id = %inv.request_id, error = %e, "the remote target did not run the invocation; it runs here");
}

fn note_failed(spec: &Origin, delegation: &Delegation, inv: &Invocation, e: &RemoteError) {
    let line = format!(
        "DELEGATION FAILED RequestId: {} Target: {}: {e}",
        inv.request_id,
        delegation.target_name(),
    );
    spec.log.write_lines(Level::Warn, line.as_bytes());
    tracing::warn!(function = %spec.name, request_id = %inv.request_id, error = %e, "delegated invocation failed");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delegation(policy: DelegationPolicy, threshold: u32) -> Delegation {
        Delegation {
            policy,
            target: Err("b".into()),
            function: "f".into(),
            qualifier: None,
            overflow_queue_threshold: threshold,
        }
    }

    #[test]
    fn overflow_goes_out_past_the_threshold_or_when_refused() {
        let d = delegation(DelegationPolicy::Overflow, 2);
        assert_eq!(d.route(0, false), Route::Here);
        assert_eq!(d.route(2, false), Route::Here);
        assert_eq!(d.route(3, false), Route::Remote);
        assert_eq!(d.route(0, true), Route::Remote);
        let d = delegation(DelegationPolicy::Overflow, 0);
        assert_eq!(d.route(1, false), Route::Remote);
        assert_eq!(
            delegation(DelegationPolicy::Remote, 0).route(0, false),
            Route::Remote
        );
        assert_eq!(
            delegation(DelegationPolicy::RemoteFirst, 0).route(0, false),
            Route::Remote
        );
    }
}
