//! The published backup bundle vectors (`docs/vectors/kms-backup-bundle-v1.json` and `-v2.json`,
//! described in `docs/formats.md`, "Backup bundle"): each layout read by hand from the
//! documented offsets (version 2 with its alias section), then restored through the backend,
//! whose keys (and aliases) must be the documented ones and whose blob must decrypt. Altering a
//! vector by one byte is refused.

mod common;

use common::{config, decrypt, master_key};
use kms_backend_local::LocalBackend;
use kms_core::backends::KmsBackend;
use kms_types::alias::ListAliasesRequest;
use kms_types::error::KmsError;
use kms_types::types::{DescribeKeyRequest, KeyState};
use serde_json::Value;

const VECTOR: &str = include_str!("../../../docs/vectors/kms-backup-bundle-v1.json");
const VECTOR_V2: &str = include_str!("../../../docs/vectors/kms-backup-bundle-v2.json");

fn hex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect()
}

fn be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |n, b| (n << 8) | u64::from(*b))
}

fn case() -> Value {
    case_of(VECTOR, 1)
}

fn case_of(vector: &str, version: u64) -> Value {
    let doc: Value = serde_json::from_str(vector).unwrap();
    assert_eq!((doc["format"].as_str(), doc["version"].as_u64()), (Some("kms-backup-bundle"), Some(version)));
    doc["cases"][0].clone()
}

#[test]
fn the_vector_has_the_documented_layout() {
    check_layout(&case(), 1);
}

#[test]
fn the_v2_vector_has_the_documented_layout() {
    check_layout(&case_of(VECTOR_V2, 2), 2);
}

/// Walks a bundle of `version` by the documented layout and compares it with the case.
fn check_layout(case: &Value, version: u64) {
    let bundle = hex(case["bundle_hex"].as_str().unwrap());
    assert_eq!(&bundle[..8], b"KMSBKUP\0");
    assert_eq!(be(&bundle[8..10]), version, "version");
    let verifier_len = be(&bundle[10..14]) as usize;
    assert_eq!(verifier_len as u64, case["verifier_len"].as_u64().unwrap());
    let verifier: Value = serde_json::from_slice(&bundle[14..14 + verifier_len]).expect("the verifier is JSON");
    assert_eq!(verifier["format"], "kms-local-verifier");
    let mut at = 14 + verifier_len;
    assert_eq!(be(&bundle[at..at + 8]), case["key_count"].as_u64().unwrap());
    at += 8;
    for key in case["keys"].as_array().unwrap() {
        assert_eq!(u64::from(bundle[at]), key["flags"].as_u64().unwrap());
        let id_len = be(&bundle[at + 1..at + 3]) as usize;
        assert_eq!(std::str::from_utf8(&bundle[at + 3..at + 3 + id_len]).unwrap(), key["key_id"].as_str().unwrap());
        at += 3 + id_len;
        let record_len = be(&bundle[at..at + 4]) as usize;
        assert_eq!(record_len as u64, key["record_len"].as_u64().unwrap());
        at += 4 + record_len;
    }
    if version >= 2 {
        at = check_alias_section(&bundle, at, case);
    }
    assert_eq!(at as u64, case["seal_offset"].as_u64().unwrap());
    let seal_len = be(&bundle[at..at + 4]) as usize;
    assert_eq!(seal_len as u64, case["seal_len"].as_u64().unwrap());
    assert_eq!(at + 4 + seal_len, bundle.len(), "the seal ends the bundle");
}

/// The alias section of a version 2 bundle at `at`; returns where it ends.
fn check_alias_section(bundle: &[u8], mut at: usize, case: &Value) -> usize {
    assert_eq!(at as u64, case["alias_offset"].as_u64().unwrap());
    assert_eq!(be(&bundle[at..at + 8]), case["alias_count"].as_u64().unwrap());
    at += 8;
    for alias in case["aliases"].as_array().unwrap() {
        let name_len = be(&bundle[at..at + 2]) as usize;
        assert_eq!(
            std::str::from_utf8(&bundle[at + 2..at + 2 + name_len]).unwrap(),
            alias["alias_name"].as_str().unwrap()
        );
        at += 2 + name_len;
        let record_len = be(&bundle[at..at + 4]) as usize;
        let record = &bundle[at + 4..at + 4 + record_len];
        assert_eq!(record, hex(alias["record_hex"].as_str().unwrap()).as_slice());
        // The alias record of `docs/formats.md`: version 1, two dates, the target.
        assert_eq!(record[0], 1);
        assert_eq!(be(&record[1..9]), alias["creation_date"].as_u64().unwrap());
        assert_eq!(be(&record[9..17]), alias["last_updated_date"].as_u64().unwrap());
        assert_eq!(&record[17..], alias["target_key_id"].as_str().unwrap().as_bytes());
        at += 4 + record_len;
    }
    at
}

#[tokio::test]
async fn the_v2_vector_restores_to_the_documented_keys_and_aliases() {
    let case = case_of(VECTOR_V2, 2);
    assert_eq!(case["master_key_base64"], "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=");
    let bundle = hex(case["bundle_hex"].as_str().unwrap());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");

    // A flipped byte in the alias section is refused like any other.
    let mut altered = bundle.clone();
    altered[case["alias_offset"].as_u64().unwrap() as usize + 12] ^= 0x01;
    let err = LocalBackend::restore_into(&dir, &master_key(1), &altered).unwrap_err();
    assert!(matches!(&err, KmsError::InvalidRequest { field, .. } if field == "backup"), "{err:?}");

    let summary = LocalBackend::restore_into(&dir, &master_key(1), &bundle).unwrap();
    assert_eq!((summary.keys, summary.aliases), (2, 2));
    let backend = LocalBackend::open(&config(&dir, 1)).await.unwrap();
    let a = backend.describe_key(DescribeKeyRequest { key_id: "kat-a".into() }).await.unwrap().key_metadata;
    assert_eq!((a.key_state, a.current_version), (KeyState::Enabled, 2));
    let page = backend.list_aliases(ListAliasesRequest::default()).await.unwrap();
    let expected = case["aliases"].as_array().unwrap();
    assert_eq!(page.aliases.len(), expected.len());
    for (got, want) in page.aliases.iter().zip(expected) {
        assert_eq!(got.alias_name, want["alias_name"].as_str().unwrap());
        assert_eq!(got.target_key_id, want["target_key_id"].as_str().unwrap());
        assert_eq!(got.creation_date.unix_timestamp(), want["creation_date"].as_i64().unwrap());
        assert_eq!(backend.resolve_alias(&got.alias_name).await.unwrap(), got.target_key_id);
    }
    let plaintext = decrypt(&backend, &hex(case["blob_hex"].as_str().unwrap())).await.unwrap();
    assert_eq!(plaintext, case["plaintext_utf8"].as_str().unwrap().as_bytes());
    backend.shutdown().await;
}

#[tokio::test]
async fn the_vector_restores_to_the_documented_keys_and_its_blob_decrypts() {
    let case = case();
    assert_eq!(case["master_key_base64"], "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=");
    let bundle = hex(case["bundle_hex"].as_str().unwrap());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");

    let mut altered = bundle.clone();
    altered[bundle.len() / 2] ^= 0x80;
    let err = LocalBackend::restore_into(&dir, &master_key(1), &altered).unwrap_err();
    assert!(matches!(err, KmsError::InvalidRequest { .. }), "{err:?}");

    let summary = LocalBackend::restore_into(&dir, &master_key(1), &bundle).unwrap();
    assert_eq!(summary.keys as u64, case["key_count"].as_u64().unwrap());
    let backend = LocalBackend::open(&config(&dir, 1)).await.unwrap();
    let a = backend.describe_key(DescribeKeyRequest { key_id: "kat-a".into() }).await.unwrap().key_metadata;
    assert_eq!((a.key_state, a.current_version), (KeyState::Enabled, 2));
    assert_eq!(a.tags.get("team").map(String::as_str), Some("a"));
    let b = backend.describe_key(DescribeKeyRequest { key_id: "kat-b".into() }).await.unwrap().key_metadata;
    assert_eq!(b.key_state, KeyState::PendingDeletion);
    let plaintext = decrypt(&backend, &hex(case["blob_hex"].as_str().unwrap())).await.unwrap();
    assert_eq!(plaintext, case["plaintext_utf8"].as_str().unwrap().as_bytes());
    backend.shutdown().await;
}
