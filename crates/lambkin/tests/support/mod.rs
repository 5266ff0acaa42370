//! Drives the real `lambkin` binary: a host on a temporary root and a free port, and HTTP calls
//! to it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod broker;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;

pub use lambkin::cli::HttpReply;

#[derive(Debug)]
pub struct Host {
    pub root: PathBuf,
    pub addr: String,
    pub child: Option<Child>,
}

impl Host {
    /// Starts a host on `root` and waits until it is ready.
    pub fn start(root: &Path) -> Host {
        Host::start_with_env(root, &[])
    }

    /// Starts a host on `root` with `env` added to its environment, and waits until it is
    /// ready.
    pub fn start_with_env(root: &Path, env: &[(&str, &str)]) -> Host {
        Host::start_listening(root, "127.0.0.1:0", env)
    }

    /// Starts a host on `root` listening on `listen` (a host started again on the address
    /// others know it by), and waits until it is ready.
    pub fn start_listening(root: &Path, listen: &str, env: &[(&str, &str)]) -> Host {
        let addr_file = root.join("state/api.addr");
        let _ = std::fs::remove_file(&addr_file);
        let child = Command::new(env!("CARGO_BIN_EXE_lambkin"))
            .args(["run", "--listen", listen, "--root"])
            .arg(root)
            .env("LAMBKIN_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start lambkin");
        let addr = wait_for(Duration::from_secs(20), || {
            std::fs::read_to_string(&addr_file).ok()
        })
        .expect("host did not become ready");
        Host {
            root: root.to_owned(),
            addr: addr.trim().to_owned(),
            child: Some(child),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// A request as an AWS SDK sends it: signed with the host's own key (from
    /// `ROOT/state/credentials`), unless the caller gives its own `authorization`.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> HttpReply {
        let body = body.into();
        let mut req = self.request(method, path, headers, body.clone());
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        {
            lambkin::cli::sign(&lambkin::layout::Layout::new(&self.root), &mut req, &body).unwrap();
        }
        lambkin::cli::request(&self.addr, req).await.unwrap()
    }

    /// A request sent as given: no signature added.
    pub async fn call_unsigned(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> HttpReply {
        let req = self.request(method, path, headers, body.into());
        lambkin::cli::request(&self.addr, req).await.unwrap()
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Request<Full<Bytes>> {
        let mut req = Request::builder().method(method).uri(path);
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            req = req.header("host", &self.addr);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(Full::new(body)).unwrap()
    }

    pub async fn create(&self, spec: serde_json::Value) -> HttpReply {
        self.call(
            "POST",
            "/2015-03-31/functions",
            &[("content-type", "application/json")],
            spec.to_string(),
        )
        .await
    }

    /// As [`Host::create`], failing the test with the host's answer unless it is 201.
    pub async fn created(&self, spec: serde_json::Value) {
        let reply = self.create(spec).await;
        assert_eq!(
            reply.status,
            201,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
    }

    pub async fn invoke(&self, name: &str, payload: &serde_json::Value) -> HttpReply {
        self.call(
            "POST",
            &format!("/2015-03-31/functions/{name}/invocations"),
            &[],
            payload.to_string(),
        )
        .await
    }

    pub async fn invoke_event(&self, name: &str, payload: &serde_json::Value) -> HttpReply {
        self.call(
            "POST",
            &format!("/2015-03-31/functions/{name}/invocations"),
            &[("x-amz-invocation-type", "Event")],
            payload.to_string(),
        )
        .await
    }

    /// SIGTERM, then waits; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        signal(child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("host did not stop within 15 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: the host gets no chance to clean up.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `lambkin run` on `root`, which must refuse to start: its exit status and stderr,
/// once it has exited (it is killed, and the test fails, if it still runs after 20 s).
pub fn run_refused(root: &Path) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lambkin"))
        .args(["run", "--listen", "127.0.0.1:0", "--root"])
        .arg(root)
        .env("LAMBKIN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status =
        wait_for(Duration::from_secs(20), || child.try_wait().unwrap()).unwrap_or_else(|| {
            let _ = child.kill();
            panic!("the host kept running on {}", root.display());
        });
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status, stderr)
}

/// The user and group a root host runs components and functions as when nothing names
/// another (`ggc_user:ggc_group`, made by the host at its first start); `None` on a host that
/// is not root, which runs everything as the test's own user.
pub fn default_user() -> Option<(u32, u32)> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let user = nix::unistd::User::from_name("ggc_user")
        .unwrap()
        .expect("a root host made ggc_user at its start");
    let group = nix::unistd::Group::from_name("ggc_group")
        .unwrap()
        .expect("a root host made ggc_group at its start");
    Some((user.uid.as_raw(), group.gid.as_raw()))
}

/// `parent/name`, a directory that components and functions running as the default user may
/// write: given to that user, as a device's owner gives a directory to the components that
/// write into it. Call it once a host has started (it makes the user).
pub fn dir_for_components(parent: &Path, name: &str) -> PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    if let Some((uid, gid)) = default_user() {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
    }
    dir
}

pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// Set by `.ci/run` on a machine where every test must run (root, cgroup v1, the test
/// dependencies installed): a test that would skip for want of one of them fails instead.
pub const REQUIRE_ALL_TESTS: &str = "LAMBKIN_REQUIRE_ROOT_TESTS";

/// Reports that the calling test does not run here, and why: `skipped: WHY` on stderr,
/// which the test's output shows. Under [`REQUIRE_ALL_TESTS`]`=1` it panics instead, so that
/// a machine meant to run everything cannot pass a test that ran nothing.
pub fn skipped(why: &str) {
    if std::env::var(REQUIRE_ALL_TESTS).is_ok_and(|v| v == "1") {
        panic!("skipped where it must run ({REQUIRE_ALL_TESTS}=1): {why}");
    }
    eprintln!("skipped: {why}");
}

/// Why GreengrassContainer cannot be tried here, if it cannot (it needs root and cgroups).
pub fn containers_unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("containers need root".into());
    }
    lambkin::cgroup::Cgroups::detect()
        .err()
        .map(|e| e.to_string())
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Returns from the calling test, reported by [`skipped`], unless it runs as root:
/// `require_root!("running components as other users")`.
#[macro_export]
macro_rules! require_root {
    ($why:expr) => {
        if !support::is_root() {
            support::skipped(&format!("{} needs root", $why));
            return;
        }
    };
}

/// Returns from the calling test, reported by [`skipped`], unless `$cond` holds:
/// `require!(cgroup::host().is_ok(), "no cgroup memory controller")`.
#[macro_export]
macro_rules! require {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            support::skipped(&format!($($why)+));
            return;
        }
    };
}

/// Polls `f` until it returns `Some` or the deadline passes, without blocking the runtime: for
/// a test whose host runs in its own runtime.
pub async fn wait_for_async<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `f` until it returns `Some` or the deadline passes.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

/// `Cpus_allowed_list` of a thread (`/proc/PID/task/TID/status`).
pub fn cpus_allowed(pid: u32, tid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_owned()
}

/// Live processes whose parent is `parent`.
pub fn children_of(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command name: state ppid ...
        let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("");
        let ppid: u32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if ppid == parent && state != "Z" {
            out.push(pid);
        }
    }
    out
}

pub fn zip(files: &[(&str, &str, u32)]) -> String {
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut w = zip::ZipWriter::new(&mut buf);
    for (name, content, mode) in files {
        w.start_file(
            *name,
            zip::write::SimpleFileOptions::default().unix_permissions(*mode),
        )
        .unwrap();
        w.write_all(content.as_bytes()).unwrap();
    }
    w.finish().unwrap();
    base64::engine::general_purpose::STANDARD.encode(buf.into_inner())
}

/// A zip of `(name, content, mode)` entries as bytes, names as given (even `../x`).
pub fn zip_bytes(files: &[(&str, &str, u32)]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut w = zip::ZipWriter::new(&mut buf);
    for (name, content, mode) in files {
        w.start_file(
            *name,
            zip::write::SimpleFileOptions::default().unix_permissions(*mode),
        )
        .unwrap();
        w.write_all(content.as_bytes()).unwrap();
    }
    w.finish().unwrap();
    buf.into_inner()
}

/// A Python handler-only function definition.
pub fn python_function(
    name: &str,
    code: &str,
    greengrass: serde_json::Value,
    env: BTreeMap<&str, String>,
) -> serde_json::Value {
    serde_json::json!({
        "FunctionName": name,
        "Runtime": "python3.11",
        "Role": "arn:aws:iam::000000000000:role/test",
        "Handler": "app.handler",
        "Code": { "ZipFile": zip(&[("app.py", code, 0o644)]) },
        "Timeout": 30,
        "Environment": { "Variables": env },
        "Greengrass": greengrass,
    })
}

pub fn json(reply: &HttpReply) -> serde_json::Value {
    serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&reply.body)))
}

pub fn header<'a>(reply: &'a HttpReply, name: &str) -> Option<&'a str> {
    reply.headers.get(name).and_then(|v| v.to_str().ok())
}

/// Lines of a file, or none if it does not exist yet.
pub fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|s| s.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Waits up to `limit` for a line of the log at `path` that `wanted` accepts (a function's
/// output and END/REPORT lines reach its log just after the answer); returns the log's lines
/// then, or `None`.
pub fn wait_for_line(
    path: &Path,
    limit: Duration,
    wanted: impl Fn(&str) -> bool,
) -> Option<Vec<String>> {
    wait_for(limit, || {
        let all = lines(path);
        all.iter().any(|l| wanted(l)).then_some(all)
    })
}

/// `lambkin deploy` on the host of `root`: `recipes` written to a fresh directory under
/// `scratch`, artifacts from `scratch/artifacts`, then `args` (`-m NAME=VERSION`, `--remove`,
/// `--run-with` ...). Returns the command's output.
pub fn deploy(
    root: &Path,
    scratch: &Path,
    recipes: &[serde_json::Value],
    args: &[&str],
) -> std::process::Output {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = scratch.join(format!("recipes-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let artifacts = scratch.join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    for (i, recipe) in recipes.iter().enumerate() {
        std::fs::write(
            dir.join(format!("recipe-{i}.json")),
            serde_json::to_vec(recipe).unwrap(),
        )
        .unwrap();
    }
    deploy_dir(root, &dir, Some(&artifacts), args)
}

/// `lambkin deploy` on the host of `root` with the recipes already in `recipes` (`-r`), the
/// artifacts from `artifacts` if given (`-a`), then `args`; stdin null. Returns the command's
/// output.
pub fn deploy_dir(
    root: &Path,
    recipes: &Path,
    artifacts: Option<&Path>,
    args: &[&str],
) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lambkin"));
    command.arg("deploy").arg("-r").arg(recipes);
    if let Some(artifacts) = artifacts {
        command.arg("-a").arg(artifacts);
    }
    command
        .args(args)
        .arg("--root")
        .arg(root)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// As [`deploy`], panicking with the command's output if the deployment fails.
pub fn deployed(root: &Path, scratch: &Path, recipes: &[serde_json::Value], args: &[&str]) {
    let out = deploy(root, scratch, recipes, args);
    assert!(
        out.status.success(),
        "deploy {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Lambda component's recipe as the cloud generates it (the seed recipe), version 1.0.0:
/// its zip of `files` is put where [`deploy`] finds it under `scratch`, no triggers, and
/// `config` merged over its default configuration.
pub fn lambda_component(
    scratch: &Path,
    name: &str,
    files: &[(&str, &str, u32)],
    config: serde_json::Value,
) -> serde_json::Value {
    use sha2::Digest as _;
    let zip = zip_bytes(files);
    let dir = scratch.join("artifacts").join(name).join("1.0.0");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("lambda-artifact.zip"), &zip).unwrap();
    let seed = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/components/seed-lambda-recipe.json"
    );
    let mut recipe: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(seed).unwrap()).unwrap();
    recipe["ComponentName"] = serde_json::json!(name);
    recipe["ComponentVersion"] = serde_json::json!("1.0.0");
    recipe["Manifests"][0]["Artifacts"][0]["Digest"] = serde_json::json!(
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&zip))
    );
    let defaults = &mut recipe["ComponentConfiguration"]["DefaultConfiguration"];
    defaults["pubsubTopics"] = serde_json::json!({});
    for (k, v) in config.as_object().unwrap() {
        defaults[k] = v.clone();
    }
    recipe
}

/// A raw Greengrass IPC client on `ROOT/ipc.socket` (event-stream frames of `lambkin-proto`),
/// for tests that act as a component with its token.
#[derive(Debug)]
pub struct IpcClient {
    pub stream: std::os::unix::net::UnixStream,
    decoder: lambkin_proto::eventstream::Decoder,
    next_stream: i32,
    /// Whether the host accepted the CONNECT.
    pub accepted: bool,
}

impl IpcClient {
    /// Connects and sends CONNECT with `token`; [`IpcClient::accepted`] says how it went.
    pub fn connect(root: &Path, token: &str) -> IpcClient {
        use lambkin_proto::eventstream::Header;
        use lambkin_proto::ipc::{MessageFlags, MessageType, RpcMessage};
        let mut stream = std::os::unix::net::UnixStream::connect(root.join("ipc.socket")).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let connect = RpcMessage::new(MessageType::Connect, MessageFlags::NONE, 0)
            .with_header(Header::string(":version", "0.1.0"))
            .with_payload(format!("{{\"authToken\": \"{token}\"}}"))
            .to_frame()
            .unwrap()
            .encode();
        stream.write_all(&connect).unwrap();
        let mut client = IpcClient {
            stream,
            decoder: lambkin_proto::eventstream::Decoder::new(),
            next_stream: 1,
            accepted: false,
        };
        let ack = client.read();
        assert_eq!(ack.message_type, MessageType::ConnectAck);
        client.accepted = ack.flags == MessageFlags::CONNECTION_ACCEPTED;
        client
    }

    /// As [`IpcClient::connect`], asserting the host accepted it.
    pub fn authenticated(root: &Path, token: &str) -> IpcClient {
        let client = IpcClient::connect(root, token);
        assert!(client.accepted, "the host refused the token");
        client
    }

    /// The next whole message from the host.
    pub fn read(&mut self) -> lambkin_proto::ipc::RpcMessage {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        loop {
            if let Some(frame) = self.decoder.next_frame().unwrap() {
                return lambkin_proto::ipc::RpcMessage::from_frame(&frame).unwrap();
            }
            let n = self.stream.read(&mut buf).unwrap();
            assert!(n > 0, "the host closed the connection");
            self.decoder.push(&buf[..n]);
        }
    }

    /// One request and its response: `(is_error, payload)`.
    pub fn call(
        &mut self,
        operation: &str,
        payload: serde_json::Value,
    ) -> (bool, serde_json::Value) {
        use lambkin_proto::eventstream::Header;
        use lambkin_proto::ipc::{MessageFlags, MessageType, RpcMessage};
        let id = self.next_stream;
        self.next_stream += 1;
        let frame = RpcMessage::new(MessageType::ApplicationMessage, MessageFlags::NONE, id)
            .with_header(Header::string("operation", operation))
            .with_payload(payload.to_string().into_bytes())
            .to_frame()
            .unwrap()
            .encode();
        self.stream.write_all(&frame).unwrap();
        let reply = self.read();
        assert_eq!(reply.stream_id, id);
        let body = serde_json::from_slice(&reply.payload).unwrap_or(serde_json::Value::Null);
        (reply.message_type == MessageType::ApplicationError, body)
    }

    /// UpdateConfiguration of the caller's own configuration at `key_path`.
    pub fn update(
        &mut self,
        key_path: &[&str],
        merge: serde_json::Value,
    ) -> (bool, serde_json::Value) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        self.call(
            "aws.greengrass#UpdateConfiguration",
            serde_json::json!({ "keyPath": key_path, "timestamp": now, "valueToMerge": merge }),
        )
    }
}

/// The installed mosquitto, if any.
pub fn mosquitto() -> Option<&'static Path> {
    ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
}

/// A loopback port free now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The test's own MQTT client (`client_id`) at a broker's plain listener on `port`, subscribed
/// to `filter` at QoS 1; with `clean` false, in a persistent session (what arrives for it while
/// it is away waits at the broker). What arrives comes out as (topic, payload). Returns once
/// the broker has acknowledged the subscription.
pub fn mqtt_subscriber(
    port: u16,
    filter: &str,
    client_id: &str,
    clean: bool,
) -> std::sync::mpsc::Receiver<(String, Vec<u8>)> {
    let mut options = rumqttc::MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_clean_session(clean);
    let (client, mut connection) = rumqttc::Client::new(options, 64);
    client.subscribe(filter, rumqttc::QoS::AtLeastOnce).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let (acked_tx, acked) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _client = client;
        for event in connection.iter() {
            match event {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                    let _ = acked_tx.send(());
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    if tx.send((p.topic.clone(), p.payload.to_vec())).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    acked
        .recv_timeout(Duration::from_secs(30))
        .expect("the broker did not acknowledge the test's subscription");
    rx
}
