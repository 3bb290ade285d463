//! The cryptographic operations: data keys, encrypt, decrypt and re-encrypt. A ciphertext's key
//! is authorized before anything opens the ciphertext.

use http::StatusCode;
use kms_core::encryption::service::EncryptionService;
use kms_types::error::KmsError;
use kms_types::types::{
    DecryptRequest, EncryptRequest, GenerateDataKeyRequest, GenerateDataKeyWithoutPlaintextRequest,
    MAX_ENCRYPT_PLAINTEXT_BYTES, ReEncryptRequest,
};

use super::Call;
use crate::api::{DataKeyBody, EncryptBody};
use crate::app::{App, check};
use crate::auth::Operation;
use crate::error::ApiError;
use crate::responses::{Resp, json};

impl App {
    /// Generate a data key, with or without its plaintext (the same body, the same checks).
    pub(crate) async fn generate_data_key(&self, call: Call<'_>) -> Result<Resp, ApiError> {
        let body: DataKeyBody = self.body(call.req, false).await?;
        let svc = self.service().await?;
        call.info.context_sha256 = self.context_digest(&body.encryption_context);
        let (key_id, key_spec, encryption_context) = (call.key, body.key_spec, body.encryption_context);
        let (key_version, response) = if call.operation == Operation::GenerateDataKey {
            let request = GenerateDataKeyRequest { key_id, key_spec, encryption_context };
            let r = self.call(call.operation, svc.generate_data_key(request)).await?;
            (r.key_version, json(StatusCode::OK, &r))
        } else {
            let request = GenerateDataKeyWithoutPlaintextRequest { key_id, key_spec, encryption_context };
            let r = self.call(call.operation, svc.generate_data_key_without_plaintext(request)).await?;
            (r.key_version, json(StatusCode::OK, &r))
        };
        call.info.key_version = Some(key_version);
        Ok(response)
    }

    pub(crate) async fn encrypt(&self, call: Call<'_>) -> Result<Resp, ApiError> {
        let body: EncryptBody = self.body(call.req, true).await?;
        if body.plaintext.is_empty() || body.plaintext.len() > MAX_ENCRYPT_PLAINTEXT_BYTES {
            return Err(ApiError::invalid(
                "plaintext",
                format!("must be 1 to {MAX_ENCRYPT_PLAINTEXT_BYTES} bytes; use a data key for more"),
            ));
        }
        let svc = self.service().await?;
        call.info.context_sha256 = self.context_digest(&body.encryption_context);
        let request =
            EncryptRequest { key_id: call.key, plaintext: body.plaintext, encryption_context: body.encryption_context };
        let r = self.call(call.operation, svc.encrypt(request)).await?;
        call.info.key_version = Some(r.key_version);
        Ok(json(StatusCode::OK, &r))
    }

    pub(crate) async fn decrypt(&self, call: Call<'_>) -> Result<Resp, ApiError> {
        let Call { req, identity, operation, info, .. } = call;
        let mut request: DecryptRequest = self.body(req, true).await?;
        if let Some(k) = &request.key_id {
            crate::aliases::check_key_ref("key_id", k)?;
        }
        info.context_sha256 = self.context_digest(&request.encryption_context);
        let svc = self.service().await?;
        request.key_id = self.body_key(&svc, operation, "key_id", request.key_id.take()).await?;
        // Authorize on the key the ciphertext names BEFORE anything opens it: a caller
        // who may not use that key must not learn whether the ciphertext authenticates
        // (an oracle on the encryption context) nor what state the key is in.
        let named = self.named_key(&svc, &request.ciphertext_blob).await?;
        info.key_id = Some(named.clone());
        check(identity, operation, Some(&named))?;
        match &request.key_id {
            // The caller insists on another key: it must be allowed that one too, and
            // the backend refuses the mismatch (an opaque crypto error).
            Some(k) => check(identity, operation, Some(k))?,
            // The backend verifies that the ciphertext really is under the named key.
            None => request.key_id = Some(named),
        }
        let r = self.call(operation, svc.decrypt(request)).await?;
        // Defence in depth (the backend may have been swapped meanwhile): the plaintext
        // only goes to a caller allowed to decrypt under the key that opened it.
        info.key_id = Some(r.key_id.clone());
        info.key_version = Some(r.key_version);
        check(identity, operation, Some(&r.key_id))?;
        Ok(json(StatusCode::OK, &r))
    }

    pub(crate) async fn re_encrypt(&self, call: Call<'_>) -> Result<Resp, ApiError> {
        let Call { req, identity, operation, info, .. } = call;
        let mut request: ReEncryptRequest = self.body(req, true).await?;
        if let Some(dest) = &request.destination_key_id {
            crate::aliases::check_key_ref("destination_key_id", dest)?;
        }
        info.context_sha256 = self.context_digest(&request.source_encryption_context);
        let svc = self.service().await?;
        let destination = request.destination_key_id.take();
        request.destination_key_id = self.body_key(&svc, operation, "destination_key_id", destination).await?;
        // As for decrypt: the source key is authorized before the backend opens it.
        let source = self.named_key(&svc, &request.ciphertext_blob).await?;
        info.key_id = Some(source.clone());
        check(identity, operation, Some(&source))?;
        if let Some(dest) = &request.destination_key_id {
            check(identity, operation, Some(dest))?;
        }
        let r = self.call(operation, svc.re_encrypt(request)).await?;
        info.key_id = Some(r.source_key_id.clone());
        info.key_version = Some(r.key_version);
        check(identity, operation, Some(&r.source_key_id))?;
        check(identity, operation, Some(&r.key_id))?;
        Ok(json(StatusCode::OK, &r))
    }

    /// The key id a ciphertext names, read from its header without any cryptography; a blob
    /// that is not a ciphertext of the backend's format is the same opaque `400` the backend
    /// gives for one that does not authenticate.
    async fn named_key(&self, svc: &EncryptionService, ciphertext_blob: &[u8]) -> Result<String, ApiError> {
        svc.ciphertext_key_id(ciphertext_blob).await?.ok_or_else(|| ApiError::from(KmsError::crypto()))
    }
}
