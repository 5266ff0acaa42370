//! A component's token lives as long as that deployment of it, tried as a process it left
//! behind would: after the component is removed, its old token is refused by the IPC socket
//! and by the token exchange service, and deploying it again hands out a different token.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use serde_json::json;
use support::{wait_for, Host, IpcClient};

const NAME: &str = "com.example.Ephemeral";
const PATIENCE: Duration = Duration::from_secs(30);

fn deploy(root: &Path, scratch: &Path, args: &[&str]) {
    let recipe = json!({
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": NAME,
        "ComponentVersion": "1.0.0",
        "Manifests": [{ "Platform": { "os": "linux" }, "Lifecycle": {
            "Run": "printf '%s %s\\n' \"$SVCUID\" \"$AWS_CONTAINER_CREDENTIALS_FULL_URI\" > {work:path}/token.new && mv {work:path}/token.new {work:path}/token && exec sleep 600"
        }}],
    });
    support::deployed(root, scratch, &[recipe], args);
}

/// `(token, credentials uri)` the component wrote once it ran.
fn handed_out(root: &Path) -> (String, String) {
    let file = root.join("work").join(NAME).join("token");
    let line = wait_for(PATIENCE, || {
        std::fs::read_to_string(&file)
            .ok()
            .filter(|s| s.ends_with('\n'))
    })
    .expect("the component never wrote its token");
    std::fs::remove_file(&file).unwrap();
    let (token, uri) = line.trim().split_once(' ').unwrap();
    (token.to_owned(), uri.to_owned())
}

/// Whether the IPC socket accepts `token` in CONNECT.
fn ipc_accepts(root: &Path, token: &str) -> bool {
    IpcClient::connect(root, token).accepted
}

/// The token exchange service's status for `token`.
fn tes_status(uri: &str, token: &str) -> u16 {
    let rest = uri.strip_prefix("http://").unwrap();
    let (authority, path) = rest.split_once('/').unwrap();
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_removed_component_s_token_is_refused_and_a_redeployment_gets_a_new_one() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let _host = Host::start(&root);
    deploy(&root, tmp.path(), &["-m", &format!("{NAME}=1.0.0")]);
    let (first, uri) = handed_out(&root);
    let mut held = IpcClient::authenticated(&root, &first).stream;
    // No [tes] source: a known token gets 500 (nothing to give), an unknown one 403.
    assert_ne!(tes_status(&uri, &first), 403);

    deploy(&root, tmp.path(), &["--remove", NAME]);
    assert!(
        !ipc_accepts(&root, &first),
        "the removed component's token still connects"
    );
    assert_eq!(tes_status(&uri, &first), 403);
    // The connection it had open is closed by the host.
    held.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut buf = [0u8; 64];
    let closed = match held.read(&mut buf) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    };
    assert!(closed, "a connection of the removed component stayed open");

    deploy(&root, tmp.path(), &["-m", &format!("{NAME}=1.0.0")]);
    let (second, _) = handed_out(&root);
    assert_ne!(second, first, "the redeployment got the old token");
    assert!(ipc_accepts(&root, &second));
    assert!(!ipc_accepts(&root, &first));
}

#[test]
fn a_setsid_child_of_a_removed_component_is_gone() {
    require_root!("a component's own cgroup");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let _host = Host::start(&root);
    // The Run step starts a daemon in a session of its own, out of the step's process group.
    let recipe = json!({
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": "com.example.Escapee",
        "ComponentVersion": "1.0.0",
        "Manifests": [{ "Platform": { "os": "linux" }, "Lifecycle": {
            "Run": "setsid sh -c 'echo $$ > {work:path}/daemon.new; mv {work:path}/daemon.new {work:path}/daemon; exec sleep 600' < /dev/null > /dev/null 2>&1 & exec sleep 600"
        }}],
    });
    let deploy =
        |args: &[&str]| support::deployed(&root, tmp.path(), std::slice::from_ref(&recipe), args);
    deploy(&["-m", "com.example.Escapee=1.0.0"]);
    let pid: u32 = wait_for(PATIENCE, || {
        std::fs::read_to_string(root.join("work/com.example.Escapee/daemon"))
            .ok()?
            .trim()
            .parse()
            .ok()
    })
    .expect("the daemon never started");
    assert!(support::process_alive(pid));
    // It really left the step's process group and session.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    assert_eq!(fields[3], pid.to_string(), "not a session leader: {stat}");

    deploy(&["--remove", "com.example.Escapee"]);
    let gone = wait_for(Duration::from_secs(10), || {
        (!support::process_alive(pid)).then_some(())
    });
    assert!(
        gone.is_some(),
        "the setsid daemon {pid} outlived its component"
    );
}

/// The same for a Lambda component (NoContainer, no systemResourceLimits): its function's
/// module starts a daemon in a session of its own; removing the component ends it.
#[test]
fn a_setsid_child_of_a_removed_lambda_component_is_gone() {
    require_root!("a component's own cgroup");
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let marks = tmp.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    std::fs::set_permissions(&marks, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let root = tmp.path().join("root");
    let _host = Host::start(&root);
    let handler = format!(
        "import subprocess\n\
         subprocess.Popen(['setsid', 'sh', '-c', 'echo $$ > {m}/daemon.new; mv {m}/daemon.new {m}/daemon; exec sleep 600'],\n\
         \x20   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n\
         def lambda_handler(event, context):\n\
         \x20   return {{}}\n",
        m = marks.display()
    );
    let name = "com.example.LambdaEscapee";
    let recipe = support::lambda_component(
        tmp.path(),
        name,
        &[("lambda_function.py", &handler, 0o644)],
        json!({"containerMode": "NoContainer", "pinned": true}),
    );
    let deploy =
        |args: &[&str]| support::deployed(&root, tmp.path(), std::slice::from_ref(&recipe), args);
    deploy(&["-m", &format!("{name}=1.0.0")]);
    let pid: u32 = wait_for(PATIENCE, || {
        std::fs::read_to_string(marks.join("daemon"))
            .ok()?
            .trim()
            .parse()
            .ok()
    })
    .expect("the daemon never started");
    assert!(support::process_alive(pid));

    deploy(&["--remove", name]);
    let gone = wait_for(Duration::from_secs(10), || {
        (!support::process_alive(pid)).then_some(())
    });
    assert!(
        gone.is_some(),
        "the setsid daemon {pid} outlived its Lambda component"
    );
}
