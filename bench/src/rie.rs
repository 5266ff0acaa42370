//! The AWS Lambda Runtime Interface Emulator running the same bootstrap: it starts the runtime
//! itself (with `AWS_LAMBDA_RUNTIME_API` pointing to its own Runtime API) and takes invokes on
//! `POST /2015-03-31/functions/function/invocations`.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::process::Supervised;

pub const INVOKE_PATH: &str = "/2015-03-31/functions/function/invocations";

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running emulator. Fields drop in order: the process stops before its log directory goes.
#[derive(Debug)]
pub struct Rie {
    pub process: Supervised,
    pub addr: SocketAddr,
    _logs: tempfile::TempDir,
}

/// A loopback port the OS says is free now.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot pick a free port")?;
    Ok(listener.local_addr()?.port())
}

impl Rie {
    /// Starts the emulator and waits until its invoke port accepts connections.
    pub fn start(rie: &Path, bootstrap: &Path) -> anyhow::Result<Self> {
        let logs = tempfile::Builder::new()
            .prefix("lambkin-bench-rie-")
            .tempdir()
            .context("cannot create the emulator's log directory")?;
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let runtime_api: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let mut command = Command::new(rie);
        command
            .arg("--runtime-interface-emulator-address")
            .arg(addr.to_string())
            .arg("--runtime-api-address")
            .arg(runtime_api.to_string())
            .arg(bootstrap)
            .current_dir(bootstrap.parent().unwrap_or(Path::new(".")))
            .stdin(Stdio::null())
            .stdout(File::create(logs.path().join("rie.stdout"))?)
            .stderr(File::create(logs.path().join("rie.stderr"))?);
        let mut process = Supervised::spawn("aws-lambda-rie", command)?;
        let deadline = Instant::now() + READY_TIMEOUT;
        while TcpStream::connect(addr).is_err() {
            if let Err(e) = process.check_running() {
                return Err(e.context(stderr_tail(logs.path())));
            }
            if Instant::now() >= deadline {
                bail!(
                    "aws-lambda-rie did not listen on {addr} within {READY_TIMEOUT:?}; {}",
                    stderr_tail(logs.path())
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(Self {
            process,
            addr,
            _logs: logs,
        })
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

fn stderr_tail(dir: &Path) -> String {
    let mut text = std::fs::read_to_string(dir.join("rie.stderr")).unwrap_or_default();
    text.push_str(&std::fs::read_to_string(dir.join("rie.stdout")).unwrap_or_default());
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
    format!("the emulator's output ends with:\n{tail}")
}
