//! [`SetupError`]: why a server could not be set up ([`ServerConfig::validate`],
//! [`App::new`], [`Server::bind`]): the option at fault and the underlying error, kept as the
//! error's source.
//!
//! [`ServerConfig::validate`]: crate::config::ServerConfig::validate
//! [`App::new`]: crate::App::new
//! [`Server::bind`]: crate::Server::bind

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::auth::PolicyError;

/// Why a server could not be set up. Its message names the option (`server.<name>`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// An option is out of range or contradicts another.
    #[error("{field}: {message}")]
    Invalid {
        /// The option (`server.max_body_bytes`, ...).
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// An identity or one of its grants is invalid.
    #[error("server.identities: {0}")]
    Identities(#[source] PolicyError),
    /// The audit log cannot be opened for appending.
    #[error("server.audit_log {}: {source}", path.display())]
    AuditLog {
        /// The log file.
        path: PathBuf,
        /// Why it cannot be opened.
        #[source]
        source: std::io::Error,
    },
    /// The AWS protocol's settings or access keys are invalid.
    #[error("server.aws: {message}")]
    Aws {
        /// What is wrong, naming the option.
        message: String,
    },
    /// The TLS certificate, key or client CA cannot be used.
    #[error("{field}{}: {source}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Tls {
        /// The option (`server.tls.cert_path`, ...).
        field: &'static str,
        /// The file, when one is at fault.
        path: Option<PathBuf>,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why it cannot be bound.
        #[source]
        source: std::io::Error,
    },
}

impl SetupError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { field, message: message.into() }
    }

    pub(crate) fn tls(
        field: &'static str,
        path: Option<&std::path::Path>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Tls { field, path: path.map(PathBuf::from), source: source.into() }
    }
}

/// For callers that report setup errors as text (a CLI's usage error).
impl From<SetupError> for String {
    fn from(err: SetupError) -> Self {
        err.to_string()
    }
}
