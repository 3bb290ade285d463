//! The metadata record kept in KV v2 for each key, format version 1 (`docs/vault.md`).
//!
//! Stored at `{kv_mount}/data/{key_path_prefix}/{key_id}` as the secret's `data` object. Every
//! change is a check-and-set write against the version that was read, so two servers cannot
//! lose each other's update. A record whose `format` is not 1, or that does not parse, makes
//! the key `Unavailable`: reported, never used.

use kms_types::types::{KeyMetadata, KeyOrigin, KeySpec, KeyState, KeyUsage, Tags};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Version of the record format written by this crate.
pub const RECORD_FORMAT: u32 = 1;

/// A key's metadata record (the JSON object stored in KV v2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyRecord {
    /// Record format version ([`RECORD_FORMAT`]).
    pub(crate) format: u32,
    pub(crate) key_id: String,
    pub(crate) key_state: KeyState,
    pub(crate) key_usage: KeyUsage,
    pub(crate) key_spec: KeySpec,
    pub(crate) origin: KeyOrigin,
    pub(crate) description: Option<String>,
    pub(crate) tags: Tags,
    pub(crate) policy: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) creation_date: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub(crate) deletion_date: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub(crate) rotation_date: Option<OffsetDateTime>,
    /// Latest Transit version known to this record.
    pub(crate) current_version: u32,
    /// Whether the Transit key was created by us. `false` between claiming the id and creating
    /// the Transit key (or after a crash in between): the key is then `Unavailable` and no
    /// Transit call is made for it, so an `encrypt` can never upsert-create a key.
    pub(crate) provisioned: bool,
}

impl KeyRecord {
    /// The metadata callers see.
    pub(crate) fn metadata(&self) -> KeyMetadata {
        KeyMetadata {
            key_id: self.key_id.clone(),
            key_state: self.effective_state(),
            key_usage: self.key_usage,
            key_spec: self.key_spec,
            origin: self.origin,
            description: self.description.clone(),
            tags: self.tags.clone(),
            creation_date: self.creation_date,
            deletion_date: self.deletion_date,
            current_version: self.current_version,
            rotation_date: self.rotation_date,
            valid_to: None,
        }
    }

    /// The state operations are checked against (`Unavailable` until provisioned).
    pub(crate) fn effective_state(&self) -> KeyState {
        if self.provisioned { self.key_state } else { KeyState::Unavailable }
    }

    /// Whether the key is past its scheduled deletion date.
    pub(crate) fn deletion_due(&self, now: OffsetDateTime) -> bool {
        self.key_state == KeyState::PendingDeletion && self.deletion_date.is_some_and(|d| d <= now)
    }
}

/// Parses a record; `None` when it is not a readable version-1 record for `key_id`.
pub(crate) fn parse_record(key_id: &str, value: serde_json::Value) -> Option<KeyRecord> {
    let record: KeyRecord = serde_json::from_value(value).ok()?;
    (record.format == RECORD_FORMAT && record.key_id == key_id && record.current_version >= 1).then_some(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known-answer record of format version 1.
    const KAT_RECORD: &str = r#"{
        "format": 1,
        "key_id": "app-key",
        "key_state": "pending_deletion",
        "key_usage": "encrypt_decrypt",
        "key_spec": "aes256",
        "origin": "kms",
        "description": "photos",
        "tags": {"team": "storage"},
        "policy": null,
        "creation_date": "2026-01-02T03:04:05Z",
        "deletion_date": "2026-02-01T00:00:00Z",
        "rotation_date": null,
        "current_version": 2,
        "provisioned": true
    }"#;

    #[test]
    fn known_answer_record_parses_and_round_trips() {
        let value: serde_json::Value = serde_json::from_str(KAT_RECORD).unwrap();
        let record = parse_record("app-key", value.clone()).unwrap();
        assert_eq!(record.key_state, KeyState::PendingDeletion);
        assert_eq!(record.current_version, 2);
        assert_eq!(record.tags["team"], "storage");
        assert_eq!(serde_json::to_value(&record).unwrap(), value);
        let meta = record.metadata();
        assert_eq!(meta.key_state, KeyState::PendingDeletion);
        assert!(record.deletion_due(time::macros::datetime!(2026-02-01 00:00:00 UTC)));
        assert!(!record.deletion_due(time::macros::datetime!(2026-01-31 23:59:59 UTC)));
    }

    #[test]
    fn foreign_or_future_records_are_not_used() {
        let mut value: serde_json::Value = serde_json::from_str(KAT_RECORD).unwrap();
        assert!(parse_record("other-key", value.clone()).is_none(), "record for another id");
        value["format"] = 2.into();
        assert!(parse_record("app-key", value.clone()).is_none(), "unknown format version");
        value["format"] = 1.into();
        value["extra"] = "x".into();
        assert!(parse_record("app-key", value).is_none(), "unknown field");
        assert!(parse_record("app-key", serde_json::json!({"foo": "bar"})).is_none());
    }

    #[test]
    fn unprovisioned_records_are_unavailable() {
        let value: serde_json::Value = serde_json::from_str(KAT_RECORD).unwrap();
        let mut record = parse_record("app-key", value).unwrap();
        record.provisioned = false;
        assert_eq!(record.metadata().key_state, KeyState::Unavailable);
    }
}

#[cfg(test)]
#[path = "record_vectors.rs"]
mod vectors;
