//! Limits: header-read timeout, request timeout, connection cap, and graceful shutdown that
//! drains in-flight requests.

mod common;

use std::time::Duration;

use common::{ADMIN, Options, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn read_all(stream: &mut TcpStream, limit: Duration) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// An authenticated `GET /kms/v1/status`, as raw HTTP/1.1.
fn status_request() -> String {
    format!("GET /kms/v1/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let mut options = Options::default();
    options.config.header_read_timeout = Duration::from_secs(1);
    let server = TestServer::with(options).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(b"GET /kms/v1/status HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let answer = read_all(&mut stream, Duration::from_secs(10)).await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "closed after {elapsed:?}");
    assert!(!answer.contains("200 OK"), "{answer}");
    server.stop().await;
}

/// A head dripped a byte at a time is cut off at the timeout counted from its first byte:
/// steady progress does not extend it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_sent_a_byte_at_a_time_is_cut_off_at_the_timeout() {
    let mut options = Options::default();
    options.config.header_read_timeout = Duration::from_secs(1);
    let server = TestServer::with(options).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let head = status_request();
    // The whole head, evenly spread over 2.5 s: a server without the timeout would answer it.
    let pause = Duration::from_millis(2500) / u32::try_from(head.len()).unwrap();
    let started = std::time::Instant::now();
    for byte in head.as_bytes() {
        if stream.write_all(std::slice::from_ref(byte)).await.is_err() {
            break;
        }
        tokio::time::sleep(pause).await;
    }
    let answer = read_all(&mut stream, Duration::from_secs(5)).await;
    assert!(!answer.contains("200 OK"), "a head that took {:?} was served: {answer}", started.elapsed());
    server.stop().await;
}

/// Idle keep-alive connections close after the header-read timeout, and one whose requests
/// each come within it stays open across several timeout periods (each wait for a head has
/// its own deadline, not the connection's first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connections_live_while_used_and_close_when_idle() {
    let mut options = Options::default();
    options.config.header_read_timeout = Duration::from_secs(2);
    let server = TestServer::with(options).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let request = status_request();
    let mut buf = vec![0u8; 8192];
    // Seven requests 800 ms apart: 4.8 s on one connection, over two timeout periods, each
    // within 2 s of the last answer (1.2 s of slack for a loaded machine).
    for i in 0..7 {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(800)).await;
        }
        stream.write_all(request.as_bytes()).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.unwrap().unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(answer.starts_with("HTTP/1.1 200"), "request {i}: {answer}");
        // The answer may come in more than one read; take the rest of its body.
        let length: usize = answer
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().parse().unwrap()))
            .unwrap();
        let head_end = answer.find("\r\n\r\n").unwrap() + 4;
        let mut have = n - head_end;
        while have < length {
            let more = stream.read(&mut buf).await.unwrap();
            assert_ne!(more, 0, "request {i}: the connection closed mid-answer");
            have += more;
        }
    }
    // Then idle: closed within the timeout (plus the timer's and the scheduler's slack).
    let idle_since = std::time::Instant::now();
    let n =
        tokio::time::timeout(Duration::from_secs(8), stream.read(&mut buf)).await.expect("never closed").unwrap_or(0);
    assert_eq!(n, 0, "an idle connection got data");
    let idle = idle_since.elapsed();
    assert!(idle >= Duration::from_millis(1900) && idle < Duration::from_secs(5), "closed after {idle:?} idle");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_arrives_hits_the_request_timeout() {
    let mut options = Options::default();
    options.config.request_timeout = Duration::from_secs(1);
    let server = TestServer::with(options).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /kms/v1/decrypt HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let mut options = Options::default();
    options.config.max_connections = 2;
    let server = TestServer::with(options).await;
    let request = status_request();
    // Two keep-alive connections hold both slots.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    // A third waits (the kernel queues it; the server does not accept it yet).
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    third.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf)).await.is_err(),
        "served over the cap"
    );
    // Freeing a slot lets it through.
    drop(held.pop());
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_requests_and_refuses_new_ones() {
    let server = TestServer::start().await;
    let addr = server.addr;
    // A request in flight: headers sent, body still coming.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let body = r#"{"key_name":"drained"}"#;
    let head = format!(
        "POST /kms/v1/keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body.as_bytes()[..5]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = tokio::spawn(server.stop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    // New connections are refused once the listener is gone.
    let refused = TcpStream::connect(addr).await.map_err(|e| e.kind());
    assert_eq!(refused.err(), Some(std::io::ErrorKind::ConnectionRefused), "still accepting after shutdown began");
    // The in-flight request completes.
    stream.write_all(&body.as_bytes()[5..]).await.unwrap();
    let answer = read_all(&mut stream, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert!(answer.contains("drained"), "{answer}");
    tokio::time::timeout(Duration::from_secs(10), stopping).await.unwrap().unwrap();
}

/// 1,000 idle sockets from one loopback address (127.0.0.2), never sending a byte, must not
/// keep an authenticated client (from 127.0.0.1) out: that peer holds at most
/// `max_connections_per_peer` of the `max_connections` slots; its other sockets are closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_unauthenticated_sockets_do_not_lock_out_an_authenticated_client() {
    let mut options = Options::default();
    options.config.max_connections = 64;
    options.config.max_connections_per_peer = 16;
    let server = TestServer::with(options).await;
    let mut idle = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        // A full backlog may refuse or drop some: the point is that none lock the server.
        if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(5), socket.connect(server.addr)).await {
            idle.push(stream);
        }
    }
    assert!(idle.len() >= 100, "only {} idle sockets connected", idle.len());
    let http = common::Http::new(&server);
    let status =
        tokio::time::timeout(Duration::from_secs(5), http.call(http::Method::GET, "/kms/v1/status", ADMIN, None))
            .await
            .expect("the authenticated client was locked out by idle sockets");
    assert_eq!(status.status, http::StatusCode::OK);
    drop(idle);
    server.stop().await;
}
