//! The published test vectors of the formats `kms-admin` owns (`docs/vectors/service-state-v1.json`
//! and `docs/vectors/admin-token-v1.json`, described in `docs/formats.md`): the saved service
//! state is loaded by `ConfigStore` from the vector's files, and the admin token's hash file is
//! `hash_token`'s. One test per vector file; `docs/vectors/check.py` re-derives the same files
//! in Python from the documentation alone.

use std::fs;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kms_admin::auth::{generate_token, hash_token};
use kms_admin::store::{ConfigStore, PersistedState, SEAL_KEY_FILE, STATE_FILE, StoreError};
use kms_types::config::KmsConfig;
use serde_json::Value;

fn cases(text: &str, format: &str) -> Vec<Value> {
    kms_testkit::vectors::cases(text, format, 1)
}

fn text<'a>(case: &'a Value, field: &str) -> &'a str {
    case[field].as_str().unwrap_or_else(|| panic!("{field} is a string"))
}

fn data_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kms-admin-vectors-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn service_state_v1() {
    for (i, case) in
        cases(include_str!("../../../docs/vectors/service-state-v1.json"), "service-state").iter().enumerate()
    {
        let name = &case["name"];
        let dir = data_dir(&format!("state-{i}"));
        fs::write(dir.join(SEAL_KEY_FILE), text(case, "seal_key_file")).unwrap();
        fs::write(dir.join(STATE_FILE), text(case, "file")).unwrap();
        let store = ConfigStore::open(&dir, None).unwrap();
        let config: KmsConfig = serde_json::from_value(case["config"].clone()).unwrap();
        let running = case["running"].as_bool().unwrap();
        assert_eq!(store.load().unwrap(), Some(PersistedState { config: config.clone(), running }), "{name}");
        // `config` is a KmsConfig in its serde shape, member for member; files written before
        // `cache_config.coherence_seconds` existed lack it and read as its default, 2.
        let mut written = serde_json::to_value(&config).unwrap();
        if case["config"]["cache_config"].get("coherence_seconds").is_none() {
            let cache = written["cache_config"].as_object_mut().unwrap();
            assert_eq!(cache.remove("coherence_seconds"), Some(Value::from(2)), "{name}");
        }
        assert_eq!(written, case["config"], "{name}");

        // A sealed value moved to another field's path does not open (the path is the AAD).
        for sealed in case["sealed"].as_array().unwrap() {
            let value = text(sealed, "value");
            let mut doc: Value = serde_json::from_str(text(case, "file")).unwrap();
            let path: Vec<&str> = text(sealed, "path").split('.').collect();
            let holder = path[..path.len() - 1].iter().fold(&mut doc["config"], |v, seg| &mut v[*seg]);
            *holder = match path.last() {
                Some(&"secret_id") => serde_json::json!({ "type": "token", "token": value }),
                Some(&"token") => serde_json::json!({ "type": "app_role", "role_id": "r", "secret_id": value }),
                Some(&"key") => serde_json::json!({ "type": "passphrase", "passphrase": value }),
                _ => serde_json::json!({ "type": "key", "key": value }),
            };
            fs::write(dir.join(STATE_FILE), serde_json::to_vec(&doc).unwrap()).unwrap();
            assert!(matches!(store.load(), Err(StoreError::Unseal { .. })), "{name}");
        }
        let _ = fs::remove_dir_all(&dir);
    }
}

#[test]
fn admin_token_v1() {
    for case in cases(include_str!("../../../docs/vectors/admin-token-v1.json"), "admin-token") {
        let token = text(&case, "token");
        let random: Vec<u8> =
            (0..64).step_by(2).map(|i| u8::from_str_radix(&text(&case, "random")[i..i + 2], 16).unwrap()).collect();
        assert_eq!(token, format!("kms_{}", URL_SAFE_NO_PAD.encode(random)));
        assert_eq!(text(&case, "token_file"), format!("{token}\n"));
        assert_eq!(text(&case, "sha256_file"), format!("{}\n", hash_token(token)));
    }
    let fresh = generate_token();
    assert_eq!(fresh.len(), 47);
    assert!(fresh.starts_with("kms_"));
    assert!(fresh[4..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{}", fresh.len());
}
