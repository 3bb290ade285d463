//! TLS to Vault: rustls on `ring` with the CA bundle, client certificate and `skip_verify`
//! options of [`TlsConfig`].

use std::sync::Arc;

use kms_types::config::TlsConfig;
use kms_types::error::KmsError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The rustls client configuration for `tls` (`None`: system roots, verification on).
pub(crate) fn tls_config(tls: Option<&TlsConfig>) -> Result<rustls::ClientConfig, KmsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| KmsError::configuration("backend_config.tls", e.to_string()))?;
    let default = TlsConfig::default();
    let tls = tls.unwrap_or(&default);
    let builder = if tls.skip_verify {
        // Warned about by `VaultBackend::connect`, every time a backend starts.
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    } else {
        let mut roots = RootCertStore::empty();
        if let Some(path) = &tls.ca_cert_path {
            let field = "backend_config.tls.ca_cert_path";
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| KmsError::configuration(field, format!("cannot read {}: {e}", path.display())))?;
            for cert in certs {
                let cert = cert.map_err(|e| KmsError::configuration(field, format!("bad PEM: {e}")))?;
                roots.add(cert).map_err(|e| KmsError::configuration(field, format!("bad CA certificate: {e}")))?;
            }
            if roots.is_empty() {
                return Err(KmsError::configuration(field, "holds no certificate"));
            }
        } else {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
        builder.with_root_certificates(roots)
    };
    match (&tls.client_cert_path, &tls.client_key_path) {
        (Some(cert_path), Some(key_path)) => {
            let field = "backend_config.tls.client_cert_path";
            let certs = CertificateDer::pem_file_iter(cert_path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| KmsError::configuration(field, format!("cannot read {}: {e}", cert_path.display())))?;
            if certs.is_empty() {
                return Err(KmsError::configuration(field, "holds no certificate"));
            }
            let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
                KmsError::configuration("backend_config.tls.client_key_path", format!("cannot read the key: {e}"))
            })?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| KmsError::configuration(field, format!("unusable client certificate: {e}")))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(KmsError::configuration(
            "backend_config.tls.client_cert_path",
            "client_cert_path and client_key_path must be given together",
        )),
    }
}

/// `skip_verify`: accepts any server certificate but still checks handshake signatures.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_options_are_checked() {
        let mut missing = TlsConfig::default();
        missing.ca_cert_path = Some("/nonexistent/ca.pem".into());
        let err = tls_config(Some(&missing)).unwrap_err();
        assert!(matches!(err, KmsError::Configuration { ref field, .. } if field == "backend_config.tls.ca_cert_path"));
        let mut half = TlsConfig::default();
        half.client_cert_path = Some("/x".into());
        assert!(matches!(tls_config(Some(&half)), Err(KmsError::Configuration { .. })));
        tls_config(None).unwrap();
        let mut skip = TlsConfig::default();
        skip.skip_verify = true;
        tls_config(Some(&skip)).unwrap();
    }
}
