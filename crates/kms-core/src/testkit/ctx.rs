//! The machinery of the contract suite: the per-case context (the backend, the id prefix, the
//! keys to clean up), its helpers, and the assertions every case is written with.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kms_types::error::{KmsError, Result};
use kms_types::operation::Operation;
use kms_types::secret::SecretBytes;
use kms_types::types::{
    BackendCapabilities, CancelKeyDeletionRequest, CreateKeyRequest, DecryptRequest, DeleteKeyRequest,
    DescribeKeyRequest, EncryptRequest, EncryptionContext, KeyIdRequest, KeyMetadata, KeyState,
};

use super::Outcome;
use crate::backends::KmsBackend;

/// The state shared by one case: the backend, the id prefix and the keys to clean up.
#[derive(Clone)]
pub(super) struct Ctx {
    pub(super) backend: Arc<dyn KmsBackend>,
    pub(super) caps: BackendCapabilities,
    pub(super) prefix: String,
    created: Arc<Mutex<Vec<String>>>,
}

fn random_hex(bytes: usize) -> std::result::Result<String, String> {
    let mut raw = vec![0u8; bytes];
    kms_crypto::rand::fill(&mut raw).map_err(|e| e.to_string())?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

impl Ctx {
    pub(super) fn new(backend: Arc<dyn KmsBackend>) -> std::result::Result<Self, String> {
        let caps = backend.capabilities();
        Ok(Self { backend, caps, prefix: format!("kct-{}-", random_hex(6)?), created: Arc::default() })
    }

    pub(super) fn id(&self, label: &str) -> String {
        format!("{}{label}", self.prefix)
    }

    pub(super) fn track(&self, key_id: &str) {
        self.created.lock().unwrap_or_else(|p| p.into_inner()).push(key_id.to_owned());
    }

    pub(super) async fn create_with(&self, label: &str, request: CreateKeyRequest) -> Result<KeyMetadata> {
        let id = self.id(label);
        let response = self.backend.create_key(CreateKeyRequest { key_name: Some(id.clone()), ..request }).await;
        if response.is_ok() {
            self.track(&id);
        }
        response.map(|r| r.key_metadata)
    }

    pub(super) async fn create(&self, label: &str) -> std::result::Result<String, String> {
        let meta = ok(format!("create_key({label})"), self.create_with(label, CreateKeyRequest::default()).await)?;
        Ok(meta.key_id)
    }

    pub(super) async fn describe(&self, key_id: &str) -> std::result::Result<KeyMetadata, String> {
        let r = self.backend.describe_key(DescribeKeyRequest { key_id: key_id.into() }).await;
        ok(format!("describe_key({key_id})"), r).map(|r| r.key_metadata)
    }

    pub(super) async fn expect_state(&self, key_id: &str, state: KeyState, after: &str) -> Outcome {
        let meta = self.describe(key_id).await?;
        ensure!(meta.key_state == state, "after {after}, {key_id} is {} (expected {state})", meta.key_state);
        Ok(())
    }

    pub(super) async fn encrypt(&self, key_id: &str, plaintext: &[u8], context: &EncryptionContext) -> Result<Vec<u8>> {
        self.backend
            .encrypt(EncryptRequest {
                key_id: key_id.into(),
                plaintext: plaintext.into(),
                encryption_context: context.clone(),
            })
            .await
            .map(|r| r.ciphertext_blob)
    }

    pub(super) async fn decrypt(
        &self,
        blob: &[u8],
        context: &EncryptionContext,
        key_id: Option<&str>,
    ) -> Result<SecretBytes> {
        self.backend
            .decrypt(DecryptRequest {
                ciphertext_blob: blob.to_vec(),
                encryption_context: context.clone(),
                key_id: key_id.map(str::to_owned),
            })
            .await
            .map(|r| r.plaintext)
    }

    pub(super) async fn delete(&self, key_id: &str, days: Option<u32>) -> Result<()> {
        self.backend
            .delete_key(DeleteKeyRequest { key_id: key_id.into(), pending_window_in_days: days })
            .await
            .map(|_| ())
    }

    pub(super) async fn cancel(&self, key_id: &str) -> Result<()> {
        self.backend.cancel_key_deletion(CancelKeyDeletionRequest { key_id: key_id.into() }).await.map(|_| ())
    }

    /// A fresh key in `state` (Enabled, Disabled or PendingDeletion, reached through
    /// `Enabled`), and a ciphertext of `b"contract"` made under it with an empty context.
    pub(super) async fn key_in(&self, label: &str, state: KeyState) -> std::result::Result<(String, Vec<u8>), String> {
        let key_id = self.create(label).await?;
        let blob = ok("encrypt(Enabled key)", self.encrypt(&key_id, b"contract", &EncryptionContext::new()).await)?;
        match state {
            KeyState::Enabled => {}
            KeyState::Disabled if self.caps.enable_disable => {
                ok("disable_key", self.backend.disable_key(KeyIdRequest { key_id: key_id.clone() }).await)?;
            }
            KeyState::Disabled => {
                ok("delete_key", self.delete(&key_id, Some(7)).await)?;
                ok("cancel_key_deletion", self.cancel(&key_id).await)?;
            }
            KeyState::PendingDeletion => ok("delete_key", self.delete(&key_id, Some(7)).await)?,
            other => return Err(format!("the suite cannot put a key in state {other}")),
        }
        self.expect_state(&key_id, state, "setting it up").await?;
        Ok((key_id, blob))
    }

    pub(super) async fn cleanup(&self) {
        let ids = std::mem::take(&mut *self.created.lock().unwrap_or_else(|p| p.into_inner()));
        for id in ids {
            // Best effort: keys already pending deletion (or gone) are fine.
            let _ = tokio::time::timeout(Duration::from_secs(10), self.delete(&id, Some(7))).await;
        }
    }
}

pub(super) fn ok<T>(what: impl fmt::Display, result: Result<T>) -> std::result::Result<T, String> {
    result.map_err(|e| format!("{what} failed: {e:?}"))
}

pub(super) fn err<T: fmt::Debug>(
    what: impl fmt::Display,
    result: Result<T>,
    expected: &str,
    pred: impl FnOnce(&KmsError) -> bool,
) -> std::result::Result<KmsError, String> {
    match result {
        Ok(v) => Err(format!("{what} must fail with {expected}, but succeeded: {v:?}")),
        Err(e) if pred(&e) => Ok(e),
        Err(e) => Err(format!("{what} must fail with {expected}, got {e:?}")),
    }
}

pub(super) fn is_crypto(e: &KmsError) -> bool {
    matches!(e, KmsError::Crypto { .. })
}
pub(super) fn is_unsupported(e: &KmsError) -> bool {
    matches!(e, KmsError::Unsupported { .. })
}
pub(super) fn is_invalid_request(field: &'static str) -> impl Fn(&KmsError) -> bool {
    move |e| matches!(e, KmsError::InvalidRequest { field: f, .. } if f == field)
}
pub(super) fn is_not_found(key_id: &str) -> impl Fn(&KmsError) -> bool + '_ {
    move |e| matches!(e, KmsError::KeyNotFound { key_id: k } if k == key_id)
}
pub(super) fn is_invalid_state(key_id: &str, state: KeyState) -> impl Fn(&KmsError) -> bool + '_ {
    move |e| matches!(e, KmsError::InvalidKeyState { key_id: k, state: s, .. } if k == key_id && *s == state)
}
/// `InvalidKeyState` naming the key, its state and the refused operation (by its
/// [`Operation::as_str`] name, the same from every backend).
pub(super) fn is_refused(key_id: &str, state: KeyState, operation: Operation) -> impl Fn(&KmsError) -> bool + '_ {
    move |e| {
        matches!(e, KmsError::InvalidKeyState { key_id: k, state: s, operation: o }
            if k == key_id && *s == state && *o == operation.as_str())
    }
}

pub(super) fn ctx_of(pairs: &[(&str, &str)]) -> EncryptionContext {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}
