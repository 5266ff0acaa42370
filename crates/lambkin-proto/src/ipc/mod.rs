//! Greengrass IPC as the SDK clients speak it (`greengrass-ipc.md` §1, §3, §4, §5): the
//! event-stream RPC layer over [`eventstream`](crate::eventstream) frames, with no I/O.
//!
//! - [`session`]: one connection's state machine; frames in, [`Action`]s out.
//! - [`envelope`]: the control headers, message types, flags and stream ids.
//! - [`operation`]: the operations of the service model and their shape ids.
//! - [`error`]: the modelled error shapes and their one mapping to the wire.
//! - [`shapes`]: the operations' JSON payloads, with the nucleus's validation texts.
//! - [`authorization`]: `accessControl` policies and the decision of §5, with its denial texts.
//!
//! A socket server drives it like this: per connection, a [`Decoder`](crate::eventstream::Decoder)
//! and a [`Session`]; every frame read goes to [`Session::on_frame`]; the actions are carried
//! out in order (write, look a token up, run an operation, drop a subscription, close); the
//! host's answers go back through the session's methods, which return more actions.
//!
//! ```
//! use std::collections::{HashMap, VecDeque};
//!
//! use lambkin_proto::eventstream::{Decoder, Header};
//! use lambkin_proto::ipc::{Action, IpcError, MessageFlags, MessageType, RpcMessage, Session};
//! use lambkin_proto::recipe::ComponentName;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The host's token map: SVCUID -> component.
//! let tokens = HashMap::from([("GOODTOKEN1234567", ComponentName::parse("com.example.Probe")?)]);
//!
//! // What a client sends first: CONNECT, as the Node SDK writes it.
//! let connect = RpcMessage::new(MessageType::Connect, MessageFlags::NONE, 0)
//!     .with_header(Header::string(":version", "0.1.0"))
//!     .with_payload(br#"{"authToken":"GOODTOKEN1234567"}"#.to_vec())
//!     .to_frame()?;
//!
//! let mut decoder = Decoder::new();
//! let mut session = Session::new();
//! let mut written = Vec::new();
//! decoder.push(&connect.encode()); // bytes as the socket delivers them
//! while let Some(frame) = decoder.next_frame()? {
//!     let mut actions: VecDeque<Action> = session.on_frame(frame).into();
//!     while let Some(action) = actions.pop_front() {
//!         match action {
//!             Action::Send(frame) => frame.encode_into(&mut written),
//!             Action::Authenticate(token) => {
//!                 let principal = tokens.get(token.as_str()).cloned();
//!                 actions.extend(session.on_authenticated(principal));
//!             }
//!             Action::Dispatch(request) => {
//!                 // Authorize, parse the payload into its shape, run it, then answer:
//!                 let error = IpcError::not_supported(request.operation.name());
//!                 actions.extend(session.fail(request.stream, &error)?);
//!             }
//!             Action::StreamClosed(_stream) => { /* drop the stream's subscription */ }
//!             Action::AwaitClientClose | Action::Close => { /* stop reading; close */ }
//!         }
//!     }
//! }
//! let ack = RpcMessage::from_frame(&lambkin_proto::eventstream::Frame::decode(&written)?);
//! assert_eq!(ack.map(|m| m.flags), Some(MessageFlags::CONNECTION_ACCEPTED));
//! # Ok(())
//! # }
//! ```

pub mod authorization;
pub mod envelope;
pub mod error;
pub mod operation;
pub mod session;
pub mod shapes;

pub use authorization::{authorize, AccessControl, Check, Matching};
pub use envelope::{MessageFlags, MessageType, RpcMessage, StreamId};
pub use error::{ErrorShape, ErrorWire, IpcError};
pub use operation::Operation;
pub use session::{
    Action, AuthToken, Request, SendError, Session, CLIENT_CONNECT_TIMEOUT,
    DEFAULT_MAX_OPEN_STREAMS, REJECTED_LINGER,
};
