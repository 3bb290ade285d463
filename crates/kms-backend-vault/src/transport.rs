//! The connection to a Vault / OpenBao cluster: one pooled HTTP client (rustls on `ring`,
//! redirects never followed) over the configured nodes, health-aware node choice, and
//! OpenBao's consistency headers for read-your-writes.
//!
//! One call is one HTTP request to one node; the transport never retries (the manager does,
//! see [`crate::classify`]). What it does between calls:
//! - a node that failed as unreachable, sealed or behind ([`Class::NodeDown`]) is skipped for
//!   [`NODE_COOL_OFF`]; when every node is skipped, all are tried again;
//! - [`Route::Spread`] (Transit crypto, which standbys serve) goes round-robin over the nodes
//!   not skipped; [`Route::Active`] (storage writes, key-state reads, a key's first use)
//!   goes to the node last seen active (`sys/health` answers 200), probing all nodes when
//!   that is unknown (at most every [`PROBE_EVERY`]);
//! - every response's `X-Vault-Index` is kept and sent back on later requests with
//!   `X-Vault-Inconsistent: forward-active-node`, so a standby that has not applied our own
//!   last write forwards the request to the active node instead of answering stale.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use kms_types::config::VaultConfig;
use kms_types::error::KmsError;
use kms_types::secret::SecretString;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::Value;
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::classify::{CallError, Class, vault_errors};

/// How long a node that failed as unreachable is skipped.
pub(crate) const NODE_COOL_OFF: Duration = Duration::from_secs(1);
/// Least time between two probes of every node's `sys/health`.
pub(crate) const PROBE_EVERY: Duration = Duration::from_millis(500);
/// Deadline of one `sys/health` probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

const INDEX: HeaderName = HeaderName::from_static("x-vault-index");
const INCONSISTENT: HeaderName = HeaderName::from_static("x-vault-inconsistent");

/// Counters of what the transport did, for tests and metrics.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) logins: AtomicU64,
    pub(crate) renewals: AtomicU64,
    pub(crate) probes: AtomicU64,
}

/// A snapshot of the transport's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TransportStats {
    /// HTTP requests sent to Vault (every attempt of every call counts; probes do not).
    pub requests: u64,
    /// Successful AppRole logins.
    pub logins: u64,
    /// Successful token renewals.
    pub renewals: u64,
    /// `sys/health` probes sent to find the active node.
    pub probes: u64,
}

/// HTTP methods the calls use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
    List,
    Delete,
}

/// Which node a call should go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// Any serving node, round-robin.
    Spread,
    /// The active node when known (else any).
    Active,
}

#[derive(Debug, Default)]
struct Topology {
    /// Per node: skipped until then.
    down_until: Vec<Option<Instant>>,
    /// The node that last answered `sys/health` with 200.
    active: Option<usize>,
    last_probe: Option<Instant>,
    /// The last `X-Vault-Index` a response carried.
    index: Option<HeaderValue>,
}

/// The pooled connection to the configured Vault nodes.
pub(crate) struct Transport {
    http: reqwest::Client,
    nodes: Vec<String>,
    namespace: Option<String>,
    topology: Mutex<Topology>,
    next: AtomicUsize,
    pub(crate) counters: Counters,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("nodes", &self.nodes)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Builds the HTTP client: rustls with the `ring` provider, the configured TLS options,
    /// no redirects, `attempt_timeout` per request.
    pub(crate) fn new(config: &VaultConfig, attempt_timeout: Duration) -> Result<Self, KmsError> {
        let tls = crate::tls::tls_config(config.tls.as_ref())?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(attempt_timeout.min(Duration::from_secs(2)))
            .timeout(attempt_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| KmsError::configuration("backend_config.tls", format!("cannot build the HTTP client: {e}")))?;
        let nodes = config.address.urls().to_vec();
        if nodes.is_empty() {
            return Err(KmsError::configuration("backend_config.address", "must name at least one Vault node"));
        }
        let topology = Topology { down_until: vec![None; nodes.len()], ..Topology::default() };
        Ok(Self {
            http,
            nodes,
            namespace: config.namespace.clone().filter(|n| !n.is_empty()),
            topology: Mutex::new(topology),
            next: AtomicUsize::new(0),
            counters: Counters::default(),
        })
    }

    fn topology(&self) -> MutexGuard<'_, Topology> {
        // Only routing hints live here; after a panic elsewhere they are still usable.
        self.topology.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The configured nodes.
    pub(crate) fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// Sends one JSON request to `/v1/{path}` on the node `route` picks; returns the body
    /// (`None` for 204).
    pub(crate) async fn call(
        &self,
        token: Option<&SecretString>,
        route: Route,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Option<Value>, CallError> {
        if route == Route::Active && self.needs_probe() {
            self.probe().await;
        }
        let node = self.pick(route);
        let result = self.send(node, token, method, path, query, body).await;
        let (status, bytes) = match result {
            Ok(r) => r,
            Err(e) => {
                self.note_failure(node, e.class());
                return Err(e);
            }
        };
        if !(200..300).contains(&status) {
            let e = CallError::Status { code: status, errors: vault_errors(&bytes) };
            self.note_failure(node, e.class());
            return Err(e);
        }
        if bytes.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&bytes).map(Some).map_err(|e| CallError::Decode(e.to_string()))
    }

    async fn send(
        &self,
        node: usize,
        token: Option<&SecretString>,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Zeroizing<Vec<u8>>), CallError> {
        let base = &self.nodes[node];
        let method = match method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Delete => reqwest::Method::DELETE,
            Method::List => reqwest::Method::from_bytes(b"LIST").expect("LIST is a valid method token"),
        };
        let mut request = self.http.request(method, format!("{base}/v1/{path}")).header("X-Vault-Request", "true");
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(token) = token {
            let mut value = HeaderValue::from_str(token.expose_secret())
                .map_err(|_| CallError::Decode("the Vault token is not a valid header value".into()))?;
            value.set_sensitive(true);
            request = request.header("X-Vault-Token", value);
        }
        if let Some(ns) = &self.namespace {
            request = request.header("X-Vault-Namespace", ns);
        }
        if let Some(index) = self.topology().index.clone() {
            request = request.header(INDEX, index).header(INCONSISTENT, "forward-active-node");
        }
        if let Some(body) = body {
            request = request.header("Content-Type", "application/json").body(body);
        }
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let lost = |e: reqwest::Error| CallError::Transport { node: base.clone(), source: Box::new(e) };
        let response = request.send().await.map_err(lost)?;
        let status = response.status().as_u16();
        if let Some(index) = response.headers().get(INDEX).cloned() {
            self.topology().index = Some(index);
        }
        let bytes = response.bytes().await.map_err(lost)?.to_vec();
        if (200..300).contains(&status) {
            self.topology().down_until[node] = None;
        }
        Ok((status, Zeroizing::new(bytes)))
    }

    /// The node for the next call.
    fn pick(&self, route: Route) -> usize {
        let now = Instant::now();
        let topology = self.topology();
        let up: Vec<usize> =
            (0..self.nodes.len()).filter(|&i| topology.down_until[i].is_none_or(|t| now >= t)).collect();
        if route == Route::Active
            && let Some(active) = topology.active
            && up.contains(&active)
        {
            return active;
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        if up.is_empty() { turn % self.nodes.len() } else { up[turn % up.len()] }
    }

    fn note_failure(&self, node: usize, class: Class) {
        let mut topology = self.topology();
        match class {
            Class::NodeDown => {
                topology.down_until[node] = Some(Instant::now() + NODE_COOL_OFF);
                if topology.active == Some(node) {
                    topology.active = None;
                }
            }
            Class::NoLeader => topology.active = None,
            Class::Retry | Class::Final => {}
        }
    }

    fn needs_probe(&self) -> bool {
        let topology = self.topology();
        self.nodes.len() > 1
            && topology.active.is_none()
            && topology.last_probe.is_none_or(|t| t.elapsed() >= PROBE_EVERY)
    }

    /// Asks every node's `sys/health` (concurrently, each bounded by [`PROBE_TIMEOUT`]) which
    /// is active (200), which serve as standbys (429, 473), which do not (sealed 503,
    /// uninitialised 501, unreachable: 0). Returns the statuses in node order.
    pub(crate) async fn probe(&self) -> Vec<u16> {
        self.topology().last_probe = Some(Instant::now());
        let probes = (0..self.nodes.len()).map(|i| async move {
            self.counters.probes.fetch_add(1, Ordering::Relaxed);
            let url = format!("{}/v1/sys/health", self.nodes[i]);
            let sent = self.http.get(url).timeout(PROBE_TIMEOUT).send().await;
            sent.map(|r| r.status().as_u16()).unwrap_or(0)
        });
        let statuses = join_all(probes).await;
        let mut topology = self.topology();
        let now = Instant::now();
        for (i, status) in statuses.iter().enumerate() {
            topology.down_until[i] = if matches!(status, 200 | 429 | 473) { None } else { Some(now + NODE_COOL_OFF) };
        }
        topology.active = statuses.iter().position(|s| *s == 200);
        statuses
    }

    /// A snapshot of the counters.
    pub(crate) fn stats(&self) -> TransportStats {
        TransportStats {
            requests: self.counters.requests.load(Ordering::Relaxed),
            logins: self.counters.logins.load(Ordering::Relaxed),
            renewals: self.counters.renewals.load(Ordering::Relaxed),
            probes: self.counters.probes.load(Ordering::Relaxed),
        }
    }
}

/// Runs the futures concurrently and returns their outputs in order (a handful of probes;
/// no extra dependency for it).
async fn join_all<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, fut) in out.iter_mut().zip(pinned.iter_mut()) {
            if slot.is_none() {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    out.into_iter().map(|v| v.expect("every future completed")).collect()
}

/// Exponential backoff with equal jitter: a random delay in `[base·2^(n-1)/2, base·2^(n-1)]`,
/// capped at `cap` (logins and check-and-set contention).
pub(crate) fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(cap);
    kms_crypto::rand::equal_jitter(exp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kms_types::config::VaultAuthMethod;

    fn transport(addresses: &str) -> Transport {
        let config = VaultConfig {
            address: addresses.into(),
            auth_method: VaultAuthMethod::Token { token: "t".into() },
            namespace: None,
            mount_path: "transit".into(),
            kv_mount: "secret".into(),
            key_path_prefix: "kms/keys".into(),
            tls: None,
        };
        Transport::new(&config, Duration::from_secs(1)).unwrap()
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..20 {
            let d = backoff(attempt, Duration::from_millis(100), Duration::from_secs(2));
            let exp = Duration::from_millis(100).saturating_mul(1 << (attempt - 1).min(16)).min(Duration::from_secs(2));
            assert!(d >= exp / 2 && d <= exp, "attempt {attempt}: {d:?}");
        }
    }

    #[tokio::test]
    async fn spread_skips_a_node_that_is_down_and_active_prefers_the_active_node() {
        let t = transport("http://127.0.0.1:1,http://127.0.0.1:2,http://127.0.0.1:3");
        let picks: std::collections::BTreeSet<usize> = (0..6).map(|_| t.pick(Route::Spread)).collect();
        assert_eq!(picks.len(), 3, "crypto is spread over every node");
        t.note_failure(1, Class::NodeDown);
        assert!((0..12).all(|_| t.pick(Route::Spread) != 1), "a node that is down is skipped");
        t.topology().active = Some(2);
        assert!((0..5).all(|_| t.pick(Route::Active) == 2));
        t.note_failure(2, Class::NoLeader);
        assert_eq!(t.topology().active, None, "no leader: forget the active node");
        for i in 0..3 {
            t.note_failure(i, Class::NodeDown);
        }
        let picks: std::collections::BTreeSet<usize> = (0..6).map(|_| t.pick(Route::Spread)).collect();
        assert_eq!(picks.len(), 3, "all down: try them all rather than none");
    }
}
