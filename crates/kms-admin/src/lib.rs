//! The admin HTTP API of **kms**, on hyper 1.x.
//!
//! This crate turns a [`kms_core::service_manager::KmsServiceManager`] into a network service:
//! JSON over HTTP/1.1 (TLS optional, on rustls), REST paths under `/kms/v1/` with the key id in
//! the path, plus `/health` and `/metrics`. It sits above `kms-core` and beside the backends;
//! the `kms` binary (`kms-cli`) runs it, and embedders can mount it themselves.
//!
//! A request goes through, in order:
//! 1. **authentication**: `Authorization: Bearer <token>`, checked before routing, so a request
//!    without a valid token gets 401 whatever its path ([`auth`]; tokens are kept only as
//!    SHA-256 hashes and compared in constant time);
//! 2. **routing** ([`routes`]): 404 for unknown paths, 405 for wrong methods, 400 for a
//!    malformed key id; an alias in place of a key id (`alias%2Fname`) is resolved to its key
//!    here, and `/kms/v1/aliases` manages aliases ([`aliases`]);
//! 3. **authorization**: the identity's grants (operations × key-id globs) on the key, 403
//!    otherwise;
//! 4. **the body**: at most `max_body_bytes` (413), `application/json` (415), parsed strictly
//!    (`json_body`: a JSON object, never fields by position; unknown fields refused; a 400
//!    names the field);
//! 5. **the call** into the service, whose [`kms_types::error::KmsError`] maps to a status
//!    ([`error`]);
//! 6. **accounting**: a line in the audit log ([`audit`]) and the metrics ([`metrics`]).
//!
//! `POST /` with `X-Amz-Target: TrentService.*` is the AWS KMS protocol instead ([`aws`]): SigV4
//! with access keys in place of the bearer token, the same identities and grants, the same keys.
//!
//! Lifecycle changes (configure, reconfigure, start, stop) are saved by a [`store::ConfigStore`],
//! secrets sealed, so a restarted server resumes them.
//!
//! The routes and bodies are documented in `docs/http-api.md`; dynamic configuration in
//! `docs/dynamic-configuration-guide.md`.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use kms_admin::auth::{Grant, IdentityConfig, hash_token};
//! use kms_admin::config::ServerConfig;
//! use kms_admin::{App, Server};
//! use kms_core::backends::BackendRegistry;
//! use kms_core::service_manager::KmsServiceManager;
//!
//! # async fn run() -> Result<(), String> {
//! let manager = Arc::new(KmsServiceManager::new(BackendRegistry::new()));
//! let mut config = ServerConfig::default();
//! config.identities.push(IdentityConfig {
//!     name: "admin".into(),
//!     token_sha256: hash_token("a-long-random-token"),
//!     allow: vec![Grant { operations: vec!["*".into()], keys: vec!["*".into()] }],
//! });
//! let app = Arc::new(App::new(manager, &config, None)?);
//! let server = Server::bind(&config, app).await?;
//! server.run_until(kms_admin::server::shutdown_signal()).await;
//! # Ok(())
//! # }
//! ```
//!
//! # Feature flags
//!
//! None: TLS (rustls with the ring provider), metrics and audit are always built.

#![forbid(unsafe_code)]

pub mod aliases;
pub mod api;
mod app;
pub mod audit;
pub mod auth;
pub mod aws;
mod body;
pub mod config;
mod conn_limits;
pub mod error;
mod handlers;
mod hex;
mod json_body;
pub mod metrics;
mod responses;
pub mod routes;
pub mod server;
mod setup_error;
pub mod store;
mod tls;

pub use app::App;
pub use server::Server;
pub use setup_error::SetupError;
