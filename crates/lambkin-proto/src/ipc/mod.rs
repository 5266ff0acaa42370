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
    Action, AuthToken, Request, SendError, Session, CLIENT_CONNECT_TIMEOUT, REJECTED_LINGER,
};
