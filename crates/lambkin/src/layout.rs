//! Where everything lives under the root directory (`interface.md`, "Root layout").

use std::path::{Path, PathBuf};

use lambkin_proto::lambda::function::FunctionName;

#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The root is made absolute: processes run with other working directories, and paths
    /// handed to them (runtime clients, artifacts, the IPC socket) must not depend on the
    /// host's.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let root = std::path::absolute(&root).unwrap_or(root);
        Self { root }
    }

    /// `--root`, else `$LAMBKIN_ROOT`, else `./lambkin-root`.
    pub fn resolve(flag: Option<PathBuf>, env_root: Option<PathBuf>) -> Self {
        Self::new(
            flag.or(env_root)
                .unwrap_or_else(|| PathBuf::from("lambkin-root")),
        )
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn config_file(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }
    pub fn database(&self) -> PathBuf {
        self.state_dir().join("lambkin.db")
    }
    pub fn api_addr_file(&self) -> PathBuf {
        self.state_dir().join("api.addr")
    }
    /// The host's own access key (AWS shared-credentials format, profile `lambkin`).
    pub fn credentials_file(&self) -> PathBuf {
        self.state_dir().join("credentials")
    }
    pub fn cli_token_file(&self) -> PathBuf {
        self.state_dir().join("cli.token")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn host_log(&self) -> PathBuf {
        self.logs_dir().join("lambkin.log")
    }
    pub fn function_log(&self, name: &FunctionName) -> PathBuf {
        self.logs_dir().join(format!("{name}.log"))
    }
    /// Unzipped code of Lambda functions defined through the API, one directory per code hash.
    pub fn functions_dir(&self) -> PathBuf {
        self.root.join("functions")
    }
    pub fn function_dir(&self, name: &FunctionName) -> PathBuf {
        self.functions_dir().join(name.as_str())
    }
    /// The runtime clients Lambkin ships, written out at start.
    pub fn runtimes_dir(&self) -> PathBuf {
        self.root.join("runtimes")
    }

    pub fn create_dirs(&self) -> std::io::Result<()> {
        for dir in [
            self.state_dir(),
            self.logs_dir(),
            self.functions_dir(),
            self.runtimes_dir(),
        ] {
            std::fs::create_dir_all(dir)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_is_absolute() {
        let layout = Layout::resolve(None, None);
        assert!(layout.root().is_absolute());
        assert!(layout.root().ends_with("lambkin-root"));
        assert!(Layout::new("a/b").runtimes_dir().is_absolute());
    }
}
