//! The token exchange service through HTTP, against the real binary: a component's token gets
//! credentials and any other gets 403; GET only (405), the exact path only (400, 404 outside
//! it), as the nucleus answers. The `iot` source is driven against a local mutual-TLS server
//! that answers as the AWS IoT credentials provider does (`/role-aliases/ALIAS/credentials`,
//! the device certificate required, `x-amzn-iot-thingname`, its JSON and error statuses);
//! its request count shows what the service keeps: credentials until 5 minutes before they
//! expire, a 4xx answer for `client_error` seconds, a connection failure not at all.
//! boto3 in a component is in `tests/conformance/test_tes.py`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::json;
use support::{wait_for, Host, HttpReply};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

const PATIENCE: Duration = Duration::from_secs(30);
const COMPONENT: &str = "com.example.TesProbe";
const PATH: &str = "/2016-11-01/credentialprovider/";
const THING: &str = "TesTestThing";
const ALIAS: &str = "TesTestRoleAlias";

/// What a component was given: its token and the credentials URI.
struct Probe {
    token: String,
    uri: String,
}

/// Deploys a component whose Run step writes its `AWS_CONTAINER_AUTHORIZATION_TOKEN` and
/// `AWS_CONTAINER_CREDENTIALS_FULL_URI`, and reads them back.
fn deploy_probe(root: &Path, scratch: &Path) -> Probe {
    let recipe = json!({
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": COMPONENT,
        "ComponentVersion": "1.0.0",
        "Manifests": [{ "Platform": { "os": "linux" }, "Lifecycle": {
            "Run": "printf '%s\\n%s' \"$AWS_CONTAINER_AUTHORIZATION_TOKEN\" \"$AWS_CONTAINER_CREDENTIALS_FULL_URI\" > probe.new && mv probe.new probe && exec sleep 600"
        }}],
    });
    support::deployed(
        root,
        scratch,
        &[recipe],
        &["-m", &format!("{COMPONENT}=1.0.0")],
    );
    let file = root.join("work").join(COMPONENT).join("probe");
    let text = wait_for(PATIENCE, || std::fs::read_to_string(&file).ok())
        .expect("the component did not write its variables");
    let (token, uri) = text.split_once('\n').unwrap();
    assert!(!token.is_empty(), "no token: {text:?}");
    Probe {
        token: token.to_owned(),
        uri: uri.to_owned(),
    }
}

/// A host on a fresh root with `config` as its `config.toml`, and the probe deployed.
fn host_with(config: &str) -> (tempfile::TempDir, Host, Probe) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("config.toml"),
        format!("thing_name = \"{THING}\"\n{config}"),
    )
    .unwrap();
    let host = Host::start(&root);
    let probe = deploy_probe(&root, &dir.path().join("scratch"));
    (dir, host, probe)
}

/// `GET`/other `method` on the URI's host and `path`, with `token` as `Authorization`.
async fn call(uri: &str, method: &str, path: &str, token: Option<&str>) -> HttpReply {
    let addr = uri
        .strip_prefix("http://")
        .and_then(|rest| rest.strip_suffix(PATH))
        .unwrap_or_else(|| panic!("unexpected credentials URI {uri:?}"));
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr);
    if let Some(token) = token {
        req = req.header("authorization", token);
    }
    lambkin::cli::request(addr, req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap()
}

fn body(reply: &HttpReply) -> String {
    String::from_utf8_lossy(&reply.body).into_owned()
}

fn expiration(reply: &HttpReply) -> SystemTime {
    let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    lambkin::tes::parse_expiration(v["Expiration"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn static_source_answers_a_components_token_and_nothing_else() {
    let (_dir, mut host, probe) = host_with(
        "[tes]\nsource = \"static\"\naccess_key_id = \"AKIDSTATIC\"\n\
         secret_access_key = \"static-secret\"\nsession_token = \"static-session\"\n",
    );
    assert!(
        probe.uri.starts_with("http://127.0.0.1:") && probe.uri.ends_with(PATH),
        "{}",
        probe.uri
    );

    let ok = call(&probe.uri, "GET", PATH, Some(&probe.token)).await;
    assert_eq!(ok.status, 200, "{}", body(&ok));
    assert_eq!(
        ok.headers["content-type"].to_str().unwrap(),
        "application/json"
    );
    let v: serde_json::Value = serde_json::from_slice(&ok.body).unwrap();
    assert_eq!(v["AccessKeyId"], "AKIDSTATIC");
    assert_eq!(v["SecretAccessKey"], "static-secret");
    assert_eq!(v["Token"], "static-session");
    assert!(expiration(&ok) > SystemTime::now() + Duration::from_secs(30 * 60));

    let missing = call(&probe.uri, "GET", PATH, None).await;
    assert_eq!(missing.status, 403, "{}", body(&missing));
    assert!(!body(&missing).contains("AKIDSTATIC"));
    let wrong = call(&probe.uri, "GET", PATH, Some("AAAAAAAAAAAAAAAAAAAAAAAAAA")).await;
    assert_eq!(wrong.status, 403);
    let post = call(&probe.uri, "POST", PATH, Some(&probe.token)).await;
    assert_eq!(post.status, 405);
    let put_unauthenticated = call(&probe.uri, "PUT", PATH, None).await;
    assert_eq!(put_unauthenticated.status, 405);
    let under = call(
        &probe.uri,
        "GET",
        "/2016-11-01/credentialprovider/role",
        Some(&probe.token),
    )
    .await;
    assert_eq!(under.status, 400, "{}", body(&under));
    let outside = call(&probe.uri, "GET", "/latest/meta-data/", Some(&probe.token)).await;
    assert_eq!(outside.status, 404);
    let with_query = call(
        &probe.uri,
        "GET",
        &format!("{PATH}?x=1"),
        Some(&probe.token),
    )
    .await;
    assert_eq!(with_query.status, 200);

    assert_eq!(host.stop(), Some(0));
}

#[tokio::test]
async fn file_source_is_read_on_every_request() {
    let creds = tempfile::NamedTempFile::new().unwrap();
    let write = |key: &str| {
        std::fs::write(
            creds.path(),
            json!({"AccessKeyId": key, "SecretAccessKey": "s", "Token": "t",
                   "Expiration": "2099-01-01T00:00:00Z"})
            .to_string(),
        )
        .unwrap();
    };
    write("AKIDFILE1");
    let (_dir, mut host, probe) = host_with(&format!(
        "[tes]\nsource = \"file\"\npath = {:?}\n",
        creds.path().display().to_string()
    ));
    let first = call(&probe.uri, "GET", PATH, Some(&probe.token)).await;
    assert_eq!(first.status, 200, "{}", body(&first));
    let v: serde_json::Value = serde_json::from_slice(&first.body).unwrap();
    assert_eq!(v["AccessKeyId"], "AKIDFILE1");
    assert_eq!(v["Expiration"], "2099-01-01T00:00:00Z");
    write("AKIDFILE2");
    let second = call(&probe.uri, "GET", PATH, Some(&probe.token)).await;
    let v: serde_json::Value = serde_json::from_slice(&second.body).unwrap();
    assert_eq!(v["AccessKeyId"], "AKIDFILE2");
    std::fs::write(creds.path(), "not json").unwrap();
    let broken = call(&probe.uri, "GET", PATH, Some(&probe.token)).await;
    assert_eq!(broken.status, 500);
    assert!(
        body(&broken).contains("is not credentials JSON"),
        "{}",
        body(&broken)
    );
    assert_eq!(host.stop(), Some(0));
}

#[tokio::test]
async fn without_a_source_the_endpoint_says_so() {
    let (_dir, mut host, probe) = host_with("");
    let reply = call(&probe.uri, "GET", PATH, Some(&probe.token)).await;
    assert_eq!(reply.status, 500);
    assert!(
        body(&reply).contains("no credential source is configured"),
        "{}",
        body(&reply)
    );
    assert_eq!(
        call(&probe.uri, "GET", PATH, Some("nope")).await.status,
        403
    );
    assert_eq!(host.stop(), Some(0));
}

// ---------------------------------------------------------------------------------------------
// A local AWS IoT credentials provider
// ---------------------------------------------------------------------------------------------

/// What the fake provider answers next.
const ANSWER_LONG: u8 = 0; // credentials for an hour
const ANSWER_SHORT: u8 = 1; // credentials for 4 minutes: too short to keep
const ANSWER_DENIED: u8 = 2; // 403, as for a role alias the certificate may not assume
const ANSWER_UNAVAILABLE: u8 = 3; // 503

struct Provider {
    port: u16,
    requests: Arc<AtomicU32>,
    mode: Arc<AtomicU8>,
    dir: tempfile::TempDir,
}

struct Pki {
    ca_pem: String,
    server: (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
    client_cert_pem: String,
    client_key_pem: String,
    ca_der: CertificateDer<'static>,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Test credentials CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    client_params
        .distinguished_name
        .push(DnType::CommonName, "device");
    let client = client_params.signed_by(&client_key, &ca, &ca_key).unwrap();
    Pki {
        ca_pem: ca.pem(),
        server: (
            vec![server.der().clone()],
            PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
        ),
        client_cert_pem: client.pem(),
        client_key_pem: client_key.serialize_pem(),
        ca_der: ca.der().clone(),
    }
}

/// Starts the provider: TLS that requires a client certificate from the test CA, then the
/// credentials route.
async fn start_provider() -> Provider {
    let pki = pki();
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .unwrap();
    let config = ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(pki.server.0.clone(), pki.server.1.clone_key())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(AtomicU32::new(0));
    let mode = Arc::new(AtomicU8::new(ANSWER_LONG));
    let (r, m) = (requests.clone(), mode.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let (r, m) = (r.clone(), m.clone());
            tokio::spawn(async move {
                // A client without a certificate from the CA fails here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req| {
                    let (r, m) = (r.clone(), m.clone());
                    async move { Ok::<_, Infallible>(provider_answer(&req, &r, &m)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem).unwrap();
    std::fs::write(dir.path().join("device.pem.crt"), &pki.client_cert_pem).unwrap();
    std::fs::write(dir.path().join("private.pem.key"), &pki.client_key_pem).unwrap();
    Provider {
        port,
        requests,
        mode,
        dir,
    }
}

/// The provider's answers: its JSON on 200, `{"message": …}` on errors.
fn provider_answer<B>(
    req: &Request<B>,
    requests: &AtomicU32,
    mode: &AtomicU8,
) -> hyper::Response<Full<Bytes>> {
    requests.fetch_add(1, Ordering::SeqCst);
    let reply = |status: u16, body: serde_json::Value| {
        hyper::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap()
    };
    let expected_path = format!("/role-aliases/{ALIAS}/credentials");
    if req.method() != hyper::Method::GET || req.uri().path() != expected_path {
        return reply(404, json!({"message": "Role alias does not exist"}));
    }
    if req
        .headers()
        .get("x-amzn-iot-thingname")
        .and_then(|v| v.to_str().ok())
        != Some(THING)
    {
        return reply(
            400,
            json!({"message": "Invalid thing name passed: x-amzn-iot-thingname"}),
        );
    }
    let expires_in = match mode.load(Ordering::SeqCst) {
        ANSWER_LONG => Duration::from_secs(3600),
        ANSWER_SHORT => Duration::from_secs(240),
        ANSWER_DENIED => return reply(403, json!({"message": "Access Denied"})),
        _ => return reply(503, json!({"message": "Service Unavailable"})),
    };
    let n = requests.load(Ordering::SeqCst);
    reply(
        200,
        json!({"credentials": {
            "accessKeyId": format!("ASIAIOT{n}"),
            "secretAccessKey": "iot-secret",
            "sessionToken": "iot-session",
            "expiration": lambkin::tes::format_expiration(SystemTime::now() + expires_in),
        }}),
    )
}

fn iot_config(provider: &Provider, port: u16, extra: &str) -> String {
    let d = provider.dir.path();
    format!(
        "[tes]\nsource = \"iot\"\nendpoint = \"localhost:{port}\"\nrole_alias = \"{ALIAS}\"\n\
         cert = {:?}\nkey = {:?}\nca = {:?}\n{extra}",
        d.join("device.pem.crt").display().to_string(),
        d.join("private.pem.key").display().to_string(),
        d.join("ca.pem").display().to_string(),
    )
}

fn key_of(reply: &HttpReply) -> String {
    let v: serde_json::Value =
        serde_json::from_slice(&reply.body).unwrap_or_else(|e| panic!("{e}: {}", body(reply)));
    v["AccessKeyId"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iot_provider_credentials_are_kept_until_five_minutes_before_expiry() {
    let provider = start_provider().await;
    // The fake provider refuses a client without the device certificate.
    let plain = tokio::net::TcpStream::connect(("127.0.0.1", provider.port))
        .await
        .unwrap();
    let mut roots = RootCertStore::empty();
    roots
        .add(
            tokio_rustls::rustls::pki_types::CertificateDer::from_pem_file(
                provider.dir.path().join("ca.pem"),
            )
            .unwrap(),
        )
        .unwrap();
    let anonymous = tokio_rustls::TlsConnector::from(Arc::new(
        tokio_rustls::rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ));
    let refused = async {
        let mut tls = anonymous
            .connect("localhost".try_into().unwrap(), plain)
            .await?;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        tls.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .await?;
        let mut buf = [0u8; 64];
        let n = tls.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::other("closed"));
        }
        Ok::<_, std::io::Error>(())
    }
    .await;
    assert!(
        refused.is_err(),
        "the provider served a client without a certificate"
    );

    let (_dir, mut host, probe) = host_with(&iot_config(&provider, provider.port, ""));

    // Credentials expiring in 4 minutes are handed out but not kept: each request fetches.
    provider.mode.store(ANSWER_SHORT, Ordering::SeqCst);
    let a = call(&probe.uri, "GET", PATH, Some(&probe.token)).await;
    assert_eq!(a.status, 200, "{}", body(&a));
    let b = call(&probe.uri, "GET", PATH, Some(&probe.token)).await;
    assert_eq!(b.status, 200, "{}", body(&b));
    assert_eq!(provider.requests.load(Ordering::SeqCst), 2);
    assert_ne!(key_of(&a), key_of(&b));

    // An hour's credentials are kept: the next requests do not reach the provider.
    provider.mode.store(ANSWER_LONG, Ordering::SeqCst);
    let c = call(&probe.uri, "GET", PATH, Some(&probe.token)).await;
    assert_eq!(provider.requests.load(Ordering::SeqCst), 3);
    let v: serde_json::Value = serde_json::from_slice(&c.body).unwrap();
    assert_eq!(v["SecretAccessKey"], "iot-secret");
    assert_eq!(v["Token"], "iot-session");
    assert_eq!(
        v.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["AccessKeyId", "Expiration", "SecretAccessKey", "Token"]
    );
    for _ in 0..3 {
        let again = call(&probe.uri, "GET", PATH, Some(&probe.token)).await;
        assert_eq!(key_of(&again), key_of(&c));
    }
    assert_eq!(provider.requests.load(Ordering::SeqCst), 3);
    // A wrong token never reaches the provider.
    assert_eq!(call(&probe.uri, "GET", PATH, Some("x")).await.status, 403);
    assert_eq!(provider.requests.load(Ordering::SeqCst), 3);
    assert_eq!(host.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iot_provider_failures_are_answered_and_kept_per_their_class() {
    let provider = start_provider().await;
    provider.mode.store(ANSWER_DENIED, Ordering::SeqCst);
    let (_dir, mut host, probe) = host_with(&iot_config(
        &provider,
        provider.port,
        "[tes.credential_retry_in_sec]\nserver_error = 0\n",
    ));
    // 403 from the provider: answered with its status, and kept (client_error, 120 s).
    let denied = call(&probe.uri, "GET", PATH, Some(&probe.token)).await;
    assert_eq!(denied.status, 403, "{}", body(&denied));
    assert!(body(&denied).contains("Access Denied"), "{}", body(&denied));
    provider.mode.store(ANSWER_LONG, Ordering::SeqCst);
    let still = call(&probe.uri, "GET", PATH, Some(&probe.token)).await;
    assert_eq!(still.status, 403);
    assert_eq!(provider.requests.load(Ordering::SeqCst), 1);
    assert_eq!(host.stop(), Some(0));

    // 503 with server_error = 0: answered, not kept.
    provider.mode.store(ANSWER_UNAVAILABLE, Ordering::SeqCst);
    let (_dir2, mut host, probe) = host_with(&iot_config(
        &provider,
        provider.port,
        "[tes.credential_retry_in_sec]\nserver_error = 0\n",
    ));
    let unavailable = call(&probe.uri, "GET", PATH, Some(&probe.token)).await;
    assert_eq!(unavailable.status, 503, "{}", body(&unavailable));
    provider.mode.store(ANSWER_LONG, Ordering::SeqCst);
    let recovered = call(&probe.uri, "GET", PATH, Some(&probe.token)).await;
    assert_eq!(recovered.status, 200, "{}", body(&recovered));
    assert_eq!(provider.requests.load(Ordering::SeqCst), 3);
    assert_eq!(host.stop(), Some(0));

    // A provider that drops every connection at once: 500 naming the failure, and that
    // answer is kept for a while (UNREACHABLE_KEEP, 10 s): the next request gets it without
    // a second attempt.
    let dropping = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dropping.local_addr().unwrap().port();
    let attempts = Arc::new(AtomicU32::new(0));
    let counted = attempts.clone();
    std::thread::spawn(move || {
        for stream in dropping.incoming() {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    let (_dir3, mut host, probe) = host_with(&iot_config(&provider, port, ""));
    for _ in 0..2 {
        let down = call(&probe.uri, "GET", PATH, Some(&probe.token)).await;
        assert_eq!(down.status, 500);
        assert!(body(&down).contains("cannot be reached"), "{}", body(&down));
    }
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        1,
        "the failure was not kept"
    );
    assert_eq!(host.stop(), Some(0));
}

#[tokio::test]
async fn iot_files_are_checked_with_the_configuration_relative_to_it() {
    let provider = start_provider().await;
    let dir = provider.dir.path();
    let check = |config: &str| {
        std::fs::write(dir.join("config.toml"), config).unwrap();
        Command::new(env!("CARGO_BIN_EXE_lambkin"))
            .args(["check-config", "--config"])
            .arg(dir.join("config.toml"))
            .output()
            .unwrap()
    };
    let relative = |key: &str| {
        format!(
            "[tes]\nsource = \"iot\"\nendpoint = \"localhost:443\"\nrole_alias = \"{ALIAS}\"\n\
             cert = \"device.pem.crt\"\nkey = \"{key}\"\nca = \"ca.pem\"\n"
        )
    };
    let ok = check(&relative("private.pem.key"));
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let missing = check(&relative("missing.pem.key"));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("missing.pem.key"), "{stderr}");
    let swapped = check(&relative("device.pem.crt"));
    let stderr = String::from_utf8_lossy(&swapped.stderr);
    assert_eq!(swapped.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("no PEM private key"), "{stderr}");
}
