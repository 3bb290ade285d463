//! The key record vectors of format 2 (`docs/vectors/local-key-record-v2.json`) at the byte
//! level: each record is rebuilt from the vector's metadata and versions and must give the
//! vector's body; a development-mode record encodes to the vector's value exactly; a sealed
//! one (KEK of the master-key verifier vector, fixed nonce) opens under the vector's
//! associated data to that body; an edited header or a record read under another key id is
//! refused. (`tests/format_vectors.rs` also puts them into a real store.)

use std::sync::Arc;

use kms_crypto::aead::{Algorithm, RandomNonceKey};
use serde_json::Value;

use super::{HEADER_LEN, KeyRecord, KeyVersion, RecordError, StoredMeta, aad, protection_byte};
use crate::master_key::RecordProtection;

fn hex(text: &Value) -> Vec<u8> {
    let text = text.as_str().expect("a hex string");
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect()
}

fn number(value: &Value) -> u32 {
    value.as_u64().and_then(|n| u32::try_from(n).ok()).expect("a u32")
}

/// The record the case describes, built from its metadata and versions.
fn record(case: &Value) -> KeyRecord {
    let meta: StoredMeta = serde_json::from_value(case["meta"].clone()).expect("meta is a stored meta");
    let versions = case["versions"].as_array().expect("versions").iter().map(|v| {
        let created_at = time::OffsetDateTime::from_unix_timestamp(v["created_at"].as_i64().unwrap()).unwrap();
        Arc::new(KeyVersion::new(number(&v["version"]), created_at, &hex(&v["material"])).unwrap())
    });
    KeyRecord { key_id: case["key_id"].as_str().unwrap().to_owned(), meta, versions: versions.collect() }
}

/// The parts of two records a reader sees: metadata, and every version with its material.
fn contents(record: &KeyRecord) -> (StoredMeta, Vec<(u32, i64, Vec<u8>)>) {
    let versions =
        record.versions.iter().map(|v| (v.version, v.created_at.unix_timestamp(), v.material().to_vec())).collect();
    (record.meta.clone(), versions)
}

#[test]
fn local_key_record_v2_bytes() {
    let doc: Value = serde_json::from_str(include_str!("../../../docs/vectors/local-key-record-v2.json")).unwrap();
    assert_eq!((doc["format"].as_str(), doc["version"].as_u64()), (Some("local-key-record"), Some(2)));
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.iter().any(|c| c["protection"] == 0) && cases.iter().any(|c| c["protection"] == 1));
    for case in cases {
        let name = &case["name"];
        let key_id = case["key_id"].as_str().unwrap();
        let current = number(&case["current_version"]);
        let expected = record(case);
        assert_eq!(expected.current_version(), current, "{name}");
        assert_eq!(*expected.body().unwrap(), hex(&case["body"]), "{name}");
        let value = hex(&case["value"]);
        let protection = match case["protection"].as_u64() {
            Some(1) => RecordProtection::Sealed(Box::new(
                RandomNonceKey::new(Algorithm::Aes256Gcm, &hex(&case["kek"])).unwrap(),
            )),
            Some(0) => {
                assert_eq!(expected.encode(&RecordProtection::InsecurePlaintext).unwrap(), value, "{name}");
                RecordProtection::InsecurePlaintext
            }
            other => panic!("{name}: protection {other:?}"),
        };
        let kind = protection_byte(&protection);
        let mut header = vec![2, kind];
        header.extend_from_slice(&current.to_be_bytes());
        assert_eq!(value[..HEADER_LEN], header, "{name}");
        let read = KeyRecord::decode(key_id, &value, &protection).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(contents(&read), contents(&expected), "{name}");
        assert_eq!(*read.body().unwrap(), hex(&case["body"]), "{name}");

        if let RecordProtection::Sealed(kek) = &protection {
            assert_eq!(aad(key_id, current, kind), hex(&case["aad"]), "{name}");
            assert_eq!(value[HEADER_LEN..HEADER_LEN + 12], hex(&case["nonce"]), "{name}");
            let body = kek.open(&hex(&case["aad"]), &value[HEADER_LEN..]).unwrap();
            assert_eq!(*body, hex(&case["body"]), "{name}");
            // The header is bound: another current version, another key id, a flipped byte.
            let mut edited = value.clone();
            edited[HEADER_LEN - 1] ^= 1;
            assert_eq!(KeyRecord::decode(key_id, &edited, &protection).unwrap_err(), RecordError::Authentication);
            let other_id = format!("{key_id}x");
            assert_eq!(KeyRecord::decode(&other_id, &value, &protection).unwrap_err(), RecordError::Authentication);
            for i in HEADER_LEN..value.len() {
                let mut tampered = value.clone();
                tampered[i] ^= 0x80;
                assert_eq!(KeyRecord::decode(key_id, &tampered, &protection).unwrap_err(), RecordError::Authentication);
            }
            // Relabelled as a development-mode record, it is refused rather than read in the clear.
            let mut relabelled = value.clone();
            relabelled[1] = 0;
            assert_eq!(
                KeyRecord::decode(key_id, &relabelled, &protection).unwrap_err(),
                RecordError::ProtectionMismatch
            );
        } else {
            // Nothing authenticates a development-mode record, but its framing is checked.
            let mut edited = value.clone();
            edited[HEADER_LEN - 1] ^= 1;
            assert!(
                matches!(KeyRecord::decode(key_id, &edited, &protection), Err(RecordError::Malformed(_))),
                "{name}: current_version no longer matches the body"
            );
        }
        let mut future = value.clone();
        future[0] = 3;
        assert!(
            matches!(
                KeyRecord::decode(key_id, &future, &protection),
                Err(RecordError::UnsupportedFormat { version: 3, .. })
            ),
            "{name}"
        );
    }
}
