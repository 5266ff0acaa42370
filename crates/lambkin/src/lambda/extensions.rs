//! Lambda extensions on an instance's Runtime API (`/2020-01-01/extension`): who registered,
//! for which events, and whether each is waiting for its next one.
//!
//! External extensions are the executables in a function's `/opt/extensions/` (from its
//! layers). They are started before the runtime, by the same process ([`launch`]), so they share
//! its user, mount namespace, container and process group, and its Runtime API admits them as
//! processes the runtime started. As in Lambda, the runtime's init begins once every external
//! extension has registered: the process waits on its stdin (the instance's gate), which the
//! instance closes when the last one registers. An internal extension is one the runtime's own process
//! registers under another name; it may not take `SHUTDOWN`, as in Lambda.
//!
//! The instance becomes ready once the runtime and every extension wait in their `next`: at
//! init every external extension must have registered first; after an invocation every
//! extension that got its `INVOKE` must ask for the next event again.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use lambkin_proto::lambda::runtime_api::{
    ExtensionError, ExtensionEvent, ExtensionEventType, RuntimeApiError,
};
use tokio::sync::oneshot;

use super::layers::LayerView;
use super::runtimes::Launch;

/// The most extensions Lambda lets a function have.
pub const MAX_EXTENSIONS: usize = 10;

/// An event and its identifier, as `event/next` answers.
pub type Delivery = (String, ExtensionEvent);
type Reply = oneshot::Sender<Result<Delivery, RuntimeApiError>>;

#[derive(Debug)]
struct Registered {
    name: String,
    events: Vec<ExtensionEventType>,
    parked: Option<Reply>,
    queued: VecDeque<ExtensionEvent>,
}

impl Registered {
    /// Waiting in `next` (or gone: a process that died while waiting holds nothing up).
    fn ready(&self) -> bool {
        self.queued.is_empty() && self.parked.is_some()
    }

    fn send(&mut self, event: ExtensionEvent) {
        match self.parked.take() {
            Some(reply) if self.queued.is_empty() && !reply.is_closed() => {
                let id = uuid::Uuid::new_v4().to_string();
                let _ = reply.send(Ok((id, event)));
            }
            parked => {
                self.parked = parked;
                self.queued.push_back(event);
                self.flush();
            }
        }
    }

    /// Hands the oldest queued event to a waiting `next`.
    fn flush(&mut self) {
        if self.queued.is_empty() {
            return;
        }
        if let Some(reply) = self.parked.take() {
            if let Some(event) = self.queued.pop_front() {
                let id = uuid::Uuid::new_v4().to_string();
                if let Err(Ok((_, event))) = reply.send(Ok((id, event))) {
                    self.queued.push_front(event);
                }
            }
        }
    }
}

/// One instance's extensions.
#[derive(Debug, Default)]
pub struct Extensions {
    /// The external extensions started with the runtime, by name.
    external: Vec<String>,
    registered: BTreeMap<String, Registered>,
    closed: bool,
}

impl Extensions {
    pub fn new(external: Vec<String>) -> Self {
        Self {
            external,
            ..Self::default()
        }
    }

    /// `register`: an id for `name`, subscribed to `events`.
    pub fn register(
        &mut self,
        name: &str,
        events: Vec<ExtensionEventType>,
    ) -> Result<String, ExtensionError> {
        if name.is_empty() {
            return Err(ExtensionError::EmptyName);
        }
        if self.closed {
            return Err(ExtensionError::RegistrationClosed);
        }
        if self.registered.values().any(|r| r.name == name) {
            return Err(ExtensionError::NameTaken);
        }
        if self.registered.len() >= MAX_EXTENSIONS {
            return Err(ExtensionError::InvalidState(format!(
                "Extension limit ({MAX_EXTENSIONS}) reached"
            )));
        }
        let internal = !self.external.iter().any(|e| e == name);
        if internal && events.contains(&ExtensionEventType::Shutdown) {
            return Err(ExtensionError::InvalidEventType(
                "SHUTDOWN: internal extensions cannot register for it".into(),
            ));
        }
        let id = uuid::Uuid::new_v4().to_string();
        self.registered.insert(
            id.clone(),
            Registered {
                name: name.to_owned(),
                events,
                parked: None,
                queued: VecDeque::new(),
            },
        );
        Ok(id)
    }

    /// Whether no extension has registered.
    pub fn is_empty(&self) -> bool {
        self.registered.is_empty()
    }

    /// No more registrations: the instance's init is over.
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// The name registered under `id`.
    pub fn name(&self, id: &str) -> Result<&str, ExtensionError> {
        self.registered
            .get(id)
            .map(|r| r.name.as_str())
            .ok_or_else(|| ExtensionError::UnknownIdentifier(id.to_owned()))
    }

    /// `event/next`: answers with a queued event, or waits for one.
    pub fn next(&mut self, id: &str, reply: Reply) {
        let Some(registered) = self.registered.get_mut(id) else {
            let _ = reply.send(Err(ExtensionError::UnknownIdentifier(id.to_owned()).into()));
            return;
        };
        if registered.parked.as_ref().is_some_and(|p| !p.is_closed()) {
            let _ = reply.send(Err(ExtensionError::InvalidState(
                "another event/next is already waiting".into(),
            )
            .into()));
            return;
        }
        registered.parked = Some(reply);
        registered.flush();
    }

    /// The extensions an instance's init waits for: external ones not registered yet, and
    /// registered ones not waiting in `next`.
    pub fn awaited(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .external
            .iter()
            .filter(|name| !self.registered.values().any(|r| &r.name == *name))
            .cloned()
            .collect();
        names.extend(
            self.registered
                .values()
                .filter(|r| !r.ready())
                .map(|r| r.name.clone()),
        );
        names
    }

    /// Whether every external extension has registered.
    pub fn all_external_registered(&self) -> bool {
        self.external
            .iter()
            .all(|name| self.registered.values().any(|r| &r.name == name))
    }

    /// Whether every external extension has registered and every registered one waits in
    /// `next`.
    pub fn ready(&self) -> bool {
        self.all_external_registered() && self.registered.values().all(Registered::ready)
    }

    /// Gives `event` to every extension that subscribed to its kind; returns how many.
    pub fn publish(&mut self, event: &ExtensionEvent) -> usize {
        let kind = event.kind();
        let mut sent = 0;
        for registered in self.registered.values_mut() {
            if registered.events.contains(&kind) {
                registered.send(event.clone());
                sent += 1;
            }
        }
        sent
    }

    /// Each registered extension's name and events, as `platform.extension` lists them.
    pub fn registered(&self) -> Vec<(String, Vec<String>)> {
        self.registered
            .values()
            .map(|r| {
                let events = r
                    .events
                    .iter()
                    .map(|e| match e {
                        ExtensionEventType::Invoke => "INVOKE".to_owned(),
                        ExtensionEventType::Shutdown => "SHUTDOWN".to_owned(),
                    })
                    .collect();
                (r.name.clone(), events)
            })
            .collect()
    }

    /// Whether an extension takes `SHUTDOWN`.
    pub fn want_shutdown(&self) -> bool {
        self.registered
            .values()
            .any(|r| r.events.contains(&ExtensionEventType::Shutdown))
    }
}

/// The external extensions in a function's layers: the executable files of
/// `extensions/` in the merged directory, by name, in name order.
pub fn external(layers: Option<&LayerView>) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let Some(layers) = layers else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(layers.dir.join("extensions")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| {
            e.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    names.sort();
    names.truncate(MAX_EXTENSIONS);
    names
}

/// The file descriptor on which the process that starts external extensions gets the pipe
/// for their output (stdout and stderr), apart from the runtime's: what they write becomes
/// `extension` records.
pub const OUTPUT_FD: i32 = 3;

/// A pipe for external extensions' output, when there are some (`wanted`): (read, write).
pub fn output_pipe(
    wanted: bool,
) -> std::io::Result<Option<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)>> {
    if !wanted {
        return Ok(None);
    }
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map(Some)
        .map_err(std::io::Error::from)
}

/// What starts the line the launch script writes on [`OUTPUT_FD`] when an extension has
/// exited (ASCII's unit separator): `NAME STATUS`.
pub const EXIT_REPORT: u8 = 0x1f;

/// An extension's exit, as the launch script reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exited {
    pub name: String,
    /// The shell's `$?`: the exit status, or 128 + the signal.
    pub status: String,
}

impl Exited {
    /// Reads a report line (after its [`EXIT_REPORT`] byte).
    pub fn parse(line: &[u8]) -> Option<Self> {
        let line = std::str::from_utf8(line).ok()?;
        let (name, status) = line.rsplit_once(' ')?;
        Some(Self {
            name: name.to_owned(),
            status: status.to_owned(),
        })
    }

    /// How it ended, in the words of an exit status.
    pub fn how(&self) -> String {
        match self.status.parse::<i32>() {
            Ok(code) if code > 128 => format!("signal {}", code - 128),
            _ => format!("exit status {}", self.status),
        }
    }
}

/// Starts `names` (under `/opt/extensions`, as instances see it) before the runtime, from the
/// same process: `/bin/sh` starts each in the background, with [`OUTPUT_FD`] as its stdout and
/// stderr (and reports its exit there, [`EXIT_REPORT`]), waits until its stdin (the instance's
/// gate) is closed, then becomes the runtime. Neither the extensions nor the runtime keep the
/// gate as their stdin, and the runtime does not keep the extensions' output pipe.
pub fn launch(launch: Launch, names: &[String], layers: &LayerView) -> Launch {
    if names.is_empty() {
        return launch;
    }
    const SCRIPT: &str = concat!(
        r#"while [ "$1" != -- ]; do "#,
        r#"{ "$1" </dev/null >&3 2>&3 3>&-; printf '\037%s %s\n' "${1##*/}" "$?" >&3; } & "#,
        r#"shift; done; shift; read -r _ || :; exec "$@" </dev/null 3>&-"#
    );
    let mut args: Vec<OsString> = vec!["-c".into(), SCRIPT.into(), "lambkin-extensions".into()];
    for name in names {
        let path = layers.seen(&Path::new(super::layers::OPT).join("extensions").join(name));
        args.push(path.into_os_string());
    }
    args.push("--".into());
    args.push(launch.program.into_os_string());
    args.extend(launch.args);
    Launch {
        program: PathBuf::from("/bin/sh"),
        args,
        ..launch
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use lambkin_proto::lambda::runtime_api::ShutdownReason;

    fn shutdown() -> ExtensionEvent {
        ExtensionEvent::Shutdown {
            shutdown_reason: ShutdownReason::Spindown,
            deadline_ms: 1,
        }
    }

    #[test]
    fn ready_once_every_external_one_registered_and_waits() {
        let mut ext = Extensions::new(vec!["a".into()]);
        assert!(!ext.ready(), "a has not registered");
        let a = ext
            .register("a", vec![ExtensionEventType::Shutdown])
            .unwrap();
        assert!(!ext.ready(), "a has not asked for its next event");
        let (tx, mut rx) = oneshot::channel();
        ext.next(&a, tx);
        assert!(ext.ready());
        assert_eq!(ext.publish(&shutdown()), 1);
        let (_, event) = rx.try_recv().unwrap().unwrap();
        assert_eq!(event, shutdown());
        assert!(!ext.ready(), "a is handling its event");
    }

    #[test]
    fn exit_reports_are_read_and_init_names_whom_it_waits_for() {
        let e = Exited::parse(b"my ext 3").unwrap();
        assert_eq!(
            (e.name.as_str(), e.how()),
            ("my ext", "exit status 3".to_owned())
        );
        assert_eq!(Exited::parse(b"x 137").unwrap().how(), "signal 9");
        assert_eq!(Exited::parse(b"nospace"), None);
        let mut ext = Extensions::new(vec!["a".into(), "b".into()]);
        assert_eq!(ext.awaited(), ["a", "b"]);
        let id = ext.register("a", vec![]).unwrap();
        assert_eq!(ext.awaited(), ["b", "a"]);
        let (tx, _rx) = oneshot::channel();
        ext.next(&id, tx);
        assert_eq!(ext.awaited(), ["b"]);
    }

    #[test]
    fn registration_follows_the_rules() {
        let mut ext = Extensions::new(vec!["ext".into()]);
        assert_eq!(ext.register("", vec![]), Err(ExtensionError::EmptyName));
        assert!(matches!(
            ext.register("internal", vec![ExtensionEventType::Shutdown]),
            Err(ExtensionError::InvalidEventType(_))
        ));
        ext.register("internal", vec![ExtensionEventType::Invoke])
            .unwrap();
        assert_eq!(
            ext.register("internal", vec![]),
            Err(ExtensionError::NameTaken)
        );
        ext.close();
        assert_eq!(
            ext.register("ext", vec![]),
            Err(ExtensionError::RegistrationClosed)
        );
        let (tx, mut rx) = oneshot::channel();
        ext.next("nobody", tx);
        assert!(rx.try_recv().unwrap().is_err());
    }

    #[test]
    fn an_event_for_a_busy_extension_waits_for_its_next() {
        let mut ext = Extensions::new(Vec::new());
        let id = ext
            .register("internal", vec![ExtensionEventType::Invoke])
            .unwrap();
        let invoke = ExtensionEvent::Invoke {
            deadline_ms: 1,
            request_id: "r".into(),
            invoked_function_arn: "a".into(),
            tracing: lambkin_proto::lambda::runtime_api::Tracing {
                kind: "X-Amzn-Trace-Id".into(),
                value: String::new(),
            },
        };
        assert_eq!(ext.publish(&invoke), 1);
        assert_eq!(ext.publish(&shutdown()), 0, "not subscribed");
        let (tx, mut rx) = oneshot::channel();
        ext.next(&id, tx);
        assert_eq!(rx.try_recv().unwrap().unwrap().1, invoke);
    }
}
