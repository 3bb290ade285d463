//! Import of key material (BYOK): `GetParametersForImport`, `ImportKeyMaterial`,
//! `DeleteImportedKeyMaterial`, over the service's import sessions (`docs/byok.md`). Keys for
//! it are made by `CreateKey` with `Origin: EXTERNAL` ([`keys`](super::keys)).
//!
//! kms wraps with RSAES-OAEP-SHA-256 under RSA-3072 or RSA-4096 only: AWS's other algorithms
//! (PKCS#1 v1.5, OAEP with SHA-1, the RSA-AES key-wrap hybrids, SM2) and RSA-2048 are refused
//! with `UnsupportedOperationException`, a name outside AWS's lists with `ValidationException`.
//! Key-material ids and descriptions (AWS's multi-material keys) are not kept: a request
//! naming one is refused rather than silently ignored.

use std::time::Instant;

use kms_core::encryption::service::EncryptionService;
use kms_types::byok::{
    DeleteImportedKeyMaterialRequest, GetParametersForImportRequest, ImportKeyMaterialRequest, WrappingAlgorithm,
    WrappingKeySpec,
};
use kms_types::error::KmsError;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::{Ctx, call};
use crate::app::RequestInfo;
use crate::auth::Operation;
use crate::aws::errors::AwsError;
use crate::aws::shapes::{self, b64};

/// Largest `ImportToken` and `EncryptedKeyMaterial`, in bytes (the model's limit).
const MAX_IMPORT_BLOB_BYTES: usize = 6144;

/// AWS's `AlgorithmSpec` values kms does not wrap with.
const OTHER_AWS_ALGORITHMS: [&str; 5] =
    ["RSAES_PKCS1_V1_5", "RSAES_OAEP_SHA_1", "RSA_AES_KEY_WRAP_SHA_1", "RSA_AES_KEY_WRAP_SHA_256", "SM2PKE"];
/// AWS's `WrappingKeySpec` values kms does not make.
const OTHER_AWS_KEY_SPECS: [&str; 2] = ["RSA_2048", "SM2"];

fn wrapping_algorithm(name: &str) -> Result<WrappingAlgorithm, AwsError> {
    match name {
        "RSAES_OAEP_SHA_256" => Ok(WrappingAlgorithm::RsaesOaepSha256),
        other if OTHER_AWS_ALGORITHMS.contains(&other) => Err(AwsError::client(
            "UnsupportedOperationException",
            format!("WrappingAlgorithm {other} is not supported: kms wraps with RSAES_OAEP_SHA_256 only"),
        )),
        other => Err(AwsError::validation(format!("WrappingAlgorithm {other} is not a valid AlgorithmSpec"))),
    }
}

fn wrapping_key_spec(name: &str) -> Result<WrappingKeySpec, AwsError> {
    match name {
        "RSA_3072" => Ok(WrappingKeySpec::Rsa3072),
        "RSA_4096" => Ok(WrappingKeySpec::Rsa4096),
        other if OTHER_AWS_KEY_SPECS.contains(&other) => Err(AwsError::client(
            "UnsupportedOperationException",
            format!("WrappingKeySpec {other} is not supported: kms makes RSA_3072 or RSA_4096 wrapping keys"),
        )),
        other => Err(AwsError::validation(format!("WrappingKeySpec {other} is not a valid WrappingKeySpec"))),
    }
}

/// `ValidTo` and `ExpirationModel` into the material's expiry. `KEY_MATERIAL_EXPIRES` needs a
/// `ValidTo`, `KEY_MATERIAL_DOES_NOT_EXPIRE` forbids one; without a model, a `ValidTo` means
/// it expires.
fn expiry(valid_to: Option<f64>, model: Option<&str>) -> Result<Option<OffsetDateTime>, AwsError> {
    let valid_to = valid_to
        .map(|seconds| {
            if !seconds.is_finite() {
                return Err(AwsError::validation("ValidTo must be a timestamp"));
            }
            OffsetDateTime::from_unix_timestamp_nanos((seconds * 1e9) as i128)
                .map_err(|_| AwsError::validation("ValidTo is out of range"))
        })
        .transpose()?;
    match (model, valid_to) {
        (None | Some("KEY_MATERIAL_EXPIRES"), Some(at)) => Ok(Some(at)),
        (Some("KEY_MATERIAL_EXPIRES"), None) => {
            Err(AwsError::validation("ValidTo is required when ExpirationModel is KEY_MATERIAL_EXPIRES"))
        }
        (None | Some("KEY_MATERIAL_DOES_NOT_EXPIRE"), None) => Ok(None),
        (Some("KEY_MATERIAL_DOES_NOT_EXPIRE"), Some(_)) => {
            Err(AwsError::validation("ValidTo is not allowed when ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE"))
        }
        (Some(other), _) => Err(AwsError::validation(format!("ExpirationModel {other} is not valid"))),
    }
}

impl Ctx<'_> {
    pub(super) async fn get_parameters_for_import(
        &self,
        svc: &EncryptionService,
        input: shapes::GetParametersForImport,
        info: &mut RequestInfo,
    ) -> Result<Value, AwsError> {
        let wrapping_algorithm = wrapping_algorithm(&input.wrapping_algorithm)?;
        let wrapping_key_spec = wrapping_key_spec(&input.wrapping_key_spec)?;
        let operation = Operation::GetParametersForImport;
        let key_id = self.authorized(svc, &input.key_id, operation, info).await?;
        let request = GetParametersForImportRequest { key_id, wrapping_key_spec, wrapping_algorithm };
        let r = call(self.app, operation, svc.get_parameters_for_import(request)).await?;
        Ok(json!({
            "KeyId": self.settings.key_arn(&r.key_id),
            "ImportToken": b64(&r.import_token),
            "PublicKey": b64(&r.public_key),
            "ParametersValidTo": shapes::epoch(r.parameters_valid_to),
        }))
    }

    pub(super) async fn import_key_material(
        &self,
        svc: &EncryptionService,
        input: shapes::ImportKeyMaterial,
        info: &mut RequestInfo,
    ) -> Result<Value, AwsError> {
        if input.key_material_id.is_some() || input.key_material_description.is_some() {
            return Err(AwsError::client(
                "UnsupportedOperationException",
                "KeyMaterialId and KeyMaterialDescription are not supported: kms keeps no key-material ids",
            ));
        }
        let new_version = match input.import_type.as_deref() {
            None | Some("EXISTING_KEY_MATERIAL") => false,
            Some("NEW_KEY_MATERIAL") => true,
            Some(other) => return Err(AwsError::validation(format!("ImportType {other} is not valid"))),
        };
        let valid_to = expiry(input.valid_to, input.expiration_model.as_deref())?;
        let import_token = shapes::blob("ImportToken", &input.import_token, MAX_IMPORT_BLOB_BYTES)?;
        let encrypted_key_material =
            shapes::blob("EncryptedKeyMaterial", &input.encrypted_key_material, MAX_IMPORT_BLOB_BYTES)?;
        let operation = Operation::ImportKeyMaterial;
        let key_id = self.authorized(svc, &input.key_id, operation, info).await?;
        let request = ImportKeyMaterialRequest {
            key_id,
            encrypted_key_material: encrypted_key_material.to_vec(),
            import_token: import_token.to_vec(),
            valid_to,
            new_version,
        };
        let started = Instant::now();
        let result = svc.import_key_material(request).await;
        self.app.metrics.observe_backend(
            operation.as_str(),
            started.elapsed(),
            result.as_ref().err().map(KmsError::code),
        );
        let r = result.map_err(|e| match e {
            // Material that unwraps but is not a 32-byte AES key: AWS's "invalid key material".
            KmsError::InvalidRequest { field, message } if field == "encrypted_key_material" => {
                AwsError::client("IncorrectKeyMaterialException", message)
            }
            other => AwsError::from(other),
        })?;
        Ok(json!({"KeyId": self.settings.key_arn(&r.key_metadata.key_id)}))
    }

    pub(super) async fn delete_imported_key_material(
        &self,
        svc: &EncryptionService,
        input: shapes::DeleteImportedKeyMaterial,
        info: &mut RequestInfo,
    ) -> Result<Value, AwsError> {
        if input.key_material_id.is_some() {
            return Err(AwsError::client(
                "UnsupportedOperationException",
                "KeyMaterialId is not supported: kms deletes all of a key's imported material",
            ));
        }
        let operation = Operation::DeleteImportedKeyMaterial;
        let key_id = self.authorized(svc, &input.key_id, operation, info).await?;
        let r =
            call(self.app, operation, svc.delete_imported_key_material(DeleteImportedKeyMaterialRequest { key_id }))
                .await?;
        Ok(json!({"KeyId": self.settings.key_arn(&r.key_metadata.key_id)}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_names_map_to_kms_choices_or_to_the_error_botocore_lists() {
        assert_eq!(wrapping_algorithm("RSAES_OAEP_SHA_256").unwrap(), WrappingAlgorithm::RsaesOaepSha256);
        for refused in OTHER_AWS_ALGORITHMS {
            assert_eq!(wrapping_algorithm(refused).unwrap_err().type_name, "UnsupportedOperationException");
        }
        assert_eq!(wrapping_algorithm("rsaes_oaep_sha_256").unwrap_err().type_name, "ValidationException");
        assert_eq!(wrapping_key_spec("RSA_3072").unwrap(), WrappingKeySpec::Rsa3072);
        assert_eq!(wrapping_key_spec("RSA_4096").unwrap(), WrappingKeySpec::Rsa4096);
        assert_eq!(wrapping_key_spec("RSA_2048").unwrap_err().type_name, "UnsupportedOperationException");
        assert_eq!(wrapping_key_spec("RSA_1024").unwrap_err().type_name, "ValidationException");
    }

    #[test]
    fn expiration_models_need_or_forbid_valid_to() {
        let at = 1_790_848_800.5;
        let expected = OffsetDateTime::from_unix_timestamp_nanos(1_790_848_800_500_000_000).unwrap();
        assert_eq!(expiry(Some(at), None).unwrap(), Some(expected));
        assert_eq!(expiry(Some(at), Some("KEY_MATERIAL_EXPIRES")).unwrap(), Some(expected));
        assert_eq!(expiry(None, None).unwrap(), None);
        assert_eq!(expiry(None, Some("KEY_MATERIAL_DOES_NOT_EXPIRE")).unwrap(), None);
        for (valid_to, model) in [
            (None, Some("KEY_MATERIAL_EXPIRES")),
            (Some(at), Some("KEY_MATERIAL_DOES_NOT_EXPIRE")),
            (None, Some("SOMETIMES")),
            (Some(f64::NAN), None),
        ] {
            assert_eq!(expiry(valid_to, model).unwrap_err().type_name, "ValidationException", "{valid_to:?} {model:?}");
        }
    }
}
