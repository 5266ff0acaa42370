//! The Greengrass IPC session driven by arbitrary bytes, as the socket server drives it:
//! bytes through the event-stream decoder, frames into the session, and the session's
//! actions answered. Bytes of the input also steer the host's side (accept or reject the
//! token; respond, fail, send an event or close a dispatched stream). Each dispatched request's
//! payload is read into its operation's shape and validated, as the host's operations do. The
//! session must never panic, every frame it sends must be a valid frame, and after `Close`
//! nothing more is read.

#![no_main]

use lambkin_proto::eventstream::{Decoder, Frame};
use lambkin_proto::ipc::shapes::{self, components, configuration, iot_core, pubsub, token};
use lambkin_proto::ipc::{Action, IpcError, Operation, Session};
use lambkin_proto::recipe::ComponentName;
use libfuzzer_sys::fuzz_target;

/// Reads `payload` as the request of `operation` and validates it, as the host does before
/// carrying it out. Errors are answers to the client, not failures.
fn read_request(operation: Operation, payload: &[u8]) {
    fn shape<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, IpcError> {
        shapes::parse_request(payload)
    }
    let _ = match operation {
        Operation::PublishToTopic => {
            shape::<pubsub::PublishToTopicRequest>(payload).and_then(|r| r.validate().map(drop))
        }
        Operation::SubscribeToTopic => {
            shape::<pubsub::SubscribeToTopicRequest>(payload).and_then(|r| r.validate().map(drop))
        }
        Operation::PublishToIoTCore => {
            shape::<iot_core::PublishToIoTCoreRequest>(payload).and_then(|r| r.validate().map(drop))
        }
        Operation::SubscribeToIoTCore => shape::<iot_core::SubscribeToIoTCoreRequest>(payload)
            .and_then(|r| r.validate().map(drop)),
        Operation::UpdateConfiguration => {
            shape::<configuration::UpdateConfigurationRequest>(payload)
                .and_then(|r| r.validate().map(drop))
        }
        Operation::GetConfiguration => {
            shape::<configuration::GetConfigurationRequest>(payload).map(drop)
        }
        Operation::GetComponentDetails | Operation::RestartComponent | Operation::StopComponent => {
            shape::<components::ComponentRequest>(payload).and_then(|r| r.validate().map(drop))
        }
        Operation::UpdateState => shape::<components::UpdateStateRequest>(payload).map(drop),
        Operation::ValidateAuthorizationToken => {
            shape::<token::ValidateAuthorizationTokenRequest>(payload)
                .and_then(|r| r.validate().map(drop))
        }
        Operation::CreateLocalDeployment => {
            shape::<shapes::deployments::CreateLocalDeploymentRequest>(payload).map(drop)
        }
        _ => Ok(()),
    };
}

/// Host-side work the actions ask for.
struct Host {
    session: Session,
    principal: ComponentName,
    steer: Vec<u8>,
    next: usize,
    closed: bool,
}

impl Host {
    fn choice(&mut self) -> u8 {
        let byte = self.steer.get(self.next).copied().unwrap_or(0);
        self.next += 1;
        byte
    }

    fn perform(&mut self, actions: Vec<Action>) {
        let mut todo = actions;
        while !todo.is_empty() {
            let mut more = Vec::new();
            for action in todo {
                match action {
                    Action::Send(frame) => {
                        let bytes = frame.encode();
                        assert_eq!(Frame::decode(&bytes).as_ref(), Ok(&frame));
                    }
                    Action::Authenticate(token) => {
                        let principal = (!token.as_str().is_empty()
                            && !self.choice().is_multiple_of(4))
                        .then(|| self.principal.clone());
                        more.extend(self.session.on_authenticated(principal));
                    }
                    Action::Dispatch(request) => {
                        read_request(request.operation, &request.payload);
                        let answer = match self.choice() % 5 {
                            0 => self.session.respond(request.stream, b"{}".to_vec()),
                            1 => self
                                .session
                                .fail(request.stream, &IpcError::service("fuzz")),
                            2 => self
                                .session
                                .respond(request.stream, request.payload.clone())
                                .and_then(|mut a| {
                                    a.extend(self.session.send_event(
                                        request.stream,
                                        b"{\"message\":{}}".to_vec(),
                                    )?);
                                    Ok(a)
                                }),
                            3 => self.session.close_stream(request.stream),
                            _ => Ok(Vec::new()),
                        };
                        if let Ok(actions) = answer {
                            more.extend(actions);
                        }
                    }
                    Action::StreamClosed(_) | Action::AwaitClientClose => {}
                    Action::Close => self.closed = true,
                }
            }
            todo = more;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // [steer length][steer bytes][client bytes]
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n).min(rest.len());
    let (steer, bytes) = rest.split_at(n);
    let Ok(principal) = ComponentName::parse("com.example.Fuzz") else {
        return;
    };
    let mut host = Host {
        session: Session::new(),
        principal,
        steer: steer.to_vec(),
        next: 0,
        closed: false,
    };
    let mut decoder = Decoder::new();
    for piece in bytes.chunks(64) {
        decoder.push(piece);
        while !host.closed {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    let actions = host.session.on_frame(frame);
                    host.perform(actions);
                }
                Ok(None) => break,
                Err(_) => {
                    let actions = host.session.on_decode_error();
                    host.perform(actions);
                    host.closed = true;
                }
            }
        }
        if host.closed {
            break;
        }
    }
    // Late answers after the session ended must be refused, not panic.
    if let Some(stream) = lambkin_proto::ipc::StreamId::new(1) {
        let _ = host.session.respond(stream, b"{}".to_vec());
    }
    let actions = host.session.on_disconnected();
    host.perform(actions);
});
