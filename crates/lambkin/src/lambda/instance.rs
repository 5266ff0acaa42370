//! One instance of a function: a runtime process, the Runtime API server it talks to (on its
//! own loopback port, `AWS_LAMBDA_RUNTIME_API`), its stdout/stderr, and the invocation it is
//! running. One task owns all of it; the Runtime API's connection tasks and the function actor
//! talk to it over channels.
//!
//! The instance moves Init → (first `/next`) Idle → (assigned) Busy → (answered) Between →
//! (`/next`) Idle …; a timeout, a crash or a stop ends it. Deadlines follow AWS: the function
//! timeout runs from the moment `/next` hands the event over; init has its own limit.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::net::unix::pipe;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use lambkin_proto::lambda::function::Isolation;
use lambkin_proto::lambda::invoke::LATEST;
use lambkin_proto::lambda::runtime_api::{
    self as rt, ExtensionError, ExtensionEvent, ExtensionEventType, RegisterRequest,
    RegisterResponse, Route, RuntimeApiError, ShutdownReason,
};
use lambkin_proto::lambda::stream::{self as st, ResponseMode, StreamError};
use lambkin_proto::lambda::telemetry::{self as tm, Record, RecordType, Subscription};
use lambkin_proto::lambda::MAX_RESPONSE_BYTES;

use super::extensions::{Delivery, Extensions};
use super::instance_cgroup::InstanceCgroup;
use super::invocation::{FunctionResponse, Invocation, InvocationAbort, RequestId, StreamPart};
use super::logs::{self, LogTail, Report};
use super::peer;
use super::placement;
use super::sandbox;
use super::scheduler::InstanceId;
use super::spec::FunctionSpec;
use super::telemetry::Telemetry;
use crate::logfile::Level;
use crate::metrics::counters::Outcome;
use crate::timestamp;

/// Largest `/error` or `/init/error` body read.
const MAX_ERROR_BODY_BYTES: usize = 1024 * 1024;
/// How long a runtime that posted `/init/error` gets to exit by itself.
const INIT_ERROR_GRACE: Duration = Duration::from_millis(500);

/// Why an instance never became ready; the oldest waiting invocation gets it as its error.
/// What instances tell their function.
#[derive(Debug)]
pub enum FunctionReport {
    InstanceReady(InstanceId),
    InstanceExited {
        id: InstanceId,
        before_ready: bool,
        failure: Option<InitFailure>,
    },
}

#[derive(Debug, Clone)]
pub enum InitFailure {
    /// The runtime posted this to `/init/error`.
    Posted(Bytes),
    /// The process exited before its first `/next` ("exit status 1").
    Exited(String),
    /// No `/next` within the init limit; or, naming them, extensions that had not registered
    /// or asked for their next event.
    TimedOut(Duration, Vec<String>),
    /// The process could not be started.
    LaunchFailed(String),
}

impl InitFailure {
    /// The error body the invocation receives, shaped as AWS Lambda shapes it.
    pub fn render(&self, request_id: &str) -> Bytes {
        let (error_type, message) = match self {
            Self::Posted(body) => return body.clone(),
            Self::Exited(how) => (
                "Runtime.ExitError",
                format!("RequestId: {request_id} Error: Runtime exited with error: {how}"),
            ),
            Self::TimedOut(limit, awaited) => (
                "Sandbox.Timedout",
                if awaited.is_empty() {
                    format!(
                        "RequestId: {request_id} Error: Runtime init timed out after {:.2} seconds",
                        limit.as_secs_f64()
                    )
                } else {
                    format!(
                        "RequestId: {request_id} Error: Runtime init timed out after {:.2} seconds: extension {} did not register and ask for its next event",
                        limit.as_secs_f64(),
                        awaited.join(", ")
                    )
                },
            ),
            Self::LaunchFailed(why) => (
                "Runtime.InvalidEntrypoint",
                format!("RequestId: {request_id} Error: {why}"),
            ),
        };
        error_body(error_type, &message)
    }
}

fn error_body(error_type: &str, message: &str) -> Bytes {
    Bytes::from(serde_json::json!({ "errorType": error_type, "errorMessage": message }).to_string())
}

/// What `/next` hands the runtime.
#[derive(Debug)]
pub struct NextInvocation {
    request_id: RequestId,
    payload: Bytes,
    deadline_ms: u64,
    content_type: Option<String>,
    client_context: Option<String>,
    trace_id: Option<String>,
    function_arn: Arc<str>,
}

type RuntimeResult<T> = Result<T, RuntimeApiError>;
type Reply<T> = oneshot::Sender<RuntimeResult<T>>;

/// Messages to the instance task.
#[derive(Debug)]
pub enum InstanceMsg {
    Assign(Invocation),
    /// Stop the process: SIGTERM, then SIGKILL after the grace period.
    Stop,
    Next(Reply<NextInvocation>),
    Response {
        request_id: String,
        body: Bytes,
        content_type: Option<String>,
        /// When the request's head arrived.
        began: Instant,
        reply: Reply<()>,
    },
    ResponseTooLarge {
        request_id: String,
        size: Option<usize>,
        reply: Reply<()>,
    },
    /// A streamed `/response` begins: where its data goes.
    StreamOpen {
        request_id: String,
        content_type: Option<String>,
        reply: Reply<StreamTarget>,
    },
    /// A streamed `/response` has ended.
    StreamClose {
        request_id: String,
        outcome: StreamOutcome,
        reply: Reply<()>,
    },
    Error {
        request_id: String,
        body: Bytes,
        reply: Reply<()>,
    },
    InitError {
        body: Bytes,
        reply: Reply<()>,
    },
    /// Extensions API `register`.
    ExtensionRegister {
        name: String,
        events: Vec<ExtensionEventType>,
        /// `Lambda-Extension-Accept-Feature: accountId`.
        with_account: bool,
        reply: Reply<(String, RegisterResponse)>,
    },
    /// Extensions API `event/next`.
    ExtensionNext {
        id: String,
        reply: Reply<Delivery>,
    },
    /// Extensions API `init/error` (`init`) or `exit/error`.
    ExtensionError {
        id: String,
        error_type: String,
        init: bool,
        reply: Reply<()>,
    },
    /// Telemetry API or Logs API `subscribe`.
    Subscribe {
        id: String,
        subscription: Subscription,
        reply: Reply<()>,
    },
}

/// Where a streamed `/response`'s data goes.
#[derive(Debug)]
pub enum StreamTarget {
    /// To the caller, piece by piece as it arrives.
    Forward(mpsc::Sender<StreamPart>),
    /// The caller takes one answer (`Invoke`): the body is read whole, within the buffered
    /// limit, and answered as a buffered `/response` (or `/error`, from the trailers).
    Gather,
}

/// How a streamed `/response` ended.
#[derive(Debug)]
pub enum StreamOutcome {
    /// The body ended; `bytes` were streamed.
    Complete { bytes: u64 },
    /// The trailers (or the same lines at the body's end) named an error.
    Failed { error: StreamError, bytes: u64 },
    /// The body went past [`st::MAX_STREAMED_RESPONSE_BYTES`].
    TooLarge,
    /// The body broke off (the runtime's connection closed mid-stream).
    Truncated(String),
}

/// The function actor's handle on an instance.
#[derive(Debug)]
pub struct InstanceHandle {
    tx: mpsc::UnboundedSender<InstanceMsg>,
    _task: tokio::task::JoinHandle<()>,
}

impl InstanceHandle {
    /// Sends a command. The channel is unbounded but bounded by construction: the function
    /// actor sends at most one `Assign` per `Ready` and one `Stop`.
    pub fn send(&self, msg: InstanceMsg) -> Result<(), Box<InstanceMsg>> {
        self.tx.send(msg).map_err(|e| Box::new(e.0))
    }
}

pub fn spawn(
    id: InstanceId,
    spec: Arc<FunctionSpec>,
    reports: mpsc::UnboundedSender<FunctionReport>,
    delay: Duration,
) -> InstanceHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let api_tx = tx.clone();
    let task = tokio::spawn(async move {
        let before_ready_failure = run(id, spec, rx, api_tx, &reports, delay).await;
        let _ = reports.send(FunctionReport::InstanceExited {
            id,
            failure: before_ready_failure.clone(),
            before_ready: before_ready_failure.is_some(),
        });
    });
    InstanceHandle { tx, _task: task }
}

struct Current {
    inv: Invocation,
    started: Instant,
    tail: Option<LogTail>,
    init_duration: Option<Duration>,
    /// A streamed `/response` has begun (a second one is refused).
    streaming: bool,
    /// The bytes a streamed `/response` carried (its telemetry's `producedBytes`).
    streamed_bytes: Option<u64>,
    /// When the runtime's answer began to arrive (its `/response` request's head).
    answer_began: Option<Instant>,
}

/// An answered invocation whose output and END/REPORT lines are still to be written.
struct EndFrame {
    request_id: RequestId,
    duration: Duration,
    init_duration: Option<Duration>,
    timed_out: bool,
    function_error: bool,
    produced_bytes: u64,
    /// `platform.runtimeDone`'s spans (none when the runtime did not answer).
    spans: Vec<tm::Span>,
}

enum Phase {
    Init,
    Idle,
    Busy(Box<Current>),
    Between,
    /// Stopped, timed out or failed: waiting for the process to go.
    Ending,
}

/// Reads one of the process's output pipes into whole lines.
struct OutputPipe {
    rx: Option<pipe::Receiver>,
    partial: Vec<u8>,
    level: Level,
    /// The external extensions' pipe: its lines are `extension` records, not `function` ones.
    extensions: bool,
    /// On the extensions' pipe: the exits reported, not yet handled.
    exits: Vec<super::extensions::Exited>,
}

impl OutputPipe {
    fn new(fd: Option<std::os::fd::OwnedFd>, level: Level) -> Self {
        let rx = fd.and_then(|fd| pipe::Receiver::from_owned_fd(fd).ok());
        Self {
            rx,
            partial: Vec::new(),
            level,
            extensions: false,
            exits: Vec::new(),
        }
    }

    fn of_extensions(fd: Option<std::os::fd::OwnedFd>) -> Self {
        Self {
            extensions: true,
            ..Self::new(fd, Level::Info)
        }
    }

    async fn readable(&self) {
        match &self.rx {
            Some(rx) => {
                let _ = rx.readable().await;
            }
            None => std::future::pending().await,
        }
    }

    /// Reads what is available now, writing complete lines to the log (and the tail), after
    /// the invocation's START line if it is still pending.
    fn drain(
        &mut self,
        spec: &FunctionSpec,
        tail: Option<&mut LogTail>,
        pending_start: &mut Option<String>,
        telemetry: &mut Telemetry,
    ) {
        let Some(rx) = &self.rx else {
            return;
        };
        let mut buf = [0u8; 16 * 1024];
        let mut closed = false;
        loop {
            match rx.try_read(&mut buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => self.partial.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        let complete = match self.partial.iter().rposition(|b| *b == b'\n') {
            Some(pos) if closed => self.partial.len().max(pos + 1),
            Some(pos) => pos + 1,
            None if closed => self.partial.len(),
            None => 0,
        };
        if complete > 0 {
            let mut text: Vec<u8> = self.partial.drain(..complete).collect();
            if self.extensions && text.contains(&super::extensions::EXIT_REPORT) {
                text = self.take_exit_reports(&text);
                if text.is_empty() {
                    return self.close_if(closed);
                }
            }
            let text = text.strip_suffix(b"\n").unwrap_or(&text);
            if let Some(start) = pending_start.take() {
                spec.log.write_lines(Level::Info, start.as_bytes());
            }
            spec.log.write_lines(self.level, text);
            if self.extensions {
                telemetry.extension_lines(text);
            } else {
                telemetry.function_lines(text);
            }
            if let Some(tail) = tail {
                for line in text.split(|b| *b == b'\n') {
                    tail.push_line(line);
                }
            }
        }
        self.close_if(closed);
    }

    fn close_if(&mut self, closed: bool) {
        if closed {
            self.rx = None;
        }
    }

    /// Keeps the launch script's exit reports out of `text` (whole lines, each ending in a
    /// newline but perhaps the last), in [`Self::exits`]; returns the rest.
    fn take_exit_reports(&mut self, text: &[u8]) -> Vec<u8> {
        let mut rest = Vec::with_capacity(text.len());
        for line in text.split_inclusive(|b| *b == b'\n') {
            match line.split_first() {
                Some((&super::extensions::EXIT_REPORT, report)) => {
                    let report = report.strip_suffix(b"\n").unwrap_or(report);
                    self.exits.extend(super::extensions::Exited::parse(report));
                }
                _ => rest.extend_from_slice(line),
            }
        }
        rest
    }
}

struct Instance {
    id: InstanceId,
    spec: Arc<FunctionSpec>,
    phase: Phase,
    parked: Option<Reply<NextInvocation>>,
    undelivered: Option<Invocation>,
    last_answered: Option<RequestId>,
    spawned: Instant,
    init_duration: Option<Duration>,
    init_error: Option<Bytes>,
    pid: u32,
    memory: Option<logs::MemoryProbe>,
    /// The START line of the invocation in progress, written with its first output or its END
    /// (one write instead of two for an invocation that prints nothing).
    pending_start: Option<String>,
    stdout: OutputPipe,
    stderr: OutputPipe,
    /// What its external extensions write, on a pipe of its own.
    extension_output: OutputPipe,
    deadline: Option<Instant>,
    timed_out_init: bool,
    /// The extensions a timed-out init was waiting for.
    init_awaited: Vec<String>,
    /// A containerised instance's cgroup (removed with the instance).
    sandbox: Option<InstanceCgroup>,
    /// A plain instance in its component's group (systemResourceLimits): the group's count
    /// of kills for memory when the instance started, to tell whether one ended it.
    component_oom_kills: u64,
    /// How long the previous invocation ran (placement: short ones share the host's CPU).
    last_duration: Option<Duration>,
    /// Its extensions (none unless its layers bring some, or its runtime registers one).
    extensions: Extensions,
    /// `SHUTDOWN` went to its extensions: they get the grace period to finish, after the
    /// runtime has gone.
    extensions_shutting_down: bool,
    /// In a container, the signal for its processes once its extensions have ended after
    /// their `SHUTDOWN` (the runtime cannot go first: the container ends with it).
    after_extensions: Option<Signal>,
    /// The processes its Runtime API admitted besides the runtime (its extensions).
    admitted: Arc<Admitted>,
    /// Its extensions' Telemetry and Logs API subscriptions.
    telemetry: Telemetry,
    /// With external extensions, the process's stdin: the runtime starts once it is closed,
    /// when every external extension has registered (Lambda's extension init, then runtime
    /// init).
    gate: Option<tokio::process::ChildStdin>,
    /// The extensions got the `INVOKE` of the undelivered invocation (its runtime's `/next`
    /// went away as it was handed over).
    announced: bool,
}

/// Hands an invocation over: its `INVOKE` (`invoke`) to the extensions that take it, then its
/// event to the runtime's waiting `/next`; false when that `/next` has gone.
///
/// The extensions come first. On the host's one thread the connections write in the order
/// they were woken; with the runtime's first, the runtime (sharing the host's CPU while it
/// answers sequential invocations: `placement`) could take the CPU and answer before
/// the `INVOKE` went out, and the extension, the last to ask for its next event, was then the
/// one the instance waited for. Lambda orders neither: both hear of the invocation when it
/// starts.
fn hand_over(
    extensions: &mut Extensions,
    invoke: Option<&ExtensionEvent>,
    reply: Reply<NextInvocation>,
    next: NextInvocation,
) -> bool {
    if reply.is_closed() {
        return false;
    }
    if let Some(invoke) = invoke {
        extensions.publish(invoke);
    }
    reply.send(Ok(next)).is_ok()
}

/// Runs the instance to its end; returns the init failure if it never became ready.
async fn run(
    id: InstanceId,
    spec: Arc<FunctionSpec>,
    mut rx: mpsc::UnboundedReceiver<InstanceMsg>,
    api_tx: mpsc::UnboundedSender<InstanceMsg>,
    reports: &mpsc::UnboundedSender<FunctionReport>,
    delay: Duration,
) -> Option<InitFailure> {
    if !delay.is_zero() {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            msg = rx.recv() => match msg {
                Some(InstanceMsg::Stop) | None => return None,
                Some(other) => refuse(other).await,
            },
        }
    }
    // A function read from the store as the host starts waits for the committed components
    // to have started (see `StartGate`).
    if !spec.start_gate.is_open() {
        let opened = spec.start_gate.wait();
        tokio::pin!(opened);
        loop {
            tokio::select! {
                () = &mut opened => break,
                msg = rx.recv() => match msg {
                    Some(InstanceMsg::Stop) | None => return None,
                    Some(other) => refuse(other).await,
                },
            }
        }
    }
    let listener = match TcpListener::bind(("127.0.0.1", 0)).await {
        Ok(l) => l,
        Err(e) => {
            return Some(InitFailure::LaunchFailed(format!(
                "cannot open the Runtime API port: {e}"
            )))
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => return Some(InitFailure::LaunchFailed(e.to_string())),
    };
    // The server needs the runtime's pid to tell its connections from others' (`peer`); it is
    // known once the process is started, and a connection made before waits for it.
    let (runtime_tx, runtime_rx) = watch::channel(None);
    let admitted = Arc::new(Admitted::default());
    let server = AbortOnDrop(tokio::spawn(serve_runtime_api(
        listener,
        admitted.clone(),
        api_tx,
        runtime_rx,
        spec.name.to_string(),
    )));
    // Init Duration counts from here: starting the process is part of the runtime's init.
    let spawned = Instant::now();
    let mut started = match start(&spec, id, &addr.to_string()).await {
        Ok(started) => started,
        Err(why) => {
            spec.log.write_lines(Level::Warn, why.as_bytes());
            return Some(InitFailure::LaunchFailed(why));
        }
    };
    let (sandbox, mut child) = (started.sandbox.take(), started.child);
    let pid = child.id().unwrap_or(0);
    if pid != 0 {
        runtime_tx.send_replace(Some(pid));
    }
    let gate = child.stdin.take();
    let stdout = child.stdout.take().and_then(|s| s.into_owned_fd().ok());
    let stderr = child.stderr.take().and_then(|s| s.into_owned_fd().ok());
    let mut inst = Instance {
        id,
        phase: Phase::Init,
        parked: None,
        undelivered: None,
        last_answered: None,
        spawned,
        init_duration: None,
        init_error: None,
        pid,
        memory: logs::MemoryProbe::open(pid),
        pending_start: None,
        stdout: OutputPipe::new(stdout, Level::Info),
        stderr: OutputPipe::new(stderr, Level::Warn),
        extension_output: OutputPipe::of_extensions(started.extension_output),
        deadline: Some(Instant::now() + spec.init_timeout),
        timed_out_init: false,
        init_awaited: Vec::new(),
        component_oom_kills: spec.cgroup.as_ref().map_or(0, |g| g.oom_kills()),
        sandbox,
        last_duration: None,
        extensions: Extensions::new(spec.extensions.clone()),
        extensions_shutting_down: false,
        after_extensions: None,
        admitted,
        telemetry: Telemetry::default(),
        gate,
        spec,
        announced: false,
    };
    inst.telemetry.emit(Record::InitStart {
        initialization_type: tm::InitType::OnDemand,
        phase: tm::Phase::Init,
    });
    let mut timer = super::deadline::DeadlineTimer::new();
    // One wait for the process's whole life: made again on each turn, it registered anew.
    let exited = child.wait();
    tokio::pin!(exited);
    let status = loop {
        let deadline = inst.deadline;
        tokio::select! {
            status = &mut exited => break status,
            msg = rx.recv() => match msg {
                Some(msg) => inst.handle(msg, reports).await,
                None => inst.kill(),
            },
            () = inst.stdout.readable() => inst.drain_output(),
            () = inst.stderr.readable() => inst.drain_output(),
            () = inst.extension_output.readable() => inst.drain_output(),
            () = timer.wait(deadline) => inst.on_deadline().await,
            // A container's extensions finishing their SHUTDOWN: looked at every 10 ms, for at
            // most the grace period.
            // (An async block: a disabled branch's future is still made, and a sleep made
            // reads the clock.)
            () = async { tokio::time::sleep(Duration::from_millis(10)).await }, if inst.after_extensions.is_some() => {
                inst.signal_once_extensions_ended();
            }
        }
    };
    // A runtime that ended by itself (a crash, an exit) resets the instance: its extensions
    // hear why. Its invocation's answer waits for them (at most the grace period).
    if !matches!(inst.phase, Phase::Init | Phase::Ending) {
        inst.shut_extensions_down(ShutdownReason::Failure);
    }
    if inst.extensions_shutting_down {
        inst.wait_for_extensions(&mut rx).await;
    }
    drop(server);
    inst.drain_output();
    // Whatever the runtime left behind in its process group goes with it.
    inst.kill();
    let mut how = match &status {
        Ok(status) => describe_exit(*status),
        Err(e) => format!("unknown exit: {e}"),
    };
    let out_of_memory = inst.sandbox.as_ref().is_some_and(|s| s.oom_killed());
    if let Some(limit) = inst
        .sandbox
        .as_ref()
        .map(|s| s.limit_kib())
        .filter(|_| out_of_memory)
    {
        how = format!("{how} (out of memory: the limit is {limit} KB)");
    }
    // A plain instance killed while its component's group counted a kill for memory.
    let killed = matches!(&status, Ok(s) if s.signal() == Some(Signal::SIGKILL as i32));
    let component_out_of_memory = inst.sandbox.is_none()
        && killed
        && inst
            .spec
            .cgroup
            .as_ref()
            .is_some_and(|g| g.oom_kills() > inst.component_oom_kills);
    if component_out_of_memory {
        how = format!("{how} (out of memory: over its component's memory limit)");
    }
    let out_of_memory = out_of_memory || component_out_of_memory;
    inst.on_exit(how, out_of_memory).await
}

/// Reads what both pipes hold now into the log (and the tail).
fn drain_into(
    pipes: [&mut OutputPipe; 3],
    spec: &FunctionSpec,
    mut tail: Option<&mut LogTail>,
    pending_start: &mut Option<String>,
    telemetry: &mut Telemetry,
) {
    for pipe in pipes {
        pipe.drain(spec, tail.as_deref_mut(), pending_start, telemetry);
    }
}

/// Answers a message that arrived for an instance that is not running.
async fn refuse(msg: InstanceMsg) {
    match msg {
        InstanceMsg::Assign(inv) => inv.abort(InvocationAbort::ShuttingDown).await,
        InstanceMsg::Stop => {}
        InstanceMsg::Next(reply) => {
            let _ = reply.send(Err(RuntimeApiError::ShuttingDown));
        }
        InstanceMsg::Response { reply, .. }
        | InstanceMsg::ResponseTooLarge { reply, .. }
        | InstanceMsg::StreamClose { reply, .. }
        | InstanceMsg::Error { reply, .. }
        | InstanceMsg::InitError { reply, .. }
        | InstanceMsg::ExtensionError { reply, .. }
        | InstanceMsg::Subscribe { reply, .. } => {
            let _ = reply.send(Err(RuntimeApiError::ShuttingDown));
        }
        InstanceMsg::ExtensionRegister { reply, .. } => {
            let _ = reply.send(Err(RuntimeApiError::ShuttingDown));
        }
        InstanceMsg::StreamOpen { reply, .. } => {
            let _ = reply.send(Err(RuntimeApiError::ShuttingDown));
        }
        InstanceMsg::ExtensionNext { reply, .. } => {
            let _ = reply.send(Err(RuntimeApiError::ShuttingDown));
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An instance's started process.
struct Started {
    /// A container's cgroup.
    sandbox: Option<InstanceCgroup>,
    child: tokio::process::Child,
    /// With external extensions, the read end of their output pipe.
    extension_output: Option<std::os::fd::OwnedFd>,
}

/// Starts the instance's process: a containerised one from its configuration's waiting
/// sandbox init when there is one (which then gets replaced in the background), otherwise
/// spawned here (and, for a container, attached to a new cgroup here).
async fn start(
    spec: &Arc<FunctionSpec>,
    id: InstanceId,
    runtime_api: &str,
) -> Result<Started, String> {
    let zygote = spec.zygote.take().await;
    if let Some(zygote) = zygote {
        let pid = zygote.pid();
        let gated = !spec.extensions.is_empty();
        match zygote.start(&environment(spec, runtime_api), gated).await {
            Ok((child, cgroup, extension_output)) => {
                tracing::debug!(function = %spec.name, ?pid, "instance started from a waiting sandbox init");
                return Ok(Started {
                    sandbox: Some(cgroup),
                    child,
                    extension_output,
                });
            }
            Err(e) => {
                tracing::warn!(function = %spec.name, "a waiting sandbox init failed ({e}); starting one the usual way");
            }
        }
    }
    let sandbox = sandbox::prepare(spec, id)?;
    let cannot = |e: std::io::Error| format!("cannot start {}: {e}", spec.launch.program.display());
    let (extension_output, extension_input) =
        match super::extensions::output_pipe(!spec.extensions.is_empty()).map_err(cannot)? {
            Some((read, write)) => (Some(read), Some(write)),
            None => (None, None),
        };
    // The command (and with it the pipe's write end) is dropped once the child has its copy.
    let child = command(spec, runtime_api, sandbox.as_ref(), extension_input).and_then(|cmd| {
        tokio::process::Command::from(cmd)
            .kill_on_drop(true)
            .spawn()
    });
    match child {
        Ok(child) => Ok(Started {
            sandbox,
            child,
            extension_output,
        }),
        Err(e) => Err(cannot(e)),
    }
}

/// The runtime's whole environment (`interface.md`): what AWS Lambda gives a runtime, the
/// function's `Environment`, what its component gives it (IPC, device variables), its user's
/// `HOME`/`USER`/`LOGNAME`, the host's marker, and of the host's own environment only what
/// [`crate::child_env`] passes.
fn environment(spec: &FunctionSpec, runtime_api: &str) -> Vec<(OsString, OsString)> {
    let config = &spec.config;
    let mut env: std::collections::BTreeMap<OsString, OsString> =
        crate::child_env::passed().iter().cloned().collect();
    fn set(env: &mut std::collections::BTreeMap<OsString, OsString>, key: &str, value: &OsStr) {
        env.insert(key.into(), value.to_owned());
    }
    // AWS's layer paths first: they are not reserved, so a function's own values win.
    if let Some(layers) = &spec.layers {
        let path = env
            .get(OsStr::new("PATH"))
            .cloned()
            .unwrap_or_else(|| crate::child_env::DEFAULT_PATH.into());
        for (key, value) in layers.env(&config.runtime, &path) {
            set(&mut env, key, &value);
        }
    }
    for (key, value) in config.environment.iter().chain(&spec.component_env) {
        set(&mut env, key, value.as_ref());
    }
    let stream = format!(
        "{}/[{LATEST}]{}",
        timestamp::log_stream_date(SystemTime::now()),
        uuid::Uuid::new_v4().simple()
    );
    let (task_root, runtime_dir) = match config.greengrass.isolation {
        Isolation::GreengrassContainer(_) => sandbox::inside_dirs(&spec.code_dir, &spec.launch),
        Isolation::NoContainer => (spec.code_dir.clone(), spec.launch.runtime_dir.clone()),
    };
    set(&mut env, "AWS_LAMBDA_RUNTIME_API", runtime_api.as_ref());
    set(&mut env, "LAMBDA_TASK_ROOT", task_root.as_os_str());
    set(&mut env, "LAMBDA_RUNTIME_DIR", runtime_dir.as_os_str());
    set(
        &mut env,
        "AWS_LAMBDA_FUNCTION_NAME",
        spec.name.as_str().as_ref(),
    );
    set(&mut env, "AWS_LAMBDA_FUNCTION_VERSION", LATEST.as_ref());
    set(
        &mut env,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        config.memory_size_mb.to_string().as_ref(),
    );
    set(
        &mut env,
        "AWS_LAMBDA_LOG_GROUP_NAME",
        format!("/aws/lambda/{}", spec.name).as_ref(),
    );
    set(&mut env, "AWS_LAMBDA_LOG_STREAM_NAME", stream.as_ref());
    set(
        &mut env,
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        if config.greengrass.pinned {
            "provisioned-concurrency"
        } else {
            "on-demand"
        }
        .as_ref(),
    );
    set(&mut env, "AWS_REGION", spec.region.as_ref());
    set(&mut env, "AWS_DEFAULT_REGION", spec.region.as_ref());
    set(&mut env, "TZ", ":UTC".as_ref());
    set(
        &mut env,
        "LAMBKIN_PAYLOAD_ENCODING",
        config
            .greengrass
            .input_payload_encoding_type
            .as_str()
            .as_ref(),
    );
    // Set by Lambda alone: a function's own `Environment` does not provide them.
    match &config.handler {
        Some(handler) => set(&mut env, "_HANDLER", handler.as_ref()),
        None => drop(env.remove(OsStr::new("_HANDLER"))),
    }
    match &spec.launch.execution_env {
        Some(execution_env) => set(&mut env, "AWS_EXECUTION_ENV", execution_env.as_ref()),
        None => drop(env.remove(OsStr::new("AWS_EXECUTION_ENV"))),
    }
    let user = spec
        .run_as
        .as_ref()
        .unwrap_or_else(|| crate::users::host_identity());
    for (key, value) in user.env() {
        set(&mut env, key, &value);
    }
    set(&mut env, crate::orphans::MARKER, spec.host_root.as_os_str());
    env.into_iter().collect()
}

/// The command that starts the instance's process (for a container, with `sandbox` its
/// cgroup, the sandbox init), with the runtime's whole environment, and the write end of the
/// external extensions' output pipe when there are some.
fn command(
    spec: &FunctionSpec,
    runtime_api: &str,
    sandbox: Option<&InstanceCgroup>,
    extension_input: Option<std::os::fd::OwnedFd>,
) -> std::io::Result<std::process::Command> {
    let config = &spec.config;
    let contained = matches!(
        config.greengrass.isolation,
        Isolation::GreengrassContainer(_)
    );
    let mut cmd = match (&config.greengrass.isolation, sandbox) {
        (Isolation::GreengrassContainer(params), Some(cgroup)) => {
            sandbox::command(spec, params, cgroup, false)?
        }
        _ => {
            let mut cmd = std::process::Command::new(&spec.launch.program);
            cmd.args(&spec.launch.args);
            cmd
        }
    };
    cmd.current_dir(&spec.code_dir)
        // With external extensions, stdin is the gate the runtime waits behind.
        .stdin(if spec.extensions.is_empty() {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_clear()
        .envs(environment(spec, runtime_api));
    // The sandbox init joins its group and changes user itself, after mounting. A plain
    // process joins the component's group, gets its layers at /opt (read-only, in a mount
    // namespace of its own) and changes user. Its environment has the marker and names its
    // user already.
    let mut setup = crate::child::Setup {
        fds: extension_input
            .map(|fd| vec![(fd, super::extensions::OUTPUT_FD)])
            .unwrap_or_default(),
        ..crate::child::Setup::default()
    };
    if !contained {
        setup.cgroups = spec
            .cgroup
            .as_ref()
            .map(|g| g.procs_files())
            .unwrap_or_default();
        setup.read_only_bind = spec
            .layers
            .as_ref()
            .filter(|l| l.at_opt)
            .map(|l| (l.dir.as_path(), std::path::Path::new(super::layers::OPT)));
        if let Some(run_as) = &spec.run_as {
            setup.user = crate::child::User::Become(run_as);
        }
    }
    crate::child::prepare(&mut cmd, setup)?;
    Ok(cmd)
}

fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit status {code}");
    }
    match status.signal().map(Signal::try_from) {
        Some(Ok(Signal::SIGKILL)) => "signal: killed".into(),
        Some(Ok(Signal::SIGSEGV)) => "signal: segmentation fault".into(),
        Some(Ok(Signal::SIGABRT)) => "signal: aborted".into(),
        Some(Ok(Signal::SIGTERM)) => "signal: terminated".into(),
        Some(Ok(sig)) => format!("signal: {sig}"),
        Some(Err(_)) | None => format!("{status}"),
    }
}

impl Instance {
    fn tail(&mut self) -> Option<&mut LogTail> {
        match &mut self.phase {
            Phase::Busy(current) => current.tail.as_mut(),
            _ => None,
        }
    }

    fn drain_output(&mut self) {
        let tail = match &mut self.phase {
            Phase::Busy(current) => current.tail.as_mut(),
            _ => None,
        };
        drain_into(
            [
                &mut self.stdout,
                &mut self.stderr,
                &mut self.extension_output,
            ],
            &self.spec,
            tail,
            &mut self.pending_start,
            &mut self.telemetry,
        );
        for exited in std::mem::take(&mut self.extension_output.exits) {
            self.extension_exited(&exited);
        }
    }

    /// An external extension has exited. In a shutdown that is its part; during init it
    /// fails the init (`Extension.Crash`, as in Lambda); after it, the instance is reset.
    fn extension_exited(&mut self, exited: &super::extensions::Exited) {
        if self.extensions_shutting_down || matches!(self.phase, Phase::Ending) {
            return;
        }
        let how = exited.how();
        if matches!(self.phase, Phase::Init) {
            if self.init_error.is_none() {
                let message = format!("extension {} exited during init: {how}", exited.name);
                self.spec.log.write_lines(Level::Warn, message.as_bytes());
                self.init_error = Some(error_body("Extension.Crash", &message));
                self.deadline = Some(Instant::now() + INIT_ERROR_GRACE);
            }
        } else {
            self.spec.log.write_lines(
                Level::Warn,
                format!(
                    "extension {} exited ({how}); the instance is reset",
                    exited.name
                )
                .as_bytes(),
            );
            self.kill();
        }
    }

    fn signal_group(&self, signal: Signal) {
        if self.pid != 0 {
            // The process group may already be gone; that is the goal anyway.
            let _ = killpg(Pid::from_raw(self.pid as i32), signal);
        }
    }

    /// The instance's processes: the runtime, or everything in its container.
    fn processes(&self) -> Vec<u32> {
        match &self.sandbox {
            Some(sandbox) => sandbox.processes(),
            None => vec![self.pid],
        }
    }

    fn kill(&mut self) {
        self.signal_group(Signal::SIGKILL);
    }

    fn log_line(&mut self, line: &str) {
        let text = match self.pending_start.take() {
            Some(start) => format!("{start}\n{line}"),
            None => line.to_owned(),
        };
        self.spec.log.write_lines(Level::Info, text.as_bytes());
        if let Some(tail) = self.tail() {
            tail.push_line(line.as_bytes());
        }
    }

    async fn handle(&mut self, msg: InstanceMsg, reports: &mpsc::UnboundedSender<FunctionReport>) {
        match msg {
            InstanceMsg::Assign(inv) => self.assign(inv).await,
            InstanceMsg::Stop => {
                let grace = self.spec.shutdown_grace;
                if matches!(self.phase, Phase::Ending)
                    || !self.shut_extensions_down(ShutdownReason::Spindown)
                {
                    self.signal_group(Signal::SIGTERM);
                } else {
                    // The runtime gets SIGTERM; its extensions finish on SHUTDOWN, within
                    // the grace period, as in Lambda.
                    self.signal_runtime(Signal::SIGTERM);
                }
                self.deadline = Some(Instant::now() + grace);
                let phase = std::mem::replace(&mut self.phase, Phase::Ending);
                if let Phase::Busy(current) = phase {
                    current.inv.abort(InvocationAbort::ShuttingDown).await;
                }
                if let Some(inv) = self.undelivered.take() {
                    inv.abort(InvocationAbort::ShuttingDown).await;
                }
            }
            InstanceMsg::Next(reply) => self.next(reply, reports),
            InstanceMsg::ExtensionRegister {
                name,
                events,
                with_account,
                reply,
            } => {
                let result = if matches!(self.phase, Phase::Init) {
                    self.extensions.register(&name, events).map(|id| {
                        let response = RegisterResponse {
                            function_name: self.spec.name.to_string(),
                            function_version: LATEST.into(),
                            handler: self.spec.config.handler.clone().unwrap_or_default(),
                            // arn:aws:lambda:REGION:ACCOUNT:function:NAME
                            account_id: with_account
                                .then(|| self.spec.arn.split(':').nth(4).map(str::to_owned))
                                .flatten(),
                        };
                        (id, response)
                    })
                } else {
                    Err(ExtensionError::RegistrationClosed)
                };
                let _ = reply.send(result.map_err(Into::into));
                if self.gate.is_some() && self.extensions.all_external_registered() {
                    // Extension init is over: the runtime starts.
                    self.gate = None;
                }
            }
            InstanceMsg::ExtensionNext { id, reply } => {
                self.extensions.next(&id, reply);
                self.try_ready(reports);
            }
            InstanceMsg::ExtensionError {
                id,
                error_type,
                init,
                reply,
            } => {
                let name = match self.extensions.name(&id) {
                    Ok(name) => name.to_owned(),
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                        return;
                    }
                };
                let during_init = matches!(self.phase, Phase::Init);
                if init && !during_init {
                    let _ = reply.send(Err(ExtensionError::InvalidState(
                        "init/error is only allowed during init".into(),
                    )
                    .into()));
                    return;
                }
                let what = if init { "init" } else { "exit" };
                self.spec.log.write_lines(
                    Level::Warn,
                    format!("extension {name} reported an {what} error: {error_type}").as_bytes(),
                );
                let _ = reply.send(Ok(()));
                if during_init {
                    // The instance's init fails with it, as the runtime's own would.
                    self.init_error = Some(error_body(
                        &error_type,
                        &format!("extension {name} failed to initialize: {error_type}"),
                    ));
                    self.deadline = Some(Instant::now() + INIT_ERROR_GRACE);
                } else {
                    // An extension that exits with an error resets the instance.
                    self.kill();
                }
            }
            InstanceMsg::Subscribe {
                id,
                subscription,
                reply,
            } => {
                let result = match self.extensions.name(&id) {
                    Ok(name) => {
                        let name = name.to_owned();
                        self.telemetry
                            .subscribe(&id, &name, subscription, self.pid)
                            .map_err(Into::into)
                    }
                    Err(e) => Err(e.into()),
                };
                let _ = reply.send(result);
            }
            InstanceMsg::Response {
                request_id,
                body,
                content_type,
                began,
                reply,
            } => {
                let result = self.check_answer(&request_id);
                if result.is_ok() {
                    self.answer_began(began);
                }
                let end = match result {
                    Ok(()) => self.finish(body, content_type, false, false).await,
                    Err(_) => None,
                };
                self.answer_runtime(result, reply, end).await;
            }
            InstanceMsg::ResponseTooLarge {
                request_id,
                size,
                reply,
            } => {
                let result = self.check_answer(&request_id);
                let mut end = None;
                if result.is_ok() {
                    let size = size.map_or_else(
                        || format!("more than {MAX_RESPONSE_BYTES} bytes"),
                        |s| format!("{s} bytes"),
                    );
                    let body = error_body(
                        "Function.ResponseSizeTooLarge",
                        &format!("Response payload size ({size}) exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."),
                    );
                    end = self.finish(body, None, true, false).await;
                }
                let result = result.and(Err(RuntimeApiError::RequestEntityTooLarge {
                    size: 0,
                    limit: MAX_RESPONSE_BYTES,
                }));
                self.answer_runtime(result, reply, end).await;
            }
            InstanceMsg::StreamOpen {
                request_id,
                content_type,
                reply,
            } => {
                let result = self
                    .check_answer(&request_id)
                    .and_then(|()| match &mut self.phase {
                        Phase::Busy(current) if current.streaming => {
                            Err(RuntimeApiError::InvalidStateTransition(format!(
                                "invocation {request_id} is being answered already"
                            )))
                        }
                        Phase::Busy(current) => {
                            current.streaming = true;
                            current.answer_began.get_or_insert_with(Instant::now);
                            Ok(current
                                .inv
                                .open_stream(content_type)
                                .map_or(StreamTarget::Gather, StreamTarget::Forward))
                        }
                        _ => Err(RuntimeApiError::InvalidRequestId(request_id.clone())),
                    });
                let _ = reply.send(result);
            }
            InstanceMsg::StreamClose {
                request_id,
                outcome,
                reply,
            } => {
                let result = self.check_answer(&request_id);
                let end = match result {
                    Ok(()) => self.close_stream(outcome).await,
                    Err(_) => None,
                };
                self.answer_runtime(result, reply, end).await;
            }
            InstanceMsg::Error {
                request_id,
                body,
                reply,
            } => {
                let result = self.check_answer(&request_id);
                if result.is_ok() {
                    self.answer_began(Instant::now());
                }
                let end = match result {
                    Ok(()) => self.finish(body, None, true, false).await,
                    Err(_) => None,
                };
                self.answer_runtime(result, reply, end).await;
            }
            InstanceMsg::InitError { body, reply } => {
                if matches!(self.phase, Phase::Init) {
                    self.spec.log.write_lines(
                        Level::Warn,
                        format!("init error: {}", String::from_utf8_lossy(&body)).as_bytes(),
                    );
                    self.init_error = Some(body);
                    self.deadline = Some(Instant::now() + INIT_ERROR_GRACE);
                    let _ = reply.send(Ok(()));
                } else {
                    let _ = reply.send(Err(RuntimeApiError::InvalidStateTransition(
                        "init/error is only allowed before the first /next".into(),
                    )));
                }
            }
        }
    }

    fn next(
        &mut self,
        reply: Reply<NextInvocation>,
        reports: &mpsc::UnboundedSender<FunctionReport>,
    ) {
        match &self.phase {
            Phase::Init | Phase::Between => {
                if self.parked.as_ref().is_some_and(|p| !p.is_closed()) {
                    let _ = reply.send(Err(RuntimeApiError::InvalidStateTransition(
                        "another /next is already waiting".into(),
                    )));
                    return;
                }
                self.parked = Some(reply);
                self.try_ready(reports);
            }
            Phase::Idle => {
                if self.parked.as_ref().is_some_and(|p| !p.is_closed()) {
                    let _ = reply.send(Err(RuntimeApiError::InvalidStateTransition(
                        "another /next is already waiting".into(),
                    )));
                    return;
                }
                self.parked = Some(reply);
                if let Some(inv) = self.undelivered.take() {
                    self.deliver(inv);
                }
            }
            // The message names no request id: an error names at most the id its caller sent.
            Phase::Busy(_) => {
                let _ = reply.send(Err(RuntimeApiError::InvalidStateTransition(
                    "the current invocation has not been answered".into(),
                )));
            }
            Phase::Ending => {
                let _ = reply.send(Err(RuntimeApiError::ShuttingDown));
            }
        }
    }

    /// Sends `SHUTDOWN` to the extensions that take it; returns whether any did: then only
    /// the runtime is to be signalled ([`Self::signal_runtime`]), and the extensions get the
    /// grace period.
    fn shut_extensions_down(&mut self, reason: ShutdownReason) -> bool {
        if self.pid == 0 || self.extensions_shutting_down {
            return false;
        }
        let grace = self.spec.shutdown_grace;
        let shutdown = ExtensionEvent::Shutdown {
            shutdown_reason: reason,
            deadline_ms: timestamp::epoch_millis(SystemTime::now()) + grace.as_millis() as u64,
        };
        if self.extensions.publish(&shutdown) == 0 {
            return false;
        }
        self.extensions_shutting_down = true;
        self.deadline = Some(Instant::now() + grace);
        true
    }

    /// Signals the runtime alone, its extensions finishing their `SHUTDOWN`. A container ends
    /// with its runtime (the init goes, and the kernel kills the rest), so there the signal
    /// goes to every process once the extensions have ended, or at the grace period's end.
    fn signal_runtime(&mut self, signal: Signal) {
        let contained = matches!(
            self.spec.config.greengrass.isolation,
            Isolation::GreengrassContainer(_)
        );
        if contained {
            self.after_extensions = match self.after_extensions {
                Some(Signal::SIGKILL) => Some(Signal::SIGKILL),
                _ => Some(signal),
            };
        } else if self.pid != 0 {
            let _ = nix::sys::signal::kill(Pid::from_raw(self.pid as i32), signal);
        }
    }

    /// In a container: once no process besides the runtime that used the Runtime API (an
    /// extension) runs, the container's processes get the signal kept for them.
    fn signal_once_extensions_ended(&mut self) {
        let Some(signal) = self.after_extensions else {
            return;
        };
        let runtime = contained_runtime(self.pid);
        let procfs = peer::Procfs::host();
        if !self.admitted.any_running_besides(&procfs, runtime) {
            self.after_extensions = None;
            self.signal_group(signal);
        }
    }

    /// Becomes ready once the runtime and every extension wait for their next event.
    fn try_ready(&mut self, reports: &mpsc::UnboundedSender<FunctionReport>) {
        if !matches!(self.phase, Phase::Init | Phase::Between)
            || self.parked.is_none()
            || !self.extensions.ready()
        {
            return;
        }
        if matches!(self.phase, Phase::Init) {
            let init_duration = self.spawned.elapsed();
            self.init_duration = Some(init_duration);
            if let Some(metrics) = &self.spec.metrics {
                metrics.init_duration.observe(init_duration);
            }
            self.extensions.close();
            self.init_telemetry(init_duration);
            // The next instance's sandbox init is prepared now that this one is up,
            // not while it was starting: both would compete for the CPU.
            sandbox::refill_zygote(&self.spec);
        }
        self.phase = Phase::Idle;
        self.deadline = None;
        let _ = reports.send(FunctionReport::InstanceReady(self.id));
    }

    /// After `SHUTDOWN`: waits, until the stop's deadline, for the processes that used the
    /// Runtime API besides the runtime (its extensions) to end by themselves, still answering
    /// their `event/next` (one busy when the stop came gets its `SHUTDOWN` only when it asks
    /// again).
    async fn wait_for_extensions(&mut self, rx: &mut mpsc::UnboundedReceiver<InstanceMsg>) {
        let deadline = self.deadline.unwrap_or_else(Instant::now);
        let procfs = peer::Procfs::host();
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        while Instant::now() < deadline && self.admitted.any_running(&procfs) {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(InstanceMsg::ExtensionNext { id, reply }) => self.extensions.next(&id, reply),
                    Some(other) => refuse(other).await,
                    None => break,
                },
                _ = tick.tick() => {}
            }
        }
    }

    async fn assign(&mut self, inv: Invocation) {
        if !matches!(self.phase, Phase::Idle) || self.undelivered.is_some() {
            // The scheduler assigns only to ready instances; anything else is a bug upstream.
            tracing::error!(
                instance = self.id.0,
                "invocation assigned to an instance that is not ready"
            );
            inv.abort(InvocationAbort::ShuttingDown).await;
            return;
        }
        self.deliver(inv);
    }

    /// Hands the invocation to the parked `/next` (and its `INVOKE` to the extensions); keeps
    /// it if the runtime is not waiting.
    fn deliver(&mut self, inv: Invocation) {
        // A `/next` whose connection has gone cannot take it: the invocation waits for the next.
        let Some(reply) = self.parked.take().filter(|reply| !reply.is_closed()) else {
            self.undelivered = Some(inv);
            return;
        };
        let now = Instant::now();
        let timeout = self.spec.config.timeout();
        let deadline_ms = timestamp::epoch_millis(SystemTime::now()) + timeout.as_millis() as u64;
        let next = NextInvocation {
            request_id: inv.request_id.clone(),
            payload: inv.payload.clone(),
            deadline_ms,
            content_type: inv.content_type.clone(),
            client_context: inv.client_context.clone(),
            trace_id: inv.trace_id.clone(),
            function_arn: self.spec.arn.clone(),
        };
        let invoke =
            (!self.extensions.is_empty() && !self.announced).then(|| ExtensionEvent::Invoke {
                deadline_ms,
                request_id: inv.request_id.to_string(),
                invoked_function_arn: self.spec.arn.to_string(),
                tracing: rt::Tracing {
                    kind: "X-Amzn-Trace-Id".into(),
                    value: inv.trace_id.clone().unwrap_or_default(),
                },
            });
        if !hand_over(&mut self.extensions, invoke.as_ref(), reply, next) {
            // Its extensions have their `INVOKE` already: the runtime's next `/next` gets the
            // event, and they do not get it twice.
            self.announced = invoke.is_some() || self.announced;
            self.undelivered = Some(inv);
            return;
        }
        self.announced = false;
        let tail = inv.want_log_tail.then(LogTail::default);
        let request_id = inv.request_id.clone();
        self.phase = Phase::Busy(Box::new(Current {
            inv,
            started: now,
            tail,
            init_duration: self.init_duration.take(),
            streaming: false,
            streamed_bytes: None,
            answer_began: None,
        }));
        self.deadline = Some(now + timeout);
        let short = self.last_duration.is_some_and(|d| d < placement::SHORT);
        self.spec
            .placement
            .busy(self.pid, short, || self.processes());
        if self.telemetry.wants(RecordType::Platform) {
            let tracing = match &self.phase {
                Phase::Busy(current) => current.inv.trace_id.clone(),
                _ => None,
            };
            self.telemetry.emit(Record::Start {
                request_id: request_id.to_string(),
                version: LATEST,
                tracing: tracing.map(|value| tm::TraceContext {
                    kind: "X-Amzn-Trace-Id",
                    value,
                }),
            });
        }
        let start = logs::start_line(request_id.as_str(), LATEST);
        if let Some(tail) = self.tail() {
            tail.push_line(start.as_bytes());
        }
        self.pending_start = Some(start);
    }

    /// Whether `request_id` is the invocation to answer. A refusal names only the id the
    /// caller sent, never the current one.
    fn check_answer(&self, request_id: &str) -> Result<(), RuntimeApiError> {
        match &self.phase {
            Phase::Busy(current) if current.inv.request_id.as_str() == request_id => Ok(()),
            _ if self.last_answered.as_ref().map(RequestId::as_str) == Some(request_id) => {
                Err(RuntimeApiError::InvalidStateTransition(format!(
                    "invocation {request_id} has already been answered"
                )))
            }
            _ => Err(RuntimeApiError::InvalidRequestId(request_id.to_owned())),
        }
    }

    /// Ends the current invocation and delivers the outcome. With a log tail, the output and
    /// the END/REPORT lines are written first (the tail carries them); without one, they are
    /// left to the caller as the returned [`EndFrame`], to write once the answers are out.
    #[must_use]
    async fn finish(
        &mut self,
        body: Bytes,
        content_type: Option<String>,
        function_error: bool,
        timed_out: bool,
    ) -> Option<EndFrame> {
        let phase = std::mem::replace(
            &mut self.phase,
            if timed_out {
                Phase::Ending
            } else {
                Phase::Between
            },
        );
        let Phase::Busy(current) = phase else {
            self.phase = phase;
            return None;
        };
        let mut current = *current;
        let duration = current.started.elapsed();
        let mut spans = if self.telemetry.wants(RecordType::Platform) {
            // The spans end where the duration does: they add up to it.
            answer_spans(
                current.started,
                current.answer_began,
                current.started + duration,
                std::time::SystemTime::now(),
            )
        } else {
            Vec::new()
        };
        if let Some(metrics) = &self.spec.metrics {
            let outcome = match (timed_out, function_error) {
                (true, _) => Outcome::Timeout,
                (false, true) => Outcome::FunctionError,
                (false, false) => Outcome::Success,
            };
            metrics.finished(outcome, duration, current.init_duration.is_some());
        }
        self.last_duration = Some(duration);
        self.spec.placement.idle(self.pid);
        let request_id = current.inv.request_id.clone();
        self.last_answered = Some(request_id.clone());
        if !timed_out {
            // Extensions still busy with the invocation share its timeout, as in Lambda.
            let timeout = self.spec.config.timeout();
            self.deadline = (!self.extensions.ready()).then(|| current.started + timeout);
        }
        // The caller waits only for what it asked for: with a log tail, the output and the
        // END/REPORT lines come first; without one, they are written after the answer.
        let produced_bytes = current.streamed_bytes.unwrap_or(body.len() as u64);
        let log_tail = match current.tail.take() {
            Some(mut tail) => {
                drain_into(
                    [
                        &mut self.stdout,
                        &mut self.stderr,
                        &mut self.extension_output,
                    ],
                    &self.spec,
                    Some(&mut tail),
                    &mut self.pending_start,
                    &mut self.telemetry,
                );
                let lines = self.frame_end(&EndFrame {
                    request_id: request_id.clone(),
                    duration,
                    init_duration: current.init_duration,
                    timed_out,
                    function_error,
                    produced_bytes,
                    spans: std::mem::take(&mut spans),
                });
                for line in lines.split('\n') {
                    tail.push_line(line.as_bytes());
                }
                self.write_end(lines);
                Some(tail.into_base64())
            }
            None => None,
        };
        let logged = log_tail.is_some();
        let init_duration = current.init_duration;
        current
            .inv
            .finish(FunctionResponse {
                body,
                content_type,
                function_error,
                log_tail,
            })
            .await;
        (!logged).then_some(EndFrame {
            request_id,
            duration,
            init_duration,
            timed_out,
            function_error,
            produced_bytes,
            spans,
        })
    }

    /// Notes when the runtime's answer to the current invocation began to arrive.
    fn answer_began(&mut self, began: Instant) {
        if let Phase::Busy(current) = &mut self.phase {
            current.answer_began.get_or_insert(began);
        }
    }

    /// Ends an invocation whose answer was streamed to its caller.
    #[must_use]
    async fn close_stream(&mut self, outcome: StreamOutcome) -> Option<EndFrame> {
        let (bytes, error) = match outcome {
            StreamOutcome::Complete { bytes } => (bytes, None),
            StreamOutcome::Failed { error, bytes } => (bytes, Some(error)),
            StreamOutcome::TooLarge => (
                st::MAX_STREAMED_RESPONSE_BYTES as u64,
                Some(StreamError {
                    error_type: "Function.ResponseSizeTooLarge".into(),
                    message: format!(
                        "Response payload size exceeded maximum allowed payload size ({} bytes).",
                        st::MAX_STREAMED_RESPONSE_BYTES
                    ),
                }),
            ),
            StreamOutcome::Truncated(why) => (
                0,
                Some(StreamError {
                    error_type: "Runtime.TruncatedResponse".into(),
                    message: format!("the runtime's streamed response broke off: {why}"),
                }),
            ),
        };
        if let Phase::Busy(current) = &mut self.phase {
            current.streamed_bytes = Some(bytes);
        }
        match error {
            None => self.finish(Bytes::new(), None, false, false).await,
            Some(error) => {
                self.log_line(&format!(
                    "streamed response failed: {}: {}",
                    error.error_type, error.message
                ));
                let body = Bytes::from(error.document().to_string());
                self.finish(body, None, true, false).await
            }
        }
    }

    /// Writes the output and END/REPORT lines of an invocation answered without a log tail.
    fn log_end(&mut self, frame: EndFrame) {
        self.drain_output();
        let lines = self.frame_end(&frame);
        self.write_end(lines);
    }

    /// Answers the runtime's `/response` or `/error` request after the caller's answer has
    /// gone out, then writes the log lines: on the one host thread, each `yield_now` lets the
    /// task just woken run first, so the order is the caller's HTTP response, the runtime's
    /// `202`, and only then the log write and the memory reading, off both critical paths.
    async fn answer_runtime(
        &mut self,
        result: Result<(), RuntimeApiError>,
        reply: Reply<()>,
        end: Option<EndFrame>,
    ) {
        if end.is_some() {
            tokio::task::yield_now().await;
        }
        let _ = reply.send(result);
        if let Some(end) = end {
            tokio::task::yield_now().await;
            self.log_end(end);
        }
    }

    /// END and REPORT (`lines`), with START if nothing was printed in between: one write.
    fn write_end(&mut self, lines: String) {
        let text = match self.pending_start.take() {
            Some(mut start) => {
                start.push('\n');
                start.push_str(&lines);
                start
            }
            None => lines,
        };
        self.spec.log.write_lines(Level::Info, text.as_bytes());
    }

    /// The END and REPORT lines of an invocation, `\n` between them (and its
    /// `platform.runtimeDone` and `platform.report` records, with the same numbers).
    fn frame_end(&mut self, frame: &EndFrame) -> String {
        let EndFrame {
            ref request_id,
            duration,
            init_duration,
            timed_out,
            function_error,
            produced_bytes,
            ref spans,
        } = *frame;
        let report = Report {
            duration,
            memory_size_mb: self.spec.config.memory_size_mb,
            max_memory_used_mb: match &self.sandbox {
                Some(sandbox) => sandbox.peak_mb().unwrap_or(0),
                None => self.memory.as_mut().map_or(0, logs::MemoryProbe::peak_mb),
            },
            init_duration,
            timed_out,
        };
        if self.telemetry.wants(RecordType::Platform) {
            let status = if timed_out {
                tm::Status::Timeout
            } else if function_error {
                tm::Status::Error
            } else {
                tm::Status::Success
            };
            let error_type = (status != tm::Status::Success).then(|| match status {
                tm::Status::Timeout => "Sandbox.Timedout".to_owned(),
                _ => "Function.Error".to_owned(),
            });
            let (duration_ms, billed_duration_ms) = logs::report_durations(&report);
            self.telemetry.emit(Record::RuntimeDone {
                request_id: request_id.to_string(),
                status,
                error_type: error_type.clone(),
                metrics: tm::RuntimeDoneMetrics {
                    duration_ms,
                    produced_bytes,
                },
                spans: spans.clone(),
            });
            self.telemetry.emit(Record::Report {
                request_id: request_id.to_string(),
                status,
                error_type,
                metrics: tm::ReportMetrics {
                    duration_ms,
                    billed_duration_ms,
                    memory_size_mb: report.memory_size_mb,
                    max_memory_used_mb: report.max_memory_used_mb,
                    init_duration_ms: report.init_duration.map(logs::millis_2dp),
                },
            });
        }
        let mut lines = String::new();
        logs::push_end_lines(&mut lines, request_id.as_str(), &report);
        lines
    }

    /// The init's platform records: each extension's, the runtime's done, the init's report.
    fn init_telemetry(&mut self, init_duration: Duration) {
        if !self.telemetry.wants(RecordType::Platform) {
            self.telemetry.init_done();
            return;
        }
        for (name, events) in self.extensions.registered() {
            self.telemetry.emit(Record::PlatformExtension {
                name,
                state: "Ready",
                events,
            });
        }
        self.telemetry.emit(Record::InitRuntimeDone {
            initialization_type: tm::InitType::OnDemand,
            phase: tm::Phase::Init,
            status: tm::Status::Success,
            error_type: None,
        });
        self.telemetry.emit(Record::InitReport {
            initialization_type: tm::InitType::OnDemand,
            phase: tm::Phase::Init,
            metrics: tm::InitReportMetrics {
                duration_ms: logs::millis_2dp(init_duration),
            },
        });
        self.telemetry.init_done();
    }

    async fn on_deadline(&mut self) {
        self.deadline = None;
        match &self.phase {
            Phase::Init if self.init_error.is_none() => {
                self.timed_out_init = true;
                // The runtime starts once every external extension has registered.
                self.init_awaited = self.extensions.awaited();
                let who = if self.init_awaited.is_empty() {
                    "runtime did not call /next".to_owned()
                } else {
                    format!(
                        "extension {} did not register and ask for its next event",
                        self.init_awaited.join(", ")
                    )
                };
                self.spec.log.write_lines(
                    Level::Warn,
                    format!(
                        "{who} within {:.2} seconds; stopping it",
                        self.spec.init_timeout.as_secs_f64()
                    )
                    .as_bytes(),
                );
                self.kill();
            }
            Phase::Busy(current) => {
                let timeout = self.spec.config.timeout().as_secs_f64();
                let message = format!(
                    "RequestId: {} Error: Task timed out after {timeout:.2} seconds",
                    current.inv.request_id
                );
                // Measure memory before the kill takes the process away.
                self.drain_output();
                self.log_line(&format!(
                    "{} {message}",
                    timestamp::iso8601_millis(SystemTime::now())
                ));
                if let Some(end) = self
                    .finish(error_body("Sandbox.Timedout", &message), None, true, true)
                    .await
                {
                    self.log_end(end);
                }
                if self.shut_extensions_down(ShutdownReason::Timeout) {
                    self.signal_runtime(Signal::SIGKILL);
                } else {
                    self.kill();
                }
            }
            // Init after /init/error, or a stop's grace period: the process had its chance.
            Phase::Init | Phase::Ending | Phase::Idle | Phase::Between => self.kill(),
        }
    }

    async fn on_exit(mut self, how: String, out_of_memory: bool) -> Option<InitFailure> {
        self.spec.placement.gone(self.pid);
        let phase = std::mem::replace(&mut self.phase, Phase::Ending);
        if let Some(inv) = self.undelivered.take() {
            inv.abort(InvocationAbort::ShuttingDown).await;
        }
        match phase {
            Phase::Init => {
                let failure = if let Some(body) = self.init_error.take() {
                    InitFailure::Posted(body)
                } else if self.timed_out_init {
                    InitFailure::TimedOut(self.spec.init_timeout, self.init_awaited.clone())
                } else {
                    InitFailure::Exited(how.clone())
                };
                self.spec.log.write_lines(
                    Level::Warn,
                    format!("runtime exited before it was ready: {how}").as_bytes(),
                );
                Some(failure)
            }
            Phase::Busy(current) => {
                let message = format!(
                    "RequestId: {} Error: Runtime exited with error: {how}",
                    current.inv.request_id
                );
                self.phase = Phase::Busy(current);
                self.log_line(&message);
                let error_type = if out_of_memory {
                    "Runtime.OutOfMemory"
                } else {
                    "Runtime.ExitError"
                };
                if let Some(end) = self
                    .finish(error_body(error_type, &message), None, true, false)
                    .await
                {
                    self.log_end(end);
                }
                None
            }
            Phase::Idle | Phase::Between | Phase::Ending => None,
        }
    }
}

async fn serve_runtime_api(
    listener: TcpListener,
    admitted: Arc<Admitted>,
    tx: mpsc::UnboundedSender<InstanceMsg>,
    runtime: watch::Receiver<Option<u32>>,
    function: String,
) {
    let function: Arc<str> = function.into();
    let mut connections = JoinSet::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(RUNTIME_API_CONNECTIONS));
    let refusals = Arc::new(crate::logfile::Noted::default());
    let mut backoff = crate::http::AcceptBackoff::default();
    loop {
        // Past the cap the loop stops accepting until a connection ends (the kernel's backlog
        // holds the rest): a runtime uses one or two.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => {
                backoff.succeeded("runtime API");
                accepted
            }
            Err(e) => {
                tokio::time::sleep(backoff.failed("runtime API", &e)).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        let (tx, runtime, function, refusals, admitted) = (
            tx.clone(),
            runtime.clone(),
            function.clone(),
            refusals.clone(),
            admitted.clone(),
        );
        connections.spawn(async move {
            let _slot = slot;
            if admit(&stream, peer, runtime, &function, &refusals, &admitted).await {
                serve_connection(stream, tx).await;
            } else {
                // A stranger gets its answer or, if it sends nothing, the door.
                let _ = tokio::time::timeout(REFUSAL_TIMEOUT, serve_refusal(stream)).await;
            }
        });
    }
}

/// Processes of the instance's tree admitted before, by pid and start time: an extension the
/// runtime started stays admitted once the runtime has gone (in its shutdown, as in Lambda),
/// and a later process given the same pid is not.
#[derive(Debug, Default)]
struct Admitted(std::sync::Mutex<Vec<(u32, u64)>>);

impl Admitted {
    /// The most processes remembered (a runtime and its extensions are a handful).
    const MAX: usize = 64;

    /// Whether a remembered process still runs.
    fn any_running(&self, procfs: &peer::Procfs) -> bool {
        self.any_running_besides(procfs, None)
    }

    /// Whether a remembered process other than `besides` still runs.
    fn any_running_besides(&self, procfs: &peer::Procfs, besides: Option<u32>) -> bool {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .any(|(pid, started)| Some(*pid) != besides && procfs.still_running(*pid, *started))
    }

    fn remember(&self, procfs: &peer::Procfs, pid: u32) {
        let Some(started) = procfs.start_time(pid) else {
            return;
        };
        let mut known = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !known.contains(&(pid, started)) && known.len() < Self::MAX {
            known.push((pid, started));
        }
    }

    /// The remembered process that holds the client's socket, if one does.
    fn holder(
        &self,
        procfs: &peer::Procfs,
        ours: std::net::SocketAddr,
        peer: std::net::SocketAddr,
    ) -> Option<u32> {
        let known = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let pids: Vec<u32> = known.iter().map(|(pid, _)| *pid).collect();
        let pid = procfs.held_by(&pids, ours, peer)?;
        known
            .contains(&(pid, procfs.start_time(pid)?))
            .then_some(pid)
    }
}

/// A container's runtime, by its pid on the host: the first child of the container's init,
/// which is the child of the sandbox's monitor (`monitor`, the process the instance started).
fn contained_runtime(monitor: u32) -> Option<u32> {
    let children = |pid: u32| -> Option<u32> {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    children(children(monitor)?)
}

/// Connections one instance's Runtime API holds at once.
const RUNTIME_API_CONNECTIONS: usize = 256;
/// How long a refused connection is kept for its one answer.
const REFUSAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether the connection comes from the instance's runtime or a process it started: decided
/// once, before the first request, so the requests of a kept-alive connection cost nothing
/// more. The common case (the runtime is the process the instance started) is settled here in
/// a few tens of microseconds; the rest (a walk of the process tree, which reads every
/// process's `stat`, or the socket tables) runs off the host's thread.
async fn admit(
    stream: &TcpStream,
    peer: std::net::SocketAddr,
    mut runtime: watch::Receiver<Option<u32>>,
    function: &str,
    refusals: &crate::logfile::Noted,
    admitted: &Admitted,
) -> bool {
    let Ok(pid) = runtime.wait_for(Option::is_some).await.map(|pid| *pid) else {
        return false;
    };
    let (Some(pid), Ok(ours)) = (pid, stream.local_addr()) else {
        return false;
    };
    let started = Instant::now();
    let procfs = peer::Procfs::host();
    if let Some(pid) = procfs.runtime_itself(pid, ours, peer) {
        tracing::debug!(function, pid, took = ?started.elapsed(), "a Runtime API connection from the instance's runtime");
        return true;
    }
    if let Some(pid) = admitted.holder(&procfs, ours, peer) {
        tracing::debug!(function, pid, took = ?started.elapsed(), "a Runtime API connection from a process of the instance admitted before");
        return true;
    }
    let identified = tokio::task::spawn_blocking(move || {
        let found = procfs.identify(pid, ours, peer)?;
        // The log names a stranger's process when one of its user's holds the socket.
        let stranger = match found {
            peer::Peer::Runtime { .. } => None,
            peer::Peer::Stranger(socket) => procfs.holder(socket),
        };
        Ok::<_, peer::PeerError>((found, stranger))
    })
    .await;
    match identified {
        Ok(Ok((peer::Peer::Runtime { pid }, _))) => {
            tracing::debug!(function, pid, took = ?started.elapsed(), "a Runtime API connection from the instance's runtime");
            admitted.remember(&peer::Procfs::host(), pid);
            true
        }
        Ok(Ok((peer::Peer::Stranger(socket), stranger))) => {
            // Any local process can cause this at will: the 1st, 2nd, 4th… are logged.
            if let Some(refused) = refusals.note() {
                tracing::warn!(
                    function,
                    %peer,
                    peer_uid = socket.uid,
                    peer_pid = stranger,
                    refused,
                    "refused a Runtime API connection from a process outside the instance"
                );
            }
            false
        }
        Ok(Err(e)) => {
            if let Some(refused) = refusals.note() {
                tracing::warn!(function, %peer, error = %e, refused, "refused a Runtime API connection: its process is unknown");
            }
            false
        }
        Err(e) => {
            if let Some(refused) = refusals.note() {
                tracing::warn!(function, %peer, error = %e, refused, "refused a Runtime API connection: the check failed");
            }
            false
        }
    }
}

/// Answers a refused connection's request with 403 and closes the connection.
async fn serve_refusal(stream: TcpStream) {
    /// Read of a refused request's body (so the client is not reset before it reads the
    /// answer); a longer one is cut off.
    const MAX_DRAINED_BYTES: usize = 64 * 1024;
    let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
        let _ = read_body(req, MAX_DRAINED_BYTES).await;
        let mut response = error_response(RuntimeApiError::NotTheRuntime);
        response
            .headers_mut()
            .insert("connection", http::HeaderValue::from_static("close"));
        Ok::<_, std::convert::Infallible>(response)
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .title_case_headers(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// `platform.runtimeDone`'s spans: `responseLatency` from the event handed over (`started`)
/// to the answer's first arrival (`began`), `responseDuration` from there to its end (`now`);
/// none when the runtime did not answer (a timeout, a crash). `wall_now` is `now` on the
/// clock the records are stamped with.
fn answer_spans(
    started: Instant,
    began: Option<Instant>,
    now: Instant,
    wall_now: std::time::SystemTime,
) -> Vec<tm::Span> {
    let Some(began) = began else {
        return Vec::new();
    };
    let began = began.clamp(started, now);
    let at = |t: Instant| crate::timestamp::iso8601_millis(wall_now - now.duration_since(t));
    vec![
        tm::Span {
            name: "responseLatency",
            start: at(started),
            duration_ms: logs::millis_2dp(began - started),
        },
        tm::Span {
            name: "responseDuration",
            start: at(began),
            duration_ms: logs::millis_2dp(now - began),
        },
    ]
}

async fn serve_connection(stream: TcpStream, tx: mpsc::UnboundedSender<InstanceMsg>) {
    // Small responses must not wait for Nagle: real clients measure the difference.
    let _ = stream.set_nodelay(true);
    // A second handle on the socket, for the options a request calls for once it is read.
    let Some((stream, control)) = with_control(stream) else {
        return;
    };
    let control = Arc::new(control);
    let service = hyper::service::service_fn(move |req| {
        let tx = tx.clone();
        let control = control.clone();
        async move { Ok::<_, std::convert::Infallible>(route(req, &tx, &control).await) }
    });
    // Header names go out title-cased, exactly as AWS sends them: some runtimes look them up
    // case-sensitively.
    let _ = hyper::server::conn::http1::Builder::new()
        .title_case_headers(true)
        .writev(false)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

type Body = Full<Bytes>;

/// The stream, and a duplicate of its socket (the same socket, another descriptor).
fn with_control(stream: TcpStream) -> Option<(TcpStream, std::net::TcpStream)> {
    let std = stream.into_std().ok()?;
    let control = std.try_clone().ok()?;
    let stream = TcpStream::from_std(std).ok()?;
    Some((stream, control))
}

/// Acknowledges what the runtime sent at once, and goes on doing so for a while. A runtime
/// whose client leaves Nagle's algorithm on (`lambda_runtime`'s does) writes a streamed
/// response's head, then holds its first chunk until that head is acknowledged; the kernel
/// delays the acknowledgement of a request not yet answered (up to 40 ms), and the stream's
/// first chunks arrived that much late, together.
fn acknowledge_promptly(socket: &std::net::TcpStream) {
    let _ = socket2::SockRef::from(socket).set_tcp_quickack(true);
}

async fn route(
    req: Request<Incoming>,
    tx: &mpsc::UnboundedSender<InstanceMsg>,
    control: &std::net::TcpStream,
) -> Response<Body> {
    let route = Route::parse(req.method().as_str(), req.uri().path());
    let result = match route {
        Route::Next => {
            let (reply, rx) = oneshot::channel();
            call(tx, InstanceMsg::Next(reply), rx)
                .await
                .map(next_response)
        }
        Route::Response(request_id) => {
            let began = Instant::now();
            match ResponseMode::parse(header(&req, rt::HEADER_RESPONSE_MODE).as_deref()) {
                Ok(ResponseMode::Streaming) => {
                    acknowledge_promptly(control);
                    return streamed_response(req, request_id, tx)
                        .await
                        .unwrap_or_else(error_response);
                }
                Ok(ResponseMode::Buffered) => {}
                Err(e) => {
                    // The caller learns why its invocation failed; the runtime gets its 400 on a
                    // connection it can go on using: the body is read first (an unread body
                    // makes the server close the connection under a runtime that keeps it).
                    let _ = read_body(req, MAX_RESPONSE_BYTES).await;
                    let (reply, rx) = oneshot::channel();
                    let msg = InstanceMsg::Error {
                        request_id,
                        body: error_body("Runtime.InvalidResponseModeHeader", &e.to_string()),
                        reply,
                    };
                    let _ = call(tx, msg, rx).await;
                    return error_response(e);
                }
            }
            let content_type = header(&req, "content-type");
            let declared = header(&req, "content-length").and_then(|v| v.parse::<usize>().ok());
            let body = match declared {
                Some(size) if size > MAX_RESPONSE_BYTES => Err(Some(size)),
                _ => read_body(req, MAX_RESPONSE_BYTES).await.map_err(|_| None),
            };
            match body {
                Ok(body) => {
                    let (reply, rx) = oneshot::channel();
                    let msg = InstanceMsg::Response {
                        request_id,
                        body,
                        content_type,
                        began,
                        reply,
                    };
                    call(tx, msg, rx).await.map(|()| accepted())
                }
                Err(size) => {
                    let (reply, rx) = oneshot::channel();
                    let msg = InstanceMsg::ResponseTooLarge {
                        request_id,
                        size,
                        reply,
                    };
                    call(tx, msg, rx).await.map(|()| accepted())
                }
            }
        }
        Route::Error(request_id) => match read_body(req, MAX_ERROR_BODY_BYTES).await {
            Ok(body) => {
                let (reply, rx) = oneshot::channel();
                let msg = InstanceMsg::Error {
                    request_id,
                    body,
                    reply,
                };
                call(tx, msg, rx).await.map(|()| accepted())
            }
            Err(e) => Err(e),
        },
        Route::InitError => match read_body(req, MAX_ERROR_BODY_BYTES).await {
            Ok(body) => {
                let (reply, rx) = oneshot::channel();
                call(tx, InstanceMsg::InitError { body, reply }, rx)
                    .await
                    .map(|()| accepted())
            }
            Err(e) => Err(e),
        },
        Route::ExtensionRegister => {
            let name = header(&req, rt::HEADER_EXTENSION_NAME).unwrap_or_default();
            let with_account = header(&req, rt::HEADER_EXTENSION_ACCEPT_FEATURE)
                .is_some_and(|f| rt::accepts_account_id(&f));
            match read_body(req, MAX_ERROR_BODY_BYTES)
                .await
                .and_then(|body| RegisterRequest::parse(&body).map_err(Into::into))
            {
                Ok(request) => {
                    let (reply, rx) = oneshot::channel();
                    let msg = InstanceMsg::ExtensionRegister {
                        name,
                        events: request.events,
                        with_account,
                        reply,
                    };
                    call(tx, msg, rx).await.map(|(id, response)| {
                        let mut r = json_ok(&response);
                        if let Ok(id) = http::HeaderValue::from_str(&id) {
                            r.headers_mut().insert(rt::HEADER_EXTENSION_IDENTIFIER, id);
                        }
                        r
                    })
                }
                Err(e) => Err(e),
            }
        }
        Route::ExtensionNext => match header(&req, rt::HEADER_EXTENSION_IDENTIFIER) {
            Some(id) => {
                let (reply, rx) = oneshot::channel();
                call(tx, InstanceMsg::ExtensionNext { id, reply }, rx)
                    .await
                    .map(|(event_id, event)| {
                        let mut r = json_ok(&event);
                        if let Ok(id) = http::HeaderValue::from_str(&event_id) {
                            r.headers_mut()
                                .insert(rt::HEADER_EXTENSION_EVENT_IDENTIFIER, id);
                        }
                        r
                    })
            }
            None => Err(ExtensionError::MissingIdentifier.into()),
        },
        Route::ExtensionInitError | Route::ExtensionExitError => {
            let init = route == Route::ExtensionInitError;
            let id = header(&req, rt::HEADER_EXTENSION_IDENTIFIER);
            let error_type = header(&req, rt::HEADER_EXTENSION_ERROR_TYPE);
            let _ = read_body(req, MAX_ERROR_BODY_BYTES).await;
            match (id, error_type) {
                (None, _) => Err(ExtensionError::MissingIdentifier.into()),
                (_, None) => Err(ExtensionError::MissingErrorType.into()),
                (Some(id), Some(error_type)) => {
                    let (reply, rx) = oneshot::channel();
                    let msg = InstanceMsg::ExtensionError {
                        id,
                        error_type,
                        init,
                        reply,
                    };
                    call(tx, msg, rx).await.map(|()| accepted())
                }
            }
        }
        Route::Subscribe(api) => {
            let id = header(&req, rt::HEADER_EXTENSION_IDENTIFIER);
            let body = read_body(req, MAX_ERROR_BODY_BYTES).await;
            match (id, body) {
                (None, _) => Err(ExtensionError::MissingIdentifier.into()),
                (_, Err(e)) => Err(e),
                (Some(id), Ok(body)) => match Subscription::parse(api, &body) {
                    Ok(subscription) => {
                        let (reply, rx) = oneshot::channel();
                        let msg = InstanceMsg::Subscribe {
                            id,
                            subscription,
                            reply,
                        };
                        call(tx, msg, rx)
                            .await
                            .map(|()| plain(StatusCode::OK, "OK"))
                    }
                    Err(e) => Err(e.into()),
                },
            }
        }
        Route::Ping => Ok(plain(StatusCode::OK, "pong")),
        Route::NotFound => Err(RuntimeApiError::NotFound),
        Route::MethodNotAllowed => Err(RuntimeApiError::MethodNotAllowed),
    };
    result.unwrap_or_else(error_response)
}

/// A streamed `/response`: its data goes to the caller as it arrives (or is gathered, for a
/// caller that takes one answer); its end (trailers, the limit, a break) ends the invocation.
async fn streamed_response(
    req: Request<Incoming>,
    request_id: String,
    tx: &mpsc::UnboundedSender<InstanceMsg>,
) -> Result<Response<Body>, RuntimeApiError> {
    let content_type = header(&req, "content-type");
    let (reply, rx) = oneshot::channel();
    let open = InstanceMsg::StreamOpen {
        request_id: request_id.clone(),
        content_type: content_type.clone(),
        reply,
    };
    let target = call(tx, open, rx).await?;
    let outcome = match target {
        StreamTarget::Forward(parts) => forward(req.into_body(), parts).await,
        StreamTarget::Gather => {
            let (reply, rx) = oneshot::channel();
            let msg = match gather(req.into_body(), MAX_RESPONSE_BYTES).await {
                Ok((body, None)) => InstanceMsg::Response {
                    request_id,
                    body,
                    content_type,
                    // Marked already, when the stream opened.
                    began: Instant::now(),
                    reply,
                },
                Ok((_, Some(error))) => InstanceMsg::Error {
                    request_id,
                    body: Bytes::from(error.document().to_string()),
                    reply,
                },
                Err(GatherError::TooLarge) => InstanceMsg::ResponseTooLarge {
                    request_id,
                    size: None,
                    reply,
                },
                Err(GatherError::Broken(why)) => InstanceMsg::Error {
                    request_id,
                    body: error_body(
                        "Runtime.TruncatedResponse",
                        &format!("the runtime's streamed response broke off: {why}"),
                    ),
                    reply,
                },
            };
            return call(tx, msg, rx).await.map(|()| accepted());
        }
    };
    let too_large = matches!(outcome, StreamOutcome::TooLarge);
    let (reply, rx) = oneshot::channel();
    let close = InstanceMsg::StreamClose {
        request_id,
        outcome,
        reply,
    };
    call(tx, close, rx).await?;
    if too_large {
        return Err(RuntimeApiError::RequestEntityTooLarge {
            size: st::MAX_STREAMED_RESPONSE_BYTES + 1,
            limit: st::MAX_STREAMED_RESPONSE_BYTES,
        });
    }
    Ok(accepted())
}

/// Forwards a streamed body's data as it arrives, never gathering it. A caller that went away
/// does not stop the function: the rest is read and dropped. Bytes that may be the error
/// trailers written into the body are held until the body ends or shows they are not.
async fn forward(mut body: Incoming, parts: mpsc::Sender<StreamPart>) -> StreamOutcome {
    let mut parts = Some(parts);
    let mut bytes: u64 = 0;
    let mut held: Vec<u8> = Vec::new();
    let limit = st::MAX_STREAMED_RESPONSE_BYTES as u64;
    async fn send(parts: &mut Option<mpsc::Sender<StreamPart>>, data: Bytes) {
        if let Some(tx) = parts {
            if tx.send(StreamPart::Data(data)).await.is_err() {
                *parts = None;
            }
        }
    }
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => return StreamOutcome::Truncated(e.to_string()),
        };
        let data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                trailers = frame.into_trailers().ok();
                continue;
            }
        };
        bytes += data.len() as u64;
        if bytes > limit {
            return StreamOutcome::TooLarge;
        }
        if held.is_empty() && !st::may_be_in_band_trailers(&data) {
            send(&mut parts, data).await;
            continue;
        }
        held.extend_from_slice(&data);
        if !st::may_be_in_band_trailers(&held) || held.len() > MAX_ERROR_BODY_BYTES {
            send(&mut parts, Bytes::from(std::mem::take(&mut held))).await;
        }
    }
    if let Some(error) = trailers.as_ref().and_then(trailer_error) {
        return StreamOutcome::Failed { error, bytes };
    }
    if let Some(error) = st::in_band_trailers(&held) {
        return StreamOutcome::Failed {
            error,
            bytes: bytes - held.len() as u64,
        };
    }
    if !held.is_empty() {
        send(&mut parts, Bytes::from(held)).await;
    }
    StreamOutcome::Complete { bytes }
}

fn trailer_error(trailers: &http::HeaderMap) -> Option<StreamError> {
    let error_type = trailers.get(rt::HEADER_ERROR_TYPE)?.to_str().ok()?;
    let body = trailers
        .get(st::HEADER_ERROR_BODY)
        .and_then(|v| v.to_str().ok());
    Some(StreamError::from_trailers(error_type, body))
}

enum GatherError {
    TooLarge,
    Broken(String),
}

/// Reads a streamed body whole, within `limit`, with the error its trailers name.
async fn gather(
    mut body: Incoming,
    limit: usize,
) -> Result<(Bytes, Option<StreamError>), GatherError> {
    let mut collected = bytes::BytesMut::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| GatherError::Broken(e.to_string()))?;
        match frame.into_data() {
            Ok(data) => {
                if collected.len() + data.len() > limit {
                    return Err(GatherError::TooLarge);
                }
                collected.extend_from_slice(&data);
            }
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    if let Some(error) = trailers.as_ref().and_then(trailer_error) {
        return Ok((collected.freeze(), Some(error)));
    }
    // The trailers written into the body, as its last line (`lambda_runtime` 1.x).
    let start = collected
        .windows(st::IN_BAND_TRAILER_PREFIX.len())
        .rposition(|w| w == st::IN_BAND_TRAILER_PREFIX);
    if let Some(error) = start.and_then(|at| st::in_band_trailers(&collected[at..])) {
        return Ok((collected.freeze(), Some(error)));
    }
    Ok((collected.freeze(), None))
}

async fn call<T>(
    tx: &mpsc::UnboundedSender<InstanceMsg>,
    msg: InstanceMsg,
    rx: oneshot::Receiver<Result<T, RuntimeApiError>>,
) -> Result<T, RuntimeApiError> {
    tx.send(msg).map_err(|_| RuntimeApiError::ShuttingDown)?;
    rx.await.map_err(|_| RuntimeApiError::ShuttingDown)?
}

fn header(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, RuntimeApiError> {
    Limited::new(req.into_body(), limit)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                RuntimeApiError::RequestEntityTooLarge { size: 0, limit }
            } else {
                RuntimeApiError::TruncatedHttpRequest(e.to_string())
            }
        })
}

fn next_response(next: NextInvocation) -> Response<Body> {
    let mut builder = Response::builder()
        .status(StatusCode::OK)
        .header(rt::header::REQUEST_ID, next.request_id.as_str())
        .header(rt::header::DEADLINE_MS, next.deadline_ms)
        .header(
            http::header::CONTENT_TYPE,
            next.content_type.as_deref().unwrap_or("application/json"),
        );
    builder = builder.header(rt::header::FUNCTION_ARN, &*next.function_arn);
    if let Some(trace) = &next.trace_id {
        builder = builder.header(rt::header::TRACE_ID, trace);
    }
    if let Some(cc) = &next.client_context {
        builder = builder.header(rt::header::CLIENT_CONTEXT, &*header_safe_json(cc));
    }
    builder
        .body(Full::new(next.payload))
        .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "bad header value"))
}

/// JSON text fit for a header value: a header may not carry DEL or other control bytes, which
/// a JSON string may hold raw (DEL) and which a caller's client context or a trigger's topic
/// can contain. They are written as `\u00XX` escapes, which parse back to the same string.
fn header_safe_json(json: &str) -> std::borrow::Cow<'_, str> {
    if !json.bytes().any(|b| b == 0x7f || (b < 0x20 && b != b'\t')) {
        return std::borrow::Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 12);
    for c in json.chars() {
        if c == '\u{7f}' || (c < ' ' && c != '\t') {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

fn json_ok<T: serde::Serialize>(value: &T) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn accepted() -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(br#"{"status":"OK"}"#)));
    *r.status_mut() = StatusCode::ACCEPTED;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r
}

/// The one place Runtime API errors become HTTP.
fn error_response(e: RuntimeApiError) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(e.body().to_string())));
    *r.status_mut() = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    r
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn an_answer_is_timed_as_its_latency_then_its_duration() {
        use std::time::{Duration, Instant, SystemTime};
        let started = Instant::now();
        let began = started + Duration::from_millis(3);
        let now = started + Duration::from_millis(10);
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let spans = super::answer_spans(started, Some(began), now, wall);
        let got: Vec<(&str, &str, f64)> = spans
            .iter()
            .map(|s| (s.name, s.start.as_str(), s.duration_ms))
            .collect();
        assert_eq!(
            got,
            [
                ("responseLatency", "2027-01-15T07:59:59.990Z", 3.0),
                ("responseDuration", "2027-01-15T07:59:59.993Z", 7.0),
            ]
        );
        // No answer (a timeout, a crash): no spans; an answer noted out of the invocation's
        // bounds is held inside them.
        assert!(super::answer_spans(started, None, now, wall).is_empty());
        let late = super::answer_spans(started, Some(now + Duration::from_secs(1)), now, wall);
        assert_eq!((late[0].duration_ms, late[1].duration_ms), (10.0, 0.0));
    }

    #[test]
    fn client_contexts_with_control_bytes_become_valid_header_values() {
        let raw = "{\"custom\":{\"subject\":\"a\u{7f}b\\u0001\u{e9}\"}}";
        assert!(http::HeaderValue::from_str(raw).is_err());
        let safe = super::header_safe_json(raw);
        assert!(http::HeaderValue::from_str(&safe).is_ok(), "{safe}");
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back["custom"]["subject"], "a\u{7f}b\u{1}\u{e9}");
        assert!(matches!(
            super::header_safe_json("{}"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    fn next_invocation() -> super::NextInvocation {
        super::NextInvocation {
            request_id: super::RequestId::from_stored("r".into()),
            payload: bytes::Bytes::new(),
            deadline_ms: 1,
            content_type: None,
            client_context: None,
            trace_id: None,
            function_arn: "arn".into(),
        }
    }

    fn invoke() -> super::ExtensionEvent {
        super::ExtensionEvent::Invoke {
            deadline_ms: 1,
            request_id: "r".into(),
            invoked_function_arn: "arn".into(),
            tracing: super::rt::Tracing {
                kind: "X-Amzn-Trace-Id".into(),
                value: String::new(),
            },
        }
    }

    /// On one thread, as the host runs, the connection woken first writes first: the
    /// extension's `INVOKE` must be woken before the runtime's event.
    #[tokio::test(flavor = "current_thread")]
    async fn the_extensions_hear_of_an_invocation_before_its_runtime() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::{Arc, Mutex};
        use tokio::sync::oneshot;

        let mut extensions = super::Extensions::new(Vec::new());
        let id = extensions
            .register("ext", vec![super::ExtensionEventType::Invoke])
            .unwrap();
        let (ext_tx, ext_rx) = oneshot::channel();
        extensions.next(&id, ext_tx);
        let (runtime_tx, runtime_rx) =
            oneshot::channel::<super::RuntimeResult<super::NextInvocation>>();
        // Two waiters, as the two Runtime API connections wait; the runtime's is spawned
        // first, so it would run first if both were merely ready.
        let order = Arc::new(Mutex::new(Vec::new()));
        let waiting = Arc::new(AtomicUsize::new(0));
        let (o, w) = (order.clone(), waiting.clone());
        let runtime = tokio::spawn(async move {
            w.fetch_add(1, Ordering::SeqCst);
            let got = runtime_rx.await.unwrap().is_ok();
            o.lock().unwrap().push(("runtime", got));
        });
        let (o, w) = (order.clone(), waiting.clone());
        let extension = tokio::spawn(async move {
            w.fetch_add(1, Ordering::SeqCst);
            let got = ext_rx.await.unwrap().is_ok();
            o.lock().unwrap().push(("extension", got));
        });
        for _ in 0..100 {
            if waiting.load(Ordering::SeqCst) == 2 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(waiting.load(Ordering::SeqCst), 2, "both wait");
        assert!(super::hand_over(
            &mut extensions,
            Some(&invoke()),
            runtime_tx,
            next_invocation()
        ));
        runtime.await.unwrap();
        extension.await.unwrap();
        assert_eq!(
            *order.lock().unwrap(),
            [("extension", true), ("runtime", true)]
        );
        assert!(!extensions.ready(), "the extension is handling its INVOKE");
    }

    #[test]
    fn an_invocation_a_gone_runtime_cannot_take_reaches_no_extension() {
        let mut extensions = super::Extensions::new(Vec::new());
        let id = extensions
            .register("ext", vec![super::ExtensionEventType::Invoke])
            .unwrap();
        let (ext_tx, mut ext_rx) = tokio::sync::oneshot::channel();
        extensions.next(&id, ext_tx);
        let (runtime_tx, runtime_rx) =
            tokio::sync::oneshot::channel::<super::RuntimeResult<super::NextInvocation>>();
        drop(runtime_rx);
        let handed_over = super::hand_over(
            &mut extensions,
            Some(&invoke()),
            runtime_tx,
            next_invocation(),
        );
        assert!(!handed_over);
        assert!(ext_rx.try_recv().is_err(), "no INVOKE went out");
        assert!(extensions.ready(), "the extension still waits");
    }
}
