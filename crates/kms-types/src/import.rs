//! [`ImportKeyRequest`]: a master key brought into kms from another KMS with its id, state,
//! metadata, creation date and material (`kms migrate rustfs-local`; `docs/migration.md`).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{KmsError, Result};
use crate::limits::{validate_description, validate_tags};
use crate::secret::SecretBytes;
use crate::types::{KeyState, KeyUsage, Tags, validate_key_id};

/// Length of the material of an imported master key (AES-256).
pub const IMPORTED_MATERIAL_LEN: usize = 32;

/// `POST /kms/v1/keys/{key_id}/import`: create `key_id` with the given material as its
/// version 1. Refused if the key id exists (an import never overwrites).
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportKeyRequest {
    /// The key id to create.
    pub key_id: String,
    /// The 32-byte material (standard base64 in JSON).
    pub material: SecretBytes,
    /// `enabled`, `disabled` or `pending_deletion`.
    pub key_state: KeyState,
    /// Permitted usage.
    #[serde(default)]
    pub key_usage: KeyUsage,
    /// Free-text description.
    #[serde(default)]
    pub description: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Tags,
    /// When the key was created in the KMS it comes from.
    #[serde(with = "time::serde::rfc3339")]
    pub creation_date: OffsetDateTime,
    /// When a `pending_deletion` key is due to be deleted (required for that state only).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub deletion_date: Option<OffsetDateTime>,
}

impl ImportKeyRequest {
    /// Checks everything a backend can check without its store: key id, material length,
    /// state (and its deletion date), description and tags.
    pub fn validate(&self) -> Result<()> {
        validate_key_id("key_id", &self.key_id)?;
        if self.material.len() != IMPORTED_MATERIAL_LEN {
            return Err(KmsError::invalid_request("material", "imported material is 32 bytes (AES-256)"));
        }
        match (self.key_state, self.deletion_date.is_some()) {
            (KeyState::Enabled | KeyState::Disabled, false) | (KeyState::PendingDeletion, true) => {}
            (KeyState::PendingDeletion, false) => {
                return Err(KmsError::invalid_request("deletion_date", "required for a pending_deletion key"));
            }
            (KeyState::Enabled | KeyState::Disabled, true) => {
                return Err(KmsError::invalid_request("deletion_date", "only a pending_deletion key has one"));
            }
            _ => {
                return Err(KmsError::invalid_request("key_state", "enabled, disabled or pending_deletion"));
            }
        }
        if let Some(description) = &self.description {
            validate_description(description)?;
        }
        validate_tags(&self.tags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ImportKeyRequest {
        ImportKeyRequest {
            key_id: "imported".into(),
            material: SecretBytes::new(vec![7; 32]),
            key_state: KeyState::Enabled,
            key_usage: KeyUsage::default(),
            description: Some("from RustFS".into()),
            tags: [("team".to_owned(), "storage".to_owned())].into(),
            creation_date: OffsetDateTime::from_unix_timestamp(1_790_848_800).unwrap(),
            deletion_date: None,
        }
    }

    fn refused_field(request: &ImportKeyRequest) -> String {
        match request.validate() {
            Err(KmsError::InvalidRequest { field, .. }) => field,
            other => panic!("expected InvalidRequest, got {other:?}"),
        }
    }

    #[test]
    fn a_complete_request_passes_and_round_trips_through_json() {
        request().validate().unwrap();
        let json = serde_json::to_string(&request()).unwrap();
        assert!(json.contains(r#""creation_date":"2026-10-01T10:00:00Z""#), "{json}");
        assert_eq!(serde_json::from_str::<ImportKeyRequest>(&json).unwrap(), request());
        assert!(!format!("{:?}", request()).contains("7, 7"));
    }

    #[test]
    fn bad_material_states_and_metadata_are_refused_by_field() {
        let mut r = request();
        r.material = SecretBytes::new(vec![7; 16]);
        assert_eq!(refused_field(&r), "material");
        let mut r = request();
        r.key_state = KeyState::PendingDeletion;
        assert_eq!(refused_field(&r), "deletion_date");
        r.deletion_date = Some(r.creation_date);
        r.validate().unwrap();
        r.key_state = KeyState::Disabled;
        assert_eq!(refused_field(&r), "deletion_date");
        let mut r = request();
        r.key_state = KeyState::PendingImport;
        assert_eq!(refused_field(&r), "key_state");
        let mut r = request();
        r.key_id = "a/b".into();
        assert_eq!(refused_field(&r), "key_id");
        let mut r = request();
        r.tags.insert(String::new(), "x".into());
        assert_eq!(refused_field(&r), "tags");
    }
}
