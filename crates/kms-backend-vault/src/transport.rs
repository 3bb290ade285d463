//! The connection to Vault: one pooled HTTP client (rustls on `ring`, every TLS option
//! applied), `vaultrs` clients sharing it, raw calls for what `vaultrs` lacks, error
//! classification, and retries with backoff and jitter.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kms_types::config::{TlsConfig, VaultConfig};
use kms_types::error::{BoxError, KmsError};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde_json::Value;
use vaultrs::api::EndpointMiddleware;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

/// Transit's body for a ciphertext that does not authenticate (HTTP 400 in OpenBao, 500 in
/// Vault since 1.6): never retried, always [`KmsError::Crypto`].
const AUTH_FAILED: &str = "message authentication failed";

/// Counters of what the transport did, for tests and metrics.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) logins: AtomicU64,
    pub(crate) renewals: AtomicU64,
}

/// A snapshot of the transport's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TransportStats {
    /// HTTP requests sent (every attempt counts).
    pub requests: u64,
    /// Attempts that were retries of a failed attempt.
    pub retries: u64,
    /// Successful AppRole logins.
    pub logins: u64,
    /// Successful token renewals.
    pub renewals: u64,
}

/// Why one call to Vault failed, before it is mapped to a [`KmsError`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// No HTTP response: connection refused or reset, attempt timed out, TLS failure.
    #[error("vault unreachable")]
    Transport(#[source] BoxError),
    /// Vault answered with an error status.
    #[error("vault returned HTTP {code}: {}", errors.join("; "))]
    Status {
        /// HTTP status.
        code: u16,
        /// Vault's `errors` array (messages carry no secrets).
        errors: Vec<String>,
    },
    /// Vault answered 2xx with a body we cannot use.
    #[error("unexpected response from vault: {0}")]
    Decode(String),
}

impl CallError {
    /// Whether the body says the ciphertext did not authenticate.
    pub(crate) fn is_auth_failure(&self) -> bool {
        matches!(self, Self::Status { errors, .. } if errors.iter().any(|e| e.contains(AUTH_FAILED)))
    }

    /// Whether this error names `needle` in Vault's messages.
    pub(crate) fn says(&self, needle: &str) -> bool {
        matches!(self, Self::Status { errors, .. } if errors.iter().any(|e| e.contains(needle)))
    }

    /// The HTTP status, if Vault answered.
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            Self::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Transient: no response, or a 5xx that is not an authentication failure. 4xx,
    /// permission errors and "message authentication failed" are never retried.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            Self::Transport(_) => true,
            Self::Status { code, .. } => *code >= 500 && !self.is_auth_failure(),
            Self::Decode(_) => false,
        }
    }

    /// The generic mapping: 401/403 → `Unauthorized`, transient → retryable `Backend`,
    /// anything else → permanent `Backend`. Callers map the cases they know first.
    pub(crate) fn into_kms(self, what: &str) -> KmsError {
        match self.status() {
            Some(401 | 403) => KmsError::Unauthorized {
                message: format!("vault refused {what} (check the token and its policy)"),
                source: Some(Box::new(self)),
            },
            _ => {
                let retryable = self.is_transient();
                KmsError::backend_with_source(format!("vault: {what} failed"), retryable, self)
            }
        }
    }
}

impl From<ClientError> for CallError {
    fn from(e: ClientError) -> Self {
        use vaultrs::error::ClientError as C;
        match e {
            C::APIError { code, errors } => Self::Status { code, errors },
            C::RestClientError { source } => from_rustify(source),
            C::ResponseEmptyError | C::ResponseDataEmptyError => Self::Decode("empty response".into()),
            C::JsonParseError { source } => Self::Decode(source.to_string()),
            other => Self::Decode(other.to_string()),
        }
    }
}

fn from_rustify(e: rustify::errors::ClientError) -> CallError {
    use rustify::errors::ClientError as R;
    match e {
        R::ServerResponseError { code, content } => {
            let errors = content
                .and_then(|c| serde_json::from_str::<Value>(&c).ok())
                .and_then(|v| serde_json::from_value::<Vec<String>>(v.get("errors")?.clone()).ok())
                .unwrap_or_default();
            CallError::Status { code, errors }
        }
        e @ (R::RequestError { .. } | R::ResponseError { .. }) => CallError::Transport(Box::new(e)),
        other => CallError::Decode(other.to_string()),
    }
}

impl From<reqwest::Error> for CallError {
    fn from(e: reqwest::Error) -> Self {
        if e.is_decode() { Self::Decode(e.to_string()) } else { Self::Transport(Box::new(e)) }
    }
}

/// HTTP methods the raw calls use.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Method {
    Get,
    Post,
    List,
}

/// The pooled connection to one Vault server.
pub(crate) struct Transport {
    http: reqwest::Client,
    address: String,
    namespace: Option<String>,
    retry_attempts: u32,
    pub(crate) counters: Counters,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("address", &self.address)
            .field("namespace", &self.namespace)
            .field("retry_attempts", &self.retry_attempts)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Builds the HTTP client: rustls with the `ring` provider, the configured TLS options,
    /// per-request timeout `timeout`.
    pub(crate) fn new(config: &VaultConfig, timeout: Duration, retry_attempts: u32) -> Result<Self, KmsError> {
        let tls = tls_config(config.tls.as_ref())?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| KmsError::configuration("backend_config.tls", format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            address: config.address.trim_end_matches('/').to_owned(),
            namespace: config.namespace.clone().filter(|n| !n.is_empty()),
            retry_attempts,
            counters: Counters::default(),
        })
    }

    /// A `vaultrs` client that sends `token` (empty: none) over the shared connection pool.
    pub(crate) fn vault_client(&self, token: &str) -> Result<VaultClient, KmsError> {
        let mut settings = VaultClientSettingsBuilder::default();
        settings
            .address(&self.address)
            .token(token)
            .ca_certs(Vec::new())
            .identity(None)
            .verify(true)
            .timeout(None)
            .namespace(self.namespace.clone())
            .wrapping(false);
        let settings =
            settings.build().map_err(|e| KmsError::configuration("backend_config.address", e.to_string()))?;
        let middle = EndpointMiddleware {
            token: token.to_owned(),
            version: "v1".into(),
            wrap: None,
            namespace: self.namespace.clone(),
        };
        let http = rustify::clients::reqwest::Client::new(&self.address, self.http.clone());
        Ok(VaultClient { http, middle, settings })
    }

    /// Sends one raw JSON request to `/v1/{path}`; returns the body (`None` for 204).
    pub(crate) async fn raw(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Option<Value>, CallError> {
        let (status, bytes) = self.raw_status(token, method, path, query, body).await?;
        if !(200..300).contains(&status) {
            let errors = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| serde_json::from_value::<Vec<String>>(v.get("errors")?.clone()).ok())
                .unwrap_or_default();
            return Err(CallError::Status { code: status, errors });
        }
        if bytes.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&bytes).map(Some).map_err(|e| CallError::Decode(e.to_string()))
    }

    /// Sends one raw request and returns the status and body, whatever the status.
    pub(crate) async fn raw_status(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Vec<u8>), CallError> {
        let url = format!("{}/v1/{}", self.address, path);
        let method = match method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::List => reqwest::Method::from_bytes(b"LIST").expect("LIST is a valid method token"),
        };
        let mut request = self.http.request(method, url).header("X-Vault-Request", "true");
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(token) = token {
            request = request.header("X-Vault-Token", token);
        }
        if let Some(ns) = &self.namespace {
            request = request.header("X-Vault-Namespace", ns);
        }
        if let Some(body) = body {
            request = request.header("Content-Type", "application/json").body(body);
        }
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let response = request.send().await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?.to_vec();
        Ok((status, bytes))
    }

    /// Counts a request made through a `vaultrs` client.
    pub(crate) fn count_request(&self) {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Runs `attempt` once, and again on transient failures when `idempotent`, up to
    /// `retry_attempts` more times, sleeping with exponential backoff and full jitter.
    pub(crate) async fn retry<T, F, Fut>(&self, idempotent: bool, mut attempt: F) -> Result<T, CallError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, CallError>>,
    {
        let mut tries = 0u32;
        loop {
            match attempt().await {
                Ok(v) => return Ok(v),
                Err(e) if idempotent && e.is_transient() && tries < self.retry_attempts => {
                    tries += 1;
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(attempt = tries, error = %e, "vault call failed; retrying");
                    tokio::time::sleep(backoff(tries, Duration::from_millis(50), Duration::from_secs(2))).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A snapshot of the counters.
    pub(crate) fn stats(&self) -> TransportStats {
        TransportStats {
            requests: self.counters.requests.load(Ordering::Relaxed),
            retries: self.counters.retries.load(Ordering::Relaxed),
            logins: self.counters.logins.load(Ordering::Relaxed),
            renewals: self.counters.renewals.load(Ordering::Relaxed),
        }
    }
}

/// Exponential backoff with full jitter: a random delay in `[base·2^(n-1)/2, base·2^(n-1)]`,
/// capped at `cap`.
pub(crate) fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(cap);
    let half = exp / 2;
    half + half.mul_f64(jitter_fraction())
}

/// A uniform fraction in `[0, 1)` from the OS RNG (0.5 if the RNG fails).
fn jitter_fraction() -> f64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 4];
    match ring::rand::SystemRandom::new().fill(&mut b) {
        Ok(()) => f64::from(u32::from_be_bytes(b)) / (f64::from(u32::MAX) + 1.0),
        Err(_) => 0.5,
    }
}

/// The rustls client configuration for `tls` (`None`: system roots, verification on).
pub(crate) fn tls_config(tls: Option<&TlsConfig>) -> Result<rustls::ClientConfig, KmsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| KmsError::configuration("backend_config.tls", e.to_string()))?;
    let default = TlsConfig::default();
    let tls = tls.unwrap_or(&default);
    let builder = if tls.skip_verify {
        tracing::warn!("TLS certificate verification of the Vault server is disabled (skip_verify)");
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
    fn only_transient_errors_are_retried() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(CallError::Transport(Box::new(io)).is_transient());
        assert!(CallError::Status { code: 503, errors: vec!["sealed".into()] }.is_transient());
        assert!(CallError::Status { code: 502, errors: vec![] }.is_transient());
        let mac = CallError::Status { code: 500, errors: vec!["cipher: message authentication failed".into()] };
        assert!(!mac.is_transient(), "a wrong context must never be retried");
        assert!(mac.is_auth_failure());
        assert!(!CallError::Status { code: 403, errors: vec!["permission denied".into()] }.is_transient());
        assert!(!CallError::Status { code: 400, errors: vec![] }.is_transient());
        assert!(!CallError::Decode("x".into()).is_transient());
    }

    #[test]
    fn permission_errors_map_to_unauthorized() {
        let e = CallError::Status { code: 403, errors: vec!["permission denied".into()] }.into_kms("encrypt");
        assert!(matches!(e, KmsError::Unauthorized { .. }), "{e:?}");
        let e = CallError::Status { code: 503, errors: vec![] }.into_kms("encrypt");
        assert!(e.is_retryable());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..20 {
            let d = backoff(attempt, Duration::from_millis(100), Duration::from_secs(2));
            let exp = Duration::from_millis(100).saturating_mul(1 << (attempt - 1).min(16)).min(Duration::from_secs(2));
            assert!(d >= exp / 2 && d <= exp, "attempt {attempt}: {d:?}");
        }
    }

    #[test]
    fn tls_options_are_checked() {
        let mut missing = TlsConfig::default();
        missing.ca_cert_path = Some("/nonexistent/ca.pem".into());
        let err = tls_config(Some(&missing)).unwrap_err();
        assert!(matches!(err, KmsError::Configuration { ref field, .. } if field == "backend_config.tls.ca_cert_path"));
        let mut half = TlsConfig::default();
        half.client_cert_path = Some("/x".into());
        assert!(tls_config(Some(&half)).is_err());
        tls_config(None).unwrap();
        let mut skip = TlsConfig::default();
        skip.skip_verify = true;
        tls_config(Some(&skip)).unwrap();
    }
}
