//! One handler per operation of the native API, grouped by what they touch: the service
//! itself ([`service`]: health, metrics, status, configuration and lifecycle, caches, backup),
//! key management ([`keys`]), import of key material ([`import`]), aliases ([`aliases`]) and the cryptographic operations ([`crypto`]). Each gets a
//! [`Call`]: the request, already authenticated, routed and authorized for its operation.

use http::Request;
use hyper::body::Incoming;

use crate::app::RequestInfo;
use crate::auth::{Identity, Operation};

pub(crate) mod aliases;
pub(crate) mod crypto;
pub(crate) mod import;
pub(crate) mod keys;
pub(crate) mod service;

/// One authorized native request on its way to its handler.
pub(crate) struct Call<'a> {
    pub(crate) req: Request<Incoming>,
    pub(crate) identity: &'a Identity,
    pub(crate) operation: Operation,
    /// The key id in the path (empty for routes without one).
    pub(crate) key: String,
    /// What the audit line and the metrics learn while the request is handled.
    pub(crate) info: &'a mut RequestInfo,
}
