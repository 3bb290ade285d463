//! Concurrency: 64 clients × 200 requests with zero errors, and a reconfigure under load that
//! fails no request.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::{ADMIN, APP, Http, TestServer};
use http::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_clients_times_two_hundred_requests_without_an_error() {
    let server = TestServer::start().await;
    let http = Http::new(&server);
    http.ok(Method::POST, "/kms/v1/keys", ADMIN, Some(json!({"key_name": "app-load"}))).await;
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for client in 0..64 {
        let http = http.clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let ctx = json!({"client": client.to_string()});
            for i in 0..200 {
                let ok = if i % 2 == 0 {
                    let reply = http
                        .call(
                            Method::POST,
                            "/kms/v1/keys/app-load/generate-data-key",
                            APP,
                            Some(json!({"encryption_context": ctx})),
                        )
                        .await;
                    reply.status.is_success()
                } else {
                    let dk = http
                        .ok(
                            Method::POST,
                            "/kms/v1/keys/app-load/generate-data-key",
                            APP,
                            Some(json!({"encryption_context": ctx})),
                        )
                        .await;
                    let reply = http
                        .call(
                            Method::POST,
                            "/kms/v1/decrypt",
                            APP,
                            Some(json!({"ciphertext_blob": dk["ciphertext_blob"], "encryption_context": ctx})),
                        )
                        .await;
                    reply.status.is_success() && reply.json()["plaintext"] == dk["plaintext_key"]
                };
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(errors.load(Ordering::Relaxed), 0);
    let metrics = http.raw(Method::GET, "/metrics", Some(ADMIN), None, "").await;
    let text = String::from_utf8(metrics.body.to_vec()).unwrap();
    // 64 clients × (100 + 100) data keys and 64 × 100 decrypts, all 200.
    assert!(text.contains(r#"kms_http_requests_total{operation="generate_data_key",status="200"} 12800"#), "{text}");
    assert!(text.contains(r#"kms_http_requests_total{operation="decrypt",status="200"} 6400"#), "{text}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfigure_under_load_fails_no_request() {
    let server = TestServer::start().await;
    let http = Http::new(&server);
    http.ok(Method::POST, "/kms/v1/keys", ADMIN, Some(json!({"key_name": "app-rc"}))).await;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut failures = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (http, stop, done) = (http.clone(), stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut failed = Vec::new();
            // Bounded: at most 2000 requests per client, and the test stops them sooner.
            for _ in 0..2000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let reply = http.call(Method::POST, "/kms/v1/keys/app-rc/generate-data-key", APP, None).await;
                if reply.status.is_success() {
                    let reply = http
                        .call(
                            Method::POST,
                            "/kms/v1/decrypt",
                            APP,
                            Some(json!({"ciphertext_blob": reply.json()["ciphertext_blob"]})),
                        )
                        .await;
                    if !reply.status.is_success() {
                        failed.push(format!("decrypt {} {}", reply.status, String::from_utf8_lossy(&reply.body)));
                    }
                } else {
                    failed.push(format!("generate {} {}", reply.status, String::from_utf8_lossy(&reply.body)));
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            failed
        }));
    }
    let body = json!({"backend_type": "local", "key_dir": "/unused",
        "master_key": {"type": "insecure_plaintext_for_development"}, "cache_ttl_seconds": 60});
    for i in 0..10 {
        while done.load(Ordering::Relaxed) < (i + 1) * 100 {
            tokio::task::yield_now().await;
        }
        let reply = http.call(Method::POST, "/kms/v1/reconfigure", ADMIN, Some(body.clone())).await;
        assert!(reply.status.is_success(), "{}", String::from_utf8_lossy(&reply.body));
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        failures.extend(t.await.unwrap());
    }
    assert!(done.load(Ordering::Relaxed) >= 1000);
    assert!(failures.is_empty(), "{} failed: {:?}", failures.len(), &failures[..failures.len().min(5)]);
    server.stop().await;
}
