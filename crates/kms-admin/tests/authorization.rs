//! The authorization matrix: no token, wrong tokens, and each identity against each operation
//! and key pattern.

mod common;

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::{ADMIN, APP, AUDITOR, Http, TestServer};
use http::{Method, StatusCode};
use kms_types::error::Result;
use kms_types::types::{
    BackendCapabilities, CancelKeyDeletionRequest, CancelKeyDeletionResponse, CreateKeyRequest, CreateKeyResponse,
    DecryptRequest, DecryptResponse, DeleteKeyRequest, DeleteKeyResponse, DescribeKeyRequest, DescribeKeyResponse,
    EncryptRequest, EncryptResponse, GenerateDataKeyRequest, GenerateDataKeyResponse, ListKeysRequest,
    ListKeysResponse, ReEncryptRequest, ReEncryptResponse,
};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_valid_token_are_401_whatever_the_path() {
    let server = TestServer::start().await;

    let paths = [
        (Method::GET, "/kms/v1/status"),
        (Method::GET, "/kms/v1/keys"),
        (Method::POST, "/kms/v1/keys"),
        (Method::GET, "/kms/v1/keys/app-1"),
        (Method::POST, "/kms/v1/decrypt"),
        (Method::GET, "/metrics"),
        (Method::GET, "/kms/v1/no-such-route"),
        (Method::DELETE, "/nowhere"),
        (Method::GET, "/kms/v1/keys/..%2F..%2Fetc"),
    ];
    let headers: [Option<&str>; 6] = [
        None,
        Some("Bearer wrong-token"),
        Some("Bearer "),
        Some("Basic YWRtaW46YWRtaW4="),
        Some(ADMIN),                          // no scheme
        Some("Bearer admin-token-012345678"), // a prefix of the real one
    ];
    for (method, path) in &paths {
        for header in headers {
            let mut req = http::Request::builder().method(method.clone()).uri(server.url(path));
            if let Some(h) = header {
                req = req.header("authorization", h);
            }
            let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Full<bytes::Bytes>>();
            let resp = client.request(req.body(Default::default()).unwrap()).await.unwrap();
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{method} {path} with {header:?}");
            assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_identity_gets_exactly_its_grants() {
    let server = TestServer::start().await;
    let http = Http::new(&server);
    for name in ["app-1", "other"] {
        http.ok(Method::POST, "/kms/v1/keys", ADMIN, Some(json!({"key_name": name}))).await;
    }
    let blob_app =
        http.ok(Method::POST, "/kms/v1/keys/app-1/generate-data-key", ADMIN, None).await["ciphertext_blob"].clone();
    let blob_other =
        http.ok(Method::POST, "/kms/v1/keys/other/generate-data-key", ADMIN, None).await["ciphertext_blob"].clone();
    let pt = STANDARD.encode(b"x");

    // (method, path template with {k}, body) for every operation.
    let ops: Vec<(&str, Method, &str, Option<Value>)> = vec![
        ("status", Method::GET, "/kms/v1/status", None),
        ("get_config", Method::GET, "/kms/v1/config", None),
        ("metrics", Method::GET, "/metrics", None),
        ("list_keys", Method::GET, "/kms/v1/keys", None),
        ("describe_key", Method::GET, "/kms/v1/keys/{k}", None),
        ("generate_data_key", Method::POST, "/kms/v1/keys/{k}/generate-data-key", None),
        (
            "generate_data_key_without_plaintext",
            Method::POST,
            "/kms/v1/keys/{k}/generate-data-key-without-plaintext",
            None,
        ),
        ("encrypt", Method::POST, "/kms/v1/keys/{k}/encrypt", Some(json!({"plaintext": pt}))),
        ("decrypt", Method::POST, "/kms/v1/decrypt", None),
        ("tag_key", Method::POST, "/kms/v1/keys/{k}/tags", Some(json!({"tags": {"a": "b"}}))),
        ("untag_key", Method::POST, "/kms/v1/keys/{k}/untag", Some(json!({"tag_keys": ["a"]}))),
        ("update_key_description", Method::PUT, "/kms/v1/keys/{k}/description", Some(json!({"description": "d"}))),
        ("rotate_key", Method::POST, "/kms/v1/keys/{k}/rotate", None),
        ("clear_cache", Method::POST, "/kms/v1/cache/clear", None),
        ("create_key", Method::POST, "/kms/v1/keys", Some(json!({"key_name": "{k}-new"}))),
        ("disable_key", Method::POST, "/kms/v1/keys/{k}/disable", None),
        ("enable_key", Method::POST, "/kms/v1/keys/{k}/enable", None),
        ("schedule_key_deletion", Method::DELETE, "/kms/v1/keys/{k}", None),
        ("cancel_key_deletion", Method::POST, "/kms/v1/keys/{k}/cancel-deletion", None),
        ("import_key", Method::POST, "/kms/v1/import", None),
        ("adopt_key", Method::POST, "/kms/v1/adopt", None),
    ];
    // What each identity may do (operation, key): app may generate data keys and decrypt under
    // app-*; the auditor may read; the admin may do everything.
    let allowed = |who: &str, op: &str, key: &str| -> bool {
        match who {
            "admin" => true,
            "app" => matches!(op, "generate_data_key" | "decrypt") && key.starts_with("app-"),
            "auditor" => matches!(op, "status" | "get_config" | "metrics" | "list_keys" | "describe_key"),
            _ => false,
        }
    };
    let mut failures = Vec::new();
    for (who, token) in [("app", APP), ("auditor", AUDITOR), ("admin", ADMIN)] {
        for key in ["app-1", "other"] {
            for (op, method, template, body) in &ops {
                let path = template.replace("{k}", key);
                let body = match *op {
                    "decrypt" => Some(json!({"ciphertext_blob": if key == "app-1" { &blob_app } else { &blob_other }})),
                    "create_key" => Some(json!({"key_name": format!("{key}-new-{who}")})),
                    "import_key" => Some(json!({
                        "key_id": format!("{key}-imported-{who}"), "material": STANDARD.encode([7u8; 32]),
                        "key_state": "enabled", "creation_date": "2026-10-01T10:00:00Z"
                    })),
                    "adopt_key" => Some(json!({"key_id": format!("{key}-adopted-{who}")})),
                    _ => body.clone(),
                };
                let reply = http.call(method.clone(), &path, token, body).await;
                let want = allowed(who, op, key);
                let got = reply.status;
                // The memory backend has no import or adoption: an authorized call reaches it and is 501.
                let ok = match (want, *op) {
                    (true, "import_key" | "adopt_key") => got == StatusCode::NOT_IMPLEMENTED,
                    (true, _) => got.is_success(),
                    (false, _) => got == StatusCode::FORBIDDEN && reply.code() == "forbidden",
                };
                if !ok {
                    failures.push(format!(
                        "{who} {op} {key}: want {}, got {got} {}",
                        if want { "2xx" } else { "403" },
                        String::from_utf8_lossy(&reply.body)
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Lifecycle operations: only the admin.
    for (method, path) in
        [(Method::POST, "/kms/v1/stop"), (Method::POST, "/kms/v1/start"), (Method::POST, "/kms/v1/reconfigure")]
    {
        for token in [APP, AUDITOR] {
            let reply = http.call(method.clone(), path, token, Some(json!({}))).await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
        }
    }

    // The auditor's list shows every key; a list is filtered to the keys an identity may list.
    let listed = http.ok(Method::GET, "/kms/v1/keys", AUDITOR, None).await;
    assert!(listed["keys"].as_array().unwrap().len() >= 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decrypt_releases_plaintext_only_for_keys_the_caller_may_use() {
    let server = TestServer::start().await;
    let http = Http::new(&server);
    http.ok(Method::POST, "/kms/v1/keys", ADMIN, Some(json!({"key_name": "secret"}))).await;
    let dk = http.ok(Method::POST, "/kms/v1/keys/secret/generate-data-key", ADMIN, None).await;
    // The app names an app-* key but the ciphertext is under `secret`: refused on the key the
    // ciphertext names, before the backend sees it.
    let reply = http
        .call(
            Method::POST,
            "/kms/v1/decrypt",
            APP,
            Some(json!({"ciphertext_blob": dk["ciphertext_blob"], "key_id": "app-x"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(!String::from_utf8_lossy(&reply.body).contains(dk["plaintext_key"].as_str().unwrap()));
    let reply =
        http.call(Method::POST, "/kms/v1/decrypt", APP, Some(json!({"ciphertext_blob": dk["ciphertext_blob"]}))).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    // An app may not create keys, named or not.
    let reply = http.call(Method::POST, "/kms/v1/keys", APP, Some(json!({"key_name": "app-2"}))).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_has_one_line_per_request_and_no_secrets() {
    let dir = common::temp_dir("audit");
    let log = dir.join("audit.log");
    let mut options = common::Options::default();
    options.config.audit_log = Some(log.clone());
    let server = TestServer::with(options).await;
    let http = Http::new(&server);
    http.ok(Method::POST, "/kms/v1/keys", ADMIN, Some(json!({"key_name": "app-1"}))).await;
    let ctx = json!({"tenant": "context-value-must-not-leak"});
    let dk = http
        .ok(Method::POST, "/kms/v1/keys/app-1/generate-data-key", APP, Some(json!({"encryption_context": ctx})))
        .await;
    http.ok(
        Method::POST,
        "/kms/v1/decrypt",
        APP,
        Some(json!({"ciphertext_blob": dk["ciphertext_blob"], "encryption_context": ctx})),
    )
    .await;
    let pt = STANDARD.encode(b"plaintext-must-not-leak");
    http.ok(Method::POST, "/kms/v1/keys/app-1/encrypt", ADMIN, Some(json!({"plaintext": pt}))).await;
    http.call(Method::GET, "/kms/v1/status", "wrong-token", None).await;
    http.call(Method::POST, "/kms/v1/keys/other/generate-data-key", APP, None).await;
    server.stop().await;
    // The writer flushes when its queue runs dry; give it a moment.
    let mut text = String::new();
    for _ in 0..50 {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().count() >= 6 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 6, "{text}");
    assert_eq!(lines[1]["identity"], "app");
    assert_eq!(lines[1]["operation"], "generate_data_key");
    assert_eq!(lines[1]["key_id"], "app-1");
    assert_eq!(lines[1]["outcome"], "ok");
    assert!(lines[1]["latency_us"].is_u64());
    assert_eq!(lines[2]["key_id"], "app-1");
    assert_eq!(lines[4]["status"], 401);
    assert_eq!(lines[4]["identity"], Value::Null);
    assert_eq!((lines[5]["status"].as_u64(), lines[5]["outcome"].as_str()), (Some(403), Some("forbidden")));
    for secret in [
        "context-value-must-not-leak",
        "tenant",
        dk["plaintext_key"].as_str().unwrap(),
        dk["ciphertext_blob"].as_str().unwrap(),
        &pt,
        common::ADMIN,
        common::APP,
        "wrong-token",
    ] {
        assert!(!text.contains(secret), "audit log leaks {secret}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_list_never_names_a_key_the_caller_may_not_list() {
    const LISTER: &str = "lister-token-0123456789";
    let mut options = common::Options::default();
    options.config.identities.push(kms_admin::auth::IdentityConfig {
        name: "lister".into(),
        token_sha256: kms_admin::auth::hash_token(LISTER),
        allow: vec![kms_admin::auth::Grant { operations: vec!["list_keys".into()], keys: vec!["app-*".into()] }],
    });
    let server = TestServer::with(options).await;
    let http = Http::new(&server);
    for name in ["app-1", "app-2", "hidden-a", "hidden-b", "zz-hidden"] {
        http.ok(Method::POST, "/kms/v1/keys", ADMIN, Some(json!({"key_name": name}))).await;
    }
    for limit in [1, 2, 3, 100] {
        let mut seen = Vec::new();
        let mut marker: Option<String> = None;
        for _ in 0..20 {
            let path = match &marker {
                Some(m) => format!("/kms/v1/keys?limit={limit}&marker={m}"),
                None => format!("/kms/v1/keys?limit={limit}"),
            };
            let reply = http.call(Method::GET, &path, LISTER, None).await;
            assert_eq!(reply.status, StatusCode::OK, "{path}");
            let text = String::from_utf8_lossy(&reply.body).into_owned();
            assert!(!text.contains("hidden"), "limit {limit}: the list names a key the lister may not see: {text}");
            let page = reply.json();
            seen.extend(page["keys"].as_array().unwrap().iter().map(|k| k["key_id"].as_str().unwrap().to_owned()));
            assert!(page["keys"].as_array().unwrap().len() <= limit, "{text}");
            if page["truncated"] != true {
                break;
            }
            marker = page["next_marker"].as_str().map(str::to_owned);
        }
        assert_eq!(seen, ["app-1", "app-2"], "limit {limit}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_limited_list_reads_only_its_prefix_and_a_bounded_number_of_pages() {
    const LISTER: &str = "lister-token-0123456789";
    const SCANNER: &str = "scanner-token-0123456789";
    let backend = Arc::new(Counting {
        inner: kms_core::mock::MemoryBackend::new(),
        opened: Default::default(),
        listed: Default::default(),
    });
    let mut options = common::Options { custom_backend: Some(backend.clone()), ..Default::default() };
    for (name, token, pattern) in [("lister", LISTER, "app-*"), ("scanner", SCANNER, "*-mine")] {
        options.config.identities.push(kms_admin::auth::IdentityConfig {
            name: name.into(),
            token_sha256: kms_admin::auth::hash_token(token),
            allow: vec![kms_admin::auth::Grant { operations: vec!["list_keys".into()], keys: vec![pattern.into()] }],
        });
    }
    let server = TestServer::with(options).await;
    let http = Http::new(&server);
    let mut names: Vec<String> = (0..40).map(|i| format!("hidden-{i:02}")).collect();
    names.extend(["app-1".into(), "app-2".into(), "zz-mine".into()]);
    for name in &names {
        http.ok(Method::POST, "/kms/v1/keys", ADMIN, Some(json!({"key_name": name}))).await;
    }
    // The pattern's literal prefix reaches the backend: only that range is read.
    backend.listed.lock().unwrap().clear();
    let page = http.ok(Method::GET, "/kms/v1/keys?limit=100", LISTER, None).await;
    let ids: Vec<&str> = page["keys"].as_array().unwrap().iter().map(|k| k["key_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["app-1", "app-2"]);
    assert_eq!(*backend.listed.lock().unwrap(), [Some("app-".to_owned())]);
    // A narrower prefix asked for is passed on; a disjoint one reads nothing.
    backend.listed.lock().unwrap().clear();
    let page = http.ok(Method::GET, "/kms/v1/keys?prefix=app-2", LISTER, None).await;
    assert_eq!(page["keys"].as_array().unwrap().len(), 1);
    let page = http.ok(Method::GET, "/kms/v1/keys?prefix=hidden-", LISTER, None).await;
    assert!(page["keys"].as_array().unwrap().is_empty());
    assert_eq!(*backend.listed.lock().unwrap(), [Some("app-2".to_owned())]);
    let bad = http.call(Method::GET, "/kms/v1/keys?prefix=app-*", ADMIN, None).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // A pattern with no literal prefix: each request reads a bounded number of pages and
    // returns a marker to continue; following it finds the caller's key.
    let mut marker: Option<String> = None;
    let mut seen = Vec::new();
    let mut requests = 0;
    loop {
        requests += 1;
        assert!(requests <= 10, "the scan never ended");
        let path = match &marker {
            Some(m) => format!("/kms/v1/keys?limit=1&marker={m}"),
            None => "/kms/v1/keys?limit=1".to_owned(),
        };
        backend.listed.lock().unwrap().clear();
        let page = http.ok(Method::GET, &path, SCANNER, None).await;
        assert!(backend.listed.lock().unwrap().len() <= 16, "one request read more than 16 backend pages");
        seen.extend(page["keys"].as_array().unwrap().iter().map(|k| k["key_id"].as_str().unwrap().to_owned()));
        if page["truncated"] != true {
            break;
        }
        marker = page["next_marker"].as_str().map(str::to_owned);
        assert!(marker.is_some(), "a truncated page has no marker");
    }
    assert_eq!(seen, ["zz-mine"]);
    assert!(requests >= 3, "43 keys in pages of one need several bounded requests, took {requests}");
    server.stop().await;
}

/// The memory backend, counting the decrypts and re-encrypts that reach it.
struct Counting {
    inner: kms_core::mock::MemoryBackend,
    opened: std::sync::atomic::AtomicUsize,
    /// The prefix of every `list_keys` that reached the backend.
    listed: std::sync::Mutex<Vec<Option<String>>>,
}

impl Counting {
    fn opened(&self) -> usize {
        self.opened.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl kms_core::backends::KmsBackend for Counting {
    async fn create_key(&self, r: CreateKeyRequest) -> Result<CreateKeyResponse> {
        self.inner.create_key(r).await
    }
    async fn encrypt(&self, r: EncryptRequest) -> Result<EncryptResponse> {
        self.inner.encrypt(r).await
    }
    async fn decrypt(&self, r: DecryptRequest) -> Result<DecryptResponse> {
        self.opened.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.decrypt(r).await
    }
    async fn generate_data_key(&self, r: GenerateDataKeyRequest) -> Result<GenerateDataKeyResponse> {
        self.inner.generate_data_key(r).await
    }
    async fn describe_key(&self, r: DescribeKeyRequest) -> Result<DescribeKeyResponse> {
        self.inner.describe_key(r).await
    }
    async fn list_keys(&self, r: ListKeysRequest) -> Result<ListKeysResponse> {
        self.listed.lock().unwrap().push(r.prefix.clone());
        self.inner.list_keys(r).await
    }
    async fn delete_key(&self, r: DeleteKeyRequest) -> Result<DeleteKeyResponse> {
        self.inner.delete_key(r).await
    }
    async fn cancel_key_deletion(&self, r: CancelKeyDeletionRequest) -> Result<CancelKeyDeletionResponse> {
        self.inner.cancel_key_deletion(r).await
    }
    async fn health_check(&self) -> Result<bool> {
        self.inner.health_check().await
    }
    fn capabilities(&self) -> BackendCapabilities {
        BackendCapabilities { re_encrypt: true, ..BackendCapabilities::default() }
    }
    fn ciphertext_key_id(&self, ciphertext_blob: &[u8]) -> Option<String> {
        self.inner.ciphertext_key_id(ciphertext_blob)
    }
    async fn re_encrypt(&self, r: ReEncryptRequest) -> Result<ReEncryptResponse> {
        self.opened.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.re_encrypt(r).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decrypt_and_re_encrypt_are_authorized_before_the_backend_opens_anything() {
    const MOVER: &str = "mover-token-0123456789";
    let backend = Arc::new(Counting {
        inner: kms_core::mock::MemoryBackend::new(),
        opened: Default::default(),
        listed: Default::default(),
    });
    let mut options = common::Options { custom_backend: Some(backend.clone()), ..Default::default() };
    options.config.identities.push(kms_admin::auth::IdentityConfig {
        name: "mover".into(),
        token_sha256: kms_admin::auth::hash_token(MOVER),
        allow: vec![kms_admin::auth::Grant { operations: vec!["re_encrypt".into()], keys: vec!["app-*".into()] }],
    });
    let server = TestServer::with(options).await;
    let http = Http::new(&server);
    for name in ["app-1", "app-2", "other-key", "doomed"] {
        http.ok(Method::POST, "/kms/v1/keys", ADMIN, Some(json!({"key_name": name}))).await;
    }
    let right = json!({"tenant": "t-1"});
    let wrong = json!({"tenant": "t-2"});
    let pt = STANDARD.encode(b"secret bytes");
    let seal = |key: &'static str| {
        let http = &http;
        let (pt, right) = (pt.clone(), right.clone());
        async move {
            let path = format!("/kms/v1/keys/{key}/encrypt");
            let body = json!({"plaintext": pt, "encryption_context": right});
            http.ok(Method::POST, &path, ADMIN, Some(body)).await["ciphertext_blob"].clone()
        }
    };
    let other = seal("other-key").await;
    let doomed = seal("doomed").await;
    let mine = seal("app-1").await;
    http.ok(Method::DELETE, "/kms/v1/keys/doomed?pending_window_in_days=7", ADMIN, None).await;
    let garbage = STANDARD.encode(b"not a ciphertext of any backend");

    // Decrypt: a valid ciphertext under a key the app may not use gets the same answer whether
    // its context is right or wrong, and whatever state its key is in; nothing is opened.
    let before = backend.opened();
    let mut forbidden = Vec::new();
    for (blob, ctx) in [(&other, &right), (&other, &wrong), (&doomed, &right)] {
        for key_id in [None, Some("app-1")] {
            let mut body = json!({"ciphertext_blob": blob, "encryption_context": ctx});
            if let Some(k) = key_id {
                body["key_id"] = json!(k);
            }
            let reply = http.call(Method::POST, "/kms/v1/decrypt", APP, Some(body)).await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", String::from_utf8_lossy(&reply.body));
            assert_eq!(reply.code(), "forbidden");
            if blob == &other {
                forbidden.push(reply.body);
            }
        }
    }
    assert!(forbidden.windows(2).all(|w| w[0] == w[1]), "the 403 bodies differ: {forbidden:?}");
    assert_eq!(backend.opened(), before, "the backend was asked to decrypt for an unauthorized caller");

    // Bytes that are no ciphertext: the backend's own answer for garbage (400 crypto_error),
    // without asking it.
    let reply = http.call(Method::POST, "/kms/v1/decrypt", APP, Some(json!({"ciphertext_blob": garbage}))).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.code(), "crypto_error");
    assert_eq!(backend.opened(), before);
    let admin_garbage =
        http.call(Method::POST, "/kms/v1/decrypt", ADMIN, Some(json!({"ciphertext_blob": garbage}))).await;
    assert_eq!((admin_garbage.status, admin_garbage.body), (reply.status, reply.body));

    // The app's own ciphertext opens (one backend call); with a wrong context it is a 400.
    let opened = http
        .ok(Method::POST, "/kms/v1/decrypt", APP, Some(json!({"ciphertext_blob": mine, "encryption_context": right})))
        .await;
    assert_eq!((opened["key_id"].as_str(), opened["plaintext"].as_str()), (Some("app-1"), Some(pt.as_str())));
    let reply = http
        .call(Method::POST, "/kms/v1/decrypt", APP, Some(json!({"ciphertext_blob": mine, "encryption_context": wrong})))
        .await;
    assert_eq!((reply.status, reply.code().as_str()), (StatusCode::BAD_REQUEST, "crypto_error"));
    assert_eq!(backend.opened(), before + 2);
    // Naming another allowed key than the ciphertext's: refused as a mismatch, as before.
    let reply = http
        .call(
            Method::POST,
            "/kms/v1/decrypt",
            APP,
            Some(json!({"ciphertext_blob": mine, "encryption_context": right, "key_id": "app-2"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);

    // Re-encrypt: the source key is checked before the backend opens the ciphertext.
    let before = backend.opened();
    let mut forbidden = Vec::new();
    for (blob, ctx) in [(&other, &right), (&other, &wrong), (&doomed, &right)] {
        for dest in [None, Some("app-2")] {
            let mut body = json!({"ciphertext_blob": blob, "source_encryption_context": ctx});
            if let Some(d) = dest {
                body["destination_key_id"] = json!(d);
            }
            let reply = http.call(Method::POST, "/kms/v1/re-encrypt", MOVER, Some(body)).await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", String::from_utf8_lossy(&reply.body));
            if blob == &other {
                forbidden.push(reply.body);
            }
        }
    }
    assert!(forbidden.windows(2).all(|w| w[0] == w[1]), "the 403 bodies differ: {forbidden:?}");
    let reply = http.call(Method::POST, "/kms/v1/re-encrypt", MOVER, Some(json!({"ciphertext_blob": garbage}))).await;
    assert_eq!((reply.status, reply.code().as_str()), (StatusCode::BAD_REQUEST, "crypto_error"));
    // An allowed source to a destination the mover may not use: refused, unopened.
    let reply = http
        .call(
            Method::POST,
            "/kms/v1/re-encrypt",
            MOVER,
            Some(
                json!({"ciphertext_blob": mine, "source_encryption_context": right, "destination_key_id": "other-key"}),
            ),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(backend.opened(), before, "the backend was asked to re-encrypt for an unauthorized caller");
    let moved = http
        .ok(
            Method::POST,
            "/kms/v1/re-encrypt",
            MOVER,
            Some(json!({"ciphertext_blob": mine, "source_encryption_context": right, "destination_key_id": "app-2"})),
        )
        .await;
    assert_eq!((moved["source_key_id"].as_str(), moved["key_id"].as_str()), (Some("app-1"), Some("app-2")));
    assert_eq!(backend.opened(), before + 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_needs_its_own_grant_and_a_backend_that_has_backups() {
    let server = TestServer::start().await;
    let http = Http::new(&server);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let anonymous = http::Request::post(server.url("/kms/v1/backup")).body(Default::default()).unwrap();
    assert_eq!(client.request(anonymous).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    // Neither the app nor the auditor ("read") holds `backup`: a bundle is every key's record.
    for token in [APP, AUDITOR] {
        let reply = http.call(Method::POST, "/kms/v1/backup", token, None).await;
        assert_eq!((reply.status, reply.code().as_str()), (StatusCode::FORBIDDEN, "forbidden"));
    }
    // The admin holds it; this server's backend (in memory) has no backup: 501, named.
    let reply = http.call(Method::POST, "/kms/v1/backup", ADMIN, None).await;
    assert_eq!((reply.status, reply.code().as_str()), (StatusCode::NOT_IMPLEMENTED, "unsupported"));
    assert!(String::from_utf8_lossy(&reply.body).contains("backup"), "{:?}", reply.body);
    server.stop().await;
}
