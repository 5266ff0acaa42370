//! Hostile names and archives, tried as an attacker would against the real binary: names that
//! are path components, archives whose entries or links lead out of their directory, and a
//! zip bomb. Each is refused with the API's own error or a failed deployment naming the cause;
//! nothing outside the target directory is touched, and the host keeps serving.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use support::{header, json as body_json, Host};

/// Every file under `root`, as relative paths (what "nothing was touched" compares).
fn tree(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            out.push(path.strip_prefix(root).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                walk(&path, root, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// A zip of `(name, content)` files and `(name, target)` links, names as given.
fn zip_with_links(files: &[(&str, &[u8])], links: &[(&str, &str)]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut w = zip::ZipWriter::new(&mut buf);
    for (name, target) in links {
        w.add_symlink(*name, *target, zip::write::SimpleFileOptions::default())
            .unwrap();
    }
    for (name, data) in files {
        w.start_file(
            *name,
            zip::write::SimpleFileOptions::default().unix_permissions(0o755),
        )
        .unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap();
    buf.into_inner()
}

/// The archives an attacker would send, each with a `bootstrap` so that only the attack
/// itself can be the reason for a refusal.
fn hostile_archives() -> Vec<(&'static str, Vec<u8>)> {
    let boot: (&str, &[u8]) = ("bootstrap", b"#!/bin/sh\nexec sleep 600\n");
    vec![
        (
            "a chain of links climbing through each other",
            zip_with_links(
                &[boot, ("l3/escaped", b"written outside")],
                &[("l1", "."), ("l2", "l1/.."), ("l3", "l2/..")],
            ),
        ),
        (
            "an absolute path",
            zip_with_links(&[boot, ("/tmp/escaped", b"x")], &[]),
        ),
        (
            "a .. entry",
            zip_with_links(&[boot, ("../escaped", b"x")], &[]),
        ),
        (
            "a link to a link",
            zip_with_links(&[boot], &[("a", "b"), ("b", "../..")]),
        ),
        (
            "a file written through a link",
            zip_with_links(&[boot, ("up/escaped", b"x")], &[("up", "..")]),
        ),
    ]
}

fn create_body(name: &str, zip: &[u8]) -> Value {
    json!({
        "FunctionName": name,
        "Runtime": "provided.al2023",
        "Role": "arn:aws:iam::000000000000:role/x",
        "Handler": "bootstrap",
        "Code": { "ZipFile": base64::engine::general_purpose::STANDARD.encode(zip) },
        "Greengrass": { "Pinned": false },
    })
}

struct Device {
    tmp: tempfile::TempDir,
    root: PathBuf,
    host: Host,
}

impl Device {
    fn start() -> Device {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let host = Host::start(&root);
        Device { tmp, root, host }
    }

    fn deploy(&self, recipe: &Value, artifact: Option<(&str, &[u8])>) -> (bool, String) {
        let name = recipe["ComponentName"].as_str().unwrap();
        if let Some((file, bytes)) = artifact {
            let dir = self.tmp.path().join("artifacts").join(name).join("1.0.0");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(file), bytes).unwrap();
        }
        let merge = format!("{name}=1.0.0");
        let out = support::deploy(
            &self.root,
            self.tmp.path(),
            std::slice::from_ref(recipe),
            &["-m", &merge],
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }
}

fn component(name: &str, artifacts: Value) -> Value {
    json!({
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": name,
        "ComponentVersion": "1.0.0",
        "Manifests": [{
            "Platform": { "os": "linux" },
            "Lifecycle": { "Run": "sleep 600" },
            "Artifacts": artifacts,
        }],
    })
}

#[tokio::test]
async fn path_like_names_are_refused_for_functions_and_components_and_nothing_is_touched() {
    let device = Device::start();
    let ok = device
        .host
        .create(support::python_function(
            "kept",
            "def handler(e, c):\n    return 'kept'\n",
            json!({}),
            Default::default(),
        ))
        .await;
    assert_eq!(ok.status, 201);
    let before = tree(device.tmp.path());
    let long = "x".repeat(300);
    let zip = zip_with_links(&[("bootstrap", b"#!/bin/sh\n")], &[]);
    for name in ["..", ".", "a/b", long.as_str()] {
        let r = device.host.create(create_body(name, &zip)).await;
        assert_eq!(
            r.status,
            400,
            "{name}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(
            header(&r, "x-amzn-errortype"),
            Some("InvalidParameterValueException"),
            "{name}"
        );
    }
    // Deleting, updating or reading through such a name reaches nothing.
    for path in ["..", "%2E%2E", ".", "a%2Fb", "..%2F..", long.as_str()] {
        for (method, suffix, body) in [
            ("DELETE", "", ""),
            ("GET", "", ""),
            ("PUT", "/configuration", "{\"Timeout\":5}"),
        ] {
            let r = device
                .host
                .call(
                    method,
                    &format!("/2015-03-31/functions/{path}{suffix}"),
                    &[],
                    body,
                )
                .await;
            assert!(
                (400..500).contains(&r.status),
                "{method} {path}{suffix}: {}",
                r.status
            );
        }
    }
    for name in ["..", ".", &"x".repeat(300)] {
        let (ok, text) = device.deploy(&component(name, json!([])), None);
        assert!(!ok, "component {name:?} was deployed: {text}");
    }
    assert_eq!(
        tree(device.tmp.path())
            .into_iter()
            .filter(|p| !p.starts_with("recipes-")
                && !p.starts_with("artifacts")
                && !p.contains("lambkin.log")
                && !p.contains("lambkin.db"))
            .collect::<Vec<_>>(),
        before
            .into_iter()
            .filter(|p| !p.contains("lambkin.log") && !p.contains("lambkin.db"))
            .collect::<Vec<_>>()
    );
    let r = device.host.invoke("kept", &json!({})).await;
    assert_eq!(body_json(&r), json!("kept"));
}

#[tokio::test]
async fn hostile_archives_are_refused_as_function_code_and_as_component_artifacts() {
    let device = Device::start();
    for (i, (what, zip)) in hostile_archives().into_iter().enumerate() {
        let r = device
            .host
            .create(create_body(&format!("f{i}"), &zip))
            .await;
        assert_eq!(
            r.status,
            400,
            "{what}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(
            header(&r, "x-amzn-errortype"),
            Some("InvalidParameterValueException"),
            "{what}"
        );
        let name = format!("com.example.Archive{i}");
        let (ok, text) = device.deploy(
            &component(
                &name,
                json!([{ "Uri": "s3://bucket/evil.zip", "Unarchive": "ZIP" }]),
            ),
            Some(("evil.zip", &zip)),
        );
        assert!(!ok, "{what}: deployed: {text}");
        assert!(text.contains("evil.zip"), "{what}: {text}");
    }
    // Nothing named `escaped` anywhere the host could reach, inside its root or beside it.
    let escaped: Vec<String> = tree(device.tmp.path())
        .into_iter()
        .filter(|p| p.ends_with("escaped"))
        .collect();
    assert!(escaped.is_empty(), "{escaped:?}");
    assert!(!Path::new("/tmp/escaped").exists());
}

/// `n` deflated files of zeros: about a megabyte of zip that would unpack to `n` × `each`
/// bytes. One entry is deflated once and copied raw under other names.
fn bomb(n: usize, each: usize) -> Vec<u8> {
    let one = {
        let mut buf = std::io::Cursor::new(Vec::new());
        let mut w = zip::ZipWriter::new(&mut buf);
        w.start_file("zeros", zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(&vec![0u8; each]).unwrap();
        w.finish().unwrap();
        buf.into_inner()
    };
    let mut source = zip::ZipArchive::new(std::io::Cursor::new(one)).unwrap();
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut w = zip::ZipWriter::new(&mut buf);
    w.start_file(
        "bootstrap",
        zip::write::SimpleFileOptions::default().unix_permissions(0o755),
    )
    .unwrap();
    w.write_all(b"#!/bin/sh\n").unwrap();
    for i in 0..n {
        let entry = source.by_index_raw(0).unwrap();
        w.raw_copy_file_rename(entry, format!("zeros{i}")).unwrap();
    }
    w.finish().unwrap();
    buf.into_inner()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zip_bomb_is_refused_naming_the_limit_while_invocations_carry_on() {
    let device = Device::start();
    let warm = device
        .host
        .create(support::python_function(
            "warm",
            "def handler(e, c):\n    return e\n",
            json!({"Pinned": true}),
            Default::default(),
        ))
        .await;
    assert_eq!(warm.status, 201);
    // Warm, and the normal range measured before the bomb.
    for _ in 0..5 {
        assert_eq!(device.host.invoke("warm", &json!({})).await.status, 200);
    }
    let mut quiet = Vec::new();
    for i in 0..50 {
        let started = Instant::now();
        let r = device.host.invoke("warm", &json!({ "i": i })).await;
        assert_eq!(r.status, 200);
        quiet.push(started.elapsed());
    }
    quiet.sort();

    // 1 GiB of zeros in about a megabyte of zip.
    let zip = bomb(64, 16 * 1024 * 1024);
    let host = &device.host;
    let during = async {
        let mut latencies = Vec::new();
        for i in 0..200 {
            let started = Instant::now();
            let r = host.invoke("warm", &json!({ "i": i })).await;
            assert_eq!(r.status, 200);
            latencies.push(started.elapsed());
        }
        latencies
    };
    let (refused, mut latencies) = tokio::join!(host.create(create_body("bomb", &zip)), during);
    assert_eq!(
        refused.status,
        400,
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
    let message = body_json(&refused)["message"].as_str().unwrap().to_owned();
    assert!(message.contains("compression ratio"), "{message}");
    latencies.sort();
    println!(
        "warm invoke p50/p99: {:?}/{:?} before, {:?}/{:?} while a {}-byte bomb was refused",
        percentile(&quiet, 0.5),
        percentile(&quiet, 0.99),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        zip.len()
    );
    // Nothing of it stays on disk.
    let functions = device.root.join("functions");
    assert!(!functions.join("bomb").exists() || tree(&functions.join("bomb")).is_empty());
}

#[tokio::test]
async fn a_control_byte_in_a_client_context_reaches_the_function_and_breaks_nothing() {
    let device = Device::start();
    let r = device
        .host
        .create(support::python_function(
            "context",
            "import os\n\ndef handler(event, context):\n    return {'custom': context.client_context.custom, 'pid': os.getpid()}\n",
            json!({"Pinned": true}),
            Default::default(),
        ))
        .await;
    assert_eq!(r.status, 201);
    // Raw DEL inside a JSON string is valid JSON, and no valid header byte.
    let context = "{\"custom\":{\"subject\":\"dev\u{7f}ice\"}}";
    let encoded = base64::engine::general_purpose::STANDARD.encode(context);
    let mut pids = Vec::new();
    for _ in 0..2 {
        let r = device
            .host
            .call(
                "POST",
                "/2015-03-31/functions/context/invocations",
                &[("x-amz-client-context", &encoded)],
                "{}",
            )
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(
            header(&r, "x-amz-function-error"),
            None,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        let body = body_json(&r);
        assert_eq!(body["custom"]["subject"], "dev\u{7f}ice");
        pids.push(body["pid"].clone());
    }
    // The same instance answered both: the runtime did not exit over it.
    assert_eq!(pids[0], pids[1]);
}
