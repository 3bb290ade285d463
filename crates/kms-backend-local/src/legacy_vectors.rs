//! The key record vectors of format 1 (`docs/vectors/local-key-record-v1.json`) at the byte
//! level: the associated data of every record, the plaintext body, and that the migration
//! reader opens each file. (The backend-level test `tests/format_vectors.rs` opens them as a
//! store, migrating it.)

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kms_crypto::aead::{Algorithm, RandomNonceKey};
use serde_json::Value;

use super::{Header, decode};
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
        let stored = STANDARD.decode(&header.body).unwrap();
        let (protection, body) = match case["protection"].as_str() {
            Some("aes_256_gcm") => {
                let kek = RandomNonceKey::new(Algorithm::Aes256Gcm, &hex(&case["kek"])).unwrap();
                assert_eq!(stored, hex(&case["sealed_body"]), "{name}");
                let body = kek.open(&header.aad(), &stored).unwrap().to_vec();
                (RecordProtection::Sealed(Box::new(kek)), body)
            }
            _ => (RecordProtection::InsecurePlaintext, stored),
        };
        assert_eq!(body, hex(&case["body"]), "{name}");
        let record = decode(key_id, file.as_bytes(), &protection).unwrap();
        assert_eq!(record.current_version(), header.current_version, "{name}");
    }
}
