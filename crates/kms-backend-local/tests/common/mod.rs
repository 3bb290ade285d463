//! Helpers shared by the behaviour tests.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kms_backend_local::{LocalBackend, LocalOptions, ManualClock};
use kms_core::backends::KmsBackend;
use kms_types::config::{LocalConfig, MasterKeySource};
use kms_types::error::KmsError;
use kms_types::types::{
    CreateKeyRequest, DecryptRequest, EncryptRequest, EncryptionContext, KeyListEntry, ListKeysRequest,
};

/// A master key source for the key whose 32 bytes are all `byte`.
pub fn master_key(byte: u8) -> MasterKeySource {
    MasterKeySource::Key { key: STANDARD.encode([byte; 32]).into() }
}

pub fn config(dir: &Path, byte: u8) -> LocalConfig {
    LocalConfig::new(dir, master_key(byte))
}

pub fn keys_dir(tmp: &tempfile::TempDir) -> PathBuf {
    tmp.path().join("keys")
}

pub async fn open(dir: &Path) -> LocalBackend {
    LocalBackend::open(&config(dir, 1)).await.expect("backend opens")
}

pub async fn open_with_clock(dir: &Path, clock: Arc<ManualClock>) -> LocalBackend {
    LocalBackend::open_with(&config(dir, 1), LocalOptions::default().with_clock(clock)).await.expect("backend opens")
}

pub fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(time::macros::datetime!(2026-05-01 12:00 UTC)))
}

pub fn named(name: &str) -> CreateKeyRequest {
    CreateKeyRequest { key_name: Some(name.into()), ..Default::default() }
}

pub fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

pub async fn encrypt(backend: &LocalBackend, key_id: &str, plaintext: &[u8]) -> Result<Vec<u8>, KmsError> {
    backend
        .encrypt(EncryptRequest {
            key_id: key_id.into(),
            plaintext: plaintext.into(),
            encryption_context: ctx(&[("purpose", "test")]),
        })
        .await
        .map(|r| r.ciphertext_blob)
}

pub async fn decrypt(backend: &LocalBackend, blob: &[u8]) -> Result<Vec<u8>, KmsError> {
    backend
        .decrypt(DecryptRequest {
            ciphertext_blob: blob.to_vec(),
            encryption_context: ctx(&[("purpose", "test")]),
            key_id: None,
        })
        .await
        .map(|r| r.plaintext.expose_secret().to_vec())
}

/// Every key, following markers with pages of `limit`.
pub async fn list_all(backend: &LocalBackend, limit: u32) -> Vec<KeyListEntry> {
    let mut all = Vec::new();
    let mut marker = None;
    loop {
        let page = backend
            .list_keys(ListKeysRequest { limit: Some(limit), marker: marker.take(), ..Default::default() })
            .await
            .unwrap();
        all.extend(page.keys);
        if !page.truncated {
            return all;
        }
        marker = page.next_marker;
    }
}

/// The `keys` table of the store file (`docs/formats.md`, "Local key store"), opened directly
/// as an attacker or a careless restore would: for tests of what the backend does with a
/// record it did not write. The backend must be shut down.
const KEYS: redb::TableDefinition<'_, &str, &[u8]> = redb::TableDefinition::new("keys");

/// The stored record of `key_id`.
pub fn stored_record(dir: &Path, key_id: &str) -> Vec<u8> {
    use redb::ReadableDatabase;
    let db = redb::Database::open(dir.join("keys.redb")).expect("store opens");
    let txn = db.begin_read().unwrap();
    let table = txn.open_table(KEYS).unwrap();
    table.get(key_id).unwrap().expect("record exists").value().to_vec()
}

/// Replaces (or plants) the stored record of `key_id`.
pub fn plant_record(dir: &Path, key_id: &str, bytes: &[u8]) {
    let db = redb::Database::open(dir.join("keys.redb")).expect("store opens");
    let txn = db.begin_write().unwrap();
    txn.open_table(KEYS).unwrap().insert(key_id, bytes).unwrap();
    txn.commit().unwrap();
}
