//! How a runtime id becomes a process: `provided*` runs the code's own `bootstrap`; `python3.x`
//! and `nodejs*` run the small runtime clients shipped inside this binary (standard library
//! only), with the interpreter the device has.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use lambkin_proto::lambda::function::Runtime;

use crate::config::LambdaConfig;

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
    #[error("runtime {runtime} needs {wanted} on this device's PATH, and none was found")]
    InterpreterMissing { runtime: String, wanted: String },
}

/// The installed runtime clients and the interpreters to run them with.
#[derive(Debug, Clone)]
pub struct Runtimes {
    python_client: PathBuf,
    node_client: PathBuf,
    python: Option<PathBuf>,
    node: Option<PathBuf>,
    /// Interpreters found working, by command name (probed once: a version manager's shim
    /// can exist on PATH and still fail to run).
    probed: Arc<Mutex<HashMap<String, Option<PathBuf>>>>,
}

impl Runtimes {
    /// The first of `names` on PATH that runs. The probe runs without blocking the host's
    /// thread (a version manager's shim can take a good fraction of a second).
    async fn working_interpreter(&self, names: &[&str]) -> Option<PathBuf> {
        for name in names {
            let known = self
                .probed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(*name)
                .cloned();
            let found = match known {
                Some(found) => found,
                None => {
                    let found = match find_in_path(name) {
                        Some(path) => {
                            let runs = tokio::process::Command::new(&path)
                                .arg("--version")
                                .stdin(std::process::Stdio::null())
                                .stdout(std::process::Stdio::null())
                                .stderr(std::process::Stdio::null())
                                .status()
                                .await
                                .is_ok_and(|s| s.success());
                            runs.then_some(path)
                        }
                        None => None,
                    };
                    self.probed
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert((*name).to_owned(), found.clone());
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

    pub async fn launch(&self, runtime: &Runtime, code_dir: &Path) -> Result<Launch, RuntimeError> {
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
                    None => self.working_interpreter(&[&versioned, "python3"]).await,
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
                    None => self.working_interpreter(&["node"]).await,
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

fn write_if_changed(dir: &Path, file: &str, content: &str) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(file);
    if std::fs::read_to_string(&path).ok().as_deref() != Some(content) {
        let staging = dir.join(format!(".{file}.new"));
        std::fs::write(&staging, content)?;
        std::fs::rename(&staging, &path)?;
    }
    Ok(path)
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn python_maps_to_an_interpreter_and_the_shipped_client() {
        let tmp = tempfile::tempdir().unwrap();
        let runtimes = Runtimes::install(tmp.path(), &LambdaConfig::default()).unwrap();
        let launch = runtimes
            .launch(&Runtime::Python { minor: 8 }, Path::new("/code"))
            .await
            .unwrap();
        assert!(launch.program.to_string_lossy().contains("python3"));
        assert_eq!(
            launch.execution_env.as_deref(),
            Some("AWS_Lambda_python3.8")
        );
        assert!(tmp.path().join("python/bootstrap.py").is_file());
        let provided = runtimes
            .launch(&Runtime::Provided("provided".into()), Path::new("/code"))
            .await
            .unwrap();
        assert_eq!(provided.program, Path::new("/code/bootstrap"));
        assert_eq!(provided.execution_env, None);
    }

    #[test]
    fn path_lookup_finds_executables_only() {
        assert!(find_in_path("sh").is_some());
        assert_eq!(find_in_path("surely-not-an-interpreter-here"), None);
    }
}
