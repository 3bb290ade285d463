//! The HTTP client of the client commands: hyper-util's pooled client over rustls, JSON in and
//! out, and the mapping of failures to exit codes.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

/// Exit codes: distinct for usage, auth, not-found and server errors.
pub(crate) mod exit {
    /// Success.
    pub(crate) const OK: u8 = 0;
    /// The request was refused as invalid (400, 409, 413, ...), or a local failure.
    pub(crate) const FAILED: u8 = 1;
    /// Bad command line (clap uses 2 too).
    pub(crate) const USAGE: u8 = 2;
    /// 401 or 403.
    pub(crate) const AUTH: u8 = 3;
    /// 404.
    pub(crate) const NOT_FOUND: u8 = 4;
    /// 5xx, or the server could not be reached.
    pub(crate) const SERVER: u8 = 5;
}

/// A failed command: what to print and how to exit.
#[derive(Debug)]
pub(crate) struct CliError {
    /// The exit code.
    pub(crate) code: u8,
    /// The message for stderr.
    pub(crate) message: String,
}

impl CliError {
    /// A failure with exit code `code`.
    pub(crate) fn new(code: u8, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// A local failure (exit 1).
    pub(crate) fn local(message: impl Into<String>) -> Self {
        Self::new(exit::FAILED, message)
    }

    /// A usage error (exit 2).
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::new(exit::USAGE, message)
    }
}

/// A connection to a kms server.
pub(crate) struct Client {
    http: HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
    token: Option<Zeroizing<String>>,
    /// Added to a 401's message: which token was sent, or where none was found.
    on_refusal: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("base", &self.base).finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `url` (`http://` or `https://`), sending `token`; `ca_cert` replaces the
    /// system roots for https.
    pub(crate) fn new(url: &str, token: Option<Zeroizing<String>>, ca_cert: Option<&Path>) -> Result<Self, CliError> {
        let base = url.trim_end_matches('/').to_owned();
        let uri: Uri = base.parse().map_err(|e| CliError::usage(format!("--url {url}: {e}")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(CliError::usage(format!("--url {url}: must be http://HOST:PORT or https://HOST:PORT")));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| CliError::local(format!("TLS: {e}")))?;
        let tls = match ca_cert {
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| CliError::usage(format!("--ca-cert {}: {e}", path.display())))?;
                for cert in certs {
                    roots.add(cert).map_err(|e| CliError::usage(format!("--ca-cert {}: {e}", path.display())))?;
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            None => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in rustls_native_roots() {
                    let _ = roots.add(cert);
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
        };
        let connector =
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().build();
        let http = HyperClient::builder(TokioExecutor::new()).build(connector);
        Ok(Self { http, base, token, on_refusal: None })
    }

    /// Sets what a 401 answer adds to its message (see [`crate::token`]).
    pub(crate) fn explain_refusal(mut self, text: String) -> Self {
        self.on_refusal = Some(text);
        self
    }

    /// Sends a request; returns the status and body of any answer (error statuses included).
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), CliError> {
        let mut request = Request::builder().method(method).uri(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.as_str()))
                .map_err(|_| CliError::usage("the token contains characters a header cannot carry"))?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        let body = match body {
            Some(bytes) => {
                request = request.header(CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(bytes))
            }
            None => Full::new(Bytes::new()),
        };
        let request = request.body(body).map_err(|e| CliError::usage(format!("bad request: {e}")))?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| CliError::new(exit::SERVER, format!("cannot reach {}: {}", self.base, error_chain(&e))))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| CliError::new(exit::SERVER, format!("reading the response: {e}")))?
            .to_bytes();
        Ok((status, bytes))
    }

    /// Sends a request and parses a JSON success; an error status becomes a [`CliError`] with the
    /// matching exit code and the server's message.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, CliError> {
        let bytes = self.send_json(method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| CliError::new(exit::SERVER, format!("unexpected response: {e}")))
    }

    /// Sends `body` as JSON and returns a success's body; an error status becomes a
    /// [`CliError`].
    async fn send_json(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<Bytes, CliError> {
        let body = body.map(|b| serde_json::to_vec(b).expect("request bodies serialize"));
        let (status, bytes) = self.send(method, path, body).await?;
        if !status.is_success() {
            return Err(self.refusal(status, &bytes));
        }
        Ok(bytes)
    }
}

impl Client {
    /// [`Self::call`] for answers that carry key material: the answer's buffer is zeroized once
    /// parsed, so the secret only lives on in `T`'s zeroizing fields.
    pub(crate) async fn call_secret<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, CliError> {
        let bytes = self.send_json(method, path, body).await?;
        let parsed = serde_json::from_slice(&bytes)
            .map_err(|_| CliError::new(exit::SERVER, "unexpected response: not the expected JSON"));
        if let Ok(mut owned) = bytes.try_into_mut() {
            zeroize::Zeroize::zeroize(&mut owned[..]);
        }
        parsed
    }

    pub(crate) fn refusal(&self, status: StatusCode, bytes: &[u8]) -> CliError {
        let mut err = status_error(status, bytes);
        if let (StatusCode::UNAUTHORIZED, Some(hint)) = (status, &self.on_refusal) {
            err.message = format!("{}\n  {hint}", err.message);
        }
        err
    }
}

/// The error for a non-success answer.
pub(crate) fn status_error(status: StatusCode, body: &[u8]) -> CliError {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let e = v.get("error")?;
            Some(format!("{} ({})", e.get("message")?.as_str()?, e.get("code")?.as_str()?))
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let code = match status.as_u16() {
        401 | 403 => exit::AUTH,
        404 => exit::NOT_FOUND,
        500..=599 => exit::SERVER,
        _ => exit::FAILED,
    };
    CliError::new(code, format!("{}: {message}", status.as_u16()))
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The system's trusted roots. Certificates the system store cannot load are skipped: an
/// https URL to a server with a private CA is what `--ca-cert` is for.
fn rustls_native_roots() -> Vec<CertificateDer<'static>> {
    rustls_native_certs::load_native_certs().certs
}
