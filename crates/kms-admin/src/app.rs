//! [`App`]: one request's way through the server: authenticate, route, authorize, read and
//! check the body, call the service, answer; then count it and audit it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use kms_core::encryption::service::EncryptionService;
use kms_core::service_manager::KmsServiceManager;
use kms_types::api_types::{ConfigureBody, ConfigureKmsRequest, KmsConfigResponse, KmsServiceStatus};
use kms_types::config::KmsConfig;
use kms_types::error::KmsError;
use kms_types::types::{
    CancelKeyDeletionRequest, CreateKeyRequest, DecryptRequest, DeleteKeyRequest, DescribeKeyRequest, EncryptRequest,
    GenerateDataKeyRequest, GenerateDataKeyWithoutPlaintextRequest, KeyIdRequest, ListKeysRequest, ListKeysResponse,
    MAX_ENCRYPT_PLAINTEXT_BYTES, ReEncryptRequest, TagKeyRequest, UntagKeyRequest, UpdateKeyDescriptionRequest,
    validate_key_id, validate_list_limit, validate_pending_window,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{
    DataKeyBody, DescriptionBody, EmptyBody, EncryptBody, HealthBody, LifecycleBody, StatusBody, TagBody, UntagBody,
};
use crate::audit::{AuditLog, AuditOptions, AuditRecord, Reservation};
use crate::auth::{Authenticator, Identity, Operation};
use crate::aws::AwsApi;
use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::json_body::{parse_json, strip_position};
use crate::metrics::Metrics;
use crate::routes::{Route, route};
use crate::store::{ConfigStore, PersistedState};

#[path = "app_aliases.rs"]
mod aliases;

type Resp = Response<Full<Bytes>>;

/// Backend pages read at most for one `list_keys` request of an identity limited to some key
/// patterns (issue 13 item 10): the cost of a request stays bounded however few keys match.
const MAX_LIST_PAGES_SCANNED: usize = 16;

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
    store: Option<Arc<ConfigStore>>,
    lifecycle: Arc<tokio::sync::Mutex<()>>,
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
    /// (if any) receives the configuration after every successful lifecycle change.
    pub fn new(
        manager: Arc<KmsServiceManager>,
        config: &ServerConfig,
        store: Option<ConfigStore>,
    ) -> Result<Self, String> {
        config.validate()?;
        let auth = Authenticator::new(&config.identities).map_err(|e| format!("server.identities: {e}"))?;
        let audit = match &config.audit_log {
            Some(path) => AuditLog::to_file(path, AuditOptions::from(config))
                .map_err(|e| format!("server.audit_log {}: {e}", path.display()))?,
            None => AuditLog::disabled(),
        };
        let metrics = Arc::new(Metrics::new());
        let aws = if config.aws.enabled {
            let known = |name: &str| config.identities.iter().any(|i| i.name == name);
            Some(AwsApi::new(&config.aws, store.as_ref(), known)?)
        } else {
            None
        };
        Ok(Self {
            manager,
            auth,
            metrics,
            audit,
            store: store.map(Arc::new),
            lifecycle: Arc::new(tokio::sync::Mutex::new(())),
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
        let time = AuditRecord::now();
        let mut info = RequestInfo::default();
        let is_probe = self.public_health && req.uri().path() == "/health";
        // The line's queue slot is taken before anything is done: a log that fails closed
        // refuses the request here, while it cannot record it.
        let slot = if is_probe { Reservation::Disabled } else { self.audit.reserve() };
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
        let key = key_id.unwrap_or_default();
        use Operation as Op;
        match operation {
            Op::Health => self.health(&req).await,
            // Aliases are managed under /kms/v1/aliases (`alias_request`), not a key route.
            Op::ManageAliases => Err(ApiError::no_route()),
            Op::Metrics => {
                let manager = self.manager.manager().await;
                let cache = manager.as_ref().map(|m| m.cache_stats());
                let key_cache = manager.as_ref().and_then(|m| m.backend_key_cache_stats());
                if self.audit.is_enabled() {
                    self.metrics.set_audit(self.audit.dropped(), self.audit.is_healthy());
                }
                Ok(text_response(self.metrics.render_with(cache, key_cache)))
            }
            Op::Status => self.status().await,
            Op::GetConfig => {
                let _: EmptyBody = self.body(req, false).await?;
                let config = self.manager.current_config().await.map(|c| c.redacted());
                Ok(json(StatusCode::OK, &KmsConfigResponse { config }))
            }
            Op::Configure | Op::Reconfigure => {
                let body: serde_json::Map<String, serde_json::Value> = self.body(req, true).await?;
                let config = configure_body(body)?.to_config()?;
                config.validate()?;
                if operation == Op::Configure && self.manager.get_status().await == KmsServiceStatus::Running {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        "service_running",
                        "the service is running: use POST /kms/v1/reconfigure to switch it",
                    ));
                }
                self.lifecycle_change(operation, Some(config)).await
            }
            Op::Start | Op::Stop => {
                let _: EmptyBody = self.body(req, false).await?;
                self.lifecycle_change(operation, None).await
            }
            Op::ClearCache => {
                let _: EmptyBody = self.body(req, false).await?;
                match self.manager.manager().await {
                    Some(m) => m.clear_all_caches().await,
                    None => return Err(not_running()),
                }
                Ok(json(StatusCode::OK, &serde_json::json!({"cleared": true})))
            }
            Op::Backup => {
                let _: EmptyBody = self.body(req, false).await?;
                let manager = self.manager.manager().await.ok_or_else(not_running)?;
                let bundle = self.call(operation, manager.backend().backup()).await?;
                Ok(bytes_response(bundle))
            }
            Op::CreateKey => {
                let request: CreateKeyRequest = self.body(req, false).await?;
                if let Some(name) = &request.key_name {
                    validate_key_id("key_name", name)?;
                }
                info.key_id.clone_from(&request.key_name);
                check(identity, operation, request.key_name.as_deref())?;
                let svc = self.service().await?;
                let created = self.call(operation, svc.create_key(request)).await?;
                info.key_id = Some(created.key_id.clone());
                Ok(json(StatusCode::CREATED, &created))
            }
            Op::ListKeys => {
                let request = list_query(req.uri().query())?;
                let svc = self.service().await?;
                let page = self.list_visible(&svc, identity, request).await?;
                Ok(json(StatusCode::OK, &page))
            }
            Op::DescribeKey => {
                let svc = self.service().await?;
                let r = self.call(operation, svc.describe_key(DescribeKeyRequest { key_id: key })).await?;
                Ok(json(StatusCode::OK, &r))
            }
            Op::EnableKey | Op::DisableKey | Op::RotateKey => {
                let _: EmptyBody = self.body(req, false).await?;
                let svc = self.service().await?;
                let request = KeyIdRequest { key_id: key };
                let r = match operation {
                    Op::EnableKey => self.call(operation, svc.enable_key(request)).await?,
                    Op::DisableKey => self.call(operation, svc.disable_key(request)).await?,
                    _ => self.call(operation, svc.rotate_key(request)).await?,
                };
                Ok(json(StatusCode::OK, &r))
            }
            Op::UpdateKeyDescription => {
                let body: DescriptionBody = self.body(req, true).await?;
                let svc = self.service().await?;
                let request = UpdateKeyDescriptionRequest { key_id: key, description: body.description };
                Ok(json(StatusCode::OK, &self.call(operation, svc.update_key_description(request)).await?))
            }
            Op::TagKey => {
                let body: TagBody = self.body(req, true).await?;
                let svc = self.service().await?;
                let request = TagKeyRequest { key_id: key, tags: body.tags };
                Ok(json(StatusCode::OK, &self.call(operation, svc.tag_key(request)).await?))
            }
            Op::UntagKey => {
                let body: UntagBody = self.body(req, true).await?;
                let svc = self.service().await?;
                let request = UntagKeyRequest { key_id: key, tag_keys: body.tag_keys };
                Ok(json(StatusCode::OK, &self.call(operation, svc.untag_key(request)).await?))
            }
            Op::ScheduleKeyDeletion => {
                let days = deletion_query(req.uri().query())?;
                let svc = self.service().await?;
                let request = DeleteKeyRequest { key_id: key, pending_window_in_days: Some(days) };
                Ok(json(StatusCode::OK, &self.call(operation, svc.delete_key(request)).await?))
            }
            Op::CancelKeyDeletion => {
                let _: EmptyBody = self.body(req, false).await?;
                let svc = self.service().await?;
                let request = CancelKeyDeletionRequest { key_id: key };
                Ok(json(StatusCode::OK, &self.call(operation, svc.cancel_key_deletion(request)).await?))
            }
            Op::GenerateDataKey => {
                let body: DataKeyBody = self.body(req, false).await?;
                let svc = self.service().await?;
                info.context_sha256 = self.context_digest(&body.encryption_context);
                let request = GenerateDataKeyRequest {
                    key_id: key,
                    key_spec: body.key_spec,
                    encryption_context: body.encryption_context,
                };
                let r = self.call(operation, svc.generate_data_key(request)).await?;
                info.key_version = Some(r.key_version);
                Ok(json(StatusCode::OK, &r))
            }
            Op::GenerateDataKeyWithoutPlaintext => {
                let body: DataKeyBody = self.body(req, false).await?;
                let svc = self.service().await?;
                info.context_sha256 = self.context_digest(&body.encryption_context);
                let request = GenerateDataKeyWithoutPlaintextRequest {
                    key_id: key,
                    key_spec: body.key_spec,
                    encryption_context: body.encryption_context,
                };
                let r = self.call(operation, svc.generate_data_key_without_plaintext(request)).await?;
                info.key_version = Some(r.key_version);
                Ok(json(StatusCode::OK, &r))
            }
            Op::Encrypt => {
                let body: EncryptBody = self.body(req, true).await?;
                if body.plaintext.is_empty() || body.plaintext.len() > MAX_ENCRYPT_PLAINTEXT_BYTES {
                    return Err(ApiError::invalid(
                        "plaintext",
                        format!("must be 1 to {MAX_ENCRYPT_PLAINTEXT_BYTES} bytes; use a data key for more"),
                    ));
                }
                let svc = self.service().await?;
                info.context_sha256 = self.context_digest(&body.encryption_context);
                let request = EncryptRequest {
                    key_id: key,
                    plaintext: body.plaintext,
                    encryption_context: body.encryption_context,
                };
                let r = self.call(operation, svc.encrypt(request)).await?;
                info.key_version = Some(r.key_version);
                Ok(json(StatusCode::OK, &r))
            }
            Op::Decrypt => {
                let mut request: DecryptRequest = self.body(req, true).await?;
                if let Some(k) = &request.key_id {
                    crate::aliases::check_key_ref("key_id", k)?;
                }
                info.context_sha256 = self.context_digest(&request.encryption_context);
                let svc = self.service().await?;
                request.key_id = self.body_key(&svc, operation, "key_id", request.key_id.take()).await?;
                // Authorize on the key the ciphertext names BEFORE anything opens it: a caller
                // who may not use that key must not learn whether the ciphertext authenticates
                // (an oracle on the encryption context) nor what state the key is in.
                let named = self.named_key(&svc, &request.ciphertext_blob).await?;
                info.key_id = Some(named.clone());
                check(identity, operation, Some(&named))?;
                match &request.key_id {
                    // The caller insists on another key: it must be allowed that one too, and
                    // the backend refuses the mismatch (an opaque crypto error).
                    Some(k) => check(identity, operation, Some(k))?,
                    // The backend verifies that the ciphertext really is under the named key.
                    None => request.key_id = Some(named),
                }
                let r = self.call(operation, svc.decrypt(request)).await?;
                // Defence in depth (the backend may have been swapped meanwhile): the plaintext
                // only goes to a caller allowed to decrypt under the key that opened it.
                info.key_id = Some(r.key_id.clone());
                info.key_version = Some(r.key_version);
                check(identity, operation, Some(&r.key_id))?;
                Ok(json(StatusCode::OK, &r))
            }
            Op::ReEncrypt => {
                let mut request: ReEncryptRequest = self.body(req, true).await?;
                if let Some(dest) = &request.destination_key_id {
                    crate::aliases::check_key_ref("destination_key_id", dest)?;
                }
                info.context_sha256 = self.context_digest(&request.source_encryption_context);
                let svc = self.service().await?;
                let destination = request.destination_key_id.take();
                request.destination_key_id = self.body_key(&svc, operation, "destination_key_id", destination).await?;
                // As for decrypt: the source key is authorized before the backend opens it.
                let source = self.named_key(&svc, &request.ciphertext_blob).await?;
                info.key_id = Some(source.clone());
                check(identity, operation, Some(&source))?;
                if let Some(dest) = &request.destination_key_id {
                    check(identity, operation, Some(dest))?;
                }
                let r = self.call(operation, svc.re_encrypt(request)).await?;
                info.key_id = Some(r.source_key_id.clone());
                info.key_version = Some(r.key_version);
                check(identity, operation, Some(&r.source_key_id))?;
                check(identity, operation, Some(&r.key_id))?;
                Ok(json(StatusCode::OK, &r))
            }
        }
    }

    /// A page of the keys `identity` may list. An identity limited to some key patterns gets its
    /// page filled from backend pages of the ids its patterns' literal prefix allows (a range
    /// the backend reads, not the whole store), and a `next_marker` that is one of its own keys:
    /// the backend's marker is the last key of the unfiltered page, which may be a key the
    /// identity may not see. At most [`MAX_LIST_PAGES_SCANNED`] backend pages are read per
    /// request: past that the page is returned as it is, truncated, with the backend's position
    /// as the marker to continue from.
    pub(crate) async fn list_visible(
        &self,
        svc: &EncryptionService,
        identity: &Identity,
        request: ListKeysRequest,
    ) -> Result<ListKeysResponse, ApiError> {
        let operation = Operation::ListKeys;
        if identity.may_on(operation, None) {
            return self.call(operation, svc.list_keys(request)).await;
        }
        let limit = validate_list_limit(request.limit)?;
        let allowed = identity.key_prefix(operation);
        let asked = request.checked_prefix()?.to_owned();
        // The narrower of the two prefixes; none of the identity's keys if they are disjoint.
        let prefix = match (asked.starts_with(&allowed), allowed.starts_with(&asked)) {
            (true, _) => asked,
            (_, true) => allowed,
            _ => return Ok(ListKeysResponse::default()),
        };
        let mut keys = Vec::with_capacity(limit);
        let mut marker = request.marker;
        for _ in 0..MAX_LIST_PAGES_SCANNED {
            let page_request = ListKeysRequest { limit: request.limit, marker, prefix: Some(prefix.clone()) };
            let page = self.call(operation, svc.list_keys(page_request)).await?;
            keys.extend(page.keys.into_iter().filter(|k| identity.may_on(operation, Some(&k.key_id))));
            if keys.len() >= limit {
                let truncated = keys.len() > limit || page.truncated;
                keys.truncate(limit);
                let next_marker = if truncated { keys.last().map(|k| k.key_id.clone()) } else { None };
                return Ok(ListKeysResponse { keys, next_marker, truncated });
            }
            match page.next_marker {
                Some(next) if page.truncated => marker = Some(next),
                _ => return Ok(ListKeysResponse { keys, next_marker: None, truncated: false }),
            }
        }
        Ok(ListKeysResponse { keys, next_marker: marker, truncated: true })
    }

    /// The key id a ciphertext names, read from its header without any cryptography; a blob
    /// that is not a ciphertext of the backend's format is the same opaque `400` the backend
    /// gives for one that does not authenticate.
    async fn named_key(&self, svc: &EncryptionService, ciphertext_blob: &[u8]) -> Result<String, ApiError> {
        svc.ciphertext_key_id(ciphertext_blob).await?.ok_or_else(|| ApiError::from(KmsError::crypto()))
    }

    async fn service(&self) -> Result<Arc<EncryptionService>, ApiError> {
        self.manager.encryption_service().await.ok_or_else(not_running)
    }

    /// Runs one call into the service, timing it for `/metrics`.
    async fn call<T>(
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

    async fn health(&self, req: &Request<Incoming>) -> Result<Resp, ApiError> {
        let live_only = match req.uri().query() {
            None | Some("") | Some("probe=ready") => false,
            Some("probe=live") => true,
            Some(_) => return Err(ApiError::invalid("probe", "must be `live` or `ready`")),
        };
        if live_only {
            return Ok(json(StatusCode::OK, &HealthBody { live: true, ready: false }));
        }
        let ready = match self.manager.encryption_service().await {
            Some(service) => service.health_check().await.unwrap_or(false),
            None => false,
        };
        let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
        Ok(json(status, &HealthBody { live: true, ready }))
    }

    async fn status(&self) -> Result<Resp, ApiError> {
        let status = self.manager.status_response().await;
        let manager = self.manager.manager().await;
        let body = StatusBody {
            status,
            cache: manager.as_ref().map(|m| m.cache_stats()),
            capabilities: manager.as_ref().map(|m| m.backend().capabilities()),
        };
        Ok(json(StatusCode::OK, &body))
    }

    /// configure / reconfigure / start / stop, then persist the result.
    ///
    /// The change and its saving run to completion in a task of their own: a request that
    /// times out or whose client goes away (a reconfigure waits for the old backend's calls
    /// and its close) must not leave the service running one configuration while the data
    /// folder holds another for the next start.
    async fn lifecycle_change(&self, operation: Operation, config: Option<KmsConfig>) -> Result<Resp, ApiError> {
        let manager = self.manager.clone();
        let metrics = self.metrics.clone();
        let store = self.store.clone();
        let lifecycle = self.lifecycle.clone();
        let change = tokio::spawn(async move {
            let _guard = lifecycle.lock_owned().await;
            let started = Instant::now();
            let result = match (operation, config) {
                (Operation::Configure, Some(config)) => manager.configure(config).await,
                (Operation::Reconfigure, Some(config)) => manager.reconfigure(config).await,
                (Operation::Start, None) => manager.start().await,
                (Operation::Stop, None) => manager.stop().await,
                _ => unreachable!("lifecycle_change is only called for lifecycle operations"),
            };
            metrics.observe_backend(operation.as_str(), started.elapsed(), result.as_ref().err().map(KmsError::code));
            result?;
            let status = manager.get_status().await;
            let mut persisted = false;
            if let (Some(store), Some(config)) = (&store, manager.current_config().await) {
                let running = matches!(status, KmsServiceStatus::Running);
                store.save(&PersistedState { config, running }).map_err(|e| {
                    tracing::error!(error = %e, "cannot persist the service configuration");
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "persist_failed",
                        "the change took effect but could not be saved for the next start",
                    )
                })?;
                persisted = true;
            }
            Ok(json(StatusCode::OK, &LifecycleBody { status, persisted }))
        });
        change.await.unwrap_or_else(|_| {
            Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "the lifecycle change failed"))
        })
    }

    /// Reads and parses a JSON body. `required = false` treats an empty body as `{}`.
    async fn body<T: DeserializeOwned + Serialize>(
        &self,
        req: Request<Incoming>,
        required: bool,
    ) -> Result<T, ApiError> {
        let (parts, body) = req.into_parts();
        let limit = self.max_body_bytes;
        let declared = parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if let Some(len) = declared.filter(|len| *len > limit as u64) {
            drain_oversized(body, len).await;
            return Err(ApiError::body_too_large(limit));
        }
        let bytes = Limited::new(body, limit)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<LengthLimitError>().is_some() {
                    ApiError::body_too_large(limit)
                } else {
                    ApiError::invalid("body", "could not be read")
                }
            })?
            .to_bytes();
        if bytes.is_empty() {
            if required {
                return Err(ApiError::invalid("body", "must not be empty"));
            }
            return parse_json(b"{}");
        }
        let is_json = parts.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| {
            let mime = ct.split(';').next().unwrap_or("").trim();
            mime.eq_ignore_ascii_case("application/json")
        });
        if !is_json {
            return Err(ApiError::not_json());
        }
        let parsed = parse_json(&bytes);
        // Best effort: clear the request buffer (it may hold plaintext) when we own it alone.
        if let Ok(mut owned) = bytes.try_into_mut() {
            zeroize::Zeroize::zeroize(&mut owned[..]);
        }
        parsed
    }
}

/// SHA-256 (hex) of the canonical encoding of `context` (`docs/formats.md`).
fn context_sha256(context: &kms_types::types::EncryptionContext) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, &kms_crypto::context::canonical_context(context));
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn not_running() -> ApiError {
    ApiError::from(KmsError::ServiceUnavailable { message: "the kms service is not running".into() })
}

fn check(identity: &Identity, operation: Operation, key_id: Option<&str>) -> Result<(), ApiError> {
    if identity.may_on(operation, key_id) {
        Ok(())
    } else {
        Err(ApiError::forbidden(identity.name(), operation.as_str(), key_id))
    }
}

/// The most of an oversized body that is read and thrown away before its 413 is sent.
const OVERSIZE_DRAIN_BYTES: u64 = 8 << 20;

/// Reads and discards a body refused for its declared length `declared`, when it is at most
/// [`OVERSIZE_DRAIN_BYTES`]: a client that writes its whole request before it reads the answer
/// (hyper's client, most SDKs) then gets the 413 instead of a broken pipe, as the server would
/// otherwise close the connection mid-upload. A larger body is not read; its connection is closed.
pub(crate) async fn drain_oversized(mut body: Incoming, declared: u64) {
    if declared > OVERSIZE_DRAIN_BYTES {
        return;
    }
    let mut left = declared;
    while left > 0 {
        match body.frame().await {
            Some(Ok(frame)) => left = left.saturating_sub(frame.data_ref().map_or(0, |d| d.len() as u64)),
            _ => break,
        }
    }
}

/// A configure body: a `ConfigureKmsRequest` plus the options it has no field for (`tls`,
/// `cache_coherence_seconds`, see [`ConfigureBody`]), each part parsed with errors that name
/// the field.
fn configure_body(mut body: serde_json::Map<String, serde_json::Value>) -> Result<ConfigureBody, ApiError> {
    let tls = body.remove("tls").filter(|v| !v.is_null());
    let coherence = body.remove("cache_coherence_seconds").filter(|v| !v.is_null());
    let to_bytes = |v: &serde_json::Value| serde_json::to_vec(v).unwrap_or_default();
    let request: ConfigureKmsRequest = parse_json(&to_bytes(&serde_json::Value::Object(body)))?;
    let mut parsed = ConfigureBody::from(request);
    if let Some(tls) = tls {
        parsed.tls =
            Some(serde_json::from_value(tls).map_err(|e| ApiError::invalid("tls", strip_position(&e.to_string())))?);
    }
    if let Some(seconds) = coherence {
        let seconds =
            seconds.as_u64().ok_or_else(|| ApiError::invalid("cache_coherence_seconds", "must be a whole number"))?;
        parsed.cache_coherence_seconds = Some(seconds);
    }
    Ok(parsed)
}

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned().collect()
}

fn list_query(query: Option<&str>) -> Result<ListKeysRequest, ApiError> {
    let mut request = ListKeysRequest::default();
    for (name, value) in query_pairs(query) {
        match name.as_str() {
            "limit" => {
                let n = value.parse::<u32>().map_err(|_| ApiError::invalid("limit", "must be a whole number"))?;
                request.limit = Some(n);
            }
            "marker" => {
                validate_key_id("marker", &value)?;
                request.marker = Some(value);
            }
            "prefix" => {
                request.prefix = Some(value);
                request.checked_prefix()?;
            }
            other => return Err(ApiError::invalid(other.to_owned(), "unknown query parameter")),
        }
    }
    validate_list_limit(request.limit)?;
    Ok(request)
}

fn deletion_query(query: Option<&str>) -> Result<u32, ApiError> {
    let mut days = None;
    for (name, value) in query_pairs(query) {
        match name.as_str() {
            "pending_window_in_days" => {
                days = Some(
                    value
                        .parse::<u32>()
                        .map_err(|_| ApiError::invalid("pending_window_in_days", "must be a whole number of days"))?,
                );
            }
            other => return Err(ApiError::invalid(other.to_owned(), "unknown query parameter")),
        }
    }
    Ok(validate_pending_window(days)?)
}

/// A JSON answer; like every JSON answer, it ends with a newline (friendly to `curl` and shells).
fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Resp {
    let mut body = serde_json::to_vec(value).expect("response types serialize");
    body.push(b'\n');
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A binary answer (a backup bundle).
fn bytes_response(bytes: Vec<u8>) -> Resp {
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    response
}

fn text_response(text: String) -> Resp {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(crate::metrics::CONTENT_TYPE));
    response
}

fn error_response(err: &ApiError) -> Resp {
    let mut body = err.body();
    body.push(b'\n');
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = err.status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if err.status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(http::header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if err.status == StatusCode::METHOD_NOT_ALLOWED {
        // The exact set varies by route; every route accepts one of these.
        response.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, POST, PUT, DELETE"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_answers_end_with_a_newline() {
        let ok = json(StatusCode::OK, &serde_json::json!({"a": 1}));
        let bytes = futures_body(ok);
        assert_eq!(bytes.last(), Some(&b'\n'));
        let err = error_response(&ApiError::invalid("limit", "too big"));
        let bytes = futures_body(err);
        assert_eq!(bytes.last(), Some(&b'\n'));
        let parsed: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(parsed["error"]["field"], "limit");
    }

    fn futures_body(response: Resp) -> Bytes {
        let body = response.into_body();
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(body.collect()).unwrap().to_bytes()
    }

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

    #[test]
    fn queries_are_checked() {
        assert_eq!(list_query(Some("limit=5&marker=k1")).unwrap().limit, Some(5));
        assert_eq!(list_query(Some("limit=0")).unwrap_err().field.as_deref(), Some("limit"));
        assert_eq!(list_query(Some("limit=x")).unwrap_err().field.as_deref(), Some("limit"));
        assert_eq!(list_query(Some("marker=a/b")).unwrap_err().field.as_deref(), Some("marker"));
        assert_eq!(list_query(Some("color=red")).unwrap_err().field.as_deref(), Some("color"));
        assert_eq!(deletion_query(None).unwrap(), 30);
        assert_eq!(deletion_query(Some("pending_window_in_days=7")).unwrap(), 7);
        for bad in ["pending_window_in_days=6", "pending_window_in_days=31", "pending_window_in_days=-1"] {
            assert_eq!(deletion_query(Some(bad)).unwrap_err().field.as_deref(), Some("pending_window_in_days"));
        }
    }
}
