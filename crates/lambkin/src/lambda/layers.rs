//! Lambda layers: published versions unpacked under `ROOT/layers/NAME/VERSION/` (the host's
//! alone), their records in `ROOT/state/layers.json`; and a function's view of its layers, the
//! versions it names unpacked over one another in order into a directory of its own
//! ([`merge`]), which it keeps when a version it uses is deleted, as AWS keeps a function's
//! layers.
//!
//! Versions are numbered as AWS numbers them: 1 for a name's first, then one more for each
//! publish, never reused, even after the versions before are deleted.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use lambkin_proto::lambda::function::{Isolation, LayerUse, Runtime};
use lambkin_proto::lambda::layer::{
    LayerError, LayerFilter, LayerName, LayerVersion, LayerVersionArn, LayerVersionContentOutput,
    LayerVersionNumber, LayerVersionsListItem, LayersListItem, Page, PublishLayerVersionRequest,
};

use super::code::{CodeError, CodeZip};
use crate::layout::Layout;
use crate::timestamp;

#[derive(Debug, thiserror::Error)]
pub enum LayersError {
    #[error(transparent)]
    Invalid(#[from] LayerError),
    /// No such layer version on this host (or in another account or region).
    #[error("layer version not found")]
    NotFound,
    /// A function names a layer version that does not exist (AWS's message).
    #[error("Layer version {0} does not exist.")]
    UnknownVersion(String),
    #[error("{0}")]
    Unsupported(String),
    /// AWS's limit on a function's code and layers together, unzipped.
    #[error("Function code combined with layers exceeds the maximum allowed size of {limit} bytes. The actual size is {actual} bytes.")]
    TooLarge { actual: u64, limit: u64 },
    #[error(transparent)]
    Code(#[from] CodeError),
    #[error("cannot store the layer: {0}")]
    Io(#[from] std::io::Error),
}

/// What is known of one version, persisted.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct VersionRecord {
    description: String,
    created_date: String,
    compatible_runtimes: Vec<String>,
    compatible_architectures: Vec<String>,
    license_info: Option<String>,
    code_sha256: String,
    code_size: u64,
}

/// One name: its versions and the last number given out.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct LayerRecord {
    last_version: LayerVersionNumber,
    versions: BTreeMap<LayerVersionNumber, VersionRecord>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Index {
    layers: BTreeMap<LayerName, LayerRecord>,
}

/// A version a function will use: where its content is, and what the function records.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub content: PathBuf,
    pub layer: LayerUse,
}

/// The host's layers. Writes are serialised; reads take the index's lock briefly.
#[derive(Clone)]
pub struct Layers {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Layers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layers").finish_non_exhaustive()
    }
}

struct Inner {
    layout: Layout,
    region: String,
    account: String,
    index: Mutex<Index>,
    writes: tokio::sync::Mutex<()>,
}

impl Layers {
    /// Reads the index (a missing one is empty) and removes content no record names (a publish
    /// or delete interrupted by a crash).
    pub fn open(layout: Layout, region: String, account: String) -> std::io::Result<Self> {
        crate::layout::create_private_dir(&layout.layers_dir())?;
        let index: Index = match std::fs::read(layout.layers_index()) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", layout.layers_index().display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Index::default(),
            Err(e) => return Err(e),
        };
        if let Ok(names) = std::fs::read_dir(layout.layers_dir()) {
            for name in names.flatten() {
                let record = LayerName::parse(&name.file_name().to_string_lossy())
                    .ok()
                    .and_then(|n| index.layers.get(&n));
                let Ok(versions) = std::fs::read_dir(name.path()) else {
                    continue;
                };
                for version in versions.flatten() {
                    let known = record.is_some_and(|r| {
                        lambkin_proto::lambda::layer::parse_version(
                            &version.file_name().to_string_lossy(),
                        )
                        .is_some_and(|v| r.versions.contains_key(&v))
                    });
                    if !known {
                        let _ = std::fs::remove_dir_all(version.path());
                    }
                }
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                layout,
                region,
                account,
                index: Mutex::new(index),
                writes: tokio::sync::Mutex::new(()),
            }),
        })
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.inner
            .index
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn layer_arn(&self, name: &LayerName) -> String {
        LayerVersionArn::layer_arn(&self.inner.region, &self.inner.account, name)
    }

    /// The ARN of version `version` of this host's layer `name` (published or not).
    pub fn version_arn(&self, name: &LayerName, version: LayerVersionNumber) -> String {
        format!("{}:{version}", self.layer_arn(name))
    }

    fn content_dir(&self, name: &LayerName, version: LayerVersionNumber) -> PathBuf {
        self.inner
            .layout
            .layers_dir()
            .join(name.as_str())
            .join(version.to_string())
    }

    fn describe(
        &self,
        name: &LayerName,
        version: LayerVersionNumber,
        r: &VersionRecord,
    ) -> LayerVersion {
        let layer_arn = self.layer_arn(name);
        LayerVersion {
            content: LayerVersionContentOutput {
                location: format!("file://{}", self.content_dir(name, version).display()),
                code_sha256: r.code_sha256.clone(),
                code_size: r.code_size,
            },
            layer_version_arn: format!("{layer_arn}:{version}"),
            layer_arn,
            description: r.description.clone(),
            created_date: r.created_date.clone(),
            version,
            compatible_runtimes: r.compatible_runtimes.clone(),
            compatible_architectures: r.compatible_architectures.clone(),
            license_info: r.license_info.clone(),
        }
    }

    /// Whether an ARN names this host's account and region (a layer elsewhere is not here).
    fn is_local(&self, arn: &LayerVersionArn) -> bool {
        arn.region == self.inner.region && arn.account == self.inner.account
    }

    /// PublishLayerVersion: unpacks the zip (the same checks as a function's code) under the
    /// next number, then records it.
    pub async fn publish(
        &self,
        name: &LayerName,
        req: PublishLayerVersionRequest,
    ) -> Result<LayerVersion, LayersError> {
        let zip_file = match req.content.zip_file {
            Some(zip) => zip,
            None if req.content.s3_bucket.is_some() => {
                return Err(LayersError::Unsupported(
                    "layer content from S3 is not supported on a device; upload ZipFile".into(),
                ))
            }
            None => {
                return Err(LayersError::Unsupported(
                    "Content.ZipFile is required".into(),
                ))
            }
        };
        let _guard = self.inner.writes.lock().await;
        let zip = CodeZip::from_base64(&zip_file)?;
        let version = self.index().layers.get(name).map_or(0, |r| r.last_version) + 1;
        let target = self.content_dir(name, version);
        let parent = self.inner.layout.layers_dir().join(name.as_str());
        let record = VersionRecord {
            description: req.description.unwrap_or_default(),
            created_date: timestamp::lambda_last_modified(SystemTime::now()),
            compatible_runtimes: req.compatible_runtimes.unwrap_or_default(),
            compatible_architectures: req.compatible_architectures.unwrap_or_default(),
            license_info: req.license_info,
            code_sha256: zip.sha256_base64.clone(),
            code_size: zip.bytes.len() as u64,
        };
        let unpack_target = target.clone();
        tokio::task::spawn_blocking(move || -> Result<(), CodeError> {
            crate::layout::create_private_dir(&parent)?;
            let _ = std::fs::remove_dir_all(&unpack_target);
            let staging = parent.join(format!(".unpack-{}", uuid::Uuid::new_v4().simple()));
            let result = super::code::unpack(&zip.bytes, &staging)
                .and_then(|()| Ok(std::fs::rename(&staging, &unpack_target)?));
            if result.is_err() {
                let _ = std::fs::remove_dir_all(&staging);
                // A name whose first publish failed leaves nothing behind (only an empty
                // directory is removed).
                let _ = std::fs::remove_dir(&parent);
            }
            result
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))??;
        let mut next = self.index().clone();
        let entry = next.layers.entry(name.clone()).or_default();
        entry.last_version = version;
        entry.versions.insert(version, record.clone());
        if let Err(e) = self.persist(&next) {
            let _ = std::fs::remove_dir_all(&target);
            return Err(e.into());
        }
        *self.index() = next;
        Ok(self.describe(name, version, &record))
    }

    fn persist(&self, index: &Index) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(index).map_err(std::io::Error::other)?;
        crate::layout::write_private(&self.inner.layout.layers_index(), &bytes)
    }

    pub fn get(
        &self,
        name: &LayerName,
        version: LayerVersionNumber,
    ) -> Result<LayerVersion, LayersError> {
        let index = self.index();
        let record = index
            .layers
            .get(name)
            .and_then(|l| l.versions.get(&version))
            .ok_or(LayersError::NotFound)?;
        Ok(self.describe(name, version, record))
    }

    pub fn get_by_arn(&self, arn: &str) -> Result<LayerVersion, LayersError> {
        let arn = LayerVersionArn::parse(arn)?;
        if !self.is_local(&arn) {
            return Err(LayersError::NotFound);
        }
        self.get(&arn.name, arn.version)
    }

    /// ListLayers: each layer with a version that matches, and its latest such version, in
    /// name order; one page of them and the next page's marker.
    pub fn list(&self, filter: &LayerFilter, page: &Page) -> (Vec<LayersListItem>, Option<String>) {
        let index = self.index();
        let all = index
            .layers
            .iter()
            .filter_map(|(name, layer)| {
                let latest = layer
                    .versions
                    .iter()
                    .rev()
                    .map(|(v, r)| self.describe(name, *v, r))
                    .find(|v| filter.matches(v))?;
                Some((
                    name.to_string(),
                    LayersListItem {
                        layer_name: name.to_string(),
                        layer_arn: self.layer_arn(name),
                        latest_matching_version: LayerVersionsListItem::from(&latest),
                    },
                ))
            })
            .collect();
        page.take(all)
    }

    /// ListLayerVersions: the versions that match, newest first, as AWS lists them; one page
    /// of them and the next page's marker.
    pub fn list_versions(
        &self,
        name: &LayerName,
        filter: &LayerFilter,
        page: &Page,
    ) -> (Vec<LayerVersionsListItem>, Option<String>) {
        let index = self.index();
        let Some(layer) = index.layers.get(name) else {
            return (Vec::new(), None);
        };
        let all = layer
            .versions
            .iter()
            .rev()
            .map(|(v, r)| self.describe(name, *v, r))
            .filter(|v| filter.matches(v))
            .map(|v| (v.version.to_string(), LayerVersionsListItem::from(&v)))
            .collect();
        page.take(all)
    }

    /// DeleteLayerVersion: the record and the content go; functions keep their own copy of
    /// it. Deleting a version that is not there succeeds, as in AWS.
    pub async fn delete(
        &self,
        name: &LayerName,
        version: LayerVersionNumber,
    ) -> Result<(), LayersError> {
        let _guard = self.inner.writes.lock().await;
        let mut next = self.index().clone();
        let removed = next
            .layers
            .get_mut(name)
            .and_then(|l| l.versions.remove(&version));
        if removed.is_none() {
            return Ok(());
        }
        self.persist(&next)?;
        *self.index() = next;
        let _ = std::fs::remove_dir_all(self.content_dir(name, version));
        Ok(())
    }

    /// The directory of `into` holding `layers` merged in order ([`merge`]), made from the
    /// published versions when it is not there yet: each must still be the content the
    /// function took (a name published again after a delete is another layer). No version is
    /// deleted while it is copied.
    pub async fn merged(&self, layers: &[LayerUse], into: PathBuf) -> Result<PathBuf, LayersError> {
        let name = merged_dir_name(layers);
        let target = into.join(&name);
        if target.is_dir() {
            return Ok(target);
        }
        let _guard = self.inner.writes.lock().await;
        let arns: Vec<String> = layers.iter().map(|l| l.arn.clone()).collect();
        let resolved = self.resolve(&arns)?;
        for (now, then) in resolved.iter().zip(layers) {
            if now.layer.code_sha256 != then.code_sha256 {
                return Err(LayersError::UnknownVersion(then.arn.clone()));
            }
        }
        let sources: Vec<PathBuf> = resolved.into_iter().map(|r| r.content).collect();
        let merged = tokio::task::spawn_blocking(move || merge(&sources, &into, &name))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))??;
        Ok(merged)
    }

    /// The versions a function's `Layers` name, in order, checked as AWS checks them.
    pub fn resolve(&self, arns: &[String]) -> Result<Vec<Resolved>, LayersError> {
        let parsed = lambkin_proto::lambda::layer::parse_function_layers(arns)?;
        let index = self.index();
        parsed
            .into_iter()
            .map(|arn| {
                let record = self
                    .is_local(&arn)
                    .then(|| index.layers.get(&arn.name))
                    .flatten()
                    .and_then(|l| l.versions.get(&arn.version))
                    .ok_or_else(|| LayersError::UnknownVersion(arn.to_arn()))?;
                Ok(Resolved {
                    content: self.content_dir(&arn.name, arn.version),
                    layer: LayerUse {
                        arn: arn.to_arn(),
                        code_size: record.code_size,
                        code_sha256: record.code_sha256.clone(),
                    },
                })
            })
            .collect()
    }
}

/// Where a function's instances find its layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerView {
    /// The merged layers on the host (read-only to the function, owned by the host).
    pub dir: PathBuf,
    /// Whether instances see `dir` at `/opt`: a container binds it there, and so does a
    /// private mount namespace on a root host. Otherwise (a host that is not root cannot make
    /// one) the variables name `dir` itself.
    pub at_opt: bool,
}

/// Where AWS presents a function's layers.
pub const OPT: &str = "/opt";

impl LayerView {
    /// The view of `dir` for a function isolated as `isolation` on this host.
    pub fn new(dir: PathBuf, isolation: &Isolation) -> Self {
        let at_opt = match isolation {
            Isolation::GreengrassContainer(_) => true,
            Isolation::NoContainer => nix::unistd::geteuid().is_root() && Path::new(OPT).is_dir(),
        };
        Self { dir, at_opt }
    }

    /// The directory instances see the layers in.
    pub fn root(&self) -> &Path {
        if self.at_opt {
            Path::new(OPT)
        } else {
            &self.dir
        }
    }

    /// A path under `/opt` as instances see it (a wrapper script, say); others unchanged.
    pub fn seen(&self, path: &Path) -> PathBuf {
        match path.strip_prefix(OPT) {
            Ok(rest) if !self.at_opt => self.dir.join(rest),
            _ => path.to_owned(),
        }
    }

    /// The variables AWS sets for layers (its "layer paths for each runtime"): `PATH` gets
    /// `/opt/bin` after `path`, `LD_LIBRARY_PATH` `/opt/lib`, Python `PYTHONPATH` its
    /// site-packages and `/opt/python`, Node `NODE_PATH` its versioned and plain
    /// `node_modules`.
    pub fn env(&self, runtime: &Runtime, path: &OsStr) -> Vec<(&'static str, OsString)> {
        let at = |rel: &str| self.root().join(rel).into_os_string();
        let join = |parts: Vec<OsString>| -> OsString {
            let mut out = OsString::new();
            for (i, p) in parts.into_iter().enumerate() {
                if i > 0 {
                    out.push(":");
                }
                out.push(p);
            }
            out
        };
        let mut env = vec![
            ("PATH", join(vec![path.to_owned(), at("bin")])),
            ("LD_LIBRARY_PATH", at("lib")),
        ];
        match runtime {
            Runtime::Python { minor } => env.push((
                "PYTHONPATH",
                join(vec![
                    at(&format!("python/lib/python3.{minor}/site-packages")),
                    at("python"),
                ]),
            )),
            Runtime::Node { major } => env.push((
                "NODE_PATH",
                join(vec![
                    at(&format!("nodejs/node{major}/node_modules")),
                    at("nodejs/node_modules"),
                ]),
            )),
            Runtime::Provided(_) => {}
        }
        env
    }
}

/// Checks a function's code and merged layers against AWS's unzipped limit for both together
/// (the one a single archive has, [`super::code::Limits`]). Blocking: it walks both trees.
pub fn check_combined_size(code_dir: &Path, merged: &Path) -> Result<(), LayersError> {
    let limit = super::code::Limits::default().unpacked_bytes;
    let actual = unpacked_size(code_dir)? + unpacked_size(merged)?;
    if actual > limit {
        return Err(LayersError::TooLarge { actual, limit });
    }
    Ok(())
}

/// The bytes of the regular files under `dir` (links not followed).
fn unpacked_size(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            total += unpacked_size(&entry.path())?;
        } else if kind.is_file() {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// The name of the directory holding a function's merged layers: one per list of versions
/// (ARN and content hash, in order), so a configuration that keeps its layers keeps its
/// directory.
pub fn merged_dir_name(layers: &[LayerUse]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for l in layers {
        hasher.update(l.arn.as_bytes());
        hasher.update([0]);
        hasher.update(l.code_sha256.as_bytes());
        hasher.update([0]);
    }
    let digest = hasher.finalize();
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("opt-{hex}")
}

/// Copies each layer's content over the ones before into `into/NAME` (built beside it and
/// renamed into place; an existing one is kept), so a later layer's file wins. Nothing is
/// written through a link: a path whose parent is not a real directory made here gets one,
/// and whatever stood at a path being written is removed first. The sources are the host's
/// own unpacked layers, already checked when published. Blocking.
pub fn merge(sources: &[PathBuf], into: &Path, name: &str) -> Result<PathBuf, CodeError> {
    let target = into.join(name);
    if target.is_dir() {
        return Ok(target);
    }
    std::fs::create_dir_all(into)?;
    let staging = into.join(format!(".merge-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir(&staging)?;
    let result = sources
        .iter()
        .try_for_each(|source| copy_over(source, &staging))
        .and_then(|()| Ok(std::fs::rename(&staging, &target)?));
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result.map(|()| target)
}

/// Copies the tree at `from` into the real directory `to`, replacing what is there.
fn copy_over(from: &Path, to: &Path) -> Result<(), CodeError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let source = entry.path();
        let dest = to.join(entry.file_name());
        let kind = entry.file_type()?;
        let existing = std::fs::symlink_metadata(&dest).ok();
        if kind.is_dir() {
            match existing {
                Some(m) if m.is_dir() => {}
                Some(_) => {
                    std::fs::remove_file(&dest)?;
                    std::fs::create_dir(&dest)?;
                }
                None => std::fs::create_dir(&dest)?,
            }
            copy_over(&source, &dest)?;
            continue;
        }
        match existing {
            Some(m) if m.is_dir() => std::fs::remove_dir_all(&dest)?,
            Some(_) => std::fs::remove_file(&dest)?,
            None => {}
        }
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&source)?, &dest)?;
        } else if kind.is_file() {
            let mode = entry.metadata()?.permissions().mode() & 0o777;
            let mut input = std::fs::File::open(&source)?;
            let mut output = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .mode(0o600)
                .open(&dest)?;
            std::io::copy(&mut input, &mut output)?;
            output.set_permissions(std::fs::Permissions::from_mode(mode | 0o600))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn a_later_layer_wins_and_nothing_is_written_through_a_link() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b, out, outside) = (
            tmp.path().join("a"),
            tmp.path().join("b"),
            tmp.path().join("out"),
            tmp.path().join("outside"),
        );
        std::fs::create_dir_all(&outside).unwrap();
        write(&a.join("python/shared.py"), "A = 'first'\n");
        write(&a.join("python/only_a.py"), "X = 1\n");
        // The first layer's `lib` is a link pointing out; the second has a real `lib/`.
        std::fs::create_dir_all(&a).unwrap();
        std::os::unix::fs::symlink(&outside, a.join("lib")).unwrap();
        write(&b.join("python/shared.py"), "A = 'second'\n");
        write(&b.join("lib/libx.so"), "elf\n");
        let merged = merge(&[a, b], &out, "opt-x").unwrap();
        assert_eq!(
            std::fs::read_to_string(merged.join("python/shared.py")).unwrap(),
            "A = 'second'\n"
        );
        assert!(merged.join("python/only_a.py").is_file());
        assert!(!std::fs::symlink_metadata(merged.join("lib"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(merged.join("lib/libx.so").is_file());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }

    #[test]
    fn a_view_elsewhere_than_opt_names_the_directory_in_every_variable() {
        let view = LayerView {
            dir: PathBuf::from("/r/functions/f/opt-1"),
            at_opt: false,
        };
        let env: BTreeMap<_, _> = view
            .env(&Runtime::Python { minor: 12 }, OsStr::new("/usr/bin:/bin"))
            .into_iter()
            .collect();
        assert_eq!(env["PATH"], "/usr/bin:/bin:/r/functions/f/opt-1/bin");
        assert_eq!(env["LD_LIBRARY_PATH"], "/r/functions/f/opt-1/lib");
        assert_eq!(
            env["PYTHONPATH"],
            "/r/functions/f/opt-1/python/lib/python3.12/site-packages:/r/functions/f/opt-1/python"
        );
        assert_eq!(
            view.seen(Path::new("/opt/wrapper")),
            Path::new("/r/functions/f/opt-1/wrapper")
        );
        assert_eq!(view.seen(Path::new("/usr/bin/w")), Path::new("/usr/bin/w"));
        let at_opt = LayerView {
            at_opt: true,
            ..view
        };
        let env: BTreeMap<_, _> = at_opt
            .env(&Runtime::Node { major: 22 }, OsStr::new("/bin"))
            .into_iter()
            .collect();
        assert_eq!(
            env["NODE_PATH"],
            "/opt/nodejs/node22/node_modules:/opt/nodejs/node_modules"
        );
        assert_eq!(
            at_opt.seen(Path::new("/opt/wrapper")),
            Path::new("/opt/wrapper")
        );
    }

    #[test]
    fn code_and_layers_together_stay_within_the_unzipped_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let (code, merged) = (tmp.path().join("code"), tmp.path().join("opt"));
        write(&code.join("app.py"), "x");
        write(&merged.join("python/big.bin"), "");
        std::os::unix::fs::symlink("/usr", merged.join("linked")).unwrap();
        assert!(
            check_combined_size(&code, &merged).is_ok(),
            "links are not followed"
        );
        let limit = super::super::code::Limits::default().unpacked_bytes;
        // A sparse file: its length counts, no disk is used.
        std::fs::File::options()
            .write(true)
            .open(merged.join("python/big.bin"))
            .unwrap()
            .set_len(limit)
            .unwrap();
        let err = check_combined_size(&code, &merged).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("Function code combined with layers exceeds the maximum allowed size of {limit} bytes. The actual size is {} bytes.", limit + 1)
        );
    }

    #[test]
    fn the_merged_directory_is_named_by_versions_and_content() {
        let use_of = |arn: &str, sha: &str| LayerUse {
            arn: arn.into(),
            code_size: 1,
            code_sha256: sha.into(),
        };
        let one = [use_of("a:1", "x"), use_of("b:1", "y")];
        let swapped = [use_of("b:1", "y"), use_of("a:1", "x")];
        assert_ne!(merged_dir_name(&one), merged_dir_name(&swapped));
        assert_eq!(merged_dir_name(&one), merged_dir_name(&one.clone()));
    }
}
