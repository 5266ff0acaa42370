//! The host: wires the store, the function registry and the API listener, and stops them in
//! order. The architecture in one place.
//!
//! [`run`] takes its [`Listeners`] already bound: the binary binds them from the configuration
//! ([`Listeners::bind`]); a test binds port 0 and a socket in a temporary directory, and runs
//! the host in its own runtime (with a paused clock where a timing rule is tested). A host run
//! inside another program cannot start GreengrassContainer instances: their sandbox init
//! re-executes the running binary, which must then be `lambkin`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use base64::Engine as _;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;

use lambkin_proto::lambda::function::FunctionName;
use lambkin_proto::lambda::management::{CreateFunctionRequest, FunctionCode};

use lambkin_proto::recipe::platform::PlatformInfo;

use crate::api::{self, ApiState};
use crate::components::builtin;
use crate::components::engine::{Engine, EngineSettings};
use crate::config::HostConfig;
use crate::ipc::{self, ComponentIpc, Services, Tokens};
use crate::lambda::registry::{HostSettings, Registry};
use crate::lambda::runtimes::Runtimes;
use crate::layout::Layout;
use crate::mqtt::Mqtt;
use crate::pubsub::{self, PubSubHandle};
use crate::store::Store;
use crate::tes::Tes;

#[derive(Debug)]
pub struct RunOptions {
    pub layout: Layout,
    pub config: HostConfig,
    /// Define the example function `hello` if it does not exist.
    pub with_example: bool,
}

/// The exit status for a host that could not start: [`crate::cli::EXIT_CONFIG`] (78) when its
/// root holds a database a newer Lambkin wrote (the operator runs that version or restores a
/// backup), 1 otherwise.
pub fn exit_code(error: &anyhow::Error) -> i32 {
    use crate::schema::SchemaError;
    let newer = |e: &SchemaError| matches!(e, SchemaError::Newer { .. });
    let refused = error.chain().any(|cause| {
        cause.downcast_ref::<SchemaError>().is_some_and(newer)
            || matches!(
                cause.downcast_ref::<crate::store::StoreError>(),
                Some(crate::store::StoreError::Schema(e)) if newer(e)
            )
            || matches!(
                cause.downcast_ref::<crate::mqtt::spool::SpoolError>(),
                Some(crate::mqtt::spool::SpoolError::Schema(e)) if newer(e)
            )
    });
    if refused {
        crate::cli::EXIT_CONFIG
    } else {
        1
    }
}

/// The host's own listeners, bound before it runs. Each instance's Runtime API listener is
/// not among them: an instance binds its own when it starts.
#[derive(Debug)]
pub struct Listeners {
    /// The Invoke API and all that is served beside it (`interface.md`).
    pub api: TcpListener,
    /// The token exchange service, on loopback.
    pub token_exchange: TcpListener,
    /// Greengrass IPC. Without it the host still runs everything else, and components get no
    /// IPC variables.
    pub ipc: Option<IpcListener>,
}

/// The Greengrass IPC socket and the absolute path components are given to reach it.
#[derive(Debug)]
pub struct IpcListener {
    pub listener: UnixListener,
    pub path: PathBuf,
}

/// A listener of the host that cannot be bound: the host does not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen on {addr}")]
    Api {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the token exchange service: cannot listen on {addr}")]
    TokenExchange {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl Listeners {
    /// Binds what `config` names: the API on `listen` (else `config.listen`), the token
    /// exchange service on `127.0.0.1:[tes] port` (any free port by default), and the IPC socket
    /// at `ROOT/ipc.socket`, open to every user (`ipc::bind`). The IPC socket is bound last, as
    /// binding it replaces a socket left at its path; when it cannot be bound the error is
    /// logged and the host runs without it.
    pub async fn bind(
        layout: &Layout,
        config: &HostConfig,
        listen: Option<SocketAddr>,
    ) -> Result<Self, ListenError> {
        let addr = listen.unwrap_or(config.listen);
        let api = TcpListener::bind(addr)
            .await
            .map_err(|source| ListenError::Api { addr, source })?;
        let addr = crate::tes::address(config.tes.as_ref());
        let token_exchange = TcpListener::bind(addr)
            .await
            .map_err(|source| ListenError::TokenExchange { addr, source })?;
        let ipc = match ipc::socket_path(layout.root())
            .map_err(anyhow::Error::from)
            .and_then(|path| Ok((ipc::bind(&path)?, path)))
        {
            Ok((listener, path)) => Some(IpcListener { listener, path }),
            Err(e) => {
                tracing::error!(error = %e, "the IPC socket is not available");
                None
            }
        };
        Ok(Self {
            api,
            token_exchange,
            ipc,
        })
    }
}

/// Runs the host on `listeners` until `shutdown` resolves, then stops every instance and
/// exits cleanly.
pub async fn run(
    opts: RunOptions,
    listeners: Listeners,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let Listeners {
        api: listener,
        token_exchange,
        ipc: ipc_listener,
    } = listeners;
    crate::secret::check()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("the operating system's random source does not answer: no key or token can be made without it")?;
    let layout = opts.layout;
    layout
        .create_dirs()
        .with_context(|| format!("cannot create the root {}", layout.root().display()))?;
    if crate::orphans::reap(layout.root()) > 0 {
        // SIGKILL takes a moment; a group is removed only once its processes are gone.
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if let Ok(cgroups) = crate::cgroup::host() {
        cgroups.remove_stale();
    }
    let users = crate::users::Users::start(opts.config.run_with_default.posix_user.as_deref())
        .context(
            "cannot set up the default user for components and functions (create it, or name \
             an existing one in [run_with_default] posix_user)",
        )?;
    if let Some(user) = users.for_function() {
        crate::users::open_root(&layout, &user).with_context(|| {
            format!(
                "cannot open {} to the default user",
                layout.root().display()
            )
        })?;
    }
    let disk_full = crate::layout::disk_full(layout.root());
    if disk_full {
        tracing::warn!(
            root = %layout.root().display(),
            "the disk holding the root is full: the host serves the functions and components it has; what needs space (new functions and code, deployments, Event invocations, logs) is refused or lost until space is freed"
        );
    }
    let (store, recovered) = Store::open(&layout.database())
        .with_context(|| format!("cannot open {}", layout.database().display()))?;
    let runtimes = Runtimes::install(&layout.runtimes_dir(), &opts.config.lambda)
        .context("cannot install the runtime clients")?;
    let placement = std::sync::Arc::new(crate::lambda::placement::Placement::new(
        opts.config.lambda.colocate_sequential,
    ));
    tokio::spawn({
        let placement = placement.clone();
        async move { placement.watch().await }
    });
    let layers = crate::lambda::layers::Layers::open(
        layout.clone(),
        opts.config.region.clone(),
        opts.config.account_id.clone(),
    )
    .with_context(|| format!("cannot open {}", layout.layers_dir().display()))?;
    // One credential source: the token exchange service hands it to components, and remote
    // targets with `credentials = "tes"` sign with it.
    let tes_source = Arc::new(
        crate::tes::Source::from_config(opts.config.tes.as_ref(), &opts.config.thing_name)
            .context("cannot start the token exchange service")?,
    );
    let targets = crate::remote::Targets::new(
        &opts.config.remote_targets,
        &opts.config.region,
        opts.config
            .tes
            .is_some()
            .then(|| tes_source.clone() as Arc<dyn crate::remote::KeySource>),
    )
    .map_err(anyhow::Error::msg)
    .context("cannot set up the remote targets")?;
    let registry = Registry::new(
        store.clone(),
        layout.clone(),
        runtimes,
        layers,
        HostSettings {
            region: opts.config.region.clone(),
            account_id: opts.config.account_id.clone(),
            init_timeout: opts.config.lambda.init_timeout(),
            shutdown_grace: opts.config.lambda.shutdown_grace(),
            placement: placement.clone(),
            function_user: users.for_function(),
            metrics: opts.config.metrics.enabled,
            targets,
        },
    );
    let addr = listener.local_addr()?;
    let host_key = crate::keys::load_or_create(&layout.credentials_file())?;
    let api_keys = crate::api::auth::Keys::new();
    api_keys.insert(
        host_key.access_key_id.clone(),
        host_key.secret.clone(),
        crate::api::auth::Principal::Host,
    );
    if opts.config.api.auth == crate::config::ApiAuth::None {
        tracing::warn!(
            %addr,
            "api.auth = \"none\": the Lambda API takes unsigned requests from any local process (development mode)"
        );
    }
    let pubsub = PubSubHandle::spawn(pubsub::Limits::default());
    let mqtt = match &opts.config.mqtt {
        Some(config) => Some(
            Mqtt::start(config, &opts.config.thing_name, &layout.state_dir())
                .context("cannot start the MQTT connection")?,
        ),
        None => None,
    };
    let openwhisk = crate::openwhisk::OpenWhisk::start(
        &layout,
        registry.clone(),
        pubsub.clone(),
        mqtt.clone(),
        &opts.config.openwhisk,
        &opts.config.thing_name,
        format!("http://{addr}"),
    )?;
    // Before the stored Event invocations run again: the OpenWhisk activations among them
    // write their records when they have run.
    if registry
        .set_event_sink(crate::openwhisk::StoredActivations::new(&openwhisk))
        .is_err()
    {
        anyhow::bail!("the stored Event invocations already have a sink");
    }
    // The functions read from the store start their instances once the committed components
    // have: the two do not compete for the CPU before the host is ready.
    let (open_stored_functions, stored_functions) = crate::lambda::spec::StartGate::closed();
    registry
        .recover(recovered.functions, recovered.events, stored_functions)
        .await;
    if opts.with_example {
        define_example(&registry).await?;
    }
    let tokens = Tokens::new();
    let tes = Tes::start(token_exchange, tes_source, tokens.clone())
        .context("cannot start the token exchange service")?;
    let engine = Engine::start(
        EngineSettings {
            layout: layout.clone(),
            platform: PlatformInfo::current(),
            thing_name: opts.config.thing_name.clone(),
            stop_grace: opts.config.lambda.shutdown_grace(),
            base_env: component_env(&opts.config, &tes.uri()),
            // The socket is bound before any component starts, so that a component's first
            // connection finds it.
            ipc: ipc_listener.as_ref().map(|ipc| ComponentIpc {
                socket: ipc.path.clone(),
                tokens: tokens.clone(),
            }),
            pubsub: pubsub.clone(),
            users,
            system_resource_limits: opts.config.system_resource_limits.clone(),
            mqtt: mqtt.clone(),
            lambda_api: crate::api::access::ComponentKeys::new(
                api_keys.clone(),
                format!("http://{addr}"),
                opts.config.region.clone(),
            ),
        },
        registry.store().clone(),
        registry.clone(),
        recovered.components,
        recovered.interrupted,
    )
    .await;
    open_stored_functions.send_replace(true);
    registry.report_awaiting();
    let mqtt_invoke = crate::mqtt_invoke::MqttInvoke::start(
        &opts.config.mqtt_invoke,
        mqtt.clone(),
        registry.clone(),
        &opts.config.thing_name,
    )
    .await;
    let cli_token = write_token(&layout.cli_token_file(), "the CLI's")?;
    let ipc_connections = Arc::new(crate::metrics::counters::Gauge::default());
    let metrics = if opts.config.metrics.enabled {
        Some(crate::metrics::Exporter {
            token: metrics_token(&layout)?,
            mqtt: mqtt.clone(),
            ipc_connections: ipc_connections.clone(),
        })
    } else {
        None
    };
    openwhisk.bind_stored().await;
    // Every subscription the host starts with is made: what the broker kept for the session
    // and no one claims may go.
    if let Some(mqtt) = &mqtt {
        mqtt.settled().await;
    }
    let state = Arc::new(ApiState {
        registry: registry.clone(),
        engine: engine.clone(),
        pubsub: pubsub.clone(),
        cli_token,
        gate: crate::api::auth::Gate::new(opts.config.api.auth, api_keys, addr),
        openwhisk: openwhisk.clone(),
        store: store.clone(),
        layout: layout.clone(),
        urls: crate::api::url_store::FunctionUrls::load(
            &layout.state_dir(),
            format!("http://{addr}"),
        )
        .context("cannot read the function URLs (state/function-urls.json)")?,
        region: opts.config.region.clone(),
        metrics,
        console: crate::api::console::Console::new(mqtt.clone()),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let ipc_socket = ipc_listener.as_ref().map(|ipc| ipc.path.clone());
    let ipc_server = ipc_listener.map(|IpcListener { listener, .. }| {
        let services = Arc::new(
            Services::new(pubsub.clone(), engine.clone(), tokens)
                .with_mqtt(mqtt.clone())
                .with_connection_gauge(ipc_connections),
        );
        tokio::spawn(ipc::serve(listener, services, stop_rx.clone()))
    });
    let server = tokio::spawn(api::serve(listener, state, stop_rx));
    match crate::layout::write_private(&layout.api_addr_file(), addr.to_string().as_bytes()) {
        Ok(()) => {}
        // A full disk: `lambkin` finds the host where it was if its address is the same.
        Err(e) if e.kind() == std::io::ErrorKind::StorageFull => tracing::warn!(
            error = %e,
            "cannot record the listener's address in {}: the disk is full",
            layout.api_addr_file().display()
        ),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot write {}", layout.api_addr_file().display()))
        }
    }
    tracing::info!(%addr, root = %layout.root().display(), "host ready");
    println!("listening on http://{addr}");
    println!(
        "OpenWhisk API: wsk property set --apihost http://{addr} --auth \"$(cat {})\"",
        crate::openwhisk::auth_file(&layout).display()
    );
    if opts.with_example {
        let root = layout.root().display();
        println!("example function `hello` is ready; invoke it with:");
        println!("  lambkin invoke hello '{{\"name\":\"edge\"}}' --root {root}");
        println!("or with the AWS CLI, which signs with the host's key once pointed at it:");
        println!("  eval \"$(lambkin credentials --root {root})\"");
        println!(
            "  aws lambda invoke --function-name hello --payload '{{\"name\":\"edge\"}}' out.json"
        );
        println!("  (AWS CLI v2: add --cli-binary-format raw-in-base64-out)");
    }

    shutdown.await;
    tracing::info!("stopping");
    let _ = stop_tx.send(true);
    // No new requests over MQTT; those in flight end with the registry.
    drop(mqtt_invoke);
    if let Some(ipc_server) = ipc_server {
        let _ = ipc_server.await;
    }
    engine.shutdown().await;
    tes.shutdown().await;
    registry.shutdown().await;
    openwhisk.shutdown();
    pubsub.shutdown().await;
    if let Some(mqtt) = &mqtt {
        mqtt.shutdown().await;
    }
    let _ = server.await;
    if let Some(socket) = ipc_socket {
        let _ = std::fs::remove_file(socket);
    }
    let _ = std::fs::remove_file(layout.api_addr_file());
    tracing::info!("stopped");
    Ok(())
}

/// The environment every component's steps get (`interface.md`; the IPC variables join it
/// per component). `credentials_uri` is the token exchange service's.
fn component_env(
    config: &HostConfig,
    credentials_uri: &str,
) -> std::collections::BTreeMap<String, String> {
    [
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            credentials_uri.to_owned(),
        ),
        ("AWS_REGION", config.region.clone()),
        ("AWS_DEFAULT_REGION", config.region.clone()),
        ("AWS_IOT_THING_NAME", config.thing_name.clone()),
        ("GGC_VERSION", builtin::VERSION.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// A fresh token (the CLI's, `/metrics`'), readable only by the host's user; on a full disk,
/// the one the last start wrote.
fn write_token(path: &std::path::Path, whose: &str) -> anyhow::Result<String> {
    let token = crate::secret::hex(32);
    match crate::layout::write_private(path, token.as_bytes()) {
        Ok(()) => Ok(token),
        Err(e) if e.kind() == std::io::ErrorKind::StorageFull => {
            let kept = std::fs::read_to_string(path)
                .ok()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .with_context(|| format!("cannot write {}: {e}", path.display()))?;
            tracing::warn!(error = %e, "the disk is full: {whose} token stays the last one");
            Ok(kept)
        }
        Err(e) => Err(e).with_context(|| format!("cannot write {}", path.display())),
    }
}

/// `/metrics`' bearer token: made at the first start and kept, so a Prometheus server that
/// holds a copy of the file keeps scraping across restarts. Delete the file to have a new one
/// made.
fn metrics_token(layout: &Layout) -> anyhow::Result<String> {
    let path = layout.metrics_token_file();
    let kept = std::fs::read_to_string(&path)
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    match kept {
        Some(token) => Ok(token),
        None => write_token(&path, "/metrics'"),
    }
}

const EXAMPLE_HANDLER: &str = r#"import json


def handler(event, context):
    name = event.get("name", "world") if isinstance(event, dict) else "world"
    print(f"saying hello to {name}")
    return {"message": f"Hello, {name}!", "function": context.function_name}
"#;

async fn define_example(registry: &Registry) -> anyhow::Result<()> {
    let name = FunctionName::parse("hello")?;
    if registry.lookup(&name).is_some() {
        return Ok(());
    }
    let zip = example_zip().context("cannot build the example function")?;
    let request = CreateFunctionRequest {
        function_name: name,
        runtime: Some("python3.12".into()),
        role: None,
        handler: Some("app.handler".into()),
        code: FunctionCode {
            zip_file: Some(base64::engine::general_purpose::STANDARD.encode(zip)),
            ..FunctionCode::default()
        },
        description: Some("Lambkin's example function".into()),
        timeout: None,
        timeout_ms: None,
        memory_size: None,
        environment: None,
        greengrass: None,
        layers: None,
        package_type: None,
        publish: None,
        tags: None,
        architectures: None,
        tracing_config: None,
        logging_config: None,
        ephemeral_storage: None,
    };
    registry
        .create(request)
        .await
        .context("cannot define the example function")?;
    Ok(())
}

fn example_zip() -> zip::result::ZipResult<Vec<u8>> {
    use std::io::Write;
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut w = zip::ZipWriter::new(&mut buf);
    w.start_file(
        "app.py",
        zip::write::SimpleFileOptions::default().unix_permissions(0o644),
    )?;
    w.write_all(EXAMPLE_HANDLER.as_bytes())?;
    w.finish()?;
    Ok(buf.into_inner())
}
