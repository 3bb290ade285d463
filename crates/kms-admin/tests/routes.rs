//! Every route over real loopback HTTP, with the admin identity.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::{ADMIN, Http, TestServer};
use http::{Method, StatusCode};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_as_documented() {
    let server = TestServer::start().await;
    let http = Http::new(&server);

    // Health and metrics.
    let health = http.raw(Method::GET, "/health", None, None, "").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json(), json!({"live": true, "ready": true}));
    let live = http.raw(Method::GET, "/health?probe=live", None, None, "").await;
    assert_eq!(live.status, StatusCode::OK);

    // Service routes.
    let status = http.ok(Method::GET, "/kms/v1/status", ADMIN, None).await;
    assert_eq!(status["status"]["state"], "running");
    assert_eq!(status["backend"], "local");
    assert_eq!(status["healthy"], true);
    assert!(status["cache"].is_object());
    let config = http.ok(Method::GET, "/kms/v1/config", ADMIN, None).await;
    assert_eq!(config["config"]["backend"], "local");
    let cleared = http.ok(Method::POST, "/kms/v1/cache/clear", ADMIN, None).await;
    assert_eq!(cleared["cleared"], true);

    // Keys.
    let created = http
        .call(
            Method::POST,
            "/kms/v1/keys",
            ADMIN,
            Some(json!({"key_name": "app-1", "description": "first", "tags": {"team": "a"}})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.json()["key_id"], "app-1");
    let generated = http.ok(Method::POST, "/kms/v1/keys", ADMIN, None).await;
    let generated_id = generated["key_id"].as_str().unwrap().to_owned();
    assert!(!generated_id.is_empty());

    let list = http.ok(Method::GET, "/kms/v1/keys?limit=1", ADMIN, None).await;
    assert_eq!(list["keys"].as_array().unwrap().len(), 1);
    assert_eq!(list["truncated"], true);
    let marker = list["next_marker"].as_str().unwrap();
    let rest = http.ok(Method::GET, &format!("/kms/v1/keys?marker={marker}"), ADMIN, None).await;
    assert_eq!(rest["keys"].as_array().unwrap().len(), 1);

    let described = http.ok(Method::GET, "/kms/v1/keys/app-1", ADMIN, None).await;
    assert_eq!(described["key_metadata"]["description"], "first");
    assert_eq!(described["key_metadata"]["key_state"], "enabled");

    let d = http.ok(Method::POST, "/kms/v1/keys/app-1/disable", ADMIN, None).await;
    assert_eq!(d["key_metadata"]["key_state"], "disabled");
    let e = http.ok(Method::POST, "/kms/v1/keys/app-1/enable", ADMIN, Some(json!({}))).await;
    assert_eq!(e["key_metadata"]["key_state"], "enabled");
    let r = http.ok(Method::POST, "/kms/v1/keys/app-1/rotate", ADMIN, None).await;
    assert_eq!(r["key_metadata"]["current_version"], 2);
    let u =
        http.ok(Method::PUT, "/kms/v1/keys/app-1/description", ADMIN, Some(json!({"description": "renamed"}))).await;
    assert_eq!(u["key_metadata"]["description"], "renamed");
    let t = http.ok(Method::POST, "/kms/v1/keys/app-1/tags", ADMIN, Some(json!({"tags": {"env": "prod"}}))).await;
    assert_eq!(t["key_metadata"]["tags"], json!({"team": "a", "env": "prod"}));
    let t = http.ok(Method::POST, "/kms/v1/keys/app-1/untag", ADMIN, Some(json!({"tag_keys": ["team"]}))).await;
    assert_eq!(t["key_metadata"]["tags"], json!({"env": "prod"}));

    // Crypto.
    let ctx = json!({"bucket": "photos"});
    let dk = http
        .ok(Method::POST, "/kms/v1/keys/app-1/generate-data-key", ADMIN, Some(json!({"encryption_context": ctx})))
        .await;
    assert_eq!(STANDARD.decode(dk["plaintext_key"].as_str().unwrap()).unwrap().len(), 32);
    let opened = http
        .ok(
            Method::POST,
            "/kms/v1/decrypt",
            ADMIN,
            Some(json!({"ciphertext_blob": dk["ciphertext_blob"], "encryption_context": ctx})),
        )
        .await;
    assert_eq!(opened["plaintext"], dk["plaintext_key"]);
    assert_eq!(opened["key_id"], "app-1");
    let dk128 =
        http.ok(Method::POST, "/kms/v1/keys/app-1/generate-data-key", ADMIN, Some(json!({"key_spec": "aes128"}))).await;
    assert_eq!(STANDARD.decode(dk128["plaintext_key"].as_str().unwrap()).unwrap().len(), 16);
    let wrapped = http.ok(Method::POST, "/kms/v1/keys/app-1/generate-data-key-without-plaintext", ADMIN, None).await;
    assert!(wrapped.get("plaintext_key").is_none());
    assert!(wrapped["ciphertext_blob"].is_string());

    let enc = http
        .ok(Method::POST, "/kms/v1/keys/app-1/encrypt", ADMIN, Some(json!({"plaintext": STANDARD.encode(b"hello")})))
        .await;
    let re = http
        .ok(
            Method::POST,
            "/kms/v1/re-encrypt",
            ADMIN,
            Some(json!({"ciphertext_blob": enc["ciphertext_blob"], "destination_key_id": generated_id})),
        )
        .await;
    assert_eq!(re["source_key_id"], "app-1");
    assert_eq!(re["key_id"], generated_id.as_str());
    let dec =
        http.ok(Method::POST, "/kms/v1/decrypt", ADMIN, Some(json!({"ciphertext_blob": re["ciphertext_blob"]}))).await;
    assert_eq!(STANDARD.decode(dec["plaintext"].as_str().unwrap()).unwrap(), b"hello");

    // Deletion.
    let del = http.ok(Method::DELETE, "/kms/v1/keys/app-1?pending_window_in_days=7", ADMIN, None).await;
    assert_eq!(del["key_state"], "pending_deletion");
    let refused = http.call(Method::POST, "/kms/v1/keys/app-1/generate-data-key", ADMIN, None).await;
    assert_eq!((refused.status, refused.code().as_str()), (StatusCode::CONFLICT, "invalid_key_state"));
    let cancel = http.ok(Method::POST, "/kms/v1/keys/app-1/cancel-deletion", ADMIN, None).await;
    assert_eq!(cancel["key_state"], "disabled");

    // Metrics saw all of it.
    let metrics = http.raw(Method::GET, "/metrics", Some(ADMIN), None, "").await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = String::from_utf8(metrics.body.to_vec()).unwrap();
    assert!(text.contains(r#"kms_http_requests_total{operation="decrypt",status="200"} 2"#), "{text}");
    assert!(text.contains("kms_backend_call_duration_seconds_bucket"), "{text}");
    assert!(text.contains("kms_cache_hits_total"), "{text}");

    // Lifecycle: stop, start, configure, reconfigure.
    let stopped = http.ok(Method::POST, "/kms/v1/stop", ADMIN, None).await;
    assert_eq!(stopped["status"]["state"], "stopped");
    let unavailable = http.call(Method::GET, "/kms/v1/keys/app-1", ADMIN, None).await;
    assert_eq!(
        (unavailable.status, unavailable.code().as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable")
    );
    let not_ready = http.raw(Method::GET, "/health", None, None, "").await;
    assert_eq!(not_ready.status, StatusCode::SERVICE_UNAVAILABLE);
    let configure_body = json!({"backend_type": "local", "key_dir": "/unused",
        "master_key": {"type": "insecure_plaintext_for_development"}, "default_key_id": "app-1"});
    let configured = http.ok(Method::POST, "/kms/v1/configure", ADMIN, Some(configure_body.clone())).await;
    assert_eq!(configured["status"]["state"], "configured");
    let started = http.ok(Method::POST, "/kms/v1/start", ADMIN, None).await;
    assert_eq!(started["status"]["state"], "running");
    let reconfigured = http.ok(Method::POST, "/kms/v1/reconfigure", ADMIN, Some(configure_body)).await;
    assert_eq!(reconfigured["status"]["state"], "running");
    let config = http.ok(Method::GET, "/kms/v1/config", ADMIN, None).await;
    assert_eq!(config["config"]["default_key_id"], "app-1");

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_in_the_configuration_are_redacted_on_the_way_out() {
    let server = TestServer::start().await;
    let http = Http::new(&server);
    let body = json!({"backend_type": "local", "key_dir": "/unused",
        "master_key": {"type": "passphrase", "passphrase": "correct horse battery staple"}});
    http.ok(Method::POST, "/kms/v1/reconfigure", ADMIN, Some(body)).await;
    let config = http.call(Method::GET, "/kms/v1/config", ADMIN, None).await;
    let text = String::from_utf8_lossy(&config.body);
    assert!(!text.contains("correct horse"), "{text}");
    assert!(text.contains("[REDACTED]"), "{text}");
    server.stop().await;
}
