//! Prometheus metrics, served as text (format 0.0.4) at `GET /metrics`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `kms_http_requests_total` | counter | `operation`, `status` |
//! | `kms_http_request_duration_seconds` | histogram | `operation` |
//! | `kms_http_connections_active` | gauge | |
//! | `kms_http_connections_total` | counter | |
//! | `kms_backend_call_duration_seconds` | histogram | `operation` |
//! | `kms_backend_errors_total` | counter | `operation`, `code` |
//! | `kms_cache_hits_total`, `kms_cache_misses_total` | counter | |
//! | `kms_cache_entries` | gauge | |
//! | `kms_backend_key_cache_hits_total`, `kms_backend_key_cache_misses_total` | counter | (local backend) |
//! | `kms_backend_key_cache_entries` | gauge | (local backend) |
//!
//! Labels never carry key ids (unbounded cardinality, and ids can be sensitive).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kms_types::api_types::CacheStats;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    operation: &'static str,
    code: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50 µs .. ~26 s, doubling.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.000_05, 2.0, 20))
}

/// Cache statistics as of the current scrape (`None` while the service is not running).
#[derive(Debug, Default)]
struct CacheCollector {
    latest: Mutex<Option<CacheStats>>,
    /// The backend's own cache of opened keys (the local backend's), if it has one.
    backend: Mutex<Option<CacheStats>>,
}

impl Collector for CacheCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(stats) = *self.latest.lock().unwrap_or_else(|p| p.into_inner()) else { return Ok(()) };
        let hits = ConstCounter::new(stats.hits);
        hits.encode(encoder.encode_descriptor(
            "kms_cache_hits",
            "Key lookups served from the cache",
            None,
            hits.metric_type(),
        )?)?;
        let misses = ConstCounter::new(stats.misses);
        misses.encode(encoder.encode_descriptor(
            "kms_cache_misses",
            "Key lookups that went to the backend",
            None,
            misses.metric_type(),
        )?)?;
        let entries = ConstGauge::new(stats.entries as i64);
        entries.encode(encoder.encode_descriptor(
            "kms_cache_entries",
            "Entries held in the key cache",
            None,
            entries.metric_type(),
        )?)?;
        let Some(stats) = *self.backend.lock().unwrap_or_else(|p| p.into_inner()) else { return Ok(()) };
        let hits = ConstCounter::new(stats.hits);
        hits.encode(encoder.encode_descriptor(
            "kms_backend_key_cache_hits",
            "Uses of a key the backend had open in memory",
            None,
            hits.metric_type(),
        )?)?;
        let misses = ConstCounter::new(stats.misses);
        misses.encode(encoder.encode_descriptor(
            "kms_backend_key_cache_misses",
            "Uses of a key the backend read and opened from its store",
            None,
            misses.metric_type(),
        )?)?;
        let entries = ConstGauge::new(stats.entries as i64);
        entries.encode(encoder.encode_descriptor(
            "kms_backend_key_cache_entries",
            "Keys the backend holds open in memory",
            None,
            entries.metric_type(),
        )?)?;
        Ok(())
    }
}

/// The audit log's state as of the current scrape (`None` without an audit log).
#[derive(Debug, Default)]
struct AuditCollector {
    latest: Mutex<Option<(u64, bool)>>,
}

impl Collector for AuditCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some((dropped, healthy)) = *self.latest.lock().unwrap_or_else(|p| p.into_inner()) else { return Ok(()) };
        let dropped = ConstCounter::new(dropped);
        dropped.encode(encoder.encode_descriptor(
            "kms_audit_lines_dropped",
            "Audit lines lost: queue full or the audit file could not be written",
            None,
            dropped.metric_type(),
        )?)?;
        let healthy = ConstGauge::new(i64::from(healthy));
        healthy.encode(encoder.encode_descriptor(
            "kms_audit_writable",
            "1 while the last write to the audit log succeeded, else 0",
            None,
            healthy.metric_type(),
        )?)?;
        Ok(())
    }
}

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: HistogramFamily<OperationLabels>,
    connections_active: Gauge,
    connections_total: Counter,
    backend_duration: HistogramFamily<OperationLabels>,
    backend_errors: Family<ErrorLabels, Counter>,
    cache: Arc<CacheCollector>,
    audit: Arc<AuditCollector>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("kms_http_requests", "HTTP requests by operation and status", requests.clone());
        let request_duration = HistogramFamily::<OperationLabels>::new_with_constructor(latency_histogram as fn() -> _);
        registry.register(
            "kms_http_request_duration_seconds",
            "HTTP request latency, arrival to response",
            request_duration.clone(),
        );
        let connections_active = Gauge::default();
        registry.register("kms_http_connections_active", "Open client connections", connections_active.clone());
        let connections_total = Counter::default();
        registry.register("kms_http_connections", "Accepted client connections", connections_total.clone());
        let backend_duration = HistogramFamily::<OperationLabels>::new_with_constructor(latency_histogram as fn() -> _);
        registry.register(
            "kms_backend_call_duration_seconds",
            "Latency of calls into the KMS service and its backend",
            backend_duration.clone(),
        );
        let backend_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "kms_backend_errors",
            "Failed calls into the KMS service by error code",
            backend_errors.clone(),
        );
        let cache = Arc::new(CacheCollector::default());
        registry.register_collector(Box::new(cache.clone()));
        let audit = Arc::new(AuditCollector::default());
        registry.register_collector(Box::new(audit.clone()));
        Self {
            registry,
            requests,
            request_duration,
            connections_active,
            connections_total,
            backend_duration,
            backend_errors,
            cache,
            audit,
        }
    }

    /// Counts a finished request.
    pub fn observe_request(&self, operation: Option<&'static str>, status: u16, elapsed: Duration) {
        let operation = operation.unwrap_or("none");
        self.requests.get_or_create(&RequestLabels { operation, status }).inc();
        self.request_duration.get_or_create(&OperationLabels { operation }).observe(elapsed.as_secs_f64());
    }

    /// Counts a finished call into the service; `error` is the error code when it failed.
    pub fn observe_backend(&self, operation: &'static str, elapsed: Duration, error: Option<&'static str>) {
        self.backend_duration.get_or_create(&OperationLabels { operation }).observe(elapsed.as_secs_f64());
        if let Some(code) = error {
            self.backend_errors.get_or_create(&ErrorLabels { operation, code }).inc();
        }
    }

    /// A connection opened.
    pub fn connection_opened(&self) {
        self.connections_total.inc();
        self.connections_active.inc();
    }

    /// A connection closed.
    pub fn connection_closed(&self) {
        self.connections_active.dec();
    }

    /// Notes the audit log's lost lines and health for the next [`render`](Self::render).
    pub fn set_audit(&self, dropped: u64, writable: bool) {
        *self.audit.latest.lock().unwrap_or_else(|p| p.into_inner()) = Some((dropped, writable));
    }

    /// The text exposition, with the cache statistics read for this scrape.
    pub fn render(&self, cache: Option<CacheStats>) -> String {
        self.render_with(cache, None)
    }

    /// [`Metrics::render`], with the backend's own key cache statistics too (the local
    /// backend's cache of opened keys).
    pub fn render_with(&self, cache: Option<CacheStats>, backend_cache: Option<CacheStats>) -> String {
        *self.cache.latest.lock().unwrap_or_else(|p| p.into_inner()) = cache;
        *self.cache.backend.lock().unwrap_or_else(|p| p.into_inner()) = backend_cache.filter(|_| cache.is_some());
        let mut out = String::with_capacity(8 * 1024);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_log_state_is_exported_once_known() {
        let metrics = Metrics::new();
        assert!(!metrics.render(None).contains("kms_audit"));
        metrics.set_audit(3, false);
        let text = metrics.render(None);
        assert!(text.contains("kms_audit_lines_dropped_total 3"), "{text}");
        assert!(text.contains("kms_audit_writable 0"), "{text}");
    }

    #[test]
    fn render_shows_requests_backend_calls_and_cache_stats() {
        let metrics = Metrics::new();
        metrics.observe_request(Some("decrypt"), 200, Duration::from_micros(120));
        metrics.observe_request(Some("decrypt"), 200, Duration::from_micros(80));
        metrics.observe_request(None, 404, Duration::from_micros(5));
        metrics.observe_backend("decrypt", Duration::from_micros(50), Some("crypto_error"));
        metrics.connection_opened();
        let text = metrics.render(Some(CacheStats { hits: 7, misses: 3, entries: 2, capacity: 10 }));
        assert!(text.contains(r#"kms_http_requests_total{operation="decrypt",status="200"} 2"#), "{text}");
        assert!(text.contains(r#"kms_http_requests_total{operation="none",status="404"} 1"#), "{text}");
        assert!(text.contains(r#"kms_http_request_duration_seconds_count{operation="decrypt"} 2"#), "{text}");
        assert!(text.contains(r#"kms_backend_errors_total{operation="decrypt",code="crypto_error"} 1"#), "{text}");
        assert!(text.contains("kms_cache_hits_total 7"), "{text}");
        assert!(text.contains("kms_cache_misses_total 3"), "{text}");
        assert!(text.contains("kms_http_connections_active 1"), "{text}");
    }

    #[test]
    fn render_shows_the_backend_key_cache_when_the_backend_has_one() {
        let metrics = Metrics::new();
        let stats = |hits| CacheStats { hits, misses: 1, entries: 1, capacity: 4 };
        let text = metrics.render_with(Some(stats(7)), Some(stats(40)));
        assert!(text.contains("kms_cache_hits_total 7"), "{text}");
        assert!(text.contains("kms_backend_key_cache_hits_total 40"), "{text}");
        assert!(text.contains("kms_backend_key_cache_entries 1"), "{text}");
        assert!(!metrics.render(Some(stats(7))).contains("kms_backend_key_cache"));
    }

    #[test]
    fn cache_metrics_are_absent_while_the_service_is_down() {
        let metrics = Metrics::new();
        assert!(!metrics.render(None).contains("kms_cache_hits"));
    }
}
