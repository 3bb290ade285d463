//! What one HTTP call to a Vault node can fail with, and what may be done about it.
//!
//! The transport never retries: it sends one request to one node and classifies the outcome
//! ([`Class`]). The manager (`kms_core::manager`) is the one place that retries, asking the
//! backend through `KmsBackend::retry_class`. Facts this table rests on (OpenBao 2.x Raft):
//! with the leader gone, a standby answers storage writes with a 307 to the dead leader's
//! address, then 500 `local node not active but active cluster node not found` until an
//! election ends; two standbys racing on one key may get 500 `transaction commit failed`,
//! which succeeds when tried again; a standby behind the index a request carries answers 412
//! (or 429); a sealed node answers 503.

use kms_types::error::{BoxError, KmsError};
use serde_json::Value;

/// Transit's body for a ciphertext that does not authenticate (HTTP 400 in OpenBao, 500 in
/// Vault since 1.6): never retried, always [`KmsError::Crypto`].
pub(crate) const AUTH_FAILED: &str = "message authentication failed";
/// A standby's answer to a write while no node is active (an election is running).
const NO_ACTIVE_NODE: &str = "active cluster node not found";
/// A Raft commit that lost a race; the same request succeeds when sent again.
const COMMIT_FAILED: &str = "transaction commit failed";

/// What to do after a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Do not try again: the answer is the answer (4xx, a ciphertext that does not
    /// authenticate, a body we cannot use).
    Final,
    /// Try again (any node): a transient failure of the call itself.
    Retry,
    /// This node cannot serve now (unreachable, sealed, behind, rate-limited): try another.
    NodeDown,
    /// The cluster has no reachable leader (a redirect, or an election running): try again
    /// after a pause, on any node; forget which node was active.
    NoLeader,
}

impl Class {
    /// Whether trying again may succeed.
    pub(crate) fn retryable(self) -> bool {
        self != Self::Final
    }
}

/// Why one call to Vault failed, before it is mapped to a [`KmsError`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// No HTTP response: connection refused or reset, attempt timed out, TLS failure.
    #[error("vault node {node} unreachable")]
    Transport {
        /// The node's base URL.
        node: String,
        /// What failed.
        #[source]
        source: BoxError,
    },
    /// Vault answered with an error status (a redirect included: redirects are never
    /// followed, so the token never goes to a host that is not a configured node).
    #[error("vault returned HTTP {code}: {}", errors.join("; "))]
    Status {
        /// HTTP status.
        code: u16,
        /// Vault's `errors` array (messages carry no secrets).
        errors: Vec<String>,
    },
    /// Vault answered 2xx with a body we cannot use.
    #[error("unexpected response from vault: {0}")]
    Decode(String),
    /// An AppRole login failed (or is backing off after failures) with this class.
    #[error("{message}")]
    Login {
        /// The class of the login's failure.
        class: Class,
        /// What failed (no secrets).
        message: String,
    },
    /// No call was made: obtaining a session failed (already a typed error).
    #[error("no vault session: {0}")]
    Session(Box<KmsError>),
}

impl CallError {
    /// Whether the body says the ciphertext did not authenticate.
    pub(crate) fn is_auth_failure(&self) -> bool {
        self.says(AUTH_FAILED)
    }

    /// Whether this error names `needle` in Vault's messages.
    pub(crate) fn says(&self, needle: &str) -> bool {
        matches!(self, Self::Status { errors, .. } if errors.iter().any(|e| e.contains(needle)))
    }

    /// The HTTP status, if Vault answered.
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            Self::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether no answer came (the request may or may not have been applied).
    pub(crate) fn is_lost(&self) -> bool {
        matches!(self, Self::Transport { .. })
    }

    /// The classification table (unit-tested below, one row per case).
    pub(crate) fn class(&self) -> Class {
        match self {
            Self::Transport { .. } => Class::NodeDown,
            Self::Login { class, .. } => *class,
            Self::Session(e) => class_of(e),
            Self::Decode(_) => Class::Final,
            Self::Status { code, .. } => match code {
                _ if self.is_auth_failure() => Class::Final,
                307 | 308 => Class::NoLeader,
                412 | 429 | 503 => Class::NodeDown,
                500 if self.says(NO_ACTIVE_NODE) => Class::NoLeader,
                500 if self.says(COMMIT_FAILED) => Class::Retry,
                502 | 504 => Class::NodeDown,
                500..=599 => Class::Retry,
                _ => Class::Final,
            },
        }
    }

    /// The generic mapping: 401/403 → `Unauthorized`, retryable → retryable `Backend`,
    /// anything else → permanent `Backend`. The source is kept, so
    /// [`class_of`] can classify the `KmsError` again in the manager.
    pub(crate) fn into_kms(self, what: &str) -> KmsError {
        if let Self::Session(e) = self {
            return *e;
        }
        match self.status() {
            Some(401 | 403) => KmsError::Unauthorized {
                message: format!("vault refused {what} (check the token and its policy)"),
                source: Some(Box::new(self)),
            },
            _ => {
                let retryable = self.class().retryable();
                KmsError::backend_with_source(format!("vault: {what} failed"), retryable, self)
            }
        }
    }
}

/// The class of a [`KmsError`] this backend returned: from the [`CallError`] in its source
/// chain; a timeout moves on to another node; anything else retryable is retried.
pub(crate) fn class_of(error: &KmsError) -> Class {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(call) = e.downcast_ref::<CallError>() {
            return call.class();
        }
        source = e.source();
    }
    match error {
        KmsError::Timeout { .. } => Class::NodeDown,
        e if e.is_retryable() => Class::Retry,
        _ => Class::Final,
    }
}

/// The `errors` array of a Vault error body (empty when the body is not one).
pub(crate) fn vault_errors(body: &[u8]) -> Vec<String> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| serde_json::from_value::<Vec<String>>(v.get("errors")?.clone()).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, message: &str) -> CallError {
        CallError::Status { code, errors: if message.is_empty() { vec![] } else { vec![message.into()] } }
    }

    #[test]
    fn every_documented_case_has_its_class() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let timed_out = std::io::Error::new(std::io::ErrorKind::TimedOut, "timeout");
        for io in [refused, reset, timed_out] {
            let e = CallError::Transport { node: "https://a:8200".into(), source: Box::new(io) };
            assert_eq!(e.class(), Class::NodeDown, "{e}");
            assert!(e.is_lost());
        }
        let table = [
            (307, "", Class::NoLeader),
            (308, "", Class::NoLeader),
            (500, "local node not active but active cluster node not found", Class::NoLeader),
            (500, "failed to persist: transaction commit failed", Class::Retry),
            (500, "internal error", Class::Retry),
            (429, "", Class::NodeDown),
            (503, "Vault is sealed", Class::NodeDown),
            (412, "", Class::NodeDown),
            (502, "", Class::NodeDown),
            (504, "", Class::NodeDown),
            (500, "cipher: message authentication failed", Class::Final),
            (400, "cipher: message authentication failed", Class::Final),
            (400, "encryption key not found", Class::Final),
            (400, "invalid request", Class::Final),
            (403, "permission denied", Class::Final),
            (404, "", Class::Final),
            (405, "", Class::Final),
        ];
        for (code, message, class) in table {
            assert_eq!(status(code, message).class(), class, "{code} {message}");
        }
        assert_eq!(CallError::Decode("x".into()).class(), Class::Final);
        let login = CallError::Login { class: Class::NoLeader, message: "login failed".into() };
        assert_eq!(login.class(), Class::NoLeader);
        let session = CallError::Session(Box::new(login.into_kms("login")));
        assert_eq!(session.class(), Class::NoLeader, "a session error keeps its login's class");
    }

    #[test]
    fn the_class_survives_the_mapping_to_kms_error() {
        let e = status(500, "local node not active but active cluster node not found").into_kms("rotate");
        assert!(matches!(e, KmsError::Backend { retryable: true, .. }), "{e:?}");
        assert_eq!(class_of(&e), Class::NoLeader);
        let e = status(403, "permission denied").into_kms("encrypt");
        assert!(matches!(e, KmsError::Unauthorized { .. }), "{e:?}");
        assert_eq!(class_of(&e), Class::Final);
        let e = status(400, AUTH_FAILED).into_kms("decrypt");
        assert!(matches!(e, KmsError::Backend { retryable: false, .. }));
        let timeout = KmsError::Timeout { operation: "x", after: std::time::Duration::from_secs(1) };
        assert_eq!(class_of(&timeout), Class::NodeDown);
        assert_eq!(class_of(&KmsError::key_not_found("k")), Class::Final);
    }
}
