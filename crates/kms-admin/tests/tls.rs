//! TLS on rustls, with client certificates required when a client CA is configured (mTLS).

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::{ADMIN, Options, TestServer};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use kms_admin::config::ServerTlsConfig;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::TcpStream;

struct Pki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    server_pem: String,
    server_key_pem: String,
    client_der: CertificateDer<'static>,
    client_key_der: Vec<u8>,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".into()]).unwrap().signed_by(&server_key, &issuer).unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["client".into()]).unwrap().signed_by(&client_key, &issuer).unwrap();
    Pki {
        ca_pem: ca.pem(),
        ca_der: ca.der().clone(),
        server_pem: server.pem(),
        server_key_pem: server_key.serialize_pem(),
        client_der: client.der().clone(),
        client_key_der: client_key.serialize_der(),
    }
}

async fn get_status(
    addr: std::net::SocketAddr,
    pki: &Pki,
    with_client_cert: bool,
) -> Result<http::StatusCode, Box<dyn std::error::Error + Send + Sync>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone())?;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = if with_client_cert {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.client_key_der.clone()));
        builder.with_client_auth_cert(vec![pki.client_der.clone()], key)?
    } else {
        builder.with_no_client_auth()
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    let tls = connector.connect(ServerName::try_from("localhost")?, tcp).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(tls)).await?;
    let conn = tokio::spawn(conn);
    let req = http::Request::get("/kms/v1/status")
        .header("host", "localhost")
        .header("authorization", format!("Bearer {ADMIN}"))
        .body(Full::new(Bytes::new()))?;
    let resp = match sender.send_request(req).await {
        Ok(resp) => resp,
        // The request only learns that the connection went away; why (a TLS alert, say) is
        // the connection task's error.
        Err(request_err) => {
            return Err(match conn.await {
                Ok(Err(conn_err)) => conn_err.into(),
                _ => request_err.into(),
            });
        }
    };
    let status = resp.status();
    resp.into_body().collect().await?;
    Ok(status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_mutual_tls() {
    let dir = common::temp_dir("tls");
    let pki = pki();
    std::fs::write(dir.join("ca.pem"), &pki.ca_pem).unwrap();
    std::fs::write(dir.join("server.pem"), &pki.server_pem).unwrap();
    std::fs::write(dir.join("server-key.pem"), &pki.server_key_pem).unwrap();

    // Server authentication only.
    let mut options = Options::default();
    options.config.tls = Some(ServerTlsConfig {
        cert_path: dir.join("server.pem"),
        key_path: dir.join("server-key.pem"),
        client_ca_path: None,
    });
    let server = TestServer::with(options).await;
    assert_eq!(get_status(server.addr, &pki, false).await.unwrap(), 200);
    // Plain HTTP to a TLS port gets no HTTP answer.
    let plain = common::Http::new(&server);
    let result = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<Full<Bytes>>();
        client.get(server.url("/health").parse().unwrap()).await
    })
    .await;
    assert!(!matches!(result, Ok(Ok(ref r)) if r.status().is_success()));
    drop(plain);
    server.stop().await;

    // mTLS: a client certificate signed by the configured CA is required.
    let mut options = Options::default();
    options.config.tls = Some(ServerTlsConfig {
        cert_path: dir.join("server.pem"),
        key_path: dir.join("server-key.pem"),
        client_ca_path: Some(dir.join("ca.pem")),
    });
    let server = TestServer::with(options).await;
    assert_eq!(get_status(server.addr, &pki, true).await.unwrap(), 200);
    let err = get_status(server.addr, &pki, false).await.expect_err("served a client without a certificate");
    // The server's TLS alert, from the connection (the request itself is only cancelled).
    let chain: Vec<String> = std::iter::successors(Some(&*err as &(dyn std::error::Error + 'static)), |e| e.source())
        .map(|e| e.to_string())
        .collect();
    assert!(chain.iter().any(|m| m.contains("CertificateRequired")), "{chain:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_files_are_refused_at_start_naming_the_option() {
    let dir = common::temp_dir("tls-bad");
    std::fs::write(dir.join("empty.pem"), "").unwrap();
    let mut config = Options::default().config;
    config.tls = Some(ServerTlsConfig {
        cert_path: dir.join("empty.pem"),
        key_path: dir.join("missing.pem"),
        client_ca_path: None,
    });
    let manager =
        Arc::new(kms_core::service_manager::KmsServiceManager::new(kms_core::backends::BackendRegistry::new()));
    let app = Arc::new(kms_admin::App::new(manager, &config, None).unwrap());
    let err = kms_admin::Server::bind(&config, app).await.unwrap_err();
    assert!(
        matches!(&err, kms_admin::SetupError::Tls { field: "server.tls.cert_path", path: Some(p), .. } if p.ends_with("empty.pem")),
        "{err}"
    );
}
