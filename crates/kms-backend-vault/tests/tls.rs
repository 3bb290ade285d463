//! TLS options against a loopback OpenBao with certificates made here (rcgen): the CA bundle
//! option, a wrong CA, system roots, `skip_verify`, and mutual TLS.

mod common;

use std::path::PathBuf;

use common::pki::{Pki, tls_listeners};
use common::{bao_server_with_config, config};
use kms_backend_vault::VaultBackend;
use kms_core::backends::KmsBackend;
use kms_types::config::{KmsConfig, TlsConfig, VaultAuthMethod};
use kms_types::error::KmsError;
use kms_types::types::CreateKeyRequest;

fn tls_config(addr: &str, token: &str, tls: TlsConfig) -> KmsConfig {
    let mut c = config(addr, VaultAuthMethod::Token { token: token.into() });
    c.timeout = std::time::Duration::from_secs(5);
    c.retry_attempts = 0;
    if let kms_types::config::BackendConfig::Vault(v) = &mut c.backend_config {
        v.tls = Some(tls);
    }
    c
}

async fn works(config: &KmsConfig) -> kms_types::Result<()> {
    let backend = VaultBackend::connect(config).await?;
    // A node that cannot be reached (here: over TLS) is reported unhealthy, not as an error.
    let healthy = backend.health_check().await?;
    backend.create_key(CreateKeyRequest { key_name: Some(common::unique("tls")), ..Default::default() }).await?;
    assert!(healthy);
    Ok(())
}

fn tls(ca: Option<PathBuf>, client: Option<(PathBuf, PathBuf)>, skip_verify: bool) -> TlsConfig {
    let mut t = TlsConfig::default();
    t.ca_cert_path = ca;
    if let Some((cert, key)) = client {
        t.client_cert_path = Some(cert);
        t.client_key_path = Some(key);
    }
    t.skip_verify = skip_verify;
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tls_option_is_applied() {
    let pki = Pki::new();
    let (hcl, tls_port, mtls_port) = tls_listeners(&pki);
    let server = bao_server_with_config(&hcl, &pki.dir);
    let https = format!("https://127.0.0.1:{tls_port}");
    let mtls = format!("https://127.0.0.1:{mtls_port}");
    let token = server.token().to_owned();

    // The CA bundle option makes the self-signed chain trusted.
    works(&tls_config(&https, &token, tls(Some(pki.path("ca.pem")), None, false))).await.unwrap();
    // System roots, or another CA: refused, as a connection error (never a hang, never success).
    for bad in [tls(None, None, false), tls(Some(pki.path("other-ca.pem")), None, false)] {
        let e = works(&tls_config(&https, &token, bad)).await.unwrap_err();
        assert!(matches!(e, KmsError::Backend { .. }), "{e:?}");
    }
    // skip_verify only when asked.
    works(&tls_config(&https, &token, tls(None, None, true))).await.unwrap();
    // Mutual TLS: the client certificate is presented; without it the server refuses.
    let client = Some((pki.path("client.pem"), pki.path("client-key.pem")));
    works(&tls_config(&mtls, &token, tls(Some(pki.path("ca.pem")), client, false))).await.unwrap();
    let e = works(&tls_config(&mtls, &token, tls(Some(pki.path("ca.pem")), None, false))).await.unwrap_err();
    assert!(matches!(e, KmsError::Backend { .. }), "{e:?}");
    // A CA file without certificates is a configuration error naming the field.
    std::fs::write(pki.path("empty.pem"), "").unwrap();
    let e = VaultBackend::connect(&tls_config(&https, &token, tls(Some(pki.path("empty.pem")), None, false)))
        .await
        .unwrap_err();
    assert!(
        matches!(e, KmsError::Configuration { ref field, .. } if field == "backend_config.tls.ca_cert_path"),
        "{e:?}"
    );
}
