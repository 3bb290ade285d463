//! The HA driver: a plain HTTP client of the kms servers (it never retries: the servers do),
//! the fault injection (SIGKILL of the OpenBao leader, then of one kms server) and the checks.

#![allow(clippy::print_stdout)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

/// One kms server.
#[derive(Clone)]
struct Server {
    url: String,
    token: String,
    pid: String,
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

fn list(name: &str) -> Result<Vec<String>, String> {
    Ok(env(name)?.split(',').map(str::to_owned).collect())
}

fn servers() -> Result<Vec<Server>, String> {
    let (urls, tokens, pids) = (list("KMS_HA_URLS")?, list("KMS_HA_TOKENS")?, list("KMS_HA_KMS_PIDS")?);
    Ok(urls.into_iter().zip(tokens).zip(pids).map(|((url, token), pid)| Server { url, token, pid }).collect())
}

fn http() -> reqwest::Client {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("rustls")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(45))
        .build()
        .expect("http client")
}

/// One request; `Ok((status, body))` whatever the status, `Err` when no answer came.
async fn call(
    http: &reqwest::Client,
    server: &Server,
    method: &str,
    path: &str,
    body: Value,
) -> Result<(u16, Value), String> {
    let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
    let mut request = http.request(method, format!("{}{path}", server.url)).bearer_auth(&server.token);
    if !body.is_null() {
        request = request.header("Content-Type", "application/json").body(body.to_string());
    }
    let response = request.send().await.map_err(|e| format!("{}: {e}", server.url))?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.map_err(|e| e.to_string())?;
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok((status, value))
}

/// What the load saw.
#[derive(Default)]
struct Tally {
    counts: std::collections::BTreeMap<&'static str, (u64, u64)>,
    failures: Vec<String>,
    longest: (Duration, &'static str, f64),
    data_keys: Vec<(String, String, Value)>,
    ciphertexts: Vec<(String, String)>,
    created: Vec<String>,
}

impl Tally {
    fn record(&mut self, op: &'static str, took: Duration, at: f64, outcome: Result<(), String>) {
        let entry = self.counts.entry(op).or_default();
        match outcome {
            Ok(()) => entry.0 += 1,
            Err(e) => {
                entry.1 += 1;
                if self.failures.len() < 20 {
                    self.failures.push(format!("{op} at {at:.1}s: {e}"));
                }
            }
        }
        if took > self.longest.0 {
            self.longest = (took, op, at);
        }
    }
}

fn expect_ok(status: u16, body: &Value) -> Result<(), String> {
    if (200..300).contains(&status) { Ok(()) } else { Err(format!("HTTP {status}: {body}")) }
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    kms_crypto::rand::fill(&mut b).expect("rng");
    b
}

const BASE_KEYS: usize = 4;

async fn one_op(http: &reqwest::Client, server: &Server, turn: u64, tally: &Mutex<Tally>, start: Instant) {
    let key = format!("ha-base-{}", turn % BASE_KEYS as u64);
    let context = json!({ "run": "ha", "turn": turn.to_string() });
    let began = Instant::now();
    let at = start.elapsed().as_secs_f64();
    let (op, outcome): (&'static str, Result<(), String>) = match turn % 4 {
        0 | 1 => {
            let r = call(
                http,
                server,
                "POST",
                &format!("/kms/v1/keys/{key}/generate-data-key"),
                json!({"encryption_context": context}),
            )
            .await;
            (
                "generate_data_key",
                r.and_then(|(s, b)| {
                    expect_ok(s, &b)?;
                    let plain = b["plaintext_key"].as_str().unwrap_or_default().to_owned();
                    let blob = b["ciphertext_blob"].as_str().unwrap_or_default().to_owned();
                    tally.lock().unwrap().data_keys.push((blob, plain, context.clone()));
                    Ok(())
                }),
            )
        }
        2 => {
            let plaintext = B64.encode(random_bytes(48));
            let r = call(http, server, "POST", &format!("/kms/v1/keys/{key}/encrypt"), json!({"plaintext": plaintext}))
                .await;
            (
                "encrypt",
                r.and_then(|(s, b)| {
                    expect_ok(s, &b)?;
                    let blob = b["ciphertext_blob"].as_str().unwrap_or_default().to_owned();
                    tally.lock().unwrap().ciphertexts.push((blob, plaintext));
                    Ok(())
                }),
            )
        }
        _ => {
            let earlier = tally.lock().unwrap().data_keys.last().cloned();
            match earlier {
                Some((blob, plain, context)) => {
                    let r = call(
                        http,
                        server,
                        "POST",
                        "/kms/v1/decrypt",
                        json!({"ciphertext_blob": blob, "encryption_context": context}),
                    )
                    .await;
                    (
                        "decrypt",
                        r.and_then(|(s, b)| {
                            expect_ok(s, &b)?;
                            if b["plaintext"].as_str() == Some(plain.as_str()) {
                                Ok(())
                            } else {
                                Err("wrong plaintext".into())
                            }
                        }),
                    )
                }
                None => return,
            }
        }
    };
    tally.lock().unwrap().record(op, began.elapsed(), at, outcome);
}

/// SIGKILLs the active OpenBao node (the one whose `sys/health` answers 200).
async fn bao_leader_kill(http: &reqwest::Client) -> Result<String, String> {
    let (addrs, pids) = (list("KMS_HA_BAO_ADDRS")?, list("KMS_HA_BAO_PIDS")?);
    for (addr, pid) in addrs.iter().zip(&pids) {
        let status = http.get(format!("{addr}/v1/sys/health")).send().await.map(|r| r.status().as_u16());
        if status.is_ok_and(|s| s == 200) {
            kill(pid)?;
            return Ok(addr.clone());
        }
    }
    Err("no active OpenBao node found".into())
}

fn kill(pid: &str) -> Result<(), String> {
    let status = std::process::Command::new("kill").args(["-KILL", pid]).status().map_err(|e| e.to_string())?;
    if status.success() { Ok(()) } else { Err(format!("kill -KILL {pid} failed")) }
}

/// Mixed load through every server for `seconds`, with the OpenBao leader killed at a third.
async fn load(
    http: &reqwest::Client,
    servers: &[Server],
    seconds: u64,
    tally: &Arc<Mutex<Tally>>,
) -> Result<(), String> {
    let start = Instant::now();
    let until = start + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..6u64 {
        let (http, servers, tally) = (http.clone(), servers.to_vec(), tally.clone());
        tasks.spawn(async move {
            let mut turn = worker;
            while Instant::now() < until {
                let server = &servers[(turn as usize) % servers.len()];
                one_op(&http, server, turn, &tally, start).await;
                turn += 6;
            }
        });
    }
    // Rotations every 3 s and named creates every 2 s, alternating servers.
    let (h, s, t) = (http.clone(), servers.to_vec(), tally.clone());
    tasks.spawn(async move {
        let mut n = 0u64;
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_secs(2)).await;
            n += 1;
            let server = &s[(n as usize) % s.len()];
            let began = Instant::now();
            let at = start.elapsed().as_secs_f64();
            if n.is_multiple_of(3) {
                let key = format!("ha-base-{}", n % BASE_KEYS as u64);
                let r = call(&h, server, "POST", &format!("/kms/v1/keys/{key}/rotate"), Value::Null).await;
                t.lock().unwrap().record("rotate_key", began.elapsed(), at, r.and_then(|(st, b)| expect_ok(st, &b)));
            }
            let name = format!("ha-new-{n}");
            let r = call(&h, server, "POST", "/kms/v1/keys", json!({"key_name": name})).await;
            let r = r.and_then(|(st, b)| expect_ok(st, &b));
            let mut tally = t.lock().unwrap();
            if r.is_ok() {
                tally.created.push(name);
            }
            tally.record("create_key", began.elapsed(), at, r);
        }
    });
    tokio::time::sleep(Duration::from_secs(seconds / 3)).await;
    let killed = bao_leader_kill(http).await?;
    println!("ha: SIGKILLed the OpenBao leader {killed} at {:.1}s", start.elapsed().as_secs_f64());
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn listed(http: &reqwest::Client, server: &Server) -> Result<Vec<String>, String> {
    let mut ids = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let path = match &marker {
            Some(m) => format!("/kms/v1/keys?limit=100&marker={m}"),
            None => "/kms/v1/keys?limit=100".into(),
        };
        let (status, body) = call(http, server, "GET", &path, Value::Null).await?;
        expect_ok(status, &body)?;
        for key in body["keys"].as_array().cloned().unwrap_or_default() {
            ids.push(key["key_id"].as_str().unwrap_or_default().to_owned());
        }
        match body["next_marker"].as_str() {
            Some(m) if body["truncated"] == true => marker = Some(m.to_owned()),
            _ => return Ok(ids),
        }
    }
}

pub(crate) async fn run() -> Result<(), String> {
    let seconds: u64 = env("KMS_HA_SECONDS")?.parse().map_err(|_| "KMS_HA_SECONDS must be a number")?;
    let bound = Duration::from_secs(env("KMS_HA_COHERENCE_SECONDS")?.parse().map_err(|_| "bad coherence")?);
    let servers = servers()?;
    let http = http();
    for i in 0..BASE_KEYS {
        let (s, b) =
            call(&http, &servers[i % 2], "POST", "/kms/v1/keys", json!({"key_name": format!("ha-base-{i}")})).await?;
        expect_ok(s, &b)?;
    }
    let tally = Arc::new(Mutex::new(Tally::default()));
    load(&http, &servers, seconds, &tally).await?;
    let tally =
        Arc::try_unwrap(tally).map_err(|_| "load tasks still running")?.into_inner().map_err(|e| e.to_string())?;

    let mut problems = Vec::new();
    let failed: u64 = tally.counts.values().map(|(_, f)| f).sum();
    let ok: u64 = tally.counts.values().map(|(o, _)| o).sum();
    for (op, (o, f)) in &tally.counts {
        println!("ha: {op:<18} ok {o:>6}  failed {f}");
    }
    println!(
        "ha: {ok} client operations, {failed} failed; longest stall {:.2}s ({} at {:.1}s)",
        tally.longest.0.as_secs_f64(),
        tally.longest.1,
        tally.longest.2
    );
    if failed > 0 {
        problems.push(format!("{failed} failed client operations: {:#?}", tally.failures));
    }

    // Every data key and ciphertext made during the run decrypts afterwards (both servers).
    let mut undecryptable = 0;
    for (i, (blob, plain, context)) in tally.data_keys.iter().enumerate() {
        let (s, b) = call(
            &http,
            &servers[i % 2],
            "POST",
            "/kms/v1/decrypt",
            json!({"ciphertext_blob": blob, "encryption_context": context}),
        )
        .await?;
        if s != 200 || b["plaintext"].as_str() != Some(plain.as_str()) {
            undecryptable += 1;
        }
    }
    for (i, (blob, plain)) in tally.ciphertexts.iter().enumerate() {
        let (s, b) =
            call(&http, &servers[(i + 1) % 2], "POST", "/kms/v1/decrypt", json!({"ciphertext_blob": blob})).await?;
        if s != 200 || b["plaintext"].as_str() != Some(plain.as_str()) {
            undecryptable += 1;
        }
    }
    println!(
        "ha: {} data keys and {} ciphertexts re-decrypted, {undecryptable} failed",
        tally.data_keys.len(),
        tally.ciphertexts.len()
    );
    if undecryptable > 0 {
        problems.push(format!("{undecryptable} data keys or ciphertexts do not decrypt"));
    }

    // No key lost or duplicated: both servers list exactly the keys clients created.
    let mut expected: Vec<String> =
        (0..BASE_KEYS).map(|i| format!("ha-base-{i}")).chain(tally.created.iter().cloned()).collect();
    expected.sort();
    for server in &servers {
        let ids = listed(&http, server).await?;
        let unique: BTreeSet<&String> = ids.iter().collect();
        if unique.len() != ids.len() || ids != expected {
            problems.push(format!("{} lists {ids:?}, clients created {expected:?}", server.url));
        }
    }
    println!(
        "ha: {} keys listed identically by both servers ({} created during the run)",
        expected.len(),
        tally.created.len()
    );

    // A disable through A is refused by B within the bound.
    let (a, b) = (&servers[0], &servers[1]);
    let (s, body) = call(&http, a, "POST", "/kms/v1/keys", json!({"key_name": "ha-disable"})).await?;
    expect_ok(s, &body)?;
    let gdk = "/kms/v1/keys/ha-disable/generate-data-key";
    let (s, body) = call(&http, b, "POST", gdk, json!({})).await?;
    expect_ok(s, &body)?;
    let (s, body) = call(&http, a, "POST", "/kms/v1/keys/ha-disable/disable", Value::Null).await?;
    expect_ok(s, &body)?;
    let disabled_at = Instant::now();
    let seen = loop {
        let (s, _) = call(&http, b, "POST", gdk, json!({})).await?;
        if s == 400 || s == 409 {
            break disabled_at.elapsed();
        }
        if disabled_at.elapsed() > bound * 3 {
            problems.push(format!("B still serves a key disabled through A after {:?}", disabled_at.elapsed()));
            break disabled_at.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "ha: disable through A refused by B after {:.2}s (bound {}s + one request)",
        seen.as_secs_f64(),
        bound.as_secs()
    );
    if seen > bound + Duration::from_millis(500) {
        problems.push(format!("B refused the disabled key only after {seen:?} (bound {bound:?})"));
    }

    // One kms server killed: the other keeps serving.
    kill(&a.pid)?;
    let survivor = b.clone();
    let start = Instant::now();
    let (mut served, mut refused) = (0, 0);
    while start.elapsed() < Duration::from_secs(3) {
        let key = format!("ha-base-{}", served % BASE_KEYS);
        match call(&http, &survivor, "POST", &format!("/kms/v1/keys/{key}/generate-data-key"), json!({})).await {
            Ok((200, _)) => served += 1,
            _ => refused += 1,
        }
    }
    println!("ha: kms server A killed; B served {served} data keys in 3 s, {refused} failed");
    if refused > 0 || served == 0 {
        problems.push(format!("the surviving server failed {refused} of {} requests", served + refused));
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("\n")) }
}

/// Requests per second of `generate-data-key` through `servers` with `concurrency` clients.
async fn rate(http: &reqwest::Client, servers: &[Server], concurrency: usize, run: Duration) -> Result<f64, String> {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let (http, servers) = (http.clone(), servers.to_vec());
        tasks.spawn(async move {
            let mut done = 0u64;
            let mut turn = worker;
            while start.elapsed() < run {
                let server = &servers[turn % servers.len()];
                let key = format!("ha-base-{}", turn % BASE_KEYS);
                let (s, b) =
                    call(&http, server, "POST", &format!("/kms/v1/keys/{key}/generate-data-key"), json!({})).await?;
                expect_ok(s, &b)?;
                done += 1;
                turn += concurrency;
            }
            Ok::<u64, String>(done)
        });
    }
    let mut total = 0;
    while let Some(done) = tasks.join_next().await {
        total += done.map_err(|e| e.to_string())??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

async fn reconfigure(http: &reqwest::Client, server: &Server, coherence: u64) -> Result<(), String> {
    let mut body: Value = serde_json::from_str(&env("KMS_HA_RECONFIGURE")?).map_err(|e| e.to_string())?;
    body["cache_coherence_seconds"] = json!(coherence);
    let (s, b) = call(http, server, "POST", "/kms/v1/reconfigure", body).await?;
    expect_ok(s, &b)
}

pub(crate) async fn bench() -> Result<(), String> {
    println!("bench ha: debug builds of the kms servers and this driver on one shared machine: compare ratios");
    let servers = servers()?;
    let http = http();
    for i in 0..BASE_KEYS {
        let (s, b) =
            call(&http, &servers[0], "POST", "/kms/v1/keys", json!({"key_name": format!("ha-base-{i}")})).await?;
        expect_ok(s, &b)?;
    }
    let run = Duration::from_secs(4);
    rate(&http, &servers, 8, Duration::from_secs(1)).await?; // warm-up
    let one = rate(&http, &servers[..1], 16, run).await?;
    let two = rate(&http, &servers, 16, run).await?;
    println!(
        "bench ha: generate-data-key through 1 kms server: {one:.0} req/s; through 2: {two:.0} req/s (x{:.2})",
        two / one
    );
    // The coherence bound's cost: key state re-read every 2 s (default) against an hour
    // (the metadata-cached path), same server, same load, alternated over 3 rounds so that
    // drift on a shared machine does not favour one side.
    let (mut coherent, mut cached) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        for (bound, out) in [(3600, &mut cached), (2, &mut coherent)] {
            reconfigure(&http, &servers[0], bound).await?;
            rate(&http, &servers[..1], 8, Duration::from_millis(500)).await?;
            out.push(rate(&http, &servers[..1], 16, Duration::from_secs(3)).await?);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (coherent, cached) = (median(&mut coherent), median(&mut cached));
    println!(
        "bench ha: coherence 2 s: {coherent:.0} req/s; metadata cached for 1 h: {cached:.0} req/s; ratio {:.3} (medians of 3)",
        coherent / cached
    );
    Ok(())
}
