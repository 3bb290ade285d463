//! The cryptographic operations: `Encrypt`, `Decrypt`, `ReEncrypt`,
//! `GenerateDataKey[WithoutPlaintext]` and `GenerateRandom`.

use kms_core::encryption::service::EncryptionService;
use kms_types::error::KmsError;
use kms_types::secret::SecretBytes;
use kms_types::types::{
    DecryptRequest, EncryptRequest, GenerateDataKeyRequest, GenerateDataKeyWithoutPlaintextRequest, KeySpec,
    ReEncryptRequest,
};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::{Ctx, call};
use crate::app::RequestInfo;
use crate::auth::Operation;
use crate::aws::errors::AwsError;
use crate::aws::shapes::{self, MAX_CIPHERTEXT_BYTES, MAX_PLAINTEXT_BYTES, SYMMETRIC_DEFAULT, b64};

impl Ctx<'_> {
    /// The key a ciphertext names (from its header, no cryptography), authorized for
    /// `operation` before anything is opened; a `KeyId` naming another key is refused.
    async fn source_key(
        &self,
        svc: &EncryptionService,
        blob: &[u8],
        claimed: Option<&str>,
        operation: Operation,
        info: &mut RequestInfo,
    ) -> Result<String, AwsError> {
        let named = svc
            .ciphertext_key_id(blob)
            .await
            .map_err(AwsError::from)?
            .ok_or_else(|| AwsError::from(KmsError::crypto()))?;
        info.key_id = Some(named.clone());
        self.check(operation, &named)?;
        if let Some(claimed) = claimed {
            let claimed = self.resolve(svc, "KeyId", claimed).await?;
            if claimed != named {
                return Err(AwsError::client(
                    "IncorrectKeyException",
                    "the key ID in the request does not identify the key that encrypted the ciphertext",
                ));
            }
        }
        Ok(named)
    }

    pub(super) async fn encrypt(
        &self,
        svc: &EncryptionService,
        input: shapes::Encrypt,
        info: &mut RequestInfo,
    ) -> Result<Value, AwsError> {
        shapes::symmetric_only("EncryptionAlgorithm", input.encryption_algorithm.as_deref())?;
        let key_id = self.authorized(svc, &input.key_id, Operation::Encrypt, info).await?;
        let plaintext = shapes::blob("Plaintext", input.plaintext.expose_secret(), MAX_PLAINTEXT_BYTES)?;
        let request = EncryptRequest {
            key_id,
            plaintext: SecretBytes::new(plaintext.to_vec()),
            encryption_context: input.encryption_context,
        };
        let r = call(self.app, Operation::Encrypt, svc.encrypt(request)).await?;
        Ok(json!({
            "CiphertextBlob": b64(&r.ciphertext_blob),
            "KeyId": self.settings.key_arn(&r.key_id),
            "EncryptionAlgorithm": SYMMETRIC_DEFAULT,
        }))
    }

    pub(super) async fn decrypt(
        &self,
        svc: &EncryptionService,
        input: shapes::Decrypt,
        info: &mut RequestInfo,
    ) -> Result<Value, AwsError> {
        shapes::symmetric_only("EncryptionAlgorithm", input.encryption_algorithm.as_deref())?;
        let blob = shapes::blob("CiphertextBlob", &input.ciphertext_blob, MAX_CIPHERTEXT_BYTES)?;
        let op = Operation::Decrypt;
        let named = self.source_key(svc, &blob, input.key_id.as_deref(), op, info).await?;
        let request = DecryptRequest {
            ciphertext_blob: blob.to_vec(),
            encryption_context: input.encryption_context,
            key_id: Some(named),
        };
        let r = call(self.app, op, svc.decrypt(request)).await?;
        // Defence in depth, as in the native API: the key that opened it is authorized too.
        self.check(op, &r.key_id)?;
        let plaintext = Zeroizing::new(b64(r.plaintext.expose_secret()));
        Ok(json!({
            "KeyId": self.settings.key_arn(&r.key_id),
            "Plaintext": plaintext.as_str(),
            "EncryptionAlgorithm": SYMMETRIC_DEFAULT,
        }))
    }

    pub(super) async fn re_encrypt(
        &self,
        svc: &EncryptionService,
        input: shapes::ReEncrypt,
        info: &mut RequestInfo,
    ) -> Result<Value, AwsError> {
        shapes::symmetric_only("SourceEncryptionAlgorithm", input.source_encryption_algorithm.as_deref())?;
        shapes::symmetric_only("DestinationEncryptionAlgorithm", input.destination_encryption_algorithm.as_deref())?;
        let blob = shapes::blob("CiphertextBlob", &input.ciphertext_blob, MAX_CIPHERTEXT_BYTES)?;
        let op = Operation::ReEncrypt;
        self.source_key(svc, &blob, input.source_key_id.as_deref(), op, info).await?;
        let destination = self.resolve(svc, "DestinationKeyId", &input.destination_key_id).await?;
        self.check(op, &destination)?;
        let request = ReEncryptRequest {
            ciphertext_blob: blob.to_vec(),
            source_encryption_context: input.source_encryption_context,
            destination_key_id: Some(destination),
            destination_encryption_context: Some(input.destination_encryption_context),
        };
        let r = call(self.app, op, svc.re_encrypt(request)).await?;
        Ok(json!({
            "CiphertextBlob": b64(&r.ciphertext_blob),
            "SourceKeyId": self.settings.key_arn(&r.source_key_id),
            "KeyId": self.settings.key_arn(&r.key_id),
            "SourceEncryptionAlgorithm": SYMMETRIC_DEFAULT,
            "DestinationEncryptionAlgorithm": SYMMETRIC_DEFAULT,
        }))
    }

    /// `GenerateDataKey[WithoutPlaintext]`. `KeySpec` and a `NumberOfBytes` of 16 or 32 are
    /// kms data keys; any other `NumberOfBytes` (1..=1024) is random bytes from the system
    /// generator encrypted under the key (the same ciphertext as `Encrypt`).
    pub(super) async fn generate_data_key(
        &self,
        svc: &EncryptionService,
        input: shapes::GenerateDataKey,
        with_plaintext: bool,
        info: &mut RequestInfo,
    ) -> Result<Value, AwsError> {
        let op = if with_plaintext { Operation::GenerateDataKey } else { Operation::GenerateDataKeyWithoutPlaintext };
        let spec = match (input.key_spec.as_deref(), input.number_of_bytes) {
            (Some(_), Some(_)) => return Err(AwsError::validation("give KeySpec or NumberOfBytes, not both")),
            (None, None) => return Err(AwsError::validation("KeySpec or NumberOfBytes is required")),
            (Some("AES_256"), None) | (None, Some(32)) => Some(KeySpec::Aes256),
            (Some("AES_128"), None) | (None, Some(16)) => Some(KeySpec::Aes128),
            (Some(other), None) => {
                return Err(AwsError::validation(format!("KeySpec {other} is not AES_256 or AES_128")));
            }
            (None, Some(n)) => {
                shapes::number_of_bytes(n)?;
                None
            }
        };
        let key_id = self.authorized(svc, &input.key_id, op, info).await?;
        let context = input.encryption_context;
        let (key_id, ciphertext, plaintext) = match (spec, with_plaintext) {
            (Some(key_spec), true) => {
                let request = GenerateDataKeyRequest { key_id, key_spec, encryption_context: context };
                let r = call(self.app, op, svc.generate_data_key(request)).await?;
                (r.key_id, r.ciphertext_blob, Some(r.plaintext_key))
            }
            (Some(key_spec), false) => {
                let request = GenerateDataKeyWithoutPlaintextRequest { key_id, key_spec, encryption_context: context };
                let r = call(self.app, op, svc.generate_data_key_without_plaintext(request)).await?;
                (r.key_id, r.ciphertext_blob, None)
            }
            (None, _) => {
                let n = input.number_of_bytes.unwrap_or_default() as usize;
                let bytes = random(n)?;
                let request =
                    EncryptRequest { key_id, plaintext: SecretBytes::new(bytes.to_vec()), encryption_context: context };
                let r = call(self.app, op, svc.encrypt(request)).await?;
                (r.key_id, r.ciphertext_blob, with_plaintext.then(|| SecretBytes::new(bytes.to_vec())))
            }
        };
        let mut out = json!({"CiphertextBlob": b64(&ciphertext), "KeyId": self.settings.key_arn(&key_id)});
        if let Some(plaintext) = plaintext {
            out["Plaintext"] = json!(b64(plaintext.expose_secret()));
        }
        Ok(out)
    }
}

/// `GenerateRandom`: bytes from the system generator, no key involved.
pub(super) fn generate_random(input: shapes::GenerateRandom) -> Result<Value, AwsError> {
    let n = shapes::number_of_bytes(input.number_of_bytes.unwrap_or(32))?;
    let bytes = random(n)?;
    Ok(json!({"Plaintext": b64(&bytes)}))
}

fn random(n: usize) -> Result<Zeroizing<Vec<u8>>, AwsError> {
    let mut bytes = Zeroizing::new(vec![0u8; n]);
    kms_crypto::rand::fill(&mut bytes).map_err(|_| AwsError::internal("the system random generator failed"))?;
    Ok(bytes)
}
