//! The key record vectors (`docs/vectors/local-key-record-v1.json`) at the byte level: the
//! associated data of every record, the plaintext body, and the exact file a development-mode
//! record encodes to. (The backend-level test `tests/format_vectors.rs` opens them as a store.)

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kms_crypto::aead::{Algorithm, RandomNonceKey};
use serde_json::Value;

use super::{Header, KeyRecord};
use crate::master_key::RecordProtection;

fn hex(text: &Value) -> Vec<u8> {
    let text = text.as_str().expect("a hex string");
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect()
}

#[test]
fn local_key_record_v1_bytes() {
    let doc: Value = serde_json::from_str(include_str!("../../../docs/vectors/local-key-record-v1.json")).unwrap();
    assert_eq!((doc["format"].as_str(), doc["version"].as_u64()), (Some("local-key-record"), Some(1)));
    for case in doc["cases"].as_array().unwrap() {
        let name = &case["name"];
        let key_id = case["key_id"].as_str().unwrap();
        let file = case["file"].as_str().unwrap();
        let header: Header = serde_json::from_str(file).unwrap();
        assert_eq!(header.aad(), hex(&case["aad"]), "{name}");
        let protection = match case["protection"].as_str() {
            Some("aes_256_gcm") => RecordProtection::Sealed(Box::new(
                RandomNonceKey::new(Algorithm::Aes256Gcm, &hex(&case["kek"])).unwrap(),
            )),
            _ => RecordProtection::InsecurePlaintext,
        };
        let record = KeyRecord::decode(key_id, file.as_bytes(), &protection).unwrap();
        // Written in the clear, the record's body is the vector's plaintext body...
        let plain = record.encode(&RecordProtection::InsecurePlaintext).unwrap();
        let plain_header: Header = serde_json::from_slice(&plain).unwrap();
        assert_eq!(STANDARD.decode(&plain_header.body).unwrap(), hex(&case["body"]), "{name}");
        // ...and a development-mode record re-encodes to the very same file.
        if matches!(protection, RecordProtection::InsecurePlaintext) {
            assert_eq!(String::from_utf8(plain).unwrap(), file, "{name}");
        } else {
            assert_eq!(STANDARD.decode(&header.body).unwrap(), hex(&case["sealed_body"]), "{name}");
        }
    }
}
