//! The alias record kept in KV v2 for each alias, format version 1 (`docs/formats.md`,
//! "Vault alias record").
//!
//! Stored at `{kv_mount}/data/{key_path_prefix}/.aliases/{entry}`, where `entry` is the alias
//! name with every `/` written as `.` (`alias/team/app` → `alias.team.app`). No alias name
//! holds a `.`, so the mapping is one to one; `.` and `/` both sort between `-` and `0`, so the
//! entries sort as the names do and KV's `LIST` (`after`, `limit`) pages in name order. No key
//! id starts with `.`, so `.aliases` is never a key, and the key listing skips folders.
//!
//! The target is no secret and every caller is authorized on the key an alias resolves to, so
//! the record is plain JSON like the key metadata record.

use kms_types::alias::{AliasEntry, validate_alias_name};
use kms_types::types::validate_key_id;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Version of the alias record format written by this crate.
pub(crate) const ALIAS_RECORD_FORMAT: u32 = 1;

/// The KV folder of the alias records, under the key path prefix.
pub(crate) const ALIAS_FOLDER: &str = ".aliases";

/// An alias record (the JSON object stored in KV v2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AliasRecord {
    /// Record format version ([`ALIAS_RECORD_FORMAT`]).
    pub(crate) format: u32,
    pub(crate) alias_name: String,
    pub(crate) target_key_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) creation_date: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) last_updated_date: OffsetDateTime,
}

impl AliasRecord {
    /// A version-1 record of `entry`.
    pub(crate) fn new(entry: AliasEntry) -> Self {
        Self {
            format: ALIAS_RECORD_FORMAT,
            alias_name: entry.alias_name,
            target_key_id: entry.target_key_id,
            creation_date: entry.creation_date,
            last_updated_date: entry.last_updated_date,
        }
    }

    /// The alias callers see.
    pub(crate) fn entry(&self) -> AliasEntry {
        AliasEntry {
            alias_name: self.alias_name.clone(),
            target_key_id: self.target_key_id.clone(),
            creation_date: self.creation_date,
            last_updated_date: self.last_updated_date,
        }
    }
}

/// The KV entry name of an alias (`alias/team/app` → `alias.team.app`).
pub(crate) fn entry_name(alias_name: &str) -> String {
    alias_name.replace('/', ".")
}

/// The alias name of a KV entry; `None` for an entry no alias could have written.
pub(crate) fn alias_name_of(entry: &str) -> Option<String> {
    let name = entry.replace('.', "/");
    validate_alias_name("alias_name", &name).is_ok().then_some(name)
}

/// Parses the record of `alias_name`; `None` when it is not a readable version-1 record of it
/// (another format, another name, a target that is not a key id).
pub(crate) fn parse_alias_record(alias_name: &str, value: serde_json::Value) -> Option<AliasRecord> {
    let record: AliasRecord = serde_json::from_value(value).ok()?;
    (record.format == ALIAS_RECORD_FORMAT
        && record.alias_name == alias_name
        && validate_key_id("target_key_id", &record.target_key_id).is_ok())
    .then_some(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_map_one_to_one_and_keep_the_name_order() {
        let mut names = vec!["alias/a-b", "alias/a/b", "alias/a0", "alias/a_b", "alias/a", "alias/A", "alias/a//x"];
        for name in &names {
            assert_eq!(alias_name_of(&entry_name(name)).as_deref(), Some(*name));
            assert!(!entry_name(name).contains('/'));
        }
        let mut entries: Vec<String> = names.iter().map(|n| entry_name(n)).collect();
        names.sort_unstable();
        entries.sort_unstable();
        let back: Vec<String> = entries.iter().map(|e| alias_name_of(e).unwrap()).collect();
        assert_eq!(back, names);
    }

    #[test]
    fn foreign_entries_are_no_aliases() {
        for entry in ["app-key", "alias.aws.s3", "alias.", "other.x", "alias.a b"] {
            assert_eq!(alias_name_of(entry), None, "{entry}");
        }
    }

    #[test]
    fn foreign_or_future_records_are_not_used() {
        let good = serde_json::json!({
            "format": 1,
            "alias_name": "alias/orders",
            "target_key_id": "orders-key",
            "creation_date": "2026-12-02T10:05:41Z",
            "last_updated_date": "2026-12-02T10:06:40Z"
        });
        assert!(parse_alias_record("alias/orders", good.clone()).is_some());
        assert!(parse_alias_record("alias/other", good.clone()).is_none(), "record of another alias");
        let mut changed = good.clone();
        changed["format"] = 2.into();
        assert!(parse_alias_record("alias/orders", changed).is_none(), "unknown format version");
        let mut changed = good.clone();
        changed["extra"] = "x".into();
        assert!(parse_alias_record("alias/orders", changed).is_none(), "unknown member");
        let mut changed = good;
        changed["target_key_id"] = "alias/x".into();
        assert!(parse_alias_record("alias/orders", changed).is_none(), "a target that is no key id");
    }

    /// `docs/vectors/vault-alias-record-v1.json`, which `docs/vectors/check.py` also checks.
    #[test]
    fn vault_alias_record_v1() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../../docs/vectors/vault-alias-record-v1.json")).unwrap();
        assert_eq!((doc["format"].as_str(), doc["version"].as_u64()), (Some("vault-alias-record"), Some(1)));
        for case in doc["cases"].as_array().unwrap() {
            let name = &case["name"];
            let alias_name = case["alias_name"].as_str().unwrap();
            assert_eq!(entry_name(alias_name), case["entry"].as_str().unwrap(), "{name}");
            assert_eq!(alias_name_of(case["entry"].as_str().unwrap()).as_deref(), Some(alias_name), "{name}");
            let record = parse_alias_record(alias_name, case["record"].clone())
                .unwrap_or_else(|| panic!("{name}: does not parse"));
            assert_eq!(serde_json::to_value(&record).unwrap(), case["record"], "{name}");
            assert_eq!(serde_json::to_value(AliasRecord::new(record.entry())).unwrap(), case["record"], "{name}");
        }
    }
}
