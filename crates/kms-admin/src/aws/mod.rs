//! The AWS KMS JSON protocol on the server's own listener, so that boto3, the AWS CLI, the AWS
//! Encryption SDK and every other AWS SDK work against kms unchanged.
//!
//! A request is `POST /` with `X-Amz-Target: TrentService.<Operation>` (anything else goes to
//! the native API). It goes through, in order:
//! 1. the body, at most the server's `max_body_bytes` (`AwsApi::handle`);
//! 2. **SigV4** ([`sigv4`]): the scope (service `kms`, the server's region), the clock (5
//!    minutes), the access key ([`settings::Credentials`], secrets sealed in the configuration)
//!    and the signature over method, path, signed headers and body;
//! 3. the identity the access key belongs to, with the grants of the native API;
//! 4. the operation (`ops.rs`): inputs as in the AWS model (bare ids, key ARNs, `alias/` names
//!    and alias ARNs, see [`arn`]), authorization on the key after aliases are resolved and, for
//!    `Decrypt`/`ReEncrypt`, on the key the ciphertext names before anything is opened;
//! 5. the answer: JSON with key ARNs, or `{"__type", "message"}` ([`errors`]), each with an
//!    `x-amzn-RequestId`; then the audit line and the metrics, as for the native API.
//!
//! Ciphertext blobs are kms's own ciphertexts: one blob decrypts through either API.
//! Automatic rotation on a period is [`rotation`]. The operations, grants and differences
//! from AWS are documented in `docs/aws-kms-api.md`.

pub mod arn;
pub mod errors;
mod ops;
pub mod rotation;
pub mod settings;
mod shapes;
mod signing_keys;
pub mod sigv4;

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use self::errors::AwsError;
use self::settings::{AwsSettings, Credentials};
use self::sigv4::{Expectation, SignedRequest};
use crate::App;
use crate::app::{RequestEnd, RequestInfo};
use crate::audit::Reservation;
use crate::store::ConfigStore;

/// The header naming the operation.
pub const TARGET_HEADER: &str = "x-amz-target";
/// The prefix of every KMS target.
pub const TARGET_PREFIX: &str = "TrentService.";
/// The content type of requests and answers.
pub const CONTENT_TYPE_JSON: &str = "application/x-amz-json-1.1";

/// The AWS KMS protocol's handler: settings and opened access keys.
#[derive(Debug)]
pub struct AwsApi {
    settings: AwsSettings,
    credentials: Credentials,
    signing_keys: signing_keys::SigningKeys,
}

impl AwsApi {
    /// Checks the settings and opens the access keys with `store`'s seal key; `known` says
    /// whether an identity name is configured.
    pub fn new(
        settings: &AwsSettings,
        store: Option<&ConfigStore>,
        known: impl Fn(&str) -> bool,
    ) -> Result<Self, String> {
        settings.validate()?;
        let credentials = Credentials::open(settings, store, known)?;
        Ok(Self { settings: settings.clone(), credentials, signing_keys: Default::default() })
    }

    /// Whether a request is for this protocol: `POST /` with a `TrentService.*` target.
    pub fn is_aws_request<B>(req: &Request<B>) -> bool {
        req.method() == Method::POST
            && req.uri().path() == "/"
            && req.headers().get(TARGET_HEADER).is_some_and(|t| t.as_bytes().starts_with(TARGET_PREFIX.as_bytes()))
    }

    /// Handles one request; never fails (errors become AWS error answers).
    pub(crate) async fn handle(&self, app: &App, req: Request<Incoming>, remote: SocketAddr) -> Response<Full<Bytes>> {
        let started = Instant::now();
        let request_id = request_id();
        let mut info = RequestInfo::default();
        // As for the native API: the audit line's slot is taken first, and a log that fails
        // closed refuses the request while it cannot record it.
        let slot = app.audit.reserve();
        let time = slot.arrival_time();
        let result = if matches!(slot, Reservation::Refuse) {
            Err(AwsError::internal("the audit log cannot be written; requests are refused until it can"))
        } else {
            match tokio::time::timeout(app.request_timeout, self.dispatch(app, req, &mut info)).await {
                Ok(result) => result,
                Err(_) => Err(AwsError {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    type_name: "DependencyTimeoutException",
                    message: format!("the request did not complete within {} s", app.request_timeout.as_secs()),
                }),
            }
        };
        let (status, body, outcome) = match result {
            Ok(value) => (StatusCode::OK, serde_json::to_vec(&value).expect("answers serialize"), "ok"),
            Err(mut err) => {
                if err.status.is_server_error() {
                    // The detail (a backend message may name paths or addresses) goes to the
                    // log under the request id; the answer carries the id only.
                    tracing::error!(request_id = %request_id, error = err.type_name, message = %err.message, "AWS request failed");
                    err.message = format!("internal error (request id {request_id})");
                }
                (err.status, err.body(), err.type_name)
            }
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_JSON));
        // Answers may hold plaintext: no cache keeps them.
        headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert("x-amzn-requestid", HeaderValue::from_str(&request_id).expect("a request id is ASCII"));
        app.record_request(slot, info, RequestEnd { time, started, status: status.as_u16(), outcome, remote });
        response
    }

    async fn dispatch(
        &self,
        app: &App,
        req: Request<Incoming>,
        info: &mut RequestInfo,
    ) -> Result<serde_json::Value, AwsError> {
        let (parts, body) = req.into_parts();
        let limit = app.max_body_bytes;
        let too_large = || AwsError::validation(format!("the request body exceeds {limit} bytes"));
        let declared = parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if let Some(len) = declared.filter(|len| *len > limit as u64) {
            crate::app::drain_oversized(body, len).await;
            return Err(too_large());
        }
        let body = zeroize::Zeroizing::new(
            Limited::new(body, limit).collect().await.map_err(|_| too_large())?.to_bytes().to_vec(),
        );
        let signed = SignedRequest {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query(),
            headers: &parts.headers,
            body: &body,
        };
        let now = time::OffsetDateTime::now_utc();
        let expect = Expectation { service: "kms", region: &self.settings.region, now };
        let auth = sigv4::precheck(&signed, &expect)?;
        let (name, secret) = self
            .credentials
            .lookup(&auth.access_key_id)
            .ok_or_else(|| AwsError::from(sigv4::SigV4Error::UnknownAccessKey))?;
        sigv4::verify_with_key(&signed, &auth, &self.signing_keys.get(&auth, secret))?;
        let identity = app
            .auth
            .identity_named(name)
            .ok_or_else(|| AwsError::internal("the access key's identity is not configured"))?;
        info.identity = Some(identity.name().to_owned());

        let content_type = parts.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let mime = content_type.split(';').next().unwrap_or("").trim();
        if !(mime.eq_ignore_ascii_case(CONTENT_TYPE_JSON) || mime.eq_ignore_ascii_case("application/x-amz-json-1.0")) {
            return Err(AwsError::validation(format!("Content-Type must be {CONTENT_TYPE_JSON}")));
        }
        let target = parts.headers.get(TARGET_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        let operation = target.strip_prefix(TARGET_PREFIX).unwrap_or(target);
        let ctx = ops::Ctx { app, settings: &self.settings, identity };
        ctx.run(operation, &body, info).await
    }
}

/// A fresh request id in the UUID form AWS uses: a random prefix drawn once per process and a
/// counter, so ids are unique without a system call per request (they only name a request in
/// the log; nothing relies on them being unpredictable).
fn request_id() -> String {
    static PREFIX: std::sync::OnceLock<[u8; 8]> = std::sync::OnceLock::new();
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| {
        let mut prefix = [0u8; 8];
        // A failed draw leaves zeros: the counter still keeps ids distinct within the process.
        let _ = kms_crypto::rand::fill(&mut prefix);
        prefix
    });
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(prefix);
    b[8..].copy_from_slice(&COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_be_bytes());
    let mut id = String::with_capacity(36);
    for (i, group) in [&b[0..4], &b[4..6], &b[6..8], &b[8..10], &b[10..16]].into_iter().enumerate() {
        if i > 0 {
            id.push('-');
        }
        sigv4::push_hex(&mut id, group);
    }
    id
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_are_distinct_uuid_shaped() {
        let (a, b) = (super::request_id(), super::request_id());
        assert_ne!(a, b);
        for id in [a, b] {
            let groups: Vec<usize> = id.split('-').map(str::len).collect();
            assert_eq!(groups, [8, 4, 4, 4, 12], "{id}");
            assert!(id.bytes().all(|c| c == b'-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{id}");
        }
    }
}
