//! Retries and routing without a Vault: nodes that refuse connections, and a node that answers
//! every request with a redirect to another host. One logical call makes a bounded number of
//! HTTP attempts under one budget, and the token never leaves the configured nodes.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{config, free_port};
use kms_backend_vault::VaultBackend;
use kms_core::backends::KmsBackend;
use kms_core::manager::{KmsManager, MAX_ATTEMPTS};
use kms_types::config::VaultAuthMethod;
use kms_types::error::KmsError;
use kms_types::types::DescribeKeyRequest;

const BUDGET: Duration = Duration::from_secs(3);

async fn manager_for(addresses: &str) -> (KmsManager, VaultBackend) {
    let mut c = config(addresses, VaultAuthMethod::Token { token: "s.never-leaves-home".into() });
    c.timeout = BUDGET;
    let backend = VaultBackend::connect(&c).await.unwrap();
    (KmsManager::new(Arc::new(backend.clone()) as Arc<dyn KmsBackend>, &c), backend)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_call_makes_a_bounded_number_of_http_attempts() {
    let nodes: Vec<String> = (0..3).map(|_| format!("http://127.0.0.1:{}", free_port())).collect();
    let (manager, backend) = manager_for(&nodes.join(",")).await;
    let started = Instant::now();
    let e = manager.describe_key(DescribeKeyRequest { key_id: "k".into() }).await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(e, KmsError::Backend { retryable: true, .. } | KmsError::Timeout { .. }), "{e:?}");
    assert!(took <= BUDGET + Duration::from_millis(500), "one budget for the whole call: {took:?}");
    let sent = backend.transport_stats().requests;
    // One request per attempt (the record read), attempts capped by the budget and MAX_ATTEMPTS.
    assert!(sent > 3 && sent <= u64::from(MAX_ATTEMPTS), "{sent} HTTP attempts");
}

/// A node that answers every request with `307` to `target`; returns what it received.
fn redirecting_node(target: String) -> (String, Arc<std::sync::Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 4096];
            let Ok(n) = stream.read(&mut buf) else { continue };
            log.lock().unwrap().extend_from_slice(&buf[..n]);
            let reply = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {target}/v1/secret/data/x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_never_followed_and_the_token_stays_on_the_configured_nodes() {
    let elsewhere = TcpListener::bind("127.0.0.1:0").unwrap();
    let elsewhere_addr = format!("http://{}", elsewhere.local_addr().unwrap());
    elsewhere.set_nonblocking(true).unwrap();
    let visits = Arc::new(AtomicUsize::new(0));
    let counter = visits.clone();
    std::thread::spawn(move || {
        let deadline = Instant::now() + BUDGET * 2;
        while Instant::now() < deadline {
            if elsewhere.accept().is_ok() {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let (node, seen) = redirecting_node(elsewhere_addr);
    let (manager, backend) = manager_for(&node).await;
    let e = manager.describe_key(DescribeKeyRequest { key_id: "k".into() }).await.unwrap_err();
    // A redirect is "no leader": retried until the budget ends (the last attempt may be the
    // one cut short by it on a loaded machine).
    assert!(matches!(e, KmsError::Backend { retryable: true, .. } | KmsError::Timeout { .. }), "{e:?}");
    assert_eq!(visits.load(Ordering::SeqCst), 0, "the redirect target was never contacted");
    let sent = backend.transport_stats().requests;
    assert!(sent > 1 && sent <= u64::from(MAX_ATTEMPTS), "{sent}");
    let seen = String::from_utf8_lossy(&seen.lock().unwrap()).to_lowercase();
    assert!(seen.contains("x-vault-token: s.never-leaves-home"), "the configured node did get the token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_probes_are_cached_not_amplified() {
    let nodes: Vec<String> = (0..3).map(|_| format!("http://127.0.0.1:{}", free_port())).collect();
    let (_, backend) = manager_for(&nodes.join(",")).await;
    for _ in 0..50 {
        assert!(!backend.health_check().await.unwrap(), "no node serves");
    }
    let probes = backend.transport_stats().probes;
    assert_eq!(probes, 3, "one sys/health per node for 50 health checks within a second");
}
