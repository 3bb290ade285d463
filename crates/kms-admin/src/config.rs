//! [`ServerConfig`]: how the admin server listens, what it limits, whom it lets in.
//!
//! It deserializes from the `[server]` table of `kms.toml` (see `kms serve --help`); every
//! field has a default, so `ServerConfig::default()` is a loopback server with no identities
//! (which refuses every request until identities are added).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use kms_types::serde_helpers::duration_secs;
use serde::{Deserialize, Serialize};

use crate::auth::IdentityConfig;
use crate::aws::settings::AwsSettings;
use crate::setup_error::SetupError;

/// Default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7373";
/// Default largest request body: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// TLS for the admin server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert_path: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_path: PathBuf,
    /// PEM bundle of CAs whose client certificates are accepted; set it to require mTLS.
    #[serde(default)]
    pub client_ca_path: Option<PathBuf>,
}

/// Everything about the HTTP server itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on (default `127.0.0.1:7373`).
    pub listen: SocketAddr,
    /// Largest accepted request body in bytes (default 1 MiB); larger is 413.
    pub max_body_bytes: usize,
    /// Time a client has to send a request's headers (default 10 s); also closes idle
    /// keep-alive connections and bounds the TLS handshake.
    #[serde(with = "duration_secs", rename = "header_read_timeout_seconds")]
    pub header_read_timeout: Duration,
    /// Time from a request's arrival to its response (default 30 s); beyond it, 504.
    #[serde(with = "duration_secs", rename = "request_timeout_seconds")]
    pub request_timeout: Duration,
    /// Most concurrent client connections (default 1024); further clients wait in the backlog.
    pub max_connections: usize,
    /// Most concurrent connections from one peer IP address (default 256); a further one is
    /// closed at once. Raise it (up to `max_connections`) when every client comes through one
    /// proxy address.
    pub max_connections_per_peer: usize,
    /// Time a client has to take each part of a response (default 30 s); a client that stops
    /// reading is disconnected.
    #[serde(with = "duration_secs", rename = "response_write_timeout_seconds")]
    pub response_write_timeout: Duration,
    /// How long shutdown waits for in-flight requests (default 30 s).
    #[serde(with = "duration_secs", rename = "shutdown_grace_seconds")]
    pub shutdown_grace: Duration,
    /// Whether `GET /health` answers without a token (default true, for probes).
    pub public_health: bool,
    /// TLS; `None` serves plain HTTP, which is refused on a non-loopback `listen` address
    /// unless `allow_insecure_http` is set.
    pub tls: Option<ServerTlsConfig>,
    /// Serve plain HTTP on a non-loopback address (default false): bearer tokens, plaintexts
    /// and data keys then cross the network in the clear. Only for a network that is private
    /// by other means (a TLS-terminating sidecar on the same host, for example).
    pub allow_insecure_http: bool,
    /// File the audit log is appended to (mode 0600); `None` turns it off.
    pub audit_log: Option<PathBuf>,
    /// Refuse requests (503 `audit_unavailable`) while the audit log cannot be written or its
    /// queue is full (default false: requests go on and the lost lines are counted).
    pub audit_fail_closed: bool,
    /// Most audit lines waiting to be written (default 65536).
    pub audit_queue_capacity: usize,
    /// Longest time between two `sync_data` calls on the audit log (default 1 s).
    #[serde(with = "duration_secs", rename = "audit_sync_interval_seconds")]
    pub audit_sync_interval: Duration,
    /// Who may call the API.
    pub identities: Vec<IdentityConfig>,
    /// The AWS KMS protocol on the same listener (`[server.aws]`).
    pub aws: AwsSettings,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("a valid default address"),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_connections_per_peer: 256,
            response_write_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            public_health: true,
            tls: None,
            allow_insecure_http: false,
            audit_log: None,
            audit_fail_closed: false,
            audit_queue_capacity: 65_536,
            audit_sync_interval: Duration::from_secs(1),
            identities: Vec::new(),
            aws: AwsSettings::default(),
        }
    }
}

impl ServerConfig {
    /// Checks the limits; the error names the field.
    pub fn validate(&self) -> Result<(), SetupError> {
        if self.max_body_bytes < 1024 {
            return Err(SetupError::invalid("server.max_body_bytes", "must be at least 1024"));
        }
        if self.header_read_timeout.is_zero() {
            return Err(SetupError::invalid("server.header_read_timeout_seconds", "must be at least 1"));
        }
        if self.request_timeout.is_zero() {
            return Err(SetupError::invalid("server.request_timeout_seconds", "must be at least 1"));
        }
        if self.max_connections == 0 {
            return Err(SetupError::invalid("server.max_connections", "must be at least 1"));
        }
        if self.max_connections_per_peer == 0 {
            return Err(SetupError::invalid("server.max_connections_per_peer", "must be at least 1"));
        }
        if self.response_write_timeout.is_zero() {
            return Err(SetupError::invalid("server.response_write_timeout_seconds", "must be at least 1"));
        }
        if self.audit_queue_capacity == 0 {
            return Err(SetupError::invalid("server.audit_queue_capacity", "must be at least 1"));
        }
        if self.audit_sync_interval.is_zero() {
            return Err(SetupError::invalid("server.audit_sync_interval_seconds", "must be at least 1"));
        }
        if self.tls.is_none() && !self.listen.ip().is_loopback() && !self.allow_insecure_http {
            return Err(SetupError::invalid(
                "server.listen",
                format!(
                    "{} is not a loopback address and server.tls is not set: tokens and key \
                     material would cross the network in the clear; configure server.tls, or set \
                     server.allow_insecure_http = true if the network is protected otherwise",
                    self.listen
                ),
            ));
        }
        Ok(())
    }
}

impl From<&ServerConfig> for crate::audit::AuditOptions {
    fn from(config: &ServerConfig) -> Self {
        Self {
            queue_capacity: config.audit_queue_capacity,
            sync_interval: config.audit_sync_interval,
            fail_closed: config.audit_fail_closed,
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_loopback_and_1_mib() {
        let c = ServerConfig::default();
        assert!(c.listen.ip().is_loopback());
        assert_eq!(c.max_body_bytes, 1 << 20);
        c.validate().unwrap();
    }

    #[test]
    fn a_non_loopback_plain_http_listen_is_refused_unless_explicitly_allowed() {
        let open = ServerConfig { listen: "0.0.0.0:7373".parse().unwrap(), ..ServerConfig::default() };
        let err = open.validate().unwrap_err();
        assert!(
            matches!(&err, SetupError::Invalid { field: "server.listen", message } if message.contains("allow_insecure_http")),
            "{err}"
        );
        ServerConfig { allow_insecure_http: true, ..open.clone() }.validate().unwrap();
        let tls = ServerTlsConfig { cert_path: "c.pem".into(), key_path: "k.pem".into(), client_ca_path: None };
        ServerConfig { tls: Some(tls), ..open }.validate().unwrap();
        ServerConfig { listen: "[::1]:7373".parse().unwrap(), ..ServerConfig::default() }.validate().unwrap();
        let parsed: ServerConfig =
            serde_json::from_str(r#"{"listen":"10.0.0.5:7373","allow_insecure_http":true}"#).unwrap();
        parsed.validate().unwrap();
    }

    #[test]
    fn partial_json_fills_defaults_and_unknown_fields_fail() {
        let c: ServerConfig = serde_json::from_str(r#"{"listen":"0.0.0.0:8443","request_timeout_seconds":5}"#).unwrap();
        assert_eq!(c.request_timeout, Duration::from_secs(5));
        assert_eq!(c.max_connections, 1024);
        let err = serde_json::from_str::<ServerConfig>(r#"{"listn":"0.0.0.0:1"}"#).unwrap_err();
        assert!(err.is_data() && err.to_string().contains("unknown field `listn`"), "{err}");
        let c = ServerConfig { max_connections: 0, ..ServerConfig::default() };
        let err = c.validate().unwrap_err();
        assert!(matches!(err, SetupError::Invalid { field: "server.max_connections", .. }), "{err}");
    }
}
