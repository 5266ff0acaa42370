//! How a runtime id becomes a process: `provided*` runs the code's own `bootstrap`; `python3.x`
//! and `nodejs*` run the small runtime clients shipped inside this binary (standard library
//! only), with the interpreter the device has.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use lambkin_proto::lambda::function::Runtime;

use crate::config::LambdaConfig;
use crate::users::RunAs;

const PYTHON_CLIENT: &str = include_str!("../../runtimes/python/bootstrap.py");
const NODE_CLIENT: &str = include_str!("../../runtimes/node/bootstrap.js");

/// The command that starts one instance of a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// `AWS_EXECUTION_ENV` (managed runtimes only; AWS leaves it unset for `provided*`).
    pub execution_env: Option<String>,
    /// `LAMBDA_RUNTIME_DIR`.
    pub runtime_dir: PathBuf,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuntimeError {
    #[error("runtime {runtime} needs {wanted} on this device's PATH that its user can run, and none was found (set [lambda] in the configuration to choose one)")]
    InterpreterMissing { runtime: String, wanted: String },
}

/// The installed runtime clients and the interpreters to run them with.
#[derive(Debug, Clone)]
pub struct Runtimes {
    python_client: PathBuf,
    node_client: PathBuf,
    python: Option<PathBuf>,
    node: Option<PathBuf>,
    /// Interpreters found working, by command name and the user that runs them (probed once
    /// each: a version manager's shim can exist on PATH and still fail to run, and one under
    /// root's home runs for root alone).
    probed: Arc<Mutex<Probed>>,
}

/// What each interpreter command found, for each user id that runs it.
type Probed = HashMap<(String, u32), Option<PathBuf>>;

/// The longest an interpreter's `--version` may take before it counts as not working.
const PROBE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

impl Runtimes {
    /// The first of `names` that runs as `run_as` (`None`: the host's user), each looked for
    /// in the order of the `PATH` functions get: a candidate that user cannot run (say, a
    /// version manager's shim under root's home, closed to other users) is passed over for
    /// the next one on `PATH`, as a shell would. The probe runs without blocking the host's
    /// thread (a version manager's shim can take a good fraction of a second).
    async fn working_interpreter(&self, names: &[&str], run_as: Option<&RunAs>) -> Option<PathBuf> {
        let uid = run_as.map_or_else(|| nix::unistd::geteuid().as_raw(), |r| r.uid);
        for name in names {
            let key = ((*name).to_owned(), uid);
            let known = self
                .probed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&key)
                .cloned();
            let found = match known {
                Some(found) => found,
                None => {
                    let mut found = None;
                    for candidate in candidates_in_path(name) {
                        if runs(&candidate, run_as).await {
                            found = Some(candidate);
                            break;
                        }
                    }
                    self.probed
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(key, found.clone());
                    found
                }
            };
            if found.is_some() {
                return found;
            }
        }
        None
    }

    /// Writes the shipped runtime clients under `dir` (rewritten only when they changed).
    pub fn install(dir: &Path, config: &LambdaConfig) -> std::io::Result<Self> {
        let python_client = write_if_changed(&dir.join("python"), "bootstrap.py", PYTHON_CLIENT)?;
        let node_client = write_if_changed(&dir.join("node"), "bootstrap.js", NODE_CLIENT)?;
        Ok(Self {
            python_client,
            node_client,
            python: config.python.clone(),
            node: config.node.clone(),
            probed: Arc::default(),
        })
    }

    /// How to start `runtime`'s instances, which run as `run_as` (`None`: the host's user).
    pub async fn launch(
        &self,
        runtime: &Runtime,
        code_dir: &Path,
        run_as: Option<&RunAs>,
    ) -> Result<Launch, RuntimeError> {
        match runtime {
            Runtime::Provided(_) => Ok(Launch {
                program: code_dir.join("bootstrap"),
                args: Vec::new(),
                execution_env: None,
                runtime_dir: code_dir.to_owned(),
            }),
            Runtime::Python { minor } => {
                let versioned = format!("python3.{minor}");
                let found = match &self.python {
                    Some(p) => Some(p.clone()),
                    None => {
                        self.working_interpreter(&[&versioned, "python3"], run_as)
                            .await
                    }
                };
                let program = found.ok_or_else(|| RuntimeError::InterpreterMissing {
                    runtime: runtime.id(),
                    wanted: format!("{versioned} or python3"),
                })?;
                Ok(Launch {
                    program,
                    args: vec!["-u".into(), self.python_client.clone().into()],
                    execution_env: Some(format!("AWS_Lambda_{}", runtime.id())),
                    runtime_dir: parent(&self.python_client),
                })
            }
            Runtime::Node { .. } => {
                let found = match &self.node {
                    Some(p) => Some(p.clone()),
                    None => self.working_interpreter(&["node"], run_as).await,
                };
                let program = found.ok_or_else(|| RuntimeError::InterpreterMissing {
                    runtime: runtime.id(),
                    wanted: "node".into(),
                })?;
                Ok(Launch {
                    program,
                    args: vec![self.node_client.clone().into()],
                    execution_env: Some(format!("AWS_Lambda_{}", runtime.id())),
                    runtime_dir: parent(&self.node_client),
                })
            }
        }
    }
}

fn parent(p: &Path) -> PathBuf {
    p.parent().map(Path::to_owned).unwrap_or_default()
}

/// Writes `dir/file` unless it holds `content` already. Whatever the host's umask, the client
/// is readable by every user a function may run as (0644 in a 0755 directory) and writable by
/// none of them.
fn write_if_changed(dir: &Path, file: &str, content: &str) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    let path = dir.join(file);
    if std::fs::read_to_string(&path).ok().as_deref() != Some(content) {
        let staging = dir.join(format!(".{file}.new"));
        std::fs::write(&staging, content)?;
        std::fs::rename(&staging, &path)?;
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
    Ok(path)
}

/// The executable files named `program` in the directories of the `PATH` functions get, in
/// order.
fn candidates_in_path(program: &str) -> Vec<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(crate::child_env::path())
        .map(|dir| dir.join(program))
        .filter(|candidate| {
            std::fs::metadata(candidate)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
        .collect()
}

/// Whether `interpreter --version` succeeds as `run_as`, in the environment functions start
/// from.
async fn runs(interpreter: &Path, run_as: Option<&RunAs>) -> bool {
    let mut probe = std::process::Command::new(interpreter);
    probe
        .arg("--version")
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    crate::child_env::start_empty(&mut probe);
    let prepared = crate::child::prepare(
        &mut probe,
        crate::child::Setup {
            own_group: false,
            user: run_as.map_or(crate::child::User::Unchanged, crate::child::User::Become),
            ..crate::child::Setup::default()
        },
    );
    if prepared.is_err() {
        return false;
    }
    let mut probe = tokio::process::Command::from(probe);
    probe.kill_on_drop(true);
    matches!(
        tokio::time::timeout(PROBE_PATIENCE, probe.status()).await,
        Ok(Ok(status)) if status.success()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn python_maps_to_an_interpreter_and_the_shipped_client() {
        let tmp = tempfile::tempdir().unwrap();
        let runtimes = Runtimes::install(tmp.path(), &LambdaConfig::default()).unwrap();
        let launch = runtimes
            .launch(&Runtime::Python { minor: 8 }, Path::new("/code"), None)
            .await
            .unwrap();
        assert!(launch.program.to_string_lossy().contains("python3"));
        assert_eq!(
            launch.execution_env.as_deref(),
            Some("AWS_Lambda_python3.8")
        );
        assert!(tmp.path().join("python/bootstrap.py").is_file());
        let provided = runtimes
            .launch(
                &Runtime::Provided("provided".into()),
                Path::new("/code"),
                None,
            )
            .await
            .unwrap();
        assert_eq!(provided.program, Path::new("/code/bootstrap"));
        assert_eq!(provided.execution_env, None);
    }

    #[test]
    fn path_lookup_finds_executables_only() {
        assert!(!candidates_in_path("sh").is_empty());
        assert!(candidates_in_path("surely-not-an-interpreter-here").is_empty());
    }
}
