//! The Lambda API's trust boundary, tried as an attacker on the device would: the test process
//! with no key, another local user, a component running as its own user, and a component with
//! a grant trying past it. Every refusal is a 403 with AWS Lambda's error code, and a refused
//! CreateFunction runs nothing. Development mode (`[api] auth = "none"`) still refuses
//! browsers and foreign host names, and is refused off loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use support::{header, json as body_json, wait_for, Host};

const PATIENCE: Duration = Duration::from_secs(30);

/// What the attacker runs: reads the host's key if it can, then calls the API with no
/// signature and with forged ones. Writes what happened as JSON to its third argument.
const ATTACK: &str = r#"
import json, os, sys, urllib.request, urllib.error

def attack(addr, root, create):
    result = {}
    try:
        open(os.path.join(root, "state", "credentials")).read()
        result["read_key"] = "ok"
    except OSError as e:
        result["read_key"] = type(e).__name__
    body = open(create, "rb").read()
    forged = ("AWS4-HMAC-SHA256 Credential=AKIAFORGED0000000000/20260101/us-east-1/lambda/aws4_request, "
              "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64)
    result["create"] = call(addr, "POST", "/2015-03-31/functions", body, {"Content-Type": "application/json"})
    result["create_form"] = call(addr, "POST", "/2015-03-31/functions", body,
                                 {"Content-Type": "text/plain", "Origin": "http://evil.example"})
    result["create_forged"] = call(addr, "POST", "/2015-03-31/functions", body,
                                   {"Authorization": forged, "X-Amz-Date": "20260101T000000Z"})
    result["update_code"] = call(addr, "PUT", "/2015-03-31/functions/victim/code", body)
    result["invoke"] = call(addr, "POST", "/2015-03-31/functions/victim/invocations", b"{}")
    result["config_file"] = os.environ.get("AWS_CONFIG_FILE")
    result["uid"] = os.getuid()
    return result

def call(addr, method, path, body=b"", headers=None):
    req = urllib.request.Request(f"http://{addr}{path}", data=body, method=method,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return [r.status, r.headers.get("x-amzn-errortype"), r.read().decode()]
    except urllib.error.HTTPError as e:
        return [e.code, e.headers.get("x-amzn-errortype"), e.read().decode()]

def lambda_handler(event, context):
    return attack(event["addr"], event["root"], "create.json")

if __name__ == "__main__":
    addr, root, out, create = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    result = attack(addr, root, create)
    with open(out + ".part", "w") as f:
        json.dump(result, f)
    os.rename(out + ".part", out)
"#;

/// A host on a temporary root that other users can pass through (0755), with `config`.
struct Device {
    tmp: tempfile::TempDir,
    root: PathBuf,
    host: Host,
}

impl Device {
    fn start(config: &str) -> Device {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("config.toml"), config).unwrap();
        let host = Host::start(&root);
        Device { tmp, root, host }
    }

    /// A directory anyone can write to (where a function that should never run would leave
    /// its mark, whoever it ran as).
    fn open_dir(&self, name: &str) -> PathBuf {
        let dir = self.tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        dir
    }

    /// The attacker's kit in a directory anyone can read: the script and a CreateFunction body
    /// whose pinned function would write `marker` at once if it were ever defined.
    fn kit(&self, marker: &Path) -> (PathBuf, PathBuf) {
        let dir = self.open_dir("kit");
        let script = dir.join("attack.py");
        std::fs::write(&script, ATTACK).unwrap();
        let bootstrap = format!("#!/bin/sh\ntouch {}\nexec sleep 600\n", marker.display());
        let create = json!({
            "FunctionName": "planted",
            "Runtime": "provided.al2023",
            "Role": "arn:aws:iam::000000000000:role/x",
            "Handler": "bootstrap",
            "Code": { "ZipFile": support::zip(&[("bootstrap", &bootstrap, 0o755)]) },
        });
        let body = dir.join("create.json");
        std::fs::write(&body, create.to_string()).unwrap();
        for f in [&script, &body] {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        (script, body)
    }

    /// Deploys `recipes` (artifacts from the device's `artifacts` directory).
    fn deploy(&self, recipes: &[Value], args: &[&str]) -> Output {
        support::deploy(&self.root, self.tmp.path(), recipes, args)
    }

    /// A victim function: answers `{"victim": true}`.
    async fn define_victim(&self) {
        let r = self
            .host
            .create(support::python_function(
                "victim",
                "def handler(event, context):\n    return {'victim': True}\n",
                json!({}),
                Default::default(),
            ))
            .await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    }

    /// The victim still answers as it did, and nothing called `planted` was defined.
    async fn nothing_changed(&self, marker: &Path) {
        let r = self.host.invoke("victim", &json!({})).await;
        assert_eq!(body_json(&r), json!({"victim": true}));
        let list = self
            .host
            .call("GET", "/2015-03-31/functions", &[], "")
            .await;
        let names: Vec<String> = body_json(&list)["Functions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["FunctionName"].as_str().unwrap().to_owned())
            .collect();
        assert!(names.contains(&"victim".to_owned()), "{names:?}");
        assert!(!names.contains(&"planted".to_owned()), "{names:?}");
        assert!(!marker.exists(), "the planted function ran");
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every attempt in an attack's result was refused with a 403 and one of AWS's codes.
fn assert_refused(result: &Value) {
    for (attempt, code) in [
        ("create", "MissingAuthenticationTokenException"),
        ("create_form", "MissingAuthenticationTokenException"),
        ("create_forged", "UnrecognizedClientException"),
        ("update_code", "MissingAuthenticationTokenException"),
        ("invoke", "MissingAuthenticationTokenException"),
    ] {
        assert_eq!(result[attempt][0], 403, "{attempt}: {result}");
        assert_eq!(result[attempt][1], code, "{attempt}: {result}");
    }
}

#[tokio::test]
async fn unsigned_forged_and_stale_requests_are_refused_with_aws_codes_and_nothing_runs() {
    let device = Device::start("");
    device.define_victim().await;
    let marker = device.open_dir("marks").join("ran");
    let (_, create) = device.kit(&marker);
    let create = std::fs::read(create).unwrap();
    let host = &device.host;
    let code = |r: &support::HttpReply| header(r, "x-amzn-errortype").map(str::to_owned);

    let r = host
        .call_unsigned("POST", "/2015-03-31/functions", &[], create.clone())
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        code(&r).as_deref(),
        Some("MissingAuthenticationTokenException")
    );
    assert_eq!(body_json(&r)["message"], "Missing Authentication Token");

    // A key the host never issued.
    let stranger = lambkin_proto::lambda::sigv4::Key {
        access_key_id: "LKIASTRANGER00000000",
        secret: "not-the-host-secret",
    };
    let signed_with = |key: &lambkin_proto::lambda::sigv4::Key<'_>, at: SystemTime| {
        let mut req = http::Request::post("/2015-03-31/functions")
            .header("host", &host.addr)
            .body(http_body_util::Full::new(bytes::Bytes::from(
                create.clone(),
            )))
            .unwrap();
        lambkin_proto::lambda::sigv4::sign_request(&mut req, &create, key, "us-east-1", at)
            .unwrap();
        req
    };
    let r = lambkin::cli::request(&host.addr, signed_with(&stranger, SystemTime::now()))
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(code(&r).as_deref(), Some("UnrecognizedClientException"));

    // The host's key id with a wrong secret: the signature does not match.
    let own = lambkin::keys::load(&device.root.join("state/credentials")).unwrap();
    let wrong_secret = lambkin_proto::lambda::sigv4::Key {
        access_key_id: &own.access_key_id,
        secret: "guessed",
    };
    let r = lambkin::cli::request(&host.addr, signed_with(&wrong_secret, SystemTime::now()))
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(code(&r).as_deref(), Some("InvalidSignatureException"));
    assert!(
        text(&r.body).contains("does not match"),
        "{}",
        text(&r.body)
    );

    // The right key, but a signature captured 20 minutes ago and replayed.
    let right = lambkin_proto::lambda::sigv4::Key {
        access_key_id: &own.access_key_id,
        secret: &own.secret,
    };
    let stale = SystemTime::now() - Duration::from_secs(20 * 60);
    let r = lambkin::cli::request(&host.addr, signed_with(&right, stale))
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(code(&r).as_deref(), Some("InvalidSignatureException"));
    assert!(
        text(&r.body).contains("Signature expired"),
        "{}",
        text(&r.body)
    );

    // A signed request whose body was swapped on the way.
    let mut tampered = signed_with(&right, SystemTime::now());
    *tampered.body_mut() = http_body_util::Full::new(bytes::Bytes::from_static(b"{}"));
    let r = lambkin::cli::request(&host.addr, tampered).await.unwrap();
    assert_eq!(code(&r).as_deref(), Some("InvalidSignatureException"));

    device.nothing_changed(&marker).await;

    // The same request, signed now with the host's key, is accepted: the refusals above were
    // about the signatures, not the request.
    let r = lambkin::cli::request(&host.addr, signed_with(&right, SystemTime::now()))
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", text(&r.body));
    assert!(
        wait_for(PATIENCE, || marker.exists().then_some(())).is_some(),
        "the signed function did not run"
    );
}

#[tokio::test]
async fn another_local_user_cannot_read_the_key_or_call_the_api() {
    require_root!("running as another user");
    let device = Device::start("");
    device.define_victim().await;
    let marker = device.open_dir("marks").join("ran");
    let (script, create) = device.kit(&marker);
    let out = device.open_dir("out").join("result.json");
    let run = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/usr/bin/python3",
        ])
        .arg(&script)
        .args([&device.host.addr])
        .arg(&device.root)
        .arg(&out)
        .arg(&create)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run.stderr));
    let result: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(result["read_key"], "PermissionError", "{result}");
    assert_refused(&result);
    device.nothing_changed(&marker).await;
}

#[tokio::test]
async fn a_component_without_a_grant_gets_no_key_and_is_refused() {
    require_root!("running a component as another user");
    let device = Device::start("");
    device.define_victim().await;
    let marker = device.open_dir("marks").join("ran");
    let (script, create) = device.kit(&marker);
    let recipe = json!({
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": "com.example.Intruder",
        "ComponentVersion": "1.0.0",
        "Manifests": [{ "Platform": { "os": "linux" }, "Lifecycle": {
            "Run": format!(
                "/usr/bin/python3 {} {} {} {{work:path}}/result.json {}",
                script.display(), device.host.addr, device.root.display(), create.display()
            )
        }}],
    });
    let out = device.deploy(
        &[recipe],
        &[
            "-m",
            "com.example.Intruder=1.0.0",
            "--run-with",
            "com.example.Intruder:posixUser=nobody",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let path = device.root.join("work/com.example.Intruder/result.json");
    let result: Value = wait_for(PATIENCE, || {
        serde_json::from_slice(&std::fs::read(&path).ok()?).ok()
    })
    .expect("the component never wrote its result");
    assert_eq!(result["read_key"], "PermissionError", "{result}");
    assert_eq!(result["config_file"], Value::Null, "{result}");
    assert_refused(&result);
    device.nothing_changed(&marker).await;
}

#[tokio::test]
async fn a_granted_component_signs_with_its_own_key_for_what_it_was_granted_only() {
    require_root!("running a component as another user");
    let device = Device::start("");
    device.define_victim().await;
    let r = device
        .host
        .create(support::python_function(
            "other",
            "def handler(event, context):\n    return {'other': True}\n",
            json!({}),
            Default::default(),
        ))
        .await;
    assert_eq!(r.status, 201);
    let recipe = json!({
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": "com.example.Caller",
        "ComponentVersion": "1.0.0",
        "ComponentConfiguration": { "DefaultConfiguration": { "accessControl": {
            "lambkin.lambda": { "invoke-victim": {
                "operations": ["lambda:InvokeFunction"], "resources": ["victim"] } } } } },
        "Manifests": [{ "Platform": { "os": "linux" }, "Lifecycle": {
            "Run": "echo \"$AWS_CONFIG_FILE\" > {work:path}/config-file; exec sleep 600"
        }}],
    });
    let out = device.deploy(
        &[recipe],
        &[
            "-m",
            "com.example.Caller=1.0.0",
            "--run-with",
            "com.example.Caller:posixUser=nobody",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let work = device.root.join("work/com.example.Caller");
    let named = wait_for(PATIENCE, || {
        std::fs::read_to_string(work.join("config-file"))
            .ok()
            .filter(|s| s.ends_with('\n'))
    })
    .expect("the component never said where its config file is");
    let file = PathBuf::from(named.trim());
    assert_eq!(file.parent(), Some(work.as_path()));
    // Only the component's user can read it.
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), 65534);
    let text_of_file = std::fs::read_to_string(&file).unwrap();
    assert!(
        text_of_file.contains(&format!("endpoint_url = http://{}", device.host.addr)),
        "{text_of_file}"
    );
    let key = lambkin::keys::AccessKey::from_profile(&text_of_file, "lambkin").unwrap();

    // What the component can do with it (signing as its SDK would).
    let call = |path: String, body: &'static str| {
        let key = key.clone();
        let addr = device.host.addr.clone();
        async move {
            let mut req = http::Request::post(path)
                .header("host", &addr)
                .body(http_body_util::Full::new(bytes::Bytes::from_static(
                    body.as_bytes(),
                )))
                .unwrap();
            let signing = lambkin_proto::lambda::sigv4::Key {
                access_key_id: &key.access_key_id,
                secret: &key.secret,
            };
            lambkin_proto::lambda::sigv4::sign_request(
                &mut req,
                body.as_bytes(),
                &signing,
                "us-east-1",
                SystemTime::now(),
            )
            .unwrap();
            lambkin::cli::request(&addr, req).await.unwrap()
        }
    };
    let r = call("/2015-03-31/functions/victim/invocations".into(), "{}").await;
    assert_eq!(r.status, 200, "{}", text(&r.body));
    assert_eq!(body_json(&r), json!({"victim": true}));
    let r = call("/2015-03-31/functions/other/invocations".into(), "{}").await;
    assert_eq!(r.status, 403, "{}", text(&r.body));
    assert_eq!(
        header(&r, "x-amzn-errortype"),
        Some("AccessDeniedException")
    );
    let r = call("/2015-03-31/functions".into(), "{}").await;
    assert_eq!(
        header(&r, "x-amzn-errortype"),
        Some("AccessDeniedException")
    );

    // Removed, the component's key is forgotten.
    let out = device.deploy(&[], &["--remove", "com.example.Caller"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r = call("/2015-03-31/functions/victim/invocations".into(), "{}").await;
    assert_eq!(
        header(&r, "x-amzn-errortype"),
        Some("UnrecognizedClientException")
    );
}

#[tokio::test]
async fn development_mode_takes_unsigned_calls_but_no_browser_or_foreign_host() {
    let device = Device::start("[api]\nauth = \"none\"\n");
    let host = &device.host;
    let r = host
        .call_unsigned("GET", "/2015-03-31/functions", &[], "")
        .await;
    assert_eq!(r.status, 200, "{}", text(&r.body));

    let marker = device.open_dir("marks").join("ran");
    let (_, create) = device.kit(&marker);
    let create = std::fs::read(create).unwrap();
    // What a web page's form can send cross-site without a preflight.
    let r = host
        .call_unsigned(
            "POST",
            "/2015-03-31/functions",
            &[
                ("content-type", "text/plain"),
                ("origin", "http://evil.example"),
                ("sec-fetch-site", "cross-site"),
            ],
            create.clone(),
        )
        .await;
    assert_eq!(r.status, 403, "{}", text(&r.body));
    assert_eq!(
        header(&r, "x-amzn-errortype"),
        Some("AccessDeniedException")
    );
    // A page whose name was rebound to 127.0.0.1 sends its own name as Host.
    let port = host.addr.rsplit_once(':').unwrap().1;
    let rebound = format!("evil.example:{port}");
    let r = host
        .call_unsigned(
            "POST",
            "/2015-03-31/functions",
            &[("host", &rebound)],
            create.clone(),
        )
        .await;
    assert_eq!(r.status, 403, "{}", text(&r.body));
    assert!(text(&r.body).contains("evil.example"), "{}", text(&r.body));
    let list = host
        .call_unsigned("GET", "/2015-03-31/functions", &[], "")
        .await;
    assert_eq!(body_json(&list)["Functions"], json!([]));
    assert!(!marker.exists());
}

#[test]
fn an_unsigned_api_off_loopback_is_a_configuration_error() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config.toml");
    std::fs::write(&config, "listen = \"0.0.0.0:0\"\n[api]\nauth = \"none\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lambkin"))
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text(&out.stderr).contains("loopback"),
        "{}",
        text(&out.stderr)
    );

    // The flag cannot open it either.
    std::fs::write(&config, "[api]\nauth = \"none\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lambkin"))
        .args(["run", "--listen", "0.0.0.0:0", "--root"])
        .arg(tmp.path().join("root"))
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    assert!(!tmp.path().join("root/state/api.addr").exists());
}

#[test]
fn lambkin_credentials_prints_what_the_aws_cli_needs() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let host = Host::start(&root);
    let out = Command::new(env!("CARGO_BIN_EXE_lambkin"))
        .args(["credentials", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let line = text(&out.stdout);
    for wanted in [
        format!(
            "AWS_SHARED_CREDENTIALS_FILE='{}'",
            root.join("state/credentials").display()
        ),
        "AWS_PROFILE=lambkin".to_owned(),
        "AWS_REGION='us-east-1'".to_owned(),
        format!("AWS_ENDPOINT_URL_LAMBDA='http://{}'", host.addr),
    ] {
        assert!(line.contains(&wanted), "{wanted} not in {line}");
    }
    let meta = std::fs::metadata(root.join("state/credentials")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
}

#[tokio::test]
async fn a_containerised_function_cannot_read_the_key_or_call_the_api() {
    require_root!("a container");
    let cgroups = lambkin::cgroup::Cgroups::detect();
    require!(
        cgroups.is_ok(),
        "{}",
        cgroups.err().map(|e| e.to_string()).unwrap_or_default()
    );
    // A root outside /tmp, so that the container sees it (read-only) where it is on the host,
    // as it would see /greengrass/v2.
    let tmp = tempfile::Builder::new()
        .prefix("lambkin-signing-")
        .tempdir_in("/var/tmp")
        .unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = tmp.path().join("root");
    let device = Device {
        host: Host::start(&root),
        root,
        tmp,
    };
    device.define_victim().await;
    let marker = device.open_dir("marks").join("ran");
    let (_, create) = device.kit(&marker);
    let name = "com.example.ContainedIntruder";
    let create = std::fs::read_to_string(&create).unwrap();
    let recipe = support::lambda_component(
        device.tmp.path(),
        name,
        &[
            ("lambda_function.py", ATTACK, 0o644),
            ("create.json", &create, 0o644),
        ],
        json!({
            "containerMode": "GreengrassContainer",
            "timeoutInSeconds": 60,
            "containerParams": { "memorySize": 131072, "mountROSysfs": false, "volumes": {}, "devices": {} },
        }),
    );
    let out = device.deploy(&[recipe], &["-m", &format!("{name}=1.0.0")]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let r = device
        .host
        .invoke(
            name,
            &json!({ "addr": device.host.addr, "root": device.root }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", text(&r.body));
    assert_eq!(
        header(&r, "x-amz-function-error"),
        None,
        "{}",
        text(&r.body)
    );
    let result = body_json(&r);
    assert_ne!(result["uid"], 0, "{result}");
    assert_eq!(result["read_key"], "PermissionError", "{result}");
    assert_refused(&result);
    device.nothing_changed(&marker).await;
}
