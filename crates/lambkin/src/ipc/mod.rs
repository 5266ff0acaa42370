//! The Greengrass IPC server (`greengrass-ipc.md`), so that components written with the AWS
//! IoT Device SDK v2 run unmodified. The wire protocol and its rules live in
//! [`lambkin_proto::ipc`]; this module does the I/O and the work.
//!
//! - [`server`]: the Unix socket at `ROOT/ipc.socket` and one task per connection driving a
//!   [`Session`](lambkin_proto::ipc::Session).
//! - [`operations`]: each operation, authorized by the caller's `accessControl` and carried
//!   out against local pub/sub and the deployment engine.
//! - [`tokens`]: the per-component `SVCUID` tokens that name a connection's principal.

pub mod operations;
pub mod server;
pub mod tokens;

pub use operations::Services;
pub use server::{bind, serve, socket_path};
pub use tokens::{ComponentIpc, Tokens};
