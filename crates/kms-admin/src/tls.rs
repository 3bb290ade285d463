//! TLS for the admin server on rustls (ring provider), with optional client certificates.

use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::ServerTlsConfig;
use crate::setup_error::SetupError;

/// Builds the acceptor: server certificate and key from PEM files; when `client_ca_path` is
/// set, every client must present a certificate chaining to one of those CAs (mTLS).
pub(crate) fn acceptor(config: &ServerTlsConfig) -> Result<TlsAcceptor, SetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&config.cert_path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| SetupError::tls("server.tls.cert_path", Some(&config.cert_path), e))?;
    if certs.is_empty() {
        return Err(SetupError::tls("server.tls.cert_path", Some(&config.cert_path), "no certificate found"));
    }
    let key = PrivateKeyDer::from_pem_file(&config.key_path)
        .map_err(|e| SetupError::tls("server.tls.key_path", Some(&config.key_path), e))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| SetupError::tls("server.tls", None, e))?;
    let builder = match &config.client_ca_path {
        None => builder.with_no_client_auth(),
        Some(ca_path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca_path)
                .map_err(|e| SetupError::tls("server.tls.client_ca_path", Some(ca_path), e))?
            {
                let cert = cert.map_err(|e| SetupError::tls("server.tls.client_ca_path", Some(ca_path), e))?;
                roots.add(cert).map_err(|e| SetupError::tls("server.tls.client_ca_path", Some(ca_path), e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| SetupError::tls("server.tls.client_ca_path", Some(ca_path), e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut server = builder.with_single_cert(certs, key).map_err(|e| SetupError::tls("server.tls", None, e))?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}
