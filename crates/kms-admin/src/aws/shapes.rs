//! The request shapes of the AWS KMS model that kms serves (member names as in botocore's
//! `service-2.json`), and the conversion of key metadata to the model's `KeyMetadata`.
//!
//! Unknown members are refused (`ValidationException` naming them), so a feature kms does not
//! have (`DryRun`, `Recipient`, multi-region keys) is never silently ignored. `GrantTokens` is
//! accepted and unused: kms has no grants API, access is the server's identity grants.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kms_types::types::{KeyMetadata, KeyState};
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::errors::AwsError;
use super::settings::AwsSettings;

/// Largest `CiphertextBlob`, in bytes.
pub(crate) const MAX_CIPHERTEXT_BYTES: usize = 6144;
/// Largest `Plaintext`, in bytes.
pub(crate) const MAX_PLAINTEXT_BYTES: usize = 4096;
/// Largest `NumberOfBytes`.
pub(crate) const MAX_NUMBER_OF_BYTES: u32 = 1024;
/// The only encryption algorithm of symmetric keys.
pub(crate) const SYMMETRIC_DEFAULT: &str = "SYMMETRIC_DEFAULT";

/// Parses a request body (empty means `{}`); a fault names the member. The member's path is
/// tracked only to explain a fault: a body that parses is read once, without the tracking.
pub(crate) fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, AwsError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { body };
    if let Ok(value) = serde_json::from_slice(body) {
        return Ok(value);
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "."
            || matches!(inner.classify(), serde_json::error::Category::Syntax | serde_json::error::Category::Eof)
        {
            AwsError::client("SerializationException", format!("the body is not a valid request: {inner}"))
        } else {
            AwsError::validation(format!("{path}: {inner}"))
        }
    })
}

/// Decodes a standard-base64 blob of 1..=`max` bytes, zeroized on drop.
pub(crate) fn blob(field: &str, value: &str, max: usize) -> Result<Zeroizing<Vec<u8>>, AwsError> {
    let bytes = Zeroizing::new(
        STANDARD.decode(value).map_err(|_| AwsError::validation(format!("{field} must be standard base64")))?,
    );
    if bytes.is_empty() || bytes.len() > max {
        return Err(AwsError::validation(format!("{field} must be 1 to {max} bytes, got {}", bytes.len())));
    }
    Ok(bytes)
}

/// Standard base64 of bytes.
pub(crate) fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Checks an optional `EncryptionAlgorithm` member.
pub(crate) fn symmetric_only(field: &str, value: Option<&str>) -> Result<(), AwsError> {
    match value {
        None | Some(SYMMETRIC_DEFAULT) => Ok(()),
        Some(other) => Err(AwsError::client(
            "InvalidKeyUsageException",
            format!("{field} {other} is not supported: kms keys are SYMMETRIC_DEFAULT"),
        )),
    }
}

/// Checks `NumberOfBytes` (1..=1024).
pub(crate) fn number_of_bytes(n: u32) -> Result<usize, AwsError> {
    if (1..=MAX_NUMBER_OF_BYTES).contains(&n) {
        Ok(n as usize)
    } else {
        Err(AwsError::validation(format!("NumberOfBytes must be 1 to {MAX_NUMBER_OF_BYTES}, got {n}")))
    }
}

/// One `{"TagKey", "TagValue"}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct Tag {
    pub(crate) tag_key: String,
    pub(crate) tag_value: String,
}

/// Tags as the model lists them, into kms's map (a repeated key is refused).
pub(crate) fn tags(list: Vec<Tag>) -> Result<BTreeMap<String, String>, AwsError> {
    let mut map = BTreeMap::new();
    for tag in list {
        if map.insert(tag.tag_key.clone(), tag.tag_value).is_some() {
            return Err(AwsError::client("TagException", format!("the tag key {} is repeated", tag.tag_key)));
        }
    }
    Ok(map)
}

/// Members every operation on one key takes.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct KeyOnly {
    pub(crate) key_id: String,
}

/// `CreateKey`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub(crate) struct CreateKey {
    pub(crate) description: Option<String>,
    pub(crate) key_usage: Option<String>,
    pub(crate) key_spec: Option<String>,
    pub(crate) customer_master_key_spec: Option<String>,
    pub(crate) origin: Option<String>,
    pub(crate) tags: Vec<Tag>,
    pub(crate) policy: Option<String>,
    pub(crate) bypass_policy_lockout_safety_check: Option<bool>,
    pub(crate) multi_region: Option<bool>,
}

/// `Encrypt`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct Encrypt {
    pub(crate) key_id: String,
    pub(crate) plaintext: kms_types::secret::SecretString,
    #[serde(default)]
    pub(crate) encryption_context: BTreeMap<String, String>,
    /// Accepted and unused (see the module docs); typed so a malformed list is refused.
    #[serde(default, rename = "GrantTokens")]
    _grant_tokens: Vec<String>,
    pub(crate) encryption_algorithm: Option<String>,
}

/// `Decrypt`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct Decrypt {
    pub(crate) ciphertext_blob: String,
    #[serde(default)]
    pub(crate) encryption_context: BTreeMap<String, String>,
    /// Accepted and unused (see the module docs); typed so a malformed list is refused.
    #[serde(default, rename = "GrantTokens")]
    _grant_tokens: Vec<String>,
    pub(crate) key_id: Option<String>,
    pub(crate) encryption_algorithm: Option<String>,
}

/// `ReEncrypt`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct ReEncrypt {
    pub(crate) ciphertext_blob: String,
    #[serde(default)]
    pub(crate) source_encryption_context: BTreeMap<String, String>,
    pub(crate) source_key_id: Option<String>,
    pub(crate) destination_key_id: String,
    #[serde(default)]
    pub(crate) destination_encryption_context: BTreeMap<String, String>,
    pub(crate) source_encryption_algorithm: Option<String>,
    pub(crate) destination_encryption_algorithm: Option<String>,
    /// Accepted and unused (see the module docs); typed so a malformed list is refused.
    #[serde(default, rename = "GrantTokens")]
    _grant_tokens: Vec<String>,
}

/// `GenerateDataKey` and `GenerateDataKeyWithoutPlaintext`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct GenerateDataKey {
    pub(crate) key_id: String,
    pub(crate) key_spec: Option<String>,
    pub(crate) number_of_bytes: Option<u32>,
    #[serde(default)]
    pub(crate) encryption_context: BTreeMap<String, String>,
    /// Accepted and unused (see the module docs); typed so a malformed list is refused.
    #[serde(default, rename = "GrantTokens")]
    _grant_tokens: Vec<String>,
}

/// `GenerateRandom`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct GenerateRandom {
    pub(crate) number_of_bytes: Option<u32>,
}

/// `ListKeys` and `ListResourceTags` paging (with `KeyId` for the latter).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub(crate) struct Paging {
    pub(crate) key_id: Option<String>,
    pub(crate) limit: Option<u32>,
    pub(crate) marker: Option<String>,
}

/// `ScheduleKeyDeletion`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct ScheduleKeyDeletion {
    pub(crate) key_id: String,
    pub(crate) pending_window_in_days: Option<u32>,
}

/// `UpdateKeyDescription`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct UpdateKeyDescription {
    pub(crate) key_id: String,
    pub(crate) description: String,
}

/// `TagResource`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct TagResource {
    pub(crate) key_id: String,
    pub(crate) tags: Vec<Tag>,
}

/// `UntagResource`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct UntagResource {
    pub(crate) key_id: String,
    pub(crate) tag_keys: Vec<String>,
}

/// `EnableKeyRotation`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct EnableKeyRotation {
    pub(crate) key_id: String,
    pub(crate) rotation_period_in_days: Option<u32>,
}

/// `CreateAlias` and `UpdateAlias`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct AliasTarget {
    pub(crate) alias_name: String,
    pub(crate) target_key_id: String,
}

/// `DeleteAlias`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct AliasOnly {
    pub(crate) alias_name: String,
}

/// `GetKeyPolicy`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct GetKeyPolicy {
    pub(crate) key_id: String,
    pub(crate) policy_name: Option<String>,
}

/// Epoch seconds as the model's timestamps want them.
pub(crate) fn epoch(t: time::OffsetDateTime) -> f64 {
    t.unix_timestamp_nanos() as f64 / 1e9
}

/// The model's `KeyState` name.
pub(crate) fn key_state(state: KeyState) -> String {
    state.to_string()
}

/// The model's `KeyMetadata` for a kms key.
pub(crate) fn key_metadata(settings: &AwsSettings, m: &KeyMetadata) -> Value {
    let mut out = json!({
        "AWSAccountId": settings.account_id,
        "KeyId": m.key_id,
        "Arn": settings.key_arn(&m.key_id),
        "CreationDate": epoch(m.creation_date),
        "Enabled": m.key_state == KeyState::Enabled,
        "Description": m.description.clone().unwrap_or_default(),
        "KeyUsage": "ENCRYPT_DECRYPT",
        "KeyState": key_state(m.key_state),
        "Origin": if matches!(m.origin, kms_types::types::KeyOrigin::External) { "EXTERNAL" } else { "AWS_KMS" },
        "KeyManager": "CUSTOMER",
        "CustomerMasterKeySpec": SYMMETRIC_DEFAULT,
        "KeySpec": SYMMETRIC_DEFAULT,
        "EncryptionAlgorithms": [SYMMETRIC_DEFAULT],
        "MultiRegion": false,
    });
    if let Some(deletion) = m.deletion_date {
        out["DeletionDate"] = json!(epoch(deletion));
    }
    // As AWS: only keys of imported material have an expiration model.
    if matches!(m.origin, kms_types::types::KeyOrigin::External) {
        match m.valid_to {
            Some(valid_to) => {
                out["ExpirationModel"] = json!("KEY_MATERIAL_EXPIRES");
                out["ValidTo"] = json!(epoch(valid_to));
            }
            None => out["ExpirationModel"] = json!("KEY_MATERIAL_DOES_NOT_EXPIRE"),
        }
    }
    out
}

/// The policy `GetKeyPolicy` answers: the AWS default key policy (the account's root may do
/// everything). kms does not evaluate it: access is the server's identity grants.
pub(crate) fn default_policy(settings: &AwsSettings) -> String {
    json!({
        "Version": "2012-10-17",
        "Id": "key-default-1",
        "Statement": [{
            "Sid": "Enable IAM User Permissions",
            "Effect": "Allow",
            "Principal": {"AWS": format!("arn:{}:iam::{}:root", settings.partition, settings.account_id)},
            "Action": "kms:*",
            "Resource": "*"
        }]
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_parsed_strictly_naming_the_member() {
        let e = parse::<Encrypt>(br#"{"KeyId":"k","Plaintext":"aGk=","DryRun":true}"#).unwrap_err();
        assert_eq!(e.type_name, "ValidationException");
        assert!(e.message.contains("DryRun"), "{}", e.message);
        let e = parse::<Encrypt>(br#"{"KeyId":"k","Plaintext":5}"#).unwrap_err();
        assert!(e.message.contains("Plaintext"), "{}", e.message);
        assert_eq!(parse::<Encrypt>(b"{not json").unwrap_err().type_name, "SerializationException");
        assert!(parse::<Paging>(b"").unwrap().limit.is_none());
        assert_eq!(parse::<KeyOnly>(br#" {"KeyId": "alias/x"} "#).unwrap().key_id, "alias/x");
        // A nested member is named by its path.
        let e = parse::<TagResource>(br#"{"KeyId":"k","Tags":[{"TagKey":"a","TagValue":1}]}"#).unwrap_err();
        assert_eq!(e.type_name, "ValidationException");
        assert!(e.message.contains("Tags[0].TagValue"), "{}", e.message);
    }

    #[test]
    fn blobs_and_sizes_are_checked() {
        assert_eq!(&*blob("Plaintext", "aGk=", 4096).unwrap(), b"hi");
        assert_eq!(blob("Plaintext", "", 4096).unwrap_err().type_name, "ValidationException");
        assert_eq!(blob("Plaintext", "!!", 4096).unwrap_err().type_name, "ValidationException");
        let too_long = blob("Plaintext", &b64(&[0; 4097]), MAX_PLAINTEXT_BYTES).unwrap_err();
        assert_eq!(too_long.type_name, "ValidationException");
        assert_eq!(blob("CiphertextBlob", &b64(&[0; 6144]), MAX_CIPHERTEXT_BYTES).unwrap().len(), 6144);
        let too_long = blob("CiphertextBlob", &b64(&[0; 6145]), MAX_CIPHERTEXT_BYTES).unwrap_err();
        assert_eq!(too_long.type_name, "ValidationException");
        assert_eq!(number_of_bytes(1024).unwrap(), 1024);
        for n in [0, 1025] {
            assert_eq!(number_of_bytes(n).unwrap_err().type_name, "ValidationException", "{n}");
        }
        assert_eq!(
            symmetric_only("EncryptionAlgorithm", Some("RSAES_OAEP_SHA_256")).unwrap_err().type_name,
            "InvalidKeyUsageException"
        );
    }
}

/// `GetParametersForImport` (both members are required by the model).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct GetParametersForImport {
    pub(crate) key_id: String,
    pub(crate) wrapping_algorithm: String,
    pub(crate) wrapping_key_spec: String,
}

/// `ImportKeyMaterial` (`ValidTo` in epoch seconds, as the JSON protocol sends timestamps).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct ImportKeyMaterial {
    pub(crate) key_id: String,
    pub(crate) import_token: String,
    pub(crate) encrypted_key_material: String,
    pub(crate) valid_to: Option<f64>,
    pub(crate) expiration_model: Option<String>,
    pub(crate) import_type: Option<String>,
    pub(crate) key_material_description: Option<String>,
    pub(crate) key_material_id: Option<String>,
}

/// `DeleteImportedKeyMaterial`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct DeleteImportedKeyMaterial {
    pub(crate) key_id: String,
    pub(crate) key_material_id: Option<String>,
}
