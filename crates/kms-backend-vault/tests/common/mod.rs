//! Shared helpers of the Vault backend's tests: the OpenBao server `cargo xtask test` started
//! (`KMS_TEST_VAULT_ADDR`, `KMS_TEST_VAULT_TOKEN`, `KMS_TEST_BAO_BIN`), private servers for
//! fault tests, and direct Transit/KV calls for interop checks.
//!
//! Without those variables the tests fail with instructions: the Vault suite is never skipped.

#![allow(dead_code, unreachable_pub)]

pub mod pki;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use kms_types::config::{KmsConfig, VaultAuthMethod, VaultConfig};

/// The shared test server's address and root token.
pub fn shared() -> (String, String) {
    let hint = "the Vault tests need a real OpenBao server: run `cargo xtask test`, or start one with \
                `cargo xtask openbao` and export the variables it prints";
    let addr =
        std::env::var("KMS_TEST_VAULT_ADDR").unwrap_or_else(|_| panic!("KMS_TEST_VAULT_ADDR is not set; {hint}"));
    let token =
        std::env::var("KMS_TEST_VAULT_TOKEN").unwrap_or_else(|_| panic!("KMS_TEST_VAULT_TOKEN is not set; {hint}"));
    (addr, token)
}

/// The `bao` binary.
pub fn bao_bin() -> PathBuf {
    std::env::var_os("KMS_TEST_BAO_BIN")
        .map(PathBuf::from)
        .expect("KMS_TEST_BAO_BIN is not set; run the tests through `cargo xtask test`")
}

/// Runs the `bao` CLI against `addr` with `token`; panics on failure; returns stdout.
pub fn bao(addr: &str, token: &str, args: &[&str]) -> String {
    let out = Command::new(bao_bin())
        .args(args)
        .env("BAO_ADDR", addr)
        .env("BAO_TOKEN", token)
        .env_remove("BAO_NAMESPACE")
        .stdin(Stdio::null())
        .output()
        .expect("run bao");
    assert!(out.status.success(), "bao {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `bao` with stdin from `input`.
pub fn bao_stdin(addr: &str, token: &str, args: &[&str], input: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(bao_bin())
        .args(args)
        .env("BAO_ADDR", addr)
        .env("BAO_TOKEN", token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bao");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "bao {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A random suffix so that tests sharing a server never see each other's keys.
pub fn unique(prefix: &str) -> String {
    let mut b = [0u8; 6];
    kms_crypto::rand::fill(&mut b).unwrap();
    format!("{prefix}-{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>())
}

/// A configuration for `addr` with `auth`, its own KV prefix, a 10 s timeout.
pub fn config(addr: &str, auth: VaultAuthMethod) -> KmsConfig {
    let mut config = KmsConfig::vault(VaultConfig {
        address: addr.into(),
        auth_method: auth,
        namespace: None,
        mount_path: "transit".into(),
        kv_mount: "secret".into(),
        key_path_prefix: format!("kms-tests/{}", unique("run")),
        tls: None,
    });
    config.timeout = Duration::from_secs(10);
    config
}

/// A configuration against the shared server with its root token.
pub fn root_config() -> KmsConfig {
    let (addr, token) = shared();
    config(&addr, VaultAuthMethod::Token { token: token.into() })
}

/// The KV prefix of a configuration.
pub fn prefix(config: &KmsConfig) -> String {
    match &config.backend_config {
        kms_types::config::BackendConfig::Vault(v) => v.key_path_prefix.clone(),
        _ => unreachable!(),
    }
}

/// A direct Vault HTTP call with the root token: `(status, json body)`.
pub async fn direct(
    addr: &str,
    token: &str,
    method: &str,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(
            rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        )
        .build()
        .unwrap();
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = client.request(method, format!("{addr}/v1/{path}")).header("X-Vault-Token", token);
    if !body.is_null() {
        req = req.body(serde_json::to_vec(&body).unwrap()).header("Content-Type", "application/json");
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    let json = if bytes.is_empty() { serde_json::Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
    (status, json)
}

/// Base64 of bytes (Transit's wire encoding).
pub fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// The minimal policy, taken verbatim from `docs/vault.md` (the block between the
/// `<!-- minimal-policy -->` markers), with the default mounts and `prefix` substituted.
pub fn minimal_policy(prefix: &str) -> String {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/vault.md"))
        .expect("docs/vault.md");
    let start = doc.find("<!-- minimal-policy -->").expect("policy start marker");
    let end = doc.find("<!-- /minimal-policy -->").expect("policy end marker");
    let block = &doc[start..end];
    let hcl = block.split("```hcl").nth(1).and_then(|b| b.split("```").next()).expect("hcl block");
    hcl.replace("<transit>", "transit").replace("<kv>", "secret").replace("<prefix>", prefix)
}

/// Creates a token holding only `policy_hcl` (no default policy).
pub fn token_with_policy(addr: &str, root: &str, policy_hcl: &str) -> String {
    let name = unique("kms-policy");
    bao_stdin(addr, root, &["policy", "write", &name, "-"], policy_hcl);
    bao(addr, root, &["token", "create", "-no-default-policy", "-policy", &name, "-ttl=1h", "-field=token"])
        .trim()
        .to_owned()
}

/// A private OpenBao dev server (for tests that stop, pause or restart it).
pub struct BaoServer {
    pub addr: String,
    pub token: String,
    pub port: u16,
    extra_config: Option<PathBuf>,
    child: Option<Child>,
}

impl Drop for BaoServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl BaoServer {
    /// Starts a dev server with Transit and AppRole mounted.
    pub fn start() -> Self {
        let port = free_port();
        let mut server = Self {
            addr: format!("http://127.0.0.1:{port}"),
            token: unique("root"),
            port,
            extra_config: None,
            child: None,
        };
        server.spawn();
        server.provision();
        server
    }

    /// Starts a dev server with an extra listener described by `config_hcl` (e.g. TLS);
    /// `addr` then points at the dev listener (plain HTTP).
    pub fn start_with_config(config_hcl: &str, dir: &Path) -> Self {
        let path = dir.join("extra.hcl");
        std::fs::write(&path, config_hcl).unwrap();
        let port = free_port();
        let mut server = Self {
            addr: format!("http://127.0.0.1:{port}"),
            token: unique("root"),
            port,
            extra_config: Some(path),
            child: None,
        };
        server.spawn();
        server.provision();
        server
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(bao_bin());
        cmd.args(["server", "-dev", "-dev-no-store-token"])
            .arg(format!("-dev-root-token-id={}", self.token))
            .arg(format!("-dev-listen-address=127.0.0.1:{}", self.port))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(extra) = &self.extra_config {
            cmd.arg(format!("-config={}", extra.display()));
        }
        self.child = Some(cmd.spawn().expect("start bao server"));
        let started = Instant::now();
        loop {
            let ok = Command::new(bao_bin())
                .args(["status"])
                .env("BAO_ADDR", &self.addr)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "private bao server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Mounts Transit and AppRole (a dev server starts empty after every restart).
    pub fn provision(&self) {
        bao(&self.addr, &self.token, &["secrets", "enable", "transit"]);
        bao(&self.addr, &self.token, &["auth", "enable", "approle"]);
    }

    /// Runs `bao` against this server with its root token.
    pub fn bao(&self, args: &[&str]) -> String {
        bao(&self.addr, &self.token, args)
    }

    /// Kills the server.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same root token (a dev server keeps no
    /// data across restarts: mounts are provisioned again, keys are gone).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
        self.provision();
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let ok = Command::new("kill").args([sig, &pid]).status().unwrap().success();
        assert!(ok, "kill {sig} {pid}");
    }

    /// Freezes the process (connections accepted by the kernel, never answered).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Unfreezes it.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// An AppRole whose tokens live `ttl` (renewable up to `max_ttl`) with `policies`;
    /// returns `(role_id, secret_id)`.
    pub fn approle(&self, name: &str, ttl: &str, max_ttl: &str, policies: &str) -> (String, String) {
        self.bao(&[
            "write",
            &format!("auth/approle/role/{name}"),
            &format!("token_ttl={ttl}"),
            &format!("token_max_ttl={max_ttl}"),
            &format!("token_policies={policies}"),
        ]);
        let role_id = self.bao(&["read", "-field=role_id", &format!("auth/approle/role/{name}/role-id")]);
        let secret_id = self.bao(&["write", "-f", "-field=secret_id", &format!("auth/approle/role/{name}/secret-id")]);
        (role_id.trim().to_owned(), secret_id.trim().to_owned())
    }
}
