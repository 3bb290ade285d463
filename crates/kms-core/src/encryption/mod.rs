//! What object stores call: [`service::EncryptionService`].
//!
//! (The S3 streaming pipeline, `encrypt_stream`/`decrypt_stream`, is its own issue and is not
//! part of this module yet.)

pub mod service;
