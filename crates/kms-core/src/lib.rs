//! The engine of **kms**: the [`backends::KmsBackend`] trait, the manager that applies
//! timeouts, retries and caching around a backend, the service lifecycle, and the
//! `EncryptionService` façade object stores call.
//!
//! (This crate is being filled by the workspace-foundation issue.)

#![forbid(unsafe_code)]

pub mod backends;
pub mod manager;
pub mod mock;
#[cfg(feature = "testkit")]
pub mod testkit;
