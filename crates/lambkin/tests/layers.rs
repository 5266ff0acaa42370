//! Lambda layers through the API: publish, get, list, delete as AWS answers them, a
//! function's `Layers` presented at `/opt` in order, AWS's layer paths, the exec wrapper,
//! and what a hostile layer or function cannot do.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::io::Write;

use base64::Engine;
use serde_json::{json, Value};
use support::{json, python_function, zip, Host, HttpReply};

const ACCOUNT_REGION: &str = "arn:aws:lambda:us-east-1:000000000000:layer:";

async fn publish(host: &Host, name: &str, zip_b64: &str) -> HttpReply {
    host.call(
        "POST",
        &format!("/2018-10-31/layers/{name}/versions"),
        &[("content-type", "application/json")],
        json!({
            "Content": {"ZipFile": zip_b64},
            "Description": format!("{name} for tests"),
            "CompatibleRuntimes": ["python3.11", "nodejs20.x"],
            "CompatibleArchitectures": ["x86_64"],
            "LicenseInfo": "MIT",
        })
        .to_string(),
    )
    .await
}

/// Publishes and returns the version's ARN.
async fn published(host: &Host, name: &str, files: &[(&str, &str, u32)]) -> String {
    let reply = publish(host, name, &zip(files)).await;
    assert_eq!(
        reply.status,
        201,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    json(&reply)["LayerVersionArn"].as_str().unwrap().to_owned()
}

fn error_of(reply: &HttpReply) -> (u16, String, String) {
    let body = json(reply);
    (
        reply.status,
        support::header(reply, "x-amzn-errortype")
            .unwrap_or_default()
            .to_owned(),
        body["message"].as_str().unwrap_or_default().to_owned(),
    )
}

fn unpinned() -> Value {
    json!({"Pinned": false})
}

async fn invoke_ok(host: &Host, name: &str) -> Value {
    let reply = host.invoke(name, &json!({})).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        support::header(&reply, "x-amz-function-error"),
        None,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    json(&reply)
}

#[tokio::test]
async fn layer_versions_are_published_listed_and_deleted_as_aws_numbers_them() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Host::start(tmp.path());
    let files = [("python/tool.py", "X = 1\n", 0o644)];
    let first = publish(&host, "tools", &zip(&files)).await;
    assert_eq!(first.status, 201);
    let first = json(&first);
    assert_eq!(first["Version"], 1);
    assert_eq!(first["LayerArn"], format!("{ACCOUNT_REGION}tools"));
    assert_eq!(first["LayerVersionArn"], format!("{ACCOUNT_REGION}tools:1"));
    assert_eq!(
        first["CompatibleRuntimes"],
        json!(["python3.11", "nodejs20.x"])
    );
    assert_eq!(first["CompatibleArchitectures"], json!(["x86_64"]));
    assert_eq!(first["LicenseInfo"], "MIT");
    let zip_bytes = base64::engine::general_purpose::STANDARD
        .decode(zip(&files))
        .unwrap();
    assert_eq!(first["Content"]["CodeSize"], zip_bytes.len());
    assert_eq!(
        first["Content"]["CodeSha256"],
        base64::engine::general_purpose::STANDARD
            .encode(<sha2::Sha256 as sha2::Digest>::digest(&zip_bytes))
    );
    assert!(first["CreatedDate"].as_str().unwrap().ends_with("+0000"));
    let second = json(&publish(&host, "tools", &zip(&files)).await);
    assert_eq!(second["Version"], 2);

    let got = host
        .call("GET", "/2018-10-31/layers/tools/versions/1", &[], "")
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(
        json(&got)["LayerVersionArn"],
        format!("{ACCOUNT_REGION}tools:1")
    );
    let by_arn = host
        .call(
            "GET",
            &format!("/2018-10-31/layers?find=LayerVersion&Arn={ACCOUNT_REGION}tools:2"),
            &[],
            "",
        )
        .await;
    assert_eq!(by_arn.status, 200);
    assert_eq!(json(&by_arn)["Version"], 2);

    let listed = json(&host.call("GET", "/2018-10-31/layers", &[], "").await);
    assert_eq!(listed["Layers"].as_array().unwrap().len(), 1);
    assert_eq!(listed["Layers"][0]["LayerName"], "tools");
    assert_eq!(listed["Layers"][0]["LatestMatchingVersion"]["Version"], 2);
    let none = json(
        &host
            .call(
                "GET",
                "/2018-10-31/layers?CompatibleRuntime=java21",
                &[],
                "",
            )
            .await,
    );
    assert_eq!(none["Layers"], json!([]));
    let versions = json(
        &host
            .call("GET", "/2018-10-31/layers/tools/versions", &[], "")
            .await,
    );
    let numbers: Vec<u64> = versions["LayerVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["Version"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [2, 1], "newest first");
    // A page at a time, as the SDKs' paginators ask.
    let first_page = json(
        &host
            .call(
                "GET",
                "/2018-10-31/layers/tools/versions?MaxItems=1",
                &[],
                "",
            )
            .await,
    );
    assert_eq!(first_page["LayerVersions"][0]["Version"], 2);
    let marker = first_page["NextMarker"].as_str().unwrap().to_owned();
    let second_page = json(
        &host
            .call(
                "GET",
                &format!("/2018-10-31/layers/tools/versions?MaxItems=1&Marker={marker}"),
                &[],
                "",
            )
            .await,
    );
    assert_eq!(second_page["LayerVersions"][0]["Version"], 1);
    assert_eq!(second_page.get("NextMarker"), None);
    let too_many = host
        .call("GET", "/2018-10-31/layers?MaxItems=51", &[], "")
        .await;
    assert_eq!(error_of(&too_many).1, "ValidationException");

    let deleted = host
        .call("DELETE", "/2018-10-31/layers/tools/versions/2", &[], "")
        .await;
    assert_eq!(deleted.status, 204);
    let gone = host
        .call("GET", "/2018-10-31/layers/tools/versions/2", &[], "")
        .await;
    assert_eq!(
        error_of(&gone),
        (
            404,
            "ResourceNotFoundException".into(),
            "The resource you requested does not exist.".into()
        )
    );
    // A number is never given out twice, across restarts too.
    drop(host);
    let host = Host::start(tmp.path());
    let third = json(&publish(&host, "tools", &zip(&files)).await);
    assert_eq!(third["Version"], 3);
    let listed = json(&host.call("GET", "/2018-10-31/layers", &[], "").await);
    assert_eq!(listed["Layers"][0]["LatestMatchingVersion"]["Version"], 3);
    let one = host
        .call("GET", "/2018-10-31/layers/tools/versions/1", &[], "")
        .await;
    assert_eq!(one.status, 200, "version 1 survived the restart");
}

const PYTHON_HANDLER: &str = r#"
import os, shared
def handler(event, context):
    import only_first
    return {
        "who": shared.WHO,
        "first": only_first.FIRST,
        "file": shared.__file__,
        "path": os.environ["PATH"],
        "ld": os.environ.get("LD_LIBRARY_PATH"),
        "pythonpath": os.environ.get("PYTHONPATH"),
    }
"#;

#[tokio::test]
async fn a_python_layer_module_is_imported_and_a_later_layer_file_wins() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Host::start(tmp.path());
    let first = published(
        &host,
        "first",
        &[
            ("python/shared.py", "WHO = 'first'\n", 0o644),
            ("python/only_first.py", "FIRST = True\n", 0o644),
        ],
    )
    .await;
    let second = published(
        &host,
        "second",
        &[("python/shared.py", "WHO = 'second'\n", 0o644)],
    )
    .await;
    let mut spec = python_function("layered", PYTHON_HANDLER, unpinned(), BTreeMap::new());
    spec["Layers"] = json!([first, second]);
    let created = host.create(spec).await;
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let layers = &json(&created)["Layers"];
    assert_eq!(layers[0]["Arn"], first);
    assert_eq!(layers[1]["Arn"], second);
    assert!(layers[0]["CodeSize"].as_u64().unwrap() > 0);

    let out = invoke_ok(&host, "layered").await;
    assert_eq!(out["who"], "second", "the later layer's file wins: {out}");
    assert_eq!(out["first"], true);
    let opt = if nix::unistd::geteuid().is_root() {
        "/opt".to_owned()
    } else {
        // A host that is not root names the merged directory itself.
        let dir = std::fs::read_dir(tmp.path().join("functions/layered"))
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with("opt-"))
            .unwrap();
        dir.path().display().to_string()
    };
    assert_eq!(out["file"], format!("{opt}/python/shared.py"));
    assert!(
        out["path"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":{opt}/bin")),
        "{out}"
    );
    assert_eq!(out["ld"], format!("{opt}/lib"));
    assert_eq!(
        out["pythonpath"],
        format!("{opt}/python/lib/python3.11/site-packages:{opt}/python")
    );

    // UpdateFunctionConfiguration reorders them: now the first layer's file wins.
    let updated = host
        .call(
            "PUT",
            "/2015-03-31/functions/layered/configuration",
            &[("content-type", "application/json")],
            json!({"Layers": [second, first]}).to_string(),
        )
        .await;
    assert_eq!(
        updated.status,
        200,
        "{}",
        String::from_utf8_lossy(&updated.body)
    );
    // Idle instances of the old configuration retire; new ones see the new order.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if invoke_ok(&host, "layered").await["who"] == "first" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new order never reached an instance"
        );
    }
}

#[tokio::test]
async fn a_node_layer_package_is_required_by_a_node_handler() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Host::start(tmp.path());
    let layer = published(
        &host,
        "greeter",
        &[(
            "nodejs/node_modules/greeter/index.js",
            "module.exports = (n) => `hello ${n} from a layer`;\n",
            0o644,
        )],
    )
    .await;
    let handler = "const greet = require('greeter');\n\
                   exports.handler = async () => ({ said: greet('node'), nodePath: process.env.NODE_PATH });\n";
    let created = host
        .create(json!({
            "FunctionName": "node-layered",
            "Runtime": "nodejs20.x",
            "Role": "arn:aws:iam::000000000000:role/test",
            "Handler": "index.handler",
            "Code": {"ZipFile": zip(&[("index.js", handler, 0o644)])},
            "Timeout": 30,
            "Layers": [layer],
            "Greengrass": unpinned(),
        }))
        .await;
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let out = invoke_ok(&host, "node-layered").await;
    assert_eq!(out["said"], "hello node from a layer");
    if nix::unistd::geteuid().is_root() {
        assert_eq!(
            out["nodePath"],
            "/opt/nodejs/node20/node_modules:/opt/nodejs/node_modules"
        );
    }
}

fn zip_with_link(file: (&str, &str), link: (&str, &str)) -> String {
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut w = zip::ZipWriter::new(&mut buf);
    w.start_file(file.0, zip::write::SimpleFileOptions::default())
        .unwrap();
    w.write_all(file.1.as_bytes()).unwrap();
    w.add_symlink(link.0, link.1, zip::write::SimpleFileOptions::default())
        .unwrap();
    w.finish().unwrap();
    base64::engine::general_purpose::STANDARD.encode(buf.into_inner())
}

#[tokio::test]
async fn bad_layer_input_is_refused_with_the_errors_aws_names() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Host::start(tmp.path());
    let missing = format!("{ACCOUNT_REGION}nothing:1");
    let mut spec = python_function(
        "f",
        "def handler(e, c):\n    return 1\n",
        unpinned(),
        BTreeMap::new(),
    );
    spec["Layers"] = json!([missing]);
    assert_eq!(
        error_of(&host.create(spec.clone()).await),
        (
            400,
            "InvalidParameterValueException".into(),
            format!("Layer version {missing} does not exist.")
        )
    );
    let mut six = Vec::new();
    for n in 0..6 {
        six.push(published(&host, &format!("l{n}"), &[("bin/x", "x", 0o755)]).await);
    }
    spec["Layers"] = json!(six);
    assert_eq!(
        error_of(&host.create(spec.clone()).await),
        (
            400,
            "InvalidParameterValueException".into(),
            "Cannot reference more than 5 layers.".into()
        )
    );
    spec["Layers"] = json!(["not-an-arn"]);
    let (status, code, _) = error_of(&host.create(spec.clone()).await);
    assert_eq!((status, code.as_str()), (400, "ValidationException"));
    spec["Layers"] = json!([six[0], format!("{ACCOUNT_REGION}l0:2")]);
    let (status, code, message) = error_of(&host.create(spec.clone()).await);
    assert_eq!(
        (status, code.as_str()),
        (400, "InvalidParameterValueException")
    );
    assert!(
        message.starts_with("Two different versions of the same layer"),
        "{message}"
    );
    // None of these made a function.
    let get = host.call("GET", "/2015-03-31/functions/f", &[], "").await;
    assert_eq!(get.status, 404);
    // Five is the limit, not one less.
    spec["Layers"] = json!(six[..5]);
    assert_eq!(host.create(spec).await.status, 201);

    // A zip that climbs out, or links out, is refused and writes nothing outside.
    let escape = base64::engine::general_purpose::STANDARD.encode(support::zip_bytes(&[(
        "../../escaped.txt",
        "out",
        0o644,
    )]));
    let (status, code, message) = error_of(&publish(&host, "escape", &escape).await);
    assert_eq!(
        (status, code.as_str()),
        (400, "InvalidParameterValueException"),
        "{message}"
    );
    let linked = zip_with_link(("python/a.py", "A = 1\n"), ("python/out", "/etc"));
    let (status, code, _) = error_of(&publish(&host, "linked", &linked).await);
    assert_eq!(
        (status, code.as_str()),
        (400, "InvalidParameterValueException")
    );
    let climbing = zip_with_link(("python/a.py", "A = 1\n"), ("up", "../../.."));
    let (status, _, _) = error_of(&publish(&host, "climbing", &climbing).await);
    assert_eq!(status, 400);
    assert!(!tmp.path().join("escaped.txt").exists());
    assert!(!tmp.path().join("layers/escaped.txt").exists());
    assert!(!tmp.path().parent().unwrap().join("escaped.txt").exists());
    for name in ["escape", "linked", "climbing"] {
        let reply = host
            .call(
                "GET",
                &format!("/2018-10-31/layers/{name}/versions"),
                &[],
                "",
            )
            .await;
        assert_eq!(json(&reply)["LayerVersions"], json!([]), "{name}");
    }

    // A name with path characters is refused before anything is written.
    for name in ["a%2Fb", "..", "a.b", "%2E%2E%2Fstate"] {
        let (status, code, _) =
            error_of(&publish(&host, name, &zip(&[("bin/x", "x", 0o755)])).await);
        assert_eq!(
            (status, code.as_str()),
            (400, "ValidationException"),
            "{name}"
        );
    }
    let mut entries: Vec<String> = std::fs::read_dir(tmp.path().join("layers"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        ["l0", "l1", "l2", "l3", "l4", "l5"],
        "refused layers left nothing"
    );
    // A version that is not a number, an unknown ARN.
    let (status, code, _) = error_of(
        &host
            .call("GET", "/2018-10-31/layers/l0/versions/x", &[], "")
            .await,
    );
    assert_eq!((status, code.as_str()), (400, "ValidationException"));
    let (status, code, _) = error_of(
        &host
            .call(
                "GET",
                &format!("/2018-10-31/layers?find=LayerVersion&Arn={missing}"),
                &[],
                "",
            )
            .await,
    );
    assert_eq!((status, code.as_str()), (404, "ResourceNotFoundException"));

    // The host is unaffected.
    let listed = json(&host.call("GET", "/2018-10-31/layers", &[], "").await);
    assert_eq!(listed["Layers"].as_array().unwrap().len(), 6);
    let out = invoke_ok(&host, "f").await;
    assert_eq!(out, 1);
}

#[tokio::test]
async fn a_function_keeps_its_layers_when_the_version_is_deleted_and_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Host::start(tmp.path());
    let layer = published(
        &host,
        "kept",
        &[
            ("python/shared.py", "WHO = 'kept'\n", 0o644),
            ("python/only_first.py", "FIRST = 'yes'\n", 0o644),
        ],
    )
    .await;
    let mut spec = python_function("keeper", PYTHON_HANDLER, unpinned(), BTreeMap::new());
    spec["Layers"] = json!([layer]);
    assert_eq!(host.create(spec).await.status, 201);
    assert_eq!(invoke_ok(&host, "keeper").await["who"], "kept");
    let deleted = host
        .call("DELETE", "/2018-10-31/layers/kept/versions/1", &[], "")
        .await;
    assert_eq!(deleted.status, 204);
    assert!(
        !tmp.path().join("layers/kept/1").exists(),
        "the version's own copy went"
    );
    // Running and future instances still have it; the configuration still names it.
    assert_eq!(invoke_ok(&host, "keeper").await["who"], "kept");
    drop(host);
    let host = Host::start(tmp.path());
    assert_eq!(invoke_ok(&host, "keeper").await["who"], "kept");
    let config = json(
        &host
            .call("GET", "/2015-03-31/functions/keeper/configuration", &[], "")
            .await,
    );
    assert_eq!(config["Layers"][0]["Arn"], layer);
    // A configuration change that keeps the layers keeps working too; one that names the
    // deleted version again is refused, as AWS refuses it.
    let updated = host
        .call(
            "PUT",
            "/2015-03-31/functions/keeper/configuration",
            &[("content-type", "application/json")],
            json!({"Timeout": 20}).to_string(),
        )
        .await;
    assert_eq!(updated.status, 200);
    assert_eq!(invoke_ok(&host, "keeper").await["who"], "kept");
    let renamed = host
        .call(
            "PUT",
            "/2015-03-31/functions/keeper/configuration",
            &[("content-type", "application/json")],
            json!({"Layers": [layer]}).to_string(),
        )
        .await;
    assert_eq!(error_of(&renamed).1, "InvalidParameterValueException");
}

#[tokio::test]
async fn a_function_cannot_write_into_its_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Host::start(tmp.path());
    let layer = published(&host, "shared", &[("python/lib.py", "V = 1\n", 0o666)]).await;
    let merged_probe = r#"
import os, glob
def handler(event, context):
    tried = {}
    targets = [os.path.join(p, "lib.py") for p in os.environ["PYTHONPATH"].split(":")]
    targets += [os.path.join(p, "new.py") for p in os.environ["PYTHONPATH"].split(":")]
    targets += event.get("extra", [])
    for path in targets:
        try:
            with open(path, "a") as f:
                f.write("X = 2\n")
            tried[path] = "written"
        except OSError as e:
            tried[path] = e.strerror
    return tried
"#;
    let mut spec = python_function("writer", merged_probe, unpinned(), BTreeMap::new());
    spec["Layers"] = json!([layer]);
    assert_eq!(host.create(spec).await.status, 201);
    let merged = std::fs::read_dir(tmp.path().join("functions/writer"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("opt-"))
        .unwrap()
        .path();
    let extra = [
        merged.join("python/lib.py"),
        tmp.path().join("layers/shared/1/python/lib.py"),
    ];
    let reply = host.invoke("writer", &json!({"extra": extra})).await;
    let tried = json(&reply);
    let tried = tried.as_object().unwrap();
    assert!(tried.len() >= 3, "{tried:?}");
    for (path, outcome) in tried {
        assert_ne!(outcome, "written", "{path} was written: {tried:?}");
    }
    if nix::unistd::geteuid().is_root() {
        // At /opt the mount itself is read-only: a new file is refused as such, before
        // any directory's mode is looked at.
        assert_eq!(
            tried["/opt/python/new.py"], "Read-only file system",
            "{tried:?}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(merged.join("python/lib.py")).unwrap(),
        "V = 1\n"
    );
    // The host owns the content, whoever the function runs as.
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(merged.join("python/lib.py"))
        .unwrap()
        .uid();
    assert_eq!(owner, nix::unistd::geteuid().as_raw());
    if let Some((uid, _)) = support::default_user() {
        assert_ne!(owner, uid);
    }
}

#[tokio::test]
async fn the_exec_wrapper_from_a_layer_starts_the_runtime() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Host::start(tmp.path());
    let wrapper = "#!/bin/sh\nexport WRAPPED_BY=\"$0\"\nexport WRAPPED_ARGS=\"$#\"\nexec \"$@\"\n";
    let layer = published(&host, "wrapper", &[("wrapper", wrapper, 0o755)]).await;
    let handler = "import os\ndef handler(e, c):\n    return [os.environ.get('WRAPPED_BY'), os.environ.get('WRAPPED_ARGS')]\n";
    let env = BTreeMap::from([("AWS_LAMBDA_EXEC_WRAPPER", "/opt/wrapper".to_owned())]);
    let mut spec = python_function("wrapped", handler, unpinned(), env);
    spec["Layers"] = json!([layer]);
    assert_eq!(host.create(spec).await.status, 201);
    let out = invoke_ok(&host, "wrapped").await;
    let by = out[0].as_str().unwrap_or_default();
    assert!(by.ends_with("/wrapper"), "{out}");
    if nix::unistd::geteuid().is_root() {
        assert_eq!(by, "/opt/wrapper");
    }
    // The interpreter and its arguments (`-u`, the runtime client) follow the wrapper.
    assert_eq!(out[1], "3", "{out}");
    // Without the variable, nothing wraps the runtime.
    let plain = python_function("plain", handler, unpinned(), BTreeMap::new());
    assert_eq!(host.create(plain).await.status, 201);
    assert_eq!(invoke_ok(&host, "plain").await, json!([null, null]));
}

const COMPONENT_HANDLER: &str = r#"
import os, shared
def lambda_handler(event, context):
    try:
        open("/opt/python/new.py", "w").close()
        write = "written"
    except OSError as e:
        write = e.strerror
    return {"who": shared.WHO, "file": shared.__file__, "write": write}
"#;

#[tokio::test]
async fn a_lambda_component_gets_its_layers_at_opt_in_both_container_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let host = Host::start(&root);
    let first = published(
        &host,
        "base",
        &[("python/shared.py", "WHO = 'base'\n", 0o644)],
    )
    .await;
    let second = published(
        &host,
        "over",
        &[("python/shared.py", "WHO = 'over'\n", 0o644)],
    )
    .await;
    let mut modes = vec!["NoContainer"];
    match support::containers_unavailable() {
        None => modes.push("GreengrassContainer"),
        Some(why) => println!("GreengrassContainer skipped: {why}"),
    }
    for (i, mode) in modes.iter().enumerate() {
        let name = format!("com.example.Layered{i}");
        let recipe = support::lambda_component(
            tmp.path(),
            &name,
            &[("lambda_function.py", COMPONENT_HANDLER, 0o644)],
            json!({"containerMode": mode, "pinned": false, "layers": [first, second]}),
        );
        support::deployed(
            &root,
            tmp.path(),
            &[recipe],
            &["-m", &format!("{name}=1.0.0")],
        );
        let out = invoke_ok(&host, &name).await;
        assert_eq!(out["who"], "over", "{mode}: {out}");
        if nix::unistd::geteuid().is_root() {
            assert_eq!(out["file"], "/opt/python/shared.py", "{mode}");
            assert_eq!(out["write"], "Read-only file system", "{mode}");
        } else {
            assert_ne!(out["write"], "written", "{mode}");
        }
    }
    // A layer that does not exist fails the deployment, naming it.
    let missing = format!("{ACCOUNT_REGION}absent:1");
    let recipe = support::lambda_component(
        tmp.path(),
        "com.example.Missing",
        &[("lambda_function.py", COMPONENT_HANDLER, 0o644)],
        json!({"containerMode": "NoContainer", "layers": [missing]}),
    );
    let out = support::deploy(
        &root,
        tmp.path(),
        &[recipe],
        &["-m", "com.example.Missing=1.0.0"],
    );
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains(&format!("Layer version {missing} does not exist.")),
        "{text}"
    );
}

/// Without a signature, as any local process or a web page would call it, the layer API
/// answers AWS's 403 and nothing is published, listed or deleted.
#[tokio::test]
async fn the_layer_api_refuses_unsigned_callers() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Host::start(&tmp.path().join("root"));
    let arn = published(&host, "kept", &[("python/kept.py", "K = 1\n", 0o644)]).await;
    let zip_b64 = zip(&[("python/evil.py", "E = 1\n", 0o644)]);
    for (method, path, body) in [
        (
            "POST",
            "/2018-10-31/layers/evil/versions".to_owned(),
            json!({"Content": {"ZipFile": zip_b64}}).to_string(),
        ),
        ("GET", "/2018-10-31/layers".to_owned(), String::new()),
        (
            "GET",
            "/2018-10-31/layers/kept/versions/1".to_owned(),
            String::new(),
        ),
        (
            "DELETE",
            "/2018-10-31/layers/kept/versions/1".to_owned(),
            String::new(),
        ),
    ] {
        let reply = host
            .call_unsigned(method, &path, &[("content-type", "application/json")], body)
            .await;
        let (status, kind, _) = error_of(&reply);
        assert_eq!(
            (status, kind.as_str()),
            (403, "MissingAuthenticationTokenException"),
            "{method} {path}"
        );
    }
    // Signed, the host shows what was there before and nothing more.
    let listed = host.call("GET", "/2018-10-31/layers", &[], "").await;
    let names: Vec<String> = json(&listed)["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["LayerName"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["kept"]);
    let got = host
        .call("GET", "/2018-10-31/layers/kept/versions/1", &[], "")
        .await;
    assert_eq!(json(&got)["LayerVersionArn"], arn.as_str());
}
