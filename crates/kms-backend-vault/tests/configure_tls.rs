//! TLS to Vault configured through the admin API: `POST /kms/v1/configure` with a `tls`
//! object naming a private CA (made here with rcgen), and with a client certificate for an
//! OpenBao listener that requires one. The same body without them is refused by the TLS
//! handshake, so the options are what makes the connection work.

mod common;

use std::sync::Arc;

use common::pki::{Pki, tls_listeners};
use common::{bao_server_with_config, unique};
use kms_admin::auth::{Grant, IdentityConfig, hash_token};
use kms_admin::config::ServerConfig;
use kms_admin::{App, Server};
use kms_backend_vault::VaultBackendFactory;
use kms_core::backends::BackendRegistry;
use kms_core::service_manager::KmsServiceManager;
use serde_json::{Value, json};

const ADMIN: &str = "admin-token-for-configure-tls";

/// An admin API server over a registry holding only the Vault factory, not yet configured.
async fn admin_server() -> (String, tokio::sync::oneshot::Sender<()>) {
    let mut registry = BackendRegistry::new();
    registry.register(Arc::new(VaultBackendFactory::new()));
    let manager = Arc::new(KmsServiceManager::new(registry));
    let grant = Grant { operations: vec!["*".into()], keys: vec!["*".into()] };
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        identities: vec![IdentityConfig { name: "admin".into(), token_sha256: hash_token(ADMIN), allow: vec![grant] }],
        ..ServerConfig::default()
    };
    let app = Arc::new(App::new(manager, &config, None).unwrap());
    let server = Server::bind(&config, app).await.unwrap();
    let url = format!("http://{}", server.local_addr());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run_until(async move {
        let _ = rx.await;
    }));
    (url, tx)
}

async fn post(url: &str, path: &str, body: Value) -> (u16, Value) {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let client = reqwest::Client::builder().tls_backend_preconfigured(tls).build().unwrap();
    let response = client
        .post(format!("{url}{path}"))
        .bearer_auth(ADMIN)
        .header("Content-Type", "application/json")
        .body(if body.is_null() { String::new() } else { body.to_string() })
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(Value::Null))
}

fn body(address: &str, token: &str, tls: Value) -> Value {
    let mut body = json!({
        "backend_type": "vault",
        "address": address,
        "auth_method": {"type": "token", "token": token},
        "key_path_prefix": format!("kms-tests/{}", unique("configure-tls")),
        "timeout_seconds": 5,
        "retry_attempts": 0,
    });
    if !tls.is_null() {
        body["tls"] = tls;
    }
    body
}

/// Configures, then proves the service works by creating a key and a data key through it.
async fn configure_and_use(url: &str, body: Value) -> Result<(), String> {
    let (status, reply) = post(url, "/kms/v1/reconfigure", body).await;
    if status != 200 {
        return Err(format!("reconfigure: {status} {reply}"));
    }
    let name = unique("tls-key");
    let (status, reply) = post(url, "/kms/v1/keys", json!({"key_name": name})).await;
    if status != 201 {
        return Err(format!("create: {status} {reply}"));
    }
    let (status, reply) = post(url, &format!("/kms/v1/keys/{name}/generate-data-key"), json!({})).await;
    if status != 200 {
        return Err(format!("data key: {status} {reply}"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_and_a_client_certificate_are_configured_through_the_admin_api() {
    let pki = Pki::new();
    let (hcl, tls_port, mtls_port) = tls_listeners(&pki);
    let bao = bao_server_with_config(&hcl, &pki.dir);
    let (https, mtls) = (format!("https://127.0.0.1:{tls_port}"), format!("https://127.0.0.1:{mtls_port}"));
    let (url, stop) = admin_server().await;
    let ca = pki.path("ca.pem").display().to_string();

    // Without the CA the handshake fails: the service does not start.
    let (status, reply) = post(&url, "/kms/v1/configure", body(&https, bao.token(), Value::Null)).await;
    assert_eq!(status, 200, "{reply}");
    let (status, reply) = post(&url, "/kms/v1/start", Value::Null).await;
    assert!(status >= 500, "an untrusted certificate must not be accepted: {status} {reply}");

    // The private CA through POST /kms/v1/configure: starts and serves.
    let (status, reply) = post(&url, "/kms/v1/configure", body(&https, bao.token(), json!({"ca_cert_path": ca}))).await;
    assert_eq!(status, 200, "{reply}");
    let (status, reply) = post(&url, "/kms/v1/start", Value::Null).await;
    assert_eq!(status, 200, "{reply}");
    configure_and_use(&url, body(&https, bao.token(), json!({"ca_cert_path": ca}))).await.unwrap();

    // Client-certificate auth on a listener that requires it: refused without, works with.
    let e = configure_and_use(&url, body(&mtls, bao.token(), json!({"ca_cert_path": ca}))).await.unwrap_err();
    assert!(e.starts_with("reconfigure"), "{e}");
    let with_client = json!({
        "ca_cert_path": ca,
        "client_cert_path": pki.path("client.pem"),
        "client_key_path": pki.path("client-key.pem"),
    });
    configure_and_use(&url, body(&mtls, bao.token(), with_client)).await.unwrap();

    // A bad tls object is refused naming the field, before anything is built.
    let (status, reply) = post(&url, "/kms/v1/reconfigure", body(&https, bao.token(), json!({"ca_path": ca}))).await;
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["error"]["field"], "tls", "{reply}");
    let _ = stop.send(());
}
