//! [`AdoptKeyRequest`] and [`AdoptKeyResponse`]: `POST /kms/v1/adopt`, the explicit adoption of
//! a key that the backend's store holds but kms did not make (`kms migrate vault-transit`:
//! a Transit key of RustFS or any other tool; `docs/migration.md`).
//!
//! kms never adopts a key implicitly. Adoption checks the key's parameters in the store and
//! answers, per key, what it did or would do ([`AdoptOutcome`]) with a reason when it refuses;
//! a refusal is an answer, not an error, so a run over many keys reports each one.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::limits::{validate_description, validate_tags};
use crate::types::{KeyMetadata, Tags, validate_key_id};

/// `POST /kms/v1/adopt`: adopt `key_id` (with `commit`), or only check it (without).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdoptKeyRequest {
    /// The key's name in the store (a Transit key name), which becomes its kms key id.
    pub key_id: String,
    /// Record the kms metadata; without it nothing is written (a dry run).
    #[serde(default)]
    pub commit: bool,
    /// Description recorded for the adopted key.
    #[serde(default)]
    pub description: Option<String>,
    /// Tags recorded for the adopted key.
    #[serde(default)]
    pub tags: Tags,
}

impl AdoptKeyRequest {
    /// Checks what can be checked without the store: key id, description and tags.
    pub fn validate(&self) -> Result<()> {
        validate_key_id("key_id", &self.key_id)?;
        if let Some(description) = &self.description {
            validate_description(description)?;
        }
        validate_tags(&self.tags)
    }
}

/// What adoption did, or would do, with one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdoptOutcome {
    /// The key passes every check and would be adopted (a dry run).
    Adoptable,
    /// The key was adopted: kms now holds its metadata and serves it.
    Adopted,
    /// kms adopted this key earlier; nothing was changed (a re-run resumes).
    AlreadyAdopted,
    /// The key is not adopted; `reason` says why.
    Refused,
}

/// `POST /kms/v1/adopt` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdoptKeyResponse {
    /// The key.
    pub key_id: String,
    /// What happened.
    pub outcome: AdoptOutcome,
    /// Why the key was refused (only for [`AdoptOutcome::Refused`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The kms metadata the key has (adopted, already adopted) or would have (adoptable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_metadata: Option<KeyMetadata>,
}

impl AdoptKeyResponse {
    /// A refusal of `key_id` for `reason`.
    pub fn refused(key_id: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { key_id: key_id.into(), outcome: AdoptOutcome::Refused, reason: Some(reason.into()), key_metadata: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::KmsError;

    #[test]
    fn requests_round_trip_and_bad_ids_are_refused_by_field() {
        let json = r#"{"key_id":"rustfs-key","commit":true}"#;
        let request: AdoptKeyRequest = serde_json::from_str(json).unwrap();
        assert!(request.commit);
        request.validate().unwrap();
        let dry: AdoptKeyRequest = serde_json::from_str(r#"{"key_id":"k"}"#).unwrap();
        assert!(!dry.commit, "a dry run unless asked");
        let bad = AdoptKeyRequest { key_id: "a/b".into(), ..Default::default() };
        assert!(matches!(bad.validate(), Err(KmsError::InvalidRequest { ref field, .. }) if field == "key_id"));
        assert!(serde_json::from_str::<AdoptKeyRequest>(r#"{"key_id":"k","force":true}"#).is_err());
    }

    #[test]
    fn a_refusal_carries_its_reason_and_no_metadata() {
        let refused = AdoptKeyResponse::refused("k", "exportable");
        assert_eq!(
            serde_json::to_value(&refused).unwrap(),
            serde_json::json!({"key_id": "k", "outcome": "refused", "reason": "exportable"})
        );
    }
}
