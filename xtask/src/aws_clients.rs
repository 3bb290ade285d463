//! The real AWS clients against a real `kms serve`: boto3, the AWS CLI (v1, from PyPI) and the
//! AWS Encryption SDK, installed into `.tools/python` by [`pytools`](crate::pytools), run by
//! `xtask/aws/clients.py` against a server started here on a free loopback port, with a fresh
//! data folder, and always stopped. The script runs twice: on the local backend (the server's
//! default), then on the Vault backend, against an OpenBao dev server started here too
//! ([`OpenBao`]) and stopped after it.
//!
//! The server's first start writes `<data_dir>/aws-credentials` for the bootstrap admin: the
//! clients find it through `AWS_SHARED_CREDENTIALS_FILE` and the server through
//! `AWS_ENDPOINT_URL_KMS`, without client code, as a user would configure them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::openbao::OpenBao;
use crate::pytools::{Package, PythonTools};

/// What the client tests import.
pub(crate) const AWS_CLIENTS: &[Package] = &[
    Package { requirement: "boto3>=1.34", module: "boto3" },
    Package { requirement: "awscli>=1.32", module: "awscli" },
    Package { requirement: "aws-encryption-sdk>=4,<5", module: "aws_encryption_sdk" },
    // The BYOK check wraps its material with it (RSAES-OAEP-SHA-256), independently of kms.
    Package { requirement: "cryptography>=42", module: "cryptography" },
];

/// A `kms serve` child process, killed (and its data folder removed) on drop.
pub(crate) struct KmsServer {
    child: Child,
    pub(crate) data_dir: PathBuf,
    pub(crate) endpoint: String,
}

impl Drop for KmsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
        let _ = std::fs::remove_file(self.data_dir.with_extension("toml"));
    }
}

/// The backend `kms serve` runs on for one pass of the client script.
pub(crate) enum Backend<'a> {
    /// The default: the local backend in the data folder.
    Local,
    /// The Vault backend on this OpenBao dev server (root token, its own KV prefix).
    Vault(&'a OpenBao),
}

impl Backend<'_> {
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Vault(_) => "openbao",
        }
    }
}

/// The `kms serve --config` file of a server on the Vault backend of `bao`.
fn vault_config(bao: &OpenBao) -> Result<String, String> {
    let (addr, token) = (bao.addr(), bao.token());
    Ok(format!(
        "[kms]\nbackend_type = \"vault\"\naddress = \"{addr}\"\nkey_path_prefix = \"kms-aws-clients/{}\"\n\
         auth_method = {{ type = \"token\", token = \"{token}\" }}\n",
        std::process::id()
    ))
}

impl KmsServer {
    /// Starts `kms serve` on a free port, on the backend `backend` says, and waits until it
    /// listens.
    pub(crate) fn start(kms: &Path, root: &Path, backend: &Backend<'_>) -> Result<Self, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let label = backend.label();
        let data_dir = root.join("target").join("aws-clients").join(format!("data-{}-{label}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        std::fs::create_dir_all(data_dir.parent().expect("a parent")).map_err(|e| format!("{e}"))?;
        let mut command = Command::new(kms);
        command.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"]).arg(&data_dir);
        if let Backend::Vault(bao) = backend {
            // The config file holds the dev server's root token: private, in the data folder's
            // sibling, removed with it.
            let config = data_dir.with_extension("toml");
            let _ = std::fs::remove_file(&config);
            crate::ha::write_private(&config, vault_config(bao)?.as_bytes())?;
            command.arg("--config").arg(&config);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", kms.display()))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let server = Self { child, data_dir, endpoint: format!("http://127.0.0.1:{port}") };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("kms serve: {line}");
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) if line.contains("listening on") => return Ok(server),
                Ok(_) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        Err("kms serve did not start listening within 30 s".into())
    }
}

/// Builds `kms`, and runs the client tests against it on the local backend, then on OpenBao.
/// Returns a directory holding an `aws` command (the AWS CLI installed here), for the `PATH`
/// of later tests (the README's walk-through runs `aws kms ...`).
pub(crate) fn run(root: &Path) -> Result<PathBuf, String> {
    let tools = PythonTools::ensure(root, AWS_CLIENTS)?;
    let shims = tools.shim("aws", "awscli")?;
    crate::cargo(&["build", "-p", "kms-cli"])?;
    let kms = root.join("target").join("debug").join("kms");
    run_clients(&tools, &kms, root, &Backend::Local)?;
    let bao = crate::openbao::start(root)?;
    if let Some(log) = bao.log() {
        eprintln!("xtask: OpenBao dev server up for the clients (log: {})", log.display());
    }
    let result = run_clients(&tools, &kms, root, &Backend::Vault(&bao));
    drop(bao);
    result.map(|()| shims)
}

/// One pass of `xtask/aws/clients.py` against a fresh `kms serve` on `backend`.
fn run_clients(tools: &PythonTools, kms: &Path, root: &Path, backend: &Backend<'_>) -> Result<(), String> {
    let server = KmsServer::start(kms, root, backend)?;
    eprintln!("xtask: kms serve up at {} on the {} backend", server.endpoint, backend.label());
    let script = root.join("xtask").join("aws").join("clients.py");
    eprintln!("$ python3 {}", script.display());
    let status = tools
        .command()
        .arg(&script)
        .env("AWS_SHARED_CREDENTIALS_FILE", server.data_dir.join("aws-credentials"))
        .env("AWS_CONFIG_FILE", server.data_dir.join("no-aws-config"))
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL_KMS", &server.endpoint)
        .env("KMS_BACKEND", backend.label())
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .status()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    drop(server);
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed on the {} backend ({status})", script.display(), backend.label()))
    }
}
