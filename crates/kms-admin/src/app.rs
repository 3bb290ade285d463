//! [`App`]: one request's way through the server: authenticate, route, authorize, read and
//! check the body, call the service, answer; then count it and audit it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::header::{AUTHORIZATION, CACHE_CONTROL};
use http::{HeaderValue, Method, Request, StatusCode};
use hyper::body::Incoming;
use kms_core::encryption::service::EncryptionService;
use kms_core::service_manager::KmsServiceManager;
use kms_types::error::KmsError;

use crate::audit::{AuditLog, AuditOptions, AuditRecord, Reservation};
use crate::auth::{Authenticator, Identity, Operation};
use crate::aws::AwsApi;
pub(crate) use crate::body::drain_oversized;
use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::handlers::Call;
use crate::handlers::service::SaveToStore;
use crate::metrics::Metrics;
use crate::responses::{Resp, error_response};
use crate::routes::{Route, route};
use crate::setup_error::SetupError;
use crate::store::ConfigStore;

/// What the audit line and metrics learn about a request while it is handled (native and AWS
/// protocol alike).
#[derive(Debug, Default)]
pub(crate) struct RequestInfo {
    pub(crate) identity: Option<String>,
    pub(crate) operation: Option<Operation>,
    pub(crate) key_id: Option<String>,
    pub(crate) key_version: Option<u32>,
    pub(crate) context_sha256: Option<String>,
}

/// How a request ended, for [`App::record_request`].
#[derive(Debug)]
pub(crate) struct RequestEnd {
    /// When it began (the audit line's time).
    pub(crate) time: String,
    pub(crate) started: Instant,
    pub(crate) status: u16,
    /// `ok` or the error code.
    pub(crate) outcome: &'static str,
    pub(crate) remote: SocketAddr,
}

/// The request handler shared by every connection.
pub struct App {
    pub(crate) manager: Arc<KmsServiceManager>,
    pub(crate) auth: Authenticator,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) audit: AuditLog,
    pub(crate) store: Option<Arc<ConfigStore>>,
    pub(crate) max_body_bytes: usize,
    pub(crate) request_timeout: Duration,
    public_health: bool,
    /// The AWS KMS protocol, unless `[server.aws] enabled = false`.
    aws: Option<AwsApi>,
    /// Numbers the server errors (`<start time>-<n>`), so a 5xx answer points at its log line.
    failures: AtomicU64,
    started_unix: u64,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("auth", &self.auth)
            .field("store", &self.store)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl App {
    /// A handler over `manager`, with identities, limits and audit log from `config`; `store`
    /// (if any) becomes the manager's save hook: it receives the configuration after every
    /// successful lifecycle change.
    pub fn new(
        manager: Arc<KmsServiceManager>,
        config: &ServerConfig,
        store: Option<ConfigStore>,
    ) -> Result<Self, SetupError> {
        config.validate()?;
        let auth = Authenticator::new(&config.identities).map_err(SetupError::Identities)?;
        let audit = match &config.audit_log {
            Some(path) => AuditLog::to_file(path, AuditOptions::from(config))
                .map_err(|source| SetupError::AuditLog { path: path.clone(), source })?,
            None => AuditLog::disabled(),
        };
        let store = store.map(Arc::new);
        if let Some(store) = &store {
            manager.set_save_hook(Arc::new(SaveToStore(Arc::clone(store))));
        }
        let metrics = Arc::new(Metrics::new());
        let aws = if config.aws.enabled {
            let known = |name: &str| config.identities.iter().any(|i| i.name == name);
            Some(AwsApi::new(&config.aws, store.as_deref(), known).map_err(|message| SetupError::Aws { message })?)
        } else {
            None
        };
        Ok(Self {
            manager,
            auth,
            metrics,
            audit,
            store,
            max_body_bytes: config.max_body_bytes,
            request_timeout: config.request_timeout,
            public_health: config.public_health,
            aws,
            failures: AtomicU64::new(0),
            started_unix: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        })
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The service manager behind the API.
    pub fn manager(&self) -> &Arc<KmsServiceManager> {
        &self.manager
    }

    /// Handles one request; never fails (errors become JSON error responses).
    pub async fn handle(&self, req: Request<Incoming>, remote: SocketAddr) -> Resp {
        if let Some(aws) = &self.aws
            && AwsApi::is_aws_request(&req)
        {
            return aws.handle(self, req, remote).await;
        }
        let started = Instant::now();
        let mut info = RequestInfo::default();
        let is_probe = self.public_health && req.uri().path() == "/health";
        // The line's queue slot is taken before anything is done: a log that fails closed
        // refuses the request here, while it cannot record it.
        let slot = if is_probe { Reservation::Disabled } else { self.audit.reserve() };
        let time = slot.arrival_time();
        let result = if matches!(slot, Reservation::Refuse) {
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_unavailable",
                "the audit log cannot be written; requests are refused until it can (server.audit_fail_closed)",
            ))
        } else {
            match tokio::time::timeout(self.request_timeout, self.dispatch(req, &mut info)).await {
                Ok(result) => result,
                Err(_) => Err(ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "request_timeout",
                    format!("the request did not complete within {} s", self.request_timeout.as_secs()),
                )),
            }
        };
        let (mut response, outcome) = match result {
            Ok(response) => (response, "ok"),
            // 501 `unsupported` names only the operation and the backend kind: it is shown.
            Err(err) if err.status.is_server_error() && err.code != "unsupported" => {
                let code = err.code;
                (self.server_error_response(err), code)
            }
            Err(err) => (error_response(&err), err.code),
        };
        // Bodies may hold a plaintext data key or a decrypted plaintext: no cache keeps them.
        response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        let unauthenticated_probe = info.operation == Some(Operation::Health) && info.identity.is_none();
        let slot = if unauthenticated_probe { Reservation::Disabled } else { slot };
        let status = response.status().as_u16();
        self.record_request(slot, info, RequestEnd { time, started, status, outcome, remote });
        response
    }

    /// The end of every request, native or AWS protocol: its metrics, and its audit line in
    /// the slot reserved when it began.
    pub(crate) fn record_request(&self, slot: Reservation, info: RequestInfo, end: RequestEnd) {
        let elapsed = end.started.elapsed();
        let operation = info.operation.map(Operation::as_str);
        self.metrics.observe_request(operation, end.status, elapsed);
        if let Reservation::Slot(slot) = slot {
            slot.send(AuditRecord {
                time: end.time,
                identity: info.identity,
                operation,
                key_id: info.key_id,
                key_version: info.key_version,
                context_sha256: info.context_sha256,
                status: end.status,
                outcome: end.outcome,
                latency_us: elapsed.as_micros() as u64,
                remote: Some(end.remote),
            });
        }
    }

    /// The audit line's trace of an encryption context: SHA-256 (hex) of its canonical
    /// encoding, computed only when there is an audit log.
    pub(crate) fn context_digest(&self, context: &kms_types::types::EncryptionContext) -> Option<String> {
        self.audit.is_enabled().then(|| context_sha256(context))
    }

    /// A 5xx answer that names nothing of the server (paths, addresses, backend messages):
    /// the detail goes to the log under a request id, which the answer carries instead.
    fn server_error_response(&self, err: ApiError) -> Resp {
        let n = self.failures.fetch_add(1, Ordering::Relaxed);
        let request_id = format!("{:x}-{n}", self.started_unix);
        tracing::error!(request_id = %request_id, status = err.status.as_u16(), code = err.code, message = %err.message, "request failed");
        let public = ApiError {
            message: format!("the server could not complete the request; see its log for request id {request_id}"),
            field: None,
            ..err
        };
        let mut response = error_response(&public);
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert(crate::error::REQUEST_ID_HEADER, value);
        }
        response
    }

    async fn dispatch(&self, req: Request<Incoming>, info: &mut RequestInfo) -> Result<Resp, ApiError> {
        if self.public_health && req.uri().path() == "/health" && req.method() == Method::GET {
            info.operation = Some(Operation::Health);
            return self.health(&req).await;
        }
        let identity = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|h| self.auth.authenticate_header(h.as_bytes()))
            .ok_or_else(ApiError::unauthenticated)?;
        info.identity = Some(identity.name().to_owned());
        if let Some(alias_route) = crate::aliases::alias_route(req.method(), req.uri().path())? {
            return self.alias_request(alias_route, req, identity, info).await;
        }
        let Route { operation, key_id } = route(req.method(), req.uri().path())?;
        info.operation = Some(operation);
        let key_id = self.path_key(identity, operation, key_id).await?;
        info.key_id = key_id.clone();
        if !identity.may(operation) || (key_id.is_some() && !identity.may_on(operation, key_id.as_deref())) {
            return Err(ApiError::forbidden(identity.name(), operation.as_str(), key_id.as_deref()));
        }
        let call = Call { req, identity, operation, key: key_id.unwrap_or_default(), info };
        use Operation as Op;
        match operation {
            Op::Health => self.health(&call.req).await,
            // Aliases are managed under /kms/v1/aliases (`alias_request`), not a key route.
            Op::ManageAliases => Err(ApiError::no_route()),
            Op::Metrics => self.metrics_page().await,
            Op::Status => self.status().await,
            Op::GetConfig => self.get_config(call).await,
            Op::Configure | Op::Reconfigure => self.configure(call).await,
            Op::Start | Op::Stop => self.start_or_stop(call).await,
            Op::ClearCache => self.clear_cache(call).await,
            Op::Backup => self.backup(call).await,
            Op::CreateKey => self.create_key(call).await,
            Op::ImportKey => self.import_key(call).await,
            Op::AdoptKey => self.adopt_key(call).await,
            Op::ListKeys => self.list_keys(call).await,
            Op::DescribeKey => self.describe_key(call).await,
            Op::EnableKey | Op::DisableKey | Op::RotateKey => self.change_key_state(call).await,
            Op::UpdateKeyDescription => self.update_key_description(call).await,
            Op::TagKey => self.tag_key(call).await,
            Op::UntagKey => self.untag_key(call).await,
            Op::ScheduleKeyDeletion => self.schedule_key_deletion(call).await,
            Op::CancelKeyDeletion => self.cancel_key_deletion(call).await,
            Op::GenerateDataKey | Op::GenerateDataKeyWithoutPlaintext => self.generate_data_key(call).await,
            Op::Encrypt => self.encrypt(call).await,
            Op::Decrypt => self.decrypt(call).await,
            Op::ReEncrypt => self.re_encrypt(call).await,
            Op::GetParametersForImport => self.get_parameters_for_import(call).await,
            Op::ImportKeyMaterial => self.import_key_material(call).await,
            Op::DeleteImportedKeyMaterial => self.delete_imported_key_material(call).await,
        }
    }

    pub(crate) async fn service(&self) -> Result<Arc<EncryptionService>, ApiError> {
        self.manager.encryption_service().await.ok_or_else(not_running)
    }

    /// Runs one call into the service, timing it for `/metrics`.
    pub(crate) async fn call<T>(
        &self,
        operation: Operation,
        fut: impl Future<Output = Result<T, KmsError>>,
    ) -> Result<T, ApiError> {
        let started = Instant::now();
        let result = fut.await;
        let error = result.as_ref().err().map(KmsError::code);
        self.metrics.observe_backend(operation.as_str(), started.elapsed(), error);
        result.map_err(ApiError::from)
    }
}

/// SHA-256 (hex) of the canonical encoding of `context` (`docs/formats.md`).
fn context_sha256(context: &kms_types::types::EncryptionContext) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, &kms_crypto::context::canonical_context(context));
    crate::hex::hex(digest.as_ref())
}

pub(crate) fn not_running() -> ApiError {
    ApiError::from(KmsError::ServiceUnavailable { message: "the kms service is not running".into() })
}

pub(crate) fn check(identity: &Identity, operation: Operation, key_id: Option<&str>) -> Result<(), ApiError> {
    if identity.may_on(operation, key_id) {
        Ok(())
    } else {
        Err(ApiError::forbidden(identity.name(), operation.as_str(), key_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answer: the empty context encodes as `01` + eight zero bytes.
    #[test]
    fn context_digests_hash_the_canonical_encoding() {
        let empty = kms_types::types::EncryptionContext::new();
        let expected = ring::digest::digest(&ring::digest::SHA256, &[1, 0, 0, 0, 0, 0, 0, 0, 0]);
        let hex: String = expected.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(context_sha256(&empty), hex);
        let a: kms_types::types::EncryptionContext = [("bucket".to_owned(), "photos".to_owned())].into();
        assert_ne!(context_sha256(&a), hex);
        assert!(!context_sha256(&a).contains("photos"));
    }
}
