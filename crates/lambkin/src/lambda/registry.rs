//! The functions of this host: defined through the management API, persisted in the store with
//! their code unpacked under `ROOT/functions/NAME/HASH/`, each run by a function actor.
//! Management writes are serialised; invocations only take a read lock to find the handle.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use lambkin_proto::lambda::function::{
    FunctionConfig, FunctionError, FunctionName, GreengrassSettings, Runtime,
};
use lambkin_proto::lambda::invoke::LATEST;
use lambkin_proto::lambda::management::{
    CreateFunctionRequest, Environment, FunctionConfiguration, UpdateFunctionCodeRequest,
    UpdateFunctionConfigurationRequest,
};

use super::code::{check_entry_point, CodeError, CodeZip};
use super::function::FunctionHandle;
use super::invocation::{Completion, EventSink, Invocation, InvocationAbort, RequestId};
use super::layers::{LayerView, Layers, LayersError};
use super::placement::Placement;
use super::runtimes::{RuntimeError, Runtimes};
use super::spec::{FunctionSpec, StartGate};
use crate::layout::Layout;
use crate::logfile::LogFile;
use crate::metrics::counters::FunctionMetrics;
use crate::store::{FunctionRecord, PendingEvent, Store, StoreError};
use crate::timestamp;

/// What the host contributes to every function.
#[derive(Debug, Clone)]
pub struct HostSettings {
    pub region: String,
    pub account_id: String,
    pub init_timeout: Duration,
    pub shutdown_grace: Duration,
    /// Where the host places instances (one for every function).
    pub placement: Arc<Placement>,
    /// Whom functions made through the API run as (the default user of
    /// `crate::users::Users::for_function`); `None`: the host's own user.
    pub function_user: Option<crate::users::RunAs>,
    /// Whether functions keep counters for `/metrics` (`[metrics] enabled`).
    pub metrics: bool,
    /// The remote targets functions may delegate to (`[remote_targets.NAME]`).
    pub targets: crate::remote::Targets,
}

#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error("function {0} not found")]
    NotFound(String),
    #[error("Function already exist: {0}")]
    AlreadyExists(FunctionName),
    #[error(transparent)]
    Invalid(#[from] FunctionError),
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Code(#[from] CodeError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the function's log: {0}")]
    Log(std::io::Error),
    #[error("function {0} belongs to the Greengrass component of the same name; change it with a deployment")]
    OwnedByComponent(FunctionName),
    #[error("the function name {0} is reserved: logs/lambkin.log is the host's own log; choose another name")]
    Reserved(FunctionName),
    #[error(transparent)]
    Layers(#[from] LayersError),
    #[error("Greengrass.Delegation.Target {target:?} names no remote target of this host (config.toml has {})", if .known.is_empty() { "no [remote_targets.NAME]".to_owned() } else { .known.join(", ") })]
    UnknownTarget { target: String, known: Vec<String> },
}

struct Entry {
    record: FunctionRecord,
    spec: Arc<FunctionSpec>,
    handle: FunctionHandle,
    /// Defined by a Greengrass Lambda component: changed by deployments, not by the API,
    /// and not persisted here (the component's deployment is).
    owned_by_component: bool,
}

#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

struct Inner {
    functions: RwLock<BTreeMap<FunctionName, Entry>>,
    /// Serialises create/update/delete so each sees the previous one's result.
    writes: tokio::sync::Mutex<()>,
    /// Stored `Event` invocations of functions not defined yet at start: a Lambda component's
    /// function is defined by the engine after the registry recovers. They run when it is.
    awaiting: std::sync::Mutex<BTreeMap<String, Vec<PendingEvent>>>,
    store: Store,
    layout: Layout,
    runtimes: Runtimes,
    layers: Layers,
    host: HostSettings,
    /// Takes the outcome of every stored `Event` run again after a restart (set once, before
    /// [`Registry::recover`]).
    event_sink: std::sync::OnceLock<Arc<dyn EventSink>>,
}

impl Registry {
    pub fn new(
        store: Store,
        layout: Layout,
        runtimes: Runtimes,
        layers: Layers,
        host: HostSettings,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                functions: RwLock::new(BTreeMap::new()),
                writes: tokio::sync::Mutex::new(()),
                awaiting: std::sync::Mutex::default(),
                store,
                layout,
                runtimes,
                layers,
                host,
                event_sink: std::sync::OnceLock::new(),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Sets what learns how stored `Event` invocations ended; before [`Registry::recover`],
    /// so that the recovered ones reach it too. A second sink is refused.
    pub fn set_event_sink(&self, sink: Arc<dyn EventSink>) -> Result<(), Arc<dyn EventSink>> {
        self.inner.event_sink.set(sink)
    }

    /// The sink a stored `Event` invocation reports to.
    pub fn event_sink(&self) -> Option<Arc<dyn EventSink>> {
        self.inner.event_sink.get().cloned()
    }

    /// The host's published layers.
    pub fn layers(&self) -> &Layers {
        &self.inner.layers
    }

    pub fn arn(&self, name: &str) -> String {
        format!(
            "arn:aws:lambda:{}:{}:function:{name}",
            self.inner.host.region, self.inner.host.account_id
        )
    }

    /// Starts the functions found in the store and queues their pending `Event` invocations
    /// in the order they were accepted.
    pub async fn recover(
        &self,
        records: Vec<FunctionRecord>,
        events: Vec<PendingEvent>,
        gate: StartGate,
    ) {
        let _guard = self.inner.writes.lock().await;
        for record in records {
            let name = record.name.clone();
            let code_dir = self
                .inner
                .layout
                .function_dir(&name)
                .join(hex_of(&record.code_sha256));
            match self.spec(&record, code_dir, gate.clone()).await {
                Ok(spec) => {
                    let handle = FunctionHandle::spawn(spec.clone());
                    self.write_map().insert(
                        name,
                        Entry {
                            record,
                            spec,
                            handle,
                            owned_by_component: false,
                        },
                    );
                }
                Err(e) => {
                    tracing::error!(function = %name, error = %e, "cannot start stored function")
                }
            }
        }
        self.collect_old_code();
        let mut recovered = 0usize;
        for event in events {
            let handle = FunctionName::parse(&event.function)
                .ok()
                .and_then(|n| self.read_map().get(&n).map(|e| e.handle.clone()));
            let Some(handle) = handle else {
                // Not defined yet (a Lambda component's function comes with the engine), or
                // not any more: kept, stored, until a function of that name is defined.
                self.inner
                    .awaiting
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .entry(event.function.clone())
                    .or_default()
                    .push(event);
                continue;
            };
            recovered += 1;
            self.resubmit(&handle, event).await;
        }
        if recovered > 0 {
            tracing::info!(
                recovered,
                "queued Event invocations accepted before the restart"
            );
        }
    }

    /// Runs a stored event again, as accepted.
    async fn resubmit(&self, handle: &FunctionHandle, event: PendingEvent) {
        handle
            .resubmit(Invocation {
                request_id: RequestId::from_stored(event.request_id),
                payload: event.payload,
                content_type: None,
                client_context: event.client_context,
                trace_id: None,
                want_log_tail: false,
                completion: Completion::Event {
                    seq: event.seq,
                    store: self.inner.store.clone(),
                    sink: self.event_sink(),
                },
            })
            .await;
    }

    /// Says which stored events still wait for their function once the device's components
    /// are up (their component is gone): they stay stored and run if it comes back.
    pub fn report_awaiting(&self) {
        let awaiting = self
            .inner
            .awaiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (function, events) in awaiting.iter() {
            tracing::warn!(
                %function,
                events = events.len(),
                "stored Event invocations wait for a function of this name to be defined again"
            );
        }
    }

    /// Removes code directories no function uses (left by updates and deletes).
    fn collect_old_code(&self) {
        let map = self.read_map();
        let Ok(dirs) = std::fs::read_dir(self.inner.layout.functions_dir()) else {
            return;
        };
        for dir in dirs.flatten() {
            let current = FunctionName::parse(&dir.file_name().to_string_lossy())
                .ok()
                .and_then(|n| map.get(&n).map(|e| e.spec.clone()));
            let Ok(versions) = std::fs::read_dir(dir.path()) else {
                continue;
            };
            for version in versions.flatten() {
                let path = version.path();
                let in_use = match &current {
                    Some(spec) => {
                        spec.code_dir == path || spec.layers.as_ref().is_some_and(|l| l.dir == path)
                    }
                    // A Lambda component's merged layers: its function is defined after this.
                    None => version.file_name().to_string_lossy().starts_with("opt-"),
                };
                if !in_use {
                    let _ = std::fs::remove_dir_all(version.path());
                }
            }
        }
    }

    fn read_map(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<FunctionName, Entry>> {
        self.inner
            .functions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_map(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<FunctionName, Entry>> {
        self.inner
            .functions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The handle and settings an invocation needs.
    pub fn lookup(&self, name: &FunctionName) -> Option<(FunctionHandle, Arc<FunctionSpec>)> {
        self.read_map()
            .get(name)
            .map(|e| (e.handle.clone(), e.spec.clone()))
    }

    /// The spec of a function made through the API: it runs as the default user, which gets
    /// its code (readable and runnable, not writable).
    async fn spec(
        &self,
        record: &FunctionRecord,
        code_dir: PathBuf,
        start_gate: StartGate,
    ) -> Result<Arc<FunctionSpec>, ManageError> {
        let run_as = self.inner.host.function_user.clone();
        let gid = run_as
            .as_ref()
            .map_or_else(|| nix::unistd::getegid().as_raw(), |r| r.gid);
        crate::users::give_code(&code_dir, gid).map_err(|e| ManageError::Code(e.into()))?;
        self.spec_with_env(record, code_dir, BTreeMap::new(), run_as, None, start_gate)
            .await
    }

    /// The spec, with the variables a component's function gets from its component.
    async fn spec_with_env(
        &self,
        record: &FunctionRecord,
        code_dir: PathBuf,
        component_env: BTreeMap<String, String>,
        run_as: Option<crate::users::RunAs>,
        cgroup: Option<crate::cgroup::Cgroup>,
        start_gate: StartGate,
    ) -> Result<Arc<FunctionSpec>, ManageError> {
        let gid = run_as
            .as_ref()
            .map_or_else(|| nix::unistd::getegid().as_raw(), |r| r.gid);
        let layers = self.layer_view(record, gid).await?;
        if let Some(view) = &layers {
            let (code, merged) = (code_dir.clone(), view.dir.clone());
            tokio::task::spawn_blocking(move || super::layers::check_combined_size(&code, &merged))
                .await
                .map_err(|e| CodeError::Io(std::io::Error::other(e.to_string())))??;
        }
        let launch = self
            .inner
            .runtimes
            .launch(&record.config.runtime, &code_dir, run_as.as_ref())
            .await?;
        let launch = exec_wrapper(launch, &record.config, layers.as_ref());
        let extensions = super::extensions::external(layers.as_ref());
        let launch = match &layers {
            Some(view) => super::extensions::launch(launch, &extensions, view),
            None => launch,
        };
        let log = LogFile::open(&self.inner.layout.function_log(&record.name))
            .map_err(ManageError::Log)?;
        Ok(Arc::new(FunctionSpec {
            name: record.name.clone(),
            arn: self.arn(record.name.as_str()).into(),
            config: record.config.clone(),
            code_dir,
            launch,
            log: Arc::new(log),
            region: self.inner.host.region.clone(),
            init_timeout: self.inner.host.init_timeout,
            shutdown_grace: self.inner.host.shutdown_grace,
            host_root: self.inner.layout.root().to_owned(),
            component_env,
            run_as,
            cgroup,
            zygote: Default::default(),
            placement: self.inner.host.placement.clone(),
            layers,
            extensions,
            metrics: self.function_metrics(&record.name),
            delegation: super::delegate::Delegation::resolve(
                &record.config.greengrass.delegation,
                record.name.as_str(),
                &self.inner.host.targets,
            ),
            start_gate,
        }))
    }

    /// The counters of `name`: those its current configuration has, else new ones.
    fn function_metrics(&self, name: &FunctionName) -> Option<Arc<FunctionMetrics>> {
        if !self.inner.host.metrics {
            return None;
        }
        let kept = self
            .read_map()
            .get(name)
            .and_then(|e| e.spec.metrics.clone());
        Some(kept.unwrap_or_default())
    }

    /// Every function with its counters and handle, for a scrape.
    pub fn metrics(&self) -> Vec<(FunctionName, Arc<FunctionMetrics>, FunctionHandle)> {
        self.read_map()
            .iter()
            .filter_map(|(name, e)| {
                let metrics = e.spec.metrics.clone()?;
                Some((name.clone(), metrics, e.handle.clone()))
            })
            .collect()
    }

    /// Refuses a delegation naming a target the host does not have.
    fn check_target(&self, config: &FunctionConfig) -> Result<(), ManageError> {
        let delegation = &config.greengrass.delegation;
        match &delegation.target {
            Some(target)
                if !delegation.is_local() && self.inner.host.targets.get(target).is_none() =>
            {
                Err(ManageError::UnknownTarget {
                    target: target.clone(),
                    known: self
                        .inner
                        .host
                        .targets
                        .names()
                        .into_iter()
                        .map(str::to_owned)
                        .collect(),
                })
            }
            _ => Ok(()),
        }
    }

    /// The versions a function's `Layers` name, as the function records them.
    fn layer_uses(
        &self,
        arns: &[String],
    ) -> Result<Vec<lambkin_proto::lambda::function::LayerUse>, ManageError> {
        Ok(self
            .inner
            .layers
            .resolve(arns)?
            .into_iter()
            .map(|r| r.layer)
            .collect())
    }

    /// The function's layers merged into `ROOT/functions/NAME/opt-…` (made from the published
    /// versions if it is not there yet), readable by `gid`, writable by no one but the host.
    async fn layer_view(
        &self,
        record: &FunctionRecord,
        gid: u32,
    ) -> Result<Option<LayerView>, ManageError> {
        let layers = &record.config.layers;
        if layers.is_empty() {
            return Ok(None);
        }
        let into = self.inner.layout.function_dir(&record.name);
        let target = self.inner.layers.merged(layers, into).await?;
        crate::users::give_code(&target, gid).map_err(|e| ManageError::Code(e.into()))?;
        Ok(Some(LayerView::new(
            target,
            &record.config.greengrass.isolation,
        )))
    }

    fn configuration(&self, record: &FunctionRecord) -> FunctionConfiguration {
        let c = &record.config;
        FunctionConfiguration {
            function_name: record.name.to_string(),
            function_arn: self.arn(record.name.as_str()),
            runtime: c.runtime.id(),
            role: c.role.clone(),
            handler: c.handler.clone(),
            code_size: record.code_size,
            description: c.description.clone(),
            timeout: c.timeout_seconds,
            memory_size: c.memory_size_mb,
            last_modified: record.last_modified.clone(),
            code_sha256: record.code_sha256.clone(),
            version: LATEST.into(),
            environment: Environment {
                variables: c.environment.clone(),
            },
            state: "Active".into(),
            last_update_status: "Successful".into(),
            package_type: "Zip".into(),
            architectures: vec![std::env::consts::ARCH.replace("aarch64", "arm64")],
            layers: c
                .layers
                .iter()
                .map(|l| lambkin_proto::lambda::layer::FunctionLayer {
                    arn: l.arn.clone(),
                    code_size: l.code_size,
                })
                .collect(),
            greengrass: c.greengrass.clone(),
        }
    }

    pub fn get(
        &self,
        name: &FunctionName,
    ) -> Result<(FunctionConfiguration, PathBuf), ManageError> {
        let map = self.read_map();
        let entry = map
            .get(name)
            .ok_or_else(|| ManageError::NotFound(self.arn(name.as_str())))?;
        Ok((
            self.configuration(&entry.record),
            entry.spec.code_dir.clone(),
        ))
    }

    pub fn list(&self) -> Vec<FunctionConfiguration> {
        self.read_map()
            .values()
            .map(|e| self.configuration(&e.record))
            .collect()
    }

    pub async fn create(
        &self,
        req: CreateFunctionRequest,
    ) -> Result<FunctionConfiguration, ManageError> {
        let _guard = self.inner.writes.lock().await;
        let name = req.function_name.clone();
        if crate::layout::is_reserved_name(name.as_str()) {
            return Err(ManageError::Reserved(name));
        }
        if self.read_map().contains_key(&name) {
            return Err(ManageError::AlreadyExists(name));
        }
        if let Some(package_type) = req.package_type.as_deref().filter(|p| *p != "Zip") {
            return Err(ManageError::Unsupported(format!(
                "PackageType {package_type} is not supported on a device; upload a Zip"
            )));
        }
        let zip_file = code_source(
            req.code.zip_file.as_deref(),
            req.code.s3_bucket.is_some() || req.code.image_uri.is_some(),
        )?;
        let runtime = Runtime::parse(req.runtime.as_deref().unwrap_or_default())?;
        let config = FunctionConfig {
            runtime,
            handler: req.handler,
            timeout_seconds: req
                .timeout
                .unwrap_or(FunctionConfig::DEFAULT_TIMEOUT_SECONDS),
            timeout_ms: req.timeout_ms,
            memory_size_mb: req
                .memory_size
                .unwrap_or(FunctionConfig::DEFAULT_MEMORY_SIZE_MB),
            environment: req.environment.map(|e| e.variables).unwrap_or_default(),
            description: req.description.unwrap_or_default(),
            role: req.role.unwrap_or_default(),
            greengrass: {
                let mut settings = GreengrassSettings::default();
                if let Some(patch) = &req.greengrass {
                    patch.apply(&mut settings);
                }
                settings
            },
            layers: self.layer_uses(req.layers.as_deref().unwrap_or_default())?,
        };
        config.validate()?;
        self.check_target(&config)?;
        let zip = CodeZip::from_base64(zip_file)?;
        let record = self.record(name, config, &zip);
        let code_dir = self.unpack(&record, zip).await?;
        let spec = self.spec(&record, code_dir, StartGate::open()).await?;
        self.inner.store.put_function(record.clone()).await?;
        let handle = FunctionHandle::spawn(spec.clone());
        let configuration = self.configuration(&record);
        let name = record.name.clone();
        self.write_map().insert(
            record.name.clone(),
            Entry {
                record,
                spec,
                handle: handle.clone(),
                owned_by_component: false,
            },
        );
        self.run_awaiting(&name, &handle).await;
        Ok(configuration)
    }

    pub async fn update_code(
        &self,
        name: &FunctionName,
        req: UpdateFunctionCodeRequest,
    ) -> Result<FunctionConfiguration, ManageError> {
        let _guard = self.inner.writes.lock().await;
        let config = self.current(name)?.config;
        let zip_file = code_source(
            req.zip_file.as_deref(),
            req.s3_bucket.is_some() || req.image_uri.is_some(),
        )?;
        let zip = CodeZip::from_base64(zip_file)?;
        let record = self.record(name.clone(), config, &zip);
        let code_dir = self.unpack(&record, zip).await?;
        if req.dry_run == Some(true) {
            return Ok(self.configuration(&record));
        }
        self.replace(record, code_dir).await
    }

    pub async fn update_configuration(
        &self,
        name: &FunctionName,
        req: UpdateFunctionConfigurationRequest,
    ) -> Result<FunctionConfiguration, ManageError> {
        let _guard = self.inner.writes.lock().await;
        let mut record = self.current(name)?;
        let (code_dir, old_config) = {
            let map = self.read_map();
            let entry = map
                .get(name)
                .ok_or_else(|| ManageError::NotFound(self.arn(name.as_str())))?;
            (entry.spec.code_dir.clone(), entry.record.config.clone())
        };
        let c = &mut record.config;
        if let Some(runtime) = req.runtime {
            c.runtime = Runtime::parse(&runtime)?;
        }
        if let Some(handler) = req.handler {
            c.handler = Some(handler);
        }
        if let Some(timeout) = req.timeout {
            c.timeout_seconds = timeout;
            c.timeout_ms = req.timeout_ms;
        }
        if let Some(memory) = req.memory_size {
            c.memory_size_mb = memory;
        }
        if let Some(env) = req.environment {
            c.environment = env.variables;
        }
        if let Some(description) = req.description {
            c.description = description;
        }
        if let Some(role) = req.role {
            c.role = role;
        }
        if let Some(patch) = &req.greengrass {
            patch.apply(&mut c.greengrass);
        }
        if let Some(layers) = &req.layers {
            c.layers = self.layer_uses(layers)?;
        }
        c.validate()?;
        self.check_target(c)?;
        if c.runtime != old_config.runtime
            || c.handler != old_config.handler
            || has_exec_wrapper(c) != has_exec_wrapper(&old_config)
        {
            check_entry_point(
                &code_dir,
                &c.runtime,
                c.handler.as_deref(),
                has_exec_wrapper(c),
            )?;
        }
        record.last_modified = timestamp::lambda_last_modified(SystemTime::now());
        self.replace(record, code_dir).await
    }

    pub async fn delete(&self, name: &FunctionName) -> Result<(), ManageError> {
        let _guard = self.inner.writes.lock().await;
        self.current(name)?;
        let entry = self
            .write_map()
            .remove(name)
            .ok_or_else(|| ManageError::NotFound(self.arn(name.as_str())))?;
        entry
            .handle
            .shutdown(InvocationAbort::FunctionRemoved)
            .await;
        self.inner.store.delete_function(name.clone()).await?;
        let _ = std::fs::remove_dir_all(self.inner.layout.function_dir(name));
        Ok(())
    }

    /// Stops every function's instances; pending `Event` invocations stay in the store.
    pub async fn shutdown(&self) {
        let handles: Vec<FunctionHandle> =
            self.read_map().values().map(|e| e.handle.clone()).collect();
        let mut stops = tokio::task::JoinSet::new();
        for handle in handles {
            stops.spawn(async move { handle.shutdown(InvocationAbort::ShuttingDown).await });
        }
        while stops.join_next().await.is_some() {}
    }

    /// The record an API write may change: not one a component owns.
    fn current(&self, name: &FunctionName) -> Result<FunctionRecord, ManageError> {
        let map = self.read_map();
        let entry = map
            .get(name)
            .ok_or_else(|| ManageError::NotFound(self.arn(name.as_str())))?;
        if entry.owned_by_component {
            return Err(ManageError::OwnedByComponent(name.clone()));
        }
        Ok(entry.record.clone())
    }

    /// Defines or replaces the function of a Greengrass Lambda component (not persisted here).
    /// `component_env` is what the component gives its function's processes (IPC token and
    /// socket, device variables): set after the function's own `Environment`, so it wins.
    pub async fn define_for_component(
        &self,
        name: FunctionName,
        config: FunctionConfig,
        code_dir: PathBuf,
        component_env: BTreeMap<String, String>,
        run_as: Option<crate::users::RunAs>,
        cgroup: Option<crate::cgroup::Cgroup>,
    ) -> Result<(), ManageError> {
        let _guard = self.inner.writes.lock().await;
        self.check_target(&config)?;
        check_entry_point(
            &code_dir,
            &config.runtime,
            config.handler.as_deref(),
            has_exec_wrapper(&config),
        )?;
        let existing = self.read_map().get(&name).map(|e| e.owned_by_component);
        if existing == Some(false) {
            return Err(ManageError::AlreadyExists(name));
        }
        let record = FunctionRecord {
            name: name.clone(),
            config,
            code_sha256: String::new(),
            code_size: 0,
            last_modified: timestamp::lambda_last_modified(SystemTime::now()),
        };
        let spec = self
            .spec_with_env(
                &record,
                code_dir,
                component_env,
                run_as,
                cgroup,
                StartGate::open(),
            )
            .await?;
        let old = self.write_map().remove(&name);
        if let Some(old) = old {
            old.handle.shutdown(InvocationAbort::FunctionRemoved).await;
        }
        let handle = FunctionHandle::spawn(spec.clone());
        self.write_map().insert(
            name.clone(),
            Entry {
                record,
                spec,
                handle: handle.clone(),
                owned_by_component: true,
            },
        );
        self.run_awaiting(&name, &handle).await;
        Ok(())
    }

    /// Runs the stored events that waited for `name` to be defined.
    async fn run_awaiting(&self, name: &FunctionName, handle: &FunctionHandle) {
        let waiting = self
            .inner
            .awaiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(name.as_str());
        if let Some(events) = waiting {
            tracing::info!(function = %name, events = events.len(), "running Event invocations accepted before the restart");
            for event in events {
                self.resubmit(handle, event).await;
            }
        }
    }

    /// Removes a component's function, stopping its instances.
    pub async fn remove_for_component(&self, name: &FunctionName) {
        let _guard = self.inner.writes.lock().await;
        let removed = {
            let mut map = self.write_map();
            match map.get(name) {
                Some(e) if e.owned_by_component => map.remove(name),
                _ => None,
            }
        };
        if let Some(entry) = removed {
            entry
                .handle
                .shutdown(InvocationAbort::FunctionRemoved)
                .await;
            // Its merged layers, the only thing a component's function keeps there.
            let _ = std::fs::remove_dir_all(self.inner.layout.function_dir(name));
        }
    }

    fn record(&self, name: FunctionName, config: FunctionConfig, zip: &CodeZip) -> FunctionRecord {
        FunctionRecord {
            name,
            config,
            code_sha256: zip.sha256_base64.clone(),
            code_size: zip.bytes.len() as u64,
            last_modified: timestamp::lambda_last_modified(SystemTime::now()),
        }
    }

    /// Unpacks and checks the code on a blocking thread: a large archive takes a while, and
    /// the host's one async thread keeps serving invocations meanwhile.
    async fn unpack(&self, record: &FunctionRecord, zip: CodeZip) -> Result<PathBuf, ManageError> {
        let into = self.inner.layout.function_dir(&record.name);
        let runtime = record.config.runtime.clone();
        let handler = record.config.handler.clone();
        let wrapped = has_exec_wrapper(&record.config);
        let unpacked = tokio::task::spawn_blocking(move || {
            let dir = zip.unpack_into(&into)?;
            check_entry_point(&dir, &runtime, handler.as_deref(), wrapped)?;
            Ok::<_, crate::lambda::code::CodeError>(dir)
        })
        .await
        .map_err(|e| crate::lambda::code::CodeError::Io(std::io::Error::other(e.to_string())))?;
        Ok(unpacked?)
    }

    /// Persists the new definition, then moves the function's actor to it: new instances run
    /// it, busy ones finish their invocation first.
    async fn replace(
        &self,
        record: FunctionRecord,
        code_dir: PathBuf,
    ) -> Result<FunctionConfiguration, ManageError> {
        let spec = self.spec(&record, code_dir, StartGate::open()).await?;
        self.inner.store.put_function(record.clone()).await?;
        let configuration = self.configuration(&record);
        let handle = {
            let mut map = self.write_map();
            let Some(entry) = map.get_mut(&record.name) else {
                return Err(ManageError::NotFound(self.arn(record.name.as_str())));
            };
            entry.record = record;
            entry.spec = spec.clone();
            entry.handle.clone()
        };
        handle.reconfigure(spec).await;
        Ok(configuration)
    }
}

/// `AWS_LAMBDA_EXEC_WRAPPER`, as Lambda honours it for its managed runtimes: the runtime's
/// command runs as the wrapper's arguments (`WRAPPER PROGRAM ARGS…`). A wrapper under `/opt`
/// is found where the function's layers are. `provided*` runtimes start their own bootstrap
/// and ignore it, as in Lambda.
/// Whether the function names an exec wrapper for its runtime.
fn has_exec_wrapper(config: &FunctionConfig) -> bool {
    config
        .environment
        .get("AWS_LAMBDA_EXEC_WRAPPER")
        .is_some_and(|w| !w.is_empty())
}

fn exec_wrapper(
    launch: super::runtimes::Launch,
    config: &FunctionConfig,
    layers: Option<&LayerView>,
) -> super::runtimes::Launch {
    let wrapper = config
        .environment
        .get("AWS_LAMBDA_EXEC_WRAPPER")
        .filter(|w| !w.is_empty());
    match wrapper {
        Some(wrapper) if launch.execution_env.is_some() => {
            let wrapper = std::path::Path::new(wrapper);
            let program = layers.map_or_else(|| wrapper.to_owned(), |l| l.seen(wrapper));
            let mut args = vec![launch.program.into_os_string()];
            args.extend(launch.args);
            super::runtimes::Launch {
                program,
                args,
                ..launch
            }
        }
        _ => launch,
    }
}

/// The zip to use, or why there is none: code from S3 or an image cannot reach a device.
fn code_source(zip_file: Option<&str>, remote: bool) -> Result<&str, ManageError> {
    match zip_file {
        Some(zip) => Ok(zip),
        None if remote => Err(ManageError::Unsupported(
            "code from S3 or a container image is not supported on a device; upload ZipFile".into(),
        )),
        None => Err(ManageError::Unsupported("Code.ZipFile is required".into())),
    }
}

fn hex_of(sha256_base64: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(sha256_base64)
        .map(|d| d.iter().map(|b| format!("{b:02x}")).collect())
        .unwrap_or_default()
}
