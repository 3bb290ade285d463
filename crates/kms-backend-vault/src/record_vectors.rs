//! The Vault key metadata record vectors (`docs/vectors/vault-key-record-v1.json`, described in
//! `docs/vault.md` and `docs/formats.md`): each record parses for its key id, re-encodes to the
//! same JSON, and has the documented effective state; `docs/vectors/check.py` checks the same
//! file in Python.

use kms_types::types::KeyState;
use serde_json::Value;

use super::parse_record;

#[test]
fn vault_key_record_v1() {
    let doc: Value = serde_json::from_str(include_str!("../../../docs/vectors/vault-key-record-v1.json")).unwrap();
    assert_eq!((doc["format"].as_str(), doc["version"].as_u64()), (Some("vault-key-record"), Some(1)));
    for case in doc["cases"].as_array().unwrap() {
        let name = &case["name"];
        let key_id = case["key_id"].as_str().unwrap();
        let record = parse_record(key_id, case["record"].clone()).unwrap_or_else(|| panic!("{name}: does not parse"));
        assert_eq!(serde_json::to_value(&record).unwrap(), case["record"], "{name}");
        let state: KeyState = serde_json::from_value(case["effective_state"].clone()).unwrap();
        assert_eq!(record.metadata().key_state, state, "{name}");
        assert!(parse_record("another-key", case["record"].clone()).is_none(), "{name}");
    }
}
