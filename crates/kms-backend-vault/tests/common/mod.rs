//! Shared helpers of the Vault backend's tests: the OpenBao server `cargo xtask test` started
//! (`KMS_TEST_VAULT_ADDR`, `KMS_TEST_VAULT_TOKEN`, `KMS_TEST_BAO_BIN`), private servers for
//! fault tests (the launcher of `kms_testkit::openbao`), and direct Transit/KV calls for
//! interop checks.
//!
//! These tests build only with feature `live-vault` (`cargo xtask test` turns it on); without
//! the variables they then fail with instructions, they never skip.

#![allow(dead_code, unreachable_pub)]

pub mod pki;

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use kms_testkit::openbao::{self, OpenBao};
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

/// The `bao` binary: `KMS_TEST_BAO_BIN`, `bao` on PATH, or the workspace's `.tools/openbao`.
pub fn bao_bin() -> PathBuf {
    openbao::find_bao(&openbao::default_tools_dir())
        .expect("find bao")
        .expect("no `bao`: run the tests through `cargo xtask test`, which installs OpenBao")
}

/// Runs the `bao` CLI against `addr` with `token`; panics on failure; returns stdout.
pub fn bao(addr: &str, token: &str, args: &[&str]) -> String {
    openbao::run_bao(&bao_bin(), addr, token, args, None).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `bao` with stdin from `input`.
pub fn bao_stdin(addr: &str, token: &str, args: &[&str], input: &str) -> String {
    openbao::run_bao(&bao_bin(), addr, token, args, Some(input)).unwrap_or_else(|e| panic!("{e}"))
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

/// A private OpenBao dev server (for tests that stop, pause or restart it): Transit and AppRole
/// mounted, stopped on drop.
pub fn bao_server() -> OpenBao {
    OpenBao::builder(bao_bin()).start().unwrap_or_else(|e| panic!("{e}"))
}

/// A private server with an extra listener described by `config_hcl` (e.g. TLS); its
/// `addr()` is the dev listener (plain HTTP).
pub fn bao_server_with_config(config_hcl: &str, dir: &Path) -> OpenBao {
    let path = dir.join("extra.hcl");
    std::fs::write(&path, config_hcl).unwrap();
    OpenBao::builder(bao_bin()).extra_config(path).start().unwrap_or_else(|e| panic!("{e}"))
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    openbao::free_port().unwrap()
}
